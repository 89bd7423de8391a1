"""Cloud consultations (云会诊): the request, its members, its hash-chained timeline; remote ward rounds with their
participants, advice items and follow-up tasks. No business rules live here."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.base import Record, TimelineEvent


class Consultation(Record):
    code = fields.CharField(max_length=20, unique=True)
    version = fields.IntField(default=1)
    status = fields.CharField(max_length=16, default="requested", db_index=True)
    urgency = fields.CharField(max_length=12, default="routine")
    patient = fields.ForeignKeyField("models.Patient", related_name="consultations", on_delete=fields.RESTRICT)
    patient_name = fields.CharField(max_length=50, default="")
    requester = fields.ForeignKeyField("models.Staff", related_name="consultations_requested",
                                       on_delete=fields.RESTRICT)
    requester_institution = fields.ForeignKeyField("models.Institution", related_name="consultations_out",
                                                   on_delete=fields.RESTRICT)
    target_institution = fields.ForeignKeyField("models.Institution", related_name="consultations_in",
                                                on_delete=fields.RESTRICT)
    target_department = fields.ForeignKeyField("models.Department", related_name="consultations_in",
                                               on_delete=fields.RESTRICT)
    # A named expert; None: the department's pool (its active experts).
    addressed_expert = fields.ForeignKeyField("models.Staff", related_name="consultations_addressed", null=True,
                                              on_delete=fields.SET_NULL)
    # The expert who accepted (exactly one: set by the version-conditional UPDATE of the accept).
    expert = fields.ForeignKeyField("models.Staff", related_name="consultations_accepted", null=True,
                                    on_delete=fields.SET_NULL)
    question = fields.CharField(max_length=1000, default="")
    clinical = fields.JSONField(default=dict)  # the referral's clinical shape (HIS pre-fill)
    # {recommendation, advice, suggested_department_id, suggested_department}
    opinion = fields.JSONField(default=dict)
    decline_code = fields.CharField(max_length=32, default="")
    decline_text = fields.CharField(max_length=500, default="")
    stage_started_at = fields.DatetimeField(null=True)
    accepted_at = fields.DatetimeField(null=True)
    closed_at = fields.DatetimeField(null=True)
    chain_head = fields.CharField(max_length=80, default="")

    class Meta:
        table = "consultation"
        ordering = ["id"]


class ConsultationEvent(TimelineEvent):
    consultation = fields.ForeignKeyField("models.Consultation", related_name="events", on_delete=fields.RESTRICT)

    class Meta:
        table = "consultation_event"
        unique_together = (("consultation", "seq"),)
        ordering = ["consultation_id", "seq"]


class ConsultationMember(Model):
    """An expert invited to an accepted consultation (MDT): reads it and joins its conversation."""

    id = fields.IntField(primary_key=True)
    consultation = fields.ForeignKeyField("models.Consultation", related_name="members", on_delete=fields.CASCADE)
    staff = fields.ForeignKeyField("models.Staff", related_name="consultation_memberships",
                                   on_delete=fields.CASCADE)
    invited_by = fields.ForeignKeyField("models.Staff", related_name="consultation_invitations", null=True,
                                        on_delete=fields.SET_NULL)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "consultation_member"
        unique_together = (("consultation", "staff"),)


class ConsultationAttachment(Model):
    """A referral attachment's bytes shared with a consultation, or a file uploaded to it."""

    id = fields.IntField(primary_key=True)
    consultation = fields.ForeignKeyField("models.Consultation", related_name="attachments",
                                          on_delete=fields.CASCADE)
    filename = fields.CharField(max_length=200)
    content_type = fields.CharField(max_length=64)
    size = fields.IntField()
    sha256 = fields.CharField(max_length=64)
    storage_key = fields.CharField(max_length=200)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "consultation_attachment"


class WardRound(Record):
    code = fields.CharField(max_length=20, unique=True)
    version = fields.IntField(default=1)
    status = fields.CharField(max_length=16, default="scheduled", db_index=True)
    referral = fields.ForeignKeyField("models.Referral", related_name="ward_rounds", on_delete=fields.RESTRICT)
    patient = fields.ForeignKeyField("models.Patient", related_name="ward_rounds", on_delete=fields.RESTRICT)
    # Where the patient lies (whose HIS the round reads) and the other side of the referral.
    local_institution = fields.ForeignKeyField("models.Institution", related_name="ward_rounds_local",
                                               on_delete=fields.RESTRICT)
    remote_institution = fields.ForeignKeyField("models.Institution", related_name="ward_rounds_remote",
                                                on_delete=fields.RESTRICT)
    organiser = fields.ForeignKeyField("models.Staff", related_name="ward_rounds_organised",
                                       on_delete=fields.RESTRICT)
    scheduled_at = fields.DatetimeField(db_index=True)
    started_at = fields.DatetimeField(null=True)
    completed_at = fields.DatetimeField(null=True)
    findings = fields.TextField(default="")
    # Recurrence: every `repeat_days` days until `repeat_until` or the patient's discharge (referral closed).
    repeat_days = fields.IntField(null=True)
    repeat_until = fields.DateField(null=True)
    previous = fields.ForeignKeyField("models.WardRound", related_name="following", null=True,
                                      on_delete=fields.SET_NULL)
    cancel_reason = fields.CharField(max_length=500, default="")

    class Meta:
        table = "ward_round"
        ordering = ["id"]


class WardRoundMember(Model):
    id = fields.IntField(primary_key=True)
    round = fields.ForeignKeyField("models.WardRound", related_name="members", on_delete=fields.CASCADE)
    staff = fields.ForeignKeyField("models.Staff", related_name="ward_round_memberships", on_delete=fields.CASCADE)

    class Meta:
        table = "ward_round_member"
        unique_together = (("round", "staff"),)


class WardRoundItem(Model):
    """A plan change (advice the local doctor acknowledges) or a follow-up task with a due date, numbered per
    round from 1."""

    id = fields.IntField(primary_key=True)
    round = fields.ForeignKeyField("models.WardRound", related_name="items", on_delete=fields.CASCADE)
    kind = fields.CharField(max_length=8)  # advice | task
    n = fields.IntField()
    text = fields.CharField(max_length=500)
    due_date = fields.DateField(null=True)
    author = fields.ForeignKeyField("models.Staff", related_name="ward_round_items", null=True,
                                    on_delete=fields.SET_NULL)
    acknowledged_by = fields.ForeignKeyField("models.Staff", related_name="ward_round_acks", null=True,
                                             on_delete=fields.SET_NULL)
    acknowledged_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "ward_round_item"
        unique_together = (("round", "kind", "n"),)
