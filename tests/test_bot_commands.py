"""Each chat command for each kind of user (patient, approver, doctor, outsider, unbound), pushed to the real
endpoint and answered with customer-service messages read back from the WeChat sandbox; and the
subscription events that update credits and delivery records."""

from __future__ import annotations

import json
import time

from tortoise.transactions import in_transaction

from appkeys import SETTINGS
from bot.commands import BIND, HELP, NOT_TEXT, UNKNOWN
from models import Delivery, Referral, SubscriptionCredit, WeChatAccount
from notifications.fanout import publish
from notifications.rules import Notice
from tests.notify_support import Pusher, event_xml, replies, run_jobs, text_xml
from tests.referral_support import Desk, bind_patient, make_patient
from tests.support import bearer, login_code, login_demo, valid_id

APPROVAL, PROGRESS = "rc-referral-approval", "rc-referral-progress"


class Chat:
    def __init__(self, client) -> None:
        self.client = client
        self.pusher = Pusher(client.server.app[SETTINGS])

    async def say(self, openid: str, text: str) -> str:
        """Push `text` as `openid` (safe mode, as production runs), run the job, return the reply."""
        before = len(await replies(self.client, openid))
        body, query = self.pusher.encrypt(text_xml(openid, text), self.pusher.query())
        resp = await self.client.post("/wechat/push", params=query, data=body.encode())
        assert resp.status == 200 and await resp.text() == "success"
        await run_jobs(self.client.server.app)
        answers = await replies(self.client, openid)
        assert len(answers) == before + 1, answers
        return answers[-1]

    async def push(self, xml: str) -> None:
        body, query = self.pusher.encrypt(xml, self.pusher.query())
        resp = await self.client.post("/wechat/push", params=query, data=body.encode())
        assert resp.status == 200
        await run_jobs(self.client.server.app)


async def setting(client) -> tuple[Chat, Referral, Referral]:
    """A bound patient with a DONGGUAN → SUBEI referral waiting at DONGGUAN, and a GAOYOU referral of someone
    else, waiting at GAOYOU."""
    desk = await Desk.open(client)
    patient = await bind_patient(client, "o_chat_patient", "陆文龙", valid_id(61))
    mine = await desk.ok(await desk.create("DONGGUAN", patient["account"]["patients"][0]["id"], "SUBEI", "CARD",
                                           submit=True), 201)
    other = await desk.ok(await desk.create("GAOYOU", str((await make_patient(desk.cipher, "吴其他")).public_id),
                                            "SUBEI", "CARD", submit=True), 201)
    for code, role in (("DONGGUAN", "approver"), ("DONGGUAN", "doctor"), ("BAOYING", "doctor")):
        await login_demo(client, code, role)
    await login_code(client, "o_chat_stranger")
    await run_jobs(client.server.app)  # the submissions' notifications, out of the way
    return Chat(client), await Referral.get(public_id=mine["id"]), await Referral.get(public_id=other["id"])


async def test_the_patient(client):
    chat, mine, other = await setting(client)
    assert await chat.say("o_chat_patient", "帮助") == HELP
    answer = await chat.say("o_chat_patient", "我的转诊")
    assert mine.code in answer and other.code not in answer
    assert "陆*龙" in answer and "陆文龙" not in answer
    assert "状态：待转出机构审批" in answer and "下一步：等待东关社区审批" in answer
    assert f'data-miniprogram-path="pages/referral/detail?id={mine.public_id}"' in answer
    assert "供审批人员使用" in await chat.say("o_chat_patient", "待审批")
    answer = await chat.say("o_chat_patient", f"查询 {mine.code.lower()}")
    assert mine.code in answer and "下一步：等待东关社区审批" in answer
    answer = await chat.say("o_chat_patient", f"查询 {other.code}")
    assert answer == f"未找到编号为 {other.code} 的转诊单，或您无权查看。"


