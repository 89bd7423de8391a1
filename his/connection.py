"""An institution's HIS connection settings: who may change them, how they are checked and stored, what reading
them shows, and the connection test. Used by the admin API (miniprogram_api.his_connection) and the command
line (his.cli); the gateway reads the stored row (secrets decrypted by ``reveal_secret``).

Secrets (a bearer token, Basic password, OAuth2 client secret or SMART private key) are encrypted at rest with the
PersonalDataCipher, as ID numbers are, and never leave: a read says only whether one is configured. The mutual-TLS
client key is sealed and write-only the same way.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import BaseModel, Field

from accounts.principal import Principal
from errors import Forbidden, InvalidInput
from his.auth import TOKEN_MODES, assertion_algorithm
from his.fhir import build_ssl_context
from his.gateway import ConnectionStep, HisEndpoint, HisGateway, HisNotConfigured, InstitutionLike
from models import Institution, Role
from security.audit import audited
from security.crypto import DecryptionError, PersonalDataCipher

SECRET_CONTEXT = "his_secret"
CLIENT_KEY_CONTEXT = "his_client_key"
STEP_NAMES = {"connect": "网络连接（DNS/TCP/TLS）", "auth": "身份认证（访问凭证/令牌）",
              "metadata": "FHIR 能力声明（metadata）", "search": "患者检索（Patient）"}

AuthName = Literal["none", "bearer", "basic", "client_credentials", "smart_backend"]
ProfileName = Literal["his", "platform"]


class ConnectionChange(BaseModel):
    """A change to the settings: fields left out keep their value; for the write-only ones (secret, client_key)
    an empty string clears them."""

    model_config = {"extra": "forbid"}

    base_url: str | None = Field(default=None, max_length=300,
                                 description="FHIR 服务基础地址（https://…/fhir）；"
                                             "留空表示使用内置 HIS 模拟器（仅嵌入模式）")
    auth: AuthName | None = Field(default=None, description="认证方式")
    token_url: str | None = Field(default=None, max_length=300, description="OAuth2 令牌端点（client_credentials、"
                                                                            "smart_backend）")
    client_id: str | None = Field(default=None, max_length=200, description="客户端标识；basic 模式下为用户名")
    scope: str | None = Field(default=None, max_length=300,
                              description="申请的权限范围，如 system/*.read system/*.write")
    key_id: str | None = Field(default=None, max_length=100, description="smart_backend：JWT 头部的 kid")
    secret: str | None = Field(default=None, max_length=16384,
                               description="只写：bearer 令牌、basic 密码、client_credentials 的客户端密钥或 "
                                           "smart_backend 的 PEM 私钥")
    ca_bundle: str | None = Field(default=None, max_length=65536, description="信任的 CA 证书（PEM）")
    client_cert: str | None = Field(default=None, max_length=65536, description="双向 TLS 客户端证书（PEM）")
    client_key: str | None = Field(default=None, max_length=65536, description="只写：双向 TLS 客户端私钥（PEM）")
    identifiers: ProfileName | None = Field(default=None,
                                            description="his：病历号和住院证号由 HIS 分配；platform：以服务器"
                                                        "资源 id 为患者标识，住院证号由本平台开具")


class ConnectionView(BaseModel):
    institution_code: str
    base_url: str
    uses_simulator: bool = Field(description="未配置地址，嵌入模式下使用内置 HIS 模拟器")
    auth: str
    token_url: str
    client_id: str
    scope: str
    key_id: str
    identifiers: str
    secret_configured: bool
    ca_bundle_configured: bool
    client_cert_configured: bool
    client_key_configured: bool


class StepOut(BaseModel):
    step: str
    name: str
    ok: bool | None = Field(description="true 成功，false 失败，null 因前一步失败而跳过")
    message: str


class ConnectionTest(BaseModel):
    ok: bool
    steps: list[StepOut]


def require_connection_admin(principal: Principal, institution: Institution) -> None:
    """Who may read, change and test an institution's HIS connection: the institution's own admin.

    The consortium office's `consortium_admin` role (all institutions) joins here when it exists."""
    principal.require_role(Role.ADMIN)
    if principal.institution_id != institution.id:
        raise Forbidden("只能管理本机构的 HIS 连接", code="OTHER_INSTITUTION")


