"""Waiting time (submitted → admitted, the paper's Table 1) and its stages, by direction, period, institution
or department: n, mean, median and 90th percentile in fractional days.

Means come from exact integer sums. Quantiles are PostgreSQL's percentile_cont (linear interpolation between
the ranked values around p·(n - 1), in double precision): on PostgreSQL the database computes them in the
same single scan as the sums; SQLite has no such aggregate, so it ranks each stage's lengths (a window function)
and returns the values at the two ranks around p·(n - 1), interpolated here by the same formula."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from directory import cache
from referrals.state_machine import DIRECTION_NAMES
from stats.query import Filters, Sql
from stats.report import COUNT, DAYS, Column, Table

DAY = 86400

# group name → (SQL expression over the referral row, label)
QUARTER_SQL = "((submitted_month / 100) * 10 + ((submitted_month % 100) + 2) / 3)"
GROUPS = {
    "direction": "direction",
    "month": "submitted_month",
    "quarter": QUARTER_SQL,
    "source_institution": "source_institution_id",
    "target_institution": "target_institution_id",
    "source_department": "source_department_id",
    "target_department": "target_department_id",
}
GROUP_TITLES = {"direction": "方向", "month": "月份", "quarter": "季度", "source_institution": "转出机构",
                "target_institution": "接收机构", "source_department": "转出科室", "target_department": "接收科室"}
# stage → column with its length in seconds
STAGES = {"total": "wait_total_s", "source_approval": "wait_source_s", "target_approval": "wait_target_s",
          "bed": "wait_bed_s"}
STAGE_TITLES = {"total": "等待入院", "source_approval": "转出审批", "target_approval": "接收审批",
                "bed": "等待床位"}
# quantile name → p
QUANTILES = {"median": 0.5, "p90": 0.9}


def days(seconds: float) -> float:
    return round(seconds / DAY, 2)


def percentile_cont(value_at: Callable[[int], float], n: int, p: float) -> float:
    """PostgreSQL's percentile_cont over n ranked values, `value_at(i)` giving the i-th (0-based)."""
    position = p * (n - 1)
    low, high = math.floor(position), math.ceil(position)
    first = value_at(low)
    return first + (value_at(high) - first) * (position - low)


@dataclass
class Figure:
    n: int
    mean_days: float | None
    median_days: float | None
    p90_days: float | None


def _figure(n: int, total: int | None, quantiles: dict[str, float]) -> Figure:
    if not n:
        return Figure(0, None, None, None)
    return Figure(n, days(total / n), days(quantiles["median"]), days(quantiles["p90"]))  # type: ignore[operator]


async def _sqlite_groups(sql: Sql, where: str, group_by: list[str]) -> tuple[list[dict], dict[str, dict]]:
    """SQLite has no percentile aggregate: the database counts and sums by group in one statement, and per
    stage ranks the lengths within each group (ROW_NUMBER over the group, by length) and returns only the
    values at the ranks percentile_cont reads (floor and floor + 1 of p·(n - 1), computed in double precision
    as here), so no row travels to Python and the sorting happens in SQLite's thread, not the event loop."""
    exprs = [GROUPS[k] for k in group_by]
    select = "".join(f"{e} AS g{i}, " for i, e in enumerate(exprs))
    group = f" GROUP BY {', '.join(exprs)}" if exprs else ""
    measures = ", ".join(f"COUNT({c}) AS n_{s}, SUM({c}) AS sum_{s}" for s, c in STAGES.items())
    totals = await sql.rows(f"SELECT {select}COUNT(*) AS submitted, {measures} FROM referral WHERE {where}{group}")
    partition = f"PARTITION BY {', '.join(exprs)} " if exprs else ""
    keys = ", ".join(f"g{i}" for i in range(len(exprs)))
    ranks = ", ".join(f"CAST({p} * (cnt - 1) AS INTEGER){offset}" for p in QUANTILES.values()
                      for offset in ("", " + 1"))
    quantiles: dict[str, dict] = {stage: {} for stage in STAGES}
    for stage, column in STAGES.items():
        rows = await sql.rows(
            f"SELECT {keys + ', ' if keys else ''}v, rk, cnt FROM (SELECT {select}{column} AS v, "
            f"ROW_NUMBER() OVER ({partition}ORDER BY {column}) - 1 AS rk, COUNT(*) OVER ({partition.strip()}) AS cnt "
            f"FROM referral WHERE {where} AND {column} IS NOT NULL) WHERE rk IN ({ranks})")
        ranked: dict[tuple, dict[int, int]] = {}
        counts: dict[tuple, int] = {}
        for row in rows:
            key = tuple(row[f"g{i}"] for i in range(len(exprs)))
            ranked.setdefault(key, {})[row["rk"]] = row["v"]
            counts[key] = row["cnt"]
        for key, values in ranked.items():
            quantiles[stage][key] = {name: percentile_cont(values.__getitem__, counts[key], p)
                                     for name, p in QUANTILES.items()}
    return totals, quantiles


