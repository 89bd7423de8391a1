"""The HIS gateway inside the real app (embedded and PostgreSQL+Redis): the simulator runs on its own port
and is mounted at /his-sim/, institutions without a front-end processor URL use it, and the gateway is
closed with the app."""

from __future__ import annotations

import pytest

from app import create_app
from appkeys import HIS, HIS_SIMULATOR
from his.gateway import GatewayRouter, HisNotConfigured, IdentityMatch
from models import Institution, Level
from tests.conftest import make_settings


async def test_institutions_without_a_url_use_the_embedded_simulator(client):
    app = client.server.app
    state = app[HIS_SIMULATOR]
    assert state.base_url is not None and state.base_url.startswith("http://127.0.0.1:")
    institution = await Institution.create(code="SUBEI", name="江苏省苏北人民医院", level=Level.TERTIARY)
    person = state.store("SUBEI").demo_listing()[0]
    gateway = app[HIS]
    assert isinstance(gateway, GatewayRouter)
    record = await gateway.lookup_patient(institution, person["card_code"])
    assert record.demographics.name == person["name"]
    assert await gateway.verify_identity(institution, person["id_number"], person["name"]) is IdentityMatch.MATCH


async def test_the_simulator_is_mounted_on_the_main_app_and_shares_its_state(client):
    state = client.server.app[HIS_SIMULATOR]
    resp = await client.get("/his-sim/GAOYOU/_patients")
    assert resp.status == 200
    assert (await resp.json())["items"] == state.store("GAOYOU").demo_listing()
    resp = await client.get("/his-sim/GAOYOU/fhir/metadata")
    assert resp.status == 200 and (await resp.json())["resourceType"] == "CapabilityStatement"
    resp = await client.post("/his-sim/_faults", json={"kind": "error500", "count": 1, "institution": "GAOYOU"})
    assert resp.status == 201 and len(state.faults) == 1


async def test_without_the_embedded_his_an_institution_needs_its_own_url(aiohttp_client, tmp_path, sqlite_template):
    import shutil

    shutil.copy(sqlite_template, tmp_path / "referral.sqlite3")
    app = create_app(make_settings(tmp_path, embedded_his=False))
    client = await aiohttp_client(app)
    assert HIS_SIMULATOR not in app
    assert (await client.get("/his-sim/SUBEI/fhir/metadata")).status == 404
    institution = await Institution.create(code="SUBEI", name="江苏省苏北人民医院", level=Level.TERTIARY)
    with pytest.raises(HisNotConfigured):
        await app[HIS].lookup_patient(institution, "12345678")
