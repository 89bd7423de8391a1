"""Admission slips through the real app (issue 6): issued on target acceptance, shown only to those involved,
rendered as a QR code a real decoder reads, checked in once by the target's admission desk, refused with a
distinct code for every kind of bad slip (changing nothing), verifiable offline from the JWKS, expired by
the no-show timer, revoked by cancellation, surviving key rotation."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time as time_module
import uuid
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from PIL import Image
from tortoise.transactions import in_transaction

from appkeys import CIPHER, HIS, SETTINGS, WECHAT_SANDBOX
from errors import Conflict
from his.admission import admit_referral
from models import (
    CapacityDay,
    Department,
    Institution,
    InstitutionPolicy,
    OutboxJob,
    Referral,
    ReferralEvent,
    SigningKey,
    Slip,
    SlipState,
)
from outbox.registry import HANDLERS, JobContext, TemporaryFailure
from qr import slip_token
from qr.slip_token import sign, verify_offline
from referrals import commands
from referrals.policy import DEFAULT_WHAT_TO_BRING
from slips import checkin, images, lifecycle
from slips.demo import demo_slip, summary_lines
from tests import notify_support
from tests.referral_support import bind_family, bind_patient
from tests.support import bearer, login, login_demo, read_qr, run_app_cli, seeded, valid_id
from timeutil import CHINA_TZ, china_today

PATIENT_NAME = "钱玉兰"
CLINICAL = {"diagnoses": [{"code": "I63.9", "name": "脑梗死"}], "chief_complaint": "左侧肢体无力6小时",
            "referral_reason": "需上级医院溶栓评估"}


# -- the shared path to a scheduled referral ------------------------------------------------------------------


async def bind(client, openid: str, seq: int, name: str = PATIENT_NAME) -> dict:
    """A patient binds their own WeChat account (proven by the phone on file; recorded first if new)."""
    return await bind_patient(client, openid, name, valid_id(seq))


async def schedule(client, *, seq: int = 41, openid: str | None = None, day: date | None = None,
                   source: str = "GAOYOU", target: str = "SUBEI", dept: str = "NEUR") -> dict:
    """A patient bound in the mini-program, referred from `source` to `target`/`dept`, approved at the source
    (up-referrals need it), and accepted by the target's approver for `day` (default today) from beds the
    approver published. Returns {referral_id, patient (session), day, department}."""
    await seeded(client)
    patient = await bind(client, openid or f"o_slip_patient_{seq}", seq)
    doctor = await login_demo(client, source, "doctor")
    institution = await Institution.get(code=target)
    department = await Department.get(institution_id=institution.id, code=dept)
    resp = await client.post("/api/v1/referrals", headers=bearer(doctor), json={
        "patient_id": patient["account"]["patients"][0]["id"], "target_institution_id": str(institution.public_id),
        "target_department_id": str(department.public_id), "clinical": CLINICAL, "submit": True})
    assert resp.status == 201, await resp.text()
    referral = await resp.json()
    if referral["status"] == "pending_source":
        resp = await client.post(f"/api/v1/referrals/{referral['id']}/approve", json={},
                                 headers=bearer(await login_demo(client, source, "approver")))
        assert resp.status == 200, await resp.text()
    day = day or china_today()  # a slip is valid from its scheduled day: these patients come today
    approver = await login_demo(client, target, "approver")
    resp = await client.put(f"/api/v1/departments/{department.public_id}/capacity",
                            json={"days": [{"date": day.isoformat(), "capacity": 3}]}, headers=bearer(approver))
    assert resp.status == 200, await resp.text()
    resp = await client.post(f"/api/v1/referrals/{referral['id']}/approve",
                             json={"admission": {"date": day.isoformat()}}, headers=bearer(approver))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["status"] == "scheduled"
    return {"referral_id": referral["id"], "patient": patient, "day": day, "department": department}


async def get_slip(client, session: dict, referral_id: str) -> dict:
    resp = await client.get(f"/api/v1/referrals/{referral_id}/slip", headers=bearer(session))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def scan(client, session: dict, token: str):
    return await client.post("/api/v1/slips/check-in", json={"token": token}, headers=bearer(session))


async def error_code(resp) -> str:
    return (await resp.json())["error"]["code"]


async def state_of(referral_id: str) -> tuple:
    """Everything a refused scan must leave alone: the referral, its timeline, its slips and the jobs it writes
    (notifications and timers; jobs that the dispatcher's own handlers add later are none of a scan's doing)."""
    referral = await Referral.get(public_id=referral_id)
    slips = await Slip.filter(referral_id=referral.id).order_by("id")
    jobs = await OutboxJob.filter(dedupe_key__startswith=f"notify:{referral.id}:").count() + \
        await OutboxJob.filter(dedupe_key__in=[f"slip-expire:{s.id}" for s in slips]).count()
    return (str(referral.status), referral.version, referral.admitted_at, referral.booking_id,  # type: ignore[attr-defined]
            await ReferralEvent.filter(referral_id=referral.id).count(),
            tuple((s.state, s.checked_in_at, s.revoked_at) for s in slips), jobs)


def decode_qr(png: bytes) -> str:
    barcode = read_qr(png)
    assert barcode.ec_level in ("M", "Q", "H")
    return barcode.text


def a_minute_ago() -> datetime:
    # In UTC: Tortoise converts times on create but writes them as given on update, and SQLite compares text.
    return datetime.now(UTC) - timedelta(minutes=1)


def claims_of(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


# -- issue and content --------------------------------------------------------------------------------------------


async def test_what_to_bring_is_the_target_institutions_own_text(client):
    await seeded(client)
    admin = await login_demo(client, "SUBEI", "admin")
    own = "身份证、医保卡、\n近三个月的检查报告、\n住院押金 3000 元"
    resp = await client.put("/api/v1/admin/policy", json={"what_to_bring": own}, headers=bearer(admin))
    assert resp.status == 200, await resp.text()
    one_line = "身份证、医保卡、 近三个月的检查报告、 住院押金 3000 元"  # WeChat messages allow no line breaks
    assert (await resp.json())["what_to_bring"] == one_line
    flow = await schedule(client)
    assert (await get_slip(client, flow["patient"], flow["referral_id"]))["what_to_bring"] == one_line
    await notify_support.run_jobs(client.server.app)
    inbox = await (await client.get("/api/v1/inbox", headers=bearer(flow["patient"]))).json()
    assert any(one_line in message["body"] for message in inbox["items"])
    # Emptied, the platform's text applies again (to slips issued from then on).
    resp = await client.put("/api/v1/admin/policy", json={"what_to_bring": ""}, headers=bearer(admin))
    assert (await resp.json())["what_to_bring"] == DEFAULT_WHAT_TO_BRING
    again = await schedule(client, seq=42)
    assert (await get_slip(client, again["patient"], again["referral_id"]))["what_to_bring"] == DEFAULT_WHAT_TO_BRING


async def test_target_acceptance_issues_a_slip_with_date_ward_expiry_and_a_timer(client):
    flow = await schedule(client)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    assert slip["status"] == "active" and slip["status_name"] == "有效"
    assert slip["code"].startswith("RY") and len(slip["code"]) == 10
    assert set(slip["code"][2:]) <= set(lifecycle.CODE_ALPHABET)
    assert slip["scheduled_date"] == flow["day"].isoformat()
    assert slip["department"]["name"] == "神经内科" and slip["ward"] == "神经内科病区"
    assert slip["institution"]["code"] == "SUBEI" and slip["institution"]["name"] == "江苏省苏北人民医院"
    assert "身份证" in slip["what_to_bring"] and "医保卡" in slip["what_to_bring"]
    assert slip["patient_name"] != PATIENT_NAME and "*" in slip["patient_name"]
    # End of the scheduled day in China plus the default 24 h of grace.
    expected = datetime.combine(flow["day"] + timedelta(days=1), time.min, CHINA_TZ) + timedelta(hours=24)
    assert datetime.fromisoformat(slip["expires_at"]) == expected
    assert f"/api/v1/slips/{slip['code']}/qr.png?expires=" in slip["qr_png_url"]
    assert f"/api/v1/slips/{slip['code']}/qr.svg?expires=" in slip["qr_svg_url"]
    assert f"/api/v1/slips/{slip['code']}/wxacode.png?expires=" in slip["wxacode_url"]

    # The token carries the slip code, the target institution and the expiry, and nothing else.
    token = slip["token"]
    assert jwt.get_unverified_header(token) == {"alg": "EdDSA", "kid": jwt.get_unverified_header(token)["kid"],
                                                "typ": "rc-slip"}
    assert claims_of(token) == {"sub": slip["code"], "aud": "SUBEI", "exp": int(expected.timestamp())}
    assert PATIENT_NAME not in token and len(token) < 300

    # The no-show timer is due exactly at the expiry.
    stored = await Slip.get(code=slip["code"])
    job = await OutboxJob.get(dedupe_key=f"slip-expire:{stored.id}")
    assert job.kind == "slip.expire" and job.payload == {"slip_id": stored.id} and job.next_attempt_at == expected


async def test_grace_period_comes_from_the_target_policy(client):
    await seeded(client)
    subei = await Institution.get(code="SUBEI")
    await InstitutionPolicy.filter(institution_id=subei.id).delete()
    await InstitutionPolicy.create(institution_id=subei.id, slip_grace_hours=6)
    flow = await schedule(client)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    expected = datetime.combine(flow["day"] + timedelta(days=1), time.min, CHINA_TZ) + timedelta(hours=6)
    assert datetime.fromisoformat(slip["expires_at"]) == expected


async def test_certificate_number_shows_once_the_his_issued_it(client):
    flow = await schedule(client)
    app = client.server.app
    referral = await Referral.get(public_id=flow["referral_id"])
    number = await admit_referral(app[HIS], app[CIPHER], referral.id)
    assert number
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    assert slip["certificate_no"] == number
    clerk = await login_demo(client, "SUBEI", "admission_clerk")
    done = await scan(client, clerk, slip["token"])
    assert done.status == 200 and (await done.json())["certificate_no"] == number
    assert (await Slip.get(code=slip["code"])).certificate_no == number


# -- who sees it ---------------------------------------------------------------------------------------------------


async def test_patient_family_and_both_institutions_see_the_slip_nobody_else(client):
    flow = await schedule(client)
    rid = flow["referral_id"]
    family = await bind_family(client, "o_slip_daughter", PATIENT_NAME, valid_id(41), "child", flow["patient"])
    seen = {}
    for name, session in [("patient", flow["patient"]), ("family", family),
                          ("target clerk", await login_demo(client, "SUBEI", "admission_clerk")),
                          ("referrer", await login_demo(client, "GAOYOU", "doctor")),
                          ("source approver", await login_demo(client, "GAOYOU", "approver"))]:
        seen[name] = (await get_slip(client, session, rid))["code"]
    assert len(set(seen.values())) == 1
    code = seen["patient"]

    outsiders = [await login_demo(client, "BAOYING", "doctor"), await login_demo(client, "BAOYING", "admission_clerk"),
                 await bind(client, "o_someone_else", 77, name="孙立新")]
    for session in outsiders:
        for path in (f"/api/v1/referrals/{rid}/slip", f"/api/v1/slips/{code}/qr.png", f"/api/v1/slips/{code}/qr.svg",
                     f"/api/v1/slips/{code}/wxacode.png"):
            resp = await client.get(path, headers=bearer(session))
            assert resp.status == 404, path
    # Guessed codes and referral ids look exactly like slips that do not exist.
    guessed = await client.get("/api/v1/slips/RY23456789/qr.png", headers=bearer(flow["patient"]))
    other = await client.get(f"/api/v1/slips/{code}/qr.png", headers=bearer(outsiders[0]))
    assert guessed.status == other.status == 404
    assert await error_code(guessed) == await error_code(other) == "SLIP_NOT_FOUND"
    assert (await client.get(f"/api/v1/referrals/{uuid.uuid4()}/slip", headers=bearer(flow["patient"]))).status == 404
    assert (await client.get(f"/api/v1/referrals/{rid}/slip")).status == 401
    assert (await client.get(f"/api/v1/slips/{code}/qr.png")).status == 401


async def test_patient_worklist_carries_the_slip_summary(client):
    flow = await schedule(client)
    resp = await client.get("/api/v1/referrals", params={"box": "mine"}, headers=bearer(flow["patient"]))
    assert resp.status == 200
    [item] = (await resp.json())["items"]
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    assert item["slip"]["code"] == slip["code"] and item["slip"]["status"] == "active"
    assert item["slip"]["qr_png_url"] == slip["qr_png_url"]
    doctor = await login_demo(client, "GAOYOU", "doctor")
    [row] = (await (await client.get("/api/v1/referrals", params={"box": "outgoing"},
                                     headers=bearer(doctor))).json())["items"]
    assert row.get("slip") is None


async def test_no_slip_before_acceptance(client):
    await seeded(client)
    patient = await bind(client, "o_early", 52)
    doctor = await login_demo(client, "GAOYOU", "doctor")
    subei = await Institution.get(code="SUBEI")
    department = await Department.get(institution_id=subei.id, code="NEUR")
    resp = await client.post("/api/v1/referrals", headers=bearer(doctor), json={
        "patient_id": patient["account"]["patients"][0]["id"], "target_institution_id": str(subei.public_id),
        "target_department_id": str(department.public_id), "clinical": CLINICAL, "submit": True})
    rid = (await resp.json())["id"]
    resp = await client.get(f"/api/v1/referrals/{rid}/slip", headers=bearer(patient))
    assert resp.status == 404 and await error_code(resp) == "SLIP_NOT_FOUND"
    assert "审批通过" in (await resp.json())["error"]["message"]


# -- the QR code and check-in --------------------------------------------------------------------------------------


async def test_decoded_png_checks_the_patient_in_once(client):
    flow = await schedule(client)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    resp = await client.get(f"/api/v1/slips/{slip['code']}/qr.png", headers=bearer(flow["patient"]))
    assert resp.status == 200 and resp.content_type == "image/png"
    png = await resp.read()
    assert Image.open(io.BytesIO(png)).size[0] >= 600  # big enough for a desk scanner to read off a phone
    token = decode_qr(png)
    assert token == slip["token"]

    clerk = await login_demo(client, "SUBEI", "admission_clerk")
    resp = await scan(client, clerk, token)
    assert resp.status == 200, await resp.text()
    done = await resp.json()
    assert done["status"] == "admitted" and done["slip_code"] == slip["code"]
    assert done["checked_in_by"] == "王丽娟" and done["waiting_seconds"] >= 0 and done["waiting_text"]
    referral = await Referral.get(public_id=flow["referral_id"])
    assert referral.status == "admitted" and referral.admitted_at is not None
    stored = await Slip.get(code=slip["code"])
    assert stored.state == SlipState.USED and stored.checked_in_by_id is not None  # type: ignore[attr-defined]
    # Who and when are on the timeline; the referring doctor is told through the notify job.
    event = await ReferralEvent.filter(referral_id=referral.id).order_by("-seq").first()
    assert event.action == "check_in" and event.actor_name == "王丽娟" and event.actor_role == "admission_clerk"
    assert await OutboxJob.filter(kind="notify.referral_event", dedupe_key=f"notify:{referral.id}:{event.seq}").exists()

    before = await state_of(flow["referral_id"])
    again = await scan(client, clerk, token)
    assert again.status == 409 and await error_code(again) == "SLIP_ALREADY_CHECKED_IN"
    body = (await again.json())["error"]
    hhmm = datetime.fromisoformat(body["detail"]["checked_in_at"]).astimezone(CHINA_TZ).strftime("%H:%M")
    assert hhmm in body["message"] and "王丽娟" in body["message"]
    assert body["detail"]["checked_in_by"] == "王丽娟"
    assert await state_of(flow["referral_id"]) == before

    # A used slip shows no QR any more; its view says who admitted the patient.
    view = await get_slip(client, flow["patient"], flow["referral_id"])
    assert view["status"] == "used" and view["token"] is None and view["checked_in_by"] == "王丽娟"
    gone = await client.get(f"/api/v1/slips/{slip['code']}/qr.png", headers=bearer(flow["patient"]))
    assert gone.status == 410 and await error_code(gone) == "SLIP_USED"


async def test_only_admission_clerks_check_in(client):
    flow = await schedule(client)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    before = await state_of(flow["referral_id"])
    for session in (await login_demo(client, "SUBEI", "doctor"), await login_demo(client, "SUBEI", "approver"),
                    flow["patient"]):
        resp = await scan(client, session, slip["token"])
        assert resp.status == 403, await resp.text()
    assert await state_of(flow["referral_id"]) == before


async def test_a_scan_that_loses_to_an_unrelated_change_of_the_referral_tries_again(client, monkeypatch):
    """The HIS job records the admission certificate with a timeline event, which moves the referral's version:
    a scan that loses that race is not another scan's loser, so it tries again instead of answering 409."""
    flow = await schedule(client)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    clerk = await login_demo(client, "SUBEI", "admission_clerk")
    real = commands.check_in
    calls = []

    async def loses_first(principal, referral_id, **kwargs):
        calls.append(referral_id)
        if len(calls) == 1:  # what _transition raises when another writer bumped the version first
            raise Conflict("转诊单刚刚已被他人处理，请刷新后查看最新状态", code="CONCURRENT_UPDATE")
        return await real(principal, referral_id, **kwargs)

    monkeypatch.setattr(commands, "check_in", loses_first)
    resp = await scan(client, clerk, slip["token"])
    assert resp.status == 200, await resp.text()
    assert len(calls) == 2 and (await Referral.get(public_id=flow["referral_id"])).status == "admitted"

    other = await schedule(client, seq=49)
    other_slip = await get_slip(client, other["patient"], other["referral_id"])
    before = await state_of(other["referral_id"])

    async def always_loses(principal, referral_id, **kwargs):
        calls.append(referral_id)
        raise Conflict("转诊单刚刚已被他人处理，请刷新后查看最新状态", code="CONCURRENT_UPDATE")

    monkeypatch.setattr(commands, "check_in", always_loses)
    calls.clear()
    resp = await scan(client, clerk, other_slip["token"])
    assert resp.status == 409 and await error_code(resp) == "CONCURRENT_UPDATE"
    assert len(calls) == checkin.ATTEMPTS and await state_of(other["referral_id"]) == before


