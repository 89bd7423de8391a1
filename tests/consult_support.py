"""Consultation and ward-round test helpers: experts in a department's pool, a scanned patient, a request."""

from __future__ import annotations

from datetime import datetime, timedelta

from models import Staff, WeChatAccount
from tests.referral_support import Desk, department, institution, scan_in
from timeutil import CHINA_TZ, utcnow

QUESTION = "患者胸痛反复发作，是否需要上转行冠脉造影？"


async def pool_expert(code: str, dept_code: str, openid: str, name: str = "孙专家") -> Staff:
    """Another expert of `code`'s `dept_code`, bound to `openid`."""
    dept = await department(code, dept_code)
    staff = await Staff.create(institution=await institution(code), department=dept, name=name, roles=["expert"],
                               title="主任医师")
    await WeChatAccount.create(openid=openid, staff=staff)
    return staff


async def scanned_patient(desk: Desk, code: str = "DONGGUAN") -> dict:
    """A doctor of `code` scans one of their inpatients: the scan reply (patient id, pre-fill)."""
    return await scan_in(desk.client, await desk.session(code, "doctor"), code)


async def request_consultation(desk: Desk, *, patient: dict | None = None, source: str = "DONGGUAN",
                               target: str = "SUBEI", dept: str = "CARD", key: str | None = None, **body):
    """POST /consultations to `target`'s `dept` pool as the source's doctor; returns the raw response."""
    patient = patient or await scanned_patient(desk, source)
    payload = {"patient_id": patient["patient"]["id"], "question": QUESTION, "clinical": patient["prefill"],
               "target_institution_id": str((await institution(target)).public_id),
               "target_department_id": str((await department(target, dept)).public_id)} | body
    return await desk.client.post("/api/v1/consultations", json=payload,
                                  headers=await desk.headers((source, "doctor"), key))


async def act(desk: Desk, who, consultation_id: str, action: str, body: dict | None = None, key: str | None = None):
    return await desk.client.post(f"/api/v1/consultations/{consultation_id}/{action}", json=body or {},
                                  headers=await desk.headers(who, key))


async def staff_public_id(openid: str) -> str:
    return str((await Staff.get(account__openid=openid)).public_id)


async def up_candidate(desk: Desk) -> tuple[dict, dict]:
    """A DONGGUAN inpatient (scanned, so known to its HIS) referred up to SUBEI and waiting for approval."""
    patient = await scanned_patient(desk)
    referral = await desk.ok(await desk.create("DONGGUAN", patient["patient"]["id"], submit=True), 201)
    return patient, referral


async def schedule_round(desk: Desk, referral_id: str, who=("SUBEI", "doctor"), *, at: datetime | None = None,
                         **body):
    """POST /ward-rounds as `who` (default SUBEI's doctor), in two hours, with DONGGUAN's doctor taking part."""
    at = at or utcnow() + timedelta(hours=2)
    participants = body.pop("participants", [await staff_public_id("demo_dongguan_doctor")])
    return await desk.client.post("/api/v1/ward-rounds", json={
        "referral_id": referral_id, "scheduled_at": at.astimezone(CHINA_TZ).isoformat(),
        "participant_ids": participants} | body, headers=await desk.headers(who))
