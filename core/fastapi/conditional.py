"""ETags from a row's version: `If-None-Match` on reads, `If-Match` on updates (RFC 9110)."""

from __future__ import annotations

import re

from fastapi import Request, Response
from pydantic import BaseModel

# A strong entity tag holding a version number as etag() writes it: "12" (never "012").
_VERSION_TAG = re.compile(r'^"(0|[1-9]\d{0,17})"$')
# Row versions are INTEGER columns.
MAX_VERSION = 2**31 - 1


def etag(version: int) -> str:
    return f'"{version}"'


def _tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def _field(request: Request, name: str) -> str | None:
    # A field sent on several lines is one comma-separated list (RFC 9110 5.3).
    lines = request.headers.getlist(name)
    return ", ".join(lines) if lines else None


def with_etag(request: Request, body: BaseModel, version: int) -> Response:
    """`body` as JSON with its ETag, or a bare 304 when the client's If-None-Match has it."""
    tag = etag(version)
    known = _field(request, "if-none-match")
    # If-None-Match compares weakly: W/"3" matches "3".
    if known and (known.strip() == "*" or tag in (t.removeprefix("W/") for t in _tags(known))):
        return Response(status_code=304, headers={"ETag": tag})
    content = body.model_dump_json()
    return Response(content, media_type="application/json", headers={"ETag": tag})


def if_match_versions(request: Request) -> list[int] | None:
    """The versions an update may apply to, from If-Match; None when any version will do (no
    header, or `*`). Weak or malformed tags match nothing: the update gets 412."""
    header = _field(request, "if-match")
    if header is None or header.strip() == "*":
        return None
    versions = [int(m[1]) for tag in _tags(header) if (m := _VERSION_TAG.match(tag))]
    return [v for v in versions if v <= MAX_VERSION]  # beyond the column: it matches nothing
