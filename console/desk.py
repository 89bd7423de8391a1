"""The admission desk: today's and tomorrow's expected arrivals, the scan field (a USB scanner types the slip's
token and Enter; the camera fills the same field), one unmistakable result, and the no-shows of the past days.
Checking in is slips.checkin.check_in, as for POST /api/v1/slips/check-in."""

from __future__ import annotations

from datetime import timedelta

from aiohttp import web

from console.page import render, user_of
from errors import DomainError
from miniprogram_api.slips import CheckInIn
from models import Referral, Role, Slip
from qr import slip_token
from slips.arrivals import NO_SHOW_DAYS, expected_arrivals, recent_no_shows
from slips.checkin import check_in
from slips.views import check_in_view
from timeutil import china_today

routes = web.RouteTableDef()

# How each refusal reads at the desk: (tone, headline).
VERDICTS = {
    "SLIP_ALREADY_CHECKED_IN": ("warn", "已办理过入院"),
    slip_token.EXPIRED: ("bad", "凭条已过期"),
    "SLIP_REVOKED": ("bad", "凭条已作废"),
    slip_token.OTHER_INSTITUTION: ("bad", "非本院凭条"),
    slip_token.BAD_SIGNATURE: ("bad", "伪造的凭条"),
    slip_token.UNKNOWN_KEY: ("bad", "伪造的凭条"),
    slip_token.MALFORMED: ("bad", "无法识别的二维码"),
    "SLIP_NOT_FOUND": ("bad", "凭条不存在"),
}


async def _page(request: web.Request, *, result: dict | None = None, status: int = 200) -> web.Response:
    user = user_of(request, Role.ADMISSION_CLERK)
    institution_id = user.principal.institution_id
    today = china_today()
    return render(request, "desk.html", status=status, result=result, today=today,
                  tomorrow=today + timedelta(days=1),
                  arrivals_today=await expected_arrivals(institution_id, today),
                  arrivals_tomorrow=await expected_arrivals(institution_id, today + timedelta(days=1)),
                  no_shows=await recent_no_shows(institution_id), no_show_days=NO_SHOW_DAYS)


@routes.get("/desk")
async def desk(request: web.Request) -> web.Response:
    return await _page(request)


async def _refusal(exc: DomainError) -> dict:
    tone, headline = VERDICTS.get(exc.code, ("bad", "不能办理入院"))
    result = {"tone": tone, "code": exc.code, "headline": headline, "message": exc.message, "slip": None}
    if exc.code == "SLIP_ALREADY_CHECKED_IN":
        slip = await Slip.get_or_none(code=exc.detail.get("slip_code", ""))
        if slip is not None:
            referral = await Referral.get(id=slip.referral_id)  # type: ignore[attr-defined]
            result["slip"] = await check_in_view(slip, referral, exc.detail.get("checked_in_by", ""), None)
    return result


@routes.post("/desk/check-in")
async def scan(request: web.Request) -> web.Response:
    user = user_of(request, Role.ADMISSION_CLERK)
    form = await request.post()
    token = " ".join(str(form.get("token", "")).split())
    if not token:
        return await _page(request, result={"tone": "bad", "code": "EMPTY", "headline": "未读到凭条",
                                            "message": "请扫描患者的入院凭条二维码。", "slip": None})
    try:
        body = CheckInIn.model_validate({"token": token})
        done = await check_in(user.principal, body.token)
    except DomainError as exc:
        return await _page(request, result=await _refusal(exc))
    except ValueError:  # the schema's length limit: nothing a slip could be
        return await _page(request, result={"tone": "bad", "code": slip_token.MALFORMED,
                                            "headline": VERDICTS[slip_token.MALFORMED][1],
                                            "message": slip_token.MESSAGES[slip_token.MALFORMED], "slip": None})
    view = await check_in_view(done.slip, done.referral, done.clerk_name,
                               done.waiting.total_seconds() if done.waiting else None)
    return await _page(request, result={"tone": "ok", "code": "CHECKED_IN", "headline": "入院登记成功",
                                        "message": f"已由{done.clerk_name}办理入院登记", "slip": view})
