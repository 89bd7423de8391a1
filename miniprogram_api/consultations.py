"""Consultation routes: create, worklists, detail, transitions, files."""

from __future__ import annotations

import uuid
from datetime import datetime

from aiohttp import web
from pydantic import BaseModel, Field

from accounts.principal import authenticate
from appkeys import STORAGE
from consults import attachments, commands
from consults.access import visible_consultation
from consults.queries import box_query
from consults.views import consultation_view, summary_view
from miniprogram_api.idempotency import idempotent
from miniprogram_api.referral_records import AttachmentList, AttachmentOut, file_response
from miniprogram_api.referrals import EventOut, TransitionIn
from miniprogram_api.routing import Api, json_response, parse_body, parse_query, read_upload
from referrals.attachments import DOWNLOAD_MEDIA, MAX_BYTES
from referrals.clinical import Clinical, Urgency
from referrals.queries import newest_first

api = Api()
TAGS = ["consultations"]
ERRORS = {403: "无权限执行该操作", 404: "会诊不存在或无权查看", 409: "状态已变化或并发冲突"}


class CreateConsultationIn(BaseModel):
    patient_id: uuid.UUID
    question: str = Field(min_length=1, max_length=1000, description="会诊问题")
    clinical: Clinical = Field(default_factory=Clinical, description="病情摘要（扫码得到的 HIS 预填）")
    urgency: Urgency = "routine"
    expert_id: uuid.UUID | None = Field(default=None, description="指定专家；不填则发往科室专家池")
    target_institution_id: uuid.UUID | None = None
    target_department_id: uuid.UUID | None = None


class DeclineIn(TransitionIn):
    reason_code: str = Field(description="out_of_scope / insufficient_information / unavailable / "
                                         "emergency_needs_transfer / other")


class InviteIn(TransitionIn):
    expert_ids: list[uuid.UUID] = Field(min_length=1, max_length=10)


class OpinionIn(BaseModel):
    recommendation: str = Field(description="refer_up / treat_locally / further_tests / refer_elsewhere")
    advice: str = Field(min_length=1, max_length=2000, description="会诊意见与建议")
    suggested_department_id: uuid.UUID | None = Field(default=None, description="建议转往的科室")


class ConcludeIn(TransitionIn):
    opinion: OpinionIn


class ListQuery(BaseModel):
    box: str = Field(default="outgoing", description="outgoing（我发起的）/ pool（待我接诊）/ mine（我参与的）/ "
                                                      "institution（本机构收到的，审批人员）")
    status: str | None = Field(default=None, description="逗号分隔的状态")
    cursor: str | None = Field(default=None, max_length=64)
    limit: int = Field(default=20, ge=1, le=100)


class ConsultationSummaryOut(BaseModel):
    id: str
    code: str
    status: str
    status_name: str
    urgency: str
    urgency_name: str
    patient_name: str
    version: int
    question: str
    requester_institution: dict
    target_institution: dict
    target_department: dict | None
    expert: dict | None
    recommendation: str | None
    created_at: datetime
    updated_at: datetime
    deadline_at: datetime | None
    overdue: bool


class ConsultationPage(BaseModel):
    items: list[ConsultationSummaryOut]
    next_cursor: str | None


class ConsultationOut(ConsultationSummaryOut):
    patient: dict
    requester: dict | None
    addressed_to: str
    clinical: dict
    opinion: dict | None
    decline: dict | None
    invited: list[dict]
    attachments: list[AttachmentOut]
    referrals: list[dict]
    conversation_id: str | None
    allowed_actions: list[str]
    timeline: list[EventOut]


async def _reply(principal, consultation, status: int = 200) -> web.Response:
    return json_response(await consultation_view(consultation, principal), status=status)


@api.route("POST", "/api/v1/consultations", summary="发起云会诊（指定专家或科室专家池）", tags=TAGS,
           body=CreateConsultationIn, response=ConsultationOut, status=201,
           responses={404: "患者、专家、机构或科室不存在", 422: "内容有误"})
