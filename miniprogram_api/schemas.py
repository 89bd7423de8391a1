"""Response schemas shared by several route modules (they document the API; handlers build dicts)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    code: str = Field(description="UPPER_SNAKE 错误码")
    message: str = Field(description="给用户看的中文说明")
    detail: dict = Field(default_factory=dict)


class ErrorOut(BaseModel):
    error: ErrorBody


class InstitutionRef(BaseModel):
    id: str
    code: str
    name: str
    level: str


class DepartmentRef(BaseModel):
    id: str
    code: str
    name: str


class StaffOut(BaseModel):
    id: str
    name: str
    title: str = ""
    roles: list[str]
    role_names: list[str] = []
    institution: InstitutionRef
    department: DepartmentRef | None = None


class BoundPatientOut(BaseModel):
    id: str
    name: str = Field(description="脱敏姓名，如 张*明")
    relation: str
    relation_name: str
    gender: str
    birth_date: str | None = None
    id_number: str | None = Field(default=None, description="脱敏身份证号")
    phone: str | None = Field(default=None, description="脱敏手机号")


class AccountOut(BaseModel):
    id: str
    kind: str = Field(description="staff / patient / unbound")
    staff: StaffOut | None = None
    patients: list[BoundPatientOut] = []


class SessionOut(BaseModel):
    access_token: str
    token_type: str = "Bearer"
    expires_in: int
    refresh_token: str
    account: AccountOut
