"""Resident ID numbers (GB 11643-1999) and mainland mobile numbers: normalisation and validation.

Error messages are shown to users as they are, so they are in Chinese and say what is wrong."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from timeutil import china_today

# ISO 7064 MOD 11-2: weight i is 2^(17-i) mod 11; the remainder 0..10 indexes the check character.
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARACTERS = "10X98765432"

# Nobody alive was born before 1900; an earlier year is a typo, not a patient.
EARLIEST_BIRTH = date(1900, 1, 1)

# The first two digits are the province of GB/T 2260 (the address code's first level). 71 Taiwan, 81 Hong Kong and
# 82 Macao are GB/T 2260 codes; 83 is added because the residence permits of Taiwan residents (港澳台居民居住证)
# carry GB 11643 numbers with the address code 830000 and are accepted for real-name checks like resident IDs.
# 91 ("abroad") was dropped from GB/T 2260 long ago, and the 9-prefixed numbers of foreigners' permanent
# residence cards are another document with other rules: both are refused rather than half-validated.
PROVINCES = frozenset({
    "11", "12", "13", "14", "15",
    "21", "22", "23",
    "31", "32", "33", "34", "35", "36", "37",
    "41", "42", "43", "44", "45", "46",
    "50", "51", "52", "53", "54",
    "61", "62", "63", "64", "65",
    "71", "81", "82", "83",
})

# China has kept UTC+8 without daylight saving since 1991, so a fixed offset is exact and needs no tzdata.

_DIGITS17 = re.compile(r"[0-9]{17}")
_ID_SHAPE = re.compile(r"[0-9]{17}[0-9X]")
_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_PHONE_SEPARATORS = re.compile(r"[\s\-().]")


class InvalidIdNumber(ValueError):
    """A resident ID number that fails validation; `code` is stable, the message is for the user."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class InvalidPhone(ValueError):
    """A phone number that is not a mainland mobile number; `code` is stable, the message is for the user."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class IdNumber:
    number: str
    region_code: str
    birth_date: date
    gender: str  # "male" or "female"

    def age(self, on: date | None = None) -> int:
        """Age in whole years on the given day (today in China by default)."""
        on = on or china_today()
        before_birthday = (on.month, on.day) < (self.birth_date.month, self.birth_date.day)
        return on.year - self.birth_date.year - before_birthday


def normalise_id_number(value: str) -> str:
    """NFKC (full-width digits from Chinese input methods), drop all whitespace, upper-case the x."""
    return "".join(unicodedata.normalize("NFKC", value).split()).upper()


def check_digit(first17: str) -> str:
    """The MOD 11-2 check character for the first 17 digits of an ID number."""
    if not isinstance(first17, str) or not _DIGITS17.fullmatch(first17):
        raise ValueError("first17 must be 17 ASCII digits")
    total = sum(int(digit) * weight for digit, weight in zip(first17, WEIGHTS, strict=True))
    return CHECK_CHARACTERS[total % 11]


def parse_id_number(value: str, *, today: date | None = None) -> IdNumber:
    """Validate an 18-character ID number and read its parts; raises InvalidIdNumber."""
    if not isinstance(value, str):
        raise InvalidIdNumber("身份证号码应为文本", "type")
    number = normalise_id_number(value)
    if not number:
        raise InvalidIdNumber("请填写身份证号码", "empty")
    if len(number) != 18:
        raise InvalidIdNumber(f"身份证号码长度不是18位（实际{len(number)}位）", "length")
    if not _ID_SHAPE.fullmatch(number):
        raise InvalidIdNumber("身份证号码含有非法字符：前17位应为数字，最后一位为数字或X", "characters")
    if number[:2] not in PROVINCES:
        raise InvalidIdNumber(f"身份证号码的地区码无效：{number[:2]}不是省级行政区代码", "region")
    try:
        birth = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise InvalidIdNumber(f"身份证号码中的出生日期无效：{number[6:14]}不是真实的日期", "birth_date") from None
    if birth < EARLIEST_BIRTH:
        raise InvalidIdNumber(f"身份证号码中的出生日期无效：{birth.isoformat()}早于1900年", "birth_date")
    if birth > (today or china_today()):
        raise InvalidIdNumber("身份证号码中的出生日期晚于今天", "future_birth_date")
    if check_digit(number[:17]) != number[17]:
        raise InvalidIdNumber("身份证号码校验位错误，请核对号码是否输入有误", "check_digit")
    # The sequence code's parity carries the sex: odd for men, even for women.
    gender = "male" if int(number[16]) % 2 else "female"
    return IdNumber(number=number, region_code=number[:6], birth_date=birth, gender=gender)


def is_valid_id_number(value: object) -> bool:
    try:
        parse_id_number(value)  # type: ignore[arg-type]
    except InvalidIdNumber:
        return False
    return True


def make_id_number(region: str, birth: date, seq: int) -> str:
    """A well-formed ID number with the right check digit, for demo data and the HIS simulator.

    Only the structure is enforced; the plausibility bounds of parse_id_number (1900, today) are not."""
    if not isinstance(region, str) or not re.fullmatch(r"[0-9]{6}", region):
        raise ValueError("region must be 6 ASCII digits")
    if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq <= 999:
        raise ValueError("seq must be an integer from 0 to 999")
    # Not strftime: %Y is not zero-padded below year 1000 on glibc.
    first17 = f"{region}{birth.year:04d}{birth.month:02d}{birth.day:02d}{seq:03d}"
    return first17 + check_digit(first17)


def normalise_phone(value: str) -> str:
    """Drop spaces and separators and a +86 / 0086 / 86 country prefix; no validation."""
    phone = _PHONE_SEPARATORS.sub("", unicodedata.normalize("NFKC", value))
    if phone.startswith("+86"):
        return phone[3:]
    if phone.startswith("0086"):
        return phone[4:]
    # A bare 86 is only a prefix when what follows is a full mobile number (mobiles never start with 86).
    if len(phone) == 13 and phone.startswith("86"):
        return phone[2:]
    return phone


def validate_phone(value: str) -> str:
    """The normalised 11-digit mainland mobile number; raises InvalidPhone."""
    if not isinstance(value, str):
        raise InvalidPhone("手机号码应为文本", "type")
    phone = normalise_phone(value)
    if not phone:
        raise InvalidPhone("请填写手机号码", "empty")
    if phone.startswith("+"):
        raise InvalidPhone("仅支持中国大陆手机号码（+86）", "country")
    if not phone.isascii() or not phone.isdigit():
        raise InvalidPhone("手机号码含有非法字符，只能填写数字", "characters")
    if len(phone) != 11:
        raise InvalidPhone(f"手机号码应为11位数字（实际{len(phone)}位）", "length")
    if not _MOBILE.fullmatch(phone):
        raise InvalidPhone("手机号码格式不正确，应以13至19开头", "prefix")
    return phone
