"""Routes of a pending patient-binding request (accounts.binding): a staff member or the patient scans its QR,
looks at it and confirms. The token travels in the body, never in the path, so it stays out of access logs."""

from __future__ import annotations

import asyncio
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, Field

from accounts import binding
from accounts.principal import Principal, authenticate
from appkeys import CIPHER, SETTINGS
from errors import Forbidden
from miniprogram_api.routing import Api, json_response, parse_body
from models import BindingRequest
from models.accounts import RELATION_NAMES
from qr.binding_token import issue_binding_token
from qr.render import png_data_url, render_png
from security.crypto import PersonalDataCipher
from security.masking import mask_id_number, mask_name

api = Api()
TAGS = ["auth"]
ERRORS = {403: "无权确认（不是为该就诊人诊疗的机构的医生或入院登记人员，也不是就诊人本人）",
          404: "绑定申请不存在", 410: "二维码已过期或已使用", 422: "无法识别的二维码"}


class TokenIn(BaseModel):
    token: str = Field(min_length=1, max_length=1024, description="扫描绑定二维码所得文本")


class BindingPatientOut(BaseModel):
    name: str = Field(description="脱敏姓名，请与证件核对")
    id_number: str = Field(description="脱敏身份证号，请与证件核对")


class BindingRequestOut(BaseModel):
    id: str
    state: str = Field(description="pending（待确认）/ confirmed（已确认并完成绑定）")
    relation: str
    relation_name: str
    patient: BindingPatientOut
    expires_at: datetime
    proof: str | None = Field(description="您确认时提供的证明：staff_in_person（工作人员现场核验）或 "
                                          "patient_approval（就诊人本人同意）；申请人本人查看时为空")


async def request_detail(request: web.Request, pending: BindingRequest) -> dict:
    """What the 403 of POST /auth/bind-patient carries about the pending request: its QR, nothing personal."""
    token = issue_binding_token(request.app[SETTINGS].jwt_secret, pending.public_id, pending.expires_at.timestamp())
    png = await asyncio.get_running_loop().run_in_executor(None, render_png, token)
    return {"id": str(pending.public_id), "token": token, "qr_png": png_data_url(png),
            "expires_at": pending.expires_at.isoformat()}


def _out(pending: BindingRequest, cipher: PersonalDataCipher, proof: str | None) -> BindingRequestOut:
    patient = pending.patient
    return BindingRequestOut(
        id=str(pending.public_id), state=str(pending.state), relation=str(pending.relation),
        relation_name=RELATION_NAMES[pending.relation], expires_at=pending.expires_at, proof=proof,
        patient=BindingPatientOut(name=mask_name(patient.name),
                                  id_number=mask_id_number(cipher.decrypt(patient.id_number_enc, "id_number"))))


async def _proof_or_own(principal: Principal, pending: BindingRequest) -> str | None:
    try:
        return await binding.proof_of(principal, pending)
    except Forbidden:
        if principal.account_id == pending.account_id:  # type: ignore[attr-defined]
            return None  # the requester looks at their own request
        raise


@api.route("POST", "/api/v1/binding-requests/lookup", summary="扫描绑定二维码：查看待确认的就诊人绑定申请", tags=TAGS,
           body=TokenIn, response=BindingRequestOut, responses=ERRORS)
async def lookup(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = await parse_body(request, TokenIn)
    pending = await binding.request_for(request.app[SETTINGS].jwt_secret, body.token)
    proof = await _proof_or_own(principal, pending)
    return json_response(_out(pending, request.app[CIPHER], proof))


@api.route("POST", "/api/v1/binding-requests/confirm",
           summary="确认就诊人绑定申请（工作人员现场核验证件，或就诊人本人同意家属绑定）", tags=TAGS, body=TokenIn,
           response=BindingRequestOut, responses=ERRORS | {409: "已绑定"})
async def confirm(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = await parse_body(request, TokenIn)
    confirmed = await binding.confirm_request(principal, request.app[SETTINGS].jwt_secret, body.token)
    return json_response(_out(confirmed, request.app[CIPHER], confirmed_proof(confirmed)))


def confirmed_proof(confirmed: BindingRequest) -> str:
    return "staff_in_person" if confirmed.confirmed_by_staff_id else "patient_approval"  # type: ignore[attr-defined]
