"""POST /api/v1/subscriptions records what wx.requestSubscribeMessage returned: one credit per accept of a
one-time template, bans and switches honoured; GET shows the templates to ask for and the credits held."""

from __future__ import annotations

from tests.referral_support import bind_patient
from tests.support import bearer, login, login_demo, seeded, valid_id

APPROVAL, PROGRESS, ADMISSION = "rc-referral-approval", "rc-referral-progress", "rc-admission-notice"


async def report(client, session, results: dict) -> tuple[int, dict]:
    resp = await client.post("/api/v1/subscriptions", json={"results": results}, headers=bearer(session))
    return resp.status, await resp.json()


def held(body: dict) -> dict[str, tuple[int, bool, bool]]:
    return {i["template_id"]: (i["credits"], i["long_term"], i["banned"]) for i in body["items"]}


async def test_each_accept_is_one_credit_and_bans_stop_everything(client):
    await seeded(client)
    session = await login_demo(client, "SUBEI", "approver")
    status, body = await report(client, session, {APPROVAL: "accept", PROGRESS: "reject"})
    assert status == 200, body
    assert held(body) == {APPROVAL: (1, False, False), PROGRESS: (0, False, False)}
    # The mini-program may hand over wx.requestSubscribeMessage's result as it is, errMsg included.
    status, body = await report(client, session, {APPROVAL: "accept", "errMsg": "requestSubscribeMessage:ok"})
    assert held(body)[APPROVAL] == (2, False, False)
    _, body = await report(client, session, {APPROVAL: "reject"})
    assert held(body)[APPROVAL] == (2, False, False)  # a later "reject" does not take back earlier accepts
    _, body = await report(client, session, {APPROVAL: "filter"})
    assert held(body)[APPROVAL] == (2, False, False)
    _, body = await report(client, session, {APPROVAL: "ban"})
    assert held(body)[APPROVAL] == (0, False, True)
    _, body = await report(client, session, {APPROVAL: "accept"})
    assert held(body)[APPROVAL] == (1, False, False)


async def test_templates_suggested_by_who_asks(client):
    await seeded(client)
    staff = await login_demo(client, "SUBEI", "approver")
    body = await (await client.get("/api/v1/subscriptions", headers=bearer(staff))).json()
    assert {t["template_id"]: t["suggested"] for t in body["templates"]} == {
        APPROVAL: True, PROGRESS: True, ADMISSION: False, "rc-chat-unread": False}
    assert all(t["title"] and t["purpose"] and t["long_term"] is False for t in body["templates"])
    assert body["items"] == []
    patient = await bind_patient(client, "o_sub_patient", "冯小刚", valid_id(51))
    body = await (await client.get("/api/v1/subscriptions", headers=bearer(patient))).json()
    assert {t["template_id"] for t in body["templates"] if t["suggested"]} == {PROGRESS, ADMISSION}


async def test_bad_reports_are_refused(client):
    await seeded(client)
    session = await login_demo(client, "SUBEI", "doctor")
    status, body = await report(client, session, {"someone-elses-template": "accept"})
    assert status == 422 and body["error"]["code"] == "UNKNOWN_TEMPLATE"
    assert body["error"]["detail"]["template_ids"] == ["someone-elses-template"]
    status, body = await report(client, session, {APPROVAL: "maybe"})
    assert status == 422
    status, body = await report(client, session, {})
    assert status == 422
    status, body = await report(client, session, {f"t{n}": "accept" for n in range(11)})
    assert status == 422
    unbound = await login(client, "o_sub_unbound")
    status, body = await report(client, unbound, {APPROVAL: "accept"})
    assert status == 403 and body["error"]["code"] == "BINDING_REQUIRED"
    assert (await client.get("/api/v1/subscriptions")).status == 401
