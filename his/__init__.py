"""HIS gateway (FHIR R4 over each institution's front-end processor) and the HIS simulator.

``setup(app)`` puts the gateway into ``app[HIS]``. With ``settings.embedded_his`` the simulator runs on its
own loopback port (so the gateway makes real HTTP calls, as in production) and is also mounted at
``/his-sim/`` on the main app for humans and tests; both doors share one SimulatorState
(``app[HIS_SIMULATOR]``), and institutions without a front-end processor URL use it. Without it, such
institutions use the standalone simulator at ``HIS_SIMULATOR_URL`` if one is set (several processes share it).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from appkeys import CIPHER, HIS, HIS_SIMULATOR, KV_STORE, SETTINGS


def setup(app: web.Application) -> None:
    """Install the HIS gateway and, in embedded mode, the simulator."""
    from his.simulator import SimulatorState, create_simulator_app

    settings = app[SETTINGS]
    if settings.embedded_his:
        state = SimulatorState()
        app[HIS_SIMULATOR] = state
        app.add_subapp("/his-sim/", create_simulator_app(state, prefix=""))
        app.cleanup_ctx.append(_embedded_simulator)
    app.cleanup_ctx.append(_gateway)


async def _embedded_simulator(app: web.Application) -> AsyncIterator[None]:
    from his.simulator import PathOnlyAccessLogger, create_simulator_app

    state = app[HIS_SIMULATOR]
    state.open_state(app[SETTINGS].data_dir)  # the simulated records survive a restart, as a real HIS's do
    # A short shutdown timeout: a test may leave a stalled (fault-injected) call pending.
    runner = web.AppRunner(create_simulator_app(state), access_log_class=PathOnlyAccessLogger,
                           shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    state.base_url = f"http://{host}:{port}/his-sim"
    try:
        yield
    finally:
        state.base_url = None
        await runner.cleanup()
        state.close_state()


def _simulator_fallback(app: web.Application) -> Callable[[str], str | None] | None:
    """Where institutions without a front-end processor URL go: the embedded simulator, a standalone one shared
    by several processes (HIS_SIMULATOR_URL), or nowhere (they raise HisNotConfigured)."""
    state = app.get(HIS_SIMULATOR)
    if state is not None:
        return state.fhir_base
    shared = app[SETTINGS].his_simulator_url.rstrip("/")
    if shared:
        return lambda code: f"{shared}/{code}/fhir"
    return None


async def _gateway(app: web.Application) -> AsyncIterator[None]:
    from his.auth import HisCredentials
    from his.connection import endpoint_of
    from his.fhir import FhirGateway
    from his.gateway import GatewayRouter

    settings = app[SETTINGS]
    cipher = app[CIPHER]
    # OAuth2 tokens are shared by every process through the KV store, as the WeChat token is.
    credentials = HisCredentials(app[KV_STORE], lock_timeout=settings.his_timeout + 5)
    fhir = FhirGateway(timeout=settings.his_timeout, credentials=credentials)
    gateway = GatewayRouter({"http": fhir, "https": fhir}, fallback_base_url=_simulator_fallback(app),
                            endpoint_of=lambda institution: endpoint_of(cipher, institution))
    app[HIS] = gateway
    try:
        yield
    finally:
        await gateway.close()
