"""Cursor pagination for every list endpoint: `{"items": [...], "next_cursor": ...}` ordered by id."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator
from tortoise.queryset import QuerySet

from cursors import decode_cursor, encode_cursor
from miniprogram_api.routing import QueryInt


class PageQuery(BaseModel):
    cursor: str | None = Field(default=None, max_length=64)
    limit: QueryInt = Field(default=50, ge=1, le=200)

    @field_validator("cursor")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None


async def paginate(query: QuerySet, page: PageQuery) -> tuple[list, str | None]:
    if page.cursor:
        query = query.filter(id__gt=decode_cursor(page.cursor, query.model))
    rows = await query.order_by("id").limit(page.limit + 1)
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, (encode_cursor(rows[-1].id) if more and rows else None)
