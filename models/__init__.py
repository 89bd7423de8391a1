"""Tortoise ORM models, one module per aggregate. No business rules live here."""

from models.accounts import Invitation, PatientBinding, RefreshToken, Relation, WeChatAccount
from models.audit import AuditEvent
from models.institutions import Department, Institution, Level
from models.people import Gender, Patient, PatientIdentifier, Role, Staff

MODEL_MODULES = ["models.institutions", "models.people", "models.accounts", "models.audit"]

__all__ = [
    "AuditEvent", "Department", "Gender", "Institution", "Invitation", "Level", "Patient",
    "PatientBinding", "PatientIdentifier", "RefreshToken", "Relation", "Role", "Staff",
    "WeChatAccount", "MODEL_MODULES",
]
