"""Chat over HTTP and the WebSocket: storing and numbering, dedupe, history pages, read marks and unread counts,
who may read, attachments, case cards, the content check, bad input."""

from __future__ import annotations

import asyncio
import uuid

from appkeys import WECHAT
from chat import messages, realtime
from chat.access import membership
from errors import NotFound
from models import ChatMessage, Conversation
from tests.chat_support import COLLEAGUE, DOCTOR, EXPERT, OUTSIDER, chat, staff_id


async def test_messages_are_numbered_without_gaps_and_delivered_to_the_other_participant(client):
    c = await chat(client)
    expert = await c.socket(EXPERT)
    for n in range(3):
        resp = await c.send(DOCTOR, f"患者胸痛 {n}")
        assert resp.status == 201, await resp.text()
        body = await resp.json()
        assert body["duplicate"] is False and body["message"]["seq"] == n + 1
    for n in range(3):
        frame = await expert.until(lambda f: f["type"] == "message")
        assert frame["message"]["seq"] == n + 1 and frame["message"]["body"] == {"text": f"患者胸痛 {n}"}
        assert frame["message"]["sender"]["institution"] == "扬州市东关街道社区卫生服务中心"
    page = await c.history(EXPERT)
    assert [m["seq"] for m in page["items"]] == [1, 2, 3] and page["last_seq"] == 3
    await expert.close()


async def test_a_retried_send_returns_the_first_message_and_takes_no_number(client):
    c = await chat(client)
    first = await c.send(DOCTOR, "请帮忙看一下心电图", "m-1")
    again = await c.send(DOCTOR, "请帮忙看一下心电图", "m-1")
    assert first.status == 201 and again.status == 200
    assert (await again.json())["duplicate"] is True
    assert (await again.json())["message"]["seq"] == (await first.json())["message"]["seq"] == 1
    # The same id from another sender is another message.
    other = await c.send(EXPERT, "好的", "m-1")
    assert other.status == 201 and (await other.json())["message"]["seq"] == 2
    page = await c.history(DOCTOR)
    assert [(m["seq"], m["client_msg_id"]) for m in page["items"]] == [(1, "m-1"), (2, "m-1")]
    # An Idempotency-Key is honoured as on every POST: the first answer again.
    headers = {**await c.headers(DOCTOR), "Idempotency-Key": "k-1"}
    body = {"client_msg_id": "m-2", "type": "text", "text": "补充：既往高血压"}
    url = f"/api/v1/conversations/{c.id}/messages"
    first = await client.post(url, json=body, headers=headers)
    again = await client.post(url, json=body, headers=headers)
    assert first.status == again.status == 201 and again.headers.get("Idempotent-Replayed") == "true"
    assert (await again.json())["message"]["seq"] == 3


async def test_concurrent_senders_get_consecutive_numbers(client):
    c = await chat(client)
    await c.session(DOCTOR), await c.session(EXPERT)
    sends = [c.send(DOCTOR if n % 2 else EXPERT, f"第 {n} 条") for n in range(20)]
    replies = await asyncio.gather(*sends)
    seqs = sorted([(await r.json())["message"]["seq"] for r in replies])
    assert seqs == list(range(1, 21))
    page = await c.history(EXPERT, limit=50)
    assert [m["seq"] for m in page["items"]] == list(range(1, 21)) and page["last_seq"] == 20


async def test_history_pages_after_and_before_a_seq(client):
    c = await chat(client)
    for n in range(7):
        assert (await c.send(DOCTOR, f"消息{n + 1}")).status == 201
    newest = await c.history(EXPERT, limit=3)
    assert [m["seq"] for m in newest["items"]] == [5, 6, 7] and newest["has_more"] and newest["next_cursor"] == "5"
    older = await c.history(EXPERT, before_seq=newest["next_cursor"], limit=3)
    assert [m["seq"] for m in older["items"]] == [2, 3, 4] and older["next_cursor"] == "2"
    oldest = await c.history(EXPERT, before_seq=2, limit=3)
    assert [m["seq"] for m in oldest["items"]] == [1] and not oldest["has_more"] and oldest["next_cursor"] is None
    forward = await c.history(EXPERT, after_seq=2, limit=4)
    assert [m["seq"] for m in forward["items"]] == [3, 4, 5, 6] and forward["next_cursor"] == "6"
    rest = await c.history(EXPERT, after_seq=6)
    assert [m["seq"] for m in rest["items"]] == [7] and not rest["has_more"]
    assert (await c.history(EXPERT, after_seq=7))["items"] == []
    both = await client.get(f"/api/v1/conversations/{c.id}/messages", params={"after_seq": 1, "before_seq": 5},
                            headers=await c.headers(EXPERT))
    assert both.status == 422


