"""Chat's outbox jobs: the content re-check of messages delivered while the check was unreachable, and the
notification of participants who were not connected during a quiet period."""

from __future__ import annotations

import logging

from tortoise.transactions import in_transaction

from appkeys import KV_STORE, SETTINGS, WECHAT
from chat import hub
from chat.content_check import Risky, verdict
from chat.messages import NOTIFY_KIND, RECHECK_KIND, period_window, withdraw
from models import ChatMessage, CheckState, Conversation, ConversationKind, ConversationParticipant, WeChatAccount
from notifications.delivery import is_temporary
from notifications.fanout import publish_all
from notifications.rules import Notice
from outbox.registry import JobContext, PermanentFailure, TemporaryFailure, handler
from wechat.errors import WeChatError

log = logging.getLogger("referral_cloud.chat")

KIND_NAMES = {ConversationKind.CONSULTATION: "云会诊", ConversationKind.WARD_ROUND: "远程查房"}


@handler(RECHECK_KIND)
async def recheck(ctx: JobContext) -> None:
    """Check a delivered message again; a risky one is withdrawn from every participant's view."""
    message = await ChatMessage.get_or_none(id=ctx.job.payload["message_id"])
    if message is None or message.check_state != CheckState.PENDING:
        return
    account = await WeChatAccount.get_or_none(staff_id=message.sender_id)  # type: ignore[attr-defined]
    body = message.body or {}
    text = body.get("text") if message.type == "text" else "\n".join(
        str(v) for v in body.values() if isinstance(v, str) and v.strip())
    if account is None or not text:
        raise PermanentFailure("发送人没有微信账号或消息没有文字，无法复核")
    try:
        await verdict(ctx.app[WECHAT], account.openid, text)
    except Risky:
        withdrawn = await withdraw(message.id)
        if withdrawn is not None:
            conversation = await Conversation.get(id=message.conversation_id)  # type: ignore[attr-defined]
            await hub.announce(conversation, {"type": "withdrawn", "seq": message.seq}, store=ctx.app[KV_STORE])
        return
    except WeChatError as exc:
        if is_temporary(exc):
            raise TemporaryFailure(f"msg_sec_check errcode {exc.errcode}") from None
        raise PermanentFailure(f"msg_sec_check errcode {exc.errcode}: {exc.errmsg}") from None
    await ChatMessage.filter(id=message.id, check_state=CheckState.PENDING).update(check_state=CheckState.PASSED)


@handler(NOTIFY_KIND)
async def notify_unread(ctx: JobContext) -> None:
    """After a quiet period: an inbox entry (and, within their credits, a subscribe message) for each participant
    who has unread messages of that period from the others and no socket open."""
    payload = ctx.job.payload
    conversation = await Conversation.get_or_none(id=payload["conversation_id"])
    if conversation is None:
        return
    start, end = period_window(int(payload["period"]), ctx.app[SETTINGS].chat_notify_quiet)
    participants = await ConversationParticipant.filter(conversation_id=conversation.id, left_at__isnull=True)
    accounts = dict(await WeChatAccount.filter(staff_id__in=[p.staff_id for p in participants])  # type: ignore[attr-defined]
                    .values_list("staff_id", "id"))
    notices = []
    for participant in participants:
        staff_id = participant.staff_id  # type: ignore[attr-defined]
        if staff_id not in accounts:
            continue
        unread = ChatMessage.filter(conversation_id=conversation.id, seq__gt=participant.last_read_seq,
                                    created_at__gte=start, created_at__lt=end) \
            .exclude(sender_id=staff_id).exclude(check_state=CheckState.BLOCKED)
        count = await unread.count()
        if not count or await hub.is_present(ctx.app[KV_STORE], staff_id):
            continue
        latest = await unread.order_by("-seq").first()
        notices.append(await _notice(conversation, latest, count, accounts[staff_id]))
    if notices:
        async with in_transaction():
            await publish_all(notices, None, f"chat:{conversation.id}:{payload['period']}",
                              settings=ctx.app[SETTINGS])


async def _notice(conversation: Conversation, latest: ChatMessage, count: int, account_id: int) -> Notice:
    from chat.messages import sender_view

    sender = await sender_view(latest.sender_id)  # type: ignore[attr-defined]
    what = KIND_NAMES.get(conversation.kind, "会话")
    return Notice(kind="chat_unread", template="chat",
                  values={"thing1": what, "thing2": f"{sender['name']}（{sender['institution']}）",
                          "number3": count, "time4": latest.created_at},
                  page=f"pages/chat/conversation?id={conversation.public_id}", title=f"{what}有新消息",
                  body=f"{sender['name']} 等在{what}中发来 {count} 条消息，请及时查看", accounts=[account_id])


