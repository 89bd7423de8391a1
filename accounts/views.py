"""How an account looks to its owner: kind, staff identity, bound patients (masked)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from directory import cache
from models import PatientBinding, Staff, WeChatAccount, joined
from models.accounts import RELATION_NAMES
from models.people import ROLE_NAMES
from security.masking import mask_id_number, mask_name, mask_phone

if TYPE_CHECKING:
    from accounts.principal import Principal


async def staff_view(staff: Staff) -> dict:
    institution = await cache.institution(staff.institution_id)  # type: ignore[attr-defined]
    department = await cache.department(staff.department_id) if staff.department_id else None  # type: ignore[attr-defined]
    return {
        "id": str(staff.public_id),
        "name": staff.name,
        "title": staff.title,
        "roles": list(staff.roles),
        "role_names": [ROLE_NAMES.get(r, r) for r in staff.roles],
        "institution": {"id": str(institution.public_id), "code": institution.code, "name": institution.name,
                        "level": str(institution.level)},
        "department": ({"id": str(department.public_id), "code": department.code, "name": department.name}
                       if department else None),
    }


async def account_view(account: WeChatAccount, principal: Principal, cipher=None) -> dict:
    staff = None
    if principal.staff_id:
        # The staff member the account was read with (login, authenticate), else read here.
        loaded = joined(account, "staff", Staff)
        staff = loaded if loaded is not None and loaded.id == principal.staff_id else \
            await Staff.get(id=principal.staff_id)
    bindings = await PatientBinding.filter(account_id=account.id, patient__deleted_at=None) \
        .order_by("id").prefetch_related("patient") if principal.patient_ids else []
    patients = []
    for binding in bindings:
        patient = binding.patient
        entry = {"id": str(patient.public_id), "name": mask_name(patient.name),
                 "relation": str(binding.relation), "relation_name": RELATION_NAMES[binding.relation],
                 "gender": str(patient.gender),
                 "birth_date": patient.birth_date.isoformat() if patient.birth_date else None}
        if cipher is not None:
            entry["id_number"] = mask_id_number(cipher.decrypt(patient.id_number_enc, "id_number"))
            entry["phone"] = mask_phone(cipher.decrypt(patient.phone_enc, "phone")) if patient.phone_enc else ""
        patients.append(entry)
    return {
        "id": str(account.public_id),
        "kind": principal.kind,
        "staff": await staff_view(staff) if staff else None,
        "patients": patients,
    }
