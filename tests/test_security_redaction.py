"""Redaction of ID and mobile numbers in free text and in log records passing through RedactingFilter."""

from __future__ import annotations

import io
import json
import logging
import uuid
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from security.idcard import make_id_number
from security.redaction import RedactingFilter, redact

ID = "11010519491231002X"
PHONE = "13812345678"


@pytest.mark.parametrize("text, expected", [
    (ID, "1101**********002X"),
    ("11010519491231002x", "1101**********002X"),
    ("440524188001010015", "4405**********0015"),  # wrong check digit: still someone's mistyped number
    (f"患者身份证{ID}，电话{PHONE}。", "患者身份证1101**********002X，电话138****5678。"),
    (f"id={ID}&phone={PHONE}", "id=1101**********002X&phone=138****5678"),
    (f"id{ID}x", "id1101**********002Xx"),
    (f"{ID}{PHONE}", "1101**********002X138****5678"),
    ("+8613812345678", "+86138****5678"),
    ("+86 138 1234 5678", "+86 138****5678"),
    ("0086-13812345678", "0086-138****5678"),
    ("call 138 1234 5678 or 139-8765-4321", "call 138****5678 or 139****4321"),
    ("ids 13812345678,13987654321", "ids 138****5678,139****4321"),
    ("1101**********002X 138****5678", "1101**********002X 138****5678"),
    # Full-width digits (a Chinese input method) and numbers copied with spaces or dashes from a card.
    ("身份证１１０１０５１９４９１２３１００２Ｘ", "身份证1101**********002X"),
    ("110105 19491231 002X", "1101**********002X"),
    ("1101 0519 4912 3100 2X", "1101**********002X"),
    ("110105-19491231-002x", "1101**********002X"),
    ("id 110105　19491231　002X.", "id 1101**********002X."),
    ("电话１３８１２３４５６７８", "电话138****5678"),
    ("１３８ １２３４ ５６７８", "138****5678"),
    ("5 11010519491231002X", "5 1101**********002X"),
])
def test_redact_masks_numbers(text, expected):
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "12812345678",  # not a mobile prefix
    "1381234567",  # 10 digits
    "138123456789",  # 12 digits: part of a longer digit run
    "order 20240101123456789012",  # 20-digit order number
    "1101051949123100211",  # 19 digits
    "ts=1717171717171 elapsed=13.812345678s",
    "2024-06-01T12:34:56.123456+08:00",
    "sha256=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "trace 4bf92f3577b34da6a3ce929d0e0e4736",
    "no numbers at all, 张三",
    "",
])
def test_redact_leaves_other_text_alone(text):
    assert redact(text) == text


def test_uuids_and_long_hex_digests_are_exempt():
    shaped = "12345678-1381-2345-6789-a13812345678"  # mobile-shaped runs inside a UUID
    digest = "ab" + "11010519491231002" + "1" + "cd" * 7 + "13812345678" + "ef"
    assert redact(shaped) == shaped
    assert redact(f"req={shaped} h={digest}") == f"req={shaped} h={digest}"
    for _ in range(1000):
        value = str(uuid.uuid4())
        assert redact(value) == value


def test_short_alphanumeric_tokens_with_a_number_inside_are_masked():
    # Documented trade-off: letters next to a number do not protect it, so a short token can be spoiled.
    assert redact("a13812345678b") == "a138****5678b"
    assert redact(f"key=Z{ID}") == "key=Z1101**********002X"


def test_redact_accepts_non_strings():
    assert redact(13812345678) == "138****5678"  # type: ignore[arg-type]


def test_redact_masks_numbers_in_json():
    document = json.dumps({"patient": {"id_number": ID, "phones": [PHONE, "+86 139 8765 4321"]}}, ensure_ascii=False)
    redacted = json.loads(redact(document))
    assert redacted == {"patient": {"id_number": "1101**********002X", "phones": ["138****5678", "+86 139****4321"]}}


@given(st.dates(), st.integers(min_value=0, max_value=999), st.text(), st.text())
def test_any_id_number_between_any_texts_is_hidden(birth, seq, before, after):
    number = make_id_number("320102", birth, seq)
    # A neighbouring digit would make it part of a longer run, which is deliberately left alone.
    before = before.rstrip("0123456789")
    after = after.lstrip("0123456789")
    assert number not in redact(before + number + after)


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True), st.text(), st.text())
def test_any_mobile_between_any_texts_is_hidden(phone, before, after):
    before = before.rstrip("0123456789")
    after = after.lstrip("0123456789")
    assert phone not in redact(before + phone + after)


