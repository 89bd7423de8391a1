"""Waiting time (submitted → admitted, the paper's Table 1) and its stages, by direction, period, institution
or department: n, mean, median and 90th percentile in fractional days.

Means come from exact integer sums; quantiles interpolate linearly between the two ranked values around
(n - 1)·p (PostgreSQL's percentile_cont), which the database picks with a window function, so only a few rows
per group leave it."""

from __future__ import annotations

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
# quantile name → p as a fraction num/den
QUANTILES = {"median": (1, 2), "p90": (9, 10)}


def days(seconds: float) -> float:
    return round(seconds / DAY, 2)


def quantile_position(n: int, num: int, den: int) -> tuple[int, float]:
    """The 1-based rank below (n - 1)·p and the fraction of the way to the next one."""
    k, rest = divmod((n - 1) * num, den)
    return k + 1, rest / den


@dataclass
class Figure:
    n: int
    mean_days: float | None
    median_days: float | None
    p90_days: float | None


def _figure(n: int, total: int | None, picks: dict[int, int]) -> Figure:
    if not n:
        return Figure(0, None, None, None)
    values = {}
    for name, (num, den) in QUANTILES.items():
        rank, fraction = quantile_position(n, num, den)
        low = picks[rank]
        high = picks.get(rank + 1, low)
        values[name] = days(low + (high - low) * fraction)
    return Figure(n, days(total / n), values["median"], values["p90"])  # type: ignore[operator]


async def _quantile_picks(filters: Filters, keys: list[str], column: str) -> dict[tuple, dict[int, int]]:
    sql = Sql()
    where = " AND ".join([*filters.where(sql), f"{column} IS NOT NULL"])
    select = "".join(f"{GROUPS[k]} AS g{i}, " for i, k in enumerate(keys))
    outer = "".join(f"g{i}, " for i in range(len(keys)))
    partition = f"PARTITION BY {', '.join(GROUPS[k] for k in keys)} " if keys else ""
    positions = " OR ".join(f"rn = (n - 1) * {num} / {den} + {step}"
                            for num, den in QUANTILES.values() for step in (1, 2))
    rows = await sql.rows(
        f"SELECT {outer}v, rn FROM (SELECT {select}{column} AS v, "
        f"ROW_NUMBER() OVER ({partition}ORDER BY {column}) AS rn, COUNT(*) OVER ({partition.strip()}) AS n "
        f"FROM referral WHERE {where}) t WHERE {positions}")
    picks: dict[tuple, dict[int, int]] = {}
    for row in rows:
        picks.setdefault(tuple(row[f"g{i}"] for i in range(len(keys))), {})[row["rn"]] = row["v"]
    return picks


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
    group = f" GROUP BY {', '.join(GROUPS[k] for k in group_by)}" if group_by else ""
    totals = await sql.rows(f"SELECT {select}COUNT(*) AS submitted, {measures} FROM referral WHERE {where}{group}")
    picks = {stage: await _quantile_picks(filters, group_by, column) for stage, column in STAGES.items()}
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
            **{stage: _figure(row[f"n_{stage}"], row[f"sum_{stage}"], picks[stage].get(key, {})).__dict__
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
