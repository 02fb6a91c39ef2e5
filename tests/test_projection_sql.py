"""Projections on the real SQL journals and read models, SQLite and PostgreSQL (each
test runs on both; PostgreSQL as ``tests/conftest.py``'s ``postgres_dsn`` says): the
exactly-once handlers (read model and offset in one transaction, rolled back together,
fenced against a second instance, rebuilt in one transaction) and the SQL offset stores
of at-least-once projections. Real time (threads and databases), with short backoffs."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, closing
from pathlib import Path
from typing import Any

import attrs
import pytest
from projection_events import write_sales

import actors
import supervision as sv
from actors.persistence import Journal, Persistence, open_sqlite_journal
from actors.projection import (
    AtLeastOnce,
    Envelope,
    GetStatus,
    JournalSource,
    OffsetStore,
    PostgresExactlyOnce,
    PostgresOffsetStore,
    Projection,
    ProjectionError,
    ProjectionHandler,
    ProjectionStatus,
    Rebuild,
    SqliteExactlyOnce,
    SqliteOffsetStore,
    WaitCaughtUp,
)

FAST = sv.Backoff(min_delay=0.01, max_delay=0.05, jitter=0.0)


@attrs.define
class Backend:
    """A journal and a read-model database of one kind, fresh for the test."""

    name: str
    open_journal: Callable[..., AbstractAsyncContextManager[Journal]]
    exactly_once: Callable[..., ProjectionHandler]
    offset_store: Callable[[], OffsetStore]
    query: Callable[[str], list[tuple[Any, ...]]]
    table: str
    """The read model's table (qualified where needed)."""
    offsets: str
    """The offsets table (qualified where needed)."""
    param: str


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        journal_path, model = tmp_path / "journal.db", tmp_path / "read.db"

        def query(statement: str) -> list[tuple[Any, ...]]:
            with closing(sqlite3.connect(model)) as conn:
                return conn.execute(statement).fetchall()

        yield Backend(
            "sqlite",
            lambda **options: open_sqlite_journal(journal_path, **options),
            lambda handle, **options: SqliteExactlyOnce(model, handle, **options),
            lambda: SqliteOffsetStore(model),
            query,
            "applied",
            "projection_offsets",
            "?",
        )
        return
    import psycopg

    from actors.persistence import open_postgres_journal

    dsn: str = request.getfixturevalue("postgres_dsn")
    schema = f"test_{uuid.uuid4().hex[:16]}"

    def query_pg(statement: str) -> list[tuple[Any, ...]]:
        with psycopg.connect(dsn, autocommit=True) as conn:
            return conn.execute(statement.encode()).fetchall()

    yield Backend(
        "postgres",
        lambda **options: open_postgres_journal(dsn, schema=schema, **options),
        lambda handle, **options: PostgresExactlyOnce(dsn, handle, schema=schema, **options),
        lambda: PostgresOffsetStore(dsn, schema=schema),
        query_pg,
        f"{schema}.applied",
        f"{schema}.projection_offsets",
        "%s",
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE".encode())


def applier(backend: Backend, calls: list[int] | None = None) -> dict[str, Any]:
    """``setup``, ``handle`` and ``reset`` of a read model holding one row per event
    (no key: an event applied twice would show as two rows)."""
    table, p = backend.table, backend.param

    def setup(conn: Any) -> None:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} (pid TEXT, seq INTEGER, amount INTEGER)")

    def handle(conn: Any, envelopes: list[Envelope]) -> None:
        for e in envelopes:
            conn.execute(
                f"INSERT INTO {table} VALUES ({p}, {p}, {p})",
                (e.persistence_id, e.seq, e.event.amount),
            )
        if calls is not None:
            calls.append(len(envelopes))

    def reset(conn: Any) -> None:
        conn.execute(f"DELETE FROM {table}")

    return {"handle": handle, "setup": setup, "reset": reset}


def system_with(journal: Journal) -> Any:
    return actors.open_system("projections", extensions=[Persistence(journal)], seed=3)


def rows(backend: Backend) -> list[tuple[Any, ...]]:
    return backend.query(f"SELECT pid, seq, amount FROM {backend.table} ORDER BY pid, seq")


async def test_exactly_once_commits_the_read_model_with_the_offset(backend: Backend) -> None:
    calls: list[int] = []
    async with backend.open_journal(chunk_size=3) as journal:
        await write_sales(journal, "a", 1, 4)
        await write_sales(journal, "b", 1, 3)
        offsets = await write_sales(journal, "a", 5, 5)
        apply = applier(backend, calls)
        projection = Projection(
            "sales",
            JournalSource("sale"),
            backend.exactly_once(apply["handle"], setup=apply["setup"]),
            batch_size=2,
        )
        async with system_with(journal) as system:
            status = await projection.spawn(system).ask(WaitCaughtUp(), timeout=30)
    assert rows(backend) == [
        *((("a", n, n)) for n in range(1, 6)),
        *(("b", n, n) for n in (1, 2, 3)),
    ]
    assert calls == [2, 2, 2, 2]
    assert backend.query(
        f"SELECT projection_name, projection_key, current_offset FROM {backend.offsets}"
    ) == [("sales", "sale", offsets[-1])]
    assert (status.offset, status.lag, status.handled) == (offsets[-1], 0, 8)


