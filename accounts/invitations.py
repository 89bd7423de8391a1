"""Staff invitations: an institution admin invites a named person with roles; the token is shown once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from accounts.principal import Principal
from accounts.tokens import new_secret_token, token_hash
from errors import InvalidInput, NotFound
from models import Department, Invitation, Role
from security.audit import audited


async def create_invitation(admin: Principal, *, name: str, roles: list[str], department_id, ttl: int) -> tuple[
        Invitation, str]:
    admin.require_role(Role.ADMIN)
    unknown = [r for r in roles if r not in {role.value for role in Role}]
    if unknown or not roles:
        raise InvalidInput("角色不正确", code="INVALID_ROLES", detail={"roles": unknown})
    department = None
    if department_id is not None:
        department = await Department.get_or_none(public_id=department_id, institution_id=admin.institution_id,
                                                  deleted_at=None)
        if department is None:
            raise NotFound("本机构没有该科室", code="DEPARTMENT_NOT_FOUND")
    token = new_secret_token("inv")
    async with audited("admin.invitation_created", "invitation", "", actor_staff_id=admin.staff_id,
                       institution_id=admin.institution_id) as detail:
        invitation = await Invitation.create(
            institution_id=admin.institution_id, department=department, created_by_id=admin.staff_id,
            name=name.strip(), roles=sorted(set(roles)), token_hash=token_hash(token),
            expires_at=datetime.now(UTC) + timedelta(seconds=ttl))
        detail.update(target_id=invitation.public_id, roles=invitation.roles,
                      department=department.code if department else None)
    return invitation, token

