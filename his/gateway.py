"""The HIS gateway: one async interface the platform codes against, the plain dataclasses that cross it,
its typed errors, and the router that picks the implementation for an institution by the scheme of its
configured front-end processor URL (http/https → the FHIR R4 adapter in his.fhir).

Nothing here touches the database: an institution is anything with the connection attributes of
``models.Institution`` (see ``InstitutionLike``).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from enum import StrEnum
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

from errors import DomainError

# --------------------------------------------------------------------------------------------- errors


class HisError(DomainError):
    """Base of every failure talking to a HIS. Subclasses say what went wrong; all carry the institution."""

    status = 503
    code = "HIS_ERROR"
    message = "医院信息系统（HIS）调用失败，请稍后再试"

    def __init__(self, message: str | None = None, *, institution: str = "",
                 detail: dict[str, Any] | None = None) -> None:
        self.institution = institution
        detail = dict(detail or {})
        if institution:
            detail.setdefault("institution", institution)
        super().__init__(message, detail=detail)


class HisUnreachable(HisError):
    code = "HIS_UNREACHABLE"
    message = "无法连接医院信息系统（HIS），请稍后再试"


class HisServerError(HisUnreachable):
    """The HIS answered with a 5xx: reachable, but not working."""

    code = "HIS_SERVER_ERROR"
    message = "医院信息系统（HIS）内部错误，请稍后再试"


class HisBusy(HisServerError):
    """The HIS (or a gateway in front of it) is throttling or briefly unavailable: 429, 502, 503, 504.
    ``retry_after`` is the wait it asked for (Retry-After), in seconds, when it named one."""

    code = "HIS_BUSY"
    message = "医院信息系统（HIS）繁忙，请稍后再试"

    def __init__(self, message: str | None = None, *, institution: str = "", http_status: int | None = None,
                 retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        detail: dict[str, Any] = {}
        if http_status is not None:
            detail["http_status"] = http_status
        if retry_after is not None:
            detail["retry_after"] = round(retry_after, 1)
        super().__init__(message, institution=institution, detail=detail)


class HisAuthFailed(HisUnreachable):
    """The HIS or its token endpoint refused our credentials (401 after one refresh, or no token). Retried
    like an outage: an administrator fixing the connection settings brings the waiting jobs through."""

    code = "HIS_AUTH_FAILED"
    message = "医院信息系统（HIS）拒绝了本平台的访问凭证，请联系机构管理员检查 HIS 连接配置"


class HisNotConfigured(HisUnreachable):
    code = "HIS_NOT_CONFIGURED"
    message = "该机构尚未配置 HIS 前置机地址，请联系机构管理员"


class HisTimeout(HisError):
    code = "HIS_TIMEOUT"
    message = "医院信息系统（HIS）响应超时，请稍后再试"


class HisRejected(HisError):
    """The HIS refused what we sent; ``outcome`` is the text of its OperationOutcome."""

    status = 422
    code = "HIS_REJECTED"
    message = "医院信息系统（HIS）拒绝了该请求"

    def __init__(self, outcome: str = "", *, institution: str = "", http_status: int | None = None) -> None:
        self.outcome = outcome
        self.http_status = http_status
        message = f"医院信息系统（HIS）拒绝了该请求：{outcome}" if outcome else None
        detail: dict[str, Any] = {"outcome": outcome}
        if http_status is not None:
            detail["http_status"] = http_status
        super().__init__(message, institution=institution, detail=detail)


class HisNotFound(HisError):
    status = 404
    code = "HIS_NOT_FOUND"
    message = "医院信息系统（HIS）中未找到该记录"


class HisProtocolError(HisError):
    """The HIS answered with something that is not valid FHIR R4 (or not what we asked for)."""

    status = 502
    code = "HIS_PROTOCOL_ERROR"
    message = "医院信息系统（HIS）返回的数据不符合 FHIR R4 规范"


# ------------------------------------------------------------------------------------ boundary types


class InstitutionLike(Protocol):
    """What the gateway needs of an institution (``models.Institution`` has all of it)."""

    code: str
    his_base_url: str
    his_ca_bundle: str
    his_client_cert: str
    his_client_key: str


@dataclass(frozen=True)
class HisEndpoint:
    """An institution's resolved HIS connection: base URL, PEM texts for (mutual) TLS, how to authenticate
    (``secret`` decrypted: a bearer token, Basic password, client secret or SMART private key PEM; never in
    repr) and who assigns business identifiers (``identifiers``, see his.profile)."""

    code: str
    his_base_url: str
    his_ca_bundle: str = ""
    his_client_cert: str = ""
    his_client_key: str = field(default="", repr=False)
    auth: str = "none"
    token_url: str = ""
    client_id: str = ""
    scope: str = ""
    key_id: str = ""
    secret: str = field(default="", repr=False)
    identifiers: str = "his"

    @classmethod
    def of(cls, institution: InstitutionLike, *, base_url: str | None = None, secret: str = "",
           client_key: str | None = None) -> HisEndpoint:
        return cls(code=institution.code,
                   his_base_url=(base_url if base_url is not None else institution.his_base_url).rstrip("/"),
                   his_ca_bundle=institution.his_ca_bundle or "",
                   his_client_cert=institution.his_client_cert or "",
                   his_client_key=(client_key if client_key is not None else institution.his_client_key) or "",
                   auth=getattr(institution, "his_auth", "none") or "none",
                   token_url=getattr(institution, "his_token_url", "") or "",
                   client_id=getattr(institution, "his_client_id", "") or "",
                   scope=getattr(institution, "his_scope", "") or "",
                   key_id=getattr(institution, "his_key_id", "") or "",
                   secret=secret,
                   identifiers=getattr(institution, "his_identifiers", "his") or "his")


Gender = Literal["male", "female", "unknown"]


@dataclass(frozen=True)
class Diagnosis:
    code: str  # ICD-10, e.g. "I63.9"
    name: str  # e.g. "脑梗死"


@dataclass
class PatientDemographics:
    name: str
    id_number: str = ""
    gender: Gender = "unknown"
    birth_date: date | None = None
    phone: str = ""
    address: str = ""
    mrn: str = ""  # 病历号 at this HIS
    card_code: str = ""  # 就诊卡号 printed on the patient's card
    his_id: str = ""  # the HIS's logical id of the Patient resource


@dataclass
class ClinicalSummary:
    """The pre-fill of a referral: the open encounter's diagnoses and admission-note narrative."""

    diagnoses: list[Diagnosis] = field(default_factory=list)
    chief_complaint: str = ""  # 主诉
    present_illness: str = ""  # 现病史
    past_history: str = ""  # 既往史
    allergies: str = ""  # 过敏史
    treatment: str = ""  # 治疗经过
    recent_results: list[str] = field(default_factory=list)  # 辅助检查结果, newest first
    encounter_id: str = ""  # the HIS's id of the encounter this came from ("" when none is open)
    department: str = ""