def _forge(code: str, *, kid: str = "kFORGED01", institution: str = "SUBEI", hours: int = 48) -> str:
    expires = int((datetime.now(CHINA_TZ) + timedelta(hours=hours)).timestamp())
    return sign(Ed25519PrivateKey.generate(), kid, code=code, institution=institution, expires_at=expires)


def _tamper(token: str, **changes) -> str:
    header, payload, signature = token.split(".")
    claims = claims_of(token) | changes
    body = base64.urlsafe_b64encode(json.dumps(claims, separators=(",", ":")).encode()).decode().rstrip("=")
    return f"{header}.{body}.{signature}"


async def _expired_slip(client) -> dict:
    """A scheduled referral whose slip expired a minute ago (its expiry moved back, the token re-signed)."""
    flow = await schedule(client, seq=43)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    await Slip.filter(code=slip["code"]).update(expires_at=a_minute_ago())
    return flow | {"slip": await get_slip(client, flow["patient"], flow["referral_id"])}


async def test_every_kind_of_bad_slip_is_refused_with_its_own_code_and_changes_nothing(client):
    flow = await schedule(client)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    token, code = slip["token"], slip["code"]
    our_kid = jwt.get_unverified_header(token)["kid"]
    expired = await _expired_slip(client)
    cancelled = await schedule(client, seq=44)
    cancelled_token = (await get_slip(client, cancelled["patient"], cancelled["referral_id"]))["token"]
    resp = await client.post(f"/api/v1/referrals/{cancelled['referral_id']}/cancel", json={"comment": "患者改期"},
                             headers=bearer(await login_demo(client, "GAOYOU", "doctor")))
    assert resp.status == 200, await resp.text()
    hs256 = jwt.encode({"sub": code, "aud": "SUBEI", "exp": 4102444800}, "secret-key-of-sufficient-length-32b",
                       algorithm="HS256", headers={"kid": our_kid, "typ": "rc-slip"})

    subei_clerk = await login_demo(client, "SUBEI", "admission_clerk")
    baoying_clerk = await login_demo(client, "BAOYING", "admission_clerk")
    cases = [
        ("forged with another key", subei_clerk, _forge(code), 422, "SLIP_UNKNOWN_KEY"),
        ("forged under our kid", subei_clerk, _forge(code, kid=our_kid), 422, "SLIP_BAD_SIGNATURE"),
        ("tampered expiry", subei_clerk, _tamper(token, exp=claims_of(token)["exp"] + 86400), 422,
         "SLIP_BAD_SIGNATURE"),
        ("tampered slip code", subei_clerk, _tamper(token, sub="RY23456789"), 422, "SLIP_BAD_SIGNATURE"),
        ("tampered institution", baoying_clerk, _tamper(token, aud="BAOYING"), 422, "SLIP_BAD_SIGNATURE"),
        ("expired", subei_clerk, expired["slip"]["token"], 410, "SLIP_EXPIRED"),
        ("revoked", subei_clerk, cancelled_token, 410, "SLIP_REVOKED"),
        ("another hospital's", baoying_clerk, token, 422, "SLIP_OTHER_INSTITUTION"),
        ("garbage", subei_clerk, "not a slip at all", 422, "SLIP_MALFORMED"),
        ("a JWT of another type", subei_clerk, jwt.encode({"sub": "x"}, "k" * 32, algorithm="HS256"), 422,
         "SLIP_MALFORMED"),
        ("HMAC-signed with our kid", subei_clerk, hs256, 422, "SLIP_MALFORMED"),
        ("three dots of nothing", subei_clerk, "a.b.c", 422, "SLIP_MALFORMED"),
    ]
    referrals = [flow["referral_id"], expired["referral_id"], cancelled["referral_id"]]
    before = [await state_of(r) for r in referrals]
    messages = {}
    for name, clerk, bad, status, expected in cases:
        resp = await scan(client, clerk, bad)
        assert resp.status == status, (name, await resp.text())
        body = (await resp.json())["error"]
        assert body["code"] == expected, name
        messages[expected] = body["message"]
    assert [await state_of(r) for r in referrals] == before
    # Each kind has its own clear message; the other hospital's names the hospital, revoked says why.
    assert len(set(messages.values())) == len(messages)
    assert "江苏省苏北人民医院" in messages["SLIP_OTHER_INSTITUTION"]
    assert "取消" in messages["SLIP_REVOKED"] and "过期" in messages["SLIP_EXPIRED"]
    # The genuine slip still works afterwards.
    assert (await scan(client, subei_clerk, token)).status == 200


