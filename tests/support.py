"""Helpers the tests share: logging in through the WeChat sandbox, seeding, bearer headers."""

from __future__ import annotations

import asyncio
import base64
import io
import os
import sys
from datetime import date
from pathlib import Path

import zxingcpp
from PIL import Image

from directory.seed import demo_openid, seed_demo
from security.idcard import make_id_number

ROOT = Path(__file__).resolve().parent.parent


async def login_code(client, openid: str) -> str:
    resp = await client.post("/wechat-sandbox/sandbox/login-code", json={"openid": openid})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["code"]


async def login(client, openid: str) -> dict:
    """Log in as `openid` through the sandbox; returns the session body."""
    resp = await client.post("/api/v1/auth/wx-login", json={"code": await login_code(client, openid)})
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def phone_code(client, phone: str) -> str:
    """What the getPhoneNumber button gives a user whose WeChat-verified number is `phone`."""
    resp = await client.post("/wechat-sandbox/sandbox/phone-code", json={"phone": phone})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["code"]


def bearer(session: dict) -> dict:
    return {"Authorization": f"Bearer {session['access_token']}"}


async def seeded(client) -> None:
    await seed_demo()


async def login_demo(client, institution_code: str, role: str) -> dict:
    return await login(client, demo_openid(institution_code, role))


def read_qr(png: bytes | str | Image.Image) -> zxingcpp.Result:
    """The one QR symbol in a PNG (bytes, a data: URL or an opened image), read the way a desk scanner does.

    Only QR is searched for: with every format on, zxing now and then also "finds" a short Codabar in the
    modules of a perfectly good symbol (about 1 image in 600), which made these tests flaky."""
    if isinstance(png, str):
        prefix = "data:image/png;base64,"
        assert png.startswith(prefix), png[:40]
        png = base64.b64decode(png[len(prefix):])
    image = png if isinstance(png, Image.Image) else Image.open(io.BytesIO(png))
    [barcode] = zxingcpp.read_barcodes(image, formats=zxingcpp.BarcodeFormat.QRCode)
    return barcode


def valid_id(seq: int = 1, birth: date = date(1980, 5, 17), region: str = "321002") -> str:
    return make_id_number(region, birth, seq)


async def run_app_cli(settings, *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run `python app.py <args>` against this test's own database and keys: (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {"DATA_DIR": str(settings.data_dir), "JWT_SECRET": settings.jwt_secret,
            "DATA_KEY": base64.urlsafe_b64encode(settings.data_key).decode(),
            "LOOKUP_KEY": base64.urlsafe_b64encode(settings.lookup_key).decode()}
    if settings.database_url:
        env["DATABASE_URL"] = settings.database_url
    process = await asyncio.create_subprocess_exec(
        sys.executable, "app.py", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(process.communicate(), timeout=timeout)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    return process.returncode, out.decode(), err.decode()
