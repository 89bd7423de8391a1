"""Delivering one notice to one person through the sandbox's real errcodes: credits spent exactly once,
43101 and "no credit" leave the inbox only, 47003 is permanent, 40001/45009/-1/timeouts retry; every
attempt is a Delivery row."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta

from tortoise.transactions import in_transaction

from appkeys import SETTINGS
from models import Delivery, InboxMessage, OutboxJob, SubscriptionCredit, WeChatAccount
from notifications import credits
from notifications.fanout import publish
from notifications.rules import Notice
from outbox.registry import HANDLERS, JobContext
from tests.notify_support import fault, run_jobs, sandbox_messages, subscribe
from tests.support import login_demo, seeded
from timeutil import utcnow

APPROVAL = "rc-referral-approval"
OPENID = "demo_subei_approver"
SEND_PATH = "/cgi-bin/message/subscribe/send"


def notice(account_id: int, code: str = "ZZ261126K7QM") -> Notice:
    return Notice(kind="referral_todo", template="approval", page="pages/referral/detail?id=abc", title="待审批转诊",
                  body=f"转诊单 {code} 待审批", accounts=[account_id],
                  values={"character_string1": code, "thing2": "陆*龙", "thing3": "来自 东关社区",
                          "thing4": "不稳定型心绞痛", "time5": utcnow(), "thing6": "请尽快审批"})


async def queue(client, account_id: int, key: str = "t:1") -> None:
    async with in_transaction():
        await publish(notice(account_id), None, key, settings=client.server.app[SETTINGS])


async def approver(client, *, app_credits: int = 1, wechat_credits: int | None = None) -> WeChatAccount:
    """SUBEI's approver, holding `app_credits` in our books and `wechat_credits` (default the same) at WeChat."""
    await seeded(client)
    session = await login_demo(client, "SUBEI", "approver")
    account = await WeChatAccount.get(openid=OPENID)
    if app_credits:
        await subscribe(client, session, OPENID, APPROVAL, app_credits)
    extra = (wechat_credits if wechat_credits is not None else app_credits) - app_credits
    if extra < 0:
        await client.post("/wechat-sandbox/sandbox/subscriptions",
                          json={"openid": OPENID, "template_id": APPROVAL, "revoke": True})
        extra = wechat_credits or 0
    if extra:
        await client.post("/wechat-sandbox/sandbox/subscriptions",
                          json={"openid": OPENID, "template_id": APPROVAL, "count": extra})
    return account


async def send_calls(client) -> int:
    stats = await (await client.get("/wechat-sandbox/sandbox/stats")).json()
    return stats["calls"].get(SEND_PATH, 0)


async def our_credits(account: WeChatAccount) -> int:
    row = await SubscriptionCredit.get_or_none(account_id=account.id, template_id=APPROVAL)
    return row.credits if row else 0


async def attempts(account: WeChatAccount) -> list[tuple[str, int | None]]:
    rows = await Delivery.filter(account_id=account.id, channel="subscribe").order_by("id")
    return [(d.state, d.errcode) for d in rows]


async def test_a_send_spends_one_credit_and_lands_in_the_inbox(client):
    account = await approver(client, app_credits=2)
    await queue(client, account.id)
    assert await run_jobs(client.server.app) == {"done": 1, "retried": 0, "dead": 0}
    [message] = await sandbox_messages(client, OPENID, "subscribe")
    assert message["template_id"] == APPROVAL and message["data"]["thing2"] == "陆*龙"
    assert await our_credits(account) == 1
    [delivery] = await Delivery.filter(account_id=account.id)
    assert delivery.state == "sent" and delivery.msgid == str(message["msgid"])
    assert delivery.dedupe_key == f"notify:t:1:to:{account.id}:subscribe#1"
    [inbox] = await InboxMessage.filter(account_id=account.id)
    assert inbox.title == "待审批转诊" and inbox.data["character_string1"] == "ZZ261126K7QM"
    # The same job run again (a second dispatcher, a re-run) sends nothing more.
    await OutboxJob.filter(kind="notify.send").update(state="pending")
    await run_jobs(client.server.app)
    assert await send_calls(client) == 1 and await our_credits(account) == 1


