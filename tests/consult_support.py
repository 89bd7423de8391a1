"""Consultation and ward-round test helpers: experts in a department's pool, a scanned patient, a request."""

from __future__ import annotations

from models import Staff, WeChatAccount
from tests.referral_support import Desk, department, institution, scan_in

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
