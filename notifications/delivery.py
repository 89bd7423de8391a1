"""Carrying out one delivery job: one message to one account through one WeChat channel, recorded attempt
by attempt in `Delivery` (dedupe key `<job dedupe key>#<attempt>`).

Subscribe messages spend a credit first (spend and first attempt row in one transaction). A temporary failure
(40001 after the client's own token refresh, 45009, -1, timeouts) keeps the credit for the retry; 43101 and
"no credit" leave the message in the inbox only; 47003 and the other refusals are permanent: the credit is
given back, the message stays in the inbox and the job goes dead with the reason. A job that already reached
a final state (sent, fallback) does nothing when it runs again.

An attempt row still "sending" when the job runs again means the process died (or was stopped) during the
call: WeChat may or may not have the message and takes no idempotency key. Like outbox.once, we choose at
most once: the row becomes "unknown" and the job goes dead with that reason (the message is in the inbox
anyway). If an admin retries the job, the "unknown" row says the choice was made and it is sent again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from tortoise.transactions import in_transaction

from appkeys import KV_STORE, SETTINGS, WECHAT
from models import Delivery, WeChatAccount
from notifications import credits
from notifications.templates import template_id
from outbox.registry import JobContext, PermanentFailure, TemporaryFailure
from wechat.errors import TOKEN_ERRCODES, WeChatError, WeChatUnavailable

log = logging.getLogger("referral_cloud.notifications")

SENDING, SENT, FAILED, FALLBACK, UNKNOWN = "sending", "sent", "failed", "fallback", "unknown"
OUTCOME_UNKNOWN = ("上次发送途中处理进程中断，无法确认微信是否已送达；消息已在站内信中，为避免重复未自动重发，"
                   "核实后可在任务管理中重试")
FINAL = (SENT, FALLBACK)
REFUSED = 43101  # the user did not subscribe, or unsubscribed
MAX_ATTEMPT_ROWS = 64


def is_temporary(exc: WeChatError) -> bool:
    return isinstance(exc, WeChatUnavailable) or exc.retryable or exc.errcode in TOKEN_ERRCODES


async def attempts_of(base: str) -> list[Delivery]:
    """The attempt rows of one delivery, in order (exact keys: the unique index answers, no LIKE scan)."""
    rows = await Delivery.filter(dedupe_key__in=[f"{base}#{n}" for n in range(1, MAX_ATTEMPT_ROWS + 1)])
    return sorted(rows, key=lambda d: int(d.dedupe_key.rsplit("#", 1)[1]))


def _key(base: str, attempts: list[Delivery]) -> str:
    return f"{base}#{min(len(attempts) + 1, MAX_ATTEMPT_ROWS)}"


async def _finish(row: Delivery, state: str, errcode: int | None = None, msgid: object = None) -> None:
    row.state, row.errcode = state, errcode
    if msgid is not None:
        row.msgid = str(msgid)
    await row.save(update_fields=["state", "errcode", "msgid", "updated_at"])


async def _interrupted(attempts: list[Delivery]) -> None:
    """Refuse to repeat a call whose outcome is unknown (see the module docstring)."""
    if attempts and attempts[-1].state == SENDING:
        await _finish(attempts[-1], UNKNOWN)
        raise PermanentFailure(OUTCOME_UNKNOWN)


async def send_subscribe(ctx: JobContext) -> str:
    """The `notify.send` job: payload {account_id, template, data, page}. Returns the outcome."""
    payload = ctx.job.payload
    settings = ctx.app[SETTINGS]
    account = await WeChatAccount.get_or_none(id=payload["account_id"])
    if account is None:
        return "gone"
    tid = template_id(settings, payload["template"])
    base = ctx.job.dedupe_key
    attempts = await attempts_of(base)
    if any(a.state in FINAL for a in attempts):
        return next(a.state for a in attempts if a.state in FINAL)
    await _interrupted(attempts)
    async with in_transaction():
        # Earlier attempts that did not finish already hold this message's credit.
        if not attempts and not await credits.spend(account.id, tid):
            await Delivery.create(dedupe_key=_key(base, attempts), account_id=account.id, channel="subscribe",
                                  template_id=tid, state=FALLBACK)
            return "no_credit"
        row = await Delivery.create(dedupe_key=_key(base, attempts), account_id=account.id, channel="subscribe",
                                    template_id=tid, state=SENDING)
    try:
        msgid = await ctx.app[WECHAT].send_subscribe(account.openid, tid, payload["data"], page=payload.get("page"),
                                                     miniprogram_state=settings.wechat_miniprogram_state)
    except WeChatError as exc:
        if exc.errcode == REFUSED:
            await _finish(row, FALLBACK, exc.errcode)
            await credits.switched_off(ctx.app[KV_STORE], account.id, tid)
            return "refused"
        if is_temporary(exc):
            await _finish(row, FAILED, exc.errcode)
            raise TemporaryFailure(f"WeChat errcode {exc.errcode}") from None
        await _finish(row, FALLBACK, exc.errcode)
        await credits.refund(account.id, tid)
        log.warning("subscribe message %s refused for good: errcode %s %s", base, exc.errcode, exc.errmsg)
        raise PermanentFailure(f"WeChat errcode {exc.errcode}: {exc.errmsg}") from None
    await _finish(row, SENT, msgid=msgid or "")
    return SENT


async def send_once(ctx: JobContext, account: WeChatAccount | None, call: Callable[[], Awaitable[object]]) -> str:
    """A customer-service message for one job, at most once on success; temporary failures retry."""
    base = ctx.job.dedupe_key
    attempts = await attempts_of(base)
    if any(a.state in FINAL for a in attempts):
        return SENT
    await _interrupted(attempts)
    row = await Delivery.create(dedupe_key=_key(base, attempts), account_id=account.id if account else None,
                                channel="customer", state=SENDING)
    try:
        await call()
    except WeChatError as exc:
        if is_temporary(exc):
            await _finish(row, FAILED, exc.errcode)
            raise TemporaryFailure(f"WeChat errcode {exc.errcode}") from None
        await _finish(row, FALLBACK, exc.errcode)
        raise PermanentFailure(f"WeChat errcode {exc.errcode}: {exc.errmsg}") from None
    await _finish(row, SENT)
    return SENT


async def record_sent_result(msgid: str, error_code: str, error_status: str) -> int:
    """WeChat's asynchronous subscribe_msg_sent_event: what became of a message we were given `msgid` for."""
    result = "success" if error_code in ("0", "") else f"{error_code}:{error_status}"[:32]
    return await Delivery.filter(msgid=msgid, channel="subscribe").update(result=result)
