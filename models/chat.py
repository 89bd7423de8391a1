"""Conversations of consultations and ward rounds, their participants and messages."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.base import Record


class ConversationKind:
    CONSULTATION = "consultation"
    WARD_ROUND = "ward_round"
    ALL = ("consultation", "ward_round")


class MessageType:
    TEXT = "text"
    IMAGE = "image"
    FILE = "file"
    CASE_CARD = "case_card"
    ALL = ("text", "image", "file", "case_card")


class CheckState:
    """Where a message stands with WeChat's content check (msg_sec_check)."""

    PASSED = "passed"  # checked and clean, or nothing to check (attachments, case cards)
    PENDING = "pending"  # the check was unreachable: delivered, re-checked through the outbox
    BLOCKED = "blocked"  # the re-check found it risky afterwards: withdrawn from everyone's view


class Conversation(Record):
    """One per consultation or ward round (`subject_id` is that row's public UUID)."""

    kind = fields.CharField(max_length=16)
    subject_id = fields.UUIDField()
    # The seq of the newest message: the next one takes last_seq + 1 in the same transaction, so seqs never skip.
    last_seq = fields.IntField(default=0)

    participants: fields.ReverseRelation[ConversationParticipant]

    class Meta:
        table = "conversation"
        unique_together = (("kind", "subject_id"),)


class ConversationParticipant(Model):
    id = fields.IntField(primary_key=True)
    conversation = fields.ForeignKeyField("models.Conversation", related_name="participants",
                                          on_delete=fields.CASCADE)
    staff = fields.ForeignKeyField("models.Staff", related_name="conversations", on_delete=fields.CASCADE)
    last_read_seq = fields.IntField(default=0)
    joined_at = fields.DatetimeField(auto_now_add=True)
    left_at = fields.DatetimeField(null=True)

    class Meta:
        table = "conversation_participant"
        unique_together = (("conversation", "staff"),)


class ChatMessage(Model):
    id = fields.BigIntField(primary_key=True)
    conversation = fields.ForeignKeyField("models.Conversation", related_name="messages", on_delete=fields.CASCADE)
    seq = fields.IntField()
    sender = fields.ForeignKeyField("models.Staff", related_name="chat_messages", on_delete=fields.RESTRICT)
    client_msg_id = fields.CharField(max_length=64)
    type = fields.CharField(max_length=16)
    body = fields.JSONField(default=dict)
    check_state = fields.CharField(max_length=12, default=CheckState.PASSED)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "chat_message"
        unique_together = (("conversation", "seq"), ("conversation", "sender", "client_msg_id"))
        ordering = ["conversation_id", "seq"]


class ChatAttachment(Record):
    """An image or file uploaded into a conversation, sent as a message that names it."""

    conversation = fields.ForeignKeyField("models.Conversation", related_name="attachments",
                                          on_delete=fields.CASCADE)
    uploaded_by = fields.ForeignKeyField("models.Staff", related_name="chat_attachments", on_delete=fields.RESTRICT)
    filename = fields.CharField(max_length=200)
    content_type = fields.CharField(max_length=64)
    size = fields.IntField()
    sha256 = fields.CharField(max_length=64)
    storage_key = fields.CharField(max_length=200)

    class Meta:
        table = "chat_attachment"
