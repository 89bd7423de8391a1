"""WeChatClient against the embedded sandbox of the real app: login codes, messages, wxacode, the shared
token and its recovery from 40001/42001, injected faults and timeouts."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
from dataclasses import replace

import pytest
from PIL import Image

from app import create_app
from appkeys import HTTP, WECHAT
from kv import connect as connect_kv
from kv.redis_store import RedisKV
from tests.support import read_qr
from wechat import keep_token_fresh
from wechat.client import Session, WeChatClient
from wechat.errors import WeChatError, WeChatTimeout, WeChatUnavailable

SLIP_TEMPLATE = "sandbox-admission-notice"
SLIP_DATA = {"name1": "张三", "thing2": "苏北人民医院", "thing3": "心血管内科", "date4": "2026年12月01日",
             "thing5": "请携带身份证办理入院"}


async def sandbox(client, method: str, path: str, **kwargs) -> dict:
    """Call a /sandbox/* endpoint through the app's /wechat-sandbox/ mount."""
    resp = await client.request(method, f"/wechat-sandbox/sandbox/{path}", **kwargs)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def login_code(client, openid: str, **extra) -> str:
    return (await sandbox(client, "POST", "login-code", json={"openid": openid, **extra}))["code"]


async def grant(client, openid: str, template_id: str = SLIP_TEMPLATE, **credit) -> None:
    await sandbox(client, "POST", "subscriptions", json={"openid": openid, "template_id": template_id, **credit})


async def token_requests(client) -> int:
    return (await sandbox(client, "GET", "stats"))["token_requests"]


@pytest.fixture
async def wechat(client, app) -> WeChatClient:
    """The app's client, with the token keeper's first fetch settled so counts start from a known point."""
    await app[WECHAT].ensure_token()
    return app[WECHAT]


# -- login -----------------------------------------------------------------------------------------


async def test_code2session_returns_openid_and_unionid_and_hides_the_session_key(client, wechat):
    code = await login_code(client, "o_login_1", unionid="u_login_1")
    session = await wechat.code2session(code)
    assert isinstance(session, Session)
    assert (session.openid, session.unionid) == ("o_login_1", "u_login_1")
    assert session.session_key and session.session_key not in repr(session)
    plain = await wechat.code2session(await login_code(client, "o_login_2"))
    assert (plain.openid, plain.unionid) == ("o_login_2", None)


async def test_reused_and_unknown_login_codes_are_40029(client, wechat):
    code = await login_code(client, "o_reuse_1")
    await wechat.code2session(code)
    with pytest.raises(WeChatError) as reused:
        await wechat.code2session(code)
    assert reused.value.errcode == 40029 and not reused.value.retryable
    with pytest.raises(WeChatError) as unknown:
        await wechat.code2session("0" * 32)
    assert unknown.value.errcode == 40029


async def test_login_codes_expire_after_five_minutes(client, wechat):
    fresh, stale = await login_code(client, "o_expiry_1"), await login_code(client, "o_expiry_2")
    await sandbox(client, "POST", "clock", json={"advance": 299})
    assert (await wechat.code2session(fresh)).openid == "o_expiry_1"
    await sandbox(client, "POST", "clock", json={"advance": 2})
    with pytest.raises(WeChatError) as expired:
        await wechat.code2session(stale)
    assert expired.value.errcode == 40029 and "expired" in expired.value.errmsg


async def test_wrong_credentials_are_40013_and_40125(client, app, settings):
    kv = connect_kv(settings.redis_url, settings.redis_prefix + "creds:")
    base = app[WECHAT].base_url
    try:
        wrong_secret = WeChatClient(app[HTTP], kv, appid=settings.wechat_appid, secret="not-the-secret",
                                    base_url=base, timeout=2)
        with pytest.raises(WeChatError) as secret_error:
            await wrong_secret.code2session(await login_code(client, "o_creds"))
        assert secret_error.value.errcode == 40125
        wrong_appid = WeChatClient(app[HTTP], kv, appid="wx-someone-else", secret=settings.wechat_secret,
                                   base_url=base, timeout=2)
        with pytest.raises(WeChatError) as appid_error:
            await wrong_appid.access_token()
        assert appid_error.value.errcode == 40013
    finally:
        await kv.close()


# -- subscribe and customer-service messages -------------------------------------------------------


async def test_subscribe_message_is_delivered_once_per_credit(client, wechat):
    await login_code(client, "o_patient_1")
    await grant(client, "o_patient_1", count=1)
    msgid = await wechat.send_subscribe("o_patient_1", SLIP_TEMPLATE, SLIP_DATA, page="pages/slip/index?id=7",
                                        miniprogram_state="developer")
    assert isinstance(msgid, int)
    messages = (await sandbox(client, "GET", "messages", params={"touser": "o_patient_1"}))["items"]
    assert len(messages) == 1
    assert messages[0]["kind"] == "subscribe" and messages[0]["template_id"] == SLIP_TEMPLATE
    assert messages[0]["data"] == SLIP_DATA and messages[0]["page"] == "pages/slip/index?id=7"
    assert messages[0]["miniprogram_state"] == "developer" and messages[0]["time"]
    with pytest.raises(WeChatError) as spent:
        await wechat.send_subscribe("o_patient_1", SLIP_TEMPLATE, SLIP_DATA)
    assert spent.value.errcode == 43101


async def test_subscribe_without_credit_is_43101(client, wechat):
    await login_code(client, "o_no_credit")
    with pytest.raises(WeChatError) as refused:
        await wechat.send_subscribe("o_no_credit", SLIP_TEMPLATE, SLIP_DATA)
    assert refused.value.errcode == 43101 and not refused.value.retryable
    assert (await sandbox(client, "GET", "messages", params={"touser": "o_no_credit"}))["items"] == []


async def test_long_term_subscription_is_not_spent(client, wechat):
    await grant(client, "o_long_term", long_term=True)
    for _ in range(3):
        await wechat.send_subscribe("o_long_term", SLIP_TEMPLATE, SLIP_DATA)
    messages = (await sandbox(client, "GET", "messages", params={"touser": "o_long_term"}))["items"]
    assert len(messages) == 3


async def test_over_long_thing_is_47003_naming_the_field_and_spends_no_credit(client, wechat):
    await grant(client, "o_long_value", count=1)
    too_long = {**SLIP_DATA, "thing3": "心" * 21}
    with pytest.raises(WeChatError) as invalid:
        await wechat.send_subscribe("o_long_value", SLIP_TEMPLATE, too_long)
    assert invalid.value.errcode == 47003 and "thing3" in invalid.value.errmsg
    assert await wechat.send_subscribe("o_long_value", SLIP_TEMPLATE, {**SLIP_DATA, "thing3": "心" * 20})


async def test_unknown_openid_and_template_are_40003_and_40037(client, wechat):
    with pytest.raises(WeChatError) as openid_error:
        await wechat.send_subscribe("o_never_seen", SLIP_TEMPLATE, SLIP_DATA)
    assert openid_error.value.errcode == 40003
    await grant(client, "o_template_user", count=1)
    with pytest.raises(WeChatError) as template_error:
        await wechat.send_subscribe("o_template_user", "no-such-template", SLIP_DATA)
    assert template_error.value.errcode == 40037


async def test_customer_service_message_is_recorded(client, wechat):
    await login_code(client, "o_chat_1")
    await wechat.send_customer_service("o_chat_1", "text", {"content": "您的转诊单已通过审批"})
    messages = (await sandbox(client, "GET", "messages", params={"touser": "o_chat_1", "kind": "customer_service"}))
    assert [(m["msgtype"], m["payload"]) for m in messages["items"]] == [("text", {"content": "您的转诊单已通过审批"})]
    with pytest.raises(WeChatError) as empty:
        await wechat.send_customer_service("o_chat_1", "text", {"content": ""})
    assert empty.value.errcode == 44004


# -- wxacode ---------------------------------------------------------------------------------------


async def test_unlimited_wxacode_is_a_png_carrying_scene_and_page(wechat):
    png = await wechat.get_unlimited_wxacode("s=AB12cd", page="pages/slip/index", width=300)
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG" and image.size == (300, 300)
    assert read_qr(image).text == "pages/slip/index?scene=s=AB12cd"


@pytest.mark.parametrize(("kwargs", "errcode"), [
    ({"scene": "x" * 33}, 40169),
    ({"scene": "含中文"}, 40169),
    ({"scene": "a%20b"}, 40169),
    ({"scene": "ok", "page": "pages/slip/index?id=1"}, 41030),
    ({"scene": "ok", "width": 279}, 40097),
    ({"scene": "ok", "width": 1281}, 40097),
])
async def test_unlimited_wxacode_rejects_what_wechat_rejects(wechat, kwargs, errcode):
    with pytest.raises(WeChatError) as error:
        await wechat.get_unlimited_wxacode(**kwargs)
    assert error.value.errcode == errcode


# -- the access token ------------------------------------------------------------------------------


async def test_token_keeper_fetches_the_token_at_start(client, app):
    deadline = time.monotonic() + 5
    while (await token_requests(client)) == 0:
        assert time.monotonic() < deadline, "the token keeper did not fetch a token"
        await asyncio.sleep(0.02)
    status = await app[WECHAT].status()
    assert status["token_fetches"] == 1 and await token_requests(client) == 1
    assert len(status["token_fingerprint"]) == 16 and 7000 < status["token_expires_in"] <= 7200


async def test_token_keeper_retries_a_failed_refresh_then_sleeps_until_due(client, app, wechat, settings):
    kv = connect_kv(settings.redis_url, settings.redis_prefix + "keeper:")
    keeper_client = WeChatClient(app[HTTP], kv, appid=settings.wechat_appid, secret=settings.wechat_secret,
                                 base_url=wechat.base_url, timeout=2)
    await sandbox(client, "POST", "faults", json={"endpoint": "/cgi-bin/stable_token", "errcode": -1})
    keeper = asyncio.create_task(keep_token_fresh(keeper_client, retry_after=0.05))
    try:
        deadline = time.monotonic() + 5
        while (await keeper_client.status())["token_fingerprint"] is None:
            assert time.monotonic() < deadline, "the keeper did not recover from the failed refresh"
            await asyncio.sleep(0.02)
        assert keeper_client.token_fetches == 2  # the failed one, then the retry
        await asyncio.sleep(0.2)
        assert keeper_client.token_fetches == 2  # then it sleeps until the token is due
    finally:
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
        await kv.close()


async def test_status_reports_an_unreachable_kv_instead_of_raising(app, client):
    dead_kv = RedisKV("redis://127.0.0.1:1/0", "nowhere:")
    try:
        cut_off = WeChatClient(app[HTTP], dead_kv, appid="wx", secret="s", base_url=app[WECHAT].base_url, timeout=1)
        status = await cut_off.status()
        assert status["error"] and status["token_fingerprint"] is None
    finally:
        await dead_kv.close()


async def test_token_rejected_with_40001_is_refetched_once_and_the_call_retried(client, wechat):
    await grant(client, "o_rotate", count=1)
    before, fetches = await token_requests(client), wechat.token_fetches
    old = await wechat.access_token()
    await sandbox(client, "POST", "rotate-token")  # another party got a new token behind our back
    await wechat.send_subscribe("o_rotate", SLIP_TEMPLATE, SLIP_DATA)
    assert await token_requests(client) == before + 1 and wechat.token_fetches == fetches + 1
    assert await wechat.access_token() != old
    stats = await sandbox(client, "GET", "stats")
    assert stats["calls"]["/cgi-bin/message/subscribe/send"] == 2


async def test_expired_token_42001_is_refetched_and_the_call_retried(client, wechat):
    await login_code(client, "o_expired_token")
    before = await token_requests(client)
    await sandbox(client, "POST", "clock", json={"advance": 7201})
    await wechat.send_customer_service("o_expired_token", "text", {"content": "到期后重试"})
    assert await token_requests(client) == before + 1


async def test_refused_token_still_handed_out_is_force_refreshed(client, wechat):
    """40001 while stable_token keeps returning the same token (e.g. a reset secret): force_refresh once."""
    await login_code(client, "o_force")
    stats = await sandbox(client, "GET", "stats")
    await sandbox(client, "POST", "faults", json={"endpoint": "/cgi-bin/message/custom/send", "errcode": 40001})
    await wechat.send_customer_service("o_force", "text", {"content": "强制刷新"})
    after = await sandbox(client, "GET", "stats")
    assert after["token_requests"] == stats["token_requests"] + 2  # normal fetch, then forced
    assert after["tokens_issued"] == stats["tokens_issued"] + 1


async def test_token_refused_twice_is_retried_only_once(client, wechat):
    await login_code(client, "o_twice")
    await sandbox(client, "POST", "faults", json={"endpoint": "cgi-bin/message/custom/send", "errcode": 42001,
                                                  "count": 2})
    with pytest.raises(WeChatError) as refused:
        await wechat.send_customer_service("o_twice", "text", {"content": "只重试一次"})
    assert refused.value.errcode == 42001
    assert (await sandbox(client, "GET", "stats"))["calls"]["/cgi-bin/message/custom/send"] == 2


async def test_token_is_refreshed_five_minutes_before_expiry(client, app, settings):
    now = [time.time()]
    kv = connect_kv(settings.redis_url, settings.redis_prefix + "early:")
    try:
        early = WeChatClient(app[HTTP], kv, appid=settings.wechat_appid, secret=settings.wechat_secret,
                             base_url=app[WECHAT].base_url, timeout=2, clock=lambda: now[0])
        await early.access_token()
        expires_in = (await early.status())["token_expires_in"]
        assert expires_in > 7000
        now[0] += expires_in - 302  # a little more than five minutes left: still fresh
        await early.access_token()
        assert early.token_fetches == 1
        now[0] += 4  # a little less: due for refresh
        await early.access_token()
        assert early.token_fetches == 2
    finally:
        await kv.close()


async def test_two_clients_on_one_kv_fetch_the_token_once(client, app, settings):
    kv = connect_kv(settings.redis_url, settings.redis_prefix + "twin:")
    try:
        twins = [WeChatClient(app[HTTP], kv, appid=settings.wechat_appid, secret=settings.wechat_secret,
                              base_url=app[WECHAT].base_url, timeout=2) for _ in range(2)]
        await app[WECHAT].ensure_token()
        before = await token_requests(client)
        first, second = await asyncio.gather(*(twin.access_token() for twin in twins))
        assert first == second
        assert await token_requests(client) == before + 1
        assert sorted(twin.token_fetches for twin in twins) == [0, 1]
    finally:
        await kv.close()


async def test_status_and_logs_carry_no_secret_token_or_session_key(client, wechat, settings, caplog):
    caplog.set_level(logging.DEBUG)
    await grant(client, "o_logs", count=1)
    await sandbox(client, "POST", "rotate-token")
    await wechat.send_subscribe("o_logs", SLIP_TEMPLATE, SLIP_DATA)
    session = await wechat.code2session(await login_code(client, "o_logs"))
    token = await wechat.access_token()
    status = await wechat.status()
    assert status["token_fingerprint"] and token not in json.dumps(status)
    assert "WeChat rejected access token" in caplog.text  # the recovery was logged ...
    for secret in (token, settings.wechat_secret, session.session_key):
        assert secret not in caplog.text  # ... without what must stay secret


# -- faults and timeouts ---------------------------------------------------------------------------


async def test_injected_errcode_is_raised_once_then_calls_succeed(client, wechat):
    await login_code(client, "o_busy")
    await sandbox(client, "POST", "faults", json={"endpoint": "/cgi-bin/message/custom/send", "errcode": -1})
    with pytest.raises(WeChatError) as busy:
        await wechat.send_customer_service("o_busy", "text", {"content": "系统繁忙"})
    assert busy.value.errcode == -1 and busy.value.retryable
    await wechat.send_customer_service("o_busy", "text", {"content": "再试一次"})


@pytest.fixture
async def impatient(aiohttp_client, settings):
    """The real app with a 0.3-second WeChat timeout."""
    app = create_app(replace(settings, wechat_timeout=0.3))
    client = await aiohttp_client(app)
    await app[WECHAT].ensure_token()
    return client, app[WECHAT]


async def test_delayed_answer_is_abandoned_within_the_timeout(impatient):
    client, wechat = impatient
    code = await login_code(client, "o_slow")
    await sandbox(client, "POST", "faults", json={"endpoint": "/sns/jscode2session", "delay": 2})
    started = time.monotonic()
    with pytest.raises(WeChatTimeout) as timed_out:
        await wechat.code2session(code)
    assert time.monotonic() - started < 1.0
    assert isinstance(timed_out.value, WeChatUnavailable) and timed_out.value.retryable
    # A delay shorter than the timeout only slows the call down.
    await sandbox(client, "POST", "faults", json={"endpoint": "/sns/jscode2session", "delay": 0.05})
    assert (await wechat.code2session(await login_code(client, "o_slow_2"))).openid == "o_slow_2"


async def test_unreachable_wechat_is_unavailable(client, app, settings):
    kv = connect_kv(settings.redis_url, settings.redis_prefix + "down:")
    try:
        down = WeChatClient(app[HTTP], kv, appid=settings.wechat_appid, secret=settings.wechat_secret,
                            base_url="http://127.0.0.1:9", timeout=2)
        with pytest.raises(WeChatUnavailable) as unreachable:
            await down.access_token()
        assert unreachable.value.errcode == -1 and down.token_fetches == 1
    finally:
        await kv.close()


async def test_get_phone_number_returns_the_verified_number_once(client, wechat):
    code = (await sandbox(client, "POST", "phone-code", json={"phone": "13912345678"}))["code"]
    number = await wechat.get_phone_number(code)
    assert (number.phone, number.country_code) == ("13912345678", "86")
    assert "13912345678" not in repr(number)
    with pytest.raises(WeChatError) as used:
        await wechat.get_phone_number(code)
    assert used.value.errcode == 40029 and not used.value.retryable
    await sandbox(client, "POST", "faults", json={"endpoint": "/wxa/business/getuserphonenumber", "errcode": -1})
    code = (await sandbox(client, "POST", "phone-code", json={"phone": "13912345678"}))["code"]
    with pytest.raises(WeChatError) as busy:
        await wechat.get_phone_number(code)
    assert busy.value.errcode == -1 and busy.value.retryable