@dataclass
class PatientRecord:
    demographics: PatientDemographics
    summary: ClinicalSummary


class IdentityMatch(StrEnum):
    MATCH = "match"
    MISMATCH = "mismatch"
    UNKNOWN = "unknown"


@dataclass
class AdmissionRequest:
    """What the target HIS needs to issue the electronic admission certificate (电子住院证)."""

    referral_code: str  # the platform's referral code: a retry with the same code never makes a second one
    patient_mrn: str  # the patient's MRN at the target (from register_patient)
    department_code: str
    department_name: str
    planned_date: date
    diagnoses: list[Diagnosis]
    source_institution_code: str
    source_institution_name: str
    referring_doctor: str = ""
    reason: str = ""  # 转诊原因
    ward: str = ""
    bed: str = ""


@dataclass
class Discharge:
    """The target's return summary (出院/回转小结) as the HIS records it when the referral is completed."""

    discharged_at: datetime
    diagnosis: str
    treatment: str = ""
    results: str = ""
    recommendations: str = ""


EncounterStatus = Literal["planned", "cancelled", "in-progress", "finished"]


@dataclass
class AdmissionChange:
    """A change to an admission certificate already issued, found by the referral code: moved to another date
    (and department, ward, bed), cancelled (the referral was cancelled, or the patient never came), the patient
    admitted (`admitted_at`: the Encounter becomes in-progress) or discharged (`discharge`: finished, with the
    return summary)."""

    referral_code: str
    cancelled: bool = False
    planned_date: date | None = None
    department_code: str = ""
    department_name: str = ""
    ward: str = ""
    bed: str = ""
    admitted_at: datetime | None = None
    discharge: Discharge | None = None

    @property
    def status(self) -> EncounterStatus:
        """The Encounter.status the change asks for."""
        if self.cancelled:
            return "cancelled"
        if self.discharge is not None:
            return "finished"
        return "in-progress" if self.admitted_at is not None else "planned"


