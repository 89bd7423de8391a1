"""Images and files of a conversation: the attachment store, with the same type (by content) and size checks as
referral attachments."""

from __future__ import annotations

import hashlib
import uuid

from chat.access import Membership
from errors import NotFound
from models import ChatAttachment
from referrals.attachments import checked_type, clean_name
from storage import Storage


async def add(membership: Membership, staff_id: int, storage: Storage, *, filename: str,
              data: bytes) -> ChatAttachment:
    content_type = checked_type(data)  # the same type and size rules as a referral's attachments
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