async def test_the_approver(client):
    chat, mine, other = await setting(client)
    openid = "demo_dongguan_approver"
    answer = await chat.say(openid, "待审批")
    assert answer.startswith("本机构待审批转诊 1 条")
    appid = client.server.app[SETTINGS].wechat_appid
    assert (f'data-miniprogram-appid="{appid}" data-miniprogram-path="pages/referral/detail?id={mine.public_id}"'
            f'>{mine.code}</a>') in answer
    assert "陆*龙" in answer and "转往苏北医院" in answer and "剩余" in answer
    assert "供患者及家属使用" in await chat.say(openid, "我的转诊")
    answer = await chat.say(openid, f"查询 {mine.code}")
    assert "状态：待转出机构审批" in answer and "审批时限" in answer
    assert "未找到" in await chat.say(openid, f"查询 {other.code}")


async def test_the_doctor_and_an_outsider(client):
    chat, mine, other = await setting(client)
    assert await chat.say("demo_dongguan_doctor", "帮助") == HELP
    assert "供审批人员使用" in await chat.say("demo_dongguan_doctor", "待审批")
    answer = await chat.say("demo_dongguan_doctor", f"查询　{mine.code}")  # a full-width space, as phones type it
    assert mine.code in answer and "扬州市东关街道社区卫生服务中心 → 江苏省苏北人民医院" in answer
    assert "未找到" in await chat.say("demo_dongguan_doctor", f"查询 {other.code}")
    assert "未找到" in await chat.say("demo_baoying_doctor", f"查询 {mine.code}")
    assert "例如" in await chat.say("demo_baoying_doctor", "查询")
    assert "只包含字母和数字" in await chat.say("demo_baoying_doctor", "查询 <script>")
    assert await chat.say("demo_baoying_doctor", "你好") == UNKNOWN


async def test_the_unbound(client):
    chat, mine, _ = await setting(client)
    for command in ("帮助", "我的转诊", "待审批", f"查询 {mine.code}"):
        assert await chat.say("o_chat_stranger", command) == BIND
    # Someone WeChat knows but who never logged in to us at all.
    await login_code(client, "o_chat_never")
    assert await chat.say("o_chat_never", "我的转诊") == BIND


async def test_non_text_messages(client):
    chat, _, _ = await setting(client)
    before = len(await replies(client, "demo_dongguan_doctor"))
    image = ("<xml><ToUserName>gh</ToUserName><FromUserName>demo_dongguan_doctor</FromUserName>"
             f"<CreateTime>{int(time.time())}</CreateTime><MsgType>image</MsgType><PicUrl>http://x/y.png</PicUrl>"
             "<MediaId>m1</MediaId><MsgId>77</MsgId></xml>")
    await chat.push(image)
    assert (await replies(client, "demo_dongguan_doctor"))[before:] == [NOT_TEXT]


