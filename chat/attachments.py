"""Images and files of a conversation: the attachment store, with the same type (by content) and size checks as
referral attachments."""

from __future__ import annotations

import hashlib
import uuid

from chat.access import Membership
from errors import InvalidInput, NotFound
from models import ChatAttachment
from referrals.attachments import MAX_BYTES, clean_name, sniff
from storage import Storage


async def add(membership: Membership, staff_id: int, storage: Storage, *, filename: str,
              data: bytes) -> ChatAttachment:
    if not data:
        raise InvalidInput("文件为空", code="EMPTY_FILE")
    if len(data) > MAX_BYTES:
        raise InvalidInput("附件不能超过 10 MB", code="FILE_TOO_LARGE", status=413)
    content_type = sniff(data)
    if content_type is None:
        raise InvalidInput("仅支持 JPG、PNG 图片和 PDF 文件", code="UNSUPPORTED_FILE_TYPE", status=415)
    conversation = membership.conversation
    key = f"chat/{conversation.public_id}/{uuid.uuid4().hex}"
    await storage.put(key, data)
    return await ChatAttachment.create(conversation_id=conversation.id, uploaded_by_id=staff_id,
                                       filename=clean_name(filename), content_type=content_type, size=len(data),
                                       sha256=hashlib.sha256(data).hexdigest(), storage_key=key)


async def read(membership: Membership, storage: Storage, attachment_id: str) -> tuple[ChatAttachment, bytes]:
    try:
        key = uuid.UUID(attachment_id)
    except ValueError:
        raise NotFound("未找到该附件", code="ATTACHMENT_NOT_FOUND") from None
    attachment = await ChatAttachment.get_or_none(public_id=key, conversation_id=membership.conversation.id)
    if attachment is None:
        raise NotFound("未找到该附件", code="ATTACHMENT_NOT_FOUND")
    return attachment, await storage.get(attachment.storage_key)
