"""One simulated HIS: its FHIR resources in memory (written through to a state file when it has one), search,
conditional create, and the lab turnaround."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from his import profile
from his.simulator import seed
from standin_state import DurableState

RESOURCE_TYPES = ("Patient", "Encounter", "Condition", "ServiceRequest", "MedicationRequest", "DiagnosticReport",
                  "Observation")
CHINA = timezone(timedelta(hours=8))


class FhirProblem(Exception):
    """Answered as an OperationOutcome with this HTTP status."""

    def __init__(self, status: int, code: str, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def iso(moment: datetime) -> str:
    return moment.astimezone(CHINA).isoformat(timespec="seconds")


# ------------------------------------------------------------------------------ search parameters

def _identifiers(resource: dict) -> list[tuple[str | None, str | None]]:
    return [(i.get("system"), i.get("value")) for i in resource.get("identifier") or []]


def _reference(field: str) -> Callable[[dict], list[str]]:
    def values(resource: dict) -> list[str]:
        ref = resource.get(field)
        refs = ref if isinstance(ref, list) else [ref] if ref else []
        return [r.get("reference", "") for r in refs if isinstance(r, dict)]
    return values


def _code(getter: Callable[[dict], Any]) -> Callable[[dict], list[tuple[str | None, str | None]]]:
    def values(resource: dict) -> list[tuple[str | None, str | None]]:
        value = getter(resource)
        if isinstance(value, str):
            return [(None, value)]
        if isinstance(value, dict):
            return [(value.get("system"), value.get("code"))]
        return []
    return values


def _categories(resource: dict) -> list[tuple[str | None, str | None]]:
    return [(c.get("system"), c.get("code")) for concept in resource.get("category") or []
            for c in concept.get("coding") or []]


TOKEN, REFERENCE, DATE = "token", "reference", "date"

SEARCH_PARAMETERS: dict[str, dict[str, tuple[str, Callable[[dict], Any]]]] = {
    "Patient": {"identifier": (TOKEN, _identifiers)},
    "Encounter": {"identifier": (TOKEN, _identifiers), "patient": (REFERENCE, _reference("subject")),
                  "subject": (REFERENCE, _reference("subject")),
                  "status": (TOKEN, _code(lambda r: r.get("status"))),
                  "class": (TOKEN, _code(lambda r: r.get("class")))},
    "Condition": {"identifier": (TOKEN, _identifiers), "patient": (REFERENCE, _reference("subject")),
                  "subject": (REFERENCE, _reference("subject")), "encounter": (REFERENCE, _reference("encounter"))},
    "ServiceRequest": {"identifier": (TOKEN, _identifiers), "patient": (REFERENCE, _reference("subject")),
                       "subject": (REFERENCE, _reference("subject")),
                       "status": (TOKEN, _code(lambda r: r.get("status")))},
    "MedicationRequest": {"identifier": (TOKEN, _identifiers), "patient": (REFERENCE, _reference("subject")),
                          "subject": (REFERENCE, _reference("subject")),
                          "status": (TOKEN, _code(lambda r: r.get("status")))},
    "DiagnosticReport": {"identifier": (TOKEN, _identifiers), "patient": (REFERENCE, _reference("subject")),
                         "subject": (REFERENCE, _reference("subject")),
                         "based-on": (REFERENCE, _reference("basedOn")),
                         "status": (TOKEN, _code(lambda r: r.get("status"))),
                         "category": (TOKEN, _categories),
                         "issued": (DATE, lambda r: r.get("issued"))},
    "Observation": {"identifier": (TOKEN, _identifiers), "patient": (REFERENCE, _reference("subject")),
                    "subject": (REFERENCE, _reference("subject")), "category": (TOKEN, _categories),
                    "code": (TOKEN, _code(lambda r: r.get("code"))),
                    "date": (DATE, lambda r: r.get("effectiveDateTime"))},
}
SORTABLE = {"DiagnosticReport": {"issued": "issued"}, "Encounter": {"date": "period.start"},
            "Observation": {"date": "effectiveDateTime"}}
RESULT_PARAMETERS = {"_count", "_sort", "_format"}


def _token_matches(query: str, values: Iterable[tuple[str | None, str | None]]) -> bool:
    if "|" in query:
        system, _, value = query.partition("|")
        for s, v in values:
            if system == "" and s is None and v == value:
                return True
            if system and s == system and (value == "" or v == value):
                return True
        return False
    return any(v == query for _, v in values)


def _parse_moment(text: str) -> datetime:
    try:
        if len(text) == 10:
            d = date.fromisoformat(text)
            return datetime(d.year, d.month, d.day, tzinfo=CHINA)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise FhirProblem(400, "invalid", f"无法解析的日期参数：{text}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=CHINA)


def _date_matches(query: str, value: Any) -> bool:
    if not value:
        return False
    prefix = query[:2] if query[:2] in ("eq", "ne", "gt", "lt", "ge", "le") else "eq"
    wanted = _parse_moment(query[2:] if query[:2] == prefix else query)
    actual = _parse_moment(str(value))
    return {"eq": actual == wanted, "ne": actual != wanted, "gt": actual > wanted, "lt": actual < wanted,
            "ge": actual >= wanted, "le": actual <= wanted}[prefix]


def _reference_matches(query: str, refs: list[str], target_type: str | None) -> bool:
    wanted = query if "/" in query or target_type is None else f"{target_type}/{query}"
    return any(ref == wanted or ref.endswith("/" + wanted) for ref in refs)


def _dig(resource: dict, path: str) -> Any:
    value: Any = resource
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


# ----------------------------------------------------------------------------------------- store

@dataclass
class _Hidden:
    visible_at: float  # time.monotonic() when a simulated lab result becomes available


# Identifier systems whose values this HIS hands out; an update never changes them.
HIS_ASSIGNED = (profile.MRN_SYSTEM, profile.CARD_SYSTEM, profile.CERTIFICATE_SYSTEM)


class HisStore:
    """The resources of one institution's HIS. Single-threaded (one event loop): a conditional create is
    atomic because nothing awaits between the check and the insert."""

    def __init__(self, code: str, *, report_delay: Callable[[], float], assigns_identifiers: bool = True,
                 durable: DurableState | None = None) -> None:
        self.code = code
        self.report_delay = report_delay
        # False: the "generic FHIR server" personality, which hands out no MRN, card code or certificate number.
        self.assigns_identifiers = assigns_identifiers
        self.resources: dict[str, dict[str, dict]] = {t: {} for t in RESOURCE_TYPES}
        self._next_id = {t: 1 for t in RESOURCE_TYPES}
        self._next_mrn = seed.FIRST_REGISTERED_MRN
        self._next_certificate = 1
        self._hidden: dict[tuple[str, str], _Hidden] = {}
        self.created_at = now_utc()
        self._durable: DurableState | None = None
        if durable is not None and durable.has(code):
            self._restore(durable)
        else:
            self._seed()
            if durable is not None:
                with durable.batch():
                    for resource_type, resources in self.resources.items():
                        for resource in resources.values():
                            durable.put(code, resource_type, resource["id"], resource)
                    self._save_counters(durable)
        self._durable = durable

    # ---------------------------------------------------------------------------- basic storage

    def _store(self, resource_type: str, resource: dict) -> dict:
        rid = str(self._next_id[resource_type])
        self._next_id[resource_type] += 1
        resource = dict(resource, id=rid, meta={"versionId": "1", "lastUpdated": iso(now_utc())})
        self.resources[resource_type][rid] = resource
        self._persist(resource_type, resource)
        return resource

    def _persist(self, resource_type: str, resource: dict) -> None:
        """Write a new or changed resource, with the counters, through to the state file (when there is one)."""
        if self._durable is not None:
            with self._durable.batch():
                self._durable.put(self.code, resource_type, resource["id"], resource)
                self._save_counters(self._durable)

    def _save_counters(self, durable: DurableState) -> None:
        durable.put(self.code, "_counters", "counters", {
            "next_id": self._next_id, "next_mrn": self._next_mrn, "next_certificate": self._next_certificate,
            "created_at": self.created_at.isoformat()})

    def _restore(self, durable: DurableState) -> None:
        """Everything this HIS held when it last ran; simulated lab results still pending are available now."""
        counters = durable.load(self.code, "_counters")["counters"]
        self._next_id.update(counters["next_id"])
        self._next_mrn = counters["next_mrn"]
        self._next_certificate = counters["next_certificate"]
        self.created_at = datetime.fromisoformat(counters["created_at"])
        for resource_type in RESOURCE_TYPES:
            stored = durable.load(self.code, resource_type)
            self.resources[resource_type] = {rid: stored[rid] for rid in sorted(stored, key=int)}

    def _visible(self, resource_type: str, rid: str) -> bool:
        hidden = self._hidden.get((resource_type, rid))
        if hidden is None:
            return True
        if hidden.visible_at <= time.monotonic():
            del self._hidden[(resource_type, rid)]
            return True
        return False

    def read(self, resource_type: str, rid: str) -> dict:
        resource = self.resources.get(resource_type, {}).get(rid)
        if resource is None or not self._visible(resource_type, rid):
            raise FhirProblem(404, "not-found", f"{resource_type}/{rid} 不存在")
        return resource

    def all(self, resource_type: str) -> list[dict]:
        return [r for rid, r in self.resources[resource_type].items() if self._visible(resource_type, rid)]

    # ------------------------------------------------------------------------------------ search

    def search(self, resource_type: str, params: list[tuple[str, str]]) -> list[dict]:
        definitions = SEARCH_PARAMETERS[resource_type]
        count: int | None = None
        sort: str | None = None
        filters: list[tuple[str, str]] = []
        for name, value in params:
            if name == "_count":
                if not value.isdigit():
                    raise FhirProblem(400, "invalid", "_count 应为非负整数")
                count = int(value)
            elif name == "_sort":
                sort = value
            elif name == "_format":
                continue
            elif name in definitions:
                filters.append((name, value))
            else:
                raise FhirProblem(400, "not-supported", f"不支持的搜索参数：{resource_type}?{name}")
        found = []
        for resource in self.all(resource_type):
            if all(self._matches(resource_type, resource, name, value) for name, value in filters):
                found.append(resource)
        if sort:
            descending = sort.startswith("-")
            key = SORTABLE.get(resource_type, {}).get(sort.lstrip("-"))
            if key is None:
                raise FhirProblem(400, "not-supported", f"不支持的排序参数：{sort}")
            found.sort(key=lambda r: _parse_moment(str(_dig(r, key) or "1900-01-01")), reverse=descending)
        return found[:count] if count is not None else found

    def _matches(self, resource_type: str, resource: dict, name: str, value: str) -> bool:
        kind, getter = SEARCH_PARAMETERS[resource_type][name]
        alternatives = value.split(",")  # a comma is OR within one parameter
        if kind == TOKEN:
            values = getter(resource)
            return any(_token_matches(a, values) for a in alternatives)
        if kind == REFERENCE:
            target = "Patient" if name in ("patient", "subject") else (
                "Encounter" if name == "encounter" else None)
            return any(_reference_matches(a, getter(resource), target) for a in alternatives)
        return any(_date_matches(a, getter(resource)) for a in alternatives)

    # ---------------------------------------------------------------------------------- creation

    def create(self, resource_type: str, body: dict, if_none_exist: str | None) -> tuple[dict, bool]:
        """Validate and store; with If-None-Exist return the single existing match instead (False)."""
        if resource_type not in RESOURCE_TYPES:
            raise FhirProblem(404, "not-supported", f"不支持的资源类型：{resource_type}")
        if body.get("resourceType") != resource_type:
            raise FhirProblem(400, "invalid", f"请求体的 resourceType 应为 {resource_type}")
        body = {k: v for k, v in body.items() if k not in ("id", "meta")}
        try:
            get_fhir_model_class(resource_type).model_validate(body)
        except ValidationError as exc:
            fields = ", ".join(sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()}))
            raise FhirProblem(400, "invalid", f"{resource_type} 不符合 FHIR R4 规范：{fields}") from None
        if if_none_exist:
            matches = self.search(resource_type, parse_qsl(if_none_exist, keep_blank_values=True))
            if len(matches) > 1:
                raise FhirProblem(412, "duplicate", "条件创建匹配到多条记录")
            if matches:
                return matches[0], False
        handler = getattr(self, f"_before_create_{resource_type}", None)
        if handler is not None:
            body = handler(body)
        stored = self._store(resource_type, body)
        after = getattr(self, f"_after_create_{resource_type}", None)
        if after is not None:
            after(stored)
        return stored, True

    def update(self, resource_type: str, rid: str, body: dict, if_match: str | None) -> dict:
        """FHIR update (PUT): replace a stored resource, optionally only at the version `If-Match` names.
        Identifiers this HIS assigned itself (MRN, card, certificate number) are kept whatever the body says."""
        current = self.read(resource_type, rid)
        version = current["meta"]["versionId"]
        if if_match is not None and if_match.strip() not in (f'W/"{version}"', f'"{version}"', version):
            raise FhirProblem(412, "conflict", f"{resource_type}/{rid} 已被修改（当前版本 {version}），请重新读取")
        if body.get("resourceType") != resource_type or body.get("id", rid) != rid:
            raise FhirProblem(400, "invalid", f"请求体应为 {resource_type}/{rid}")
        body = {k: v for k, v in body.items() if k != "meta"} | {"id": rid}
        try:
            get_fhir_model_class(resource_type).model_validate(body)
        except ValidationError as exc:
            fields = ", ".join(sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()}))
            raise FhirProblem(400, "invalid", f"{resource_type} 不符合 FHIR R4 规范：{fields}") from None
        assigned = [i for i in current.get("identifier") or [] if i.get("system") in HIS_ASSIGNED
                    and self.assigns_identifiers]
        kept = [i for i in body.get("identifier") or [] if i.get("system") not in HIS_ASSIGNED
                or not self.assigns_identifiers]
        if assigned or "identifier" in body:
            body["identifier"] = kept + assigned
        stored = dict(body, meta={"versionId": str(int(version) + 1), "lastUpdated": iso(now_utc())})
        self.resources[resource_type][rid] = stored
        self._persist(resource_type, stored)
        return stored

    def _require_patient(self, resource: dict) -> str:
        ref = (resource.get("subject") or {}).get("reference", "")
        rid = ref.split("/", 1)[1] if ref.startswith("Patient/") else ""
        if rid not in self.resources["Patient"]:
            raise FhirProblem(422, "processing", "subject 应引用本院已登记的患者（Patient）")
        return rid

    def _before_create_Patient(self, body: dict) -> dict:
        if not any(n.get("text") or n.get("family") for n in body.get("name") or []):
            raise FhirProblem(422, "required", "患者姓名不能为空")
        if not self.assigns_identifiers:
            return body
        ids = [i for i in body.get("identifier") or [] if i.get("system") not in (profile.MRN_SYSTEM,
                                                                                  profile.CARD_SYSTEM)]
        mrn = str(self._next_mrn)
        self._next_mrn += 1
        ids += [{"use": "usual", "system": profile.MRN_SYSTEM, "value": mrn},
                {"use": "secondary", "system": profile.CARD_SYSTEM, "value": profile.card_code(self.code, mrn)}]
        return dict(body, identifier=ids)

    def _before_create_Encounter(self, body: dict) -> dict:
        self._require_patient(body)
        if self.assigns_identifiers and body.get("status") == "planned" and (body.get("class") or {}).get(
                "code") == "IMP":
            number = f"ZY{now_utc().astimezone(CHINA):%Y%m%d}{self._next_certificate:04d}"
            self._next_certificate += 1
            ids = list(body.get("identifier") or [])
            ids.append({"use": "official", "system": profile.CERTIFICATE_SYSTEM, "value": number})
            body = dict(body, identifier=ids)
        return body

    def _before_create_Condition(self, body: dict) -> dict:
        self._require_patient(body)
        return body

    def _before_create_ServiceRequest(self, body: dict) -> dict:
        self._require_patient(body)
        return body

    def _before_create_MedicationRequest(self, body: dict) -> dict:
        self._require_patient(body)
        return body

    def _before_create_DiagnosticReport(self, body: dict) -> dict:
        self._require_patient(body)
        return body

    def _after_create_ServiceRequest(self, order: dict) -> None:
        """The simulated lab turnaround: a report for the order becomes visible after the delay."""
        delay = max(0.0, self.report_delay())
        kind = next((k for k, (code, _) in profile.ORDER_CATEGORIES.items()
                     for _, c in _categories(order) if c == code), "lab")
        category, display = profile.REPORT_CATEGORIES[kind]
        order_identifier = next((i for i in order.get("identifier") or []
                                 if i.get("system") == profile.ORDER_SYSTEM), None)
        based_on: dict[str, Any] = {"reference": f"ServiceRequest/{order['id']}"}
        if order_identifier:
            based_on["identifier"] = {"system": profile.ORDER_SYSTEM, "value": order_identifier["value"]}
        name = (order.get("code") or {}).get("text") or "检查检验"
        report = self._store("DiagnosticReport", {
            "resourceType": "DiagnosticReport",
            "basedOn": [based_on],
            "status": "final",
            "category": [{"coding": [{"system": profile.REPORT_CATEGORY_SYSTEM, "code": category,
                                      "display": display}]}],
            "code": order.get("code") or {"text": name},
            "subject": order["subject"],
            "effectiveDateTime": iso(now_utc()),
            "issued": iso(now_utc() + timedelta(seconds=delay)),
            "performer": [{"display": f"{self.code} 检验科" if kind == "lab" else f"{self.code} 医技科室"}],
            "conclusion": simulated_result(kind, name),
        })
        if delay > 0:
            self._hidden[("DiagnosticReport", report["id"])] = _Hidden(time.monotonic() + delay)

    # ------------------------------------------------------------------------------------- seed

    def _seed(self) -> None:
        now = self.created_at
        for index, person in enumerate(seed.demo_patients(self.code, now.astimezone(CHINA).date())):
            patient = self._store("Patient", {
                "resourceType": "Patient",
                "identifier": [
                    {"use": "official", "system": profile.ID_NUMBER_SYSTEM, "value": person.id_number},
                    {"use": "usual", "system": profile.MRN_SYSTEM, "value": person.mrn},
                    {"use": "secondary", "system": profile.CARD_SYSTEM,
                     "value": profile.card_code(self.code, person.mrn)},
                ],
                "active": True,
                "name": [{"use": "official", "text": person.name, "family": person.name[0],
                          "given": [person.name[1:]]}],
                "telecom": [{"system": "phone", "value": person.phone, "use": "mobile"}],
                "gender": person.gender,
                "birthDate": person.birth_date.isoformat(),
                "address": [{"text": person.address}],
            })
            scenario = person.scenario
            if scenario is None:
                continue
            subject = {"reference": f"Patient/{patient['id']}", "display": person.name}
            start = seed.encounter_start(now, index)
            encounter = self._store("Encounter", {
                "resourceType": "Encounter",
                "identifier": [{"system": f"urn:referral-cloud:his:{self.code}:visit",
                                "value": f"{start.astimezone(CHINA):%Y%m%d}{index + 1:04d}"}],
                "status": "in-progress",
                "class": {"system": profile.ACT_CODE_SYSTEM, "code": "IMP", "display": "inpatient encounter"},
                "serviceType": {"text": scenario.department},
                "subject": subject,
                "period": {"start": iso(start)},
                "extension": [
                    {"url": profile.EXT_CHIEF_COMPLAINT, "valueString": scenario.chief_complaint},
                    {"url": profile.EXT_PRESENT_ILLNESS, "valueString": scenario.present_illness},
                    {"url": profile.EXT_PAST_HISTORY, "valueString": scenario.past_history},
                    {"url": profile.EXT_ALLERGIES, "valueString": scenario.allergies},
                    {"url": profile.EXT_TREATMENT, "valueString": scenario.treatment},
                ],
            })
            for rank, (code, name) in enumerate(scenario.diagnoses, start=1):
                self._store("Condition", {
                    "resourceType": "Condition",
                    "clinicalStatus": {"coding": [{"system": profile.CONDITION_CLINICAL_SYSTEM, "code": "active"}]},
                    "category": [{"coding": [{"system": profile.CONDITION_CATEGORY_SYSTEM,
                                              "code": "encounter-diagnosis", "display": "Encounter Diagnosis"}]}],
                    "code": {"coding": [{"system": profile.ICD10_SYSTEM, "code": code, "display": name}],
                             "text": name},
                    "subject": subject,
                    "encounter": {"reference": f"Encounter/{encounter['id']}"},
                    "recordedDate": iso(start),
                    "note": [{"text": "主要诊断" if rank == 1 else "其他诊断"}],
                })
            self._seed_vital_signs(subject, encounter, start, index)
            for offset, (category, code, name, conclusion) in enumerate(scenario.results, start=1):
                issued = start + timedelta(hours=offset)
                self._store("DiagnosticReport", {
                    "resourceType": "DiagnosticReport",
                    "status": "final",
                    "category": [{"coding": [{"system": profile.REPORT_CATEGORY_SYSTEM, "code": category}]}],
                    "code": {"coding": [{"system": profile.SERVICE_CODE_SYSTEM, "code": code, "display": name}],
                             "text": name},
                    "subject": subject,
                    "encounter": {"reference": f"Encounter/{encounter['id']}"},
                    "effectiveDateTime": iso(issued - timedelta(minutes=40)),
                    "issued": iso(issued),
                    "conclusion": conclusion,
                })

    def _seed_vital_signs(self, subject: dict, encounter: dict, start: datetime, index: int) -> None:
        """Vital signs on admission and at the latest ward round (the round shows the newest of each)."""
        for rounds, taken in enumerate((start + timedelta(minutes=20), start + timedelta(hours=2)), start=1):
            for code, name, unit, value in seed.vital_signs(self.code, index, rounds):
                self._store("Observation", {
                    "resourceType": "Observation",
                    "status": "final",
                    "category": [{"coding": [{"system": profile.OBSERVATION_CATEGORY_SYSTEM, "code": "vital-signs",
                                              "display": "Vital Signs"}]}],
                    "code": {"coding": [{"system": profile.LOINC_SYSTEM, "code": code, "display": name}],
                             "text": name},
                    "subject": subject,
                    "encounter": {"reference": f"Encounter/{encounter['id']}"},
                    "effectiveDateTime": iso(taken),
                    "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org",
                                      "code": unit},
                })

    def demo_listing(self) -> list[dict[str, Any]]:
        """Every patient with MRN, card code, name and ID number (synthetic data, for demos and tests)."""
        rows = []
        for patient in self.all("Patient"):
            ids = {s: v for s, v in _identifiers(patient)}
            ref = f"Patient/{patient['id']}"
            open_encounters = [e for e in self.all("Encounter") if (e.get("subject") or {}).get("reference") == ref
                               and e.get("status") == "in-progress"]
            diagnoses = []
            for encounter in open_encounters:
                for condition in self.all("Condition"):
                    if (condition.get("encounter") or {}).get("reference") == f"Encounter/{encounter['id']}":
                        coding = condition["code"]["coding"][0]
                        diagnoses.append({"code": coding["code"], "name": coding.get("display", "")})
            rows.append({
                "id": patient["id"], "mrn": ids.get(profile.MRN_SYSTEM, ""),
                "card_code": ids.get(profile.CARD_SYSTEM, ""), "name": patient["name"][0].get("text", ""),
                "id_number": ids.get(profile.ID_NUMBER_SYSTEM, ""), "gender": patient.get("gender", "unknown"),
                "birth_date": patient.get("birthDate"), "open_encounter": bool(open_encounters),
                "diagnoses": diagnoses,
            })
        return rows


_RESULTS = [
    ("血常规", "白细胞 6.8×10^9/L，中性粒细胞 62%，血红蛋白 132 g/L，血小板 228×10^9/L，各项指标在参考范围内。"),
    ("肝功能", "ALT 28 U/L，AST 24 U/L，总胆红素 12.6 μmol/L，白蛋白 41 g/L，未见异常。"),
    ("肾功能", "肌酐 78 μmol/L，尿素 5.2 mmol/L，尿酸 336 μmol/L，未见异常。"),
    ("血糖", "空腹血糖 6.9 mmol/L（↑，参考值3.9–6.1 mmol/L）。"),
    ("糖化", "HbA1c 7.4%（↑，参考值4.0–6.0%）。"),
    ("肌钙蛋白", "cTnI 0.02 ng/mL（参考值<0.04 ng/mL），未见升高。"),
    ("凝血", "PT 12.1 s，APTT 31.5 s，INR 1.02，纤维蛋白原 3.1 g/L，未见异常。"),
    ("心电图", "窦性心律，心率76次/分，未见明显ST-T改变。"),
    ("头颅", "头颅CT：双侧基底节区少许腔隙灶，未见出血，脑室系统无扩大。"),
    ("胸部", "胸部CT：双肺纹理增多，未见明确实变影及占位。"),
    ("超声", "超声检查：所见脏器形态大小正常，未见明显占位性病变。"),
    ("磁共振", "磁共振检查：未见新发病灶。"),
    ("X线", "X线检查：骨质未见明显异常。"),
]


def simulated_result(kind: str, name: str) -> str:
    for keyword, text in _RESULTS:
        if keyword in name:
            return text
    if kind == "lab":
        return f"{name}：检验完成，各项指标在参考范围内。"
    if kind == "exam":
        return f"{name}：检查完成，未见明显异常。"
    return f"{name}：已执行，患者耐受良好。"
