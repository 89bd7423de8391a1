"""The realtime side: one-time tickets, frames over the WebSocket (send/ack, read, ping, sync after a reconnect),
bad frames answered without harm, state announcements, and the hub filling gaps from the database."""

from __future__ import annotations

import asyncio
import json
import uuid

from appkeys import SETTINGS, WECHAT
from chat import messages, realtime, tickets
from chat.access import membership
from chat.conversations import add_participants, announce_state, conversation_of, open_conversation
from models import Conversation, ConversationParticipant, WeChatAccount
from tests.chat_support import COLLEAGUE, DOCTOR, EXPERT, OUTSIDER, Socket, chat, consultation_conversation, staff_id


def send_frame(conversation_id: str, text: str, client_msg_id: str | None = None) -> dict:
    return {"type": "send", "conversation_id": conversation_id,
            "message": {"client_msg_id": client_msg_id or uuid.uuid4().hex, "type": "text", "text": text}}


async def test_a_socket_sends_messages_acked_with_their_seq_and_the_other_receives_them(client):
    c = await chat(client)
    doctor, expert = await c.socket(DOCTOR), await c.socket(EXPERT)
    await doctor.send(send_frame(c.id, "血压 180/110", "ws-1"))
    ack = await doctor.until(lambda f: f["type"] == "ack")
    assert ack == {"type": "ack", "conversation_id": c.id, "client_msg_id": "ws-1", "seq": 1, "duplicate": False,
                   "check_state": "passed"}
    got = await expert.until(lambda f: f["type"] == "message")
    assert got["message"]["seq"] == 1 and got["message"]["body"]["text"] == "血压 180/110"
    # The sender's own socket gets the message too (its other devices would), once.
    mine = await doctor.until(lambda f: f["type"] == "message")
    assert mine["message"]["seq"] == 1
    await doctor.send(send_frame(c.id, "血压 180/110", "ws-1"))  # a retry after a lost ack
    again = await doctor.until(lambda f: f["type"] == "ack")
    assert again["seq"] == 1 and again["duplicate"] is True
    await doctor.send({"type": "ping", "id": "p1"})
    assert (await doctor.until(lambda f: f["type"] == "pong"))["id"] == "p1"
    await expert.send({"type": "ping"})
    await expert.until(lambda f: f["type"] == "pong")
    assert len(expert.messages()) == 1  # the retry was not delivered again
    await doctor.close(), await expert.close()


async def test_bad_frames_get_an_error_frame_and_leave_every_socket_working(client):
    c = await chat(client)
    foreign = await consultation_conversation(OUTSIDER, COLLEAGUE)
    doctor, expert = await c.socket(DOCTOR), await c.socket(EXPERT)
    bad = [
        ("not json at all", "MALFORMED_FRAME"),
        ("[1, 2]", "UNKNOWN_FRAME_TYPE"),
        (json.dumps({"type": "shout"}), "UNKNOWN_FRAME_TYPE"),
        (json.dumps({"type": "send", "conversation_id": c.id}), "INVALID_INPUT"),
        (json.dumps(send_frame(c.id, "长" * 2000)), "INVALID_INPUT"),
        (json.dumps({"type": "read", "conversation_id": c.id, "seq": "last"}), "INVALID_INPUT"),
        (json.dumps({"type": "sync", "conversations": {"nope": 1}}), "INVALID_INPUT"),
        (json.dumps(send_frame(str(foreign.public_id), "不该送达")), "CONVERSATION_NOT_FOUND"),
        (json.dumps(send_frame(str(uuid.uuid4()), "没有这个会话")), "CONVERSATION_NOT_FOUND"),
        (json.dumps({"type": "read", "conversation_id": str(foreign.public_id), "seq": 1}), "CONVERSATION_NOT_FOUND"),
    ]
    for text, code in bad:
        await doctor.send(text)
        error = await doctor.until(lambda f: f["type"] == "error")
        assert error["code"] == code, (text[:60], error)
        assert any("\u4e00" <= ch <= "\u9fff" for ch in error["message"])
    await doctor.ws.send_bytes(b"\x00\x01")
    assert (await doctor.until(lambda f: f["type"] == "error"))["code"] == "MALFORMED_FRAME"
    oversized = send_frame(c.id, "长" * 2000, "too-long")
    await doctor.send(oversized)
    error = await doctor.until(lambda f: f["type"] == "error")
    assert error["ref"] == "too-long" and error["detail"]["fields"][0]["field"] == "message.text"
    # The socket still works, and the other user's socket saw none of it.
    await doctor.send(send_frame(c.id, "这条可以"))
    assert (await doctor.until(lambda f: f["type"] == "ack"))["seq"] == 1
    assert (await expert.until(lambda f: f["type"] == "message"))["message"]["body"]["text"] == "这条可以"
    assert [f["type"] for f in expert.frames] == ["ready", "message"]
    assert await Conversation.filter(id=foreign.id).values_list("last_seq", flat=True) == [0]
    await doctor.close(), await expert.close()


