"""Subscribe-message templates: our fields mapped onto WeChat keyword types, cut to their limits (DOMAIN §4).

Each template is one row of TEMPLATES: the keywords it has and their WeChat types. Its id comes from settings
(`WECHAT_TEMPLATE_*`), so production can use the ids of the templates picked in the WeChat console; the
embedded sandbox registers the same ids and keyword types at start-up (`notifications.setup`).

Values are fitted, never rejected: control characters and newlines become spaces, over-long text is cut with
an ellipsis inside the limit, types with a character set (`phrase`, `character_string`, `name`) keep only the
characters WeChat accepts, and times and dates take WeChat's formats in China time.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from settings import Settings
from timeutil import CHINA_TZ, china_time, utcnow

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_SYMBOLS = r"!-/:-@\[-`{-~"  # printable ASCII that is neither letter, digit nor space
_NOT_CHARACTER_STRING = re.compile(rf"[^0-9A-Za-z{_SYMBOLS}]")
_NOT_CJK = re.compile(rf"[^{CJK}]")
_NOT_CJK_NAME = re.compile(rf"[^{CJK}·]")
_NOT_LATIN_NAME = re.compile(r"[^A-Za-z .'-]")
_SPACES = re.compile(r"\s+")
# Punctuation that looks broken right before an ellipsis.
_TRAILING = " ,.;:!?、，。；：！？·-—（(《【"

LIMITS = {"thing": 20, "character_string": 32, "phrase": 5, "name": 10, "letter": 32, "number": 32,
          "phone_number": 17, "car_number": 8}
EMPTY = {"thing": "无", "phrase": "无", "character_string": "-", "name": "未知", "number": "0"}


@dataclass(frozen=True)
class Template:
    key: str
    title: str
    setting: str  # the Settings attribute holding this template's id
    keywords: dict[str, str]  # keyword -> WeChat keyword type, in display order


APPROVAL = Template("approval", "转诊审批提醒", "wechat_template_approval", {
    "character_string1": "character_string",  # 转诊编号
    "thing2": "thing",  # 患者 (masked)
    "thing3": "thing",  # 转出机构
    "thing4": "thing",  # 初步诊断
    "time5": "time",  # 提交时间
    "thing6": "thing",  # 备注: deadline, overdue, escalation
})
PROGRESS = Template("progress", "转诊进度通知", "wechat_template_progress", {
    "character_string1": "character_string",  # 转诊编号
    "thing2": "thing",  # 患者 (masked)
    "phrase3": "phrase",  # 结果: 已接收, 已拒绝, ...
    "thing4": "thing",  # 处理机构
    "thing5": "thing",  # 说明 / 下一步
    "time6": "time",  # 处理时间
})
ADMISSION = Template("admission", "入院通知", "wechat_template_admission", {
    "thing1": "thing",  # 患者 (masked)
    "thing2": "thing",  # 入院医院
    "thing3": "thing",  # 科室和病区
    "date4": "date",  # 入院日期
    "thing5": "thing",  # 携带材料 / 提示
})
CHAT = Template("chat", "会诊消息提醒", "wechat_template_chat", {
    "thing1": "thing",  # 会话: 云会诊 / 远程查房
    "thing2": "thing",  # 最新发言人 (staff name and institution; never the message text)
    "number3": "number",  # 未读条数
    "time4": "time",  # 最新消息时间
})
TEMPLATES: dict[str, Template] = {t.key: t for t in (APPROVAL, PROGRESS, ADMISSION, CHAT)}


def template_id(settings: Settings, key: str) -> str:
    return getattr(settings, TEMPLATES[key].setting)


def template_by_id(settings: Settings, value: str) -> Template | None:
    """Which of our templates `value` is configured as, or None for an id we do not use."""
    return next((t for t in TEMPLATES.values() if template_id(settings, t.key) == value), None)


def long_term_ids(settings: Settings) -> frozenset[str]:
    return frozenset(part.strip() for part in settings.wechat_long_term_templates.split(",") if part.strip())


def sandbox_fields(template: Template) -> dict[str, str]:
    """The template as the sandbox's POST /sandbox/templates takes it (a standalone sandbox needs this too)."""
    return dict(template.keywords)


