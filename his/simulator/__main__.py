"""python -m his.simulator --host 127.0.0.1 --port 8091 [--data-dir DIR]: the HIS simulator as its own process."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from aiohttp import web

from his.simulator import PathOnlyAccessLogger, SimulatorState, create_simulator_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m his.simulator", description="HIS 模拟器（FHIR R4）")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--report-delay", type=float, default=0.5,
                        help="seconds from an order to its report (simulated lab turnaround)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="keep the simulated records in this directory across restarts (default: memory only)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state = SimulatorState(report_delay=args.report_delay)
    if args.data_dir is not None:
        state.open_state(args.data_dir)
    base = f"http://{args.host}:{args.port}/his-sim"
    state.base_url = base
    print(f"HIS 模拟器已启动: {base}/<机构代码>/fhir/metadata  (演示患者: {base}/<机构代码>/_patients)",
          flush=True)
    web.run_app(create_simulator_app(state), host=args.host, port=args.port, print=None,
                access_log_class=PathOnlyAccessLogger, shutdown_timeout=1.0)


if __name__ == "__main__":
    main()