async def test_tickets_are_one_time_short_lived_and_not_access_tokens(client, app):
    c = await chat(client)
    ticket = await c.ticket(DOCTOR)
    ws = await client.ws_connect(f"/api/v1/realtime?ticket={ticket}")
    socket = Socket(ws)
    await socket.until(lambda f: f["type"] == "ready")

    async def refused(query: str, code: str, status: int = 401) -> None:
        resp = await client.get(f"/api/v1/realtime{query}", headers={
            "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="})
        assert resp.status == status, await resp.text()
        assert (await resp.json())["error"]["code"] == code

    await refused(f"?ticket={ticket}", "TICKET_USED")  # replayed
    await refused("", "TICKET_REQUIRED")
    await refused("?ticket=garbage", "TICKET_INVALID")
    account = await WeChatAccount.get(openid="demo_dongguan_doctor")
    expired = tickets.issue(app[SETTINGS].jwt_secret, account.public_id, -60)
    await refused(f"?ticket={expired}", "TICKET_EXPIRED")
    forged = tickets.issue("another-secret-of-sufficient-length-0123456789", account.public_id, 30)
    await refused(f"?ticket={forged}", "TICKET_INVALID")
    access = (await c.session(DOCTOR))["access_token"]
    await refused(f"?ticket={access}", "TICKET_INVALID")  # an access token is no ticket
    resp = await client.get(f"/api/v1/conversations/{c.id}", headers={"Authorization": f"Bearer {ticket}"})
    assert resp.status == 401  # and a ticket is no access token
    fresh = await c.ticket(DOCTOR)
    plain = await client.get(f"/api/v1/realtime?ticket={fresh}")  # not an upgrade: refused before it is spent
    assert plain.status == 400 and (await plain.json())["error"]["code"] == "WEBSOCKET_REQUIRED"
    ws2 = await client.ws_connect(f"/api/v1/realtime?ticket={fresh}")
    await Socket(ws2).until(lambda f: f["type"] == "ready")
    assert (await client.post("/api/v1/realtime/ticket")).status == 401
    await socket.send({"type": "ping"})
    await socket.until(lambda f: f["type"] == "pong")  # the first socket was never disturbed
    await ws.close(), await ws2.close()


async def test_a_client_that_reconnects_gets_what_it_missed_exactly_once(client):
    c = await chat(client)
    expert = await c.socket(EXPERT)
    for n in range(3):
        await c.send(DOCTOR, f"第{n + 1}条")
    for _ in range(3):
        await expert.until(lambda f: f["type"] == "message")
    await expert.close()
    for n in range(3, 8):
        await c.send(DOCTOR, f"第{n + 1}条")
    expert = await c.socket(EXPERT)
    await c.send(DOCTOR, "第9条")  # live, before the client asked for the gap
    await expert.until(lambda f: f["type"] == "message" and f["message"]["seq"] == 9)
    await expert.send({"type": "sync", "conversations": {c.id: 3}})
    synced = await expert.until(lambda f: f["type"] == "synced")
    assert synced["conversations"] == {c.id: 9}
    for seq in range(4, 9):
        await expert.until(lambda f, seq=seq: f["type"] == "message" and f["message"]["seq"] == seq)
    assert sorted(m["seq"] for m in expert.messages()) == [4, 5, 6, 7, 8, 9]
    await c.send(DOCTOR, "第10条")
    got = await expert.until(lambda f: f["type"] == "message" and f["message"]["seq"] == 10)
    assert got["message"]["body"]["text"] == "第10条"
    assert sorted(m["seq"] for m in expert.messages()) == [4, 5, 6, 7, 8, 9, 10]
    # Syncing a conversation one is not in: an error for it, the others still sync.
    foreign = await consultation_conversation(OUTSIDER, COLLEAGUE)
    await expert.send({"type": "sync", "conversations": {str(foreign.public_id): 0, c.id: 10}})
    assert (await expert.until(lambda f: f["type"] == "error"))["detail"]["conversation_ids"] == [
        str(foreign.public_id)]
    assert (await expert.until(lambda f: f["type"] == "synced"))["conversations"] == {c.id: 10}
    await expert.close()