async def test_read_marks_and_unread_counts_per_participant(client):
    c = await chat(client)
    doctor = await c.socket(DOCTOR)
    for n in range(3):
        await c.send(DOCTOR, f"化验结果 {n}")
    await c.send(EXPERT, "收到")

    async def listed(who):
        resp = await client.get("/api/v1/conversations", headers=await c.headers(who))
        assert resp.status == 200
        [item] = (await resp.json())["items"]
        return item

    assert (await listed(EXPERT))["unread"] == 3  # the doctor's three; its own message is not unread
    assert (await listed(DOCTOR))["unread"] == 1
    resp = await client.post(f"/api/v1/conversations/{c.id}/read", json={"seq": 2}, headers=await c.headers(EXPERT))
    assert resp.status == 200 and await resp.json() == {"last_read_seq": 2, "unread": 1}
    frame = await doctor.until(lambda f: f["type"] == "read")
    assert frame["seq"] == 2 and frame["conversation_id"] == c.id
    # Never backwards, never past the newest message.
    resp = await client.post(f"/api/v1/conversations/{c.id}/read", json={"seq": 1}, headers=await c.headers(EXPERT))
    assert (await resp.json())["last_read_seq"] == 2
    resp = await client.post(f"/api/v1/conversations/{c.id}/read", json={"seq": 99}, headers=await c.headers(EXPERT))
    assert await resp.json() == {"last_read_seq": 4, "unread": 0}
    item = await listed(EXPERT)
    assert item["unread"] == 0 and item["last_read_seq"] == 4 and item["kind"] == "consultation"
    detail = await client.get(f"/api/v1/conversations/{c.id}", headers=await c.headers(DOCTOR))
    body = await detail.json()
    assert detail.status == 200 and {p["staff"]["name"] for p in body["participants"]} == {"刘建国", "王志强"}
    await doctor.send({"type": "read", "conversation_id": c.id, "seq": 4})
    ack = await doctor.until(lambda f: f["type"] == "read_ack")
    assert ack == {"type": "read_ack", "conversation_id": c.id, "last_read_seq": 4, "unread": 0}
    await doctor.close()


async def test_only_participants_read_a_conversation(client, app):
    from appkeys import CIPHER
    from tests.referral_support import make_patient, patient_account
    from tests.support import bearer, login

    c = await chat(client)
    await c.send(DOCTOR, "仅限会诊双方")
    patient = await make_patient(app[CIPHER])
    await patient_account(patient, "o_chat_patient")
    patient_session = await login(client, "o_chat_patient")
    unknown = str(uuid.uuid4())
    for headers in (await c.headers(OUTSIDER), await c.headers(COLLEAGUE), bearer(patient_session)):
        for path in (f"/api/v1/conversations/{c.id}", f"/api/v1/conversations/{c.id}/messages",
                     f"/api/v1/conversations/{unknown}/messages", "/api/v1/conversations/not-a-uuid/messages"):
            resp = await client.get(path, headers=headers)
            assert resp.status == 404, (path, await resp.text())
            assert (await resp.json())["error"]["code"] == "CONVERSATION_NOT_FOUND"
        resp = await client.post(f"/api/v1/conversations/{c.id}/messages", headers=headers,
                                 json={"client_msg_id": "x", "type": "text", "text": "我也想看"})
        assert resp.status == 404
        resp = await client.post(f"/api/v1/conversations/{c.id}/read", json={"seq": 1}, headers=headers)
        assert resp.status == 404
        resp = await client.get("/api/v1/conversations", headers=headers)
        assert resp.status == 200 and (await resp.json())["items"] == []
    resp = await client.post("/api/v1/realtime/ticket", headers=bearer(patient_session))
    assert resp.status == 403
    assert (await client.get(f"/api/v1/conversations/{c.id}/messages")).status == 401
    # A participant who leaves loses access.
    from chat.conversations import remove_participant

    await remove_participant(c.conversation, await staff_id(EXPERT))
    assert (await client.get(f"/api/v1/conversations/{c.id}", headers=await c.headers(EXPERT))).status == 404


