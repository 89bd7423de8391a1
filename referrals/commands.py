"""Referral commands. Each runs in one transaction, moves the referral by the state machine's table,
appends a timeline event and writes its side effects as outbox jobs; none calls an outside system."""

from __future__ import annotations

import copy
import secrets
import uuid
from collections.abc import Awaitable, Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from accounts.principal import Principal
from directory import cache
from errors import Conflict, Forbidden, InvalidInput, NotFound
from models import Department, HisSync, Institution, Patient, Referral, Urgency
from outbox.jobs import NewJob, enqueue
from referrals import capacity
from referrals.access import effective_roles, sides_of, visible_referral
from referrals.clinical import REJECTION_REASONS, Clinical, ReturnSummary
from referrals.policy import needs_source_approval, policy_of
from referrals.state_machine import (
    OPEN,
    STATUS_NAMES,
    Action,
    Side,
    Status,
    TransitionNotAllowed,
    direction_of,
    is_permitted_somewhere,
    match,
)
from referrals.timeline import SYSTEM_ACTOR, Actor, append_event, chain_head, new_event, record_step
from security.crypto import PersonalDataCipher
from slips import lifecycle as slip_lifecycle
from sql_batch import Batch, is_postgres
from stats import facts, rollup
from timeutil import china_today

CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O, 1/I: read aloud at a desk


def _now() -> datetime:
    return datetime.now(UTC)


def new_code(today: date | None = None) -> str:
    """A short human code: ZZ + yymmdd + 4 characters, e.g. ZZ261126K7QM."""
    day = (today or china_today()).strftime("%y%m%d")  # the China date: the day the doctors live in
    return "ZZ" + day + "".join(secrets.choice(CODE_ALPHABET) for _ in range(4))


async def _actor(principal: Principal | None, role: str) -> Actor:
    if principal is None or principal.staff_id is None:
        return SYSTEM_ACTOR
    institution = await cache.institution(principal.institution_id)  # type: ignore[arg-type]
    return Actor(principal.staff_id, principal.staff_name, role, institution.id, institution.name)


def _state_conflict(referral: Referral, code: str, message: str) -> Conflict:
    return Conflict(message, code=code, detail={"status": str(referral.status), "version": referral.version,
                                                "status_name": STATUS_NAMES[referral.status]})


@dataclass
class Step:
    """What a transition changes besides status and version, and what it records."""

    changes: dict
    comment: str = ""
    data: dict | None = None
    jobs: list[NewJob] = field(default_factory=list)  # written with the transition (in its statement on PostgreSQL)


