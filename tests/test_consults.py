"""Cloud consultations through the real app, on both backends (issue 11 point 1): a doctor asks a department's
pool or a named expert; exactly one of two experts accepting at once wins; MDT invitations; a structured
opinion; coded declines; cancellation; every step on a verifiable hash-chained timeline; the consultation's
conversation gains its participants."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from aiohttp import FormData

from audit_verify import verify_all
from models import (
    Consultation,
    ConsultationEvent,
    Conversation,
    ConversationParticipant,
    InboxMessage,
    InstitutionPolicy,
    OutboxJob,
    Staff,
    WeChatAccount,
)
from referrals.timeline import verify
from tests.chat_support import Chat
from tests.consult_support import QUESTION, act, pool_expert, request_consultation, scanned_patient
from tests.notify_support import run_jobs
from tests.referral_support import Desk, department, institution


async def _participants(consultation_id: str) -> set[int]:
    conversation = await Conversation.get(kind="consultation", subject_id=consultation_id)
    return set(await ConversationParticipant.filter(conversation_id=conversation.id, left_at=None)
               .values_list("staff_id", flat=True))


async def test_a_pool_request_is_accepted_discussed_with_an_invited_expert_and_concluded(client):
    desk = await Desk.open(client)
    second = await pool_expert("SUBEI", "CARD", "o_subei_card_expert_2", name="孙心内")
    first = await pool_expert("SUBEI", "CARD", "o_subei_card_expert_1", name="周心内")
    patient = await scanned_patient(desk)
    body = await desk.ok(await request_consultation(desk, patient=patient, urgency="urgent"), 201)
    cid = body["id"]
    assert body["status"] == "requested" and body["code"].startswith("HZ") and body["addressed_to"] == "pool"
    assert body["clinical"]["diagnoses"] == patient["prefill"]["diagnoses"] and body["question"] == QUESTION
    assert body["deadline_at"] and body["conversation_id"]
    assert [e["action"] for e in body["timeline"]] == ["create"]

    # Both experts of the pool see it in their worklist; the requester sees it among the outgoing.
    for openid in ("o_subei_card_expert_1", "o_subei_card_expert_2"):
        pool = await desk.ok(await desk.get(openid, "/api/v1/consultations", box="pool"))
        assert [c["id"] for c in pool["items"]] == [cid]
    assert (await desk.ok(await desk.get(("DONGGUAN", "doctor"), "/api/v1/consultations")))["items"][0]["id"] == cid
    # An expert of another department neither sees it in the pool nor may open it.
    neurologist = await pool_expert("SUBEI", "NEUR", "o_subei_neur_expert", name="郑神内")
    other = await desk.ok(await desk.get("o_subei_neur_expert", "/api/v1/consultations", box="pool"))
    assert other["items"] == []
    assert (await desk.get("o_subei_neur_expert", f"/api/v1/consultations/{cid}")).status == 404

    accepted = await desk.ok(await act(desk, "o_subei_card_expert_1", cid, "accept"))
    assert accepted["status"] == "accepted" and accepted["expert"]["name"] == "周心内"
    assert accepted["allowed_actions"] == ["invite", "conclude"]
    assert await _participants(cid) == {first.id, (await Consultation.get(public_id=cid)).requester_id}

    # MDT: the accepting expert invites an expert of another department; they join the conversation.
    invited = await desk.ok(await act(desk, "o_subei_card_expert_1", cid, "invite",
                                      {"expert_ids": [str(neurologist.public_id)]}))
    assert [m["name"] for m in invited["invited"]] == [neurologist.name]
    assert neurologist.id in await _participants(cid)
    mine = await desk.ok(await desk.get("o_subei_neur_expert", "/api/v1/consultations", box="mine"))
    assert [c["id"] for c in mine["items"]] == [cid]
    # An invited expert reads it but does not conclude it.
    assert (await act(desk, "o_subei_neur_expert", cid, "conclude",
                      {"opinion": {"recommendation": "refer_up", "advice": "x"}})).status == 403
    assert (await act(desk, "o_subei_card_expert_2", cid, "accept")).status == 409

    card = await department("SUBEI", "CARD")
    done = await desk.ok(await act(desk, "o_subei_card_expert_1", cid, "conclude", {"opinion": {
        "recommendation": "refer_up", "advice": "建议上转行冠脉造影", "suggested_department_id": str(card.public_id)}}))
    assert done["status"] == "concluded" and done["allowed_actions"] == []
    assert done["opinion"]["recommendation"] == "refer_up" and done["opinion"]["suggested_department"] == "心血管内科"
    assert done["opinion"]["expert"] == "周心内"
    assert [e["action"] for e in done["timeline"]] == ["create", "accept", "invite", "conclude"]
    assert second.id not in await _participants(cid)

    verified = await verify(Consultation, (await Consultation.get(public_id=cid)).id, done["version"])
    assert verified.valid and verified.events == 4
    # Editing an event breaks the chain, and `audit-verify` names the consultation.
    assert await verify_all(out=[].append) == 0
    await ConsultationEvent.filter(consultation_id=(await Consultation.get(public_id=cid)).id, seq=2) \
        .update(comment="篡改")
    assert not (await verify(Consultation, (await Consultation.get(public_id=cid)).id, done["version"])).valid
    lines: list[str] = []
    assert await verify_all(out=lines.append) == 1
    assert any(done["code"] in line for line in lines)


async def test_two_experts_accepting_at_once_exactly_one_wins(client):
    desk = await Desk.open(client)
    await pool_expert("SUBEI", "CARD", "o_card_a", name="甲专家")
    await pool_expert("SUBEI", "CARD", "o_card_b", name="乙专家")
    for openid in ("o_card_a", "o_card_b"):
        await desk.session_of(openid)
    patient = await scanned_patient(desk)
    for _ in range(4):
        cid = (await desk.ok(await request_consultation(desk, patient=patient), 201))["id"]
        responses = await asyncio.gather(act(desk, "o_card_a", cid, "accept"), act(desk, "o_card_b", cid, "accept"))
        assert sorted(r.status for r in responses) == [200, 409]
        won, lost = sorted(responses, key=lambda r: r.status)
        winner, error = await won.json(), (await lost.json())["error"]
        assert error["code"] in ("INVALID_STATE", "CONCURRENT_UPDATE")
        assert error["detail"]["status"] == "accepted" and error["detail"]["version"] == winner["version"] == 2
        row = await Consultation.get(public_id=cid)
        assert row.expert_id is not None and await ConsultationEvent.filter(consultation_id=row.id).count() == 2


async def test_a_named_expert_declines_with_a_coded_reason(client):
    desk = await Desk.open(client)
    expert = await Staff.get(account__openid="demo_subei_expert")
    resp = await request_consultation(desk, expert_id=str(expert.public_id), target_institution_id=None,
                                      target_department_id=None)
    body = await desk.ok(resp, 201)
    assert body["addressed_to"] == "expert" and body["expert"]["name"] == expert.name
    assert body["target_department"]["code"] == "CARD"  # the expert's own department
    pool = await desk.ok(await desk.get(("SUBEI", "expert"), "/api/v1/consultations", box="pool"))
    assert [c["id"] for c in pool["items"]] == [body["id"]]
    bad = await act(desk, ("SUBEI", "expert"), body["id"], "decline", {"reason_code": "busy"})
    assert bad.status == 422 and (await bad.json())["error"]["code"] == "INVALID_REASON"
    declined = await desk.ok(await act(desk, ("SUBEI", "expert"), body["id"], "decline",
                                       {"reason_code": "out_of_scope", "comment": "建议咨询心内科"}))
    assert declined["status"] == "declined"
    assert declined["decline"] == {"code": "out_of_scope", "reason": "不属于本专业范围", "text": "建议咨询心内科"}


async def test_the_requester_cancels_and_nobody_else_may(client):
    desk = await Desk.open(client)
    await pool_expert("SUBEI", "CARD", "o_card_c")
    cid = (await desk.ok(await request_consultation(desk), 201))["id"]
    assert (await act(desk, "o_card_c", cid, "cancel")).status == 403
    cancelled = await desk.ok(await act(desk, ("DONGGUAN", "doctor"), cid, "cancel", {"comment": "患者已好转"}))
    assert cancelled["status"] == "cancelled"
    again = await act(desk, ("DONGGUAN", "doctor"), cid, "cancel")
    assert again.status == 409 and (await again.json())["error"]["code"] == "INVALID_STATE"


async def test_creating_and_accepting_honour_the_idempotency_key(client):
    desk = await Desk.open(client)
    await pool_expert("SUBEI", "CARD", "o_card_d")
    patient = await scanned_patient(desk)
    first = await desk.ok(await request_consultation(desk, patient=patient, key="hz-1"), 201)
    replay = await request_consultation(desk, patient=patient, key="hz-1")
    assert replay.status == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert (await replay.json())["id"] == first["id"] and await Consultation.all().count() == 1
    await desk.ok(await act(desk, "o_card_d", first["id"], "accept", key="acc-1"))
    again = await act(desk, "o_card_d", first["id"], "accept", key="acc-1")
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"


async def test_bad_requests_are_refused_in_chinese(client):
    desk = await Desk.open(client)
    patient = await scanned_patient(desk)
    own = await request_consultation(desk, patient=patient, target="DONGGUAN", dept="GP")
    assert own.status == 422 and (await own.json())["error"]["code"] == "SAME_INSTITUTION"
    nobody = await request_consultation(desk, patient=patient, target_institution_id=None)
    assert nobody.status == 422 and (await nobody.json())["error"]["code"] == "ADDRESSEE_REQUIRED"
    clerk = await desk.client.post("/api/v1/consultations", json={"patient_id": patient["patient"]["id"],
                                                                  "question": "x"},
                                   headers=await desk.headers(("DONGGUAN", "admission_clerk")))
    assert clerk.status == 403


async def _inbox(openid: str) -> list[str]:
    account = await WeChatAccount.get(openid=openid)
    return [m.kind for m in await InboxMessage.filter(account_id=account.id).order_by("id")]


async def test_an_unanswered_request_reminds_the_pool_then_the_approvers_then_expires(client):
    desk = await Desk.open(client)
    await pool_expert("SUBEI", "CARD", "o_card_e")
    subei = await institution("SUBEI")
    await InstitutionPolicy.filter(institution_id=subei.id).delete()
    await InstitutionPolicy.create(institution_id=subei.id, consult_accept_hours={"routine": 24, "urgent": 2})
    body = await desk.ok(await request_consultation(desk, urgency="urgent"), 201)
    row = await Consultation.get(public_id=body["id"])
    started = row.stage_started_at
    jobs = {j.payload["timer"]: j for j in await OutboxJob.filter(kind="consult.timer")}
    assert {k: j.next_attempt_at - started for k, j in jobs.items()} == {
        "overdue": timedelta(hours=2), "escalate": timedelta(hours=4), "expire": timedelta(hours=6)}

    app = client.server.app
    await run_jobs(app)
    assert await _inbox("o_card_e") == ["consult_todo"]
    await run_jobs(app, now=started + timedelta(hours=2, minutes=1))
    assert await _inbox("o_card_e") == ["consult_todo", "consult_overdue"]
    assert await _inbox("demo_subei_approver") == []
    await run_jobs(app, now=started + timedelta(hours=4, minutes=1))
    assert await _inbox("demo_subei_approver") == ["consult_escalated"]
    # The approver of the addressed institution may open it (to chase it up).
    assert (await desk.get(("SUBEI", "approver"), f"/api/v1/consultations/{body['id']}")).status == 200
    await run_jobs(app, now=started + timedelta(hours=6, minutes=1))
    detail = await desk.ok(await desk.get(("DONGGUAN", "doctor"), f"/api/v1/consultations/{body['id']}"))
    assert detail["status"] == "expired" and detail["timeline"][-1]["actor"]["name"] == "系统"
    assert await _inbox("demo_dongguan_doctor") == ["consult_progress"]


async def test_an_accepted_request_is_not_chased(client):
    desk = await Desk.open(client)
    await pool_expert("SUBEI", "CARD", "o_card_f")
    body = await desk.ok(await request_consultation(desk, urgency="emergency"), 201)
    await desk.ok(await act(desk, "o_card_f", body["id"], "accept"))
    started = (await Consultation.get(public_id=body["id"])).stage_started_at
    await run_jobs(client.server.app, now=started + timedelta(days=1))
    # Taken before its notice went out: the pool is not told of a request nobody can accept any more.
    assert await _inbox("o_card_f") == []
    assert await _inbox("demo_subei_approver") == []
    assert await _inbox("demo_dongguan_doctor") == ["consult_progress"]  # accepted
    assert (await Consultation.get(public_id=body["id"])).status == "accepted"


async def _concluded(desk: Desk, *, recommendation: str = "refer_up", expert_openid: str = "o_card_g",
                     suggested: tuple[str, str] | None = ("SUBEI", "CARD")) -> dict:
    await pool_expert("SUBEI", "CARD", expert_openid, name="吴心内")
    body = await desk.ok(await request_consultation(desk, urgency="urgent"), 201)
    cid = body["id"]
    png = b"\x89PNG\r\n\x1a\n" + b"0" * 64
    form = FormData()
    form.add_field("file", png, filename="心电图.png", content_type="image/png")
    resp = await desk.client.post(f"/api/v1/consultations/{cid}/attachments", data=form,
                                  headers=await desk.headers(("DONGGUAN", "doctor")))
    assert resp.status == 201, await resp.text()
    await desk.ok(await act(desk, expert_openid, cid, "accept"))
    opinion = {"recommendation": recommendation, "advice": "冠脉造影指征明确，建议尽快上转心内科"}
    if suggested:
        opinion["suggested_department_id"] = str((await department(*suggested)).public_id)
    return await desk.ok(await act(desk, expert_openid, cid, "conclude", {"opinion": opinion}))


async def test_a_referral_is_made_from_a_consultation_in_one_step_and_linked_both_ways(client):
    desk = await Desk.open(client)
    consultation = await _concluded(desk)
    resp = await desk.client.post("/api/v1/referrals", json={"consultation_id": consultation["id"], "submit": True},
                                  headers=await desk.headers(("DONGGUAN", "doctor")))
    referral = await desk.ok(resp, 201)
    assert referral["status"] == "pending_source" and referral["urgency"] == "urgent"  # the consultation's
    assert referral["target_institution"]["code"] == "SUBEI" and referral["target_department"]["code"] == "CARD"
    assert referral["clinical"]["diagnoses"] == consultation["clinical"]["diagnoses"]
    assert referral["clinical"]["chief_complaint"] == consultation["clinical"]["chief_complaint"]
    assert referral["clinical"]["past_history"] == consultation["clinical"]["past_history"]
    assert referral["clinical"]["referral_reason"].startswith("会诊意见（吴心内）：冠脉造影指征明确")
    assert referral["consultation"]["code"] == consultation["code"]
    assert referral["consultation"]["opinion"]["recommendation"] == "refer_up"
    assert referral["consultation"]["counts_as_review"] is False  # the default policy
    assert referral["timeline"][0]["data"]["consultation"] == consultation["code"]
    files = await desk.ok(await desk.get(("DONGGUAN", "doctor"), f"/api/v1/referrals/{referral['id']}/attachments"))
    assert [f["filename"] for f in files["items"]] == ["心电图.png"]
    # The consultation shows the referral, recorded on its own chained timeline.
    linked = await desk.ok(await desk.get(("DONGGUAN", "doctor"), f"/api/v1/consultations/{consultation['id']}"))
    assert linked["referrals"] == [{"id": referral["id"], "code": referral["code"], "status": "pending_source"}]
    assert linked["timeline"][-1]["action"] == "referral" and linked["timeline"][-1]["data"]["referral"] == \
        referral["code"]
    row = await Consultation.get(public_id=consultation["id"])
    assert (await verify(Consultation, row.id, row.version)).valid
    # The target's approvers see the expert's opinion in the referral detail once it reaches them.
    await desk.ok(await desk.post(("DONGGUAN", "approver"), referral["id"], "approve"))
    seen = await desk.detail(("SUBEI", "approver"), referral["id"])
    assert seen["consultation"]["opinion"]["advice"] == "冠脉造影指征明确，建议尽快上转心内科"


async def test_a_policy_may_let_its_experts_refer_up_opinion_count_as_the_clinical_review(client):
    desk = await Desk.open(client)
    subei = await institution("SUBEI")
    policy = await desk.ok(await desk.client.put("/api/v1/admin/policy", json={"consult_opinion_is_review": True},
                                                 headers=await desk.headers(("SUBEI", "admin"))))
    assert policy["consult_opinion_is_review"] is True and policy["consult_accept_hours"]["urgent"] == 4
    consultation = await _concluded(desk)
    headers = await desk.headers(("DONGGUAN", "doctor"))
    referral = await desk.ok(await desk.client.post("/api/v1/referrals", json={
        "consultation_id": consultation["id"], "submit": True}, headers=headers), 201)
    assert referral["consultation"]["counts_as_review"] is True
    assert referral["timeline"][0]["data"]["reviewed_in_consultation"] is True
    # When it reaches the target, its approvers are asked only to book the bed.
    await desk.ok(await desk.post(("DONGGUAN", "approver"), referral["id"], "approve"))
    await run_jobs(client.server.app)
    account = await WeChatAccount.get(openid="demo_subei_approver")
    todo = await InboxMessage.filter(account_id=account.id, kind="referral_todo").first()
    assert todo is not None and "专家会诊已同意上转，请" in todo.body and "前预约床位" in todo.body
    # Sent to another department than the expert's: the opinion does not stand for that department's review.
    other = await desk.ok(await desk.client.post("/api/v1/referrals", json={
        "consultation_id": consultation["id"], "confirm_duplicate": True,
        "target_institution_id": str(subei.public_id),
        "target_department_id": str((await department("SUBEI", "NEUR")).public_id)}, headers=headers), 201)
    assert other["consultation"]["counts_as_review"] is False


async def test_only_the_requester_makes_a_referral_and_only_from_a_concluded_consultation(client):
    desk = await Desk.open(client)
    await pool_expert("SUBEI", "CARD", "o_card_h")
    open_one = await desk.ok(await request_consultation(desk), 201)
    resp = await desk.client.post("/api/v1/referrals", json={"consultation_id": open_one["id"]},
                                  headers=await desk.headers(("DONGGUAN", "doctor")))
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "CONSULTATION_NOT_CONCLUDED"
    resp = await desk.client.post("/api/v1/referrals", json={"consultation_id": open_one["id"]},
                                  headers=await desk.headers(("SUBEI", "doctor")))
    assert resp.status == 404  # not a party: it does not exist for them
    resp = await desk.client.post("/api/v1/referrals", json={"urgency": "routine"},
                                  headers=await desk.headers(("DONGGUAN", "doctor")))
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "TARGET_INCOMPLETE"


async def test_state_changes_are_announced_to_the_conversations_connected_participants(client):
    desk = await Desk.open(client)
    await pool_expert("SUBEI", "CARD", "o_card_i")
    body = await desk.ok(await request_consultation(desk), 201)
    conversation = await Conversation.get(public_id=body["conversation_id"])
    doctor = await Chat(client, conversation).socket(("DONGGUAN", "doctor"))
    accepted = await desk.ok(await act(desk, "o_card_i", body["id"], "accept"))
    frame = await doctor.until(lambda f: f["type"] == "state")
    assert frame["subject_id"] == body["id"] and frame["state"] == "accepted"
    assert frame["detail"]["version"] == accepted["version"] and frame["detail"]["action"] == "accept"
    await doctor.ws.close()
