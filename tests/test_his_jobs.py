"""his.admit as an outbox job, against the embedded HIS simulator and its faults: the referral's HIS sync goes
pending → done with the certificate number on the timeline (hash chain intact), survives HIS 500s and
timeouts, goes failed on a rejection, and recovers when an admin retries the dead job."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from tortoise.transactions import in_transaction

from app import create_app
from appkeys import CIPHER, HIS, HIS_SIMULATOR
from his.admission import issue_certificate
from his.jobs import ADMIT, CERTIFICATE_EVENT, UPDATE_ADMISSION, UPDATE_EVENT, record_certificate
from models import HisSync, OutboxJob, Referral, ReferralEvent
from outbox import run_due_jobs
from outbox.dispatcher import DispatcherConfig
from referrals import commands
from referrals.state_machine import Status
from referrals.timeline import SYSTEM_ACTOR, append_event, verify_referral
from tests.referral_support import Desk
from tests.test_outbox import eventually

FAST = DispatcherConfig(poll=0.05, lease=10.0, concurrency=4, max_attempts=5, backoff=0.05, backoff_max=0.2)


@pytest.fixture
async def dispatching(aiohttp_client, settings):
    """The app with its embedded dispatcher on, short backoffs and a short HIS deadline."""
    fast = replace(settings, embedded_dispatcher=True, outbox_poll=0.2, outbox_backoff=0.05, outbox_backoff_max=0.2,
                   outbox_max_attempts=5, his_timeout=0.5)
    return await aiohttp_client(create_app(fast))


async def his_fault(client, **fault) -> None:
    resp = await client.post("/his-sim/_faults", json={"institution": "SUBEI", "method": "POST"} | fault)
    assert resp.status in (200, 201), await resp.text()


async def admit_job(referral_id: int) -> OutboxJob:
    return await OutboxJob.get(kind=ADMIT, dedupe_key=f"his-admit:{referral_id}")


async def job_done(referral_id: int) -> OutboxJob | None:
    job = await admit_job(referral_id)
    return job if job.state == "done" else None  # its done mark follows the referral's update by a moment


async def synced(referral_id: int, state: str):
    referral = await Referral.get(id=referral_id)
    return referral if referral.his_sync == state else None


async def test_acceptance_issues_the_certificate_and_records_it_on_the_timeline(dispatching):
    desk = await Desk.open(dispatching)
    body = await desk.drive(Status.SCHEDULED)
    assert body["his_sync"] == HisSync.PENDING
    referral = await Referral.get(public_id=body["id"])
    done = await eventually(lambda: synced(referral.id, HisSync.DONE))
    assert done.admission_certificate_no.startswith("ZY")
    detail = await desk.detail(("DONGGUAN", "doctor"), body["id"])
    assert detail["his_sync"] == "done" and detail["admission_certificate_no"] == done.admission_certificate_no
    event = detail["timeline"][-1]
    assert event["action"] == CERTIFICATE_EVENT and event["action_name"] == "HIS 已开具电子住院证"
    assert event["seq"] == detail["version"] == body["version"] + 1
    assert event["data"] == {"admission_certificate_no": done.admission_certificate_no}
    assert done.admission_certificate_no in event["comment"] and event["actor"]["role"] == "system"
    assert event["to_status"] == event["from_status"] == "scheduled"
    check = await desk.ok(await desk.get(("SUBEI", "approver"), f"/api/v1/referrals/{body['id']}/timeline/verify"))
    assert check["valid"] is True
    await eventually(lambda: job_done(referral.id))


async def test_his_500s_and_timeouts_are_retried_until_the_his_recovers(dispatching):
    desk = await Desk.open(dispatching)
    await his_fault(dispatching, kind="error500", count=2)
    await his_fault(dispatching, kind="timeout", count=1, delay=1.0)
    body = await desk.drive(Status.SCHEDULED)
    referral = await Referral.get(public_id=body["id"])
    done = await eventually(lambda: synced(referral.id, HisSync.DONE), timeout=10)
    job = await eventually(lambda: job_done(referral.id))
    # Three failed attempts, then the one that worked; on a loaded machine a slow answer may cost one more
    # (a timeout of its own), never fewer, and never a second certificate.
    assert job.attempts >= 4
    assert await ReferralEvent.filter(referral_id=referral.id, action=CERTIFICATE_EVENT).count() == 1
    assert (await verify_referral(referral.id, done.version)).valid


async def test_a_rejection_is_final_until_an_admin_retries(dispatching):
    desk = await Desk.open(dispatching)
    await his_fault(dispatching, kind="outcome", count=1, status=422, message="科室代码在本院 HIS 中不存在")
    body = await desk.drive(Status.SCHEDULED)
    referral = await Referral.get(public_id=body["id"])
    await eventually(lambda: synced(referral.id, HisSync.FAILED))
    job = await admit_job(referral.id)
    assert job.state == "dead" and job.attempts == 1 and "科室代码在本院 HIS 中不存在" in job.last_error
    detail = await desk.detail(("SUBEI", "approver"), body["id"])
    assert detail["his_sync"] == "failed" and detail["admission_certificate_no"] is None

    # The target's admin sees the dead job and sends it round again once the HIS side is fixed.
    resp = await desk.get(("SUBEI", "admin"), "/api/v1/admin/jobs", state="dead")
    listed = await desk.ok(resp)
    assert [(j["id"], j["kind"], j["referral"]["code"]) for j in listed["items"]] == [
        (str(job.id), ADMIT, referral.code)]
    retried = await desk.ok(await dispatching.post(f"/api/v1/admin/jobs/{job.id}/retry",
                                                  headers=await desk.headers(("SUBEI", "admin"))))
    assert retried["state"] == "pending" and retried["attempts"] == 0
    done = await eventually(lambda: synced(referral.id, HisSync.DONE))
    assert done.admission_certificate_no and await eventually(lambda: job_done(referral.id))


async def test_running_the_job_again_changes_nothing(client):
    app = client.server.app
    desk = await Desk.open(client)
    body = await desk.drive(Status.SCHEDULED)
    referral = await Referral.get(public_id=body["id"])
    await run_due_jobs(app, FAST)
    first = await Referral.get(id=referral.id)
    job = await admit_job(referral.id)
    await OutboxJob.filter(id=job.id).update(state="pending")  # as if the done mark had been lost
    await run_due_jobs(app, FAST)
    again = await Referral.get(id=referral.id)
    assert (again.version, again.admission_certificate_no) == (first.version, first.admission_certificate_no)
    assert await ReferralEvent.filter(referral_id=referral.id, action=CERTIFICATE_EVENT).count() == 1


async def test_a_concurrent_transition_and_the_certificate_event_never_interleave(client, backend):
    await Desk.open(client)
    desk = Desk(client)
    body = await desk.drive(Status.SCHEDULED)
    referral = await Referral.get(public_id=body["id"])
    updated, release = asyncio.Event(), asyncio.Event()

    async def transition() -> None:
        """A check-in that has bumped the version and not yet committed when the job records its event."""
        async with in_transaction():
            current = await Referral.get(id=referral.id)
            await Referral.filter(id=current.id, version=current.version).update(
                version=current.version + 1, status=Status.ADMITTED)
            await append_event(current, seq=current.version + 1, action="check_in", from_status="scheduled",
                               to_status="admitted", actor=SYSTEM_ACTOR)
            updated.set()
            await release.wait()

    other = asyncio.create_task(transition())
    await updated.wait()
    recording = asyncio.create_task(record_certificate(referral.id, "ZY-RACE-1"))
    await asyncio.sleep(0.2)
    release.set()
    await other
    won = await recording
    # PostgreSQL: the job's conditional update waited for the check-in's row lock, then found the version moved:
    # it lost and wrote nothing, and the handler tries again. SQLite has one writer: the job ran after it.
    assert won is (backend == "embedded")
    if not won:
        assert not await ReferralEvent.filter(referral_id=referral.id, action=CERTIFICATE_EVENT).exists()
        assert await record_certificate(referral.id, "ZY-RACE-1") is True
    final = await Referral.get(id=referral.id)
    events = await ReferralEvent.filter(referral_id=referral.id).order_by("seq")
    assert [e.action for e in events][-2:] == ["check_in", CERTIFICATE_EVENT]
    assert events[-1].seq == final.version and final.his_sync == HisSync.DONE
    assert events[-1].to_status == "admitted"  # recorded after the check-in, on top of it
    assert (await verify_referral(referral.id, final.version)).valid


# -- changes after the certificate: cancel, no-show, new date ------------------------------------------------

def his_encounter(app, referral_code: str) -> dict | None:
    """The target HIS's admission Encounter for a referral, as the simulator holds it."""
    found = [e for e in app[HIS_SIMULATOR].store("SUBEI").all("Encounter")
             if any(i.get("value") == referral_code for i in e.get("identifier") or [])]
    assert len(found) <= 1
    return found[0] if found else None


