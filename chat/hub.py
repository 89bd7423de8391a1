"""The realtime hub: this process's WebSockets and the fan-out of events between `web` processes.

Every event names the staff members it is for. The process that caused it delivers it to its own sockets at
once and publishes it (batched, from one task, after the commit) on the KV store's `chat:events` channel; every
other process's hub delivers it to its sockets. Redis going away therefore never fails a send: the message is
stored and acked, the publish is dropped, and what the other processes missed reaches their sockets when their
subscription is back (each socket catches up from its last delivered `seq`) or when the client reconnects.

Per socket and conversation the hub keeps the last `seq` it delivered. A message that arrives with a gap before
it is held back for a moment: usually the missing one is only on its way from the other process (two senders
of one conversation on different processes, their publishes crossing) and then both go out in order. Only a
gap still open after HOLD seconds (a dropped publish, Redis away) makes the socket read it from the database.
Either way each socket sees every message once and in order; reading every crossing from the database instead
costs a query per socket and gap, which under load slowed the stores down and so made more gaps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from aiohttp import web

import kv as kvstore
from kv import KV
from models import ChatMessage, Conversation

log = logging.getLogger("referral_cloud.chat")

CHANNEL = "chat:events"
PRESENCE_TTL = 45.0  # seconds a staff member counts as connected after the last refresh
PRESENCE_EVERY = 15.0
SEND_QUEUE = 2000  # frames waiting for one socket; a client that far behind is disconnected and catches up
PUBLISH_BATCH = 200
CATCH_UP_PAGE = 500
TOO_SLOW = 4008  # WebSocket close code: the client fell too far behind
HOLD = 1.0  # seconds a message that arrived ahead of its predecessor waits for it before the database is read


def presence_key(staff_id: int) -> str:
    return f"chat:online:{staff_id}"


@dataclass(eq=False)
class Client:
    """One connected socket of one staff member."""

    ws: web.WebSocketResponse
    staff_id: int
    account_id: int
    openid: str
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(SEND_QUEUE))
    seen: dict[int, int] = field(default_factory=dict)  # conversation id -> last seq delivered
    wanted: dict[int, int] = field(default_factory=dict)  # newest seq heard of while catching up
    catching: set[int] = field(default_factory=set)
    # Messages that arrived ahead of a missing predecessor (conversation id -> seq -> frame), and the timers
    # after which the gap is read from the database.
    held: dict[int, dict[int, str]] = field(default_factory=dict)
    gap_timers: dict[int, asyncio.TimerHandle] = field(default_factory=dict)
    # The newest seq of each conversation when the socket opened: what came before is the client's to ask for.
    base: dict[int, int] = field(default_factory=dict)
    synced: set[int] = field(default_factory=set)
    conversations: dict = field(default_factory=dict)  # public id -> Conversation this socket sent to as a member
    tasks: set[asyncio.Task] = field(default_factory=set)
    closed: bool = False

    def put(self, frame: str) -> None:
        if self.closed:
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            log.warning("socket of staff %s is too slow; disconnecting it so it reconnects and catches up",
                        self.staff_id)
            self.closed = True
            task = asyncio.ensure_future(self.ws.close(code=TOO_SLOW, message=b"too slow, reconnect"))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)


# Renders stored messages as the frames a socket receives (chat.realtime provides it; the hub knows no views).
Render = Callable[[list[ChatMessage], Conversation], Awaitable[list[str]]]


class Hub:
    def __init__(self, store: KV, render: Render) -> None:
        self.kv = store
        self.render = render
        self.origin = uuid.uuid4().hex
        self.clients: dict[int, set[Client]] = {}
        self._outgoing: asyncio.Queue[dict] = asyncio.Queue(50_000)
        self._tasks: list[asyncio.Task] = []
        self._background: set[asyncio.Task] = set()
        self.published = self.publish_failures = self.received = 0
        self._last_failure_log = 0.0

    # -- life cycle ---------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(kvstore.listen_messages(
                self.kv, CHANNEL, self._on_remote, on_subscribed=self._subscribed, retry_after=0.5, retry_max=10.0,
                fallback="other processes' sockets catch up from the database"), name="chat-hub-listener"),
            asyncio.create_task(self._publisher(), name="chat-hub-publisher"),
            asyncio.create_task(self._presence(), name="chat-hub-presence"),
        ]

    async def close_sockets(self) -> None:
        for client in [c for group in self.clients.values() for c in group]:
            with contextlib.suppress(Exception):
                await client.ws.close(code=1001, message=b"server shutting down")

    async def stop(self) -> None:
        for task in [*self._tasks, *self._background]:
            await kvstore.stop(task)

    def spawn(self, coro: Awaitable, name: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- sockets ------------------------------------------------------------------------------------------------

    def attach(self, client: Client) -> None:
        group = self.clients.setdefault(client.staff_id, set())
        first = not group
        group.add(client)
        if first:
            self.spawn(self._mark_present([client.staff_id]), "chat-presence")

    def detach(self, client: Client) -> None:
        client.closed = True
        group = self.clients.get(client.staff_id)
        if group is None:
            return
        group.discard(client)
        if not group:
            del self.clients[client.staff_id]
            self.spawn(self._mark_absent(client.staff_id), "chat-presence")
        for task in client.tasks:
            task.cancel()
        for timer in client.gap_timers.values():
            timer.cancel()

    def connected(self) -> int:
        return sum(len(group) for group in self.clients.values())

    # -- events -------------------------------------------------------------------------------------------------

    def publish(self, to: Iterable[int], event: dict, *, conversation_id: int, seq: int | None = None) -> None:
        """Deliver `event` to the sockets of the staff `to`, here at once and in every other process through the
        KV store. Call after the commit of what the event tells."""
        item = {"o": self.origin, "to": sorted(set(to)), "c": conversation_id, "s": seq,
                "e": json.dumps(event, ensure_ascii=False)}
        self._deliver(item)
        try:
            self._outgoing.put_nowait(item)
        except asyncio.QueueFull:
            self.publish_failures += 1  # the other processes' sockets catch up on the next message or reconnect

    def _deliver(self, item: dict) -> None:
        conversation_id, seq, frame = item["c"], item["s"], item["e"]
        for staff_id in item["to"]:
            for client in self.clients.get(staff_id, ()):
                if seq is None:
                    client.put(frame)
                else:
                    self.deliver_message(client, conversation_id, seq, frame)

    def deliver_message(self, client: Client, conversation_id: int, seq: int, frame: str) -> None:
        if conversation_id in client.catching:
            client.wanted[conversation_id] = max(client.wanted.get(conversation_id, 0), seq)
            return
        last = client.seen.get(conversation_id)
        if last is None:  # a conversation the staff member joined after the socket opened
            last = client.seen[conversation_id] = client.base[conversation_id] = seq - 1
        if seq == last + 1:
            client.seen[conversation_id] = seq
            client.put(frame)
            held = client.held.get(conversation_id)
            if held:
                self._release(client, conversation_id, held)
        elif seq > last + 1:
            client.held.setdefault(conversation_id, {})[seq] = frame
            if conversation_id not in client.gap_timers:
                client.gap_timers[conversation_id] = asyncio.get_running_loop().call_later(
                    HOLD, self._gap_still_open, client, conversation_id)

    def _release(self, client: Client, conversation_id: int, held: dict[int, str]) -> None:
        """Send the held messages that now follow without a gap; keep waiting for the rest."""
        seq = client.seen[conversation_id]
        while seq + 1 in held:
            seq += 1
            client.put(held.pop(seq))
        client.seen[conversation_id] = seq
        for stale in [s for s in held if s <= seq]:  # delivered meanwhile through another path
            del held[stale]
        if not held:
            del client.held[conversation_id]
            timer = client.gap_timers.pop(conversation_id, None)
            if timer is not None:
                timer.cancel()

    def _gap_still_open(self, client: Client, conversation_id: int) -> None:
        client.gap_timers.pop(conversation_id, None)
        held = client.held.get(conversation_id)
        if held and not client.closed:
            self.catch_up(client, conversation_id, wanted=max(held))

    def resume(self, client: Client, conversation_id: int, last: int, newest: int) -> None:
        """The client says it has a conversation up to `last` (after a reconnect): send it what follows."""
        seen = client.seen.setdefault(conversation_id, client.base.setdefault(conversation_id, newest))
        # Never sent on this socket: what predates it (or, asked again, everything from `last` on).
        upto = seen if conversation_id in client.synced else client.base[conversation_id]
        if last < upto:
            self._spawn_for(client, self._send_range(client, conversation_id, last, upto + 1))
        client.seen[conversation_id] = max(seen, last)
        client.synced.add(conversation_id)
        if newest > client.seen[conversation_id]:
            self.catch_up(client, conversation_id, wanted=newest)

    def _spawn_for(self, client: Client, coro: Awaitable) -> None:
        task = asyncio.ensure_future(coro)
        client.tasks.add(task)
        task.add_done_callback(client.tasks.discard)

    async def _send_range(self, client: Client, conversation_id: int, after: int, before: int) -> None:
        """Messages after < seq < before, in order (older ones the client missed before live ones reached it)."""
        try:
            conversation = await Conversation.get(id=conversation_id)
            while after + 1 < before and not client.closed:
                rows = await ChatMessage.filter(conversation_id=conversation_id, seq__gt=after, seq__lt=before) \
                    .order_by("seq").limit(CATCH_UP_PAGE)
                if not rows:
                    return
                for frame in await self.render(rows, conversation):
                    client.put(frame)
                after = rows[-1].seq
        except Exception:
            log.exception("sending a socket what it missed failed; the client gets it when it reconnects")

    def catch_up(self, client: Client, conversation_id: int, *, wanted: int) -> None:
        """Send the socket what it has not had of one conversation, from the database, in order."""
        client.wanted[conversation_id] = max(client.wanted.get(conversation_id, 0), wanted)
        if conversation_id in client.catching:
            return
        # Whatever was held back is stored (published after its commit): the database read brings it in order.
        held = client.held.pop(conversation_id, None)
        if held:
            client.wanted[conversation_id] = max(client.wanted[conversation_id], max(held))
        timer = client.gap_timers.pop(conversation_id, None)
        if timer is not None:
            timer.cancel()
        client.catching.add(conversation_id)
        self._spawn_for(client, self._catch_up(client, conversation_id))

    async def _catch_up(self, client: Client, conversation_id: int) -> None:
        try:
            conversation = await Conversation.get(id=conversation_id)
            while not client.closed:
                after = client.seen.get(conversation_id, 0)
                rows = await ChatMessage.filter(conversation_id=conversation_id, seq__gt=after) \
                    .order_by("seq").limit(CATCH_UP_PAGE)
                for frame in await self.render(rows, conversation):
                    client.put(frame)
                if rows:
                    client.seen[conversation_id] = rows[-1].seq
                if len(rows) < CATCH_UP_PAGE and client.seen.get(conversation_id, 0) >= \
                        client.wanted.get(conversation_id, 0):
                    break
                if not rows:
                    break  # what was announced is not visible yet; the next message or a reconnect brings it
        except Exception:
            log.exception("catching up a socket failed; the client gets the rest when it reconnects")
        finally:
            client.catching.discard(conversation_id)

    async def catch_up_all(self) -> None:
        """After a lost subscription: every socket reads, from the database, what it missed meanwhile (one query
        for where the conversations stand, then only the sockets that are behind)."""
        clients = [client for group in self.clients.values() for client in group]
        ids = sorted({conversation_id for client in clients for conversation_id in client.seen})
        newest: dict[int, int] = {}
        try:
            for start in range(0, len(ids), 1000):
                newest.update(await Conversation.filter(id__in=ids[start:start + 1000]).values_list("id", "last_seq"))
        except Exception:
            log.exception("catching up after a lost subscription failed; clients get the rest when they reconnect")
            return
        for group in self.clients.values():
            for client in group:
                for conversation_id, seen in list(client.seen.items()):
                    if newest.get(conversation_id, 0) > seen:
                        self.catch_up(client, conversation_id, wanted=newest[conversation_id])

    # -- the KV store ---------------------------------------------------------------------------------------------

    def _on_remote(self, message: str) -> None:
        try:
            items = json.loads(message)
        except ValueError:
            log.warning("ignoring a malformed chat event")
            return
        for item in items:
            if item.get("o") != self.origin:
                self.received += 1
                self._deliver(item)

    def _subscribed(self, again: bool) -> None:
        if again:
            # Published while the subscription was down never arrives: every socket reads its gaps.
            self.spawn(self.catch_up_all(), "chat-catch-up-all")

    async def _publisher(self) -> None:
        """Publish queued events in batches: one round trip per burst, never on a request's path."""
        while True:
            batch = [await self._outgoing.get()]
            while len(batch) < PUBLISH_BATCH and not self._outgoing.empty():
                batch.append(self._outgoing.get_nowait())
            try:
                await publish_items(self.kv, batch)
                self.published += len(batch)
            except Exception as exc:
                self.publish_failures += len(batch)
                now = time.monotonic()
                if now - self._last_failure_log > 10:
                    self._last_failure_log = now
                    log.warning("chat events not published (%s); other processes' sockets catch up later",
                                type(exc).__name__)
                await asyncio.sleep(0.5)

    async def _presence(self) -> None:
        while True:
            await asyncio.sleep(PRESENCE_EVERY)
            await self._mark_present(list(self.clients))

    async def _mark_present(self, staff_ids: list[int]) -> None:
        try:
            for staff_id in staff_ids:
                await self.kv.set(presence_key(staff_id), self.origin, ex=PRESENCE_TTL)
        except Exception as exc:  # presence only decides whether an inbox notice is needed
            log.debug("presence not written: %s", type(exc).__name__)

    async def _mark_absent(self, staff_id: int) -> None:
        try:
            if staff_id not in self.clients:
                await self.kv.delete(presence_key(staff_id))
        except Exception as exc:
            log.debug("presence not cleared: %s", type(exc).__name__)


