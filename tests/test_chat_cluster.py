"""Chat across real processes, as the Procfile runs them: two `python app.py serve` on one PostgreSQL and one
Redis, with a standalone WeChat sandbox.

- A client on one process receives what a client on the other sends.
- One process is SIGKILLed mid-conversation: its clients reconnect to the other, resend what was not acked (same
  client_msg_id) and ask for everything after their last seq; every client ends with every message exactly once.
- Redis (a throw-away redis-server of this test, never the shared one) is stopped mid-conversation: sends are
  still stored and acked, and when Redis is back the sockets of the other process catch up, nothing lost or
  duplicated."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from dataclasses import replace

import aiohttp
import pytest

import db
from bench.cluster import Cluster, Peer, login
from bench.common import BenchError, free_port
from chat.conversations import open_conversation
from directory.seed import demo_openid, seed_demo
from models import ChatMessage, WeChatAccount
from tests.conftest import BASE_REDIS_URL, RUN_ID, _drop_redis_prefix, _truncate_pg, make_settings

pytestmark = pytest.mark.slow

PEOPLE = {"doctor": ("DONGGUAN", "doctor"), "expert": ("SUBEI", "expert"), "third": ("GAOYOU", "doctor")}


async def prepare(database_url: str, redis_url: str, prefix: str, tmp_path) -> str:
    """Seed the consortium and open one conversation of the three; returns its public id."""
    await _truncate_pg(database_url)
    settings = replace(make_settings(tmp_path, database_url=database_url, redis_url=redis_url, redis_prefix=prefix))
    await db.open_db(settings)
    await seed_demo()
    staff = [(await WeChatAccount.get(openid=demo_openid(*who))).staff_id for who in PEOPLE.values()]  # type: ignore[attr-defined]
    conversation = await open_conversation("consultation", uuid.uuid4(), staff)
    return str(conversation.public_id)


async def started(cluster: Cluster) -> None:
    try:
        await cluster.start()
    except BenchError as exc:
        cluster.stop()
        pytest.fail(str(exc))


async def peers(session: aiohttp.ClientSession, cluster: Cluster) -> dict[str, Peer]:
    return {name: Peer(name, await login(session, cluster, demo_openid(*who))) for name, who in PEOPLE.items()}


async def until(check, timeout: float, what: str, cluster: Cluster) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}\n{cluster.logs()}")
        await asyncio.sleep(0.05)


async def stored_seqs(conversation_id: str) -> list[int]:
    return list(await ChatMessage.filter(conversation__public_id=conversation_id).order_by("seq")
                .values_list("seq", flat=True))


async def assert_everyone_has_everything_once(everyone: dict[str, Peer], conversation_id: str, cluster: Cluster,
                                              sent_ids: list[str]) -> None:
    seqs = await stored_seqs(conversation_id)
    assert seqs == list(range(1, len(seqs) + 1)), "seqs have no gap"
    await until(lambda: all(sorted(set(p.received.get(conversation_id, []))) == seqs for p in everyone.values()),
                30, "every client to have every message", cluster)
    for peer in everyone.values():
        assert sorted(peer.received[conversation_id]) == seqs, f"{peer.name} got a message twice"
    ids = await ChatMessage.filter(conversation__public_id=conversation_id).values_list("client_msg_id", flat=True)
    assert sorted(ids) == sorted(set(ids)) and set(sent_ids) <= set(ids)


async def keep_sending(peer: Peer, session, cluster: Cluster, conversation_id: str, prefix: str, count: int,
                       sent: list[str], *, fallback: int, pause: float = 0.02) -> None:
    """Send `count` messages; when the socket dies, reconnect to web `fallback`, catch up and resend the one
    that was not acked under the same client_msg_id."""
    n = 0
    while n < count:
        client_msg_id = f"{prefix}-{n}"
        try:
            await peer.send(conversation_id, client_msg_id, f"{prefix} 第{n}条")
        except (ConnectionError, TimeoutError, aiohttp.ClientError, RuntimeError):
            await peer.close()
            await peer.connect(session, cluster.url(fallback), sync=peer.last_seqs())
            continue
        sent.append(client_msg_id)
        n += 1
        await asyncio.sleep(pause)


async def test_two_web_processes_relay_and_survive_one_being_killed(services_database, tmp_path):
    prefix = f"rc-test-{RUN_ID}-chat-{uuid.uuid4().hex[:6]}:"
    conversation = await prepare(services_database, BASE_REDIS_URL, prefix, tmp_path)
    cluster = Cluster(services_database, BASE_REDIS_URL, prefix, tmp_path / "cluster")
    await started(cluster)
    try:
        async with aiohttp.ClientSession() as session:
            everyone = await peers(session, cluster)
            doctor, expert, third = everyone["doctor"], everyone["expert"], everyone["third"]
            await doctor.connect(session, cluster.url(0))
            await expert.connect(session, cluster.url(1))
            await third.connect(session, cluster.url(1))
            # Across processes, both ways.
            seq = await doctor.send(conversation, "hello", "你好，请会诊")
            await until(lambda: seq in expert.received.get(conversation, []), 10, "web 2 to relay", cluster)
            seq = await expert.send(conversation, "hi", "收到，请发病历")
            await until(lambda: seq in doctor.received.get(conversation, []), 10, "web 1 to relay", cluster)

            sent = ["hello", "hi"]
            senders = [asyncio.create_task(keep_sending(doctor, session, cluster, conversation, "d", 40, sent,
                                                        fallback=0)),
                       asyncio.create_task(keep_sending(third, session, cluster, conversation, "t", 40, sent,
                                                        fallback=0))]
            await until(lambda: sum(1 for s in sent if s.startswith("t-")) >= 10, 30, "the third doctor to talk",
                        cluster)
            cluster.kill(1)  # mid-conversation: expert and third lose their sockets
            await expert.closed.wait()
            await expert.close()
            await expert.connect(session, cluster.url(0), sync=expert.last_seqs())
            await asyncio.wait_for(asyncio.gather(*senders), 60)
            await assert_everyone_has_everything_once(everyone, conversation, cluster, sent)
            for peer in everyone.values():
                assert not [e for e in peer.errors if e["code"] != "CONVERSATION_NOT_FOUND"], peer.errors
                await peer.close()
    finally:
        cluster.stop()
        await db.close_db()
        await _drop_redis_prefix(prefix)


def start_redis(port: int, log) -> subprocess.Popen:
    """A throw-away redis-server of this test (the machine's shared Redis is never stopped)."""
    with log.open("ab") as out:
        return subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no"], stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


async def redis_up(url: str, timeout: float = 10) -> None:
    from redis.asyncio import Redis

    deadline = time.monotonic() + timeout
    client = Redis.from_url(url)
    try:
        while True:
            try:
                await client.ping()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
    finally:
        await client.aclose()


async def test_sends_survive_redis_being_stopped_and_clients_catch_up(services_database, tmp_path):
    port = free_port()
    redis_url = f"redis://127.0.0.1:{port}/0"
    log = tmp_path / "redis.log"
    redis = start_redis(port, log)
    prefix = "rc-chat-redis-test:"
    cluster = None
    try:
        await redis_up(redis_url)
        conversation = await prepare(services_database, redis_url, prefix, tmp_path)
        cluster = Cluster(services_database, redis_url, prefix, tmp_path / "cluster")
        await started(cluster)
        async with aiohttp.ClientSession() as session:
            everyone = await peers(session, cluster)
            doctor, expert, third = everyone["doctor"], everyone["expert"], everyone["third"]
            await doctor.connect(session, cluster.url(0))
            await third.connect(session, cluster.url(0))
            await expert.connect(session, cluster.url(1))
            seq = await doctor.send(conversation, "hello", "你好")
            await until(lambda: seq in expert.received.get(conversation, []), 10, "the relay", cluster)
            sent = ["hello"]

            redis.kill()  # Redis goes away mid-conversation
            redis.wait(timeout=10)
            for n in range(8):
                await doctor.send(conversation, f"d-{n}", f"Redis 不在时医生第{n}条")
                await expert.send(conversation, f"e-{n}", f"Redis 不在时专家第{n}条")
                sent += [f"d-{n}", f"e-{n}"]
            # Stored and acked on both processes; the same process's sockets had them live.
            await until(lambda: len(third.received.get(conversation, [])) >= 9, 10, "local delivery", cluster)
            assert len(set(await stored_seqs(conversation))) == 17

            redis = start_redis(port, log)  # back, empty (nothing durable lived there)
            await redis_up(redis_url)
            await assert_everyone_has_everything_once(everyone, conversation, cluster, sent)
            seq = await expert.send(conversation, "after", "Redis 回来了")
            await until(lambda: seq in doctor.received.get(conversation, []), 30, "the relay to resume", cluster)
            await assert_everyone_has_everything_once(everyone, conversation, cluster, sent + ["after"])
            for peer in everyone.values():
                await peer.close()
    finally:
        if cluster is not None:
            cluster.stop()
        redis.kill()
        redis.wait(timeout=10)
        await db.close_db()
