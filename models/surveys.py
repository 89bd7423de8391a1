"""Satisfaction surveys (the paper's Table 2): versioned questionnaires, one invitation per referral and
occasion, at most one answer per invitation. Also the institutions' pre-platform baselines (Table 1)."""

from __future__ import annotations

from tortoise import fields
from tortoise.models import Model

from models.base import Record

MAX_ITEMS = 8  # a questionnaire has at most this many 5-point items (s1 ... s8 on the answer)


class SurveyForm(Model):
    """One version of the questionnaire for patients or for doctors. Items are [{key, text}] in order, the
    first one is the overall satisfaction the satisfied share is taken from."""

    id = fields.IntField(primary_key=True)
    respondent = fields.CharField(max_length=8)  # patient | doctor
    version = fields.IntField()
    title = fields.CharField(max_length=100)
    intro = fields.CharField(max_length=300, default="")
    items = fields.JSONField(default=list)
    comment_prompt = fields.CharField(max_length=100, default="")
    created_by_staff_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "survey_form"
        unique_together = (("respondent", "version"),)


class SurveyInvitation(Record):
    """A person asked to rate one referral on one occasion. Where the referral went is copied so that the
    figures are one scan of this table."""

    form = fields.ForeignKeyField("models.SurveyForm", related_name="invitations", on_delete=fields.RESTRICT)
    referral = fields.ForeignKeyField("models.Referral", related_name="survey_invitations",
                                      on_delete=fields.CASCADE)
    occasion = fields.CharField(max_length=12)  # admitted | completed | referrer | receiver
    respondent = fields.CharField(max_length=8)  # patient | doctor
    patient_id = fields.IntField(null=True)
    staff_id = fields.IntField(null=True, db_index=True)
    direction = fields.CharField(max_length=8)
    source_institution_id = fields.IntField()
    target_institution_id = fields.IntField()
    source_department_id = fields.IntField(null=True)
    target_department_id = fields.IntField(null=True)
    invited_day = fields.DateField()  # China day
    invited_month = fields.IntField()  # yyyymm
    answered_at = fields.DatetimeField(null=True)
    # The answer's figures, written with answered_at in the answer's transaction, so that Table 2 over a few
    # days is one scan of this table (no join with the answers); the answer row stays the record.
    satisfied = fields.BooleanField(null=True)
    s1 = fields.SmallIntField(null=True)
    s2 = fields.SmallIntField(null=True)
    s3 = fields.SmallIntField(null=True)
    s4 = fields.SmallIntField(null=True)
    s5 = fields.SmallIntField(null=True)
    s6 = fields.SmallIntField(null=True)
    s7 = fields.SmallIntField(null=True)
    s8 = fields.SmallIntField(null=True)

    class Meta:
        table = "survey_invitation"
        unique_together = (("referral", "occasion"),)
        indexes = (("patient_id", "answered_at"), ("invited_day", "respondent"))


class SurveyResponse(Model):
    """The answer to one invitation: the score 1-5 of each item in the order of the form (s1 = overall)."""

    id = fields.BigIntField(primary_key=True)
    invitation = fields.OneToOneField("models.SurveyInvitation", related_name="response", on_delete=fields.CASCADE)
    form = fields.ForeignKeyField("models.SurveyForm", related_name="responses", on_delete=fields.RESTRICT)
    s1 = fields.SmallIntField(null=True)
    s2 = fields.SmallIntField(null=True)
    s3 = fields.SmallIntField(null=True)
    s4 = fields.SmallIntField(null=True)
    s5 = fields.SmallIntField(null=True)
    s6 = fields.SmallIntField(null=True)
    s7 = fields.SmallIntField(null=True)
    s8 = fields.SmallIntField(null=True)
    satisfied = fields.BooleanField()  # s1 is 满意 (4) or 非常满意 (5)
    comment = fields.CharField(max_length=500, default="")
    account_id = fields.IntField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "survey_response"


