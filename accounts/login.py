"""Logging in through WeChat and binding the WeChat user to a staff member (patients: accounts.binding)."""

from __future__ import annotations

from datetime import UTC, datetime

from tortoise.transactions import in_transaction

from accounts.tokens import token_hash
from errors import Conflict, DomainError, Gone, InvalidInput, NotFound, TooManyRequests, UpstreamUnavailable
from models import Invitation, Staff, WeChatAccount
from security.crypto import PersonalDataCipher
from wechat.client import WeChatClient, WeChatError

SESSION_KEY_CONTEXT = "wechat_session_key"


def _now() -> datetime:
    return datetime.now(UTC)


async def resolve_login_code(wechat: WeChatClient, code: str,
                             cipher: PersonalDataCipher | None = None) -> WeChatAccount:
    """code2session, then the account of that openid (created on first sight). With `cipher`, the login's
    session_key replaces the stored one, encrypted (it signs the user's VoIP room joins)."""
    try:
        session = await wechat.code2session(code)
    except WeChatError as exc:
        raise _login_error(exc) from None
    # With its staff member: the session issued next needs them (accounts.principal.load_principal).
    account = await WeChatAccount.get_or_none(openid=session.openid).select_related("staff")
    if account is None:
        account, _ = await WeChatAccount.get_or_create(openid=session.openid,
                                                       defaults={"unionid": session.unionid})
    changed = []
    if session.unionid and account.unionid != session.unionid:
        account.unionid = session.unionid
        changed.append("unionid")
    if cipher is not None and session.session_key:
        account.session_key_enc = cipher.encrypt(session.session_key, SESSION_KEY_CONTEXT)
        changed.append("session_key_enc")
    if changed:
        await account.save(update_fields=[*changed, "updated_at"])
    return account


def _login_error(exc: WeChatError) -> DomainError:
    if exc.errcode in (40029, 40163):
        return InvalidInput("登录凭证无效或已使用，请重新打开小程序后再试", code="INVALID_LOGIN_CODE",
                            status=401)
    if exc.errcode == 45011:
        return TooManyRequests("登录过于频繁，请一分钟后再试", code="LOGIN_RATE_LIMITED")
    if exc.errcode == 40226:
        return DomainError("该微信账号存在风险，暂时无法登录", code="WECHAT_USER_BLOCKED", status=403)
    return UpstreamUnavailable("微信服务暂时不可用，请稍后再试", code="WECHAT_UNAVAILABLE",
                               detail={"errcode": exc.errcode})


async def bind_staff(wechat: WeChatClient, code: str, invite_token: str,
                     cipher: PersonalDataCipher | None = None) -> WeChatAccount:
    """Use a one-time invitation: create the staff member it describes and bind this WeChat user."""
    invitation = await Invitation.get_or_none(token_hash=token_hash(invite_token))
    if invitation is None:
        raise NotFound("邀请码无效，请向本机构管理员重新索取", code="INVITATION_NOT_FOUND")
    if invitation.used_at is not None:
        raise Gone("该邀请码已被使用，每个邀请码只能使用一次", code="INVITATION_USED")
    if invitation.expires_at <= _now():
        raise Gone("该邀请码已过期，请向本机构管理员重新索取", code="INVITATION_EXPIRED")
    account = await resolve_login_code(wechat, code, cipher)
    if account.staff_id is not None:  # type: ignore[attr-defined]
        raise Conflict("该微信账号已绑定工作人员身份", code="ALREADY_BOUND")
    async with in_transaction():
        claimed = await Invitation.filter(id=invitation.id, used_at=None).update(used_at=_now())
        if not claimed:
            raise Gone("该邀请码已被使用，每个邀请码只能使用一次", code="INVITATION_USED")
        staff = await Staff.create(institution_id=invitation.institution_id,  # type: ignore[attr-defined]
                                   department_id=invitation.department_id,  # type: ignore[attr-defined]
                                   name=invitation.name, roles=list(invitation.roles))
        await Invitation.filter(id=invitation.id).update(used_by_id=staff.id)
        bound = await WeChatAccount.filter(id=account.id, staff_id=None).update(staff_id=staff.id)
        if not bound:
            raise Conflict("该微信账号已绑定工作人员身份", code="ALREADY_BOUND")
    await account.refresh_from_db()
    return account
