"""Small reusable checks for request schemas.

`PlainText` is for every free-text field people see (names, nicknames, descriptions): one line
of printable text. `EncodableText` is for values that are only hashed or compared (passwords,
tokens): anything goes except what cannot be encoded as UTF-8 at all.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

# A code point in the surrogate range cannot be encoded as UTF-8: a JSON "\ud800" with no pair.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")

# What plain text refuses, by kind (the first match names it in the error):
# - C0 and C1 controls and DEL: NUL cannot be stored in PostgreSQL text, and none of them
#   belongs in a name shown to people;
# - line and paragraph separators: the fields are one line, and these break lines like "\n";
# - bidi embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): they reorder the
#   text around them when it is displayed, so what a reader sees is not what is stored
#   ("Trojan Source", CVE-2021-42574).
# The bidi marks U+200E, U+200F and U+061C are allowed: they reorder nothing, they only give a
# neutral character a direction, and names mixing right-to-left script with digits need them.
_REFUSED = (
    ("a control character", re.compile("[\x00-\x1f\x7f-\x9f]")),
    ("a line separator", re.compile("[\u2028\u2029]")),
    ("a bidirectional formatting character", re.compile("[\u202a-\u202e\u2066-\u2069]")),
    ("a lone surrogate (not valid Unicode)", _LONE_SURROGATE),
)


def _refuse(value: str, kind: str, pattern: re.Pattern[str]) -> None:
    found = pattern.search(value)
    if found is not None:
        # The code point, not the character: the message is echoed to the client as JSON.
        position = found.start()
        raise ValueError(f"must not contain {kind}: U+{ord(found[0]):04X} at {position}")


def plain_text(value: str) -> str:
    """Refuse control characters, line separators, bidi overrides and lone surrogates."""
    for kind, pattern in _REFUSED:
        _refuse(value, kind, pattern)
    return value


def encodable_text(value: Any) -> Any:
    """Refuse lone surrogates, which cannot be encoded (hashed, stored) as UTF-8.

    It runs before the field's own type check, so that the error names the problem even for
    types that would echo the offending character in their message (email addresses).
    """
    if isinstance(value, str):
        _refuse(value, "a lone surrogate (not valid Unicode)", _LONE_SURROGATE)
    return value


PlainText = Annotated[str, AfterValidator(plain_text)]
EncodableText = Annotated[str, BeforeValidator(encodable_text)]
