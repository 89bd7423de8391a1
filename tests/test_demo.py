"""`python app.py demo` against a real platform process (`serve --migrate --seed`, embedded mode): it walks the
whole loop, prints every step and the timeline, writes the slip PNG, and says clearly when no platform runs."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.common import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT = 60.0
DEMO_TIMEOUT = 120

pytestmark = pytest.mark.slow

STEPS = ["东关社区医生登录小程序", "医生扫描患者就诊卡", "发起云会诊", "专家接诊，在会诊群中讨论，出具会诊意见",
         "据会诊意见一键发起转诊，上转至苏北人民医院", "东关社区审批人员收到提醒，审批通过",
         "苏北医院审批人员查看预留床位，接收并预约入院", "扫码办理入院"]


def embedded_env(data_dir: Path, port: int) -> dict[str, str]:
    """Embedded mode whatever the suite runs on: SQLite in data_dir, in-process KV, sandbox and simulator."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "REDIS_PREFIX", "PUBLIC_URL", "HOST", "EMBEDDED_HIS")}
    return env | {"DATA_DIR": str(data_dir), "PORT": str(port), "LOG_LEVEL": "WARNING"}


def run_demo(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "app.py", "demo", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=DEMO_TIMEOUT)


async def test_demo_walks_the_paper_flow_against_the_running_platform(tmp_path):
    port = free_port()
    env = embedded_env(tmp_path / "data", port)
    # SEED_DEMO=true does what --seed does (the consortium and its reserved beds).
    server = ServerProcess(["app.py", "serve", "--migrate"], env | {"SEED_DEMO": "true"}, tmp_path / "server.log")
    server.start()
    try:
        await server.wait_ready(f"http://127.0.0.1:{port}/healthz", timeout=START_TIMEOUT)
        result = await asyncio.to_thread(run_demo, env)
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        for n, title in enumerate(STEPS, start=1):
            assert re.search(rf"【第 {n} 步】.*{title}", out), (title, out)
        assert "病历号" in out and "预填诊断：I" in out
        # The consultation before the referral: accepted, discussed, concluded, and the referral made from it.
        assert "会诊意见：建议上转（心血管内科）" in out and "病情和附件取自会诊 HZ" in out
        assert "当前状态“待转出机构审批”" in out and "当前状态“待接收机构审批”" in out
        assert "当前状态“已预约入院”" in out
        assert "尚有预留床位 5 张" in out  # the seed published reserved beds: the first approval finds one
        # The timeline: both institutions' people, every transition, a valid hash chain.
        assert "扬州市东关街道社区卫生服务中心" in out and "江苏省苏北人民医院" in out
        for action in ("创建转诊单 → 草稿", "提交转诊 → 待转出机构审批", "审批通过 → 待接收机构审批",
                       "审批通过 → 已预约入院", "入院登记 → 已入院"):
            assert action in out, (action, out)
        assert "时间线哈希链校验：通过" in out
        # The slip: PNG written where the demo says, patient checked in, waiting time shown.
        png = re.search(r"凭条二维码已保存：(\S+\.png)", out)
        assert png, out
        assert (await asyncio.to_thread(Path(png.group(1)).read_bytes)).startswith(b"\x89PNG\r\n\x1a\n")
        assert "已扫码办理入院" in out and "等待时间（提交转诊 → 入院）" in out
        assert "演示完成" in out and "当前状态“已入院”" in out

        # Run again, pointed at the platform with --port whatever PORT says: the patient's referral is still open,
        # so the demo confirms the duplicate and goes on.
        again = await asyncio.to_thread(run_demo, env | {"PORT": str(free_port())}, "--port", str(port))
        assert again.returncode == 0, again.stdout + again.stderr
        assert "确认后再次转诊" in again.stdout and "演示完成" in again.stdout
    finally:
        server.stop()


def test_demo_without_a_platform_says_so_and_exits_1(tmp_path):
    result = run_demo(embedded_env(tmp_path, free_port()))
    assert result.returncode == 1
    assert "平台没有运行" in result.stderr and "make run" in result.stderr
    assert result.stdout == ""


async def test_a_platform_that_never_answers_does_not_hang_the_demo(tmp_path):
    """A port that accepts connections but never answers: the demo's /healthz probe gives up after 3 s."""
    writers: list[asyncio.StreamWriter] = []
    server = await asyncio.start_server(lambda reader, writer: writers.append(writer), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        result = await asyncio.to_thread(run_demo, embedded_env(tmp_path, port))
        assert result.returncode == 1
        assert "平台没有运行" in result.stderr
    finally:
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()
