"""Referrals, their hash-chained timeline, attachments, orders, per-institution policy and reserved beds."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.base import Record
from referrals.state_machine import Direction, Status


class Urgency:
    ROUTINE = "routine"
    URGENT = "urgent"
    EMERGENCY = "emergency"
    ALL = ("routine", "urgent", "emergency")
    NAMES = {"routine": "普通", "urgent": "紧急", "emergency": "急诊"}


class HisSync:
    NONE = "none"
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


class Referral(Record):
    code = fields.CharField(max_length=20, unique=True)
    version = fields.IntField(default=1)
    status = fields.CharEnumField(Status, max_length=16, default=Status.DRAFT, db_index=True)
    direction = fields.CharEnumField(Direction, max_length=8)
    urgency = fields.CharField(max_length=12, default=Urgency.ROUTINE)
    needs_source_approval = fields.BooleanField(default=True)
    patient = fields.ForeignKeyField("models.Patient", related_name="referrals", on_delete=fields.RESTRICT)
    referrer = fields.ForeignKeyField("models.Staff", related_name="referrals_written", on_delete=fields.RESTRICT)
    source_institution = fields.ForeignKeyField("models.Institution", related_name="referrals_out",
                                                on_delete=fields.RESTRICT)
    source_department = fields.ForeignKeyField("models.Department", related_name="referrals_out", null=True,
                                               on_delete=fields.SET_NULL)
    target_institution = fields.ForeignKeyField("models.Institution", related_name="referrals_in",
                                                on_delete=fields.RESTRICT)
    target_department = fields.ForeignKeyField("models.Department", related_name="referrals_in",
                                               on_delete=fields.RESTRICT)
    # 双向转诊单 / WS 445 转诊记录: diagnoses [{code, name}], chief_complaint, present_illness, past_history,
    # allergies, treatment, referral_reason, precautions.
    clinical = fields.JSONField(default=dict)
    contact_phone_enc = fields.TextField(default="")
    # Searchable without decrypting anything: the patient's name as shown on worklists.
    patient_name = fields.CharField(max_length=50, default="")
    submitted_at = fields.DatetimeField(null=True)
    stage_started_at = fields.DatetimeField(null=True)
    decided_at = fields.DatetimeField(null=True)
    admitted_at = fields.DatetimeField(null=True)
    closed_at = fields.DatetimeField(null=True)
    admission_date = fields.DateField(null=True)
    admission_department = fields.ForeignKeyField("models.Department", related_name="admissions", null=True,
                                                  on_delete=fields.SET_NULL)
    ward = fields.CharField(max_length=64, default="")
    bed = fields.CharField(max_length=32, default="")
    booking = fields.ForeignKeyField("models.CapacityDay", related_name="referrals", null=True,
                                     on_delete=fields.SET_NULL)
    rejection_code = fields.CharField(max_length=32, default="")
    rejection_text = fields.CharField(max_length=500, default="")
    return_summary = fields.JSONField(default=dict)
    his_sync = fields.CharField(max_length=12, default=HisSync.NONE)
    admission_certificate_no = fields.CharField(max_length=64, default="")
    previous = fields.ForeignKeyField("models.Referral", related_name="resubmissions", null=True,
                                      on_delete=fields.SET_NULL)
    # "<seq>:<hash>" of the newest timeline event, written by the UPDATE that moved the version to <seq>, so the
    # next event chains to it without reading the timeline. Only a cache: when the version has moved on
    # without it (or it is empty), the head is read from the events (referrals.timeline.head_hash).
    chain_head = fields.CharField(max_length=80, default="")
    # Figures (stats/): written by the transition that ends each stage, in its own UPDATE, so a statistic is one
    # indexed scan of this table. Stage lengths are whole seconds; the day and month are China time.
    submitted_day = fields.DateField(null=True)
    submitted_month = fields.IntField(null=True)  # yyyymm of submitted_day
    source_approved_at = fields.DatetimeField(null=True)
    wait_source_s = fields.IntField(null=True)  # submitted → source approval
    wait_target_s = fields.IntField(null=True)  # source approval (or submission) → accepted with a bed
    wait_bed_s = fields.IntField(null=True)  # accepted → admitted
    wait_total_s = fields.IntField(null=True)  # submitted → admitted: the paper's waiting time
    redirects = fields.SmallIntField(default=0)
    decisions = fields.SmallIntField(default=0)  # approvals, rejections and redirects taken
    late_decisions = fields.SmallIntField(default=0)  # ... of them past the institution's deadline

    class Meta:
        table = "referral"
        indexes = (("submitted_day", "direction"), ("source_institution_id", "submitted_day"),
                   ("target_institution_id", "submitted_day"))
        ordering = ["id"]


class ReferralEvent(Model):
    """One step of a referral's timeline. `hash` covers the event and the previous event's hash."""

    id = fields.BigIntField(primary_key=True)
    referral = fields.ForeignKeyField("models.Referral", related_name="events", on_delete=fields.RESTRICT)
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
        table = "referral_event"
        unique_together = (("referral", "seq"),)
        ordering = ["referral_id", "seq"]


def default_approver_roles() -> list[str]:
    return ["approver"]


def default_deadline_hours() -> dict[str, int]:
    return {"routine": 48, "urgent": 12, "emergency": 2}


class InstitutionPolicy(Model):
    """An institution's referral policy, editable by its admin."""

    id = fields.IntField(primary_key=True)
    institution = fields.OneToOneField("models.Institution", related_name="policy", on_delete=fields.CASCADE)
    source_approval_up = fields.BooleanField(default=True)
    source_approval_down = fields.BooleanField(default=False)
    source_approval_lateral = fields.BooleanField(default=True)
    approver_roles = fields.JSONField(default=default_approver_roles)
    # Hours an approver of this institution has to answer, by urgency.
    deadline_hours = fields.JSONField(default=default_deadline_hours)
    slip_grace_hours = fields.IntField(default=24)
    # What patients bring to this institution's admission desk (slip, notices, bot); empty: the platform's text.
    what_to_bring = fields.CharField(max_length=200, default="")
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "institution_policy"


