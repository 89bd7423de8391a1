"""The WeChat sandbox on its own: WeChat's answers and errcodes, the /sandbox/* knobs, the keyword rules."""

from __future__ import annotations

import pytest

from wechat.sandbox import SandboxState, create_sandbox_app
from wechat.sandbox.keywords import keyword_type, value_problem

APPID, SECRET = "wx-test-appid", "test-secret"
CREDENTIALS = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def sandbox(aiohttp_client, clock):
    return await aiohttp_client(create_sandbox_app(SandboxState(APPID, SECRET, clock=clock)))


async def wechat(sandbox, method: str, path: str, **kwargs) -> dict:
    """A WeChat path: always HTTP 200, success or errcode in the JSON (as WeChat does)."""
    resp = await sandbox.request(method, path, **kwargs)
    assert resp.status == 200
    return await resp.json(content_type=None)


async def knob(sandbox, method: str, path: str, **kwargs) -> dict:
    resp = await sandbox.request(method, f"/sandbox/{path}", **kwargs)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def token(sandbox, **extra) -> str:
    body = await wechat(sandbox, "POST", "/cgi-bin/stable_token", json={**CREDENTIALS, **extra})
    assert body["expires_in"] > 0, body
    return body["access_token"]


async def custom_send(sandbox, access_token: str, touser: str = "o_user", content: str = "你好") -> dict:
    return await wechat(sandbox, "POST", "/cgi-bin/message/custom/send", params={"access_token": access_token},
                        json={"touser": touser, "msgtype": "text", "text": {"content": content}})


# -- tokens ----------------------------------------------------------------------------------------


async def test_stable_token_is_reused_until_forced_and_the_old_one_then_gets_40001(sandbox):
    await knob(sandbox, "POST", "login-code", json={"openid": "o_user"})
    first = await token(sandbox)
    assert len(first) >= 100 and await token(sandbox) == first
    forced = await token(sandbox, force_refresh=True)
    assert forced != first
    assert (await custom_send(sandbox, first))["errcode"] == 40001
    assert (await custom_send(sandbox, forced))["errcode"] == 0
    stats = await knob(sandbox, "GET", "stats")
    assert (stats["token_requests"], stats["tokens_issued"]) == (3, 2)


async def test_token_expires_after_two_hours_and_is_renewed_five_minutes_early(sandbox, clock):
    await knob(sandbox, "POST", "login-code", json={"openid": "o_user"})
    first = await token(sandbox)
    clock.now += 7200 - 301
    assert await token(sandbox) == first
    clock.now += 2
    renewed = await token(sandbox)
    assert renewed != first
    clock.now += 7200
    assert (await custom_send(sandbox, renewed))["errcode"] == 42001


async def test_plain_token_endpoint_issues_a_new_token_each_time(sandbox):
    query = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET}
    first = await wechat(sandbox, "GET", "/cgi-bin/token", params=query)
    second = await wechat(sandbox, "GET", "/cgi-bin/token", params=query)
    assert first["access_token"] != second["access_token"] and second["expires_in"] == 7200


async def test_token_overlap_keeps_a_replaced_token_valid_for_a_while(aiohttp_client, clock):
    state = SandboxState(APPID, SECRET, token_overlap=300, clock=clock)
    sandbox = await aiohttp_client(create_sandbox_app(state))
    state.mint_login_code("o_user")
    old = await token(sandbox)
    await knob(sandbox, "POST", "rotate-token")
    assert (await custom_send(sandbox, old))["errcode"] == 0
    clock.now += 301
    assert (await custom_send(sandbox, old))["errcode"] == 40001


@pytest.mark.parametrize(("body", "errcode"), [
    ({**CREDENTIALS, "appid": "wx-other"}, 40013),
    ({**CREDENTIALS, "secret": "wrong"}, 40125),
    ({**CREDENTIALS, "grant_type": "password"}, 40002),
])
async def test_token_request_errors(sandbox, body, errcode):
    reply = await wechat(sandbox, "POST", "/cgi-bin/stable_token", json=body)
    assert reply["errcode"] == errcode and " rid: " in reply["errmsg"]


