"""Figures for institution admins and the consortium office (the paper's Tables 1 and 2), as JSON or as a
CSV/XLSX download (`format=csv|xlsx`), and the pre-platform baselines behind Table 1."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, field_validator

from accounts.principal import Principal, authenticate
from miniprogram_api.routing import Api, json_response, parse_body, parse_query
from stats import report
from stats.query import Filters, build_filters
from stats.satisfaction import satisfaction, satisfaction_tables
from stats.summary import summary
from stats.table1 import BaselineIn, baselines_of, institution_label, save_baselines, table1, table1_table
from stats.waiting import GROUPS, waiting_table, waiting_times

api = Api()
TAGS = ["stats"]
# A figure route answers JSON, or its tables as a download with `format=csv|xlsx`.
DOWNLOADS = ", ".join(["application/json", report.CSV_MEDIA.split(";")[0], report.XLSX_MEDIA])
FORBIDDEN = {403: "仅限机构管理员（本机构相关转诊）和医联体办公室（全部）", 404: "机构或科室不存在",
             422: "筛选条件有误：开始晚于结束、范围超过五年、未知的格式或分组"}


class StatsQuery(BaseModel):
    date_from: date | None = Field(default=None, alias="from", description="提交日期（中国时间）起")
    date_to: date | None = Field(default=None, alias="to", description="提交日期（中国时间）止，含当天")
    direction: Literal["up", "down", "lateral"] | None = None
    institution_id: uuid.UUID | None = Field(default=None, description="机构（作为转出或接收方）")
    department_id: uuid.UUID | None = Field(default=None, description="科室（作为转出或接收方）")
    format: Literal["json", "csv", "xlsx"] = Field(default="json", description="json，或下载 csv / xlsx")


class WaitingQuery(StatsQuery):
    group_by: str = Field(default="direction", description="逗号分隔，至多两个：" + "、".join(GROUPS))

    @field_validator("group_by")
    @classmethod
    def _groups(cls, value: str) -> str:
        groups = [g for g in value.split(",") if g]
        if len(groups) > 2 or len(set(groups)) != len(groups) or set(groups) - set(GROUPS):
            raise ValueError("分组只能是 " + "、".join(GROUPS) + " 中的至多两个")
        return ",".join(groups)


class SatisfactionQuery(StatsQuery):
    period: Literal["all", "month", "quarter"] = "quarter"


class FigureOut(BaseModel):
    n: int
    mean_days: float | None
    median_days: float | None
    p90_days: float | None


class WaitingRow(BaseModel):
    key: dict[str, str | int | None]
    label: str
    submitted: int = Field(description="该组提交的转诊数")
    total: FigureOut = Field(description="提交 → 入院（论文表1 的等待时长）")
    source_approval: FigureOut = Field(description="提交 → 转出机构审批通过")
    target_approval: FigureOut = Field(description="转出审批（或提交）→ 接收并预约床位")
    bed: FigureOut = Field(description="预约床位 → 入院登记")


class FiltersOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)
    date_from: str | None = Field(alias="from")
    date_to: str | None = Field(alias="to")
    direction: str | None
    scope: str = Field(description="统计范围：医联体或本机构")


class WaitingOut(BaseModel):
    filters: FiltersOut
    group_by: list[str]
    items: list[WaitingRow]


class TableOut(BaseModel):
    name: str
    columns: list[dict[str, str]]
    rows: list[dict]


class SummaryOut(BaseModel):
    filters: FiltersOut
    tables: dict[str, TableOut]


class BaselineFigure(BaseModel):
    mean_days: float
    n: int
    period: str
    source_note: str


class PlatformFigure(BaseModel):
    mean_days: float | None
    n: int


class Table1Row(BaseModel):
    direction: str
    name: str
    baseline: BaselineFigure | None = Field(description="常规双向转诊（平台上线前）")
    platform: PlatformFigure = Field(description="区域协同双向转诊（平台）")
    change_days: float | None
    change_share: float | None


class Table1Out(BaseModel):
    filters: FiltersOut
    title: str
    columns: list[str]
    rows: list[Table1Row]


class ItemMean(BaseModel):
    key: str
    text: str
    mean: float | None


class SatisfactionRow(BaseModel):
    respondent: str
    respondent_name: str
    period: str
    invitations: int
    answers: int
    suppressed: bool = Field(description="答卷少于 5 份：不显示比例和均分")
    response_rate: float | None
    satisfied_share: float | None = Field(description="满意 + 非常满意 所占比例（总体满意度一项）")
    items: list[ItemMean]


class SatisfactionOut(BaseModel):
    filters: FiltersOut
    period: str
    items: list[SatisfactionRow]


class BaselineItem(BaseModel):
    direction: Literal["up", "down", "lateral"]
    period: str = Field(min_length=1, max_length=50, description="基线时期，如 2019年1月—12月")
    mean_days: float = Field(ge=0, le=365, description="平均等待天数（提交转诊 → 入院）")
    n: int = Field(ge=1, le=10_000_000, description="统计例数")
    source_note: str = Field(default="", max_length=300, description="数据来源说明")


class BaselinesIn(BaseModel):
    institution_id: uuid.UUID | None = Field(default=None, description="医联体办公室可为任一机构填写；默认本机构")
    items: list[BaselineItem] = Field(min_length=1, max_length=3)


class BaselineOut(BaseModel):
    institution_id: str
    institution: str
    direction: str
    period: str
    mean_days: float
    n: int
    source_note: str


class BaselinesOut(BaseModel):
    items: list[BaselineOut]


async def _filters(request: web.Request, model: type[StatsQuery]) -> tuple[Principal, StatsQuery, Filters]:
    principal = await authenticate(request)
    query = parse_query(request, model)
    filters = await build_filters(principal, start=query.date_from, end=query.date_to, direction=query.direction,
                                  institution=query.institution_id, department=query.department_id)
    return principal, query, filters


async def _filters_out(filters: Filters) -> dict:
    return filters.describe() | {"scope": await institution_label(Filters(scope=filters.scope))}


def _basename(title: str, filters: Filters) -> str:
    span = f"{filters.start or '开始'}至{filters.end or '今'}"
    return f"{title}_{span}"


def _download(tables: list[report.Table], fmt: str, title: str, filters: Filters) -> web.Response:
    body, content_type, disposition = report.export(tables, fmt, _basename(title, filters))
    media, _, charset = content_type.partition("; charset=")
    return web.Response(body=body, content_type=media, charset=charset or None,
                        headers={"Content-Disposition": disposition})


def _table_out(table: report.Table) -> dict:
    return {"name": table.name, "columns": [{"key": c.key, "title": c.title, "kind": c.kind} for c in table.columns],
            "rows": table.rows}


@api.route("GET", "/api/v1/stats/waiting-times", summary="转诊等待时间（提交 → 入院）及各阶段", tags=TAGS,
           query=WaitingQuery, response=WaitingOut, responses=FORBIDDEN, content_type=DOWNLOADS)
async def get_waiting_times(request: web.Request) -> web.Response:
    _, query, filters = await _filters(request, WaitingQuery)
    group_by = [g for g in query.group_by.split(",") if g]  # type: ignore[attr-defined]
    items = await waiting_times(filters, group_by)
    if query.format != "json":
        return _download([waiting_table(items, group_by)], query.format, "转诊等待时间", filters)
    return json_response(WaitingOut.model_validate(
        {"filters": await _filters_out(filters), "group_by": group_by, "items": items}))


@api.route("GET", "/api/v1/stats/summary", summary="转诊概况：状态、拒绝原因、改转、爽约、超时审批、床位使用、会诊",
           tags=TAGS, query=StatsQuery, response=SummaryOut, responses=FORBIDDEN, content_type=DOWNLOADS)
async def get_summary(request: web.Request) -> web.Response:
    _, query, filters = await _filters(request, StatsQuery)
    tables = await summary(filters)
    if query.format != "json":
        return _download(list(tables.values()), query.format, "转诊概况", filters)
    return json_response(SummaryOut.model_validate(
        {"filters": await _filters_out(filters), "tables": {k: _table_out(t) for k, t in tables.items()}}))


@api.route("GET", "/api/v1/stats/table1", summary="表1 入院平均等待时长：基线与平台对照", tags=TAGS,
           query=StatsQuery, response=Table1Out, responses=FORBIDDEN, content_type=DOWNLOADS)
async def get_table1(request: web.Request) -> web.Response:
    _, query, filters = await _filters(request, StatsQuery)
    rows = await table1(filters)
    if query.format != "json":
        return _download([table1_table(rows)], query.format, "表1_入院平均等待时长", filters)
    return json_response(Table1Out.model_validate({
        "filters": await _filters_out(filters), "title": "双向转诊入院平均等待时长（日）",
        "columns": ["类别", "常规双向转诊", "区域协同双向转诊", "变化"], "rows": rows}))


@api.route("GET", "/api/v1/stats/satisfaction", summary="表2 满意度：应答率、满意率、各项均分", tags=TAGS,
           query=SatisfactionQuery, response=SatisfactionOut, responses=FORBIDDEN, content_type=DOWNLOADS)
async def get_satisfaction(request: web.Request) -> web.Response:
    _, query, filters = await _filters(request, SatisfactionQuery)
    rows = await satisfaction(filters, query.period)  # type: ignore[attr-defined]
    if query.format != "json":
        return _download(satisfaction_tables(rows), query.format, "表2_满意度", filters)
    return json_response(SatisfactionOut.model_validate(
        {"filters": await _filters_out(filters), "period": query.period, "items": rows}))  # type: ignore[attr-defined]


async def _baselines_out(institution_id: int | None) -> dict:
    from directory import cache

    items = []
    for row in await baselines_of(institution_id):
        institution = await cache.institution(row.institution_id)  # type: ignore[attr-defined]
        items.append({"institution_id": str(institution.public_id), "institution": institution.name,
                      "direction": row.direction, "period": row.period, "mean_days": row.mean_days, "n": row.n,
                      "source_note": row.source_note})
    return {"items": items}


@api.route("PUT", "/api/v1/admin/baselines", summary="填写平台上线前的等待时间基线（表1 常规双向转诊）",
           tags=["admin"], body=BaselinesIn, response=BaselinesOut,
           responses={403: "仅限机构管理员（本机构）和医联体办公室", 404: "机构不存在"})
async def put_baselines(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    body = await parse_body(request, BaselinesIn)
    saved = await save_baselines(principal, body.institution_id,
                                 [BaselineIn(**item.model_dump()) for item in body.items])
    return json_response(BaselinesOut.model_validate(await _baselines_out(saved[0].institution_id)))  # type: ignore[attr-defined]


@api.route("GET", "/api/v1/admin/baselines", summary="已填写的基线", tags=["admin"], response=BaselinesOut,
           responses={403: "仅限机构管理员和医联体办公室"})
async def get_baselines(request: web.Request) -> web.Response:
    from stats.query import scope_of

    principal = await authenticate(request)
    return json_response(BaselinesOut.model_validate(await _baselines_out(scope_of(principal))))
