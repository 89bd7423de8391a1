"""Property test of the figures against live transitions (issue 12, "Correctness and scale"): random
referrals walked through the real domain commands with a clock hypothesis moves (submissions at any minute of
the day, stages of any length), several at a time and step by step, so that a referral counted in one state
moves on afterwards (cancelled after booking, redirected, rescheduled, expired, admitted, completed). After
every round every figure is compared with the brute force of tests.stats_support, and the decisions past
their deadline with this test's own account of the deadlines.

A sync test with its own event loop, for the reason test_referral_properties gives."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from unittest.mock import patch

from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import db
from accounts.principal import Principal
from directory.seed import seed_demo
from errors import DomainError
from models import Department, Institution, Referral, ReferralEvent
from models.referrals import default_deadline_hours
from referrals import capacity, commands
from referrals.clinical import Clinical, ReturnSummary
from referrals.state_machine import Status
from security.crypto import PersonalDataCipher
from stats.query import Filters
from tests.referral_support import CLINICAL, RETURN_SUMMARY, demo_principals, make_patient
from tests.stats_support import compare_everything
from timeutil import china_today

PAIRS = [("DONGGUAN", "SUBEI"), ("GAOYOU", "SUBEI"), ("SUBEI", "WENHE"), ("SUBEI", "BAOYING"),
         ("GAOYOU", "BAOYING"), ("TANGWANG", "GAOYOU")]
OPS = ["approve", "approve", "reject", "redirect", "cancel", "reschedule", "check_in", "check_in", "expire",
       "complete", "complete"]
STEP = st.tuples(st.sampled_from(OPS), st.integers(min_value=0, max_value=80 * 3600))
SCRIPT = st.tuples(st.sampled_from(PAIRS), st.sampled_from(["routine", "urgent", "emergency"]),
                   st.integers(min_value=0, max_value=30 * 3600), st.lists(STEP, min_size=1, max_size=6))
RUNS = itertools.count()


@dataclass
class Clock:
    at: datetime = datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.at


@dataclass
class Walk:
    """One referral and what this test knows of its deadlines."""

    id: int
    public_id: object
    source: str
    target: str
    urgency: str
    steps: list[tuple[str, int]]
    stage_start: datetime
    late: int = 0
    decisions: int = 0


@dataclass
class World:
    loop: asyncio.AbstractEventLoop
    cipher: PersonalDataCipher
    staff: dict[tuple[str, str], Principal]
    institutions: dict[str, Institution]
    departments: dict[str, list[Department]]
    clock: Clock = field(default_factory=Clock)
    walks: list[Walk] = field(default_factory=list)

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)


def _world(settings) -> World:
    loop = asyncio.new_event_loop()

    async def setup() -> World:
        await db.open_db(settings)
        await seed_demo()
        institutions = {i.code: i for i in await Institution.all()}
        departments = {code: list(await Department.filter(institution_id=i.id).order_by("id"))
                       for code, i in institutions.items()}
        return World(loop, PersonalDataCipher(settings.data_key, settings.lookup_key), await demo_principals(),
                     institutions, departments)

    return loop.run_until_complete(setup())


def _deadline(walk: Walk) -> timedelta:
    return timedelta(hours=default_deadline_hours()[walk.urgency])


async def _decided(world: World, walk: Walk) -> None:
    walk.decisions += 1
    walk.late += int(world.clock.at > walk.stage_start + _deadline(walk))


async def _book_day(world: World, department: Department, run: int) -> date:
    """A day ahead with a free reserved bed in the department (published here, 2 a day)."""
    for offset in range(1, 60):
        day = china_today() + timedelta(days=1 + run * 3 % 40 + offset)
        rows = await capacity.capacity_between(department.id, day, day)
        if rows[0]["capacity"] == 0:
            await capacity.set_capacity(department.id, {day: 2})
            return day
        if rows[0]["available"]:
            return day
    raise AssertionError("no free day")


async def _step(world: World, walk: Walk, op: str, run: int) -> None:
    """Apply `op` if the referral's state allows it (refusals by the domain are part of the game)."""
    referral = await Referral.get(id=walk.id)
    staff = world.staff
    status = referral.status
    try:
        if op == "approve" and status == Status.PENDING_SOURCE:
            await commands.approve(staff[(walk.source, "approver")], walk.public_id, expected_version=None)
            await _decided(world, walk)
            walk.stage_start = world.clock.at
        elif op == "approve" and status == Status.PENDING_TARGET:
            department = await Department.get(id=referral.target_department_id)  # type: ignore[attr-defined]
            day = await _book_day(world, department, run)
            await commands.approve(staff[(walk.target, "approver")], walk.public_id, expected_version=None,
                                   admission=commands.Admission(date=day))
            await _decided(world, walk)
        elif op == "reject" and status in (Status.PENDING_SOURCE, Status.PENDING_TARGET):
            who = walk.source if status == Status.PENDING_SOURCE else walk.target
            await commands.reject(staff[(who, "approver")], walk.public_id, expected_version=None,
                                  reason_code="no_beds" if status == Status.PENDING_TARGET else "incomplete")
            await _decided(world, walk)
        elif op == "redirect" and status == Status.PENDING_TARGET:
            others = [code for code in world.institutions if code not in (walk.source, walk.target)]
            new = others[run % len(others)]
            await commands.redirect(staff[(walk.target, "approver")], walk.public_id, expected_version=None,
                                    institution_id=world.institutions[new].public_id,
                                    department_id=world.departments[new][0].public_id)
            await _decided(world, walk)
            walk.target, walk.stage_start = new, world.clock.at
        elif op == "cancel" and status in (Status.PENDING_SOURCE, Status.PENDING_TARGET, Status.SCHEDULED):
            await commands.cancel(staff[(walk.source, "doctor")], walk.public_id, expected_version=None)
        elif op == "reschedule" and status == Status.SCHEDULED:
            department = await Department.get(id=referral.target_department_id)  # type: ignore[attr-defined]
            day = await _book_day(world, department, run + 1)
            await commands.reschedule(staff[(walk.target, "approver")], walk.public_id, expected_version=None,
                                      admission=commands.Admission(date=day))
        elif op == "check_in" and status == Status.SCHEDULED:
            await commands.check_in(staff[(walk.target, "admission_clerk")], walk.id)
        elif op == "expire" and status == Status.SCHEDULED:
            await commands.expire(walk.id)
        elif op == "complete" and status == Status.ADMITTED:
            await commands.complete(staff[(walk.target, "doctor")], walk.public_id, expected_version=None,
                                    summary=ReturnSummary.model_validate(RETURN_SUMMARY))
    except DomainError as exc:
        # Booking a day somebody's reschedule just filled is the only refusal expected here.
        assert exc.code in ("BEDS_FULL",), (op, status, exc.code)