async def test_without_a_credit_the_inbox_is_all(client):
    account = await approver(client, app_credits=0)
    await queue(client, account.id)
    # Nothing but the inbox row is written: no job, so no attempt either.
    assert await OutboxJob.filter(kind="notify.send").count() == 0
    assert await run_jobs(client.server.app) == {"done": 0, "retried": 0, "dead": 0}
    assert await send_calls(client) == 0
    assert await attempts(account) == []
    assert await InboxMessage.filter(account_id=account.id).count() == 1


async def test_a_credit_spent_after_the_fan_out_leaves_the_inbox_only(client):
    account = await approver(client, app_credits=1)
    await queue(client, account.id, "t:1")
    await queue(client, account.id, "t:2")  # both queued: the one credit was still there at each fan-out
    assert await OutboxJob.filter(kind="notify.send").count() == 2
    assert await run_jobs(client.server.app) == {"done": 2, "retried": 0, "dead": 0}
    assert sorted(await attempts(account)) == [("fallback", None), ("sent", None)]
    assert await send_calls(client) == 1 and await our_credits(account) == 0


async def test_long_term_and_banned_subscriptions_decide_who_gets_a_job(client):
    await seeded(client)
    approver_account = await WeChatAccount.get(openid=OPENID)
    doctor = await WeChatAccount.get(openid="demo_subei_doctor")
    clerk = await WeChatAccount.get(openid="demo_subei_admission_clerk")
    await SubscriptionCredit.create(account=approver_account, template_id=APPROVAL, long_term=True)
    await SubscriptionCredit.create(account=doctor, template_id=APPROVAL, credits=3, banned=True)
    await SubscriptionCredit.create(account=clerk, template_id="rc-referral-progress", credits=1)  # another template
    async with in_transaction():
        await publish(replace(notice(approver_account.id), accounts=[approver_account.id, doctor.id, clerk.id]), None,
                      "t:3", settings=client.server.app[SETTINGS])
    jobs = await OutboxJob.filter(kind="notify.send").values_list("payload", flat=True)
    assert [job["account_id"] for job in jobs] == [approver_account.id]
    assert await InboxMessage.filter(dedupe_key__startswith="inbox:t:3:").count() == 3


async def test_43101_falls_back_to_the_inbox_and_is_not_retried(client):
    # Our books say one credit; WeChat has none (the user switched the template off meanwhile).
    account = await approver(client, app_credits=1, wechat_credits=0)
    await queue(client, account.id)
    assert await run_jobs(client.server.app) == {"done": 1, "retried": 0, "dead": 0}
    assert await attempts(account) == [("fallback", 43101)]
    assert await our_credits(account) == 0
    await run_jobs(client.server.app, now=utcnow() + timedelta(hours=2))
    assert await send_calls(client) == 1
    assert await sandbox_messages(client, OPENID, "subscribe") == []
    assert await InboxMessage.filter(account_id=account.id).count() == 1


async def test_47003_is_permanent_and_the_credit_comes_back(client):
    account = await approver(client, app_credits=1)
    await fault(client, "cgi-bin/message/subscribe/send", 47003)
    await queue(client, account.id)
    assert await run_jobs(client.server.app) == {"done": 0, "retried": 0, "dead": 1}
    [job] = await OutboxJob.filter(kind="notify.send")
    assert job.state == "dead" and "47003" in job.last_error
    assert await attempts(account) == [("fallback", 47003)]
    assert await our_credits(account) == 1
    await run_jobs(client.server.app, now=utcnow() + timedelta(hours=2))
    assert await send_calls(client) == 1
    assert await InboxMessage.filter(account_id=account.id).count() == 1


async def test_temporary_errors_retry_and_spend_the_credit_once(client):
    account = await approver(client, app_credits=1)
    # 45009 (rate limit), -1 (busy), then 40001 twice (the client's own token refresh does not help).
    for errcode, count in ((45009, 1), (-1, 1), (40001, 2)):
        await fault(client, "cgi-bin/message/subscribe/send", errcode, count=count)
    await queue(client, account.id)
    later = utcnow()
    for _ in range(3):
        assert await run_jobs(client.server.app, now=later) == {"done": 0, "retried": 1, "dead": 0}
        assert await our_credits(account) == 0  # held for the retry, not spent again
        later += timedelta(minutes=2)
    assert await run_jobs(client.server.app, now=later) == {"done": 1, "retried": 0, "dead": 0}
    assert await attempts(account) == [("failed", 45009), ("failed", -1), ("failed", 40001), ("sent", None)]
    assert len(await sandbox_messages(client, OPENID, "subscribe")) == 1
    assert await our_credits(account) == 0


