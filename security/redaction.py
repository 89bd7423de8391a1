"""Masking of ID and mobile numbers in free text and in log records, wherever a caller let one slip in.

Design choice: a logging.Filter rather than a Formatter subclass. A filter works with whatever formatter
the handler has (plain text today, JSON tomorrow), and because it rewrites the record in place, handlers
that see the record after it (pytest's caplog, handlers on parent loggers) get the redacted version too.
It therefore merges msg % args into msg, clears args, renders the traceback into a redacted exc_text and
sets exc_info to None, so no later handler can render the original exception message again. The cost is
that later handlers lose the live exception object; they still get its (redacted) text.

What is matched, deliberately without checking check digits or dates (a mistyped number is still
personal data):
- ID numbers: 17 digits + a digit or X/x, not inside a longer digit run, in ASCII or full-width digits
  (what a Chinese input method types), with or without single spaces or dashes between the digits
  (`110105 19491231 002X`, as people copy them from a card);
- mobile numbers: 1[3-9] + 9 digits (ASCII or full-width), optionally written 3-4-4 with spaces or dashes
  and optionally preceded by +86 / 0086 / 86, not inside a longer digit run.
Letters next to a match do not protect it ("id11010519491231002X" is masked), because leaking a number is
worse than spoiling a token. Two token shapes are exempt so that request ids and digests stay greppable:
UUIDs (about one random UUID in 1,400 contains a mobile-shaped digit run) and hex runs of 32 or more
characters (digests, trace ids). A shorter alphanumeric token with such a digit run is masked, e.g.
"a13812345678b" -> "a138****5678b"; that is accepted. Out of scope: 15-digit first-generation ID numbers."""

from __future__ import annotations

import logging
import re

from security.masking import mask_id_number, mask_phone

_HEX = "[0-9A-Fa-f]"
_D = "[0-9\uff10-\uff19]"  # an ASCII or a full-width digit
_SEP = "[ \u3000\\-\uff0d]"  # a space, ideographic space or dash between the digits of a copied number
_PATTERN = re.compile(
    rf"""
    # Identifiers that are not personal data and must stay greppable: UUIDs and long hex digests.
    (?P<keep>(?<![0-9A-Za-z])(?:{_HEX}{{8}}(?:-{_HEX}{{4}}){{3}}-{_HEX}{{12}}|{_HEX}{{32,}})(?![0-9A-Za-z]))
    # 17 digits and a check character. An X right after 18 digits without separators does not make them less of
    # an ID number ("...0021X" is masked); with separators, "5 1101...002X" reads as "5" and the ID "1101...002X".
    | (?P<id_number>(?<!{_D})(?:(?:{_D}{_SEP}?){{17}}(?:[XxＸｘ]|{_D}(?![0-9\uff10-\uff19XxＸｘ]))
                               |{_D}{{18}}(?=[XxＸｘ])))
    | (?<!{_D})
      (?P<prefix>(?:\+86|0086|86)[ -]?)?
      (?P<mobile>[1１][3-9３-９]{_D}(?:{_D}{{8}}|{_SEP}{_D}{{4}}{_SEP}{_D}{{4}}))
      (?!{_D})
    """,
    re.VERBOSE,
)
_SEPARATORS = str.maketrans("", "", " \u3000-\uff0d")

# Attributes every LogRecord has; anything else on a record came from `extra=` and may carry user data.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def _replace(match: re.Match[str]) -> str:
    if match["keep"]:
        return match["keep"]
    if match["id_number"]:
        return mask_id_number(match["id_number"].translate(_SEPARATORS))
    return (match["prefix"] or "") + mask_phone(match["mobile"].translate(_SEPARATORS))


def redact(text: str) -> str:
    """The text with every ID number and mainland mobile number replaced by its masked form."""
    if not isinstance(text, str):
        text = str(text)
    return _PATTERN.sub(_replace, text)


class RedactingFilter(logging.Filter):
    """Install on a handler; rewrites message, exception text, stack and string extras of every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(self._message(record))
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self._format_exception(record)
        record.exc_info = None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in list(vars(record).items()):
            if name not in _STANDARD_ATTRIBUTES and isinstance(value, str):
                setattr(record, name, redact(value))
        return True

    @staticmethod
    def _message(record: logging.LogRecord) -> str:
        # A filter that raises would propagate into the code that logged, so a bad format string or an
        # argument whose __str__ fails degrades to a readable message instead.
        try:
            return record.getMessage()
        except Exception:
            try:
                return f"{record.msg!s} {record.args!r}"
            except Exception:
                return "<unprintable log message>"

    @staticmethod
    def _format_exception(record: logging.LogRecord) -> str:
        try:
            return logging.Formatter().formatException(record.exc_info)
        except Exception:
            return "<unprintable exception>"
