"""Admission slips: how fast they are issued, rendered and checked in, and what verifying one token costs.

    python -m bench slips [--count 300] [--concurrency 8] [--postgres postgres://user@host/db] [--out FILE]

Runs the real app in this process behind a loopback HTTP server (aiohttp's TestServer) on a throw-away
database: an embedded SQLite file, or with --postgres a database of its own on that server, dropped at the end.
Phases, each on `count` slips of their own:
  issue     slips.lifecycle.issue inside a transaction, as target approval runs it (row, code, expiry, timer job)
  render    qr.slip_image.render_png of distinct tokens in this thread (pure CPU)
  png_http  GET /slips/{code}/qr.png for distinct slips at `concurrency` (auth, token, executor render)
  png_hit   the same URLs again (served from the image cache)
  check_in  POST /slips/check-in for distinct slips at `concurrency` (verify, admit, timeline, outbox)
  verify    qr.slip_token.verify alone, on one token with its key loaded (the desk's offline cost too)
Writes bench/results/slips-<backend>-<date>.json unless --out says otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

RESULTS = Path(__file__).resolve().parent / "results"
VERIFY_LIMIT_US = 500.0  # the issue's bound: verification alone under 0.5 ms per token
VERIFY_ROUNDS = 20000


def log(message: str) -> None:
    print(f"[bench slips] {message}", file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q / 100 * len(ordered))) - 1]


def phase(count: int, seconds: float, latencies_ms: list[float] | None = None) -> dict:
    out = {"count": count, "seconds": round(seconds, 3), "per_second": round(count / seconds, 1)}
    if latencies_ms:
        out |= {"p50_ms": round(percentile(latencies_ms, 50), 2), "p95_ms": round(percentile(latencies_ms, 95), 2),
                "max_ms": round(max(latencies_ms), 2)}
    return out


def machine() -> dict:
    cpu = platform.processor()
    try:
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "sqlite": sqlite3.sqlite_version,
            "platform": platform.platform()}


@asynccontextmanager
async def database(postgres: str | None, data_dir: Path) -> AsyncIterator[str]:
    """The database URL to use: a SQLite file in data_dir, or a fresh PostgreSQL database dropped afterwards."""
    if not postgres:
        yield f"sqlite://{data_dir / 'bench.sqlite3'}"
        return
    import asyncpg

    admin_url = postgres.replace("postgres://", "postgresql://", 1)
    name = f"rc_bench_slips_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield f"{postgres.rpartition('/')[0]}/{name}"
    finally:
        conn = await asyncpg.connect(admin_url)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def timed(calls: list[Callable[[], Awaitable[object]]], concurrency: int) -> tuple[float, list[float]]:
    """Run the calls with `concurrency` workers; returns wall seconds and each call's latency in ms."""
    queue = list(reversed(calls))
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            call = queue.pop()
            started = time.perf_counter()
            await call()
            latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return time.perf_counter() - started, latencies


async def scheduled_referrals(count: int, day: date) -> list:
    """`count` referrals from GAOYOU to SUBEI neurology, scheduled for `day` (set-up, not measured)."""
    from models import Department, Institution, Patient, Referral, Staff
    from referrals.commands import new_code

    source = await Institution.get(code="GAOYOU")
    target = await Institution.get(code="SUBEI")
    department = await Department.get(institution_id=target.id, code="NEUR")
    doctor = await Staff.get(institution_id=source.id, his_user_id="DOCTOR001")
    now = datetime.now(ZoneInfo("UTC"))
    referrals = []
    for _ in range(count):
        # Slips never read the patient's identity: a placeholder keeps personal data out of the bench.
        patient = await Patient.create(name="测试患者", id_number_enc="", id_number_hash=uuid.uuid4().hex)
        referrals.append(await Referral.create(
            code=new_code(), status="scheduled", direction="up", patient=patient, referrer=doctor,
            source_institution=source, target_institution=target, target_department=department,
            admission_department=department, admission_date=day, ward=department.ward, patient_name=patient.name,
            submitted_at=now - timedelta(days=3), version=4))
    return referrals


