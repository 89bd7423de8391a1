"""The platform's FHIR R4 profile for HIS front-end processors (前置机): identifier systems, extension URLs,
code systems, and the format of the HIS card code printed on a patient's card.

The gateway (his.fhir) writes and reads these; the simulator (his.simulator) serves them. A hospital's
front-end processor maps its own HIS fields to this profile.

Wire conventions
- Patient.identifier: the resident ID number under ``ID_NUMBER_SYSTEM`` (the national OID for 居民身份证号),
  the MRN (病历号) under ``MRN_SYSTEM`` and the card code (就诊卡号) under ``CARD_SYSTEM``.
- The clinical summary of the open encounter: diagnoses are Conditions whose ``encounter`` is that
  Encounter, coded in ICD-10; the narrative parts of the admission note (主诉, 现病史, 既往史, 过敏史,
  治疗经过) are string extensions on the Encounter (URLs below); recent results are the patient's
  DiagnosticReports.
- An admission certificate (电子住院证) is a planned inpatient Encounter (class IMP, status planned) whose
  identifier under ``REFERRAL_SYSTEM`` is the platform's referral code (the conditional-create key) and
  whose identifier under ``CERTIFICATE_SYSTEM`` is the number the HIS assigns. The platform moves it along
  with the referral: ``cancelled`` (cancelled, no-show), ``in-progress`` at check-in (``period.start`` = the
  admission time, location active) and ``finished`` on completion (``period.end`` = the discharge time, location
  completed, and the return summary as the string extensions ``EXT_DISCHARGE_*``).
- Orders are ServiceRequests / MedicationRequests identified under ``ORDER_SYSTEM`` by the platform's order
  id (again the conditional-create key); reports point back at them through ``DiagnosticReport.basedOn``.

Card codes
A HIS card code names its institution: it is ``<institution code>-<MRN>``, split at the *last* hyphen
(institution codes may contain hyphens, MRNs may not), e.g. ``FYRM-00012345``. A bare MRN means "the
scanning doctor's own institution".
"""

from __future__ import annotations

import re

FHIR_JSON = "application/fhir+json"

ID_NUMBER_SYSTEM = "urn:oid:2.16.156.10011.1.3"
MRN_SYSTEM = "urn:referral-cloud:his:mrn"
CARD_SYSTEM = "urn:referral-cloud:his:card"
REFERRAL_SYSTEM = "urn:referral-cloud:referral"
CERTIFICATE_SYSTEM = "urn:referral-cloud:his:admission-certificate"
ORDER_SYSTEM = "urn:referral-cloud:order"
DEPARTMENT_SYSTEM = "urn:referral-cloud:his:department"
INSTITUTION_SYSTEM = "urn:referral-cloud:institution"
SERVICE_CODE_SYSTEM = "urn:referral-cloud:his:service"

ICD10_SYSTEM = "http://hl7.org/fhir/sid/icd-10"
# Other spellings of ICD-10 a front-end processor may use (ICD-10 国家临床版, the WS 364 code table OID).
ICD10_SYSTEMS = frozenset({ICD10_SYSTEM, "http://hl7.org/fhir/sid/icd-10-cn", "urn:oid:2.16.156.10011.2.3.3.11"})
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ADMIT_SOURCE_SYSTEM = "http://terminology.hl7.org/CodeSystem/admit-source"
CONDITION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-category"
CONDITION_CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
REPORT_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v2-0074"
SNOMED_SYSTEM = "http://snomed.info/sct"
LOINC_SYSTEM = "http://loinc.org"
OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"