async def test_calls_without_or_with_a_made_up_token_are_refused(sandbox):
    await knob(sandbox, "POST", "login-code", json={"openid": "o_user"})
    missing = await wechat(sandbox, "POST", "/cgi-bin/message/custom/send", json={})
    assert missing["errcode"] == 41001
    assert (await custom_send(sandbox, "made-up"))["errcode"] == 40001


async def test_body_that_is_not_json_is_47001(sandbox):
    reply = await wechat(sandbox, "POST", "/cgi-bin/message/subscribe/send",
                         params={"access_token": await token(sandbox)}, data=b"{not json")
    assert reply["errcode"] == 47001


# -- login -----------------------------------------------------------------------------------------


async def test_jscode2session_answers_like_wechat(sandbox, clock):
    code = (await knob(sandbox, "POST", "login-code", json={"openid": "o_a", "unionid": "u_a"}))["code"]
    query = {"appid": APPID, "secret": SECRET, "js_code": code, "grant_type": "authorization_code"}
    first = await wechat(sandbox, "GET", "/sns/jscode2session", params=query)
    assert first["openid"] == "o_a" and first["unionid"] == "u_a" and first["session_key"]
    again = await wechat(sandbox, "GET", "/sns/jscode2session", params=query)
    assert again["errcode"] == 40029 and "used" in again["errmsg"]
    wrong_secret = await wechat(sandbox, "GET", "/sns/jscode2session", params={**query, "secret": "x"})
    assert wrong_secret["errcode"] == 40125
    stale = (await knob(sandbox, "POST", "login-code", json={"openid": "o_a"}))["code"]
    clock.now += 301
    expired = await wechat(sandbox, "GET", "/sns/jscode2session", params={**query, "js_code": stale})
    assert expired["errcode"] == 40029


async def test_login_code_needs_an_openid(sandbox):
    resp = await sandbox.post("/sandbox/login-code", json={})
    assert resp.status == 400
    assert "openid" in (await resp.json())["error"]["message"]


# -- subscribe messages ----------------------------------------------------------------------------


async def test_registered_template_with_enum_and_credits(sandbox):
    await knob(sandbox, "POST", "templates", json={
        "template_id": "tpl-result", "title": "审批结果",
        "fields": {"phrase1": "phrase", "character_string2": "character_string",
                   "enum3": {"type": "enum", "values": ["通过", "驳回"]}}})
    await knob(sandbox, "POST", "subscriptions", json={"openid": "o_b", "template_id": "tpl-result", "count": 2})
    listed = await knob(sandbox, "GET", "subscriptions", params={"openid": "o_b"})
    assert listed["items"] == [{"template_id": "tpl-result", "count": 2, "long_term": False}]
    access_token = await token(sandbox)

    async def send(**data) -> dict:
        return await wechat(sandbox, "POST", "/cgi-bin/message/subscribe/send", params={"access_token": access_token},
                            json={"touser": "o_b", "template_id": "tpl-result",
                                  "data": {k: {"value": v} for k, v in data.items()}})

    good = {"phrase1": "已通过", "character_string2": "ZZ-20261201-0001", "enum3": "通过"}
    assert (await send(**{**good, "enum3": "待定"}))["errcode"] == 47003
    assert (await send(**{**good, "phrase1": "审批已经通过"}))["errcode"] == 47003
    missing = await send(phrase1="已通过", enum3="通过")
    assert missing["errcode"] == 47003 and "character_string2" in missing["errmsg"]
    extra = await send(**good, thing9="多余")
    assert extra["errcode"] == 47003 and "thing9" in extra["errmsg"]
    assert (await send(**good))["errcode"] == 0
    assert (await send(**good))["errcode"] == 0
    assert (await send(**good))["errcode"] == 43101
    await knob(sandbox, "POST", "subscriptions", json={"openid": "o_b", "template_id": "tpl-result",
                                                         "long_term": True})
    assert (await send(**good))["errcode"] == 0
    await knob(sandbox, "POST", "subscriptions", json={"openid": "o_b", "template_id": "tpl-result", "revoke": True})
    assert (await send(**good))["errcode"] == 43101


