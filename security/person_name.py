"""People's names as users type them (patients binding themselves, staff invitations): one rule, checked once.

The rule: surrounding whitespace is dropped and runs of inner whitespace become one space; what remains is
1 to 30 characters of letters of any script (汉字, Latin, Uyghur, ...), combining marks, single spaces and the
separators of transliterated and minority names (· • . ' -), with at least one letter. Control and invisible
characters (Unicode categories C*, line separators) are refused outright rather than stripped: a name that
carries one is not what its owner's ID card says."""

from __future__ import annotations

import unicodedata

MAX_LENGTH = 30
SEPARATORS = frozenset("·•・.'’- ")


def validate_person_name(value: str) -> str:
    """The name, normalised as above; ValueError with a Chinese message otherwise."""
    if any(unicodedata.category(ch)[0] == "C" or unicodedata.category(ch) in ("Zl", "Zp") for ch in value):
        raise ValueError("姓名含有控制字符或不可见字符")
    name = " ".join(value.split())
    if not name:
        raise ValueError("请填写姓名")
    if len(name) > MAX_LENGTH:
        raise ValueError(f"姓名不能超过 {MAX_LENGTH} 个字")
    if any(unicodedata.category(ch)[0] not in "LM" and ch not in SEPARATORS for ch in name):
        raise ValueError("姓名只能包含文字、空格和间隔号（·）")
    if not any(unicodedata.category(ch)[0] == "L" for ch in name):
        raise ValueError("姓名应包含文字")
    return name
