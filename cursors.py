"""The one codec of list cursors: the last id of the previous page, base64url-encoded.

A cursor is refused unless it decodes to an id the model's primary-key column can hold: a larger number
would overflow the database's integer (PostgreSQL raises, SQLite compares it as a float) instead of
meaning anything, and this server never issues one."""

from __future__ import annotations

import base64

from tortoise.models import Model

from errors import InvalidInput


def decode_cursor(cursor: str, model: type[Model]) -> int:
    """The id a cursor stands for; INVALID_CURSOR (422) for anything this server would not have issued."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (ValueError, UnicodeDecodeError):
        text = ""
    highest = model._meta.pk.constraints.get("le", 2**63 - 1)
    if not (text.isdigit() and len(text) <= 19 and 0 < int(text) <= highest):
        raise InvalidInput("分页游标无效", code="INVALID_CURSOR")
    return int(text)


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(str(last_id).encode()).decode().rstrip("=")
