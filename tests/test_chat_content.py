"""What a message carries and who hears of it: WeChat's content check (risky refused; unreachable delivered and
re-checked through the outbox, withdrawn if risky), images, files and case cards through the attachment store,
and the inbox/subscribe notice for participants who are not connected."""

from __future__ import annotations

import io
import uuid
from datetime import UTC, datetime, timedelta

from PIL import Image

from appkeys import SETTINGS
from models import ChatMessage, InboxMessage, OutboxJob, WeChatAccount
from tests.chat_support import COLLEAGUE, DOCTOR, EXPERT, OUTSIDER, chat, consultation_conversation
from tests.notify_support import fault, run_jobs, sandbox_messages, subscribe


def png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 30)).save(out, format="PNG")
    return out.getvalue()


async def test_risky_text_is_refused_with_a_chinese_error_and_takes_no_number(client):
    c = await chat(client)
    resp = await c.send(DOCTOR, "这段话包含违规测试字样")
    assert resp.status == 422
    error = (await resp.json())["error"]
    assert error["code"] == "CONTENT_RISKY" and "未能发送" in error["message"]
    # A word made risky in the sandbox counts too; over the socket the refusal is an error frame.
    assert (await client.post("/wechat-sandbox/sandbox/risky-words", json={"word": "代开处方"})).status == 200
    doctor = await c.socket(DOCTOR)
    await doctor.send({"type": "send", "conversation_id": c.id,
                       "message": {"client_msg_id": "r-1", "type": "text", "text": "可以代开处方吗"}})
    error = await doctor.until(lambda f: f["type"] == "error")
    assert error["code"] == "CONTENT_RISKY" and error["ref"] == "r-1"
    card = {"client_msg_id": "card-1", "type": "case_card", "card": {"title": "病例", "summary": "违规测试"}}
    resp = await client.post(f"/api/v1/conversations/{c.id}/messages", json=card, headers=await c.headers(DOCTOR))
    assert resp.status == 422 and (await resp.json())["error"]["code"] == "CONTENT_RISKY"
    assert (await c.send(DOCTOR, "正常的病情讨论")).status == 201
    assert [m["seq"] for m in (await c.history(EXPERT))["items"]] == [1]
    await doctor.close()


async def test_an_unreachable_check_delivers_and_the_outbox_checks_again(client, app):
    c = await chat(client)
    expert = await c.socket(EXPERT)
    await fault(client, "/wxa/msg_sec_check", -1, count=2)
    first = await c.send(DOCTOR, "患者今晨复查肌钙蛋白")
    second = await c.send(DOCTOR, "稍后补充影像")
    assert first.status == second.status == 201
    assert (await first.json())["message"]["check_state"] == "pending"
    assert (await expert.until(lambda f: f["type"] == "message"))["message"]["seq"] == 1  # delivered anyway
    assert await OutboxJob.filter(kind="chat.recheck").count() == 2
    # WeChat is back; meanwhile the second text became risky: it is withdrawn, the first passes.
    await client.post("/wechat-sandbox/sandbox/risky-words", json={"word": "补充影像"})
    await run_jobs(app)
    states = dict(await ChatMessage.all().values_list("seq", "check_state"))
    assert states == {1: "passed", 2: "blocked"}
    withdrawn = await expert.until(lambda f: f["type"] == "withdrawn")
    assert withdrawn == {"type": "withdrawn", "seq": 2, "conversation_id": c.id}
    items = (await c.history(EXPERT))["items"]
    assert items[1]["body"] == {"withdrawn": True, "text": "该消息因内容审核未通过已被撤回"}
    assert "补充影像" not in str(items)
    resp = await client.get("/api/v1/conversations", headers=await c.headers(EXPERT))
    assert (await resp.json())["items"][0]["unread"] == 1  # the withdrawn message no longer counts
    await expert.close()


