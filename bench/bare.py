"""The bare-stack reference for the lifecycle bench: aiohttp + Tortoise with no code of ours, on the same
database kind, driven at the same concurrency. Two handlers:

- `POST /rows` inserts one row: the issue's reference ("bare insert");
- `POST /referrals/{id}/step` is the floor of a transition: the least any implementation on this stack must
  do for one, as the issue defines it, in one transaction: find the caller by bearer token, read the
  referral, move it on with a version-conditional UPDATE, append a hash-chained event and queue an outbox
  job; it answers the new status. No permissions, policies, timeline in the reply, notifications or HIS
  work: everything our platform does on top is left out, so its throughput bounds ours from above.

    python -m bench.bare --port 8099 --db-url sqlite:///tmp/bare.sqlite3     (the server process)

Not a bench of its own (it has no `main`): bench.lifecycle starts it and calls `drive` and
`drive_transitions`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import os
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator

from aiohttp import web
from tortoise import Tortoise, fields
from tortoise.models import Model
from tortoise.transactions import in_transaction

from bench.common import Http, Recorder, RequestFailed, client_session
from settings import _bool
from speedups import install_event_loop

LABEL = "POST /rows (bare insert)"
TRANSITION_LABEL = "POST /referrals/{id}/step (bare transition)"
# The three transitions the lifecycle bench's transition phase makes per referral, in order.
STEPS = {"draft": "pending_source", "pending_source": "pending_target", "pending_target": "scheduled"}


class BenchRow(Model):
    """One row per request; about the size of a timeline event."""

    id = fields.BigIntField(primary_key=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    kind = fields.CharField(max_length=32)
    payload = fields.JSONField()

    class Meta:
        table = "bench_row"


class BenchAccount(Model):
    id = fields.BigIntField(primary_key=True)
    token = fields.CharField(max_length=64, unique=True)
    name = fields.CharField(max_length=64)

    class Meta:
        table = "bench_account"


class BenchReferral(Model):
    id = fields.BigIntField(primary_key=True)
    public_id = fields.UUIDField(unique=True)
    status = fields.CharField(max_length=24)
    version = fields.IntField(default=1)
    chain_head = fields.CharField(max_length=80)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "bench_referral"


class BenchEvent(Model):
    id = fields.BigIntField(primary_key=True)
    referral = fields.ForeignKeyField("models.BenchReferral", related_name="events")
    seq = fields.IntField()
    at = fields.DatetimeField(auto_now_add=True)
    action = fields.CharField(max_length=24)
    from_status = fields.CharField(max_length=24)
    to_status = fields.CharField(max_length=24)
    actor_name = fields.CharField(max_length=64)
    prev_hash = fields.CharField(max_length=64)
    hash = fields.CharField(max_length=64)

    class Meta:
        table = "bench_event"
        unique_together = (("referral", "seq"),)


class BenchJob(Model):
    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=32)
    payload = fields.JSONField()
    dedupe_key = fields.CharField(max_length=128, unique=True)
    state = fields.CharField(max_length=16, default="pending")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "bench_job"


async def insert(request: web.Request) -> web.Response:
    body = await request.json()
    row = await BenchRow.create(kind=str(body.get("kind", ""))[:32], payload=body.get("payload") or {})
    return web.json_response({"id": row.id}, status=201)


async def setup(request: web.Request) -> web.Response:
    """Untimed: one account per client and `referrals` drafts for each; answers their tokens and ids."""
    body = await request.json()
    clients, referrals = int(body["clients"]), int(body["referrals"])
    desks = []
    for _ in range(clients):
        account = await BenchAccount.create(token=secrets.token_hex(16), name="张医生")
        drafts = [BenchReferral(public_id=uuid.uuid4(), status="draft", chain_head="1:" + "0" * 64)
                  for _ in range(referrals)]
        await BenchReferral.bulk_create(drafts)
        desks.append({"token": account.token, "referrals": [str(r.public_id) for r in drafts]})
    return web.json_response({"desks": desks})


async def step(request: web.Request) -> web.Response:
    token = request.headers.get("Authorization", "").removeprefix("Bearer ")
    async with in_transaction():
        account = await BenchAccount.get_or_none(token=token)
        if account is None:
            return web.json_response({"error": "unauthenticated"}, status=401)
        referral = await BenchReferral.get_or_none(public_id=request.match_info["id"])
        if referral is None or referral.status not in STEPS:
            return web.json_response({"error": "not_found"}, status=404)
        to_status = STEPS[referral.status]
        seq, prev_hash = referral.chain_head.split(":", 1)
        seq = int(seq) + 1
        digest = hashlib.sha256(json.dumps([prev_hash, seq, "approve", referral.status, to_status, account.name],
                                           ensure_ascii=False).encode()).hexdigest()
        moved = await BenchReferral.filter(id=referral.id, version=referral.version).update(
            status=to_status, version=referral.version + 1, chain_head=f"{seq}:{digest}")
        if not moved:
            return web.json_response({"error": "conflict"}, status=409)
        await BenchEvent.create(referral_id=referral.id, seq=seq, action="approve", from_status=referral.status,
                                to_status=to_status, actor_name=account.name, prev_hash=prev_hash, hash=digest)
        await BenchJob.create(kind="notify", payload={"referral_id": referral.id, "seq": seq},
                              dedupe_key=f"notify:{referral.id}:{seq}")
    return web.json_response({"id": str(referral.public_id), "status": to_status, "version": referral.version + 1})


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _open(db_url: str, *, create_schema: bool) -> None:
    await Tortoise.init(db_url=db_url, modules={"models": [__name__]}, use_tz=True, timezone="UTC",
                        _enable_global_fallback=True)
    if create_schema:
        await Tortoise.generate_schemas(safe=True)


async def create_schema(db_url: str) -> None:
    await _open(db_url, create_schema=True)
    await Tortoise.close_connections()


def create_bare_app(db_url: str, *, schema: bool = True) -> web.Application:
    async def database(app: web.Application) -> AsyncIterator[None]:
        await _open(db_url, create_schema=schema)
        yield
        await Tortoise.close_connections()

    app = web.Application()
    app.cleanup_ctx.append(database)
    app.router.add_post("/rows", insert)
    app.router.add_post("/setup", setup)
    app.router.add_post("/referrals/{id}/step", step)
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
    return _throughput(sum(done), clients * inserts, elapsed)


async def drive_transitions(base_url: str, clients: int, referrals: int, recorder: Recorder) -> dict:
    """`clients` concurrent clients each walk `referrals` drafts through the three steps, one request per
    transition (as the lifecycle bench's transition phase does with ours); returns the throughput."""
    async with client_session(clients) as session:
        desks = (await Http(session, base_url, Recorder()).call(
            "setup", "POST", "/setup", json_body={"clients": clients, "referrals": referrals}))["desks"]
        http = Http(session, base_url, recorder)

        async def client(desk: dict) -> int:
            done = 0
            for rid in desk["referrals"]:
                for _ in STEPS:
                    try:
                        await http.call(TRANSITION_LABEL, "POST", f"/referrals/{rid}/step", json_body={},
                                        token=desk["token"])
                        done += 1
                    except RequestFailed:
                        break
            return done

        started = time.perf_counter()
        done = await asyncio.gather(*(client(desk) for desk in desks))
        elapsed = time.perf_counter() - started
    return _throughput(sum(done), clients * referrals * len(STEPS), elapsed)


def _throughput(count: int, planned: int, elapsed: float) -> dict:
    return {"count": count, "failed": planned - count, "seconds": round(elapsed, 3),
            "per_s": round(count / elapsed, 1) if elapsed else None}


def serve(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db-url", required=True, help="sqlite:///path or postgres://...")
    parser.add_argument("--workers", type=int, default=1,
                        help="processes sharing the port (SO_REUSEPORT), as `python app.py serve --workers N`")
    parser.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)  # one of --workers'
    args = parser.parse_args(argv)
    # The same logging as the app (INFO with an access line per request), so both pay the same for it.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The same event loop as the platform's (SPEEDUPS): a stack choice, not code of ours.
    install_event_loop(_bool("SPEEDUPS", os.environ.get("SPEEDUPS", "true")))
    if args.workers > 1:
        # The schema once, before the processes (concurrent CREATE TABLEs would collide), then the same
        # parent as the platform's: it starts, watches and stops them.
        asyncio.run(create_schema(args.db_url))
        from web_processes import run_children

        raise SystemExit(run_children([sys.executable, "-m", "bench.bare", "--host", args.host, "--port",
                                       str(args.port), "--db-url", args.db_url, "--reuse-port"], args.workers))
    web.run_app(create_bare_app(args.db_url, schema=not args.reuse_port), host=args.host, port=args.port,
                print=None, reuse_port=args.reuse_port or None)


if __name__ == "__main__":
    serve()
