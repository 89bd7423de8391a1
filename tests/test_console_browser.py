"""The console in a real browser (Debian's Chromium driven by Playwright): the QR login confirmed through the API,
an admin inviting a doctor and publishing beds, an approver approving and another redirecting, a doctor editing a
draft (and told when it changed meanwhile), an expert inviting colleagues, a clerk checking a patient in by typing a
slip token into the scan field (and the second scan), and every page rendering with the network cut off from
everything but the app. Screenshots of each page land in var/screenshots/ (printed at the end of the run)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from tortoise.transactions import in_transaction

from models import AuditEvent, Staff, WeChatAccount
from referrals.state_machine import Status
from security import audit
from stats.history import generate
from tests.console_browser import ARGS, CHROMIUM, Shots, require_browser
from tests.console_support import seed_baselines
from tests.consult_support import request_consultation
from tests.referral_support import Desk, department, institution, tomorrow
from tests.support import bearer, login, login_code, login_demo, read_qr, seeded
from timeutil import china_today


@pytest.fixture
async def browser():
    require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            await chromium.close()


class Tab:
    """One browser tab on the test server, recording script errors and failed requests."""

    def __init__(self, page, base: str) -> None:
        self.page, self.base = page, base
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"pageerror: {exc}"))
        page.on("console", lambda msg: msg.type == "error" and self.errors.append(f"console: {msg.text}"))
        # A request the browser cancelled because the page moved on (a favicon, mid-navigation) is not an error.
        page.on("requestfailed", lambda req: req.failure != "net::ERR_ABORTED"
                and self.errors.append(f"failed: {req.url} {req.failure}"))
        page.on("response", lambda resp: resp.status >= 400 and self.errors.append(f"{resp.status}: {resp.url}"))

    async def open(self, path: str) -> None:
        resp = await self.page.goto(self.base + path)
        assert resp is not None and resp.status == 200, (path, resp and resp.status)
        await self.page.wait_for_selector("html[data-console-ready='1']")
        await self.check_labels()

    async def check_labels(self) -> None:
        """Every visible form field has a label (or an aria-label where a table row is its label)."""
        unlabeled = await self.page.evaluate("""() => [...document.querySelectorAll('input, select, textarea')]
            .filter(e => e.type !== 'hidden' && !e.labels?.length && !e.getAttribute('aria-label'))
            .map(e => e.name || e.id)""")
        assert unlabeled == [], (self.page.url, unlabeled)

    async def submit(self, selector: str) -> None:
        async with self.page.expect_navigation():
            await self.page.click(selector)


async def tab(browser, client, *, width: int = 1280, height: int = 800) -> Tab:
    context = await browser.new_context(viewport={"width": width, "height": height}, locale="zh-CN")
    return Tab(await context.new_page(), str(client.make_url("")).rstrip("/"))


async def qr_login(t: Tab, client, session: dict, shots: Shots | None = None) -> None:
    """Open the login page, read its QR code off the screen as the mini-program would, confirm it through the
    API with `session`, and wait until the page has signed itself in."""
    await t.open("/console/login")
    if shots:
        await shots(t.page, "login")
    image = await t.page.locator("figure.qr").screenshot()
    ticket = read_qr(image).text
    assert ticket == await t.page.get_attribute("#login", "data-ticket")
    resp = await client.post(f"/api/v1/console/tickets/{ticket}/confirm", headers=bearer(session))
    assert resp.status == 200, await resp.text()
    await t.page.wait_for_url(t.base + "/console/", timeout=10_000)


async def demo_login(t: Tab, openid: str) -> None:
    """The embedded sandbox's demo accounts: pick a person on the login page."""
    await t.open("/console/login")
    await t.page.select_option("#openid", openid)
    await t.submit(".demo button[type=submit]")
    assert t.page.url == t.base + "/console/"


