"""Referral test helpers other tests reuse: put a patient on the platform, publish reserved beds, and drive a
referral to any state, either through the real app (`Desk`) or through the domain with demo principals.

Conventions: institutions and departments are named by their seed codes ("DONGGUAN", ("SUBEI", "CARD")); the
demo staff are addressed as (institution code, role); referral ids are the public UUID strings the API returns.
"""

from __future__ import annotations

import itertools
from datetime import date, timedelta

from accounts.principal import Principal, load_principal
from appkeys import CIPHER
from directory.seed import INSTITUTIONS, demo_openid
from models import (
    CapacityDay,
    Department,
    Institution,
    Patient,
    PatientBinding,
    Referral,
    Role,
    Staff,
    WeChatAccount,
)
from models.accounts import Relation
from referrals import commands
from referrals.state_machine import Status
from security.crypto import PersonalDataCipher
from security.idcard import make_id_number
from tests.support import bearer, login, login_code, login_demo, seeded
from timeutil import china_today

INSTITUTION_CODES = [row[0] for row in INSTITUTIONS]
# The roles every demo institution has one person in (the consortium office sits in the lead hospital only).
STAFF_ROLES = [role.value for role in Role if role != Role.CONSORTIUM_ADMIN]

# A referral that can be submitted as it is: a coded diagnosis, a chief complaint and a reason.
CLINICAL = {
    "diagnoses": [{"code": "I20.0", "name": "不稳定型心绞痛"}],
    "chief_complaint": "反复胸闷胸痛1周，加重1天",
    "present_illness": "1周前活动后出现胸闷，休息可缓解，1天前静息时发作",
    "past_history": "高血压病史10年",
    "allergies": "否认药物过敏史",
    "treatment": "阿司匹林、硝酸甘油",
    "referral_reason": "需上级医院行冠脉造影评估",
    "precautions": "途中注意监测血压",
}

RETURN_SUMMARY = {"diagnosis": "冠状动脉粥样硬化性心脏病", "treatment": "PCI 术后，病情稳定",
                  "recommendations": "回社区继续双抗治疗，1个月后复查", "mrn": "ZY000123"}

_patient_seq = itertools.count(1)


def tomorrow() -> date:
    """The first day a target approver may book (today in China would also do, tomorrow never races midnight)."""
    return china_today() + timedelta(days=1)


def clinical(**overrides) -> dict:
    return CLINICAL | overrides


async def institution(code: str) -> Institution:
    return await Institution.get(code=code)


async def department(code: str, dept_code: str) -> Department:
    return await Department.get(institution__code=code, code=dept_code)


async def open_beds(code: str, dept_code: str, day: date, capacity: int) -> CapacityDay:
    """Publish `capacity` reserved beds for the department on `day` (directly, as the admin's PUT would)."""
    dept = await department(code, dept_code)
    row, created = await CapacityDay.get_or_create(department_id=dept.id, day=day, defaults={"capacity": capacity})
    if not created:
        row.capacity = capacity
        await row.save(update_fields=["capacity"])
    return row


async def beds(code: str, dept_code: str, day: date) -> CapacityDay | None:
    dept = await department(code, dept_code)
    return await CapacityDay.get_or_none(department_id=dept.id, day=day)


# ------------------------------------------------------------------------------------------- patients

async def his_people(client, code: str) -> list[dict]:
    """The patients the institution's simulated HIS holds (MRN, card code, name, ID number)."""
    resp = await client.get(f"/his-sim/{code}/_patients")
    assert resp.status == 200, await resp.text()
    return (await resp.json())["items"]


async def scan_in(client, session: dict, code: str, index: int = 0) -> dict:
    """A doctor of `code` scans the MRN of one of their HIS's inpatients; returns the scan reply
    (`patient.id` is the platform patient, `prefill` the referral's clinical block) plus the HIS `person`."""
    person = [p for p in await his_people(client, code) if p["open_encounter"]][index]
    resp = await client.post("/api/v1/scan", json={"content": person["mrn"]}, headers=bearer(session))
    assert resp.status == 200, await resp.text()
    return (await resp.json()) | {"person": person}


