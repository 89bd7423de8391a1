"""SQL statements per request on the hot path (what `python -m bench lifecycle` drives), counted from Tortoise's
query log with warm caches. Each statement is a round trip to the database; a change that adds one to these
requests fails here.

To update after a deliberate change: run this file (`-p no:cacheprovider -q tests/test_statement_counts.py`, with
DATABASE_URL and REDIS_URL for the PostgreSQL column), read the counts the failure prints, and pin them in
STATEMENTS with a word in the commit on why the number moved. Fewer is welcome: pin the new, lower number.
BEGIN/COMMIT are not in Tortoise's log and are not counted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

from directory import cache as directory_cache
from outbox import run_due_jobs
from referrals.state_machine import Status
from tests.referral_support import Desk, make_patient, tomorrow
from tests.support import login_code

# request → (embedded SQLite, PostgreSQL + Redis)
STATEMENTS = {
    # was 6: the account is read with its staff, last_login_at kept to 10 minutes; +1 since each login stores its
    # new WeChat session_key (it signs the user's VoIP room joins, issue 11)
    "wx-login": (4, 4),
    # PostgreSQL (issue 14): the caller's account, staff and patient bindings in one SELECT (was 2); a transition's
    # UPDATE, event and outbox jobs in one statement (was 3), sent without BEGIN/COMMIT when the step writes
    # nothing else (submit, source approval: those two round trips are not in this count either). Both: a bed is
    # booked by one conditional UPDATE ... RETURNING (was a SELECT and an UPDATE); the HIS admission job goes
    # with the transition's own jobs (was an INSERT of its own).
    # +1 each on SQLite (issue 12): a submission or approval moves the referral's contribution in the figures'
    # monthly rollup, one upsert in the transition's transaction (stats/rollup.py); on PostgreSQL that upsert is
    # a CTE of the transition's own statement, so it adds none.
    "create+submit": (15, 11),
    "approve (source)": (8, 4),
    "approve (target, booking)": (12, 8),
    "detail": (4, 3),
    # The worker's share of that source approval (issue 14): claiming, the notify.referral_event job (the event
    # with its referral; the approvers' and the doctor's accounts; their credits; the inbox rows and timer jobs,
    # in one statement and without a transaction on PostgreSQL), marking it done, and the claim that finds the
    # queue empty. Before issue 14: 11 on both, and BEGIN/COMMIT on PostgreSQL.
    "notify job (source approval)": (9, 8),
}
QUERY_LOGGER = "tortoise.db_client"
NOT_STATEMENTS = ("Created connection", "Closed connection")


class _Statements(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.sql: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith(NOT_STATEMENTS):
            self.sql.append(message)


@contextlib.contextmanager
def statements() -> Iterator[list[str]]:
    """The SQL the block sends, one entry per statement."""
    logger = logging.getLogger(QUERY_LOGGER)
    handler, level = _Statements(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.sql
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_the_hot_path_sends_no_more_statements_than_pinned(client, backend):
    desk = await Desk.open(client)
    await desk.publish_beds("SUBEI", "CARD", tomorrow(), 10)
    # A first referral and its jobs write what a new installation writes once (the institutions' policies, with
    # their defaults). Those and the seed's directory writes clear every process's directory cache now and again
    # SETTLE seconds later (directory.cache); let that pass, so that what is counted is a running server's steady
    # state.
    await desk.drive(Status.SCHEDULED)
    await run_due_jobs(client.server.app)
    await asyncio.sleep(max(directory_cache.SETTLE) + 1.0)
    # Warm-up: one whole referral, so that the directory cache and the sessions are as in a running server, and
    # its jobs, so that only the counted requests' are due later.
    await desk.drive(Status.SCHEDULED)
    await run_due_jobs(client.server.app)

    counted: dict[str, int] = {}
    sql: dict[str, list[str]] = {}

    async def count(name: str, call) -> dict:
        with statements() as sent:
            body = await call()
        counted[name], sql[name] = len(sent), list(sent)
        return body

    code = await login_code(client, "demo_dongguan_doctor")
    await count("wx-login", lambda: _ok(client.post("/api/v1/auth/wx-login", json={"code": code})))
    patient = await make_patient(desk.cipher)
    referral = await count("create+submit", lambda: _ok(desk.create("DONGGUAN", str(patient.public_id), submit=True),
                                                        201))
    assert referral["status"] == Status.PENDING_SOURCE
    rid = referral["id"]
    await run_due_jobs(client.server.app)  # the submission's, not counted
    await count("approve (source)", lambda: _ok(desk.post(("DONGGUAN", "approver"), rid, "approve")))
    ran: list[int] = []
    await count("notify job (source approval)", lambda: _ran(ran, run_due_jobs(client.server.app)))
    assert ran == [1], "exactly the approval's notify.referral_event job was due"
    approved = await count("approve (target, booking)", lambda: _ok(desk.approve_target("SUBEI", rid)))
    assert approved["status"] == Status.SCHEDULED
    await count("detail", lambda: _ok(desk.get(("DONGGUAN", "doctor"), f"/api/v1/referrals/{rid}")))

    column = 0 if backend == "embedded" else 1
    pinned = {name: counts[column] for name, counts in STATEMENTS.items()}
    assert counted == pinned, "statements per request changed (see this module's docstring):\n" + "\n".join(
        f"  {name}: {counted[name]} (pinned {pinned[name]})\n    " + "\n    ".join(s[:160] for s in sql[name])
        for name in STATEMENTS if counted[name] != pinned[name])


async def _ran(into: list[int], jobs) -> dict:
    into.append(await jobs)
    return {}


async def _ok(request, status: int = 200) -> dict:
    resp = await request
    assert resp.status == status, await resp.text()
    return await resp.json()
