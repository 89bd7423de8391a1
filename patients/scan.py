"""A doctor scans a patient's code: resolve it, verify the real name against the HIS master index, record the
patient on the platform if new, and return the pre-fill of a referral (DESIGN §1, issue 3 item 3).

Resolution order
1. the platform's own patient card token (qr.patient_card): the patient is already on the platform; the
   doctor's own HIS is asked by ID number for the pre-fill and to confirm the name;
2. an MRN or HIS card code, asked of the doctor's own HIS (one FHIR search that also tries the text as an
   ID number, with the MRN/card reading winning, see his.fhir);
3. a card code of another member (``<institution code>-<MRN>``, his.profile): only when the doctor's own HIS
   does not know it, and only through the institution the prefix names;
4. an 18-digit ID number: validated (GB 11643) so a typo gets a precise message; a patient the platform
   knows but no HIS here does is returned without a pre-fill.

HIS calls happen outside any database transaction; the write (patient, identifiers, audit) is one short
transaction.
"""

from __future__ import annotations

import logging
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from errors import Conflict, Forbidden, InvalidInput, NotFound
from his import profile
from his.gateway import ClinicalSummary, HisGateway, HisNotFound, PatientRecord
from models import Institution, Patient, PatientIdentifier
from patients.identifiers import link_identifier
from patients.involvement import audit_his_read, involving
from qr.patient_card import CardTokenError, looks_like_card_token, verify_card
from referrals.clinical import ICD10, Clinical, Diagnosis
from security import audit
from security.crypto import PersonalDataCipher
from security.idcard import InvalidIdNumber, InvalidPhone, parse_id_number, validate_phone

log = logging.getLogger("referral_cloud.patients")

MAX_CONTENT = 1024
UNRECOGNIZED = "无法识别该二维码或条码。请扫描患者的就诊卡、身份证号或本平台的患者二维码"


@dataclass
class ScanResult:
    patient: Patient
    created: bool  # the patient was recorded on the platform by this scan
    resolved_by: str  # "patient_card" | "his_card" | "mrn" | "id_number"
    his_institution: Institution | None  # whose HIS supplied the record (None: no HIS here knows the patient)
    record: PatientRecord | None
    identifiers: list[PatientIdentifier]  # the patient's numbers at the doctor's institution


def same_name(a: str, b: str) -> bool:
    def norm(text: str) -> str:
        return "".join(unicodedata.normalize("NFKC", text).split()).replace("·", "").replace("•", "")
    return norm(a) == norm(b)


def prefill(summary: ClinicalSummary | None) -> Clinical:
    """The referral's ``clinical`` block as the HIS holds it, cut to the referral's field limits."""
    if summary is None:
        return Clinical()
    diagnoses = []
    for d in summary.diagnoses:
        code = d.code.strip().upper()
        if ICD10.match(code) and d.name.strip():
            diagnoses.append(Diagnosis(code=code, name=d.name.strip()[:100]))
    return Clinical(
        diagnoses=diagnoses[:20], chief_complaint=summary.chief_complaint[:500],
        present_illness=summary.present_illness[:2000], past_history=summary.past_history[:2000],
        allergies=summary.allergies[:500], treatment=summary.treatment[:2000],
        recent_results="\n".join(summary.recent_results)[:2000])


def _normalise(content: str) -> str:
    return unicodedata.normalize("NFKC", content).strip()