async def make_patient(cipher: PersonalDataCipher, name: str = "周明华", *, seq: int | None = None) -> Patient:
    """A platform patient written directly (each call a new ID number), for tests that need many."""
    n = seq if seq is not None else next(_patient_seq)
    id_number = make_id_number("321002", date(1960, 1, 1) + timedelta(days=n), n % 999 + 1)
    return await Patient.create(name=name, id_number_enc=cipher.encrypt(id_number, "id_number"),
                                id_number_hash=cipher.lookup_hash("id_number", id_number), gender="male",
                                birth_date=date(1960, 1, 1) + timedelta(days=n),
                                phone_enc=cipher.encrypt("13812345678", "phone"),
                                phone_hash=cipher.lookup_hash("phone", "13812345678"))


async def bind_patient(client, openid: str, name: str, id_number: str) -> dict:
    """The patient binds their WeChat account by real name; returns the session."""
    resp = await client.post("/api/v1/auth/bind-patient", json={
        "code": await login_code(client, openid), "name": name, "id_number": id_number, "phone": "13812345678",
        "relation": "self"})
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def patient_account(patient: Patient, openid: str) -> WeChatAccount:
    """A WeChat account bound to `patient` (directly; the binding API is tested in test_auth)."""
    account = await WeChatAccount.create(openid=openid)
    await PatientBinding.create(account=account, patient=patient, relation=Relation.SELF)
    return account


async def add_staff(code: str, role: str, openid: str, name: str = "孙同事") -> Staff:
    """A second staff member of `code` with `role` (the demo has one per role), bound to `openid`."""
    inst = await institution(code)
    staff = await Staff.create(institution=inst, name=name, roles=[role], title="")
    await WeChatAccount.create(openid=openid, staff=staff)
    return staff


# ----------------------------------------------------------------------------------- domain principals

async def demo_principal(code: str, role: str) -> Principal:
    return await load_principal(await WeChatAccount.get(openid=demo_openid(code, role)))


async def demo_principals() -> dict[tuple[str, str], Principal]:
    """Every seeded staff member as a Principal, keyed by (institution code, role)."""
    return {(code, role): await demo_principal(code, role) for code in INSTITUTION_CODES for role in STAFF_ROLES}


async def account_principal(openid: str) -> Principal:
    return await load_principal(await WeChatAccount.get(openid=openid))


# ------------------------------------------------------------------------------------------- HTTP desk

