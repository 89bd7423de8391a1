"""The `bot.message` job: one pushed message or event, handled after WeChat has had its `success`.

* `subscribe_msg_popup_event`: the user's choices in the subscription dialog → credits (matched with what the
  mini-program reported, so one tap is one credit).
* `subscribe_msg_change_event`: a template switched off (or on) in WeChat's settings.
* `subscribe_msg_sent_event`: the fate of a subscribe message we sent, recorded on its Delivery (by MsgID).
* text: a chat command, answered with a customer-service message (at most once per push).
"""

from __future__ import annotations

import logging

from accounts.principal import load_principal
from appkeys import KV_STORE, SETTINGS, WECHAT
from bot import commands
from bot.routes import JOB_KIND
from models import WeChatAccount
from notifications import credits
from notifications.delivery import record_sent_result, send_once
from notifications.templates import long_term_ids, template_by_id
from outbox.registry import JobContext, handler

log = logging.getLogger("referral_cloud.bot")


@handler(JOB_KIND)
async def handle_message(ctx: JobContext) -> None:
    message = ctx.job.payload
    openid = message["FromUserName"]
    account = await WeChatAccount.get_or_none(openid=openid)
    if message.get("MsgType") == "event":
        await _event(ctx, account, message)
        return
    settings = ctx.app[SETTINGS]
    links = commands.Links(settings.wechat_appid, settings.public_url or "https://mp.weixin.qq.com")
    if message.get("MsgType") == "text":
        principal = await load_principal(account) if account is not None else None
        text = await commands.reply(principal, message.get("Content") or "", links)
    else:
        text = commands.NOT_TEXT
    await send_once(ctx, account, lambda: ctx.app[WECHAT].send_customer_service(openid, "text", {"content": text}))


async def _event(ctx: JobContext, account: WeChatAccount | None, message: dict) -> None:
    event = message.get("Event")
    items = message.get("List") or []
    if event == "subscribe_msg_sent_event":
        for item in items:
            if item.get("MsgID"):
                await record_sent_result(item["MsgID"], item.get("ErrorCode") or "0", item.get("ErrorStatus") or "")
        return
    if event not in ("subscribe_msg_popup_event", "subscribe_msg_change_event"):
        return  # other events (entering a chat session, ...) need nothing from us
    if account is None:
        log.info("subscription event from a WeChat user who never logged in; ignored")
        return
    settings = ctx.app[SETTINGS]
    long_term = long_term_ids(settings)
    for item in items:
        template_id, choice = item["TemplateId"], item.get("SubscribeStatusString") or ""
        if template_by_id(settings, template_id) is None:
            continue  # a template of ours no longer, or never
        if event == "subscribe_msg_change_event" and choice == "reject":
            await credits.switched_off(ctx.app[KV_STORE], account.id, template_id)
        elif event == "subscribe_msg_change_event" and choice == "accept":
            if template_id in long_term:
                await credits.record_choice(ctx.app[KV_STORE], account.id, template_id, "accept", source="push",
                                            long_term=True)
        else:
            await credits.record_choice(ctx.app[KV_STORE], account.id, template_id, choice, source="push",
                                        long_term=template_id in long_term)