OrderKind = Literal["exam", "lab", "treatment", "prescription"]


@dataclass
class Order:
    """An order placed at the target HIS: exam/lab/treatment → ServiceRequest, prescription →
    MedicationRequest. ``order_id`` is the platform's id and the conditional-create key."""

    order_id: str
    patient_mrn: str
    kind: OrderKind
    code: str  # the target's service/drug code
    name: str
    requester: str = ""
    note: str = ""
    referral_code: str = ""
    dosage: str = ""  # prescriptions: 用法用量
    quantity: float | None = None  # prescriptions: 数量
    unit: str = ""


@dataclass(frozen=True)
class PlacedOrder:
    order_id: str
    his_id: str
    resource_type: str  # "ServiceRequest" | "MedicationRequest"
    created: bool  # False when the HIS already had this order (a retry)


@dataclass
class Report:
    his_id: str
    order_id: str  # the platform's order id it answers ("" for reports not ordered through the platform)
    code: str
    name: str
    status: str
    category: str  # "LAB", "RAD", ...
    issued: datetime | None
    conclusion: str


@dataclass(frozen=True)
class ConnectionStep:
    """One step of a connection test: ``ok`` None means skipped (an earlier step failed)."""

    step: str  # config, connect, auth, metadata, search
    name: str  # what users read, e.g. "网络连接（DNS/TCP/TLS）"
    ok: bool | None
    message: str
@dataclass
class Measurement:
    """One FHIR Observation (a vital sign, a lab value): what a remote ward round shows of it."""

    his_id: str
    code: str  # LOINC, e.g. "8310-5"
    name: str  # e.g. "体温"
    value: str  # as shown, e.g. "37.2"
    unit: str
    category: str  # "vital-signs", "laboratory", ...
    effective: datetime | None


# ------------------------------------------------------------------------------------- the interface


class HisGateway(abc.ABC):
    """What the platform asks of a member's HIS. Every call has a deadline; failures are ``HisError``s."""

    @abc.abstractmethod
    async def lookup_patient(self, institution: InstitutionLike, scanned_code: str) -> PatientRecord:
        """Resolve a scanned MRN, card code or ID number; raises HisNotFound."""

    @abc.abstractmethod
    async def verify_identity(self, institution: InstitutionLike, id_number: str, name: str) -> IdentityMatch:
        """Check a real name against the HIS master patient index."""

    @abc.abstractmethod
    async def register_patient(self, institution: InstitutionLike, patient: PatientDemographics) -> str:
        """Register the patient (conditional create on the ID number) and return the MRN there."""

    @abc.abstractmethod
    async def create_admission(self, institution: InstitutionLike, admission: AdmissionRequest) -> str:
        """Create the planned inpatient Encounter and return the admission certificate number."""

    @abc.abstractmethod
    async def update_admission(self, institution: InstitutionLike, change: AdmissionChange) -> str | None:
        """Bring the planned Encounter in line with `change`; returns its certificate number, or None when the
        HIS has no admission for the referral (nothing to change)."""

    @abc.abstractmethod
    async def place_order(self, institution: InstitutionLike, order: Order) -> PlacedOrder:
        """Place an exam/lab/treatment (ServiceRequest) or prescription (MedicationRequest)."""

    @abc.abstractmethod
    async def list_reports(self, institution: InstitutionLike, patient_mrn: str,
                           since: datetime | None = None) -> list[Report]:
        """The patient's DiagnosticReports issued at or after ``since``, newest first."""

    @abc.abstractmethod
    async def check_connection(self, institution: InstitutionLike) -> list[ConnectionStep]:
        """Try the connection step by step (network, credentials, ``metadata``, one Patient search)."""

    @abc.abstractmethod
    async def list_observations(self, institution: InstitutionLike, patient_mrn: str) -> list[Measurement]:
        """The patient's Observations, newest first."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release connections."""


