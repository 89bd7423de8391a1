"""Helpers for the notification, inbox, subscription and bot tests: run due outbox jobs, read what the WeChat
sandbox was sent, grant subscriptions on both sides, and build real pushes (signed, optionally AES-encrypted
with wechatpy's own crypto)."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime
from unittest.mock import patch

from wechatpy.crypto import WeChatCrypto

from outbox.dispatcher import Dispatcher, DispatcherConfig
from tests.support import bearer


async def run_jobs(app, *, now: datetime | None = None) -> dict[str, int]:
    """Run every due job, and the jobs those write, with the real dispatcher (`drain`); with `now`, its clock
    is moved there (timers due by then run, retries scheduled after it wait). Returns counts by outcome."""
    dispatcher = Dispatcher(app, DispatcherConfig())
    if now is None:
        await dispatcher.drain()
    else:
        at = now.astimezone(UTC)  # SQLite compares stored times as text: UTC only
        with patch("outbox.dispatcher._now", lambda: at):
            await dispatcher.drain()
    stats = dispatcher.stats
    return {"done": stats.done, "retried": stats.retried, "dead": stats.dead}


# -- the WeChat sandbox ----------------------------------------------------------------------------------------


async def sandbox_messages(client, touser: str, kind: str | None = None) -> list[dict]:
    params = {"touser": touser} | ({"kind": kind} if kind else {})
    resp = await client.get("/wechat-sandbox/sandbox/messages", params=params)
    assert resp.status == 200, await resp.text()
    return (await resp.json())["items"]


async def replies(client, openid: str) -> list[str]:
    """The customer-service texts the sandbox delivered to `openid`, in order."""
    return [m["payload"]["content"] for m in await sandbox_messages(client, openid, "customer_service")]


async def fault(client, endpoint: str, errcode: int | None = None, *, count: int = 1, delay: float = 0) -> None:
    body = {"endpoint": endpoint, "count": count} | ({"errcode": errcode} if errcode is not None else {}) \
        | ({"delay": delay} if delay else {})
    resp = await client.post("/wechat-sandbox/sandbox/faults", json=body)
    assert resp.status == 200, await resp.text()


async def subscribe(client, session: dict, openid: str, template_id: str, times: int = 1) -> dict:
    """The user taps accept `times` times: WeChat (the sandbox) and our API both learn of each tap."""
    body = {}
    for _ in range(times):
        resp = await client.post("/wechat-sandbox/sandbox/subscriptions",
                                 json={"openid": openid, "template_id": template_id})
        assert resp.status == 200, await resp.text()
        resp = await client.post("/api/v1/subscriptions", json={"results": {template_id: "accept"}},
                                 headers=bearer(session))
        assert resp.status == 200, await resp.text()
        body = await resp.json()
    return body


# -- pushes ------------------------------------------------------------------------------------------------------


class Pusher:
    """Builds the requests WeChat's message push would make, with the app's Token, EncodingAESKey and AppID."""

    def __init__(self, settings) -> None:
        self.token = settings.wechat_push_token
        self.crypto = WeChatCrypto(settings.wechat_push_token, settings.wechat_aes_key, settings.wechat_appid)

    def query(self, *, timestamp: int | None = None, nonce: str | None = None, signature: str | None = None,
              **extra) -> dict:
        from bot.push import signature as sign

        ts = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or uuid.uuid4().hex[:10]
        return {"timestamp": ts, "nonce": nonce,
                "signature": signature or sign(self.token, ts, nonce)} | extra

    def encrypt(self, plaintext: str, query: dict) -> tuple[str, dict]:
        """Safe mode: the body WeChat sends (Encrypt in XML) and the query with msg_signature."""
        envelope = self.crypto.encrypt_message(plaintext, query["nonce"], query["timestamp"])
        from bot.push import parse_xml

        parsed = parse_xml(envelope)
        return (f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName>"
                f"<Encrypt><![CDATA[{parsed['Encrypt']}]]></Encrypt></xml>",
                query | {"encrypt_type": "aes", "msg_signature": parsed["MsgSignature"]})

    def encrypt_json(self, plaintext: str, query: dict) -> tuple[str, dict]:
        body, query = self.encrypt(plaintext, query)
        from bot.push import parse_xml

        return json.dumps({"ToUserName": "gh_test", "Encrypt": parse_xml(body)["Encrypt"]}), query


def text_xml(openid: str, content: str, msgid: int | None = None, create_time: int | None = None) -> str:
    msgid = msgid if msgid is not None else int(uuid.uuid4().int % 10**18)
    return (f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
            f"<Content><![CDATA[{content}]]></Content><MsgId>{msgid}</MsgId></xml>")


def text_json(openid: str, content: str, msgid: int | None = None) -> str:
    return json.dumps({"ToUserName": "gh_test", "FromUserName": openid, "CreateTime": int(time.time()),
                       "MsgType": "text", "Content": content,
                       "MsgId": msgid if msgid is not None else int(uuid.uuid4().int % 10**18)}, ensure_ascii=False)


def event_xml(openid: str, event: str, wrapper: str, items: list[dict], create_time: int | None = None) -> str:
    lists = "".join("<List>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in item.items()) + "</List>"
                    for item in items)
    return (f"<xml><ToUserName><![CDATA[gh_test]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
            f"<CreateTime>{create_time or int(time.time())}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
            f"<Event><![CDATA[{event}]]></Event><{wrapper}>{lists}</{wrapper}></xml>")
