"""Masked forms of ID numbers, phones and names for responses, notifications and logs (DESIGN §6).

Every function accepts any input, never raises, and for inputs shorter than the usual shape reveals
proportionally less, so a truncated or odd value is never shown in full."""

from __future__ import annotations

import re
import unicodedata

from security.idcard import normalise_phone

STAR = "*"
_LATIN_LETTERS = "A-Za-z\u00c0-\u024f"
_LATIN_WORD = re.compile(f"[{_LATIN_LETTERS}]+")
# Only a name made entirely of Latin words gets the per-word rule; anything mixed falls back to the whole-string rule.
_LATIN_NAME = re.compile(f"[{_LATIN_LETTERS}]+(?:[ '.\\-]+[{_LATIN_LETTERS}]+)*\\.?")


def _text(value: object) -> str:
    if value is None:
        return ""
    try:
        text = value if isinstance(value, str) else str(value)
        return "".join(unicodedata.normalize("NFKC", text).split())
    except Exception:  # a broken __str__ must not break a response or a log line
        return ""


def _keep_ends(text: str, head: int, tail: int) -> str:
    hidden = len(text) - head - tail
    return text[:head] + STAR * hidden + (text[len(text) - tail:] if tail else "")


def mask_id_number(value: object) -> str:
    """`3210**********123X`: first 4 and last 4 of 18; shorter values keep at most a quarter at each end."""
    text = _text(value).upper()
    keep = min(4, len(text) // 4)
    return _keep_ends(text, keep, keep)


def mask_phone(value: object) -> str:
    """`138****5678`: first 3 and last 4 of 11 or more; shorter values keep at most a fifth at each end."""
    text = normalise_phone(_text(value))
    if len(text) >= 11:
        return _keep_ends(text, 3, 4)
    keep = len(text) // 5
    return _keep_ends(text, keep, keep)


def mask_name(value: object) -> str:
    """`张*明`, `张*`, `欧**明`; Latin names keep each word's first letter (`J*** S****`)."""
    if value is None:
        return ""
    try:
        text = unicodedata.normalize("NFKC", value if isinstance(value, str) else str(value)).strip()
    except Exception:
        return ""
    if _LATIN_NAME.fullmatch(text):
        # Western names are several words; the last letter of a short word gives away too much.
        return _LATIN_WORD.sub(lambda m: m.group()[0] + STAR * (len(m.group()) - 1), text)
    text = "".join(text.split())
    if len(text) <= 1:
        return text
    if len(text) == 2:
        return text[0] + STAR
    return _keep_ends(text, 1, 1)