class Baseline(Model):
    """The waiting time of an institution before the platform (常规双向转诊 in the paper), one per direction."""

    id = fields.IntField(primary_key=True)
    institution = fields.ForeignKeyField("models.Institution", related_name="baselines", on_delete=fields.CASCADE)
    direction = fields.CharField(max_length=8)
    period = fields.CharField(max_length=50)
    mean_days = fields.FloatField()
    n = fields.IntField()
    source_note = fields.CharField(max_length=300, default="")
    updated_by_staff_id = fields.IntField(null=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "baseline"
        unique_together = (("institution", "direction"),)


class ReferralMonth(Model):
    """The summary's and Table 1's rollup: the submitted referrals of one China month and one place
    (direction, source and target institution and department, 0 for no department) in one status with one
    rejection reason, and the counters the summary adds up. Kept by each transition in its transaction
    (stats/rollup.py), rebuilt in bulk by seed-history, the figures of whole months are read from here."""

    id = fields.IntField(primary_key=True)
    submitted_month = fields.IntField()  # yyyymm
    direction = fields.CharField(max_length=8)
    source_institution_id = fields.IntField()
    target_institution_id = fields.IntField()
    source_department_id = fields.IntField()  # 0: none
    target_department_id = fields.IntField()  # 0: none
    status = fields.CharField(max_length=16)
    rejection_code = fields.CharField(max_length=32)
    n = fields.IntField(default=0)
    accepted = fields.IntField(default=0)
    redirected = fields.IntField(default=0)
    redirects = fields.IntField(default=0)
    decisions = fields.IntField(default=0)
    late_decisions = fields.IntField(default=0)
    late_referrals = fields.IntField(default=0)
    n_total = fields.IntField(default=0)  # referrals admitted, with their waits
    sum_total = fields.BigIntField(default=0)  # seconds

    class Meta:
        table = "referral_month"
        unique_together = (("submitted_month", "direction", "source_institution_id", "target_institution_id",
                            "source_department_id", "target_department_id", "status", "rejection_code"),)


class SurveyMonth(Model):
    """Table 2's rollup: the invitations of one China month and one place (respondent, questionnaire,
    direction, source and target institution and department, 0 for no department), with their answers'
    counts and sums. Kept in the same transaction as the invitation or answer that changes it
    (stats/rollup.py), rebuilt in bulk by seed-history, the figures of whole months are read from here."""

    id = fields.IntField(primary_key=True)
    invited_month = fields.IntField()  # yyyymm
    respondent = fields.CharField(max_length=8)
    form_id = fields.IntField()
    direction = fields.CharField(max_length=8)
    source_institution_id = fields.IntField()
    target_institution_id = fields.IntField()
    source_department_id = fields.IntField()  # 0: none
    target_department_id = fields.IntField()  # 0: none
    invitations = fields.IntField(default=0)
    answers = fields.IntField(default=0)
    satisfied = fields.IntField(default=0)
    sum1 = fields.IntField(default=0)
    sum2 = fields.IntField(default=0)
    sum3 = fields.IntField(default=0)
    sum4 = fields.IntField(default=0)
    sum5 = fields.IntField(default=0)
    sum6 = fields.IntField(default=0)
    sum7 = fields.IntField(default=0)
    sum8 = fields.IntField(default=0)
    n1 = fields.IntField(default=0)
    n2 = fields.IntField(default=0)
    n3 = fields.IntField(default=0)
    n4 = fields.IntField(default=0)
    n5 = fields.IntField(default=0)
    n6 = fields.IntField(default=0)
    n7 = fields.IntField(default=0)
    n8 = fields.IntField(default=0)

    class Meta:
        table = "survey_month"
        unique_together = (("invited_month", "respondent", "form_id", "direction", "source_institution_id",
                            "target_institution_id", "source_department_id", "target_department_id"),)
