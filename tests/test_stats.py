"""Figures (issue 12, points 1, 2, 4 and 5): every figure equals a brute-force computation over the rows, who
sees what, bad filters, Table 1 with baselines, China days, and the CSV/XLSX exports."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from unittest.mock import patch
from urllib.parse import unquote

from hypothesis import given
from hypothesis import strategies as st
from openpyxl import load_workbook

from appkeys import CIPHER
from models import Institution, Referral
from referrals.state_machine import Status
from stats.history import generate
from stats.query import Filters
from stats.rollup import split_range
from tests.referral_support import Desk, department, make_patient, patient_account
from tests.stats_support import compare_everything

ENDPOINTS = ["/api/v1/stats/waiting-times", "/api/v1/stats/summary", "/api/v1/stats/table1",
             "/api/v1/stats/satisfaction"]
OFFICE = ("SUBEI", "consortium_admin")


async def test_every_figure_of_a_generated_history_equals_brute_force(client):
    app = client.server.app
    counts = await generate(app[CIPHER], referrals=600, years=2, seed=5)
    assert counts["referrals"] == 600 and counts["answers"] > 100
    subei = await Institution.get(code="SUBEI")
    gaoyou = await Institution.get(code="GAOYOU")
    card = await department("SUBEI", "CARD")
    end = (datetime.now(UTC) - timedelta(days=14)).date()
    for filters in (Filters(), Filters(scope=subei.id), Filters(start=end - timedelta(days=200), end=end),
                    Filters(direction="up", institution_id=gaoyou.id),
                    Filters(department_id=card.id, scope=subei.id, start=end - timedelta(days=400))):
        await compare_everything(filters)


async def test_only_admins_see_figures_and_an_institution_only_its_own(client):
    desk = await Desk.open(client)
    await desk.drive(Status.COMPLETED, source="DONGGUAN", target="SUBEI")
    await desk.drive(Status.REJECTED, source="GAOYOU", target="BAOYING", dept="MED")
    await patient_account(await make_patient(desk.cipher), "o_stats_patient")
    for who in (("SUBEI", "doctor"), ("SUBEI", "approver"), ("SUBEI", "expert"), ("DONGGUAN", "admission_clerk"),
                "o_stats_patient"):
        for path in ENDPOINTS:
            resp = await desk.get(who, path)
            assert resp.status == 403, (who, path)
            assert (await resp.json())["error"]["code"] == "STATS_FORBIDDEN"

    async def submitted(who) -> dict[str, int]:
        body = await desk.ok(await desk.get(who, "/api/v1/stats/summary"))
        return {r["status"]: r["n"] for r in body["tables"]["by_status"]["rows"] if r["n"]}

    assert await submitted(OFFICE) == {"completed": 1, "rejected": 1}
    assert await submitted(("SUBEI", "admin")) == {"completed": 1}
    assert await submitted(("DONGGUAN", "admin")) == {"completed": 1}
    assert await submitted(("BAOYING", "admin")) == {"rejected": 1}
    assert await submitted(("WENHE", "admin")) == {}
    body = await desk.ok(await desk.get(("BAOYING", "admin"), "/api/v1/stats/summary"))
    assert body["filters"] == {"from": None, "to": None, "direction": None, "scope": "宝应县人民医院"}
    assert {r["reason"]: r["n"] for r in body["tables"]["rejections"]["rows"]}["not_indicated"] == 1  # at GAOYOU
    body = await desk.ok(await desk.get(OFFICE, "/api/v1/stats/waiting-times"))
    [lateral, up] = body["items"]
    assert lateral["key"] == {"direction": "lateral"} and lateral["total"]["n"] == 0 and lateral["submitted"] == 1
    assert lateral["total"]["mean_days"] is None
    assert up["key"] == {"direction": "up"} and up["label"] == "上转" and up["total"]["n"] == 1
    assert up["total"]["mean_days"] is not None and up["bed"]["n"] == 1 and up["submitted"] == 1


async def test_bad_filters_get_a_clear_4xx(client):
    desk = await Desk.open(client)
    cases = [({"from": "2026-05-01", "to": "2026-04-01"}, 422, "INVALID_DATE_RANGE"),
             ({"from": "2019-01-01", "to": "2025-01-02"}, 422, "INVALID_DATE_RANGE"),
             ({"from": "2026-13-01"}, 422, "INVALID_INPUT"),
             ({"institution_id": "6f1c7a52-2f7e-4a53-9b0c-0d1e2f3a4b5c"}, 404, "INSTITUTION_NOT_FOUND"),
             ({"department_id": "6f1c7a52-2f7e-4a53-9b0c-0d1e2f3a4b5c"}, 404, "DEPARTMENT_NOT_FOUND"),
             ({"institution_id": "nonsense"}, 422, "INVALID_INPUT"),
             ({"format": "pdf"}, 422, "INVALID_INPUT"),
             ({"direction": "sideways"}, 422, "INVALID_INPUT")]
    for path in ENDPOINTS:
        for params, status, code in cases:
            resp = await desk.get(OFFICE, path, **params)
            assert resp.status == status, (path, params, await resp.text())
            error = (await resp.json())["error"]
            assert error["code"] == code and error["message"], (path, params)
    gaoyou = await Institution.get(code="GAOYOU")
    card = await department("SUBEI", "CARD")
    resp = await desk.get(OFFICE, ENDPOINTS[0], institution_id=str(gaoyou.public_id), department_id=str(card.public_id))
    assert resp.status == 404  # a department of another institution
    resp = await desk.get(OFFICE, ENDPOINTS[0], group_by="direction,weather")
    assert resp.status == 422 and "分组" in (await resp.json())["error"]["message"]
    resp = await desk.get(OFFICE, ENDPOINTS[3], period="decade")
    assert resp.status == 422
    resp = await desk.get(OFFICE, ENDPOINTS[0], **{"from": "2021-01-01", "to": "2025-12-31"})
    assert resp.status == 200  # five years is allowed


async def test_table1_puts_the_baseline_beside_the_platform(client):
    desk = await Desk.open(client)
    body = await desk.ok(await desk.drive(Status.COMPLETED, source="DONGGUAN", target="SUBEI") and
                         await desk.get(OFFICE, "/api/v1/stats/table1"))
    assert [r["name"] for r in body["rows"]] == ["上转", "下转"] and body["rows"][0]["baseline"] is None
    assert body["columns"] == ["类别", "常规双向转诊", "区域协同双向转诊", "变化"]
    items = [{"direction": "up", "period": "2019年", "mean_days": 5.45, "n": 60, "source_note": "病案室统计"},
             {"direction": "down", "period": "2019年", "mean_days": 3.23, "n": 40}]
    resp = await desk.client.put("/api/v1/admin/baselines", json={"items": items},
                                 headers=await desk.headers(("SUBEI", "admin")))
    saved = await desk.ok(resp)
    assert {(i["direction"], i["mean_days"]) for i in saved["items"]} == {("up", 5.45), ("down", 3.23)}
    subei = await Institution.get(code="SUBEI")
    gaoyou = await Institution.get(code="GAOYOU")
    # Another institution's admin may not write SUBEI's figures; a doctor none at all; the office anyone's.
    resp = await desk.client.put("/api/v1/admin/baselines", headers=await desk.headers(("GAOYOU", "admin")),
                                 json={"institution_id": str(subei.public_id), "items": items})
    assert resp.status == 403
    resp = await desk.client.put("/api/v1/admin/baselines", json={"items": items},
                                 headers=await desk.headers(("SUBEI", "doctor")))
    assert resp.status == 403
    resp = await desk.client.put("/api/v1/admin/baselines", headers=await desk.headers(OFFICE), json={
        "institution_id": str(gaoyou.public_id), "items": [{"direction": "up", "period": "2019年", "mean_days": 6.45,
                                                            "n": 20}]})
    await desk.ok(resp)
    resp = await desk.client.put("/api/v1/admin/baselines", headers=await desk.headers(OFFICE),
                                 json={"items": [{"direction": "up", "period": "x", "mean_days": -1, "n": 1}]})
    assert resp.status == 422
    referral = await Referral.get(status=Status.COMPLETED)
    platform = round((referral.admitted_at - referral.submitted_at).total_seconds() // 1 / 86400, 2)
    [up, down] = (await desk.ok(await desk.get(("SUBEI", "admin"), "/api/v1/stats/table1")))["rows"]
    assert up["baseline"]["mean_days"] == 5.45 and up["baseline"]["source_note"] == "病案室统计"
    assert up["platform"] == {"mean_days": platform, "n": 1}
    assert up["change_days"] == round(platform - 5.45, 2)
    assert down["baseline"]["mean_days"] == 3.23 and down["platform"] == {"mean_days": None, "n": 0}
    assert down["change_days"] is None
    # The consortium's baseline is the institutions' weighted by their numbers: (5.45·60 + 6.45·20) / 80.
    [up, _] = (await desk.ok(await desk.get(OFFICE, "/api/v1/stats/table1")))["rows"]
    assert up["baseline"]["mean_days"] == round((5.45 * 60 + 6.45 * 20) / 80, 2) and up["baseline"]["n"] == 80
    # Filtered to GAOYOU: its own baseline, and no platform referral of it yet.
    [up, _] = (await desk.ok(await desk.get(OFFICE, "/api/v1/stats/table1",
                                            institution_id=str(gaoyou.public_id))))["rows"]
    assert up["baseline"]["mean_days"] == 6.45 and up["platform"]["n"] == 0
    listed = await desk.ok(await desk.get(OFFICE, "/api/v1/admin/baselines"))
    assert len(listed["items"]) == 3


async def test_a_referral_submitted_at_2330_china_time_counts_on_that_day(client):
    desk = await Desk.open(client)
    late_evening = datetime(2026, 3, 31, 15, 30, tzinfo=UTC)  # 23:30 on 31 March in China
    with patch("referrals.commands._now", lambda: late_evening):
        body = await desk.drive(Status.PENDING_SOURCE, source="DONGGUAN", target="SUBEI")
    referral = await Referral.get(public_id=body["id"])
    assert referral.submitted_day == date(2026, 3, 31) and referral.submitted_month == 202603

    async def submitted(**params) -> int:
        resp = await desk.get(OFFICE, "/api/v1/stats/waiting-times", group_by="", **params)
        items = (await desk.ok(resp))["items"]
        return items[0]["submitted"] if items else 0

    assert await submitted(**{"from": "2026-03-31", "to": "2026-03-31"}) == 1
    assert await submitted(**{"from": "2026-04-01", "to": "2026-04-01"}) == 0
    body = await desk.ok(await desk.get(OFFICE, "/api/v1/stats/waiting-times", group_by="quarter,month"))
    assert [i["label"] for i in body["items"]] == ["2026年第1季度 · 2026-03"]


async def test_exports_csv_with_bom_and_a_real_workbook_with_chinese_names(client):
    desk = await Desk.open(client)
    await desk.drive(Status.COMPLETED, source="DONGGUAN", target="SUBEI")
    for path in ENDPOINTS:
        resp = await desk.get(OFFICE, path, format="csv", **{"from": "2026-01-01", "to": "2030-12-31"})
        assert resp.status == 200, await resp.text()
        assert resp.headers["Content-Type"] == "text/csv; charset=utf-8"
        disposition = resp.headers["Content-Disposition"]
        assert disposition.startswith("attachment; filename=\"") and "filename*=UTF-8''" in disposition
        name = unquote(disposition.split("filename*=UTF-8''")[1])
        assert name.endswith("_2026-01-01至2030-12-31.csv") and any("\u4e00" <= ch <= "\u9fff" for ch in name)
        raw = await resp.read()
        assert raw.startswith(b"\xef\xbb\xbf")
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
        assert rows and rows[0]

        resp = await desk.get(OFFICE, path, format="xlsx")
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith(
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet")
        assert unquote(resp.headers["Content-Disposition"].split("filename*=UTF-8''")[1]).endswith(".xlsx")
        book = load_workbook(io.BytesIO(await resp.read()))
        assert book.sheetnames
        for sheet in book.worksheets:
            header = [c.value for c in sheet[1]]
            assert all(isinstance(h, str) and h for h in header), (path, sheet.title, header)
            assert sheet[1][0].font.bold
    # Waiting times: the figures are numbers with the days' format, the header names them in Chinese.
    resp = await desk.get(OFFICE, ENDPOINTS[0], format="xlsx")
    sheet = load_workbook(io.BytesIO(await resp.read()))["等待时间"]
    header = [c.value for c in sheet[1]]
    assert header[:3] == ["方向", "提交转诊数", "等待入院例数"]
    row = [c for c in sheet[2]]
    assert row[0].value == "上转" and row[1].value == 1 and row[1].number_format == "0"
    mean = row[header.index("等待入院平均(天)")]
    assert isinstance(mean.value, int | float) and mean.number_format == "0.00"
    # Summary: one sheet per table, shares as percentages.
    resp = await desk.get(OFFICE, ENDPOINTS[1], format="xlsx")
    book = load_workbook(io.BytesIO(await resp.read()))
    assert book.sheetnames == ["按状态", "拒绝原因", "流程指标", "预留床位使用", "会诊"]
    status = book["按状态"]
    completed = [r for r in status.iter_rows(min_row=2) if r[0].value == "completed"][0]
    assert completed[2].value == 1 and completed[3].value == 1.0 and completed[3].number_format == "0.0%"
    # Table 1 as CSV: the paper's layout.
    resp = await desk.get(OFFICE, ENDPOINTS[2], format="csv")
    rows = list(csv.reader(io.StringIO((await resp.read()).decode("utf-8-sig"))))
    assert rows[0][:3] == ["类别", "常规双向转诊(天)", "区域协同双向转诊(天)"]
    assert [r[0] for r in rows[1:]] == ["上转", "下转"]


async def test_the_figure_routes_declare_their_downloads_beside_the_json(client):
    # They answered csv/xlsx while the document said JSON only: a client generated from it refused the download.
    document = await (await client.get("/api/v1/openapi.json")).json()
    for path in ENDPOINTS:
        content = document["paths"][path]["get"]["responses"]["200"]["content"]
        assert set(content) == {"application/json", "text/csv",
                                "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}, path
        assert "$ref" in content["application/json"]["schema"], path
        assert content["text/csv"]["schema"] == {"type": "string"}, path


@given(start=st.one_of(st.none(), st.dates(min_value=date(2023, 1, 1), max_value=date(2026, 12, 31))),
       length=st.integers(min_value=0, max_value=800), open_end=st.booleans())
def test_a_range_splits_into_whole_months_and_days_that_cover_it_once(start, length, open_end):
    # Table 2 reads whole months from its rollup and the rest from the rows: every day of the range exactly once.
    end = None if open_end else (start or date(2024, 6, 15)) + timedelta(days=length)
    months, days = split_range(start, end)
    low, high = date(2022, 12, 1), date(2028, 1, 31)
    covered = Counter()
    day = low
    while day <= high:
        m = day.year * 100 + day.month
        covered[day] += months is not None and (months[0] is None or m >= months[0]) and \
            (months[1] is None or m <= months[1])
        covered[day] += sum((a is None or day >= a) and (b is None or day <= b) for a, b in days)
        day += timedelta(days=1)
    for day, times in covered.items():
        inside = (start is None or day >= start) and (end is None or day <= end)
        assert times == int(inside), (start, end, day, months, days)
