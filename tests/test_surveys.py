"""Satisfaction surveys (issue 12, point 3): invitations after admission and completion through the inbox and
a subscribe message (deduplicated), one answer per invitation, only one's own invitations, versioned
questionnaires, the bot's 评价, and Table 2's figures with small groups hidden."""

from __future__ import annotations

from datetime import timedelta

from appkeys import SETTINGS
from models import (
    InboxMessage,
    Institution,
    OutboxJob,
    Referral,
    ReferralEvent,
    SurveyForm,
    SurveyInvitation,
    SurveyMonth,
    WeChatAccount,
)
from notifications.handlers import referral_event
from outbox.registry import JobContext
from referrals.state_machine import Status
from stats import rollup
from stats.query import Filters
from surveys.invitations import invite_for_event
from tests.notify_support import run_jobs
from tests.referral_support import Desk, make_patient, patient_account
from tests.stats_support import compare_satisfaction, rollup_rows
from tests.support import bearer, login
from tests.test_bot_commands import Chat
from timeutil import china_today

PATIENT_OPENID = "o_survey_patient"
ALL_FIVES = {"overall": 5, "waiting": 4, "admission": 5, "information": 4, "care": 5}
DOCTOR_FOURS = {"overall": 4, "approval": 4, "records": 3, "usability": 5, "feedback": 4}


async def _completed(desk: Desk, openid: str = PATIENT_OPENID) -> tuple[dict, dict]:
    """A DONGGUAN → SUBEI referral walked to completion, its patient bound to `openid`; every job run."""
    patient = await make_patient(desk.cipher, "钱玉兰")
    await patient_account(patient, openid)
    body = await desk.drive(Status.COMPLETED, patient_id=str(patient.public_id))
    await run_jobs(desk.app)
    return body, await desk.session_of(openid)


async def test_admission_and_completion_invite_patient_and_both_doctors_once(client):
    desk = await Desk.open(client)
    body, patient = await _completed(desk)
    referral = await Referral.get(public_id=body["id"])
    invitations = {i.occasion: i for i in await SurveyInvitation.filter(referral_id=referral.id)}
    assert set(invitations) == {"admitted", "completed", "referrer", "receiver"}
    assert invitations["referrer"].staff_id == referral.referrer_id
    receiver = await WeChatAccount.get(openid="demo_subei_doctor")
    assert invitations["receiver"].staff_id == receiver.staff_id
    assert invitations["admitted"].patient_id == referral.patient_id and invitations["admitted"].respondent == "patient"
    # Each invitation is in the invitee's inbox; a subscribe message is queued only within the invitee's
    # subscription credits (notifications.fanout), and these invitees granted none.
    for invitation in invitations.values():
        assert await InboxMessage.filter(dedupe_key__startswith=f"inbox:survey:{invitation.id}:").count() == 1
        assert await OutboxJob.filter(dedupe_key__startswith=f"notify:survey:{invitation.id}:to:").count() == 0
    # Every referral event job again: nobody is asked twice.
    for row in await OutboxJob.filter(kind="notify.referral_event").order_by("id"):
        await referral_event(JobContext(app=desk.app, job=row))
    assert await SurveyInvitation.filter(referral_id=referral.id).count() == 4
    assert await InboxMessage.filter(dedupe_key__startswith="inbox:survey:").count() == 4
    resp = await client.get("/api/v1/inbox", headers=bearer(patient))
    titles = [m["title"] for m in (await resp.json())["items"]]
    assert titles.count("邀请您评价本次转诊服务") == 2


