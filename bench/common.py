"""Shared bench helpers: machine facts, latency statistics, throw-away databases and server processes."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import math
import os
import platform
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
# Seconds a server process may take to migrate, seed and answer /healthz: a fresh migrate + seed takes 10-20 s
# alone and over 90 s on a 2-core machine busy with other test runs, which is not a failure of the server.
START_TIMEOUT = 180.0


class BenchError(RuntimeError):
    """The bench could not run (a server did not start, a service is missing)."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def key32() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def run_id() -> str:
    return uuid.uuid4().hex[:8]


def now_china() -> datetime:
    return datetime.now(ZoneInfo("Asia/Shanghai"))


def _meminfo_mb() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def machine() -> dict:
    """What the numbers were measured on."""
    return {"cores": os.cpu_count(), "cpu": _cpu_model(), "memory_mb": _meminfo_mb(),
            "python": platform.python_version(), "platform": platform.platform(),
            "sqlite": sqlite3.sqlite_version, "date": now_china().isoformat(timespec="seconds"),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def machine_busy_seconds() -> float | None:
    """CPU seconds all cores have spent busy since boot (Linux /proc/stat; None elsewhere)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(f) for f in fields]
    idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class Recorder:
    """Latencies per endpoint label and the failures seen, for one phase of one backend."""

    latencies: dict[str, list[float]] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    failures: list[dict] = field(default_factory=list)

    def ok(self, label: str, seconds: float) -> None:
        self.latencies.setdefault(label, []).append(seconds * 1000)

    def fail(self, label: str, status: int | None, detail: str) -> None:
        self.failed[label] = self.failed.get(label, 0) + 1
        if len(self.failures) < 20:  # enough to diagnose, not enough to drown the JSON
            self.failures.append({"endpoint": label, "status": status, "detail": detail[:300]})

    def summary(self) -> dict[str, dict]:
        labels = sorted(set(self.latencies) | set(self.failed))
        out = {}
        for label in labels:
            values = self.latencies.get(label, [])
            out[label] = {"count": len(values), "failed": self.failed.get(label, 0),
                          "p50_ms": round(percentile(values, 50), 1) if values else None,
                          "p99_ms": round(percentile(values, 99), 1) if values else None,
                          "max_ms": round(max(values), 1) if values else None}
        return out

    @property
    def failure_count(self) -> int:
        return sum(self.failed.values())


class RequestFailed(Exception):
    """A request got an answer the scenario did not expect; the lifecycle it belongs to is abandoned."""


class Http:
    """A timed JSON client: every call is recorded under its endpoint label."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, recorder: Recorder) -> None:
        self.session = session
        self.base_url = base_url
        self.recorder = recorder

    async def call(self, label: str, method: str, path: str, *, json_body: dict | None = None,
                   token: str | None = None, expect: int = 200) -> dict:
        headers = {"Authorization": f"Bearer {token}"} if token else None
        url = path if path.startswith(("http://", "https://")) else self.base_url + path
        started = time.perf_counter()
        try:
            async with self.session.request(method, url, json=json_body, headers=headers) as resp:
                text = await resp.text()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.recorder.fail(label, None, f"{type(exc).__name__}: {exc}")
            raise RequestFailed(label) from exc
        elapsed = time.perf_counter() - started
        if status != expect:
            self.recorder.fail(label, status, text)
            raise RequestFailed(f"{label}: HTTP {status}")
        self.recorder.ok(label, elapsed)
        return json.loads(text) if text else {}


def client_session(clients: int) -> aiohttp.ClientSession:
    """One keep-alive connection per simulated client; a generous per-request bound so nothing hangs."""
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients, limit_per_host=clients),
                                 timeout=aiohttp.ClientTimeout(total=60))


# ------------------------------------------------------------------------------------- services

def services_env() -> tuple[str, str]:
    """DATABASE_URL and REDIS_URL from the environment ('' when unset)."""
    return os.environ.get("DATABASE_URL", ""), os.environ.get("REDIS_URL", "")


def _pg_url(base_url: str, database: str) -> str:
    base, _, _ = base_url.rpartition("/")
    return f"{base}/{database}"


async def _pg_admin(base_url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(base_url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def pg_version(base_url: str) -> str:
    import asyncpg

    conn = await asyncpg.connect(base_url.replace("postgres://", "postgresql://", 1))
    try:
        return await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()


async def redis_version(redis_url: str) -> str:
    from redis.asyncio import Redis

    client = Redis.from_url(redis_url)
    try:
        return str((await client.info("server")).get("redis_version", ""))
    finally:
        await client.aclose()


@contextlib.asynccontextmanager
async def pg_database(base_url: str, name: str) -> AsyncIterator[str]:
    """A PostgreSQL database of the bench's own on the server of `base_url`, dropped afterwards."""
    await _pg_admin(base_url, f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(base_url, name)
    finally:
        await _pg_admin(base_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def drop_redis_prefix(redis_url: str, prefix: str) -> None:
    from kv.redis_store import RedisKV

    store = RedisKV(redis_url, prefix)
    try:
        await store.delete_prefix()
    finally:
        await store.close()


# ------------------------------------------------------------------------------------ processes

def _stat(pid: int) -> list[str] | None:
    try:
        # After the command name (which may hold spaces): state is field 3, ppid 4, utime 14, stime 15.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def tree_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of `pid` and its living descendants (Linux /proc; None elsewhere)."""
    fields = _stat(pid)
    if fields is None:
        return None
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (child := _stat(int(entry.name))) is not None:
            children.setdefault(int(child[1]), []).append(int(entry.name))
    ticks, todo = 0, [pid]
    while todo:
        current = todo.pop()
        stat = fields if current == pid else _stat(current)
        if stat is not None:
            ticks += int(stat[11]) + int(stat[12])
        todo.extend(children.get(current, []))
    return ticks / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    """A server in its own process (its own session, so stopping it reaches only what it started)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.args = args
        self.env = env
        self.log = log
        self.process: subprocess.Popen | None = None
        self.processes = 1  # how many serve requests (`--workers N` children; their parent only watches)

    def start(self) -> None:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen([sys.executable, *self.args], cwd=ROOT, env=self.env, stdout=out,
                                            stderr=subprocess.STDOUT, start_new_session=True)

    def tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    async def wait_ready(self, url: str, timeout: float = START_TIMEOUT) -> None:
        """Poll `url` until it answers 200, the process exits or `timeout` passes."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                        if resp.status == 200:
                            return
                assert self.process is not None
                if self.process.poll() is not None:
                    raise BenchError(f"{' '.join(self.args)} exited with {self.process.returncode}:\n{self.tail()}")
                if time.monotonic() > deadline:
                    raise BenchError(f"{url} not ready after {timeout:.0f}s:\n{self.tail()}")
                await asyncio.sleep(0.1)

    def cpu_seconds(self) -> float | None:
        """User + system CPU the server process and the processes it started (`serve --workers N`) have used
        so far (Linux /proc; None elsewhere)."""
        if self.process is None:
            return None
        return tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            # Its own session: the group holds exactly what this server started (`--workers` children too).
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


def write_result(result: dict, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, ensure_ascii=False, indent=2) + "\n")
    return out
