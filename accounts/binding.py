"""Binding a WeChat account to a patient needs proof that the account's user is that patient, or has the
patient's consent; a name and an ID number are not secrets (issue 10, point 1).

Accepted proofs
- `wechat_phone` (the patient themself): the number WeChat verified for the user (getPhoneNumber button,
  `phone_code`) equals the phone on file for the patient, on the platform or in the HIS of an institution
  that holds the patient's numbers;
- `staff_in_person`: a doctor or admission clerk of an institution that treats the patient
  (patients.involvement.treats) scans the request's QR in their mini-program and confirms, having checked the
  person's ID card;
- `patient_approval` (family members only): the patient's own bound account (relation self) scans the QR
  and approves.

Without a proof given at once, `request_binding` leaves a pending BindingRequest whose QR (qr.binding_token)
carries only a signed reference; `confirm_request` turns it into the binding. A phone number proves only the
patient themself, never a family relation. Every binding made is audited with the proof that made it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from accounts.login import resolve_login_code
from accounts.principal import Principal
from directory import cache
from errors import Conflict, Forbidden, Gone, InvalidInput, NotFound, TooManyRequests, UpstreamUnavailable
from his.gateway import HisError, HisGateway, HisNotFound
from models import BindingRequest, BindingState, Patient, PatientBinding, PatientIdentifier, Relation, WeChatAccount
from patients.involvement import audit_his_read, treats
from qr.binding_token import BindingTokenError, verify_binding_token
from security import audit
from security.crypto import PersonalDataCipher
from security.idcard import InvalidIdNumber, InvalidPhone, parse_id_number, validate_phone
from wechat.client import WeChatClient, WeChatError

log = logging.getLogger("referral_cloud.binding")

CONFIRMER_ROLES = frozenset({"doctor", "admission_clerk"})
PROOFS_SELF = ("wechat_phone", "staff_in_person")
PROOFS_FAMILY = ("patient_approval", "staff_in_person")

# Why the proof is missing: what the 403 says to the user.
MISSING = {
    "wechat_phone": "请证明您是就诊人本人：使用“微信手机号快捷验证”（须与医院登记的手机号一致），"
                    "或到就诊的医疗机构出示绑定二维码，由工作人员核验身份证件后确认",
    "matching_phone": "您的微信手机号与医院登记的手机号不一致，无法自动核验。"
                      "请到就诊的医疗机构出示绑定二维码，由工作人员核验身份证件后确认",
    "patient_approval": "为家人绑定需要就诊人本人同意：请就诊人用已绑定本人身份的微信扫描绑定二维码确认，"
                        "或到就诊的医疗机构出示绑定二维码，由工作人员核验后确认",
    "patient_record": "本平台尚无该就诊人的就诊档案，无法核验身份。请先到医联体成员机构就诊（由医生扫码建档），"
                      "再申请绑定",
}


@dataclass(frozen=True)
class BindingOutcome:
    """Either the account is now bound (`request` is None), or proof is `missing` and `request` awaits it
    (None too when the platform has no record of the patient to attach a request to)."""

    account: WeChatAccount
    bound: bool
    missing: str = ""
    accepted: tuple[str, ...] = ()
    request: BindingRequest | None = None


def _now() -> datetime:
    return datetime.now(UTC)


def proof_required(outcome: BindingOutcome, request_detail: dict | None) -> Forbidden:
    """The 403 of a binding without proof: which proof is missing, which are accepted, and the pending request."""
    return Forbidden(MISSING[outcome.missing], code="BINDING_PROOF_REQUIRED",
                     detail={"missing": outcome.missing, "accepted": list(outcome.accepted),
                             "binding_request": request_detail})


async def request_binding(wechat: WeChatClient, cipher: PersonalDataCipher, gateway: HisGateway, *, code: str,
                          name: str, id_number: str, relation: Relation, phone_code: str | None,
                          request_ttl: int) -> BindingOutcome:
    """Bind at once when the proof is given (the patient's WeChat-verified phone), else leave a pending request."""
    try:
        identity = parse_id_number(id_number)
    except InvalidIdNumber as exc:
        raise InvalidInput(f"身份证号码有误：{exc}", code="INVALID_ID_NUMBER",
                           detail={"fields": [{"field": "id_number", "reason": str(exc)}]}) from None
    name = name.strip()
    account = await resolve_login_code(wechat, code, cipher)
    accepted = PROOFS_SELF if relation == Relation.SELF else PROOFS_FAMILY
    patient = await Patient.get_or_none(id_number_hash=cipher.lookup_hash("id_number", identity.number),
                                        deleted_at=None)
    if patient is None:
        return BindingOutcome(account, False, "patient_record", accepted)
    if patient.name != name:
        raise InvalidInput("姓名与身份证号码不一致，请核对后重试", code="NAME_MISMATCH")
    await _check_bindable(account.id, patient.id, relation)
    if relation != Relation.SELF:
        missing = "patient_approval"
    elif not phone_code:
        missing = "wechat_phone"
    elif await _phone_on_file(gateway, cipher, patient, await _verified_phone(wechat, phone_code), account.id):
        await _bind(account.id, patient, relation, proof="wechat_phone", actor_account_id=account.id)
        return BindingOutcome(account, True)
    else:
        missing = "matching_phone"
    return BindingOutcome(account, False, missing, accepted, await _pending(account.id, patient, relation, request_ttl))


async def _check_bindable(account_id: int, patient_id: int, relation: Relation) -> None:
    if await PatientBinding.filter(account_id=account_id, patient_id=patient_id).exists():
        raise Conflict("该就诊人已绑定到您的账号", code="ALREADY_BOUND")
    if relation == Relation.SELF and await PatientBinding.filter(account_id=account_id,
                                                                 relation=Relation.SELF).exists():
        raise Conflict("该微信账号已绑定本人身份，家人请选择与本人的关系", code="SELF_ALREADY_BOUND")


async def _verified_phone(wechat: WeChatClient, phone_code: str) -> str | None:
    """The mainland mobile number WeChat verified for the user; None for a number outside mainland China."""
    try:
        number = await wechat.get_phone_number(phone_code)
    except WeChatError as exc:
        if exc.errcode == 40029:
            raise InvalidInput("手机号验证凭证无效或已使用，请重新点击“微信手机号快捷验证”", code="INVALID_PHONE_CODE",
                               detail={"fields": [{"field": "phone_code", "reason": "invalid"}]}) from None
        if exc.errcode == 45011:
            raise TooManyRequests("手机号验证过于频繁，请稍后再试", code="PHONE_RATE_LIMITED") from None
        raise UpstreamUnavailable("微信服务暂时不可用，请稍后再试", code="WECHAT_UNAVAILABLE",
                                  detail={"errcode": exc.errcode}) from None
    if number.country_code not in ("86", ""):
        return None
    try:
        return validate_phone(number.phone)
    except InvalidPhone:
        return None


def _same_phone(stored: str, verified: str) -> bool:
    try:
        return validate_phone(stored) == verified
    except InvalidPhone:
        return False


async def _phone_on_file(gateway: HisGateway, cipher: PersonalDataCipher, patient: Patient, verified: str | None,
                         account_id: int) -> bool:
    """Whether `verified` is the patient's phone on the platform or in the HIS of an institution that holds the
    patient's numbers (each such HIS read audited). A HIS that cannot answer makes this a 503 rather than a
    "no": the user should retry, not be sent to a desk."""
    if verified is None:
        return False
    if patient.phone_enc and _same_phone(cipher.decrypt(patient.phone_enc, "phone"), verified):
        return True
    unreachable = False
    institution_ids = await PatientIdentifier.filter(patient_id=patient.id).distinct() \
        .values_list("institution_id", flat=True)
    id_number = cipher.decrypt(patient.id_number_enc, "id_number")
    for institution_id in sorted(set(institution_ids)):
        institution = await cache.institution(institution_id)
        await audit_his_read(patient, his=institution, reader_institution_id=None, purpose="binding_phone",
                             actor_account_id=account_id)
        try:
            record = await gateway.lookup_patient(institution, id_number)
        except HisNotFound:
            continue
        except HisError as exc:
            log.warning("HIS of %s could not answer a binding phone check: %s", institution.code, exc.code)
            unreachable = True
            continue
        if record.demographics.phone and _same_phone(record.demographics.phone, verified):
            return True
    if unreachable:
        raise UpstreamUnavailable("医院信息系统暂时无法核验手机号，请稍后再试", code="HIS_UNAVAILABLE")
    return False


async def _pending(account_id: int, patient: Patient, relation: Relation, ttl: int) -> BindingRequest:
    """The account's pending request for this patient and relation, renewed, or a new one."""
    expires_at = _now() + timedelta(seconds=ttl)
    existing = await BindingRequest.filter(account_id=account_id, patient_id=patient.id, relation=relation,
                                           state=BindingState.PENDING).order_by("-id").first()
    if existing is not None:
        existing.expires_at = expires_at
        await existing.save(update_fields=["expires_at", "updated_at"])
        return existing
    return await BindingRequest.create(account_id=account_id, patient=patient, relation=relation,
                                       expires_at=expires_at)


async def _bind(account_id: int, patient: Patient, relation: Relation, *, proof: str, actor_account_id: int,
                actor_staff_id: int | None = None, institution_id: int | None = None,
                request: BindingRequest | None = None) -> None:
    """Write the binding and its audit event (inside the caller's transaction when there is one)."""
    try:
        async with in_transaction():
            _, created = await PatientBinding.get_or_create(account_id=account_id, patient_id=patient.id,
                                                            defaults={"relation": relation})
            if not created:
                raise Conflict("该就诊人已绑定到该账号", code="ALREADY_BOUND")
            await audit.record("patient.bound", "patient", str(patient.public_id), actor_staff_id=actor_staff_id,
                               actor_account_id=actor_account_id, institution_id=institution_id,
                               detail={"proof": proof, "relation": str(relation),
                                       "request": str(request.public_id) if request else None})
    except IntegrityError:
        raise Conflict("该就诊人正在绑定中，请稍后刷新", code="BINDING_IN_PROGRESS") from None


# ------------------------------------------------------------------------------------- the QR side

async def request_for(secret: str, token: str) -> BindingRequest:
    """The request a binding QR names, still pending and unexpired; raises for a bad, stale or spent QR."""
    try:
        public_id = verify_binding_token(secret, token)
    except BindingTokenError as exc:
        error = Gone if exc.code == "BINDING_REQUEST_EXPIRED" else InvalidInput
        raise error(exc.message, code=exc.code) from None
    request = await BindingRequest.get_or_none(public_id=public_id).select_related("patient")
    if request is None or request.patient.deleted_at is not None:
        raise NotFound("未找到该绑定申请", code="BINDING_REQUEST_NOT_FOUND")
    if request.state == BindingState.CONFIRMED:
        raise Gone("该绑定申请已确认，二维码不能再次使用", code="BINDING_REQUEST_USED")
    if request.expires_at <= _now():
        raise Gone("该绑定二维码已过期，请重新提交绑定申请", code="BINDING_REQUEST_EXPIRED")
    return request


async def proof_of(principal: Principal, request: BindingRequest) -> str:
    """The proof the caller can give for `request` ("staff_in_person" or "patient_approval"); raises Forbidden
    naming who may confirm."""
    if principal.account_id == request.account_id:  # type: ignore[attr-defined]
        raise Forbidden("不能确认自己提交的绑定申请，请由工作人员或就诊人本人扫码确认", code="OWN_BINDING_REQUEST")
    if request.relation != Relation.SELF and await PatientBinding.filter(
            account_id=principal.account_id, patient_id=request.patient_id, relation=Relation.SELF).exists():  # type: ignore[attr-defined]
        return "patient_approval"
    if principal.staff_id is not None and principal.roles & CONFIRMER_ROLES:
        if await treats(request.patient_id, principal.institution_id):  # type: ignore[attr-defined, arg-type]
            return "staff_in_person"
        raise Forbidden("只有为该就诊人诊疗过的机构的医生或入院登记人员可以现场确认绑定",
                        code="NOT_TREATING_INSTITUTION")
    raise Forbidden("只有就诊人本人（已绑定本人身份的微信）或为其诊疗的机构的工作人员可以确认该绑定申请",
                    code="CANNOT_CONFIRM_BINDING")


async def confirm_request(principal: Principal, secret: str, token: str) -> BindingRequest:
    """Confirm a pending request in person (staff) or by the patient's approval: the binding is made once."""
    request = await request_for(secret, token)
    proof = await proof_of(principal, request)
    async with in_transaction():
        staff_id = principal.staff_id if proof == "staff_in_person" else None
        claimed = await BindingRequest.filter(id=request.id, state=BindingState.PENDING).update(
            state=BindingState.CONFIRMED, confirmed_at=_now(), confirmed_by_staff_id=staff_id,
            confirmed_by_account_id=principal.account_id)
        if not claimed:
            raise Gone("该绑定申请已确认，二维码不能再次使用", code="BINDING_REQUEST_USED")
        await _check_bindable(request.account_id, request.patient_id, request.relation)  # type: ignore[attr-defined]
        await _bind(request.account_id, request.patient, request.relation, proof=proof,  # type: ignore[attr-defined]
                    actor_account_id=principal.account_id, actor_staff_id=staff_id,
                    institution_id=principal.institution_id if staff_id else None, request=request)
    await request.refresh_from_db()
    return request

