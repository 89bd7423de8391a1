"""python -m wechat.sandbox --host 127.0.0.1 --port 9300 [--data-dir DIR]: the WeChat sandbox as its own process."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from aiohttp import web

from wechat.sandbox.app import PathOnlyAccessLogger, create_sandbox_app
from wechat.sandbox.state import SandboxState


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m wechat.sandbox", description="微信接口沙箱")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9300)
    parser.add_argument("--appid", default=os.environ.get("WECHAT_APPID", "wx-sandbox-appid"))
    parser.add_argument("--secret", default=os.environ.get("WECHAT_SECRET", "sandbox-secret"))
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep subscriptions, tokens and messages in this directory across restarts")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state = SandboxState(args.appid, args.secret)
    if args.data_dir is not None:
        state.open_state(args.data_dir)
    print(f"微信沙箱已启动: http://{args.host}:{args.port}  (统计: /sandbox/stats)", flush=True)
    web.run_app(create_sandbox_app(state), host=args.host, port=args.port, print=None,
                access_log_class=PathOnlyAccessLogger)


if __name__ == "__main__":
    main()
