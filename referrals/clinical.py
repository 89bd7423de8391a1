"""The clinical content of a referral: the paper's 双向转诊单 and the WS 445 转诊记录 (DOMAIN §1)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, Field, field_validator

ICD10 = re.compile(r"^[A-Z][0-9]{2}(\.[0-9A-Z]{1,4})?$")

REJECTION_REASONS = {
    "no_beds": "床位不足",
    "not_indicated": "不符合转诊指征",
    "incomplete": "病历资料不全",
    "beyond_capability": "超出本院诊疗能力",
    "patient_declined": "患者或家属不同意",
    "other": "其他原因",
}


class Diagnosis(BaseModel):
    code: str = Field(max_length=16, description="ICD-10 编码，如 I63.9")
    name: str = Field(min_length=1, max_length=100, description="诊断名称")

    @field_validator("code")
    @classmethod
    def _icd10(cls, value: str) -> str:
        value = value.strip().upper()
        if not ICD10.match(value):
            raise ValueError("ICD-10 编码格式不正确")
        return value


class Clinical(BaseModel):
    diagnoses: list[Diagnosis] = Field(default_factory=list, max_length=20)
    chief_complaint: str = Field(default="", max_length=500, description="主诉")
    present_illness: str = Field(default="", max_length=2000, description="现病史")
    past_history: str = Field(default="", max_length=2000, description="既往史")
    allergies: str = Field(default="", max_length=500, description="过敏史")
    treatment: str = Field(default="", max_length=2000, description="治疗经过")
    recent_results: str = Field(default="", max_length=2000, description="主要检查结果")
    referral_reason: str = Field(default="", max_length=100, description="转诊原因（≤100 字）")
    precautions: str = Field(default="", max_length=500, description="注意事项")

    def missing_for_submit(self) -> list[str]:
        """What a submitted referral must carry (WS 445: diagnosis and reason are required)."""
        missing = []
        if not self.diagnoses:
            missing.append("diagnoses")
        if not self.referral_reason.strip():
            missing.append("referral_reason")
        if not self.chief_complaint.strip():
            missing.append("chief_complaint")
        return missing


Urgency = Literal["routine", "urgent", "emergency"]


class ReturnSummary(BaseModel):
    """What goes back to the referrer when the target completes the referral (the closed loop)."""

    diagnosis: str = Field(min_length=1, max_length=500, description="出院诊断")
    treatment: str = Field(default="", max_length=2000, description="治疗经过")
    results: str = Field(default="", max_length=2000, description="主要检查结果")
    recommendations: str = Field(default="", max_length=2000, description="下一步治疗方案及康复建议")
    discharge_date: str | None = Field(default=None, max_length=10)
    mrn: str = Field(default="", max_length=32, description="住院病案号")