async def test_answer_once_and_only_ones_own(client):
    desk = await Desk.open(client)
    _, patient = await _completed(desk)
    resp = await client.get("/api/v1/surveys/pending", headers=bearer(patient))
    pending = (await desk.ok(resp))["items"]
    assert {p["occasion"] for p in pending} == {"admitted", "completed"}
    survey_id = pending[0]["id"]
    form = (await desk.ok(await client.get(f"/api/v1/surveys/{survey_id}", headers=bearer(patient))))["form"]
    assert form["items"][0]["key"] == "overall" and form["scale"][3]["text"] == "满意"
    # Someone else, staff or another patient, sees no such survey.
    other = await patient_account(await make_patient(desk.cipher, "赵别人"), "o_survey_other")
    other_session = await desk.session_of(other.openid)
    for headers in (bearer(other_session), await desk.headers(("DONGGUAN", "doctor"))):
        resp = await client.get(f"/api/v1/surveys/{survey_id}", headers=headers)
        assert resp.status == 404, await resp.text()
        resp = await client.post(f"/api/v1/surveys/{survey_id}/responses", json={"scores": ALL_FIVES},
                                 headers=headers)
        assert resp.status == 404
    # Missing items and scores outside 1-5 are refused.
    resp = await client.post(f"/api/v1/surveys/{survey_id}/responses", json={"scores": {"overall": 5}},
                             headers=bearer(patient))
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "INVALID_SURVEY_ANSWER"
    resp = await client.post(f"/api/v1/surveys/{survey_id}/responses",
                             json={"scores": ALL_FIVES | {"care": 6}}, headers=bearer(patient))
    assert resp.status == 422
    answer = await desk.ok(await client.post(f"/api/v1/surveys/{survey_id}/responses",
                                             json={"scores": ALL_FIVES, "comment": "很方便"},
                                             headers=bearer(patient)), 201)
    assert answer["satisfied"] is True
    resp = await client.post(f"/api/v1/surveys/{survey_id}/responses", json={"scores": ALL_FIVES},
                             headers=bearer(patient))
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "SURVEY_ANSWERED"
    left = (await desk.ok(await client.get("/api/v1/surveys/pending", headers=bearer(patient))))["items"]
    assert [p["id"] for p in left] == [pending[1]["id"]]
    # Doctors see their own: the referrer has one (the referrer occasion), the receiving doctor another.
    mine = (await desk.ok(await desk.get(("DONGGUAN", "doctor"), "/api/v1/surveys/pending")))["items"]
    assert [p["occasion"] for p in mine] == ["referrer"]
    theirs = (await desk.ok(await desk.get(("SUBEI", "doctor"), "/api/v1/surveys/pending")))["items"]
    assert [p["occasion"] for p in theirs] == ["receiver"]
    assert (await desk.ok(await desk.get(("SUBEI", "approver"), "/api/v1/surveys/pending")))["items"] == []


async def test_the_consortium_office_edits_the_questionnaire_as_a_new_version(client):
    desk = await Desk.open(client)
    office = ("SUBEI", "consortium_admin")
    resp = await desk.get(("SUBEI", "admin"), "/api/v1/admin/surveys")
    assert resp.status == 403
    current = (await desk.ok(await desk.get(office, "/api/v1/admin/surveys")))["items"]
    assert [f["respondent"] for f in current] == ["patient", "doctor"] and current[0]["version"] == 1
    items = [{"key": "overall", "text": "总体满意度"}, {"key": "speed", "text": "转诊速度"}]
    resp = await client.put("/api/v1/admin/surveys/patient", headers=await desk.headers(office),
                            json={"title": "患者满意度（第二版）", "items": items})
    new = await desk.ok(resp)
    assert new["version"] == 2 and [i["key"] for i in new["items"]] == ["overall", "speed"]
    resp = await client.put("/api/v1/admin/surveys/patient", headers=await desk.headers(office),
                            json={"title": "x", "items": [{"key": "speed", "text": "转诊速度"}]})
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "INVALID_SURVEY_FORM"
    resp = await client.put("/api/v1/admin/surveys/nurse", headers=await desk.headers(office),
                            json={"title": "x", "items": items})
    assert resp.status == 404
    _, patient = await _completed(desk)
    pending = (await desk.ok(await client.get("/api/v1/surveys/pending", headers=bearer(patient))))["items"]
    form = (await desk.ok(await client.get(f"/api/v1/surveys/{pending[0]['id']}", headers=bearer(patient))))["form"]
    assert form["version"] == 2
    await desk.ok(await client.post(f"/api/v1/surveys/{pending[0]['id']}/responses",
                                    json={"scores": {"overall": 4, "speed": 2}}, headers=bearer(patient)), 201)
    assert await SurveyForm.filter(respondent="patient").count() == 2


async def test_the_bot_answers_evaluation_with_pending_surveys(client):
    desk = await Desk.open(client)
    body, _ = await _completed(desk)
    chat = Chat(client)
    await login(client, "demo_dongguan_doctor")
    answer = await chat.say(PATIENT_OPENID, "评价")
    assert "2 份待填写的满意度问卷" in answer and body["code"] in answer
    assert "pages/survey/index?id=" in answer and "钱*兰" in answer
    answer = await chat.say("demo_subei_approver", "评价")
    assert answer == "您目前没有待填写的满意度问卷，感谢您的支持！"