async def test_admin_logs_in_by_qr_invites_a_doctor_and_publishes_beds(client, browser, backend):
    await seeded(client)
    shots = Shots(f"{backend}-admin")
    t = await tab(browser, client)
    await qr_login(t, client, await login_demo(client, "SUBEI", "admin"), shots)
    assert "人员与邀请" in await t.page.inner_text("main")
    await shots(t.page, "home")

    # Invite a doctor: the printed QR carries the one-time token, which binds the new colleague.
    await t.open("/console/admin/staff")
    await shots(t.page, "staff")
    await t.page.fill("#i-name", "赵新医生")
    cardiology = await department("SUBEI", "CARD")
    await t.page.select_option("#i-dept", str(cardiology.public_id))
    await t.submit("#invite-form button[type=submit]")
    await shots(t.page, "invitation")
    token = (await t.page.inner_text("#invite-token")).strip()
    assert read_qr(await t.page.locator("#invitation figure.qr").screenshot()).text == token
    resp = await client.post("/api/v1/auth/bind-staff", json={"code": await login_code(client, "o_new_doctor"),
                                                               "invite_token": token})
    assert resp.status == 201, await resp.text()
    staff = await Staff.get(name="赵新医生")
    assert staff.roles == ["doctor"] and staff.department_id == cardiology.id

    # Publish three days of reserved beds; the month grid shows them, and so does the API.
    await t.open(f"/console/admin/beds?department={cardiology.public_id}")
    first = tomorrow()
    await t.page.fill("#p-from", first.isoformat())
    await t.page.fill("#p-to", (first + timedelta(days=2)).isoformat())
    await t.page.fill("#p-cap", "3")
    await t.submit("#beds-form button[type=submit]")
    assert "已发布" in await t.page.inner_text(".flash")
    cell = t.page.locator(f".day[data-date='{first.isoformat()}']")
    assert await cell.get_attribute("data-capacity") == "3"
    await shots(t.page, "beds")
    admin = await login_demo(client, "SUBEI", "admin")
    resp = await client.get(f"/api/v1/departments/{cardiology.public_id}/capacity",
                            params={"from": first.isoformat(), "to": (first + timedelta(days=2)).isoformat()},
                            headers=bearer(admin))
    assert [d["capacity"] for d in (await resp.json())["days"]] == [3, 3, 3]

    async with in_transaction():  # a sensitive read, as the API records one, for the log to show
        await audit.record("patient.identity_read", "patient", "0" * 32, actor_staff_id=(await _staff_of(
            "demo_subei_admin")).id, institution_id=(await institution("SUBEI")).id, detail={"referral": "ZZ1"})
    for path, name in (("/console/admin/departments", "departments"), ("/console/admin/policy", "policy"),
                       ("/console/admin/jobs", "jobs"), ("/console/admin/audit", "audit")):
        await t.open(path)
        await shots(t.page, name)
    await t.submit("#verify-chain")
    # The read above and this test's admin changes (the invitation, the published beds), each audited.
    assert f"审计日志完整：共 {await AuditEvent.all().count()} 条记录" in await t.page.inner_text(".flash")
    page = await t.page.inner_text("table")
    assert "patient.identity_read" in page and "admin.invitation_created" in page and "admin.capacity_published" in page
    await shots(t.page, "audit-verified")
    assert t.errors == []


async def test_an_approver_approves_a_referral_from_the_desktop(client, browser, backend):
    desk = await Desk.open(client)
    referral = await desk.drive(Status.PENDING_TARGET, source="DONGGUAN", target="SUBEI")
    await desk.publish_beds("SUBEI", "CARD", tomorrow(), 4)
    shots = Shots(f"{backend}-approver")
    t = await tab(browser, client)
    await demo_login(t, "demo_subei_approver")
    await t.open("/console/referrals?box=to_approve")
    await shots(t.page, "worklist")
    async with t.page.expect_navigation():
        await t.page.click(f"text={referral['code']}")
    await t.check_labels()
    await shots(t.page, "detail")
    await t.page.fill("#a-date", tomorrow().isoformat())
    await t.page.fill("#a-ward", "心内一病区")
    await t.page.fill("#a-bed", "12")
    await t.submit("#approve-form button[type=submit]")
    assert "操作已完成" in await t.page.inner_text(".flash")
    assert "已预约入院" in await t.page.inner_text("h1")
    await shots(t.page, "approved")
    body = await desk.detail(("SUBEI", "approver"), referral["id"])
    assert body["status"] == "scheduled" and body["admission"]["bed"] == "12"
    assert body["timeline"][-1]["actor"]["name"] == (await _staff_of("demo_subei_approver")).name
    assert t.errors == []