async def test_a_failing_batch_is_rolled_back_with_its_offset_and_retried(
    backend: Backend,
) -> None:
    apply = applier(backend)
    failures = [RuntimeError("after two inserts")]

    def handle(conn: Any, envelopes: list[Envelope]) -> None:
        apply["handle"](conn, envelopes)  # the rows are written...
        if failures and envelopes[0].seq == 3:
            raise failures.pop()  # ... then the batch fails

    async with backend.open_journal() as journal:
        await write_sales(journal, "a", 1, 6)
        handler = backend.exactly_once(handle, setup=apply["setup"])
        projection = Projection("sales", JournalSource("sale"), handler, batch_size=2, backoff=FAST)
        async with system_with(journal) as system:
            status = await projection.spawn(system).ask(WaitCaughtUp(), timeout=30)
    assert rows(backend) == [("a", n, n) for n in range(1, 7)]  # each exactly once
    assert (status.offset, status.total_failures) == (6, 1)
    assert status.last_error == "RuntimeError: after two inserts"


async def test_a_second_instance_is_fenced_by_the_stored_offset(backend: Backend) -> None:
    apply = applier(backend)
    async with backend.open_journal() as journal:
        await write_sales(journal, "a", 1, 3)
        projection = Projection(
            "sales",
            JournalSource("sale"),
            backend.exactly_once(apply["handle"], setup=apply["setup"]),
            backoff=FAST,
        )
        async with system_with(journal) as system:
            first = projection.spawn(system, name="first")
            await first.ask(WaitCaughtUp(), timeout=30)
            second = projection.spawn(system, name="second")  # opens at offset 3
            await second.ask(WaitCaughtUp(), timeout=30)
            await write_sales(journal, "a", 4, 8)
            statuses: list[ProjectionStatus] = [
                await ref.ask(WaitCaughtUp(), timeout=30) for ref in (first, second)
            ]
    assert rows(backend) == [("a", n, n) for n in range(1, 9)]  # none applied twice
    assert [s.offset for s in statuses] == [8, 8]
    conflicts = [s.last_error or "" for s in statuses if s.total_failures]
    assert conflicts  # one of them found the other's commit
    assert conflicts[0].startswith(
        "OffsetConflict: projection 'sales' (key 'sale') expected the stored offset 3, as "
        "this instance left it, but the offsets table holds another"
    )


async def test_rebuild_clears_the_read_model_and_the_offset_in_one_transaction(
    backend: Backend,
) -> None:
    apply = applier(backend)
    async with backend.open_journal() as journal:
        await write_sales(journal, "a", 1, 3)
        handler = backend.exactly_once(apply["handle"], setup=apply["setup"], reset=apply["reset"])
        async with system_with(journal) as system:
            ref = Projection("sales", JournalSource("sale"), handler).spawn(system)
            await ref.ask(WaitCaughtUp(), timeout=30)
            assert len(rows(backend)) == 3
            await ref.ask(Rebuild(), timeout=30)
            status = await ref.ask(WaitCaughtUp(), timeout=30)
    assert rows(backend) == [("a", n, n) for n in range(1, 4)]
    assert (status.offset, status.handled) == (3, 6)


async def test_a_reset_that_fails_changes_nothing_and_reaches_the_asker(
    backend: Backend,
) -> None:
    apply = applier(backend)

    def reset(conn: Any) -> None:
        apply["reset"](conn)
        raise LookupError("no such read model")

    async with backend.open_journal() as journal:
        await write_sales(journal, "a", 1, 2)
        handler = backend.exactly_once(apply["handle"], setup=apply["setup"], reset=reset)
        async with system_with(journal) as system:
            ref = Projection("sales", JournalSource("sale"), handler, backoff=FAST).spawn(system)
            await ref.ask(WaitCaughtUp(), timeout=30)
            with pytest.raises(LookupError, match="no such read model"):
                await ref.ask(Rebuild(), timeout=30)
            status = await ref.ask(WaitCaughtUp(), timeout=30)
    assert rows(backend) == [("a", 1, 1), ("a", 2, 2)]  # the delete was rolled back
    assert (status.offset, status.total_failures) == (2, 1)


