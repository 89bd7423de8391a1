"""GET /api/v1/inbox (newest first, cursor pages, unread count) and POST /api/v1/inbox/{id}/read: each account
sees and marks only its own messages."""

from __future__ import annotations

import uuid

from tortoise.transactions import in_transaction

from appkeys import SETTINGS
from models import WeChatAccount
from notifications.fanout import publish
from notifications.rules import Notice
from tests.support import bearer, login, login_demo, seeded


async def _notify(client, account_ids: list[int], key: str, title: str) -> None:
    async with in_transaction():
        await publish(Notice(kind="referral_progress", template="progress", values={"phrase3": "已接收"},
                             page="pages/referral/detail?id=x", title=title, body=f"{title}。", accounts=account_ids),
                      None, key, settings=client.server.app[SETTINGS])


async def test_inbox_pages_counts_and_marks_read(client):
    await seeded(client)
    doctor = await login_demo(client, "DONGGUAN", "doctor")
    other = await login_demo(client, "SUBEI", "doctor")
    mine = await WeChatAccount.get(openid="demo_dongguan_doctor")
    theirs = await WeChatAccount.get(openid="demo_subei_doctor")
    for n in range(5):
        await _notify(client, [mine.id], f"k:{n}", f"消息{n}")
    await _notify(client, [theirs.id], "k:x", "别人的消息")
    await _notify(client, [mine.id], "k:0", "重复的消息")  # the same key again: deduplicated

    resp = await client.get("/api/v1/inbox?limit=2", headers=bearer(doctor))
    assert resp.status == 200, await resp.text()
    page = await resp.json()
    assert [m["title"] for m in page["items"]] == ["消息4", "消息3"]
    assert page["unread_count"] == 5 and page["next_cursor"]
    assert page["items"][0]["read"] is False and page["items"][0]["data"]["phrase3"] == "已接收"
    assert page["items"][0]["page"] == "pages/referral/detail?id=x" and page["items"][0]["referral_id"] is None
    titles = [m["title"] for m in page["items"]]
    while page["next_cursor"]:
        page = await (await client.get("/api/v1/inbox", params={"limit": 2, "cursor": page["next_cursor"]},
                                       headers=bearer(doctor))).json()
        titles += [m["title"] for m in page["items"]]
    assert titles == ["消息4", "消息3", "消息2", "消息1", "消息0"]

    first = (await (await client.get("/api/v1/inbox", headers=bearer(doctor))).json())["items"][-1]
    resp = await client.post(f"/api/v1/inbox/{first['id']}/read", headers=bearer(doctor))
    assert resp.status == 200
    body = await resp.json()
    assert body["message"]["read"] is True and body["message"]["read_at"] and body["unread_count"] == 4
    again = await (await client.post(f"/api/v1/inbox/{first['id']}/read", headers=bearer(doctor))).json()
    assert again["message"]["read_at"] == body["message"]["read_at"] and again["unread_count"] == 4
    unread = await (await client.get("/api/v1/inbox?unread=true", headers=bearer(doctor))).json()
    assert [m["title"] for m in unread["items"]] == ["消息4", "消息3", "消息2", "消息1"]

    # Someone else's message is not found, exactly like one that does not exist.
    theirs_page = await (await client.get("/api/v1/inbox", headers=bearer(other))).json()
    assert [m["title"] for m in theirs_page["items"]] == ["别人的消息"]
    resp = await client.post(f"/api/v1/inbox/{theirs_page['items'][0]['id']}/read", headers=bearer(doctor))
    assert resp.status == 404
    for bad in (str(uuid.uuid4()), "not-a-uuid"):
        resp = await client.post(f"/api/v1/inbox/{bad}/read", headers=bearer(doctor))
        assert resp.status == 404 and (await resp.json())["error"]["code"] == "MESSAGE_NOT_FOUND"


async def test_inbox_needs_a_login_and_checks_its_query(client):
    assert (await client.get("/api/v1/inbox")).status == 401
    stranger = await login(client, "o_inbox_stranger")
    resp = await client.get("/api/v1/inbox", headers=bearer(stranger))
    assert await resp.json() == {"items": [], "next_cursor": None, "unread_count": 0}
    for query in ("limit=0", "limit=101", "cursor=%%%", "unread=maybe"):
        resp = await client.get(f"/api/v1/inbox?{query}", headers=bearer(stranger))
        assert resp.status == 422, query
