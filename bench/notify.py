"""python -m bench notify [--jobs N] [--backend sqlite|postgres|all] [--concurrency C] [--profile]

Notifications delivered per second: `python app.py worker` processes carry `probe.cs_message` jobs (one WeChat
customer-service message each, through the real client, the shared access token and the at-most-once marker,
as a notification job does) to a standalone WeChat sandbox process.

Runs: SQLite with 1 worker; PostgreSQL + Redis with 1 and 2 workers (needs DATABASE_URL and REDIS_URL).
Method: the N jobs are written first with a far-off run time; once the workers are up, one UPDATE makes them all
due (and a wake-up is published), and the clock runs until the sandbox has recorded N messages. CPU seconds of
the workers, the sandbox and the whole machine over that window say where the time went.

The bare-stack reference, measured in the same run against the same sandbox: N plain aiohttp POSTs of the same
message to the same endpoint at the same total concurrency, from one process, no database, no KV. The ratio
is jobs/s ÷ bare POSTs/s.

Results: bench/results/notify-sqlite.json and notify-postgres.json (machine noted), and stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pstats
import re
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

from bench.common import (
    RESULTS,
    BenchError,
    ServerProcess,
    drop_redis_prefix,
    free_port,
    key32,
    machine,
    machine_busy_seconds,
    pg_database,
    pg_version,
    redis_version,
    services_env,
    write_result,
)
from settings import Settings

RECIPIENTS = 50
TARGET = 500.0  # notifications/s on PostgreSQL+Redis with 2 workers (issue 5)
RUN_TIMEOUT = 300.0
CS_PATH = "/cgi-bin/message/custom/send"


def service_cpu_seconds() -> dict[str, float]:
    """CPU seconds used so far by every PostgreSQL and Redis server process on this machine (Linux /proc).
    Other users of the same servers (a test run next door) count too; the load average in `machine` tells."""
    totals = {"postgres": 0.0, "redis": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.find("(") + 1:text.rfind(")")]
        service = "postgres" if name.startswith("postgres") else "redis" if name.startswith("redis-server") else ""
        if service:
            fields = text.rsplit(")", 1)[1].split()
            totals[service] += (int(fields[11]) + int(fields[12])) / tick
    return totals


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def openid(n: int) -> str:
    return f"o_bench_{n % RECIPIENTS:03d}"


# ------------------------------------------------------------------------------------------ one run

class Run:
    """One database, one sandbox, `workers` worker processes; delivers `jobs` messages once."""

    def __init__(self, backend: str, workers: int, jobs: int, concurrency: int, work: Path, *,
                 database_url: str = "", redis_url: str = "", profile: bool = False) -> None:
        self.backend, self.workers, self.jobs, self.concurrency = backend, workers, jobs, concurrency
        self.work, self.database_url, self.redis_url, self.profile = work, database_url, redis_url, profile
        self.prefix = f"rc-bench-notify-{uuid.uuid4().hex[:6]}:"
        self.port = free_port()
        self.sandbox_url = f"http://127.0.0.1:{self.port}"
        self.data_key, self.lookup_key = key32(), key32()

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update({"DATA_DIR": str(self.work / "data"), "WECHAT_API_BASE": self.sandbox_url,
                    "JWT_SECRET": "bench-jwt-secret-0123456789abcdef0123456789", "DATA_KEY": self.data_key,
                    "LOOKUP_KEY": self.lookup_key, "LOG_LEVEL": "INFO", "REDIS_PREFIX": self.prefix,
                    "OUTBOX_CONCURRENCY": str(self.concurrency), "OUTBOX_POLL": "0.1"})
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        if self.redis_url:
            env["REDIS_URL"] = self.redis_url
        return env

    def settings(self) -> Settings:
        """What the workers make of the same environment."""
        return Settings.from_env(self.env())

    async def execute(self, session: aiohttp.ClientSession) -> dict:
        import db
        from models import OutboxJob
        from outbox.probe import KIND, probe_text

        settings = self.settings()
        await db.migrate(settings)
        sandbox = ServerProcess(["-m", "wechat.sandbox", "--port", str(self.port)], self.env(),
                                self.work / f"sandbox-{self.backend}-{self.workers}.log")
        sandbox.start()
        workers: list[ServerProcess] = []
        try:
            await sandbox.wait_ready(f"{self.sandbox_url}/sandbox/stats")
            for n in range(RECIPIENTS):
                async with session.post(f"{self.sandbox_url}/sandbox/login-code", json={"openid": openid(n)}):
                    pass
            await db.open_db(settings)
            try:
                later = datetime.now(UTC) + timedelta(days=1)
                from tortoise.transactions import in_transaction

                async with in_transaction():
                    for n in range(self.jobs):
                        await OutboxJob.create(kind=KIND, payload={"openid": openid(n)}, next_attempt_at=later,
                                               dedupe_key=f"bench:{self.backend}:{self.workers}:{n:06d}")
                for n in range(self.workers):
                    worker = ServerProcess(self._worker_args(n), self.env(),
                                           self.work / f"worker-{self.backend}-{self.workers}-{n}.log")
                    worker.start()
                    workers.append(worker)
                await _wait_started(workers)
                await asyncio.sleep(0.5)  # first polls, token fetch
                busy0, cpu0 = machine_busy_seconds(), [w.cpu_seconds() for w in workers]
                sandbox0, services0 = sandbox.cpu_seconds(), service_cpu_seconds()
                started = time.perf_counter()
                await OutboxJob.filter(kind=KIND).update(next_attempt_at=datetime.now(UTC))
                await _publish_wake(self.redis_url, self.prefix)
                delivered = await _wait_delivered(session, self.sandbox_url, self.jobs, workers)
                elapsed = time.perf_counter() - started
                busy1, cpu1 = machine_busy_seconds(), [w.cpu_seconds() for w in workers]
                sandbox1, services1 = sandbox.cpu_seconds(), service_cpu_seconds()
                await asyncio.sleep(0.3)  # the last done marks
                done = await OutboxJob.filter(kind=KIND, state="done").count()
                contents = await _contents(session, self.sandbox_url)
            finally:
                await db.close_db()
            expected = {probe_text(f"bench:{self.backend}:{self.workers}:{n:06d}") for n in range(self.jobs)}
            worker_cpu = sum((b or 0) - (a or 0) for a, b in zip(cpu0, cpu1, strict=True))
            sandbox_cpu = (sandbox1 or 0) - (sandbox0 or 0)
            busy = (busy1 or 0) - (busy0 or 0)
            services = {name: services1[name] - services0[name] for name in services0}
            per_job = 1000 / self.jobs
            result = {
                "workers": self.workers, "concurrency_per_worker": self.concurrency, "jobs": self.jobs,
                "elapsed_s": round(elapsed, 3), "jobs_per_s": round(delivered / elapsed, 1),
                "delivered": delivered, "distinct_delivered": len(set(contents)),
                "duplicates": len(contents) - len(set(contents)), "all_expected": set(contents) == expected,
                "jobs_marked_done": done,
                "cpu_ms_per_job": {"workers": round(worker_cpu * per_job, 3),
                                   "sandbox": round(sandbox_cpu * per_job, 3),
                                   "postgres": round(services["postgres"] * per_job, 3),
                                   "redis": round(services["redis"] * per_job, 3),
                                   "rest_of_machine": round((busy - worker_cpu - sandbox_cpu - sum(services.values()))
                                                            * per_job, 3),
                                   "machine": round(busy * per_job, 3)},
                "machine_cpu_utilisation": round(busy / elapsed / (machine()["cores"] or 1), 3),
            }
            if self.profile:
                for worker in workers:
                    worker.stop()
                result["profile_top"] = _profile_top(self.work / f"worker-{self.backend}-{self.workers}-0.prof")
            return result
        finally:
            for worker in workers:
                worker.stop()
            sandbox.stop()

    def _worker_args(self, n: int) -> list[str]:
        if self.profile and n == 0:
            return ["-m", "cProfile", "-o", str(self.work / f"worker-{self.backend}-{self.workers}-0.prof"),
                    "app.py", "worker"]
        return ["app.py", "worker"]


async def _wait_started(workers: list[ServerProcess], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(re.search(r"outbox dispatcher \S+ started|worker \S+ started", w.tail(20000)) for w in workers):
        for worker in workers:
            if worker.process is not None and worker.process.poll() is not None:
                raise BenchError(f"a worker exited:\n{worker.tail()}")
        if time.monotonic() > deadline:
            raise BenchError("workers did not start:\n" + "\n".join(w.tail() for w in workers))
        await asyncio.sleep(0.1)


async def _publish_wake(redis_url: str, prefix: str) -> None:
    """Through Redis when there is one; with the in-process KV (SQLite) the worker finds the jobs by polling."""
    if not redis_url:
        return
    from kv import connect
    from outbox.wakeup import CHANNEL

    kv = connect(redis_url, prefix)
    try:
        await kv.publish(CHANNEL, "1")
    finally:
        await kv.close()


async def _sandbox_messages(session: aiohttp.ClientSession, base: str) -> int:
    async with session.get(f"{base}/sandbox/stats") as resp:
        return int((await resp.json())["messages"])


async def _wait_delivered(session: aiohttp.ClientSession, base: str, jobs: int, workers: list[ServerProcess]) -> int:
    deadline = time.monotonic() + RUN_TIMEOUT
    while (count := await _sandbox_messages(session, base)) < jobs:
        if time.monotonic() > deadline:
            raise BenchError(f"only {count} of {jobs} messages after {RUN_TIMEOUT:.0f}s:\n{workers[0].tail()}")
        if any(w.process is not None and w.process.poll() is not None for w in workers):
            raise BenchError("a worker exited:\n" + "\n".join(w.tail() for w in workers))
        await asyncio.sleep(0.02)
    return count


async def _contents(session: aiohttp.ClientSession, base: str) -> list[str]:
    async with session.get(f"{base}/sandbox/messages", params={"kind": "customer_service"}) as resp:
        return [m["payload"]["content"] for m in (await resp.json())["items"]]


def _profile_top(path: Path, count: int = 25) -> list[dict]:
    if not path.exists():
        return []
    stats = pstats.Stats(str(path))
    rows = sorted(stats.stats.items(), key=lambda item: item[1][2], reverse=True)[:count]  # by own time
    total = sum(v[2] for v in stats.stats.values()) or 1
    return [{"function": f"{Path(f).name}:{line}:{name}", "calls": v[1], "own_s": round(v[2], 3),
             "own_share": round(v[2] / total, 3), "cumulative_s": round(v[3], 3)}
            for (f, line, name), v in rows]


# ------------------------------------------------------------------------------------------ bare stack

async def bare_posts(jobs: int, concurrency: int, work: Path) -> dict:
    """The same sends without our stack: plain aiohttp POSTs to a fresh sandbox, one process, no DB, no KV."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sandbox = ServerProcess(["-m", "wechat.sandbox", "--port", str(port)], {**_plain_env()},
                            work / f"sandbox-bare-{concurrency}.log")
    sandbox.start()
    try:
        await sandbox.wait_ready(f"{base}/sandbox/stats")
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
            for n in range(RECIPIENTS):
                async with session.post(f"{base}/sandbox/login-code", json={"openid": openid(n)}):
                    pass
            async with session.post(f"{base}/cgi-bin/stable_token",
                                    json={"grant_type": "client_credential", "appid": "wx-sandbox-appid",
                                          "secret": "sandbox-secret"}) as resp:
                token = (await resp.json())["access_token"]
            gate = asyncio.Semaphore(concurrency)
            failures = 0

            async def send(n: int) -> None:
                nonlocal failures
                body = {"touser": openid(n), "msgtype": "text", "text": {"content": f"消息投递测试 bare:{n:06d}"}}
                async with gate, session.post(f"{base}{CS_PATH}", params={"access_token": token}, json=body) as r:
                    if (await r.json()).get("errcode"):
                        failures += 1

            cpu0, busy0 = sandbox.cpu_seconds(), machine_busy_seconds()
            started = time.perf_counter()
            await asyncio.gather(*(send(n) for n in range(jobs)))
            elapsed = time.perf_counter() - started
            cpu1, busy1 = sandbox.cpu_seconds(), machine_busy_seconds()
        return {"concurrency": concurrency, "posts": jobs, "failures": failures, "elapsed_s": round(elapsed, 3),
                "posts_per_s": round(jobs / elapsed, 1),
                "cpu_ms_per_post": {"sandbox": round(((cpu1 or 0) - (cpu0 or 0)) * 1000 / jobs, 3),
                                    "machine": round(((busy1 or 0) - (busy0 or 0)) * 1000 / jobs, 3)}}
    finally:
        sandbox.stop()


