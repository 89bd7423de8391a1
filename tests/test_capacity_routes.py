"""Reserved-bed and policy routes: who may publish, who may read, and what they refuse."""

from __future__ import annotations

from datetime import timedelta

from tests.support import bearer, login_demo, seeded
from timeutil import china_today


async def _department(client, session, code: str, index: int = 0) -> str:
    institutions = (await (await client.get("/api/v1/institutions", headers=bearer(session))).json())["items"]
    institution = next(i for i in institutions if i["code"] == code)
    departments = await (await client.get(f"/api/v1/institutions/{institution['id']}/departments",
                                          headers=bearer(session))).json()
    return departments["items"][index]["id"]


async def test_approver_publishes_beds_and_anyone_on_staff_reads_them(client):
    await seeded(client)
    approver = await login_demo(client, "SUBEI", "approver")
    department = await _department(client, approver, "SUBEI")
    day = china_today() + timedelta(days=2)
    resp = await client.put(f"/api/v1/departments/{department}/capacity",
                            json={"days": [{"date": day.isoformat(), "capacity": 3}]}, headers=bearer(approver))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["days"] == [{"date": day.isoformat(), "capacity": 3, "booked": 0, "available": 3}]

    doctor = await login_demo(client, "DONGGUAN", "doctor")
    resp = await client.get(f"/api/v1/departments/{department}/capacity?from={day}&to={day + timedelta(days=1)}",
                            headers=bearer(doctor))
    days = (await resp.json())["days"]
    assert [d["capacity"] for d in days] == [3, 0]

    resp = await client.put(f"/api/v1/departments/{department}/capacity",
                            json={"days": [{"date": day.isoformat(), "capacity": 1}]}, headers=bearer(doctor))
    assert resp.status == 403
    other_approver = await login_demo(client, "GAOYOU", "approver")
    resp = await client.put(f"/api/v1/departments/{department}/capacity",
                            json={"days": [{"date": day.isoformat(), "capacity": 9}]}, headers=bearer(other_approver))
    assert resp.status == 404
    resp = await client.put(f"/api/v1/departments/{department}/capacity",
                            json={"days": [{"date": day.isoformat(), "capacity": -1}]}, headers=bearer(approver))
    assert resp.status == 422
    resp = await client.get(f"/api/v1/departments/{department}/capacity?from={day}&to={day - timedelta(days=1)}",
                            headers=bearer(doctor))
    assert resp.status == 422


async def test_admin_edits_own_policy(client):
    await seeded(client)
    admin = await login_demo(client, "SUBEI", "admin")
    resp = await client.get("/api/v1/admin/policy", headers=bearer(admin))
    assert (await resp.json())["source_approval_down"] is False
    resp = await client.put("/api/v1/admin/policy", json={"source_approval_down": True,
                                                          "approver_roles": ["approver", "admin"]},
                            headers=bearer(admin))
    assert resp.status == 200
    body = await resp.json()
    assert body["source_approval_down"] is True and body["approver_roles"] == ["approver", "admin"]
    bad = await client.put("/api/v1/admin/policy", json={"deadline_hours": {"routine": 0}}, headers=bearer(admin))
    assert bad.status == 422
    approver = await login_demo(client, "SUBEI", "approver")
    assert (await client.get("/api/v1/admin/policy", headers=bearer(approver))).status == 403
    other = await login_demo(client, "GAOYOU", "admin")
    assert (await (await client.get("/api/v1/admin/policy", headers=bearer(other))).json())["source_approval_down"] \
        is False


async def test_the_policy_decides_who_approves(client):
    await seeded(client)
    admin = await login_demo(client, "SUBEI", "admin")
    approver = await login_demo(client, "SUBEI", "approver")
    assert (await client.get("/api/v1/referrals?box=to_approve", headers=bearer(approver))).status == 200
    assert (await client.get("/api/v1/referrals?box=to_approve", headers=bearer(admin))).status == 403
    resp = await client.put("/api/v1/admin/policy", json={"approver_roles": ["admin"]}, headers=bearer(admin))
    assert resp.status == 200
    assert (await client.get("/api/v1/referrals?box=to_approve", headers=bearer(approver))).status == 403
    assert (await client.get("/api/v1/referrals?box=to_approve", headers=bearer(admin))).status == 200


async def test_publishing_is_all_or_nothing_in_a_sane_window_with_strict_numbers(client):
    from referrals.capacity import PUBLISH_AHEAD_DAYS
    from tests.referral_support import beds, department, open_beds

    await seeded(client)
    approver = await login_demo(client, "SUBEI", "approver")
    url = f"/api/v1/departments/{(await department('SUBEI', 'CARD')).public_id}/capacity"
    today = china_today()
    first, second = today + timedelta(days=1), today + timedelta(days=2)

    async def put(days: list[dict]):
        return await client.put(url, json={"days": days}, headers=bearer(approver))

    # The second day is below what is booked there: the first day is not written either.
    row = await open_beds("SUBEI", "CARD", second, 2)
    row.booked = 2
    await row.save(update_fields=["booked"])
    resp = await put([{"date": first.isoformat(), "capacity": 5}, {"date": second.isoformat(), "capacity": 1}])
    assert resp.status == 409 and (await resp.json())["error"]["code"] == "CAPACITY_BELOW_BOOKED"
    assert await beds("SUBEI", "CARD", first) is None
    assert (await beds("SUBEI", "CARD", second)).capacity == 2
    # Days outside today .. a year ahead, and duplicates, refuse the whole request before anything is written.
    for bad in ("0001-01-01", "9999-12-31", (today - timedelta(days=1)).isoformat(),
                (today + timedelta(days=PUBLISH_AHEAD_DAYS + 1)).isoformat()):
        resp = await put([{"date": first.isoformat(), "capacity": 5}, {"date": bad, "capacity": 1}])
        assert resp.status == 422, (bad, await resp.text())
        assert (await resp.json())["error"]["code"] in ("INVALID_DATE_RANGE", "INVALID_INPUT")
    resp = await put([{"date": first.isoformat(), "capacity": 5}, {"date": first.isoformat(), "capacity": 6}])
    assert resp.status == 422
    # Only JSON integers are numbers.
    for capacity in (True, "5", 5.0, None):
        resp = await put([{"date": first.isoformat(), "capacity": capacity}])
        assert resp.status == 422, (capacity, await resp.text())
        assert (await resp.json())["error"]["detail"]["fields"][0]["field"] == "days.0.capacity"
    resp = await put([{"date": 20261201, "capacity": 5}])
    assert resp.status == 422
    assert await beds("SUBEI", "CARD", first) is None
    # Reading far outside any plausible window is a 422, not an overflow.
    for query in ("from=9999-12-31", "from=0001-01-01&to=0001-01-02", "to=9999-12-31"):
        resp = await client.get(f"{url}?{query}", headers=bearer(approver))
        assert resp.status == 422, (query, await resp.text())
    resp = await put([{"date": first.isoformat(), "capacity": 5}, {"date": second.isoformat(), "capacity": 3}])
    assert resp.status == 200, await resp.text()
    assert [d["capacity"] for d in (await resp.json())["days"]] == [5, 3]
