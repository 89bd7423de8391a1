"""Orders placed at the target HIS, reports read back from it, and attachments — in a referral's context."""

from __future__ import annotations

import io

import aiohttp

from appkeys import HIS_SIMULATOR
from models import AuditEvent, Institution, OutboxJob, ReferralOrder
from outbox.registry import HANDLERS, JobContext
from referrals.state_machine import Status
from tests.referral_support import Desk
from tests.support import bearer, login_demo

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


async def _pending_at_target(client) -> tuple[dict, dict]:
    """A DONGGUAN doctor's referral up to SUBEI, approved at the source; returns (referral, doctor session)."""
    desk = await Desk.open(client)
    referral = await desk.drive(Status.PENDING_TARGET)
    return referral, await desk.session("DONGGUAN", "doctor")


async def _run_jobs(app, kind: str) -> None:
    for job in await OutboxJob.filter(kind=kind, state="pending"):
        await HANDLERS[kind](JobContext(app, job))
        await OutboxJob.filter(id=job.id).update(state="done")


async def test_referrer_orders_a_lab_test_and_reads_its_report(client, app):
    referral, doctor = await _pending_at_target(client)
    app[HIS_SIMULATOR].report_delay = 0
    resp = await client.post(f"/api/v1/referrals/{referral['id']}/orders", headers=bearer(doctor),
                             json={"kind": "lab", "code": "LAB-TNI", "name": "肌钙蛋白I", "note": "急查"})
    assert resp.status == 202, await resp.text()
    order = await resp.json()
    assert (order["state"], order["state_name"]) == ("pending", "等待送达 HIS")

    await _run_jobs(app, "his.place_order")
    listed = await (await client.get(f"/api/v1/referrals/{referral['id']}/orders", headers=bearer(doctor))).json()
    assert [(o["state"], o["state_name"]) for o in listed["items"]] == [("placed", "已送达 HIS")]
    assert listed["items"][0]["his_order_id"]

    resp = await client.get(f"/api/v1/referrals/{referral['id']}/reports", headers=bearer(doctor))
    assert resp.status == 200, await resp.text()
    reports = (await resp.json())["items"]
    assert [r["order_name"] for r in reports] == ["肌钙蛋白I"]
    assert reports[0]["order_id"] == order["id"]
    # The source's doctor read SUBEI's HIS: a cross-institution read, audited without personal data.
    [event] = await AuditEvent.filter(action="his.cross_institution_read")
    assert event.detail == {"his": "SUBEI", "purpose": "reports", "referral": referral["code"]}
    assert event.institution_id == (await Institution.get(code="DONGGUAN")).id
    # The target's own doctor reads its own HIS: nothing cross-institution to audit.
    target_doctor = await login_demo(client, "SUBEI", "doctor")
    resp = await client.get(f"/api/v1/referrals/{referral['id']}/reports", headers=bearer(target_doctor))
    assert resp.status == 200
    assert await AuditEvent.filter(action="his.cross_institution_read").count() == 1

    # Running the job again (a retry) places nothing twice.
    job = await OutboxJob.get(kind="his.place_order")
    await HANDLERS["his.place_order"](JobContext(app, job))
    assert await ReferralOrder.filter(state="placed").count() == 1


async def test_only_the_referrer_orders_and_outsiders_see_nothing(client):
    referral, _ = await _pending_at_target(client)
    body = {"kind": "exam", "code": "CT-HEAD", "name": "头颅CT"}
    target_doctor = await login_demo(client, "SUBEI", "doctor")
    resp = await client.post(f"/api/v1/referrals/{referral['id']}/orders", headers=bearer(target_doctor), json=body)
    assert resp.status == 403
    outsider = await login_demo(client, "WENHE", "doctor")
    resp = await client.post(f"/api/v1/referrals/{referral['id']}/orders", headers=bearer(outsider), json=body)
    assert resp.status == 404
    resp = await client.get(f"/api/v1/referrals/{referral['id']}/reports", headers=bearer(outsider))
    assert resp.status == 404
    assert (await client.get(f"/api/v1/referrals/{referral['id']}/reports",
                             headers=bearer(target_doctor))).status == 200


async def _upload(client, session, referral_id: str, data: bytes, filename: str = "心电图.png"):
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(data), filename=filename, content_type="application/octet-stream")
    return await client.post(f"/api/v1/referrals/{referral_id}/attachments", data=form, headers=bearer(session))


async def test_attachments_are_checked_stored_and_scoped(client):
    referral, doctor = await _pending_at_target(client)
    resp = await _upload(client, doctor, referral["id"], PNG)
    assert resp.status == 201, await resp.text()
    attachment = await resp.json()
    assert attachment["content_type"] == "image/png" and attachment["filename"] == "心电图.png"

    target_approver = await login_demo(client, "SUBEI", "approver")
    listed = await (await client.get(f"/api/v1/referrals/{referral['id']}/attachments",
                                     headers=bearer(target_approver))).json()
    assert [a["id"] for a in listed["items"]] == [attachment["id"]]
    resp = await client.get(attachment["url"], headers=bearer(target_approver))
    assert resp.status == 200 and await resp.read() == PNG
    assert resp.headers["Content-Type"] == "image/png"

    assert (await _upload(client, doctor, referral["id"], b"MZ\x90\x00 not an image", "x.exe")).status == 415
    big = b"%PDF-" + b"0" * (10 * 1024 * 1024)
    assert (await _upload(client, doctor, referral["id"], big, "big.pdf")).status == 413
    outsider = await login_demo(client, "WENHE", "doctor")
    assert (await client.get(attachment["url"], headers=bearer(outsider))).status == 404
    assert (await _upload(client, outsider, referral["id"], PNG)).status == 404


async def test_malformed_multipart_bodies_are_400_not_500(client):
    referral, doctor = await _pending_at_target(client)
    url = f"/api/v1/referrals/{referral['id']}/attachments"

    def part(header: bytes) -> bytes:
        return b'--B\r\nContent-Disposition: form-data; name="file"; ' + header + b"\r\n\r\n" + PNG + b"\r\n--B--\r\n"

    cases = [
        ("multipart/form-data", b"no boundary"),
        ("multipart/form-data; boundary=B", part(b'filename="a\x01.png"')),
        ("multipart/form-data; boundary=B", part(b'filename="' + b"a" * 9000 + b'.png"')),
    ]
    for content_type, body in cases:
        resp = await client.post(url, data=body, headers=bearer(doctor) | {"Content-Type": content_type})
        assert resp.status == 400, (content_type, await resp.text())
        assert (await resp.json())["error"]["code"] == "MULTIPART_MALFORMED"
    # A long but parseable name is kept, cut to what the column holds.
    resp = await client.post(url, data=part(b'filename="' + b"b" * 5000 + b'.png"'),
                             headers=bearer(doctor) | {"Content-Type": "multipart/form-data; boundary=B"})
    assert resp.status == 201, await resp.text()
    assert (await resp.json())["filename"] == "b" * 200