# -- fitting values -----------------------------------------------------------------------------------------


def clean(value: Any) -> str:
    """One line of text: format characters dropped, control characters and line breaks turned into spaces."""
    text = "" if value is None else str(value)
    out = []
    for ch in text:
        category = unicodedata.category(ch)
        if category == "Cf":
            continue
        out.append(" " if category in ("Cc", "Zl", "Zp") or ch.isspace() else ch)
    return _SPACES.sub(" ", "".join(out)).strip()


def truncate(text: str, limit: int, ellipsis: str = "…") -> str:
    """`text` if it fits, else its head and an ellipsis, together within `limit` characters."""
    if len(text) <= limit:
        return text
    head = text[:limit - len(ellipsis)].rstrip(_TRAILING)
    return head + ellipsis


def _as_datetime(value: Any) -> datetime | date | None:
    if isinstance(value, (datetime, date)):
        return value
    try:
        return datetime.fromisoformat(clean(value)) if value else None
    except ValueError:
        return None


def format_time(value: Any) -> str:
    """24-hour time with its date, in China time: `2026-11-26 09:30` (a value that is no time: now)."""
    at = _as_datetime(value)
    if not isinstance(at, datetime):
        at = datetime.combine(at, datetime.min.time(), CHINA_TZ) if isinstance(at, date) else utcnow()
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return china_time(at).strftime("%Y-%m-%d %H:%M")


def format_date(value: Any) -> str:
    """`2026年11月28日` (a value that is no date: today)."""
    day = _as_datetime(value)
    if isinstance(day, datetime):
        day = china_time(day if day.tzinfo else day.replace(tzinfo=UTC)).date()
    if day is None:
        day = china_time(utcnow()).date()
    return f"{day.year}年{day.month}月{day.day}日"


def fit(kind: str, value: Any) -> str:
    """`value` as a valid value of a keyword of type `kind`."""
    # A time or date keyword cannot say "none": the callers always have one; junk becomes now.
    if kind == "time":
        return format_time(value)
    if kind == "date":
        return format_date(value)
    text = clean(value)
    if kind == "character_string":
        text = _NOT_CHARACTER_STRING.sub("", text)
        return truncate(text, LIMITS[kind], "...") or EMPTY[kind]
    if kind == "phrase":
        # Only CJK is allowed, so there is no room for an ellipsis: the head of the phrase it is.
        return _NOT_CJK.sub("", text)[:LIMITS[kind]] or EMPTY[kind]
    if kind == "name":
        cjk = _NOT_CJK_NAME.sub("", text)
        if cjk:
            return cjk[:LIMITS["name"]]
        latin = _NOT_LATIN_NAME.sub("", text).strip()
        return latin[:20].strip() if latin and latin[0].isalpha() else EMPTY["name"]
    if kind == "number":
        match = re.search(r"-?\d+(?:\.\d+)?", text)
        return match.group()[:LIMITS[kind]] if match else EMPTY[kind]
    if kind in LIMITS:
        return truncate(text, LIMITS[kind]) or EMPTY.get(kind, "-")
    return text or "-"


def render(template: Template, values: dict[str, Any]) -> dict[str, str]:
    """Every keyword of `template`, fitted; a keyword without a value says so rather than being left out."""
    unknown = set(values) - set(template.keywords)
    if unknown:
        raise KeyError(f"template {template.key} has no keywords {sorted(unknown)}")
    return {keyword: fit(kind, values.get(keyword)) for keyword, kind in template.keywords.items()}


def detail_page(public_id: object) -> str:
    """The mini-program page of a referral."""
    return f"pages/referral/detail?id={public_id}"


def slip_page(public_id: object) -> str:
    """The patient's admission slip (the QR shown at the admission desk)."""
    return f"pages/referral/slip?id={public_id}"
