"""Remote ward round routes: schedule, worklists, detail (with live HIS data), start/record/complete/cancel,
advice acknowledgement, and the signed VoIP room."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from aiohttp import web
from pydantic import BaseModel, Field

from accounts.principal import authenticate
from appkeys import CIPHER, HIS, SETTINGS
from consults import rounds
from consults.round_machine import OPEN
from consults.round_views import round_view, summary_view, voip_room
from cursors import decode_cursor
from errors import InvalidInput
from miniprogram_api.idempotency import idempotent
from miniprogram_api.routing import Api, json_response, parse_body, parse_query
from models import WardRound, WardRoundMember
from referrals.queries import newest_first

api = Api()
TAGS = ["ward-rounds"]
ERRORS = {403: "无权限执行该操作", 404: "查房不存在或无权查看", 409: "状态已变化或并发冲突"}


class CreateRoundIn(BaseModel):
    referral_id: uuid.UUID
    scheduled_at: datetime = Field(description="查房时间（ISO 8601，带时区）")
    participant_ids: list[uuid.UUID] = Field(default_factory=list, max_length=20,
                                             description="双方机构参加查房的医生、专家（发起人自动参加）")
    repeat_days: int | None = Field(default=None, description="每隔几天重复一次（如 7：每周），直至出院")
    repeat_until: date | None = Field(default=None, description="重复截止日期（可选）")


class VersionIn(BaseModel):
    version: int | None = Field(default=None, description="客户端看到的版本号；不一致时返回 409")


class TaskIn(BaseModel):
    text: str = Field(min_length=1, max_length=500)
    due_date: date


class RecordIn(VersionIn):
    findings: str | None = Field(default=None, max_length=5000, description="查房所见（整体替换）")
    advice: list[str] = Field(default_factory=list, max_length=20, description="医嘱调整，逐条由本地医生确认")
    tasks: list[TaskIn] = Field(default_factory=list, max_length=20, description="随访任务及到期日")


class CompleteIn(VersionIn):
    next_round_at: datetime | None = Field(default=None, description="下次查房时间；不填则按重复规则安排")


class CancelIn(VersionIn):
    reason: str = Field(default="", max_length=500)


class ListQuery(BaseModel):
    box: str = Field(default="upcoming", description="upcoming（待进行）/ past（已结束）")
    referral_id: uuid.UUID | None = None
    cursor: str | None = Field(default=None, max_length=64)
    limit: int = Field(default=20, ge=1, le=100)


class RoundSummaryOut(BaseModel):
    id: str
    code: str
    status: str
    status_name: str
    version: int
    scheduled_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    patient_name: str
    local_institution: dict
    remote_institution: dict
    repeat_days: int | None
    repeat_until: str | None


class RoundPage(BaseModel):
    items: list[RoundSummaryOut]
    next_cursor: str | None


class RoundOut(RoundSummaryOut):
    referral: dict
    organiser: dict | None
    participants: list[dict]
    findings: str
    advice: list[dict]
    tasks: list[dict]
    next_round: dict | None
    previous_round_id: str | None
    cancel_reason: str | None
    conversation_id: str | None
    allowed_actions: list[str]
    his: dict = Field(description="患者所在机构 HIS 的最新观察指标（Observation）和报告（DiagnosticReport）")


class VoipOut(BaseModel):
    groupId: str  # noqa: N815  (wx.joinVoIPChat's own names)
    nonceStr: str  # noqa: N815
    timeStamp: int  # noqa: N815
    signature: str
    roomType: str  # noqa: N815


async def _reply(request: web.Request, principal, ward_round, status: int = 200) -> web.Response:
    return json_response(await round_view(ward_round, principal.staff_id, request.app[HIS]), status=status)


@api.route("POST", "/api/v1/ward-rounds", summary="安排远程查房（转诊双方医生，可每周重复直至出院）", tags=TAGS,
           body=CreateRoundIn, response=RoundOut, status=201, responses={**ERRORS, 422: "内容有误"})
async def create(request: web.Request) -> web.Response:
    principal = await authenticate(request)

    async def run() -> web.Response:
        body = await parse_body(request, CreateRoundIn)
        ward_round = await rounds.schedule(principal, rounds.NewRound(
            referral_id=body.referral_id, scheduled_at=body.scheduled_at, participant_ids=body.participant_ids,
            repeat_days=body.repeat_days, repeat_until=body.repeat_until))
        return await _reply(request, principal, ward_round, status=201)

    return await idempotent(request, principal, run)


@api.route("GET", "/api/v1/ward-rounds", summary="我的远程查房（待进行、已结束）", tags=TAGS, query=ListQuery,
           response=RoundPage)
async def worklist(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    principal.require_staff()
    query = parse_query(request, ListQuery)
    if query.box not in ("upcoming", "past"):
        raise InvalidInput("未知的列表类型", code="INVALID_BOX", detail={"allowed": ["upcoming", "past"]})
    mine = await WardRoundMember.filter(staff_id=principal.staff_id).values_list("round_id", flat=True)
    rows = WardRound.filter(id__in=list(mine) or [0])
    if query.referral_id is not None:
        rows = rows.filter(referral__public_id=query.referral_id)
    states = [str(s) for s in OPEN]
    if query.box == "upcoming":
        if query.cursor:
            decode_cursor(query.cursor, WardRound)  # refused like any list's bad cursor; upcoming is one page
        page, cursor = await rows.filter(status__in=states).order_by("scheduled_at").limit(query.limit), None
    else:
        page, cursor = await newest_first(rows.exclude(status__in=states), query.cursor, query.limit)
    return json_response({"items": [await summary_view(r) for r in page], "next_cursor": cursor})


@api.route("GET", "/api/v1/ward-rounds/{id}", tags=TAGS,
           summary="查房详情：记录、医嘱调整、随访任务和患者最新指标（实时读取 HIS）",
           response=RoundOut, responses={404: "不存在或无权查看"})
async def detail(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    return await _reply(request, principal, await rounds.visible_round(principal, request.match_info["id"]))


def _transition_route(action: str, summary: str, model: type[VersionIn], call):
    async def handler(request: web.Request) -> web.Response:
        principal = await authenticate(request)

        async def run() -> web.Response:
            body = await parse_body(request, model)
            return await _reply(request, principal, await call(principal, request.match_info["id"], body))

        return await idempotent(request, principal, run)

    handler.__name__ = action
    api.route("POST", f"/api/v1/ward-rounds/{{id}}/{action}", summary=summary, tags=TAGS, body=model,
              response=RoundOut, responses=ERRORS)(handler)


async def _complete(principal, public_id, body: CompleteIn):
    ward_round, _ = await rounds.complete(principal, public_id, expected_version=body.version,
                                          next_at=body.next_round_at)
    return ward_round


_transition_route("start", "开始查房", VersionIn,
                  lambda p, i, b: rounds.start(p, i, expected_version=b.version))
_transition_route("record", "记录查房所见、医嘱调整和随访任务", RecordIn,
                  lambda p, i, b: rounds.record(p, i, expected_version=b.version, entry=rounds.Record(
                      findings=b.findings, advice=b.advice,
                      tasks=[rounds.Task(t.text, t.due_date) for t in b.tasks])))
_transition_route("complete", "结束查房（并安排下次查房）", CompleteIn, _complete)
_transition_route("cancel", "取消查房（发起人）", CancelIn,
                  lambda p, i, b: rounds.cancel(p, i, expected_version=b.version, reason=b.reason))


@api.route("POST", "/api/v1/ward-rounds/{id}/advice/{n}/ack", summary="本地医生逐条确认医嘱调整", tags=TAGS,
           response=RoundOut, responses={**ERRORS, 422: "医嘱序号应为正整数"})
async def acknowledge(request: web.Request) -> web.Response:
    principal = await authenticate(request)

    async def run() -> web.Response:
        n = request.match_info["n"]
        if not (n.isascii() and n.isdigit()):  # str.isdigit alone takes "²", which int() refuses
            raise InvalidInput("医嘱序号应为正整数", code="INVALID_ADVICE_NUMBER")
        return await _reply(request, principal, await rounds.acknowledge(principal, request.match_info["id"], int(n)))

    return await idempotent(request, principal, run)


@api.route("GET", "/api/v1/ward-rounds/{id}/voip", tags=TAGS,
           summary="加入查房音视频所需参数（wx.joinVoIPChat，用本人 session_key 签名）",
           response=VoipOut, responses={**ERRORS, 403: "需重新登录"})
async def voip(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    ward_round = await rounds.visible_round(principal, request.match_info["id"])
    room = await voip_room(ward_round, principal.account_id, request.app[SETTINGS].wechat_appid, request.app[CIPHER])
    return json_response(room)
