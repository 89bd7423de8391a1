"""The edges of the API: the error shape for every failure, body limits, the API document, ops routes."""

from __future__ import annotations

import io
import json
import re

from aiohttp import web

from miniprogram_api import all_routes
from tests.support import bearer, login, login_demo, seeded


def _assert_error_shape(body: dict) -> None:
    assert set(body) == {"error"}
    error = body["error"]
    assert re.fullmatch(r"[A-Z][A-Z0-9_]+", error["code"])
    assert re.search(r"[\u4e00-\u9fff]", error["message"]), "messages users read are in Chinese"
    assert isinstance(error["detail"], dict)


async def test_malformed_json_wrong_types_missing_fields(client):
    resp = await client.post("/api/v1/auth/wx-login", data=b"{not json", headers={"Content-Type": "application/json"})
    assert resp.status == 422
    body = await resp.json()
    _assert_error_shape(body)
    assert body["error"]["code"] == "MALFORMED_JSON"

    resp = await client.post("/api/v1/auth/wx-login", json=[1, 2])
    assert resp.status == 422

    resp = await client.post("/api/v1/auth/wx-login", json={"code": 123})
    assert resp.status == 422
    body = await resp.json()
    _assert_error_shape(body)
    assert body["error"]["detail"]["fields"] == [{"field": "code", "reason": "应为文本"}]

    resp = await client.post("/api/v1/auth/wx-login", json={})
    body = await resp.json()
    assert resp.status == 422 and body["error"]["detail"]["fields"][0]["reason"] == "缺少必填项"

    resp = await client.post("/api/v1/auth/wx-login", data=b"\xff\xfe", headers={"Content-Type": "application/json"})
    assert resp.status == 422


async def test_body_over_one_mebibyte_is_413(client):
    resp = await client.post("/api/v1/auth/wx-login", data=io.BytesIO(b"{" + b" " * (1024 * 1024 + 10) + b"}"),
                             headers={"Content-Type": "application/json"})
    assert resp.status == 413
    _assert_error_shape(await resp.json())


async def test_unknown_route_and_method(client):
    resp = await client.get("/api/v1/nothing-here")
    assert resp.status == 404
    _assert_error_shape(await resp.json())
    resp = await client.delete("/api/v1/auth/wx-login")
    assert resp.status == 405
    _assert_error_shape(await resp.json())


async def test_bad_query_values(client):
    await seeded(client)
    doctor = await login_demo(client, "SUBEI", "doctor")
    resp = await client.get("/api/v1/institutions?limit=abc", headers=bearer(doctor))
    assert resp.status == 422
    _assert_error_shape(await resp.json())
    resp = await client.get("/api/v1/institutions?limit=100000", headers=bearer(doctor))
    assert resp.status == 422


