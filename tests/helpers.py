from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from uuid import uuid4

from httpx import AsyncClient, Response
from prometheus_client.parser import text_string_to_metric_families

from app.user import User
from tests.servers import ServerStack

PASSWORD = "correct horse battery"


def unique_email() -> str:
    return f"{uuid4().hex[:16]}@example.com"


def new_user(email: str | None = None) -> User:
    """A user row without the cost of hashing a real password."""
    return User(email=email or unique_email(), password_hash="not-a-hash", nickname="test")


def registration(**overrides: Any) -> dict[str, Any]:
    return {"email": unique_email(), "password": PASSWORD, "nickname": "Ann", **overrides}


@dataclass
class Account:
    """A registered, logged-in user as a client sees it."""

    id: int
    email: str
    access_token: str
    refresh_token: str
    password: str = PASSWORD
    responses: list[Response] = field(default_factory=list)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def login(client: AsyncClient, email: str, password: str = PASSWORD) -> Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def signed_up(
    client: AsyncClient, stack: ServerStack | None = None, *, admin: bool = False
) -> Account:
    """Register and log in; `admin` promotes the account on the primary first."""
    created = await client.post("/api/v1/users", json=registration())
    assert created.status_code == 201, created.text
    user = created.json()
    if admin:
        assert stack is not None
        stack.primary.psql(f"UPDATE users SET is_admin = true WHERE id = {user['id']}")
    logged_in = await login(client, user["email"])
    assert logged_in.status_code == 200, logged_in.text
    tokens = logged_in.json()
    return Account(
        id=user["id"],
        email=user["email"],
        access_token=tokens["access_token"],
        refresh_token=tokens["refresh_token"],
        responses=[created, logged_in],
    )


# A change made in another process reaches a process's local copies as a published message,
# within the revocation bound while Redis is healthy.
HEARD_WITHIN_SECONDS = 1.0


async def status_within(
    client: AsyncClient,
    path: str,
    headers: dict[str, str],
    expected: int,
    seconds: float = HEARD_WITHIN_SECONDS,
) -> int:
    """GET `path` until it answers `expected` or `seconds` have passed; the last status."""
    status = 0
    for _ in range(max(1, int(seconds / 0.05))):
        status = (await client.get(path, headers=headers)).status_code
        if status == expected:
            break
        await asyncio.sleep(0.05)
    return status


class PostReceiver:
    """An HTTP server on loopback standing in for a collector: each POST's path, headers and
    body go to `take`, whose bytes are the 200 answer's body."""

    def __init__(self, take: Callable[[str, Message, bytes], bytes]) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                answer = take(self.path, self.headers, body)
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: AsyncClient, **options: object) -> Samples:
    response = await client.get("/metrics", **options)  # type: ignore[arg-type]
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


async def until(condition: Callable[[], Awaitable[bool]], seconds: float, failure: str) -> None:
    """Wait for `condition`, polling; fail with `failure` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not await condition():
        assert time.monotonic() < deadline, failure
        await asyncio.sleep(0.02)
