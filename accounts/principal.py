"""Who is calling: the bearer token resolved to a fresh view of the account, its staff roles and patients."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from aiohttp import web

from accounts.revocation import is_revoked
from accounts.tokens import verify_access_token
from appkeys import KV_STORE, SETTINGS
from errors import Forbidden, Unauthenticated
from models import PatientBinding, Staff, WeChatAccount, joined

PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal")


@dataclass(frozen=True)
class Principal:
    account_id: int
    kind: str  # "staff" | "patient" | "unbound"
    staff_id: int | None
    institution_id: int | None
    department_id: int | None
    roles: frozenset[str]
    patient_ids: tuple[int, ...]
    session_id: uuid.UUID | None = None  # the refresh family of the presented access token
    staff_name: str = ""  # as the timeline records the actor

    def require_role(self, *roles: str) -> None:
        """Raise Forbidden unless the caller is active staff holding one of `roles`."""
        if self.staff_id is None or not self.roles.intersection(roles):
            raise Forbidden("您没有权限进行此操作", code="ROLE_REQUIRED", detail={"roles": list(roles)})

    def require_staff(self) -> None:
        if self.staff_id is None:
            raise Forbidden("仅限医联体工作人员使用", code="STAFF_ONLY")

    def require_patient(self) -> None:
        if not self.patient_ids:
            raise Forbidden("请先完成就诊人实名绑定", code="PATIENT_BINDING_REQUIRED")


async def load_principal(account: WeChatAccount, *, session_id: uuid.UUID | None = None) -> Principal:
    staff: Staff | None = None
    if account.staff_id is not None:
        loaded = joined(account, "staff", Staff)  # authenticate reads the account with its staff
        if loaded is not None:
            staff = loaded if loaded.deleted_at is None and loaded.is_active else None
        else:
            staff = await Staff.get_or_none(id=account.staff_id, deleted_at=None, is_active=True)
    patient_ids = tuple(await PatientBinding.filter(account_id=account.id, patient__deleted_at=None)
                        .order_by("id").values_list("patient_id", flat=True))
    kind = "staff" if staff else ("patient" if patient_ids else "unbound")
    return Principal(
        account_id=account.id,
        kind=kind,
        staff_id=staff.id if staff else None,
        institution_id=staff.institution_id if staff else None,  # type: ignore[attr-defined]
        department_id=staff.department_id if staff else None,  # type: ignore[attr-defined]
        roles=frozenset(staff.roles) if staff else frozenset(),
        patient_ids=patient_ids,
        staff_name=staff.name if staff else "",
        session_id=session_id,
    )


async def authenticate(request: web.Request) -> Principal:
    """The caller of this request (cached on the request); raises Unauthenticated."""
    cached = request.get(PRINCIPAL)
    if cached is not None:
        return cached
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("请先登录", code="UNAUTHENTICATED")
    claims = verify_access_token(request.app[SETTINGS].jwt_secret, token.strip())
    if await is_revoked(request.app[KV_STORE], claims.session):
        raise Unauthenticated("您已退出登录或登录已失效，请重新登录", code="TOKEN_REVOKED")
    account = await WeChatAccount.get_or_none(public_id=claims.account).select_related("staff")
    if account is None:
        raise Unauthenticated("账号不存在，请重新登录", code="TOKEN_INVALID")
    principal = await load_principal(account, session_id=claims.session)
    request[PRINCIPAL] = principal
    return principal