async def _transition(principal: Principal | None, referral: Referral | int, action: Action, *,
                      expected_version: int | None,
                      prepare: Callable[[Referral], Awaitable[Step]] | None = None,
                      after: Callable[[Referral, Step], Awaitable[None]] | None = None,
                      alone: bool = False) -> Referral:
    """The one way a referral changes state: check the table, bump the version conditionally (so of two
    concurrent actors exactly one wins), apply the step's changes, append the event, write jobs.

    `alone`: the step writes nothing but the transition itself (its `prepare` and `after` only read). On
    PostgreSQL the transition is then one statement (referrals.timeline.record_step) and needs no transaction:
    BEGIN and COMMIT would be two more round trips for nothing."""
    async with nullcontext() if alone and is_postgres() else in_transaction():
        if not isinstance(referral, Referral):
            referral = await Referral.get(id=referral)
        # A referral the caller just read (to check they may see it) is not read again: the UPDATE below is
        # conditional on its version, so a step decided on a row somebody changed since is refused (409).
        if principal is None:
            sides, roles = {Side.SYSTEM}, {"system"}
        else:
            sides = sides_of(principal, referral)
            roles = await effective_roles(principal, referral, sides)
        if expected_version is not None and expected_version != referral.version:
            raise _state_conflict(referral, "VERSION_CONFLICT", "转诊单已被他人处理，请刷新后查看最新状态")
        try:
            row = match(referral.status, action, sides=sides, roles=roles,
                        needs_source_approval=referral.needs_source_approval)
        except TransitionNotAllowed:
            if any(is_permitted_somewhere(action, side, role) for side in sides for role in roles):
                raise _state_conflict(referral, "INVALID_STATE",
                                      f"转诊单当前状态为“{STATUS_NAMES[referral.status]}”，不能执行此操作") from None
            raise Forbidden("您没有权限对该转诊单执行此操作", code="NOT_YOUR_STEP",
                            detail={"status": str(referral.status)}) from None
        step = await prepare(referral) if prepare else Step({})
        from_status, version = referral.status, referral.version
        event = await new_event(referral, seq=version + 1, action=str(action), from_status=str(from_status),
                                to_status=str(row.to), actor=await _actor(principal, row.role),
                                comment=step.comment, data=step.data)
        notify = NewJob("notify.referral_event", {"referral_id": referral.id, "seq": event.seq, "action": str(action)},
                        f"notify:{referral.id}:{event.seq}")
        changes = {"status": row.to, "updated_at": _now(), **step.changes}
        # The referral's move in the figures' rollup goes with the step itself (on PostgreSQL in its one statement,
        # so a step without a transaction stays atomic).
        counted, counts = rollup.referral_part(referral), rollup.referral_part(_as_written(referral, changes))

        async def move_in_rollup(batch: Batch | None) -> None:
            await rollup.move(rollup.REFERRALS, counted, counts, batch=batch, only_with="moved")

        if not await record_step(referral, event, changes, [*step.jobs, notify], also=move_in_rollup):
            current = await Referral.get(id=referral.id)
            raise _state_conflict(current, "CONCURRENT_UPDATE", "转诊单刚刚已被他人处理，请刷新后查看最新状态")
        if after:
            await after(referral, step)
    return referral


def _as_written(referral: Referral, changes: dict) -> Referral:
    """The referral as the step will leave it (a copy: the row itself changes only once the write succeeded)."""
    written = copy.copy(referral)
    for name, value in changes.items():
        setattr(written, name, value)
    return written


async def _target(institution_id: uuid.UUID, department_id: uuid.UUID) -> tuple[Institution, Department]:
    institution = await Institution.get_or_none(public_id=institution_id, deleted_at=None)
    if institution is None:
        raise NotFound("未找到接收机构", code="INSTITUTION_NOT_FOUND")
    department = await Department.get_or_none(public_id=department_id, institution_id=institution.id,
                                              deleted_at=None, is_active=True)
    if department is None:
        raise NotFound("接收机构没有该科室", code="DEPARTMENT_NOT_FOUND")
    return institution, department


@dataclass
class NewReferral:
    patient_id: uuid.UUID | None  # None only with a consultation, which names the patient
    target_institution_id: uuid.UUID | None  # None with a consultation: its suggested (or its own) department
    target_department_id: uuid.UUID | None
    urgency: str  # "" with a consultation: the consultation's (else routine)
    clinical: Clinical
    contact_phone: str = ""
    submit: bool = False
    confirm_duplicate: bool = False
    previous_id: int | None = None
    consultation_id: uuid.UUID | None = None  # pre-fill from this concluded consultation and link to it