def reveal_secret(cipher: PersonalDataCipher, institution: InstitutionLike) -> str:
    """The institution's HIS secret in clear, for the gateway (never for a reply or a log)."""
    sealed = getattr(institution, "his_secret_enc", "") or ""
    if not sealed:
        return ""
    try:
        return cipher.decrypt(sealed, SECRET_CONTEXT)
    except DecryptionError:
        raise HisNotConfigured("该机构的 HIS 访问凭证无法解密（数据密钥可能已更换），请重新设置",
                               institution=institution.code) from None


def reveal_client_key(cipher: PersonalDataCipher, institution: InstitutionLike) -> str:
    """The institution's mutual-TLS client key (PEM) in clear, for the gateway only."""
    stored = institution.his_client_key or ""
    if not stored or stored.lstrip().startswith("-----BEGIN"):
        return stored  # none, or a PEM stored in clear before keys were sealed: sealed at the next save
    try:
        return cipher.decrypt(stored, CLIENT_KEY_CONTEXT)
    except DecryptionError:
        raise HisNotConfigured("该机构的双向 TLS 客户端私钥无法解密（数据密钥可能已更换），请重新设置",
                               institution=institution.code) from None


def endpoint_of(cipher: PersonalDataCipher, institution: InstitutionLike) -> HisEndpoint:
    """The institution's HIS endpoint with its secrets decrypted (what the gateway connects with)."""
    return HisEndpoint.of(institution, secret=reveal_secret(cipher, institution),
                          client_key=reveal_client_key(cipher, institution))


def connection_view(institution: Institution) -> ConnectionView:
    return ConnectionView(
        institution_code=institution.code, base_url=institution.his_base_url,
        uses_simulator=not institution.his_base_url, auth=institution.his_auth,
        token_url=institution.his_token_url, client_id=institution.his_client_id, scope=institution.his_scope,
        key_id=institution.his_key_id, identifiers=institution.his_identifiers,
        secret_configured=bool(institution.his_secret_enc), ca_bundle_configured=bool(institution.his_ca_bundle),
        client_cert_configured=bool(institution.his_client_cert),
        client_key_configured=bool(institution.his_client_key))


def _url(value: str, label: str) -> str:
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{label}应为 http:// 或 https:// 开头的地址", code="HIS_CONNECTION_INVALID")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise InvalidInput(f"{label}不能包含用户名、密码、查询参数或片段（凭证请填写在认证设置中）",
                           code="HIS_CONNECTION_INVALID")
    return value.rstrip("/")


# (model field, change field) of the plain settings; secret and client key are handled apart.
_PLAIN = {"his_base_url": "base_url", "his_auth": "auth", "his_token_url": "token_url",
          "his_client_id": "client_id", "his_scope": "scope", "his_key_id": "key_id",
          "his_ca_bundle": "ca_bundle", "his_client_cert": "client_cert", "his_identifiers": "identifiers"}


async def save_connection(cipher: PersonalDataCipher, institution: Institution, change: ConnectionChange, *,
                          actor_staff_id: int | None = None) -> Institution:
    """Apply `change` to the institution's settings after checking the result as a whole; returns the row."""
    given = change.model_dump(exclude_unset=True)
    for column, name in _PLAIN.items():
        if given.get(name) is not None:
            value = given[name].strip() if name not in ("ca_bundle", "client_cert") else given[name]
            setattr(institution, column, value)
    if given.get("secret") is not None:
        secret = given["secret"].strip()
    else:
        secret = reveal_secret(cipher, institution)
    if given.get("client_key") is not None:
        client_key = given["client_key"]
    else:
        client_key = reveal_client_key(cipher, institution)
    if institution.his_base_url:
        institution.his_base_url = _url(institution.his_base_url, "HIS 地址")
    check_settings(institution, secret, client_key)
    institution.his_secret_enc = cipher.encrypt(secret, SECRET_CONTEXT) if secret else ""
    institution.his_client_key = cipher.encrypt(client_key, CLIENT_KEY_CONTEXT) if client_key else ""
    async with audited("admin.his_connection_changed", "institution", institution.code,
                       actor_staff_id=actor_staff_id, institution_id=institution.id) as detail:
        await institution.save(update_fields=[*_PLAIN, "his_client_key", "his_secret_enc", "updated_at"])
        # The names of what was set, never a value: secrets, keys and even URLs stay out of the log.
        detail["changed"] = sorted(name for name, value in given.items() if value is not None)
    return institution


