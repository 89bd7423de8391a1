"""python -m bench <name> [args...] runs bench/<name>.py; `python -m bench all` runs every bench with its
defaults. The result (JSON) goes to stdout, progress to stderr; see bench/__init__.py for the contract."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import pkgutil
import sys

import bench


def bench_names() -> list[str]:
    """Every module of the package with an `async def main(argv)`; helpers (common, bare) have none."""
    names = []
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"bench.{info.name}")
        if inspect.iscoroutinefunction(getattr(module, "main", None)):
            names.append(info.name)
    return sorted(names)


def main(argv: list[str]) -> int:
    names = bench_names()
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: python -m bench {{{'|'.join(names + ['all'])}}} [args...]", file=sys.stderr)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name != "all" and name not in names:
        print(f"unknown bench {name!r}; known: {', '.join(names)}", file=sys.stderr)
        return 2
    if name == "all":
        results = {n: asyncio.run(importlib.import_module(f"bench.{n}").main([])) for n in names}
        print(json.dumps(results, ensure_ascii=False, indent=2))
    else:
        print(json.dumps(asyncio.run(importlib.import_module(f"bench.{name}").main(rest)), ensure_ascii=False,
                         indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