async def test_offline_verdict_from_the_jwks_matches_the_server(client):
    flow = await schedule(client)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    token = slip["token"]
    our_kid = jwt.get_unverified_header(token)["kid"]
    expired = await _expired_slip(client)
    resp = await client.get("/api/v1/slips/jwks.json")  # no login: a desk device fetches it as it is
    assert resp.status == 200
    document = await resp.json()
    subei_clerk = await login_demo(client, "SUBEI", "admission_clerk")
    baoying_clerk = await login_demo(client, "BAOYING", "admission_clerk")
    cases = [
        (subei_clerk, "SUBEI", _forge(slip["code"])),
        (subei_clerk, "SUBEI", _forge(slip["code"], kid=our_kid)),
        (subei_clerk, "SUBEI", _tamper(token, sub="RY23456789")),
        (subei_clerk, "SUBEI", expired["slip"]["token"]),
        (baoying_clerk, "BAOYING", token),
        (subei_clerk, "SUBEI", "garbage"),
        (subei_clerk, "SUBEI", token),  # last: the genuine one checks the patient in
    ]
    verdicts = []
    for session, institution, candidate in cases:
        try:
            verify_offline(candidate, document, institution)
            offline = slip_token.VALID
        except slip_token.SlipTokenError as exc:
            offline = exc.code
        resp = await scan(client, session, candidate)
        server = slip_token.VALID if resp.status == 200 else await error_code(resp)
        assert offline == server, (candidate[:40], offline, server)
        verdicts.append(server)
    assert verdicts == ["SLIP_UNKNOWN_KEY", "SLIP_BAD_SIGNATURE", "SLIP_BAD_SIGNATURE", "SLIP_EXPIRED",
                        "SLIP_OTHER_INSTITUTION", "SLIP_MALFORMED", "VALID"]
    # And with nothing but PyJWT: the JWKS key verifies the genuine token for its hospital.
    key = jwt.PyJWKSet.from_dict(document)[our_kid].key
    assert jwt.decode(token, key, algorithms=["EdDSA"], audience="SUBEI")["sub"] == slip["code"]
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(_tamper(token, sub="RY23456789"), key, algorithms=["EdDSA"], audience="SUBEI")