async def certified(client) -> tuple[Desk, dict, Referral]:
    """A scheduled referral whose certificate the target HIS has issued (his.admit ran)."""
    desk = await Desk.open(client)
    body = await desk.drive(Status.SCHEDULED)
    await run_due_jobs(client.server.app, FAST)
    referral = await Referral.get(public_id=body["id"])
    assert referral.his_sync == HisSync.DONE and his_encounter(client.server.app, referral.code)["status"] == "planned"
    return desk, body, referral


async def test_a_cancelled_referral_withdraws_the_certificate_in_the_target_his(client):
    app = client.server.app
    desk, body, referral = await certified(client)
    await desk.ok(await desk.post(("DONGGUAN", "doctor"), body["id"], "cancel", {"comment": "患者转往他院"}))
    await run_due_jobs(app, FAST)
    encounter = his_encounter(app, referral.code)
    assert encounter["status"] == "cancelled" and encounter["meta"]["versionId"] == "2"
    assert referral.admission_certificate_no in [i["value"] for i in encounter["identifier"]]
    detail = await desk.detail(("SUBEI", "approver"), body["id"])
    event = detail["timeline"][-1]
    assert (event["action"], event["action_name"]) == (UPDATE_EVENT, "HIS 电子住院证已同步变更")
    assert event["comment"] == f"目标医院 HIS 已撤销电子住院证 {referral.admission_certificate_no}"
    assert event["data"]["cancelled"] is True and event["to_status"] == "cancelled"
    assert (await verify_referral(referral.id, detail["version"])).valid
    # Running the job again (a lost done mark) neither calls the HIS again nor writes a second event.
    await OutboxJob.filter(kind=UPDATE_ADMISSION).update(state="pending")
    await run_due_jobs(app, FAST)
    assert his_encounter(app, referral.code)["meta"]["versionId"] == "2"
    assert await ReferralEvent.filter(referral_id=referral.id, action=UPDATE_EVENT).count() == 1