@pytest.mark.parametrize("body", [
    {"template_id": "t", "fields": {"thing1": "thingy"}},
    {"template_id": "t", "fields": {"enum1": "enum"}},
    {"template_id": "", "fields": {"thing1": "thing"}},
    {"template_id": "t", "fields": []},
])
async def test_bad_template_registration_is_400(sandbox, body):
    resp = await sandbox.post("/sandbox/templates", json=body)
    assert resp.status == 400 and (await resp.json())["error"]["message"]


async def test_template_fields_may_be_listed_by_keyword_name(sandbox):
    body = await knob(sandbox, "POST", "templates", json={"template_id": "t-list", "fields": ["thing1", "time2"]})
    assert body["fields"] == {"thing1": "thing", "time2": "time"}
    assert (await sandbox.post("/sandbox/templates", json={"template_id": "t", "fields": ["colour1"]})).status == 400


async def test_credit_for_an_unknown_template_is_400(sandbox):
    resp = await sandbox.post("/sandbox/subscriptions", json={"openid": "o_c", "template_id": "nope"})
    assert resp.status == 400


async def test_built_in_templates_are_listed_and_survive_a_reset(sandbox):
    before = {t["template_id"] for t in (await knob(sandbox, "GET", "templates"))["items"]}
    assert {"sandbox-referral-approval", "sandbox-referral-result", "sandbox-admission-notice"} <= before
    await knob(sandbox, "POST", "login-code", json={"openid": "o_reset"})
    await knob(sandbox, "POST", "reset")
    after = {t["template_id"] for t in (await knob(sandbox, "GET", "templates"))["items"]}
    assert after == before
    stats = await knob(sandbox, "GET", "stats")
    assert stats["login_codes_issued"] == 0 and stats["calls"] == {}


# -- messages and faults ---------------------------------------------------------------------------


async def test_messages_are_listed_in_order_and_filtered(sandbox):
    for openid in ("o_m1", "o_m2"):
        await knob(sandbox, "POST", "login-code", json={"openid": openid})
    access_token = await token(sandbox)
    for touser, content in (("o_m1", "一"), ("o_m2", "二"), ("o_m1", "三")):
        assert (await custom_send(sandbox, access_token, touser, content))["errcode"] == 0
    everything = (await knob(sandbox, "GET", "messages"))["items"]
    assert [m["payload"]["content"] for m in everything] == ["一", "二", "三"]
    mine = (await knob(sandbox, "GET", "messages", params={"touser": "o_m1"}))["items"]
    assert [m["payload"]["content"] for m in mine] == ["一", "三"]
    later = (await knob(sandbox, "GET", "messages", params={"after": everything[0]["id"]}))["items"]
    assert len(later) == 2
    assert (await knob(sandbox, "GET", "messages", params={"kind": "subscribe"}))["items"] == []
    assert (await sandbox.get("/sandbox/messages", params={"kind": "sms"})).status == 400
    assert (await custom_send(sandbox, access_token, "o_stranger"))["errcode"] == 40003


