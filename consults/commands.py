"""Consultation commands. Each runs in one transaction, moves the consultation by its state table with a
version-conditional UPDATE (of two experts accepting at once exactly one wins), appends a hash-chained timeline
event and writes its notices and timers as outbox jobs; the conversation is told after the commit."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from accounts.principal import Principal
from chat.conversations import add_participants, announce_state, open_conversation
from consults.access import party_staff, sides_of, visible_consultation
from consults.state_machine import (
    DECLINE_REASONS,
    RECOMMENDATIONS,
    STATUS_NAMES,
    Action,
    Side,
    Status,
    TransitionNotAllowed,
    is_permitted_somewhere,
    match,
)
from directory import cache
from errors import Conflict, Forbidden, InvalidInput, NotFound
from models import Consultation, ConsultationMember, Department, Patient, Staff
from models.chat import ConversationKind
from outbox.jobs import NewJob, enqueue, enqueue_all
from referrals.clinical import Clinical
from referrals.commands import CODE_ALPHABET, Step, _actor, _target
from referrals.timeline import append_event, new_event, record_step

EVENT_KIND = "consult.event"
TIMER_KIND = "consult.timer"
# Timers of an unanswered request, in multiples of the policy's acceptance deadline: a reminder to the pool,
# then the department's approvers, then the request expires.
TIMERS = (("overdue", 1), ("escalate", 2), ("expire", 3))


def _now() -> datetime:
    return datetime.now(UTC)


def new_code() -> str:
    """HZ + yymmdd + 4 characters, e.g. HZ261130K7QM (会诊)."""
    return "HZ" + _now().strftime("%y%m%d") + "".join(secrets.choice(CODE_ALPHABET) for _ in range(4))


def _state_conflict(consultation: Consultation, code: str, message: str) -> Conflict:
    return Conflict(message, code=code, detail={"status": consultation.status, "version": consultation.version,
                                                "status_name": STATUS_NAMES[Status(consultation.status)]})


async def accept_deadline(consultation: Consultation) -> datetime | None:
    """When the addressed department must have accepted a request (its institution's policy, by urgency)."""
    if consultation.status != Status.REQUESTED or consultation.stage_started_at is None:
        return None
    policy = await cache.policy(consultation.target_institution_id)  # type: ignore[attr-defined]
    hours = float((policy.consult_accept_hours or {}).get(consultation.urgency, 24))
    return consultation.stage_started_at + timedelta(hours=hours)


async def _after_commit(consultation: Consultation, action: str) -> None:
    await announce_state(ConversationKind.CONSULTATION, consultation.public_id, consultation.status,
                         {"action": action, "version": consultation.version,
                          "status_name": STATUS_NAMES[Status(consultation.status)]})


async def _transition(principal: Principal | None, consultation: Consultation | int, action: Action, *,
                      expected_version: int | None,
                      prepare: Callable[[Consultation], Awaitable[Step]] | None = None,
                      after: Callable[[Consultation, Step], Awaitable[None]] | None = None) -> Consultation:
    """The one way a consultation changes state (see the module docstring)."""
    async with in_transaction():
        if not isinstance(consultation, Consultation):
            consultation = await Consultation.get(id=consultation)
        if principal is None:
            sides, roles = {Side.SYSTEM}, {"system"}
        else:
            sides, roles = await sides_of(principal, consultation), set(principal.roles)
        if expected_version is not None and expected_version != consultation.version:
            raise _state_conflict(consultation, "VERSION_CONFLICT", "会诊已被他人处理，请刷新后查看最新状态")
        try:
            row = match(Status(consultation.status), action, sides=sides, roles=roles)
        except TransitionNotAllowed:
            if is_permitted_somewhere(action, sides, roles):
                raise _state_conflict(
                    consultation, "INVALID_STATE",
                    f"会诊当前状态为“{STATUS_NAMES[Status(consultation.status)]}”，不能执行此操作") from None
            raise Forbidden("您没有权限对该会诊执行此操作", code="NOT_YOUR_STEP",
                            detail={"status": consultation.status}) from None
        step = await prepare(consultation) if prepare else Step({})
        from_status, version = consultation.status, consultation.version
        event = await new_event(consultation, seq=version + 1, action=str(action), from_status=from_status,
                                to_status=str(row.to), actor=await _actor(principal, row.role),
                                comment=step.comment, data=step.data)
        if not await record_step(consultation, event, {"status": str(row.to), "updated_at": _now(),
                                                       **step.changes}):
            current = await Consultation.get(id=consultation.id)
            raise _state_conflict(current, "CONCURRENT_UPDATE", "会诊刚刚已被其他专家处理，请刷新后查看最新状态")
        if after:
            await after(consultation, step)
        await enqueue(EVENT_KIND, {"consultation_id": consultation.id, "seq": event.seq, "action": str(action)},
                      dedupe_key=f"consult:{consultation.id}:{event.seq}")
    await _after_commit(consultation, str(action))
    return consultation


@dataclass
class NewConsultation:
    patient_id: uuid.UUID
    question: str
    clinical: Clinical
    urgency: str = "routine"
    target_institution_id: uuid.UUID | None = None
    target_department_id: uuid.UUID | None = None
    expert_id: uuid.UUID | None = None


async def _addressee(new: NewConsultation) -> tuple[int, int, int | None]:
    """(institution, department, named expert or None) the request goes to."""
    if new.expert_id is not None:
        expert = await Staff.get_or_none(public_id=new.expert_id, is_active=True, deleted_at=None)
        if expert is None or not expert.has_role("expert"):
            raise NotFound("未找到该专家", code="EXPERT_NOT_FOUND")
        if expert.department_id is None:  # type: ignore[attr-defined]
            raise InvalidInput("该专家未设置所属科室，请改为向科室发起会诊", code="EXPERT_WITHOUT_DEPARTMENT")
        return expert.institution_id, expert.department_id, expert.id  # type: ignore[attr-defined]
    if new.target_institution_id is None or new.target_department_id is None:
        raise InvalidInput("请选择会诊专家，或会诊机构和科室", code="ADDRESSEE_REQUIRED")
    institution, department = await _target(new.target_institution_id, new.target_department_id)
    return institution.id, department.id, None


async def create_consultation(principal: Principal, new: NewConsultation) -> Consultation:
    """A doctor asks a named expert, or a department's pool, of another member institution."""
    principal.require_role("doctor")
    patient = await Patient.get_or_none(public_id=new.patient_id, deleted_at=None)
    if patient is None:
        raise NotFound("未找到该患者，请先扫码识别患者", code="PATIENT_NOT_FOUND")
    institution_id, department_id, expert_id = await _addressee(new)
    if institution_id == principal.institution_id:
        raise InvalidInput("请向其他成员机构的专家发起会诊", code="SAME_INSTITUTION")
    now = _now()
    async with in_transaction():
        for _ in range(5):
            try:
                async with in_transaction():
                    consultation = await Consultation.create(
                        code=new_code(), status=Status.REQUESTED, urgency=new.urgency, patient=patient,
                        patient_name=patient.name, requester_id=principal.staff_id,
                        requester_institution_id=principal.institution_id, target_institution_id=institution_id,
                        target_department_id=department_id, addressed_expert_id=expert_id,
                        question=new.question, clinical=new.clinical.model_dump(), stage_started_at=now)
                break
            except IntegrityError:
                continue  # a short code collided; draw another
        else:
            raise Conflict("生成会诊编号失败，请重试", code="CODE_COLLISION")
        institution = await cache.institution(institution_id)
        department = await cache.department(department_id)
        expert = await cache.staff(expert_id) if expert_id else None
        await append_event(
            consultation, seq=1, action="create", from_status="", to_status=str(Status.REQUESTED),
            actor=await _actor(principal, "doctor"),
            data={"institution": institution.name, "department": department.name, "urgency": new.urgency,
                  **({"expert": expert.name} if expert else {})})
        due = await accept_deadline(consultation)
        assert due is not None
        span = due - now
        await enqueue_all([
            NewJob(EVENT_KIND, {"consultation_id": consultation.id, "seq": 1, "action": "create"},
                   f"consult:{consultation.id}:1"),
            *[NewJob(TIMER_KIND, {"consultation_id": consultation.id, "timer": timer},
                     f"consult-timer:{consultation.id}:{timer}", run_at=now + span * times)
              for timer, times in TIMERS]])
        await open_conversation(ConversationKind.CONSULTATION, consultation.public_id, [principal.staff_id])
    return consultation


async def accept(principal: Principal, public_id, *, expected_version: int | None) -> Consultation:
    consultation = await visible_consultation(principal, public_id)

    async def prepare(current: Consultation) -> Step:
        return Step({"expert_id": principal.staff_id, "accepted_at": _now()})

    async def after(current: Consultation, step: Step) -> None:
        await open_conversation(ConversationKind.CONSULTATION, current.public_id,
                                [current.requester_id, principal.staff_id])  # type: ignore[attr-defined]

    return await _transition(principal, consultation, Action.ACCEPT, expected_version=expected_version,
                             prepare=prepare, after=after)


async def decline(principal: Principal, public_id, *, expected_version: int | None, reason_code: str,
                  comment: str = "") -> Consultation:
    if reason_code not in DECLINE_REASONS:
        raise InvalidInput("婉拒原因不在可选范围内", code="INVALID_REASON", detail={"allowed": sorted(DECLINE_REASONS)})
    if reason_code == "other" and not comment.strip():
        raise InvalidInput("选择“其他原因”时请填写说明", code="REASON_TEXT_REQUIRED")
    consultation = await visible_consultation(principal, public_id)

    async def prepare(current: Consultation) -> Step:
        return Step({"closed_at": _now(), "decline_code": reason_code, "decline_text": comment[:500]},
                    comment=comment, data={"reason_code": reason_code, "reason": DECLINE_REASONS[reason_code]})

    return await _transition(principal, consultation, Action.DECLINE, expected_version=expected_version,
                             prepare=prepare)


async def invite(principal: Principal, public_id, *, expected_version: int | None,
                 expert_ids: list[uuid.UUID]) -> Consultation:
    """MDT: more experts join an accepted consultation and its conversation."""
    if not expert_ids:
        raise InvalidInput("请选择要邀请的专家", code="EXPERTS_REQUIRED")
    consultation = await visible_consultation(principal, public_id)
    experts = await Staff.filter(public_id__in=expert_ids, is_active=True, deleted_at=None)
    if len(experts) != len(set(expert_ids)) or not all(e.has_role("expert") for e in experts):
        raise NotFound("未找到部分专家，或其不是专家", code="EXPERT_NOT_FOUND")
    taken = set(await party_staff(consultation))
    fresh = [e for e in experts if e.id not in taken]
    if not fresh:
        raise InvalidInput("所选专家已在本次会诊中", code="ALREADY_MEMBERS")

    async def prepare(current: Consultation) -> Step:
        return Step({}, data={"experts": [e.name for e in fresh]})

    async def after(current: Consultation, step: Step) -> None:
        await ConsultationMember.bulk_create(
            [ConsultationMember(consultation_id=current.id, staff_id=e.id, invited_by_id=principal.staff_id)
             for e in fresh], ignore_conflicts=True)
        conversation = await open_conversation(ConversationKind.CONSULTATION, current.public_id, [])
        await add_participants(conversation, [e.id for e in fresh])

    return await _transition(principal, consultation, Action.INVITE, expected_version=expected_version,
                             prepare=prepare, after=after)


@dataclass
class Opinion:
    recommendation: str
    advice: str
    suggested_department_id: uuid.UUID | None = None


async def conclude(principal: Principal, public_id, *, expected_version: int | None,
                   opinion: Opinion) -> Consultation:
    """The accepting expert's structured opinion closes the consultation."""
    if opinion.recommendation not in RECOMMENDATIONS:
        raise InvalidInput("会诊意见类型不在可选范围内", code="INVALID_RECOMMENDATION",
                           detail={"allowed": sorted(RECOMMENDATIONS)})
    consultation = await visible_consultation(principal, public_id)

    async def prepare(current: Consultation) -> Step:
        suggested: dict = {}
        if opinion.suggested_department_id is not None:
            department = await Department.get_or_none(public_id=opinion.suggested_department_id, deleted_at=None,
                                                      is_active=True)
            if department is None:
                raise NotFound("未找到建议的科室", code="DEPARTMENT_NOT_FOUND")
            institution = await cache.institution(department.institution_id)  # type: ignore[attr-defined]
            suggested = {"suggested_department_id": str(department.public_id),
                         "suggested_department": department.name,
                         "suggested_institution_id": str(institution.public_id),
                         "suggested_institution": institution.name}
        expert = await cache.staff(principal.staff_id)  # type: ignore[arg-type]
        body = {"recommendation": opinion.recommendation,
                "recommendation_name": RECOMMENDATIONS[opinion.recommendation], "advice": opinion.advice,
                "expert": expert.name, "expert_title": expert.title, **suggested}
        return Step({"opinion": body, "closed_at": _now()},
                    data={"recommendation": opinion.recommendation, **suggested})

    return await _transition(principal, consultation, Action.CONCLUDE, expected_version=expected_version,
                             prepare=prepare)


async def cancel(principal: Principal, public_id, *, expected_version: int | None,
                 comment: str = "") -> Consultation:
    consultation = await visible_consultation(principal, public_id)

    async def prepare(current: Consultation) -> Step:
        return Step({"closed_at": _now()}, comment=comment)

    return await _transition(principal, consultation, Action.CANCEL, expected_version=expected_version,
                             prepare=prepare)


async def expire(consultation_id: int) -> Consultation:
    """Nobody accepted within three times the deadline (a timer job calls this)."""
    async def prepare(current: Consultation) -> Step:
        return Step({"closed_at": _now()})

    return await _transition(None, consultation_id, Action.EXPIRE, expected_version=None, prepare=prepare)
