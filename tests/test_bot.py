"""The message-push endpoint with real pushes (signed, and AES-encrypted with wechatpy's crypto): URL check,
plaintext and safe mode, XML and JSON, stale and replayed requests, WeChat's retries handled once, and
hostile bodies (entity bombs, external entities, oversize, garbage) answered with a 4xx, never a crash."""

from __future__ import annotations

import json
import time

import pytest
from wechatpy.crypto import WeChatCrypto

from appkeys import SETTINGS
from bot.commands import BIND, HELP
from models import OutboxJob
from tests.notify_support import Pusher, replies, run_jobs, text_json, text_xml
from tests.support import login_code, login_demo, seeded

OPENID = "demo_subei_doctor"
BOMB = ('<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
        '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
        '<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
        '<xml><ToUserName>gh</ToUserName><FromUserName>o_bomb</FromUserName><CreateTime>1</CreateTime>'
        '<MsgType>text</MsgType><Content>&lol3;</Content><MsgId>1</MsgId></xml>')
EXTERNAL = ('<?xml version="1.0"?><!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            '<xml><FromUserName>o_x</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>'
            '<Content>&xxe;</Content></xml>')


@pytest.fixture
def pusher(app) -> Pusher:
    return Pusher(app[SETTINGS])


async def post(client, body: str | bytes, query: dict, content_type: str = "text/xml"):
    data = body.encode() if isinstance(body, str) else body
    return await client.post("/wechat/push", params=query, data=data, headers={"Content-Type": content_type})


async def bot_jobs() -> list[OutboxJob]:
    return await OutboxJob.filter(kind="bot.message").order_by("id")


async def test_url_check_echoes_only_for_a_good_signature(client, pusher):
    resp = await client.get("/wechat/push", params=pusher.query(echostr="8151939842186046537"))
    assert resp.status == 200 and await resp.text() == "8151939842186046537"
    resp = await client.get("/wechat/push", params=pusher.query(echostr="x", signature="0" * 40))
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "PUSH_SIGNATURE"
    resp = await client.get("/wechat/push", params=pusher.query(echostr="x", timestamp=int(time.time()) - 3600))
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "PUSH_STALE"
    resp = await client.get("/wechat/push", params={"echostr": "x"})
    assert resp.status == 422


async def test_plaintext_xml_push_is_answered_success_and_handled_through_the_outbox(client, pusher):
    await seeded(client)
    await login_demo(client, "SUBEI", "doctor")
    resp = await post(client, text_xml(OPENID, "帮助"), pusher.query(openid=OPENID))
    assert resp.status == 200 and await resp.text() == "success"
    [job] = await bot_jobs()
    assert job.payload["Content"] == "帮助" and job.payload["FromUserName"] == OPENID
    assert await replies(client, OPENID) == []  # nothing was done inside the request
    await run_jobs(client.server.app)
    assert await replies(client, OPENID) == [HELP]


async def test_safe_mode_xml_and_json_and_plaintext_json(client, pusher):
    await seeded(client)
    await login_demo(client, "SUBEI", "doctor")
    body, query = pusher.encrypt(text_xml(OPENID, "帮助"), pusher.query())
    assert "帮助" not in body
    resp = await post(client, body, query)
    assert resp.status == 200 and await resp.text() == "success"
    body, query = pusher.encrypt_json(text_json(OPENID, "帮助"), pusher.query())
    resp = await post(client, body, query, "application/json")
    assert resp.status == 200, await resp.text()
    resp = await post(client, text_json(OPENID, "帮助"), pusher.query(), "application/json")
    assert resp.status == 200, await resp.text()
    await run_jobs(client.server.app)
    assert await replies(client, OPENID) == [HELP, HELP, HELP]