class CapacityDay(Model):
    """Reserved referral beds (预留床位) of one department on one day, and how many are booked."""

    id = fields.IntField(primary_key=True)
    department = fields.ForeignKeyField("models.Department", related_name="capacity_days", on_delete=fields.CASCADE)
    day = fields.DateField()
    capacity = fields.IntField(default=0)
    booked = fields.IntField(default=0)

    class Meta:
        table = "capacity_day"
        unique_together = (("department", "day"),)


class Attachment(Record):
    referral = fields.ForeignKeyField("models.Referral", related_name="attachments", on_delete=fields.CASCADE)
    filename = fields.CharField(max_length=200)
    content_type = fields.CharField(max_length=64)
    size = fields.IntField()
    sha256 = fields.CharField(max_length=64)
    storage_key = fields.CharField(max_length=200)
    uploaded_by = fields.ForeignKeyField("models.Staff", related_name="attachments", null=True,
                                         on_delete=fields.SET_NULL)

    class Meta:
        table = "attachment"


class ReferralOrder(Record):
    """An exam, lab test, treatment or prescription the referring doctor placed at the target HIS."""

    referral = fields.ForeignKeyField("models.Referral", related_name="orders", on_delete=fields.CASCADE)
    kind = fields.CharField(max_length=16)
    code = fields.CharField(max_length=32, default="")
    name = fields.CharField(max_length=100)
    detail = fields.JSONField(default=dict)
    his_order_id = fields.CharField(max_length=64, default="")
    state = fields.CharField(max_length=12, default="placed")
    ordered_by = fields.ForeignKeyField("models.Staff", related_name="orders", null=True, on_delete=fields.SET_NULL)

    class Meta:
        table = "referral_order"


class IdempotencyRecord(Model):
    """The first answer to a POST with an Idempotency-Key, replayed to every retry of it."""

    id = fields.BigIntField(primary_key=True)
    account_id = fields.IntField()
    key = fields.CharField(max_length=128)
    fingerprint = fields.CharField(max_length=64)
    status = fields.IntField(null=True)
    body = fields.TextField(default="")
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "idempotency_record"
        unique_together = (("account_id", "key"),)
