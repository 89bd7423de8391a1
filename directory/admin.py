"""Institution admins manage their own institution's departments and staff, and nothing else."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from tortoise.exceptions import IntegrityError

from accounts.principal import Principal
from errors import Conflict, InvalidInput, NotFound
from models import Department, Role, Staff, WeChatAccount
from security.audit import audited

VALID_ROLES = {role.value for role in Role}


async def own_department(admin: Principal, public_id: uuid.UUID) -> Department:
    department = await Department.get_or_none(public_id=public_id, institution_id=admin.institution_id,
                                              deleted_at=None)
    if department is None:
        raise NotFound("本机构没有该科室", code="DEPARTMENT_NOT_FOUND")
    return department


async def create_department(admin: Principal, *, code: str, name: str, ward: str, phone: str) -> Department:
    admin.require_role(Role.ADMIN)
    try:
        async with audited("admin.department_created", "department", "", actor_staff_id=admin.staff_id,
                           institution_id=admin.institution_id) as detail:
            department = await Department.create(institution_id=admin.institution_id, code=code, name=name,
                                                 ward=ward, phone=phone)
            detail.update(target_id=department.public_id, code=code)
        return department
    except IntegrityError:
        raise Conflict("本机构已有相同编码的科室", code="DEPARTMENT_CODE_TAKEN") from None


async def update_department(admin: Principal, public_id: uuid.UUID, changes: dict) -> Department:
    admin.require_role(Role.ADMIN)
    department = await own_department(admin, public_id)
    async with audited("admin.department_updated", "department", str(department.public_id),
                       actor_staff_id=admin.staff_id, institution_id=admin.institution_id) as detail:
        department.update_from_dict(changes)
        await department.save()
        detail["changed"] = sorted(changes)
    return department


async def own_staff(admin: Principal, public_id: uuid.UUID) -> Staff:
    staff = await Staff.get_or_none(public_id=public_id, institution_id=admin.institution_id, deleted_at=None)
    if staff is None:
        raise NotFound("本机构没有该工作人员", code="STAFF_NOT_FOUND")
    return staff


async def update_staff(admin: Principal, public_id: uuid.UUID, *, roles: list[str] | None,
                       department_id: uuid.UUID | None, is_active: bool | None, title: str | None) -> Staff:
    admin.require_role(Role.ADMIN)
    staff = await own_staff(admin, public_id)
    before = {"roles": list(staff.roles), "is_active": staff.is_active,
              "department_id": staff.department_id, "title": staff.title}  # type: ignore[attr-defined]
    if roles is not None:
        if not roles or set(roles) - VALID_ROLES:
            raise InvalidInput("角色不正确", code="INVALID_ROLES")
        if staff.id == admin.staff_id and Role.ADMIN not in roles:
            raise Conflict("不能移除自己的管理员角色", code="CANNOT_DEMOTE_SELF")
        staff.roles = sorted(set(roles))
    if department_id is not None:
        staff.department = await own_department(admin, department_id)
    if is_active is not None:
        if staff.id == admin.staff_id and not is_active:
            raise Conflict("不能停用自己的账号", code="CANNOT_DEACTIVATE_SELF")
        staff.is_active = is_active
    if title is not None:
        staff.title = title
    after = {"roles": list(staff.roles), "is_active": staff.is_active,
             "department_id": staff.department_id, "title": staff.title}  # type: ignore[attr-defined]
    async with audited("admin.staff_updated", "staff", str(staff.public_id), actor_staff_id=admin.staff_id,
                       institution_id=admin.institution_id) as detail:
        await staff.save()
        detail.update({key: {"from": before[key], "to": after[key]} for key in before if before[key] != after[key]})
    return staff


async def remove_staff(admin: Principal, public_id: uuid.UUID) -> None:
    """Soft delete: the record stays for the audit trail; the WeChat binding is released."""
    admin.require_role(Role.ADMIN)
    staff = await own_staff(admin, public_id)
    if staff.id == admin.staff_id:
        raise Conflict("不能删除自己的账号", code="CANNOT_REMOVE_SELF")
    async with audited("admin.staff_removed", "staff", str(staff.public_id), actor_staff_id=admin.staff_id,
                       institution_id=admin.institution_id):
        await Staff.filter(id=staff.id).update(deleted_at=datetime.now(UTC), is_active=False)
        await WeChatAccount.filter(staff_id=staff.id).update(staff_id=None)