async def publish_items(store: KV, items: list[dict]) -> None:
    await store.publish(CHANNEL, json.dumps(items, ensure_ascii=False))


async def is_present(store: KV, staff_id: int) -> bool:
    """Whether the staff member has a socket open in some `web` process (False when the store cannot tell)."""
    try:
        return await store.get(presence_key(staff_id)) is not None
    except Exception:
        return False


# -- the process's hub -----------------------------------------------------------------------------------------

_HUBS: list[Hub] = []  # the running app's hub (a list: tests may run two apps in one process)


def current() -> Hub | None:
    return _HUBS[-1] if _HUBS else None


@contextlib.asynccontextmanager
async def running(store: KV, render: Render) -> AsyncIterator[Hub]:
    hub = Hub(store, render)
    hub.start()
    _HUBS.append(hub)
    try:
        yield hub
    finally:
        _HUBS.remove(hub)
        await hub.stop()


async def announce(conversation: Conversation, event: dict, *, store: KV | None = None) -> None:
    """Deliver `event` to the conversation's connected participants, in every process. Outside a `web` process
    (a worker's job) the event goes out through `store` alone."""
    from chat.access import participant_ids

    event = {**event, "conversation_id": str(conversation.public_id)}
    to = await participant_ids(conversation.id)
    hub = current()
    if hub is not None:
        hub.publish(to, event, conversation_id=conversation.id)
    elif store is not None:
        await publish_items(store, [{"o": "job", "to": to, "c": conversation.id, "s": None,
                                     "e": json.dumps(event, ensure_ascii=False)}])
