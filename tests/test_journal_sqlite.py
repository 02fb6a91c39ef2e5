"""The SQLite journal: basics, natural group commit, per-batch failure inside a group,
durability across reopen, corrupt files, tag queries that resume, draining on exit."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio
import trio.testing
from journal_conformance import JournalConformance

from actors.persistence import (
    Journal,
    JournalFailure,
    PersistentRecord,
    SequenceConflict,
    SnapshotRecord,
    SnapshotStore,
    SqliteJournal,
    open_sqlite_journal,
)

# -- helpers ------------------------------------------------------------------------------


def event(pid: str, seq: int, *tags: str, payload: bytes | None = None) -> PersistentRecord:
    return PersistentRecord(
        persistence_id=pid,
        seq=seq,
        serializer="test",
        manifest="T/1",
        payload=payload if payload is not None else f"{pid}:{seq}".encode(),
        tags=frozenset(tags),
        writer_id="w1",
        timestamp=1700000000.5,
    )


async def collect(iterator: AsyncIterator[PersistentRecord]) -> list[PersistentRecord]:
    return [record async for record in iterator]


@pytest.fixture
async def journal(tmp_path: Path) -> AsyncIterator[SqliteJournal]:
    async with open_sqlite_journal(tmp_path / "journal.db", chunk_size=3) as journal:
        yield journal


# -- the conformance suite ----------------------------------------------------------------


class TestSqliteConformance(JournalConformance):
    """The shared contract suite on SQLite (small chunks, so replays and tag queries page)."""

    @pytest.fixture
    async def journal(self, tmp_path: Path) -> AsyncIterator[Journal]:
        async with open_sqlite_journal(tmp_path / "conformance.db", chunk_size=128) as journal:
            yield journal

    @pytest.fixture
    async def snapshot_store(self, tmp_path: Path) -> AsyncIterator[SnapshotStore]:
        async with open_sqlite_journal(tmp_path / "snapshots.db") as journal:
            yield journal.snapshots


# -- basics -------------------------------------------------------------------------------


async def test_write_replay_highest(journal: SqliteJournal) -> None:
    assert await journal.highest_seq("a") == 0
    assert await journal.write([]) == []
    offsets = await journal.write([event("a", 1), event("a", 2, "t")])
    assert len(offsets) == 2
    assert offsets[0] < offsets[1]
    more = await journal.write([event("a", s) for s in range(3, 11)])
    assert more[0] > offsets[1]
    assert await journal.highest_seq("a") == 10
    replayed = await collect(journal.replay("a"))  # chunk_size=3: several chunks
    assert [r.seq for r in replayed] == list(range(1, 11))
    first = replayed[1]
    assert first == PersistentRecord(
        persistence_id="a",
        seq=2,
        serializer="test",
        manifest="T/1",
        payload=b"a:2",
        tags=frozenset({"t"}),
        writer_id="w1",
        timestamp=1700000000.5,
        offset=offsets[1],
    )
    assert [r.seq for r in await collect(journal.replay("a", 4, 6))] == [4, 5, 6]
    assert [r.seq for r in await collect(journal.replay("a", 9))] == [9, 10]
    assert await collect(journal.replay("a", 11)) == []
    assert await collect(journal.replay("nobody")) == []


async def test_delete_keeps_highest(journal: SqliteJournal) -> None:
    await journal.write([event("a", s, "t") for s in range(1, 6)])
    await journal.delete_to("a", 3)
    assert [r.seq for r in await collect(journal.replay("a"))] == [4, 5]
    assert [r.seq for r in await collect(journal.events_by_tag("t"))] == [4, 5]
    await journal.delete_to("a", 100)
    assert await collect(journal.replay("a")) == []
    assert await journal.highest_seq("a") == 5
    assert await journal.persistence_ids() == ["a"]
    # The next write continues from the highest; reusing a deleted seq is a conflict.
    with pytest.raises(SequenceConflict):
        await journal.write([event("a", 1)])
    await journal.write([event("a", 6)])
    assert [r.seq for r in await collect(journal.replay("a"))] == [6]


async def test_conflict_and_gap_store_nothing(journal: SqliteJournal) -> None:
    await journal.write([event("a", 1), event("a", 2)])
    with pytest.raises(SequenceConflict, match="already has events up to seq 2"):
        await journal.write([event("a", 2), event("a", 3)])
    with pytest.raises(SequenceConflict, match="gap"):
        await journal.write([event("a", 4)])
    assert [r.seq for r in await collect(journal.replay("a"))] == [1, 2]
    assert await journal.highest_seq("a") == 2


async def test_malformed_batches_are_refused_before_queueing(journal: SqliteJournal) -> None:
    with pytest.raises(ValueError, match="one persistence_id"):
        await journal.write([event("a", 1), event("b", 2)])
    with pytest.raises(SequenceConflict, match="without a gap"):
        await journal.write([event("a", 1), event("a", 3)])
    with pytest.raises(SequenceConflict, match="start at 1"):
        await journal.write([event("a", 0)])
    assert journal.ops_acknowledged == 0


async def test_persistence_ids(journal: SqliteJournal) -> None:
    assert await journal.persistence_ids() == []
    for pid in ("c", "a", "b"):
        await journal.write([event(pid, 1)])
    assert await journal.persistence_ids() == ["a", "b", "c"]


async def test_events_by_tag_in_offset_order_and_resume(journal: SqliteJournal) -> None:
    await journal.write([event("a", 1, "x"), event("a", 2, "y"), event("a", 3, "x", "y")])
    await journal.write([event("b", 1, "x")])
    await journal.write([event("a", 4, "x")])
    tagged = await collect(journal.events_by_tag("x"))
    assert [(r.persistence_id, r.seq) for r in tagged] == [("a", 1), ("a", 3), ("b", 1), ("a", 4)]
    offsets = [r.offset for r in tagged]
    assert offsets == sorted(offsets)
    # Resume after the second one: nothing skipped, nothing repeated.
    resumed = await collect(journal.events_by_tag("x", from_offset=offsets[1]))
    assert [r.offset for r in resumed] == offsets[2:]
    # A reader that saw everything sees exactly the later events.
    await journal.write([event("c", s, "x") for s in range(1, 5)])
    later = await collect(journal.events_by_tag("x", from_offset=offsets[-1]))
    assert [(r.persistence_id, r.seq) for r in later] == [("c", s) for s in range(1, 5)]
    assert [(r.persistence_id, r.seq) for r in await collect(journal.events_by_tag("y"))] == [
        ("a", 2),
        ("a", 3),
    ]
    assert await collect(journal.events_by_tag("none")) == []


async def test_snapshots(journal: SqliteJournal) -> None:
    store = journal.snapshots
    assert await store.load("a") is None
    for seq in (5, 10, 15):
        await store.save(SnapshotRecord("a", seq, "test", "S/1", f"s{seq}".encode(), 1.0))
    await store.save(SnapshotRecord("b", 3, "test", "S/1", b"b3", 2.0))
    newest = await store.load("a")
    assert newest == SnapshotRecord("a", 15, "test", "S/1", b"s15", 1.0)
    older = await store.load("a", max_seq=14)
    assert older is not None
    assert older.seq == 10
    assert await store.load("a", max_seq=4) is None
    # Saving the same id and seq replaces.
    await store.save(SnapshotRecord("a", 15, "test", "S/2", b"new", 3.0))
    replaced = await store.load("a")
    assert replaced is not None
    assert replaced.payload == b"new"
    await store.delete("a", 10)
    remaining = await store.load("a", max_seq=14)
    assert remaining is None
    assert (await store.load("b")) is not None


# -- group commit -------------------------------------------------------------------------


async def test_concurrent_writes_share_transactions(journal: SqliteJournal) -> None:
    before = journal.transactions
    results: dict[str, list[int]] = {}

    async def write(pid: str) -> None:
        results[pid] = await journal.write([event(pid, 1), event(pid, 2)])

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(write, f"id-{i:02}")
    used = journal.transactions - before
    assert 1 <= used < 50
    assert len(results) == 50
    all_offsets = sorted(o for offsets in results.values() for o in offsets)
    assert len(set(all_offsets)) == 100
    for i in range(50):
        assert [r.seq for r in await collect(journal.replay(f"id-{i:02}"))] == [1, 2]


async def test_a_conflict_fails_only_its_batch_in_a_group(journal: SqliteJournal) -> None:
    await journal.write([event("taken", 1)])
    before = journal.transactions
    outcomes: dict[str, object] = {}

    async def write(record: PersistentRecord) -> None:
        try:
            outcomes[record.persistence_id] = await journal.write([record])
        except SequenceConflict as error:
            outcomes[record.persistence_id] = error

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, event("p0", 1))
        nursery.start_soon(write, event("taken", 1))
        for i in range(1, 10):
            nursery.start_soon(write, event(f"p{i}", 1))
    assert journal.transactions - before == 1  # all eleven in one group
    assert isinstance(outcomes.pop("taken"), SequenceConflict)
    assert all(isinstance(o, list) for o in outcomes.values())
    assert len(outcomes) == 10
    assert await journal.highest_seq("taken") == 1
    assert [r.payload for r in await collect(journal.replay("taken"))] == [b"taken:1"]
    for i in range(10):
        assert await journal.highest_seq(f"p{i}") == 1


async def test_highest_seq_waits_for_queued_writes(journal: SqliteJournal) -> None:
    seen: list[int] = []

    async def read() -> None:
        seen.append(await journal.highest_seq("a"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(journal.write, [event("a", 1), event("a", 2)])
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(read)
    assert seen == [2]


# -- lifecycle, durability, corruption ----------------------------------------------------


async def test_durable_across_reopen(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with open_sqlite_journal(path) as journal:
        await journal.write([event("a", 1, "t"), event("a", 2)])
        await journal.snapshots.save(SnapshotRecord("a", 2, "test", "S/1", b"snap"))
        await journal.delete_to("a", 1)
    async with open_sqlite_journal(path) as journal:  # schema creation is idempotent
        assert await journal.highest_seq("a") == 2
        assert [r.seq for r in await collect(journal.replay("a"))] == [2]
        assert await journal.persistence_ids() == ["a"]
        snapshot = await journal.snapshots.load("a")
        assert snapshot is not None
        assert snapshot.payload == b"snap"
        await journal.write([event("a", 3)])
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
    conn.close()


async def test_close_drains_queued_writes(journal: SqliteJournal) -> None:
    results: list[list[int]] = []

    async def write(pid: str) -> None:
        results.append(await journal.write([event(pid, 1)]))

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(write, f"p{i}")
        await trio.testing.wait_all_tasks_blocked()
        await journal.close()
    assert len(results) == 20
    with pytest.raises(JournalFailure, match="closed"):
        await journal.write([event("late", 1)])


async def test_cancelled_exit_commits_queued_writes_never_drops_them(tmp_path: Path) -> None:
    outcomes: list[object] = []

    async def write(journal: SqliteJournal, pid: str) -> None:
        try:
            outcomes.append(await journal.write([event(pid, 1)]))
        except JournalFailure as error:
            outcomes.append(error)

    async with trio.open_nursery() as outer:
        with trio.CancelScope() as scope:
            async with open_sqlite_journal(tmp_path / "j.db") as journal:
                for i in range(10):
                    outer.start_soon(write, journal, f"p{i}")
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
                await trio.sleep_forever()
    # Every writer got an answer, and every queued write committed: the journal drains
    # its queue on a cancelled exit as on a normal one.
    assert len(outcomes) == 10
    committed = [o for o in outcomes if isinstance(o, list)]
    assert len(committed) == 10
    async with open_sqlite_journal(tmp_path / "j.db") as journal:
        assert len(await journal.persistence_ids()) == len(committed)


async def test_not_a_database_is_a_clear_failure(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not a SQLite database at all" * 200)
    with pytest.raises(JournalFailure, match="cannot open SQLite journal") as info:
        async with open_sqlite_journal(path):
            pass  # pragma: no cover
    assert str(path) in str(info.value)
    assert isinstance(info.value.__cause__, sqlite3.DatabaseError)


async def test_unopenable_path_is_a_clear_failure(tmp_path: Path) -> None:
    path = tmp_path / "missing-dir" / "j.db"
    with pytest.raises(JournalFailure, match="cannot open SQLite journal") as info:
        async with open_sqlite_journal(path):
            pass  # pragma: no cover
    assert str(path) in str(info.value)


async def test_garbled_pages_are_a_journal_failure(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with open_sqlite_journal(path) as journal:
        await journal.write([event("a", s, payload=b"x" * 3000) for s in range(1, 40)])
    data = bytearray(path.read_bytes())
    assert len(data) > 8 * 4096
    data[4096:] = b"\xff" * (len(data) - 4096)  # keep the header, garble every page
    path.write_bytes(bytes(data))
    with pytest.raises(JournalFailure) as info:
        async with open_sqlite_journal(path, integrity_check=True) as journal:
            await collect(journal.replay("a"))  # pragma: no cover
    assert str(path) in str(info.value)


async def test_second_writer_on_the_same_file_is_fenced(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    async with open_sqlite_journal(path) as first, open_sqlite_journal(path) as second:
        await first.write([event("a", 1)])
        with pytest.raises(SequenceConflict):
            await second.write([event("a", 1, payload=b"intruder")])
        await second.write([event("a", 2)])  # a writer that caught up may continue
        assert [r.payload for r in await collect(first.replay("a"))] == [b"a:1", b"a:2"]


async def test_an_sqlite_error_fails_only_its_operation(journal: SqliteJournal) -> None:
    outcomes: dict[str, object] = {}

    async def broken() -> None:
        # A private hook: an operation that makes SQLite raise inside the group.
        op = journal._submit("broken op", lambda conn: conn.execute("SELECT * FROM nope"))
        try:
            await journal._wait(op)
        except JournalFailure as error:
            outcomes["broken"] = error

    async def write(pid: str) -> None:
        outcomes[pid] = await journal.write([event(pid, 1)])

    before = journal.transactions
    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, "a")
        nursery.start_soon(broken)
        nursery.start_soon(write, "b")
    assert journal.transactions - before == 1
    failure = outcomes.pop("broken")
    assert isinstance(failure, JournalFailure)
    assert not isinstance(failure, SequenceConflict)
    assert "broken op" in str(failure)
    assert journal.path in str(failure)
    assert isinstance(failure.__cause__, sqlite3.OperationalError)
    assert sorted(outcomes) == ["a", "b"]
    assert await journal.persistence_ids() == ["a", "b"]


async def test_create_false_refuses_a_missing_an_empty_or_a_foreign_file(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    with pytest.raises(JournalFailure, match="no SQLite journal at"):
        async with open_sqlite_journal(path, create=False):
            pass
    assert not path.exists()
    async with open_sqlite_journal(path) as journal:
        await journal.write([event("a", 1)])
    async with open_sqlite_journal(path, create=False) as journal:
        assert await journal.highest_seq("a") == 1
    # Truncated to 0 bytes: SQLite would take it for a new database; create=False does not.
    path.write_bytes(b"")
    with pytest.raises(JournalFailure, match="empty file"):
        async with open_sqlite_journal(path, create=False):
            pass
    foreign = tmp_path / "foreign.db"
    connection = sqlite3.connect(foreign)
    connection.execute("CREATE TABLE t (x)")
    connection.close()
    with pytest.raises(JournalFailure, match="holds no journal"):
        async with open_sqlite_journal(foreign, create=False):
            pass
    connection = sqlite3.connect(foreign)
    tables = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    connection.close()
    assert tables == [("t",)]
