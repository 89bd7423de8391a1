"""Who is calling: the bearer token resolved to a fresh view of the account, its staff roles and patients."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from aiohttp import web
from tortoise import connections

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
    return _principal(account.id, staff, patient_ids, session_id)


def _principal(account_id: int, staff: Staff | None, patient_ids: tuple[int, ...],
               session_id: uuid.UUID | None) -> Principal:
    """`staff`: the account's staff member while active, else None."""
    kind = "staff" if staff else ("patient" if patient_ids else "unbound")
    return Principal(
        account_id=account_id,
        kind=kind,
        staff_id=staff.id if staff else None,
        institution_id=staff.institution_id if staff else None,  # type: ignore[attr-defined]
        department_id=staff.department_id if staff else None,  # type: ignore[attr-defined]
        roles=frozenset(staff.roles) if staff else frozenset(),
        patient_ids=patient_ids,
        staff_name=staff.name if staff else "",
        session_id=session_id,
    )


# Every authenticated request runs this: the account, its active staff member and the patients it is bound to
# in one round trip (the ORM takes two: the account with its staff, then the bindings).
PG_PRINCIPAL = """
SELECT a.id AS account_id, s.id, s.institution_id, s.department_id, s.roles, s.name,
       ARRAY(SELECT b.patient_id FROM patient_binding b JOIN patient p ON p.id = b.patient_id
             WHERE b.account_id = a.id AND p.deleted_at IS NULL ORDER BY b.id) AS patient_ids
FROM wechat_account a
LEFT JOIN staff s ON s.id = a.staff_id AND s.deleted_at IS NULL AND s.is_active
WHERE a.public_id = $1
"""


async def _load_by_public_id(account: uuid.UUID, session_id: uuid.UUID) -> Principal | None:
    conn = connections.get("default")
    if conn.capabilities.dialect != "postgres":
        row = await WeChatAccount.get_or_none(public_id=account).select_related("staff")
        return None if row is None else await load_principal(row, session_id=session_id)
    found = await conn.execute_query_dict(PG_PRINCIPAL, [account])
    if not found:
        return None
    row = found[0]
    staff = None
    if row["id"] is not None:
        staff = Staff(id=row["id"], institution_id=row["institution_id"], department_id=row["department_id"],
                      roles=Staff._meta.fields_map["roles"].to_python_value(row["roles"]), name=row["name"])
    return _principal(row["account_id"], staff, tuple(row["patient_ids"]), session_id)


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
    principal = await _load_by_public_id(claims.account, claims.session)
    if principal is None:
        raise Unauthenticated("账号不存在，请重新登录", code="TOKEN_INVALID")
    request[PRINCIPAL] = principal
    return principal
