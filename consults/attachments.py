"""A consultation's files (images, PDFs): uploaded by its parties, checked as a referral's are, and handed on to
the referral made from it (the same stored bytes, no copy)."""

from __future__ import annotations

import hashlib
import uuid

from accounts.principal import Principal
from consults.access import sides_of, visible_consultation
from consults.state_machine import OPEN, Status
from errors import Forbidden, InvalidInput, NotFound
from models import Attachment, Consultation, ConsultationAttachment, Referral
from referrals.attachments import MAX_PER_REFERRAL, checked_type, clean_name
from storage import Storage


async def add_file(principal: Principal, storage: Storage, public_id, *, filename: str,
                   data: bytes) -> tuple[Consultation, ConsultationAttachment]:
    consultation = await visible_consultation(principal, public_id)
    if not await sides_of(principal, consultation):
        raise Forbidden("仅会诊的参与者可以上传附件", code="NOT_A_PARTY")
    if Status(consultation.status) not in OPEN:
        raise InvalidInput("会诊已结束，不能再上传附件", code="CONSULTATION_CLOSED")
    content_type = checked_type(data)
    if await ConsultationAttachment.filter(consultation_id=consultation.id).count() >= MAX_PER_REFERRAL:
        raise InvalidInput(f"每次会诊最多 {MAX_PER_REFERRAL} 个附件", code="TOO_MANY_ATTACHMENTS")
    key = f"attachments/{consultation.public_id}/{uuid.uuid4().hex}"
    await storage.put(key, data)
    row = await ConsultationAttachment.create(consultation=consultation, filename=clean_name(filename),
                                              content_type=content_type, size=len(data),
                                              sha256=hashlib.sha256(data).hexdigest(), storage_key=key)
    return consultation, row


async def files_of(consultation: Consultation) -> list[ConsultationAttachment]:
    return await ConsultationAttachment.filter(consultation_id=consultation.id).order_by("id")


async def read_file(principal: Principal, storage: Storage, public_id,
                    attachment_id: str) -> tuple[ConsultationAttachment, bytes]:
    consultation = await visible_consultation(principal, public_id)
    if not attachment_id.isdigit():
        raise NotFound("未找到该附件", code="ATTACHMENT_NOT_FOUND")
    row = await ConsultationAttachment.get_or_none(id=int(attachment_id), consultation_id=consultation.id)
    if row is None:
        raise NotFound("未找到该附件", code="ATTACHMENT_NOT_FOUND")
    return row, await storage.get(row.storage_key)


def file_view(row: ConsultationAttachment, consultation: Consultation) -> dict:
    return {"id": str(row.id), "filename": row.filename, "content_type": row.content_type, "size": row.size,
            "sha256": row.sha256, "created_at": row.created_at,
            "url": f"/api/v1/consultations/{consultation.public_id}/attachments/{row.id}"}


async def hand_on(consultation: Consultation, referral: Referral, staff_id: int | None) -> int:
    """The consultation's files become the referral's attachments (in the caller's transaction)."""
    rows = await files_of(consultation)
    await Attachment.bulk_create([
        Attachment(referral_id=referral.id, filename=r.filename, content_type=r.content_type, size=r.size,
                   sha256=r.sha256, storage_key=r.storage_key, uploaded_by_id=staff_id) for r in rows])
    return len(rows)
