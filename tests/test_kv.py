"""The KV interface behaves the same on Redis and on the in-process stand-in."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from kv import LockNotAcquired
from kv.memory import MemoryKV
from tests.conftest import BASE_REDIS_URL, require_services


@pytest.fixture(params=["memory", "redis"])
async def store(request):
    if request.param == "memory":
        yield MemoryKV("t:")
        return
    require_services("the Redis run")
    from kv.redis_store import RedisKV

    kv = RedisKV(BASE_REDIS_URL, f"rc-test-kv-{uuid.uuid4().hex[:8]}:")
    yield kv
    await kv.delete_prefix()
    await kv.close()


async def test_get_set_expiry_and_nx(store):
    assert await store.get("a") is None
    assert await store.set("a", "1") is True
    assert await store.get("a") == b"1"
    assert await store.set("a", "2", nx=True) is False
    assert await store.get("a") == b"1"
    await store.set("b", b"x", ex=0.2)
    assert 0 < await store.ttl("b") <= 0.2
    await asyncio.sleep(0.3)
    assert await store.get("b") is None
    assert await store.ttl("b") is None
    await store.delete("a")
    assert await store.get("a") is None


async def test_incr_with_expiry(store):
    assert await store.incr("n", ex=10) == 1
    assert await store.incr("n", ex=10) == 2
    assert 9 < await store.ttl("n") <= 10


async def test_lock_is_mutually_exclusive(store):
    inside, peak = 0, 0

    async def worker():
        nonlocal inside, peak
        async with store.lock("job", timeout=5, wait=5):
            inside += 1
            peak = max(peak, inside)
            await asyncio.sleep(0.02)
            inside -= 1

    await asyncio.gather(*[worker() for _ in range(5)])
    assert peak == 1


async def test_lock_wait_gives_up(store):
    async with store.lock("held", timeout=5, wait=1):
        with pytest.raises(LockNotAcquired):
            async with store.lock("held", timeout=5, wait=0.1):
                pass


async def test_publish_subscribe(store):
    received: list[str] = []
    ready = asyncio.Event()

    async def listen():
        async with store.subscribe("chan") as messages:
            ready.set()
            async for message in messages:
                received.append(message)
                if len(received) == 2:
                    return

    task = asyncio.create_task(listen())
    await ready.wait()
    await asyncio.sleep(0.05)
    await store.publish("chan", "one")
    await store.publish("chan", "two")
    await asyncio.wait_for(task, 5)
    assert received == ["one", "two"]
    assert await store.ping() is True


async def test_a_burst_beyond_the_redis_pool_waits_for_a_connection_instead_of_failing(monkeypatch):
    require_services("the Redis run")
    from kv import redis_store

    monkeypatch.setattr(redis_store, "MAX_CONNECTIONS", 3)
    store = redis_store.RedisKV(BASE_REDIS_URL, f"rc-test-pool-{uuid.uuid4().hex[:8]}:")
    try:
        await store.set("k", "v", ex=30)
        async with store.subscribe("held"):  # a listener keeps one connection for itself
            assert await asyncio.gather(*(store.get("k") for _ in range(40))) == [b"v"] * 40
    finally:
        await store.delete_prefix()
        await store.close()