async def create_referral(principal: Principal, cipher: PersonalDataCipher, new: NewReferral) -> Referral:
    """Create a draft (or create and submit at once). A second open referral of the same patient to the same
    target is refused with a link to the open one unless the doctor confirms."""
    from consults import referral_link  # consults builds on this module

    principal.require_role("doctor")
    consultation = None
    if new.consultation_id is not None:
        new, consultation = await referral_link.prefill(principal, new)
    if new.patient_id is None or new.target_institution_id is None or new.target_department_id is None:
        raise InvalidInput("请选择患者和接收机构、科室（或从会诊发起）", code="TARGET_INCOMPLETE")
    if not new.urgency:
        new = replace(new, urgency=Urgency.ROUTINE)
    patient = await Patient.get_or_none(public_id=new.patient_id, deleted_at=None)
    if patient is None:
        raise NotFound("未找到该患者，请先扫码识别患者", code="PATIENT_NOT_FOUND")
    source = await cache.institution(principal.institution_id)
    target, department = await _target(new.target_institution_id, new.target_department_id)
    if target.id == source.id:
        raise InvalidInput("接收机构不能是本机构", code="SAME_INSTITUTION")
    if new.submit:
        _check_submittable(new.clinical)
    if not new.confirm_duplicate:
        open_one = await Referral.filter(patient_id=patient.id, target_institution_id=target.id,
                                         status__in=[str(s) for s in OPEN]).first()
        if open_one is not None:
            raise Conflict("该患者已有一张转往该机构、尚未结束的转诊单", code="DUPLICATE_REFERRAL",
                           detail={"referral_id": str(open_one.public_id), "code": open_one.code,
                                   "status": str(open_one.status),
                                   "link": f"/api/v1/referrals/{open_one.public_id}",
                                   "hint": "如确需再次转诊，请带 confirm_duplicate=true 重新提交"})
    direction = direction_of(str(source.level), str(target.level))
    needs_source = needs_source_approval(await policy_of(source.id), direction)
    contact = cipher.encrypt(new.contact_phone, "phone") if new.contact_phone else ""
    previous_code = (await Referral.get(id=new.previous_id)).code if new.previous_id else ""
    reviewed = bool(consultation) and await referral_link.counts_as_review(consultation, target.id, department.id)
    async with in_transaction():
        for _ in range(5):
            try:
                async with in_transaction():
                    referral = await Referral.create(
                        code=new_code(), status=Status.DRAFT, direction=direction, urgency=new.urgency,
                        needs_source_approval=needs_source, patient=patient, referrer_id=principal.staff_id,
                        source_institution_id=source.id, source_department_id=principal.department_id,
                        target_institution_id=target.id, target_department_id=department.id,
                        clinical=new.clinical.model_dump(), contact_phone_enc=contact, patient_name=patient.name,
                        previous_id=new.previous_id, consultation_id=consultation.id if consultation else None,
                        reviewed_in_consultation=reviewed)
                break
            except IntegrityError:
                continue  # a short code collided; draw another
        else:
            raise Conflict("生成转诊编号失败，请重试", code="CODE_COLLISION")
        actor = await _actor(principal, "doctor")
        created = await append_event(
            referral, seq=1, action="create", from_status="", to_status=str(Status.DRAFT), actor=actor,
            data={"target_institution": target.name, "target_department": department.name,
                  "direction": str(direction), "urgency": new.urgency,
                  **({"previous": previous_code} if previous_code else {}),
                  **({"consultation": consultation.code, "reviewed_in_consultation": reviewed}
                     if consultation else {})})
        if consultation is not None:
            await referral_link.linked(consultation, referral, actor)
    if new.submit:
        # The row and its newest event are in hand (the doctor made them): submit chains onto them directly.
        referral.chain_head = chain_head(created)
        referral = await _submit(principal, referral, expected_version=1)
    return referral


def _check_submittable(clinical: Clinical) -> None:
    missing = clinical.missing_for_submit()
    if missing:
        names = {"diagnoses": "诊断", "referral_reason": "转诊原因", "chief_complaint": "主诉"}
        raise InvalidInput("提交前请填写：" + "、".join(names[m] for m in missing), code="INCOMPLETE_REFERRAL",
                           detail={"fields": [{"field": f"clinical.{m}", "reason": "缺少必填项"} for m in missing]})


