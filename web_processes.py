"""`python app.py serve --workers N`: N `web` processes on one port (SO_REUSEPORT, Linux spreads connections
over them), so that one installation uses every core. The parent only starts, watches and stops them.

Every process must see the same state, so the shared parts must be outside the processes: Redis (tokens,
locks, revocations, directory-cache invalidation), a real WeChat or a standalone sandbox (`WECHAT_API_BASE`),
real HIS front-end processors or a standalone simulator (`EMBEDDED_HIS=false`, `HIS_SIMULATOR_URL`)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

from settings import Settings

APP = Path(__file__).resolve().parent / "app.py"
STOP_GRACE = 30.0  # seconds each process has to finish its requests after SIGTERM


def shared_state_problems(settings: Settings) -> list[str]:
    """What makes several processes see different states (empty: they may run side by side)."""
    problems = []
    if not settings.redis_url:
        problems.append("REDIS_URL must be set (the in-process KV stand-in is private to each process)")
    if settings.embedded_wechat:
        problems.append("WECHAT_API_BASE must be set (each process would have its own embedded WeChat sandbox; "
                        "run `python -m wechat.sandbox` once and point every process at it)")
    if settings.embedded_his:
        problems.append("EMBEDDED_HIS must be false (each process would have its own HIS simulator; run "
                        "`python -m his.simulator` once and set HIS_SIMULATOR_URL)")
    return problems


def serve_processes(count: int) -> int:
    """Run `count` web processes sharing PORT (they inherit this environment) until they stop."""
    return run_children([sys.executable, str(APP), "serve", "--reuse-port"], count)


def run_children(args: list[str], count: int) -> int:
    """Run `count` copies of `args`; return when they have stopped (SIGTERM/SIGINT stop them all; one dying
    stops the others, and its exit code is returned)."""
    # Our own interpreter and scripts, no outside input.
    children = [subprocess.Popen(args) for _ in range(count)]  # noqa: S603
    stopping_since: float | None = None

    def stop(signum: int, frame: object) -> None:
        nonlocal stopping_since
        stopping_since = stopping_since or time.monotonic()
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    while any(child.poll() is None for child in children):
        ended = [child for child in children if child.poll() is not None]
        if ended and stopping_since is None:
            code = ended[0].returncode or 1
            print(f"web 进程 {ended[0].pid} 意外退出 (code {ended[0].returncode})，正在停止其余进程", file=sys.stderr)
            stop(signal.SIGTERM, None)
        if stopping_since is not None and time.monotonic() - stopping_since > STOP_GRACE:
            for child in children:
                if child.poll() is None:
                    child.kill()
        time.sleep(0.2)
    return code
