"""Helpers for the notification, inbox, subscription and bot tests: run due outbox jobs, read what the WeChat
sandbox was sent, grant subscriptions on both sides, and build real pushes (signed, optionally AES-encrypted
with wechatpy's own crypto)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

from tortoise.expressions import Q
from wechatpy.crypto import WeChatCrypto

from models import JobState, OutboxJob
from outbox.registry import HANDLERS, JobContext, PermanentFailure
from tests.support import bearer
from timeutil import utcnow


async def run_jobs(app, *, now: datetime | None = None, kinds: set[str] | None = None,
                   retry_in: float = 60.0) -> dict[str, int]:
    """Run every due job (and the jobs those write) the way a dispatcher would: claimed by a conditional
    update, done on success, pending again `retry_in` seconds later on a temporary failure, dead on a permanent
    one. Jobs a background dispatcher has claimed are waited for. Returns counts by outcome."""
    outcome = {"done": 0, "retried": 0, "dead": 0}
    for _ in range(100):
        at = (now or utcnow()).astimezone(UTC)  # SQLite compares stored times as text: UTC only
        due = OutboxJob.filter(state=JobState.PENDING, next_attempt_at__lte=at, kind__in=sorted(kinds or HANDLERS))
        jobs = await due.order_by("id")
        if not jobs:
            if not await OutboxJob.filter(state=JobState.RUNNING, kind__in=sorted(kinds or HANDLERS)).exists():
                return outcome
            await asyncio.sleep(0.02)  # a background dispatcher is on it
            continue
        for job in jobs:
            claimed = await OutboxJob.filter(id=job.id, state=JobState.PENDING).update(
                state=JobState.RUNNING, attempts=job.attempts + 1)
            if not claimed:
                continue
            job.attempts += 1
            try:
                await HANDLERS[job.kind](JobContext(app, job))
            except PermanentFailure as exc:
                await OutboxJob.filter(id=job.id).update(state=JobState.DEAD, last_error=str(exc))
                outcome["dead"] += 1
            except Exception as exc:  # temporary, as the registry says of anything else
                await OutboxJob.filter(id=job.id).update(state=JobState.PENDING, last_error=str(exc),
                                                         next_attempt_at=at + timedelta(seconds=retry_in))
                outcome["retried"] += 1
            else:
                await OutboxJob.filter(id=job.id).update(state=JobState.DONE)
                outcome["done"] += 1
    raise AssertionError("jobs kept writing jobs for 100 rounds")


async def jobs(kind: str, **filters) -> list[OutboxJob]:
    return await OutboxJob.filter(Q(kind=kind), **filters).order_by("id")


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
