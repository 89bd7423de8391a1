"""Admission slips (QR-coded, signed) and the keys that sign them."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.base import Record


class SlipState:
    ACTIVE = "active"
    REVOKED = "revoked"
    USED = "used"
    EXPIRED = "expired"


class Slip(Record):
    referral = fields.ForeignKeyField("models.Referral", related_name="slips", on_delete=fields.CASCADE)
    code = fields.CharField(max_length=16, unique=True)
    state = fields.CharField(max_length=10, default=SlipState.ACTIVE, db_index=True)
    kid = fields.CharField(max_length=32)
    scheduled_date = fields.DateField()
    department = fields.ForeignKeyField("models.Department", related_name="slips", null=True,
                                        on_delete=fields.SET_NULL)
    ward = fields.CharField(max_length=64, default="")
    bed = fields.CharField(max_length=32, default="")
    what_to_bring = fields.TextField(default="")
    certificate_no = fields.CharField(max_length=64, default="")
    expires_at = fields.DatetimeField()
    revoked_at = fields.DatetimeField(null=True)
    revoked_reason = fields.CharField(max_length=32, default="")
    checked_in_at = fields.DatetimeField(null=True)
    checked_in_by = fields.ForeignKeyField("models.Staff", related_name="check_ins", null=True,
                                           on_delete=fields.SET_NULL)

    class Meta:
        table = "slip"


class SigningKey(Model):
    """An Ed25519 key pair, the private half encrypted with DATA_KEY. Retired keys still verify."""

    id = fields.IntField(primary_key=True)
    kid = fields.CharField(max_length=32, unique=True)
    purpose = fields.CharField(max_length=16, default="slip")
    private_key_enc = fields.TextField()
    public_key = fields.TextField()  # PEM
    created_at = fields.DatetimeField(auto_now_add=True)
    retired_at = fields.DatetimeField(null=True)

    class Meta:
        table = "signing_key"