async def test_at_least_once_keeps_its_offset_in_a_sql_store(backend: Backend) -> None:
    seen: list[int] = []

    async def handle(envelopes: list[Envelope]) -> None:
        seen.extend(e.seq for e in envelopes)

    async with backend.open_journal() as journal:
        await write_sales(journal, "a", 1, 2)
        async with backend.offset_store() as offsets:
            for last in (2, 4):
                if last == 4:
                    await write_sales(journal, "a", 3, 4)
                async with system_with(journal) as system:
                    projection = Projection(
                        "sales", JournalSource("sale"), AtLeastOnce(handle, offsets=offsets)
                    )
                    await projection.spawn(system).ask(WaitCaughtUp(), timeout=30)
                    assert await offsets.load("sales", "sale") == last
        async with backend.offset_store() as offsets:  # a new connection reads it back
            assert await offsets.load("sales", "sale") == 4
            await offsets.clear("sales", "sale")
            assert await offsets.load("sales", "sale") is None
    assert seen == [1, 2, 3, 4]


async def test_the_status_reports_the_lag_of_a_stalled_projection(backend: Backend) -> None:
    def handle(conn: Any, envelopes: list[Envelope]) -> None:
        raise ValueError("stalled")

    slow = sv.Backoff(min_delay=30.0, max_delay=30.0, jitter=0.0)
    async with backend.open_journal() as journal:
        offsets = await write_sales(journal, "a", 1, 4)
        projection = Projection(
            "sales", JournalSource("sale"), backend.exactly_once(handle), backoff=slow
        )
        async with system_with(journal) as system:
            ref = projection.spawn(system)
            status = await ref.ask(GetStatus(), timeout=30)
            while status.failures == 0:
                status = await ref.ask(GetStatus(), timeout=30)
    assert (status.state, status.offset, status.lag) == ("backing_off", 0, offsets[-1])
    assert status.last_error == "ValueError: stalled"
    assert status.retry_in is not None
    assert 0 < status.retry_in <= 30


async def test_sqlite_a_handler_that_commits_is_refused(tmp_path: Path) -> None:
    def handle(conn: Any, envelopes: list[Envelope]) -> None:
        conn.execute("COMMIT")

    async with open_sqlite_journal(tmp_path / "journal.db") as journal:
        await write_sales(journal, "a", 1, 1)
        handler = SqliteExactlyOnce(tmp_path / "read.db", handle)
        projection = Projection("sales", JournalSource("sale"), handler, backoff=FAST)
        async with system_with(journal) as system:
            ref = projection.spawn(system)
            status = await ref.ask(GetStatus(), timeout=30)
            while status.failures == 0:
                status = await ref.ask(GetStatus(), timeout=30)
    assert status.offset == 0
    assert status.last_error is not None
    assert status.last_error.startswith(
        "ProjectionError: the handler of projection 'sales' ended the transaction (COMMIT or "
        "ROLLBACK, or a statement that commits)"
    )


def test_sql_names_are_checked() -> None:
    with pytest.raises(ValueError, match="table must be a plain SQL identifier"):
        SqliteExactlyOnce("x.db", print, table="offsets; DROP TABLE x")
    with pytest.raises(ValueError, match="schema must be a plain SQL identifier"):
        PostgresOffsetStore("dbname=x", schema="a.b")


async def test_a_read_model_that_cannot_be_opened_is_reported_without_the_password(
    tmp_path: Path,
) -> None:
    pytest.importorskip("psycopg")
    dsn = "postgresql://reader:s3cret@127.0.0.1:1/shop"  # nothing listens on port 1
    handler = PostgresExactlyOnce(dsn, lambda conn, envelopes: None, connect_timeout=2)
    async with open_sqlite_journal(tmp_path / "journal.db") as journal:
        projection = Projection("sales", JournalSource("sale"), handler, backoff=FAST)
        async with system_with(journal) as system:
            ref = projection.spawn(system)
            status = await ref.ask(GetStatus(), timeout=30)
            while status.failures == 0:
                status = await ref.ask(GetStatus(), timeout=30)
    assert status.last_error is not None
    assert status.last_error.startswith(
        "ProjectionError: projection 'sales' cannot open its read model in PostgreSQL "
        "database shop on 127.0.0.1:1: OperationalError"
    )
    assert "s3cret" not in status.last_error


async def test_an_offset_store_that_fails_names_itself(tmp_path: Path) -> None:
    missing = tmp_path / "no such folder" / "offsets.db"
    async with SqliteOffsetStore(missing) as offsets:
        with pytest.raises(ProjectionError) as caught:
            await offsets.load("sales", "sale")
    assert str(caught.value) == (
        f"the offset store in SQLite database {missing} failed to load the offset of "
        "'sales': OperationalError: unable to open database file"
    )
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
