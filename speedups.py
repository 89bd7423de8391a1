"""A faster event loop and JSON where available (SPEEDUPS=true): uvloop on Linux, orjson for the JSON bodies we
build from dicts; the standard library's loop and `json` otherwise (the default: on this project's bench machine
they did not measure faster, see the README). The output is the same either way (see `encode`)."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from settings import Settings
from timeutil import json_default

try:
    import orjson
except ImportError:  # pragma: no cover - a pinned runtime dependency; kept optional for odd platforms
    orjson = None

_COMPACT = (",", ":")  # no spaces, as orjson writes
# Exactly what json.dumps(obj, ensure_ascii=False, default=json_default, separators=_COMPACT) gives: times through
# json_default (the API's one format; orjson would write its own ISO form), dataclasses as the standard library
# falls back to; int keys as strings.
_ORJSON_OPTIONS = (orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
                   if orjson is not None else 0)
_fast_json = False  # until configure() says otherwise


def configure(settings: Settings) -> None:
    """Choose this process's JSON encoder (the app factory calls it)."""
    global _fast_json
    _fast_json = settings.speedups and orjson is not None


def encode(obj: Any) -> bytes:
    """A response body in UTF-8 JSON: characters as they are, times in the API format (timeutil.json_default)."""
    if _fast_json:
        return orjson.dumps(obj, default=json_default, option=_ORJSON_OPTIONS)
    return json.dumps(obj, ensure_ascii=False, default=json_default, separators=_COMPACT).encode()


def dumps(obj: Any) -> str:
    """`encode` as text (for aiohttp's json_response)."""
    if _fast_json:
        return orjson.dumps(obj, default=json_default, option=_ORJSON_OPTIONS).decode()
    return json.dumps(obj, ensure_ascii=False, default=json_default, separators=_COMPACT)


def install_event_loop(enabled: bool) -> str:
    """Use uvloop for the loops this process creates from now on, on Linux when `enabled` (SPEEDUPS); returns
    which loop it will be."""
    if not enabled or not sys.platform.startswith("linux"):
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return "uvloop"
