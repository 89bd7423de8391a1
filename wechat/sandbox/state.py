"""Everything the WeChat sandbox knows: credentials, tokens, login codes, templates, credits, messages, faults.

WeChat rules live here (who gets which errcode); `wechat.sandbox.app` only turns HTTP into calls on this
object. Openids known to the sandbox are those that were given a login code or a subscription credit, as a
real openid exists only once the user has opened the mini-program; anything else gets 40003."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from standin_state import DurableState
from wechat.sandbox.keywords import KEYWORD_TYPES, keyword_type, value_problem

TOKEN_TTL = 7200.0
CODE_TTL = 300.0
RENEW_EARLY = 300.0  # stable_token hands out a new token once the current one has less than this left
STATE_FILE = "wechat-sandbox.sqlite3"  # in DATA_DIR: what the embedded sandbox knows survives a restart
SCOPE = "sandbox"
KEY_SEPARATOR = "\t"  # between openid and template id in a subscription's key
COUNTERS = ("token_requests", "tokens_issued", "login_codes_issued", "sessions", "wxacodes_issued")
SCENE = re.compile(r"[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]{1,32}")

WECHAT_PATHS = (
    "/cgi-bin/stable_token",
    "/cgi-bin/token",
    "/sns/jscode2session",
    "/cgi-bin/message/subscribe/send",
    "/cgi-bin/message/custom/send",
    "/wxa/getwxacodeunlimit",
    "/wxa/business/getuserphonenumber",
    "/wxa/msg_sec_check",
)
# Text containing one of these is "risky" for msg_sec_check; tests and demos add more (POST /sandbox/risky-words).
DEFAULT_RISKY_WORDS = ("违规测试",)
SEC_CHECK_MAX_CHARS = 2500
RISKY_LABEL = 21000  # WeChat's "other" category; 100 is normal

# WeChat's own errmsg texts for the codes a fault is usually injected with.
ERRMSG = {
    -1: "system error",
    40001: "invalid credential, access_token is invalid or not latest",
    40003: "invalid openid",
    40029: "invalid code",
    40037: "invalid template_id",
    41030: "invalid page",
    42001: "access_token expired",
    43101: "user refuse to accept the msg",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
    40226: "high risk user",
    47003: "argument invalid!",
}

# customerServiceMessage.send: the message types and the fields each one needs.
CUSTOMER_MESSAGE_FIELDS = {
    "text": ("content",),
    "image": ("media_id",),
    "link": ("title", "description", "url", "thumb_url"),
    "miniprogrampage": ("title", "pagepath", "thumb_media_id"),
}

BUILTIN_TEMPLATES: dict[str, tuple[str, dict[str, Any]]] = {
    "sandbox-referral-approval": ("转诊审批提醒", {
        "character_string1": "character_string", "name2": "name", "thing3": "thing", "thing4": "thing",
        "time5": "time"}),
    "sandbox-referral-result": ("转诊结果通知", {
        "character_string1": "character_string", "phrase2": "phrase", "thing3": "thing", "time4": "time"}),
    "sandbox-admission-notice": ("入院通知", {
        "name1": "name", "thing2": "thing", "thing3": "thing", "date4": "date", "thing5": "thing"}),
}


VOIP_MAX_AGE = 300  # seconds a VoIP signature's timeStamp may differ from the sandbox's clock


class ApiError(Exception):
    """A WeChat error answer: errcode plus WeChat's errmsg."""

    def __init__(self, errcode: int, errmsg: str | None = None) -> None:
        self.errcode = errcode
        self.errmsg = errmsg or ERRMSG.get(errcode, "error")
        super().__init__(f"{errcode}: {self.errmsg}")


@dataclass
class Token:
    value: str
    expires_at: float


@dataclass
class LoginCode:
    openid: str
    unionid: str | None
    session_key: str
    expires_at: float
    used: bool = False


@dataclass
class PhoneCode:
    """What a getPhoneNumber button tap gives the mini-program: a single-use code for the user's phone."""

    phone: str
    country_code: str
    expires_at: float
    used: bool = False


@dataclass
class Template:
    template_id: str
    title: str
    fields: dict[str, str]
    enums: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Credit:
    count: int = 0
    long_term: bool = False


@dataclass
class Fault:
    errcode: int | None
    errmsg: str | None
    delay: float
    remaining: int