@pytest.mark.parametrize(("msgtype", "payload", "errcode"), [
    ("link", {"title": "转诊单", "description": "已通过", "url": "https://example.org/r/1",
              "thumb_url": "https://example.org/t.png"}, 0),
    ("link", {"title": "转诊单", "url": "https://example.org/r/1"}, 47001),
    ("miniprogrampage", {"title": "入院单", "pagepath": "pages/slip/index", "thumb_media_id": "m1"}, 0),
    ("text", {"content": ""}, 44004),
    ("voice", {"media_id": "m1"}, 40008),
])
async def test_customer_service_message_types(sandbox, msgtype, payload, errcode):
    await knob(sandbox, "POST", "login-code", json={"openid": "o_cs"})
    reply = await wechat(sandbox, "POST", "/cgi-bin/message/custom/send", params={"access_token": await token(sandbox)},
                         json={"touser": "o_cs", "msgtype": msgtype, msgtype: payload})
    assert reply["errcode"] == errcode
    assert len((await knob(sandbox, "GET", "messages"))["items"]) == (1 if errcode == 0 else 0)


async def test_fault_fails_the_next_n_calls_then_lets_them_through(sandbox):
    await knob(sandbox, "POST", "faults", json={"endpoint": "/cgi-bin/stable_token", "errcode": 45009, "count": 2})
    assert (await knob(sandbox, "GET", "stats"))["pending_faults"] == {"/cgi-bin/stable_token": 2}
    for _ in range(2):
        reply = await wechat(sandbox, "POST", "/cgi-bin/stable_token", json=CREDENTIALS)
        assert reply["errcode"] == 45009 and reply["errmsg"].startswith("reach max api daily quota limit")
    assert await token(sandbox)


@pytest.mark.parametrize("body", [
    {"endpoint": "/cgi-bin/unknown", "errcode": -1},
    {"endpoint": "/sns/jscode2session"},
    {"endpoint": "/sns/jscode2session", "errcode": -1, "count": 0},
    {"endpoint": "/sns/jscode2session", "errcode": "busy"},
])
async def test_bad_fault_is_400(sandbox, body):
    assert (await sandbox.post("/sandbox/faults", json=body)).status == 400


async def test_clock_only_moves_forward(sandbox):
    assert (await sandbox.post("/sandbox/clock", json={"advance": -1})).status == 400
    assert (await sandbox.post("/sandbox/clock", json={"advance": "soon"})).status == 400
    assert (await knob(sandbox, "POST", "clock", json={"advance": 60}))["now"]


# -- keyword rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "value"), [
    ("thing", "苏北人民医院心血管内科"), ("thing", "x" * 20),
    ("number", "12.5"), ("number", "9" * 32),
    ("letter", "ABCdef"), ("symbol", "#!"),
    ("character_string", "ZZ-2026/12-01_0001"),
    ("time", "15:01"), ("time", "2026年12月01日 08:30"), ("time", "2026-12-01 08:30~09:00"),
    ("date", "2026年12月01日"), ("date", "2026-12-01"), ("date", "2026/12/01 08:30"), ("date", "2026.12.01"),
    ("amount", "¥100.50元"), ("amount", "100"),
    ("phone_number", "+86-138-0000-0000"),
    ("car_number", "苏K12345"),
    ("name", "张三"), ("name", "阿卜杜·热合曼"), ("name", "Li Lei"),
    ("phrase", "已通过"),
])
def test_valid_keyword_values(kind, value):
    assert value_problem(kind, value) is None


@pytest.mark.parametrize(("kind", "value"), [
    ("thing", "x" * 21), ("thing", ""), ("thing", "第一行\n第二行"), ("thing", "制表\t符"),
    ("number", "12a"), ("number", "9" * 33),
    ("letter", "abc1"), ("symbol", "#!#!#!"),
    ("character_string", "x" * 33), ("character_string", "中文单号"),
    ("time", "25:00"), ("time", "明天下午"), ("date", "2026年13"), ("date", "12/01"),
    ("amount", "¥12345678901"), ("phone_number", "1" * 18),
    ("car_number", "苏AD1234567"),
    ("name", "欧阳娜娜娜娜娜娜娜娜娜"), ("name", "a" * 21), ("name", "张3"),
    ("phrase", "审批已经通过"), ("phrase", "OK"),
])
def test_invalid_keyword_values(kind, value):
    assert value_problem(kind, value)


