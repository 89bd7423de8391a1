"""Console test helpers: sign in through the login page's QR ticket (confirmed through the API as the
mini-program would), and read what the pages carry (the ticket, the CSRF token)."""

from __future__ import annotations

import re

from models import Baseline
from stats.demo import PAPER_BASELINES
from tests.referral_support import institution
from tests.support import bearer, login_demo

TICKET = re.compile(r'data-ticket="(ct_[A-Za-z0-9_-]+)"')
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


async def login_ticket(client) -> str:
    """Open the login page (its cookie lands in the client's jar) and return the ticket its QR code shows."""
    resp = await client.get("/console/login")
    assert resp.status == 200, await resp.text()
    return TICKET.search(await resp.text()).group(1)


async def confirm(client, ticket: str, session: dict):
    """POST /api/v1/console/tickets/{ticket}/confirm as the mini-program of `session`."""
    return await client.post(f"/api/v1/console/tickets/{ticket}/confirm", headers=bearer(session))


async def console_login(client, code: str, role: str) -> str:
    """Sign the client's cookie jar in as the demo (code, role); returns the CSRF token of its session."""
    ticket = await login_ticket(client)
    resp = await confirm(client, ticket, await login_demo(client, code, role))
    assert resp.status == 200, await resp.text()
    resp = await client.get("/console/login/complete", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/console/", await resp.text()
    return await csrf_of(client, "/console/")


async def csrf_of(client, path: str) -> str:
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    return CSRF.search(await resp.text()).group(1)


def cookie(client, name: str) -> str | None:
    for morsel in client.session.cookie_jar:
        if morsel.key == name:
            return morsel.value
    return None


async def as_other_browser(client, method: str, path: str, cookies: dict[str, str], **kwargs):
    """A request from a browser holding exactly `cookies` (a stolen or forged copy), not the client's jar.
    Returns (status, headers, text)."""
    import aiohttp

    header = "; ".join(f"{k}={v}" for k, v in cookies.items())
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as browser:
        async with browser.request(method, client.make_url(path), headers={"Cookie": header},
                                   allow_redirects=False, **kwargs) as resp:
            return resp.status, resp.headers, await resp.text()


async def seed_baselines() -> None:
    """The paper's pre-platform figures for the lead hospital, as `make run` seeds them."""
    lead = await institution("SUBEI")
    for direction, mean_days in PAPER_BASELINES.items():
        await Baseline.create(institution_id=lead.id, direction=direction, period="上线前", mean_days=mean_days, n=60)
