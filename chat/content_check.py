"""WeChat's content check (msg_sec_check v2) on text a participant shows to the others.

A risky verdict refuses the message. When the check cannot be had in time (WeChat or the shared token
unreachable, a timeout, an unexpected error code) the message is delivered anyway and checked again through
the outbox (`chat.recheck`): a clinical conversation must not stop because WeChat is slow. A message the re-check
finds risky is withdrawn from everyone's view."""

from __future__ import annotations

import asyncio
import logging

from errors import InvalidInput
from models import CheckState
from wechat.client import WeChatClient
from wechat.errors import WeChatError

log = logging.getLogger("referral_cloud.chat")

RISKY_ERRCODE = 87014  # v1's "content is risky", still answered by some deployments


class Risky(Exception):
    def __init__(self, label: int) -> None:
        self.label = label
        super().__init__(f"risky content (label {label})")


def refused(label: int) -> InvalidInput:
    return InvalidInput("消息含有不适宜发布的内容，未能发送，请修改后重试", code="CONTENT_RISKY",
                        detail={"label": label})


async def verdict(wechat: WeChatClient, openid: str, text: str, *, timeout: float | None = None) -> str:
    """CheckState.PASSED when WeChat passes the text (or only asks for a review); raises Risky; raises
    WeChatError or any transport error when no verdict could be had."""
    try:
        result = await wechat.msg_sec_check(openid, text, timeout=timeout)
    except WeChatError as exc:
        if exc.errcode == RISKY_ERRCODE:
            raise Risky(0) from None
        raise
    if result.suggest == "risky":
        raise Risky(result.label)
    return CheckState.PASSED


async def check_before_delivery(wechat: WeChatClient, openid: str, text: str, timeout: float) -> str:
    """PASSED, or PENDING when the check is unreachable (the caller queues the re-check); a risky text raises
    the 422 the sender sees."""
    try:
        # The whole call is bounded, the shared-token read from the KV store included.
        return await asyncio.wait_for(verdict(wechat, openid, text, timeout=timeout), timeout + 0.5)
    except Risky as exc:
        raise refused(exc.label) from None
    except Exception as exc:  # unreachable, timed out, an errcode that is no verdict: deliver, check later
        log.warning("content check unavailable (%s); delivering and re-checking later", type(exc).__name__)
        return CheckState.PENDING
