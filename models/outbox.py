"""Outbox jobs: written in the same transaction as the change that causes them, carried out after it."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model


class JobState:
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    DEAD = "dead"


class OutboxJob(Model):
    id = fields.BigIntField(primary_key=True)
    kind = fields.CharField(max_length=48, db_index=True)
    payload = fields.JSONField(default=dict)
    dedupe_key = fields.CharField(max_length=160, unique=True)
    state = fields.CharField(max_length=10, default=JobState.PENDING, db_index=True)
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(db_index=True)
    lease_until = fields.DatetimeField(null=True)
    locked_by = fields.CharField(max_length=64, default="")
    last_error = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "outbox_job"
