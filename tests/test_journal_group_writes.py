"""The SQL journals store a group's writes together (``_sql_writes.py``): the fence is
checked write after write in queue order, other operations keep their place between
writes, a database error falls back to one savepoint per operation, and a long queue
is committed in one group, in queue order (COPY on PostgreSQL). On SQLite and
PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
import trio
from conftest import SqlBackend
from journal_conformance import event, events

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
        # (A write's result is its offsets, as a range when they follow one another.)
        assert list(results[0]) == offsets[1:3]
        assert list(results[1]) == [offsets[3]]
        assert list(results[4]) == [offsets[4]]
        assert isinstance(results[5], Sequence)
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
        assert isinstance(await journal._wait(first), Sequence)
        assert await journal._wait(seen) == 2  # after the first write, before the second
        await journal._wait(deleted)
        assert isinstance(await journal._wait(second), Sequence)
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
        assert all(isinstance(r, Sequence) for r in results[:1] + results[2:])
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


async def test_offsets_stay_exact_when_an_operation_between_writes_draws_some(
    sql_backend: SqlBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within one group the writer passes the offset mark it read with ``BEGIN`` from
    one run of writes to the next (a one-row write takes its offset from the insert
    itself, on SQLite), and reads it again after any other operation, which may have
    drawn offsets: every write still gets the offsets its rows were stored with."""
    _, open_journal, _ = sql_backend
    async with open_journal() as journal:

        def no_retry(*args: Any) -> bool:
            raise AssertionError("the group was run again one savepoint per operation")

        monkeypatch.setattr(journal, "_run_one_savepoint_each", no_retry)
        dialect = journal._dialect
        stray = EventWrite.of_batch(dialect, [event("stray", 1)]).rows[0]
        one = queue_write(journal, event("one", 1))
        three = queue_write(journal, *events("three", 1, 3))
        drawn = journal._submit(
            "insert", lambda conn: dialect.insert_events(conn, [stray]), draws_offsets=True
        )
        after = queue_write(journal, event("after", 1))
        before = journal.transactions
        results = [list(await journal._wait(op)) for op in (one, three, drawn, after)]
        assert journal.transactions - before == 1
        stored = {
            pid: [r.offset async for r in journal.replay(pid)]
            for pid in ("one", "three", "stray", "after")
        }
        assert results == [stored["one"], stored["three"], stored["stray"], stored["after"]]
        flat = [offset for result in results for offset in result]
        assert flat == sorted(flat)
        assert len(set(flat)) == 6
