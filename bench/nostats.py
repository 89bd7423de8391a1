"""`python -m bench.nostats <app.py arguments>`: the platform with the figures' work taken out, for
`bench lifecycle` to measure what that work costs a transition. Only the bench runs this.

Taken out: the figure columns each transition writes (stats.facts: the submitted day, the stage lengths, the
decision counters, and the deadline lookup behind them), the monthly rollup each transition keeps
(stats.rollup.move) and the survey invitations the admission and completion jobs write (surveys.invitations).
Everything else is the real app."""

from __future__ import annotations

import sys


def without_stats() -> None:
    from referrals import commands
    from stats import facts, rollup

    async def no_decision(current, now) -> dict:
        return {}

    def nothing(*args, **kwargs) -> dict:
        return {}

    async def no_invitations(referral, event) -> int:
        return 0

    for name in ("submitted", "source_approved", "accepted", "admitted"):
        setattr(facts, name, nothing)
    facts.decided = no_decision

    async def no_rollup(*args, **kwargs) -> None:  # rollup.move, whether it would run or join a statement
        return None

    rollup.move = no_rollup
    assert commands.rollup is rollup
    assert commands.facts is facts
    import notifications.handlers

    notifications.handlers.invite_for_event = no_invitations


if __name__ == "__main__":
    without_stats()
    import app

    sys.exit(app.main(sys.argv[1:]))
