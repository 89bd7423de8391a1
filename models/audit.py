"""Append-only, hash-chained audit log of state changes and sensitive reads."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class AuditEvent(Model):
    id = fields.BigIntField(primary_key=True)
    at = fields.DatetimeField(auto_now_add=True)
    actor_staff_id = fields.IntField(null=True)
    actor_account_id = fields.IntField(null=True)
    institution_id = fields.IntField(null=True)
    action = fields.CharField(max_length=64)
    target_type = fields.CharField(max_length=32)
    target_id = fields.CharField(max_length=64)
    detail = fields.JSONField(default=dict)
    prev_hash = fields.CharField(max_length=64)
    hash = fields.CharField(max_length=64, unique=True)

    class Meta:
        table = "audit_event"
        ordering = ["id"]
