"""Setting, reading and testing an institution's HIS connection: the admin API (its own admin only, secrets
encrypted at rest and never returned, a step-by-step test report in Chinese) and `python app.py his-connection`."""

from __future__ import annotations

import json

import pytest

from appkeys import CIPHER, HIS_SIMULATOR
from his.connection import SECRET_CONTEXT
from models import Institution
from tests.referral_support import Desk
from tests.support import run_app_cli
from tests.test_his_auth import EC_KEY, pem_private

SECRET = "client-secret-never-shown-9f3a"


def path(institution: Institution, test: bool = False) -> str:
    return f"/api/v1/admin/institutions/{institution.public_id}/his-connection" + ("/test" if test else "")


async def generic_subei(client, secret: str = SECRET) -> dict:
    """SUBEI's simulated HIS as a generic FHIR server; returns the settings that reach it."""
    resp = await client.put("/his-sim/SUBEI/_personality", json={
        "kind": "generic", "auth": "client_credentials", "client_id": "rc", "client_secret": secret})
    assert resp.status == 200
    state = client.server.app[HIS_SIMULATOR]
    return {"base_url": state.fhir_base("SUBEI"), "auth": "client_credentials", "token_url": state.token_url("SUBEI"),
            "client_id": "rc", "secret": secret, "scope": "system/*.read system/*.write", "identifiers": "platform"}


async def test_an_admin_sets_reads_and_tests_the_connection_without_ever_seeing_the_secret(client):
    desk = await Desk.open(client)
    subei = await Institution.get(code="SUBEI")
    admin = await desk.headers(("SUBEI", "admin"))
    before = await desk.ok(await client.get(path(subei), headers=admin))
    assert before["auth"] == "none" and before["uses_simulator"] and not before["secret_configured"]

    settings = await generic_subei(client)
    resp = await client.put(path(subei), headers=admin, json=settings)
    saved = await desk.ok(resp)
    assert SECRET not in await resp.text()
    assert saved["secret_configured"] and saved["auth"] == "client_credentials"
    assert saved["identifiers"] == "platform" and saved["token_url"] == settings["token_url"]
    shown = await client.get(path(subei), headers=admin)
    assert SECRET not in await shown.text() and (await shown.json()) == saved
    row = await Institution.get(id=subei.id)
    assert row.his_secret_enc.startswith("v1.") and SECRET not in row.his_secret_enc
    assert client.server.app[CIPHER].decrypt(row.his_secret_enc, SECRET_CONTEXT) == SECRET

    report = await desk.ok(await client.post(path(subei, test=True), headers=admin))
    assert report["ok"] is True
    assert [(s["step"], s["ok"]) for s in report["steps"]] == [
        ("connect", True), ("auth", True), ("metadata", True), ("search", True)]
    assert "访问令牌" in report["steps"][1]["message"] and "FHIR 4.0.1" in report["steps"][2]["message"]

    # Changing one field keeps the others, the secret included; an empty secret with auth none clears it.
    saved = await desk.ok(await client.put(path(subei), headers=admin, json={"scope": "system/*.*"}))
    assert saved["secret_configured"] and saved["scope"] == "system/*.*"
    cleared = await desk.ok(await client.put(path(subei), headers=admin, json={"auth": "none", "secret": ""}))
    assert not cleared["secret_configured"] and (await Institution.get(id=subei.id)).his_secret_enc == ""


async def test_the_test_names_the_step_that_failed(client):
    desk = await Desk.open(client)
    subei = await Institution.get(code="SUBEI")
    admin = await desk.headers(("SUBEI", "admin"))

    async def run(**settings) -> list[tuple[str, bool | None, str]]:
        await desk.ok(await client.put(path(subei), headers=admin, json=settings))
        report = await desk.ok(await client.post(path(subei, test=True), headers=admin))
        assert report["ok"] is False
        return [(s["step"], s["ok"], s["message"]) for s in report["steps"]]

    good = await generic_subei(client)
    steps = await run(**good | {"secret": "wrong-secret"})
    assert [s[:2] for s in steps] == [("connect", True), ("auth", False), ("metadata", None), ("search", None)]
    assert "invalid_client" in steps[1][2] and steps[2][2] == "因前一步失败而跳过"

    steps = await run(auth="bearer", secret="a-token-the-server-never-issued")
    assert [s[:2] for s in steps] == [("connect", True), ("auth", True), ("metadata", False), ("search", None)]
    assert "拒绝了本平台的访问凭证" in steps[2][2]

    steps = await run(base_url="http://127.0.0.1:1/fhir", auth="none")
    assert steps[0][:2] == ("connect", False) and "127.0.0.1:1" in steps[0][2]

    steps = await run(base_url="http://his.invalid/fhir")
    assert steps[0][:2] == ("connect", False) and "无法解析域名 his.invalid" in steps[0][2]


async def test_only_the_institutions_own_admin_may_touch_it(client):
    desk = await Desk.open(client)
    subei = await Institution.get(code="SUBEI")
    for who in (("SUBEI", "doctor"), ("SUBEI", "approver"), ("DONGGUAN", "admin")):
        for method, url in (("GET", path(subei)), ("PUT", path(subei)), ("POST", path(subei, test=True))):
            resp = await client.request(method, url, headers=await desk.headers(who), json={"scope": "x"})
            assert resp.status == 403, (who, method)
    assert (await client.get(path(subei))).status == 401
    resp = await client.get("/api/v1/admin/institutions/00000000-0000-0000-0000-000000000000/his-connection",
                            headers=await desk.headers(("SUBEI", "admin")))
    assert resp.status == 404
    assert (await Institution.get(id=subei.id)).his_scope == ""


