"""Routing is proved on the servers: `pg_is_in_recovery()` is true only on the replica."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from sqlalchemy import func, select, text

from app.user import User
from core.db import (
    NoSessionScopeError,
    Transactional,
    TransactionRolledBackError,
    after_commit,
    session,
    session_factory,
    session_scope,
    use_writer,
)
from tests.helpers import new_user, unique_email
from tests.servers import ServerStack

IN_RECOVERY = select(func.pg_is_in_recovery())


async def on_replica() -> bool:
    """Whether the current unit of work's next plain read runs on the replica."""
    return bool(await session.scalar(IN_RECOVERY))


def primary_count(stack: ServerStack, email: str) -> int:
    return int(stack.primary.psql(f"SELECT count(*) FROM users WHERE email = '{email}'"))


def replica_count(stack: ServerStack, email: str) -> int:
    return int(stack.replica.psql(f"SELECT count(*) FROM users WHERE email = '{email}'"))


@pytest.mark.usefixtures("scope")
async def test_plain_read_outside_a_transaction_runs_on_the_replica() -> None:
    assert await on_replica()


@pytest.mark.usefixtures("scope")
async def test_reads_inside_transactional_run_on_the_primary() -> None:
    @Transactional()
    async def read() -> bool:
        return await on_replica()

    assert await read() is False


@pytest.mark.usefixtures("scope")
async def test_raw_sql_goes_to_the_primary_and_so_do_later_reads() -> None:
    # Raw SQL may write; it is never sent to a read-only replica on a guess.
    assert await session.scalar(text("SELECT pg_is_in_recovery()")) is False
    assert await on_replica() is False


@pytest.mark.usefixtures("scope")
async def test_select_for_update_goes_to_the_primary() -> None:
    await session.execute(select(User.id).limit(1).with_for_update())
    assert await on_replica() is False


@pytest.mark.usefixtures("scope")
async def test_use_writer_sends_reads_to_the_primary() -> None:
    use_writer()
    assert await on_replica() is False


async def test_write_lands_on_primary_and_reaches_the_replica(stack: ServerStack) -> None:
    email = unique_email()

    @Transactional()
    async def register() -> None:
        session.add(new_user(email))

    async with session_scope():
        await register()
        # Read-your-writes: after writing, this unit of work reads from the primary.
        assert await on_replica() is False
        assert await session.scalar(select(User.id).where(User.email == email)) is not None

    assert primary_count(stack, email) == 1
    stack.wait_for_replica()
    assert replica_count(stack, email) == 1


@pytest.mark.usefixtures("scope")
async def test_a_transaction_sees_rows_it_flushed_before_its_select() -> None:
    email = unique_email()

    @Transactional()
    async def add_then_count() -> int:
        session.add(new_user(email))
        await session.flush()
        return int(await session.scalar(select(func.count()).where(User.email == email)) or 0)

    assert await add_then_count() == 1


async def test_nested_transactional_is_atomic_when_the_outer_one_fails(
    stack: ServerStack,
) -> None:
    outer_email, inner_email = unique_email(), unique_email()

    @Transactional()
    async def inner() -> None:
        session.add(new_user(inner_email))
        await session.flush()

    @Transactional()
    async def outer() -> None:
        session.add(new_user(outer_email))
        await inner()
        raise RuntimeError("outer fails after inner returned")

    async with session_scope():
        with pytest.raises(RuntimeError, match="outer fails"):
            await outer()

    assert primary_count(stack, outer_email) == 0
    assert primary_count(stack, inner_email) == 0


async def test_only_the_outermost_transactional_commits(stack: ServerStack) -> None:
    email = unique_email()
    seen_on_primary_inside: list[int] = []

    @Transactional()
    async def inner() -> None:
        session.add(new_user(email))

    @Transactional()
    async def outer() -> None:
        await inner()
        # Another connection must not see the row before the outermost commit.
        seen_on_primary_inside.append(primary_count(stack, email))

    async with session_scope():
        await outer()

    assert seen_on_primary_inside == [0]
    assert primary_count(stack, email) == 1


async def test_a_swallowed_inner_failure_still_rolls_everything_back(
    stack: ServerStack,
) -> None:
    email = unique_email()

    @Transactional()
    async def inner() -> None:
        raise ValueError("inner fails")

    @Transactional()
    async def outer() -> None:
        session.add(new_user(email))
        with contextlib.suppress(ValueError):
            await inner()

    async with session_scope():
        with pytest.raises(TransactionRolledBackError):
            await outer()

    assert primary_count(stack, email) == 0


