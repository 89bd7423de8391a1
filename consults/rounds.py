"""Remote ward rounds (远程查房) for the patient of a referral: scheduled by either side with participants of
both institutions, run live (start, record, complete), with advice items the local doctor acknowledges one by
one, follow-up tasks with due dates, and the next round (explicit, or by the round's recurrence until the
patient is discharged). Each change is a version-conditional UPDATE checked against consults.round_machine;
reminders leave through the outbox; the round's conversation is told after the commit."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from tortoise.transactions import in_transaction

from accounts.principal import Principal
from chat.conversations import announce_state, open_conversation
from consults.access import public_uuid
from consults.round_machine import (
    CLINICAL_ROLES,
    OPEN,
    STATUS_NAMES,
    RoundAction,
    RoundStatus,
    round_next,
)
from errors import Conflict, Forbidden, InvalidInput, NotFound
from models import Referral, Staff, WardRound, WardRoundItem, WardRoundMember
from models.chat import ConversationKind
from outbox.jobs import NewJob, enqueue_all
from referrals.access import sides_of as referral_sides
from referrals.access import visible_referral
from referrals.commands import CODE_ALPHABET
from referrals.state_machine import Status as ReferralStatus
from timeutil import CHINA_TZ, utcnow

TIMER_KIND = "round.timer"
REMIND_BEFORE = timedelta(minutes=30)
TASK_REMINDER_AT = time(9, 0)  # China time, on the task's due date
# A round is for a patient still in care: before an up-referral, or admitted after a (down-)referral.
ROUND_REFERRAL_STATES = {ReferralStatus.PENDING_SOURCE, ReferralStatus.PENDING_TARGET, ReferralStatus.SCHEDULED,
                         ReferralStatus.ADMITTED}
MAX_REPEAT_DAYS = 30


def new_code() -> str:
    """CF + yymmdd + 4 characters (查房)."""
    return "CF" + utcnow().strftime("%y%m%d") + "".join(secrets.choice(CODE_ALPHABET) for _ in range(4))


def local_side(referral: Referral) -> tuple[int, int]:
    """(where the patient lies, the other institution): the target once admitted there, else the source."""
    source, target = referral.source_institution_id, referral.target_institution_id  # type: ignore[attr-defined]
    return (target, source) if referral.status == ReferralStatus.ADMITTED else (source, target)


async def members_of(ward_round: WardRound) -> list[int]:
    return list(await WardRoundMember.filter(round_id=ward_round.id).order_by("id").values_list("staff_id",
                                                                                                flat=True))


async def visible_round(principal: Principal, public_id: uuid.UUID | str) -> WardRound:
    """The round if the caller takes part in it; otherwise 404, as if it did not exist."""
    key = public_uuid(public_id, NotFound("未找到该查房", code="WARD_ROUND_NOT_FOUND"))
    ward_round = await WardRound.get_or_none(public_id=key)
    if ward_round is None or principal.staff_id not in await members_of(ward_round):
        raise NotFound("未找到该查房", code="WARD_ROUND_NOT_FOUND")
    return ward_round


def _conflict(ward_round: WardRound, code: str, message: str) -> Conflict:
    return Conflict(message, code=code, detail={"status": ward_round.status, "version": ward_round.version,
                                                "status_name": STATUS_NAMES[RoundStatus(ward_round.status)]})


async def _participants(staff_ids: list[uuid.UUID], institutions: set[int]) -> list[Staff]:
    staff = await Staff.filter(public_id__in=staff_ids, is_active=True, deleted_at=None)
    if len(staff) != len(set(staff_ids)):
        raise NotFound("未找到部分参与人员", code="STAFF_NOT_FOUND")
    for person in staff:
        if person.institution_id not in institutions or not CLINICAL_ROLES.intersection(person.roles or []):  # type: ignore[attr-defined]
            raise InvalidInput("参与人员须为转诊双方机构的医生或专家", code="INVALID_PARTICIPANT",
                               detail={"staff_id": str(person.public_id)})
    return staff


def _reminder(ward_round: WardRound) -> list[NewJob]:
    at = ward_round.scheduled_at - REMIND_BEFORE
    if at <= utcnow():
        return []
    return [NewJob(TIMER_KIND, {"round_id": ward_round.id, "timer": "start"}, f"round-timer:{ward_round.id}:start",
                   run_at=at)]


async def _create(referral: Referral, organiser_id: int, scheduled_at: datetime, member_ids: list[int], *,
                  repeat_days: int | None, repeat_until: date | None, previous_id: int | None) -> WardRound:
    """Write a round and its members, its reminder and its conversation (in the caller's transaction)."""
    local, remote = local_side(referral)
    ward_round = await WardRound.create(
        code=new_code(), referral=referral, patient_id=referral.patient_id,  # type: ignore[attr-defined]
        local_institution_id=local, remote_institution_id=remote, organiser_id=organiser_id,
        scheduled_at=scheduled_at.astimezone(UTC), repeat_days=repeat_days, repeat_until=repeat_until,
        previous_id=previous_id)
    ids = sorted(set(member_ids))
    await WardRoundMember.bulk_create([WardRoundMember(round_id=ward_round.id, staff_id=i) for i in ids])
    await enqueue_all(_reminder(ward_round))
    await open_conversation(ConversationKind.WARD_ROUND, ward_round.public_id, ids)
    return ward_round


@dataclass
class NewRound:
    referral_id: uuid.UUID
    scheduled_at: datetime
    participant_ids: list[uuid.UUID] = field(default_factory=list)
    repeat_days: int | None = None
    repeat_until: date | None = None


async def schedule(principal: Principal, new: NewRound) -> WardRound:
    """Either side's doctor or expert schedules a round for the referral's patient."""
    principal.require_role(*CLINICAL_ROLES)
    referral = await visible_referral(principal, new.referral_id)
    if not referral_sides(principal, referral):
        raise Forbidden("仅转诊双方机构的医生可以安排查房", code="NOT_A_PARTY")
    if referral.status not in ROUND_REFERRAL_STATES:
        raise Conflict("该转诊当前状态不能安排远程查房", code="REFERRAL_NOT_IN_CARE",
                       detail={"status": str(referral.status)})
    if new.scheduled_at.tzinfo is None:
        raise InvalidInput("查房时间需带时区（如 +08:00）", code="TIME_WITHOUT_OFFSET")
    if new.scheduled_at < utcnow() - timedelta(minutes=5):
        raise InvalidInput("查房时间不能早于现在", code="ROUND_IN_PAST")
    if new.repeat_days is not None and not 1 <= new.repeat_days <= MAX_REPEAT_DAYS:
        raise InvalidInput(f"重复间隔应为 1 到 {MAX_REPEAT_DAYS} 天", code="INVALID_REPEAT")
    sides = {referral.source_institution_id, referral.target_institution_id}  # type: ignore[attr-defined]
    staff = await _participants(new.participant_ids, sides)
    if {s.institution_id for s in staff} | {principal.institution_id} != sides:  # type: ignore[attr-defined]
        raise InvalidInput("查房需有转诊双方机构的医生参加", code="BOTH_SIDES_REQUIRED")
    async with in_transaction():
        ward_round = await _create(referral, principal.staff_id, new.scheduled_at,  # type: ignore[arg-type]
                                   [principal.staff_id, *(s.id for s in staff)],  # type: ignore[list-item]
                                   repeat_days=new.repeat_days, repeat_until=new.repeat_until, previous_id=None)
    return ward_round


async def _move(principal: Principal, ward_round: WardRound, action: RoundAction, *, expected_version: int | None,
                changes: dict) -> WardRound:
    """Check the table, then move the round with an UPDATE conditional on its version (the caller's transaction)."""
    organiser = ward_round.organiser_id == principal.staff_id  # type: ignore[attr-defined]
    if action == RoundAction.CANCEL and not organiser:
        raise Forbidden("仅查房发起人可以取消查房", code="NOT_YOUR_STEP")
    if expected_version is not None and expected_version != ward_round.version:
        raise _conflict(ward_round, "VERSION_CONFLICT", "查房已被他人更新，请刷新后查看")
    to = round_next(RoundStatus(ward_round.status), action)
    if to is None:
        raise _conflict(ward_round, "INVALID_STATE",
                        f"查房当前状态为“{STATUS_NAMES[RoundStatus(ward_round.status)]}”，不能执行此操作")
    written = {"status": str(to), "version": ward_round.version + 1, "updated_at": utcnow(), **changes}
    if not await WardRound.filter(id=ward_round.id, version=ward_round.version).update(**written):
        current = await WardRound.get(id=ward_round.id)
        raise _conflict(current, "CONCURRENT_UPDATE", "查房刚刚已被他人更新，请刷新后查看")
    for name, value in written.items():
        setattr(ward_round, name, value)
    return ward_round


async def _announce(ward_round: WardRound, action: str) -> None:
    await announce_state(ConversationKind.WARD_ROUND, ward_round.public_id, ward_round.status,
                         {"action": action, "version": ward_round.version,
                          "status_name": STATUS_NAMES[RoundStatus(ward_round.status)]})


async def start(principal: Principal, public_id, *, expected_version: int | None) -> WardRound:
    ward_round = await visible_round(principal, public_id)
    async with in_transaction():
        await _move(principal, ward_round, RoundAction.START, expected_version=expected_version,
                    changes={"started_at": utcnow()})
    await _announce(ward_round, "start")
    return ward_round


@dataclass
class Task:
    text: str
    due_date: date


@dataclass
class Record:
    findings: str | None = None
    advice: list[str] = field(default_factory=list)
    tasks: list[Task] = field(default_factory=list)


def _task_reminder(ward_round: WardRound, item: WardRoundItem) -> NewJob:
    """At 09:00 China time on the due date (at once for a task due today after that hour, or overdue)."""
    at = max(datetime.combine(item.due_date, TASK_REMINDER_AT, CHINA_TZ), utcnow())  # type: ignore[arg-type]
    return NewJob(TIMER_KIND, {"round_id": ward_round.id, "timer": "task", "item_id": item.id},
                  f"round-timer:{ward_round.id}:task:{item.n}", run_at=at)


async def record(principal: Principal, public_id, *, expected_version: int | None, entry: Record) -> WardRound:
    """Findings, plan changes (advice items) and follow-up tasks, numbered in the order they were recorded."""
    if entry.findings is None and not entry.advice and not entry.tasks:
        raise InvalidInput("请填写查房所见、医嘱调整或随访任务", code="EMPTY_RECORD")
    ward_round = await visible_round(principal, public_id)
    async with in_transaction():
        changes = {"findings": entry.findings} if entry.findings is not None else {}
        await _move(principal, ward_round, RoundAction.RECORD, expected_version=expected_version, changes=changes)
        items: list[WardRoundItem] = []
        for kind, texts in (("advice", [(a, None) for a in entry.advice]),
                            ("task", [(t.text, t.due_date) for t in entry.tasks])):
            count = await WardRoundItem.filter(round_id=ward_round.id, kind=kind).count()
            for n, (text, due) in enumerate(texts, start=count + 1):
                items.append(await WardRoundItem.create(round_id=ward_round.id, kind=kind, n=n, text=text,
                                                        due_date=due, author_id=principal.staff_id))
        await enqueue_all([_task_reminder(ward_round, item) for item in items if item.kind == "task"])
    await _announce(ward_round, "record")
    return ward_round


async def complete(principal: Principal, public_id, *, expected_version: int | None,
                   next_at: datetime | None = None) -> tuple[WardRound, WardRound | None]:
    """Close the round; the next one is scheduled at `next_at`, or by the recurrence while the patient is in care
    (the referral still open) and before its end date. Returns the round and the next one, if any."""
    ward_round = await visible_round(principal, public_id)
    if next_at is not None and next_at.tzinfo is None:
        raise InvalidInput("下次查房时间需带时区（如 +08:00）", code="TIME_WITHOUT_OFFSET")
    following = None
    async with in_transaction():
        await _move(principal, ward_round, RoundAction.COMPLETE, expected_version=expected_version,
                    changes={"completed_at": utcnow()})
        referral = await Referral.get(id=ward_round.referral_id)  # type: ignore[attr-defined]
        if next_at is None and ward_round.repeat_days and referral.status in ROUND_REFERRAL_STATES:
            candidate = ward_round.scheduled_at + timedelta(days=ward_round.repeat_days)
            if ward_round.repeat_until is None or candidate.astimezone(CHINA_TZ).date() <= ward_round.repeat_until:
                next_at = candidate
        if next_at is not None:
            following = await _create(referral, ward_round.organiser_id, next_at,  # type: ignore[attr-defined]
                                      await members_of(ward_round), repeat_days=ward_round.repeat_days,
                                      repeat_until=ward_round.repeat_until, previous_id=ward_round.id)
    await _announce(ward_round, "complete")
    return ward_round, following


async def cancel(principal: Principal, public_id, *, expected_version: int | None, reason: str = "") -> WardRound:
    ward_round = await visible_round(principal, public_id)
    async with in_transaction():
        await _move(principal, ward_round, RoundAction.CANCEL, expected_version=expected_version,
                    changes={"cancel_reason": reason[:500]})
    await _announce(ward_round, "cancel")
    return ward_round


async def acknowledge(principal: Principal, public_id, n: int) -> WardRound:
    """The local doctor acknowledges advice item `n` (once: a conditional UPDATE)."""
    ward_round = await visible_round(principal, public_id)
    if principal.institution_id != ward_round.local_institution_id or "doctor" not in principal.roles:  # type: ignore[attr-defined]
        raise Forbidden("仅患者所在机构的医生确认医嘱调整", code="LOCAL_DOCTOR_ONLY")
    item = await WardRoundItem.get_or_none(round_id=ward_round.id, kind="advice", n=n)
    if item is None:
        raise NotFound("未找到该条医嘱调整", code="ADVICE_NOT_FOUND")
    done = await WardRoundItem.filter(id=item.id, acknowledged_at=None).update(
        acknowledged_at=utcnow(), acknowledged_by_id=principal.staff_id)
    if not done:
        raise Conflict("该条医嘱调整已确认", code="ALREADY_ACKNOWLEDGED")
    await _announce(ward_round, "acknowledge")
    return ward_round


def is_open(ward_round: WardRound) -> bool:
    return RoundStatus(ward_round.status) in OPEN
