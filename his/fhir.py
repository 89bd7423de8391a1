"""The FHIR R4 adapter: plain FHIR REST (JSON) over aiohttp to an institution's front-end processor.

- Every gateway call has one deadline (``timeout`` seconds, Settings.his_timeout) shared by the HTTP
  requests it makes; each request gets a ClientTimeout of what is left, so a stalled HIS is abandoned
  within the timeout and surfaces as HisTimeout.
- Only idempotent reads (GET) are retried, on connection errors and 5xx answers, while time is left.
  Writes are conditional creates (If-None-Exist on a business identifier), so a caller may safely retry
  a failed write itself.
- What is sent and what is received is validated with the ``fhir.resources`` models. The package ships
  R4B (4.3.0) and R5 but no plain R4; R4B is R4 with a handful of additions elsewhere, and the resources
  used here (Patient, Encounter, Condition, ServiceRequest, MedicationRequest, DiagnosticReport, Bundle,
  OperationOutcome) have the R4 shape in it (Encounter.class is a Coding, ServiceRequest.code a
  CodeableConcept, MedicationRequest.medicationCodeableConcept, ...).
- Each institution has its own ClientSession/connector, built from its base URL and PEM texts: a CA bundle
  to trust and a client certificate/key for mutual TLS. Sessions are cached per institution and rebuilt
  when its configuration changes.
- Logs name the institution, method, resource type and status, never query parameters or bodies (they
  carry ID numbers and names).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import ssl
import tempfile
import time
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.condition import Condition
from fhir.resources.R4B.diagnosticreport import DiagnosticReport
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.fhirresourcemodel import FHIRResourceModel
from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.observation import Observation
from fhir.resources.R4B.operationoutcome import OperationOutcome
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from his import profile
from his.auth import TOKEN_MODES, HisCredentials, retry_after_seconds
from his.gateway import (
    AdmissionChange,
    AdmissionRequest,
    ClinicalSummary,
    ConnectionStep,
    Diagnosis,
    HisAuthFailed,
    HisBusy,
    HisEndpoint,
    HisError,
    HisGateway,
    HisNotConfigured,
    HisNotFound,
    HisProtocolError,
    HisRejected,
    HisServerError,
    HisTimeout,
    HisUnreachable,
    IdentityMatch,
    InstitutionLike,
    Measurement,
    Order,
    PatientDemographics,
    PatientRecord,
    PlacedOrder,
    Report,
)
from kv.memory import MemoryKV

log = logging.getLogger("referral_cloud.his")

R = TypeVar("R", bound=FHIRResourceModel)

MAX_RESPONSE = 8 * 1024 * 1024
OPEN_ENCOUNTER_STATUSES = "in-progress,arrived,triaged,onleave"
RECENT_RESULTS = 5
_SAFE_CODE = re.compile(r"^[A-Za-z0-9._\-]{1,64}$")
CHINA = timezone(timedelta(hours=8))
# Answers that mean "busy, come back later" rather than "broken" (a rate limiter, a gateway in front of the HIS).
BUSY_STATUSES = (429, 502, 503, 504)
# Which status an admission Encounter may move to from the one it has (the platform only moves it forward).
ADMISSION_MOVES: dict[str, tuple[str, ...]] = {
    "planned": ("planned", "cancelled", "in-progress", "finished"),
    "cancelled": ("cancelled",),
    "in-progress": ("in-progress", "finished"),
    "finished": ("finished",),
}
ADMISSION_REFUSALS = {
    "cancelled": "医院信息系统（HIS）中该住院证已撤销，不能再修改",
    "in-progress": "患者已在医院信息系统（HIS）中办理入院，住院证不能再修改",
    "finished": "患者已在医院信息系统（HIS）中办理出院，住院证不能再修改",
}


def _fhir_time(moment: datetime) -> str:
    return moment.astimezone(CHINA).isoformat(timespec="seconds")


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        return self.end - time.monotonic()


def build_ssl_context(endpoint: HisEndpoint) -> ssl.SSLContext:
    """TLS context for one institution: its CA bundle (or the system's) and its client certificate."""
    try:
        context = ssl.create_default_context(cadata=endpoint.his_ca_bundle or None)
        if endpoint.his_client_cert:
            # load_cert_chain only reads files: write the PEM texts to a private directory just long enough.
            with tempfile.TemporaryDirectory(prefix="his-tls-") as directory:
                cert_path = _write_private(directory, "client.crt", endpoint.his_client_cert)
                key_path = (_write_private(directory, "client.key", endpoint.his_client_key)
                            if endpoint.his_client_key else None)
                context.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, ValueError, OSError):
        raise HisNotConfigured("该机构的 HIS 证书配置有误，请联系机构管理员", institution=endpoint.code) from None
    return context


def _write_private(directory: str, name: str, text: str) -> str:
    path = os.path.join(directory, name)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    return path


def _fingerprint(endpoint: HisEndpoint) -> str:
    h = hashlib.sha256()
    for part in (endpoint.his_base_url, endpoint.his_ca_bundle, endpoint.his_client_cert, endpoint.his_client_key):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _outcome_text(data: Any) -> str:
    """The human-readable text of an OperationOutcome (diagnostics / details.text of each issue)."""
    if not isinstance(data, dict) or data.get("resourceType") != "OperationOutcome":
        return ""
    try:
        outcome = OperationOutcome.model_validate(data)
    except ValidationError:
        return ""
    parts = []
    for issue in outcome.issue or []:
        text = issue.diagnostics or (issue.details.text if issue.details else None)
        if text:
            parts.append(str(text))
    return "；".join(parts)[:500]