_EXT = "urn:referral-cloud:fhir:extension:"
EXT_CHIEF_COMPLAINT = _EXT + "chief-complaint"
EXT_PRESENT_ILLNESS = _EXT + "present-illness"
EXT_PAST_HISTORY = _EXT + "past-history"
EXT_ALLERGIES = _EXT + "allergies"
EXT_TREATMENT = _EXT + "treatment-course"
EXT_REFERRAL_REASON = _EXT + "referral-reason"
# The return summary on the finished admission Encounter (出院诊断, 治疗经过, 主要检查结果, 下一步治疗及康复建议).
EXT_DISCHARGE_DIAGNOSIS = _EXT + "discharge-diagnosis"
EXT_DISCHARGE_TREATMENT = _EXT + "discharge-treatment"
EXT_DISCHARGE_RESULTS = _EXT + "discharge-results"
EXT_DISCHARGE_RECOMMENDATIONS = _EXT + "discharge-recommendations"
DISCHARGE_EXTENSIONS = (EXT_DISCHARGE_DIAGNOSIS, EXT_DISCHARGE_TREATMENT, EXT_DISCHARGE_RESULTS,
                        EXT_DISCHARGE_RECOMMENDATIONS)

# Order kinds → ServiceRequest.category (SNOMED CT); prescriptions are MedicationRequests.
ORDER_CATEGORIES = {
    "exam": ("363679005", "Imaging"),
    "lab": ("108252007", "Laboratory procedure"),
    "treatment": ("277132007", "Therapeutic procedure"),
}
REPORT_CATEGORIES = {"exam": ("RAD", "Radiology"), "lab": ("LAB", "Laboratory"), "treatment": ("OTH", "Other")}

_ID_NUMBER = re.compile(r"^\d{17}[\dXx]$")
_MRN = re.compile(r"^[A-Za-z0-9]{4,32}$")
_INSTITUTION_CODE = re.compile(r"^[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)*$")


def card_code(institution_code: str, mrn: str) -> str:
    return f"{institution_code}-{mrn}"


def parse_card_code(content: str) -> tuple[str, str] | None:
    """``(institution code, MRN)`` of a card code, or None when the text is not one."""
    code, sep, mrn = content.strip().rpartition("-")
    if not sep or not _INSTITUTION_CODE.match(code) or not _MRN.match(mrn):
        return None
    return code, mrn


# Profile "platform" (a general FHIR server that assigns no business identifiers): the patient's key at the HIS is
# the server's logical id, stored where an MRN would be, written "Patient/<id>" so that it can never be mistaken
# for an MRN (MRNs have no slash); the certificate number is the platform's, derived from the referral code so a
# retry writes the same one.
SERVER_KEY_PREFIX = "Patient/"
_SERVER_ID = re.compile(r"^[A-Za-z0-9\-.]{1,56}$")


def server_patient_key(logical_id: str) -> str:
    if not _SERVER_ID.match(logical_id):
        raise ValueError("not a FHIR logical id (or longer than a stored key allows)")
    return SERVER_KEY_PREFIX + logical_id


def parse_server_patient_key(key: str) -> str | None:
    """The logical id in a "Patient/<id>" key, or None when `key` is an MRN."""
    if not key.startswith(SERVER_KEY_PREFIX):
        return None
    logical_id = key[len(SERVER_KEY_PREFIX):]
    return logical_id if _SERVER_ID.match(logical_id) else None


def platform_certificate_number(referral_code: str) -> str:
    """The admission certificate number the platform issues when the HIS does not: ZY + the referral code."""
    return "ZY" + referral_code


def looks_like_mrn(content: str) -> bool:
    return bool(_MRN.match(content.strip()))


def looks_like_id_number(content: str) -> bool:
    """Shape only (18 characters, digits and a final X); the check digit is security.idcard's job."""
    return bool(_ID_NUMBER.match(content.strip()))

# Single sign-on from a member's HIS (POST /api/v1/auth/his-launch): the HIS signs a JWT with ``iss`` = its
# institution code, ``sub`` = its own user id (Staff.his_user_id), ``aud`` = LAUNCH_AUDIENCE, ``iat``/``exp``
# at most LAUNCH_MAX_LIFETIME apart, a unique ``jti``, and optionally ``patient`` (an MRN or card code).
LAUNCH_AUDIENCE = "referral-cloud"
LAUNCH_MAX_LIFETIME = 300
