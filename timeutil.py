"""Times are stored in UTC and shown in Asia/Shanghai (DESIGN §7); "today" means today in China."""

from __future__ import annotations

import enum
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")


def utcnow() -> datetime:
    return datetime.now(UTC)


def china_today() -> date:
    return datetime.now(CHINA_TZ).date()


def china_time(at: datetime) -> datetime:
    return at.astimezone(CHINA_TZ)


def api_time(at: datetime) -> str:
    """The one format times leave this system in (API bodies, error details, JSON output): ISO-8601 with `T`,
    whole seconds and China's offset, e.g. 2026-12-01T00:04:27+08:00. A naive value is taken as UTC."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(CHINA_TZ).isoformat(timespec="seconds")


def json_default(value: Any) -> Any:
    """`default=` for json.dumps: times through api_time, dates as YYYY-MM-DD, enums by value, the rest as text."""
    if isinstance(value, datetime):
        return api_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return str(value)
