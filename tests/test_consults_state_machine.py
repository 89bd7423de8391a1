"""The consultation and ward-round state tables, as pure functions: who may do what in which state."""

from __future__ import annotations

import pytest

from consults.round_machine import ROUND_TABLE, RoundAction, RoundStatus, round_actions, round_next
from consults.state_machine import (
    OPEN,
    TABLE,
    TERMINAL,
    Action,
    Side,
    Status,
    TransitionNotAllowed,
    allowed_actions,
    match,
)


def test_only_the_pool_accepts_or_declines_a_request_and_only_the_accepting_expert_concludes():
    assert match(Status.REQUESTED, Action.ACCEPT, sides={Side.POOL}, roles={"expert"}).to == Status.ACCEPTED
    assert match(Status.REQUESTED, Action.DECLINE, sides={Side.POOL}, roles={"expert"}).to == Status.DECLINED
    assert match(Status.ACCEPTED, Action.CONCLUDE, sides={Side.EXPERT}, roles={"expert"}).to == Status.CONCLUDED
    for sides, roles in (({Side.REQUESTER}, {"doctor"}), ({Side.INVITED}, {"expert"}), ({Side.POOL}, {"doctor"})):
        with pytest.raises(TransitionNotAllowed):
            match(Status.REQUESTED, Action.ACCEPT, sides=sides, roles=roles)
    with pytest.raises(TransitionNotAllowed):
        match(Status.ACCEPTED, Action.CONCLUDE, sides={Side.INVITED, Side.POOL}, roles={"expert"})
    with pytest.raises(TransitionNotAllowed):  # a second accept finds the request taken
        match(Status.ACCEPTED, Action.ACCEPT, sides={Side.POOL}, roles={"expert"})


def test_terminal_states_have_no_way_out_and_open_ones_can_always_end():
    assert {row.state for row in TABLE} <= OPEN
    for state in OPEN:
        assert any(row.to in TERMINAL for row in TABLE if row.state == state), state
    assert {row.action for row in TABLE if row.side == Side.SYSTEM} == {Action.EXPIRE}


def test_allowed_actions_follow_the_table():
    assert allowed_actions(Status.ACCEPTED, sides={Side.EXPERT}, roles={"expert"}) == [Action.INVITE, Action.CONCLUDE]
    assert allowed_actions(Status.ACCEPTED, sides={Side.REQUESTER}, roles={"doctor"}) == [Action.INVITE,
                                                                                             Action.CANCEL]
    assert allowed_actions(Status.CONCLUDED, sides=set(Side), roles={"doctor", "expert", "system"}) == []


def test_ward_rounds_run_in_order_and_only_the_organiser_cancels():
    assert round_next(RoundStatus.SCHEDULED, RoundAction.START) == RoundStatus.IN_PROGRESS
    assert round_next(RoundStatus.SCHEDULED, RoundAction.RECORD) is None
    assert round_next(RoundStatus.COMPLETED, RoundAction.CANCEL) is None
    assert round_actions(RoundStatus.SCHEDULED, participant=True, organiser=False) == [RoundAction.START]
    assert round_actions(RoundStatus.IN_PROGRESS, participant=True, organiser=True) == [
        RoundAction.RECORD, RoundAction.COMPLETE, RoundAction.CANCEL]
    assert round_actions(RoundStatus.IN_PROGRESS, participant=False, organiser=False) == []
    assert not any(row.state in (RoundStatus.COMPLETED, RoundStatus.CANCELLED) for row in ROUND_TABLE)