async def test_an_expert_accepts_and_concludes_a_consultation_from_the_desktop(client, browser, backend):
    desk = await Desk.open(client)
    asked = await desk.ok(await request_consultation(desk), 201)
    shots = Shots(f"{backend}-expert")
    t = await tab(browser, client)
    await demo_login(t, "demo_subei_expert")
    await t.open("/console/consultations?box=pool")
    await shots(t.page, "consultations")
    async with t.page.expect_navigation():
        await t.page.click(f"text={asked['code']}")
    await t.check_labels()
    await t.submit("form[action$='/accept'] button[type=submit]")
    assert "操作已完成" in await t.page.inner_text(".flash") and "会诊中" in await t.page.inner_text("h1")
    await t.check_labels()
    await t.page.select_option("#o-rec", "refer_up")
    await t.page.fill("#o-advice", "建议上转行冠脉造影，转入前停用抗凝药物")
    await shots(t.page, "consultation-accepted")
    await t.submit("#conclude-form button[type=submit]")
    assert "已出具会诊意见" in await t.page.inner_text("h1")
    assert "建议上转行冠脉造影" in await t.page.inner_text("#opinion")
    await shots(t.page, "consultation-concluded")
    body = await desk.ok(await desk.get(("DONGGUAN", "doctor"), f"/api/v1/consultations/{asked['id']}"))
    assert body["status"] == "concluded" and body["opinion"]["recommendation"] == "refer_up"
    assert t.errors == []


async def test_a_target_approver_redirects_a_referral_from_the_desktop(client, browser, backend):
    desk = await Desk.open(client)
    referral = await desk.drive(Status.PENDING_TARGET, source="DONGGUAN", target="SUBEI")
    gaoyou, medicine = await institution("GAOYOU"), await department("GAOYOU", "MED")
    shots = Shots(f"{backend}-redirect")
    t = await tab(browser, client)
    await demo_login(t, "demo_subei_approver")
    await t.open(f"/console/referrals/{referral['id']}")
    await shots(t.page, "detail")
    await t.page.select_option("#d-target", f"{gaoyou.public_id}:{medicine.public_id}")
    await t.page.fill("#d-comment", "本院床位已满，改转县医院内科")
    t.page.once("dialog", lambda dialog: dialog.accept())  # the form asks before it goes
    await t.submit("#redirect-form button[type=submit]")
    assert "操作已完成" in await t.page.inner_text(".flash")
    assert "改转其他机构" in await t.page.inner_text(".timeline")
    assert "redirect-form" not in await t.page.content()  # SUBEI has passed it on: no step left here
    await shots(t.page, "redirected")
    body = await desk.detail(("GAOYOU", "approver"), referral["id"])
    assert body["status"] == "pending_target" and body["target_institution"]["code"] == "GAOYOU"
    assert body["timeline"][-1]["comment"] == "本院床位已满，改转县医院内科"
    assert t.errors == []


async def test_the_referring_doctor_edits_a_draft_from_the_desktop(client, browser, backend):
    desk = await Desk.open(client)
    draft = await desk.drive(Status.DRAFT, source="DONGGUAN", target="SUBEI")
    path = f"/console/referrals/{draft['id']}"
    shots = Shots(f"{backend}-edit")
    t = await tab(browser, client)
    await demo_login(t, "demo_dongguan_doctor")
    await t.open(path)
    await shots(t.page, "draft")
    # Meanwhile the same doctor changes the draft in the mini-program: the page's form is now out of date.
    resp = await client.patch(f"/api/v1/referrals/{draft['id']}", json={"urgency": "emergency"},
                              headers=await desk.headers(("DONGGUAN", "doctor")))
    assert resp.status == 200, await resp.text()
    await t.page.fill("#e-complaint", "胸痛2天，含服硝酸甘油不缓解")
    await t.submit("#edit-form button[type=submit]")
    assert "转诊单已被他人处理" in await t.page.inner_text(".flash.bad")
    assert await t.page.input_value("#e-urgency") == "emergency"  # the form shows the draft as it now is
    await shots(t.page, "changed-meanwhile")
    # The refused step's own page (a 409, as the API answers) is all the browser complained about.
    assert sorted(t.errors) == [f"409: {t.base}{path}/edit", "console: Failed to load resource: the server "
                                "responded with a status of 409 (Conflict)"]
    t.errors.clear()

    await t.page.select_option("#e-urgency", "urgent")
    await t.page.fill("#e-complaint", "胸痛2天，含服硝酸甘油不缓解")
    await t.page.fill("#e-reason", "需上级医院急诊冠脉造影")
    await t.page.fill("#e-phone", "13900001111")
    await t.submit("#edit-form button[type=submit]")
    assert "操作已完成" in await t.page.inner_text(".flash")
    assert "胸痛2天，含服硝酸甘油不缓解" in await t.page.locator("dl.facts").nth(1).inner_text()  # 病情摘要
    await shots(t.page, "edited")
    body = await desk.detail(("DONGGUAN", "doctor"), draft["id"])
    assert body["urgency"] == "urgent" and body["clinical"]["referral_reason"] == "需上级医院急诊冠脉造影"
    assert body["clinical"]["diagnoses"] == draft["clinical"]["diagnoses"] and body["contact_phone"].endswith("1111")

    await t.submit("#submit-form button[type=submit]")
    assert "待" in await t.page.inner_text("h1") and "edit-form" not in await t.page.content()
    assert t.errors == []