async def test_a_new_admission_date_moves_the_his_admission(client):
    app = client.server.app
    desk, body, referral = await certified(client)
    later = referral.admission_date + timedelta(days=2)
    await desk.publish_beds("SUBEI", "CARD", later, 1)
    await desk.ok(await desk.post(("SUBEI", "approver"), body["id"], "reschedule",
                                  {"admission": {"date": later.isoformat()}, "comment": "手术排期调整"}))
    await run_due_jobs(app, FAST)
    encounter = his_encounter(app, referral.code)
    assert encounter["status"] == "planned" and encounter["period"] == {"start": later.isoformat()}
    event = (await desk.detail(("DONGGUAN", "doctor"), body["id"]))["timeline"][-1]
    assert event["action"] == UPDATE_EVENT and f"{later.year}年{later.month}月{later.day}日入院" in event["comment"]


async def settle(app) -> None:
    """Run due jobs a few times over a second: a change job waits (retries) while his.admit is pending."""
    for _ in range(3):
        await run_due_jobs(app, FAST)
        await asyncio.sleep(0.3)


async def test_a_referral_cancelled_before_the_job_ran_gets_no_certificate(client):
    app = client.server.app
    desk = await Desk.open(client)
    body = await desk.drive(Status.SCHEDULED)
    await desk.ok(await desk.post(("DONGGUAN", "doctor"), body["id"], "cancel"))
    referral = await Referral.get(public_id=body["id"])
    await settle(app)
    after = await Referral.get(id=referral.id)
    assert after.his_sync == HisSync.NONE and after.admission_certificate_no == "" and after.version == referral.version
    assert his_encounter(app, referral.code) is None
    assert {j.state for j in await OutboxJob.filter(kind__in=[ADMIT, UPDATE_ADMISSION])} == {"done"}


