"""The per-process cache of institutions, departments, policies and staff names: served from memory, cleared
by every save in this process, by a database (re)open and by its TTL for writes made elsewhere."""

from __future__ import annotations

import asyncio

import db
from appkeys import KV_STORE
from directory import cache
from models import Department, Institution, InstitutionPolicy
from tests.support import bearer, login_demo, seeded
from tests.test_outbox import eventually


async def _subei() -> Institution:
    return await Institution.get(code="SUBEI")


async def test_a_row_is_read_once_then_served_from_memory(client):
    await seeded(client)
    subei = await _subei()
    first = await cache.institution(subei.id)
    # A write that bypasses the ORM's save (as another process's would) is not seen until the TTL runs out...
    await Institution.filter(id=subei.id).update(name="改名后的医院")
    again = await cache.institution(subei.id)
    assert again is first and again.name == subei.name


async def test_the_ttl_lets_other_processes_writes_in(client, monkeypatch):
    await seeded(client)
    subei = await _subei()
    await cache.department((await Department.filter(institution_id=subei.id).first()).id)
    await cache.institution(subei.id)
    await Institution.filter(id=subei.id).update(name="改名后的医院")
    assert (await cache.institution(subei.id)).name == subei.name
    later = cache._clock() + cache.TTL + 1
    monkeypatch.setattr(cache, "_clock", lambda: later)
    assert (await cache.institution(subei.id)).name == "改名后的医院"


async def test_a_save_in_this_process_clears_the_cache(client):
    await seeded(client)
    department = await Department.filter(institution__code="SUBEI").first()
    assert (await cache.department(department.id)).ward == department.ward
    department.ward = "东区 12 楼"
    await department.save()
    assert (await cache.department(department.id)).ward == "东区 12 楼"
    spare = await Department.create(institution_id=department.institution_id, code="TMP", name="临时科室")  # type: ignore[attr-defined]
    await cache.department(spare.id)
    await spare.delete()
    assert not cache._rows


async def test_a_policy_is_created_with_the_defaults_on_first_use_and_admin_edits_apply_at_once(client):
    await seeded(client)
    subei = await _subei()
    await InstitutionPolicy.filter(institution_id=subei.id).delete()
    policy = await cache.policy(subei.id)
    assert policy.source_approval_up is True and await InstitutionPolicy.filter(institution_id=subei.id).count() == 1
    admin = await login_demo(client, "SUBEI", "admin")
    resp = await client.put("/api/v1/admin/policy", json={"approver_roles": ["approver", "expert"]},
                            headers=bearer(admin))
    assert resp.status == 200
    assert (await cache.policy(subei.id)).approver_roles == ["approver", "expert"]


async def test_opening_the_database_starts_empty(client, settings):
    await seeded(client)
    await cache.institution((await _subei()).id)
    assert cache._rows
    await db.close_db()
    await db.open_db(settings)  # what every app start (and every test's app) does
    assert not cache._rows


async def test_a_change_published_by_another_process_clears_the_cache_here(client):
    await seeded(client)
    subei = await _subei()
    await cache.institution(subei.id)
    await Institution.filter(id=subei.id).update(name="改名后的医院")  # written by another process...
    await client.server.app[KV_STORE].publish(cache.CHANNEL, "1")  # ...which says so
    assert (await eventually(lambda: _named(subei.id, "改名后的医院"))) is True


async def test_a_save_here_is_published_for_the_other_processes(client):
    await seeded(client)
    kv = client.server.app[KV_STORE]
    department = await Department.filter(institution__code="SUBEI").first()
    async with kv.subscribe(cache.CHANNEL) as messages:
        department.ward = "西区 3 楼"
        await department.save()
        assert await asyncio.wait_for(anext(messages), 5) == "1"


async def _named(pk: int, name: str) -> bool:
    return (await cache.institution(pk)).name == name