async def test_an_expert_invites_colleagues_to_a_consultation_from_the_desktop(client, browser, backend):
    desk = await Desk.open(client)
    asked = await desk.ok(await request_consultation(desk), 201)
    resp = await client.post(f"/api/v1/consultations/{asked['id']}/accept", json={},
                             headers=await desk.headers(("SUBEI", "expert")))
    assert resp.status == 200, await resp.text()
    colleagues = [await _staff_of("demo_gaoyou_expert"), await _staff_of("demo_baoying_expert")]
    shots = Shots(f"{backend}-invite")
    t = await tab(browser, client)
    await demo_login(t, "demo_subei_expert")
    await t.open(f"/console/consultations/{asked['id']}")
    await shots(t.page, "accepted")
    await t.page.select_option("#i-experts", [str(s.public_id) for s in colleagues])
    await t.submit("#invite-form button[type=submit]")
    assert "操作已完成" in await t.page.inner_text(".flash")
    facts = await t.page.inner_text(".facts")
    assert all(s.name in facts for s in colleagues)  # 受邀专家
    assert "邀请专家" in await t.page.inner_text(".timeline")
    await shots(t.page, "invited")
    body = await desk.ok(await desk.get(("GAOYOU", "expert"), f"/api/v1/consultations/{asked['id']}"))
    assert sorted(s["name"] for s in body["invited"]) == sorted(s.name for s in colleagues)
    assert t.errors == []


async def _staff_of(openid: str) -> Staff:
    account = await WeChatAccount.get(openid=openid)
    return await Staff.get(id=account.staff_id)


async def test_a_clerk_checks_a_patient_in_by_typing_the_slip_token(client, browser, backend):
    desk = await Desk.open(client)
    referral = await desk.drive(Status.SCHEDULED, source="DONGGUAN", target="SUBEI", day=china_today())
    resp = await desk.get(("SUBEI", "admission_clerk"), f"/api/v1/referrals/{referral['id']}/slip")
    token = (await desk.ok(resp))["token"]
    shots = Shots(f"{backend}-clerk")
    t = await tab(browser, client)
    await demo_login(t, "demo_subei_admission_clerk")
    await t.open("/console/desk")
    assert await t.page.get_attribute("html", "data-desk-ready") == "1"  # the camera's decoder loaded
    assert referral["code"] not in await t.page.inner_text("main")  # rows show the slip, not the referral
    assert await t.page.evaluate("document.activeElement.id") == "scan-token"
    await shots(t.page, "desk")

    # A USB scanner types the token and Enter into the focused field.
    async with t.page.expect_navigation():
        await t.page.keyboard.type(token)
        await t.page.keyboard.press("Enter")
    result = t.page.locator("#scan-result")
    assert await result.get_attribute("data-code") == "CHECKED_IN"
    assert "入院登记成功" in await result.inner_text() and "心血管内科" in await result.inner_text()
    await shots(t.page, "checked-in")
    assert (await desk.detail(("SUBEI", "admission_clerk"), referral["id"]))["status"] == "admitted"

    assert await t.page.evaluate("document.activeElement.id") == "scan-token"
    async with t.page.expect_navigation():
        await t.page.keyboard.type(token)
        await t.page.keyboard.press("Enter")
    assert await result.get_attribute("data-code") == "SLIP_ALREADY_CHECKED_IN"
    text = await result.inner_text()
    assert "已办理过入院" in text and re.search(r"\d{2}:\d{2}", text)
    assert "warn" in (await result.get_attribute("class"))
    await shots(t.page, "already-checked-in")

    async with t.page.expect_navigation():
        await t.page.keyboard.type("not-a-slip")
        await t.page.keyboard.press("Enter")
    assert await result.get_attribute("data-code") == "SLIP_MALFORMED"
    await shots(t.page, "unreadable")

    tablet = await tab(browser, client, width=768, height=1024)
    await demo_login(tablet, "demo_subei_admission_clerk")
    await tablet.open("/console/desk")
    await shots(tablet.page, "desk-tablet")
    assert await tablet.page.evaluate("document.documentElement.scrollWidth") <= 768
    assert t.errors == [] and tablet.errors == []