async def test_signatures_timestamps_and_replays(client, pusher):
    await seeded(client)
    await login_demo(client, "SUBEI", "doctor")
    body = text_xml(OPENID, "帮助")
    resp = await post(client, body, pusher.query(signature="f" * 40))
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "PUSH_SIGNATURE"
    resp = await post(client, body, {k: v for k, v in pusher.query().items() if k != "signature"})
    assert resp.status == 401
    resp = await post(client, body, pusher.query(timestamp=int(time.time()) - 301))
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "PUSH_STALE"
    resp = await post(client, body, pusher.query(timestamp=int(time.time()) + 3600))
    assert resp.status == 401
    # Safe mode: the body's msg_signature must match the Encrypt it came with.
    encrypted, query = pusher.encrypt(body, pusher.query())
    resp = await post(client, encrypted, query | {"msg_signature": "0" * 40})
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "PUSH_SIGNATURE"
    _, other_query = pusher.encrypt(text_xml(OPENID, "待审批"), pusher.query())
    resp = await post(client, encrypted, query | {"msg_signature": other_query["msg_signature"]})
    assert resp.status == 401
    # A captured request played again, even with another body: its nonce was used.
    query = pusher.query()
    assert (await post(client, body, query)).status == 200
    resp = await post(client, text_xml(OPENID, "我的转诊"), query)
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "PUSH_REPLAYED"
    assert len(await bot_jobs()) == 1


async def test_wechat_retries_are_handled_once(client, pusher):
    await seeded(client)
    await login_demo(client, "SUBEI", "doctor")
    body = text_xml(OPENID, "帮助", msgid=6_000_000_000_001)
    for _ in range(3):  # WeChat retries a push it got no answer to, with fresh nonces
        resp = await post(client, body, pusher.query())
        assert resp.status == 200 and await resp.text() == "success"
    created = int(time.time())
    popup = (f'<xml><ToUserName>gh</ToUserName><FromUserName>{OPENID}</FromUserName><CreateTime>{created}</CreateTime>'
             '<MsgType>event</MsgType><Event>subscribe_msg_popup_event</Event></xml>')
    for _ in range(2):  # no MsgId: FromUserName + CreateTime identify it
        assert (await post(client, popup, pusher.query())).status == 200
    assert [j.dedupe_key for j in await bot_jobs()] == [
        "bot:msg:6000000000001", f"bot:from:{OPENID}:{created}:subscribe_msg_popup_event"]
    await run_jobs(client.server.app)
    await run_jobs(client.server.app)
    assert await replies(client, OPENID) == [HELP]


@pytest.mark.parametrize("body, content_type", [
    (BOMB, "text/xml"),
    (EXTERNAL, "text/xml"),
    ("<xml><FromUserName>o_x</FromUserName>", "text/xml"),
    ("<notxml><FromUserName>o_x</FromUserName></notxml>", "text/xml"),
    ("\x00\x01\x02garbage\xff", "application/octet-stream"),
    ("", "text/xml"),
    ("[1, 2, 3]", "application/json"),
    ('{"FromUserName": "o_x", "CreateTime": 1', "application/json"),
    ('{"CreateTime": 1, "MsgType": "text"}', "application/json"),
    ('{"FromUserName": "o_x", "CreateTime": "yesterday", "MsgType": "text"}', "application/json"),
    ("[" * 100_000 + "]" * 100_000, "application/json"),  # larger than the limit too
])
async def test_hostile_plaintext_bodies_get_a_4xx(client, pusher, body, content_type):
    resp = await post(client, body, pusher.query(), content_type)
    assert 400 <= resp.status < 500, (resp.status, await resp.text())
    assert (await resp.json())["error"]["code"] in ("PUSH_MALFORMED", "PAYLOAD_TOO_LARGE")
    assert await bot_jobs() == []
    assert (await client.get("/healthz")).status == 200


async def test_hostile_encrypted_bodies_get_a_4xx(client, pusher, app):
    settings = app[SETTINGS]
    # An entity bomb and garbage inside properly encrypted and signed envelopes.
    for inner in (BOMB, "not xml at all", '{"FromUserName": 1'):
        body, query = pusher.encrypt(inner, pusher.query())
        resp = await post(client, body, query)
        assert resp.status == 400, (inner, await resp.text())
    # Encrypt that is not base64, or not AES of anything, signed as it is.
    for junk in ("!!!not-base64!!!", "QUJDRA==", "A" * 64):
        query = pusher.query()
        from bot.push import signature

        query |= {"encrypt_type": "aes", "msg_signature": signature(settings.wechat_push_token, query["timestamp"],
                                                                   query["nonce"], junk)}
        resp = await post(client, f"<xml><Encrypt><![CDATA[{junk}]]></Encrypt></xml>", query)
        assert resp.status == 400, (junk, await resp.text())
    # Encrypted for another mini-program.
    foreign = WeChatCrypto(settings.wechat_push_token, settings.wechat_aes_key, "wx-someone-else")
    query = pusher.query()
    envelope = foreign.encrypt_message(text_xml(OPENID, "帮助"), query["nonce"], query["timestamp"])
    from bot.push import parse_xml

    parsed = parse_xml(envelope)
    resp = await post(client, f"<xml><Encrypt><![CDATA[{parsed['Encrypt']}]]></Encrypt></xml>",
                      query | {"encrypt_type": "aes", "msg_signature": parsed["MsgSignature"]})
    assert resp.status == 400
    # Safe mode without Encrypt.
    resp = await post(client, text_xml(OPENID, "帮助"), pusher.query(encrypt_type="aes", msg_signature="0" * 40))
    assert resp.status == 400
    assert await bot_jobs() == []