async def edit_draft(principal: Principal, cipher: PersonalDataCipher, public_id, *, expected_version: int | None,
                     clinical: Clinical | None, urgency: str | None, contact_phone: str | None,
                     target_institution_id: uuid.UUID | None, target_department_id: uuid.UUID | None) -> Referral:
    referral = await visible_referral(principal, public_id)

    async def prepare(current: Referral) -> Step:
        changes: dict = {}
        if clinical is not None:
            changes["clinical"] = clinical.model_dump()
        if urgency is not None:
            changes["urgency"] = urgency
        if contact_phone is not None:
            changes["contact_phone_enc"] = cipher.encrypt(contact_phone, "phone") if contact_phone else ""
        if target_institution_id is not None or target_department_id is not None:
            if target_institution_id is None or target_department_id is None:
                raise InvalidInput("修改接收机构时需同时指定科室", code="TARGET_INCOMPLETE")
            target, department = await _target(target_institution_id, target_department_id)
            if target.id == current.source_institution_id:  # type: ignore[attr-defined]
                raise InvalidInput("接收机构不能是本机构", code="SAME_INSTITUTION")
            source = await cache.institution(current.source_institution_id)  # type: ignore[attr-defined]
            direction = direction_of(str(source.level), str(target.level))
            changes.update(target_institution_id=target.id, target_department_id=department.id, direction=direction,
                           needs_source_approval=needs_source_approval(await policy_of(source.id), direction))
        return Step(changes, data={"fields": sorted(changes)})

    return await _transition(principal, referral, Action.EDIT, expected_version=expected_version,
                             prepare=prepare, alone=True)


async def submit(principal: Principal, public_id, *, expected_version: int | None) -> Referral:
    return await _submit(principal, await visible_referral(principal, public_id), expected_version)


async def _submit(principal: Principal, referral: Referral, expected_version: int | None) -> Referral:
    async def prepare(current: Referral) -> Step:
        _check_submittable(Clinical.model_validate(current.clinical))
        now = _now()
        return Step({"submitted_at": now, "stage_started_at": now, **facts.submitted(now)})

    return await _transition(principal, referral, Action.SUBMIT, expected_version=expected_version,
                             prepare=prepare, alone=True)


@dataclass
class Admission:
    date: date
    department_id: uuid.UUID | None = None
    ward: str = ""
    bed: str = ""


async def _book_admission(current: Referral, admission: Admission | None) -> tuple[dict, dict]:
    """Book a reserved bed for the admission (inside the transition's transaction): the referral's new
    admission fields, and what the timeline records."""
    if admission is None:
        raise InvalidInput("接收审批需填写入院日期和科室", code="ADMISSION_REQUIRED")
    if admission.date < china_today():
        raise InvalidInput("入院日期不能早于今天", code="ADMISSION_DATE_PAST")
    department_id = current.target_department_id  # type: ignore[attr-defined]
    if admission.department_id is not None:
        department = await Department.get_or_none(public_id=admission.department_id, deleted_at=None,
                                                  institution_id=current.target_institution_id)  # type: ignore[attr-defined]
        if department is None:
            raise NotFound("本机构没有该科室", code="DEPARTMENT_NOT_FOUND")
        department_id = department.id
    booking = await capacity.book(department_id, admission.date)
    department = await cache.department(department_id)
    ward = admission.ward or department.ward
    return ({"admission_date": admission.date, "admission_department_id": department_id, "ward": ward,
             "bed": admission.bed, "booking_id": booking.id},
            {"admission_date": admission.date.isoformat(), "department": department.name, "ward": ward,
             "bed": admission.bed})


async def _tell_target_his(current: Referral) -> None:
    """After a change to an admission (cancel, no-show, new date, check-in, completion): when the target HIS has
    the certificate, or is being given it, queue bringing it in line (his.update_admission), in this transaction."""
    if current.his_sync in (HisSync.PENDING, HisSync.DONE):
        await enqueue("his.update_admission", {"referral_id": current.id, "seq": current.version},
                      dedupe_key=f"his-update:{current.id}:{current.version}")


