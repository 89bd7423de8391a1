"""Remote ward rounds through the real app, on both backends (issue 11 point 3): scheduled by either side of a
referral with participants of both; the detail shows the patient's latest observations and results read live
from the local HIS (simulator); findings, advice items acknowledged one by one by the local doctor, follow-up
tasks with reminders through the outbox, the next round by recurrence; access and state rules."""

from __future__ import annotations

from datetime import datetime, timedelta

from appkeys import HIS_SIMULATOR
from models import InboxMessage, Staff, WardRound, WeChatAccount
from referrals.state_machine import Status
from tests.consult_support import schedule_round as schedule
from tests.consult_support import staff_public_id as _staff_id
from tests.consult_support import up_candidate
from tests.notify_support import run_jobs
from tests.referral_support import Desk
from timeutil import CHINA_TZ, china_today, utcnow


async def _inbox(openid: str) -> list[str]:
    account = await WeChatAccount.get(openid=openid)
    return [m.kind for m in await InboxMessage.filter(account_id=account.id).order_by("id")]


async def act(desk: Desk, who, round_id: str, action: str, body: dict | None = None):
    return await desk.client.post(f"/api/v1/ward-rounds/{round_id}/{action}", json=body or {},
                                  headers=await desk.headers(who))


def expected_vitals(client, person: dict) -> dict[str, str]:
    """The newest value of each vital sign the simulator holds for the person."""
    store = client.server.app[HIS_SIMULATOR].store("DONGGUAN")
    ref = f"Patient/{person['id']}"
    rows = sorted((o for o in store.all("Observation") if o["subject"]["reference"] == ref),
                  key=lambda o: o["effectiveDateTime"], reverse=True)
    newest: dict[str, str] = {}
    for o in rows:
        newest.setdefault(o["code"]["coding"][0]["code"], f"{o['valueQuantity']['value']:g}")
    return newest


async def test_a_round_before_an_up_referral_reads_the_local_his_and_records_acknowledged_advice(client):
    desk = await Desk.open(client)
    patient, referral = await up_candidate(desk)
    expert = await _staff_id("demo_subei_expert")
    resp = await schedule(desk, referral["id"], participants=[await _staff_id("demo_dongguan_doctor"), expert])
    body = await desk.ok(resp, 201)
    rid = body["id"]
    assert body["status"] == "scheduled" and body["code"].startswith("CF")
    assert body["local_institution"]["code"] == "DONGGUAN" and body["remote_institution"]["code"] == "SUBEI"
    assert {p["name"] for p in body["participants"]} == {
        s.name for s in await Staff.filter(account__openid__in=["demo_subei_doctor", "demo_subei_expert",
                                                                "demo_dongguan_doctor"])}
    assert body["conversation_id"] and body["allowed_actions"] == ["start", "cancel"]

    # Live from DONGGUAN's HIS: the newest of each vital sign, and the patient's reports.
    his = body["his"]
    assert his["status"] == "ok"
    assert {o["code"]: o["value"] for o in his["observations"]} == expected_vitals(client, patient["person"])
    assert {o["name"] for o in his["observations"]} >= {"体温", "心率", "血氧饱和度"}
    assert his["reports"] and all(r["conclusion"] for r in his["reports"])

    # Both sides list it; a doctor who is not a participant cannot see it.
    for who in (("SUBEI", "doctor"), ("DONGGUAN", "doctor"), ("SUBEI", "expert")):
        listed = await desk.ok(await desk.get(who, "/api/v1/ward-rounds"))
        assert [r["id"] for r in listed["items"]] == [rid]
    assert (await desk.get(("GAOYOU", "doctor"), f"/api/v1/ward-rounds/{rid}")).status == 404
    assert (await act(desk, ("DONGGUAN", "doctor"), rid, "cancel")).status == 403  # not the organiser

    await desk.ok(await act(desk, ("DONGGUAN", "doctor"), rid, "start"))
    due = china_today() + timedelta(days=3)
    recorded = await desk.ok(await act(desk, ("SUBEI", "expert"), rid, "record", {
        "findings": "胸闷较前缓解，双肺呼吸音清", "advice": ["阿司匹林改为100 mg 每日一次", "加用阿托伐他汀20 mg"],
        "tasks": [{"text": "复查心肌酶谱", "due_date": due.isoformat()}]}))
    assert recorded["findings"] == "胸闷较前缓解，双肺呼吸音清"
    assert [(a["n"], a["acknowledged"]) for a in recorded["advice"]] == [(1, False), (2, False)]
    [task] = recorded["tasks"]
    assert (task["n"], task["text"], task["due_date"]) == (1, "复查心肌酶谱", due.isoformat())
    more = await desk.ok(await act(desk, ("SUBEI", "doctor"), rid, "record", {"advice": ["监测血压每日两次"]}))
    assert [a["n"] for a in more["advice"]] == [1, 2, 3]

    # The local doctor acknowledges the advice one by one; the remote side cannot, nor twice.
    assert (await act(desk, ("SUBEI", "doctor"), rid, "advice/1/ack")).status == 403
    acked = await desk.ok(await act(desk, ("DONGGUAN", "doctor"), rid, "advice/2/ack"))
    assert [a["acknowledged"] for a in acked["advice"]] == [False, True, False]
    again = await act(desk, ("DONGGUAN", "doctor"), rid, "advice/2/ack")
    assert again.status == 409 and (await again.json())["error"]["code"] == "ALREADY_ACKNOWLEDGED"
    assert (await act(desk, ("DONGGUAN", "doctor"), rid, "advice/9/ack")).status == 404

    done = await desk.ok(await act(desk, ("SUBEI", "doctor"), rid, "complete"))
    assert done["status"] == "completed" and done["next_round"] is None
    assert (await act(desk, ("SUBEI", "doctor"), rid, "record", {"findings": "x"})).status == 409

    # The task's reminder reaches the local participants on its due date.
    await run_jobs(client.server.app, now=datetime.combine(due, datetime.min.time(), CHINA_TZ) + timedelta(hours=9,
                                                                                                          minutes=1))
    assert "ward_round_reminder" in await _inbox("demo_dongguan_doctor")