def test_keyword_type_comes_from_the_keyword_name():
    assert keyword_type("thing12") == "thing" and keyword_type("character_string3") == "character_string"
    assert keyword_type("colour1") is None


# -- phone numbers ----------------------------------------------------------------------------------


async def test_phone_codes_answer_like_getuserphonenumber_once_then_40029(sandbox, clock):
    access_token = await token(sandbox)
    code = (await knob(sandbox, "POST", "phone-code", json={"phone": "13812345678"}))["code"]
    body = await wechat(sandbox, "POST", "/wxa/business/getuserphonenumber", params={"access_token": access_token},
                        json={"code": code})
    assert body["errcode"] == 0
    info = body["phone_info"]
    assert (info["phoneNumber"], info["purePhoneNumber"], info["countryCode"]) == ("13812345678", "13812345678", "86")
    assert info["watermark"]["appid"] == APPID
    used = await wechat(sandbox, "POST", "/wxa/business/getuserphonenumber", params={"access_token": access_token},
                        json={"code": code})
    assert used["errcode"] == 40029
    late = (await knob(sandbox, "POST", "phone-code", json={"phone": "13812345678", "country_code": "852"}))["code"]
    clock.now += 301
    access_token = await token(sandbox)
    for body in ({"code": late}, {"code": "never-issued"}):
        answer = await wechat(sandbox, "POST", "/wxa/business/getuserphonenumber",
                              params={"access_token": access_token}, json=body)
        assert answer["errcode"] == 40029, body
    assert (await wechat(sandbox, "POST", "/wxa/business/getuserphonenumber", params={"access_token": access_token},
                         json={}))["errcode"] == 47001
    assert (await wechat(sandbox, "POST", "/wxa/business/getuserphonenumber", json={"code": late}))["errcode"] == 41001
    resp = await sandbox.post("/sandbox/phone-code", json={"phone": "138-1234"})
    assert resp.status == 400
# -- msg_sec_check -------------------------------------------------------------------------------------------


async def test_msg_sec_check_v2_passes_text_and_finds_risky_words(sandbox):
    access = await token(sandbox)
    await knob(sandbox, "POST", "login-code", json={"openid": "o_author"})

    async def check(body: dict) -> dict:
        return await wechat(sandbox, "POST", "/wxa/msg_sec_check", params={"access_token": access}, json=body)

    base = {"version": 2, "scene": 4, "openid": "o_author"}
    clean = await check({**base, "content": "患者胸痛三小时"})
    assert clean["errcode"] == 0 and clean["result"] == {"suggest": "pass", "label": 100} and clean["trace_id"]
    risky = await check({**base, "content": "这是违规测试"})
    assert risky["result"] == {"suggest": "risky", "label": 21000}
    assert risky["detail"][0]["keyword"] == "违规测试"
    assert (await knob(sandbox, "POST", "risky-words", json={"word": "代开"}))["risky_words"] == ["代开", "违规测试"]
    assert (await check({**base, "content": "可以代开吗"}))["result"]["suggest"] == "risky"
    assert (await check({**base, "content": "x", "openid": "o_stranger"}))["errcode"] == 40003
    assert (await check({**base, "content": "x", "version": 1}))["errcode"] == 47003
    assert (await check({**base, "content": "x", "scene": 9}))["errcode"] == 47003
    assert (await check({**base, "content": ""}))["errcode"] == 47001
    assert (await check({**base, "content": "长" * 2501}))["errcode"] == 47003
    assert (await wechat(sandbox, "POST", "/wxa/msg_sec_check", json={**base, "content": "x"}))["errcode"] == 41001
    await knob(sandbox, "POST", "reset")  # back to the built-in word only
    access = await token(sandbox)
    await knob(sandbox, "POST", "login-code", json={"openid": "o_author"})
    assert (await check({**base, "content": "可以代开吗"}))["result"]["suggest"] == "pass"