def _coerce_datetime(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _token(system: str, value: str) -> str:
    return f"{system}|{value}"


def _identifier(resource: Any, system: str) -> str:
    for ident in getattr(resource, "identifier", None) or []:
        if ident.system == system and ident.value:
            return str(ident.value)
    return ""


def _extension(resource: Any, url: str) -> str:
    for ext in getattr(resource, "extension", None) or []:
        if ext.url == url and ext.valueString:
            return str(ext.valueString)
    return ""


def _codeable_text(concept: Any) -> str:
    if concept is None:
        return ""
    if concept.text:
        return str(concept.text)
    for coding in concept.coding or []:
        if coding.display:
            return str(coding.display)
    return ""


def _demographics(patient: Patient) -> PatientDemographics:
    name = ""
    for human in patient.name or []:
        name = human.text or (human.family or "") + "".join(human.given or [])
        if name:
            break
    phone = next((str(t.value) for t in patient.telecom or [] if t.system == "phone" and t.value), "")
    address = next((str(a.text) for a in patient.address or [] if a.text), "")
    gender = patient.gender if patient.gender in ("male", "female") else "unknown"
    birth = patient.birthDate if isinstance(patient.birthDate, date) else None
    return PatientDemographics(
        name=str(name), id_number=_identifier(patient, profile.ID_NUMBER_SYSTEM).upper(), gender=gender,
        birth_date=birth, phone=phone, address=address, mrn=_identifier(patient, profile.MRN_SYSTEM),
        card_code=_identifier(patient, profile.CARD_SYSTEM), his_id=str(patient.id or ""))


def _diagnoses(conditions: list[Condition]) -> list[Diagnosis]:
    result: list[Diagnosis] = []
    for condition in conditions:
        status = condition.clinicalStatus.coding[0].code if (
            condition.clinicalStatus and condition.clinicalStatus.coding) else "active"
        if status in ("inactive", "resolved", "remission"):
            continue
        coding = next((c for c in (condition.code.coding if condition.code else None) or []
                       if c.system in profile.ICD10_SYSTEMS and c.code), None)
        if coding is None:
            continue
        result.append(Diagnosis(code=str(coding.code), name=str(coding.display or _codeable_text(condition.code))))
    return result


def _report(report: DiagnosticReport) -> Report:
    order_id = ""
    for ref in report.basedOn or []:
        if ref.identifier is not None and ref.identifier.system == profile.ORDER_SYSTEM and ref.identifier.value:
            order_id = str(ref.identifier.value)
            break
    code = next((str(c.code) for c in (report.code.coding or []) if c.code), "") if report.code else ""
    category = ""
    for concept in report.category or []:
        for coding in concept.coding or []:
            if coding.code:
                category = str(coding.code)
                break
        if category:
            break
    return Report(his_id=str(report.id or ""), order_id=order_id, code=code, name=_codeable_text(report.code),
                  status=str(report.status), category=category,
                  issued=_coerce_datetime(report.issued or report.effectiveDateTime),
                  conclusion=str(report.conclusion or ""))


def _measurement(observation: Observation) -> Measurement:
    coding = next((c for c in (observation.code.coding or []) if c.code), None) if observation.code else None
    category = next((str(c.code) for concept in observation.category or [] for c in concept.coding or []
                     if c.code), "")
    value, unit = "", ""
    if observation.valueQuantity is not None:
        quantity = observation.valueQuantity
        value = f"{quantity.value:g}" if quantity.value is not None else ""
        unit = str(quantity.unit or quantity.code or "")
    elif observation.valueString is not None:
        value = str(observation.valueString)
    elif observation.valueCodeableConcept is not None:
        value = _codeable_text(observation.valueCodeableConcept)
    return Measurement(his_id=str(observation.id or ""), code=str(coding.code) if coding else "",
                       name=str(coding.display) if coding and coding.display else _codeable_text(observation.code),
                       value=value, unit=unit, category=category,
                       effective=_coerce_datetime(observation.effectiveDateTime or observation.issued))


def _validated(model: type[R], data: dict[str, Any]) -> R:
    """Validate an outgoing resource; an invalid one is our bug, never the HIS's."""
    return model.model_validate(data)


class FhirGateway(HisGateway):
    """HisGateway over FHIR R4 REST. ``institution`` arguments are HisEndpoints or anything InstitutionLike
    whose ``his_base_url`` is set (the GatewayRouter resolves empty URLs before calling)."""

    def __init__(self, *, timeout: float, read_attempts: int = 3, retry_backoff: float = 0.2,
                 credentials: HisCredentials | None = None) -> None:
        self.timeout = timeout
        # Without a shared store (unit tests, a one-off CLI run) tokens are cached in this process only.
        self.credentials = credentials or HisCredentials(MemoryKV(), lock_timeout=timeout + 5)
        self.read_attempts = max(1, read_attempts)
        self.retry_backoff = retry_backoff
        self._sessions: dict[str, tuple[str, aiohttp.ClientSession]] = {}
        self._retired: list[aiohttp.ClientSession] = []

    # ------------------------------------------------------------------------------- connections

    def _session(self, endpoint: HisEndpoint) -> aiohttp.ClientSession:
        fingerprint = _fingerprint(endpoint)
        cached = self._sessions.get(endpoint.code)
        if cached is not None and cached[0] == fingerprint and not cached[1].closed:
            return cached[1]
        if cached is not None:
            self._retired.append(cached[1])  # in-flight requests may still use it; closed with the gateway
        if endpoint.his_base_url.lower().startswith("https://"):
            connector = aiohttp.TCPConnector(ssl=build_ssl_context(endpoint), limit_per_host=20)
        else:
            connector = aiohttp.TCPConnector(limit_per_host=20)
        session = aiohttp.ClientSession(
            connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout),
            headers={"Accept": profile.FHIR_JSON, "User-Agent": "ReferralCloud-HIS-Gateway/1"})
        self._sessions[endpoint.code] = (fingerprint, session)
        return session

    async def close(self) -> None:
        sessions = [s for _, s in self._sessions.values()] + self._retired
        self._sessions.clear()
        self._retired.clear()
        for session in sessions:
            await session.close()

    # ---------------------------------------------------------------------------------- requests

    async def _request(self, endpoint: HisEndpoint, deadline: _Deadline, method: str, path: str, *,
                       params: list[tuple[str, str]] | None = None, body: FHIRResourceModel | None = None,
                       headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
        """One FHIR interaction: (status, JSON body, Location header). 4xx/5xx become HisErrors.

        A 401 with a token-based credential renews the token once and sends the request again (the server did
        not act on it, so this is safe for writes too). 429, and 502/503/504 once retries are used up, are
        HisBusy with the Retry-After the server asked for."""
        if not endpoint.his_base_url:
            raise HisNotConfigured(institution=endpoint.code)
        session = self._session(endpoint)
        url = f"{endpoint.his_base_url}/{path}"
        send_headers = dict(headers or {})
        data: bytes | None = None
        if body is not None:
            data = body.model_dump_json(exclude_none=True).encode()
            send_headers["Content-Type"] = f"{profile.FHIR_JSON}; charset=utf-8"
            send_headers.setdefault("Prefer", "return=representation")
        attempts = self.read_attempts if method == "GET" else 1
        resource_type = path.split("/", 1)[0]
        attempt = 0
        renewed = False
        while True:
            remaining = deadline.remaining()
            if remaining <= 0:
                raise HisTimeout(institution=endpoint.code)
            authorization = await self.credentials.authorization(endpoint, session, remaining)
            if authorization is not None:
                send_headers["Authorization"] = authorization
                remaining = deadline.remaining()
                if remaining <= 0:
                    raise HisTimeout(institution=endpoint.code)
            started = time.monotonic()
            try:
                async with asyncio.timeout(remaining):
                    async with session.request(method, url, params=params, data=data, headers=send_headers,
                                               timeout=aiohttp.ClientTimeout(total=remaining),
                                               allow_redirects=False) as response:
                        status = response.status
                        location = response.headers.get("Location", "")
                        retry_after = retry_after_seconds(response.headers.get("Retry-After"))
                        raw = await self._read(response, endpoint)
            except TimeoutError:
                log.warning("his %s %s %s timed out after %.0f ms", endpoint.code, method, resource_type,
                            (time.monotonic() - started) * 1000)
                raise HisTimeout(institution=endpoint.code) from None
            except aiohttp.ClientError as exc:
                log.warning("his %s %s %s failed: %s (attempt %d/%d)", endpoint.code, method, resource_type,
                            type(exc).__name__, attempt + 1, attempts)
                attempt += 1
                if attempt < attempts and await self._backoff(attempt - 1, deadline):
                    continue
                raise HisUnreachable(institution=endpoint.code) from None
            log.info("his %s %s %s -> %d in %.0f ms", endpoint.code, method, resource_type, status,
                     (time.monotonic() - started) * 1000)
            if status == 401:
                if authorization is not None and endpoint.auth in TOKEN_MODES and not renewed:
                    renewed = True
                    await self.credentials.renew(endpoint, session, max(deadline.remaining(), 0.1), authorization)
                    continue
                raise HisAuthFailed(institution=endpoint.code, detail={"http_status": status})
            if status >= 400:
                # Error bodies are read for their OperationOutcome if they have one; proxies send HTML.
                payload = self._json_or_empty(raw)
            else:
                payload = self._json(raw, endpoint) if raw else {}
            if status == 429 or (status in BUSY_STATUSES and retry_after is not None):
                log.warning("his %s %s %s throttled (%d), retry after %s s", endpoint.code, method, resource_type,
                            status, retry_after)
                raise HisBusy(institution=endpoint.code, http_status=status, retry_after=retry_after)
            if status >= 500:
                attempt += 1
                if attempt < attempts and await self._backoff(attempt - 1, deadline):
                    continue
                if status in BUSY_STATUSES:
                    raise HisBusy(institution=endpoint.code, http_status=status)
                raise HisServerError(institution=endpoint.code, detail={"http_status": status})
            if status == 404:
                raise HisNotFound(institution=endpoint.code)
            if status >= 400:
                raise HisRejected(_outcome_text(payload) or f"HTTP {status}", institution=endpoint.code,
                                  http_status=status)
            if status >= 300:
                raise HisProtocolError(institution=endpoint.code, detail={"http_status": status})
            return status, payload, location

    async def _backoff(self, attempt: int, deadline: _Deadline) -> bool:
        pause = self.retry_backoff * (2 ** attempt)
        if deadline.remaining() <= pause:
            return False
        await asyncio.sleep(pause)
        return True

    @staticmethod
    async def _read(response: aiohttp.ClientResponse, endpoint: HisEndpoint) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(64 * 1024):
            size += len(chunk)
            if size > MAX_RESPONSE:
                raise HisProtocolError("医院信息系统（HIS）返回的数据过大", institution=endpoint.code)
            chunks.append(chunk)
        return b"".join(chunks)

    @staticmethod
    def _json(raw: bytes, endpoint: HisEndpoint) -> dict[str, Any]:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise HisProtocolError(institution=endpoint.code) from None
        if not isinstance(data, dict):
            raise HisProtocolError(institution=endpoint.code)
        return data

    @staticmethod
    def _json_or_empty(raw: bytes) -> dict[str, Any]:
        try:
            data = json.loads(raw) if raw else {}
        except (ValueError, UnicodeDecodeError):
            return {}
        return data if isinstance(data, dict) else {}

    @staticmethod
    def _parse(model: type[R], data: dict[str, Any], endpoint: HisEndpoint) -> R:
        if data.get("resourceType") != model.get_resource_type():
            raise HisProtocolError(institution=endpoint.code)
        try:
            return model.model_validate(data)
        except ValidationError:
            raise HisProtocolError(institution=endpoint.code) from None

    async def _search(self, endpoint: HisEndpoint, deadline: _Deadline, model: type[R],
                      params: list[tuple[str, str]]) -> list[R]:
        _, data, _ = await self._request(endpoint, deadline, "GET", model.get_resource_type(), params=params)
        bundle = self._parse(Bundle, data, endpoint)
        found: list[R] = []
        for entry in bundle.entry or []:
            if entry.search is not None and entry.search.mode not in (None, "match"):
                continue
            resource = entry.resource
            if resource is None or resource.get_resource_type() != model.get_resource_type():
                raise HisProtocolError(institution=endpoint.code)
            found.append(resource)  # type: ignore[arg-type]
        return found

    async def _create(self, endpoint: HisEndpoint, deadline: _Deadline, resource: R,
                      if_none_exist: str) -> tuple[R, bool]:
        """Conditional create; returns the stored resource and whether it was new (201) or existing (200)."""
        resource_type = resource.get_resource_type()
        status, data, location = await self._request(endpoint, deadline, "POST", resource_type, body=resource,
                                                     headers={"If-None-Exist": if_none_exist})
        if not data and location:
            # The server ignored Prefer: return=representation; read what it stored.
            match = re.search(rf"{resource_type}/([A-Za-z0-9\-.]{{1,64}})", location)
            if match is None:
                raise HisProtocolError(institution=endpoint.code)
            _, data, _ = await self._request(endpoint, deadline, "GET", f"{resource_type}/{match.group(1)}")
        return self._parse(type(resource), data, endpoint), status == 201

    @staticmethod
    def _endpoint(institution: InstitutionLike) -> HisEndpoint:
        return institution if isinstance(institution, HisEndpoint) else HisEndpoint.of(institution)

    async def _add_identifier(self, endpoint: HisEndpoint, deadline: _Deadline, resource: Encounter,
                              system: str, value: str) -> None:
        data = json.loads(resource.model_dump_json(exclude_none=True))
        data["identifier"] = list(data.get("identifier") or []) + [{"use": "official", "system": system,
                                                                   "value": value}]
        data.pop("meta", None)
        headers = {"If-Match": f'W/"{resource.meta.versionId}"'} if resource.meta and resource.meta.versionId \
            else {}
        await self._request(endpoint, deadline, "PUT", f"Encounter/{resource.id}",
                            body=_validated(Encounter, data), headers=headers)

    async def _patient_by_mrn(self, endpoint: HisEndpoint, deadline: _Deadline, mrn: str) -> Patient:
        server_id = profile.parse_server_patient_key(mrn)
        if server_id is not None:
            # Profile "platform": the key is the server's logical id (see profile.server_patient_key).
            _, data, _ = await self._request(endpoint, deadline, "GET", f"Patient/{server_id}")
            return self._parse(Patient, data, endpoint)
        if not _SAFE_CODE.match(mrn):
            raise HisNotFound("医院信息系统（HIS）中未找到该患者", institution=endpoint.code)
        patients = await self._search(endpoint, deadline, Patient,
                                      [("identifier", _token(profile.MRN_SYSTEM, mrn))])
        if not patients:
            raise HisNotFound("医院信息系统（HIS）中未找到该患者", institution=endpoint.code)
        if len(patients) > 1:
            raise HisRejected("该病历号对应多名患者", institution=endpoint.code)
        return patients[0]

    # ------------------------------------------------------------------------------ the interface

    async def lookup_patient(self, institution: InstitutionLike, scanned_code: str) -> PatientRecord:
        endpoint = self._endpoint(institution)
        deadline = _Deadline(self.timeout)
        content = scanned_code.strip()
        if not _SAFE_CODE.match(content):
            raise HisNotFound("医院信息系统（HIS）中未找到该患者", institution=endpoint.code)
        # One search for every reading of the code; a card code or MRN wins over an ID number (issue 3's order).
        by_code = [_token(profile.CARD_SYSTEM, content), _token(profile.MRN_SYSTEM, content)]
        card = profile.parse_card_code(content)
        if card is not None and card[0] == endpoint.code:
            by_code.append(_token(profile.MRN_SYSTEM, card[1]))
        tokens = list(by_code)
        if profile.looks_like_id_number(content):
            tokens.append(_token(profile.ID_NUMBER_SYSTEM, content.upper()))
        patients = await self._search(endpoint, deadline, Patient, [("identifier", ",".join(tokens))])
        if len(patients) > 1:
            codes = {t.split("|", 1)[1] for t in by_code}
            patients = [p for p in patients if any(
                i.system in (profile.CARD_SYSTEM, profile.MRN_SYSTEM) and i.value in codes
                for i in p.identifier or [])] or patients
        if not patients:
            raise HisNotFound("医院信息系统（HIS）中未找到该患者", institution=endpoint.code)
        if len(patients) > 1:
            raise HisRejected("该号码对应多名患者，请改用病历号或身份证号", institution=endpoint.code)
        patient = patients[0]
        return PatientRecord(demographics=_demographics(patient),
                             summary=await self._summary(endpoint, deadline, str(patient.id)))

    async def _summary(self, endpoint: HisEndpoint, deadline: _Deadline, patient_id: str) -> ClinicalSummary:
        subject = f"Patient/{patient_id}"
        encounters = await self._search(endpoint, deadline, Encounter,
                                        [("patient", subject), ("status", OPEN_ENCOUNTER_STATUSES)])
        reports = await self._search(endpoint, deadline, DiagnosticReport,
                                     [("patient", subject), ("_sort", "-issued"), ("_count", str(RECENT_RESULTS))])
        recent = []
        for report in sorted((_report(r) for r in reports), key=lambda r: r.issued or datetime.min.replace(
                tzinfo=UTC), reverse=True)[:RECENT_RESULTS]:
            when = report.issued.astimezone(CHINA).strftime("%Y-%m-%d") if report.issued else ""
            recent.append(f"{when} {report.name}：{report.conclusion}".strip())
        if not encounters:
            return ClinicalSummary(recent_results=recent)
        encounter = max(encounters, key=lambda e: _coerce_datetime(e.period.start if e.period else None)
                        or datetime.min.replace(tzinfo=UTC))
        conditions = await self._search(endpoint, deadline, Condition, [("encounter", f"Encounter/{encounter.id}")])
        department = _codeable_text(encounter.serviceType) if encounter.serviceType else ""
        return ClinicalSummary(
            diagnoses=_diagnoses(conditions),
            chief_complaint=_extension(encounter, profile.EXT_CHIEF_COMPLAINT),
            present_illness=_extension(encounter, profile.EXT_PRESENT_ILLNESS),
            past_history=_extension(encounter, profile.EXT_PAST_HISTORY),
            allergies=_extension(encounter, profile.EXT_ALLERGIES),
            treatment=_extension(encounter, profile.EXT_TREATMENT),
            recent_results=recent, encounter_id=str(encounter.id), department=department)

    async def verify_identity(self, institution: InstitutionLike, id_number: str, name: str) -> IdentityMatch:
        endpoint = self._endpoint(institution)
        id_number = id_number.strip().upper()
        if not profile.looks_like_id_number(id_number):
            return IdentityMatch.UNKNOWN
        patients = await self._search(endpoint, _Deadline(self.timeout), Patient,
                                      [("identifier", _token(profile.ID_NUMBER_SYSTEM, id_number))])
        if not patients:
            return IdentityMatch.UNKNOWN
        wanted = "".join(name.split())
        if any("".join(_demographics(p).name.split()) == wanted for p in patients):
            return IdentityMatch.MATCH
        return IdentityMatch.MISMATCH

    def patient_resource(self, patient: PatientDemographics) -> Patient:
        """The Patient resource register_patient sends (validated)."""
        data: dict[str, Any] = {
            "resourceType": "Patient",
            "identifier": [{"use": "official", "system": profile.ID_NUMBER_SYSTEM,
                            "value": patient.id_number.strip().upper()}],
            "active": True,
            "name": [{"use": "official", "text": patient.name}],
            "gender": patient.gender,
        }
        if patient.birth_date:
            data["birthDate"] = patient.birth_date.isoformat()
        if patient.phone:
            data["telecom"] = [{"system": "phone", "value": patient.phone, "use": "mobile"}]
        if patient.address:
            data["address"] = [{"text": patient.address}]
        return _validated(Patient, data)

    async def register_patient(self, institution: InstitutionLike, patient: PatientDemographics) -> str:
        endpoint = self._endpoint(institution)
        if not profile.looks_like_id_number(patient.id_number):
            raise ValueError("register_patient needs the patient's 18-character ID number")
        resource = self.patient_resource(patient)
        stored, created = await self._create(
            endpoint, _Deadline(self.timeout), resource,
            "identifier=" + _token(profile.ID_NUMBER_SYSTEM, patient.id_number.strip().upper()))
        mrn = _identifier(stored, profile.MRN_SYSTEM)
        if not mrn and endpoint.identifiers == "platform":
            try:
                mrn = profile.server_patient_key(str(stored.id or ""))
            except ValueError:
                raise HisProtocolError("医院信息系统（HIS）返回的患者编号无法使用", institution=endpoint.code) from None
        if not mrn:
            raise HisProtocolError("医院信息系统（HIS）未返回病历号", institution=endpoint.code)
        log.info("his %s patient %s (%s)", endpoint.code, "registered" if created else "already registered",
                 stored.id)
        return mrn

    def admission_resource(self, patient_id: str, admission: AdmissionRequest, *,
                           issued_here: bool = False) -> Encounter:
        """The planned inpatient Encounter create_admission sends (validated); with `issued_here` it carries the
        certificate number the platform issues (profile "platform")."""
        identifiers = [{"use": "official", "system": profile.REFERRAL_SYSTEM, "value": admission.referral_code}]
        if issued_here:
            identifiers.append({"use": "official", "system": profile.CERTIFICATE_SYSTEM,
                                "value": profile.platform_certificate_number(admission.referral_code)})
        data: dict[str, Any] = {
            "resourceType": "Encounter",
            "identifier": identifiers,
            "status": "planned",
            "class": {"system": profile.ACT_CODE_SYSTEM, "code": "IMP", "display": "inpatient encounter"},
            "serviceType": {"coding": [{"system": profile.DEPARTMENT_SYSTEM, "code": admission.department_code,
                                        "display": admission.department_name}],
                            "text": admission.department_name},
            "subject": {"reference": f"Patient/{patient_id}"},
            "period": {"start": admission.planned_date.isoformat()},
            "reasonCode": [{"coding": [{"system": profile.ICD10_SYSTEM, "code": d.code, "display": d.name}],
                            "text": d.name} for d in admission.diagnoses],
            "hospitalization": {
                "origin": {"identifier": {"system": profile.INSTITUTION_SYSTEM,
                                          "value": admission.source_institution_code},
                           "display": admission.source_institution_name},
                "admitSource": {"coding": [{"system": profile.ADMIT_SOURCE_SYSTEM, "code": "hosp-trans",
                                            "display": "Transferred from other hospital"}]},
            },
        }
        if admission.referring_doctor:
            data["participant"] = [{
                "type": [{"coding": [{"system": profile.PARTICIPATION_SYSTEM, "code": "REF",
                                      "display": "referrer"}]}],
                "individual": {"display": admission.referring_doctor},
            }]
        if admission.ward or admission.bed:
            data["location"] = [{"location": {"display": " ".join(p for p in (admission.ward, admission.bed) if p)},
                                 "status": "planned"}]
        if admission.reason:
            data["extension"] = [{"url": profile.EXT_REFERRAL_REASON, "valueString": admission.reason}]
        if not admission.diagnoses:
            del data["reasonCode"]
        return _validated(Encounter, data)

    async def create_admission(self, institution: InstitutionLike, admission: AdmissionRequest) -> str:
        endpoint = self._endpoint(institution)
        deadline = _Deadline(self.timeout)
        patient = await self._patient_by_mrn(endpoint, deadline, admission.patient_mrn)
        issued_here = endpoint.identifiers == "platform"
        resource = self.admission_resource(str(patient.id), admission, issued_here=issued_here)
        stored, created = await self._create(endpoint, deadline, resource,
                                             "identifier=" + _token(profile.REFERRAL_SYSTEM, admission.referral_code))
        number = _identifier(stored, profile.CERTIFICATE_SYSTEM)
        if not number and issued_here:
            # An Encounter made before the profile was switched: write our number onto it.
            number = profile.platform_certificate_number(admission.referral_code)
            await self._add_identifier(endpoint, deadline, stored, profile.CERTIFICATE_SYSTEM, number)
        if not number:
            raise HisProtocolError("医院信息系统（HIS）未返回住院证号", institution=endpoint.code)
        log.info("his %s admission encounter %s (%s)", endpoint.code, stored.id,
                 "created" if created else "already existed")
        return number

    async def update_admission(self, institution: InstitutionLike, change: AdmissionChange) -> str | None:
        endpoint = self._endpoint(institution)
        deadline = _Deadline(self.timeout)
        found = await self._search(endpoint, deadline, Encounter,
                                   [("identifier", _token(profile.REFERRAL_SYSTEM, change.referral_code))])
        if not found:
            return None
        if len(found) > 1:
            raise HisProtocolError("医院信息系统（HIS）中同一转诊单有多张住院证", institution=endpoint.code)
        encounter = found[0]
        number = _identifier(encounter, profile.CERTIFICATE_SYSTEM)
        wanted = change.status
        if wanted not in ADMISSION_MOVES.get(str(encounter.status), ()):
            raise HisRejected(ADMISSION_REFUSALS.get(str(encounter.status), "住院证当前状态不允许此变更"),
                              institution=endpoint.code)
        data = json.loads(encounter.model_dump_json(exclude_none=True))
        data.pop("meta", None)
        resource = _validated(Encounter, self.admission_change(data, change))
        if resource.model_dump_json(exclude_none=True) == encounter.model_copy(update={"meta": None}) \
                .model_dump_json(exclude_none=True):
            return number  # already as wanted: a retry after a lost answer
        headers = {"If-Match": f'W/"{encounter.meta.versionId}"'} if encounter.meta and encounter.meta.versionId \
            else {}
        await self._request(endpoint, deadline, "PUT", f"Encounter/{encounter.id}", body=resource, headers=headers)
        log.info("his %s admission encounter %s %s", endpoint.code, encounter.id, wanted)
        return number

    @staticmethod
    def admission_change(data: dict[str, Any], change: AdmissionChange) -> dict[str, Any]:
        """The admission Encounter `data` (JSON) as `change` wants it."""
        data = dict(data, status=change.status)
        if change.status == "planned":
            if change.planned_date is not None:
                data["period"] = {"start": change.planned_date.isoformat()}
            if change.department_code:
                data["serviceType"] = {"coding": [{"system": profile.DEPARTMENT_SYSTEM, "code": change.department_code,
                                                   "display": change.department_name}],
                                       "text": change.department_name}
            place = " ".join(p for p in (change.ward, change.bed) if p)
            if place:
                data["location"] = [{"location": {"display": place}, "status": "planned"}]
            else:
                data.pop("location", None)
        elif change.status in ("in-progress", "finished"):
            period = dict(data.get("period") or {})
            if change.admitted_at is not None:
                period["start"] = _fhir_time(change.admitted_at)
            location_status = "active"
            if change.discharge is not None:
                period["end"] = _fhir_time(change.discharge.discharged_at)
                location_status = "completed"
                kept = [e for e in data.get("extension") or [] if e.get("url") not in profile.DISCHARGE_EXTENSIONS]
                summary = zip(profile.DISCHARGE_EXTENSIONS,
                              (change.discharge.diagnosis, change.discharge.treatment, change.discharge.results,
                               change.discharge.recommendations), strict=True)
                data["extension"] = kept + [{"url": url, "valueString": text} for url, text in summary if text]
            data["period"] = period
            if data.get("location"):
                data["location"] = [dict(item, status=location_status) for item in data["location"]]
        return data

    def order_resource(self, patient_id: str, order: Order) -> ServiceRequest | MedicationRequest:
        """The ServiceRequest or MedicationRequest place_order sends (validated)."""
        common: dict[str, Any] = {
            "identifier": [{"use": "official", "system": profile.ORDER_SYSTEM, "value": order.order_id}],
            "status": "active",
            "intent": "order",
            "subject": {"reference": f"Patient/{patient_id}"},
            "authoredOn": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        if order.requester:
            common["requester"] = {"display": order.requester}
        if order.note:
            common["note"] = [{"text": order.note}]
        concept = {"coding": [{"system": profile.SERVICE_CODE_SYSTEM, "code": order.code, "display": order.name}],
                   "text": order.name}
        if order.kind == "prescription":
            data = {"resourceType": "MedicationRequest", **common, "medicationCodeableConcept": concept}
            if order.referral_code:
                data["groupIdentifier"] = {"system": profile.REFERRAL_SYSTEM, "value": order.referral_code}
            if order.dosage:
                data["dosageInstruction"] = [{"text": order.dosage}]
            if order.quantity is not None:
                data["dispenseRequest"] = {"quantity": {"value": order.quantity, "unit": order.unit or None}}
            return _validated(MedicationRequest, data)
        if order.kind not in profile.ORDER_CATEGORIES:
            raise ValueError(f"unknown order kind {order.kind!r}")
        code, display = profile.ORDER_CATEGORIES[order.kind]
        data = {"resourceType": "ServiceRequest", **common, "code": concept,
                "category": [{"coding": [{"system": profile.SNOMED_SYSTEM, "code": code, "display": display}]}]}
        if order.referral_code:
            data["requisition"] = {"system": profile.REFERRAL_SYSTEM, "value": order.referral_code}
        return _validated(ServiceRequest, data)

    async def place_order(self, institution: InstitutionLike, order: Order) -> PlacedOrder:
        endpoint = self._endpoint(institution)
        deadline = _Deadline(self.timeout)
        patient = await self._patient_by_mrn(endpoint, deadline, order.patient_mrn)
        resource = self.order_resource(str(patient.id), order)
        stored, created = await self._create(endpoint, deadline, resource,
                                             "identifier=" + _token(profile.ORDER_SYSTEM, order.order_id))
        return PlacedOrder(order_id=order.order_id, his_id=str(stored.id), resource_type=stored.get_resource_type(),
                           created=created)

    async def list_reports(self, institution: InstitutionLike, patient_mrn: str,
                           since: datetime | None = None) -> list[Report]:
        endpoint = self._endpoint(institution)
        deadline = _Deadline(self.timeout)
        patient = await self._patient_by_mrn(endpoint, deadline, patient_mrn)
        params = [("patient", f"Patient/{patient.id}"), ("_sort", "-issued")]
        if since is not None:
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
            params.append(("issued", "ge" + since.isoformat(timespec="seconds")))
        reports = [_report(r) for r in await self._search(endpoint, deadline, DiagnosticReport, params)]
        oldest = datetime.min.replace(tzinfo=UTC)
        return sorted(reports, key=lambda r: r.issued or oldest, reverse=True)

    # --------------------------------------------------------------------------- connection test

    async def check_connection(self, institution: InstitutionLike) -> list[ConnectionStep]:
        """Network (DNS, TCP, TLS with the institution's certificates), credentials (a fresh token for OAuth2
        modes), ``GET metadata`` and one Patient search, in that order; after a failure the rest are skipped.
        Messages are for administrators, in Chinese; none carries a secret or a server's raw body."""
        endpoint = self._endpoint(institution)
        steps: list[ConnectionStep] = []
        plan = [("connect", "网络连接（DNS/TCP/TLS）", self._check_network),
                ("auth", "身份认证（访问凭证/令牌）", self._check_auth),
                ("metadata", "FHIR 能力声明（metadata）", self._check_metadata),
                ("search", "患者检索（Patient）", self._check_search)]
        failed = False
        for step, name, check in plan:
            if failed:
                steps.append(ConnectionStep(step, name, None, "因前一步失败而跳过"))
                continue
            try:
                message = await check(endpoint)
            except HisError as exc:
                failed = True
                steps.append(ConnectionStep(step, name, False, exc.message))
            else:
                steps.append(ConnectionStep(step, name, True, message))
        return steps

    async def _check_network(self, endpoint: HisEndpoint) -> str:
        parts = urlsplit(endpoint.his_base_url)
        host, secure = parts.hostname or "", parts.scheme.lower() == "https"
        port = parts.port or (443 if secure else 80)
        context = build_ssl_context(endpoint) if secure else None
        try:
            async with asyncio.timeout(self.timeout):
                _, writer = await asyncio.open_connection(host, port, ssl=context,
                                                          server_hostname=host if secure else None)
        except TimeoutError:
            raise HisTimeout(f"连接 {host}:{port} 超时", institution=endpoint.code) from None
        except socket.gaierror:
            raise HisUnreachable(f"无法解析域名 {host}", institution=endpoint.code) from None
        except ssl.SSLCertVerificationError as exc:
            raise HisUnreachable(f"TLS 证书校验失败：{exc.verify_message or '服务器证书不受信任'}",
                                 institution=endpoint.code) from None
        except ssl.SSLError:
            raise HisUnreachable("TLS 握手失败（检查 CA 证书与客户端证书）", institution=endpoint.code) from None
        except ConnectionRefusedError:
            raise HisUnreachable(f"{host}:{port} 拒绝连接", institution=endpoint.code) from None
        except OSError:
            raise HisUnreachable(f"无法连接 {host}:{port}", institution=endpoint.code) from None
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
        return f"已连接 {host}:{port}" + ("，TLS 证书校验通过" if secure else "（未加密，仅限医院内网）")

    async def _check_auth(self, endpoint: HisEndpoint) -> str:
        if endpoint.auth == "none":
            return "未配置访问凭证（仅依赖网络隔离或双向 TLS）"
        if endpoint.auth in TOKEN_MODES:
            _, expires_in = await self.credentials.fetch_token(endpoint, self._session(endpoint), self.timeout)
            return f"已从令牌端点获取访问令牌（有效期 {int(expires_in)} 秒）"
        await self.credentials.authorization(endpoint, self._session(endpoint), self.timeout)
        return "已配置静态凭证，由下一步验证"

    async def _check_metadata(self, endpoint: HisEndpoint) -> str:
        _, data, _ = await self._request(endpoint, _Deadline(self.timeout), "GET", "metadata")
        if data.get("resourceType") != "CapabilityStatement":
            raise HisProtocolError("metadata 未返回 CapabilityStatement", institution=endpoint.code)
        version = str(data.get("fhirVersion") or "")
        if not version.startswith("4.0"):
            raise HisProtocolError(f"服务器的 FHIR 版本为 {version or '未知'}，本平台需要 R4（4.0.x）",
                                   institution=endpoint.code)
        software = data.get("software") if isinstance(data.get("software"), dict) else {}
        name = str(software.get("name") or "")[:60]
        return f"FHIR {version}" + (f"，服务器软件：{name}" if name else "")

    async def _check_search(self, endpoint: HisEndpoint) -> str:
        # An identifier nobody has: proves search by identifier works without reading anyone's record.
        await self._search(endpoint, _Deadline(self.timeout), Patient,
                           [("identifier", _token(profile.ID_NUMBER_SYSTEM, "000000000000000000")), ("_count", "1")])
        return "按身份证号检索患者正常"
    async def list_observations(self, institution: InstitutionLike, patient_mrn: str) -> list[Measurement]:
        endpoint = self._endpoint(institution)
        deadline = _Deadline(self.timeout)
        patient = await self._patient_by_mrn(endpoint, deadline, patient_mrn)
        params = [("patient", f"Patient/{patient.id}"), ("_sort", "-date")]
        found = [_measurement(o) for o in await self._search(endpoint, deadline, Observation, params)]
        oldest = datetime.min.replace(tzinfo=UTC)
        return sorted(found, key=lambda m: m.effective or oldest, reverse=True)
