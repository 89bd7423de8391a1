"""Tortoise ORM models, one module per aggregate. No business rules live here."""

from typing import TypeVar

from tortoise.models import Model

from models.accounts import (
    BindingRequest,
    BindingState,
    Invitation,
    PatientBinding,
    RefreshToken,
    Relation,
    WeChatAccount,
)
from models.audit import AuditEvent
from models.chat import (
    ChatAttachment,
    ChatMessage,
    CheckState,
    Conversation,
    ConversationKind,
    ConversationParticipant,
    MessageType,
)
from models.consults import (
    Consultation,
    ConsultationAttachment,
    ConsultationEvent,
    ConsultationMember,
    WardRound,
    WardRoundItem,
    WardRoundMember,
)
from models.institutions import Department, Institution, Level
from models.notifications import Delivery, InboxMessage, SubscriptionCredit
from models.outbox import JobState, OutboxJob
from models.people import Gender, Patient, PatientIdentifier, Role, Staff
from models.referrals import (
    Attachment,
    CapacityDay,
    HisSync,
    IdempotencyRecord,
    InstitutionPolicy,
    Referral,
    ReferralEvent,
    ReferralOrder,
    Urgency,
)
from models.slips import SigningKey, Slip, SlipState
from models.surveys import Baseline, ReferralMonth, SurveyForm, SurveyInvitation, SurveyMonth, SurveyResponse

M = TypeVar("M", bound=Model)


def joined(row: Model, relation: str, model: type[M]) -> M | None:
    """The related row a query loaded with select_related(relation), or None when it did not (Tortoise keeps it
    as `_<relation>`; reading the relation itself would start a query)."""
    value = row.__dict__.get(f"_{relation}")
    return value if isinstance(value, model) else None


MODEL_MODULES = ["models.institutions", "models.people", "models.accounts", "models.audit", "models.referrals",
                 "models.outbox", "models.notifications", "models.slips", "models.consults", "models.chat",
                 "models.surveys"]

__all__ = [
    "AuditEvent", "BindingRequest", "BindingState", "Department", "Gender", "Institution", "Invitation", "Level",
    "Patient",
    "PatientBinding", "PatientIdentifier", "RefreshToken", "Relation", "Role", "Staff",
    "WeChatAccount", "MODEL_MODULES", "joined", "Attachment", "CapacityDay", "HisSync", "IdempotencyRecord",
    "InstitutionPolicy", "JobState", "OutboxJob", "Referral", "ReferralEvent", "ReferralOrder", "Urgency",
    "Delivery", "InboxMessage", "SubscriptionCredit", "SigningKey", "Slip", "SlipState",
    "Consultation", "ConsultationAttachment", "ConsultationEvent", "ConsultationMember", "WardRound",
    "WardRoundItem", "WardRoundMember",
    "ChatAttachment", "ChatMessage", "CheckState", "Conversation", "ConversationKind", "ConversationParticipant",
    "MessageType",
    "Baseline", "ReferralMonth", "SurveyForm", "SurveyInvitation", "SurveyMonth", "SurveyResponse",
]
