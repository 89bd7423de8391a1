"""Cursor pagination for every list endpoint: `{"items": [...], "next_cursor": ...}` ordered by id."""

from __future__ import annotations

import base64

from pydantic import BaseModel, Field, field_validator
from tortoise.queryset import QuerySet

from errors import InvalidInput


class PageQuery(BaseModel):
    cursor: str | None = Field(default=None, max_length=64)
    limit: int = Field(default=50, ge=1, le=200)

    @field_validator("cursor")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


def _decode(cursor: str) -> int:
    try:
        return int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("分页游标无效", code="INVALID_CURSOR") from None


def _encode(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")


async def paginate(query: QuerySet, page: PageQuery) -> tuple[list, str | None]:
    if page.cursor:
        query = query.filter(id__gt=_decode(page.cursor))
    rows = await query.order_by("id").limit(page.limit + 1)
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, (_encode(rows[-1].id) if more and rows else None)
