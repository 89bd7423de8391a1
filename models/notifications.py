"""What people are told: in-app inbox, WeChat subscription credits, and a record of each delivery."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.base import Record


class InboxMessage(Record):
    account = fields.ForeignKeyField("models.WeChatAccount", related_name="inbox", on_delete=fields.CASCADE)
    kind = fields.CharField(max_length=48)
    title = fields.CharField(max_length=100)
    body = fields.TextField(default="")
    page = fields.CharField(max_length=200, default="")
    data = fields.JSONField(default=dict)
    referral = fields.ForeignKeyField("models.Referral", related_name="inbox_messages", null=True,
                                      on_delete=fields.SET_NULL)
    dedupe_key = fields.CharField(max_length=160, unique=True)
    read_at = fields.DatetimeField(null=True)

    class Meta:
        table = "inbox_message"
        indexes = (("account_id", "read_at"),)


class SubscriptionCredit(Model):
    """Sends left for one user and one template: one per accepted one-time subscription, or long-term."""

    id = fields.IntField(primary_key=True)
    account = fields.ForeignKeyField("models.WeChatAccount", related_name="subscription_credits",
                                     on_delete=fields.CASCADE)
    template_id = fields.CharField(max_length=64)
    credits = fields.IntField(default=0)
    long_term = fields.BooleanField(default=False)
    banned = fields.BooleanField(default=False)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "subscription_credit"
        unique_together = (("account", "template_id"),)


class Delivery(Model):
    """One attempt to reach one person through one channel, kept for tracing and for WeChat's
    subscribe_msg_sent_event results."""

    id = fields.BigIntField(primary_key=True)
    dedupe_key = fields.CharField(max_length=160, unique=True)
    account = fields.ForeignKeyField("models.WeChatAccount", related_name="deliveries", null=True,
                                     on_delete=fields.SET_NULL)
    channel = fields.CharField(max_length=16)  # subscribe | customer | inbox
    template_id = fields.CharField(max_length=64, default="")
    state = fields.CharField(max_length=16)  # sent | fallback | failed
    errcode = fields.IntField(null=True)
    msgid = fields.CharField(max_length=64, default="", db_index=True)
    result = fields.CharField(max_length=32, default="")  # from subscribe_msg_sent_event
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "delivery"