async def test_subscription_events_update_credits_and_deliveries(client):
    chat, mine, _ = await setting(client)
    openid = "demo_dongguan_approver"
    session = await login_demo(client, "DONGGUAN", "approver")
    account = await WeChatAccount.get(openid=openid)

    async def credits() -> int:
        row = await SubscriptionCredit.get_or_none(account_id=account.id, template_id=APPROVAL)
        return row.credits if row else 0

    # One tap, reported by the mini-program and by WeChat's popup event: one credit (either order).
    resp = await client.post("/api/v1/subscriptions", json={"results": {APPROVAL: "accept"}}, headers=bearer(session))
    assert resp.status == 200
    popup = [{"TemplateId": APPROVAL, "SubscribeStatusString": "accept", "PopupScene": "0"},
             {"TemplateId": "not-ours", "SubscribeStatusString": "accept", "PopupScene": "0"}]
    await chat.push(event_xml(openid, "subscribe_msg_popup_event", "SubscribeMsgPopupEvent", popup))
    assert await credits() == 1
    await chat.push(event_xml(openid, "subscribe_msg_popup_event", "SubscribeMsgPopupEvent", popup[:1],
                              create_time=int(time.time()) + 1))
    resp = await client.post("/api/v1/subscriptions", json={"results": {APPROVAL: "accept"}}, headers=bearer(session))
    assert await credits() == 2
    # A popup event the mini-program never reported (it was closed at once) still counts.
    await chat.push(json.dumps({"ToUserName": "gh", "FromUserName": openid, "CreateTime": int(time.time()) + 2,
                                "MsgType": "event", "Event": "subscribe_msg_popup_event",
                                "List": {"TemplateId": APPROVAL, "SubscribeStatusString": "accept",
                                         "PopupScene": 0}}))
    assert await credits() == 3
    assert await SubscriptionCredit.filter(template_id="not-ours").count() == 0

    # Switched off in WeChat's settings: nothing left to spend.
    await chat.push(event_xml(openid, "subscribe_msg_change_event", "SubscribeMsgChangeEvent",
                              [{"TemplateId": APPROVAL, "SubscribeStatusString": "reject"}],
                              create_time=int(time.time()) + 3))
    assert await credits() == 0

    # WeChat's later word on a message we sent is kept on its delivery.
    await client.post("/wechat-sandbox/sandbox/subscriptions", json={"openid": openid, "template_id": APPROVAL})
    await client.post("/api/v1/subscriptions", json={"results": {APPROVAL: "accept"}}, headers=bearer(session))
    async with in_transaction():
        await publish(Notice(kind="referral_todo", template="approval", values={"character_string1": mine.code},
                             page="pages/referral/detail?id=x", title="待审批转诊", body="待审批",
                             accounts=[account.id]), mine, "evt:1", settings=client.server.app[SETTINGS])
    await run_jobs(client.server.app)
    [delivery] = await Delivery.filter(account_id=account.id, state="sent")
    for n, (code, status) in enumerate((("0", "success"), ("43101", "Failed: user refuse to accept the msg"))):
        await chat.push(event_xml(openid, "subscribe_msg_sent_event", "SubscribeMsgSentEvent",
                                  [{"TemplateId": APPROVAL, "MsgID": delivery.msgid, "ErrorCode": code,
                                    "ErrorStatus": status}], create_time=int(time.time()) + 4 + n))
        result = (await Delivery.get(id=delivery.id)).result
        assert result == "success" if code == "0" else result.startswith("43101:")


async def test_events_from_strangers_are_ignored(client):
    chat, _, _ = await setting(client)
    await chat.push(event_xml("o_chat_nobody", "subscribe_msg_popup_event", "SubscribeMsgPopupEvent",
                              [{"TemplateId": APPROVAL, "SubscribeStatusString": "accept"}]))
    await chat.push(event_xml("o_chat_nobody", "user_enter_tempsession", "Nothing", []))
    assert await SubscriptionCredit.all().count() == 0


async def test_the_targets_queue_names_each_side_with_its_own_department(client):
    from tests.referral_support import institution

    chat, mine, other = await setting(client)  # `other`: GAOYOU → SUBEI 心血管内科, waiting at GAOYOU
    desk = Desk(client)
    await login_demo(client, "GAOYOU", "approver")
    assert "转往苏北医院心血管内科" in await chat.say("demo_gaoyou_approver", "待审批")
    await desk.ok(await desk.post(("GAOYOU", "approver"), str(other.public_id), "approve"))
    await login_demo(client, "SUBEI", "approver")
    answer = await chat.say("demo_subei_approver", "待审批")
    assert "来自高邮人医内科，转入本院心血管内科" in answer  # the source's department, then the target's
    assert "高邮人医心血管内科" not in answer
    # After passing it on, the target that redirected it can still look it up.
    baoying = await institution("BAOYING")
    department = (await baoying.departments.all())[0]
    await desk.ok(await desk.post(("SUBEI", "approver"), str(other.public_id), "redirect",
                                  {"institution_id": str(baoying.public_id),
                                   "department_id": str(department.public_id)}))
    answer = await chat.say("demo_subei_approver", f"查询 {other.code}")
    assert other.code in answer and "宝应县人民医院" in answer