async def test_jwks_document(client):
    # Published from start-up, before any slip is signed: a desk that caches keys at start can verify at once.
    [first] = (await (await client.get("/api/v1/slips/jwks.json")).json())["keys"]
    flow = await schedule(client)
    token = (await get_slip(client, flow["patient"], flow["referral_id"]))["token"]
    resp = await client.get("/api/v1/slips/jwks.json")
    [key] = (await resp.json())["keys"]
    assert set(key) == {"kty", "crv", "x", "kid", "alg", "use"}  # never "d"
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("OKP", "Ed25519", "EdDSA", "sig")
    assert key["kid"] == jwt.get_unverified_header(token)["kid"] == first["kid"]
    assert "max-age" in resp.headers["Cache-Control"] and resp.headers["ETag"]
    again = await client.get("/api/v1/slips/jwks.json", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304


async def _run_cli(settings, *args: str) -> str:
    code, out, err = await run_app_cli(settings, *args)
    assert code == 0, err
    return out


async def test_key_rotation_keeps_issued_slips_valid(client, settings):
    first = await schedule(client, seq=45)
    old = await get_slip(client, first["patient"], first["referral_id"])
    old_kid = jwt.get_unverified_header(old["token"])["kid"]

    printed = await _run_cli(settings, "slip-keys", "rotate")
    new_kid = (await SigningKey.get(retired_at=None)).kid
    assert new_kid != old_kid and new_kid in printed and old_kid in printed

    second = await schedule(client, seq=46)
    new = await get_slip(client, second["patient"], second["referral_id"])
    assert jwt.get_unverified_header(new["token"])["kid"] == new_kid
    # The old slip's token did not change, and both keys are published while their slips are open.
    assert (await get_slip(client, first["patient"], first["referral_id"]))["token"] == old["token"]
    document = await (await client.get("/api/v1/slips/jwks.json")).json()
    assert {k["kid"] for k in document["keys"]} == {old_kid, new_kid}
    listed = await _run_cli(settings, "slip-keys", "list")
    assert old_kid in listed and new_kid in listed and "已停用" in listed

    clerk = await login_demo(client, "SUBEI", "admission_clerk")
    assert (await scan(client, clerk, old["token"])).status == 200
    assert (await scan(client, clerk, new["token"])).status == 200
    # Once every slip of the retired key is closed, the JWKS no longer carries it.
    await Slip.filter(kid=old_kid).update(expires_at=a_minute_ago())
    document = await (await client.get("/api/v1/slips/jwks.json")).json()
    assert {k["kid"] for k in document["keys"]} == {new_kid}


# -- revocation, reissue, no-show ------------------------------------------------------------------------------------


async def test_cancelling_revokes_the_slip(client):
    flow = await schedule(client)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    resp = await client.post(f"/api/v1/referrals/{flow['referral_id']}/cancel", json={},
                             headers=bearer(await login_demo(client, "GAOYOU", "doctor")))
    assert resp.status == 200
    view = await get_slip(client, flow["patient"], flow["referral_id"])
    assert view["status"] == "revoked" and view["token"] is None and view["qr_png_url"] is None
    assert view["revoked_reason"] == "转诊已取消" and view["revoked_at"]
    gone = await client.get(f"/api/v1/slips/{slip['code']}/qr.png", headers=bearer(flow["patient"]))
    assert gone.status == 410 and await error_code(gone) == "SLIP_REVOKED"
    # Its timer finds nothing to do.
    stored = await Slip.get(code=slip["code"])
    await Slip.filter(id=stored.id).update(expires_at=a_minute_ago())
    job = await OutboxJob.get(dedupe_key=f"slip-expire:{stored.id}")
    await HANDLERS["slip.expire"](JobContext(client.server.app, job))
    assert (await Referral.get(public_id=flow["referral_id"])).status == "cancelled"


async def test_reissue_voids_the_old_slip_and_issues_a_new_one_with_its_own_timer(client):
    flow = await schedule(client)
    old = await get_slip(client, flow["patient"], flow["referral_id"])
    later = flow["day"] + timedelta(days=2)
    referral = await Referral.get(public_id=flow["referral_id"])
    async with in_transaction():
        await Referral.filter(id=referral.id).update(admission_date=later)
        await referral.refresh_from_db()
        new_slip = await lifecycle.reissue(referral)
    new = await get_slip(client, flow["patient"], flow["referral_id"])
    assert new["code"] == new_slip.code != old["code"] and new["scheduled_date"] == later.isoformat()
    assert await OutboxJob.filter(dedupe_key=f"slip-expire:{new_slip.id}").exists()
    clerk = await login_demo(client, "SUBEI", "admission_clerk")
    refused = await scan(client, clerk, old["token"])
    assert refused.status == 410 and await error_code(refused) == "SLIP_REVOKED"
    assert "新凭条" in (await refused.json())["error"]["message"]
    # The old slip's timer does nothing; the new slip checks the patient in.
    old_row = await Slip.get(code=old["code"])
    await Slip.filter(id=old_row.id).update(expires_at=a_minute_ago())
    await HANDLERS["slip.expire"](JobContext(client.server.app,
                                             await OutboxJob.get(dedupe_key=f"slip-expire:{old_row.id}")))
    assert (await Referral.get(id=referral.id)).status == "scheduled"
    await allow_early_arrival(client, 2)  # the new slip is for two days from now
    assert (await scan(client, clerk, new["token"])).status == 200


async def allow_early_arrival(client, days: int, code: str = "SUBEI") -> dict:
    resp = await client.put("/api/v1/admin/policy", json={"early_arrival_days": days},
                            headers=bearer(await login_demo(client, code, "admin")))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_a_slip_is_valid_from_its_scheduled_day_or_as_early_as_the_policy_allows(client):
    day = china_today() + timedelta(days=2)
    flow = await schedule(client, day=day)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    clerk = await login_demo(client, "SUBEI", "admission_clerk")
    before = await state_of(flow["referral_id"])
    refused = await scan(client, clerk, slip["token"])
    assert refused.status == 409 and await error_code(refused) == "SLIP_NOT_YET_VALID"
    error = (await refused.json())["error"]
    assert f"预约的入院日期为{day.month}月{day.day}日" in error["message"] and "还不能办理入院" in error["message"]
    assert error["detail"] == {"scheduled_date": day.isoformat(), "valid_from": day.isoformat(),
                               "today": china_today().isoformat()}
    assert await state_of(flow["referral_id"]) == before  # nothing changed
    policy = await allow_early_arrival(client, 1)
    assert policy["early_arrival_days"] == 1
    refused = await scan(client, clerk, slip["token"])
    assert refused.status == 409
    early = day - timedelta(days=1)
    assert f"本院允许提前至{early.month}月{early.day}日办理" in (await refused.json())["error"]["message"]
    await allow_early_arrival(client, 2)
    admitted = await scan(client, clerk, slip["token"])
    assert admitted.status == 200, await admitted.text()
    bad = await client.put("/api/v1/admin/policy", json={"early_arrival_days": 15},
                           headers=bearer(await login_demo(client, "SUBEI", "admin")))
    assert bad.status == 422


async def test_the_first_valid_day_is_a_china_day(client, monkeypatch):
    import timeutil

    await seeded(client)
    subei = await Institution.get(code="SUBEI")

    class ChinaHalfPastMidnight(datetime):
        """2026-12-01 00:30 in China, still 2026-11-30 in UTC."""

        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 11, 30, 16, 30, tzinfo=UTC).astimezone(tz)

    monkeypatch.setattr(timeutil, "datetime", ChinaHalfPastMidnight)
    await checkin._refuse_too_early(Slip(scheduled_date=date(2026, 12, 1)), subei.id)  # its day has begun
    with pytest.raises(Conflict) as refused:
        await checkin._refuse_too_early(Slip(scheduled_date=date(2026, 12, 2)), subei.id)
    assert refused.value.detail["today"] == "2026-12-01"


