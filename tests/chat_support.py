"""Helpers for the chat tests: a conversation between doctors of two institutions (opened the way consultations
open it), sessions, tickets and WebSocket clients that read frames until a condition holds."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass, field

from chat.conversations import open_conversation
from directory.seed import demo_openid
from models import Conversation, WeChatAccount
from tests.support import bearer, login, seeded

# The referring doctor at a community centre and the expert at the tertiary hospital talk; the others look on.
DOCTOR = ("DONGGUAN", "doctor")
EXPERT = ("SUBEI", "expert")
OUTSIDER = ("GAOYOU", "doctor")  # another institution
COLLEAGUE = ("SUBEI", "approver")  # the expert's own institution, not a participant


async def staff_id(who: tuple[str, str]) -> int:
    account = await WeChatAccount.get(openid=demo_openid(*who))
    return account.staff_id  # type: ignore[attr-defined]


async def consultation_conversation(*members: tuple[str, str]) -> Conversation:
    members = members or (DOCTOR, EXPERT)
    return await open_conversation("consultation", uuid.uuid4(), [await staff_id(m) for m in members])


@dataclass
class Chat:
    """A seeded consortium, one conversation, and a logged-in session per person."""

    client: object
    conversation: Conversation
    sessions: dict[tuple[str, str], dict] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return str(self.conversation.public_id)

    async def session(self, who: tuple[str, str]) -> dict:
        if who not in self.sessions:
            self.sessions[who] = await login(self.client, demo_openid(*who))
        return self.sessions[who]

    async def headers(self, who: tuple[str, str]) -> dict:
        return bearer(await self.session(who))

    async def send(self, who: tuple[str, str], text: str, client_msg_id: str | None = None, *,
                   conversation: str | None = None):
        body = {"client_msg_id": client_msg_id or uuid.uuid4().hex, "type": "text", "text": text}
        return await self.client.post(f"/api/v1/conversations/{conversation or self.id}/messages", json=body,
                                      headers=await self.headers(who))

    async def history(self, who: tuple[str, str], **params) -> dict:
        resp = await self.client.get(f"/api/v1/conversations/{self.id}/messages", params=params,
                                     headers=await self.headers(who))
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def ticket(self, who: tuple[str, str]) -> str:
        resp = await self.client.post("/api/v1/realtime/ticket", headers=await self.headers(who))
        assert resp.status == 201, await resp.text()
        return (await resp.json())["ticket"]

    async def socket(self, who: tuple[str, str]) -> Socket:
        ws = await self.client.ws_connect(f"/api/v1/realtime?ticket={await self.ticket(who)}")
        socket = Socket(ws)
        await socket.until(lambda f: f["type"] == "ready")
        return socket


async def chat(client) -> Chat:
    await seeded(client)
    return Chat(client, await consultation_conversation())


class Socket:
    """A WebSocket client that keeps every frame it received."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.frames: list[dict] = []
        self._taken: set[int] = set()

    async def send(self, frame: dict | str) -> None:
        await self.ws.send_str(frame if isinstance(frame, str) else json.dumps(frame))

    async def until(self, check, timeout: float = 5.0) -> dict:
        """The first frame not returned before that satisfies `check` (reading more as needed)."""
        async def wait() -> dict:
            scanned = 0
            while True:
                for index in range(scanned, len(self.frames)):
                    if index not in self._taken and check(self.frames[index]):
                        self._taken.add(index)
                        return self.frames[index]
                scanned = len(self.frames)
                msg = await self.ws.receive()
                if msg.type.name != "TEXT":
                    raise AssertionError(f"socket closed: {msg.type.name} {msg.data!r} {msg.extra!r}")
                self.frames.append(json.loads(msg.data))

        return await asyncio.wait_for(wait(), timeout)

    def messages(self, conversation_id: str | None = None) -> list[dict]:
        return [f["message"] for f in self.frames if f["type"] == "message"
                and (conversation_id is None or f["conversation_id"] == conversation_id)]

    async def close(self) -> None:
        await self.ws.close()