async def test_images_files_and_case_cards(client):
    c = await chat(client)
    headers = await c.headers(DOCTOR)

    async def upload(data: bytes, name: str, conversation: str | None = None, who=DOCTOR):
        from aiohttp import FormData

        form = FormData()
        form.add_field("file", io.BytesIO(data), filename=name, content_type="application/octet-stream")
        return await client.post(f"/api/v1/conversations/{conversation or c.id}/attachments", data=form,
                                 headers=await c.headers(who))

    image = await upload(png(), "心电图.png")
    assert image.status == 201, await image.text()
    image_body = await image.json()
    assert image_body["content_type"] == "image/png" and image_body["filename"] == "心电图.png"
    pdf = await upload(b"%PDF-1.4 report", "报告.pdf")
    pdf_body = await pdf.json()
    assert (await upload(b"MZ\x90\x00", "virus.exe")).status == 415
    assert (await upload(b"", "empty.png")).status == 422
    assert (await upload(b"\x89PNG\r\n\x1a\n" + b"0" * (10 * 1024 * 1024), "huge.png")).status == 413
    assert (await upload(png(), "x.png", who=OUTSIDER)).status == 404

    url = f"/api/v1/conversations/{c.id}/messages"
    sent = await client.post(url, json={"client_msg_id": "img", "type": "image",
                                        "attachment_id": image_body["attachment_id"]}, headers=headers)
    assert sent.status == 201
    body = (await sent.json())["message"]["body"]
    assert body["content_type"] == "image/png" and body["url"] == image_body["url"]
    wrong = await client.post(url, json={"client_msg_id": "img2", "type": "image",
                                         "attachment_id": pdf_body["attachment_id"]}, headers=headers)
    assert wrong.status == 422 and (await wrong.json())["error"]["code"] == "NOT_AN_IMAGE"
    assert (await client.post(url, json={"client_msg_id": "pdf", "type": "file",
                                         "attachment_id": pdf_body["attachment_id"]}, headers=headers)).status == 201
    # An attachment of another conversation cannot be sent here.
    other = await consultation_conversation(DOCTOR, COLLEAGUE)
    elsewhere = await (await upload(png(), "b.png", str(other.public_id))).json()
    resp = await client.post(url, json={"client_msg_id": "x", "type": "image",
                                        "attachment_id": elsewhere["attachment_id"]}, headers=headers)
    assert resp.status == 404

    download = await client.get(image_body["url"], headers=await c.headers(EXPERT))
    assert download.status == 200 and await download.read() == png() and download.content_type == "image/png"
    assert (await client.get(image_body["url"], headers=await c.headers(OUTSIDER))).status == 404
    missing = f"/api/v1/conversations/{c.id}/attachments/{uuid.uuid4()}"
    assert (await client.get(missing, headers=headers)).status == 404

    card = {"title": "病例摘要", "patient": "周明华", "gender": "男", "age": "67岁",
            "diagnosis": "急性冠脉综合征？", "summary": "胸痛 3 小时，心电图 ST 段抬高"}
    resp = await client.post(url, json={"client_msg_id": "card", "type": "case_card", "card": card},
                             headers=headers)
    assert resp.status == 201
    stored = (await resp.json())["message"]
    assert stored["type"] == "case_card" and stored["body"]["patient"] == "周*华"
    assert stored["body"]["diagnosis"] == "急性冠脉综合征？"
    assert [m["type"] for m in (await c.history(EXPERT))["items"]] == ["image", "file", "case_card"]


async def test_participants_not_connected_are_told_once_per_quiet_period(client, app):
    c = await chat(client)
    from chat.conversations import add_participants
    from tests.chat_support import staff_id

    await add_participants(c.conversation, [await staff_id(COLLEAGUE)])
    expert_session = await c.session(EXPERT)
    await subscribe(client, expert_session, "demo_subei_expert", "rc-chat-unread", times=3)
    colleague = await c.socket(COLLEAGUE)  # connected: hears it live, no notice
    await colleague.send({"type": "ping"})
    await colleague.until(lambda f: f["type"] == "pong")
    for n in range(3):
        assert (await c.send(DOCTOR, f"请会诊 {n}")).status == 201
    assert await OutboxJob.filter(kind="chat.notify").count() == 1  # one per conversation and period
    await run_jobs(app)
    assert await InboxMessage.filter(kind="chat_unread").count() == 0  # not before the period ends
    later = datetime.now(UTC) + timedelta(seconds=app[SETTINGS].chat_notify_quiet + 1)
    await run_jobs(app, now=later)
    expert_account = await WeChatAccount.get(openid="demo_subei_expert")
    [notice] = await InboxMessage.filter(kind="chat_unread")
    assert notice.account_id == expert_account.id  # type: ignore[attr-defined]
    assert "3 条" in notice.body and notice.page == f"pages/chat/conversation?id={c.id}"
    sent = await sandbox_messages(client, "demo_subei_expert", "subscribe")
    assert len(sent) == 1 and sent[0]["template_id"] == "rc-chat-unread"
    assert sent[0]["data"]["number3"] == "3" and "请会诊" not in str(sent[0]["data"])  # no message text leaves
    await run_jobs(app, now=later)
    assert await InboxMessage.filter(kind="chat_unread").count() == 1
    await colleague.close()
