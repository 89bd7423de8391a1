"""No full ID number or phone number in logs or responses (PIPL: health data is sensitive)."""

from __future__ import annotations

import json
import logging

from tests.support import bearer, login_code, valid_id

PHONE = "13912345678"


async def test_binding_flow_leaks_nothing_to_logs_or_responses(client, caplog):
    caplog.set_level(logging.DEBUG)
    id_number = valid_id(7)
    texts = []
    for name, phone in (("吴晓梅", PHONE), ("吴晓梅", "139123")):  # one good, one refused
        body = {"code": await login_code(client, "o_privacy"), "name": name, "id_number": id_number,
                "phone": phone, "relation": "self"}
        resp = await client.post("/api/v1/auth/bind-patient", json=body)
        texts.append(await resp.text())
        if resp.status == 201:
            session = json.loads(texts[-1])
    me = await client.get("/api/v1/me", headers=bearer(session))
    texts.append(await me.text())
    bad_id = id_number[:-1] + ("1" if id_number[-1] != "1" else "2")
    body = {"code": await login_code(client, "o_privacy2"), "name": "吴晓梅", "id_number": bad_id,
            "phone": PHONE, "relation": "self"}
    texts.append(await (await client.post("/api/v1/auth/bind-patient", json=body)).text())

    logged = "\n".join(record.getMessage() + (record.exc_text or "") for record in caplog.records)
    assert caplog.records, "the flow logged something (access log at least)"
    for text in [*texts, logged]:
        assert id_number not in text and bad_id not in text
        assert PHONE not in text