async def test_oversize_bodies_are_refused_before_reading_them_whole(client, pusher):
    filler = "x" * (70 * 1024)
    resp = await post(client, text_xml(OPENID, filler), pusher.query())
    assert resp.status == 413 and (await resp.json())["error"]["code"] == "PAYLOAD_TOO_LARGE"

    async def chunks():  # no Content-Length: counted as it streams in
        for _ in range(70):
            yield b"<" + b"x" * 1023

    resp = await client.post("/wechat/push", params=pusher.query(), data=chunks(),
                             headers={"Content-Type": "text/xml"})
    assert resp.status == 413
    assert await bot_jobs() == []


async def test_unknown_users_are_told_how_to_bind(client, pusher):
    await login_code(client, "o_bot_stranger")  # opened the mini-program once: WeChat knows the openid
    resp = await post(client, json.dumps({"FromUserName": "o_bot_stranger", "CreateTime": int(time.time()),
                                          "MsgType": "text", "Content": "我的转诊", "MsgId": 42}), pusher.query())
    assert resp.status == 200
    await run_jobs(client.server.app)
    assert await replies(client, "o_bot_stranger") == [BIND]


def _nested_xml(depth: int) -> str:
    return ("<xml><FromUserName>o_x</FromUserName><CreateTime>1</CreateTime><MsgType>text</MsgType>"
            + "<a>" * depth + "x" + "</a>" * depth + "</xml>")


async def test_unsigned_pushes_are_refused_before_the_body_is_parsed(client, pusher):
    deep = _nested_xml(1_100)
    unsigned = {k: v for k, v in pusher.query().items() if k != "signature"}
    # Safe mode without the URL signature, or without msg_signature: 401 whatever the body holds.
    resp = await post(client, deep, unsigned | {"encrypt_type": "aes", "msg_signature": "0" * 40})
    assert resp.status == 401, await resp.text()
    resp = await post(client, deep, pusher.query(encrypt_type="aes"))
    assert resp.status == 401 and (await resp.json())["error"]["code"] == "PUSH_SIGNATURE"
    # A stale or unsigned request is refused before its (oversized) body is even read.
    resp = await post(client, "<xml>" + "x" * (128 * 1024) + "</xml>", pusher.query(signature="0" * 40))
    assert resp.status == 401
    assert await bot_jobs() == []


async def test_deep_xml_and_absurd_create_times_are_malformed(client, pusher):
    # Signed correctly, in plaintext and inside a safe-mode envelope: still a 400, never a 500.
    for depth in (8, 1_100, 5_000):
        resp = await post(client, _nested_xml(depth), pusher.query())
        assert resp.status == 400, (depth, await resp.text())
        assert "嵌套过深" in (await resp.json())["error"]["message"]
        body, query = pusher.encrypt(_nested_xml(depth), pusher.query())
        resp = await post(client, body, query)
        assert resp.status == 400, (depth, await resp.text())
    for create_time in ("1" * 401, "1" * 11, "-1"):
        body = (f"<xml><FromUserName>o_x</FromUserName><CreateTime>{create_time}</CreateTime>"
                "<MsgType>text</MsgType><Content>帮助</Content></xml>")
        resp = await post(client, body, pusher.query())
        assert resp.status == 400 and (await resp.json())["error"]["code"] == "PUSH_MALFORMED", create_time
    assert await bot_jobs() == []