async def test_no_show_timer_expires_the_referral_and_frees_the_bed(client):
    flow = await schedule(client)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    stored = await Slip.get(code=slip["code"])
    job = await OutboxJob.get(dedupe_key=f"slip-expire:{stored.id}")
    beds = await CapacityDay.get(department_id=flow["department"].id, day=flow["day"])
    assert beds.booked == 1
    handler = HANDLERS["slip.expire"]

    # Fired early (a skewed clock): nothing happens and the dispatcher will try again.
    with pytest.raises(TemporaryFailure):
        await handler(JobContext(client.server.app, job))
    assert (await Referral.get(public_id=flow["referral_id"])).status == "scheduled"

    await Slip.filter(id=stored.id).update(expires_at=a_minute_ago())
    await handler(JobContext(client.server.app, job))
    referral = await Referral.get(public_id=flow["referral_id"])
    assert referral.status == "expired" and referral.booking_id is None  # type: ignore[attr-defined]
    assert (await CapacityDay.get(id=beds.id)).booked == 0
    assert (await Slip.get(id=stored.id)).state == SlipState.EXPIRED
    event = await ReferralEvent.filter(referral_id=referral.id).order_by("-seq").first()
    assert event.action == "expire" and event.actor_role == "system"
    # The referrer and the patient are told by the notify job every transition writes.
    assert await OutboxJob.filter(dedupe_key=f"notify:{referral.id}:{event.seq}").exists()
    # Running it again changes nothing.
    version = referral.version
    await handler(JobContext(client.server.app, job))
    assert (await Referral.get(id=referral.id)).version == version
    view = await get_slip(client, flow["patient"], flow["referral_id"])
    assert view["status"] == "expired" and view["token"] is None
    refused = await scan(client, await login_demo(client, "SUBEI", "admission_clerk"), slip["token"])
    assert refused.status == 410 and await error_code(refused) == "SLIP_EXPIRED"


