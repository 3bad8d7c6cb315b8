"""Create an admin, or promote an existing account: idempotent.

    python3 -m app.scripts.create_superuser --email admin@example.com --password '...'

Both options also read FIRST_SUPERUSER_EMAIL / FIRST_SUPERUSER_PASSWORD. An existing account
keeps its password; a new one needs a password.
"""

from __future__ import annotations

import asyncio
import sys

import click

from app.user import DuplicateEmailException, user_service
from core.db import databases, session_scope
from core.helpers.cache import Cache


async def _create_or_promote(email: str, password: str | None) -> tuple[int, bool]:
    try:
        async with session_scope():
            user = await user_service.create_or_promote_admin(email, password)
            return user.id, user.is_admin
    finally:
        await databases.dispose()
        await Cache.close()


@click.command()
@click.option("--email", envvar="FIRST_SUPERUSER_EMAIL", required=True)
@click.option("--password", envvar="FIRST_SUPERUSER_PASSWORD", default=None)
def main(email: str, password: str | None) -> None:
    try:
        user_id, _ = asyncio.run(_create_or_promote(email.strip().lower(), password))
    except (ValueError, DuplicateEmailException) as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(2)
    click.echo(f"{email} (id {user_id}) is an admin")


if __name__ == "__main__":
    main()
