"""Login, tokens, refresh rotation, logout, staff invitations and patient binding, through the real app."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import jwt

from accounts.tokens import issue_access_token, token_hash
from appkeys import CIPHER, KV_STORE, SETTINGS
from models import Invitation, Patient, RefreshToken, WeChatAccount
from tests.referral_support import put_on_file
from tests.support import bearer, login, login_code, login_demo, phone_code, seeded, valid_id


async def test_login_of_bound_staff_returns_tokens_and_roles(client):
    await seeded(client)
    session = await login_demo(client, "SUBEI", "doctor")
    assert session["token_type"] == "Bearer"
    assert session["expires_in"] == 900
    account = session["account"]
    assert account["kind"] == "staff"
    assert account["staff"]["roles"] == ["doctor"]
    assert account["staff"]["institution"]["code"] == "SUBEI"
    me = await client.get("/api/v1/me", headers=bearer(session))
    assert me.status == 200
    assert (await me.json())["staff"]["name"] == account["staff"]["name"]


async def test_login_of_unknown_user_creates_unbound_account(client):
    session = await login(client, "o_stranger_1")
    assert session["account"]["kind"] == "unbound"
    assert session["account"]["staff"] is None and session["account"]["patients"] == []
    assert await WeChatAccount.filter(openid="o_stranger_1").count() == 1
    again = await login(client, "o_stranger_1")
    assert again["account"]["id"] == session["account"]["id"]


async def test_reused_login_code_is_refused(client):
    code = await login_code(client, "o_reuse")
    first = await client.post("/api/v1/auth/wx-login", json={"code": code})
    assert first.status == 200
    second = await client.post("/api/v1/auth/wx-login", json={"code": code})
    assert second.status == 401
    body = await second.json()
    assert body["error"]["code"] == "INVALID_LOGIN_CODE"
    assert "重新" in body["error"]["message"]


async def test_expired_login_code_is_refused(client):
    code = await login_code(client, "o_slow")
    resp = await client.post("/wechat-sandbox/sandbox/clock", json={"advance": 301})
    assert resp.status == 200
    resp = await client.post("/api/v1/auth/wx-login", json={"code": code})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "INVALID_LOGIN_CODE"


async def test_unknown_login_code_is_refused(client):
    resp = await client.post("/api/v1/auth/wx-login", json={"code": "never-issued"})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "INVALID_LOGIN_CODE"


async def test_missing_and_malformed_bearer_tokens(client):
    assert (await client.get("/api/v1/me")).status == 401
    resp = await client.get("/api/v1/me", headers={"Authorization": "Bearer not.a.jwt"})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "TOKEN_INVALID"
    resp = await client.get("/api/v1/me", headers={"Authorization": "Basic abc"})
    assert (await resp.json())["error"]["code"] == "UNAUTHENTICATED"


async def test_tampered_token_is_refused(client):
    session = await login(client, "o_tamper")
    header, payload, signature = session["access_token"].split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["kind"] = "staff"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    resp = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {header}.{forged_payload}.{signature}"})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "TOKEN_INVALID"
    other_key = jwt.encode(claims, "some-other-secret-that-is-long-enough-123", algorithm="HS256")
    resp = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {other_key}"})
    assert resp.status == 401
    none_alg = jwt.encode(claims, None, algorithm="none")
    resp = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {none_alg}"})
    assert resp.status == 401


async def test_expired_token_is_refused(client, app):
    session = await login(client, "o_expired")
    account = await WeChatAccount.get(openid="o_expired")
    token, _ = issue_access_token(app[SETTINGS].jwt_secret, account.public_id, -60, kind="unbound",
                                  session=uuid.uuid4())
    resp = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "TOKEN_EXPIRED"
    assert (await client.get("/api/v1/me", headers=bearer(session))).status == 200


async def test_refresh_rotates_and_reuse_revokes_the_family(client):
    session = await login(client, "o_refresh")
    first = session["refresh_token"]
    resp = await client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert resp.status == 200
    rotated = await resp.json()
    assert rotated["refresh_token"] != first
    assert (await client.get("/api/v1/me", headers=bearer(rotated))).status == 200

    # The spent token comes back: someone copied it. The whole family dies, the thief's and the owner's.
    reuse = await client.post("/api/v1/auth/refresh", json={"refresh_token": first})
    assert reuse.status == 401
    assert (await reuse.json())["error"]["code"] == "REFRESH_REUSED"
    after = await client.post("/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]})
    assert after.status == 401
    assert (await after.json())["error"]["code"] == "REFRESH_REVOKED"


async def test_concurrent_refreshes_of_one_token_yield_one_session(client):
    session = await login(client, "o_race")
    results = await asyncio.gather(*[client.post("/api/v1/auth/refresh",
                                                 json={"refresh_token": session["refresh_token"]})
                                     for _ in range(5)])
    statuses = sorted(r.status for r in results)
    assert statuses.count(200) == 1, statuses
    assert statuses.count(401) == 4


async def test_unknown_refresh_token(client):
    resp = await client.post("/api/v1/auth/refresh", json={"refresh_token": "rt_nope"})
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "REFRESH_INVALID"


async def test_logout_revokes_access_and_refresh(client):
    session = await login(client, "o_logout")
    resp = await client.post("/api/v1/auth/logout", json={}, headers=bearer(session))
    assert resp.status == 200
    assert (await resp.json())["revoked"] == 1
    me = await client.get("/api/v1/me", headers=bearer(session))
    assert me.status == 401
    assert (await me.json())["error"]["code"] == "TOKEN_REVOKED"
    refresh = await client.post("/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert refresh.status == 401


async def _me_status(client, session: dict) -> int:
    return (await client.get("/api/v1/me", headers=bearer(session))).status


async def test_logout_refuses_every_access_token_of_the_session(client):
    first = await login(client, "o_logout_all")
    rotated = await (await client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    latest = await (await client.post("/api/v1/auth/refresh",
                                      json={"refresh_token": rotated["refresh_token"]})).json()
    other_device = await login(client, "o_logout_all")  # another session of the same account
    for session in (first, rotated, latest, other_device):
        assert await _me_status(client, session) == 200

    # Logging out with the newest token and the session's refresh token ends the whole session: the access
    # tokens issued earlier in it too, not only the one presented. The other session stays.
    resp = await client.post("/api/v1/auth/logout", json={"refresh_token": latest["refresh_token"]},
                             headers=bearer(latest))
    assert resp.status == 200 and (await resp.json())["revoked"] == 3  # the family's three links
    for session in (first, rotated, latest):
        me = await client.get("/api/v1/me", headers=bearer(session))
        assert me.status == 401
        assert (await me.json())["error"]["code"] == "TOKEN_REVOKED"
    assert await _me_status(client, other_device) == 200

    # Logout without a refresh token, from an earlier access token of a session, ends every session.
    third = await login(client, "o_logout_all")
    resp = await client.post("/api/v1/auth/logout", json={}, headers=bearer(other_device))
    assert resp.status == 200 and (await resp.json())["revoked"] == 2
    assert await _me_status(client, other_device) == 401 and await _me_status(client, third) == 401


async def test_logout_holds_when_the_kv_store_forgot_the_revocation(client, app):
    # The KV store is only a cache of the refresh family's rows: a flushed Redis does not bring a session back.
    session = await login(client, "o_logout_flush")
    assert await _me_status(client, session) == 200  # "active" is now cached
    assert (await client.post("/api/v1/auth/logout", json={}, headers=bearer(session))).status == 200
    family = (await RefreshToken.get(token_hash=token_hash(session["refresh_token"]))).family
    await app[KV_STORE].delete(f"auth:session:{family}")
    assert await _me_status(client, session) == 401


async def test_refresh_token_reuse_refuses_the_sessions_access_tokens(client):
    session = await login(client, "o_reuse_access")
    rotated = await (await client.post("/api/v1/auth/refresh",
                                       json={"refresh_token": session["refresh_token"]})).json()
    assert await _me_status(client, session) == 200 and await _me_status(client, rotated) == 200
    reuse = await client.post("/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert (await reuse.json())["error"]["code"] == "REFRESH_REUSED"
    # Whoever holds an access token of the leaked family, the thief or the owner, is out at once.
    for held in (session, rotated):
        me = await client.get("/api/v1/me", headers=bearer(held))
        assert me.status == 401 and (await me.json())["error"]["code"] == "TOKEN_REVOKED"


async def test_an_access_token_without_a_session_is_refused(client, app):
    await login(client, "o_no_sid")
    account = await WeChatAccount.get(openid="o_no_sid")
    now = int(datetime.now(UTC).timestamp())
    claims = {"iss": "referral-cloud", "sub": str(account.public_id), "typ": "access", "kind": "unbound",
              "iat": now, "nbf": now, "exp": now + 60, "jti": "x"}
    for extra in ({}, {"sid": "not-a-uuid"}):
        token = jwt.encode(claims | extra, app[SETTINGS].jwt_secret, algorithm="HS256")
        resp = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert resp.status == 401 and (await resp.json())["error"]["code"] == "TOKEN_INVALID"


async def _invite(client, admin_session, **overrides) -> dict:
    body = {"name": "孙新来", "roles": ["doctor", "expert"]} | overrides
    resp = await client.post("/api/v1/admin/invitations", json=body, headers=bearer(admin_session))
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def test_invitation_binds_staff_once(client):
    await seeded(client)
    admin = await login_demo(client, "GAOYOU", "admin")
    invitation = await _invite(client, admin)
    assert invitation["qr_png"].startswith("data:image/png;base64,")
    png = base64.b64decode(invitation["qr_png"].split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

    code = await login_code(client, "o_new_doctor")
    resp = await client.post("/api/v1/auth/bind-staff", json={"code": code, "invite_token": invitation["invite_token"]})
    assert resp.status == 201, await resp.text()
    session = await resp.json()
    assert session["account"]["kind"] == "staff"
    assert session["account"]["staff"]["institution"]["code"] == "GAOYOU"
    assert sorted(session["account"]["staff"]["roles"]) == ["doctor", "expert"]

    code = await login_code(client, "o_someone_else")
    reuse = await client.post("/api/v1/auth/bind-staff",
                              json={"code": code, "invite_token": invitation["invite_token"]})
    assert reuse.status == 410
    assert (await reuse.json())["error"]["code"] == "INVITATION_USED"


async def test_expired_and_unknown_invitations(client):
    await seeded(client)
    admin = await login_demo(client, "GAOYOU", "admin")
    invitation = await _invite(client, admin)
    await Invitation.filter(public_id=invitation["id"]).update(
        expires_at=datetime.now(UTC) - timedelta(seconds=1))
    code = await login_code(client, "o_late")
    resp = await client.post("/api/v1/auth/bind-staff", json={"code": code, "invite_token": invitation["invite_token"]})
    assert resp.status == 410
    assert (await resp.json())["error"]["code"] == "INVITATION_EXPIRED"
    resp = await client.post("/api/v1/auth/bind-staff", json={"code": code, "invite_token": "inv_unknown"})
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "INVITATION_NOT_FOUND"


async def test_only_admins_invite(client):
    await seeded(client)
    doctor = await login_demo(client, "GAOYOU", "doctor")
    resp = await client.post("/api/v1/admin/invitations", json={"name": "某人", "roles": ["doctor"]},
                             headers=bearer(doctor))
    assert resp.status == 403
    unbound = await login(client, "o_unbound_inviter")
    resp = await client.post("/api/v1/admin/invitations", json={"name": "某人", "roles": ["doctor"]},
                             headers=bearer(unbound))
    assert resp.status == 403


async def _bind(client, openid: str, **fields) -> object:
    """POST /auth/bind-patient for 周明华 (on file with 13812345678), proven by that WeChat-verified phone."""
    await put_on_file(client.server.app[CIPHER], "周明华", valid_id(1))
    body = {"code": await login_code(client, openid), "name": "周明华", "id_number": valid_id(1),
            "relation": "self", "phone_code": await phone_code(client, "13812345678")} | fields
    return await client.post("/api/v1/auth/bind-patient", json=body)


async def test_patient_binding_shows_the_patient_masked_and_stores_numbers_encrypted(client):
    resp = await _bind(client, "o_patient_a")
    assert resp.status == 201, await resp.text()
    session = await resp.json()
    account = session["account"]
    assert account["kind"] == "patient"
    [patient] = account["patients"]
    assert patient["name"] == "周*华"
    assert patient["relation"] == "self"
    me = await (await client.get("/api/v1/me", headers=bearer(session))).json()
    assert me["patients"][0]["id_number"].count("*") == 10
    assert me["patients"][0]["phone"] == "138****5678"

    # The ID number is stored encrypted, never in clear.
    stored = await Patient.get(name="周明华")
    assert valid_id(1) not in stored.id_number_enc and "13812345678" not in stored.phone_enc


async def test_patient_binding_refuses_bad_check_digit(client):
    good = valid_id(1)
    bad = good[:-1] + ("0" if good[-1] != "0" else "1")
    resp = await _bind(client, "o_patient_bad", id_number=bad)
    assert resp.status == 422
    body = await resp.json()
    assert body["error"]["code"] == "INVALID_ID_NUMBER"
    assert "校验" in body["error"]["message"]
    assert bad not in json.dumps(body, ensure_ascii=False)


async def test_patient_binding_refuses_a_name_that_does_not_match(client):
    assert (await _bind(client, "o_patient_first")).status == 201
    resp = await _bind(client, "o_patient_second", name="李冒名")
    assert resp.status == 422
    assert (await resp.json())["error"]["code"] == "NAME_MISMATCH"


async def test_patient_binding_refuses_double_binding(client):
    assert (await _bind(client, "o_patient_twice")).status == 201
    again = await _bind(client, "o_patient_twice")
    assert again.status == 409 and (await again.json())["error"]["code"] == "ALREADY_BOUND"


async def test_patient_binding_refuses_blank_and_control_character_names(client):
    for name, reason in [("   ", "请填写姓名"), ("张\u0000三", "控制字符"), ("张\u200b三", "不可见字符"),
                         ("张三\n", "控制字符"), ("周明华1", "只能包含文字"), ("··", "应包含文字"),
                         ("张" * 31, "不能超过")]:
        resp = await _bind(client, "o_patient_names", name=name)
        assert resp.status == 422, (name, await resp.text())
        body = await resp.json()
        assert [f["field"] for f in body["error"]["detail"]["fields"]] == ["name"]
        assert reason in body["error"]["message"], (name, body)
    # Surrounding and doubled spaces are tidied, not refused; minority names keep their separator.
    await put_on_file(client.server.app[CIPHER], "阿卜杜·热合曼", valid_id(5))
    resp = await _bind(client, "o_patient_names", name="  阿卜杜·热合曼  ", id_number=valid_id(5))
    assert resp.status == 201, await resp.text()
    assert await Patient.get_or_none(name="阿卜杜·热合曼") is not None


async def test_patient_binding_refuses_impossible_regions(client):
    for region in ("000000", "999999", "911234", "100101", "720000"):
        resp = await _bind(client, "o_patient_region", id_number=valid_id(1, region=region))
        assert resp.status == 422, region
        body = await resp.json()
        assert body["error"]["code"] == "INVALID_ID_NUMBER" and "地区码" in body["error"]["message"]
    for region in ("110105", "650102", "810000", "830000"):
        name = f"周明{'甲乙丙丁'[int(region[1]) % 4]}"
        await put_on_file(client.server.app[CIPHER], name, valid_id(7, region=region))
        resp = await _bind(client, f"o_patient_region_{region}", id_number=valid_id(7, region=region), name=name)
        assert resp.status == 201, (region, await resp.text())


async def test_sessions_are_checked_and_ended_while_the_kv_store_is_down(client, app, monkeypatch):
    # Losing Redis must not stop the platform: the session check reads the database, and logout still ends it.
    from redis.exceptions import ConnectionError as RedisConnectionError

    session = await login(client, "o_kv_down")
    kv = app[KV_STORE]

    async def down(*args, **kwargs):
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(kv, "get", down)
    monkeypatch.setattr(kv, "set", down)
    assert await _me_status(client, session) == 200
    assert (await client.post("/api/v1/auth/logout", json={}, headers=bearer(session))).status == 200
    assert await _me_status(client, session) == 401
async def test_last_login_is_written_only_when_older_than_its_precision(client):
    from accounts.sessions import LAST_LOGIN_PRECISION

    await seeded(client)
    openid = "demo_dongguan_doctor"
    await login(client, openid)
    first = (await WeChatAccount.get(openid=openid)).last_login_at
    assert first is not None
    again = await login(client, openid)  # a second launch at once: a full session, and nothing rewritten
    assert again["account"]["staff"]["name"] and again["account"]["kind"] == "staff"
    assert (await WeChatAccount.get(openid=openid)).last_login_at == first
    await WeChatAccount.filter(openid=openid).update(last_login_at=first - LAST_LOGIN_PRECISION)
    await login(client, openid)
    assert (await WeChatAccount.get(openid=openid)).last_login_at > first