@pytest.mark.parametrize("body, field", [
    ({"auth": "client_credentials", "client_id": "rc", "secret": "s"}, "token_url"),
    ({"auth": "client_credentials", "token_url": "https://his.example/token", "secret": "s"}, "client_id"),
    ({"auth": "basic", "secret": "s"}, "client_id"),
    ({"auth": "bearer"}, "secret"),
    ({"auth": "smart_backend", "client_id": "rc", "token_url": "https://his.example/token", "secret": "pem?"},
     "PEM"),
    ({"base_url": "ftp://his.example/fhir"}, "http"),
    ({"base_url": "https://user:pass@his.example/fhir"}, "用户名"),
    ({"client_cert": "-----BEGIN CERTIFICATE-----\nbroken\n", "base_url": "https://his.example/fhir"}, "PEM"),
])
async def test_incomplete_or_malformed_settings_are_refused(client, body, field):
    desk = await Desk.open(client)
    subei = await Institution.get(code="SUBEI")
    resp = await client.put(path(subei), headers=await desk.headers(("SUBEI", "admin")), json=body)
    assert resp.status == 422, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "HIS_CONNECTION_INVALID" and field in error["message"]
    assert (await Institution.get(id=subei.id)).his_auth == "none"


async def test_unknown_fields_and_modes_are_refused(client):
    desk = await Desk.open(client)
    subei = await Institution.get(code="SUBEI")
    admin = await desk.headers(("SUBEI", "admin"))
    for body in ({"password": "x"}, {"auth": "digest"}, {"identifiers": "nobody"}):
        assert (await client.put(path(subei), headers=admin, json=body)).status == 422


async def test_a_smart_backend_key_is_accepted_and_never_shown(client):
    desk = await Desk.open(client)
    subei = await Institution.get(code="SUBEI")
    key = pem_private(EC_KEY)
    resp = await client.put(path(subei), headers=await desk.headers(("SUBEI", "admin")), json={
        "auth": "smart_backend", "client_id": "rc", "token_url": "https://his.example/oauth/token",
        "secret": key, "key_id": "ec-2026"})
    saved = await desk.ok(resp)
    assert saved["secret_configured"] and saved["key_id"] == "ec-2026" and "PRIVATE KEY" not in await resp.text()


async def test_the_command_line_sets_shows_and_tests_a_connection(client, settings, monkeypatch):
    await Desk.open(client)
    good = await generic_subei(client)
    monkeypatch.setenv("SUBEI_HIS_SECRET", SECRET)
    code, out, err = await run_app_cli(
        settings, "his-connection", "set", "SUBEI", "--base-url", good["base_url"], "--auth", "client_credentials",
        "--token-url", good["token_url"], "--client-id", "rc", "--scope", "system/*.*",
        "--identifiers", "platform", "--secret-env", "SUBEI_HIS_SECRET")
    assert code == 0, err
    assert "认证方式：client_credentials" in out and "密钥：已配置" in out and SECRET not in out + err
    code, out, err = await run_app_cli(settings, "his-connection", "show", "SUBEI", "--json")
    shown = json.loads(out)
    assert code == 0 and shown["secret_configured"] and shown["base_url"] == good["base_url"]
    assert SECRET not in out
    code, out, err = await run_app_cli(settings, "his-connection", "test", "SUBEI")
    assert code == 0, out + err
    assert out.count("[通过]") == 4 and "连接正常" in out and SECRET not in out + err

    code, out, err = await run_app_cli(settings, "his-connection", "set", "SUBEI", "--auth", "bearer",
                                       "--clear-secret")
    assert code == 1 and "secret" in err
    code, out, err = await run_app_cli(settings, "his-connection", "show", "NOWHERE")
    assert code == 1 and "NOWHERE" in err


async def test_the_mutual_tls_client_key_is_sealed_at_rest_and_still_used(client):
    from his.connection import CLIENT_KEY_CONTEXT, endpoint_of
    from tests.test_his_tls import issue, make_ca

    pem = issue(make_ca("测试 CA"), "rc-client", server=False)
    desk = await Desk.open(client)
    subei = await Institution.get(code="SUBEI")
    admin = await desk.headers(("SUBEI", "admin"))
    resp = await client.put(path(subei), headers=admin, json={
        "base_url": "https://his.example/fhir", "client_cert": pem.cert, "client_key": pem.key})
    saved = await desk.ok(resp)
    assert saved["client_key_configured"] and "PRIVATE KEY" not in await resp.text()
    row = await Institution.get(id=subei.id)
    cipher = client.server.app[CIPHER]
    assert "PRIVATE KEY" not in row.his_client_key
    assert cipher.decrypt(row.his_client_key, CLIENT_KEY_CONTEXT) == pem.key
    # The gateway connects with the key in clear; a later change of another field keeps it sealed and usable.
    assert endpoint_of(cipher, row).his_client_key == pem.key
    await desk.ok(await client.put(path(subei), headers=admin, json={"scope": "system/*.read"}))
    row = await Institution.get(id=subei.id)
    assert "PRIVATE KEY" not in row.his_client_key and endpoint_of(cipher, row).his_client_key == pem.key
    # A key stored in clear before keys were sealed still works, and the next save seals it.
    await Institution.filter(id=subei.id).update(his_client_key=pem.key)
    row = await Institution.get(id=subei.id)
    assert endpoint_of(cipher, row).his_client_key == pem.key
    await desk.ok(await client.put(path(subei), headers=admin, json={"scope": "system/*.*"}))
    assert "PRIVATE KEY" not in (await Institution.get(id=subei.id)).his_client_key
