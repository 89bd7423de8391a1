"""Hash-chained timelines: append-only events, each carrying the SHA-256 of the one before. A referral's, and
any other aggregate's registered with `register` (a consultation's): the owner has `version` (its number of
events) and `chain_head`, its events the columns of models.base.TimelineEvent and a foreign key to it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.models import Model

from models import Consultation, ConsultationEvent, Referral, ReferralEvent
from models.base import TimelineEvent
from outbox.jobs import NewJob, enqueue_all, job_rows
from outbox.wakeup import request_wake
from sql_batch import Batch, is_postgres

GENESIS = "0" * 64


@dataclass(frozen=True)
class Chain:
    """How one kind of owner keeps its timeline: its model, its event model and the name of the owner in both
    the event's foreign key and the hashed body."""

    owner: type[Model]
    event: type[TimelineEvent]
    name: str

    def owner_id(self, event: TimelineEvent) -> int:
        return getattr(event, f"{self.name}_id")


CHAINS: dict[type[Model], Chain] = {}


def register(owner: type[Model], event: type[TimelineEvent], name: str) -> Chain:
    chain = Chain(owner, event, name)
    CHAINS[owner] = CHAINS[event] = chain
    return chain


register(Referral, ReferralEvent, "referral")
register(Consultation, ConsultationEvent, "consultation")


def chain_of(model: Model | type[Model]) -> Chain:
    return CHAINS[model if isinstance(model, type) else type(model)]


