"""Fields every aggregate shares: an internal integer key, a public UUID, times, soft delete."""

from __future__ import annotations

import uuid

from tortoise import fields
from tortoise.models import Model


class Record(Model):
    id = fields.IntField(primary_key=True)
    public_id = fields.UUIDField(default=uuid.uuid4, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        abstract = True


class SoftDeleted(Record):
    """A record that must not vanish (people, institutions): deleting sets `deleted_at`."""

    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        abstract = True