def check_settings(institution: Institution, secret: str, client_key: str = "") -> None:
    """The settings make sense together for their auth mode; raises InvalidInput naming what is missing."""
    mode = institution.his_auth

    def refuse(message: str) -> InvalidInput:
        return InvalidInput(message, code="HIS_CONNECTION_INVALID", detail={"auth": mode})

    if mode in TOKEN_MODES:
        if not institution.his_token_url:
            raise refuse("该认证方式需要填写令牌端点（token_url）")
        institution.his_token_url = _url(institution.his_token_url, "令牌端点")
        if not institution.his_client_id:
            raise refuse("该认证方式需要填写客户端标识（client_id）")
    if mode == "basic" and not institution.his_client_id:
        raise refuse("basic 认证需要填写用户名（client_id）")
    if mode != "none" and not secret:
        raise refuse("该认证方式需要填写密钥（secret）")
    if mode == "smart_backend":
        try:
            key = load_pem_private_key(secret.encode(), password=None)
        except (ValueError, TypeError):
            raise refuse("smart_backend 的密钥应为未加密的 PEM 私钥（RSA 或 EC P-384）") from None
        if assertion_algorithm(key) is None:
            raise refuse("smart_backend 的私钥应为 RSA（2048 位以上，RS384）或 EC P-384（ES384）")
    if client_key and not institution.his_client_cert:
        raise refuse("填写了客户端私钥但没有客户端证书")
    if institution.his_base_url.lower().startswith("https://") and (institution.his_ca_bundle
                                                                     or institution.his_client_cert):
        try:
            build_ssl_context(HisEndpoint.of(institution, client_key=client_key))
        except HisNotConfigured:
            raise refuse("CA 证书或客户端证书/私钥不是有效的 PEM，或证书与私钥不匹配") from None


async def run_connection_test(gateway: HisGateway, institution: Institution) -> ConnectionTest:
    """Run the gateway's connection test on the stored settings; a configuration the gateway cannot even use
    is reported as a failed first step."""
    try:
        steps = await gateway.check_connection(institution)
    except HisNotConfigured as exc:
        steps = [ConnectionStep("config", "连接配置", False, exc.message)]
        steps += [ConnectionStep(step, name, None, "因前一步失败而跳过")
                  for step, name in STEP_NAMES.items()]
    return ConnectionTest(ok=all(s.ok for s in steps), steps=[StepOut(**asdict(s)) for s in steps])


def describe(view: ConnectionView) -> list[tuple[str, Any]]:
    """The settings as (label, value) lines for the command line."""
    return [("机构", view.institution_code), ("HIS 地址", view.base_url or "（未配置：嵌入模式使用内置模拟器）"),
            ("认证方式", view.auth), ("令牌端点", view.token_url or "-"), ("客户端标识", view.client_id or "-"),
            ("权限范围", view.scope or "-"), ("密钥编号 kid", view.key_id or "-"),
            ("密钥", "已配置" if view.secret_configured else "未配置"),
            ("CA 证书", "已配置" if view.ca_bundle_configured else "未配置"),
            ("客户端证书", "已配置" if view.client_cert_configured else "未配置"),
            ("客户端私钥", "已配置" if view.client_key_configured else "未配置"),
            ("标识分配", "HIS 分配病历号和住院证号" if view.identifiers == "his"
             else "服务器资源 id 作患者标识，本平台开具住院证号")]
