"""Times are stored in UTC and shown in Asia/Shanghai (DESIGN §7); "today" means today in China."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

CHINA_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")


def utcnow() -> datetime:
    return datetime.now(UTC)


def china_today() -> date:
    return datetime.now(CHINA_TZ).date()


def china_time(at: datetime) -> datetime:
    return at.astimezone(CHINA_TZ)