async def scan_patient(gateway: HisGateway, cipher: PersonalDataCipher, *, card_secret: str,
                       institution: Institution, content: str, actor_staff_id: int,
                       actor_account_id: int) -> ScanResult:
    text = _normalise(content)
    if not text or len(text) > MAX_CONTENT:
        raise InvalidInput(UNRECOGNIZED, code="UNRECOGNIZED_CODE")
    if looks_like_card_token(text):
        return await _by_card_token(gateway, cipher, card_secret, institution, text, actor_staff_id,
                                    actor_account_id)
    card = profile.parse_card_code(text)
    is_id = profile.looks_like_id_number(text)
    if not (profile.looks_like_mrn(text) or card or is_id):
        raise InvalidInput(UNRECOGNIZED, code="UNRECOGNIZED_CODE")

    his_institution: Institution | None = institution
    record = await _lookup(gateway, institution, text)
    if record is None and card is not None and card[0] != institution.code:
        other = await Institution.get_or_none(code=card[0], deleted_at=None)
        if other is None:
            raise NotFound(f"就诊卡号前缀“{card[0]}”不是本医联体成员机构，无法识别该就诊卡",
                           code="CARD_INSTITUTION_UNKNOWN")
        return await _by_other_members_card(gateway, cipher, institution, other, text, card[1], actor_staff_id,
                                            actor_account_id)
    if record is not None:
        demo = record.demographics
        if text == demo.card_code:
            resolved_by = "his_card"
        elif is_id and demo.id_number.upper() == text.upper() and text != demo.mrn:
            resolved_by = "id_number"
        else:
            resolved_by = "mrn"
        return await _record(cipher, record, his_institution, institution, resolved_by, actor_staff_id,
                             actor_account_id)
    if is_id:
        try:
            identity = parse_id_number(text)
        except InvalidIdNumber as exc:
            raise InvalidInput(f"身份证号码有误：{exc.message}", code="INVALID_ID_NUMBER") from None
        patient = await Patient.get_or_none(id_number_hash=cipher.lookup_hash("id_number", identity.number),
                                            deleted_at=None)
        if patient is not None:
            await _audit(patient, institution, "id_number", None, False, actor_staff_id, actor_account_id)
            return ScanResult(patient=patient, created=False, resolved_by="id_number", his_institution=None,
                              record=None, identifiers=await _identifiers(patient, institution))
        raise NotFound("本院 HIS 中未找到该身份证号对应的患者，本平台也没有该患者的档案", code="PATIENT_NOT_FOUND")
    raise NotFound("本院 HIS 中未找到该就诊卡号或病历号对应的患者，请核对号码或改扫身份证号", code="PATIENT_NOT_FOUND")


async def _by_other_members_card(gateway: HisGateway, cipher: PersonalDataCipher, institution: Institution,
                                 other: Institution, text: str, mrn: str, actor_staff_id: int,
                                 actor_account_id: int) -> ScanResult:
    """Another member's card: its HIS is read only when a referral or consultation for the patient involves the
    doctor's institution (patients.involvement); otherwise the patient the platform knows by that card is looked up in
    the doctor's own HIS by ID number. A card the platform has never seen cannot say whose it is without
    reading the other HIS, so it is refused with the reason."""
    known = await PatientIdentifier.filter(institution_id=other.id) \
        .filter(Q(system="card", value=text) | Q(system="mrn", value=mrn)).select_related("patient").first()
    patient = known.patient if known is not None and known.patient.deleted_at is None else None
    referral = await involving(patient.id, institution.id) if patient is not None else None
    if patient is not None and referral is not None:
        await audit_his_read(patient, his=other, reader_institution_id=institution.id, purpose="scan",
                             actor_staff_id=actor_staff_id, actor_account_id=actor_account_id, referral=referral)
        record = await _lookup(gateway, other, text)
        if record is None:
            raise NotFound(f"该就诊卡属于{other.name}，但该院 HIS 中未找到对应患者", code="PATIENT_NOT_FOUND")
        return await _record(cipher, record, other, institution, "his_card", actor_staff_id, actor_account_id)
    if patient is not None:
        record = await _lookup(gateway, institution, cipher.decrypt(patient.id_number_enc, "id_number"))
        if record is not None:
            return await _record(cipher, record, institution, institution, "his_card", actor_staff_id,
                                 actor_account_id)
    raise Forbidden(
        f"该就诊卡属于{other.name}。只有该患者有涉及本院的转诊或会诊时，才能调阅{other.name}的 HIS；本院 HIS 中也"
        "未找到该患者。请扫描患者的身份证号或本平台的患者二维码", code="CROSS_INSTITUTION_READ_REFUSED",
        detail={"institution": other.code,
                "accepted": ["id_number", "patient_card", "referral_involving_you", "consultation_involving_you"]})


async def _lookup(gateway: HisGateway, institution: Institution, text: str) -> PatientRecord | None:
    try:
        return await gateway.lookup_patient(institution, text)
    except HisNotFound:
        return None


async def _by_card_token(gateway: HisGateway, cipher: PersonalDataCipher, card_secret: str,
                         institution: Institution, token: str, actor_staff_id: int,
                         actor_account_id: int) -> ScanResult:
    try:
        public_id: uuid.UUID = verify_card(card_secret, token)
    except CardTokenError as exc:
        raise InvalidInput(exc.message, code=exc.code) from None
    patient = await Patient.get_or_none(public_id=public_id, deleted_at=None)
    if patient is None:
        raise NotFound("该患者二维码对应的患者档案不存在或已停用", code="PATIENT_NOT_FOUND")
    id_number = cipher.decrypt(patient.id_number_enc, "id_number")
    record = await _lookup(gateway, institution, id_number)
    if record is None:
        # The doctor's HIS has never seen this patient: nothing to pre-fill, nothing to verify against.
        await _audit(patient, institution, "patient_card", None, False, actor_staff_id, actor_account_id)
        return ScanResult(patient=patient, created=False, resolved_by="patient_card", his_institution=None,
                          record=None, identifiers=await _identifiers(patient, institution))
    return await _record(cipher, record, institution, institution, "patient_card", actor_staff_id,
                         actor_account_id)


