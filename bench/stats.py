"""python -m bench stats: latency of every stats endpoint over a generated history of N referrals (default
1,000,000) and its survey answers, at 8 concurrent clients, on SQLite and on PostgreSQL + Redis.

Per backend: a throw-away database is migrated, `python app.py seed-history --referrals N` fills it (timed:
the generator's speed is part of the result), ANALYZE, then `python app.py serve` runs in a process of its own
on a free loopback port. The clients (in this process) log in as the consortium office (every institution)
and as the lead hospital's admin (its own referrals) and call every JSON figure with all filters off and with
all filters on (a one-year range, a direction, an institution, a department), in both scopes, round-robin,
`--rounds` times each; a few CSV and XLSX exports are timed beside them. Targets (issue 12): every JSON
figure's p99 < 200 ms on PostgreSQL and < 500 ms on SQLite."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from bench.common import (
    RESULTS,
    ROOT,
    BenchError,
    Http,
    Recorder,
    RequestFailed,
    client_session,
    free_port,
    key32,
    machine,
    now_china,
    pg_database,
    pg_version,
    run_id,
    services_env,
    write_result,
)
from bench.lifecycle import SERVER_ENV, AppHttp, Places, login, serving

P99_TARGETS_MS = {"sqlite": 500.0, "postgresql": 200.0}
CLIENTS = 8
FIGURES = [("waiting-times", {"group_by": "direction"}), ("waiting-times", {"group_by": "month"}),
           ("waiting-times", {"group_by": "quarter,direction"}), ("waiting-times", {"group_by": "target_department"}),
           ("summary", {}), ("table1", {}), ("satisfaction", {"period": "quarter"})]


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _env(extra: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in SERVER_ENV} | {
        "LOG_LEVEL": "WARNING", "EMBEDDED_HIS": "true", "BACKGROUND_TASKS": "true"} | extra


def _run(args: list[str], env: dict[str, str], timeout: float) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout


async def _analyze(database_url: str, sqlite_path: Path | None) -> None:
    if sqlite_path is not None:
        with contextlib.closing(sqlite3.connect(sqlite_path)) as conn:
            conn.execute("ANALYZE")
        return
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def _variants(http: Http, office: str, admin: str) -> list[tuple[str, str, dict]]:
    """(label, token, params) for every figure × filters off/on × consortium/institution scope."""
    page = await http.call("setup", "GET", "/api/v1/institutions?limit=200", token=office)
    institutions = {i["code"]: i["id"] for i in page["items"]}
    page = await http.call("setup", "GET", f"/api/v1/institutions/{institutions['SUBEI']}/departments",
                           token=office)
    department = page["items"][0]["id"]
    today = now_china().date()
    filters = {"from": (today - timedelta(days=365)).isoformat(), "to": today.isoformat(), "direction": "up",
               "institution_id": institutions["SUBEI"], "department_id": department}
    variants = []
    for path, params in FIGURES:
        for scope, token in (("consortium", office), ("institution", admin)):
            for filtered in (False, True):
                label = (f"GET /stats/{path}{'?' + '&'.join(f'{k}={v}' for k, v in params.items()) if params else ''}"
                         f" [{scope}, filters {'on' if filtered else 'off'}]")
                variants.append((label, token, params | (filters if filtered else {})))
    return variants


def _query(params: dict) -> str:
    from urllib.parse import urlencode

    return urlencode(params)


async def _drive(http: Http, variants: list[tuple[str, str, dict]], rounds: int, clients: int) -> float:
    """Every variant `rounds` times, dealt round-robin to `clients` concurrent clients."""
    calls = [variants[n % len(variants)] for n in range(rounds * len(variants))]

    async def client(c: int) -> None:
        for label, token, params in calls[c::clients]:
            path = label.split(" ")[1].split("?")[0]
            with contextlib.suppress(RequestFailed):
                await http.call(label, "GET", f"/api/v1{path}?{_query(params)}", token=token)

    started = time.perf_counter()
    await asyncio.gather(*(client(c) for c in range(clients)))
    return time.perf_counter() - started


async def _exports(session, base: str, token: str, recorder: Recorder, times: int) -> None:
    for path, params in (("summary", {}), ("waiting-times", {"group_by": "month"}), ("satisfaction", {})):
        for fmt in ("csv", "xlsx"):
            label = f"GET /stats/{path} format={fmt}"
            for _ in range(times):
                started = time.perf_counter()
                async with session.get(f"{base}/api/v1/stats/{path}?{_query(params | {'format': fmt})}",
                                       headers={"Authorization": f"Bearer {token}"}) as resp:
                    body = await resp.read()
                    if resp.status != 200 or not body:
                        recorder.fail(label, resp.status, body[:200].decode(errors="replace"))
                        continue
                recorder.ok(label, time.perf_counter() - started)


async def run_backend(name: str, env: dict[str, str], sqlite_path: Path | None, opts, tmp: Path) -> dict:
    started = time.perf_counter()
    _run(["app.py", "migrate"], env, 300)
    _say(f"[{name}] generating {opts.referrals} referrals over {opts.years} years")
    out = _run(["app.py", "seed-history", "--referrals", str(opts.referrals), "--years", str(opts.years)], env,
               opts.timeout)
    generation_s = time.perf_counter() - started
    _say(f"[{name}] {out.strip().splitlines()[-1]}")
    await _analyze(env.get("DATABASE_URL", ""), sqlite_path)
    port = free_port()
    recorder, exports, setup = Recorder(), Recorder(), Recorder()
    async with serving(["app.py", "serve"], env | {"HOST": "127.0.0.1", "PORT": str(port)}, tmp / f"{name}.log",
                       port), client_session(opts.clients) as session:
        base = f"http://127.0.0.1:{port}"
        # The sandbox is mounted on the platform here: the lifecycle bench's client knows where to find it.
        setup_http = AppHttp(session, base, setup, Places.mounted(base))
        office = await login(setup_http, "demo_subei_consortium_admin")
        admin = await login(setup_http, "demo_subei_admin")
        variants = await _variants(setup_http, office, admin)
        _say(f"[{name}] warm-up, then {len(variants)} variants × {opts.rounds} rounds at {opts.clients} clients")
        await _drive(Http(session, base, Recorder()), variants, 1, opts.clients)
        seconds = await _drive(Http(session, base, recorder), variants, opts.rounds, opts.clients)
        await _exports(session, base, office, exports, max(1, opts.rounds // 4))
    endpoints = recorder.summary()
    kind = "sqlite" if sqlite_path is not None else "postgresql"
    worst = max(endpoints.items(), key=lambda kv: kv[1]["p99_ms"] or 0)
    over = sorted(label for label, row in endpoints.items() if (row["p99_ms"] or 0) >= P99_TARGETS_MS[kind])
    return {"generation": {"referrals": opts.referrals, "years": opts.years, "seconds": round(generation_s, 1),
                           "output": out.strip().splitlines()[-1]},
            "requests": sum(r["count"] for r in endpoints.values()), "seconds": round(seconds, 1),
            "endpoints": endpoints, "exports": exports.summary(),
            "targets": {"p99_max_ms": P99_TARGETS_MS[kind], "met": not over and recorder.failure_count == 0,
                        "p99_worst": {"endpoint": worst[0], "p99_ms": worst[1]["p99_ms"]}, "over_target": over},
            "failures": setup.failures + recorder.failures + exports.failures}


async def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench stats", description=__doc__.splitlines()[0])
    parser.add_argument("--referrals", type=int, default=1_000_000, help="generated referrals (default 1000000)")
    parser.add_argument("--years", type=float, default=3.0, help="years of history (default 3)")
    parser.add_argument("--clients", type=int, default=CLIENTS, help="concurrent clients (default 8)")
    parser.add_argument("--rounds", type=int, default=8, help="calls of each variant (default 8)")
    parser.add_argument("--backends", default="", help="comma-separated: sqlite, services (default: both when "
                                                       "DATABASE_URL and REDIS_URL are set)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds allowed for the generation")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--no-save", action="store_true")
    opts = parser.parse_args(argv)
    names = [n for n in opts.backends.split(",") if n] or (["sqlite"] + (["services"] if all(services_env()) else []))
    result: dict = {"bench": "stats", "machine": machine(), "setup": {
        "referrals": opts.referrals, "years": opts.years, "clients": opts.clients, "rounds": opts.rounds,
        "figures": [f"{p} {q}" for p, q in FIGURES],
        "variants": "every figure × filters off/on (one year, direction up, SUBEI, its first department) × "
                    "consortium office / SUBEI admin",
        "latency": "milliseconds per request as the client sees it"}, "backends": {}}
    for name in names:
        with tempfile.TemporaryDirectory(prefix=f"bench-stats-{name}-") as tmp_name:
            tmp = Path(tmp_name)
            if name == "sqlite":
                env = _env({"DATA_DIR": str(tmp / "data")})
                result["backends"]["sqlite"] = await run_backend("sqlite", env, tmp / "data" / "referral.sqlite3",
                                                                 opts, tmp)
                continue
            database_url, redis_url = services_env()
            if not database_url or not redis_url:
                raise BenchError("the PostgreSQL run needs DATABASE_URL and REDIS_URL")
            rid = run_id()
            async with pg_database(database_url, f"rc_bench_stats_{rid}") as url:
                env = _env({"DATABASE_URL": url, "REDIS_URL": redis_url, "REDIS_PREFIX": f"rc-bench-stats-{rid}:",
                            "DATA_DIR": str(tmp / "data"), "JWT_SECRET": key32(), "DATA_KEY": key32(),
                            "LOOKUP_KEY": key32()})
                run = await run_backend("postgresql", env, None, opts, tmp)
                run["database"] = f"PostgreSQL {await pg_version(database_url)}"
                result["backends"]["postgresql+redis"] = run
    result["summary"] = {name: {"generation_s": b["generation"]["seconds"], "p99_worst_ms": b["targets"]["p99_worst"],
                                "target_met": b["targets"]["met"]} for name, b in result["backends"].items()}
    if not opts.no_save:
        out = opts.out or RESULTS / f"stats-{now_china().strftime('%Y%m%d-%H%M')}.json"
        _say(f"written to {write_result(result, out)}")
    return result
