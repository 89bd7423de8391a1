"""The realtime hub: this process's WebSockets and the fan-out of events between `web` processes."""

from __future__ import annotations

from models import Conversation


async def announce(conversation: Conversation, event: dict) -> None:
    """Deliver `event` to the conversation's connected participants, in every process (filled in with the hub)."""