class Desk:
    """The referral API as the demo staff use it: sessions are logged in once and reused."""

    def __init__(self, client) -> None:
        self.client = client
        self.app = client.server.app
        self._sessions: dict[str, dict] = {}

    @classmethod
    async def open(cls, client) -> Desk:
        await seeded(client)
        return cls(client)

    @property
    def cipher(self) -> PersonalDataCipher:
        return self.app[CIPHER]

    async def session(self, code: str, role: str = "doctor") -> dict:
        key = f"{code}:{role}"
        if key not in self._sessions:
            self._sessions[key] = await login_demo(self.client, code, role)
        return self._sessions[key]

    async def session_of(self, openid: str) -> dict:
        if openid not in self._sessions:
            self._sessions[openid] = await login(self.client, openid)
        return self._sessions[openid]

    async def headers(self, who: tuple[str, str] | str, key: str | None = None) -> dict:
        session = await (self.session_of(who) if isinstance(who, str) else self.session(*who))
        return bearer(session) | ({"Idempotency-Key": key} if key else {})

    async def create(self, source: str, patient_id: str, target: str = "SUBEI", dept: str = "CARD", *,
                     submit: bool = False, key: str | None = None, who: tuple[str, str] | str | None = None,
                     **body):
        """POST /referrals as the source's doctor (or `who`); returns the raw response."""
        dept_row = await department(target, dept)
        payload = {"patient_id": str(patient_id), "target_institution_id": str((await institution(target)).public_id),
                   "target_department_id": str(dept_row.public_id), "clinical": CLINICAL, "submit": submit} | body
        return await self.client.post("/api/v1/referrals", json=payload,
                                      headers=await self.headers(who or (source, "doctor"), key))

    async def post(self, who: tuple[str, str] | str, referral_id: str, action: str, body: dict | None = None,
                   key: str | None = None):
        return await self.client.post(f"/api/v1/referrals/{referral_id}/{action}", json=body or {},
                                      headers=await self.headers(who, key))

    async def get(self, who: tuple[str, str] | str, path: str, **params):
        return await self.client.get(path, params=params, headers=await self.headers(who))

    async def detail(self, who: tuple[str, str] | str, referral_id: str) -> dict:
        resp = await self.get(who, f"/api/v1/referrals/{referral_id}")
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def ok(self, resp, status: int = 200) -> dict:
        assert resp.status == status, await resp.text()
        return await resp.json()

    async def publish_beds(self, code: str, dept_code: str, day: date, capacity: int) -> dict:
        """The institution's approver publishes `capacity` reserved beds for `day` (PUT .../capacity)."""
        dept = await department(code, dept_code)
        resp = await self.client.put(f"/api/v1/departments/{dept.public_id}/capacity",
                                     json={"days": [{"date": day.isoformat(), "capacity": capacity}]},
                                     headers=await self.headers((code, "approver")))
        return (await self.ok(resp))["days"][0]

    async def beds(self, code: str, dept_code: str, day: date) -> dict:
        """GET .../capacity for one day: {date, capacity, booked, available}."""
        dept = await department(code, dept_code)
        resp = await self.get((code, "approver"), f"/api/v1/departments/{dept.public_id}/capacity",
                              **{"from": day.isoformat(), "to": day.isoformat()})
        return (await self.ok(resp))["days"][0]

    async def approve_target(self, target: str, referral_id: str, *, day: date | None = None,
                             dept: str | None = None, ward: str = "", bed: str = "",
                             who: tuple[str, str] | str | None = None, key: str | None = None, **body):
        """The target's approver accepts and books `day` (default tomorrow) in `dept` (default the referral's)."""
        admission = {"date": (day or tomorrow()).isoformat(), "ward": ward, "bed": bed}
        if dept is not None:
            admission["department_id"] = str((await department(target, dept)).public_id)
        return await self.post(who or (target, "approver"), referral_id, "approve", {"admission": admission} | body,
                               key=key)

    async def drive(self, to: Status, *, source: str = "DONGGUAN", target: str = "SUBEI", dept: str = "CARD",
                    patient_id: str | None = None, day: date | None = None) -> dict:
        """Create a referral from `source` to `target`/`dept` and walk it to `to` by the paper's path (approvals as
        the policies require, a bed booked on `day`, published if none is free); returns its detail as the referrer
        sees it."""
        if patient_id is None:
            patient_id = str((await make_patient(self.cipher)).public_id)
        referrer = (source, "doctor")
        if to is Status.CANCELLED:
            body = await self.ok(await self.create(source, patient_id, target, dept), 201)
            return await self.ok(await self.post(referrer, body["id"], "cancel"))
        body = await self.ok(await self.create(source, patient_id, target, dept, submit=to is not Status.DRAFT), 201)
        rid = body["id"]
        if to is Status.DRAFT:
            return body
        if body["status"] == Status.PENDING_SOURCE:
            if to is Status.PENDING_SOURCE:
                return body
            if to is Status.REJECTED:
                return await self.ok(await self.post((source, "approver"), rid, "reject",
                                                     {"reason_code": "not_indicated"}))
            body = await self.ok(await self.post((source, "approver"), rid, "approve"))
        assert to is not Status.PENDING_SOURCE, f"{source} → {target} skips the source approval"
        if to in (Status.PENDING_TARGET, Status.REJECTED):
            if to is Status.REJECTED:
                return await self.ok(await self.post((target, "approver"), rid, "reject", {"reason_code": "no_beds"}))
            return body
        free = await self.beds(target, dept, day or tomorrow())
        if free["available"] == 0:
            await self.publish_beds(target, dept, day or tomorrow(), free["booked"] + 5)
        body = await self.ok(await self.approve_target(target, rid, day=day))
        if to is Status.SCHEDULED:
            return body
        referral = await Referral.get(public_id=rid)
        if to is Status.EXPIRED:
            await commands.expire(referral.id)
            return await self.detail(referrer, rid)
        await commands.check_in(await demo_principal(target, "admission_clerk"), referral.id)
        if to is Status.ADMITTED:
            return await self.detail(referrer, rid)
        assert to is Status.COMPLETED, to
        return await self.ok(await self.post((target, "doctor"), rid, "complete", {"summary": RETURN_SUMMARY}))