def _name_mismatch() -> InvalidInput:
    return InvalidInput("患者姓名与医院信息系统（HIS）主索引登记的姓名不一致，已拒绝。请核实患者身份证件后再试，"
                        "如 HIS 登记有误请联系信息科更正", code="NAME_MISMATCH")


async def _record(cipher: PersonalDataCipher, record: PatientRecord, his_institution: Institution,
                  institution: Institution, resolved_by: str, actor_staff_id: int,
                  actor_account_id: int) -> ScanResult:
    """Record (or confirm) the patient the HIS returned; refuse a name that differs from the platform's."""
    demo = record.demographics
    try:
        identity = parse_id_number(demo.id_number)
    except InvalidIdNumber:
        raise InvalidInput("该患者在医院信息系统（HIS）中登记的身份证号无效或缺失，无法实名建档，请先在 HIS 中更正",
                           code="HIS_ID_NUMBER_INVALID") from None
    name = demo.name.strip()
    if not name:
        raise InvalidInput("该患者在医院信息系统（HIS）中没有登记姓名，无法实名建档", code="HIS_NAME_MISSING")
    id_hash = cipher.lookup_hash("id_number", identity.number)
    numbers = [(s, v) for s, v in (("mrn", demo.mrn), ("card", demo.card_code)) if v]
    for attempt in (1, 2):
        try:
            async with in_transaction():
                patient = await Patient.get_or_none(id_number_hash=id_hash)
                created = False
                if patient is not None and patient.deleted_at is not None:
                    raise NotFound("该患者在本平台的档案已停用，请联系机构管理员", code="PATIENT_DELETED")
                if patient is not None and not same_name(patient.name, name):
                    raise _name_mismatch()
                if patient is None:
                    patient = await Patient.create(
                        name=name, id_number_enc=cipher.encrypt(identity.number, "id_number"),
                        id_number_hash=id_hash, gender=identity.gender, birth_date=identity.birth_date,
                        verified_at=datetime.now(UTC), **_phone_fields(cipher, demo.phone))
                    created = True
                elif patient.verified_at is None:
                    patient.verified_at = datetime.now(UTC)
                    await patient.save(update_fields=["verified_at", "updated_at"])
                for system, value in numbers:
                    await link_identifier(patient.id, his_institution.id, system, value)
                await _audit(patient, institution, resolved_by, his_institution, created, actor_staff_id,
                             actor_account_id)
            break
        except IntegrityError:
            # A concurrent scan of the same patient recorded them first; read what it wrote.
            if attempt == 2:
                raise Conflict("该患者正在被其他医生建档，请稍后重试", code="PATIENT_BUSY") from None
    return ScanResult(patient=patient, created=created, resolved_by=resolved_by, his_institution=his_institution,
                      record=record, identifiers=await _identifiers(patient, institution))


def _phone_fields(cipher: PersonalDataCipher, phone: str) -> dict:
    try:
        mobile = validate_phone(phone) if phone else ""
    except InvalidPhone:
        mobile = ""
    if not mobile:
        return {}
    return {"phone_enc": cipher.encrypt(mobile, "phone"), "phone_hash": cipher.lookup_hash("phone", mobile)}


async def _identifiers(patient: Patient, institution: Institution) -> list[PatientIdentifier]:
    return await PatientIdentifier.filter(patient_id=patient.id, institution_id=institution.id).order_by("id")


async def _audit(patient: Patient, institution: Institution, via: str, his_institution: Institution | None,
                 created: bool, actor_staff_id: int, actor_account_id: int) -> None:
    """A scan is a sensitive read of a patient's record: audited, with no personal data in the detail."""
    async with in_transaction():
        await audit.record("patient.scanned", "patient", str(patient.public_id), actor_staff_id=actor_staff_id,
                           actor_account_id=actor_account_id, institution_id=institution.id,
                           detail={"via": via, "his": his_institution.code if his_institution else None,
                                   "created": created})
