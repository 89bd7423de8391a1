"""Staff members and patients. Identity numbers and phones are stored encrypted with a keyed hash
for exact lookup (see security.crypto); nothing here decrypts."""

from __future__ import annotations

from enum import StrEnum

from tortoise import fields

from models.base import Record, SoftDeleted


class Role(StrEnum):
    DOCTOR = "doctor"
    APPROVER = "approver"
    ADMISSION_CLERK = "admission_clerk"
    EXPERT = "expert"
    ADMIN = "admin"
    # The consortium office (医联体办公室) of the lead hospital: sees every institution's figures.
    CONSORTIUM_ADMIN = "consortium_admin"


ROLE_NAMES = {
    Role.DOCTOR: "医生",
    Role.APPROVER: "审批人员",
    Role.ADMISSION_CLERK: "住院处",
    Role.EXPERT: "专家",
    Role.ADMIN: "机构管理员",
    Role.CONSORTIUM_ADMIN: "医联体办公室",
}


class Staff(SoftDeleted):
    institution = fields.ForeignKeyField("models.Institution", related_name="staff",
                                         on_delete=fields.RESTRICT)
    department = fields.ForeignKeyField("models.Department", related_name="staff", null=True,
                                        on_delete=fields.SET_NULL)
    name = fields.CharField(max_length=50)
    title = fields.CharField(max_length=32, default="")
    roles = fields.JSONField(default=list)
    # The staff member's user id in the institution's own HIS (single sign-on from HIS).
    his_user_id = fields.CharField(max_length=64, null=True)
    phone_enc = fields.TextField(default="")
    phone_hash = fields.CharField(max_length=64, default="", db_index=True)
    is_active = fields.BooleanField(default=True)

    class Meta:
        table = "staff"
        unique_together = (("institution", "his_user_id"),)
        ordering = ["id"]

    def has_role(self, role: str) -> bool:
        return role in (self.roles or [])


class Gender(StrEnum):
    MALE = "male"
    FEMALE = "female"
    UNKNOWN = "unknown"


class Patient(SoftDeleted):
    name = fields.CharField(max_length=50)
    id_number_enc = fields.TextField()
    id_number_hash = fields.CharField(max_length=64, unique=True)
    gender = fields.CharEnumField(Gender, max_length=8, default=Gender.UNKNOWN)
    birth_date = fields.DateField(null=True)
    phone_enc = fields.TextField(default="")
    phone_hash = fields.CharField(max_length=64, default="", db_index=True)
    verified_at = fields.DatetimeField(null=True)

    identifiers: fields.ReverseRelation[PatientIdentifier]

    class Meta:
        table = "patient"
        ordering = ["id"]


class PatientIdentifier(Record):
    """The patient's number in one institution's HIS: MRN (病历号), card code (就诊卡号), ..."""

    patient = fields.ForeignKeyField("models.Patient", related_name="identifiers", on_delete=fields.CASCADE)
    institution = fields.ForeignKeyField("models.Institution", related_name="patient_identifiers",
                                         on_delete=fields.RESTRICT)
    system = fields.CharField(max_length=16)  # "mrn" | "card"
    value = fields.CharField(max_length=64)

    class Meta:
        table = "patient_identifier"
        unique_together = (("institution", "system", "value"),)
