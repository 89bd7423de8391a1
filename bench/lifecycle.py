"""python -m bench lifecycle: N concurrent simulated mini-program clients drive whole referral lifecycles
against the real app, then the bare stack (bench.bare) takes the same concurrency; the result is JSON.

How it runs, per backend (SQLite; PostgreSQL + Redis when DATABASE_URL and REDIS_URL are set):
- our platform is `python app.py serve --migrate --seed` in a process of its own, on a free loopback port,
  with a throw-away DATA_DIR (SQLite) or its own PostgreSQL database and Redis prefix (dropped afterwards);
  background tasks stay on (token keeper, dispatcher): they are part of our cost. The clients run in this
  process, so on a 2-core machine the server has one core and the load generator the other;
- setup (not timed): the target's approver publishes reserved beds in every department of SUBEI for two
  weeks; the demo patients' MRNs are read from each source institution's HIS simulator;
- warm-up (not timed): each client runs `--warmup` lifecycles;
- phase "lifecycle": each client runs `--lifecycles` lifecycles one after the other. A lifecycle is what the
  people involved do in the mini-program: the source doctor logs in (sandbox login code, wx-login), scans an
  inpatient's MRN, creates and submits the referral with the HIS pre-fill; the source approver logs in and
  approves (up-referrals); SUBEI's approver logs in and approves with a bed booking; the doctor reads the
  referral and its timeline (checked: status scheduled, one event per version);
- phase "transitions": each client first creates `--referrals` drafts (not timed), then drives each through
  submit, source approval and target approval with booking: one transition per request, which is the
  like-for-like comparison with one bare insert per request;
- phase "bare": `python -m bench.bare` (aiohttp + Tortoise, one insert per request) on the same database
  kind, `--inserts` requests per client at the same concurrency;
- phase "bare transition floor": the same server walks `--floor-referrals` drafts per client through three steps,
  each the least a transition must write on this stack (token lookup, referral read, version-conditional
  UPDATE, hash-chained event, outbox job, in one transaction): an upper bound for any implementation;
- phase "stats cost" (issue 12; one-process backends only): the transition phase again on the same database,
  first on the platform with the figures' work taken out (`python -m bench.nostats`: no figure columns, no
  survey invitations), then on the real platform once more. `stats_cost` compares the real platform (both of
  its transition phases) with the one without: transitions/s and server CPU per request, and says how far the
  two real runs differ (the machine's noise). Target: a transition stays within 10 % of its cost without the figures.

Numbers: lifecycles/s, transitions/s (timeline events written per second), per-endpoint p50/p99 (ms, as
the client sees them), bare inserts/s and the ratio transitions/s ÷ bare inserts/s. Targets (issue 4): the
ratio ≥ 0.5 and every endpoint's p99 < 250 ms at 32 clients. Beside them: `floor_ratio` (the floor's
transitions/s ÷ bare inserts/s: below 0.5, no implementation on this stack meets the ratio) and
`ratio_to_floor` (ours ÷ the floor: what our own layers cost). The run is bounded (fixed counts, `--timeout`
per backend) and talks to loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import aiohttp

from bench import bare
from bench.common import (
    RESULTS,
    BenchError,
    Http,
    Recorder,
    RequestFailed,
    ServerProcess,
    client_session,
    drop_redis_prefix,
    free_port,
    key32,
    machine,
    machine_busy_seconds,
    now_china,
    pg_database,
    pg_version,
    redis_version,
    run_id,
    services_env,
    write_result,
)

TARGET = "SUBEI"
SOURCES = ["DONGGUAN", "WENHE", "TANGWANG", "SANWAN", "GAOYOU", "BAOYING"]
FALLBACK_DEPARTMENT = "心血管内科"
REASON = "基层医院诊疗条件有限，需上级医院进一步诊治"
BOOKING_DAYS = 14
FINISHED_JOBS_SQL = "SELECT count(*) FROM outbox_job WHERE state IN ('done', 'dead')"
DRAIN_QUIET = 1.0  # seconds without a finished job: the dispatcher has caught up
DRAIN_TIMEOUT = 120.0
BEDS_PER_DAY = 500  # the API's maximum; far more than a run books

RATIO_TARGET = 0.5
STATS_COST_TARGET = 0.10  # issue 12: the figures' work adds at most 10 % to a transition
P99_TARGET_MS = 250.0
TARGET_CLIENTS = 32

L_CODE = "POST /wechat-sandbox/sandbox/login-code"
L_LOGIN = "POST /api/v1/auth/wx-login"
L_SCAN = "POST /api/v1/scan"
L_CREATE = "POST /api/v1/referrals (create+submit)"
L_DRAFT = "POST /api/v1/referrals (draft)"
L_SUBMIT = "POST /api/v1/referrals/{id}/submit"
L_SOURCE = "POST /api/v1/referrals/{id}/approve (source)"
L_TARGET = "POST /api/v1/referrals/{id}/approve (target, booking)"
L_DETAIL = "GET /api/v1/referrals/{id}"

# Environment variables the bench sets for its servers; inherited values would point them elsewhere.
SERVER_ENV = ("DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "HOST", "PORT", "PUBLIC_URL", "DATA_DIR", "SEED_DEMO",
              "JWT_SECRET", "DATA_KEY", "LOOKUP_KEY", "WECHAT_API_BASE", "EMBEDDED_HIS", "HIS_SIMULATOR_URL",
              "BACKGROUND_TASKS", "EMBEDDED_DISPATCHER", "LOG_LEVEL")


def demo_openid(institution_code: str, role: str) -> str:
    from directory.seed import demo_openid as seeded_openid

    return seeded_openid(institution_code, role)


@dataclass
class World:
    """What the clients need to know about the seeded consortium, read once in the setup."""

    institutions: dict[str, str]  # code → public id
    departments: dict[str, str]  # SUBEI department name → public id
    mrns: dict[str, list[str]]  # source code → MRNs of HIS inpatients (they have a pre-fill)
    days: list[str]  # bookable days (ISO)
    patients: dict[str, list[str]] = field(default_factory=dict)  # source code → platform patient ids seen

    def department_for(self, his_department: str) -> str:
        return self.departments.get(his_department) or self.departments[FALLBACK_DEPARTMENT]


# ------------------------------------------------------------------------------------------- clients

class AppHttp(Http):
    """The platform's client, knowing where the WeChat sandbox and the HIS simulator answer: mounted on the
    platform (embedded) or their own processes (the Procfile's topology)."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, recorder: Recorder, places: Places) -> None:
        super().__init__(session, base_url, recorder)
        self.places = places


@dataclass(frozen=True)
class Places:
    sandbox: str  # base URL of the WeChat sandbox (…/sandbox/login-code below it)
    his: str  # base URL of the HIS simulator (…/{code}/_patients below it)

    @classmethod
    def mounted(cls, base: str) -> Places:
        return cls(sandbox=f"{base}/wechat-sandbox", his=f"{base}/his-sim")


async def login(http: AppHttp, openid: str) -> str:
    """What the mini-program does on launch: wx.login (the sandbox mints the code), then our wx-login."""
    code = (await http.call(L_CODE, "POST", f"{http.places.sandbox}/sandbox/login-code", json_body={"openid": openid}))
    session = await http.call(L_LOGIN, "POST", "/api/v1/auth/wx-login", json_body={"code": code["code"]})
    return session["access_token"]


async def setup_world(http: AppHttp) -> World:
    """Read the directory, publish reserved beds at SUBEI, list the source HISes' inpatients."""
    approver = await login(http, demo_openid(TARGET, "approver"))
    page = await http.call("setup", "GET", "/api/v1/institutions?limit=200", token=approver)
    institutions = {i["code"]: i["id"] for i in page["items"]}
    page = await http.call("setup", "GET", f"/api/v1/institutions/{institutions[TARGET]}/departments?limit=200",
                           token=approver)
    departments = {d["name"]: d["id"] for d in page["items"]}
    first = now_china().date() + timedelta(days=1)
    days = [(first + timedelta(days=n)).isoformat() for n in range(BOOKING_DAYS)]
    for department_id in departments.values():
        await http.call("setup", "PUT", f"/api/v1/departments/{department_id}/capacity",
                        json_body={"days": [{"date": d, "capacity": BEDS_PER_DAY} for d in days]}, token=approver)
    mrns = {}
    for code in SOURCES:
        listing = await http.call("setup", "GET", f"{http.places.his}/{code}/_patients")
        mrns[code] = [p["mrn"] for p in listing["items"] if p["open_encounter"]]
        if not mrns[code]:
            raise BenchError(f"the HIS simulator of {code} lists no inpatient")
    return World(institutions=institutions, departments=departments, mrns=mrns, days=days)


OUR_ACTIONS = ("create", "submit", "approve")


def _check_scheduled(http: Http, detail: dict, source_approved: bool) -> int:
    """The referrer's view after target approval: scheduled, with our transitions on the timeline in order
    (background jobs may have added their own events since); returns how many transitions we made."""
    ours = [e["action"] for e in detail["timeline"] if e["action"] in OUR_ACTIONS]
    expected = ["create", "submit", "approve"] + (["approve"] if source_approved else [])
    if detail["status"] != "scheduled" or ours != expected:
        problem = f"unexpected referral: status {detail['status']}, events {[e['action'] for e in detail['timeline']]}"
        http.recorder.fail(L_DETAIL, 200, problem)
        raise RequestFailed(problem)
    return len(ours)


async def one_lifecycle(http: AppHttp, world: World, client: int, n: int) -> int:
    """One referral from scan to booked bed; returns the number of transitions (timeline events) it made."""
    source = SOURCES[client % len(SOURCES)]
    doctor = await login(http, demo_openid(source, "doctor"))
    mrns = world.mrns[source]
    mrn = mrns[(client // len(SOURCES) + n * len(SOURCES)) % len(mrns)]
    scan = await http.call(L_SCAN, "POST", "/api/v1/scan", json_body={"content": mrn}, token=doctor)
    patient_id = scan["patient"]["id"]
    world.patients.setdefault(source, [])
    if patient_id not in world.patients[source]:
        world.patients[source].append(patient_id)
    department = world.department_for((scan.get("his") or {}).get("department", ""))
    referral = await http.call(L_CREATE, "POST", "/api/v1/referrals", expect=201, token=doctor, json_body={
        "patient_id": patient_id, "target_institution_id": world.institutions[TARGET],
        "target_department_id": department, "urgency": "routine",
        "clinical": scan["prefill"] | {"referral_reason": REASON}, "submit": True, "confirm_duplicate": True})
    rid = referral["id"]
    source_approved = referral["status"] == "pending_source"
    if source_approved:
        approver = await login(http, demo_openid(source, "approver"))
        await http.call(L_SOURCE, "POST", f"/api/v1/referrals/{rid}/approve", json_body={"comment": "同意上转"},
                        token=approver)
    target = await login(http, demo_openid(TARGET, "approver"))
    await http.call(L_TARGET, "POST", f"/api/v1/referrals/{rid}/approve", token=target, json_body={
        "comment": "已预约床位", "admission": {"date": world.days[n % len(world.days)], "department_id": department}})
    detail = await http.call(L_DETAIL, "GET", f"/api/v1/referrals/{rid}", token=doctor)
    return _check_scheduled(http, detail, source_approved)


@dataclass
class Desk:
    """One client's three people, logged in once, and the drafts it prepared for the transition phase."""

    source: str
    doctor: str
    approver: str
    target: str
    drafts: list[tuple[str, str]] = field(default_factory=list)  # (referral id, department id)


async def prepare_desk(http: AppHttp, world: World, client: int, drafts: int) -> Desk:
    source = SOURCES[client % len(SOURCES)]
    desk = Desk(source, await login(http, demo_openid(source, "doctor")),
                await login(http, demo_openid(source, "approver")), await login(http, demo_openid(TARGET, "approver")))
    patients = world.patients.get(source) or []
    if not patients:
        raise BenchError(f"no patient of {source} was scanned in the lifecycle phase")
    department = world.departments[FALLBACK_DEPARTMENT]
    for n in range(drafts):
        referral = await http.call(L_DRAFT, "POST", "/api/v1/referrals", expect=201, token=desk.doctor, json_body={
            "patient_id": patients[(client + n) % len(patients)], "target_institution_id": world.institutions[TARGET],
            "target_department_id": department, "urgency": "routine", "confirm_duplicate": True,
            "clinical": {"diagnoses": [{"code": "I20.0", "name": "不稳定型心绞痛"}],
                         "chief_complaint": "反复胸闷胸痛1周，加重1天", "referral_reason": REASON}})
        desk.drafts.append((referral["id"], department))
    return desk


async def drive_drafts(http: AppHttp, world: World, desk: Desk) -> tuple[int, int]:
    """Submit, source-approve and target-approve each draft; returns (transitions made, drafts failed)."""
    transitions = failed = 0
    for n, (rid, department) in enumerate(desk.drafts):
        try:
            referral = await http.call(L_SUBMIT, "POST", f"/api/v1/referrals/{rid}/submit", json_body={},
                                       token=desk.doctor)
            transitions += 1
            if referral["status"] == "pending_source":
                await http.call(L_SOURCE, "POST", f"/api/v1/referrals/{rid}/approve", json_body={},
                                token=desk.approver)
                transitions += 1
            await http.call(L_TARGET, "POST", f"/api/v1/referrals/{rid}/approve", token=desk.target, json_body={
                "admission": {"date": world.days[n % len(world.days)], "department_id": department}})
            transitions += 1
        except RequestFailed:
            failed += 1
    return transitions, failed


# ---------------------------------------------------------------------------------------- phases

async def run_lifecycles(http: AppHttp, world: World, clients: int, per_client: int) -> dict:
    async def client(c: int) -> tuple[int, int, int]:
        done = failed = events = 0
        for n in range(per_client):
            try:
                events += await one_lifecycle(http, world, c, n)
                done += 1
            except RequestFailed:
                failed += 1
        return done, failed, events

    started = time.perf_counter()
    results = await asyncio.gather(*(client(c) for c in range(clients)))
    elapsed = time.perf_counter() - started
    done, failed, events = (sum(r[i] for r in results) for i in range(3))
    return {"clients": clients, "count": done, "failed": failed, "seconds": round(elapsed, 3),
            "per_s": round(done / elapsed, 2), "transitions": events,
            "transitions_per_s": round(events / elapsed, 1)}


async def prepare_desks(http: AppHttp, world: World, clients: int, per_client: int) -> list[Desk]:
    """Log every client's people in and create its drafts (not timed)."""
    return list(await asyncio.gather(*(prepare_desk(http, world, c, per_client) for c in range(clients))))


async def run_transitions(http: AppHttp, world: World, desks: list[Desk]) -> dict:
    started = time.perf_counter()
    results = await asyncio.gather(*(drive_drafts(http, world, desk) for desk in desks))
    elapsed = time.perf_counter() - started
    transitions, failed = sum(r[0] for r in results), sum(r[1] for r in results)
    return {"clients": len(desks), "referrals": sum(len(d.drafts) for d in desks), "failed": failed,
            "count": transitions, "seconds": round(elapsed, 3), "per_s": round(transitions / elapsed, 1)}


# --------------------------------------------------------------------------------------- backends

@dataclass
class Backend:
    name: str
    ours_env: dict[str, str]
    bare_db_url: str
    description: str
    finished_jobs: Callable[[], Awaitable[int]]  # outbox jobs done or dead so far in our database
    # The Procfile's topology (several web processes, worker processes, the stand-ins apart) needs state
    # every process shares: Redis. Embedded mode (SQLite, in-process KV) is one process.
    topology: bool = False


async def _sqlite_finished_jobs(path: Path) -> int:
    def count() -> int:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as conn:
            return conn.execute(FINISHED_JOBS_SQL).fetchone()[0]

    return await asyncio.to_thread(count)


async def _pg_finished_jobs(url: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
    try:
        return await conn.fetchval(FINISHED_JOBS_SQL)
    finally:
        await conn.close()


def _base_env() -> dict[str, str]:
    # The HIS simulator stands in for every member's HIS on both backends (production turns it off).
    return {k: v for k, v in os.environ.items() if k not in SERVER_ENV} | {
        "LOG_LEVEL": "INFO", "BACKGROUND_TASKS": "true", "EMBEDDED_HIS": "true"}


@contextlib.asynccontextmanager
async def sqlite_backend(tmp: Path) -> AsyncIterator[Backend]:
    database = tmp / "ours" / "referral.sqlite3"
    yield Backend("sqlite", {"DATA_DIR": str(tmp / "ours")}, f"sqlite://{tmp / 'bare.sqlite3'}",
                  f"SQLite {sqlite3.sqlite_version} (WAL), in-process KV", lambda: _sqlite_finished_jobs(database))


@contextlib.asynccontextmanager
async def services_backend(tmp: Path) -> AsyncIterator[Backend]:
    database_url, redis_url = services_env()
    if not database_url or not redis_url:
        raise BenchError("the PostgreSQL + Redis run needs DATABASE_URL and REDIS_URL")
    rid = run_id()
    prefix = f"rc-bench-{rid}:"
    description = f"PostgreSQL {await pg_version(database_url)} + Redis {await redis_version(redis_url)}"
    async with pg_database(database_url, f"rc_bench_{rid}") as ours_url, \
            pg_database(database_url, f"rc_bench_bare_{rid}") as bare_url:
        try:
            yield Backend("postgresql+redis", {
                "DATABASE_URL": ours_url, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix,
                "DATA_DIR": str(tmp / "ours"), "JWT_SECRET": key32(), "DATA_KEY": key32(), "LOOKUP_KEY": key32()},
                bare_url, description, lambda: _pg_finished_jobs(ours_url), topology=True)
        finally:
            await drop_redis_prefix(redis_url, prefix)


@contextlib.asynccontextmanager
async def serving(args: list[str], env: dict[str, str], log: Path, port: int,
                  ready: str = "/healthz") -> AsyncIterator[ServerProcess]:
    server = ServerProcess(args, env, log)
    server.start()
    try:
        await server.wait_ready(f"http://127.0.0.1:{port}{ready}")
        yield server
    finally:
        server.stop()


OURS = ("web", "worker")  # the processes whose CPU is ours; the stand-ins (sandbox, his) are reported apart


def _cpu(processes: dict[str, list[ServerProcess]]) -> dict[str, float] | None:
    by_role = {role: [p.cpu_seconds() for p in group] for role, group in processes.items()}
    if any(v is None for values in by_role.values() for v in values):
        return None
    return {role: sum(values) for role, values in by_role.items()}  # type: ignore[arg-type]


@contextlib.contextmanager
def server_load(processes: dict[str, list[ServerProcess]], recorder: Recorder, result: dict,
                per: str | None = None) -> Iterator[None]:
    """Add to a phase's result the requests it made and the server CPU they cost, background jobs included
    (the block covers the phase and the outbox drain after it), split by process role (web, worker, sandbox,
    his), and how busy server, client and machine were. `per` names the phase's unit (its result's "count")
    to report CPU per unit by role too (e.g. per lifecycle)."""
    before, client_before, machine_before = _cpu(processes), time.process_time(), machine_busy_seconds()
    started = time.perf_counter()
    yield
    seconds = time.perf_counter() - started
    after, client_after, machine_after = _cpu(processes), time.process_time(), machine_busy_seconds()
    requests = sum(len(v) for v in recorder.latencies.values()) + recorder.failure_count
    result["requests"] = requests
    result["requests_per_s"] = round(requests / result["seconds"], 1) if result["seconds"] else None
    if before is not None and after is not None:
        by_role = {role: after[role] - before[role] for role in after}
        cpu = sum(v for role, v in by_role.items() if role in OURS)
        result["processes"] = {role: sum(p.processes for p in group) for role, group in processes.items()}
        result["server_cpu_s_by_process"] = {role: round(v, 2) for role, v in by_role.items()}
        if per and result.get("count"):
            result[f"server_cpu_ms_per_{per}_by_process"] = {
                role: round(v * 1000 / result["count"], 1) for role, v in by_role.items()}
        result["server_cpu_s"] = round(cpu, 2)  # ours: web and worker processes
        result["server_busy"] = round(cpu / seconds, 2)  # 1.0 = one core saturated
        result["server_cpu_ms_per_request"] = round(cpu * 1000 / requests, 2) if requests else None
    result["client_busy"] = round((client_after - client_before) / seconds, 2)
    if machine_before is not None and machine_after is not None:
        # Every process on the machine (databases and anything else running): up to the number of cores.
        result["machine_busy"] = round((machine_after - machine_before) / seconds, 2)


async def drain_outbox(backend: Backend, result: dict, jobs_before: int) -> int:
    """Wait (bounded) until the outbox dispatcher has finished the jobs a phase caused, so that the next phase
    does not pay for them; records how long that took after the phase's last request and how many jobs ran."""
    started = time.perf_counter()
    deadline = started + DRAIN_TIMEOUT
    last, steady_since = await backend.finished_jobs(), time.perf_counter()
    while time.perf_counter() - steady_since < DRAIN_QUIET and time.perf_counter() < deadline:
        await asyncio.sleep(0.1)
        now = await backend.finished_jobs()
        if now != last:
            last, steady_since = now, time.perf_counter()
    result["background_jobs"] = last - jobs_before
    result["outbox_drain_s"] = round(max(steady_since - started, 0.0), 2)
    return last


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def platform(backend: Backend, tmp: Path, opts: argparse.Namespace, port: int,
                   ) -> AsyncIterator[tuple[dict[str, list[ServerProcess]], Places]]:
    """Our platform, serving on `port`: one embedded process, or the Procfile's topology (the WeChat sandbox
    and the HIS simulator in processes of their own, `serve --workers N` with EMBEDDED_DISPATCHER=false, and
    `worker` processes carrying the outbox, all sharing Redis and the stand-ins)."""
    base = f"http://127.0.0.1:{port}"
    env = _base_env() | backend.ours_env | {"HOST": "127.0.0.1", "PORT": str(port)}
    if opts.no_background:
        env["BACKGROUND_TASKS"] = "false"
    if not backend.topology:
        _say(f"[{backend.name}] starting the platform (migrate, seed) on port {port}, one process")
        async with serving(["app.py", "serve", "--migrate", "--seed"], env, tmp / "ours.log", port) as server:
            yield {"web": [server]}, Places.mounted(base)
        return
    sandbox_port, his_port = free_port(), free_port()
    places = Places(sandbox=f"http://127.0.0.1:{sandbox_port}", his=f"http://127.0.0.1:{his_port}/his-sim")
    env |= {"WECHAT_API_BASE": places.sandbox, "EMBEDDED_HIS": "false", "HIS_SIMULATOR_URL": places.his,
            "EMBEDDED_DISPATCHER": "false"}
    _say(f"[{backend.name}] starting the Procfile's topology: {opts.web} web on port {port}, {opts.workers} "
         f"worker, sandbox on {sandbox_port}, HIS simulator on {his_port}")
    async with contextlib.AsyncExitStack() as stack:
        sandbox = await stack.enter_async_context(serving(
            ["-m", "wechat.sandbox", "--port", str(sandbox_port)], env, tmp / "sandbox.log", sandbox_port,
            ready="/sandbox/stats"))
        await _register_templates(places.sandbox, env)
        his = await stack.enter_async_context(serving(
            ["-m", "his.simulator", "--port", str(his_port)], env, tmp / "his.log", his_port,
            ready="/his-sim/SUBEI/fhir/metadata"))
        web = await stack.enter_async_context(serving(
            ["app.py", "serve", "--migrate", "--seed", "--workers", str(opts.web)], env, tmp / "ours.log", port))
        web.processes = opts.web
        workers = []
        for n in range(opts.workers):
            worker = ServerProcess(["app.py", "worker"], env, tmp / f"worker-{n}.log")
            worker.start()
            stack.callback(worker.stop)
            workers.append(worker)
        yield {"web": [web], "worker": workers, "sandbox": [sandbox], "his": [his]}, places


async def _register_templates(sandbox_url: str, env: dict[str, str]) -> None:
    """A standalone sandbox knows only its built-in templates: register ours, as the README says."""
    from notifications.templates import TEMPLATES, sandbox_fields, template_id
    from settings import Settings

    settings = Settings.from_env(env)
    async with aiohttp.ClientSession() as session:
        for template in TEMPLATES.values():
            async with session.post(f"{sandbox_url}/sandbox/templates", json={
                    "template_id": template_id(settings, template.key), "fields": sandbox_fields(template),
                    "title": template.title}) as resp:
                if resp.status != 200:
                    raise BenchError(f"the sandbox refused template {template.key}: {await resp.text()}")


async def run_backend(backend: Backend, tmp: Path, opts: argparse.Namespace) -> dict:
    clients = opts.clients
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    lifecycle, transitions, bare_recorder, floor_recorder = Recorder(), Recorder(), Recorder(), Recorder()
    setup = Recorder()
    port = free_port()
    lifecycles: dict = {}
    trans: dict = {}
    bare_result: dict = {}
    floor_result: dict = {}
    async with platform(backend, tmp, opts, port) as (processes, places), client_session(clients) as session:
        base = f"http://127.0.0.1:{port}"
        setup_http = AppHttp(session, base, setup, places)
        world = await setup_world(setup_http)
        if opts.warmup:
            _say(f"[{backend.name}] warm-up: {clients} clients × {opts.warmup} lifecycles")
            await run_lifecycles(AppHttp(session, base, Recorder(), places), world, clients, opts.warmup)
        jobs = await drain_outbox(backend, {}, 0)
        _say(f"[{backend.name}] lifecycles: {clients} clients × {opts.lifecycles}")
        with server_load(processes, lifecycle, lifecycles, per="lifecycle"):
            lifecycles |= await run_lifecycles(AppHttp(session, base, lifecycle, places), world, clients,
                                               opts.lifecycles)
            jobs = await drain_outbox(backend, lifecycles, jobs)
        _say(f"[{backend.name}] transitions: {clients} clients × {opts.referrals} referrals")
        desks = await prepare_desks(setup_http, world, clients, opts.referrals)
        jobs = await drain_outbox(backend, {}, jobs)
        with server_load(processes, transitions, trans, per="transition"):
            trans |= await run_transitions(AppHttp(session, base, transitions, places), world, desks)
            await drain_outbox(backend, trans, jobs)
        stats_runs: dict[str, dict] = {}
        if opts.stats_cost and not backend.topology:
            # One embedded process: restarted on the same database without the figures' work, then with it again.
            # (In the Procfile's topology the platform is several processes; not measured there yet.)
            [server] = processes["web"]
            server.stop()
            for label, args in (("without_stats", ["-m", "bench.nostats"]), ("with_stats_again", ["app.py"])):
                _say(f"[{backend.name}] stats cost, {label}: {clients} clients × {opts.referrals} referrals")
                stats_runs[label] = await _transition_phase(backend, tmp, server.env, port, args, session, world,
                                                            opts, label, places)
    port = free_port()
    # The same number of web processes on one port as ours (the floor's outbox job is never run, so no worker).
    bare_web = opts.web if backend.topology else 1
    _say(f"[{backend.name}] bare stack ({bare_web} process(es)): {clients} clients × {opts.inserts} inserts")
    async with serving(["-m", "bench.bare", "--port", str(port), "--db-url", backend.bare_db_url, "--workers",
                        str(bare_web)], _base_env(), tmp / "bare.log", port) as server:
        server.processes = bare_web
        bare_processes = {"web": [server]}
        with server_load(bare_processes, bare_recorder, bare_result):
            bare_result |= await bare.drive(f"http://127.0.0.1:{port}", clients, opts.inserts, bare_recorder)
        _say(f"[{backend.name}] bare transition floor: {clients} clients × {opts.floor_referrals} referrals")
        with server_load(bare_processes, floor_recorder, floor_result, per="transition"):
            floor_result |= await bare.drive_transitions(f"http://127.0.0.1:{port}", clients, opts.floor_referrals,
                                                         floor_recorder)
    for result, recorder, label in ((bare_result, bare_recorder, bare.LABEL),
                                    (floor_result, floor_recorder, bare.TRANSITION_LABEL)):
        latency = recorder.summary().get(label, {})
        result |= {"p50_ms": latency.get("p50_ms"), "p99_ms": latency.get("p99_ms")}
    endpoints = {"lifecycle": lifecycle.summary(), "transitions": transitions.summary(),
                 "bare": bare_recorder.summary() | floor_recorder.summary()}
    ratio = trans["per_s"] / bare_result["per_s"] if bare_result["per_s"] else None
    # What the stack itself allows: the floor of a transition against the bare insert, and ours against it.
    floor_ratio = (floor_result["per_s"] / bare_result["per_s"]
                   if bare_result["per_s"] and floor_result["per_s"] is not None else None)
    ratio_to_floor = trans["per_s"] / floor_result["per_s"] if floor_result["per_s"] else None
    ratio_in_lifecycles = (lifecycles["transitions_per_s"] / bare_result["per_s"]) if bare_result["per_s"] else None
    # Server CPU per request is what other load on the machine disturbs least: bare ÷ ours per request.
    cpu_ours, cpu_bare = trans.get("server_cpu_ms_per_request"), bare_result.get("server_cpu_ms_per_request")
    ratio_by_cpu = cpu_bare / cpu_ours if cpu_ours and cpu_bare else None
    return {
        "database": backend.description,
        "load_average_at_start": load_at_start,
        "stats_cost": _stats_cost(trans, stats_runs) if stats_runs else None,
        "lifecycles": lifecycles,
        "transitions": trans,
        "bare_insert": bare_result,
        "bare_transition_floor": floor_result,
        "ratio": round(ratio, 3) if ratio is not None else None,
        "floor_ratio": round(floor_ratio, 3) if floor_ratio is not None else None,
        "ratio_to_floor": round(ratio_to_floor, 3) if ratio_to_floor is not None else None,
        "ratio_in_lifecycles": round(ratio_in_lifecycles, 3) if ratio_in_lifecycles is not None else None,
        "ratio_by_server_cpu": round(ratio_by_cpu, 3) if ratio_by_cpu is not None else None,
        "endpoints": endpoints,
        "targets": _targets(ratio, endpoints, clients) | {
            # Whether the stack could meet the targets at all: the floor's own ratio and p99 against them.
            "floor_ratio_meets_ratio_min": floor_ratio is not None and floor_ratio >= RATIO_TARGET,
            "floor_p99_ms": floor_result.get("p99_ms")},
        "failures": (setup.failures + lifecycle.failures + transitions.failures + bare_recorder.failures
                     + floor_recorder.failures + [f for run in stats_runs.values() for f in run["failures"]]),
    }


async def _transition_phase(backend: Backend, tmp: Path, env: dict[str, str], port: int, args: list[str],
                            session, world: World, opts: argparse.Namespace, label: str, places: Places) -> dict:
    """The transition phase on a server started with `args` on the same database (its drafts not timed)."""
    result: dict = {}
    recorder = Recorder()
    async with serving([*args, "serve"], env, tmp / f"{label}.log", port) as server:
        base = f"http://127.0.0.1:{port}"
        desks = await prepare_desks(AppHttp(session, base, Recorder(), places), world, opts.clients, opts.referrals)
        jobs = await drain_outbox(backend, {}, 0)
        with server_load({"web": [server]}, recorder, result, per="transition"):
            result |= await run_transitions(AppHttp(session, base, recorder, places), world, desks)
            await drain_outbox(backend, result, jobs)
    result["endpoints"] = recorder.summary()
    result["failures"] = recorder.failures
    return result


def _stats_cost(first: dict, runs: dict[str, dict]) -> dict:
    """The real platform's two transition phases against the one without the figures' work."""
    without, again = runs["without_stats"], runs["with_stats_again"]
    with_per_s = (first["per_s"] + again["per_s"]) / 2
    noise = abs(first["per_s"] - again["per_s"]) / with_per_s if with_per_s else None
    slowdown = 1 - with_per_s / without["per_s"] if without["per_s"] else None
    cpu = [r.get("server_cpu_ms_per_request") for r in (first, again, without)]
    cpu_with = (cpu[0] + cpu[1]) / 2 if cpu[0] and cpu[1] else None
    cpu_extra = cpu_with / cpu[2] - 1 if cpu_with and cpu[2] else None
    return {
        "transitions_per_s": {"with_stats": first["per_s"], "without_stats": without["per_s"],
                              "with_stats_again": again["per_s"]},
        "server_cpu_ms_per_request": {"with_stats": cpu[0], "without_stats": cpu[2], "with_stats_again": cpu[1]},
        "slowdown": round(slowdown, 3) if slowdown is not None else None,
        "cpu_extra": round(cpu_extra, 3) if cpu_extra is not None else None,
        "noise_between_runs_with_stats": round(noise, 3) if noise is not None else None,
        "target": STATS_COST_TARGET,
        "met": slowdown is not None and slowdown <= STATS_COST_TARGET,
        "without_stats_run": without, "with_stats_again_run": again,
    }


def _targets(ratio: float | None, endpoints: dict[str, dict], clients: int) -> dict:
    """Issue 4's targets, judged on our endpoints in both phases (not on the bare reference)."""
    worst = max(((phase, label, stats["p99_ms"]) for phase in ("lifecycle", "transitions")
                 for label, stats in endpoints[phase].items() if stats["p99_ms"] is not None),
                key=lambda row: row[2], default=None)
    over = sorted(f"{phase}: {label}" for phase in ("lifecycle", "transitions")
                  for label, stats in endpoints[phase].items()
                  if stats["p99_ms"] is not None and stats["p99_ms"] >= P99_TARGET_MS)
    return {"clients": clients, "at_target_concurrency": clients == TARGET_CLIENTS,
            "ratio_min": RATIO_TARGET, "ratio_met": ratio is not None and ratio >= RATIO_TARGET,
            "p99_max_ms": P99_TARGET_MS, "p99_met": worst is not None and not over,
            "p99_worst": {"phase": worst[0], "endpoint": worst[1], "p99_ms": worst[2]} if worst else None,
            "p99_over_target": over}


BACKENDS: dict[str, Callable[[Path], contextlib.AbstractAsyncContextManager[Backend]]] = {
    "sqlite": sqlite_backend, "services": services_backend}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench lifecycle", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=TARGET_CLIENTS, help="concurrent clients (default 32)")
    parser.add_argument("--lifecycles", type=int, default=4, help="timed lifecycles per client (default 4)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed lifecycles per client first (default 1)")
    parser.add_argument("--referrals", type=int, default=4,
                        help="referrals per client in the transition phase (default 4)")
    parser.add_argument("--inserts", type=int, default=40, help="bare inserts per client (default 40)")
    parser.add_argument("--floor-referrals", type=int, default=12,
                        help="referrals per client walked through the bare transition floor (default 12: three "
                             "steps each, about as many requests as the bare inserts)")
    parser.add_argument("--web", type=int, default=os.cpu_count() or 1,
                        help="web processes on one port in the Procfile's topology (PostgreSQL + Redis), and "
                             "bare processes likewise (default: one per core)")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes carrying the outbox in the Procfile's topology (default 1)")
    parser.add_argument("--backends", default="",
                        help="comma-separated: sqlite, services (default: sqlite, and services when "
                             "DATABASE_URL and REDIS_URL are set)")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds allowed per backend (default 900)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the JSON (default bench/results/lifecycle-<date>.json)")
    parser.add_argument("--no-save", action="store_true", help="print only, write no file")
    parser.add_argument("--no-stats-cost", dest="stats_cost", action="store_false",
                        help="skip the stats-cost phases (the transition phase without the figures' work, then again)")
    parser.add_argument("--no-background", action="store_true",
                        help="diagnosis only: run the platform without its background tasks (outbox dispatcher, "
                             "token keeper) to see how much of its cost they are; not a valid measurement")
    opts = parser.parse_args(argv)
    if min(opts.clients, opts.lifecycles, opts.referrals, opts.inserts, opts.floor_referrals, opts.web,
           opts.workers) < 1 or opts.warmup < 0:
        parser.error("counts must be positive (warm-up may be 0)")
    names = [n.strip() for n in opts.backends.split(",") if n.strip()]
    if not names:
        names = ["sqlite"] + (["services"] if all(services_env()) else [])
    unknown = set(names) - set(BACKENDS)
    if unknown:
        parser.error(f"unknown backend(s): {', '.join(sorted(unknown))}")
    opts.backends = names
    return opts


async def main(argv: list[str]) -> dict:
    opts = parse_args(argv)
    result: dict = {
        "bench": "lifecycle",
        "machine": machine(),
        "setup": {"clients": opts.clients, "lifecycles_per_client": opts.lifecycles, "warmup_per_client": opts.warmup,
                  "referrals_per_client": opts.referrals, "bare_inserts_per_client": opts.inserts,
                  "floor_referrals_per_client": opts.floor_referrals,
                  "server": "SQLite: one embedded process (python app.py serve --migrate --seed; python -m "
                            "bench.bare). PostgreSQL + Redis: the Procfile's topology: python app.py serve --workers "
                            f"{opts.web} (EMBEDDED_DISPATCHER=false), {opts.workers} python app.py worker, python -m "
                            "wechat.sandbox and python -m his.simulator shared by all; python -m bench.bare "
                            f"--workers {opts.web}. Clients in the bench process, loopback HTTP with keep-alive",
                  "web_processes": opts.web, "worker_processes": opts.workers,
                  "lifecycle": "doctor login, scan, create+submit, source approver login + approve (up-referrals), "
                               "target approver login + approve with booking, doctor reads the timeline",
                  "latency": "milliseconds per request as the client sees it",
                  "background_tasks": not opts.no_background},
        "backends": {},
    }
    for name in opts.backends:
        with tempfile.TemporaryDirectory(prefix=f"bench-lifecycle-{name}-") as tmp:
            async with asyncio.timeout(opts.timeout), BACKENDS[name](Path(tmp)) as backend:
                result["backends"][backend.name] = await run_backend(backend, Path(tmp), opts)
    result["summary"] = {name: {"lifecycles_per_s": b["lifecycles"]["per_s"],
                                "transitions_per_s": b["transitions"]["per_s"],
                                "bare_inserts_per_s": b["bare_insert"]["per_s"], "ratio": b["ratio"],
                                "bare_transition_floor_per_s": b["bare_transition_floor"]["per_s"],
                                "floor_ratio": b["floor_ratio"], "ratio_to_floor": b["ratio_to_floor"],
                                "ratio_met": b["targets"]["ratio_met"], "p99_met": b["targets"]["p99_met"],
                                "p99_worst_ms": (b["targets"]["p99_worst"] or {}).get("p99_ms"),
                                "stats_slowdown": (b["stats_cost"] or {}).get("slowdown"),
                                "stats_cpu_extra": (b["stats_cost"] or {}).get("cpu_extra"),
                                "stats_noise": (b["stats_cost"] or {}).get("noise_between_runs_with_stats")}
                         for name, b in result["backends"].items()}
    if not opts.no_save:
        out = opts.out or RESULTS / f"lifecycle-{now_china().strftime('%Y%m%d-%H%M')}.json"
        _say(f"written to {write_result(result, out)}")
    return result


if __name__ == "__main__":
    import json

    print(json.dumps(asyncio.run(main(sys.argv[1:])), ensure_ascii=False, indent=2))
