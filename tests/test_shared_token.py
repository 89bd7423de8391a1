"""Two web processes on PostgreSQL and Redis share one WeChat access token: a standalone sandbox process sees
one token fetch for both, and both report the same token fingerprint on /readyz."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import aiohttp
import pytest

from kv.redis_store import RedisKV
from tests.conftest import BASE_REDIS_URL, RUN_ID, _drop_redis_prefix
from wechat.token import TOKEN_KEY, fingerprint

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 30.0

pytestmark = pytest.mark.slow


async def shared_token(prefix: str) -> str:
    """The token the processes stored in Redis (read here only to check that no log contains it)."""
    store = RedisKV(BASE_REDIS_URL, prefix)
    try:
        raw = await store.get(TOKEN_KEY)
    finally:
        await store.close()
    assert raw is not None, "no shared token in Redis"
    return json.loads(raw)["token"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def key32() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        # A new session, so stopping it reaches only this process (and whatever it started).
        return subprocess.Popen([sys.executable, *args], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


async def get_json(session: aiohttp.ClientSession, url: str) -> dict | None:
    """The JSON body of a 200 answer, or None while the process is not (yet) answering."""
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
            return await resp.json() if resp.status == 200 else None
    except (aiohttp.ClientError, TimeoutError):
        return None


async def wait_for(session: aiohttp.ClientSession, url: str, processes: list[subprocess.Popen], logs: list[Path],
                   ready=lambda body: True) -> dict:
    """Poll `url` until it answers 200 with a body that satisfies `ready`, for at most START_TIMEOUT seconds."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        body = await get_json(session, url)
        if body is not None and ready(body):
            return body
        exited = [p for p in processes if p.poll() is not None]
        if exited or time.monotonic() > deadline:
            output = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in logs)
            pytest.fail(f"{url} not ready ({'a process exited' if exited else 'timed out'}):\n{output}")
        await asyncio.sleep(0.1)


async def test_two_web_processes_share_one_access_token(services_database, tmp_path):
    sandbox_port, web_ports = free_port(), [free_port(), free_port()]
    prefix = f"rc-test-{RUN_ID}-shared-{uuid.uuid4().hex[:6]}:"
    env = {
        **os.environ,
        "DATABASE_URL": services_database,
        "REDIS_URL": BASE_REDIS_URL,
        "REDIS_PREFIX": prefix,
        "WECHAT_API_BASE": f"http://127.0.0.1:{sandbox_port}",
        "HOST": "127.0.0.1",
        "JWT_SECRET": secrets.token_urlsafe(32),
        "DATA_KEY": key32(),
        "LOOKUP_KEY": key32(),
        "DATA_DIR": str(tmp_path / "data"),
        "BACKGROUND_TASKS": "true",
        "SEED_DEMO": "false",
        "LOG_LEVEL": "INFO",
    }
    logs = [tmp_path / "sandbox.log", tmp_path / "web-1.log", tmp_path / "web-2.log"]
    processes = [start(["-m", "wechat.sandbox", "--host", "127.0.0.1", "--port", str(sandbox_port)], env, logs[0])]
    try:
        async with aiohttp.ClientSession() as session:
            sandbox = f"http://127.0.0.1:{sandbox_port}"
            await wait_for(session, f"{sandbox}/sandbox/stats", processes, logs)
            for port, log in zip(web_ports, logs[1:], strict=True):
                processes.append(start(["app.py", "serve"], {**env, "PORT": str(port)}, log))
            readiness = []
            for port in web_ports:
                base = f"http://127.0.0.1:{port}"
                await wait_for(session, f"{base}/healthz", processes, logs)
                # Each process's token keeper has run once it reports a token fingerprint.
                body = await wait_for(session, f"{base}/readyz", processes, logs,
                                      ready=lambda body: bool((body.get("wechat") or {}).get("token_fingerprint")))
                readiness.append(body["wechat"])
            stats = await wait_for(session, f"{sandbox}/sandbox/stats", processes, logs)
        assert stats["token_requests"] == 1, stats
        assert stats["tokens_issued"] == 1, stats
        assert readiness[0]["token_fingerprint"] == readiness[1]["token_fingerprint"]
        assert sorted(r["token_fetches"] for r in readiness) == [0, 1]
        token = await shared_token(prefix)
        assert fingerprint(token) == readiness[0]["token_fingerprint"]
        for log in logs:
            text = log.read_text(errors="replace")
            assert token not in text and "access_token=" not in text and "secret=" not in text
    finally:
        for process in processes:
            stop(process)
        await _drop_redis_prefix(prefix)
