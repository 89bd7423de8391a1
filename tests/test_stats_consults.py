"""Consultation figures (issue 12, point 1): requests by state, conversion to referral and the time to the first
expert reply equal a brute-force computation over the rows; a consultation driven through the real commands and
chat counts where it should, for whom it should; the section is exported with the summary."""

from __future__ import annotations

import csv
import io
import random
import uuid
from datetime import UTC, datetime, time, timedelta

from openpyxl import load_workbook

from appkeys import CIPHER
from chat.conversations import open_conversation
from consults.state_machine import RECOMMENDATIONS, Status
from models import ChatMessage, Consultation, Department, Institution, Patient, Referral, Staff
from stats.history import generate
from stats.query import Filters
from tests.consult_support import act, pool_expert, request_consultation
from tests.referral_support import Desk, department
from tests.stats_support import compare_consultations
from timeutil import CHINA_TZ

OFFICE = ("SUBEI", "consortium_admin")


async def _message(conversation_id: int, seq: int, sender_id: int, at: datetime) -> None:
    message = await ChatMessage.create(conversation_id=conversation_id, seq=seq, sender_id=sender_id,
                                       client_msg_id=uuid.uuid4().hex, type="text", body={"text": "…"})
    await ChatMessage.filter(id=message.id).update(created_at=at)


async def _random_consultations(n: int, seed: int) -> None:
    """n consultations in every state, requested over two years, with their chat messages (the requester's and
    the experts'), acceptance times and some submitted referrals made from them."""
    rng = random.Random(seed)
    staff = [s for s in await Staff.all() if s.department_id is not None]  # type: ignore[attr-defined]
    departments = await Department.all()
    patients = await Patient.all().limit(50)
    free = list(await Referral.filter(consultation_id=None).exclude(submitted_at=None).values_list("id", flat=True))
    now = datetime.now(UTC)
    for i in range(n):
        requester, expert = rng.choice(staff), rng.choice(staff)
        target = rng.choice(departments)
        status = rng.choice(list(Status))
        at = now - timedelta(days=rng.uniform(0, 720))
        accepted = status in (Status.ACCEPTED, Status.CONCLUDED) or (status == Status.CANCELLED and rng.random() < .5)
        opinion = {"recommendation": rng.choice(list(RECOMMENDATIONS))} if status == Status.CONCLUDED else {}
        consultation = await Consultation.create(
            code=f"HZT{i:05d}", status=status, patient=rng.choice(patients), requester=requester,
            requester_institution_id=requester.institution_id,  # type: ignore[attr-defined]
            target_institution_id=target.institution_id, target_department=target,  # type: ignore[attr-defined]
            expert=expert if accepted else None, opinion=opinion,
            accepted_at=at + timedelta(seconds=rng.uniform(1, 3 * 86400)) if accepted else None)
        await Consultation.filter(id=consultation.id).update(created_at=at)
        conversation = await open_conversation("consultation", consultation.public_id, [requester.id, expert.id])
        senders = [requester.id] * rng.randint(0, 3) + ([expert.id] * rng.randint(0, 2) if accepted else [])
        rng.shuffle(senders)
        for seq, sender in enumerate(senders, start=1):
            await _message(conversation.id, seq, sender, at + timedelta(seconds=rng.uniform(1, 5 * 86400)))
        if status == Status.CONCLUDED and free and rng.random() < .6:
            await Referral.filter(id=free.pop()).update(consultation_id=consultation.id)


async def test_consultation_figures_of_random_consultations_equal_brute_force(client):
    await generate(client.server.app[CIPHER], referrals=200, years=2, seed=11)
    await _random_consultations(90, seed=3)
    subei = await Institution.get(code="SUBEI")
    dongguan = await Institution.get(code="DONGGUAN")
    card = await department("SUBEI", "CARD")
    end = (datetime.now(UTC) - timedelta(days=30)).date()
    # One requested at China midnight right after the range's last day: outside it.
    await Consultation.filter(code="HZT00000").update(
        created_at=datetime.combine(end + timedelta(days=1), time(), CHINA_TZ).astimezone(UTC))
    for filters in (Filters(), Filters(scope=subei.id), Filters(scope=dongguan.id),
                    Filters(start=end - timedelta(days=300), end=end), Filters(direction="up"),
                    Filters(direction="down", institution_id=subei.id), Filters(direction="lateral"),
                    Filters(department_id=card.id, scope=subei.id, start=end - timedelta(days=500))):
        await compare_consultations(filters)
    # The generated rows did exercise every figure.
    concluded_up = await Consultation.filter(status="concluded").all()
    assert any((c.opinion or {}).get("recommendation") == "refer_up" for c in concluded_up)
    assert await Referral.exclude(consultation_id=None).count() > 5


async def _figures(desk: Desk, who) -> dict[str, dict]:
    body = await desk.ok(await desk.get(who, "/api/v1/stats/summary"))
    return {r["key"]: r for r in body["tables"]["consultations"]["rows"]}


