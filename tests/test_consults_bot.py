"""The bot's 会诊 command (issue 11 point 6): a doctor's open consultations with the messages they have not
read in each one's conversation, through the real push endpoint and the chat API."""

from __future__ import annotations

from tests.consult_support import act, pool_expert, request_consultation
from tests.referral_support import Desk, bind_patient
from tests.support import valid_id
from tests.test_bot_commands import Chat


async def _say_as_expert(desk: Desk, conversation_id: str, text: str, n: int) -> dict:
    resp = await desk.client.post(f"/api/v1/conversations/{conversation_id}/messages",
                                  json={"client_msg_id": f"m{n}", "type": "text", "text": text},
                                  headers=await desk.headers("o_bot_expert"))
    return await desk.ok(resp, 201)


async def test_consultations_are_listed_with_their_unread_counts(client):
    desk = await Desk.open(client)
    await pool_expert("SUBEI", "CARD", "o_bot_expert", name="钱心内")
    chat = Chat(client)
    await desk.session("DONGGUAN", "doctor")  # known to the sandbox, as every user who messages us is
    await desk.session_of("o_bot_expert")
    assert await chat.say("demo_dongguan_doctor", "会诊") == "您目前没有未结束的会诊。"

    talking = await desk.ok(await request_consultation(desk), 201)
    waiting = await desk.ok(await request_consultation(desk), 201)
    finished = await desk.ok(await request_consultation(desk), 201)
    await desk.ok(await act(desk, "o_bot_expert", talking["id"], "accept"))
    for n, text in enumerate(["请补充近期心电图", "肌钙蛋白是否复查？"], start=1):
        await _say_as_expert(desk, talking["conversation_id"], text, n)
    await desk.ok(await act(desk, "o_bot_expert", finished["id"], "accept"))
    await desk.ok(await act(desk, "o_bot_expert", finished["id"], "conclude",
                            {"opinion": {"recommendation": "treat_locally", "advice": "继续观察"}}))

    reply = await chat.say("demo_dongguan_doctor", "会诊")
    assert reply.startswith("您未结束的会诊 2 条：")
    lines = reply.splitlines()  # newest first
    assert waiting["code"] in lines[1] and lines[1].endswith("待专家接诊")
    assert talking["code"] in lines[2] and lines[2].endswith("会诊中，未读 2 条")
    assert finished["code"] not in reply and "data-miniprogram-path=\"pages/consultation/detail?id=" in reply

    # Read up to the newest message: nothing unread any more. The expert sees the one they accepted.
    resp = await desk.client.post(f"/api/v1/conversations/{talking['conversation_id']}/read", json={"seq": 2},
                                  headers=await desk.headers(("DONGGUAN", "doctor")))
    await desk.ok(resp)
    assert "未读" not in await chat.say("demo_dongguan_doctor", "会诊")
    expert = await chat.say("o_bot_expert", "会诊")
    assert talking["code"] in expert and waiting["code"] not in expert


async def test_patients_are_pointed_elsewhere(client):
    desk = await Desk.open(client)
    await bind_patient(client, "o_bot_patient", "林小青", valid_id(77))
    assert (await Chat(desk.client).say("o_bot_patient", "会诊")).startswith("“会诊”供医务人员使用")
