"""Statistics pages: the figures of the stats endpoints (Table 1, waiting times by stage, Table 2 satisfaction,
the summary tables) as charts drawn by the vendored ECharts, with the same filters and CSV/XLSX exports. Who sees
what is stats.query.scope_of, as for the API (institution admins: their own; the consortium office: all)."""

from __future__ import annotations

import json
from typing import Literal

from aiohttp import web
from pydantic import Field, ValidationError

from console.page import render, user_of
from miniprogram_api.routing import validation_error
from miniprogram_api.stats import StatsQuery
from models import Institution, Role
from stats import report
from stats.query import Filters, build_filters
from stats.satisfaction import satisfaction, satisfaction_tables
from stats.summary import summary
from stats.table1 import institution_label, table1, table1_table
from stats.waiting import waiting_table, waiting_times

routes = web.RouteTableDef()
STAGES = {"source_approval": "转出审批", "target_approval": "接收审批", "bed": "预约到入院"}
EXPORTS = {"table1": "表1_入院平均等待时长", "waiting": "转诊等待时间", "satisfaction": "表2_满意度",
           "summary": "转诊概况"}


class ExportQuery(StatsQuery):
    table: Literal["table1", "waiting", "satisfaction", "summary"] = Field(default="table1")


def _query(request: web.Request, model: type[StatsQuery]) -> StatsQuery:
    params = {k: v for k, v in request.query.items() if v != "" and k != "msg"}
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        raise validation_error(exc) from None


async def _filters(request: web.Request, query: StatsQuery) -> Filters:
    user = user_of(request, Role.ADMIN, Role.CONSORTIUM_ADMIN)
    return await build_filters(user.principal, start=query.date_from, end=query.date_to, direction=query.direction,
                               institution=query.institution_id, department=query.department_id)


def _charts(table1_rows: list[dict], waiting: list[dict], answers: list[dict]) -> dict:
    """What the charts draw, as plain series (stats.js turns them into ECharts options)."""
    periods = sorted({r["period"] for r in answers})
    return {
        "table1": {"categories": [r["name"] for r in table1_rows],
                   "series": [{"name": "常规双向转诊", "data": [r["baseline"]["mean_days"] if r["baseline"] else None
                                                            for r in table1_rows]},
                              {"name": "区域协同双向转诊", "data": [r["platform"]["mean_days"] for r in table1_rows]}]},
        "stages": {"categories": [r["label"] for r in waiting],
                   "series": [{"name": name, "stack": "wait", "data": [r[stage]["mean_days"] for r in waiting]}
                              for stage, name in STAGES.items()]},
        "satisfaction": {"categories": periods,
                         "series": [{"name": who, "data": [next((round(r["satisfied_share"] * 100, 1)
                                                                  for r in answers if r["respondent_name"] == who
                                                                  and r["period"] == p and r["satisfied_share"]
                                                                  is not None), None) for p in periods]}
                                    for who in sorted({r["respondent_name"] for r in answers})]},
    }


@routes.get("/stats")
async def stats_page(request: web.Request) -> web.Response:
    query = _query(request, StatsQuery)
    filters = await _filters(request, query)
    table1_rows = await table1(filters)
    waiting = await waiting_times(filters, ["direction"])
    answers = await satisfaction(filters, "quarter")
    tables = list((await summary(filters)).values())
    institutions = (await Institution.filter(deleted_at=None).order_by("id")
                    if filters.scope is None else [])
    return render(request, "stats.html", query=query, scope=await institution_label(Filters(scope=filters.scope)),
                  label=await institution_label(filters), table1=table1_rows, waiting=waiting, answers=answers,
                  tables=tables, institutions=institutions,
                  # In a <script type="application/json"> block: "</" must not close it.
                  charts=json.dumps(_charts(table1_rows, waiting, answers), ensure_ascii=False).replace("</", "<\\/"),
                  export_query={k: v for k, v in request.query.items() if k in ("from", "to", "direction",
                                                                                 "institution_id") and v})


@routes.get("/stats/export")
async def stats_export(request: web.Request) -> web.Response:
    query = _query(request, ExportQuery)
    filters = await _filters(request, query)
    which = query.table  # type: ignore[attr-defined]
    if which == "table1":
        tables = [table1_table(await table1(filters))]
    elif which == "waiting":
        tables = [waiting_table(await waiting_times(filters, ["direction"]), ["direction"])]
    elif which == "satisfaction":
        tables = satisfaction_tables(await satisfaction(filters, "quarter"))
    else:
        tables = list((await summary(filters)).values())
    fmt = query.format if query.format in ("csv", "xlsx") else "xlsx"
    span = f"{filters.start or '开始'}至{filters.end or '今'}"
    body, content_type, disposition = report.export(tables, fmt, f"{EXPORTS[which]}_{span}")
    return web.Response(body=body, headers={"Content-Type": content_type, "Content-Disposition": disposition})
