"""Admission-slip routes: the patient's slip, its QR code and mini-program code, the desk's check-in and the
public keys for offline verification. The rules live in the ``slips`` package."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, Field

import slips.jobs  # noqa: F401  (registers the slip.expire job handler)
from accounts.principal import authenticate
from appkeys import CIPHER, SETTINGS, WECHAT
from directory import cache
from errors import Gone
from miniprogram_api.idempotency import idempotent
from miniprogram_api.routing import Api, json_response, parse_body
from models import Referral, Slip, SlipState
from slips import image_urls, images, keys
from slips.access import slip_by_code, slip_of_referral, visible_slip
from slips.checkin import check_in
from slips.image_urls import ImageLinks
from slips.tokens import token_for
from slips.views import STATE_NAMES, check_in_view, effective_state, slip_view

api = Api()
TAGS = ["slips"]
IMAGE_CACHE_CONTROL = "private, max-age=3600"
JWKS_CACHE_CONTROL = "public, max-age=300"
IMAGE_URL_REFUSED, IMAGE_URL_REFUSAL = 403, "SLIP_IMAGE_URL_INVALID / SLIP_IMAGE_URL_EXPIRED：签名链接被改动或已过期"


class SlipInstitutionOut(BaseModel):
    id: str
    code: str
    name: str
    address: str
    phone: str


class SlipDepartmentOut(BaseModel):
    id: str
    code: str
    name: str


class SlipOut(BaseModel):
    code: str = Field(description="入院凭条编号（住院处可口头核对）")
    status: Literal["active", "used", "revoked", "expired"]
    status_name: str
    referral_id: str
    referral_code: str
    patient_name: str = Field(description="脱敏姓名")
    institution: SlipInstitutionOut = Field(description="入院医院")
    scheduled_date: date
    department: SlipDepartmentOut | None
    ward: str
    bed: str
    what_to_bring: str = Field(description="入院需携带的材料")
    certificate_no: str | None = Field(description="HIS 电子住院证号（HIS 开具后才有）")
    issued_at: datetime
    expires_at: datetime = Field(description="预约入院日当天结束后再加医院设定的宽限时间")
    checked_in_at: datetime | None
    checked_in_by: str | None
    revoked_at: datetime | None
    revoked_reason: str | None
    token: str | None = Field(description="二维码内容：签名令牌（仅含凭条编号、入院医院和有效期）；凭条有效时才有")
    qr_png_url: str | None = Field(description="二维码图片的签名链接（用于 <image src>，SLIP_IMAGE_URL_TTL 秒内有效）")
    qr_svg_url: str | None
    wxacode_url: str | None = Field(description="打开凭条页面的小程序码（签名链接）")


class SlipSummaryOut(BaseModel):
    code: str
    status: str
    status_name: str
    scheduled_date: str
    expires_at: datetime
    qr_png_url: str | None


class SignedImageQuery(BaseModel):
    expires: str | None = Field(default=None, description="签名链接的过期时间（Unix 秒）；带 Authorization 时不需要")
    sig: str | None = Field(default=None, description="签名（凭条视图中 qr_png_url 等链接自带，供 <image src> 使用）")


class CheckInIn(BaseModel):
    token: str = Field(min_length=1, max_length=4096, description="扫描入院凭条二维码所得的令牌")


class CheckInOut(BaseModel):
    referral_id: str
    referral_code: str
    slip_code: str
    status: str
    patient_name: str = Field(description="脱敏姓名；完整身份请查看转诊单的患者身份（记入审计）")
    scheduled_date: date
    department: str
    ward: str
    bed: str
    certificate_no: str | None
    checked_in_at: datetime
    checked_in_by: str
    waiting_seconds: int | None = Field(description="从提交转诊到入院的等待时间（秒）")
    waiting_text: str | None


class JwkOut(BaseModel):
    kty: Literal["OKP"]
    crv: Literal["Ed25519"]
    x: str
    kid: str
    alg: Literal["EdDSA"]
    use: Literal["sig"]


class JwksOut(BaseModel):
    keys: list[JwkOut]


def base_url(request: web.Request) -> str:
    return request.app[SETTINGS].public_url or f"{request.scheme}://{request.host}"


def image_links(request: web.Request) -> ImageLinks:
    settings = request.app[SETTINGS]
    return ImageLinks(base_url(request), image_urls.url_key(settings.jwt_secret), settings.slip_image_url_ttl)


def _etag_matches(request: web.Request, etag: str) -> bool:
    header = request.headers.get("If-None-Match", "")
    candidates = {c.strip().removeprefix("W/") for c in header.split(",")}
    return etag in candidates or "*" in candidates


def _cached_response(request: web.Request, etag: str, cache_control: str) -> web.Response | None:
    if _etag_matches(request, etag):
        return web.Response(status=304, headers={"ETag": etag, "Cache-Control": cache_control})
    return None


async def _target_code(referral: Referral) -> str:
    return (await cache.institution(referral.target_institution_id)).code  # type: ignore[attr-defined]


async def _active_slip(request: web.Request, image: str) -> tuple[Slip, Referral]:
    """The slip of an image request: by the caller's bearer token, or by the signed URL a slip view handed out
    (an <image src> sends no Authorization header). Only while the slip is active."""
    if "Authorization" not in request.headers and "sig" in request.query:
        code = request.match_info["code"]
        image_urls.check(image_urls.url_key(request.app[SETTINGS].jwt_secret), image, code,
                         request.query.get("expires", ""), request.query["sig"])
        slip, referral = await slip_by_code(code)
    else:
        principal = await authenticate(request)
        slip, referral = await visible_slip(principal, request.match_info["code"])
    state = effective_state(slip, referral)
    if state != SlipState.ACTIVE:
        raise Gone(f"该入院凭条{STATE_NAMES[state]}，不再显示二维码", code=f"SLIP_{state.upper()}",
                   detail={"status": state})
    return slip, referral


@api.route("GET", "/api/v1/referrals/{id}/slip", summary="转诊单的入院凭条（患者及家属、双方机构工作人员）",
           tags=TAGS, response=SlipOut, responses={404: "转诊单不存在、无权查看或尚未生成入院凭条"})
async def referral_slip(request: web.Request) -> web.Response:
    principal = await authenticate(request)
    slip, referral = await slip_of_referral(principal, request.match_info["id"])
    token = None
    if effective_state(slip, referral) == SlipState.ACTIVE:
        token = await token_for(slip, await _target_code(referral), request.app[CIPHER])
    return json_response(await slip_view(slip, referral, token=token, links=image_links(request)))


async def _qr(request: web.Request, fmt: images.Format, content_type: str) -> web.Response:
    slip, referral = await _active_slip(request, f"qr.{fmt}")
    token = await token_for(slip, await _target_code(referral), request.app[CIPHER])
    etag = images.qr_etag(token, fmt)
    cached = _cached_response(request, etag, IMAGE_CACHE_CONTROL)
    if cached is not None:
        return cached
    body = await images.qr_image(token, fmt)
    return web.Response(body=body, content_type=content_type,
                        headers={"ETag": etag, "Cache-Control": IMAGE_CACHE_CONTROL})


@api.route("GET", "/api/v1/slips/{code}/qr.png", summary="入院凭条二维码（PNG；Bearer 或签名链接）", tags=TAGS,
           content_type="image/png", query=SignedImageQuery,
           responses={IMAGE_URL_REFUSED: IMAGE_URL_REFUSAL, 404: "不存在或无权查看", 410: "凭条已使用、作废或过期"})
async def qr_png(request: web.Request) -> web.Response:
    return await _qr(request, "png", "image/png")


@api.route("GET", "/api/v1/slips/{code}/qr.svg", summary="入院凭条二维码（SVG；Bearer 或签名链接）", tags=TAGS,
           content_type="image/svg+xml", query=SignedImageQuery,
           responses={IMAGE_URL_REFUSED: IMAGE_URL_REFUSAL, 404: "不存在或无权查看", 410: "凭条已使用、作废或过期"})
async def qr_svg(request: web.Request) -> web.Response:
    return await _qr(request, "svg", "image/svg+xml")


@api.route("GET", "/api/v1/slips/{code}/wxacode.png", summary="打开入院凭条页面的小程序码（Bearer 或签名链接）",
           tags=TAGS, content_type="image/png", query=SignedImageQuery,
           responses={IMAGE_URL_REFUSED: IMAGE_URL_REFUSAL, 404: "不存在或无权查看", 410: "凭条已使用、作废或过期",
                      503: "微信接口暂时不可用"})
async def wxacode_png(request: web.Request) -> web.Response:
    slip, _ = await _active_slip(request, "wxacode.png")
    etag = images.wxacode_etag(slip.code)
    cached = _cached_response(request, etag, IMAGE_CACHE_CONTROL)
    if cached is not None:
        return cached
    body = await images.wxacode(request.app[WECHAT], slip.code)
    return web.Response(body=body, content_type="image/png",
                        headers={"ETag": etag, "Cache-Control": IMAGE_CACHE_CONTROL})


@api.route("POST", "/api/v1/slips/check-in", summary="住院处扫描入院凭条办理入院（每张凭条只能办理一次）", tags=TAGS,
           body=CheckInIn, response=CheckInOut,
           responses={403: "仅限接收医院住院处", 404: "凭条不存在",
                      409: "SLIP_ALREADY_CHECKED_IN：已办理入院（含办理时间和经办人）；"
                           "SLIP_NOT_YET_VALID：未到可办理入院的日期",
                      410: "SLIP_EXPIRED / SLIP_REVOKED：凭条过期或已作废",
                      422: "SLIP_MALFORMED / SLIP_UNKNOWN_KEY / SLIP_BAD_SIGNATURE / SLIP_OTHER_INSTITUTION"})
async def slip_check_in(request: web.Request) -> web.Response:
    principal = await authenticate(request)

    async def run() -> web.Response:
        body = await parse_body(request, CheckInIn)
        done = await check_in(principal, body.token)
        return json_response(await check_in_view(done.slip, done.referral, done.clerk_name,
                                                 done.waiting.total_seconds() if done.waiting else None))

    return await idempotent(request, principal, run)


@api.route("GET", "/api/v1/slips/jwks.json", summary="入院凭条验签公钥（JWKS，供住院处设备离线验证）", tags=TAGS,
           auth=False, response=JwksOut)
async def jwks(request: web.Request) -> web.Response:
    document = await keys.jwks()
    text = json.dumps(document, separators=(",", ":"), sort_keys=True)
    etag = f'"{hashlib.sha256(text.encode()).hexdigest()[:32]}"'
    cached = _cached_response(request, etag, JWKS_CACHE_CONTROL)
    if cached is not None:
        return cached
    return web.Response(text=text, content_type="application/json",
                        headers={"ETag": etag, "Cache-Control": JWKS_CACHE_CONTROL})
