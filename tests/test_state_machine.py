"""The pure state machine (issue 4 point 1): every row reachable, nothing outside the table, the actions each
side and role is offered, directions, and the source-approval switch. No HTTP, no database."""

from __future__ import annotations

import itertools
from collections import deque

import pytest

from referrals.state_machine import (
    ACTION_NAMES,
    FHIR_STATUS,
    OPEN,
    STATUS_NAMES,
    TABLE,
    TERMINAL,
    Action,
    Direction,
    Side,
    Status,
    TransitionNotAllowed,
    allowed_actions,
    direction_of,
    is_permitted_somewhere,
    match,
    next_state,
)

ROLES = ["doctor", "approver", "admission_clerk", "expert", "admin", "system"]


def _subsets(items):
    return [set(c) for n in range(len(items) + 1) for c in itertools.combinations(items, n)]


def test_every_state_and_action_is_named_and_mapped():
    assert set(STATUS_NAMES) == set(Status) == set(FHIR_STATUS)
    assert set(ACTION_NAMES) == set(Action)
    assert TERMINAL | OPEN == set(Status) and not TERMINAL & OPEN


def test_every_row_of_the_table_is_reachable_from_draft():
    """Breadth-first over the table from DRAFT: every row's state is reached, so every row can fire."""
    reached, queue = {Status.DRAFT}, deque([Status.DRAFT])
    while queue:
        state = queue.popleft()
        for row in TABLE:
            if row.state == state and row.to not in reached:
                reached.add(row.to)
                queue.append(row.to)
    assert {row.state for row in TABLE} <= reached
    assert reached == set(Status)


@pytest.mark.parametrize("row", TABLE, ids=lambda r: f"{r.state}-{r.action}-{r.side}-{r.role}-{r.to}")
def test_each_row_fires_for_exactly_its_side_and_role(row):
    flags = [row.needs_source_approval] if row.needs_source_approval is not None else [True, False]
    for needs in flags:
        assert next_state(row.state, row.action, sides={row.side}, roles={row.role},
                          needs_source_approval=needs) == row.to
        assert row.action in allowed_actions(row.state, sides={row.side}, roles={row.role},
                                             needs_source_approval=needs)


def test_terminal_states_have_no_way_out_but_resubmit():
    for row in TABLE:
        if row.state in TERMINAL:
            assert (row.state, row.action, row.to) == (Status.REJECTED, Action.RESUBMIT, Status.REJECTED)


def test_nothing_moves_outside_the_table():
    """Every (state, action, sides, roles, policy) combination either matches a row, and then yields that row's
    target, or raises TransitionNotAllowed."""
    sides_options = _subsets(list(Side))
    roles_options = [set(r) for n in (0, 1, 2) for r in itertools.combinations(ROLES, n)] + [set(ROLES)]
    for state, action, sides, roles, needs in itertools.product(Status, Action, sides_options, roles_options,
                                                                (True, False)):
        rows = [r for r in TABLE if r.state == state and r.action == action and r.side in sides and r.role in roles
                and r.needs_source_approval in (None, needs)]
        if rows:
            assert next_state(state, action, sides=sides, roles=roles, needs_source_approval=needs) == rows[0].to
            # Rows that could match together never disagree on the outcome.
            assert {r.to for r in rows} == {rows[0].to}
        else:
            with pytest.raises(TransitionNotAllowed):
                next_state(state, action, sides=sides, roles=roles, needs_source_approval=needs)


def test_submit_goes_to_the_source_or_straight_to_the_target():
    referrer = {"sides": {Side.REFERRER, Side.SOURCE}, "roles": {"doctor"}}
    assert next_state(Status.DRAFT, Action.SUBMIT, **referrer, needs_source_approval=True) == Status.PENDING_SOURCE
    assert next_state(Status.DRAFT, Action.SUBMIT, **referrer, needs_source_approval=False) == Status.PENDING_TARGET
    # With no source step, nobody at the source can approve anything.
    assert allowed_actions(Status.PENDING_TARGET, sides={Side.SOURCE}, roles={"approver"},
                           needs_source_approval=False) == []