async def create(request: web.Request) -> web.Response:
    principal = await authenticate(request)

    async def run() -> web.Response:
        body = await parse_body(request, CreateConsultationIn)
        consultation = await commands.create_consultation(principal, commands.NewConsultation(
            patient_id=body.patient_id, question=body.question, clinical=body.clinical, urgency=body.urgency,
            target_institution_id=body.target_institution_id, target_department_id=body.target_department_id,
            expert_id=body.expert_id))
        return await _reply(principal, consultation, status=201)

    return await idempotent(request, principal, run)


@api.route("GET", "/api/v1/consultations", summary="会诊工作列表", tags=TAGS, query=ListQuery,
           response=ConsultationPage)
async def worklist(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    query = parse_query(request, ListQuery)
    rows = await box_query(principal, query.box)
    if query.status:
        rows = rows.filter(status__in=query.status.split(","))
    page, cursor = await newest_first(rows, query.cursor, query.limit)
    return json_response({"items": [await summary_view(c) for c in page], "next_cursor": cursor})


@api.route("GET", "/api/v1/consultations/{id}", summary="会诊详情、意见、时间线和可执行操作", tags=TAGS,
           response=ConsultationOut, responses={404: "不存在或无权查看"})
async def detail(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    return await _reply(principal, await visible_consultation(principal, request.match_info["id"]))


def _transition_route(action: str, summary: str, model: type[TransitionIn], call):
    async def handler(request: web.Request) -> web.Response:
        principal = await authenticate(request)

        async def run() -> web.Response:
            body = await parse_body(request, model)
            return await _reply(principal, await call(principal, request.match_info["id"], body))

        return await idempotent(request, principal, run)

    handler.__name__ = action
    api.route("POST", f"/api/v1/consultations/{{id}}/{action}", summary=summary, tags=TAGS, body=model,
              response=ConsultationOut, responses=ERRORS)(handler)


_transition_route("accept", "接诊（专家池中只有一位专家能接诊成功）", TransitionIn,
                  lambda p, i, b: commands.accept(p, i, expected_version=b.version))
_transition_route("decline", "婉拒（编码原因 + 说明）", DeclineIn,
                  lambda p, i, b: commands.decline(p, i, expected_version=b.version, reason_code=b.reason_code,
                                                   comment=b.comment))
_transition_route("invite", "邀请其他专家（多学科会诊）", InviteIn,
                  lambda p, i, b: commands.invite(p, i, expected_version=b.version, expert_ids=b.expert_ids))
_transition_route("conclude", "出具结构化会诊意见", ConcludeIn,
                  lambda p, i, b: commands.conclude(p, i, expected_version=b.version, opinion=commands.Opinion(
                      b.opinion.recommendation, b.opinion.advice, b.opinion.suggested_department_id)))
_transition_route("cancel", "取消会诊（申请医生）", TransitionIn,
                  lambda p, i, b: commands.cancel(p, i, expected_version=b.version, comment=b.comment))


@api.route("POST", "/api/v1/consultations/{id}/attachments", summary="上传会诊附件（JPG/PNG/PDF，≤10 MB）",
           tags=TAGS, upload=True, response=AttachmentOut, status=201,
           responses={**ERRORS, 400: "上传内容格式不正确", 413: "文件过大", 415: "文件类型不支持"})
async def upload(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    filename, data = await read_upload(request, MAX_BYTES)
    consultation, row = await attachments.add_file(principal, request.app[STORAGE], request.match_info["id"],
                                                   filename=filename, data=data)
    return json_response(attachments.file_view(row, consultation), status=201)


@api.route("GET", "/api/v1/consultations/{id}/attachments", summary="会诊附件列表", tags=TAGS,
           response=AttachmentList, responses=ERRORS)
async def list_files(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    consultation = await visible_consultation(principal, request.match_info["id"])
    return json_response({"items": [attachments.file_view(a, consultation)
                                    for a in await attachments.files_of(consultation)], "next_cursor": None})


@api.route("GET", "/api/v1/consultations/{id}/attachments/{attachment_id}", summary="下载会诊附件", tags=TAGS,
           content_type=DOWNLOAD_MEDIA, responses=ERRORS)
async def download(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    row, data = await attachments.read_file(principal, request.app[STORAGE], request.match_info["id"],
                                            request.match_info["attachment_id"])
    return file_response(row.filename, row.content_type, data)
