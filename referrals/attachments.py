"""Attachments of a referral (images, PDFs): type checked by content, size limited, stored via Storage."""

from __future__ import annotations

import hashlib
import uuid

from accounts.principal import Principal
from errors import Forbidden, InvalidInput, NotFound
from models import Attachment, Referral
from referrals.access import sides_of, visible_referral
from referrals.state_machine import TERMINAL
from storage import Storage

MAX_BYTES = 10 * 1024 * 1024
MAX_PER_REFERRAL = 30
# Decided by the bytes, not by what the client claims.
SIGNATURES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg", b"%PDF-": "application/pdf"}
# What a download of an attachment (a referral's, a consultation's, a conversation's) may be, as a route declares it.
DOWNLOAD_MEDIA = ", ".join(sorted(set(SIGNATURES.values())))


def sniff(data: bytes) -> str | None:
    return next((kind for magic, kind in SIGNATURES.items() if data.startswith(magic)), None)


def checked_type(data: bytes) -> str:
    """The content type of an upload we accept (by its bytes), or InvalidInput saying why not."""
    if not data:
        raise InvalidInput("文件为空", code="EMPTY_FILE")
    if len(data) > MAX_BYTES:
        raise InvalidInput("附件不能超过 10 MB", code="FILE_TOO_LARGE", status=413)
    content_type = sniff(data)
    if content_type is None:
        raise InvalidInput("仅支持 JPG、PNG 图片和 PDF 文件", code="UNSUPPORTED_FILE_TYPE", status=415)
    return content_type


async def add_attachment(principal: Principal, storage: Storage, public_id, *, filename: str,
                         data: bytes) -> Attachment:
    referral = await visible_referral(principal, public_id)
    if not sides_of(principal, referral):
        raise Forbidden("仅双方机构的工作人员可以上传附件", code="STAFF_ONLY")
    if referral.status in TERMINAL:
        raise InvalidInput("转诊已结束，不能再上传附件", code="REFERRAL_CLOSED")
    content_type = checked_type(data)
    if await Attachment.filter(referral_id=referral.id).count() >= MAX_PER_REFERRAL:
        raise InvalidInput(f"每张转诊单最多 {MAX_PER_REFERRAL} 个附件", code="TOO_MANY_ATTACHMENTS")
    key = f"attachments/{referral.public_id}/{uuid.uuid4().hex}"
    await storage.put(key, data)
    return await Attachment.create(referral=referral, filename=clean_name(filename), content_type=content_type,
                                   size=len(data), sha256=hashlib.sha256(data).hexdigest(), storage_key=key,
                                   uploaded_by_id=principal.staff_id)


def clean_name(filename: str) -> str:
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip() or "附件"
    return "".join(ch for ch in name if ch.isprintable())[:200]


async def attachments_of(principal: Principal, public_id) -> tuple[Referral, list[Attachment]]:
    referral = await visible_referral(principal, public_id)
    return referral, await Attachment.filter(referral_id=referral.id).order_by("id")


async def read_attachment(principal: Principal, storage: Storage, public_id, attachment_id) -> tuple[Attachment, bytes]:
    referral = await visible_referral(principal, public_id)
    try:
        key = uuid.UUID(str(attachment_id))
    except ValueError:
        raise NotFound("未找到该附件", code="ATTACHMENT_NOT_FOUND") from None
    attachment = await Attachment.get_or_none(public_id=key, referral_id=referral.id)
    if attachment is None:
        raise NotFound("未找到该附件", code="ATTACHMENT_NOT_FOUND")
    return attachment, await storage.get(attachment.storage_key)


def attachment_view(attachment: Attachment, referral: Referral) -> dict:
    return {"id": str(attachment.public_id), "filename": attachment.filename,
            "content_type": attachment.content_type, "size": attachment.size, "sha256": attachment.sha256,
            "created_at": attachment.created_at,
            "url": f"/api/v1/referrals/{referral.public_id}/attachments/{attachment.public_id}"}