async def test_bad_input_is_a_clear_4xx(client):
    c = await chat(client)
    headers = await c.headers(DOCTOR)
    url = f"/api/v1/conversations/{c.id}/messages"
    cases = [
        {"client_msg_id": "a", "type": "text", "text": "长" * 2000},  # oversized
        {"client_msg_id": "a", "type": "text", "text": "   "},
        {"client_msg_id": "a", "type": "text"},
        {"client_msg_id": "a", "type": "text", "text": "x", "attachment_id": str(uuid.uuid4())},
        {"client_msg_id": "a", "type": "voice", "text": "x"},
        {"client_msg_id": "a b/c", "type": "text", "text": "x"},
        {"client_msg_id": "a", "type": "text", "text": 12},
        {"client_msg_id": "a", "type": "image", "attachment_id": "nope"},
        {"type": "text", "text": "x"},
    ]
    for body in cases:
        resp = await client.post(url, json=body, headers=headers)
        assert resp.status == 422, (body, await resp.text())
        error = (await resp.json())["error"]
        assert error["code"] == "INVALID_INPUT" and error["detail"]["fields"]
    resp = await client.post(url, data=b"{oops", headers={**headers, "Content-Type": "application/json"})
    assert resp.status == 422
    resp = await client.post(url, json={"client_msg_id": "a", "type": "image", "attachment_id": str(uuid.uuid4())},
                             headers=headers)
    assert resp.status == 404 and (await resp.json())["error"]["code"] == "ATTACHMENT_NOT_FOUND"
    assert (await c.history(DOCTOR))["last_seq"] == 0  # nothing refused took a number


async def test_a_burst_from_several_sockets_is_numbered_without_gaps_and_reaches_every_socket_in_order(client):
    """Senders who do not wait for their acks: every message takes the next number, each sender's in the order
    it sent them, and every socket receives all of them once, in seq order."""
    c = await chat(client)
    doctor, expert = await c.socket(DOCTOR), await c.socket(EXPERT)
    sent = {DOCTOR: [f"doctor-{n}" for n in range(15)], EXPERT: [f"expert-{n}" for n in range(15)]}
    for n in range(15):
        for who, socket in ((DOCTOR, doctor), (EXPERT, expert)):
            await socket.send({"type": "send", "conversation_id": c.id, "message": {
                "client_msg_id": sent[who][n], "type": "text", "text": f"会诊讨论 {sent[who][n]}"}})
    for socket in (doctor, expert):
        for _ in range(30):
            await socket.until(lambda f: f["type"] == "message", timeout=30)
        assert [m["seq"] for m in socket.messages()] == list(range(1, 31))
        acks = [await socket.until(lambda f: f["type"] == "ack", timeout=30) for _ in range(15)]
        assert [a["seq"] for a in acks] == sorted(a["seq"] for a in acks) and len({a["seq"] for a in acks}) == 15
    page = await c.history(EXPERT, limit=50)
    assert [m["seq"] for m in page["items"]] == list(range(1, 31)) and page["last_seq"] == 30
    for who, ids in sent.items():
        assert [m["client_msg_id"] for m in page["items"] if m["client_msg_id"] in set(ids)] == ids, who
    await doctor.close(), await expert.close()


async def test_a_burst_with_a_retry_and_an_outsider_stores_each_message_once(client, app):
    """Sends to one conversation at the same moment (on PostgreSQL they share one statement): a client_msg_id
    sent twice is stored once and both get it; an outsider's message takes no number; no seq is skipped."""
    c = await chat(client)
    doctor_id, expert_id, outsider_id = await staff_id(DOCTOR), await staff_id(EXPERT), await staff_id(OUTSIDER)
    member = await membership(doctor_id, c.id)

    def send(sender_id: int, client_msg_id: str):
        return messages.send(member.conversation, sender_id, messages.Draft("text", client_msg_id, text=client_msg_id),
                             wechat=app[WECHAT], openid="demo_dongguan_doctor", check_timeout=2, quiet=300,
                             memo=app[realtime.NOTIFY_MEMO])

    results = await asyncio.gather(send(doctor_id, "first"), send(expert_id, "second"), send(doctor_id, "first"),
                                   send(outsider_id, "intruder"), send(doctor_id, "third"), return_exceptions=True)
    first, second, retry, intruder, third = results
    assert isinstance(intruder, NotFound) and intruder.code == "CONVERSATION_NOT_FOUND"
    assert retry.message.seq == first.message.seq and [first.duplicate, retry.duplicate].count(True) == 1
    assert sorted([first.message.seq, second.message.seq, third.message.seq]) == [1, 2, 3]
    assert sorted(first.staff_ids) == sorted([doctor_id, expert_id])
    stored = await ChatMessage.filter(conversation_id=member.conversation.id).order_by("seq").values_list(
        "seq", "client_msg_id")
    assert [seq for seq, _ in stored] == [1, 2, 3] and "intruder" not in {cmid for _, cmid in stored}
    assert await Conversation.filter(id=member.conversation.id).values_list("last_seq", flat=True) == [3]
    page = await c.history(DOCTOR)
    assert [m["client_msg_id"] for m in page["items"]] == [cmid for _, cmid in stored]
