"""`probe.cs_message`: one WeChat customer-service text message whose text carries the job's dedupe key.

A delivery probe for the crash test, `python -m bench notify` and operators checking a worker pool end to end:
it goes through the real client, the shared access token and the at-most-once marker like a notification,
without depending on referral data. Nothing in the platform enqueues it by itself."""

from __future__ import annotations

from appkeys import WECHAT
from models import OutboxJob
from outbox.jobs import enqueue, job_of
from outbox.once import deliver_once
from outbox.registry import JobContext, PermanentFailure, TemporaryFailure, handler
from wechat.errors import WeChatError

KIND = "probe.cs_message"


def probe_text(dedupe_key: str) -> str:
    return f"消息投递测试 {dedupe_key}"


async def enqueue_probe(openid: str, dedupe_key: str) -> OutboxJob:
    await enqueue(KIND, {"openid": openid}, dedupe_key)
    return await job_of(dedupe_key)


@handler(KIND)
async def send_probe(ctx: JobContext) -> None:
    openid = ctx.job.payload.get("openid")
    if not isinstance(openid, str) or not openid:
        raise PermanentFailure("任务缺少接收人 openid")
    client = ctx.app[WECHAT]
    try:
        await deliver_once(ctx, lambda: client.send_customer_service(
            openid, "text", {"content": probe_text(ctx.job.dedupe_key)}))
    except WeChatError as exc:
        if exc.retryable:
            raise TemporaryFailure(f"微信暂时不可用（errcode {exc.errcode}）") from exc
        raise PermanentFailure(f"微信拒绝发送（errcode {exc.errcode}）") from exc
