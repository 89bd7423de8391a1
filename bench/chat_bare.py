"""The bare relay the chat bench compares against: aiohttp WebSocket, one INSERT per message, Redis pub/sub
between processes, and nothing else (no auth, no tickets, no membership or content checks, no seq, no dedupe,
no catch-up). Its throughput bounds what any relay on this stack can do.

    python -m bench.chat_bare --port 8099 --db-url postgres://... --redis-url redis://... --channel bare:x

Clients connect to `/ws?conversation=<id>` and send `{"conversation_id", "client_msg_id", "text"}`; the relay
answers `{"type": "ack", "client_msg_id", "seq": <row id>}` and pushes `{"type": "message", ...}` to every socket
of the conversation, in every process. Not a bench of its own (no `main`): bench.chat starts it."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator

import asyncpg
import redis.asyncio as redis
from aiohttp import WSMsgType, web

TABLE = """CREATE TABLE IF NOT EXISTS bare_chat_message (
    id BIGSERIAL PRIMARY KEY, conversation_id TEXT NOT NULL, client_msg_id TEXT NOT NULL, body JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now())"""
INSERT = "INSERT INTO bare_chat_message (conversation_id, client_msg_id, body) VALUES ($1, $2, $3) RETURNING id"

POOL: web.AppKey[asyncpg.Pool] = web.AppKey("bare_pool", asyncpg.Pool)
REDIS: web.AppKey[redis.Redis] = web.AppKey("bare_redis", redis.Redis)
ROOMS: web.AppKey[dict] = web.AppKey("bare_rooms", dict)
SETTINGS: web.AppKey[dict] = web.AppKey("bare_settings", dict)
ORIGIN = uuid.uuid4().hex


def deliver(app: web.Application, conversation_id: str, frame: str) -> None:
    for ws in list(app[ROOMS].get(conversation_id, ())):
        if not ws.closed:
            asyncio.ensure_future(ws.send_str(frame))


async def socket(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    conversation_id = request.query.get("conversation", "")
    ws = web.WebSocketResponse(max_msg_size=64 * 1024)
    await ws.prepare(request)
    room = app[ROOMS].setdefault(conversation_id, set())
    room.add(ws)
    try:
        async for msg in ws:
            if msg.type != WSMsgType.TEXT:
                break
            data = json.loads(msg.data)
            row_id = await app[POOL].fetchval(INSERT, data["conversation_id"], data["client_msg_id"],
                                              json.dumps({"text": data["text"]}))
            frame = json.dumps({"type": "message", "conversation_id": data["conversation_id"],
                                "message": {"seq": row_id, "client_msg_id": data["client_msg_id"],
                                            "body": {"text": data["text"]}}}, ensure_ascii=False)
            deliver(app, data["conversation_id"], frame)
            channel = app[SETTINGS]["channel"]
            await app[REDIS].publish(channel, json.dumps([ORIGIN, data["conversation_id"], frame]))
            await ws.send_str(json.dumps({"type": "ack", "client_msg_id": data["client_msg_id"], "seq": row_id}))
    finally:
        room.discard(ws)
    return ws


async def create_table(db_url: str) -> None:
    """Run once before the relay processes start (two of them racing on CREATE TABLE would collide)."""
    conn = await asyncpg.connect(db_url.replace("postgres://", "postgresql://", 1))
    try:
        await conn.execute(TABLE)
    finally:
        await conn.close()


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


async def resources(app: web.Application) -> AsyncIterator[None]:
    url = app[SETTINGS]["db_url"].replace("postgres://", "postgresql://", 1)
    app[POOL] = await asyncpg.create_pool(url, min_size=2, max_size=app[SETTINGS]["pool"])
    app[REDIS] = redis.Redis.from_url(app[SETTINGS]["redis_url"])
    app[ROOMS] = {}

    async def listen() -> None:
        pubsub = app[REDIS].pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(app[SETTINGS]["channel"])
        async for item in pubsub.listen():
            origin, conversation_id, frame = json.loads(item["data"])
            if origin != ORIGIN:
                deliver(app, conversation_id, frame)

    task = asyncio.create_task(listen())
    yield
    task.cancel()
    with contextlib.suppress(BaseException):
        await task
    await app[REDIS].aclose()
    await app[POOL].close()


def create_app(db_url: str, redis_url: str, channel: str, pool: int) -> web.Application:
    app = web.Application()
    app[SETTINGS] = {"db_url": db_url, "redis_url": redis_url, "channel": channel, "pool": pool}
    app.cleanup_ctx.append(resources)
    app.router.add_get("/ws", socket)
    app.router.add_get("/healthz", healthz)
    return app


def serve(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.chat_bare", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--pool", type=int, default=20, help="PostgreSQL connections")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    web.run_app(create_app(args.db_url, args.redis_url, args.channel, args.pool), host=args.host, port=args.port,
                print=None)


if __name__ == "__main__":
    serve()