async def _check(world: World) -> None:
    subei = world.institutions["SUBEI"]
    for filters in (Filters(), Filters(scope=subei.id, start=date(2025, 6, 1))):
        await compare_everything(filters)
    # Decisions and decisions past the deadline, as this test counted them; decisions also from the timelines.
    rows = {r.id: r for r in await Referral.filter(id__in=[w.id for w in world.walks])}
    for walk in world.walks:
        assert (rows[walk.id].decisions, rows[walk.id].late_decisions) == (walk.decisions, walk.late), walk
        events = await ReferralEvent.filter(referral_id=walk.id, action__in=["approve", "reject", "redirect"]).count()
        assert events == walk.decisions


async def _play(world: World, scripts: list, start: datetime) -> None:
    run = next(RUNS)
    world.clock.at = start
    walks = []
    for (source, target), urgency, offset, steps in scripts:
        world.clock.at += timedelta(seconds=offset)
        patient = await make_patient(world.cipher)
        new = commands.NewReferral(
            patient_id=patient.public_id, target_institution_id=world.institutions[target].public_id,
            target_department_id=world.departments[target][0].public_id, urgency=urgency,
            clinical=Clinical.model_validate(CLINICAL), submit=True)
        referral = await commands.create_referral(world.staff[(source, "doctor")], world.cipher, new)
        walks.append(Walk(referral.id, referral.public_id, source, target, urgency, list(steps), world.clock.at))
    world.walks += walks
    await _check(world)
    for round_no in range(max(len(w.steps) for w in walks)):
        for walk in walks:
            if round_no < len(walk.steps):
                op, delay = walk.steps[round_no]
                world.clock.at += timedelta(seconds=delay)
                await _step(world, walk, op, run)
        await _check(world)


def test_figures_equal_brute_force_while_referrals_move_on(settings):
    world = _world(settings)
    try:
        with patch("referrals.commands._now", world.clock.now):
            @hypothesis_settings(max_examples=10, deadline=None, database=None,
                                 suppress_health_check=[HealthCheck.too_slow])
            @given(scripts=st.lists(SCRIPT, min_size=1, max_size=4),
                   start=st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2026, 6, 1),
                                      timezones=st.just(UTC)))
            def walk(scripts, start):
                world.run(_play(world, scripts, start))

            walk()
        statuses = world.run(_statuses(world))
        print("final states:", statuses)
        assert len(statuses) >= 3, statuses  # the walks went somewhere
    finally:
        world.run(db.close_db())
        world.loop.run_until_complete(world.loop.shutdown_asyncgens())
        world.loop.close()


async def _statuses(world: World) -> dict[str, int]:
    rows = await Referral.filter(id__in=[w.id for w in world.walks]).values_list("status", flat=True)
    counts: dict[str, int] = {}
    for status in rows:
        counts[str(status)] = counts.get(str(status), 0) + 1
    return counts
