"""Helpers the tests share: logging in through the WeChat sandbox, seeding, bearer headers."""

from __future__ import annotations

from datetime import date

from directory.seed import demo_openid, seed_demo
from security.idcard import make_id_number


async def login_code(client, openid: str) -> str:
    resp = await client.post("/wechat-sandbox/sandbox/login-code", json={"openid": openid})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["code"]


async def login(client, openid: str) -> dict:
    """Log in as `openid` through the sandbox; returns the session body."""
    resp = await client.post("/api/v1/auth/wx-login", json={"code": await login_code(client, openid)})
    assert resp.status == 200, await resp.text()
    return await resp.json()


def bearer(session: dict) -> dict:
    return {"Authorization": f"Bearer {session['access_token']}"}


async def seeded(client) -> None:
    await seed_demo()


async def login_demo(client, institution_code: str, role: str) -> dict:
    return await login(client, demo_openid(institution_code, role))


def valid_id(seq: int = 1, birth: date = date(1980, 5, 17), region: str = "321002") -> str:
    return make_id_number(region, birth, seq)
