"""The HIS simulator: a small FHIR R4 server per institution, standing in for each member's HIS.

    /his-sim/{institution_code}/fhir                 one FHIR base per institution (any code; a store is
                                                     created lazily and seeded deterministically from it)
        GET  metadata                                CapabilityStatement
        GET  {type}?param=...                        search (identifier=system|value, patient=, ...)
        GET  {type}/{id}                             read
        POST {type}   [If-None-Exist: query]         (conditional) create
    GET  /his-sim/{code}/_patients                   demo listing: MRN, card code, name, ID number
    POST /his-sim/_faults {institution?, kind, count, delay?, method?, status?, message?}
                                                     make the next `count` FHIR calls fail: kind "timeout"
                                                     (stall `delay` s), "error500", "outcome" (4xx with
                                                     an OperationOutcome), "throttle" (429 or 503 with
                                                     Retry-After: `retry_after` s, as an HTTP-date with
                                                     `retry_after_date`)
    GET/DELETE /his-sim/_faults                      pending faults / clear them
    PUT/GET/DELETE /his-sim/{code}/_personality      the "generic FHIR server" personality of one institution
                                                     (credentials required, no business identifiers, a
                                                     quota answered with 429; see his.simulator.generic)
    POST /his-sim/{code}/oauth/token                 its OAuth2 token endpoint (client credentials, SMART)
    DELETE /his-sim/{code}/_tokens                   expire every token it issued
    POST /his-sim/{code}/_launch-token {user_id, patient?, ttl?}
                                                     a single-sign-on launch JWT signed with the
                                                     institution's demo key (see his.simulator.launch)
    GET  /his-sim/{code}/_launch-key                 that key's public half (PEM), for registration

Types: Patient, Encounter, Condition, ServiceRequest, MedicationRequest, DiagnosticReport. A ServiceRequest
gets its DiagnosticReport after ``report_delay`` seconds (the simulated lab turnaround).

Embedded in the platform, and standalone with ``--data-dir``, the records (and the MRN and certificate number
counters) are kept in ``his-simulator.sqlite3`` in the data directory, so a restarted simulator never hands
out an MRN twice; faults and pending lab delays live in memory only.

Standalone: ``python -m his.simulator --port 8091 [--data-dir DIR]``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from his import profile
from his.simulator import launch
from his.simulator.generic import GenericPersonality, TokenRefused, parse_personality
from his.simulator.store import RESOURCE_TYPES, SEARCH_PARAMETERS, FhirProblem, HisStore, iso, now_utc
from standin_state import DurableState

log = logging.getLogger("referral_cloud.his.simulator")

FAULT_KINDS = ("timeout", "error500", "outcome", "throttle")
STATE_FILE = "his-simulator.sqlite3"  # in DATA_DIR: every simulated HIS's records survive a restart
CODE_PATTERN = r"[A-Za-z0-9_\-]{1,32}"


@dataclass
class Fault:
    kind: str
    remaining: int
    institution: str | None = None
    method: str | None = None
    delay: float = 30.0
    status: int = 422
    message: str = "模拟的业务规则错误：HIS 拒绝了该请求"
    retry_after: float = 1.0  # throttle
    retry_after_date: bool = False

    def applies(self, code: str, method: str) -> bool:
        return (self.remaining > 0 and (self.institution is None or self.institution == code)
                and (self.method is None or self.method == method))


class SimulatorState:
    """Everything the simulator holds: one HisStore per institution code, pending faults, settings."""

    def __init__(self, *, report_delay: float = 0.5) -> None:
        self.report_delay = report_delay
        self.stores: dict[str, HisStore] = {}
        self.faults: list[Fault] = []
        self.personalities: dict[str, GenericPersonality] = {}  # institution code → "generic FHIR server"
        self.base_url: str | None = None  # e.g. http://127.0.0.1:PORT/his-sim once served on its own port
        self._stopping: asyncio.Event | None = None
        self.durable: DurableState | None = None

    def store(self, code: str) -> HisStore:
        store = self.stores.get(code)
        if store is None:
            store = self.stores[code] = HisStore(code, report_delay=lambda: self.report_delay,
                                                 assigns_identifiers=code not in self.personalities,
                                                 durable=self.durable)
        return store

    def make_generic(self, code: str, personality: GenericPersonality) -> GenericPersonality:
        """Let `code` behave as a general FHIR server (its seeded records stay)."""
        self.personalities[code] = personality
        self.store(code).assigns_identifiers = False
        return personality

    def make_his(self, code: str) -> None:
        """Back to a Chinese HIS front-end processor: no credentials, identifiers assigned."""
        self.personalities.pop(code, None)
        self.store(code).assigns_identifiers = True

    def token_url(self, code: str) -> str | None:
        """The token endpoint of `code` on the simulator's own port (None until it is served)."""
        return f"{self.base_url}/{code}/oauth/token" if self.base_url else None

    def open_state(self, data_dir: Path) -> None:
        """Keep every HIS's records in `data_dir` (STATE_FILE) from now on, starting from what it holds."""
        self.durable = DurableState.open(data_dir / STATE_FILE)
        self.stores.clear()

    def close_state(self) -> None:
        if self.durable is not None:
            self.durable.close()
            self.durable = None

    def fhir_base(self, code: str) -> str | None:
        """The FHIR base URL of ``code`` on the simulator's own port (None until it is served)."""
        return f"{self.base_url}/{code}/fhir" if self.base_url else None

    def add_fault(self, fault: Fault) -> None:
        self.faults.append(fault)

    def take_fault(self, code: str, method: str) -> Fault | None:
        for fault in self.faults:
            if fault.applies(code, method):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def _event(self) -> asyncio.Event:
        if self._stopping is None:
            self._stopping = asyncio.Event()
        return self._stopping

    async def stall(self, seconds: float) -> None:
        """Sleep like a stuck HIS, but let shutdown end it at once."""
        try:
            await asyncio.wait_for(self._event().wait(), seconds)
        except TimeoutError:
            pass

    def stop(self) -> None:
        self._event().set()


