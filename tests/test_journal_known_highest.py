"""The SQL journals' writer remembers the highest seqs of the ids it wrote between
groups (``KnownHighest`` in ``_sql_writes.py``) and trusts them only while no other
writer has stored an event since (the offset mark has not moved). Two journals on one
database stand for two processes. On SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from conftest import SqlBackend
from journal_conformance import event

from actors.persistence import SequenceConflict
from actors.persistence._sql_journal import SqlJournal


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


async def test_a_lone_writer_reads_each_highest_seq_once(sql_backend: SqlBackend) -> None:
    _, open_journal, _ = sql_backend
    async with open_journal() as journal:
        asked = count_reads(journal)
        for seq in range(1, 6):
            await journal.write([event("p", seq)])
        with pytest.raises(SequenceConflict, match="already has events up to seq 5"):
            await journal.write([event("p", 3)])  # refused from what it remembers
        await journal.write([event("q", 1)])
        assert [ids for ids in asked if ids] == [{"p"}, {"q"}]
        assert [r.seq for r in await collect(journal.replay("p"))] == [1, 2, 3, 4, 5]


async def test_another_writer_is_noticed_and_fenced(sql_backend: SqlBackend) -> None:
    _, open_journal, _ = sql_backend
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


async def test_deletions_by_another_writer_keep_the_numbering(sql_backend: SqlBackend) -> None:
    _, open_journal, _ = sql_backend
    async with open_journal() as a, open_journal() as b:
        await a.write([event("p", 1), event("p", 2)])
        await b.delete_to("p", 2)  # no insert: a's memory stays right
        with pytest.raises(SequenceConflict, match="already has events up to seq 2"):
            await a.write([event("p", 2)])
        await a.write([event("p", 3)])
        assert [r.seq for r in await collect(b.replay("p"))] == [3]
        assert await b.highest_seq("p") == 3


async def test_a_row_inserted_by_another_tool_is_noticed(sql_backend: SqlBackend) -> None:
    name, open_journal, admin = sql_backend
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
