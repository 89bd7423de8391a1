"""The slip step of `python app.py demo`: fetch the accepted referral's slip, save its QR code as a PNG, check
the patient in as the admission clerk and report the waiting time (submit → admitted), over HTTP like a client."""

from __future__ import annotations

import asyncio
import tempfile
import uuid
from pathlib import Path

import aiohttp


class SlipDemoError(RuntimeError):
    """A step of the slip demo failed; the message says which, in Chinese."""


async def _json(resp: aiohttp.ClientResponse, step: str) -> dict:
    body = await resp.json(content_type=None)
    if resp.status >= 400:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        raise SlipDemoError(f"{step}失败（HTTP {resp.status} {error.get('code', '')}）：{error.get('message', '')}")
    return body


async def demo_slip(http: aiohttp.ClientSession, base_url: str, referral_id: str, clerk_session: dict, *,
                    viewer_session: dict | None = None, out_dir: Path | None = None) -> dict:
    """Show the slip (as ``viewer_session``, the patient, when given; else as the clerk), write its PNG to
    ``out_dir`` (default: the system temp directory), then check the patient in as the clerk.

    Returns {slip_code, png_path, scheduled_date, department, expires_at, checked_in_at, checked_in_by,
    waiting_seconds, waiting_text, already_checked_in}; a rerun on an admitted referral reports the earlier
    check-in instead of failing. Raises SlipDemoError."""
    base = base_url.rstrip("/")
    viewer = {"Authorization": f"Bearer {(viewer_session or clerk_session)['access_token']}"}
    clerk = {"Authorization": f"Bearer {clerk_session['access_token']}"}
    async with http.get(f"{base}/api/v1/referrals/{referral_id}/slip", headers=viewer) as resp:
        slip = await _json(resp, "获取入院凭条")
    result = {"slip_code": slip["code"], "png_path": None, "scheduled_date": slip["scheduled_date"],
              "department": (slip.get("department") or {}).get("name", ""), "expires_at": slip["expires_at"],
              "already_checked_in": slip["status"] == "used"}
    if slip["status"] == "used":
        result.update(checked_in_at=slip["checked_in_at"], checked_in_by=slip["checked_in_by"],
                      waiting_seconds=None, waiting_text=None)
        return result
    if slip["status"] != "active" or not slip["token"]:
        raise SlipDemoError(f"入院凭条{slip['status_name']}，无法办理入院")
    async with http.get(f"{base}/api/v1/slips/{slip['code']}/qr.png", headers=viewer) as resp:
        if resp.status != 200:
            raise SlipDemoError(f"获取凭条二维码失败（HTTP {resp.status}）")
        png = await resp.read()
    path = (out_dir or Path(tempfile.gettempdir())) / f"slip-{slip['code']}.png"
    await asyncio.to_thread(path.write_bytes, png)
    result["png_path"] = str(path)
    # The desk scanner reads the same token the QR carries.
    async with http.post(f"{base}/api/v1/slips/check-in", json={"token": slip["token"]},
                         headers=clerk | {"Idempotency-Key": f"demo-slip-{uuid.uuid4().hex}"}) as resp:
        done = await _json(resp, "扫码办理入院")
    result.update(checked_in_at=done["checked_in_at"], checked_in_by=done["checked_in_by"],
                  waiting_seconds=done["waiting_seconds"], waiting_text=done["waiting_text"])
    return result


def summary_lines(result: dict) -> list[str]:
    """What the demo prints about the slip step."""
    lines = [f"入院凭条 {result['slip_code']}：{result['scheduled_date']} {result['department']}"]
    if result.get("png_path"):
        lines.append(f"凭条二维码已保存：{result['png_path']}")
    if result.get("already_checked_in"):
        lines.append(f"患者此前已由{result['checked_in_by']}办理入院")
    else:
        lines.append(f"住院处{result['checked_in_by']}已扫码办理入院")
        if result.get("waiting_text"):
            lines.append(f"等待时间（提交转诊 → 入院）：{result['waiting_text']}")
    return lines
