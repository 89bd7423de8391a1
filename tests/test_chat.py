"""Chat over HTTP and the WebSocket: storing and numbering, dedupe, history pages, read marks and unread counts,
who may read, attachments, case cards, the content check, bad input."""

from __future__ import annotations

import asyncio
import uuid

from chat.conversations import add_participants, announce_state, conversation_of, open_conversation
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
