"""`python app.py serve --workers N`: N web processes on one port, refused when they would not share state;
one dying stops the others; SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import aiohttp
import pytest

from bench.common import ServerProcess, drop_redis_prefix, free_port, key32
from settings import Settings
from tests.conftest import BASE_REDIS_URL, _truncate_pg
from web_processes import shared_state_problems

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_several_processes_need_state_they_all_share(tmp_path):
    embedded = Settings.from_env({}, data_dir=tmp_path)
    assert [p.split()[0] for p in shared_state_problems(embedded)] == ["REDIS_URL", "WECHAT_API_BASE",
                                                                       "EMBEDDED_HIS"]
    shared = Settings.from_env({"REDIS_URL": "redis://127.0.0.1:6379/0", "WECHAT_API_BASE": "http://127.0.0.1:9300",
                                "EMBEDDED_HIS": "false", "HIS_SIMULATOR_URL": "http://127.0.0.1:8091/his-sim"},
                               data_dir=tmp_path)
    assert shared_state_problems(shared) == []


def test_serve_with_workers_in_embedded_mode_is_refused_before_it_touches_anything(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "WECHAT_API_BASE")}
    result = subprocess.run([sys.executable, "app.py", "serve", "--migrate", "--workers", "2"], cwd=ROOT,
                            env=env | {"DATA_DIR": str(tmp_path), "PORT": str(free_port())}, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "REDIS_URL" in result.stderr and "WECHAT_API_BASE" in result.stderr and "EMBEDDED_HIS" in result.stderr
    assert not (tmp_path / "referral.sqlite3").exists()  # refused before migrating


async def _wait_children(pid: int, count: int) -> list[int]:
    for _ in range(300):
        children = _children(pid)
        if len(children) == count:
            return children
        await asyncio.sleep(0.1)
    raise AssertionError(f"expected {count} web processes under {pid}, found {_children(pid)}")


async def test_two_web_processes_share_one_port_and_stop_together(services_database, tmp_path):
    await _truncate_pg(services_database)
    port, sandbox_port, his_port = free_port(), free_port(), free_port()
    prefix = f"rc-test-web-{uuid.uuid4().hex[:8]}:"
    env = {**os.environ, "DATABASE_URL": services_database, "REDIS_URL": BASE_REDIS_URL, "REDIS_PREFIX": prefix,
           "PORT": str(port), "HOST": "127.0.0.1", "DATA_DIR": str(tmp_path / "data"), "LOG_LEVEL": "WARNING",
           "JWT_SECRET": "test-jwt-secret-of-sufficient-length-0123456789",
           "DATA_KEY": key32(), "LOOKUP_KEY": key32(), "WECHAT_API_BASE": f"http://127.0.0.1:{sandbox_port}",
           "EMBEDDED_HIS": "false", "HIS_SIMULATOR_URL": f"http://127.0.0.1:{his_port}/his-sim",
           "EMBEDDED_DISPATCHER": "false"}
    sandbox = ServerProcess(["-m", "wechat.sandbox", "--port", str(sandbox_port)], env, tmp_path / "sandbox.log")
    web = ServerProcess(["app.py", "serve", "--seed", "--workers", "2"], env, tmp_path / "web.log")
    sandbox.start()
    try:
        await sandbox.wait_ready(f"http://127.0.0.1:{sandbox_port}/sandbox/stats")
        web.start()
        await web.wait_ready(f"http://127.0.0.1:{port}/healthz")
        first, second = await _wait_children(web.process.pid, 2)
        async with aiohttp.ClientSession() as session:
            # Whichever process takes it, a login code from the shared sandbox logs in (shared Redis, WeChat).
            for _ in range(6):
                async with session.post(f"http://127.0.0.1:{sandbox_port}/sandbox/login-code",
                                        json={"openid": "demo_subei_doctor"}) as resp:
                    code = (await resp.json())["code"]
                async with session.post(f"http://127.0.0.1:{port}/api/v1/auth/wx-login",
                                        json={"code": code}) as resp:
                    assert resp.status == 200, await resp.text()
        # One process dying stops the other, and the parent says it failed.
        os.kill(first, signal.SIGKILL)
        code = await asyncio.to_thread(web.process.wait, 30)
        assert code != 0
        assert not _alive(second)

        # SIGTERM stops them all, cleanly.
        web.start()
        await web.wait_ready(f"http://127.0.0.1:{port}/healthz")
        children = await _wait_children(web.process.pid, 2)
        web.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(web.process.wait, 30) == 0
        assert not any(_alive(pid) for pid in children)
    finally:
        web.stop()
        sandbox.stop()
        await drop_redis_prefix(BASE_REDIS_URL, prefix)
