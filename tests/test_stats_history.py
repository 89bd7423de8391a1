"""The history generator (issue 12, point 6): `python app.py seed-history` fills a database with a realistic
history, with a progress line, refuses a database holding real referrals unless forced, and the demo seed comes
with a few months of it (and the paper's baselines) without breaking the timelines' audit."""

from __future__ import annotations

from models import Baseline, Referral, SurveyInvitation, SurveyResponse
from referrals.state_machine import Status
from stats.demo import DEMO_REFERRALS
from stats.history import CODE_PREFIX
from tests.referral_support import Desk
from tests.support import run_app_cli


async def test_seed_history_refuses_real_referrals_unless_forced(client, settings):
    desk = await Desk.open(client)
    await desk.drive(Status.PENDING_SOURCE)
    code, out, err = await run_app_cli(settings, "seed-history", "--referrals", "300", "--years", "1")
    assert code == 1 and "已有真实转诊数据" in err and "--force" in err
    assert await Referral.filter(code__startswith=CODE_PREFIX).count() == 0
    code, out, err = await run_app_cli(settings, "seed-history", "--referrals", "300", "--years", "1", "--force")
    assert code == 0, err
    assert "完成：300 张转诊单" in out
    rows = await Referral.filter(code__startswith=CODE_PREFIX)
    assert len(rows) == 300 and {str(r.direction) for r in rows} == {"up", "down", "lateral"}
    assert {str(r.status) for r in rows} >= {"completed", "rejected", "cancelled", "expired"}
    admitted = [r for r in rows if r.wait_total_s is not None]
    assert all(r.wait_total_s == int((r.admitted_at - r.submitted_at).total_seconds()) for r in admitted)
    assert await SurveyInvitation.filter(referral__code__startswith=CODE_PREFIX).count() >= 4 * len(admitted)
    assert await SurveyResponse.all().count() > 0


async def test_the_demo_seed_comes_with_months_of_history(settings):
    code, out, err = await run_app_cli(settings, "seed")
    assert code == 0, err
    assert "含数月转诊历史" in out
    from tortoise import Tortoise

    import db

    await db.open_db(settings)
    try:
        assert await Referral.filter(code__startswith=CODE_PREFIX).count() == DEMO_REFERRALS
        assert {(b.direction, b.mean_days) for b in await Baseline.all()} == {("up", 5.45), ("down", 3.23)}
    finally:
        await Tortoise.close_connections()
    code, out, err = await run_app_cli(settings, "audit-verify")
    assert code == 0, out + err
    # Seeding again writes nothing, and a history on top of a history needs no force (no real referrals).
    code, out, _ = await run_app_cli(settings, "seed")
    assert "未重复写入" in out
    code, out, err = await run_app_cli(settings, "seed-history", "--referrals", "50", "--years", "0.5")
    assert code == 0, err
