"""Who is told what about a consultation, and its timers (outbox jobs, registered on import by consults.setup).

* A new request: the named expert, or every expert of the addressed department (the pool).
* Nobody accepted by the policy's deadline: the pool again; by twice the deadline: the department's approvers
  (the target institution's); by three times: the request expires and the requester is told.
* Accepted, declined, concluded, expired: the requester. Invited: the invited experts. Cancelled: the accepting
  expert and the invited ones (or the pool, if nobody had accepted).

Patient names are masked; nothing carries an ID or phone number.
"""

from __future__ import annotations

import logging

from tortoise.transactions import in_transaction

from appkeys import SETTINGS
from consults import commands
from consults.access import pool_staff
from consults.state_machine import DECLINE_REASONS, Status
from directory import cache
from models import Consultation, ConsultationEvent, ConsultationMember, WeChatAccount
from notifications import recipients
from notifications.fanout import publish_all
from notifications.rules import Notice, short
from notifications.templates import APPROVAL, PROGRESS
from outbox.registry import JobContext, handler
from security.masking import mask_name

log = logging.getLogger("referral_cloud.consults")


def consultation_page(public_id: object) -> str:
    return f"pages/consultation/detail?id={public_id}"


async def staff_accounts(staff_ids: list[int]) -> list[int]:
    """The WeChat accounts of these staff members while they are active."""
    if not staff_ids:
        return []
    return list(await WeChatAccount.filter(staff_id__in=staff_ids, staff__is_active=True, staff__deleted_at=None)
                .order_by("id").values_list("id", flat=True))


def _diagnosis(consultation: Consultation) -> str:
    diagnoses = (consultation.clinical or {}).get("diagnoses") or []
    return (diagnoses[0].get("name") if diagnoses else "") or consultation.question


async def todo(consultation: Consultation, *, stage: str) -> Notice:
    """For the pool (`new`, `overdue`) or the department's approvers (`escalated`)."""
    source = await cache.institution(consultation.requester_institution_id)  # type: ignore[attr-defined]
    department = await cache.department(consultation.target_department_id)  # type: ignore[attr-defined]
    patient = mask_name(consultation.patient_name)
    kind, title, note = {
        "new": ("consult_todo", "新的会诊请求", "请尽快接诊"),
        "overdue": ("consult_overdue", "会诊请求超时未接诊", "已超时，请尽快接诊"),
        "escalated": ("consult_escalated", "会诊请求超时督办", "超时未接诊，请督办"),
    }[stage]
    return Notice(kind=kind, template=APPROVAL.key, page=consultation_page(consultation.public_id), title=title,
                  values={"character_string1": consultation.code, "thing2": patient,
                          "thing3": f"来自 {short(source)}", "thing4": _diagnosis(consultation),
                          "time5": consultation.created_at, "thing6": note},
                  body=f"会诊 {consultation.code}：{source.name} 请 {department.name} 会诊，患者 {patient}。"
                       f"问题：{consultation.question[:60]}。{note}。")


def progress(consultation: Consultation, event: ConsultationEvent, *, result: str, note: str) -> Notice:
    patient = mask_name(consultation.patient_name)
    return Notice(kind="consult_progress", template=PROGRESS.key, page=consultation_page(consultation.public_id),
                  title=f"会诊{result}", values={"character_string1": consultation.code, "thing2": patient,
                                               "phrase3": result, "thing4": event.actor_institution_name,
                                               "thing5": note, "time6": event.at},
                  body=f"会诊 {consultation.code}（患者 {patient}）{result}：{event.actor_name or '系统'}。{note}")


async def for_event(consultation: Consultation, event: ConsultationEvent) -> list[Notice]:
    action, data = event.action, event.data or {}
    requester = [consultation.requester_id]  # type: ignore[attr-defined]
    members = list(await ConsultationMember.filter(consultation_id=consultation.id)
                   .values_list("staff_id", flat=True))
    plan: list[tuple[Notice, list[int]]] = []
    if action == "create" and consultation.status == Status.REQUESTED:
        plan.append((await todo(consultation, stage="new"), await pool_staff(consultation)))
    elif action == "accept":
        plan.append((progress(consultation, event, result="已接诊", note=f"{event.actor_name}已接诊，可在会诊群中讨论"),
                     requester))
    elif action == "decline":
        reason = DECLINE_REASONS.get(data.get("reason_code", ""), "")
        text = "：".join(part for part in (reason, event.comment) if part) or "未说明原因"
        plan.append((progress(consultation, event, result="已婉拒", note=text), requester))
    elif action == "invite":
        invited = progress(consultation, event, result="邀请会诊", note=f"{event.actor_name}邀请您参加多学科会诊")
        plan.append((invited, members))
    elif action == "conclude":
        opinion = consultation.opinion or {}
        note = f"{opinion.get('recommendation_name', '')}：{opinion.get('advice', '')}"
        plan.append((progress(consultation, event, result="已出意见", note=note),
                     requester + members))
    elif action == "cancel":
        told = ([consultation.expert_id, *members] if consultation.expert_id  # type: ignore[attr-defined]
                else await pool_staff(consultation))
        plan.append((progress(consultation, event, result="已取消", note="申请医生已取消该会诊"), told))
    elif action == "expire":
        plan.append((progress(consultation, event, result="已过期", note="超时无人接诊，可重新发起或改约其他专家"),
                     requester))
    notices = []
    for notice, staff_ids in plan:
        notice.accounts = await staff_accounts([s for s in staff_ids if s is not None])
        if notice.accounts:
            notices.append(notice)
    return notices


@handler(commands.EVENT_KIND)
async def consultation_event(ctx: JobContext) -> None:
    payload = ctx.job.payload
    consultation = await Consultation.get_or_none(id=payload["consultation_id"])
    event = await ConsultationEvent.get_or_none(consultation_id=payload["consultation_id"], seq=payload["seq"])
    if consultation is None or event is None:
        log.warning("consult.event for a missing consultation event %s/%s", payload.get("consultation_id"),
                    payload.get("seq"))
        return
    notices = await for_event(consultation, event)
    async with in_transaction():
        await publish_all(notices, None, f"consult:{consultation.id}:{event.seq}", settings=ctx.app[SETTINGS])


@handler(commands.TIMER_KIND)
async def consultation_timer(ctx: JobContext) -> None:
    """Reminder, escalation or expiry of a request still unanswered; nothing once it was answered."""
    payload = ctx.job.payload
    consultation = await Consultation.get_or_none(id=payload["consultation_id"])
    if consultation is None or consultation.status != Status.REQUESTED:
        return
    timer = payload["timer"]
    if timer == "expire":
        await commands.expire(consultation.id)
        return
    if timer == "overdue":
        notice = await todo(consultation, stage="overdue")
        notice.accounts = await staff_accounts(await pool_staff(consultation))
    else:
        notice = await todo(consultation, stage="escalated")
        notice.accounts = await recipients.approver_accounts(
            consultation.target_institution_id)  # type: ignore[attr-defined]
    async with in_transaction():
        await publish_all([notice], None, f"consult:{consultation.id}:{timer}", settings=ctx.app[SETTINGS])
