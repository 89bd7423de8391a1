"""The paper's Table 1, live: pre-platform baselines (常规双向转诊) next to the platform's waiting time
(区域协同双向转诊), up and down, with the change."""

from __future__ import annotations

from dataclasses import dataclass

from accounts.principal import Principal
from directory import cache
from errors import Forbidden, NotFound
from models import Baseline, Institution
from referrals.state_machine import DIRECTION_NAMES
from security.audit import audited
from stats import rollup
from stats.query import Filters, scope_of
from stats.report import COUNT, DAYS, SHARE, TEXT, Column, Table
from stats.waiting import DAY

DIRECTIONS = ("up", "down")


@dataclass
class BaselineIn:
    direction: str
    period: str
    mean_days: float
    n: int
    source_note: str = ""


async def save_baselines(principal: Principal, institution_public_id, items: list[BaselineIn]) -> list[Baseline]:
    """An institution admin sets their own institution's baselines; the consortium office any institution's."""
    scope = scope_of(principal)
    institution_id = principal.institution_id
    if institution_public_id is not None:
        institution = await Institution.get_or_none(public_id=institution_public_id, deleted_at=None)
        if institution is None:
            raise NotFound("未找到该机构", code="INSTITUTION_NOT_FOUND")
        institution_id = institution.id
    if scope is not None and institution_id != scope:
        raise Forbidden("只能填写本机构的基线数据", code="NOT_YOUR_INSTITUTION")
    saved = []
    async with audited("admin.baselines_saved", "institution", str(institution_id),
                       actor_staff_id=principal.staff_id, institution_id=institution_id) as detail:
        for item in items:
            row, _ = await Baseline.update_or_create(
                institution_id=institution_id, direction=item.direction,
                defaults={"period": item.period, "mean_days": item.mean_days, "n": item.n,
                          "source_note": item.source_note, "updated_by_staff_id": principal.staff_id})
            saved.append(row)
        detail["baselines"] = [{"direction": i.direction, "period": i.period, "mean_days": i.mean_days, "n": i.n}
                               for i in items]
    return saved


async def baselines_of(institution_id: int | None) -> list[Baseline]:
    query = Baseline.all().order_by("institution_id", "direction")
    if institution_id is not None:
        query = query.filter(institution_id=institution_id)
    return list(await query)


def _combine(rows: list[Baseline]) -> dict | None:
    """Several institutions' baselines as one: the mean weighted by their numbers of referrals."""
    n = sum(r.n for r in rows)
    if not rows or not n:
        return None
    return {"mean_days": round(sum(r.mean_days * r.n for r in rows) / n, 2), "n": n,
            "period": "；".join(sorted({r.period for r in rows})),
            "source_note": "；".join(r.source_note for r in rows if r.source_note)}


async def table1(filters: Filters) -> list[dict]:
    # Whole months from the rollup (stats/rollup.py), cut months from the referral rows.
    platform: dict[str, dict] = {}
    for row in await rollup.read(rollup.REFERRALS, filters, {"direction": "i.direction"}, ["n_total", "sum_total"]):
        total = platform.setdefault(row["direction"], {"n": 0, "total": 0})
        total["n"] += row["n_total"]
        total["total"] += row["sum_total"]
    institution = filters.institution_id if filters.institution_id is not None else filters.scope
    baselines = await baselines_of(institution)
    result = []
    for direction in DIRECTIONS:
        base = _combine([b for b in baselines if b.direction == direction])
        row = platform.get(direction)
        n = int(row["n"]) if row else 0
        mean = round(int(row["total"]) / n / DAY, 2) if n else None
        change = round(mean - base["mean_days"], 2) if mean is not None and base else None
        result.append({
            "direction": direction, "name": DIRECTION_NAMES[direction],
            "baseline": base, "platform": {"mean_days": mean, "n": n},
            "change_days": change,
            "change_share": round(change / base["mean_days"], 4) if change is not None and base["mean_days"] else None,
        })
    return result


async def institution_label(filters: Filters) -> str:
    institution = filters.institution_id if filters.institution_id is not None else filters.scope
    return (await cache.institution(institution)).name if institution is not None else "医联体"


def table1_table(rows: list[dict]) -> Table:
    return Table("表1 入院平均等待时长", [
        Column("name", "类别", TEXT), Column("baseline", "常规双向转诊(天)", DAYS),
        Column("platform", "区域协同双向转诊(天)", DAYS), Column("change", "变化(天)", DAYS),
        Column("change_share", "变化比例", SHARE), Column("baseline_n", "常规例数", COUNT),
        Column("platform_n", "平台例数", COUNT), Column("period", "基线时期", TEXT)],
        [{"name": r["name"], "baseline": r["baseline"]["mean_days"] if r["baseline"] else None,
          "platform": r["platform"]["mean_days"], "change": r["change_days"], "change_share": r["change_share"],
          "baseline_n": r["baseline"]["n"] if r["baseline"] else None, "platform_n": r["platform"]["n"],
          "period": r["baseline"]["period"] if r["baseline"] else ""} for r in rows])