async def test_the_timer_leaves_an_admitted_patient_alone(client):
    flow = await schedule(client)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    clerk = await login_demo(client, "SUBEI", "admission_clerk")
    assert (await scan(client, clerk, slip["token"])).status == 200
    stored = await Slip.get(code=slip["code"])
    await Slip.filter(id=stored.id).update(expires_at=a_minute_ago())
    await HANDLERS["slip.expire"](JobContext(client.server.app,
                                             await OutboxJob.get(dedupe_key=f"slip-expire:{stored.id}")))
    assert (await Referral.get(public_id=flow["referral_id"])).status == "admitted"
    assert (await Slip.get(id=stored.id)).state == SlipState.USED
    # Scanned again after its expiry, it still says who admitted the patient rather than "expired".
    again = await scan(client, clerk, slip["token"])
    assert again.status == 409 and await error_code(again) == "SLIP_ALREADY_CHECKED_IN"


# -- images --------------------------------------------------------------------------------------------------------


def _path(url: str) -> str:
    """An absolute URL from a slip view, as a path and query for the test client."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


async def test_image_urls_work_without_a_bearer_as_an_image_src_needs(client):
    flow = await schedule(client)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    png = await client.get(_path(slip["qr_png_url"]))  # no Authorization header, as <image src> sends none
    assert png.status == 200 and png.content_type == "image/png"
    assert decode_qr(await png.read()) == slip["token"]
    svg = await client.get(_path(slip["qr_svg_url"]))
    assert svg.status == 200 and "<svg" in await svg.text()
    assert (await client.get(_path(slip["wxacode_url"]))).status == 200
    # Nothing personal in the URL: the slip code, an expiry and a signature.
    query = parse_qs(urlsplit(slip["qr_png_url"]).query)
    assert set(query) == {"expires", "sig"}
    lifetime = int(query["expires"][0]) - time_module.time()
    assert 0 < lifetime <= client.server.app[SETTINGS].slip_image_url_ttl
    assert PATIENT_NAME not in slip["qr_png_url"] and flow["referral_id"] not in slip["qr_png_url"]
    # The worklist's summary carries a working signed URL too.
    [item] = (await (await client.get("/api/v1/referrals", params={"box": "mine"},
                                      headers=bearer(flow["patient"]))).json())["items"]
    assert (await client.get(_path(item["slip"]["qr_png_url"]))).status == 200


async def test_bad_expired_and_tampered_image_urls_open_nothing(client):
    from slips.image_urls import signature, url_key

    flow = await schedule(client)
    other = await schedule(client, seq=42)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    theirs = await get_slip(client, other["patient"], other["referral_id"])
    path = _path(slip["qr_png_url"])
    query = parse_qs(urlsplit(path).query)
    expires, sig = query["expires"][0], query["sig"][0]
    key = url_key(client.server.app[SETTINGS].jwt_secret)
    past = int(time_module.time()) - 1
    cases = {
        "bad signature": (f"/api/v1/slips/{slip['code']}/qr.png?expires={expires}&sig=AAAA", "SLIP_IMAGE_URL_INVALID"),
        "no expiry": (f"/api/v1/slips/{slip['code']}/qr.png?sig={sig}", "SLIP_IMAGE_URL_INVALID"),
        "another slip's code": (f"/api/v1/slips/{theirs['code']}/qr.png?expires={expires}&sig={sig}",
                                "SLIP_IMAGE_URL_INVALID"),
        "a later expiry": (f"/api/v1/slips/{slip['code']}/qr.png?expires={int(expires) + 3600}&sig={sig}",
                           "SLIP_IMAGE_URL_INVALID"),
        "another image": (f"/api/v1/slips/{slip['code']}/wxacode.png?expires={expires}&sig={sig}",
                          "SLIP_IMAGE_URL_INVALID"),
        "expired": (f"/api/v1/slips/{slip['code']}/qr.png?expires={past}"
                    f"&sig={signature(key, 'qr.png', slip['code'], past)}", "SLIP_IMAGE_URL_EXPIRED"),
    }
    for name, (url, code) in cases.items():
        resp = await client.get(url)
        assert resp.status == 403, name
        assert await error_code(resp) == code, name
    assert (await client.get(f"/api/v1/slips/{slip['code']}/qr.png")).status == 401  # neither bearer nor signature
    # A signed URL of a slip that is no longer valid shows no QR code.
    clerk = await login_demo(client, "SUBEI", "admission_clerk")
    assert (await scan(client, clerk, slip["token"])).status == 200
    assert (await client.get(path)).status == 410


async def test_qr_images_are_cached_with_etags(client):
    flow = await schedule(client)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    url = f"/api/v1/slips/{slip['code']}/qr.png"
    misses = images.CACHE.misses
    responses = await asyncio.gather(*[client.get(url, headers=bearer(flow["patient"])) for _ in range(8)])
    bodies = {await r.read() for r in responses}
    assert len(bodies) == 1 and images.CACHE.misses == misses + 1  # rendered once for eight requests
    first = responses[0]
    etag = first.headers["ETag"]
    assert "max-age" in first.headers["Cache-Control"] and "private" in first.headers["Cache-Control"]
    cached = await client.get(url, headers=bearer(flow["patient"]) | {"If-None-Match": etag})
    assert cached.status == 304 and await cached.read() == b"" and cached.headers["ETag"] == etag

    svg = await client.get(f"/api/v1/slips/{slip['code']}/qr.svg", headers=bearer(flow["patient"]))
    assert svg.status == 200 and svg.content_type == "image/svg+xml"
    text = await svg.text()
    assert "<svg" in text and svg.headers["ETag"] != etag
    # The staff of the target see the same picture.
    clerk = await login_demo(client, "SUBEI", "admission_clerk")
    assert await (await client.get(url, headers=bearer(clerk))).read() == bodies.pop()


async def test_mini_program_code_opens_the_slip_page(client):
    flow = await schedule(client)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    sandbox = client.server.app[WECHAT_SANDBOX]
    issued = sandbox.wxacodes_issued
    url = f"/api/v1/slips/{slip['code']}/wxacode.png"
    resp = await client.get(url, headers=bearer(flow["patient"]))
    assert resp.status == 200 and resp.content_type == "image/png"
    assert decode_qr(await resp.read()) == f"{images.SLIP_PAGE}?scene={slip['code']}"
    again = await client.get(url, headers=bearer(flow["patient"]))
    assert again.status == 200 and sandbox.wxacodes_issued == issued + 1  # fetched from WeChat once
    assert (await client.get(url, headers=bearer(flow["patient"]) | {"If-None-Match": again.headers["ETag"]})
            ).status == 304

    images.CACHE.clear()
    fault = await client.post("/wechat-sandbox/sandbox/faults", json={"endpoint": "/wxa/getwxacodeunlimit",
                                                                      "errcode": 45009})
    assert fault.status == 200, await fault.text()
    failed = await client.get(url, headers=bearer(flow["patient"]))
    assert failed.status == 503 and await error_code(failed) == "WXACODE_UNAVAILABLE"
    assert (await client.get(url, headers=bearer(flow["patient"]))).status == 200  # failures are not cached


# -- the demo's slip step ------------------------------------------------------------------------------------------


async def test_demo_slip_writes_the_png_and_checks_the_patient_in(client, tmp_path):
    flow = await schedule(client)
    clerk = await login_demo(client, "SUBEI", "admission_clerk")
    base = str(client.make_url("/")).rstrip("/")
    result = await demo_slip(client.session, base, flow["referral_id"], clerk, viewer_session=flow["patient"],
                             out_dir=tmp_path)
    png = Path(result["png_path"])
    assert png.parent == tmp_path
    written = await asyncio.to_thread(png.read_bytes)
    slip = await get_slip(client, flow["patient"], flow["referral_id"])
    assert slip["status"] == "used" and result["slip_code"] == slip["code"]
    assert claims_of(decode_qr(written))["sub"] == slip["code"]
    assert result["checked_in_by"] == "王丽娟" and result["waiting_text"] and not result["already_checked_in"]
    lines = summary_lines(result)
    assert any(str(png) in line for line in lines) and any("等待时间" in line for line in lines)
    rerun = await demo_slip(client.session, base, flow["referral_id"], clerk, out_dir=tmp_path)
    assert rerun["already_checked_in"] and rerun["checked_in_by"] == "王丽娟"


async def test_a_patient_sees_only_their_own_slips(client):
    first = await schedule(client, seq=47)
    second = await schedule(client, seq=48)
    resp = await client.get(f"/api/v1/referrals/{second['referral_id']}/slip", headers=bearer(first["patient"]))
    assert resp.status == 404
    me = await login(client, "o_slip_patient_47")
    assert (await client.get(f"/api/v1/referrals/{first['referral_id']}/slip", headers=bearer(me))).status == 200
