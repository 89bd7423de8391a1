"""Subscribe-message keyword types and their value rules (DOMAIN §4), as WeChat checks them on send."""

from __future__ import annotations

import re
import unicodedata

CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_DATE = r"(?:\d{4}年\d{1,2}月\d{1,2}日|\d{4}[-/.]\d{1,2}[-/.]\d{1,2})"
_CLOCK = r"(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?"
_TIME_ONE = rf"(?:{_DATE}\s*)?{_CLOCK}"
_DATE_ONE = rf"{_DATE}(?:\s*{_CLOCK})?"
_SYMBOLS = r"!-/:-@\[-`{-~"  # printable ASCII that is neither letter, digit nor space

PATTERNS: dict[str, re.Pattern[str]] = {
    "number": re.compile(r"-?\d+(?:\.\d+)?"),
    "letter": re.compile(r"[A-Za-z]{1,32}"),
    "symbol": re.compile(rf"[{_SYMBOLS}]{{1,5}}"),
    "character_string": re.compile(rf"[0-9A-Za-z{_SYMBOLS}]{{1,32}}"),
    "time": re.compile(rf"{_TIME_ONE}(?:\s*~\s*{_TIME_ONE})?"),
    "date": re.compile(rf"{_DATE_ONE}(?:\s*~\s*{_DATE_ONE})?"),
    "amount": re.compile(r"[¥￥$€£]?\d{1,10}(?:\.\d{1,2})?元?"),
    "phone_number": re.compile(rf"[0-9{_SYMBOLS}]{{1,17}}"),
    "name": re.compile(rf"[{CJK}·]{{1,10}}|[A-Za-z][A-Za-z .'-]{{0,19}}"),
    "phrase": re.compile(rf"[{CJK}]{{1,5}}"),
}
MAX_LENGTH = {"thing": 20, "car_number": 8}
KEYWORD_TYPES = frozenset(PATTERNS) | frozenset(MAX_LENGTH) | {"enum"}


def keyword_type(keyword: str) -> str | None:
    """`thing1` -> `thing`: WeChat names each keyword after its type plus a number."""
    base = keyword.rstrip("0123456789")
    return base if base in KEYWORD_TYPES else None


def value_problem(kind: str, value: str, allowed: list[str] | None = None) -> str | None:
    """Why `value` is not valid for a keyword of type `kind`, or None when it is."""
    if not value:
        return "is empty"
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in value):
        return "contains a newline or control character"
    if kind == "enum":
        return None if allowed and value in allowed else "is not one of the allowed values"
    if kind in MAX_LENGTH:
        limit = MAX_LENGTH[kind]
        return None if len(value) <= limit else f"is longer than {limit} characters"
    if not PATTERNS[kind].fullmatch(value):
        return f"is not a valid {kind}"
    if kind == "number" and sum(ch.isdigit() for ch in value) > 32:
        return "has more than 32 digits"
    return None