async def test_a_weekly_round_of_an_admitted_down_referral_schedules_the_next_until_discharge(client):
    desk = await Desk.open(client)
    referral = await desk.drive(Status.ADMITTED, source="SUBEI", target="DONGGUAN", dept="GP")
    first_at = utcnow() + timedelta(hours=1)
    body = await desk.ok(await schedule(desk, referral["id"], ("SUBEI", "doctor"), at=first_at, repeat_days=7), 201)
    # Admitted at the community centre: that is where the patient lies and whose HIS the round reads.
    assert body["local_institution"]["code"] == "DONGGUAN" and body["remote_institution"]["code"] == "SUBEI"
    assert body["his"]["status"] == "unknown_patient" and body["repeat_days"] == 7
    rid = body["id"]
    # Half an hour before, every participant is reminded.
    await run_jobs(client.server.app, now=first_at - timedelta(minutes=29))
    for openid in ("demo_dongguan_doctor", "demo_subei_doctor"):  # (the referral's own notices came before)
        assert (await _inbox(openid)).count("ward_round_reminder") == 1

    await desk.ok(await act(desk, ("DONGGUAN", "doctor"), rid, "start"))
    done = await desk.ok(await act(desk, ("DONGGUAN", "doctor"), rid, "complete"))
    following = await WardRound.get(public_id=done["next_round"]["id"])
    assert following.scheduled_at == (await WardRound.get(public_id=rid)).scheduled_at + timedelta(days=7)
    nxt = await desk.ok(await desk.get(("DONGGUAN", "doctor"), f"/api/v1/ward-rounds/{following.public_id}"))
    assert nxt["previous_round_id"] == rid and nxt["status"] == "scheduled"
    assert {p["name"] for p in nxt["participants"]} == {p["name"] for p in done["participants"]}

    # Discharged (the referral completed): the recurrence stops.
    await desk.ok(await desk.post(("DONGGUAN", "doctor"), referral["id"], "complete", {"summary": {
        "diagnosis": "脑梗死恢复期", "recommendations": "继续康复"}}))
    await desk.ok(await act(desk, ("SUBEI", "doctor"), str(following.public_id), "start"))
    last = await desk.ok(await act(desk, ("SUBEI", "doctor"), str(following.public_id), "complete"))
    assert last["next_round"] is None
    past = await desk.ok(await desk.get(("SUBEI", "doctor"), "/api/v1/ward-rounds", box="past"))
    assert [r["id"] for r in past["items"]] == [str(following.public_id), rid]


