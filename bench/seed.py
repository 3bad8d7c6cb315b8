"""Seed one tree's database for `make bench`, with that tree's own code, and describe the tree.

Run by path under the tree's settings (environment), the tree first on PYTHONPATH and -P:

    python -P bench/seed.py --out DIR --users N --posts P --refresh-runs R --refresh-tokens T NS...

Writes DIR/users.txt and DIR/admin.txt ("<user id> <access token>" lines; the first user is
the admin), DIR/refresh-<run>.txt (single-use refresh tokens, one set per run) and
DIR/tree.json: which `core` was imported, and how this tree's processes hear that a cache
namespace NS was removed (null when they keep no copies that need telling). Adds P posts when
the tree has a posts table.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from core.config import config, load_config
from core.security.passwords import hash_password
from core.security.tokens import encode_token, new_token_id


def removal_announcements(namespaces: list[str]) -> dict[str, Any] | None:
    """The change-feed messages of trees that keep per-process cache copies, else None."""
    backend: Any = importlib.import_module("core.helpers.cache.redis_backend")
    if hasattr(backend, "change_message"):
        messages = {ns: backend.change_message([f"cache:{ns}"], []) for ns in namespaces}
        return {
            "channel": backend.CHANGES_CHANNEL,
            "messages": {ns: message.hex() for ns, message in messages.items()},
        }
    try:
        local_entries = importlib.import_module("core.helpers.cache.local_entries")
    except ImportError:
        return None
    cache: Any = importlib.import_module("core.helpers.cache").Cache
    topic = local_entries.CACHE_TOPIC
    return {
        "channel": cache.changes.channel,
        "messages": {
            ns: (topic + b":" + local_entries.namespace_removed(ns)).hex() for ns in namespaces
        },
    }


async def seed(out: Path, users: int, posts: int, refresh_runs: int, refresh_tokens: int) -> None:
    password_hash = await hash_password("benchmark password")
    dsn = str(config.WRITER_DB_URL).replace("postgresql+asyncpg", "postgresql")
    connection = await asyncpg.connect(dsn)
    now = datetime.now(UTC)
    await connection.copy_records_to_table(
        "users",
        columns=["email", "password_hash", "nickname", "is_admin", "created_at", "updated_at"],
        records=[
            (f"user{n}@bench.example", password_hash, f"user {n}", n == 0, now, now)
            for n in range(users)
        ],
    )
    user_ids = [row["id"] for row in await connection.fetch("SELECT id FROM users ORDER BY id")]
    if await connection.fetchval("SELECT to_regclass('posts')") is not None:
        await connection.copy_records_to_table(
            "posts",
            columns=["author_id", "title", "body", "version", "created_at", "updated_at"],
            records=[
                (user_ids[n % users], f"post {n}", f"Post {n}.\nIts second line.", 1, now, now)
                for n in range(posts)
            ],
        )

    def access(user_id: int) -> str:
        token, _ = encode_token(
            user_id=user_id, token_type="access", session_id=new_token_id(), token_version=0
        )
        return f"{user_id} {token}"

    lines = [access(user_id) for user_id in user_ids]
    (out / "users.txt").write_text("\n".join(lines) + "\n")
    (out / "admin.txt").write_text(lines[0] + "\n")
    expires = now + timedelta(days=14)
    for run in range(refresh_runs):
        sessions = [
            (new_token_id(), user_ids[n % len(user_ids)], new_token_id())
            for n in range(refresh_tokens)
        ]
        await connection.copy_records_to_table(
            "auth_sessions",
            columns=["id", "user_id", "refresh_jti", "created_at", "expires_at"],
            records=[(sid, uid, jti, now, expires) for sid, uid, jti in sessions],
        )
        tokens = [
            encode_token(
                user_id=uid, token_type="refresh", session_id=sid, token_version=0, jti=jti
            )[0]
            for sid, uid, jti in sessions
        ]
        (out / f"refresh-{run}.txt").write_text("\n".join(tokens) + "\n")
    await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--users", type=int, required=True)
    parser.add_argument("--posts", type=int, default=0)
    parser.add_argument("--refresh-runs", type=int, required=True)
    parser.add_argument("--refresh-tokens", type=int, required=True)
    parser.add_argument("namespaces", nargs="*")
    args = parser.parse_args()
    load_config()
    args.out.mkdir(parents=True, exist_ok=True)
    asyncio.run(seed(args.out, args.users, args.posts, args.refresh_runs, args.refresh_tokens))
    core = sys.modules["core"]
    (args.out / "tree.json").write_text(
        json.dumps(
            {
                "core_file": core.__file__,
                "announce": removal_announcements(args.namespaces),
            }
        )
    )


if __name__ == "__main__":
    main()
