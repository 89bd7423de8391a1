"""Referral routes: create, worklists, detail, transitions, timeline verification, unmasked identity."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from aiohttp import web
from pydantic import BaseModel, Field, field_validator
from tortoise.transactions import in_transaction

from accounts.principal import authenticate
from appkeys import CIPHER
from miniprogram_api.idempotency import idempotent
from miniprogram_api.routing import Api, QueryInt, json_response, parse_body, parse_query
from miniprogram_api.slips import SlipSummaryOut, image_links
from models import Patient
from referrals import commands
from referrals.access import visible_referral
from referrals.clinical import Clinical, ReturnSummary, Urgency
from referrals.queries import Filters, apply_filters, badge_counts, box_query, newest_first
from referrals.timeline import verify_referral
from referrals.views import referral_view, summary_view
from security import audit
from security.idcard import InvalidPhone, validate_phone
from slips.views import summaries_for

api = Api()
TAGS = ["referrals"]
ERRORS = {403: "无权限执行该操作", 404: "转诊单不存在或无权查看", 409: "状态已变化或并发冲突"}


def _phone(value: str | None) -> str | None:
    if not value:
        return value
    try:
        return validate_phone(value)
    except InvalidPhone as exc:
        raise ValueError(str(exc)) from None


class CreateReferralIn(BaseModel):
    patient_id: uuid.UUID | None = Field(default=None, description="从会诊发起时可不填")
    target_institution_id: uuid.UUID | None = Field(default=None, description="从会诊发起时默认会诊意见建议的机构")
    target_department_id: uuid.UUID | None = Field(default=None, description="从会诊发起时默认会诊意见建议的科室")
    consultation_id: uuid.UUID | None = Field(default=None, description="据已出具意见的会诊发起：预填病情、附件")
    urgency: Urgency | None = Field(default=None, description="默认 routine；从会诊发起时默认会诊的紧急程度")
    clinical: Clinical = Field(default_factory=Clinical)
    contact_phone: str | None = Field(default=None, max_length=20, description="联系电话")
    submit: bool = Field(default=False, description="true：创建后立即提交")
    confirm_duplicate: bool = Field(default=False, description="已有未结束的同目标转诊时，确认仍要再转")

    @field_validator("contact_phone")
    @classmethod
    def _check_phone(cls, value: str | None) -> str | None:
        return _phone(value)


class EditReferralIn(BaseModel):
    version: int | None = None
    urgency: Urgency | None = None
    clinical: Clinical | None = None
    contact_phone: str | None = Field(default=None, max_length=20)
    target_institution_id: uuid.UUID | None = None
    target_department_id: uuid.UUID | None = None

    @field_validator("contact_phone")
    @classmethod
    def _check_phone(cls, value: str | None) -> str | None:
        return _phone(value)


class TransitionIn(BaseModel):
    version: int | None = Field(default=None, description="客户端看到的版本号；不一致时返回 409")
    comment: str = Field(default="", max_length=1000)


class AdmissionIn(BaseModel):
    date: date
    department_id: uuid.UUID | None = None
    ward: str = Field(default="", max_length=64)
    bed: str = Field(default="", max_length=32)


class ApproveIn(TransitionIn):
    admission: AdmissionIn | None = Field(default=None, description="接收机构审批时必填：入院日期和科室")


class RescheduleIn(TransitionIn):
    admission: AdmissionIn


class RejectIn(TransitionIn):
    reason_code: str = Field(description="no_beds / not_indicated / incomplete / beyond_capability / "
                                         "patient_declined / other")


class RedirectIn(TransitionIn):
    institution_id: uuid.UUID
    department_id: uuid.UUID


class CompleteIn(TransitionIn):
    summary: ReturnSummary


class ResubmitIn(BaseModel):
    submit: bool = False
    clinical: Clinical | None = None


class ListQuery(BaseModel):
    box: str = "outgoing"
    status: str | None = Field(default=None, description="逗号分隔的状态")
    direction: str | None = Field(default=None, pattern="^(up|down|lateral)$")
    date_from: date | None = Field(default=None, alias="from")
    date_to: date | None = Field(default=None, alias="to")
    q: str | None = Field(default=None, max_length=50, description="转诊编号前缀或患者姓名")
    cursor: str | None = Field(default=None, max_length=64)
    limit: QueryInt = Field(default=20, ge=1, le=100)


class InstitutionRefOut(BaseModel):
    id: str
    code: str
    name: str
    level: str


class DepartmentRefOut(BaseModel):
    id: str
    code: str
    name: str


class ReferralSummaryOut(BaseModel):
    id: str
    code: str
    status: str
    status_name: str
    direction: str
    direction_name: str
    urgency: str
    urgency_name: str
    patient_name: str
    version: int
    source_institution: InstitutionRefOut
    target_institution: InstitutionRefOut
    target_department: DepartmentRefOut | None
    submitted_at: datetime | None
    updated_at: datetime
    admission_date: str | None
    deadline_at: datetime | None
    overdue: bool
    slip: SlipSummaryOut | None = Field(default=None, description="仅患者本人列表（box=mine）：当前入院凭条")


class ReferralPage(BaseModel):
    items: list[ReferralSummaryOut]
    next_cursor: str | None
    counts: dict[str, int]


class EventOut(BaseModel):
    seq: int
    at: datetime
    action: str
    action_name: str
    from_status: str | None
    to_status: str
    to_status_name: str
    actor: dict
    comment: str
    data: dict
    hash: str


class ReferralOut(ReferralSummaryOut):
    fhir_status: str
    patient: dict
    source_department: DepartmentRefOut | None
    referrer: dict
    clinical: dict
    contact_phone: str
    admission: dict | None
    rejection: dict | None
    return_summary: dict | None
    his_sync: str
    admission_certificate_no: str | None
    previous_id: str | None
    consultation: dict | None = Field(default=None, description="据以发起的会诊：编号、专家意见、是否视同临床审核")
    allowed_actions: list[str]
    timeline: list[EventOut]


class VerifyOut(BaseModel):
    valid: bool
    events: int
    broken_at: int | None
    reason: str


class IdentityOut(BaseModel):
    name: str
    id_number: str
    phone: str


async def _reply(request: web.Request, principal, referral, status: int = 200) -> web.Response:
    return json_response(await referral_view(referral, principal, request.app[CIPHER]), status=status)


@api.route("POST", "/api/v1/referrals", summary="新建转诊单（草稿，或 submit=true 立即提交）", tags=TAGS,
           body=CreateReferralIn, response=ReferralOut, status=201,
           responses={409: "该患者已有转往同一机构的未结束转诊单", 404: "患者、机构或科室不存在"})
async def create(request: web.Request) -> web.Response:
    principal = await authenticate(request)

    async def run() -> web.Response:
        body = await parse_body(request, CreateReferralIn)
        referral = await commands.create_referral(principal, request.app[CIPHER], commands.NewReferral(
            patient_id=body.patient_id, target_institution_id=body.target_institution_id,
            target_department_id=body.target_department_id, urgency=body.urgency or "", clinical=body.clinical,
            contact_phone=body.contact_phone or "", submit=body.submit, confirm_duplicate=body.confirm_duplicate,
            consultation_id=body.consultation_id))
        return await _reply(request, principal, referral, status=201)

    return await idempotent(request, principal, run)


@api.route("GET", "/api/v1/referrals", summary="转诊工作列表（转出、转入、待审批、我的）", tags=TAGS,
           query=ListQuery, response=ReferralPage)
async def worklist(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    query = parse_query(request, ListQuery)
    filters = Filters(status=query.status.split(",") if query.status else None, direction=query.direction,
                      date_from=query.date_from, date_to=query.date_to, q=query.q)
    rows, cursor = await newest_first(apply_filters(await box_query(principal, query.box), filters),
                                      query.cursor, query.limit)
    items = [await summary_view(r) for r in rows]
    if query.box == "mine":
        slips = await summaries_for(rows, image_links(request))
        for row, item in zip(rows, items, strict=True):
            item["slip"] = slips.get(row.id)
    return json_response({"items": items, "next_cursor": cursor, "counts": await badge_counts(principal)})


@api.route("GET", "/api/v1/referrals/{id}", summary="转诊单详情、时间线和可执行操作", tags=TAGS,
           response=ReferralOut, responses={404: "不存在或无权查看"})
async def detail(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    return await _reply(request, principal, await visible_referral(principal, request.match_info["id"]))


@api.route("PATCH", "/api/v1/referrals/{id}", summary="修改草稿", tags=TAGS, body=EditReferralIn,
           response=ReferralOut, responses=ERRORS)
async def edit(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = await parse_body(request, EditReferralIn)
    referral = await commands.edit_draft(
        principal, request.app[CIPHER], request.match_info["id"], expected_version=body.version,
        clinical=body.clinical, urgency=body.urgency, contact_phone=body.contact_phone,
        target_institution_id=body.target_institution_id, target_department_id=body.target_department_id)
    return await _reply(request, principal, referral)


def _transition_route(action: str, summary: str, model: type[TransitionIn], call):
    async def handler(request: web.Request) -> web.Response:
        principal = await authenticate(request)

        async def run() -> web.Response:
            body = await parse_body(request, model)
            referral = await call(request, principal, request.match_info["id"], body)
            return await _reply(request, principal, referral)

        return await idempotent(request, principal, run)

    handler.__name__ = action
    api.route("POST", f"/api/v1/referrals/{{id}}/{action}", summary=summary, tags=TAGS, body=model,
              response=ReferralOut, responses=ERRORS)(handler)


_transition_route("submit", "提交转诊单", TransitionIn,
                  lambda r, p, i, b: commands.submit(p, i, expected_version=b.version))
_transition_route("approve", "审批通过（接收机构需预约入院日期和科室）", ApproveIn,
                  lambda r, p, i, b: commands.approve(
                      p, i, expected_version=b.version, comment=b.comment,
                      admission=commands.Admission(b.admission.date, b.admission.department_id, b.admission.ward,
                                                   b.admission.bed) if b.admission else None))
_transition_route("reject", "拒绝（编码原因 + 说明）", RejectIn,
                  lambda r, p, i, b: commands.reject(p, i, expected_version=b.version, reason_code=b.reason_code,
                                                     comment=b.comment))
_transition_route("redirect", "改转其他机构", RedirectIn,
                  lambda r, p, i, b: commands.redirect(p, i, expected_version=b.version, comment=b.comment,
                                                       institution_id=b.institution_id,
                                                       department_id=b.department_id))
_transition_route("cancel", "取消转诊（入院前）", TransitionIn,
                  lambda r, p, i, b: commands.cancel(p, i, expected_version=b.version, comment=b.comment))
_transition_route("reschedule", "改约入院日期（释放原床位、预约新床位、重新签发入院凭证）", RescheduleIn,
                  lambda r, p, i, b: commands.reschedule(
                      p, i, expected_version=b.version, comment=b.comment,
                      admission=commands.Admission(b.admission.date, b.admission.department_id, b.admission.ward,
                                                   b.admission.bed)))
_transition_route("complete", "完成转诊并回传出院/回转小结", CompleteIn,
                  lambda r, p, i, b: commands.complete(p, i, expected_version=b.version, summary=b.summary))


@api.route("POST", "/api/v1/referrals/{id}/resubmit", summary="被拒绝的转诊单重新发起（新单关联旧单）", tags=TAGS,
           body=ResubmitIn, response=ReferralOut, status=201, responses=ERRORS)
async def resubmit(request: web.Request) -> web.Response:
    principal = await authenticate(request)

    async def run() -> web.Response:
        body = await parse_body(request, ResubmitIn)
        referral = await commands.resubmit(principal, request.app[CIPHER], request.match_info["id"],
                                           submit_now=body.submit, clinical=body.clinical)
        return await _reply(request, principal, referral, status=201)

    return await idempotent(request, principal, run)


@api.route("GET", "/api/v1/referrals/{id}/timeline/verify", summary="校验时间线哈希链", tags=TAGS,
           response=VerifyOut, responses={404: "不存在或无权查看"})
async def verify_timeline(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    principal.require_staff()
    referral = await visible_referral(principal, request.match_info["id"])
    result = await verify_referral(referral.id, referral.version)
    return json_response(VerifyOut(valid=result.valid, events=result.events, broken_at=result.broken_at,
                                   reason=result.reason))


@api.route("GET", "/api/v1/referrals/{id}/patient-identity", summary="查看患者完整身份信息（记入审计）",
           tags=TAGS, response=IdentityOut, responses={403: "仅限双方机构的医生和住院处", 404: "不存在或无权查看"})
async def patient_identity(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    principal.require_role("doctor", "admission_clerk")
    referral = await visible_referral(principal, request.match_info["id"])
    patient = await Patient.get(id=referral.patient_id)  # type: ignore[attr-defined]
    cipher = request.app[CIPHER]
    async with in_transaction():
        await audit.record("patient.identity_read", "patient", str(patient.public_id),
                           actor_staff_id=principal.staff_id, actor_account_id=principal.account_id,
                           institution_id=principal.institution_id, detail={"referral": referral.code})
    return json_response(IdentityOut(name=patient.name, id_number=cipher.decrypt(patient.id_number_enc, "id_number"),
                                     phone=cipher.decrypt(patient.phone_enc, "phone") if patient.phone_enc else ""))
