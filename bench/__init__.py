"""Benchmarks: python -m bench <name> [args...] | all; results as JSON under bench/results/.

Contract: a bench is a module bench/<name>.py with ``async def main(argv: list[str]) -> dict``. It parses its
own arguments (every one optional: ``all`` passes none), bounds itself (fixed counts or a duration), prints
progress to stderr, writes its JSON to bench/results/<name>-<date>.json unless told otherwise, and returns
the same dict, which ``python -m bench`` prints to stdout. Helper modules (common, bare) have no ``main``.
"""
