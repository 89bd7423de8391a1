"""Patient routes: a doctor's scan (resolve a code through the HIS, pre-fill the referral) and the bound
patient's own QR card. The logic lives in patients.scan and patients.card."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

from accounts.principal import authenticate
from appkeys import CIPHER, HIS, SETTINGS
from directory import cache
from miniprogram_api.routing import Api, json_response, parse_body, parse_query
from miniprogram_api.schemas import InstitutionRef
from models import Patient
from models.accounts import RELATION_NAMES
from patients.card import card_for
from patients.scan import MAX_CONTENT, prefill, scan_patient
from qr.render import png_data_url, render_png
from referrals.clinical import Clinical
from security.crypto import PersonalDataCipher
from security.idcard import china_today
from security.masking import mask_id_number, mask_name, mask_phone

api = Api()
TAGS = ["patients"]


class ScanIn(BaseModel):
    content: str = Field(min_length=1, max_length=MAX_CONTENT,
                         description="扫码所得文本：本平台患者二维码、HIS 就诊卡号/病历号"
                                     "（他院卡为“机构代码-病历号”）或身份证号")


class PatientOut(BaseModel):
    id: str
    name: str = Field(description="脱敏姓名，如 张*明")
    gender: str
    birth_date: str | None = None
    age: int | None = None
    id_number: str = Field(description="脱敏身份证号")
    phone: str | None = Field(default=None, description="脱敏手机号")
    verified: bool = Field(description="已通过 HIS 主索引实名核验")


class HisRecordOut(BaseModel):
    institution: InstitutionRef
    mrn: str = Field(description="该院病历号")
    card_code: str = Field(description="该院就诊卡号")
    encounter_id: str = Field(description="预填所依据的在院就诊记录；空表示该院无未结束的就诊")
    department: str = ""


class IdentifierOut(BaseModel):
    system: str = Field(description="mrn（病历号）或 card（就诊卡号）")
    value: str


class ScanOut(BaseModel):
    patient: PatientOut
    created: bool = Field(description="本次扫码新建了平台患者档案")
    resolved_by: Literal["patient_card", "his_card", "mrn", "id_number"]
    his: HisRecordOut | None = Field(default=None, description="提供资料的 HIS；空表示本院 HIS 中没有该患者")
    identifiers: list[IdentifierOut] = Field(description="该患者在本院的病历号、就诊卡号")
    prefill: Clinical = Field(description="转诊单 clinical 预填内容（与 POST /referrals 的 clinical 同构）")


class CardQuery(BaseModel):
    patient_id: uuid.UUID | None = Field(default=None, description="就诊人编号；缺省为本人或第一位就诊人")


class CardPatientOut(BaseModel):
    id: str
    name: str = Field(description="脱敏姓名")
    relation: str
    relation_name: str


class CardOut(BaseModel):
    patient: CardPatientOut
    token: str = Field(description="签名的患者码令牌（不含个人信息），医生扫码后由 /scan 解析")
    issued_at: datetime
    expires_at: datetime
    expires_in: int = Field(description="剩余有效秒数；过期前请重新获取")
    qr_png: str = Field(description="二维码 PNG（data:image/png;base64,...）")


def _patient_out(patient: Patient, cipher: PersonalDataCipher) -> PatientOut:
    birth = patient.birth_date
    age = None
    if birth is not None:
        today = china_today()
        age = today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))
    phone = mask_phone(cipher.decrypt(patient.phone_enc, "phone")) if patient.phone_enc else None
    return PatientOut(id=str(patient.public_id), name=mask_name(patient.name), gender=str(patient.gender),
                      birth_date=birth.isoformat() if birth else None, age=age,
                      id_number=mask_id_number(cipher.decrypt(patient.id_number_enc, "id_number")), phone=phone,
                      verified=patient.verified_at is not None)


@api.route("POST", "/api/v1/scan", summary="医生扫码识别患者并从 HIS 预填病历", tags=TAGS, body=ScanIn,
           response=ScanOut,
           responses={403: "仅限医生", 404: "HIS 与本平台均未找到该患者", 409: "病历号关联冲突",
                      422: "无法识别的号码、身份证号有误、患者码过期或姓名与 HIS 主索引不一致",
                      503: "HIS 不可用或超时"})
async def scan(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    principal.require_role("doctor")
    body = await parse_body(request, ScanIn)
    institution = await cache.institution(principal.institution_id)
    cipher = request.app[CIPHER]
    result = await scan_patient(request.app[HIS], cipher, card_secret=request.app[SETTINGS].jwt_secret,
                                institution=institution, content=body.content,
                                actor_staff_id=principal.staff_id or 0, actor_account_id=principal.account_id)
    his = None
    if result.record is not None and result.his_institution is not None:
        source = result.his_institution
        demo = result.record.demographics
        his = HisRecordOut(institution=InstitutionRef(id=str(source.public_id), code=source.code, name=source.name,
                                                      level=str(source.level)),
                           mrn=demo.mrn, card_code=demo.card_code, encounter_id=result.record.summary.encounter_id,
                           department=result.record.summary.department)
    return json_response(ScanOut(
        patient=_patient_out(result.patient, cipher), created=result.created, resolved_by=result.resolved_by,
        his=his, identifiers=[IdentifierOut(system=i.system, value=i.value) for i in result.identifiers],
        prefill=prefill(result.record.summary if result.record else None)))


@api.route("GET", "/api/v1/patients/me/card", summary="患者本人的就诊二维码（签名令牌，不含个人信息）", tags=TAGS,
           query=CardQuery, response=CardOut, responses={403: "尚未绑定就诊人", 404: "未绑定该就诊人"})
async def my_card(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    query = parse_query(request, CardQuery)
    patient, binding, card = await card_for(principal, request.app[SETTINGS].jwt_secret, query.patient_id)
    png = await asyncio.get_running_loop().run_in_executor(None, render_png, card.token)
    relation = binding.relation
    return json_response(CardOut(
        patient=CardPatientOut(id=str(patient.public_id), name=mask_name(patient.name), relation=str(relation),
                               relation_name=RELATION_NAMES.get(relation, "")),
        token=card.token, issued_at=datetime.fromtimestamp(card.issued_at, UTC),
        expires_at=datetime.fromtimestamp(card.expires_at, UTC),
        expires_in=max(0, card.expires_at - int(datetime.now(UTC).timestamp())), qr_png=png_data_url(png)))
