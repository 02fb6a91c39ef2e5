"""The SQL journals' writer remembers the highest seqs of the ids it wrote between
groups (``KnownHighest`` in ``_sql_writes.py``) and trusts them only while no other
writer has stored an event since (the offset mark has not moved). Two journals on one
database stand for two processes. On SQLite and PostgreSQL."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, closing
from pathlib import Path
from typing import Any

import pytest
from journal_conformance import event

from actors.persistence import SequenceConflict
from actors.persistence._sql_journal import SqlJournal
from actors.persistence._sqlite import open_sqlite_journal

Opener = Callable[[], AbstractAsyncContextManager[SqlJournal[Any]]]
Backend = tuple[str, Opener, Callable[[str], None]]


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """(name, open a journal on the database, run admin statements on it)."""
    if request.param == "sqlite":
        path = tmp_path / "j.db"

        def admin_sqlite(statement: str) -> None:
            with closing(sqlite3.connect(path)) as conn:
                conn.executescript(statement)

        yield "sqlite", lambda: open_sqlite_journal(path), admin_sqlite
        return
    import psycopg

    from actors.persistence._postgres import open_postgres_journal

    dsn: str = request.getfixturevalue("postgres_dsn")
    schema = f"test_{uuid.uuid4().hex[:16]}"

    def admin_postgres(statement: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(statement.replace("{schema}", schema).encode())

    yield "postgres", lambda: open_postgres_journal(dsn, schema=schema), admin_postgres
    admin_postgres("DROP SCHEMA IF EXISTS {schema} CASCADE")


async def collect(iterator: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in iterator]


def count_reads(journal: SqlJournal[Any]) -> list[set[str]]:
    """Record the ids whose highest seq each group asks the database for."""
    dialect = journal._dialect
    asked: list[set[str]] = []
    begin_group = dialect.begin_group
    highest_many = dialect.highest_many

    nested: list[bool] = []  # (a backend's begin_group may read through highest_many)

    def counting_begin(conn: Any, draws_offsets: bool, ids: Any) -> Any:
        asked.append(set(ids))
        nested.append(True)
        try:
            return begin_group(conn, draws_offsets, ids)
        finally:
            nested.pop()

    def counting_highest(conn: Any, ids: Any) -> Any:
        if not nested:
            asked.append(set(ids))
        return highest_many(conn, ids)

    dialect.begin_group = counting_begin  # type: ignore[method-assign]
    dialect.highest_many = counting_highest  # type: ignore[method-assign,assignment]
    return asked


async def test_a_lone_writer_reads_each_highest_seq_once(backend: Backend) -> None:
    _, open_journal, _ = backend
    async with open_journal() as journal:
        asked = count_reads(journal)
        for seq in range(1, 6):
            await journal.write([event("p", seq)])
        with pytest.raises(SequenceConflict, match="already has events up to seq 5"):
            await journal.write([event("p", 3)])  # refused from what it remembers
        await journal.write([event("q", 1)])
        assert [ids for ids in asked if ids] == [{"p"}, {"q"}]
        assert [r.seq for r in await collect(journal.replay("p"))] == [1, 2, 3, 4, 5]


async def test_another_writer_is_noticed_and_fenced(backend: Backend) -> None:
    _, open_journal, _ = backend
    async with open_journal() as a, open_journal() as b:
        await a.write([event("p", 1)])
        await b.write([event("p", 2, payload=b"from b")])
        with pytest.raises(SequenceConflict, match="already has events up to seq 2"):
            await a.write([event("p", 2, payload=b"from a")])
        await a.write([event("p", 3)])
        with pytest.raises(SequenceConflict, match="already has events up to seq 3"):
            await b.write([event("p", 3, payload=b"from b")])
        await b.write([event("q", 1)])  # another id: a's memory of p is dropped too
        with pytest.raises(SequenceConflict, match="already has events up to seq 3"):
            await a.write([event("p", 3)])
        await a.write([event("p", 4)])
        stored = await collect(a.replay("p"))
        assert [(r.seq, r.payload) for r in stored] == [
            (1, b"p:1"),
            (2, b"from b"),
            (3, b"p:3"),
            (4, b"p:4"),
        ]


async def test_deletions_by_another_writer_keep_the_numbering(backend: Backend) -> None:
    _, open_journal, _ = backend
    async with open_journal() as a, open_journal() as b:
        await a.write([event("p", 1), event("p", 2)])
        await b.delete_to("p", 2)  # no insert: a's memory stays right
        with pytest.raises(SequenceConflict, match="already has events up to seq 2"):
            await a.write([event("p", 2)])
        await a.write([event("p", 3)])
        assert [r.seq for r in await collect(b.replay("p"))] == [3]
        assert await b.highest_seq("p") == 3


async def test_a_row_inserted_by_another_tool_is_noticed(backend: Backend) -> None:
    name, open_journal, admin = backend
    async with open_journal() as journal:
        await journal.write([event("p", 1)])
        table = "events" if name == "sqlite" else "{schema}.events"
        empty_tags = "'[]'" if name == "sqlite" else "'{}'"
        admin(
            f"INSERT INTO {table} (persistence_id, seq, serializer, manifest, payload, tags, "
            f"writer_id, timestamp) VALUES ('p', 2, 'test', 'T', 'x', {empty_tags}, 'tool', 0)"
        )
        with pytest.raises(SequenceConflict, match="already has events up to seq 2"):
            await journal.write([event("p", 2)])
        await journal.write([event("p", 3)])
        assert await journal.highest_seq("p") == 3
