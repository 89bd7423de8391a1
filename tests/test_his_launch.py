"""POST /api/v1/auth/his-launch through the real app: a launch JWT minted by the HIS simulator with the
institution's registered demo key logs the named staff member in once; every way it can be wrong is a 401
with its own reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from his.simulator.launch import demo_launch_key, mint_launch_token
from models import Institution, Staff, WeChatAccount
from tests.support import bearer, seeded

CODE = "SUBEI"
DOCTOR = "DOCTOR001"  # the seeded doctor's HIS user id


async def launch(client, token: str):
    return await client.post("/api/v1/auth/his-launch", json={"launch_token": token})


async def refused(client, token: str, code: str) -> dict:
    resp = await launch(client, token)
    body = await resp.json()
    assert resp.status == 401, body
    assert body["error"]["code"] == code, body
    assert body["error"]["message"] and not body["error"]["message"].isascii()
    return body


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_signed_hs256(claims: dict, secret: bytes) -> str:
    """What an attacker would send: HS256 keyed with the (public) PEM text. PyJWT refuses to make it."""
    signing_input = _b64(b'{"alg":"HS256","typ":"JWT"}') + "." + _b64(json.dumps(claims).encode())
    return signing_input + "." + _b64(hmac.new(secret, signing_input.encode(), hashlib.sha256).digest())


def pem(public_key) -> str:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()


async def test_a_launch_token_from_the_simulator_logs_the_staff_member_in(client):
    await seeded(client)
    resp = await client.post(f"/his-sim/{CODE}/_launch-token", json={"user_id": DOCTOR, "patient": "28296086"})
    assert resp.status == 201
    minted = await resp.json()
    resp = await launch(client, minted["launch_token"])
    assert resp.status == 200, await resp.text()
    session = await resp.json()
    assert session["token_type"] == "Bearer" and session["refresh_token"] and session["expires_in"] > 0
    staff = session["account"]["staff"]
    assert staff["roles"] == ["doctor"] and staff["institution"]["code"] == CODE
    assert session["context"] == {"institution_code": CODE, "patient": "28296086"}
    me = await client.get("/api/v1/me", headers=bearer(session))
    assert me.status == 200 and (await me.json())["staff"]["name"] == staff["name"]
    # The seeded doctor's WeChat account is the one logged in: one person, one account.
    seeded_staff = await Staff.get(institution__code=CODE, his_user_id=DOCTOR)
    account = await WeChatAccount.get(staff_id=seeded_staff.id)
    assert session["account"]["id"] == str(account.public_id)
    # The refresh token rotates like any other session's.
    resp = await client.post("/api/v1/auth/refresh", json={"refresh_token": session["refresh_token"]})
    assert resp.status == 200


async def test_each_launch_token_is_accepted_once(client):
    await seeded(client)
    token = mint_launch_token(CODE, DOCTOR)
    assert (await launch(client, token)).status == 200
    await refused(client, token, "LAUNCH_REPLAYED")
    assert (await launch(client, mint_launch_token(CODE, DOCTOR))).status == 200


async def test_a_token_signed_with_another_key_is_refused(client):
    await seeded(client)
    await refused(client, mint_launch_token(CODE, DOCTOR, key=ed25519.Ed25519PrivateKey.generate()),
                  "LAUNCH_BAD_SIGNATURE")
    # Another member's (valid) key cannot sign for this one.
    await refused(client, mint_launch_token(CODE, DOCTOR, key=demo_launch_key("GAOYOU")), "LAUNCH_BAD_SIGNATURE")
    # Algorithm confusion: an HMAC over the registered public key is not a signature.
    institution = await Institution.get(code=CODE)
    now = int(time.time())
    claims = {"iss": CODE, "sub": DOCTOR, "aud": "referral-cloud", "iat": now, "exp": now + 60,
              "jti": uuid.uuid4().hex}
    hmac_token = hand_signed_hs256(claims, institution.launch_public_key.encode())
    await refused(client, hmac_token, "LAUNCH_BAD_SIGNATURE")
    # An unsigned token.
    unsigned = jwt.encode({"iss": CODE, "sub": DOCTOR, "aud": "referral-cloud", "iat": now, "exp": now + 60,
                           "jti": uuid.uuid4().hex}, None, algorithm="none")
    await refused(client, unsigned, "LAUNCH_BAD_SIGNATURE")


async def test_expired_future_and_overlong_tokens_are_refused(client):
    await seeded(client)
    await refused(client, mint_launch_token(CODE, DOCTOR, ttl=60, now=time.time() - 600), "LAUNCH_EXPIRED")
    await refused(client, mint_launch_token(CODE, DOCTOR, ttl=60, now=time.time() + 600), "LAUNCH_NOT_YET_VALID")
    await refused(client, mint_launch_token(CODE, DOCTOR, ttl=3600), "LAUNCH_LIFETIME_TOO_LONG")


async def test_unknown_institution_and_unknown_user_are_refused(client):
    await seeded(client)
    await refused(client, mint_launch_token("NOT-A-MEMBER", DOCTOR), "LAUNCH_UNKNOWN_INSTITUTION")
    await refused(client, mint_launch_token(CODE, "NOBODY42"), "LAUNCH_UNKNOWN_USER")
    # HIS user ids are per institution: another member's user id means nothing here, and the same id at
    # two members names two different people.
    gaoyou = await Institution.get(code="GAOYOU")
    await Staff.create(institution=gaoyou, name="周海波", roles=["doctor"], his_user_id="G777")
    await refused(client, mint_launch_token(CODE, "G777"), "LAUNCH_UNKNOWN_USER")
    session = await (await launch(client, mint_launch_token("GAOYOU", DOCTOR))).json()
    assert session["account"]["staff"]["institution"]["code"] == "GAOYOU"
    # A deactivated staff member can no longer come in from the HIS.
    await Staff.filter(institution__code=CODE, his_user_id=DOCTOR).update(is_active=False)
    await refused(client, mint_launch_token(CODE, DOCTOR), "LAUNCH_UNKNOWN_USER")


async def test_malformed_tokens_and_wrong_audience_are_refused(client):
    await seeded(client)
    await refused(client, "not-a-jwt", "LAUNCH_MALFORMED")
    key = demo_launch_key(CODE)
    now = int(time.time())
    base = {"iss": CODE, "sub": DOCTOR, "aud": "referral-cloud", "iat": now, "exp": now + 60, "jti": "j1"}
    no_jti = {k: v for k, v in base.items() if k != "jti"}
    await refused(client, jwt.encode(no_jti, key, algorithm="EdDSA"), "LAUNCH_MALFORMED")
    no_iss = {k: v for k, v in base.items() if k != "iss"}
    await refused(client, jwt.encode(no_iss, key, algorithm="EdDSA"), "LAUNCH_MALFORMED")
    await refused(client, jwt.encode(base | {"aud": "some-other-app"}, key, algorithm="EdDSA"),
                  "LAUNCH_WRONG_AUDIENCE")
    resp = await client.post("/api/v1/auth/his-launch", json={})
    assert resp.status == 422


async def test_an_institution_without_a_registered_key_cannot_launch(client):
    await seeded(client)
    await Institution.filter(code=CODE).update(launch_public_key="")
    await refused(client, mint_launch_token(CODE, DOCTOR), "LAUNCH_KEY_NOT_REGISTERED")
    await Institution.filter(code=CODE).update(launch_public_key="-----BEGIN PUBLIC KEY-----\nnope\n")
    await refused(client, mint_launch_token(CODE, DOCTOR), "LAUNCH_KEY_INVALID")


async def test_rsa_and_ec_keys_are_accepted_in_their_own_algorithm(client):
    await seeded(client)
    for private_key, algorithm in ((rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256"),
                                   (ec.generate_private_key(ec.SECP256R1()), "ES256")):
        await Institution.filter(code=CODE).update(launch_public_key=pem(private_key.public_key()))
        now = int(time.time())
        claims = {"iss": CODE, "sub": DOCTOR, "aud": "referral-cloud", "iat": now, "exp": now + 60,
                  "jti": uuid.uuid4().hex}
        assert (await launch(client, jwt.encode(claims, private_key, algorithm=algorithm))).status == 200
        other = "ES256" if algorithm == "RS256" else "RS256"
        wrong_alg_key = (ec.generate_private_key(ec.SECP256R1()) if other == "ES256"
                         else rsa.generate_private_key(public_exponent=65537, key_size=2048))
        claims["jti"] = uuid.uuid4().hex
        await refused(client, jwt.encode(claims, wrong_alg_key, algorithm=other), "LAUNCH_BAD_SIGNATURE")


async def test_staff_who_only_come_from_the_his_get_one_account(client):
    await seeded(client)
    institution = await Institution.get(code=CODE)
    nurse_doctor = await Staff.create(institution=institution, name="孙立新", roles=["doctor"], his_user_id="D9001")
    first = await launch(client, mint_launch_token(CODE, "D9001"))
    assert first.status == 200, await first.text()
    second = await launch(client, mint_launch_token(CODE, "D9001"))
    assert (await first.json())["account"]["id"] == (await second.json())["account"]["id"]
    account = await WeChatAccount.get(staff_id=nurse_doctor.id)
    assert account.openid == f"his:{nurse_doctor.public_id}"
    assert (await first.json())["account"]["kind"] == "staff"


async def test_the_simulator_exposes_the_demo_public_key_the_seed_registered(client):
    await seeded(client)
    body = await (await client.get(f"/his-sim/{CODE}/_launch-key")).json()
    assert body["algorithm"] == "EdDSA"
    assert (await Institution.get(code=CODE)).launch_public_key == body["public_key_pem"]
    resp = await client.post(f"/his-sim/{CODE}/_launch-token", json={"user_id": ""})
    assert resp.status == 422