def _canonical_time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_hash(prev_hash: str, *, referral_id: int, seq: int, at: datetime, action: str, from_status: str,
               to_status: str, actor_staff_id: int | None, actor_name: str, actor_role: str,
               actor_institution_id: int | None, actor_institution_name: str, comment: str, data: dict,
               owner: str = "referral") -> str:
    """`referral_id` is the owner's id, hashed under the owner's name (`owner`)."""
    # The names are covered too: they are what both sides read on the timeline.
    body = json.dumps({owner: referral_id, "seq": seq, "at": _canonical_time(at), "action": action,
                       "from": from_status, "to": to_status, "actor": actor_staff_id, "actor_name": actor_name,
                       "role": actor_role, "institution": actor_institution_id,
                       "institution_name": actor_institution_name, "comment": comment, "data": data},
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


@dataclass(frozen=True)
class Actor:
    staff_id: int | None
    name: str
    role: str
    institution_id: int | None
    institution_name: str


SYSTEM_ACTOR = Actor(None, "系统", "system", None, "双向转诊云平台")


async def head_hash(referral: Model) -> str:
    """The hash the owner's next event chains to: its newest event's. Taken from `chain_head` when that was
    written with the current version, else read from the timeline."""
    seq, _, digest = (referral.chain_head or "").partition(":")  # type: ignore[attr-defined]
    if digest and seq == str(referral.version):  # type: ignore[attr-defined]
        return digest
    chain = chain_of(referral)
    newest = await chain.event.filter(**{f"{chain.name}_id": referral.pk}).order_by("-seq").first()
    return newest.hash if newest else GENESIS


def chain_head(event: TimelineEvent) -> str:
    """What `Referral.chain_head` holds once `event` is the newest."""
    return f"{event.seq}:{event.hash}"


async def new_event(referral: Model, *, seq: int, action: str, from_status: str, to_status: str,
                    actor: Actor, comment: str = "", data: dict | None = None) -> TimelineEvent:
    """Event `seq` (the owner's new version), hashed onto the chain and not saved yet: the caller writes
    `chain_head(event)` with the version and saves the event, in the transaction that changed the owner."""
    data = data or {}
    chain = chain_of(referral)
    prev_hash = GENESIS if seq == 1 else await head_hash(referral)
    # Microsecond precision survives every backend, so the stored time re-hashes identically.
    at = datetime.now(UTC)
    digest = event_hash(prev_hash, referral_id=referral.pk, seq=seq, at=at, action=action,
                        from_status=from_status, to_status=to_status, actor_staff_id=actor.staff_id,
                        actor_name=actor.name, actor_role=actor.role, actor_institution_id=actor.institution_id,
                        actor_institution_name=actor.institution_name, comment=comment, data=data,
                        owner=chain.name)
    return chain.event(
        **{f"{chain.name}_id": referral.pk}, seq=seq, at=at, action=action, from_status=from_status,
        to_status=to_status,
        actor_staff_id=actor.staff_id, actor_name=actor.name, actor_role=actor.role,
        actor_institution_id=actor.institution_id, actor_institution_name=actor.institution_name,
        comment=comment, data=data, prev_hash=prev_hash, hash=digest)


async def record_step(referral: Model, event: TimelineEvent, changes: dict, jobs: Sequence[NewJob] = (), *,
                      also: Callable[[Batch | None], Awaitable[None]] | None = None) -> bool:
    """Move the owner (a referral, a consultation) to `event`: its version becomes `event.seq` together with
    `changes` and the chain head, only if nobody moved it since it was read (a conditional UPDATE, so of two
    concurrent writers exactly one wins), and write `jobs` (outbox jobs, each once by its dedupe key) with it.
    On success the event is saved and the owner holds the row as written; False when another won (and then
    nothing is written).

    On PostgreSQL the update, the event and the jobs are one statement (one round trip, atomic by itself: a
    caller with nothing else to write needs no transaction around it); elsewhere three, in the caller's
    transaction. `also` writes what else goes with the step: on PostgreSQL it adds CTEs to that statement
    (conditional on the CTE "moved"), elsewhere (called with None) it runs its statements after the update."""
    written = {"version": event.seq, "chain_head": chain_head(event), **changes}
    if is_postgres():
        batch = Batch()
        batch.update("moved", referral, written, {"id": referral.pk, "version": event.seq - 1})
        batch.insert("event", event, only_with="moved", returning="id")
        rows, due = job_rows(jobs)
        for n, row in enumerate(rows):
            # A taken dedupe key leaves the first job as it is (as enqueue_all's INSERT does).
            batch.insert(f"job{n}", row, only_with="moved", ignore_conflicts=True)
        if also is not None:
            await also(batch)
        found = await batch.run('SELECT "id" FROM event')
        if not found:
            return False
        event.pk, event._saved_in_db = found[0]["id"], True
        if due:
            request_wake()
    else:
        if not await type(referral).filter(id=referral.pk, version=event.seq - 1).update(**written):
            return False
        await event.save()
        await enqueue_all(jobs)
        if also is not None:
            await also(None)
    for field, value in written.items():  # the row as just written, without reading it back
        setattr(referral, field, value)
    return True


async def append_event(referral: Model, *, seq: int, action: str, from_status: str, to_status: str,
                       actor: Actor, comment: str = "", data: dict | None = None) -> TimelineEvent:
    """Append event `seq` without moving `chain_head` (the next event then reads the head from the timeline):
    for a caller that has already written the version. Call inside the transaction that changed it."""
    event = await new_event(referral, seq=seq, action=action, from_status=from_status, to_status=to_status,
                            actor=actor, comment=comment, data=data)
    await event.save()
    return event


@dataclass(frozen=True)
class ChainCheck:
    valid: bool
    events: int
    broken_at: int | None = None
    reason: str = ""


def check_chain(events: list[TimelineEvent]) -> ChainCheck:
    """Recompute every hash in order: an edited, deleted or reordered event breaks the chain."""
    prev = GENESIS
    chain = chain_of(type(events[0])) if events else None
    for expected_seq, event in enumerate(events, start=1):
        if event.seq != expected_seq:
            return ChainCheck(False, len(events), expected_seq, f"第 {expected_seq} 条记录缺失")
        if event.prev_hash != prev:
            return ChainCheck(False, len(events), event.seq, f"第 {event.seq} 条记录的前序哈希不符")
        assert chain is not None
        digest = event_hash(prev, referral_id=chain.owner_id(event), seq=event.seq, at=event.at,
                            action=event.action, from_status=event.from_status, to_status=event.to_status,
                            actor_staff_id=event.actor_staff_id, actor_name=event.actor_name,
                            actor_role=event.actor_role, actor_institution_id=event.actor_institution_id,
                            actor_institution_name=event.actor_institution_name, comment=event.comment,
                            data=event.data, owner=chain.name)
        if digest != event.hash:
            return ChainCheck(False, len(events), event.seq, f"第 {event.seq} 条记录已被篡改")
        prev = event.hash
    return ChainCheck(True, len(events))


async def verify_referral(referral_id: int, version: int | None = None) -> ChainCheck:
    return await verify(Referral, referral_id, version)


async def verify(owner: type[Model], owner_id: int, version: int | None = None) -> ChainCheck:
    """Check one owner's timeline; with its `version`, also that no event is missing at the end."""
    chain = chain_of(owner)
    events = await chain.event.filter(**{f"{chain.name}_id": owner_id}).order_by("seq")
    result = check_chain(events)
    if result.valid and version is not None and len(events) != version:
        # The owner's version counts its events: a deleted tail shows here.
        return ChainCheck(False, len(events), len(events) + 1, f"第 {len(events) + 1} 条之后的记录缺失")
    return result