async def test_rounds_need_both_sides_a_party_and_a_patient_in_care(client):
    desk = await Desk.open(client)
    _, referral = await up_candidate(desk)
    alone = await schedule(desk, referral["id"], participants=[await _staff_id("demo_subei_expert")])
    assert alone.status == 422 and (await alone.json())["error"]["code"] == "BOTH_SIDES_REQUIRED"
    stranger = await schedule(desk, referral["id"], ("GAOYOU", "doctor"))
    assert stranger.status == 404
    clerk = await schedule(desk, referral["id"], participants=[await _staff_id("demo_dongguan_admission_clerk")])
    assert clerk.status == 422 and (await clerk.json())["error"]["code"] == "INVALID_PARTICIPANT"
    past = await schedule(desk, referral["id"], at=utcnow() - timedelta(days=1))
    assert past.status == 422
    closed = await desk.drive(Status.CANCELLED)
    refused = await schedule(desk, closed["id"], ("DONGGUAN", "doctor"),
                             participants=[await _staff_id("demo_subei_doctor")])
    assert refused.status == 409 and (await refused.json())["error"]["code"] == "REFERRAL_NOT_IN_CARE"
    # The organiser cancels; a cancelled round is no longer started.
    rid = (await desk.ok(await schedule(desk, referral["id"]), 201))["id"]
    cancelled = await desk.ok(await act(desk, ("SUBEI", "doctor"), rid, "cancel", {"reason": "患者外出检查"}))
    assert cancelled["status"] == "cancelled" and cancelled["cancel_reason"] == "患者外出检查"
    assert (await act(desk, ("DONGGUAN", "doctor"), rid, "start")).status == 409


async def test_scheduling_and_acknowledging_honour_the_idempotency_key(client):
    desk = await Desk.open(client)
    _, referral = await up_candidate(desk)
    participants = [await _staff_id("demo_dongguan_doctor")]
    at = (utcnow() + timedelta(hours=3)).astimezone(CHINA_TZ).isoformat()
    headers = await desk.headers(("SUBEI", "doctor"), "wr-1")
    body = {"referral_id": referral["id"], "scheduled_at": at, "participant_ids": participants}
    first = await desk.ok(await desk.client.post("/api/v1/ward-rounds", json=body, headers=headers), 201)
    again = await desk.client.post("/api/v1/ward-rounds", json=body, headers=headers)
    assert again.status == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert (await again.json())["id"] == first["id"] and await WardRound.all().count() == 1
    await desk.ok(await act(desk, ("SUBEI", "doctor"), first["id"], "start"))
    await desk.ok(await act(desk, ("SUBEI", "doctor"), first["id"], "record", {"advice": ["停用硝酸甘油"]}))
    ack = f"/api/v1/ward-rounds/{first['id']}/advice/1/ack"
    local = await desk.headers(("DONGGUAN", "doctor"), "ack-1")
    done = await desk.ok(await desk.client.post(ack, headers=local))
    replay = await desk.client.post(ack, headers=local)
    assert replay.status == 200 and replay.headers["Idempotent-Replayed"] == "true"
    assert (await replay.json())["advice"] == done["advice"] and done["advice"][0]["acknowledged"]


async def test_an_advice_number_that_is_not_plain_digits_is_refused_not_a_server_error(client):
    # "²" passes str.isdigit but int() refuses it: that was a 500.
    desk = await Desk.open(client)
    _, referral = await up_candidate(desk)
    rid = (await desk.ok(await schedule(desk, referral["id"]), 201))["id"]
    for n in ("²", "1²", "x", "-1"):
        resp = await desk.client.post(f"/api/v1/ward-rounds/{rid}/advice/{n}/ack", json={},
                                      headers=await desk.headers(("DONGGUAN", "doctor")))
        assert resp.status == 422, (n, await resp.text())
        assert (await resp.json())["error"]["code"] == "INVALID_ADVICE_NUMBER"