async def approve(principal: Principal, public_id, *, expected_version: int | None, comment: str = "",
                  admission: Admission | None = None) -> Referral:
    """Source approval passes the referral on; target approval books a reserved bed and schedules it."""
    referral = await visible_referral(principal, public_id)

    async def prepare(current: Referral) -> Step:
        now = _now()
        decided = await facts.decided(current, now)
        if current.status == Status.PENDING_SOURCE:
            return Step({"stage_started_at": now, **decided, **facts.source_approved(current, now)}, comment=comment)
        changes, data = await _book_admission(current, admission)
        # Register the patient and create the electronic admission certificate in the target HIS.
        admit = NewJob("his.admit", {"referral_id": current.id}, f"his-admit:{current.id}")
        return Step({"decided_at": now, "his_sync": HisSync.PENDING, **changes, **decided,
                     **facts.accepted(current, now)}, comment=comment, data=data, jobs=[admit])

    async def after(current: Referral, step: Step) -> None:
        if current.status == Status.SCHEDULED:
            # The patient's admission slip (QR), with its no-show timer.
            await slip_lifecycle.issue(current)

    # A source approval only moves the referral on; a target approval also books the bed and issues the slip.
    return await _transition(principal, referral, Action.APPROVE, expected_version=expected_version,
                             prepare=prepare, after=after, alone=referral.status == Status.PENDING_SOURCE)


async def reschedule(principal: Principal, public_id, *, expected_version: int | None, admission: Admission,
                     comment: str = "") -> Referral:
    """The target moves a scheduled admission: the old bed is freed, a new one booked, the slip reissued."""
    referral = await visible_referral(principal, public_id)

    async def prepare(current: Referral) -> Step:
        previous = current.admission_date.isoformat() if current.admission_date else None
        await capacity.release(current.booking_id)  # type: ignore[attr-defined]
        changes, data = await _book_admission(current, admission)
        return Step(changes, comment=comment, data={**data, "previous_date": previous})

    async def after(current: Referral, step: Step) -> None:
        await slip_lifecycle.reissue(current)
        await _tell_target_his(current)

    return await _transition(principal, referral, Action.RESCHEDULE, expected_version=expected_version,
                             prepare=prepare, after=after)


async def reject(principal: Principal, public_id, *, expected_version: int | None, reason_code: str,
                 comment: str = "") -> Referral:
    if reason_code not in REJECTION_REASONS:
        raise InvalidInput("拒绝原因不在可选范围内", code="INVALID_REASON",
                           detail={"allowed": sorted(REJECTION_REASONS)})
    if reason_code == "other" and not comment.strip():
        raise InvalidInput("选择“其他原因”时请填写说明", code="REASON_TEXT_REQUIRED")
    referral = await visible_referral(principal, public_id)

    async def prepare(current: Referral) -> Step:
        now = _now()
        return Step({"decided_at": now, "closed_at": now, "rejection_code": reason_code,
                     "rejection_text": comment[:500], **await facts.decided(current, now)},
                    comment=comment,
                    data={"reason_code": reason_code, "reason": REJECTION_REASONS[reason_code]})

    return await _transition(principal, referral, Action.REJECT, expected_version=expected_version,
                             prepare=prepare, alone=True)


async def redirect(principal: Principal, public_id, *, expected_version: int | None,
                   institution_id: uuid.UUID, department_id: uuid.UUID, comment: str = "") -> Referral:
    """The target passes the referral on: its refusal and the new target both go on the timeline."""
    referral = await visible_referral(principal, public_id)

    async def prepare(current: Referral) -> Step:
        target, department = await _target(institution_id, department_id)
        if target.id in (current.target_institution_id, current.source_institution_id):  # type: ignore[attr-defined]
            raise InvalidInput("请选择转出机构和本机构以外的其他机构", code="INVALID_REDIRECT")
        old_target = await cache.institution(current.target_institution_id)  # type: ignore[attr-defined]
        source = await cache.institution(current.source_institution_id)  # type: ignore[attr-defined]
        await capacity.release(current.booking_id)  # type: ignore[attr-defined]
        now = _now()
        return Step({"target_institution_id": target.id, "target_department_id": department.id,
                     "direction": direction_of(str(source.level), str(target.level)),
                     "stage_started_at": now, "booking_id": None, "redirects": current.redirects + 1,
                     **await facts.decided(current, now)},
                    comment=comment,
                    data={"from_institution": old_target.name, "to_institution": target.name,
                          "to_department": department.name})

    async def after(current: Referral, step: Step) -> None:
        await slip_lifecycle.revoke(current.id, "redirected")

    return await _transition(principal, referral, Action.REDIRECT, expected_version=expected_version,
                             prepare=prepare, after=after)


