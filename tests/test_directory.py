"""Directory and institution-admin routes: who may see and change what."""

from __future__ import annotations

from directory.seed import DEPARTMENTS, INSTITUTIONS
from models import Level
from tests.support import bearer, login, login_demo, seeded


async def test_staff_see_the_consortium(client):
    await seeded(client)
    doctor = await login_demo(client, "DONGGUAN", "doctor")
    resp = await client.get("/api/v1/institutions", headers=bearer(doctor))
    assert resp.status == 200
    body = await resp.json()
    assert [i["code"] for i in body["items"]] == [code for code, *_ in INSTITUTIONS]
    assert body["next_cursor"] is None
    levels = [i["level"] for i in body["items"]]
    assert levels.count("tertiary") == 1 and levels.count("county") == 2 and levels.count("primary") == 4

    tertiary = body["items"][0]
    resp = await client.get(f"/api/v1/institutions/{tertiary['id']}/departments", headers=bearer(doctor))
    names = [d["name"] for d in (await resp.json())["items"]]
    assert names == [name for _, name, _ in DEPARTMENTS[Level.TERTIARY]]


async def test_institution_list_paginates_with_cursor(client):
    await seeded(client)
    doctor = await login_demo(client, "SUBEI", "doctor")
    seen, cursor = [], None
    while True:
        url = "/api/v1/institutions?limit=3" + (f"&cursor={cursor}" if cursor else "")
        body = await (await client.get(url, headers=bearer(doctor))).json()
        seen += [i["code"] for i in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == [code for code, *_ in INSTITUTIONS]
    bad = await client.get("/api/v1/institutions?cursor=%%%", headers=bearer(doctor))
    assert bad.status == 422


async def test_directory_is_for_staff_only(client):
    await seeded(client)
    assert (await client.get("/api/v1/institutions")).status == 401
    stranger = await login(client, "o_dir_stranger")
    resp = await client.get("/api/v1/institutions", headers=bearer(stranger))
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "STAFF_ONLY"


async def test_unknown_institution_ids(client):
    await seeded(client)
    doctor = await login_demo(client, "SUBEI", "doctor")
    for bad in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        resp = await client.get(f"/api/v1/institutions/{bad}/departments", headers=bearer(doctor))
        assert resp.status == 404
        assert (await resp.json())["error"]["message"]


async def test_admin_manages_own_departments_only(client):
    await seeded(client)
    admin = await login_demo(client, "BAOYING", "admin")
    resp = await client.post("/api/v1/admin/departments", json={"code": "PED", "name": "儿科", "ward": "儿科病区"},
                             headers=bearer(admin))
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    dup = await client.post("/api/v1/admin/departments", json={"code": "PED", "name": "儿科"}, headers=bearer(admin))
    assert dup.status == 409

    resp = await client.patch(f"/api/v1/admin/departments/{created['id']}", json={"is_active": False},
                              headers=bearer(admin))
    assert (await resp.json())["is_active"] is False

    other_admin = await login_demo(client, "GAOYOU", "admin")
    resp = await client.patch(f"/api/v1/admin/departments/{created['id']}", json={"name": "偷改"},
                              headers=bearer(other_admin))
    assert resp.status == 404
    own = await (await client.get("/api/v1/admin/departments", headers=bearer(other_admin))).json()
    assert created["id"] not in [d["id"] for d in own["items"]]


async def test_admin_manages_own_staff_only(client):
    await seeded(client)
    admin = await login_demo(client, "BAOYING", "admin")
    staff = (await (await client.get("/api/v1/admin/staff", headers=bearer(admin))).json())["items"]
    assert len(staff) == 5 and all(s["wechat_bound"] for s in staff)
    doctor = next(s for s in staff if s["roles"] == ["doctor"])

    resp = await client.patch(f"/api/v1/admin/staff/{doctor['id']}", json={"roles": ["doctor", "approver"]},
                              headers=bearer(admin))
    assert resp.status == 200
    assert sorted((await resp.json())["roles"]) == ["approver", "doctor"]
    session = await login_demo(client, "BAOYING", "doctor")
    assert sorted(session["account"]["staff"]["roles"]) == ["approver", "doctor"]

    other_admin = await login_demo(client, "SUBEI", "admin")
    resp = await client.patch(f"/api/v1/admin/staff/{doctor['id']}", json={"roles": ["admin"]},
                              headers=bearer(other_admin))
    assert resp.status == 404
    resp = await client.delete(f"/api/v1/admin/staff/{doctor['id']}", headers=bearer(other_admin))
    assert resp.status == 404

    me = next(s for s in staff if s["roles"] == ["admin"])
    resp = await client.patch(f"/api/v1/admin/staff/{me['id']}", json={"roles": ["doctor"]}, headers=bearer(admin))
    assert resp.status == 409

    resp = await client.delete(f"/api/v1/admin/staff/{doctor['id']}", headers=bearer(admin))
    assert resp.status == 200
    # The removed doctor's WeChat login no longer carries any staff identity.
    after = await login_demo(client, "BAOYING", "doctor")
    assert after["account"]["kind"] == "unbound"
    assert (await client.get("/api/v1/institutions", headers=bearer(after))).status == 403


async def test_deactivated_staff_lose_access_at_once(client):
    await seeded(client)
    admin = await login_demo(client, "WENHE", "admin")
    clerk_session = await login_demo(client, "WENHE", "admission_clerk")
    clerk_id = clerk_session["account"]["staff"]["id"]
    assert (await client.get("/api/v1/institutions", headers=bearer(clerk_session))).status == 200
    resp = await client.patch(f"/api/v1/admin/staff/{clerk_id}", json={"is_active": False}, headers=bearer(admin))
    assert resp.status == 200
    # The same, still unexpired access token now carries no staff rights.
    assert (await client.get("/api/v1/institutions", headers=bearer(clerk_session))).status == 403


async def test_non_admins_cannot_use_admin_routes(client):
    await seeded(client)
    approver = await login_demo(client, "SUBEI", "approver")
    for method, path in (("GET", "/api/v1/admin/staff"), ("GET", "/api/v1/admin/departments")):
        resp = await client.request(method, path, headers=bearer(approver))
        assert resp.status == 403


async def test_demo_beds_fill_two_weeks_and_leave_published_days_alone(client):
    from datetime import timedelta

    from directory.seed import DEMO_BED_DAYS, DEMO_BEDS, seed_demo_beds
    from models import CapacityDay, Department
    from tests.referral_support import Desk
    from timeutil import china_today

    desk = await Desk.open(client)
    today = china_today()
    await desk.publish_beds("SUBEI", "CARD", today, 1)  # an approver's own number for today
    departments = await Department.filter(deleted_at=None).count()
    added = await seed_demo_beds()
    assert added == departments * DEMO_BED_DAYS - 1
    assert (await desk.beds("SUBEI", "CARD", today))["capacity"] == 1
    last = today + timedelta(days=DEMO_BED_DAYS - 1)
    assert (await desk.beds("GAOYOU", "MED", last))["available"] == DEMO_BEDS
    assert not await CapacityDay.filter(day=last + timedelta(days=1)).exists()
    assert await seed_demo_beds() == 0  # idempotent