async def test_the_withdrawal_waits_out_a_his_outage(dispatching):
    app = dispatching.server.app
    desk = await Desk.open(dispatching)
    body = await desk.drive(Status.SCHEDULED)
    referral = await Referral.get(public_id=body["id"])
    await eventually(lambda: synced(referral.id, HisSync.DONE))
    await his_fault(dispatching, kind="error500", count=2, method="PUT")
    await desk.ok(await desk.post(("DONGGUAN", "doctor"), body["id"], "cancel"))
    await eventually(lambda: _cancelled_in_his(app, referral.code), timeout=10)
    job = await eventually(lambda: _update_done(referral.id), timeout=10)
    assert job.attempts >= 2


async def _cancelled_in_his(app, code: str) -> bool:
    encounter = his_encounter(app, code)
    return bool(encounter and encounter["status"] == "cancelled")


async def _update_done(referral_id: int) -> OutboxJob | None:
    job = await OutboxJob.get_or_none(kind=UPDATE_ADMISSION, dedupe_key__startswith=f"his-update:{referral_id}:")
    return job if job is not None and job.state == "done" else None


async def test_a_no_show_withdraws_the_certificate_too(client):
    app = client.server.app
    _, _, referral = await certified(client)
    await commands.expire(referral.id)  # what the slip's no-show timer does
    await run_due_jobs(app, FAST)
    assert his_encounter(app, referral.code)["status"] == "cancelled"
    event = await ReferralEvent.filter(referral_id=referral.id).order_by("-seq").first()
    assert event.action == UPDATE_EVENT and event.to_status == "expired"


async def test_a_certificate_issued_by_a_run_that_died_is_withdrawn_when_the_referral_is_cancelled(client):
    app = client.server.app
    desk = await Desk.open(client)
    body = await desk.drive(Status.SCHEDULED)
    referral = await Referral.get(public_id=body["id"])
    # A first his.admit run got the certificate issued, then its process died before recording it.
    number = await issue_certificate(app[HIS], app[CIPHER], referral)
    assert his_encounter(app, referral.code)["status"] == "planned"
    await desk.ok(await desk.post(("DONGGUAN", "doctor"), body["id"], "cancel"))
    await settle(app)
    encounter = his_encounter(app, referral.code)
    assert encounter["status"] == "cancelled" and number in [i["value"] for i in encounter["identifier"]]
    after = await Referral.get(id=referral.id)
    assert after.his_sync == HisSync.NONE and after.admission_certificate_no == ""


# -- admission and discharge reach the target HIS (issue 10 point 15) -------------------------------------------

