"""The whole HIS loop against both simulator personalities, on both backends: a Chinese HIS front-end processor
(no credentials, it assigns MRNs and certificate numbers) and a generic FHIR server (OAuth2 client credentials,
no business identifiers, 429 past a quota). Scan, accept, certificate, orders, reports, reschedule, cancel; then a
token that expires mid-run and a burst of 429s: nothing lost, nothing duplicated, every job done."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from app import create_app
from appkeys import HIS_SIMULATOR
from his import profile
from his.jobs import ADMIT, UPDATE_ADMISSION
from his.simulator import SimulatorState
from his.simulator.generic import GenericPersonality
from models import HisSync, Institution, OutboxJob, PatientIdentifier, Referral, ReferralOrder
from outbox import run_due_jobs
from outbox.dispatcher import DispatcherConfig
from referrals.state_machine import Status
from tests.referral_support import Desk, scan_in, tomorrow
from tests.test_outbox import eventually

FAST = DispatcherConfig(poll=0.05, lease=10.0, concurrency=4, max_attempts=5, backoff=0.05, backoff_max=10.0)
CLIENT_ID, CLIENT_SECRET = "referral-cloud", "s3cret-client-secret-value"
HIS_KINDS = [ADMIT, UPDATE_ADMISSION, "his.place_order"]


async def make_generic(client, code: str, **personality) -> GenericPersonality:
    """`code`'s simulated HIS becomes a generic FHIR server, and its admin points the platform at it."""
    desk = Desk(client)
    resp = await client.put(f"/his-sim/{code}/_personality", json={
        "kind": "generic", "auth": "client_credentials", "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET} | personality)
    assert resp.status == 200, await resp.text()
    state: SimulatorState = client.server.app[HIS_SIMULATOR]
    institution = await Institution.get(code=code)
    resp = await client.put(f"/api/v1/admin/institutions/{institution.public_id}/his-connection",
                            headers=await desk.headers((code, "admin")),
                            json={"auth": "client_credentials", "token_url": state.token_url(code),
                                  "client_id": CLIENT_ID, "secret": CLIENT_SECRET, "scope": "system/*.*",
                                  "identifiers": "platform"})
    assert resp.status == 200, await resp.text()
    return state.personalities[code]


def his_rows(app, code: str, resource_type: str, system: str, value: str) -> list[dict]:
    return [r for r in app[HIS_SIMULATOR].store(code).all(resource_type)
            if any(i.get("system") == system and i.get("value") == value for i in r.get("identifier") or [])]


async def his_jobs_done() -> bool:
    states = {job.state for job in await OutboxJob.filter(kind__in=HIS_KINDS)}
    return states == {"done"}


@pytest.mark.parametrize("personality", ["his", "generic"])
async def test_the_whole_loop_against_either_personality(client, personality, caplog):
    caplog.set_level("DEBUG")
    app = client.server.app
    app[HIS_SIMULATOR].report_delay = 0
    desk = await Desk.open(client)
    if personality == "generic":
        source, target = await make_generic(client, "DONGGUAN"), await make_generic(client, "SUBEI")

    # Scan at the source's HIS (its seeded records carry MRNs) and refer up.
    scanned = await scan_in(client, await desk.session("DONGGUAN", "doctor"), "DONGGUAN")
    assert scanned["prefill"]["diagnoses"], scanned
    body = await desk.drive(Status.SCHEDULED, patient_id=scanned["patient"]["id"])
    referral = await Referral.get(public_id=body["id"])

    # Acceptance: registration at the target and the certificate, in one job.
    await run_due_jobs(app, FAST)
    referral = await Referral.get(id=referral.id)
    assert referral.his_sync == HisSync.DONE
    key = await PatientIdentifier.get(patient_id=referral.patient_id, institution__code="SUBEI", system="mrn")
    id_number = scanned["person"]["id_number"]
    [his_patient] = his_rows(app, "SUBEI", "Patient", profile.ID_NUMBER_SYSTEM, id_number)
    [encounter] = his_rows(app, "SUBEI", "Encounter", profile.REFERRAL_SYSTEM, referral.code)
    numbers = [i["value"] for i in encounter["identifier"] if i["system"] == profile.CERTIFICATE_SYSTEM]
    assert numbers == [referral.admission_certificate_no]
    if personality == "generic":
        # The server assigned nothing: the key is its logical id, the number the platform's.
        assert key.value == f"Patient/{his_patient['id']}"
        assert not any(i["system"] == profile.MRN_SYSTEM for i in his_patient["identifier"])
        assert referral.admission_certificate_no == profile.platform_certificate_number(referral.code)
    else:
        assert [key.value] == [i["value"] for i in his_patient["identifier"] if i["system"] == profile.MRN_SYSTEM]
        number = referral.admission_certificate_no
        assert number.startswith("ZY") and number != profile.platform_certificate_number(referral.code)

    # An order at the target and its report.
    headers = await desk.headers(("DONGGUAN", "doctor"))
    resp = await client.post(f"/api/v1/referrals/{body['id']}/orders", headers=headers,
                             json={"kind": "lab", "code": "LAB-TNI", "name": "肌钙蛋白I"})
    assert resp.status == 202, await resp.text()
    order = await resp.json()
    await run_due_jobs(app, FAST)
    assert (await ReferralOrder.get(public_id=order["id"])).state == "placed"
    assert len(his_rows(app, "SUBEI", "ServiceRequest", profile.ORDER_SYSTEM, order["id"])) == 1
    resp = await client.get(f"/api/v1/referrals/{body['id']}/reports", headers=headers)
    assert resp.status == 200, await resp.text()
    assert [r["order_id"] for r in (await resp.json())["items"]] == [order["id"]]

    # Reschedule, then cancel: the Encounter follows, keeping its certificate number.
    later = tomorrow() + timedelta(days=2)
    await desk.publish_beds("SUBEI", "CARD", later, 1)
    await desk.ok(await desk.post(("SUBEI", "approver"), body["id"], "reschedule",
                                  {"admission": {"date": later.isoformat()}}))
    await run_due_jobs(app, FAST)
    [encounter] = his_rows(app, "SUBEI", "Encounter", profile.REFERRAL_SYSTEM, referral.code)
    assert encounter["period"] == {"start": later.isoformat()} and encounter["status"] == "planned"
    await desk.ok(await desk.post(("DONGGUAN", "doctor"), body["id"], "cancel"))
    await run_due_jobs(app, FAST)
    [encounter] = his_rows(app, "SUBEI", "Encounter", profile.REFERRAL_SYSTEM, referral.code)
    assert encounter["status"] == "cancelled"
    assert [i["value"] for i in encounter["identifier"] if i["system"] == profile.CERTIFICATE_SYSTEM] == numbers

    assert await his_jobs_done()
    assert len(his_rows(app, "SUBEI", "Patient", profile.ID_NUMBER_SYSTEM, id_number)) == 1
    if personality == "generic":
        # Every call carried a token; one token per institution served the whole loop.
        assert (source.refused, target.refused) == (0, 0)
        assert (source.token_requests, target.token_requests) == (1, 1)
        # Neither the client secret nor a token ever reaches a log line.
        for secret in [CLIENT_SECRET, *source.tokens, *target.tokens]:
            assert secret not in caplog.text


async def test_a_token_that_expires_mid_run_is_renewed_once_and_nothing_is_lost(client):
    app = client.server.app
    desk = await Desk.open(client)
    target = await make_generic(client, "SUBEI")
    body = await desk.drive(Status.SCHEDULED)
    await run_due_jobs(app, FAST)
    assert (await Referral.get(public_id=body["id"])).his_sync == HisSync.DONE
    assert target.token_requests == 1

    # The server forgets every token (expiry, restart): the next call is refused once, renewed, and goes through.
    assert (await (await client.delete("/his-sim/SUBEI/_tokens")).json())["expired"] == 1
    resp = await client.post(f"/api/v1/referrals/{body['id']}/orders", headers=await desk.headers(
        ("DONGGUAN", "doctor")), json={"kind": "exam", "code": "CT-HEAD", "name": "头颅CT"})
    order = await resp.json()
    await run_due_jobs(app, FAST)
    assert (await ReferralOrder.get(public_id=order["id"])).state == "placed"
    assert (target.refused, target.token_requests) == (1, 2)
    job = await OutboxJob.get(kind="his.place_order")
    assert (job.state, job.attempts) == ("done", 1)
    assert len(his_rows(app, "SUBEI", "ServiceRequest", profile.ORDER_SYSTEM, order["id"])) == 1


async def test_refused_credentials_keep_jobs_waiting_instead_of_killing_them(client):
    app = client.server.app
    desk = await Desk.open(client)
    await make_generic(client, "SUBEI")
    # The token endpoint's client secret was changed at the hospital, and nobody told us.
    app[HIS_SIMULATOR].personalities["SUBEI"].client_secret = "rotated-at-the-hospital"
    body = await desk.drive(Status.SCHEDULED)
    await run_due_jobs(app, replace(FAST, backoff=30.0))
    job = await OutboxJob.get(kind=ADMIT)
    assert job.state == "pending" and job.attempts == 1
    assert "invalid_client" in job.last_error and "HIS 连接配置" in job.last_error
    assert (await Referral.get(public_id=body["id"])).his_sync == HisSync.PENDING


@pytest.fixture
async def dispatching(aiohttp_client, settings):
    """The app with its embedded dispatcher on; a Retry-After up to 10 s is honoured as asked."""
    fast = replace(settings, embedded_dispatcher=True, outbox_poll=0.1, outbox_backoff=0.05,
                   outbox_backoff_max=10.0, outbox_max_attempts=3, his_timeout=2.0)
    return await aiohttp_client(create_app(fast))


async def test_a_429_burst_delays_the_jobs_without_using_up_their_attempts(client):
    app = client.server.app
    desk = await Desk.open(client)
    await make_generic(client, "SUBEI")
    body = await desk.drive(Status.PENDING_TARGET)
    resp = await client.post(f"/api/v1/referrals/{body['id']}/orders", headers=await desk.headers(
        ("DONGGUAN", "doctor")), json={"kind": "lab", "code": "LAB-CBC", "name": "血常规"})
    order = await resp.json()
    # The rate limiter answers every POST with 429 for a while: first with seconds, then with an HTTP-date.
    for retry_after_date in (False, True):
        resp = await client.post("/his-sim/_faults", json={
            "institution": "SUBEI", "method": "POST", "kind": "throttle", "count": 1, "retry_after": 2,
            "retry_after_date": retry_after_date})
        assert resp.status == 201
        before = datetime.now(UTC)
        await run_due_jobs(app, replace(FAST, max_attempts=1))
        job = await OutboxJob.get(kind="his.place_order")
        placed = await ReferralOrder.get(public_id=order["id"])
        assert (job.state, job.attempts, placed.state) == ("pending", 0, "pending")
        assert job.last_error == "目标医院 HIS 繁忙，稍后自动重试"  # not the limiter's JSON
        wait = (job.next_attempt_at - before).total_seconds()
        assert 1.0 <= wait <= 5.0, wait  # 2 s (a date: rounded up to the second), spread by up to half
        await OutboxJob.filter(id=job.id).update(next_attempt_at=datetime.now(UTC))
    await run_due_jobs(app, replace(FAST, max_attempts=1))
    assert (await ReferralOrder.get(public_id=order["id"])).state == "placed"
    assert len(his_rows(app, "SUBEI", "ServiceRequest", profile.ORDER_SYSTEM, order["id"])) == 1


async def test_a_quota_burst_against_the_whole_flow_ends_with_every_job_done_once(dispatching):
    app = dispatching.server.app
    desk = await Desk.open(dispatching)
    target = await make_generic(dispatching, "SUBEI", quota=5, window=1.0, retry_after_date=True)
    bodies = [await desk.drive(Status.SCHEDULED) for _ in range(3)]
    for body in bodies:
        resp = await dispatching.post(f"/api/v1/referrals/{body['id']}/orders", headers=await desk.headers(
            ("DONGGUAN", "doctor")), json={"kind": "lab", "code": "LAB-CBC", "name": "血常规"})
        assert resp.status == 202
    await eventually(his_jobs_done, timeout=60, interval=0.2)
    assert target.throttled > 0
    for body in bodies:
        referral = await Referral.get(public_id=body["id"])
        assert referral.his_sync == HisSync.DONE
        assert len(his_rows(app, "SUBEI", "Encounter", profile.REFERRAL_SYSTEM, referral.code)) == 1
    assert await ReferralOrder.filter(state="placed").count() == 3
    assert len(app[HIS_SIMULATOR].store("SUBEI").all("ServiceRequest")) == 3
    assert {job.attempts for job in await OutboxJob.filter(kind__in=HIS_KINDS)} <= {1, 2, 3}


async def test_scan_against_a_busy_his_says_so_in_chinese(client):
    desk = await Desk.open(client)
    await client.post("/his-sim/_faults", json={"institution": "DONGGUAN", "kind": "throttle", "count": 5,
                                               "retry_after": 30})
    resp = await client.post("/api/v1/scan", json={"content": "00012345"},
                             headers=await desk.headers(("DONGGUAN", "doctor")))
    error = (await resp.json())["error"]
    assert resp.status == 503 and error["code"] == "HIS_BUSY"
    assert error["message"] == "医院信息系统（HIS）繁忙，请稍后再试" and "rate limit" not in await resp.text()
