"""Who is told what at each step of a referral (DESIGN §4, issue 5 point 3).

* A referral waiting for an institution: all of that institution's approvers (the facility, not one person).
* Every decision (approve, reject, redirect) and the later milestones: the referring doctor.
* The patient (every account bound to them): acceptance with date, place and what to bring; a new date;
  redirect; cancellation; completion (the loop is closed); and the day before admission.
* Cancellation: also the approvers of the institution that had the referral on its desk.
* A referral past its institution's deadline: its approvers; past twice the deadline: its admins.

Each rule yields a Notice for a list of accounts; `notifications.fanout` writes the inbox messages and one
delivery job per account. Patient names are always masked; nothing carries an ID or phone number.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from directory import cache
from models import Department, Institution, Referral, ReferralEvent
from models.referrals import Urgency
from notifications import recipients
from notifications.templates import ADMISSION, APPROVAL, PROGRESS, detail_page, format_date, slip_page
from referrals.clinical import REJECTION_REASONS
from referrals.policy import deadline, policy_of, what_to_bring
from referrals.state_machine import Action, Status
from security.masking import mask_name
from timeutil import china_time

PENDING = (Status.PENDING_SOURCE, Status.PENDING_TARGET)


@dataclass
class Notice:
    kind: str  # the inbox message kind
    template: str  # a key of notifications.templates.TEMPLATES
    values: dict[str, object]
    page: str
    title: str
    body: str
    accounts: list[int] = field(default_factory=list)


@dataclass
class Facts:
    """What the rules need to know about a referral, looked up once."""

    referral: Referral
    patient: str  # masked
    source: Institution
    target: Institution
    department: Department
    diagnosis: str

    @classmethod
    async def of(cls, referral: Referral) -> Facts:
        clinical = referral.clinical or {}
        diagnoses = clinical.get("diagnoses") or []
        diagnosis = (diagnoses[0].get("name") if diagnoses else "") or clinical.get("chief_complaint", "")
        return cls(referral=referral, patient=mask_name(referral.patient_name),
                   source=await cache.institution(referral.source_institution_id),  # type: ignore[attr-defined]
                   target=await cache.institution(referral.target_institution_id),  # type: ignore[attr-defined]
                   department=await cache.department(referral.target_department_id),  # type: ignore[attr-defined]
                   diagnosis=str(diagnosis))


def short(institution: Institution) -> str:
    return institution.short_name or institution.name


def _when(at: datetime) -> str:
    local = china_time(at)
    return f"{local.month}月{local.day}日 {local:%H:%M}"


STAGE_ACTIONS = [str(a) for a in Action]


async def moved_on(referral: Referral, seq: int) -> bool:
    """Whether a transition followed event `seq`. Other timeline events (the HIS certificate arriving) bump the
    version too but leave the referral where it was, so a newer version has to be looked at in the timeline."""
    if referral.version <= seq:
        return False  # `seq` is still the newest event
    return await ReferralEvent.filter(referral_id=referral.id, seq__gt=seq, action__in=STAGE_ACTIONS).exists()


def responsible_institution(referral: Referral) -> int:
    """The institution whose approvers have the referral on their desk (pending states only)."""
    if referral.status == Status.PENDING_SOURCE:
        return referral.source_institution_id  # type: ignore[attr-defined]
    return referral.target_institution_id  # type: ignore[attr-defined]


async def stage_deadline(referral: Referral) -> datetime | None:
    if referral.status not in PENDING or referral.stage_started_at is None:
        return None
    policy = await policy_of(responsible_institution(referral))
    return deadline(policy, referral.urgency, referral.stage_started_at)


# -- notices --------------------------------------------------------------------------------------------------


async def awaiting(facts: Facts, *, stage: str = "new") -> Notice:
    """For approvers: a referral is on their desk (`new`), past its deadline (`overdue`), or, for admins,
    past twice its deadline (`escalated`)."""
    referral = facts.referral
    at_source = referral.status == Status.PENDING_SOURCE
    other = f"转往 {short(facts.target)}" if at_source else f"来自 {short(facts.source)}"
    urgency = Urgency.NAMES.get(referral.urgency, "")
    due = await stage_deadline(referral)
    due_text = _when(due) if due else ""
    if stage == "new":
        kind, title = "referral_todo", "待审批转诊"
        note = f"请于{due_text}前审批" if due else "请尽快审批"
        tail = f"请于 {due_text} 前审批。" if due else "请尽快审批。"
    elif stage == "overdue":
        kind, title = "referral_overdue", "转诊审批已超时"
        note, tail = "已超过审批时限，请尽快处理", f"审批时限为 {due_text}，现已超时，请尽快处理。"
    else:
        kind, title = "referral_escalated", "转诊审批超时督办"
        note = "超时未审批，请督办"
        tail = f"审批时限为 {due_text}，已超时一倍以上仍未处理，请督促本机构审批人员处理。"
    if urgency and urgency != "普通" and stage == "new":
        note = f"{urgency}，{note}"
    if stage == "new" and not at_source and referral.reviewed_in_consultation:
        # The target's policy let its own expert's consultation opinion stand for the clinical review.
        note, tail = "专家会诊已同意，请预约床位", f"本院专家会诊已同意上转，请于 {due_text} 前预约床位。"
    where = f"{facts.source.name} → {facts.target.name}（{facts.department.name}）"
    return Notice(
        kind=kind, template=APPROVAL.key, page=detail_page(referral.public_id), title=title,
        values={"character_string1": referral.code, "thing2": facts.patient, "thing3": other,
                "thing4": facts.diagnosis, "time5": referral.submitted_at, "thing6": note},
        body=f"转诊单 {referral.code}：{where}，患者 {facts.patient}，{urgency}转诊。{tail}")


def progress(facts: Facts, event: ReferralEvent, *, result: str, institution: str, note: str,
             kind: str = "referral_progress") -> Notice:
    referral = facts.referral
    return Notice(
        kind=kind, template=PROGRESS.key, page=detail_page(referral.public_id),
        title=f"转诊{result}", values={"character_string1": referral.code, "thing2": facts.patient,
                                     "phrase3": result, "thing4": institution, "thing5": note,
                                     "time6": event.at},
        body=f"转诊单 {referral.code}（患者 {facts.patient}）{result}：{institution}。{note}")


async def admission(facts: Facts, event: ReferralEvent | None, *, eve: bool = False,
                    moved: bool = False) -> Notice:
    """For the patient: when and where to be admitted, and what to bring (the day before: `eve`; after the
    target moved the date: `moved`)."""
    referral = facts.referral
    data = event.data if event is not None else {}
    department = referral.admission_department_id and await cache.department(
        referral.admission_department_id)  # type: ignore[attr-defined]
    department_name = data.get("department") or (department.name if department else facts.department.name)
    ward = data.get("ward") or referral.ward
    place = f"{department_name} {ward}".strip() if ward and ward != department_name else department_name
    day = referral.admission_date
    address = f"（{facts.target.address}）" if facts.target.address else ""
    phone = f"，咨询电话 {facts.target.phone}" if facts.target.phone else ""
    bring = await what_to_bring(facts.target.id)
    if eve:
        title, note = "明日入院提醒", f"明日入院，请带{bring}"
        lead = f"您预约的入院日期是明天（{format_date(day)}）"
    elif moved:
        before = data.get("previous_date")
        title, note = "入院日期已调整", f"已改期，请带{bring}"
        lead = (f"{facts.target.name}将您的入院日期调整为 {format_date(day)}"
                + (f"（原定 {format_date(before)}）" if before else ""))
    else:
        title, note = "转诊已接收，请按时入院", bring
        lead = f"{facts.target.name}已接收您的转诊，入院日期 {format_date(day)}"
    return Notice(
        kind="admission_eve" if eve else "admission", template=ADMISSION.key, page=slip_page(referral.public_id),
        title=title, values={"thing1": facts.patient, "thing2": facts.target.name, "thing3": place,
                             "date4": day, "thing5": note},
        body=f"{facts.patient}：{lead}，地点 {facts.target.name}{address} {place}。"
             f"请携带{bring}，到住院处出示入院二维码办理入院{phone}。")


async def _decision_for_doctor(facts: Facts, event: ReferralEvent) -> Notice | None:
    action, to = event.action, event.to_status
    data = event.data or {}
    if action == "approve" and to == Status.PENDING_TARGET:
        return progress(facts, event, result="初审通过", institution=short(facts.source),
                        note=f"已转 {short(facts.target)} 审批")
    # The event's own date: the referral may have been moved again since.
    day = format_date(data.get("admission_date") or facts.referral.admission_date)
    if action == "approve" and to == Status.SCHEDULED:
        return progress(facts, event, result="已接收", institution=short(facts.target),
                        note=f"{day}入院 {data.get('department', facts.department.name)}")
    if action == "reject":
        reason = REJECTION_REASONS.get(data.get("reason_code", ""), "")
        text = "：".join(part for part in (reason, event.comment) if part) or "未说明原因"
        return progress(facts, event, result="已拒绝", institution=event.actor_institution_name or facts.target.name,
                        note=text)
    if action == "redirect":
        return progress(facts, event, result="已改转", institution=data.get("from_institution", ""),
                        note=f"改转 {data.get('to_institution', facts.target.name)}，待其审批")
    if action == "reschedule":
        return progress(facts, event, result="已改期", institution=short(facts.target), note=f"入院日期改为{day}")
    if action == "check_in":
        return progress(facts, event, result="已入院", institution=short(facts.target), note="患者已办理入院")
    if action == "complete":
        return progress(facts, event, result="已完成", institution=short(facts.target),
                        note="出院（回转）小结已回传，请查看")
    if action == "expire":
        return progress(facts, event, result="已过期", institution=short(facts.target),
                        note="患者逾期未到院，床位已释放")
    return None


async def _for_patient(facts: Facts, event: ReferralEvent, current: bool) -> Notice | None:
    action, to = event.action, event.to_status
    data = event.data or {}
    if action == "approve" and to == Status.SCHEDULED:
        # "Come on this date" is wrong once the referral was cancelled or redirected; the later event says so.
        return await admission(facts, event) if current else None
    if action == "reschedule":
        return await admission(facts, event, moved=True) if current else None
    if action == "redirect":
        return progress(facts, event, result="已改转", institution=data.get("to_institution", facts.target.name),
                        note="已为您改转至该医院，请等待审批结果")
    if action == "cancel":
        return progress(facts, event, result="已取消", institution=short(facts.source),
                        note="如有疑问请联系转诊医生")
    if action == "complete":
        return progress(facts, event, result="已完成", institution=short(facts.target),
                        note="出院小结已交转诊医生，请按医嘱随访")
    return None


async def for_event(facts: Facts, event: ReferralEvent) -> list[Notice]:
    """The notices of one timeline event, each with its accounts; an account appears in one notice only,
    the first that concerns it (approver before doctor before patient)."""
    referral = facts.referral
    notices: list[Notice] = []
    current = str(referral.status) == event.to_status and not await moved_on(referral, event.seq)
    if current and event.to_status in PENDING and event.action in ("submit", "approve", "redirect"):
        todo = await awaiting(facts)
        todo.accounts = await recipients.approver_accounts(responsible_institution(referral))
        notices.append(todo)
    doctor = await _decision_for_doctor(facts, event)
    if doctor is not None:
        doctor.accounts = await recipients.referrer_accounts(referral)
        notices.append(doctor)
    patient = await _for_patient(facts, event, current)
    if patient is not None:
        patient.accounts = await recipients.patient_accounts(referral)
        notices.append(patient)
    if event.action == "cancel" and event.from_status in (Status.PENDING_SOURCE, Status.PENDING_TARGET,
                                                         Status.SCHEDULED):
        desk = (referral.source_institution_id if event.from_status == Status.PENDING_SOURCE  # type: ignore[attr-defined]
                else referral.target_institution_id)  # type: ignore[attr-defined]
        referrer = await cache.staff(referral.referrer_id)  # type: ignore[attr-defined]
        cancelled = progress(facts, event, result="已取消", institution=short(facts.source),
                             note=f"{referrer.name if referrer else '转诊医生'}已取消该转诊", kind="referral_cancelled")
        cancelled.accounts = await recipients.approver_accounts(desk)
        notices.append(cancelled)
    seen: set[int] = set()
    for notice in notices:
        notice.accounts = [a for a in notice.accounts if a not in seen]
        seen.update(notice.accounts)
    return [n for n in notices if n.accounts]
