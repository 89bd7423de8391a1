"""patients.identifiers: a HIS number links to one patient, whoever writes the link first."""

from __future__ import annotations

import asyncio
from datetime import date

import pytest

from appkeys import CIPHER
from errors import Conflict
from models import Institution, Patient, PatientIdentifier
from patients.identifiers import link_identifier
from security.idcard import make_id_number
from tests.support import seeded


async def a_patient(app, serial: int, name: str) -> Patient:
    cipher = app[CIPHER]
    number = make_id_number("321084", date(1960, 1, serial), serial)
    return await Patient.create(name=name, id_number_enc=cipher.encrypt(number, "id_number"),
                                id_number_hash=cipher.lookup_hash("id_number", number), gender="male",
                                birth_date=date(1960, 1, serial))


async def test_linking_a_number_twice_keeps_one_link(client):
    await seeded(client)
    patient = await a_patient(client.server.app, 3, "周德明")
    subei = await Institution.get(code="SUBEI")
    await link_identifier(patient.id, subei.id, "mrn", "M0001")
    await link_identifier(patient.id, subei.id, "mrn", "M0001")
    assert await PatientIdentifier.filter(institution_id=subei.id, system="mrn", value="M0001").count() == 1


async def test_concurrent_writers_of_the_same_link_all_succeed(client):
    """A retried HIS job and its first run (or two scans) may link the same MRN at the same moment: the one that
    loses the unique index reads what the other wrote instead of failing the job."""
    await seeded(client)
    patient = await a_patient(client.server.app, 4, "吴秀英")
    subei = await Institution.get(code="SUBEI")
    await asyncio.gather(*(link_identifier(patient.id, subei.id, "mrn", "M0002") for _ in range(6)))
    rows = await PatientIdentifier.filter(institution_id=subei.id, system="mrn", value="M0002")
    assert [row.patient_id for row in rows] == [patient.id]  # type: ignore[attr-defined]


async def test_a_number_of_another_patient_is_a_conflict_and_keeps_the_first_link(client):
    await seeded(client)
    first = await a_patient(client.server.app, 5, "林海燕")
    second = await a_patient(client.server.app, 6, "何志强")
    subei = await Institution.get(code="SUBEI")
    await link_identifier(first.id, subei.id, "mrn", "M0003")
    with pytest.raises(Conflict) as raised:
        await link_identifier(second.id, subei.id, "mrn", "M0003", message="病历号冲突")
    assert raised.value.code == "IDENTIFIER_CONFLICT" and raised.value.message == "病历号冲突"
    rows = await PatientIdentifier.filter(institution_id=subei.id, system="mrn", value="M0003")
    assert [row.patient_id for row in rows] == [first.id]  # type: ignore[attr-defined]
