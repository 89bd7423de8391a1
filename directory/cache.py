"""Reference data that nearly every request and job reads (institutions, departments, their referral
policies, staff names for display), kept in memory per process.

A row is read once and then served from memory until
- it is written in this process (Tortoise's post_save/post_delete signals clear the cache),
- the database is opened again (db.open_db clears it: each test app starts empty), or
- another process says it wrote one (every save or delete is published on the KV store's `directory:changed`
  channel; each running app listens, see `sync`), or
- TTL seconds pass: the safety net for a lost message or a KV outage.

Cached rows are shared by every caller: read them, never change and save them (update_policy, the admin
routes and the seed read their own copies). Authorisation does not come from here: who is active and which
roles they hold is read from the database on every request (accounts.principal).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from aiohttp import web
from tortoise.signals import post_delete, post_save

import kv
from appkeys import KV_STORE
from kv import KV
from models import Department, Institution, InstitutionPolicy, Staff

log = logging.getLogger("referral_cloud.directory")

TTL = 30.0  # seconds a row read here may lag a write made in another process whose message was lost
CHANNEL = "directory:changed"
# A change is published from inside the writer's transaction, before its commit: a listener clears at once and
# again a little later, so that a read in between does not keep the old row for a whole TTL.
SETTLE = (1.0, 5.0)

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


_announcers: set[Callable[[], None]] = set()  # one per running app: tells the other processes


def _changed() -> None:
    clear()
    for announce in list(_announcers):
        announce()


@post_save(Institution, Department, InstitutionPolicy, Staff)
async def _saved(sender, instance, created, using_db, update_fields) -> None:
    _changed()


@post_delete(Institution, Department, InstitutionPolicy, Staff)
async def _deleted(sender, instance, using_db) -> None:
    _changed()


async def _publish(store: KV) -> None:
    try:
        await store.publish(CHANNEL, "1")
    except Exception as exc:  # the others fall back on the TTL
        log.warning("directory change not published: %s", type(exc).__name__)


def _changed_elsewhere() -> None:
    clear()
    loop = asyncio.get_running_loop()
    for delay in SETTLE:
        loop.call_later(delay, clear)


async def sync(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: publish this process's directory writes and clear the cache on everybody else's."""
    store = app[KV_STORE]
    pending: set[asyncio.Task] = set()

    def announce() -> None:
        task = asyncio.get_running_loop().create_task(_publish(store), name="directory-changed")
        pending.add(task)
        task.add_done_callback(pending.discard)

    _announcers.add(announce)
    listener = asyncio.create_task(
        kv.listen(store, CHANNEL, _changed_elsewhere, fallback="rows expire by TTL"), name="directory-cache-listener")
    try:
        yield
    finally:
        _announcers.discard(announce)
        await kv.stop(listener)
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