@pytest.mark.parametrize(("state", "sides", "roles", "expected"), [
    (Status.DRAFT, {Side.REFERRER, Side.SOURCE}, {"doctor"}, [Action.EDIT, Action.SUBMIT, Action.CANCEL]),
    (Status.DRAFT, {Side.SOURCE}, {"doctor"}, []),  # a colleague of the referrer
    (Status.DRAFT, {Side.SOURCE}, {"approver"}, []),
    (Status.DRAFT, {Side.TARGET}, {"approver", "doctor"}, []),
    (Status.PENDING_SOURCE, {Side.SOURCE}, {"approver"}, [Action.APPROVE, Action.REJECT]),
    (Status.PENDING_SOURCE, {Side.REFERRER, Side.SOURCE}, {"doctor"}, [Action.CANCEL]),
    (Status.PENDING_SOURCE, {Side.TARGET}, {"approver"}, []),
    (Status.PENDING_TARGET, {Side.TARGET}, {"approver"}, [Action.APPROVE, Action.REJECT, Action.REDIRECT]),
    (Status.PENDING_TARGET, {Side.SOURCE}, {"approver"}, []),
    (Status.PENDING_TARGET, {Side.REFERRER, Side.SOURCE}, {"doctor"}, [Action.CANCEL]),
    (Status.PENDING_TARGET, {Side.TARGET}, {"doctor", "admission_clerk", "expert", "admin"}, []),
    (Status.SCHEDULED, {Side.TARGET}, {"admission_clerk"}, [Action.CHECK_IN]),
    (Status.SCHEDULED, {Side.TARGET}, {"approver"}, [Action.RESCHEDULE]),
    (Status.SCHEDULED, {Side.REFERRER, Side.SOURCE}, {"doctor"}, [Action.CANCEL]),
    (Status.SCHEDULED, {Side.SYSTEM}, {"system"}, [Action.EXPIRE]),
    (Status.ADMITTED, {Side.TARGET}, {"doctor"}, [Action.COMPLETE]),
    (Status.ADMITTED, {Side.REFERRER, Side.SOURCE}, {"doctor"}, []),  # no cancelling after admission
    (Status.ADMITTED, {Side.SOURCE}, {"doctor"}, []),
    (Status.REJECTED, {Side.REFERRER, Side.SOURCE}, {"doctor"}, [Action.RESUBMIT]),
    (Status.REJECTED, {Side.SOURCE}, {"doctor"}, []),
    (Status.COMPLETED, {Side.REFERRER, Side.SOURCE, Side.TARGET}, set(ROLES), []),
    (Status.CANCELLED, {Side.REFERRER, Side.SOURCE, Side.TARGET}, set(ROLES), []),
    (Status.EXPIRED, {Side.REFERRER, Side.SOURCE, Side.TARGET}, set(ROLES), []),
])
def test_allowed_actions_per_side_and_role(state, sides, roles, expected):
    assert allowed_actions(state, sides=sides, roles=roles) == expected


@pytest.mark.parametrize("state", list(Status))
def test_a_patient_or_outsider_is_offered_nothing(state):
    assert allowed_actions(state, sides=set(), roles=set()) == []
    assert allowed_actions(state, sides=set(), roles=set(ROLES) - {"system"}) == []


def test_match_names_the_capacity_the_caller_acts_in():
    row = match(Status.PENDING_TARGET, Action.APPROVE, sides={Side.TARGET}, roles={"approver", "doctor"})
    assert (row.side, row.role, row.to) == (Side.TARGET, "approver", Status.SCHEDULED)
    assert is_permitted_somewhere(Action.APPROVE, Side.SOURCE, "approver")
    assert not is_permitted_somewhere(Action.APPROVE, Side.SOURCE, "doctor")
    assert not is_permitted_somewhere(Action.CHECK_IN, Side.SOURCE, "admission_clerk")


@pytest.mark.parametrize(("source", "target", "direction"), [
    ("primary", "tertiary", Direction.UP), ("primary", "county", Direction.UP), ("county", "tertiary", Direction.UP),
    ("tertiary", "primary", Direction.DOWN), ("tertiary", "county", Direction.DOWN),
    ("county", "primary", Direction.DOWN),
    ("primary", "primary", Direction.LATERAL), ("county", "county", Direction.LATERAL),
    ("tertiary", "tertiary", Direction.LATERAL),
])
def test_direction_follows_the_levels(source, target, direction):
    assert direction_of(source, target) == direction


def test_down_referrals_skip_the_source_approval_by_default_and_policy_can_require_it():
    from models import InstitutionPolicy
    from referrals.policy import needs_source_approval

    default = InstitutionPolicy()
    assert needs_source_approval(default, Direction.UP) is True
    assert needs_source_approval(default, Direction.LATERAL) is True
    assert needs_source_approval(default, Direction.DOWN) is False
    strict = InstitutionPolicy(source_approval_down=True, source_approval_up=False)
    assert needs_source_approval(strict, Direction.DOWN) is True
    assert needs_source_approval(strict, Direction.UP) is False
    referrer = {"sides": {Side.REFERRER, Side.SOURCE}, "roles": {"doctor"}}
    assert next_state(Status.DRAFT, Action.SUBMIT, **referrer,
                      needs_source_approval=needs_source_approval(default, Direction.DOWN)) == Status.PENDING_TARGET
    assert next_state(Status.DRAFT, Action.SUBMIT, **referrer,
                      needs_source_approval=needs_source_approval(strict, Direction.DOWN)) == Status.PENDING_SOURCE