async def cancel(principal: Principal, public_id, *, expected_version: int | None, comment: str = "") -> Referral:
    referral = await visible_referral(principal, public_id)

    async def prepare(current: Referral) -> Step:
        await capacity.release(current.booking_id)  # type: ignore[attr-defined]
        return Step({"closed_at": _now(), "booking_id": None}, comment=comment)

    async def after(current: Referral, step: Step) -> None:
        await slip_lifecycle.revoke(current.id, "cancelled")
        await _tell_target_his(current)

    return await _transition(principal, referral, Action.CANCEL, expected_version=expected_version,
                             prepare=prepare, after=after)


async def complete(principal: Principal, public_id, *, expected_version: int | None,
                   summary: ReturnSummary) -> Referral:
    """Close the loop: the target's discharge/return summary goes back to the referrer."""
    referral = await visible_referral(principal, public_id)

    async def prepare(current: Referral) -> Step:
        return Step({"closed_at": _now(), "return_summary": summary.model_dump()},
                    data={"diagnosis": summary.diagnosis})

    async def after(current: Referral, step: Step) -> None:
        await _tell_target_his(current)  # the HIS's admission Encounter becomes finished, with the summary

    return await _transition(principal, referral, Action.COMPLETE, expected_version=expected_version,
                             prepare=prepare, after=after)


async def check_in(principal: Principal, referral_id: int, *, comment: str = "") -> Referral:
    """The admission desk admits the patient (the slip flow calls this)."""
    async def prepare(current: Referral) -> Step:
        now = _now()
        return Step({"admitted_at": now, **facts.admitted(current, now)}, comment=comment)

    async def after(current: Referral, step: Step) -> None:
        await _tell_target_his(current)  # the HIS's admission Encounter becomes in-progress

    return await _transition(principal, referral_id, Action.CHECK_IN, expected_version=None, prepare=prepare,
                             after=after)


async def expire(referral_id: int) -> Referral:
    """A scheduled patient never came: free the bed (a timer job calls this)."""
    async def prepare(current: Referral) -> Step:
        await capacity.release(current.booking_id)  # type: ignore[attr-defined]
        return Step({"closed_at": _now(), "booking_id": None})

    async def after(current: Referral, step: Step) -> None:
        await _tell_target_his(current)

    return await _transition(None, referral_id, Action.EXPIRE, expected_version=None, prepare=prepare,
                             after=after)


async def resubmit(principal: Principal, cipher: PersonalDataCipher, public_id, *, submit_now: bool = False,
                   clinical: Clinical | None = None, expected_version: int | None = None) -> Referral:
    """A rejected referral comes back as a new one linked to the old; the old one records the link. With
    `expected_version` (the console's form, which has no idempotency key) a second send of the same form is a 409,
    not a second new referral."""
    old = await visible_referral(principal, public_id)
    patient = await Patient.get(id=old.patient_id)  # type: ignore[attr-defined]
    target = await cache.institution(old.target_institution_id)  # type: ignore[attr-defined]
    department = await cache.department(old.target_department_id)  # type: ignore[attr-defined]
    phone = cipher.decrypt(old.contact_phone_enc, "phone") if old.contact_phone_enc else ""
    created: list[Referral] = []

    async def prepare(current: Referral) -> Step:
        # Created only once the table has allowed the resubmission, in the same transaction.
        new = await create_referral(principal, cipher, NewReferral(
            patient_id=patient.public_id, target_institution_id=target.public_id,
            target_department_id=department.public_id, urgency=old.urgency,
            clinical=clinical or Clinical.model_validate(old.clinical), contact_phone=phone, submit=submit_now,
            confirm_duplicate=True, previous_id=old.id))
        created.append(new)
        return Step({}, data={"new_referral": new.code, "new_referral_id": str(new.public_id)})

    await _transition(principal, old.id, Action.RESUBMIT, expected_version=expected_version, prepare=prepare)
    return created[0]