async def _answer_all(desk: Desk, client, session: dict, scores: dict) -> None:
    for item in (await desk.ok(await client.get("/api/v1/surveys/pending", headers=bearer(session))))["items"]:
        await desk.ok(await client.post(f"/api/v1/surveys/{item['id']}/responses", json={"scores": scores},
                                        headers=bearer(session)), 201)


async def test_table2_shows_shares_from_five_answers_and_hides_smaller_groups(client):
    desk = await Desk.open(client)
    office = ("SUBEI", "consortium_admin")
    for n in range(3):  # 6 patient answers (2 per referral), 3 referrers' answers
        _, patient = await _completed(desk, f"o_survey_p{n}")
        await _answer_all(desk, client, patient, ALL_FIVES if n else ALL_FIVES | {"overall": 3})
    await _answer_all(desk, client, await desk.session("DONGGUAN", "doctor"), DOCTOR_FOURS)
    body = await desk.ok(await desk.get(office, "/api/v1/stats/satisfaction", period="all"))
    rows = {r["respondent"]: r for r in body["items"]}
    patients, doctors = rows["patient"], rows["doctor"]
    assert patients["invitations"] == 6 and patients["answers"] == 6 and patients["response_rate"] == 1.0
    assert patients["satisfied_share"] == round(4 / 6, 4)  # one referral's two answers rated 3 overall
    means = {i["key"]: i["mean"] for i in patients["items"]}
    assert means == {"overall": round((3 * 2 + 5 * 4) / 6, 2), "waiting": 4.0, "admission": 5.0,
                     "information": 4.0, "care": 5.0}
    # Doctors: 6 invitations (referrer and receiver of each), 3 answers: too few to show.
    assert doctors["invitations"] == 6 and doctors["answers"] == 3 and doctors["suppressed"] is True
    assert doctors["satisfied_share"] is None and doctors["response_rate"] is None and doctors["items"] == []
    # An institution outside these referrals sees none of them.
    body = await desk.ok(await desk.get(("BAOYING", "admin"), "/api/v1/stats/satisfaction", period="all"))
    assert body["items"] == []
    # By quarter: the same answers, in the quarter they were invited.
    body = await desk.ok(await desk.get(office, "/api/v1/stats/satisfaction", period="quarter"))
    assert sum(r["answers"] for r in body["items"] if r["respondent"] == "patient") == 6
    assert all("季度" in r["period"] for r in body["items"])


async def test_table2_from_the_rollup_equals_brute_force_for_live_answers(client):
    """Invitations and answers written by the real job and route keep Table 2's monthly rollup in step: it
    equals its own rebuild and the brute force, a job run twice counts nobody twice, and every kind of range
    (whole months from the rollup, cut months from the rows, both) gives the brute force's figures."""
    desk = await Desk.open(client)
    for n in range(3):
        body, patient = await _completed(desk, f"o_survey_r{n}")
        if n != 1:
            await _answer_all(desk, client, patient, ALL_FIVES if n else ALL_FIVES | {"overall": 2})
    await _answer_all(desk, client, await desk.session("DONGGUAN", "doctor"), DOCTOR_FOURS)
    referral = await Referral.get(public_id=body["id"])
    event = await ReferralEvent.filter(referral_id=referral.id, action="complete").first()
    assert await invite_for_event(referral, event, client.server.app[SETTINGS]) >= 0  # the job again
    assert await SurveyInvitation.filter(referral_id=referral.id).count() == 4
    assert await SurveyMonth.all().count() > 0
    counted = await rollup_rows()
    await rollup.rebuild(rollup.SURVEYS)
    assert await rollup_rows() == counted
    today, subei = china_today(), await Institution.get(code="SUBEI")
    for filters in (Filters(), Filters(start=today, end=today), Filters(start=today - timedelta(days=40), end=today),
                    Filters(start=today.replace(day=1)), Filters(end=today + timedelta(days=3)),
                    Filters(scope=subei.id, start=today - timedelta(days=400), direction="up"),
                    Filters(start=today + timedelta(days=1))):
        await compare_satisfaction(filters)
