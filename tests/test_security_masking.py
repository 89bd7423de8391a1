"""Masked forms of ID numbers, phones and names: the DESIGN §6 examples and totality on any input."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from security.masking import mask_id_number, mask_name, mask_phone

anything = st.one_of(st.text(), st.none(), st.integers(), st.binary(), st.floats())


@pytest.mark.parametrize("value, masked", [
    ("32100219900101123X", "3210**********123X"),
    ("11010519491231002x", "1101**********002X"),
    (" 110105 19491231 002X ", "1101**********002X"),
    ("440524188001010014", "4405**********0014"),
    ("110105491231002", "110*********002"),  # 15-digit first-generation number
    ("12345678", "12****78"),
    ("1234567", "1*****7"),
    ("123", "***"),
    ("1", "*"),
    ("", ""),
    (None, ""),
])
def test_mask_id_number(value, masked):
    assert mask_id_number(value) == masked


@pytest.mark.parametrize("value, masked", [
    ("13812345678", "138****5678"),
    ("+86 138-1234-5678", "138****5678"),
    ("8613812345678", "138****5678"),
    (13812345678, "138****5678"),
    ("057188888888", "057*****8888"),
    ("88888888", "8******8"),
    ("12345", "1***5"),
    ("1234", "****"),
    ("", ""),
    (None, ""),
])
def test_mask_phone(value, masked):
    assert mask_phone(value) == masked


@pytest.mark.parametrize("value, masked", [
    ("张三明", "张*明"),
    ("张三", "张*"),
    ("张", "张"),
    ("欧阳小明", "欧**明"),
    ("阿卜杜拉·艾力", "阿*****力"),
    (" 张 三 ", "张*"),
    ("John Smith", "J*** S****"),
    ("Mary-Jane O'Neil", "M***-J*** O'N***"),
    ("José", "J***"),
    ("Li", "L*"),
    ("John 张三明", "J*****明"),  # mixed scripts get the whole-string rule
    ("13812345678", "1*********8"),  # a number typed into the name field keeps only its ends
    ("", ""),
    (None, ""),
])
def test_mask_name(value, masked):
    assert mask_name(value) == masked


class Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("boom")


@pytest.mark.parametrize("mask", [mask_id_number, mask_phone, mask_name])
def test_unprintable_values_mask_to_nothing(mask):
    assert mask(Unprintable()) == ""


def _revealed(masked: str) -> int:
    return sum(ch != "*" for ch in masked)


def _shape(masked: str) -> re.Match[str] | None:
    # Visible head, one run of stars, visible tail: nothing revealed in the middle.
    return re.fullmatch(r"(?P<head>[^*]*)\**(?P<tail>[^*]*)", masked)


@given(anything)
def test_mask_id_number_is_total_and_reveals_at_most_four_each_end(value):
    masked = mask_id_number(value)
    assert isinstance(masked, str)
    if "*" not in unicodedata.normalize("NFKC", str(value)):
        parts = _shape(masked)
        assert parts and len(parts["head"]) <= 4 and len(parts["tail"]) <= 4
        assert _revealed(masked) <= len(masked) // 2


@given(anything)
def test_mask_phone_is_total_and_reveals_at_most_seven(value):
    masked = mask_phone(value)
    assert isinstance(masked, str)
    if "*" not in unicodedata.normalize("NFKC", str(value)):
        parts = _shape(masked)
        assert parts and len(parts["head"]) <= 3 and len(parts["tail"]) <= 4
        assert _revealed(masked) <= 7
        assert len(masked) < 11 or _revealed(masked) == 7
        assert len(masked) >= 11 or _revealed(masked) <= 2 * (len(masked) // 5)


@given(st.text(alphabet=st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), min_size=2, max_size=12))
def test_mask_name_reveals_at_most_two_characters_of_a_chinese_style_name(name):
    masked = mask_name(name)
    assert len(masked) == len(name)
    assert _revealed(masked) <= 2
    assert masked[0] == name[0] and masked[1:-1] == "*" * (len(name) - 2)


@given(anything)
def test_mask_name_is_total(value):
    assert isinstance(mask_name(value), str)


latin_names = st.from_regex(r"[A-Za-z]{1,12}( [A-Za-z]{1,12}){0,3}", fullmatch=True)


@given(latin_names)
def test_mask_name_keeps_only_the_initial_of_each_latin_word(name):
    masked = mask_name(name)
    assert masked.split(" ") == [word[0] + "*" * (len(word) - 1) for word in name.split(" ")]


@given(st.text(alphabet="0123456789Xx", min_size=18, max_size=18))
def test_masked_id_numbers_keep_length(value):
    assert len(mask_id_number(value)) == 18