async def test_check_in_and_completion_move_the_his_encounter_to_in_progress_then_finished(client):
    from fhir.resources.R4B.encounter import Encounter

    from his import profile
    from tests.referral_support import RETURN_SUMMARY, demo_principal

    app = client.server.app
    desk, body, referral = await certified(client)
    await commands.check_in(await demo_principal("SUBEI", "admission_clerk"), referral.id)
    await run_due_jobs(app, FAST)
    admitted = await Referral.get(id=referral.id)
    encounter = his_encounter(app, referral.code)
    assert encounter["status"] == "in-progress" and encounter["meta"]["versionId"] == "2"
    assert encounter["period"]["start"].endswith("+08:00")
    assert datetime.fromisoformat(encounter["period"]["start"]) == admitted.admitted_at.replace(microsecond=0)
    event = (await desk.detail(("SUBEI", "approver"), body["id"]))["timeline"][-1]
    assert event["action"] == UPDATE_EVENT and event["to_status"] == "admitted"
    assert event["comment"] == f"目标医院 HIS 已登记入院（电子住院证 {referral.admission_certificate_no}）"
    assert event["data"]["encounter_status"] == "in-progress"

    await desk.ok(await desk.post(("SUBEI", "doctor"), body["id"], "complete", {"summary": RETURN_SUMMARY}))
    await run_due_jobs(app, FAST)
    done = await Referral.get(id=referral.id)
    encounter = his_encounter(app, referral.code)
    Encounter.model_validate({k: v for k, v in encounter.items() if k != "meta"})  # still valid FHIR R4
    assert encounter["status"] == "finished" and encounter["meta"]["versionId"] == "3"
    assert datetime.fromisoformat(encounter["period"]["end"]) == done.closed_at.replace(microsecond=0)
    summary = {e["url"]: e["valueString"] for e in encounter["extension"] if e["url"] in profile.DISCHARGE_EXTENSIONS}
    assert summary == {profile.EXT_DISCHARGE_DIAGNOSIS: RETURN_SUMMARY["diagnosis"],
                       profile.EXT_DISCHARGE_TREATMENT: RETURN_SUMMARY["treatment"],
                       profile.EXT_DISCHARGE_RECOMMENDATIONS: RETURN_SUMMARY["recommendations"]}
    assert any(e["url"] == profile.EXT_REFERRAL_REASON for e in encounter["extension"])  # the rest is kept
    detail = await desk.detail(("DONGGUAN", "doctor"), body["id"])
    assert detail["timeline"][-1]["comment"].startswith("目标医院 HIS 已登记出院并收到出院（回转）小结")
    assert (await verify_referral(referral.id, detail["version"])).valid
    # Both jobs again (lost done marks): the HIS is not written again and no event is added.
    await OutboxJob.filter(kind=UPDATE_ADMISSION).update(state="pending")
    await run_due_jobs(app, FAST)
    assert his_encounter(app, referral.code)["meta"]["versionId"] == "3"
    assert await ReferralEvent.filter(referral_id=referral.id, action=UPDATE_EVENT).count() == 2


async def test_a_check_in_before_the_certificate_waits_for_it_then_admits_in_the_his(client):
    app = client.server.app
    desk = await Desk.open(client)
    body = await desk.drive(Status.ADMITTED)  # checked in before his.admit ever ran
    referral = await Referral.get(public_id=body["id"])
    assert referral.his_sync == HisSync.PENDING
    await settle(app)
    assert his_encounter(app, referral.code)["status"] == "in-progress"
    assert {j.state for j in await OutboxJob.filter(kind__in=[ADMIT, UPDATE_ADMISSION])} == {"done"}


async def test_the_discharge_waits_out_a_his_outage(dispatching):
    from tests.referral_support import RETURN_SUMMARY

    app = dispatching.server.app
    desk = await Desk.open(dispatching)
    body = await desk.drive(Status.ADMITTED)
    referral = await Referral.get(public_id=body["id"])
    await eventually(lambda: _his_status(app, referral.code, "in-progress"), timeout=10)
    await his_fault(dispatching, kind="error500", count=2, method="PUT")
    await desk.ok(await desk.post(("SUBEI", "doctor"), body["id"], "complete", {"summary": RETURN_SUMMARY}))
    await eventually(lambda: _his_status(app, referral.code, "finished"), timeout=10)
    jobs = await OutboxJob.filter(kind=UPDATE_ADMISSION, dedupe_key__startswith=f"his-update:{referral.id}:")
    await eventually(lambda: _all_done(jobs), timeout=10)
    assert max(j.attempts for j in await OutboxJob.filter(id__in=[j.id for j in jobs])) >= 2


async def _his_status(app, code: str, status: str) -> bool:
    encounter = his_encounter(app, code)
    return bool(encounter and encounter["status"] == status)


async def _all_done(jobs: list[OutboxJob]) -> bool:
    return all(j.state == "done" for j in await OutboxJob.filter(id__in=[j.id for j in jobs]))