class SandboxState:
    def __init__(self, appid: str, secret: str, *,
                 token_ttl: float = TOKEN_TTL, code_ttl: float = CODE_TTL, token_overlap: float = 0.0,
                 clock: Callable[[], float] = time.time) -> None:
        """`token_overlap` keeps a replaced token valid that long; 0 rejects it at once with 40001."""
        self.appid = appid
        self.secret = secret
        self.token_ttl = token_ttl
        self.code_ttl = code_ttl
        self.token_overlap = token_overlap
        self._clock = clock
        self._durable: DurableState | None = None
        self.reset()

    # -- the state file ------------------------------------------------------------------------------------

    def open_state(self, data_dir: Path) -> None:
        """Keep what the sandbox knows (tokens, openids, templates, subscriptions, messages) in `data_dir` from
        now on, starting from what it holds, so a restarted demo keeps its subscriptions; faults stay in memory."""
        durable = DurableState.open(data_dir / STATE_FILE)
        if durable is None:
            return
        if durable.has(SCOPE):
            meta = durable.load(SCOPE, "meta")["meta"]
            self._offset = meta["offset"]
            self._tokens = {kind: Token(**t) for kind, t in meta["tokens"].items()}
            self._retired = meta["retired"]
            for name in COUNTERS:
                setattr(self, name, meta[name])
            self._codes = {code: LoginCode(**c) for code, c in durable.load(SCOPE, "code").items()}
            self.known_openids = set(durable.load(SCOPE, "openid"))
            registered = self.templates  # what this process registered before (the app's templates) wins
            self.templates = {tid: Template(**t) for tid, t in durable.load(SCOPE, "template").items()}
            self.templates.update(registered)
            self._credits = {tuple(key.split(KEY_SEPARATOR, 1)): Credit(**c)  # type: ignore[misc]
                             for key, c in durable.load(SCOPE, "credit").items()}
            self._messages = list(durable.load(SCOPE, "message").values())
            self._durable = durable
            with durable.batch():
                for template in registered.values():
                    self._save_template(template)
        else:
            self._durable = durable
            self._save_all()

    def close_state(self) -> None:
        if self._durable is not None:
            self._durable.close()
            self._durable = None

    def _save_all(self) -> None:
        if self._durable is None:
            return
        with self._durable.batch():
            self._durable.clear(SCOPE)
            self._save_meta()
            for code, login in self._codes.items():
                self._durable.put(SCOPE, "code", code, asdict(login))
            for openid in self.known_openids:
                self._durable.put(SCOPE, "openid", openid, True)
            for template in self.templates.values():
                self._save_template(template)
            for (openid, template_id), credit in self._credits.items():
                self._save_credit(openid, template_id, credit)
            for message in self._messages:
                self._save_message(message)

    def _save_meta(self) -> None:
        if self._durable is not None:
            self._durable.put(SCOPE, "meta", "meta", {
                "offset": self._offset, "tokens": {kind: asdict(t) for kind, t in self._tokens.items()},
                "retired": self._retired, **{name: getattr(self, name) for name in COUNTERS}})

    def _save_openid(self, openid: str) -> None:
        if self._durable is not None:
            self._durable.put(SCOPE, "openid", openid, True)

    def _save_template(self, template: Template) -> None:
        if self._durable is not None:
            self._durable.put(SCOPE, "template", template.template_id, asdict(template))

    def _save_credit(self, openid: str, template_id: str, credit: Credit | None) -> None:
        if self._durable is None:
            return
        key = f"{openid}{KEY_SEPARATOR}{template_id}"
        if credit is None:
            self._durable.delete(SCOPE, "credit", key)
        else:
            self._durable.put(SCOPE, "credit", key, asdict(credit))

    def _save_message(self, message: dict[str, Any]) -> None:
        if self._durable is not None:
            self._durable.put(SCOPE, "message", f"{message['id']:012d}", message)

    def reset(self) -> None:
        """Forget everything but the credentials and the built-in templates; the clock is real time again."""
        self._offset = 0.0
        self._tokens: dict[str, Token] = {}  # by kind: "stable" and "plain" tokens are independent in WeChat
        self._retired: dict[str, float] = {}  # replaced token -> valid until (only with token_overlap)
        self._codes: dict[str, LoginCode] = {}
        self._phone_codes: dict[str, PhoneCode] = {}
        self.known_openids: set[str] = set()
        self.templates: dict[str, Template] = {}
        for template_id, (title, fields) in BUILTIN_TEMPLATES.items():
            self.register_template(template_id, fields, title=title)
        self._credits: dict[tuple[str, str], Credit] = {}
        self._messages: list[dict[str, Any]] = []
        self._faults: dict[str, deque[Fault]] = {}
        self.risky_words: set[str] = set(DEFAULT_RISKY_WORDS)
        self.calls: dict[str, int] = {}
        self.token_requests = 0
        self.tokens_issued = 0
        self.login_codes_issued = 0
        self.sessions = 0
        self.wxacodes_issued = 0
        self.phone_numbers_read = 0
        self.session_keys: dict[str, str] = {}  # openid -> session_key of its newest login
        self._voip_nonces: set[tuple[str, str]] = set()
        self.voip_rooms: dict[str, list[str]] = {}  # groupId -> openids who joined
        self.sec_checks = 0
        self._save_all()

    # -- clock ---------------------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the sandbox clock forward (expires login codes and tokens without waiting)."""
        if seconds < 0:
            raise ValueError("时间只能向前拨")
        self._offset += seconds
        self._save_meta()
        return self.now()

    # -- access tokens -------------------------------------------------------------------------------------

    def check_credentials(self, appid: Any, secret: Any) -> None:
        if appid != self.appid:
            raise ApiError(40013, "invalid appid")
        if secret != self.secret:
            raise ApiError(40125, "invalid appsecret")

    def stable_token(self, appid: Any, secret: Any, *, force_refresh: bool = False) -> Token:
        """/cgi-bin/stable_token: the current token until it is close to expiry, unless forced."""
        self.check_credentials(appid, secret)
        self.token_requests += 1
        current = self._tokens.get("stable")
        if current and not force_refresh and current.expires_at - self.now() > RENEW_EARLY:
            self._save_meta()
            return current
        return self._issue("stable")

    def plain_token(self, appid: Any, secret: Any) -> Token:
        """/cgi-bin/token: every call issues a new token and retires the previous one."""
        self.check_credentials(appid, secret)
        self.token_requests += 1
        return self._issue("plain")

    def rotate_token(self) -> None:
        """Someone else force-refreshed the stable token: the one our processes hold now gets 40001."""
        self._issue("stable")

    def _issue(self, kind: str) -> Token:
        now = self.now()
        old = self._tokens.get(kind)
        if old is not None and self.token_overlap > 0:
            self._retired[old.value] = min(old.expires_at, now + self.token_overlap)
        token = Token(secrets.token_urlsafe(96), now + self.token_ttl)
        self._tokens[kind] = token
        self.tokens_issued += 1
        self._save_meta()
        return token

    def check_token(self, value: str | None) -> None:
        if not value:
            raise ApiError(41001, "access_token missing")
        now = self.now()
        for token in self._tokens.values():
            if secrets.compare_digest(token.value, value):
                if token.expires_at <= now:
                    raise ApiError(42001)
                return
        if self._retired.get(value, 0) > now:
            return
        raise ApiError(40001)

    # -- login -----------------------------------------------------------------------------------------------

    def mint_login_code(self, openid: str, unionid: str | None = None) -> str:
        """What wx.login would give this user: a single-use code valid for code_ttl seconds."""
        code = secrets.token_hex(16)
        login = self._codes[code] = LoginCode(openid, unionid, secrets.token_urlsafe(16), self.now() + self.code_ttl)
        self.known_openids.add(openid)
        self.login_codes_issued += 1
        if self._durable is not None:
            with self._durable.batch():
                self._durable.put(SCOPE, "code", code, asdict(login))
                self._save_openid(openid)
                self._save_meta()
        return code

    def code2session(self, appid: Any, secret: Any, code: Any, grant_type: Any) -> LoginCode:
        self.check_credentials(appid, secret)
        if grant_type != "authorization_code":
            raise ApiError(40002, "invalid grant_type")
        if not code:
            raise ApiError(41008, "missing code")
        login = self._codes.get(code)
        if login is None:
            raise ApiError(40029, "invalid code")
        if login.used:
            raise ApiError(40029, "invalid code, code been used")
        if login.expires_at <= self.now():
            raise ApiError(40029, "invalid code, code expired")
        login.used = True
        self.sessions += 1
        self.session_keys[login.openid] = login.session_key
        if self._durable is not None:
            with self._durable.batch():
                self._durable.put(SCOPE, "code", code, asdict(login))
                self._save_meta()
        return login

    # -- phone numbers (getPhoneNumber) -----------------------------------------------------------------------

    def mint_phone_code(self, phone: str, country_code: str = "86") -> str:
        """What the getPhoneNumber button gives a user whose WeChat-verified number is `phone` (no country
        code): a single-use code, valid for code_ttl seconds like a login code."""
        if not re.fullmatch(r"[0-9]{5,15}", phone or "") or not re.fullmatch(r"[0-9]{1,4}", country_code or ""):
            raise ValueError("phone 应为不含国家码的数字手机号，country_code 应为数字国家码")
        code = secrets.token_hex(16)
        self._phone_codes[code] = PhoneCode(phone, country_code, self.now() + self.code_ttl)
        return code

    def phone_number(self, code: Any) -> dict[str, Any]:
        """phonenumber.getPhoneNumber: the phone_info of a fresh code; 40029 for an unknown, used or expired
        code (WeChat's answer to all three), 47001 for a body without a code."""
        if not isinstance(code, str) or not code:
            raise ApiError(47001, "data format error: code missing")
        issued = self._phone_codes.get(code)
        if issued is None or issued.used or issued.expires_at <= self.now():
            raise ApiError(40029, "invalid code")
        issued.used = True
        self.phone_numbers_read += 1
        full = issued.phone if issued.country_code == "86" else f"+{issued.country_code}{issued.phone}"
        return {"phoneNumber": full, "purePhoneNumber": issued.phone, "countryCode": issued.country_code,
                "watermark": {"timestamp": int(self.now()), "appid": self.appid}}

    # -- multi-person VoIP -----------------------------------------------------------------------------------

    def join_voip(self, openid: str, group_id: str, nonce_str: str, time_stamp: int, signature: str) -> list[str]:
        """What wx.joinVoIPChat checks: the signature, made with the user's current session_key (a newer login
        makes older signatures invalid), fresh (within VOIP_MAX_AGE seconds) and not replayed (nonceStr once per
        user). Returns who is in the room."""
        session_key = self.session_keys.get(openid)
        if session_key is None:
            raise ValueError("该用户尚未登录（无 session_key）")
        # Computed here, not with wechat.voip: the sandbox stands in for WeChat and must not share our signer.
        message = "".join(sorted([self.appid, group_id, nonce_str, str(time_stamp)]))
        expected = hmac.new(session_key.encode(), message.encode(), hashlib.sha256).hexdigest()
        if not secrets.compare_digest(expected, signature):
            raise ValueError("签名校验失败")
        if abs(self.now() - time_stamp) > VOIP_MAX_AGE:
            raise ValueError("签名已过期")
        if (openid, nonce_str) in self._voip_nonces:
            raise ValueError("签名已被使用")
        self._voip_nonces.add((openid, nonce_str))
        members = self.voip_rooms.setdefault(group_id, [])
        if openid not in members:
            members.append(openid)
        return list(members)

    # -- templates and credits ---------------------------------------------------------------------------------

    def register_template(self, template_id: str, fields: dict[str, Any] | list[str], *, title: str = "") -> Template:
        """`fields` maps keyword to type ("thing", ...) or to {"type": "enum", "values": [...]}; a plain list of
        keywords takes each type from its name, as WeChat names them (thing1, time2, ...)."""
        if not template_id or not fields:
            raise ValueError("template_id 和 fields 不能为空")
        if isinstance(fields, list):
            fields = {str(keyword): keyword_type(str(keyword)) for keyword in fields}
        types: dict[str, str] = {}
        enums: dict[str, list[str]] = {}
        for keyword, spec in fields.items():
            kind = spec.get("type") if isinstance(spec, dict) else spec
            if kind not in KEYWORD_TYPES:
                raise ValueError(f"关键词 {keyword} 的类型 {kind!r} 不是微信支持的类型")
            if kind == "enum":
                values = spec.get("values") if isinstance(spec, dict) else None
                if not values or not all(isinstance(v, str) for v in values):
                    raise ValueError(f"枚举关键词 {keyword} 需要 values 列表")
                enums[keyword] = list(values)
            types[keyword] = kind
        template = Template(template_id, title, types, enums)
        self.templates[template_id] = template
        self._save_template(template)
        return template

    def grant(self, openid: str, template_id: str, *, count: int = 0, long_term: bool = False) -> Credit:
        """The user accepted `template_id` in wx.requestSubscribeMessage `count` times (or for the long term)."""
        if template_id not in self.templates:
            raise ValueError(f"模板 {template_id} 未在沙箱中登记")
        credit = self._credits.setdefault((openid, template_id), Credit())
        credit.count += count
        credit.long_term = credit.long_term or long_term
        self.known_openids.add(openid)
        if self._durable is not None:
            with self._durable.batch():
                self._save_credit(openid, template_id, credit)
                self._save_openid(openid)
        return credit

    def revoke(self, openid: str, template_id: str) -> None:
        """The user switched the subscription off (subscribe_msg_change_event reject)."""
        self._credits.pop((openid, template_id), None)
        self._save_credit(openid, template_id, None)

    def credits(self, openid: str) -> dict[str, Credit]:
        return {tid: c for (oid, tid), c in self._credits.items() if oid == openid}

    # -- sending ------------------------------------------------------------------------------------------------

    def _check_openid(self, touser: Any) -> str:
        if not isinstance(touser, str) or touser not in self.known_openids:
            raise ApiError(40003)
        return touser

    def send_subscribe(self, body: dict[str, Any]) -> int:
        """subscribeMessage.send: every check comes first, so a refused message never spends a credit."""
        touser = self._check_openid(body.get("touser"))
        template = self.templates.get(str(body.get("template_id")))
        if template is None:
            raise ApiError(40037)
        page = body.get("page")
        if page is not None and (not isinstance(page, str) or page.startswith("/") or " " in page):
            raise ApiError(41030)
        if body.get("miniprogram_state", "formal") not in ("developer", "trial", "formal"):
            raise ApiError(47003, "argument invalid! miniprogram_state")
        if body.get("lang", "zh_CN") not in ("zh_CN", "en_US", "zh_HK", "zh_TW"):
            raise ApiError(47003, "argument invalid! lang")
        data = body.get("data")
        if not isinstance(data, dict):
            raise ApiError(47001, "data format error")
        for keyword in data:
            if keyword not in template.fields:
                raise ApiError(47003, f"argument invalid! data.{keyword} is not a keyword of the template")
        for keyword, kind in template.fields.items():
            item = data.get(keyword)
            value = item.get("value") if isinstance(item, dict) else None
            problem = "is empty" if not isinstance(value, str) else value_problem(kind, value,
                                                                                  template.enums.get(keyword))
            if problem:
                raise ApiError(47003, f"argument invalid! data.{keyword}.value {problem}")
        credit = self._credits.get((touser, template.template_id))
        if credit is None or (not credit.long_term and credit.count <= 0):
            raise ApiError(43101)
        if not credit.long_term:
            credit.count -= 1
            self._save_credit(touser, template.template_id, credit)
        message = self._record("subscribe", touser, template_id=template.template_id, page=page,
                               data={k: v["value"] for k, v in data.items()},
                               miniprogram_state=body.get("miniprogram_state", "formal"),
                               lang=body.get("lang", "zh_CN"))
        return message["msgid"]

    def send_customer_service(self, body: dict[str, Any]) -> None:
        """customerServiceMessage.send (the 48-hour reply window is not modelled)."""
        touser = self._check_openid(body.get("touser"))
        msgtype = str(body.get("msgtype"))
        required = CUSTOMER_MESSAGE_FIELDS.get(msgtype)
        if required is None:
            raise ApiError(40008, "invalid message type")
        payload = body.get(msgtype)
        if not isinstance(payload, dict):
            raise ApiError(47001, "data format error")
        for name in required:
            if not isinstance(payload.get(name), str) or not payload[name]:
                if msgtype == "text":
                    raise ApiError(44004, "empty content")
                raise ApiError(47001, f"data format error: {msgtype}.{name} missing")
        self._record("customer_service", touser, msgtype=msgtype, payload=payload)

    def msg_sec_check(self, body: dict[str, Any]) -> dict[str, Any]:
        """security.msgSecCheck v2: only version 2 with an openid the sandbox knows; text containing a risky word
        is "risky", anything else "pass"."""
        if body.get("version") != 2:
            raise ApiError(47003, "argument invalid! version")
        if body.get("scene") not in (1, 2, 3, 4):
            raise ApiError(47003, "argument invalid! scene")
        self._check_openid(body.get("openid"))
        content = body.get("content")
        if not isinstance(content, str) or not content:
            raise ApiError(47001, "data format error")
        if len(content) > SEC_CHECK_MAX_CHARS:
            raise ApiError(47003, "argument invalid! content too long")
        self.sec_checks += 1
        hit = next((word for word in sorted(self.risky_words) if word in content), None)
        verdict = {"suggest": "risky", "label": RISKY_LABEL} if hit else {"suggest": "pass", "label": 100}
        detail = {"strategy": "keyword", "errcode": 0, **verdict, **({"keyword": hit, "level": 90} if hit else {})}
        return {"errcode": 0, "errmsg": "ok", "trace_id": secrets.token_hex(12), "result": verdict,
                "detail": [detail]}

    def add_risky_word(self, word: str) -> None:
        self.risky_words.add(word)

    def check_wxacode(self, body: dict[str, Any]) -> tuple[str, str, int]:
        """wxacode.getUnlimited arguments -> (scene, page, width), or the error WeChat gives."""
        scene = body.get("scene")
        if not isinstance(scene, str) or not SCENE.fullmatch(scene):
            raise ApiError(40169, "invalid length for scene, or the data is not json string")
        page = body.get("page") or "pages/index/index"
        if not isinstance(page, str) or page.startswith("/") or "?" in page or " " in page:
            raise ApiError(41030)
        width = body.get("width", 430)
        if not isinstance(width, int) or isinstance(width, bool) or not 280 <= width <= 1280:
            raise ApiError(40097, "invalid args: width must be 280-1280")
        if body.get("env_version", "release") not in ("release", "trial", "develop"):
            raise ApiError(40097, "invalid args: env_version")
        self.wxacodes_issued += 1
        self._save_meta()
        return scene, page, width

    def _record(self, kind: str, touser: str, **fields: Any) -> dict[str, Any]:
        message = {"id": len(self._messages) + 1, "msgid": secrets.randbelow(2**53), "kind": kind, "touser": touser,
                   "time": datetime.fromtimestamp(self.now(), UTC).isoformat(), **fields}
        self._messages.append(message)
        self._save_message(message)
        return message

    def messages(self, *, touser: str | None = None, kind: str | None = None, after: int = 0) -> list[dict]:
        return [m for m in self._messages if m["id"] > after
                and (touser is None or m["touser"] == touser) and (kind is None or m["kind"] == kind)]

    # -- faults and counters --------------------------------------------------------------------------------------

    def add_fault(self, endpoint: str, *, errcode: int | None = None, errmsg: str | None = None,
                  delay: float = 0.0, count: int = 1) -> str:
        """Make the next `count` calls of `endpoint` wait `delay` seconds and/or fail with `errcode`."""
        path = "/" + endpoint.lstrip("/")
        if path not in WECHAT_PATHS:
            raise ValueError(f"未知的接口 {endpoint}，可选: {', '.join(WECHAT_PATHS)}")
        if errcode is None and delay <= 0:
            raise ValueError("需要 errcode 或 delay")
        if count < 1 or delay < 0:
            raise ValueError("count 至少为 1，delay 不能为负数")
        self._faults.setdefault(path, deque()).append(Fault(errcode, errmsg, delay, count))
        return path

    def take_fault(self, path: str) -> Fault | None:
        queue = self._faults.get(path)
        if not queue:
            return None
        fault = queue[0]
        fault.remaining -= 1
        if fault.remaining <= 0:
            queue.popleft()
        return fault

    def count_call(self, path: str) -> None:
        self.calls[path] = self.calls.get(path, 0) + 1

    def stats(self) -> dict[str, Any]:
        return {
            "token_requests": self.token_requests,
            "tokens_issued": self.tokens_issued,
            "login_codes_issued": self.login_codes_issued,
            "sessions": self.sessions,
            "messages": len(self._messages),
            "wxacodes_issued": self.wxacodes_issued,
            "phone_numbers_read": self.phone_numbers_read,
            "sec_checks": self.sec_checks,
            "calls": dict(self.calls),
            "pending_faults": {path: sum(f.remaining for f in q) for path, q in self._faults.items() if q},
            "now": datetime.fromtimestamp(self.now(), UTC).isoformat(),
        }
