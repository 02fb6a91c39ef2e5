"""The SQL journals store a group's writes together (``_sql_writes.py``): the fence is
checked write after write in queue order, other operations keep their place between
writes, a database error falls back to one savepoint per operation, and a long queue
is committed in one group, in queue order (COPY on PostgreSQL). On SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from conftest import SqlBackend
from journal_conformance import event

from actors.persistence import JournalFailure, PersistentRecord, SequenceConflict
from actors.persistence._group_commit import WriterOp
from actors.persistence._sql_journal import SqlJournal
from actors.persistence._sql_writes import EventWrite


def queue_write(journal: SqlJournal[Any], *records: PersistentRecord) -> WriterOp[Any]:
    """Queue a write as ``journal.write`` does, without a checkpoint (so that several
    land in one group, in this order)."""
    return journal._queue(EventWrite.of_batch(journal._dialect, records))


async def outcome(journal: SqlJournal[Any], op: WriterOp[Any]) -> Any:
    try:
        return await journal._wait(op)
    except JournalFailure as error:
        return error


async def collect(iterator: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in iterator]


async def test_the_fence_follows_the_queue_within_a_group(
    sql_backend: SqlBackend,
) -> None:
    _, open_journal, _ = sql_backend
    async with open_journal() as journal:
        await journal.write([event("a", 1)])
        before = journal.transactions
        ops = [
            queue_write(journal, event("a", 2), event("a", 3)),
            queue_write(journal, event("a", 4)),
            queue_write(journal, event("a", 6)),  # a gap after 4: fails alone
            queue_write(journal, event("a", 4)),  # already written by this group
            queue_write(journal, event("a", 5)),  # continues after the accepted ones
            queue_write(journal, event("b", 1)),
        ]
        results = [await outcome(journal, op) for op in ops]
        assert journal.transactions - before == 1
        gap, taken = results[2], results[3]
        assert isinstance(gap, SequenceConflict)
        assert str(gap).startswith("write of 'a' seq 6..6: would leave a gap after seq 4 of 'a'")
        assert isinstance(taken, SequenceConflict)
        assert str(taken).startswith("write of 'a' seq 4..4: 'a' already has events up to seq 4")
        stored = await collect(journal.replay("a"))
        assert [r.seq for r in stored] == [1, 2, 3, 4, 5]
        offsets = [r.offset for r in stored]
        assert offsets == sorted(offsets)  # in seq order within the group too
        assert results[0] == offsets[1:3]
        assert results[1] == [offsets[3]]
        assert results[4] == [offsets[4]]
        assert isinstance(results[5], list)
        assert await journal.highest_seq("a") == 5


async def test_other_operations_keep_their_place_between_writes(
    sql_backend: SqlBackend,
) -> None:
    _, open_journal, _ = sql_backend
    async with open_journal() as journal:
        read = journal._sql.highest
        first = queue_write(journal, event("b", 1, tags=("t",)), event("b", 2))
        seen = journal._submit("read", lambda conn: conn.execute(read, ("b", "b")).fetchone()[0])
        deleted = journal._submit(
            "delete", lambda conn: conn.execute(journal._sql.keep_highest, ("b",))
        )
        second = queue_write(journal, event("b", 3, tags=("t",)))
        before = journal.transactions
        assert isinstance(await journal._wait(first), list)
        assert await journal._wait(seen) == 2  # after the first write, before the second
        await journal._wait(deleted)
        assert isinstance(await journal._wait(second), list)
        assert journal.transactions - before == 1
        await journal.delete_to("b", 3)  # every event gone: the highest seq stays
        assert await journal.highest_seq("b") == 3
        assert await journal.persistence_ids() == ["b"]
        with pytest.raises(SequenceConflict, match="already has events up to seq 3"):
            await journal.write([event("b", 3)])
        await journal.write([event("b", 4, tags=("t",))])
        assert [r.seq for r in await collect(journal.events_by_tag("t"))] == [4]


async def test_a_database_error_fails_only_its_write_via_savepoints(
    sql_backend: SqlBackend,
) -> None:
    name, open_journal, admin = sql_backend
    async with open_journal() as journal:
        if name == "sqlite":
            admin(
                "CREATE TRIGGER refuse_evil BEFORE INSERT ON events "
                "WHEN NEW.persistence_id = 'evil' BEGIN SELECT RAISE(ABORT, 'evil refused'); END"
            )
        else:
            admin(
                "CREATE FUNCTION {schema}.refuse_evil() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN IF NEW.persistence_id = 'evil' THEN RAISE EXCEPTION 'evil refused'; "
                "END IF; RETURN NEW; END $$; CREATE TRIGGER refuse_evil BEFORE INSERT ON "
                "{schema}.events FOR EACH ROW EXECUTE FUNCTION {schema}.refuse_evil()"
            )
        before = journal.transactions
        ops = [
            queue_write(journal, event("good", 1)),
            queue_write(journal, event("evil", 1)),
            queue_write(journal, event("good", 2)),
            queue_write(journal, event("other", 1)),
        ]
        results = [await outcome(journal, op) for op in ops]
        assert journal.transactions - before == 1
        failure = results[1]
        assert type(failure) is JournalFailure
        assert str(failure).startswith("write of 'evil' seq 1..1 failed on ")
        assert "evil refused" in str(failure)
        assert all(isinstance(r, list) for r in results[:1] + results[2:])
        assert [r.seq for r in await collect(journal.replay("good"))] == [1, 2]
        assert await journal.highest_seq("evil") == 0
        assert await journal.persistence_ids() == ["good", "other"]


async def test_a_long_queue_commits_in_one_group_in_queue_order(sql_backend: SqlBackend) -> None:
    _, open_journal, _ = sql_backend
    async with open_journal() as journal:
        before = journal.transactions
        ops = [queue_write(journal, event(f"p{i:03}", 1)) for i in range(100)]
        async with trio.open_nursery() as nursery:
            for op in ops:
                nursery.start_soon(journal._wait, op)
        assert journal.transactions - before == 1  # whatever was queued, in one commit
        offsets = [op.result[0] for op in ops]
        assert offsets == sorted(offsets)
        assert len(set(offsets)) == 100
        assert len(await journal.persistence_ids()) == 100
