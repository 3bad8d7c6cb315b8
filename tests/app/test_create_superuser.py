from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from httpx import AsyncClient

from tests.helpers import PASSWORD, login, signed_up, status_within, unique_email
from tests.servers import ServerStack

ROOT = Path(__file__).resolve().parents[2]


def create_superuser(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.scripts.create_superuser", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_creates_an_admin_who_can_use_admin_routes(client: AsyncClient) -> None:
    email = unique_email()

    result = create_superuser("--email", email, "--password", PASSWORD)

    assert result.returncode == 0, result.stderr
    tokens = (await login(client, email)).json()
    response = await client.get(
        "/api/v1/users", headers={"Authorization": f"Bearer {tokens['access_token']}"}
    )
    assert response.status_code == 200


async def test_promotes_an_existing_account_idempotently_from_the_environment(
    client: AsyncClient, stack: ServerStack
) -> None:
    account = await signed_up(client)
    assert (await client.get("/api/v1/users", headers=account.headers)).status_code == 403

    for _ in range(2):
        result = create_superuser(env={"FIRST_SUPERUSER_EMAIL": account.email})
        assert result.returncode == 0, result.stderr

    # Takes effect for the already logged-in user as soon as this process hears of it.
    assert await status_within(client, "/api/v1/users", account.headers, 200) == 200
    count = stack.primary.psql(f"SELECT count(*) FROM users WHERE email = '{account.email}'")
    assert count == "1"


def test_a_new_account_needs_a_password() -> None:
    result = create_superuser("--email", unique_email())

    assert result.returncode == 2
    assert "a password is needed" in result.stderr
