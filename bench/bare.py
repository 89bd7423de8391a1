"""The bare-stack reference for the lifecycle bench: aiohttp + Tortoise and one handler that inserts one row,
on the same database kind, driven at the same concurrency. What it measures is the floor of the stack, so
that the lifecycle bench can say what our own layers (auth, state machine, timeline, outbox) cost on top.

    python -m bench.bare --port 8099 --db-url sqlite:///tmp/bare.sqlite3     (the server process)

Not a bench of its own (it has no `main`): bench.lifecycle starts it and calls `drive`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web
from tortoise import Tortoise, fields
from tortoise.models import Model

from bench.common import Http, Recorder, RequestFailed, client_session

LABEL = "POST /rows (bare insert)"


class BenchRow(Model):
    """One row per request; about the size of a timeline event."""

    id = fields.BigIntField(primary_key=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    kind = fields.CharField(max_length=32)
    payload = fields.JSONField()

    class Meta:
        table = "bench_row"


async def insert(request: web.Request) -> web.Response:
    body = await request.json()
    row = await BenchRow.create(kind=str(body.get("kind", ""))[:32], payload=body.get("payload") or {})
    return web.json_response({"id": row.id}, status=201)


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_bare_app(db_url: str) -> web.Application:
    async def database(app: web.Application) -> AsyncIterator[None]:
        await Tortoise.init(db_url=db_url, modules={"models": [__name__]}, use_tz=True, timezone="UTC",
                            _enable_global_fallback=True)
        await Tortoise.generate_schemas(safe=True)
        yield
        await Tortoise.close_connections()

    app = web.Application()
    app.cleanup_ctx.append(database)
    app.router.add_post("/rows", insert)
    app.router.add_get("/healthz", healthz)
    return app


async def drive(base_url: str, clients: int, inserts: int, recorder: Recorder) -> dict:
    """`clients` concurrent clients each POST `inserts` rows one after the other; returns the throughput."""

    async def client(http: Http, n: int) -> int:
        done = 0
        for i in range(inserts):
            try:
                await http.call(LABEL, "POST", "/rows", json_body={
                    "kind": "transition", "payload": {"client": n, "seq": i, "action": "approve",
                                                      "comment": "床位已预约", "from": "pending_target",
                                                      "to": "scheduled"}}, expect=201)
                done += 1
            except RequestFailed:
                continue
        return done

    async with client_session(clients) as session:
        http = Http(session, base_url, recorder)
        started = time.perf_counter()
        done = await asyncio.gather(*(client(http, n) for n in range(clients)))
        elapsed = time.perf_counter() - started
    count = sum(done)
    return {"count": count, "failed": clients * inserts - count, "seconds": round(elapsed, 3),
            "per_s": round(count / elapsed, 1) if elapsed else None}


def serve(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db-url", required=True, help="sqlite:///path or postgres://...")
    args = parser.parse_args(argv)
    # The same logging as the app (INFO with an access line per request), so both pay the same for it.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    web.run_app(create_bare_app(args.db_url), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    serve()
