"""WeChat accounts and what they are bound to; invitations; refresh-token families."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields

from models.base import Record


class WeChatAccount(Record):
    openid = fields.CharField(max_length=64, unique=True)
    unionid = fields.CharField(max_length=64, null=True)
    staff = fields.OneToOneField("models.Staff", related_name="account", null=True, on_delete=fields.SET_NULL)
    last_login_at = fields.DatetimeField(null=True)
    # The WeChat session_key of the newest login (code2session), encrypted: it signs VoIP room joins. Replaced
    # at each login, never returned or logged.
    session_key_enc = fields.TextField(default="")

    bindings: fields.ReverseRelation[PatientBinding]

    class Meta:
        table = "wechat_account"


class Relation(StrEnum):
    SELF = "self"
    PARENT = "parent"
    CHILD = "child"
    SPOUSE = "spouse"
    OTHER = "other"


RELATION_NAMES = {Relation.SELF: "本人", Relation.PARENT: "父母", Relation.CHILD: "子女",
                  Relation.SPOUSE: "配偶", Relation.OTHER: "其他亲属"}


class PatientBinding(Record):
    account = fields.ForeignKeyField("models.WeChatAccount", related_name="bindings", on_delete=fields.CASCADE)
    patient = fields.ForeignKeyField("models.Patient", related_name="bindings", on_delete=fields.CASCADE)
    relation = fields.CharEnumField(Relation, max_length=8)

    class Meta:
        table = "patient_binding"
        unique_together = (("account", "patient"),)


class BindingState(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"


class BindingRequest(Record):
    """A patient binding that still needs proof: confirmed in person by a staff member of an institution that
    treats the patient, or, for a family member, by the patient's own bound account. Its QR carries only a
    signed reference to this row (qr.binding_token)."""

    account = fields.ForeignKeyField("models.WeChatAccount", related_name="binding_requests",
                                     on_delete=fields.CASCADE)
    patient = fields.ForeignKeyField("models.Patient", related_name="binding_requests", on_delete=fields.CASCADE)
    relation = fields.CharEnumField(Relation, max_length=8)
    state = fields.CharEnumField(BindingState, max_length=12, default=BindingState.PENDING)
    expires_at = fields.DatetimeField()
    confirmed_at = fields.DatetimeField(null=True)
    confirmed_by_staff = fields.ForeignKeyField("models.Staff", related_name="bindings_confirmed", null=True,
                                                on_delete=fields.SET_NULL)
    confirmed_by_account = fields.ForeignKeyField("models.WeChatAccount", related_name="bindings_approved",
                                                  null=True, on_delete=fields.SET_NULL)

    class Meta:
        table = "binding_request"


class Invitation(Record):
    """A one-time, expiring staff invitation: only the token's hash is stored."""

    institution = fields.ForeignKeyField("models.Institution", related_name="invitations",
                                         on_delete=fields.CASCADE)
    department = fields.ForeignKeyField("models.Department", related_name="invitations", null=True,
                                        on_delete=fields.SET_NULL)
    created_by = fields.ForeignKeyField("models.Staff", related_name="invitations_sent", null=True,
                                        on_delete=fields.SET_NULL)
    name = fields.CharField(max_length=50)
    roles = fields.JSONField(default=list)
    token_hash = fields.CharField(max_length=64, unique=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    used_by = fields.ForeignKeyField("models.Staff", related_name="invitation", null=True,
                                     on_delete=fields.SET_NULL)

    class Meta:
        table = "invitation"


class RefreshToken(Record):
    """One link of a rotating refresh-token family: reuse of a used link revokes the family."""

    account = fields.ForeignKeyField("models.WeChatAccount", related_name="refresh_tokens",
                                     on_delete=fields.CASCADE)
    family = fields.UUIDField(db_index=True)
    token_hash = fields.CharField(max_length=64, unique=True)
    expires_at = fields.DatetimeField()
    used_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "refresh_token"