async def _label(group: str, value) -> str:
    if value is None:
        return "未填写"
    if group == "direction":
        return DIRECTION_NAMES.get(value, value)
    if group == "month":
        return f"{value // 100}-{value % 100:02d}"
    if group == "quarter":
        return f"{value // 10}年第{value % 10}季度"
    if group.endswith("institution"):
        return (await cache.institution(value)).name
    department = await cache.department(value)
    institution = await cache.institution(department.institution_id)  # type: ignore[attr-defined]
    return f"{institution.short_name or institution.name} {department.name}"


async def waiting_times(filters: Filters, group_by: list[str]) -> list[dict]:
    """One row per group (one row in all without grouping): its key, label, submitted count and the figure of
    the whole wait and of each stage."""
    sql = Sql()
    where = " AND ".join(filters.where(sql))
    select = "".join(f"{GROUPS[k]} AS g{i}, " for i, k in enumerate(group_by))
    measures = ", ".join(f"COUNT({c}) AS n_{s}, SUM({c}) AS sum_{s}" for s, c in STAGES.items())
    if sql.postgres:  # counts, sums and quantiles in one scan
        ps = ", ".join(str(p) for p in QUANTILES.values())
        measures += "".join(f", percentile_cont(ARRAY[{ps}]::float8[]) WITHIN GROUP (ORDER BY {c}) AS q_{s}"
                            for s, c in STAGES.items())
        group = f" GROUP BY {', '.join(GROUPS[k] for k in group_by)}" if group_by else ""
        totals = await sql.rows(f"SELECT {select}COUNT(*) AS submitted, {measures} FROM referral "
                                f"WHERE {where}{group}")
        quantiles = {stage: {tuple(row[f"g{i}"] for i in range(len(group_by))): dict(zip(QUANTILES, row[f"q_{stage}"],
                                                                                         strict=True))
                             for row in totals if row[f"q_{stage}"] is not None} for stage in STAGES}
    else:
        totals, quantiles = await _sqlite_groups(sql, where, group_by)
    items = []
    for row in totals:
        key = tuple(row[f"g{i}"] for i in range(len(group_by)))
        if not row["submitted"]:
            continue  # an empty table's aggregate row
        labels = [await _label(g, v) for g, v in zip(group_by, key, strict=True)]
        items.append({
            "key": {g: _plain(v) for g, v in zip(group_by, key, strict=True)},
            "label": " · ".join(labels) or "全部",
            "submitted": row["submitted"],
            **{stage: _figure(row[f"n_{stage}"], row[f"sum_{stage}"], quantiles[stage].get(key, {})).__dict__
               for stage in STAGES}})
    items.sort(key=lambda item: tuple(str(item["key"][g]) for g in group_by))
    return items


def _plain(value):
    return value if isinstance(value, str | int) or value is None else str(value)


def waiting_table(items: list[dict], group_by: list[str]) -> Table:
    columns = [Column("label", " · ".join(GROUP_TITLES[g] for g in group_by) or "范围"),
               Column("submitted", "提交转诊数", COUNT)]
    for stage, title in STAGE_TITLES.items():
        columns += [Column(f"{stage}.n", f"{title}例数", COUNT), Column(f"{stage}.mean", f"{title}平均(天)", DAYS),
                    Column(f"{stage}.median", f"{title}中位数(天)", DAYS),
                    Column(f"{stage}.p90", f"{title}P90(天)", DAYS)]
    rows = []
    for item in items:
        row = {"label": item["label"], "submitted": item["submitted"]}
        for stage in STAGES:
            figure = item[stage]
            row |= {f"{stage}.n": figure["n"], f"{stage}.mean": figure["mean_days"],
                    f"{stage}.median": figure["median_days"], f"{stage}.p90": figure["p90_days"]}
        rows.append(row)
    return Table("等待时间", columns, rows)
