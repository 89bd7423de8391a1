"""Credentials against the simulator's generic FHIR server personality: static bearer and Basic, OAuth2 client
credentials with a token shared by every gateway on one store (one fetch, under a lock), SMART Backend Services
assertions (RS384 with a PEM key, ES384 through a JWKS; bad, stale and replayed assertions refused), and the
reading of Retry-After."""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from his.auth import ASSERTION_TYPE, HisCredentials, client_assertion, retry_after_seconds
from his.fhir import FhirGateway
from his.gateway import HisAuthFailed, HisEndpoint, HisNotConfigured
from his.simulator import SimulatorState, create_simulator_app
from his.simulator.generic import GenericPersonality
from kv.memory import MemoryKV

CODE = "SUBEI"
SECRET = "client-secret-0123456789"


def pem_private(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def pem_public(key) -> str:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo).decode()


RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP384R1())


@pytest.fixture
def state() -> SimulatorState:
    return SimulatorState(report_delay=0)


@pytest.fixture
async def server(aiohttp_server, state):
    return await aiohttp_server(create_simulator_app(state))


@pytest.fixture
async def kv():
    store = MemoryKV("test:")
    yield store
    await store.close()


@pytest.fixture
async def gateways(kv):
    """Two gateways sharing one store, as two processes share Redis."""
    made = [FhirGateway(timeout=2.0, credentials=HisCredentials(kv, lock_timeout=5)) for _ in range(2)]
    yield made
    for gateway in made:
        await gateway.close()


def endpoint(server, **auth) -> HisEndpoint:
    return HisEndpoint(CODE, str(server.make_url(f"/his-sim/{CODE}/fhir")), client_id="referral-cloud",
                       token_url=str(server.make_url(f"/his-sim/{CODE}/oauth/token")), **auth)


def person(state: SimulatorState) -> dict:
    return state.store(CODE).demo_listing()[0]


async def test_basic_and_static_bearer_credentials(server, state, gateways):
    gateway = gateways[0]
    state.make_generic(CODE, GenericPersonality(auth="basic", client_secret=SECRET))
    record = await gateway.lookup_patient(endpoint(server, auth="basic", secret=SECRET), person(state)["mrn"])
    assert record.demographics.name == person(state)["name"]
    with pytest.raises(HisAuthFailed):
        await gateway.lookup_patient(endpoint(server, auth="basic", secret="wrong"), person(state)["mrn"])
    # A static token the server does not know is refused at once: nothing to renew.
    state.make_generic(CODE, GenericPersonality(client_secret=SECRET))
    with pytest.raises(HisAuthFailed) as refused:
        await gateway.lookup_patient(endpoint(server, auth="bearer", secret="not-a-token"), person(state)["mrn"])
    assert refused.value.status == 503 and "HIS 连接配置" in refused.value.message
    assert state.personalities[CODE].refused == 1
    with pytest.raises(HisAuthFailed):  # a server that wants credentials and gets none
        await gateway.lookup_patient(endpoint(server), person(state)["mrn"])


async def test_one_client_credentials_token_serves_every_gateway_sharing_the_store(server, state, gateways, kv):
    generic = state.make_generic(CODE, GenericPersonality(client_secret=SECRET, token_ttl=600))
    ep = endpoint(server, auth="client_credentials", secret=SECRET, scope="system/*.read")
    code = person(state)["mrn"]
    await asyncio.gather(*(gw.lookup_patient(ep, code) for gw in gateways for _ in range(5)))
    assert generic.token_requests == 1 and generic.refused == 0
    # Kept in the store under the institution's key, never in clear in any log line (see test_privacy).
    keys = [k for k in kv._data if k.startswith("his:token:SUBEI:")]
    assert len(keys) == 1
    # Another secret is another cache entry: the token of the old credentials is not reused.
    await gateways[1].lookup_patient(replace(ep, scope="system/*.*"), code)
    assert generic.token_requests == 2


async def test_a_wrong_client_secret_names_the_oauth_error(server, state, gateways):
    state.make_generic(CODE, GenericPersonality(client_secret=SECRET))
    with pytest.raises(HisAuthFailed) as refused:
        await gateways[0].lookup_patient(endpoint(server, auth="client_credentials", secret="nope"), "00012345")
    assert "invalid_client" in refused.value.message


