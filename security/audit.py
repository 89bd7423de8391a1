"""The audit log: state changes and sensitive reads, hash-chained across the whole installation."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise import connections
from tortoise.queryset import QuerySet
from tortoise.transactions import in_transaction

from models import AuditEvent

GENESIS = "0" * 64
# One installation-wide chain: appends are serialised by this PostgreSQL advisory lock (SQLite already
# serialises writers).
_CHAIN_LOCK = 7_420_001


def _digest(prev_hash: str, event: dict) -> str:
    body = json.dumps(event, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def _fields(action: str, target_type: str, target_id: str, actor_staff_id: int | None,
            actor_account_id: int | None, institution_id: int | None, detail: dict) -> dict:
    return {"action": action, "target_type": target_type, "target_id": target_id, "actor_staff_id": actor_staff_id,
            "actor_account_id": actor_account_id, "institution_id": institution_id, "detail": detail}


def _hashed(at: datetime, fields: dict) -> dict:
    """What the hash covers: the fields and the time (microseconds survive every backend, so it re-hashes)."""
    return {**fields, "at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")}


async def record(action: str, target_type: str, target_id: str, *, actor_staff_id: int | None = None,
                 actor_account_id: int | None = None, institution_id: int | None = None,
                 detail: dict | None = None) -> AuditEvent:
    """Append one audit event; call inside a transaction."""
    detail = detail or {}
    conn = connections.get("default")
    if conn.capabilities.dialect == "postgres":
        await conn.execute_query("SELECT pg_advisory_xact_lock($1)", [_CHAIN_LOCK])
    last = await AuditEvent.all().order_by("-id").first()
    prev_hash = last.hash if last else GENESIS
    fields = _fields(action, target_type, target_id, actor_staff_id, actor_account_id, institution_id, detail)
    at = datetime.now(UTC)
    return await AuditEvent.create(**fields, at=at, prev_hash=prev_hash, hash=_digest(prev_hash, _hashed(at, fields)))


@asynccontextmanager
async def audited(action: str, target_type: str, target_id: str, *, actor_staff_id: int | None,
                  institution_id: int | None) -> AsyncIterator[dict]:
    """An administrative change and its audit event in one transaction: both are written or neither. Yields the
    event's detail for the block to fill (what changed, never a secret); `actor_staff_id` None means the
    command line. The target id may be filled in by the block too (`detail.pop("target_id")`)."""
    async with in_transaction():
        detail: dict = {}
        yield detail
        target = str(detail.pop("target_id", target_id))
        await record(action, target_type, target, actor_staff_id=actor_staff_id, institution_id=institution_id,
                     detail={"via": "staff" if actor_staff_id is not None else "cli", **detail})


@dataclass(frozen=True)
class AuditCheck:
    valid: bool
    events: int
    broken_at: int | None = None


async def verify() -> AuditCheck:
    prev, count = GENESIS, 0
    async for event in AuditEvent.all().order_by("id"):
        count += 1
        fields = _fields(event.action, event.target_type, event.target_id, event.actor_staff_id,
                         event.actor_account_id, event.institution_id, event.detail)
        if event.prev_hash != prev or _digest(prev, _hashed(event.at, fields)) != event.hash:
            return AuditCheck(False, count, event.id)
        prev = event.hash
    return AuditCheck(True, count)


def events_query(*, institution_id: int, action: str | None = None, since: datetime | None = None,
                 until: datetime | None = None) -> QuerySet[AuditEvent]:
    """An institution's audit events, newest first, by action prefix and time (bounds in UTC)."""
    query = AuditEvent.filter(institution_id=institution_id)
    if action:
        query = query.filter(action__startswith=action)
    if since is not None:
        query = query.filter(at__gte=since.astimezone(UTC))
    if until is not None:
        query = query.filter(at__lt=until.astimezone(UTC))
    return query.order_by("-id")