def only_the_app(base: str, outside: list[str]):
    """A route handler that lets requests to the app through and cuts off every other origin (recording them)."""

    async def handle(route) -> None:
        if route.request.url.startswith(base + "/"):
            await route.continue_()
        else:
            outside.append(route.request.url)
            await route.abort("internetdisconnected")

    return handle


PAGES = ["/console/", "/console/referrals?box=incoming", "/console/consultations", "/console/desk",
         "/console/admin/beds", "/console/admin/staff", "/console/admin/departments", "/console/admin/policy",
         "/console/admin/jobs", "/console/admin/audit", "/console/stats"]


async def test_every_page_renders_with_only_the_app_reachable(client, browser, backend):
    desk = await Desk.open(client)
    await generate(desk.cipher, referrals=200, years=0.25)  # figures for the charts
    await seed_baselines()
    await desk.drive(Status.SCHEDULED, source="DONGGUAN", target="SUBEI", day=china_today())
    subei = await institution("SUBEI")
    everyone = await Staff.create(institution=subei, name="全能测试员",
                                  roles=["admin", "approver", "admission_clerk", "doctor"])
    await WeChatAccount.create(openid="o_console_all_roles", staff=everyone)
    shots = Shots(f"{backend}-offline")
    for width, height in ((1280, 800), (768, 1024)):
        t = await tab(browser, client, width=width, height=height)
        outside: list[str] = []
        await t.page.context.route("**/*", only_the_app(t.base, outside))
        await qr_login(t, client, await login(client, "o_console_all_roles"))
        for path in PAGES:
            await t.open(path)
            styled = await t.page.evaluate(
                "getComputedStyle(document.querySelector('header.top')).backgroundColor")
            assert styled == "rgb(11, 110, 79)", (path, styled)  # the app's own stylesheet applied
            if path == "/console/desk":
                assert await t.page.get_attribute("html", "data-desk-ready") == "1"
            if path == "/console/stats":  # ECharts, served by the app, drew all three charts on canvas
                await t.page.wait_for_selector("html[data-charts-ready='3']")
                assert await t.page.locator(".chart canvas").count() >= 3
                if width == 1280:
                    await shots(t.page, "stats")
            if width == 768:
                await shots(t.page, "tablet-" + (path.strip("/").replace("/", "-").split("?")[0] or "home"))
        assert outside == [] and t.errors == [], (outside, t.errors)


async def test_an_expired_login_code_is_replaced_by_a_fresh_one(client, browser, monkeypatch):
    from console import sessions

    await seeded(client)
    monkeypatch.setattr(sessions, "TICKET_TTL", 2)
    t = await tab(browser, client)
    await t.open("/console/login")
    first = await t.page.get_attribute("#login", "data-ticket")
    await t.page.wait_for_selector("#login.expired", timeout=10_000)
    assert "过期" in await t.page.inner_text("#login-state")
    await t.page.wait_for_selector(f"#login:not([data-ticket='{first}'])", timeout=10_000)
    second = await t.page.get_attribute("#login", "data-ticket")
    assert second.startswith("ct_") and second != first
    assert t.errors == []
