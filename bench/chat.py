"""Chat bench: delivery latency, stored messages per second and memory per socket, ours against a bare relay.

    python -m bench chat [--clients 1000] [--conversations 200] [--rate 500] [--duration 20]
                         [--saturate 15] [--webs 2] [--out PATH]

Topology (both systems, same run, same machine): two web processes on one PostgreSQL and one Redis, clients
spread over them in turn, each conversation with clients/conversations participants.
- ours: `python app.py serve` x2 with a standalone WeChat sandbox (every text passes msg_sec_check there);
  each client logs in, takes a one-time ticket and opens `/api/v1/realtime`.
- bare: `python -m bench.chat_bare` x2: aiohttp WebSocket, one INSERT per message, Redis pub/sub, nothing else.

Phases per system (after a warm-up of one acked message per conversation):
1. connect every client; memory per socket = growth of the web processes' RSS / sockets;
2. fixed rate: `--rate` messages per second in total for `--duration` seconds (senders in turn); delivery
   latency of a message = from just before it is sent until the last other participant has it;
3. saturation: one closed-loop sender per conversation (next message once the previous is acked) for
   `--saturate` seconds: messages stored (acked) per second.
Needs DATABASE_URL and REDIS_URL (a database and key prefix of its own are created and dropped)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench import chat_bare
from bench.cluster import Cluster, login, rss_kb, ticket
from bench.common import (
    RESULTS,
    BenchError,
    ServerProcess,
    drop_redis_prefix,
    free_port,
    machine,
    now_china,
    percentile,
    pg_database,
    pg_version,
    redis_version,
    run_id,
    services_env,
    write_result,
)

CONNECT_CONCURRENCY = 25


def say(message: str) -> None:
    print(f"[chat] {message}", file=sys.stderr, flush=True)


@dataclass
class Load:
    """Every client's socket and what it saw, keyed by client_msg_id (unique in the run)."""

    sockets: list[aiohttp.ClientWebSocketResponse] = field(default_factory=list)
    conversation_of: list[str] = field(default_factory=list)
    members: dict[str, list[int]] = field(default_factory=dict)
    sent_at: dict[str, tuple[int, float]] = field(default_factory=dict)  # cmid -> (sender, perf_counter)
    received: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    acked: dict[str, float] = field(default_factory=dict)
    ack_waiters: dict[str, asyncio.Future] = field(default_factory=dict)
    errors: list[dict] = field(default_factory=list)
    readers: list[asyncio.Task] = field(default_factory=list)

    async def read(self, index: int) -> None:
        async for msg in self.sockets[index]:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            now = time.perf_counter()
            frame = json.loads(msg.data)
            kind = frame.get("type")
            if kind == "message":
                self.received.setdefault(frame["message"]["client_msg_id"], []).append((index, now))
            elif kind == "ack":
                cmid = frame["client_msg_id"]
                self.acked[cmid] = now
                waiter = self.ack_waiters.pop(cmid, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(frame["seq"])
            elif kind == "error":
                self.errors.append(frame)

    async def send(self, sender: int, frame_for: Callable[[str, str, str], str], n: int) -> str:
        cmid = f"c{sender}-{n}"
        text = f"会诊讨论 第{n}条 来自{sender}"
        self.sent_at[cmid] = (sender, time.perf_counter())
        await self.sockets[sender].send_str(frame_for(self.conversation_of[sender], cmid, text))
        return cmid

    def settled(self, cmids: list[str]) -> bool:
        """Every message acked and received by every participant (the sender's own copy included)."""
        return all(c in self.acked and len(self.received.get(c, [])) >= len(
            self.members[self.conversation_of[self.sent_at[c][0]]]) for c in cmids)

    def latencies(self, cmids: list[str]) -> dict:
        values, incomplete, duplicates = [], 0, 0
        for cmid in cmids:
            sender, started = self.sent_at[cmid]
            got = self.received.get(cmid, [])
            receivers = [i for i, _ in got if i != sender]
            duplicates += len(receivers) - len(set(receivers))
            expected = len(self.members[self.conversation_of[sender]]) - 1
            if len(set(receivers)) < expected:
                incomplete += 1
                continue
            values.append((max(t for i, t in got if i != sender) - started) * 1000)
        return {"messages": len(cmids), "delivered_to_all": len(values), "incomplete": incomplete,
                "duplicates": duplicates,
                "p50_ms": round(percentile(values, 50), 1) if values else None,
                "p99_ms": round(percentile(values, 99), 1) if values else None,
                "max_ms": round(max(values), 1) if values else None}


@dataclass
class System:
    name: str
    rss_kb: Callable[[], int]
    cpu_seconds: Callable[[], dict[str, float]]  # by process role
    connect: Callable[[aiohttp.ClientSession, int], Awaitable[aiohttp.ClientWebSocketResponse]]
    frame_for: Callable[[str, str, str], str]


def ours_frame(conversation_id: str, cmid: str, text: str) -> str:
    return json.dumps({"type": "send", "conversation_id": conversation_id,
                       "message": {"client_msg_id": cmid, "type": "text", "text": text}}, ensure_ascii=False)


def bare_frame(conversation_id: str, cmid: str, text: str) -> str:
    return json.dumps({"conversation_id": conversation_id, "client_msg_id": cmid, "text": text}, ensure_ascii=False)


def cpu_used(system: System, before: dict[str, float], messages: int) -> dict:
    """Server CPU a phase cost, by process role, and per stored message (clock ticks: 10 ms resolution)."""
    after = system.cpu_seconds()
    used = {role: round(after[role] - before[role], 2) for role in after}
    total = sum(used.values())
    return {"server_cpu_s": used, "server_cpu_ms_per_message": round(total * 1000 / messages, 2) if messages else None}


async def gather_limited(calls: list[Callable[[], Awaitable]], limit: int) -> list:
    semaphore = asyncio.Semaphore(limit)

    async def one(call):
        async with semaphore:
            return await call()

    return await asyncio.gather(*(one(c) for c in calls))


async def run_system(system: System, load: Load, opts: argparse.Namespace) -> dict:
    result: dict = {}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0),
                                     timeout=aiohttp.ClientTimeout(total=120)) as session:
        rss_before = system.rss_kb()
        started = time.perf_counter()
        load.sockets = await gather_limited([lambda i=i: system.connect(session, i) for i in range(opts.clients)],
                                            CONNECT_CONCURRENCY)
        load.readers = [asyncio.create_task(load.read(i)) for i in range(opts.clients)]
        result["connect_s"] = round(time.perf_counter() - started, 1)
        await asyncio.sleep(3)
        rss_after = system.rss_kb()
        result["memory"] = {"rss_before_kb": rss_before, "rss_after_kb": rss_after, "sockets": opts.clients,
                            "kb_per_socket": round((rss_after - rss_before) / opts.clients, 1)}
        say(f"{system.name}: {opts.clients} sockets in {result['connect_s']}s, "
            f"{result['memory']['kb_per_socket']} KB per socket")

        # Warm-up (not measured): one acked message per conversation, so connection pools, the WeChat token and
        # each conversation's first-of-period bookkeeping are behind us.
        counter = itertools.count()

        async def one(sender: int) -> None:
            waiter = asyncio.get_running_loop().create_future()
            cmid = f"c{sender}-{next(counter)}"
            load.ack_waiters[cmid] = waiter
            load.sent_at[cmid] = (sender, time.perf_counter())
            await load.sockets[sender].send_str(system.frame_for(load.conversation_of[sender], cmid, "预热"))
            await asyncio.wait_for(waiter, 60)

        await asyncio.gather(*(one(members[0]) for members in load.members.values()))
        result["warmup_messages"] = len(load.members)

        # Fixed rate.
        total = int(opts.rate * opts.duration)
        cpu_before, cmids = system.cpu_seconds(), []
        started = time.perf_counter()
        for k in range(total):
            delay = started + k / opts.rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            cmids.append(await load.send(k % opts.clients, system.frame_for, next(counter)))
        sending = time.perf_counter() - started
        for _ in range(1200):  # up to 120 s for a backlog to drain, so the next phase starts clean
            if load.settled(cmids):
                break
            await asyncio.sleep(0.1)
        acked = [load.acked[c] for c in cmids if c in load.acked]
        elapsed = (max(acked) - started) if acked else sending
        result["fixed_rate"] = {
            "target_per_s": opts.rate, "seconds": opts.duration, "sent": total,
            "sent_per_s": round(total / sending, 1), "acked": len(acked),
            "stored_per_s": round(len(acked) / elapsed, 1) if elapsed else None,
            "delivery": load.latencies(cmids), **cpu_used(system, cpu_before, len(acked))}
        say(f"{system.name}: fixed rate {result['fixed_rate']}")

        # Saturation: one closed-loop sender per conversation.
        senders = [members[0] for members in load.members.values()]
        stop_at = time.perf_counter() + opts.saturate
        sat_cmids: list[str] = []
        cpu_before = system.cpu_seconds()

        async def closed_loop(sender: int) -> None:
            while time.perf_counter() < stop_at:
                waiter = asyncio.get_running_loop().create_future()
                cmid = f"c{sender}-{next(counter)}"
                load.ack_waiters[cmid] = waiter
                load.sent_at[cmid] = (sender, time.perf_counter())
                await load.sockets[sender].send_str(system.frame_for(load.conversation_of[sender], cmid, "饱和测试"))
                sat_cmids.append(cmid)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter, 30)

        started = time.perf_counter()
        await asyncio.gather(*(closed_loop(s) for s in senders))
        elapsed = time.perf_counter() - started
        await asyncio.sleep(2)
        acked_count = sum(1 for c in sat_cmids if c in load.acked)
        result["saturation"] = {"senders": len(senders), "seconds": round(elapsed, 1), "acked": acked_count,
                                "stored_per_s": round(acked_count / elapsed, 1),
                                "delivery": load.latencies(sat_cmids),
                                **cpu_used(system, cpu_before, acked_count)}
        say(f"{system.name}: saturation {result['saturation']}")
        result["errors"] = load.errors[:10]
        for ws in load.sockets:
            await ws.close()
        for reader in load.readers:
            with contextlib.suppress(BaseException):
                await reader
    return result