async def test_a_consultation_through_the_real_commands_counts_for_whom_it_should(client):
    desk = await Desk.open(client)
    await pool_expert("SUBEI", "CARD", "o_stats_expert", name="吴心内")
    # One concluded `refer_up`, answered in the chat and referred; one concluded `treat_locally`; one declined.
    first = await desk.ok(await request_consultation(desk), 201)
    await desk.ok(await act(desk, "o_stats_expert", first["id"], "accept"))
    detail = await desk.ok(await desk.client.get(f"/api/v1/consultations/{first['id']}",
                                                 headers=await desk.headers("o_stats_expert")))
    for who in (("DONGGUAN", "doctor"), "o_stats_expert"):
        resp = await desk.client.post(f"/api/v1/conversations/{detail['conversation_id']}/messages",
                                      json={"client_msg_id": uuid.uuid4().hex, "type": "text", "text": "请看心电图"},
                                      headers=await desk.headers(who))
        assert resp.status == 201, await resp.text()
    await desk.ok(await act(desk, "o_stats_expert", first["id"], "conclude",
                            {"opinion": {"recommendation": "refer_up", "advice": "建议上转行冠脉造影"}}))
    await desk.ok(await desk.client.post("/api/v1/referrals", json={"consultation_id": first["id"], "submit": True},
                                         headers=await desk.headers(("DONGGUAN", "doctor"))), 201)
    second = await desk.ok(await request_consultation(desk), 201)
    await desk.ok(await act(desk, "o_stats_expert", second["id"], "accept"))
    await desk.ok(await act(desk, "o_stats_expert", second["id"], "conclude",
                            {"opinion": {"recommendation": "treat_locally", "advice": "本地治疗"}}))
    third = await desk.ok(await request_consultation(desk), 201)
    await desk.ok(await act(desk, "o_stats_expert", third["id"], "decline", {"reason_code": "out_of_scope"}))

    figures = await _figures(desk, OFFICE)
    assert figures["requested"]["n"] == 3
    assert {k: r["n"] for k, r in figures.items() if k.startswith("status.") and r["n"]} == {
        "status.concluded": 2, "status.declined": 1}
    assert (figures["refer_up_referred"]["n"], figures["refer_up_referred"]["of"]) == (1, 1)
    assert figures["refer_up_referred"]["share"] == 1.0
    assert (figures["concluded_referred"]["n"], figures["concluded_referred"]["of"]) == (1, 2)
    assert figures["concluded_referred"]["share"] == 0.5
    # Only the expert's message is a reply (the requester wrote first); two consultations were accepted.
    reply = figures["first_reply"]
    assert reply["n"] == 1 and reply["of"] == 3 and reply["mean"] is not None and reply["mean"] >= 0
    assert reply["median"] == reply["p90"] == reply["mean"]
    assert figures["acceptance"]["n"] == 2
    for scope in (Filters(), Filters(scope=(await Institution.get(code="DONGGUAN")).id)):
        await compare_consultations(scope)
    # Both institutions' admins see them; another institution's does not.
    assert (await _figures(desk, ("DONGGUAN", "admin")))["requested"]["n"] == 3
    assert (await _figures(desk, ("SUBEI", "admin")))["requested"]["n"] == 3
    assert (await _figures(desk, ("GAOYOU", "admin")))["requested"]["n"] == 0
    assert (await _figures(desk, ("GAOYOU", "admin")))["refer_up_referred"]["share"] is None
    # Filters: requested today (China), so a range in the past has none; DONGGUAN → SUBEI is up.
    resp = await desk.get(OFFICE, "/api/v1/stats/summary", **{"from": "2020-01-01", "to": "2020-12-31"})
    assert {r["key"]: r["n"] for r in (await desk.ok(resp))["tables"]["consultations"]["rows"]}["requested"] == 0
    for direction, n in (("up", 3), ("down", 0)):
        resp = await desk.get(OFFICE, "/api/v1/stats/summary", direction=direction)
        rows = (await desk.ok(resp))["tables"]["consultations"]["rows"]
        assert {r["key"]: r["n"] for r in rows}["requested"] == n

    # Exports: the section is a block of the CSV and a sheet of the workbook, shares and hours formatted.
    resp = await desk.get(OFFICE, "/api/v1/stats/summary", format="csv")
    text = (await resp.read()).decode("utf-8-sig")
    block = text.split("\r\n\r\n")[-1]
    rows = list(csv.reader(io.StringIO(block)))
    header = ["指标", "数量", "基数", "比例", "平均(小时)", "中位数(小时)", "P90(小时)"]
    assert rows[0] == ["会诊"] and rows[1] == header
    assert ["“建议上转”会诊转化为转诊", "1", "1", "100.0%", "", "", ""] in rows
    assert ["已出具意见的会诊转化为转诊", "1", "2", "50.0%", "", "", ""] in rows
    resp = await desk.get(OFFICE, "/api/v1/stats/summary", format="xlsx")
    book = load_workbook(io.BytesIO(await resp.read()))
    assert book.sheetnames[-1] == "会诊"
    sheet = book["会诊"]
    assert [c.value for c in sheet[1]] == header
    [row] = [r for r in sheet.iter_rows(min_row=2) if r[0].value == "申请 → 专家首次回复"]
    assert row[1].value == 1 and row[3].number_format == "0.0%" and row[4].number_format == "0.00"
    assert isinstance(row[4].value, int | float)