@pytest.mark.parametrize("kind", ["RS384 with a PEM key", "ES384 through a JWKS"])
async def test_smart_backend_services(server, state, gateways, kind):
    key, kid = (RSA_KEY, "") if kind.startswith("RS") else (EC_KEY, "ec-2026")
    if kid:
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": kid, "alg": "ES384"}
        generic = GenericPersonality(auth="smart_backend", jwks={"keys": [jwk]})
    else:
        generic = GenericPersonality(auth="smart_backend", public_key_pem=pem_public(key))
    state.make_generic(CODE, generic)
    ep = endpoint(server, auth="smart_backend", secret=pem_private(key), key_id=kid, scope="system/*.read")
    record = await gateways[0].lookup_patient(ep, person(state)["mrn"])
    assert record.demographics.mrn == person(state)["mrn"] and generic.token_requests == 1
    claims = jwt.decode(client_assertion(ep), options={"verify_signature": False})
    assert claims["iss"] == claims["sub"] == "referral-cloud" and claims["aud"] == ep.token_url
    assert claims["exp"] - claims["iat"] <= 300 and claims["jti"]
    assert jwt.get_unverified_header(client_assertion(ep))["alg"] == kind[:5]


async def test_the_token_endpoint_refuses_bad_stale_and_replayed_assertions(server, state):
    state.make_generic(CODE, GenericPersonality(auth="smart_backend", public_key_pem=pem_public(RSA_KEY)))
    ep = endpoint(server, auth="smart_backend", secret=pem_private(RSA_KEY))

    async def ask(assertion: str) -> tuple[int, dict]:
        import aiohttp

        async with aiohttp.ClientSession() as session, session.post(ep.token_url, data={
                "grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE,
                "client_assertion": assertion}) as resp:
            return resp.status, await resp.json()

    good = client_assertion(ep)
    assert (await ask(good))[0] == 200
    status, body = await ask(good)
    assert (status, body["error"]) == (401, "invalid_client") and "重放" in body["error_description"]

    def signed(key, algorithm: str = "RS384", **changes) -> str:
        now = int(time.time())
        claims = {"iss": ep.client_id, "sub": ep.client_id, "aud": ep.token_url, "jti": f"j{time.monotonic_ns()}",
                  "iat": now, "exp": now + 300} | changes
        return jwt.encode(claims, key, algorithm=algorithm)

    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    refused = {
        "another key": signed(other),
        "expired": signed(RSA_KEY, iat=int(time.time()) - 900, exp=int(time.time()) - 600),
        "lives an hour": signed(RSA_KEY, exp=int(time.time()) + 3600),
        "another audience": signed(RSA_KEY, aud="https://elsewhere.example/token"),
        "sub is not iss": signed(RSA_KEY, sub="someone-else"),
        "HMAC": signed(SECRET * 2, "HS256"),
        "RS256": signed(RSA_KEY, "RS256"),
    }
    for reason, assertion in refused.items():
        status, body = await ask(assertion)
        assert (status, body["error"]) == (401, "invalid_client"), reason
    assert (await ask(signed(RSA_KEY)))[0] == 200


def test_an_unusable_smart_key_is_a_configuration_error():
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    p256 = ec.generate_private_key(ec.SECP256R1())
    for secret in ("not a key", pem_private(weak), pem_private(p256)):
        with pytest.raises(HisNotConfigured):
            client_assertion(HisEndpoint(CODE, "https://his.example/fhir", auth="smart_backend", secret=secret,
                                         client_id="c", token_url="https://his.example/token"))


def test_retry_after_is_read_as_seconds_or_as_an_http_date():
    now = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now=now) == 120
    assert retry_after_seconds(format_datetime(now + timedelta(seconds=45), usegmt=True), now=now) == 45
    assert retry_after_seconds("Mon, 30 Nov 2026 07:59:00 GMT", now=now) == 0  # already past: now
    for unreadable in (None, "", "soon", "-5", "1.5"):
        assert retry_after_seconds(unreadable, now=now) is None


def test_secrets_stay_out_of_the_endpoint_repr():
    ep = HisEndpoint(CODE, "https://his.example/fhir", auth="bearer", secret="top-secret-token",
                     his_client_key="-----BEGIN PRIVATE KEY-----")
    assert "top-secret-token" not in repr(ep) and "PRIVATE KEY" not in repr(ep)