def plan(opts: argparse.Namespace) -> tuple[list[int], dict[int, list[int]]]:
    """Client i is in conversation i // per; conversations are numbered 0..conversations-1."""
    per = max(opts.clients // opts.conversations, 2)
    conversation = [min(i // per, opts.conversations - 1) for i in range(opts.clients)]
    members: dict[int, list[int]] = {}
    for i, c in enumerate(conversation):
        members.setdefault(c, []).append(i)
    return conversation, members


async def prepare_ours(database_url: str, work: Path, opts: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Migrate, seed, one staff member and account per client, the conversations: (openids, conversation ids)."""
    import db
    from chat.conversations import open_conversation
    from directory.seed import seed_demo
    from models import Institution, Staff, WeChatAccount
    from settings import Settings

    settings = Settings.from_env({}, database_url=database_url, data_dir=work, jwt_secret="bench" * 10,
                                 data_key=bytes(32), lookup_key=bytes(32))
    await db.migrate(settings)
    await db.open_db(settings)
    try:
        await seed_demo()
        institution = await Institution.get(code="SUBEI")
        tag = uuid.uuid4().hex[:6]
        await Staff.bulk_create([Staff(institution=institution, name=f"测试医生{i}", roles=["doctor", "expert"],
                                       his_user_id=f"BENCH{tag}{i}") for i in range(opts.clients)])
        staff = await Staff.filter(his_user_id__startswith=f"BENCH{tag}").order_by("id").values_list("id", flat=True)
        openids = [f"bench_chat_{tag}_{i}" for i in range(opts.clients)]
        await WeChatAccount.bulk_create([WeChatAccount(openid=o, staff_id=s) for o, s in zip(openids, staff,
                                                                                              strict=True)])
        conversation_of, members = plan(opts)
        ids = {}
        for c, clients in members.items():
            conversation = await open_conversation("consultation", uuid.uuid4(), [staff[i] for i in clients])
            ids[c] = str(conversation.public_id)
        return openids, [ids[c] for c in conversation_of]
    finally:
        await db.close_db()


async def bench_ours(database_url: str, redis_url: str, work: Path, opts: argparse.Namespace) -> dict:
    say("ours: preparing the database")
    openids, conversations = await prepare_ours(database_url, work, opts)
    prefix = f"rc-bench-chat-{run_id()}:"
    cluster = Cluster(f"{database_url}?maxsize={opts.pool}", redis_url, prefix, work / "ours", webs=opts.webs)
    await cluster.start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            say(f"ours: logging {opts.clients} clients in")
            tokens = await gather_limited([lambda i=i: login(session, cluster, openids[i], i % opts.webs)
                                           for i in range(opts.clients)], CONNECT_CONCURRENCY)
        load = Load(conversation_of=conversations)
        for i, c in enumerate(conversations):
            load.members.setdefault(c, []).append(i)

        async def connect(session: aiohttp.ClientSession, i: int) -> aiohttp.ClientWebSocketResponse:
            base = cluster.url(i % opts.webs)
            value = await ticket(session, base, tokens[i])
            ws = await session.ws_connect(f"{base}/api/v1/realtime?ticket={value}", max_msg_size=0)
            await ws.receive()  # "ready"
            return ws

        system = System("ours", lambda: sum(cluster.rss_kb(i) for i in range(opts.webs)),
                        lambda: {"web": sum(p.cpu_seconds() or 0 for p in cluster.processes),
                                 "wechat_sandbox": (cluster.sandbox.cpu_seconds() or 0) if cluster.sandbox else 0},
                        connect, ours_frame)
        result = await run_system(system, load, opts)
        result["stored_in_database"] = await stored_count(database_url, "chat_message")
        return result
    finally:
        cluster.stop()
        await drop_redis_prefix(redis_url, prefix)


async def stored_count(database_url: str, table: str) -> int:
    import asyncpg

    conn = await asyncpg.connect(database_url.replace("postgres://", "postgresql://", 1))
    try:
        return await conn.fetchval(f"SELECT count(*) FROM {table}")  # noqa: S608 (our own table name)
    finally:
        await conn.close()


async def bench_bare(database_url: str, redis_url: str, work: Path, opts: argparse.Namespace) -> dict:
    channel = f"bare-chat-{run_id()}"
    ports = [free_port() for _ in range(opts.webs)]
    await asyncio.to_thread(work.mkdir, parents=True, exist_ok=True)
    await chat_bare.create_table(database_url)
    servers = [ServerProcess(["-m", "bench.chat_bare", "--port", str(p), "--db-url", database_url, "--redis-url",
                              redis_url, "--channel", channel, "--pool", str(opts.pool)], dict(os.environ),
                             work / f"bare-{n}.log")
               for n, p in enumerate(ports)]
    for server in servers:
        server.start()
    try:
        for server, port in zip(servers, ports, strict=True):
            await server.wait_ready(f"http://127.0.0.1:{port}/healthz")
        conversation_of, members = plan(opts)
        conversations = [f"bare-{c}" for c in conversation_of]
        load = Load(conversation_of=conversations)
        for i, c in enumerate(conversations):
            load.members.setdefault(c, []).append(i)

        async def connect(session: aiohttp.ClientSession, i: int) -> aiohttp.ClientWebSocketResponse:
            return await session.ws_connect(f"http://127.0.0.1:{ports[i % opts.webs]}/ws?conversation="
                                            f"{conversations[i]}", max_msg_size=0)

        system = System("bare", lambda: sum(rss_kb(s) for s in servers),
                        lambda: {"web": sum(s.cpu_seconds() or 0 for s in servers)}, connect, bare_frame)
        result = await run_system(system, load, opts)
        result["stored_in_database"] = await stored_count(database_url, "bare_chat_message")
        return result
    finally:
        for server in servers:
            server.stop()


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench chat", description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--conversations", type=int, default=200)
    parser.add_argument("--rate", type=float, default=500.0, help="messages per second, all senders together")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of the fixed-rate phase")
    parser.add_argument("--saturate", type=float, default=15.0, help="seconds of the saturation phase")
    parser.add_argument("--webs", type=int, default=2)
    parser.add_argument("--pool", type=int, default=20, help="PostgreSQL connections per web process, both systems "
                        "(ours through DATABASE_URL's ?maxsize=, Tortoise's default being 5)")
    parser.add_argument("--out", type=Path, default=None)
    opts = parser.parse_args(argv)
    if opts.clients < 2 * opts.conversations:
        parser.error("--clients must be at least twice --conversations (two participants each)")
    return opts


async def main(argv: list[str]) -> dict:
    opts = parse_args(argv)
    database_url, redis_url = services_env()
    if not database_url or not redis_url:
        raise BenchError("the chat bench needs DATABASE_URL and REDIS_URL (PostgreSQL and Redis)")
    rid = run_id()
    work = Path(f"/tmp/rc-bench-chat-{rid}")
    result: dict = {
        "bench": "chat", "date": now_china().isoformat(timespec="seconds"), "machine": machine(),
        "stack": f"PostgreSQL {await pg_version(database_url)} + Redis {await redis_version(redis_url)}",
        "setup": {"clients": opts.clients, "conversations": opts.conversations, "webs": opts.webs,
                  "participants_per_conversation": max(opts.clients // opts.conversations, 2),
                  "rate_per_s": opts.rate, "duration_s": opts.duration, "saturate_s": opts.saturate,
                  "postgres_connections_per_web": opts.pool,
                  "clients_in": "one process (this one), aiohttp WebSocket clients"},
        "targets": {"p99_delivery_ms_below": 100, "at_rate_per_s": 500, "ours_over_bare_rate_at_least": 0.5},
    }
    async with pg_database(database_url, f"rc_bench_chat_{rid}") as ours_url:
        result["ours"] = await bench_ours(ours_url, redis_url, work, opts)
    async with pg_database(database_url, f"rc_bench_chat_bare_{rid}") as bare_url:
        result["bare"] = await bench_bare(bare_url, redis_url, work / "bare", opts)
    ours, bare = result["ours"]["saturation"]["stored_per_s"], result["bare"]["saturation"]["stored_per_s"]
    p99 = result["ours"]["fixed_rate"]["delivery"]["p99_ms"]
    result["verdict"] = {
        "ours_over_bare_rate": round(ours / bare, 2) if bare else None,
        "rate_target_met": bool(bare) and ours / bare >= 0.5,
        "p99_target_met": p99 is not None and p99 < 100 and opts.rate >= 500
        and result["ours"]["fixed_rate"]["delivery"]["incomplete"] == 0,
    }
    out = opts.out or RESULTS / f"chat-{now_china():%Y%m%d-%H%M}.json"
    write_result(result, out)
    say(f"written {out}")
    return result
