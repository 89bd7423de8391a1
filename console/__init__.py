"""Web console for staff and the admission desk: server-rendered pages under /console/ on the same domain
functions as the API (see README, "Web console")."""

from __future__ import annotations

from aiohttp import web

from console import admin, consultations, desk, home, login, referrals, stats
from console.page import PREFIX, STATIC_HASHES, TEMPLATES, console_middleware, environment, static_file, static_hashes


def setup(app: web.Application) -> None:
    """Mount the console as a sub-application: its session, CSRF and CSP middleware see only /console/ paths."""
    console = web.Application(middlewares=[console_middleware])
    hashes = static_hashes()
    console[STATIC_HASHES] = hashes
    console[TEMPLATES] = environment(hashes)
    router = web.RouteTableDef()
    router.get("/static/{name:.+}")(static_file)
    for module in (login, home, referrals, consultations, desk, admin, stats):
        console.router.add_routes(module.routes)
    console.router.add_routes(router)
    app.add_subapp(PREFIX, console)