@pytest.mark.usefixtures("scope")
async def test_after_commit_callbacks_run_after_commit_and_never_after_rollback(
    stack: ServerStack,
) -> None:
    events: list[str] = []
    email = unique_email()

    async def record_async() -> None:
        events.append(f"async, rows on primary: {primary_count(stack, email)}")

    async def record(event: str) -> None:
        events.append(event)

    @Transactional()
    async def inner() -> None:
        await after_commit(lambda: record("inner"))

    @Transactional()
    async def committed() -> None:
        session.add(new_user(email))
        await after_commit(record_async)
        await inner()
        assert events == []

    @Transactional()
    async def rolled_back() -> None:
        await after_commit(lambda: record("never"))
        raise RuntimeError("boom")

    await committed()
    assert events == ["async, rows on primary: 1", "inner"]

    with pytest.raises(RuntimeError):
        await rolled_back()
    assert events == ["async, rows on primary: 1", "inner"]


@pytest.mark.usefixtures("scope")
async def test_a_failing_after_commit_callback_keeps_the_commit_and_reaches_the_caller(
    stack: ServerStack, caplog: pytest.LogCaptureFixture
) -> None:
    email = unique_email()
    ran: list[str] = []

    async def broken() -> None:
        raise RuntimeError("callback broke")

    async def fine() -> None:
        ran.append("fine")

    @Transactional()
    async def create() -> None:
        session.add(new_user(email))
        await after_commit(broken)
        await after_commit(fine)

    with pytest.raises(RuntimeError, match="callback broke"):
        await create()
    assert primary_count(stack, email) == 1
    assert ran == ["fine"]  # every callback still ran
    assert "after-commit callback failed" in caplog.text


@pytest.mark.usefixtures("scope")
async def test_after_commit_outside_a_transaction_runs_at_once() -> None:
    events: list[str] = []

    async def record() -> None:
        events.append("now")

    await after_commit(record)
    assert events == ["now"]


async def test_session_factory_sessions_are_independent_under_gather(
    stack: ServerStack,
) -> None:
    emails = [unique_email() for _ in range(5)]

    async def create(email: str) -> int:
        async with session_factory() as independent:
            independent.add(new_user(email))
            await independent.flush()
            created = await independent.scalar(select(User.id).where(User.email == email))
            assert created is not None
            return created

    async def read_on_replica() -> bool:
        async with session_factory() as independent:
            return bool(await independent.scalar(IN_RECOVERY))

    ids = await asyncio.gather(*(create(email) for email in emails))
    replica_reads = await asyncio.gather(*(read_on_replica() for _ in range(5)))

    assert len(set(ids)) == 5
    assert all(primary_count(stack, email) == 1 for email in emails)
    assert replica_reads == [True] * 5


async def test_session_factory_rolls_back_when_the_block_raises(stack: ServerStack) -> None:
    email = unique_email()

    async def abandon() -> None:
        async with session_factory() as independent:
            independent.add(new_user(email))
            await independent.flush()
            raise RuntimeError("abandon")

    with pytest.raises(RuntimeError):
        await abandon()
    assert primary_count(stack, email) == 0


async def test_session_outside_any_scope_says_how_to_get_one() -> None:
    with pytest.raises(NoSessionScopeError, match="session_scope"):
        await session.scalar(IN_RECOVERY)


async def test_a_transaction_sees_the_writer_s_values_of_rows_read_from_the_replica(
    stack: ServerStack,
) -> None:
    email = unique_email()
    async with session_scope():

        @Transactional()
        async def create() -> int:
            user = new_user(email)
            session.add(user)
            await session.flush()
            return user.id

        user_id = await create()
    stack.wait_for_replica()

    @Transactional()
    async def nickname_inside_transaction() -> str:
        user = await session.scalar(select(User).where(User.id == user_id))
        assert user is not None
        return user.nickname

    async with session_scope():
        stale = await session.scalar(select(User).where(User.id == user_id))
        assert stale is not None
        assert stale.nickname == "test"
        stack.primary.psql(f"UPDATE users SET nickname = 'changed' WHERE id = {user_id}")
        assert await nickname_inside_transaction() == "changed"
