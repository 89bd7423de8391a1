"""No full ID number or phone number in logs or responses (PIPL: health data is sensitive)."""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import quote

from appkeys import CIPHER
from tests.referral_support import put_on_file
from tests.support import bearer, login_code, login_demo, phone_code, seeded, valid_id

PHONE = "13912345678"


async def test_binding_flow_leaks_nothing_to_logs_or_responses(client, caplog):
    caplog.set_level(logging.DEBUG)
    id_number = valid_id(7)
    texts = []
    await put_on_file(client.server.app[CIPHER], "吴晓梅", id_number, PHONE)
    for phone in ("13700000000", PHONE):  # one refused (not the phone on file), one good
        body = {"code": await login_code(client, "o_privacy"), "name": "吴晓梅", "id_number": id_number,
                "phone_code": await phone_code(client, phone), "relation": "self"}
        resp = await client.post("/api/v1/auth/bind-patient", json=body)
        texts.append(await resp.text())
        if resp.status == 201:
            session = json.loads(texts[-1])
    me = await client.get("/api/v1/me", headers=bearer(session))
    texts.append(await me.text())
    bad_id = id_number[:-1] + ("1" if id_number[-1] != "1" else "2")
    body = {"code": await login_code(client, "o_privacy2"), "name": "吴晓梅", "id_number": bad_id,
            "phone_code": await phone_code(client, PHONE), "relation": "self"}
    texts.append(await (await client.post("/api/v1/auth/bind-patient", json=body)).text())

    logged = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    assert caplog.records, "the flow logged something (access log at least)"
    for text in [*texts, logged]:
        assert id_number not in text and bad_id not in text
        assert PHONE not in text


async def test_the_access_log_keeps_no_query_value_that_can_name_a_patient(client, caplog):
    caplog.set_level(logging.INFO)  # before the first request: aiohttp decides per connection whether to log
    await seeded(client)
    doctor = await login_demo(client, "SUBEI", "doctor")
    name, id_number = "欧阳明华", valid_id(8)
    spaced = f"{id_number[:6]} {id_number[6:14]} {id_number[14:]}"
    full_width = id_number.translate(str.maketrans("0123456789X", "０１２３４５６７８９Ｘ"))
    for q in (name, spaced, full_width, id_number):
        resp = await client.get("/api/v1/referrals", params={"box": "incoming", "q": q, "limit": "5"},
                                headers=bearer(doctor))
        assert resp.status == 200, await resp.text()
    for _ in range(100):  # the server writes the line after the client has its response
        lines = [record.getMessage() for record in caplog.records if record.name == "aiohttp.access"
                 and "/api/v1/referrals" in record.getMessage()]
        if len(lines) == 4:
            break
        await asyncio.sleep(0.01)
    assert len(lines) == 4, [record.getMessage() for record in caplog.records]
    for line in lines:
        # Which filters were used stays visible; the value that could name the patient does not.
        assert "GET /api/v1/referrals?box=incoming&q=…&limit=5 HTTP/1.1" in line, line
    logged = "\n".join(lines + [str(vars(record)) for record in caplog.records])
    for secret in (name, quote(name), id_number, spaced, quote(spaced), full_width, quote(full_width),
                   id_number[6:14]):
        assert secret not in logged


async def test_a_request_the_http_parser_refuses_is_logged_without_its_bytes(client, caplog):
    from tests.test_api_edges import _raw_exchange

    caplog.set_level(logging.DEBUG)
    id_number = valid_id(8)
    query = f"name={quote('吴晓梅')}&id_number={id_number}&pad=" + "a" * 9_000  # over aiohttp's 8,190 bytes
    status, headers, body = await _raw_exchange(
        client, f"GET /api/v1/referrals?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    assert status == 400 and json.loads(body)["error"]["code"] == "BAD_REQUEST"
    # The refusal is logged, by what happened and from where; nothing of the request line.
    refusals = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert [(r.levelname, r.getMessage()) for r in refusals] == [
        ("WARNING", "refused a malformed request from 127.0.0.1: LineTooLong (HTTP 400)")]
    for record in caplog.records:
        logged = record.getMessage() + (record.exc_text or "") + repr(record.exc_info or "")
        assert id_number not in logged and quote("吴晓梅") not in logged and "吴晓梅" not in logged
        assert "/api/v1/referrals" not in logged