async def test_every_route_is_in_the_openapi_document(client, app):
    resp = await client.get("/api/v1/openapi.json")
    assert resp.status == 200
    document = await resp.json()
    assert document["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in document["paths"].items() for method in ops}
    served = set()
    for resource in app.router.resources():
        if isinstance(resource, web.PrefixedSubAppResource):
            continue  # the WeChat sandbox and HIS simulator stand in for outside systems
        for route in resource:
            if route.method != "HEAD":
                served.add((resource.canonical, route.method))
    assert served, "the router has routes"
    assert served - documented == set()
    assert documented - served == set()
    # Declared bodies and responses resolve to component schemas.
    schemas = document["components"]["schemas"]
    for spec in all_routes():
        op = document["paths"][spec.path][spec.method.lower()]
        if spec.body is not None:
            ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            assert ref.rsplit("/", 1)[1] in schemas
        for response in op["responses"].values():
            schema = response["content"][next(iter(response["content"]))]["schema"]
            if "$ref" in schema:
                assert schema["$ref"].rsplit("/", 1)[1] in schemas


async def test_health_readiness_and_metrics(client):
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    resp = await client.get("/readyz")
    assert resp.status == 200
    body = await resp.json()
    assert body["checks"] == {"database": "ok", "redis": "ok"}

    await login(client, "o_metrics")
    text = await (await client.get("/metrics")).text()
    assert 'http_requests_total{method="POST",route="/api/v1/auth/wx-login",status="200"} 1.0' in text
    assert "http_request_duration_seconds_bucket" in text


async def test_a_bug_is_a_500_with_the_error_shape_and_no_internals(aiohttp_client, settings):
    from app import create_app

    app = create_app(settings)

    async def broken(request):
        raise RuntimeError("secret internals 110105194912310021")

    app.router.add_get("/boom", broken)
    client = await aiohttp_client(app)
    resp = await client.get("/boom")
    assert resp.status == 500
    body = await resp.json()
    _assert_error_shape(body)
    assert "secret" not in await resp.text()


async def test_json_nested_deeper_than_any_schema_is_a_4xx(client):
    for depth in (33, 2_000, 100_000):
        for body in (b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth):
            resp = await client.post("/api/v1/auth/wx-login", data=io.BytesIO(body),
                                     headers={"Content-Type": "application/json"})
            assert resp.status == 422, (depth, resp.status)
            error = (await resp.json())["error"]
            assert error["code"] == "MALFORMED_JSON" and "嵌套过深" in error["message"]
    # The stand-ins mounted beside the API (embedded mode) refuse it too.
    deep = b"[" * 2_000 + b"]" * 2_000
    for path in ("/wechat-sandbox/sandbox/login-code", "/his-sim/_faults", "/his-sim/SUBEI/fhir/Patient",
                 "/his-sim/SUBEI/_launch-token"):
        resp = await client.post(path, data=io.BytesIO(deep), headers={"Content-Type": "application/json"})
        assert 400 <= resp.status < 500, (path, resp.status, await resp.text())
    # 32 levels are still read (and then judged by the schema).
    resp = await client.post("/api/v1/auth/wx-login", json={"code": "x", "extra": [[[[[[[[[[[]]]]]]]]]]]})
    assert resp.status != 422 or (await resp.json())["error"]["code"] != "MALFORMED_JSON"


async def test_cursor_outside_the_id_range_is_422_on_every_list(client):
    import base64

    from models import Institution

    await seeded(client)
    admin = await login_demo(client, "SUBEI", "admin")
    institution = await Institution.get(code="SUBEI")
    lists = [spec.path.replace("{id}", str(institution.public_id)) for spec in all_routes()
             if spec.method == "GET" and spec.query is not None and "cursor" in spec.query.model_fields]
    assert len(lists) >= 7, lists  # every list endpoint, whatever its number
    for number in (2**63, 2**63 - 1, 2**31, 10**40, 0, -1):
        cursor = base64.urlsafe_b64encode(str(number).encode()).decode().rstrip("=")
        for path in lists:
            resp = await client.get(path, params={"cursor": cursor}, headers=bearer(admin))
            if path == "/api/v1/admin/jobs" and number in (2**31, 2**63 - 1):  # 64-bit ids: a valid cursor
                assert resp.status == 200, (path, number, await resp.text())
                continue
            assert resp.status == 422, (path, number, resp.status, await resp.text())
            assert (await resp.json())["error"]["code"] == "INVALID_CURSOR"


async def _raw_exchange(client, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (no client library to tidy them up); the status line, headers and body back."""
    import asyncio

    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(request)
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout=10)  # the server closes after an error
    finally:
        writer.close()
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in header_lines)}
    if headers.get("transfer-encoding") == "chunked":
        body = b"".join(body.split(b"\r\n")[1::2])
    return int(status_line.split()[1]), headers, body


async def test_requests_refused_by_the_http_parser_get_the_json_error_shape(client):
    cases = [
        b"GET /" + b"a" * 9_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",  # request line over 8,190 bytes
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Long: " + b"b" * 9_000 + b"\r\n\r\n",  # header too long
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Bad: a\x01b\r\n\r\n",  # control character in a header
        b"G@T /healthz HTTP/1.1\r\nHost: x\r\n\r\n",  # not a method
        b"POST /api/v1/auth/wx-login HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    ]
    for request in cases:
        status, headers, body = await _raw_exchange(client, request)
        assert status == 400, (request[:40], status, body[:200])
        assert headers["content-type"].startswith("application/json"), (request[:40], headers)
        error = json.loads(body)
        _assert_error_shape(error)
        assert error["error"]["code"] == "BAD_REQUEST"
    assert (await client.get("/healthz")).status == 200


async def test_an_error_in_a_middleware_gets_the_json_error_shape(aiohttp_client, settings):
    from app import create_app
    from tests.conftest import AppServer

    app = create_app(settings)

    @web.middleware
    async def broken(request, handler):
        raise RuntimeError("secret internals of a middleware")

    app.middlewares.insert(0, broken)  # outside error_middleware: only the server itself can answer
    client = await aiohttp_client(AppServer(app))
    resp = await client.get("/healthz")
    assert resp.status == 500
    _assert_error_shape(await resp.json())
    assert "secret" not in await resp.text()


async def test_every_routes_error_paths_have_the_json_error_shape(client):
    """Each route, driven into its errors: no token, a bad token, a wrong method, a malformed body, an id that is
    not one, an unknown id. Whatever answers (router, middleware, handler), a 4xx in the error shape."""
    import uuid

    await seeded(client)
    staff = await login_demo(client, "SUBEI", "admin")
    methods = {"GET", "POST", "PUT", "PATCH", "DELETE"}
    routes = {(spec.method, spec.path): spec for spec in all_routes()}
    checked = 0

    async def expect_error(method: str, path: str, **kwargs) -> None:
        nonlocal checked
        resp = await client.request(method, path, **kwargs)
        assert 400 <= resp.status < 500, (method, path, resp.status, await resp.text())
        assert resp.content_type == "application/json", (method, path, resp.content_type)
        _assert_error_shape(await resp.json())
        checked += 1

    for (method, path), spec in routes.items():
        concrete = re.sub(r"{\w+}", str(uuid.uuid4()), path)
        unused = sorted(m for m in methods if (m, path) not in routes)
        if unused:
            await expect_error(unused[0], concrete, headers=bearer(staff))
        if spec.auth:
            await expect_error(method, concrete)
            await expect_error(method, concrete, headers={"Authorization": "Bearer not-a-token"})
        if spec.body is not None and path != "/wechat/push":
            await expect_error(method, concrete, data=b"{",
                               headers=bearer(staff) | {"Content-Type": "application/json"})
        if spec.query is not None and path != "/wechat/push":
            await expect_error(method, concrete, params={"limit": "x", "cursor": "!", "from": "y", "box": "?"},
                               headers=bearer(staff))
        if "{" in path:
            await expect_error(method, re.sub(r"{\w+}", "not-an-id", path), headers=bearer(staff))
            if method in ("GET", "DELETE"):
                await expect_error(method, concrete, headers=bearer(staff))
    await expect_error("POST", "/wechat/push", params={"timestamp": "1", "nonce": "n", "signature": "0" * 40})
    await expect_error("GET", "/wechat/push", params={"timestamp": "1"})
    await expect_error("GET", "/api/v1/no-such-route")
    assert checked > 150


async def test_request_bodies_take_only_json_booleans_and_integers(client):
    from models import Referral
    from tests.referral_support import Desk, make_patient

    desk = await Desk.open(client)
    patient = await make_patient(desk.cipher)
    for field, value in (("submit", "yes"), ("submit", 1), ("submit", "true"), ("confirm_duplicate", "false")):
        resp = await desk.create("DONGGUAN", patient.public_id, **{field: value})
        assert resp.status == 422, (field, value, await resp.text())
        assert (await resp.json())["error"]["detail"]["fields"] == [{"field": field, "reason": "应为布尔值"}]
    assert await Referral.all().count() == 0
    draft = await desk.ok(await desk.create("DONGGUAN", patient.public_id), 201)
    for version in ("1", True, 1.0):
        resp = await desk.post(("DONGGUAN", "doctor"), draft["id"], "submit", {"version": version})
        assert resp.status == 422, (version, await resp.text())
        assert (await resp.json())["error"]["detail"]["fields"] == [{"field": "version", "reason": "应为整数"}]
    submitted = await desk.ok(await desk.post(("DONGGUAN", "doctor"), draft["id"], "submit",
                                              {"version": draft["version"]}))
    assert submitted["status"] != "draft"


TIME_LIKE = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}")
API_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00")


def _times(value, path: str = "") -> list[tuple[str, str]]:
    """Every (path, text) in a JSON value whose text looks like a date and a time."""
    if isinstance(value, dict):
        return [t for key, item in value.items() for t in _times(item, f"{path}.{key}")]
    if isinstance(value, list):
        return [t for index, item in enumerate(value) for t in _times(item, f"{path}[{index}]")]
    return [(path, value)] if isinstance(value, str) and TIME_LIKE.match(value) else []


async def test_every_time_leaves_the_api_in_one_format_and_codes_use_the_china_date(client):
    from datetime import date

    from referrals.state_machine import Status
    from tests.referral_support import Desk
    from timeutil import china_today

    desk = await Desk.open(client)
    referral = await desk.drive(Status.SCHEDULED)
    assert referral["code"][2:8] == china_today().strftime("%y%m%d")
    rid = referral["id"]
    referrer, target = ("DONGGUAN", "doctor"), ("SUBEI", "approver")
    admin = await login_demo(client, "SUBEI", "admin")
    await desk.ok(await client.post(f"/api/v1/referrals/{rid}/orders", headers=await desk.headers(referrer),
                                    json={"kind": "lab", "code": "LAB-1", "name": "血常规"}), 202)
    responses = [referral]
    for who, path, params in [
        (referrer, f"/api/v1/referrals/{rid}", {}), (referrer, "/api/v1/referrals", {"box": "outgoing"}),
        (target, "/api/v1/referrals", {"box": "incoming"}), (referrer, f"/api/v1/referrals/{rid}/slip", {}),
        (referrer, f"/api/v1/referrals/{rid}/orders", {}), (referrer, "/api/v1/inbox", {}),
        (target, "/api/v1/inbox", {}), (("SUBEI", "admin"), "/api/v1/admin/jobs", {"state": "pending"}),
    ]:
        responses.append(await desk.ok(await desk.get(who, path, **params)))
    responses.append(await (await client.get("/api/v1/admin/staff", headers=bearer(admin))).json())
    found = [t for body in responses for t in _times(body)]
    assert len(found) > 20, found
    wrong = [(path, text) for path, text in found
             if not API_TIME.fullmatch(text) and not re.match(r"\.items\[\d+\]\.data\.", path)]
    assert wrong == [], wrong
    detail = responses[1]
    assert {"submitted_at", "updated_at"} <= {p.rsplit(".", 1)[-1] for p, _ in _times(detail)}
    assert date.fromisoformat(detail["timeline"][0]["at"][:10]) <= china_today()


async def test_query_numbers_are_digits_and_query_booleans_true_or_false(client):
    await seeded(client)
    doctor = await login_demo(client, "SUBEI", "doctor")
    for path, params in [("/api/v1/inbox", {"unread": "yes"}), ("/api/v1/inbox", {"unread": "1"}),
                         ("/api/v1/inbox", {"limit": "5.0"}), ("/api/v1/institutions", {"limit": " 5"}),
                         ("/api/v1/referrals", {"limit": "true"})]:
        resp = await client.get(path, params=params, headers=bearer(doctor))
        assert resp.status == 422, (path, params, await resp.text())
        _assert_error_shape(await resp.json())
    resp = await client.get("/api/v1/inbox", params={"unread": "true", "limit": "5"}, headers=bearer(doctor))
    assert resp.status == 200, await resp.text()


async def test_nul_characters_are_refused_before_they_reach_the_database(client):
    """PostgreSQL stores no U+0000: found by the schema fuzzer as a 500 on PATCH /admin/departments/{id}."""
    from tests.referral_support import department

    await seeded(client)
    admin = await login_demo(client, "SUBEI", "admin")
    card = await department("SUBEI", "CARD")
    resp = await client.patch(f"/api/v1/admin/departments/{card.public_id}", json={"ward": "A\u0000B"},
                              headers=bearer(admin))
    assert resp.status == 422, await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "INVALID_CHARACTERS" and error["detail"]["fields"][0]["field"] == "ward"
    resp = await client.post("/api/v1/admin/departments", json={"code": "X1", "name": "科室", "extra": {"k\u0000": 1}},
                             headers=bearer(admin))
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "INVALID_CHARACTERS"
    for path in ("/api/v1/referrals?q=%00", "/api/v1/institutions?cursor=%00", "/api/v1/slips/RY%00/qr.png"):
        resp = await client.get(path, headers=bearer(admin))
        assert 400 <= resp.status < 500, (path, resp.status, await resp.text())
        _assert_error_shape(await resp.json())


async def test_attachment_downloads_declare_the_media_types_an_upload_may_have(client):
    # Consultation and chat downloads said application/octet-stream but serve the file as what it is.
    document = await (await client.get("/api/v1/openapi.json")).json()
    for prefix in ("/api/v1/referrals/{id}", "/api/v1/consultations/{id}", "/api/v1/conversations/{id}"):
        content = document["paths"][prefix + "/attachments/{attachment_id}"]["get"]["responses"]["200"]["content"]
        assert set(content) == {"application/pdf", "image/jpeg", "image/png"}, prefix
