"""Reference data that nearly every request and job reads (institutions, departments, their referral
policies, staff names for display), kept in memory per process.

A row is read once and then served from memory until
- it is written in this process (Tortoise's post_save/post_delete signals clear the cache),
- the database is opened again (db.open_db clears it: each test app starts empty), or
- TTL seconds pass, which is how a write made by another process (a second web process, the worker)
  reaches this one.

Cached rows are shared by every caller: read them, never change and save them (update_policy, the admin
routes and the seed read their own copies). Authorisation does not come from here: who is active and which
roles they hold is read from the database on every request (accounts.principal).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from tortoise.signals import post_delete, post_save

from models import Department, Institution, InstitutionPolicy, Staff

TTL = 30.0  # seconds a row read here may lag a write made in another process

T = TypeVar("T")
_clock = time.monotonic
_rows: dict[tuple[str, int], tuple[float, object]] = {}


def clear() -> None:
    _rows.clear()


async def _cached(kind: str, pk: int, load: Callable[[], Awaitable[T]]) -> T:
    key = (kind, pk)
    hit = _rows.get(key)
    now = _clock()
    if hit is not None and hit[0] > now:
        return hit[1]  # type: ignore[return-value]
    row = await load()
    _rows[key] = (now + TTL, row)
    return row


async def institution(pk: int) -> Institution:
    return await _cached("institution", pk, lambda: Institution.get(id=pk))


async def department(pk: int) -> Department:
    return await _cached("department", pk, lambda: Department.get(id=pk))


async def policy(institution_id: int) -> InstitutionPolicy:
    """The institution's policy, created with the defaults the first time anybody asks."""
    async def load() -> InstitutionPolicy:
        row, _ = await InstitutionPolicy.get_or_create(institution_id=institution_id)
        return row

    return await _cached("policy", institution_id, load)


async def staff(pk: int) -> Staff:
    """A staff member as the timeline and the views name them (not for deciding what they may do)."""
    return await _cached("staff", pk, lambda: Staff.get(id=pk))


@post_save(Institution, Department, InstitutionPolicy, Staff)
async def _saved(sender, instance, created, using_db, update_fields) -> None:
    clear()


@post_delete(Institution, Department, InstitutionPolicy, Staff)
async def _deleted(sender, instance, using_db) -> None:
    clear()