class GatewayRouter(HisGateway):
    """Chooses the implementation per institution by its front-end processor URL's scheme.

    ``fallback_base_url(code)`` gives the URL for institutions without one (the embedded simulator);
    when it returns None such institutions raise HisNotConfigured.
    """

    def __init__(self, adapters: dict[str, HisGateway],
                 fallback_base_url: Callable[[str], str | None] | None = None,
                 endpoint_of: Callable[[InstitutionLike], HisEndpoint] = HisEndpoint.of) -> None:
        self.adapters = adapters
        self.fallback_base_url = fallback_base_url
        # Builds the endpoint with its stored secrets decrypted (his.connection.endpoint_of with the app's cipher).
        self.endpoint_of = endpoint_of

    def route(self, institution: InstitutionLike) -> tuple[HisGateway, HisEndpoint]:
        base = (institution.his_base_url or "").strip()
        endpoint = institution if isinstance(institution, HisEndpoint) else self.endpoint_of(institution)
        if not base and self.fallback_base_url is not None:
            base = self.fallback_base_url(institution.code) or ""
            endpoint = replace(endpoint, his_base_url=base.rstrip("/"))
        if not base:
            raise HisNotConfigured(institution=institution.code)
        adapter = self.adapters.get(urlsplit(base).scheme.lower())
        if adapter is None:
            raise HisNotConfigured("该机构的 HIS 前置机地址使用了不支持的协议，请联系机构管理员",
                                   institution=institution.code)
        return adapter, endpoint

    async def lookup_patient(self, institution: InstitutionLike, scanned_code: str) -> PatientRecord:
        adapter, endpoint = self.route(institution)
        return await adapter.lookup_patient(endpoint, scanned_code)

    async def verify_identity(self, institution: InstitutionLike, id_number: str, name: str) -> IdentityMatch:
        adapter, endpoint = self.route(institution)
        return await adapter.verify_identity(endpoint, id_number, name)

    async def register_patient(self, institution: InstitutionLike, patient: PatientDemographics) -> str:
        adapter, endpoint = self.route(institution)
        return await adapter.register_patient(endpoint, patient)

    async def create_admission(self, institution: InstitutionLike, admission: AdmissionRequest) -> str:
        adapter, endpoint = self.route(institution)
        return await adapter.create_admission(endpoint, admission)

    async def update_admission(self, institution: InstitutionLike, change: AdmissionChange) -> str | None:
        adapter, endpoint = self.route(institution)
        return await adapter.update_admission(endpoint, change)

    async def place_order(self, institution: InstitutionLike, order: Order) -> PlacedOrder:
        adapter, endpoint = self.route(institution)
        return await adapter.place_order(endpoint, order)

    async def list_reports(self, institution: InstitutionLike, patient_mrn: str,
                           since: datetime | None = None) -> list[Report]:
        adapter, endpoint = self.route(institution)
        return await adapter.list_reports(endpoint, patient_mrn, since)

    async def check_connection(self, institution: InstitutionLike) -> list[ConnectionStep]:
        adapter, endpoint = self.route(institution)
        return await adapter.check_connection(endpoint)
    async def list_observations(self, institution: InstitutionLike, patient_mrn: str) -> list[Measurement]:
        adapter, endpoint = self.route(institution)
        return await adapter.list_observations(endpoint, patient_mrn)

    async def close(self) -> None:
        for adapter in {id(a): a for a in self.adapters.values()}.values():
            await adapter.close()