def _plain_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}


# ------------------------------------------------------------------------------------------ backends

async def bench_backend(backend: str, jobs: int, concurrency: int, work: Path, profile: bool) -> dict:
    database_url, redis_url = services_env()
    worker_counts = [1] if backend == "sqlite" else [1, 2]
    result: dict = {"bench": "notify", "backend": backend, "machine": machine(), "jobs": jobs,
                    "job_kind": "probe.cs_message (one customer-service message to the sandbox)",
                    "method": __doc__.split("Method: ", 1)[1].split("\n\n")[0].replace("\n", " "),
                    "runs": [], "bare": []}
    if backend == "postgres":
        if not database_url or not redis_url:
            return result | {"skipped": "needs DATABASE_URL and REDIS_URL"}
        result["versions"] = {"postgres": await pg_version(database_url), "redis": await redis_version(redis_url)}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        for workers in worker_counts:
            run_dir = work / f"{backend}-{workers}"
            run_dir.mkdir(parents=True, exist_ok=True)
            log(f"notify: {backend}, {workers} worker(s), {jobs} jobs ...")
            if backend == "sqlite":
                run = Run(backend, workers, jobs, concurrency, run_dir, profile=profile)
                outcome = await run.execute(session)
            else:
                name = f"rc_bench_notify_{uuid.uuid4().hex[:8]}"
                async with pg_database(database_url, name) as url:
                    run = Run(backend, workers, jobs, concurrency, run_dir, database_url=url, redis_url=redis_url,
                              profile=profile)
                    try:
                        outcome = await run.execute(session)
                    finally:
                        await drop_redis_prefix(redis_url, run.prefix)
            log(f"notify: {backend}, {workers} worker(s): {outcome['jobs_per_s']} jobs/s")
            result["runs"].append(outcome)
    for total in sorted({r["workers"] * concurrency for r in result["runs"]}):
        log(f"notify: bare aiohttp POSTs at concurrency {total} ...")
        result["bare"].append(await bare_posts(jobs, total, work))
    bare = {b["concurrency"]: b["posts_per_s"] for b in result["bare"]}
    for run in result["runs"]:
        run["ratio_to_bare"] = round(run["jobs_per_s"] / bare[run["workers"] * concurrency], 3)
    if backend == "postgres":
        two = next((r for r in result["runs"] if r["workers"] == 2), None)
        result["target"] = {"jobs_per_s": TARGET, "workers": 2,
                            "measured": two["jobs_per_s"] if two else None,
                            "met": bool(two and two["jobs_per_s"] >= TARGET)}
    return result


async def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(prog="python -m bench notify", description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=3000)
    parser.add_argument("--backend", choices=["sqlite", "postgres", "all"], default="all")
    parser.add_argument("--concurrency", type=int, default=32, help="OUTBOX_CONCURRENCY of each worker")
    parser.add_argument("--profile", action="store_true", help="run the first worker under cProfile")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for notify-<backend>.json")
    args = parser.parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    results = {}
    with tempfile.TemporaryDirectory(prefix="rc-bench-notify-") as tmp:
        for backend in backends:
            results[backend] = await bench_backend(backend, args.jobs, args.concurrency, Path(tmp), args.profile)
            if "skipped" not in results[backend]:
                write_result(results[backend], args.out / f"notify-{backend}.json")
    return results
