"""Mutual TLS to a front-end processor: a local HTTPS endpoint that requires a client certificate from the
consortium's CA. The adapter connects with the institution's own CA bundle and client certificate (PEM
texts from the Institution row), and fails with a typed error without them."""

from __future__ import annotations

import ipaddress
import ssl
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from his.fhir import FhirGateway
from his.gateway import HisEndpoint, HisNotConfigured, HisUnreachable
from his.simulator import SimulatorState, create_simulator_app

CODE = "SUBEI"
CLIENT_CN = "referral-cloud-platform"


@dataclass
class Pem:
    cert: str
    key: str


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _pem_cert(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def make_ca(name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, encipher_only=False,
                                         decipher_only=False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], common_name: str, *, server: bool) -> Pem:
    ca_cert, ca_key = ca
    key = _key()
    now = datetime.now(UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
               .issuer_name(ca_cert.subject).public_key(key.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(minutes=5))
               .not_valid_after(now + timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                              critical=False)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return Pem(_pem_cert(builder.sign(ca_key, hashes.SHA256())), _pem_key(key))


@dataclass
class Pki:
    ca_pem: str
    server: Pem
    client: Pem
    rogue_client: Pem  # signed by a CA the server does not trust


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca = make_ca("医联体 HIS 前置机测试 CA")
    rogue = make_ca("Untrusted CA")
    return Pki(ca_pem=_pem_cert(ca[0]), server=issue(ca, "127.0.0.1", server=True),
               client=issue(ca, CLIENT_CN, server=False), rogue_client=issue(rogue, CLIENT_CN, server=False))


def server_context(pki: Pki) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cadata=pki.ca_pem)
    context.verify_mode = ssl.CERT_REQUIRED
    with tempfile.TemporaryDirectory() as directory:
        cert, key = Path(directory, "server.crt"), Path(directory, "server.key")
        cert.write_text(pki.server.cert)
        key.write_text(pki.server.key)
        context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def state() -> SimulatorState:
    return SimulatorState(report_delay=0)


@pytest.fixture
async def tls_server(aiohttp_server, pki, state):
    """The simulator behind HTTPS that requires a client certificate; records the peers it saw."""
    peers: list[str] = []

    @web.middleware
    async def record_peer(request: web.Request, handler):
        cert = request.transport.get_extra_info("peercert") if request.transport else None
        subject = dict(item for rdn in (cert or {}).get("subject", ()) for item in rdn)
        peers.append(subject.get("commonName", ""))
        return await handler(request)

    app = web.Application(middlewares=[record_peer])
    app.add_subapp("/his-sim/", create_simulator_app(state, prefix=""))
    server = await aiohttp_server(app, ssl=server_context(pki))
    server.peers = peers
    return server


@pytest.fixture
async def gateway():
    gw = FhirGateway(timeout=2.0, retry_backoff=0.01)
    yield gw
    await gw.close()


def endpoint(server, **pem) -> HisEndpoint:
    url = f"https://127.0.0.1:{server.port}/his-sim/{CODE}/fhir"
    return HisEndpoint(CODE, url, **pem)


async def test_the_adapter_connects_with_the_institutions_ca_and_client_certificate(tls_server, pki, state, gateway):
    person = state.store(CODE).demo_listing()[0]
    ep = endpoint(tls_server, his_ca_bundle=pki.ca_pem, his_client_cert=pki.client.cert,
                  his_client_key=pki.client.key)
    record = await gateway.lookup_patient(ep, person["card_code"])
    assert record.demographics.mrn == person["mrn"]
    assert tls_server.peers and set(tls_server.peers) == {CLIENT_CN}


async def test_certificate_and_key_may_come_in_one_pem(tls_server, pki, state, gateway):
    person = state.store(CODE).demo_listing()[0]
    ep = endpoint(tls_server, his_ca_bundle=pki.ca_pem, his_client_cert=pki.client.cert + pki.client.key)
    assert (await gateway.lookup_patient(ep, person["mrn"])).demographics.mrn == person["mrn"]


@pytest.mark.parametrize("case", ["no client certificate", "client certificate from an untrusted CA",
                                  "server not trusted"])
async def test_without_the_right_certificates_the_call_fails_with_his_unreachable(tls_server, pki, state,
                                                                                 gateway, case):
    pem = {
        "no client certificate": {"his_ca_bundle": pki.ca_pem},
        "client certificate from an untrusted CA": {"his_ca_bundle": pki.ca_pem,
                                                    "his_client_cert": pki.rogue_client.cert,
                                                    "his_client_key": pki.rogue_client.key},
        "server not trusted": {"his_client_cert": pki.client.cert, "his_client_key": pki.client.key},
    }[case]
    started = time.monotonic()
    with pytest.raises(HisUnreachable) as caught:
        await gateway.lookup_patient(endpoint(tls_server, **pem), state.store(CODE).demo_listing()[0]["mrn"])
    assert caught.value.code == "HIS_UNREACHABLE" and caught.value.institution == CODE
    assert time.monotonic() - started < 2.5
    assert tls_server.peers == []  # no request reached the HIS


async def test_a_broken_certificate_configuration_is_reported_as_not_configured(tls_server, pki, gateway):
    ep = endpoint(tls_server, his_ca_bundle=pki.ca_pem, his_client_cert="-----BEGIN CERTIFICATE-----\nbroken\n")
    with pytest.raises(HisNotConfigured) as caught:
        await gateway.lookup_patient(ep, "12345678")
    assert "证书" in caught.value.message


async def test_connections_are_cached_per_institution_and_rebuilt_when_its_configuration_changes(
        tls_server, pki, state, gateway):
    mrn = state.store(CODE).demo_listing()[0]["mrn"]
    good = endpoint(tls_server, his_ca_bundle=pki.ca_pem, his_client_cert=pki.client.cert,
                    his_client_key=pki.client.key)
    await gateway.lookup_patient(good, mrn)
    session = gateway._sessions[CODE][1]
    await gateway.lookup_patient(good, mrn)
    assert gateway._sessions[CODE][1] is session
    with pytest.raises(HisUnreachable):
        await gateway.lookup_patient(endpoint(tls_server, his_ca_bundle=pki.ca_pem), mrn)
    assert gateway._sessions[CODE][1] is not session
    assert (await gateway.lookup_patient(good, mrn)).demographics.mrn == mrn