async def run(count: int, concurrency: int, postgres: str | None) -> dict:
    from aiohttp.test_utils import TestClient, TestServer

    import db
    from app import create_app
    from appkeys import CIPHER
    from directory.seed import demo_openid, seed_demo
    from models import Institution
    from qr.slip_image import render_png
    from qr.slip_token import token_kid, verify
    from settings import Settings
    from slips import keys, lifecycle
    from slips.images import CACHE
    from slips.tokens import token_for
    from timeutil import china_today

    day = china_today()  # slips are valid from their day: these patients come today
    with tempfile.TemporaryDirectory(prefix="bench-slips-") as tmp:
        data_dir = Path(tmp)
        async with database(postgres, data_dir) as url:
            settings = Settings.from_env({}, data_dir=data_dir, database_url=url, background_tasks=False,
                                         jwt_secret="bench-jwt-secret-" + uuid.uuid4().hex,
                                         data_key=os.urandom(32), lookup_key=os.urandom(32), log_level="WARNING")
            log(f"migrating {'PostgreSQL' if postgres else 'SQLite'}")
            await db.migrate(settings)
            client = TestClient(TestServer(create_app(settings)))
            await client.start_server()
            try:
                await seed_demo()
                app = client.server.app
                resp = await client.post("/wechat-sandbox/sandbox/login-code",
                                         json={"openid": demo_openid("SUBEI", "admission_clerk")})
                code = (await resp.json())["code"]
                session = await (await client.post("/api/v1/auth/wx-login", json={"code": code})).json()
                headers = {"Authorization": f"Bearer {session['access_token']}"}
                await keys.signing_kid(app[CIPHER])

                log(f"creating {3 * count} scheduled referrals")
                referrals = await scheduled_referrals(3 * count, day)
                from tortoise.transactions import in_transaction

                async def issue(referral) -> None:
                    async with in_transaction():
                        await lifecycle.issue(referral)

                log("issue")
                seconds, latencies = await timed([lambda r=r: issue(r) for r in referrals], 1)
                results = {"issue": phase(len(referrals), seconds, latencies)}

                subei = await Institution.get(code="SUBEI")
                from models import Slip

                slips = await Slip.filter(referral_id__in=[r.id for r in referrals]).order_by("id")
                tokens = [await token_for(s, subei.code, app[CIPHER]) for s in slips]
                render_slips, check_slips = slips[:count], slips[count:2 * count]

                log("render (CPU, this thread)")
                started = time.perf_counter()
                for token in tokens[2 * count:]:
                    render_png(token)
                results["render"] = phase(count, time.perf_counter() - started)

                async def get_png(slip) -> None:
                    response = await client.get(f"/api/v1/slips/{slip.code}/qr.png", headers=headers)
                    assert response.status == 200, await response.text()
                    await response.read()

                CACHE.clear()
                log("png_http (uncached)")
                seconds, latencies = await timed([lambda s=s: get_png(s) for s in render_slips], concurrency)
                results["png_http"] = phase(count, seconds, latencies)
                log("png_hit (cached)")
                seconds, latencies = await timed([lambda s=s: get_png(s) for s in render_slips], concurrency)
                results["png_hit"] = phase(count, seconds, latencies)

                async def check_in(token: str) -> None:
                    response = await client.post("/api/v1/slips/check-in", json={"token": token}, headers=headers)
                    assert response.status == 200, await response.text()

                check_tokens = tokens[count:2 * count]
                assert [token_kid(t) for t in check_tokens] and len(check_slips) == count
                log("check_in")
                seconds, latencies = await timed([lambda t=t: check_in(t) for t in check_tokens], concurrency)
                results["check_in"] = phase(count, seconds, latencies)

                log("verify")
                token = tokens[0]
                public = await keys.public_key(token_kid(token))
                runs = []
                for _ in range(5):
                    started = time.perf_counter()
                    for _ in range(VERIFY_ROUNDS // 5):
                        verify(token, public, "SUBEI")
                    runs.append((time.perf_counter() - started) / (VERIFY_ROUNDS // 5) * 1e6)
                per_token = statistics.median(runs)
                results["verify"] = {"rounds": VERIFY_ROUNDS, "per_token_us": round(per_token, 1),
                                     "per_second": round(1e6 / per_token), "limit_us": VERIFY_LIMIT_US,
                                     "within_limit": per_token < VERIFY_LIMIT_US}
            finally:
                await client.close()
    return results


async def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench slips", description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=300, help="slips per phase (default 300)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent HTTP clients (default 8)")
    parser.add_argument("--postgres", default="", help="PostgreSQL server URL; a throw-away database is made on it")
    parser.add_argument("--out", default="", help="where to write the JSON (default bench/results/...)")
    args = parser.parse_args(argv)
    backend = "postgresql" if args.postgres else "sqlite"
    when = datetime.now(ZoneInfo("Asia/Shanghai"))
    results = await run(args.count, args.concurrency, args.postgres or None)
    report = {"bench": "slips", "backend": backend, "count": args.count, "concurrency": args.concurrency,
              "measured_at": when.isoformat(timespec="seconds"), "machine": machine(), "results": results,
              "summary": {"slips_issued_per_s": results["issue"]["per_second"],
                          "png_renders_per_s": results["render"]["per_second"],
                          "png_http_uncached_per_s": results["png_http"]["per_second"],
                          "check_ins_per_s": results["check_in"]["per_second"],
                          "verify_us_per_token": results["verify"]["per_token_us"]}}
    out = Path(args.out) if args.out else RESULTS / f"slips-{backend}-{when:%Y-%m-%d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    import json

    out.write_text(json.dumps(report, ensure_ascii=False, indent=2) + "\n")
    log(f"wrote {out}")
    return report