async def test_a_timeout_is_temporary(aiohttp_client, settings):
    from app import create_app

    client = await aiohttp_client(create_app(replace(settings, wechat_timeout=0.3)))
    account = await approver(client, app_credits=1)
    await fault(client, "cgi-bin/message/subscribe/send", delay=1.0)
    await queue(client, account.id)
    assert await run_jobs(client.server.app) == {"done": 0, "retried": 1, "dead": 0}
    [(state, errcode)] = await attempts(account)
    assert state == "failed" and errcode == -1
    assert await run_jobs(client.server.app, now=utcnow() + timedelta(minutes=2)) == {"done": 1, "retried": 0,
                                                                                       "dead": 0}
    # The timed-out call may have reached WeChat (its message is in the sandbox): at-least-once at this edge.
    assert 1 <= len(await sandbox_messages(client, OPENID, "subscribe")) <= 2
    assert await our_credits(account) == 0


async def test_two_concurrent_sends_cannot_spend_one_credit_twice(client):
    account = await approver(client, app_credits=1, wechat_credits=5)
    await queue(client, account.id, "t:1")
    await queue(client, account.id, "t:2")
    send_jobs = await OutboxJob.filter(kind="notify.send").order_by("id")
    assert len(send_jobs) == 2
    await asyncio.gather(*(HANDLERS["notify.send"](JobContext(client.server.app, job)) for job in send_jobs))
    assert sorted(state for state, _ in await attempts(account)) == ["fallback", "sent"]
    assert len(await sandbox_messages(client, OPENID, "subscribe")) == 1
    assert await our_credits(account) == 0


async def test_spend_is_atomic(client):
    account = await approver(client, app_credits=3)
    results = await asyncio.gather(*(credits.spend(account.id, APPROVAL) for _ in range(10)))
    assert results.count(True) == 3
    assert await our_credits(account) == 0


async def test_long_term_templates_send_without_spending(aiohttp_client, settings):
    from app import create_app

    client = await aiohttp_client(create_app(replace(settings, wechat_long_term_templates=f" {APPROVAL} ,other")))
    await seeded(client)
    session = await login_demo(client, "SUBEI", "approver")
    resp = await client.post("/wechat-sandbox/sandbox/subscriptions",
                             json={"openid": OPENID, "template_id": APPROVAL, "long_term": True})
    assert resp.status == 200
    resp = await client.post("/api/v1/subscriptions", json={"results": {APPROVAL: "accept"}},
                             headers={"Authorization": f"Bearer {session['access_token']}"})
    body = await resp.json()
    assert body["items"] == [{"template_id": APPROVAL, "credits": 0, "long_term": True, "banned": False}]
    assert [t["long_term"] for t in body["templates"] if t["template_id"] == APPROVAL] == [True]
    account = await WeChatAccount.get(openid=OPENID)
    for n in range(3):
        await queue(client, account.id, f"t:{n}")
    assert (await run_jobs(client.server.app))["done"] == 3
    assert len(await sandbox_messages(client, OPENID, "subscribe")) == 3


async def test_a_send_interrupted_mid_call_is_not_repeated_until_an_admin_says_so(client):
    account = await approver(client, app_credits=1)
    await queue(client, account.id)
    [job] = await OutboxJob.filter(kind="notify.send")
    # A worker took the credit, wrote its attempt and died during the call (SIGKILL): nobody knows whether
    # WeChat has the message.
    assert await credits.spend(account.id, APPROVAL)
    await Delivery.create(dedupe_key=f"{job.dedupe_key}#1", account_id=account.id, channel="subscribe",
                          template_id=APPROVAL, state="sending")
    assert await run_jobs(client.server.app) == {"done": 0, "retried": 0, "dead": 1}
    assert "无法确认" in (await OutboxJob.get(id=job.id)).last_error
    assert await attempts(account) == [("unknown", None)]
    assert await send_calls(client) == 0
    assert await InboxMessage.filter(account_id=account.id).count() == 1
    # An admin who checked with the recipient retries the job: it is sent, on the credit already taken.
    await OutboxJob.filter(id=job.id).update(state="pending", attempts=0)
    assert await run_jobs(client.server.app) == {"done": 1, "retried": 0, "dead": 0}
    assert await attempts(account) == [("unknown", None), ("sent", None)]
    assert len(await sandbox_messages(client, OPENID, "subscribe")) == 1
    assert await our_credits(account) == 0
