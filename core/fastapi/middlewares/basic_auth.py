from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Collection

from starlette.types import ASGIApp, Receive, Scope, Send

from core.exceptions.handlers import problem_response


def basic_credentials_match(header: bytes | None, expected: str) -> bool:
    """Whether an Authorization header carries HTTP basic credentials equal to `user:password`."""
    scheme, _, encoded = (header or b"").partition(b" ")
    if scheme.lower() != b"basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return secrets.compare_digest(given, expected.encode())


class BasicAuthMiddleware:
    """Puts `paths` (the API docs, the metrics) behind HTTP basic auth with `credentials`
    (`user:password`); a refusal is a 401 problem with `error_code`."""

    def __init__(
        self,
        app: ASGIApp,
        paths: Collection[str],
        credentials: str,
        realm: str,
        error_code: str = "UNAUTHORIZED",
    ) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.credentials = credentials
        self.realm = realm
        self.error_code = error_code

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in self.paths:
            headers = [value for name, value in scope["headers"] if name == b"authorization"]
            header = headers[0] if len(headers) == 1 else None
            if not basic_credentials_match(header, self.credentials):
                response = problem_response(
                    401,
                    self.error_code,
                    f"The {self.realm} need a user name and password.",
                    headers={"WWW-Authenticate": f'Basic realm="{self.realm}", charset="UTF-8"'},
                )
                await response(scope, receive, send)
                return
            # The basic credentials are spent here; bearer authentication must not see them.
            others = [(n, v) for n, v in scope["headers"] if n != b"authorization"]
            scope = {**scope, "headers": others}
        await self.app(scope, receive, send)
