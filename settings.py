"""One typed Settings object read from the environment; the defaults are embedded mode."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

ROOT = Path(__file__).resolve().parent


class SettingsError(ValueError):
    """A configuration value is wrong; the message names the environment variable, in Chinese and in English
    (whoever runs the program may read either)."""

    def __init__(self, chinese: str, english: str) -> None:
        self.chinese, self.english = chinese, english
        super().__init__(f"{chinese} / {english}")


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} 应为整数，当前为 {raw!r}", f"{name} must be a whole number, got {raw!r}") from None


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise SettingsError(f"{name} 应为 true 或 false，当前为 {raw!r}", f"{name} must be true or false, got {raw!r}")


def _key32(name: str, raw: str) -> bytes:
    try:
        key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (ValueError, TypeError):
        raise SettingsError(f"{name} 应为 URL 安全 base64 编码的 32 字节密钥",
                            f"{name} must be 32 bytes in URL-safe base64") from None
    if len(key) != 32:
        raise SettingsError(f"{name} 应为 URL 安全 base64 编码的 32 字节密钥，当前为 {len(key)} 字节",
                            f"{name} must be 32 bytes in URL-safe base64, got {len(key)} bytes")
    return key


def _dev_key(data_dir: Path, filename: str) -> bytes:
    """A key generated once per embedded installation and kept beside its database."""
    path = data_dir / filename
    if path.exists():
        return _key32(filename, path.read_text().strip())
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    path.write_text(base64.urlsafe_b64encode(key).decode())
    path.chmod(0o600)
    return key


@dataclass(frozen=True)
class Settings:
    # (environment variable, description) live in ENV_DOC below, in the same order.
    database_url: str = ""
    redis_url: str = ""
    redis_prefix: str = "rc:"
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    data_dir: Path = ROOT / "var"
    wechat_appid: str = "wx-sandbox-appid"
    wechat_secret: str = "sandbox-secret"
    wechat_api_base: str = ""
    wechat_timeout: float = 5.0
    wechat_push_token: str = "sandbox-push-token"
    wechat_aes_key: str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
    wechat_template_approval: str = "rc-referral-approval"
    wechat_template_progress: str = "rc-referral-progress"
    wechat_template_admission: str = "rc-admission-notice"
    wechat_template_chat: str = "rc-chat-unread"
    wechat_long_term_templates: str = ""
    wechat_miniprogram_state: str = "formal"
    jwt_secret: str = ""
    access_ttl: int = 15 * 60
    refresh_ttl: int = 30 * 24 * 3600
    invitation_ttl: int = 7 * 24 * 3600
    binding_request_ttl: int = 24 * 3600
    slip_image_url_ttl: int = 600
    data_key: bytes = field(default=b"", repr=False)
    lookup_key: bytes = field(default=b"", repr=False)
    his_timeout: float = 10.0
    embedded_his: bool = True
    his_simulator_url: str = ""
    seed_demo: bool = False
    background_tasks: bool = True
    embedded_dispatcher: bool = True
    outbox_poll: float = 2.0
    outbox_lease: float = 120.0
    outbox_concurrency: int = 32
    outbox_max_attempts: int = 12
    outbox_backoff: float = 2.0
    outbox_backoff_max: float = 3600.0
    outbox_keep_done_days: int = 7
    chat_check_timeout: float = 2.0
    chat_notify_quiet: float = 300.0
    realtime_ticket_ttl: int = 30
    max_body: int = 1024 * 1024
    speedups: bool = False
    console_idle_timeout: int = 30 * 60
    console_session_max: int = 12 * 3600
    log_level: str = "INFO"

    @property
    def embedded_db(self) -> bool:
        return not self.database_url or self.database_url.startswith("sqlite")

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite://{self.data_dir / 'referral.sqlite3'}"

    @property
    def embedded_wechat(self) -> bool:
        return not self.wechat_api_base

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides) -> Settings:
        env = os.environ if env is None else env
        values: dict = {}
        for f in fields(cls):
            name = f.name.upper()
            if name not in env:
                continue
            raw = env[name]
            if f.type in ("int",):
                values[f.name] = _int(name, raw)
            elif f.type == "float":
                try:
                    values[f.name] = float(raw)
                except ValueError:
                    raise SettingsError(f"{name} 应为数字，当前为 {raw!r}", f"{name} must be a number, got {raw!r}") \
                        from None
            elif f.type == "bool":
                values[f.name] = _bool(name, raw)
            elif f.type == "bytes":
                values[f.name] = _key32(name, raw)
            elif f.type == "Path":
                values[f.name] = Path(raw)
            else:
                values[f.name] = raw
        values.update(overrides)
        if "embedded_his" not in values and str(values.get("database_url", "")).startswith("postgres"):
            # The simulator exposes synthetic patients and fault switches: never on by default in production.
            values["embedded_his"] = False
        settings = cls(**values)
        settings._validate()
        return settings.with_dev_secrets()

    def _validate(self) -> None:
        url = self.database_url
        if url and not url.startswith(("sqlite://", "postgres://", "postgresql://")):
            raise SettingsError("DATABASE_URL 应以 sqlite:// 或 postgres:// 开头",
                                "DATABASE_URL must start with sqlite:// or postgres://")
        if self.his_simulator_url and not self.his_simulator_url.startswith(("http://", "https://")):
            raise SettingsError("HIS_SIMULATOR_URL 应以 http:// 或 https:// 开头",
                                "HIS_SIMULATOR_URL must start with http:// or https://")
        if self.redis_url and not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise SettingsError("REDIS_URL 应以 redis://、rediss:// 或 unix:// 开头",
                                "REDIS_URL must start with redis://, rediss:// or unix://")
        if not 0 < self.port < 65536:
            raise SettingsError(f"PORT 应在 1 到 65535 之间，当前为 {self.port}",
                                f"PORT must be between 1 and 65535, got {self.port}")
        if len(self.wechat_aes_key) != 43:
            raise SettingsError("WECHAT_AES_KEY 应为 43 个字符的 EncodingAESKey",
                                "WECHAT_AES_KEY must be the 43-character EncodingAESKey")
        if self.wechat_miniprogram_state not in ("developer", "trial", "formal"):
            raise SettingsError("WECHAT_MINIPROGRAM_STATE 应为 developer、trial 或 formal",
                                "WECHAT_MINIPROGRAM_STATE must be developer, trial or formal")
        for name in ("outbox_poll", "outbox_lease", "outbox_backoff", "outbox_backoff_max"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name.upper()} 应为正数（秒）",
                                    f"{name.upper()} must be a positive number of seconds")
        if self.binding_request_ttl < 60:
            raise SettingsError("BINDING_REQUEST_TTL 至少为 60 秒", "BINDING_REQUEST_TTL must be at least 60 seconds")
        if self.outbox_concurrency < 1 or self.outbox_max_attempts < 1:
            raise SettingsError("OUTBOX_CONCURRENCY 和 OUTBOX_MAX_ATTEMPTS 至少为 1",
                                "OUTBOX_CONCURRENCY and OUTBOX_MAX_ATTEMPTS must be at least 1")
        if self.slip_image_url_ttl < 1:
            raise SettingsError("SLIP_IMAGE_URL_TTL 应为正整数（秒）",
                                "SLIP_IMAGE_URL_TTL must be a positive number of seconds")
        for name in ("chat_check_timeout", "chat_notify_quiet"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"{name.upper()} 应为正数（秒）",
                                    f"{name.upper()} must be a positive number of seconds")
        if not 5 <= self.realtime_ticket_ttl <= 300:
            raise SettingsError("REALTIME_TICKET_TTL 应在 5 到 300 秒之间",
                                "REALTIME_TICKET_TTL must be between 5 and 300 seconds")
        if self.outbox_keep_done_days < 0:
            raise SettingsError("OUTBOX_KEEP_DONE_DAYS 应为 0（永久保留）或天数",
                                "OUTBOX_KEEP_DONE_DAYS must be 0 (keep forever) or a number of days")
        if self.console_idle_timeout < 60 or self.console_session_max < self.console_idle_timeout:
            raise SettingsError("CONSOLE_IDLE_TIMEOUT 至少为 60 秒，CONSOLE_SESSION_MAX 不得短于它",
                                "CONSOLE_IDLE_TIMEOUT must be at least 60 s, CONSOLE_SESSION_MAX at least as long")
        if self.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise SettingsError("LOG_LEVEL 应为 DEBUG、INFO、WARNING 或 ERROR",
                                "LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")
        if not self.embedded_db or self.wechat_api_base:
            # Production: secrets must be given, never generated.
            missing = [n for n, v in (("JWT_SECRET", self.jwt_secret), ("DATA_KEY", self.data_key),
                                      ("LOOKUP_KEY", self.lookup_key)) if not v]
            if missing and not self.embedded_db:
                raise SettingsError(f"DATABASE_URL 为 PostgreSQL 时必须设置 {'、'.join(missing)}",
                                    f"{', '.join(missing)} must be set when DATABASE_URL is PostgreSQL")

    def with_dev_secrets(self) -> Settings:
        """Embedded mode generates its secrets once and keeps them in DATA_DIR."""
        changes = {}
        if not self.jwt_secret:
            changes["jwt_secret"] = base64.urlsafe_b64encode(_dev_key(self.data_dir, "jwt.key")).decode()
        if not self.data_key:
            changes["data_key"] = _dev_key(self.data_dir, "data.key")
        if not self.lookup_key:
            changes["lookup_key"] = _dev_key(self.data_dir, "lookup.key")
        if not changes:
            return self
        from dataclasses import replace

        return replace(self, **changes)


ENV_DOC: list[tuple[str, str, str]] = [
    ("DATABASE_URL", "(SQLite file in DATA_DIR)", "`postgres://user@host/db` in production, or `sqlite:///path`"),
    ("REDIS_URL", "(in-process stand-in)", "`redis://host:6379/0`: shared token, locks, wake-ups, pub/sub"),
    ("REDIS_PREFIX", "`rc:`", "prefix of every Redis key this installation writes"),
    ("HOST", "`127.0.0.1`", "address to listen on"),
    ("PORT", "`8080`", "port to listen on"),
    ("PUBLIC_URL", "(http://HOST:PORT)", "external base URL used in links and QR image URLs"),
    ("DATA_DIR", "`./var`", "SQLite file, generated dev keys, attachments"),
    ("WECHAT_APPID", "`wx-sandbox-appid`", "mini-program AppID"),
    ("WECHAT_SECRET", "`sandbox-secret`", "mini-program AppSecret"),
    ("WECHAT_API_BASE", "(built-in sandbox)", "`https://api.weixin.qq.com` in production"),
    ("WECHAT_TIMEOUT", "`5`", "seconds for each WeChat call"),
    ("WECHAT_PUSH_TOKEN", "`sandbox-push-token`", "message-push Token"),
    ("WECHAT_AES_KEY", "(sandbox key)", "message-push EncodingAESKey (43 characters)"),
    ("WECHAT_TEMPLATE_APPROVAL", "`rc-referral-approval`",
     "subscribe-message template id: referrals awaiting approval, reminders, escalations"),
    ("WECHAT_TEMPLATE_PROGRESS", "`rc-referral-progress`", "subscribe-message template id: decisions and progress "
     "for doctors and patients"),
    ("WECHAT_TEMPLATE_ADMISSION", "`rc-admission-notice`", "subscribe-message template id: admission date, place and "
     "what to bring"),
    ("WECHAT_TEMPLATE_CHAT", "`rc-chat-unread`", "subscribe-message template id: unread chat messages of a "
     "consultation or ward round"),
    ("WECHAT_LONG_TERM_TEMPLATES", "(none)", "comma-separated template ids granted as long-term subscriptions "
     "(one accept, many sends)"),
    ("WECHAT_MINIPROGRAM_STATE", "`formal`", "mini-program version notifications open: developer, trial or formal"),
    ("JWT_SECRET", "(generated in DATA_DIR)", "HMAC key for access tokens; required with PostgreSQL"),
    ("ACCESS_TTL", "`900`", "access-token lifetime, seconds"),
    ("REFRESH_TTL", "`2592000`", "refresh-token lifetime, seconds"),
    ("INVITATION_TTL", "`604800`", "staff invitation lifetime, seconds"),
    ("BINDING_REQUEST_TTL", "`86400`", "seconds a patient-binding request (its QR) waits for a staff member's or the "
     "patient's confirmation"),
    ("SLIP_IMAGE_URL_TTL", "`600`", "lifetime of the signed slip image URLs (`qr_png_url`, ...), seconds"),
    ("DATA_KEY", "(generated in DATA_DIR)", "AES-256-GCM key for ID and phone numbers, 32 bytes base64url"),
    ("LOOKUP_KEY", "(generated in DATA_DIR)", "HMAC key for exact lookups of ID and phone numbers"),
    ("HIS_TIMEOUT", "`10`", "seconds for each HIS call"),
    ("EMBEDDED_HIS", "`true` (SQLite), `false` (PostgreSQL)",
     "mount the HIS simulator and use it for institutions without a front-end processor URL"),
    ("HIS_SIMULATOR_URL", "(none)", "with EMBEDDED_HIS off, a standalone simulator (`python -m his.simulator`, e.g. "
     "`http://127.0.0.1:8091/his-sim`) that institutions without a front-end processor URL use; for tests, demos "
     "and benchmarks with several processes"),
    ("SEED_DEMO", "`false`", "seed the demo consortium on start if the database is empty"),
    ("BACKGROUND_TASKS", "`true`", "run the token keeper and dispatcher inside this process"),
    ("EMBEDDED_DISPATCHER", "`true`", "with BACKGROUND_TASKS, run the outbox dispatcher inside `web` too; "
     "turn off when `worker` processes carry the jobs"),
    ("OUTBOX_POLL", "`2`", "seconds between job polls when no wake-up arrives (wake-ups come through Redis)"),
    ("OUTBOX_LEASE", "`120`", "seconds a claimed job stays with its worker; a dead worker's jobs are taken "
     "over after it"),
    ("OUTBOX_CONCURRENCY", "`32`", "jobs one dispatcher runs at the same time"),
    ("OUTBOX_MAX_ATTEMPTS", "`12`", "attempts before a failing job goes dead"),
    ("OUTBOX_BACKOFF", "`2`", "seconds before the first retry; doubles per attempt, with jitter"),
    ("OUTBOX_BACKOFF_MAX", "`3600`", "longest wait between two attempts, seconds"),
    ("OUTBOX_KEEP_DONE_DAYS", "`7`", "days finished jobs are kept before the dispatcher deletes them (dead jobs "
                                     "stay until retried); `0` keeps them forever"),
    ("CHAT_CHECK_TIMEOUT", "`2`", "seconds a chat text waits for WeChat's content check before it is delivered "
     "and re-checked in the background"),
    ("CHAT_NOTIFY_QUIET", "`300`", "seconds of a chat's quiet period: a participant who is not connected is told "
     "about new messages at most once per conversation per period"),
    ("REALTIME_TICKET_TTL", "`30`", "seconds a one-time WebSocket ticket (`POST /api/v1/realtime/ticket`) stays "
     "valid"),
    ("SPEEDUPS", "`false`", "`true`: uvloop as the event loop (Linux) and orjson for JSON responses instead of the "
     "standard library's (same output; not measurably faster here, see the benchmark section)"),
    ("MAX_BODY", "`1048576`", "largest request body accepted, bytes (larger: 413)"),
    ("CONSOLE_IDLE_TIMEOUT", "`1800`", "web console: seconds without a request before its session ends"),
    ("CONSOLE_SESSION_MAX", "`43200`", "web console: longest session, seconds, however active"),
    ("LOG_LEVEL", "`INFO`", "DEBUG, INFO, WARNING or ERROR"),
]