@given(st.text())
def test_redact_is_idempotent(text):
    once = redact(text)
    assert redact(once) == once


@pytest.fixture
def capture():
    """A logger whose handler formats into a buffer through the filter, the way app.py sets up the root."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.addFilter(RedactingFilter())
    logger = logging.getLogger("tests.security.redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield logger, stream
    finally:
        logger.removeHandler(handler)


def test_log_message_with_args_is_redacted(capture):
    logger, stream = capture
    logger.info("patient %s phone %s", ID, PHONE)
    assert stream.getvalue() == "INFO patient 1101**********002X phone 138****5678\n"


def test_non_string_args_and_messages_are_redacted(capture):
    logger, stream = capture
    logger.info("phone as int %d", 13812345678)
    logger.info("payload %s", {"id_number": ID, "phone": PHONE})
    logger.info("%(phone)s calls", {"phone": PHONE})
    logger.warning({"id_number": ID})
    output = stream.getvalue()
    assert ID not in output and PHONE not in output
    assert "phone as int 138****5678" in output
    assert "'id_number': '1101**********002X'" in output
    assert "138****5678 calls" in output


def test_exception_text_is_redacted_and_exc_info_dropped(capture):
    logger, stream = capture
    records: list[logging.LogRecord] = []
    logger.handlers[0].addFilter(lambda record: records.append(record) or True)
    try:
        raise ValueError(f"no patient with id {ID} or phone {PHONE}")
    except ValueError:
        logger.exception("lookup failed for %s", PHONE)
    output = stream.getvalue()
    assert ID not in output and PHONE not in output
    assert "lookup failed for 138****5678" in output
    assert "Traceback (most recent call last)" in output
    assert "ValueError: no patient with id 1101**********002X or phone 138****5678" in output
    (record,) = records
    assert record.exc_info is None
    assert "1101**********002X" in record.exc_text
    assert record.args == ()


def test_stack_info_and_string_extras_are_redacted(capture):
    logger, stream = capture
    logger.handlers[0].setFormatter(logging.Formatter("%(message)s caller=%(caller_phone)s"))
    logger.info("with extra", extra={"caller_phone": PHONE}, stack_info=True)
    output = stream.getvalue()
    assert "with extra caller=138****5678" in output
    assert "Stack (most recent call last)" in output
    assert PHONE not in output


def test_broken_format_arguments_do_not_raise(capture):
    logger, stream = capture
    logger.info("two placeholders %s %s", PHONE)

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("boom")

        __repr__ = __str__

    logger.info("value %s", Unprintable())
    output = stream.getvalue()
    assert "two placeholders %s %s ('138****5678',)" in output
    assert "<unprintable log message>" in output
    assert PHONE not in output


def test_records_are_redacted_for_handlers_that_come_after(capture, caplog):
    # The filter rewrites the record itself, so pytest's capture handler on the root sees the masked text.
    logger, stream = capture
    logger.info("phone %s", PHONE)
    assert caplog.messages == ["phone 138****5678"]
    assert PHONE not in caplog.text


def test_filter_is_idempotent_across_two_handlers(capture):
    logger, stream = capture
    second = io.StringIO()
    handler = logging.StreamHandler(second)
    handler.addFilter(RedactingFilter())
    logger.addHandler(handler)
    try:
        try:
            raise KeyError(ID)
        except KeyError:
            logger.error("missing %s", ID, exc_info=True)
    finally:
        logger.removeHandler(handler)
    assert "ERROR missing 1101**********002X" in stream.getvalue()
    assert second.getvalue().startswith("missing 1101**********002X\nTraceback")
    assert ID not in stream.getvalue() + second.getvalue()


def test_an_id_number_followed_by_an_x_is_still_hidden():
    """Found by the property test above: 18 digits then an "X" (a typo, a field glued to a code) were left alone."""
    number = make_id_number("320102", date(1958, 4, 12), 17)
    assert not number.endswith("X")
    assert number not in redact(f"身份证{number}X") and number not in redact(f"{number}x 住院")
