"""SPEEDUPS changes speed only: orjson writes the same JSON text the standard library would (times in the API's
one format either way), and uvloop is the loop on Linux when asked for (the standard loop otherwise)."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import StrEnum

import pytest

import speedups
from settings import Settings
from timeutil import json_default


class Colour(StrEnum):
    RED = "red"


@dataclass
class Point:
    x: int


PAYLOADS = [
    {"id": uuid.UUID("12345678-1234-5678-1234-567812345678"), "name": "张三",
     "at": datetime(2026, 11, 30, 8, 5, tzinfo=UTC),
     "local": datetime(2026, 11, 30, 16, 5, 7, 123456, tzinfo=timezone(timedelta(hours=8))), "day": date(2026, 12, 1),
     "status": Colour.RED, "amount": Decimal("1.50"), "ratio": 0.25, "none": None, "yes": True,
     "nested": [{"k": [1, 2, {"3": "四"}]}], "emoji": "🏥", "quote": "\"a\"\n\tb\\", "point": Point(1)},
    {1: "int key", "2": "str key"},
    ["plain", 1, -2, 3.5, None],
    {"empty": {}, "list": [], "big": 2**53},
]


@pytest.mark.parametrize("payload", PAYLOADS)
def test_orjson_writes_what_the_standard_library_writes(payload):
    expected = json.dumps(payload, ensure_ascii=False, default=json_default, separators=(",", ":"))
    speedups.configure(Settings(speedups=True))
    try:
        assert speedups.dumps(payload) == expected
        assert speedups.encode(payload) == expected.encode()
        speedups.configure(Settings(speedups=False))
        assert speedups.dumps(payload) == expected and speedups.encode(payload) == expected.encode()
    finally:
        speedups.configure(Settings())


def test_the_event_loop_is_uvloop_on_linux_only_when_asked_for():
    policy = asyncio.get_event_loop_policy()
    try:
        assert speedups.install_event_loop(False) == "asyncio"
        assert asyncio.get_event_loop_policy() is policy
        chosen = speedups.install_event_loop(True)
        loop = asyncio.new_event_loop()
        try:
            if sys.platform.startswith("linux"):
                assert chosen == "uvloop" and type(loop).__module__.startswith("uvloop")
            else:
                assert chosen == "asyncio"
        finally:
            loop.close()
    finally:
        asyncio.set_event_loop_policy(policy)
