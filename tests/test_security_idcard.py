"""Resident ID numbers (GB 11643, ISO 7064 MOD 11-2) and mainland mobile numbers."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from security.idcard import (
    PROVINCES,
    IdNumber,
    InvalidIdNumber,
    InvalidPhone,
    check_digit,
    is_valid_id_number,
    make_id_number,
    parse_id_number,
    validate_phone,
)

TODAY = date(2025, 6, 1)
regions = st.builds(lambda province, rest: province + rest, st.sampled_from(sorted(PROVINCES)),
                    st.from_regex(r"[0-9]{4}", fullmatch=True))
births = st.dates(min_value=date(1900, 1, 1), max_value=TODAY)
sequences = st.integers(min_value=0, max_value=999)
first17s = st.from_regex(r"[0-9]{17}", fullmatch=True)


def test_check_digit_of_the_domain_test_values():
    assert check_digit("11010519491231002") == "X"
    assert check_digit("44052418800101001") == "4"


@pytest.mark.parametrize("bad", ["1101051949123100", "110105194912310021", "1101051949123100A",
                                 "１１０１０５１９４９１２３１００２"])
def test_check_digit_needs_17_ascii_digits(bad):
    with pytest.raises(ValueError):
        check_digit(bad)


def test_parse_known_good_number():
    parsed = parse_id_number("11010519491231002X", today=TODAY)
    assert parsed == IdNumber(number="11010519491231002X", region_code="110105",
                              birth_date=date(1949, 12, 31), gender="female")


# Full-width characters and the Roman numeral Ⅹ come from Chinese input methods; NFKC maps them to ASCII.
@pytest.mark.parametrize("spelling", ["11010519491231002x", " 110105 19491231 002X\n",
                                      "１１０１０５１９４９１２３１００２ｘ", "11010519491231002Ⅹ"])
def test_lowercase_x_spaces_and_full_width_input_are_normalised(spelling):
    assert parse_id_number(spelling, today=TODAY).number == "11010519491231002X"
    assert is_valid_id_number(spelling)


def test_second_domain_value_has_a_valid_check_digit_but_an_implausible_birth_year():
    # 440524188001010014 is a check-digit test vector (born 1880); the 1900 lower bound rejects it as a patient.
    assert make_id_number("440524", date(1880, 1, 1), 1) == "440524188001010014"
    with pytest.raises(InvalidIdNumber, match="出生日期无效") as caught:
        parse_id_number("440524188001010014", today=TODAY)
    assert caught.value.code == "birth_date"


@pytest.mark.parametrize("seq, gender", [(1, "male"), (2, "female"), (123, "male"), (998, "female"), (0, "female")])
def test_generated_numbers_carry_gender_in_the_sequence_parity(seq, gender):
    number = make_id_number("320102", date(1990, 1, 1), seq)
    parsed = parse_id_number(number, today=TODAY)
    assert parsed.gender == gender
    assert parsed.region_code == "320102"
    assert parsed.birth_date == date(1990, 1, 1)
    assert number[14:17] == f"{seq:03d}"


def test_a_generated_number_can_end_in_x():
    numbers = [make_id_number("110105", date(1949, 12, 31), seq) for seq in range(1, 40)]
    assert any(n.endswith("X") for n in numbers)
    assert all(is_valid_id_number(n) for n in numbers)


def _with_check_digit(first17: str) -> str:
    return first17 + check_digit(first17)


@pytest.mark.parametrize("value, code, message", [
    ("11010519491231002", "length", "长度不是18位"),
    ("11010519491231002X1", "length", "长度不是18位"),
    ("", "empty", "请填写身份证号码"),
    (" \u3000", "empty", "请填写身份证号码"),
    ("1101051949123100AX", "characters", "含有非法字符"),
    ("X10105194912310021", "characters", "含有非法字符"),
    ("11010519491231002Y", "characters", "含有非法字符"),
    ("11010519491231002-", "characters", "含有非法字符"),
    (_with_check_digit("11010520230231001"), "birth_date", "出生日期无效"),  # 31 February
    (_with_check_digit("11010519000229001"), "birth_date", "出生日期无效"),  # 1900 was not a leap year
    (_with_check_digit("11010519901301001"), "birth_date", "出生日期无效"),  # month 13
    (_with_check_digit("11010519900100001"), "birth_date", "出生日期无效"),  # day 0
    (_with_check_digit("11010518991231001"), "birth_date", "出生日期无效"),  # before 1900
    (_with_check_digit("11010529990101001"), "future_birth_date", "出生日期晚于今天"),
    ("110105194912310021", "check_digit", "校验位错误"),
    ("440524188001010015", "birth_date", "出生日期无效"),  # the date check comes before the check digit
])
def test_invalid_numbers_say_what_is_wrong(value, code, message):
    with pytest.raises(InvalidIdNumber, match=message) as caught:
        parse_id_number(value, today=TODAY)
    assert caught.value.code == code
    assert caught.value.message == str(caught.value)
    assert not is_valid_id_number(value)


def test_birth_today_is_accepted_and_tomorrow_is_not():
    today_number = make_id_number("110105", TODAY, 1)
    assert parse_id_number(today_number, today=TODAY).age(TODAY) == 0
    with pytest.raises(InvalidIdNumber, match="晚于今天"):
        parse_id_number(make_id_number("110105", date(2025, 6, 2), 1), today=TODAY)


def test_future_birth_is_judged_against_today_in_china_by_default():
    assert not is_valid_id_number(make_id_number("110105", date(9999, 12, 31), 1))
    assert is_valid_id_number("11010519491231002X")


def test_invalid_id_number_is_a_value_error():
    assert issubclass(InvalidIdNumber, ValueError)


@pytest.mark.parametrize("value", [None, 11010519491231002, b"11010519491231002X", ["11010519491231002X"]])
def test_non_text_is_invalid_not_a_crash(value):
    assert is_valid_id_number(value) is False
    with pytest.raises(InvalidIdNumber):
        parse_id_number(value)


@pytest.mark.parametrize("on, age", [
    (date(2025, 12, 30), 75),
    (date(2025, 12, 31), 76),
    (date(1949, 12, 31), 0),
])
def test_age_counts_completed_years(on, age):
    assert parse_id_number("11010519491231002X", today=TODAY).age(on) == age


def test_age_of_a_leap_day_birth_advances_on_first_of_march():
    person = parse_id_number(make_id_number("110105", date(2004, 2, 29), 7), today=TODAY)
    assert person.age(date(2023, 2, 28)) == 18
    assert person.age(date(2023, 3, 1)) == 19
    assert person.age(date(2024, 2, 29)) == 20


def test_age_defaults_to_today():
    person = parse_id_number("11010519491231002X")
    assert person.age() >= 75


@pytest.mark.parametrize("region, seq", [("11010", 1), ("1101051", 1), ("11010a", 1), ("110105", -1),
                                         ("110105", 1000), ("110105", True), ("110105", 1.0)])
def test_make_id_number_refuses_malformed_parts(region, seq):
    with pytest.raises(ValueError):
        make_id_number(region, date(1990, 1, 1), seq)


def test_make_id_number_pads_early_years():
    assert make_id_number("110105", date(5, 1, 1), 1)[6:14] == "00050101"


@given(regions, births, sequences)
def test_generated_numbers_always_validate(region, birth, seq):
    number = make_id_number(region, birth, seq)
    parsed = parse_id_number(number, today=TODAY)
    assert (parsed.number, parsed.region_code, parsed.birth_date) == (number, region, birth)
    assert parsed.gender == ("male" if seq % 2 else "female")


@given(first17s, st.integers(min_value=0, max_value=16), st.integers(min_value=1, max_value=9))
def test_mod_11_2_detects_every_single_digit_error(first17, position, delta):
    # S changes by delta * W[position]; both factors are non-zero mod the prime 11, so S mod 11 must change.
    changed = first17[:position] + str((int(first17[position]) + delta) % 10) + first17[position + 1:]
    assert check_digit(changed) != check_digit(first17)


@given(first17s, st.integers(min_value=0, max_value=15))
def test_mod_11_2_detects_adjacent_transpositions(first17, position):
    a, b = first17[position], first17[position + 1]
    swapped = first17[:position] + b + a + first17[position + 2:]
    assert (check_digit(swapped) == check_digit(first17)) == (a == b)


@given(regions, births, sequences)
def test_changing_any_single_character_of_a_valid_number_invalidates_it(region, birth, seq):
    number = make_id_number(region, birth, seq)
    for position in range(18):
        alphabet = "0123456789X" if position == 17 else "0123456789"
        for replacement in alphabet:
            if replacement != number[position]:
                mutated = number[:position] + replacement + number[position + 1:]
                assert not is_valid_id_number(mutated), mutated


@pytest.mark.parametrize("value", ["13812345678", "138 1234 5678", "138-1234-5678", "+86 138 1234 5678",
                                   "+8613812345678", "0086 13812345678", "86 138-1234-5678", "(138)1234.5678",
                                   "１３８１２３４５６７８", " 13812345678\t"])
def test_valid_mobile_spellings_are_normalised(value):
    assert validate_phone(value) == "13812345678"


@pytest.mark.parametrize("prefix", ["13", "14", "15", "16", "17", "18", "19"])
def test_every_mobile_prefix_is_accepted(prefix):
    assert validate_phone(prefix + "912345678") == prefix + "912345678"


@pytest.mark.parametrize("value, code, message", [
    ("1381234567", "length", "应为11位数字"),
    ("138123456789", "length", "应为11位数字"),
    ("", "empty", "请填写手机号码"),
    (" - ", "empty", "请填写手机号码"),
    ("12812345678", "prefix", "应以13至19开头"),
    ("23812345678", "prefix", "应以13至19开头"),
    ("1381234567a", "characters", "非法字符"),
    ("138１２３４５６７８ext", "characters", "非法字符"),
    ("+1 415 555 0100", "country", "仅支持中国大陆"),
    ("+852 9123 4567", "country", "仅支持中国大陆"),
    ("0571-88888888", "length", "应为11位数字"),
    ("57188888888", "prefix", "应以13至19开头"),
])
def test_invalid_phones_say_what_is_wrong(value, code, message):
    with pytest.raises(InvalidPhone, match=message) as caught:
        validate_phone(value)
    assert caught.value.code == code
    assert isinstance(caught.value, ValueError)


def test_non_text_phone_is_refused():
    with pytest.raises(InvalidPhone, match="应为文本"):
        validate_phone(13812345678)  # type: ignore[arg-type]


@pytest.mark.parametrize("region", ["000000", "999999", "911234", "100101", "290000", "720000", "840000"])
def test_a_region_outside_the_gb_t_2260_provinces_is_refused(region):
    with pytest.raises(InvalidIdNumber, match="地区码") as caught:
        parse_id_number(make_id_number(region, date(1990, 1, 1), 1), today=TODAY)
    assert caught.value.code == "region"
