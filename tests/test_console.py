"""The web console over HTTP: login by QR ticket (used twice, expired, a patient, a deactivated staff member),
forged cookies, CSRF, logout, idle timeout, the HIS launch, headers, and the pages of each role driving the same
domain functions as the API. The browser tests are in test_console_browser."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from appkeys import CIPHER, KV_STORE
from console import login as login_pages
from console import sessions
from console.page import CSP, LOGIN_COOKIE, SESSION_COOKIE
from his.simulator.launch import mint_launch_token
from kv import limits
from models import Staff
from tests.console_support import as_other_browser, confirm, console_login, cookie, csrf_of, login_ticket
from tests.referral_support import make_patient, patient_account
from tests.support import bearer, login, login_demo, seeded


async def test_login_by_qr_ticket_gives_an_httponly_session(client):
    await seeded(client)
    ticket = await login_ticket(client)
    assert (await (await client.get("/console/login/status")).json()) == {"state": "pending"}
    doctor = await login_demo(client, "SUBEI", "doctor")
    resp = await confirm(client, ticket, doctor)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["name"] == doctor["account"]["staff"]["name"]
    assert (await (await client.get("/console/login/status")).json()) == {"state": "confirmed"}
    resp = await client.get("/console/login/complete", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console/"
    set_cookie = resp.headers.getall("Set-Cookie")
    session_cookie = next(c for c in set_cookie if c.startswith(SESSION_COOKIE + "="))
    assert "HttpOnly" in session_cookie and "SameSite=Lax" in session_cookie and "Path=/console/" in session_cookie
    page = await client.get("/console/")
    assert page.status == 200
    assert doctor["account"]["staff"]["name"] in await page.text()
    assert cookie(client, LOGIN_COOKIE) in (None, "")  # the login cookie is spent


async def test_a_ticket_confirms_once_and_redeems_once(client):
    await seeded(client)
    ticket = await login_ticket(client)
    replayed_login_cookie = cookie(client, LOGIN_COOKIE)
    assert (await confirm(client, ticket, await login_demo(client, "SUBEI", "doctor"))).status == 200
    again = await confirm(client, ticket, await login_demo(client, "SUBEI", "approver"))
    assert again.status == 410
    assert (await again.json())["error"]["code"] == "CONSOLE_TICKET_USED"
    first = await client.get("/console/login/complete", allow_redirects=False)
    assert first.status == 303 and first.headers["Location"] == "/console/"
    # The same browser's login cookie, replayed, gets nothing more.
    status, headers, _ = await as_other_browser(client, "GET", "/console/login/complete",
                                                {LOGIN_COOKIE: replayed_login_cookie})
    assert status == 303 and headers["Location"].startswith("/console/login?msg=")


async def test_another_browser_cannot_take_a_confirmed_ticket(client):
    await seeded(client)
    ticket = await login_ticket(client)
    assert (await confirm(client, ticket, await login_demo(client, "SUBEI", "doctor"))).status == 200
    status, headers, _ = await as_other_browser(client, "GET", "/console/login/complete",
                                                {LOGIN_COOKIE: f"{ticket}.guessed-nonce"})
    assert status == 303 and headers["Location"].startswith("/console/login?msg=")
    status, _, _ = await as_other_browser(client, "GET", "/console/login/status", {LOGIN_COOKIE: f"{ticket}.x"})
    # The browser that showed the QR code still gets its session.
    resp = await client.get("/console/login/complete", allow_redirects=False)
    assert resp.headers["Location"] == "/console/"


async def test_an_expired_ticket_is_refused(client, monkeypatch):
    await seeded(client)
    monkeypatch.setattr(sessions, "TICKET_TTL", 1)
    ticket = await login_ticket(client)
    await asyncio.sleep(1.3)
    resp = await confirm(client, ticket, await login_demo(client, "SUBEI", "doctor"))
    assert resp.status == 410
    assert (await resp.json())["error"]["code"] == "CONSOLE_TICKET_EXPIRED"
    assert (await (await client.get("/console/login/status")).json()) == {"state": "expired"}
    unknown = await confirm(client, "ct_never-issued", await login_demo(client, "SUBEI", "doctor"))
    assert unknown.status == 410


async def test_a_patient_cannot_confirm_a_console_login(client):
    await seeded(client)
    patient = await make_patient(client.server.app[CIPHER])
    await patient_account(patient, "o_console_patient")
    session = await login(client, "o_console_patient")
    assert session["account"]["kind"] == "patient"
    resp = await confirm(client, await login_ticket(client), session)
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "STAFF_ONLY"


async def test_deactivating_a_staff_member_ends_their_console_session(client):
    await seeded(client)
    await console_login(client, "SUBEI", "doctor")
    assert (await client.get("/console/", allow_redirects=False)).status == 200
    sid = cookie(client, SESSION_COOKIE)
    admin = await login_demo(client, "SUBEI", "admin")
    doctor = await _demo_staff("SUBEI", "doctor")
    resp = await client.patch(f"/api/v1/admin/staff/{doctor.public_id}", json={"is_active": False},
                              headers=bearer(admin))
    assert resp.status == 200, await resp.text()
    resp = await client.get("/console/", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/console/login")
    # Revoked server-side: re-activating does not bring the old session back.
    resp = await client.patch(f"/api/v1/admin/staff/{doctor.public_id}", json={"is_active": True},
                              headers=bearer(admin))
    assert resp.status == 200
    status, _, _ = await as_other_browser(client, "GET", "/console/", {SESSION_COOKIE: sid})
    assert status == 303
    # And a deactivated member cannot confirm a new login either.
    await client.patch(f"/api/v1/admin/staff/{doctor.public_id}", json={"is_active": False}, headers=bearer(admin))
    session = await login_demo(client, "SUBEI", "doctor")
    assert (await confirm(client, await login_ticket(client), session)).status == 403


async def _demo_staff(code: str, role: str) -> Staff:
    from directory.seed import demo_openid
    from models import WeChatAccount

    account = await WeChatAccount.get(openid=demo_openid(code, role))
    return await Staff.get(id=account.staff_id)


async def test_a_forged_session_cookie_is_sent_to_the_login_page(client):
    await seeded(client)
    resp = await client.get("/console", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console/"
    forged = {SESSION_COOKIE: "forged-session-id-0123456789"}
    status, headers, _ = await as_other_browser(client, "GET", "/console/admin/staff", forged)
    assert status == 303 and headers["Location"].startswith("/console/login")
    status, _, _ = await as_other_browser(client, "POST", "/console/logout", forged, data={"csrf_token": "x"})
    assert status == 401


async def test_a_post_without_the_csrf_token_is_refused(client):
    await seeded(client)
    token = await console_login(client, "SUBEI", "admin")
    resp = await client.post("/console/admin/policy", data={"what_to_bring": "身份证"})
    assert resp.status == 403
    assert "安全校验码" in await resp.text()
    resp = await client.post("/console/admin/policy", data={"what_to_bring": "身份证", "csrf_token": "wrong"})
    assert resp.status == 403
    resp = await client.post("/console/logout", data={"csrf_token": token}, allow_redirects=False)
    assert resp.status == 303


async def test_logout_revokes_the_session_on_the_server(client):
    await seeded(client)
    token = await console_login(client, "SUBEI", "doctor")
    sid = cookie(client, SESSION_COOKIE)
    resp = await client.post("/console/logout", data={"csrf_token": token}, allow_redirects=False)
    assert resp.status == 303
    status, _, _ = await as_other_browser(client, "GET", "/console/", {SESSION_COOKIE: sid})  # a kept copy
    assert status == 303


async def test_sessions_end_after_the_idle_timeout_and_the_absolute_lifetime(client):
    kv = client.server.app[KV_STORE]
    session = await sessions.open_session(kv, 1, idle=1)
    assert await sessions.resume_session(kv, session.sid, idle=1, max_age=60) is not None
    await asyncio.sleep(1.3)
    assert await sessions.resume_session(kv, session.sid, idle=1, max_age=60) is None
    old = await sessions.open_session(kv, 1, idle=60)
    assert await sessions.resume_session(kv, old.sid, idle=60, max_age=0) is None


async def test_the_his_launch_opens_a_console_session(client):
    await seeded(client)
    resp = await client.get("/console/his-launch", params={"launch_token": mint_launch_token("SUBEI", "DOCTOR001")},
                            allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console/"
    assert (await client.get("/console/", allow_redirects=False)).status == 200
    token = mint_launch_token("SUBEI", "APPROVER002")
    status, headers, _ = await as_other_browser(client, "POST", "/console/his-launch", {},
                                                data={"launch_token": token})
    assert status == 303 and headers["Location"] == "/console/"
    status, headers, _ = await as_other_browser(client, "POST", "/console/his-launch", {},
                                                data={"launch_token": token})  # one use per token
    assert status == 303 and headers["Location"].startswith("/console/login?msg=")
    bad = await client.get("/console/his-launch", params={"launch_token": "not-a-jwt"}, allow_redirects=False)
    assert bad.headers["Location"].startswith("/console/login?msg=")


async def test_pages_carry_the_csp_and_static_files_cache_headers(client):
    await seeded(client)
    resp = await client.get("/console/login")
    assert resp.headers["Content-Security-Policy"] == CSP
    assert "default-src 'self'" in CSP and "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert resp.headers["Cache-Control"] == "no-store"
    html = await resp.text()
    assert '<html lang="zh-CN">' in html
    src = html.split('<script src="', 1)[1].split('"', 1)[0]
    assert src.startswith("/console/static/console.js?v=")
    static = await client.get(src)
    assert static.status == 200 and "immutable" in static.headers["Cache-Control"]
    assert static.headers["Content-Type"].startswith(("application/javascript", "text/javascript"))
    again = await client.get(src, headers={"If-None-Match": static.headers["ETag"]})
    assert again.status == 304
    for escape in ("/console/static/../app.py", "/console/static/..%2Fapp.py", "/console/static/%2e%2e/app.py"):
        resp = await client.get(escape, allow_redirects=False)
        assert resp.status != 200 or "create_app" not in await resp.text(), escape
    assert (await client.get("/console/static/vendor/jsQR.js")).status == 200


async def test_the_demo_accounts_sign_in_through_the_sandbox(client):
    await seeded(client)
    page = await (await client.get("/console/login")).text()
    assert "演示账号" in page
    form_token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    resp = await client.post("/console/login/demo", data={"openid": "demo_subei_approver", "csrf_token": "bad"})
    assert resp.status == 403
    resp = await client.post("/console/login/demo", data={"openid": "demo_subei_approver", "csrf_token": form_token})
    assert resp.status == 200 and "待审批" in await resp.text()


async def test_production_has_no_demo_login(aiohttp_client, settings):
    from dataclasses import replace

    from app import create_app

    production = replace(settings, wechat_api_base="http://127.0.0.1:9", background_tasks=False)
    client = await aiohttp_client(create_app(production))
    await seeded(client)
    page = await (await client.get("/console/login")).text()
    assert "演示账号" not in page and "扫码登录" in page
    resp = await client.post("/console/login/demo", data={"openid": "demo_subei_admin", "csrf_token": "x"})
    assert resp.status == 404


async def test_pages_need_the_role_the_api_needs_and_stay_in_the_institution(client):
    await seeded(client)
    await console_login(client, "SUBEI", "doctor")
    for path in ("/console/admin/staff", "/console/admin/policy", "/console/desk", "/console/admin/audit"):
        resp = await client.get(path)
        assert resp.status == 403, path
    other = await _demo_staff("DONGGUAN", "doctor")
    admin_client = client
    await console_login(admin_client, "SUBEI", "admin")
    token = await csrf_of(admin_client, "/console/admin/staff")
    resp = await admin_client.post(f"/console/admin/staff/{other.public_id}",
                                   data={"csrf_token": token, "roles": "doctor", "is_active": "false"})
    assert resp.status == 404
    assert (await Staff.get(id=other.id)).is_active


async def test_the_login_page_limits_new_tickets_per_address(client, monkeypatch):
    """Each login page writes a ticket into the store: one address gets TICKETS_PER_MINUTE a minute, then a
    Chinese 429 page and no ticket, and the next minute it may log in again."""
    await seeded(client)
    monkeypatch.setattr(login_pages, "TICKETS_PER_MINUTE", 3)
    clock = SimpleNamespace(time=lambda: 1_800_000_000.0)  # one fixed window, wherever the real minute turns
    monkeypatch.setattr(limits, "time", clock)
    for _ in range(3):
        assert (await client.get("/console/login")).status == 200
    refused = await client.get("/console/login")
    assert refused.status == 429 and "登录页面刷新过于频繁" in await refused.text()
    assert LOGIN_COOKIE not in refused.cookies
    clock.time = lambda: 1_800_000_060.0
    assert (await client.get("/console/login")).status == 200
