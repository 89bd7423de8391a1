"""How directory records look in responses."""

from __future__ import annotations

from models import Department, Institution, Staff
from models.institutions import LEVEL_NAMES
from models.people import ROLE_NAMES


def institution_view(institution: Institution) -> dict:
    return {"id": str(institution.public_id), "code": institution.code, "name": institution.name,
            "short_name": institution.short_name, "level": str(institution.level),
            "level_name": LEVEL_NAMES[institution.level], "region": institution.region,
            "phone": institution.phone, "address": institution.address}


def department_view(department: Department) -> dict:
    return {"id": str(department.public_id), "code": department.code, "name": department.name,
            "ward": department.ward, "phone": department.phone, "is_active": department.is_active}


def staff_admin_view(staff: Staff, department: Department | None, bound: bool) -> dict:
    return {"id": str(staff.public_id), "name": staff.name, "title": staff.title, "roles": list(staff.roles),
            "role_names": [ROLE_NAMES.get(r, r) for r in staff.roles], "is_active": staff.is_active,
            "department": department_view(department) if department else None,
            "wechat_bound": bound, "his_user_id": staff.his_user_id}
