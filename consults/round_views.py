"""How a ward round looks to a participant: the patient, both sides, the record, and the patient's latest
observations and results read live from the local HIS (a HIS that does not answer leaves the rest readable)."""

from __future__ import annotations

import secrets
import time

from accounts.login import SESSION_KEY_CONTEXT
from chat.conversations import conversation_of
from consults.round_machine import STATUS_NAMES, RoundStatus, round_actions
from consults.rounds import members_of
from directory import cache
from errors import Conflict, Forbidden
from his.gateway import HisError, HisGateway
from models import Patient, PatientIdentifier, WardRound, WardRoundItem, WeChatAccount
from models.chat import ConversationKind
from referrals.views import _institution_ref
from security.crypto import PersonalDataCipher
from security.masking import mask_name
from wechat.voip import voip_signature


async def _staff_ref(staff) -> dict | None:
    if staff is None:
        return None
    institution = await cache.institution(staff.institution_id)
    return {"id": str(staff.public_id), "name": staff.name, "title": staff.title,
            "institution": {"id": str(institution.public_id), "name": institution.name}}


async def summary_view(ward_round: WardRound) -> dict:
    return {
        "id": str(ward_round.public_id), "code": ward_round.code, "status": ward_round.status,
        "status_name": STATUS_NAMES[RoundStatus(ward_round.status)], "version": ward_round.version,
        "scheduled_at": ward_round.scheduled_at, "started_at": ward_round.started_at,
        "completed_at": ward_round.completed_at,
        "patient_name": mask_name((await Patient.get(id=ward_round.patient_id)).name),  # type: ignore[attr-defined]
        "local_institution": _institution_ref(await cache.institution(ward_round.local_institution_id)),  # type: ignore[attr-defined]
        "remote_institution": _institution_ref(await cache.institution(ward_round.remote_institution_id)),  # type: ignore[attr-defined]
        "repeat_days": ward_round.repeat_days,
        "repeat_until": ward_round.repeat_until.isoformat() if ward_round.repeat_until else None,
    }


async def live_record(gateway: HisGateway, ward_round: WardRound) -> dict:
    """The newest value of each observation and the patient's reports, from the HIS where the patient lies."""
    institution = await cache.institution(ward_round.local_institution_id)  # type: ignore[attr-defined]
    known = await PatientIdentifier.get_or_none(patient_id=ward_round.patient_id,  # type: ignore[attr-defined]
                                                institution_id=institution.id, system="mrn")
    if known is None:
        return {"status": "unknown_patient", "observations": [], "reports": []}
    try:
        measurements = await gateway.list_observations(institution, known.value)
        reports = await gateway.list_reports(institution, known.value)
    except HisError as exc:
        return {"status": "unavailable", "error": {"code": exc.code, "message": exc.message},
                "observations": [], "reports": []}
    newest: dict[str, dict] = {}
    for m in measurements:  # newest first: the first of each code is its latest value
        newest.setdefault(m.code or m.name, {"code": m.code, "name": m.name, "value": m.value, "unit": m.unit,
                                             "category": m.category, "effective": m.effective})
    return {"status": "ok", "observations": list(newest.values()),
            "reports": [{"code": r.code, "name": r.name, "category": r.category, "status": r.status,
                         "issued": r.issued, "conclusion": r.conclusion} for r in reports]}


def _item_view(item: WardRoundItem, names: dict[int, str]) -> dict:
    view = {"n": item.n, "text": item.text, "author": names.get(item.author_id),  # type: ignore[attr-defined]
            "created_at": item.created_at}
    if item.kind == "advice":
        view |= {"acknowledged": item.acknowledged_at is not None, "acknowledged_at": item.acknowledged_at,
                 "acknowledged_by": names.get(item.acknowledged_by_id)}  # type: ignore[attr-defined]
    else:
        view |= {"due_date": item.due_date.isoformat() if item.due_date else None}
    return view


async def round_view(ward_round: WardRound, staff_id: int, gateway: HisGateway) -> dict:
    members = [await cache.staff(i) for i in await members_of(ward_round)]
    names = {m.id: m.name for m in members if m}
    items = await WardRoundItem.filter(round_id=ward_round.id).order_by("kind", "n")
    following = await WardRound.filter(previous_id=ward_round.id).first()
    previous = await WardRound.get(id=ward_round.previous_id) if ward_round.previous_id else None  # type: ignore[attr-defined]
    conversation = await conversation_of(ConversationKind.WARD_ROUND, ward_round.public_id)
    referral = await ward_round.referral
    view = await summary_view(ward_round)
    view.update({
        "referral": {"id": str(referral.public_id), "code": referral.code, "status": str(referral.status),
                     "direction": str(referral.direction)},
        "organiser": await _staff_ref(await cache.staff(ward_round.organiser_id)),  # type: ignore[attr-defined]
        "participants": [await _staff_ref(m) for m in members if m],
        "findings": ward_round.findings,
        "advice": [_item_view(i, names) for i in items if i.kind == "advice"],
        "tasks": [_item_view(i, names) for i in items if i.kind == "task"],
        "next_round": {"id": str(following.public_id), "scheduled_at": following.scheduled_at} if following else None,
        "previous_round_id": str(previous.public_id) if previous else None,
        "cancel_reason": ward_round.cancel_reason or None,
        "conversation_id": str(conversation.public_id) if conversation else None,
        "allowed_actions": [str(a) for a in round_actions(
            RoundStatus(ward_round.status), participant=True,
            organiser=staff_id == ward_round.organiser_id)],  # type: ignore[attr-defined]
        "his": await live_record(gateway, ward_round),
    })
    return view


async def voip_room(ward_round: WardRound, account_id: int, app_id: str, cipher: PersonalDataCipher) -> dict:
    """What wx.joinVoIPChat needs to enter the round's room, signed with the caller's own session_key."""
    if RoundStatus(ward_round.status) not in (RoundStatus.SCHEDULED, RoundStatus.IN_PROGRESS):
        raise Conflict("查房已结束，不能再加入音视频", code="INVALID_STATE", detail={"status": ward_round.status})
    account = await WeChatAccount.get(id=account_id)
    if not account.session_key_enc:
        raise Forbidden("请在小程序中重新登录后再加入查房音视频", code="SESSION_KEY_MISSING")
    session_key = cipher.decrypt(account.session_key_enc, SESSION_KEY_CONTEXT)
    group_id = f"wardround_{ward_round.public_id.hex}"
    nonce = secrets.token_hex(8)
    stamp = int(time.time())
    return {"groupId": group_id, "nonceStr": nonce, "timeStamp": stamp, "roomType": "video",
            "signature": voip_signature(app_id, group_id, nonce, stamp, session_key)}