async def test_a_gap_in_what_reaches_a_socket_is_read_from_the_database(client, app):
    """Messages whose publish never arrived (Redis away, another process died before publishing) reach the
    socket, in order, as soon as a later message shows the gap."""
    c = await chat(client)
    expert = await c.socket(EXPERT)
    await c.send(DOCTOR, "第1条")
    await expert.until(lambda f: f["type"] == "message")
    doctor_id = await staff_id(DOCTOR)
    member = await membership(doctor_id, c.id)
    for n in (2, 3, 4):  # stored, never published
        await messages.send(member.conversation, doctor_id, messages.Draft("text", f"silent-{n}", text=f"第{n}条"),
                            wechat=app[WECHAT], openid="demo_dongguan_doctor", check_timeout=2, quiet=300,
                            memo=app[realtime.NOTIFY_MEMO])
    await c.send(DOCTOR, "第5条")
    for _ in range(4):
        await expert.until(lambda f: f["type"] == "message")
    assert [m["seq"] for m in expert.messages()] == [1, 2, 3, 4, 5]
    assert [m["body"]["text"] for m in expert.messages()] == ["第1条", "第2条", "第3条", "第4条", "第5条"]
    await expert.close()


async def test_state_changes_reach_the_connected_participants(client):
    c = await chat(client)
    doctor, outsider = await c.socket(DOCTOR), await c.socket(OUTSIDER)
    subject = c.conversation.subject_id
    await announce_state("consultation", subject, "accepted", {"expert": "王志强"})
    frame = await doctor.until(lambda f: f["type"] == "state")
    assert frame == {"type": "state", "kind": "consultation", "subject_id": str(subject), "state": "accepted",
                     "detail": {"expert": "王志强"}, "conversation_id": c.id}
    await announce_state("ward_round", uuid.uuid4(), "started", {})  # no conversation: nothing, no error
    await outsider.send({"type": "ping"})
    await outsider.until(lambda f: f["type"] == "pong")
    assert [f["type"] for f in outsider.frames] == ["ready", "pong"]
    await doctor.close(), await outsider.close()


async def test_open_conversation_is_idempotent_and_adds_missing_participants(client):
    from tortoise.transactions import in_transaction

    await chat(client)
    subject = uuid.uuid4()
    async with in_transaction() as conn:
        first = await open_conversation("ward_round", subject, [await staff_id(DOCTOR)], using_db=conn)
    again = await open_conversation("ward_round", subject, [await staff_id(DOCTOR), await staff_id(EXPERT)])
    assert again.id == first.id and (await conversation_of("ward_round", subject)).id == first.id
    assert await conversation_of("consultation", subject) is None
    await add_participants(again, [await staff_id(EXPERT), await staff_id(COLLEAGUE)])
    ids = set(await ConversationParticipant.filter(conversation_id=first.id).values_list("staff_id", flat=True))
    assert ids == {await staff_id(DOCTOR), await staff_id(EXPERT), await staff_id(COLLEAGUE)}
    # A transaction that rolls back leaves no conversation behind.
    rolled = uuid.uuid4()
    try:
        async with in_transaction():
            await open_conversation("consultation", rolled, [await staff_id(DOCTOR)])
            raise RuntimeError("the consultation failed")
    except RuntimeError:
        pass
    assert await conversation_of("consultation", rolled) is None
    await asyncio.sleep(0)


async def test_a_participant_who_leaves_can_no_longer_send_or_receive_on_an_open_socket(client):
    from chat.conversations import remove_participant

    c = await chat(client)
    doctor, expert = await c.socket(DOCTOR), await c.socket(EXPERT)
    await doctor.send(send_frame(c.id, "我先说一句"))
    assert (await doctor.until(lambda f: f["type"] == "ack"))["seq"] == 1
    await remove_participant(c.conversation, await staff_id(DOCTOR))
    await doctor.send(send_frame(c.id, "离开后再说", "after-leaving"))
    error = await doctor.until(lambda f: f["type"] == "error")
    assert error["code"] == "CONVERSATION_NOT_FOUND" and error["ref"] == "after-leaving"
    await expert.send(send_frame(c.id, "医生已退出"))
    assert (await expert.until(lambda f: f["type"] == "ack"))["seq"] == 2
    await doctor.send({"type": "ping"})
    await doctor.until(lambda f: f["type"] == "pong")
    assert [m["seq"] for m in doctor.messages()] == [1]  # nothing after leaving
    assert [m["seq"] for m in (await c.history(EXPERT))["items"]] == [1, 2]
    await doctor.close(), await expert.close()
