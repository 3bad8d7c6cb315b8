"""Text checks for request schemas: `PlainText` for free text people see (one printable line),
`MultilineText` for the same in paragraphs (tabs and line breaks allowed), `EncodableText` for
values only hashed or compared, such as passwords (any UTF-8 but control characters)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

# A code point in the surrogate range cannot be encoded as UTF-8: a JSON "\ud800" with no pair.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# Controls (PostgreSQL cannot store NUL), line breakers and bidi overrides, which make displayed
# text differ from stored text (CVE-2021-42574); the marks U+200E, U+200F, U+061C only set a
# direction, and names mixing scripts with digits need them.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_REFUSED = (
    ("a control character", _CONTROL),
    ("a line separator", re.compile("[\u2028\u2029]")),
    ("a bidirectional formatting character", re.compile("[\u202a-\u202e\u2066-\u2069]")),
    ("a lone surrogate (not valid Unicode)", _LONE_SURROGATE),
    # Shown as nothing, so text that looks empty or identical to another is not; the joiners
    # U+200C and U+200D stay, as emoji sequences and several scripts are written with them.
    (
        "an invisible character",
        re.compile("[\u00ad\u115f\u1160\u180e\u200b\u2060-\u2064\u3164\ufeff\uffa0]"),
    ),
    ("a noncharacter", re.compile("[\ufdd0-\ufdef\ufffe\uffff]")),
)


def _refuse(value: str, kind: str, pattern: re.Pattern[str]) -> None:
    if (found := pattern.search(value)) is not None:
        # The code point, not the character: the message is echoed to the client as JSON.
        raise ValueError(f"must not contain {kind}: U+{ord(found[0]):04X} at {found.start()}")


def plain_text(value: str) -> str:
    for kind, pattern in _REFUSED:
        _refuse(value, kind, pattern)
    return value


# Checked as plain text with these read as spaces, so a refusal still names the right position.
_LINE_LAYOUT = re.compile("[\t\n\r]")


def multiline_text(value: str) -> str:
    plain_text(_LINE_LAYOUT.sub(" ", value))
    return value


def encodable_text(value: Any) -> Any:
    # Before the field's own check, whose message could echo the character (email addresses).
    if isinstance(value, str):
        _refuse(value, "a lone surrogate (not valid Unicode)", _LONE_SURROGATE)
        _refuse(value, "a control character", _CONTROL)
    return value


PlainText = Annotated[str, AfterValidator(plain_text)]
MultilineText = Annotated[str, AfterValidator(multiline_text)]
EncodableText = Annotated[str, BeforeValidator(encodable_text)]
