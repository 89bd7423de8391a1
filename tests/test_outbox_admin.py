"""Dead jobs for admins: institution admins list and retry the jobs about their own referrals through the API;
operators see and retry everything with `python app.py jobs`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import db
from models import OutboxJob, Referral
from outbox import admin, purge_finished
from outbox.cli import run_jobs_command
from referrals.state_machine import Status
from tests.referral_support import Desk
from tests.support import run_app_cli
from tests.test_outbox import eventually

ROOT = Path(__file__).resolve().parent.parent


async def kill(job: OutboxJob, reason: str = "HIS 拒绝：科室代码无效") -> None:
    await OutboxJob.filter(id=job.id).update(state="dead", attempts=3, last_error=reason)


async def test_admins_see_and_retry_only_the_jobs_about_their_referrals(client):
    desk = await Desk.open(client)
    body = await desk.drive(Status.SCHEDULED, source="DONGGUAN", target="SUBEI")
    referral = await Referral.get(public_id=body["id"])
    admit = await OutboxJob.get(dedupe_key=f"his-admit:{referral.id}")
    await kill(admit)
    orphan = await OutboxJob.create(kind="probe.cs_message", dedupe_key="probe:admin", payload={"openid": "o_x"},
                                    state="dead", next_attempt_at=datetime.now(UTC), last_error="40003")

    for code in ("SUBEI", "DONGGUAN"):  # target and source both see it
        listed = await desk.ok(await desk.get((code, "admin"), "/api/v1/admin/jobs"))
        assert [(j["id"], j["kind"], j["state"], j["last_error"]) for j in listed["items"]] == [
            (str(admit.id), "his.admit", "dead", "HIS 拒绝：科室代码无效")]
        assert listed["items"][0]["referral"] == {"id": body["id"], "code": referral.code}
        assert "payload" not in listed["items"][0]
    assert (await desk.ok(await desk.get(("WENHE", "admin"), "/api/v1/admin/jobs")))["items"] == []
    # Other states on request: the referral's notification jobs wait in "pending" (no dispatcher in this test).
    pending = await desk.ok(await desk.get(("SUBEI", "admin"), "/api/v1/admin/jobs", state="pending"))
    assert pending["items"] and all(j["referral"]["code"] == referral.code for j in pending["items"])
    assert (await desk.get(("SUBEI", "admin"), "/api/v1/admin/jobs", state="lost")).status == 422
    assert (await desk.get(("SUBEI", "approver"), "/api/v1/admin/jobs")).status == 403

    retry = f"/api/v1/admin/jobs/{admit.id}/retry"
    assert (await client.post(retry, headers=await desk.headers(("WENHE", "admin")))).status == 404
    assert (await client.post(f"/api/v1/admin/jobs/{orphan.id}/retry",
                              headers=await desk.headers(("SUBEI", "admin")))).status == 404
    assert (await client.post("/api/v1/admin/jobs/x1/retry", headers=await desk.headers(("SUBEI", "admin")))
            ).status == 404
    assert (await client.post(retry, headers=await desk.headers(("SUBEI", "doctor")))).status == 403
    retried = await desk.ok(await client.post(retry, headers=await desk.headers(("SUBEI", "admin"))))
    assert (retried["state"], retried["attempts"]) == ("pending", 0)
    again = await client.post(retry, headers=await desk.headers(("SUBEI", "admin")))
    assert again.status == 409 and (await again.json())["error"]["code"] == "JOB_NOT_DEAD"
    assert (await OutboxJob.get(id=orphan.id)).state == "dead"


async def test_the_jobs_command_lists_and_retries_dead_jobs(settings, capsys):
    await db.open_db(settings)
    try:
        now = datetime.now(UTC)
        first = await OutboxJob.create(kind="his.admit", dedupe_key="his-admit:9001", payload={"referral_id": 9001},
                                       state="dead", attempts=12, next_attempt_at=now, last_error="HIS 一直不可用")
        await OutboxJob.create(kind="probe.cs_message", dedupe_key="probe:cli", payload={"openid": "o_x"},
                               state="dead", attempts=1, next_attempt_at=now,
                               last_error="微信拒绝发送（errcode 40003）")
        await OutboxJob.create(kind="probe.cs_message", dedupe_key="probe:cli:ok", payload={}, state="done",
                               next_attempt_at=now)
    finally:
        await db.close_db()

    def args(**given) -> argparse.Namespace:
        return argparse.Namespace(**({"dead": False, "retry": None, "retry_all_dead": False, "json": False,
                                      "purge_done": False, "older_than": None} | given))

    assert await run_jobs_command(settings, args()) == 0
    out = capsys.readouterr().out
    assert "dead 2" in out and "done 1" in out and "--dead" in out
    assert await run_jobs_command(settings, args(dead=True)) == 0
    out = capsys.readouterr().out
    assert f"#{first.id}  his.admit  尝试 12 次" in out and "HIS 一直不可用" in out and "errcode 40003" in out
    assert await run_jobs_command(settings, args(retry=first.id)) == 0
    assert f"任务 #{first.id}（his.admit）已重新排队" in capsys.readouterr().out
    assert await run_jobs_command(settings, args(json=True)) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["counts"] == {"pending": 1, "running": 0, "done": 1, "dead": 1}
    assert [j["kind"] for j in report["dead"]] == ["probe.cs_message"]
    assert await run_jobs_command(settings, args(retry_all_dead=True)) == 0
    assert "已将 1 个失败任务重新排队" in capsys.readouterr().out


def test_the_jobs_command_runs_from_the_command_line(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")} | {"DATA_DIR": str(tmp_path)}
    run = [sys.executable, "app.py"]
    assert subprocess.run([*run, "migrate"], cwd=ROOT, env=env, capture_output=True, timeout=120).returncode == 0
    listed = subprocess.run([*run, "jobs", "--dead"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "任务统计: pending 0 · running 0 · done 0 · dead 0" in listed.stdout and "没有失败" in listed.stdout
    missing = subprocess.run([*run, "jobs", "--retry", "42"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode != 0 and "未找到该任务" in missing.stderr


async def _aged(kind: str, key: str, state: str, days: float) -> OutboxJob:
    """A job last touched `days` ago (updated_at is set on every save, so it is moved with an UPDATE)."""
    job = await OutboxJob.create(kind=kind, dedupe_key=key, payload={}, state=state, next_attempt_at=datetime.now(UTC))
    await OutboxJob.filter(id=job.id).update(updated_at=datetime.now(UTC) - timedelta(days=days))
    return job


async def test_old_finished_jobs_are_purged_and_nothing_else(client):
    old_done = await _aged("probe.cs_message", "purge:old-done", "done", 9)
    await _aged("probe.cs_message", "purge:new-done", "done", 1)
    await _aged("probe.cs_message", "purge:old-dead", "dead", 30)
    await _aged("probe.cs_message", "purge:old-pending", "pending", 30)
    assert await admin.purge_done(timedelta(days=7)) == 1
    assert not await OutboxJob.filter(id=old_done.id).exists()
    assert sorted(await OutboxJob.filter(dedupe_key__startswith="purge:").values_list("dedupe_key", flat=True)) == \
        ["purge:new-done", "purge:old-dead", "purge:old-pending"]
    # What every dispatcher runs in the background: at once, then every hour.
    await _aged("probe.cs_message", "purge:older-done", "done", 8)
    task = asyncio.create_task(purge_finished(7, every=3600))
    try:
        await eventually(lambda: _gone("purge:older-done"))
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _gone(key: str) -> bool:
    return not await OutboxJob.filter(dedupe_key=key).exists()


async def test_the_jobs_command_purges_finished_jobs(settings):
    await db.open_db(settings)
    try:
        await _aged("probe.cs_message", "purge:cli-9", "done", 9)
        await _aged("probe.cs_message", "purge:cli-4", "done", 4)
    finally:
        await db.close_db()
    code, out, err = await run_app_cli(settings, "jobs", "--purge-done", "--older-than", "3", "--json")
    assert code == 0, err
    assert json.loads(out) == {"purged": 2}
    code, out, err = await run_app_cli(settings, "jobs", "--purge-done", "--older-than", "-1")
    assert code == 2 and "不小于 0" in err


async def test_metrics_show_the_outbox_queue(client):
    await _aged("probe.cs_message", "metrics:dead", "dead", 1)
    waiting = await OutboxJob.create(kind="probe.cs_message", dedupe_key="metrics:waiting", payload={},
                                     next_attempt_at=datetime.now(UTC) - timedelta(minutes=5))
    assert waiting.state == "pending"
    text = await (await client.get("/metrics")).text()
    assert 'outbox_jobs{state="pending"} 1.0' in text and 'outbox_jobs{state="dead"} 1.0' in text
    lag = next(float(line.split()[1]) for line in text.splitlines() if line.startswith("outbox_oldest_due_seconds "))
    assert 299 < lag < 400
