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


class TimelineEvent(Model):
    """One step of a hash-chained timeline (referrals, consultations): the owner's foreign key is declared by the
    concrete model. `hash` covers the event and the previous event's hash."""

    id = fields.BigIntField(primary_key=True)
    seq = fields.IntField()
    at = fields.DatetimeField()
    action = fields.CharField(max_length=24)
    from_status = fields.CharField(max_length=16, default="")
    to_status = fields.CharField(max_length=16)
    actor_staff_id = fields.IntField(null=True)
    actor_name = fields.CharField(max_length=50, default="")
    actor_role = fields.CharField(max_length=24, default="")
    actor_institution_id = fields.IntField(null=True)
    actor_institution_name = fields.CharField(max_length=100, default="")
    comment = fields.CharField(max_length=1000, default="")
    data = fields.JSONField(default=dict)
    prev_hash = fields.CharField(max_length=64)
    hash = fields.CharField(max_length=64)

    class Meta:
        abstract = True