class PathOnlyAccessLogger(AbstractAccessLogger):
    """Access log without query strings: FHIR searches carry ID numbers."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info("%s %s %s %.3fs", request.method, request.path, response.status, time)


def _fhir_json(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(data, ensure_ascii=False), status=status, headers=headers,
                        content_type=profile.FHIR_JSON, charset="utf-8")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, dumps=lambda o: json.dumps(o, ensure_ascii=False))


def operation_outcome(status: int, code: str, diagnostics: str) -> web.Response:
    severity = "fatal" if status >= 500 else "error"
    return _fhir_json({"resourceType": "OperationOutcome",
                       "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}]}, status)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _body(request: web.Request) -> dict:
    try:
        body = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nesting beyond the decoder
        raise FhirProblem(400, "structure", "请求体不是有效的 JSON") from None
    if not isinstance(body, dict):
        raise FhirProblem(400, "structure", "请求体应为 FHIR 资源")
    return body


def create_simulator_app(state: SimulatorState, *, prefix: str = "/his-sim") -> web.Application:
    """The simulator's routes under ``prefix`` ("" when mounted with add_subapp('/his-sim/', ...))."""
    app = web.Application()

    def fhir(handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            code = request.match_info["code"]
            personality = state.personalities.get(code)
            if personality is not None:
                busy = personality.throttle()
                if busy is not None:
                    return _throttled(429, busy)
                if not personality.authorized(request.headers.get("Authorization", "")):
                    personality.refused += 1
                    response = operation_outcome(401, "login", "需要有效的访问令牌")
                    response.headers["WWW-Authenticate"] = (
                        'Basic realm="fhir"' if personality.auth == "basic" else 'Bearer realm="fhir"')
                    return response
            fault = state.take_fault(code, request.method)
            if fault is not None:
                if fault.kind == "timeout":
                    await state.stall(fault.delay)
                elif fault.kind == "error500":
                    return operation_outcome(500, "exception", "模拟的 HIS 内部错误")
                elif fault.kind == "throttle":
                    return _throttled(fault.status, _retry_after_header(fault.retry_after, fault.retry_after_date))
                else:
                    return operation_outcome(fault.status, "business-rule", fault.message)
            try:
                return await handler(request)
            except FhirProblem as problem:
                return operation_outcome(problem.status, problem.code, problem.diagnostics)
        return wrapped

    def resource_type(request: web.Request) -> str:
        name = request.match_info["type"]
        if name not in RESOURCE_TYPES:
            raise FhirProblem(404, "not-supported", f"不支持的资源类型：{name}")
        return name

    def base(request: web.Request) -> str:
        return f"{request.scheme}://{request.host}{prefix}/{request.match_info['code']}/fhir"

    @fhir
    async def metadata(request: web.Request) -> web.Response:
        return _fhir_json(capability_statement(request.match_info["code"], base(request)))

    @fhir
    async def search(request: web.Request) -> web.Response:
        name = resource_type(request)
        store = state.store(request.match_info["code"])
        found = store.search(name, list(request.query.items()))
        root = base(request)
        return _fhir_json({
            "resourceType": "Bundle", "type": "searchset", "total": len(found),
            "link": [{"relation": "self", "url": f"{root}/{name}"}],
            "entry": [{"fullUrl": f"{root}/{name}/{r['id']}", "resource": r, "search": {"mode": "match"}}
                      for r in found],
        })

    @fhir
    async def read(request: web.Request) -> web.Response:
        name = resource_type(request)
        resource = state.store(request.match_info["code"]).read(name, request.match_info["id"])
        return _fhir_json(resource, headers={"ETag": f'W/"{resource["meta"]["versionId"]}"'})

    @fhir
    async def create(request: web.Request) -> web.Response:
        name = resource_type(request)
        body = await _body(request)
        store = state.store(request.match_info["code"])
        stored, created = store.create(name, body, request.headers.get("If-None-Exist"))
        location = f"{base(request)}/{name}/{stored['id']}/_history/{stored['meta']['versionId']}"
        headers = {"Location": location, "ETag": f'W/"{stored["meta"]["versionId"]}"'}
        if request.headers.get("Prefer", "") == "return=minimal":
            return web.Response(status=201 if created else 200, headers=headers)
        return _fhir_json(stored, 201 if created else 200, headers)

    @fhir
    async def update(request: web.Request) -> web.Response:
        name = resource_type(request)
        body = await _body(request)
        store = state.store(request.match_info["code"])
        stored = store.update(name, request.match_info["id"], body, request.headers.get("If-Match"))
        headers = {"ETag": f'W/"{stored["meta"]["versionId"]}"'}
        if request.headers.get("Prefer", "") == "return=minimal":
            return web.Response(status=200, headers=headers)
        return _fhir_json(stored, 200, headers)

    async def patients(request: web.Request) -> web.Response:
        store = state.store(request.match_info["code"])
        return _json({"institution": store.code, "items": store.demo_listing()})

    async def add_fault(request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except (ValueError, RecursionError):
            data = None
        fault, problem = _parse_fault(data)
        if fault is None:
            return _json({"error": problem}, 422)
        state.add_fault(fault)
        return _json({"fault": asdict(fault)}, 201)

    async def list_faults(request: web.Request) -> web.Response:
        return _json({"items": [asdict(f) for f in state.faults]})

    async def clear_faults(request: web.Request) -> web.Response:
        state.faults.clear()
        return _json({"items": []})

    async def launch_token(request: web.Request) -> web.Response:
        code = request.match_info["code"]
        try:
            data = await request.json()
        except (ValueError, RecursionError):
            data = None
        user_id = data.get("user_id") if isinstance(data, dict) else None
        patient = data.get("patient") if isinstance(data, dict) else None
        ttl = data.get("ttl", launch.DEFAULT_TTL) if isinstance(data, dict) else None
        if not isinstance(user_id, str) or not user_id.strip() or len(user_id) > 64:
            return _json({"error": "user_id 应为 HIS 用户编号"}, 422)
        if patient is not None and (not isinstance(patient, str) or len(patient) > 64):
            return _json({"error": "patient 应为病历号或就诊卡号"}, 422)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= 3600:
            return _json({"error": "ttl 应为 1–3600 秒"}, 422)
        token = launch.mint_launch_token(code, user_id.strip(), patient=patient, ttl=ttl)
        return _json({"launch_token": token, "expires_in": ttl}, 201)

    async def launch_key(request: web.Request) -> web.Response:
        code = request.match_info["code"]
        return _json({"institution": code, "algorithm": "EdDSA",
                      "public_key_pem": launch.demo_launch_public_key_pem(code)})

    async def put_personality(request: web.Request) -> web.Response:
        try:
            data = await request.json()
        except ValueError:
            data = None
        personality, problem = parse_personality(data)
        if personality is None:
            return _json({"error": problem}, 422)
        state.make_generic(request.match_info["code"], personality)
        return _json(personality.public())

    async def get_personality(request: web.Request) -> web.Response:
        personality = state.personalities.get(request.match_info["code"])
        return _json(personality.public() if personality else {"kind": "his"})

    async def delete_personality(request: web.Request) -> web.Response:
        state.make_his(request.match_info["code"])
        return _json({"kind": "his"})

    async def expire_tokens(request: web.Request) -> web.Response:
        personality = state.personalities.get(request.match_info["code"])
        return _json({"expired": personality.expire_tokens() if personality else 0})

    async def token(request: web.Request) -> web.Response:
        personality = state.personalities.get(request.match_info["code"])
        if personality is None:
            return _json({"error": "invalid_request", "error_description": "该机构的模拟 HIS 不提供令牌端点"}, 404)
        busy = personality.throttle()
        if busy is not None:
            return web.json_response({"error": "rate_limited"}, status=429, headers=busy)
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        token_url = str(request.url.with_query(None))
        try:
            answer = personality.issue_token(form, request.headers.get("Authorization", ""), token_url)
        except TokenRefused as refused:
            return _json({"error": refused.error, "error_description": refused.description}, refused.status)
        return web.json_response(answer, headers={"Cache-Control": "no-store"})

    async def on_shutdown(app: web.Application) -> None:
        state.stop()

    app.on_shutdown.append(on_shutdown)
    root = f"{prefix}/{{code:{CODE_PATTERN}}}"
    app.router.add_post(f"{prefix}/_faults", add_fault)
    app.router.add_get(f"{prefix}/_faults", list_faults)
    app.router.add_delete(f"{prefix}/_faults", clear_faults)
    app.router.add_get(f"{root}/_patients", patients)
    app.router.add_post(f"{root}/_launch-token", launch_token)
    app.router.add_get(f"{root}/_launch-key", launch_key)
    app.router.add_put(f"{root}/_personality", put_personality)
    app.router.add_get(f"{root}/_personality", get_personality)
    app.router.add_delete(f"{root}/_personality", delete_personality)
    app.router.add_delete(f"{root}/_tokens", expire_tokens)
    app.router.add_post(f"{root}/oauth/token", token)
    app.router.add_get(f"{root}/fhir/metadata", metadata)
    app.router.add_get(f"{root}/fhir/{{type}}", search)
    app.router.add_post(f"{root}/fhir/{{type}}", create)
    app.router.add_get(f"{root}/fhir/{{type}}/{{id}}", read)
    app.router.add_put(f"{root}/fhir/{{type}}/{{id}}", update)
    return app


def _parse_fault(data: Any) -> tuple[Fault | None, str]:
    if not isinstance(data, dict):
        return None, "请求体应为 JSON 对象"
    kind = data.get("kind")
    if kind not in FAULT_KINDS:
        return None, f"kind 应为 {' / '.join(FAULT_KINDS)}"
    count = data.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= 1000:
        return None, "count 应为 1–1000 的整数"
    delay = data.get("delay", 30.0)
    if not isinstance(delay, (int, float)) or isinstance(delay, bool) or not 0 <= delay <= 600:
        return None, "delay 应为 0–600 秒"
    status = data.get("status", 429 if kind == "throttle" else 422)
    if kind == "throttle" and status not in (429, 503):
        return None, "throttle 的 status 应为 429 或 503"
    if kind != "throttle" and (not isinstance(status, int) or not 400 <= status <= 499):
        return None, "status 应为 400–499"
    retry_after = data.get("retry_after", 1.0)
    if not isinstance(retry_after, (int, float)) or isinstance(retry_after, bool) or not 0 <= retry_after <= 3600:
        return None, "retry_after 应为 0–3600 秒"
    institution = data.get("institution")
    method = data.get("method")
    if institution is not None and not isinstance(institution, str):
        return None, "institution 应为机构代码"
    if method is not None and method not in ("GET", "POST", "PUT"):
        return None, "method 应为 GET、POST 或 PUT"
    message = data.get("message") or Fault.message
    if not isinstance(message, str):
        return None, "message 应为文本"
    return Fault(kind=kind, remaining=count, institution=institution, method=method, delay=float(delay),
                 status=status, message=message[:200], retry_after=float(retry_after),
                 retry_after_date=bool(data.get("retry_after_date", False))), ""


def _retry_after_header(seconds: float, as_date: bool) -> dict[str, str]:
    if as_date:
        moment = datetime.now(UTC) + timedelta(seconds=seconds)
        return {"Retry-After": format_datetime(moment, usegmt=True)}
    return {"Retry-After": str(int(seconds + 0.999))}


def _throttled(status: int, headers: dict[str, str]) -> web.Response:
    """What a rate limiter in front of a FHIR server answers: its own JSON, not an OperationOutcome."""
    return web.json_response({"message": "API rate limit exceeded", "status": status}, status=status,
                             headers=headers)


def capability_statement(code: str, base_url: str) -> dict[str, Any]:
    resources = []
    for name in RESOURCE_TYPES:
        resources.append({
            "type": name,
            "interaction": [{"code": "read"}, {"code": "search-type"}, {"code": "create"}, {"code": "update"}],
            "conditionalCreate": True,
            "versioning": "versioned-update",
            "searchParam": [{"name": p, "type": kind} for p, (kind, _) in SEARCH_PARAMETERS[name].items()],
        })
    statement = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": iso(now_utc()),
        "kind": "instance",
        "software": {"name": "Referral Cloud HIS simulator", "version": "1"},
        "implementation": {"description": f"HIS simulator for institution {code}", "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{"mode": "server", "resource": resources}],
    }
    CapabilityStatement.model_validate(statement)
    return statement


__all__ = ["Fault", "SimulatorState", "create_simulator_app", "PathOnlyAccessLogger"]
