"""The conformance suite of the journal and snapshot-store contracts.

Every backend runs it: subclass :class:`JournalConformance` in a ``test_*.py`` module as
``class TestMyJournal(JournalConformance)`` and provide two fixtures, ``journal`` (a
fresh, empty :class:`Journal`) and ``snapshot_store`` (a fresh, empty
:class:`SnapshotStore`), sync or async, closing them afterwards as the backend needs::

    class TestSqliteJournal(JournalConformance):
        @pytest.fixture
        async def journal(self, tmp_path: Path) -> AsyncIterator[Journal]:
            ...

The suite uses nothing but the contract, so its expectations are the contract's
clauses. Where the contract leaves a choice, the suite fixes it (and the in-memory
journal documents it):

* a batch whose seqs do not continue from the highest stored one, by repeating a stored
  (or deleted) seq or by leaving a gap, raises :class:`SequenceConflict` and stores
  nothing;
* a batch with records of two persistence ids raises :class:`ValueError` and stores
  nothing;
* deleted events are gone from ``events_by_tag`` too;
* ``persistence_ids`` keeps an id whose events were all deleted.

Bounds follow the rule written in :class:`Journal`: any int is a valid bound, clamped to
the stored 64-bit range (an upper bound beyond it is no bound, a lower bound below the
start is the start, a lower bound beyond it selects nothing); a bound that is not an int
(a float, a bool) raises :class:`TypeError` naming the parameter.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from actors.persistence import (
    Journal,
    PersistentRecord,
    SequenceConflict,
    SnapshotRecord,
    SnapshotStore,
)


def event(
    persistence_id: str,
    seq: int,
    *,
    tags: tuple[str, ...] = (),
    writer_id: str = "w1",
    payload: bytes | None = None,
) -> PersistentRecord:
    """A record with a payload that names it, so the suite can tell records apart."""
    return PersistentRecord(
        persistence_id=persistence_id,
        seq=seq,
        serializer="test",
        manifest="test.Event@1",
        payload=payload if payload is not None else f"{persistence_id}:{seq}".encode(),
        tags=frozenset(tags),
        writer_id=writer_id,
        timestamp=1_700_000_000.0 + seq,
    )


def events(persistence_id: str, first: int, last: int, **kwargs: Any) -> list[PersistentRecord]:
    """Records ``first..last`` (inclusive) of ``persistence_id``."""
    return [event(persistence_id, seq, **kwargs) for seq in range(first, last + 1)]


def snapshot(persistence_id: str, seq: int, payload: bytes | None = None) -> SnapshotRecord:
    return SnapshotRecord(
        persistence_id=persistence_id,
        seq=seq,
        serializer="test",
        manifest="test.State",
        payload=payload if payload is not None else f"state {persistence_id}@{seq}".encode(),
        timestamp=1_700_000_000.0 + seq,
    )


async def replayed(
    journal: Journal, persistence_id: str, from_seq: int = 1, to_seq: int | None = None
) -> list[PersistentRecord]:
    return [record async for record in journal.replay(persistence_id, from_seq, to_seq)]


async def seqs(
    journal: Journal, persistence_id: str, from_seq: int = 1, to_seq: int | None = None
) -> list[int]:
    return [record.seq for record in await replayed(journal, persistence_id, from_seq, to_seq)]


async def tagged(journal: Journal, tag: str, from_offset: int = 0) -> list[PersistentRecord]:
    return [record async for record in journal.events_by_tag(tag, from_offset)]


async def tag_chunks(journal: Journal, tag: str, from_offset: int = 0) -> list[list[Any]]:
    return [chunk async for chunk in journal.events_by_tag_chunks(tag, from_offset)]


async def tag_rows(journal: Journal, tag: str, from_offset: int = 0) -> list[Any]:
    return [row for chunk in await tag_chunks(journal, tag, from_offset) for row in chunk]


def keys(records: list[PersistentRecord]) -> list[tuple[str, int]]:
    return [(record.persistence_id, record.seq) for record in records]


def same_content(stored: PersistentRecord, written: PersistentRecord) -> bool:
    """Every field but the offset, which the journal gives."""
    return (
        stored.persistence_id == written.persistence_id
        and stored.seq == written.seq
        and stored.serializer == written.serializer
        and stored.manifest == written.manifest
        and stored.payload == written.payload
        and stored.tags == written.tags
        and stored.writer_id == written.writer_id
        and stored.timestamp == written.timestamp
    )


class JournalConformance:
    """The contract of :class:`Journal` and :class:`SnapshotStore`, clause by clause.

    Subclasses provide the ``journal`` and ``snapshot_store`` fixtures (fresh and empty
    for every test). The fixtures below only say that they are missing.
    """

    @pytest.fixture
    def journal(self, *args: Any, **kwargs: Any) -> Any:
        pytest.fail(f"{type(self).__name__} must provide the `journal` fixture")

    @pytest.fixture
    def snapshot_store(self, *args: Any, **kwargs: Any) -> Any:
        pytest.fail(f"{type(self).__name__} must provide the `snapshot_store` fixture")

    # -- write ------------------------------------------------------------------------

    async def test_empty_journal(self, journal: Journal) -> None:
        assert await journal.highest_seq("a") == 0
        assert await journal.persistence_ids() == []
        assert await replayed(journal, "a") == []
        assert await tagged(journal, "t") == []

    async def test_write_stores_every_field_and_gives_offsets(self, journal: Journal) -> None:
        batch = [
            event("a", 1, tags=("t1",)),
            event("a", 2, tags=("t1", "t2"), payload=b"\x00\xff binary"),
            event("a", 3, writer_id="w-other"),
        ]
        offsets = await journal.write(batch)
        assert len(offsets) == 3
        assert offsets == sorted(offsets)
        assert len(set(offsets)) == 3
        assert all(offset > 0 for offset in offsets)
        stored = await replayed(journal, "a")
        assert len(stored) == 3
        for record, written, offset in zip(stored, batch, offsets, strict=True):
            assert same_content(record, written)
            assert record.offset == offset
        assert await journal.highest_seq("a") == 3

    async def test_empty_batch_stores_nothing(self, journal: Journal) -> None:
        assert await journal.write([]) == []
        assert await journal.persistence_ids() == []
        await journal.write(events("a", 1, 2))
        assert await journal.write([]) == []
        assert await seqs(journal, "a") == [1, 2]
        assert await journal.highest_seq("a") == 2

    async def test_batches_continue_from_the_highest_seq(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 3))
        await journal.write(events("a", 4, 4))
        await journal.write(events("a", 5, 9))
        assert await seqs(journal, "a") == list(range(1, 10))
        assert await journal.highest_seq("a") == 9

    async def test_ids_are_independent(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 2))
        await journal.write(events("b", 1, 3))
        await journal.write(events("a", 3, 3))
        assert keys(await replayed(journal, "a")) == [("a", 1), ("a", 2), ("a", 3)]
        assert keys(await replayed(journal, "b")) == [("b", 1), ("b", 2), ("b", 3)]
        assert await journal.highest_seq("a") == 3
        assert await journal.highest_seq("b") == 3
        assert await journal.highest_seq("c") == 0

    async def test_a_stored_seq_is_a_conflict_and_stores_nothing(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 3))
        with pytest.raises(SequenceConflict):
            await journal.write([event("a", 3, payload=b"other")])
        with pytest.raises(SequenceConflict):
            await journal.write(events("a", 1, 5))
        stored = await replayed(journal, "a")
        assert [record.payload for record in stored] == [b"a:1", b"a:2", b"a:3"]
        assert await journal.highest_seq("a") == 3

    async def test_a_gap_is_refused_and_stores_nothing(self, journal: Journal) -> None:
        with pytest.raises(SequenceConflict):
            await journal.write([event("a", 2)])
        with pytest.raises(SequenceConflict):
            await journal.write([event("a", 0)])
        assert await journal.persistence_ids() == []
        await journal.write(events("a", 1, 3))
        with pytest.raises(SequenceConflict):
            await journal.write(events("a", 5, 6))
        assert await seqs(journal, "a") == [1, 2, 3]
        assert await journal.highest_seq("a") == 3

    async def test_a_failing_batch_stores_nothing(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 3, tags=("t",)))
        bad_batches = [
            [event("a", 4, tags=("t",)), event("a", 5, tags=("t",)), event("a", 5)],
            [event("a", 4, tags=("t",)), event("a", 6, tags=("t",))],
            [event("a", 4, tags=("t",)), event("a", 3, tags=("t",))],
        ]
        for batch in bad_batches:
            with pytest.raises(SequenceConflict):
                await journal.write(batch)
        with pytest.raises(ValueError, match="persistence_id"):
            await journal.write([event("a", 4, tags=("t",)), event("b", 1, tags=("t",))])
        assert await seqs(journal, "a") == [1, 2, 3]
        assert await seqs(journal, "b") == []
        assert await journal.highest_seq("a") == 3
        assert await journal.highest_seq("b") == 0
        assert keys(await tagged(journal, "t")) == [("a", 1), ("a", 2), ("a", 3)]
        assert await journal.persistence_ids() == ["a"]
        # the journal still works, and continues where it was
        await journal.write(events("a", 4, 5, tags=("t",)))
        assert await seqs(journal, "a") == [1, 2, 3, 4, 5]

    async def test_a_second_writer_fails_and_never_corrupts(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 3, writer_id="w1"))
        # both incarnations recovered up to 3 and write seq 4
        assert await journal.highest_seq("a") == 3
        await journal.write([event("a", 4, writer_id="w1")])
        with pytest.raises(SequenceConflict):
            await journal.write([event("a", 4, writer_id="w2", payload=b"stale")])
        with pytest.raises(SequenceConflict):
            await journal.write([event("a", 4, writer_id="w2"), event("a", 5, writer_id="w2")])
        stored = await replayed(journal, "a")
        assert [record.seq for record in stored] == [1, 2, 3, 4]
        assert {record.writer_id for record in stored} == {"w1"}
        assert stored[-1].payload == b"a:4"

    async def test_concurrent_writers_of_one_seq_exactly_one_wins(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 2))
        outcomes: dict[str, str] = {}

        async def writer(writer_id: str) -> None:
            batch = events("a", 3, 5, writer_id=writer_id, payload=writer_id.encode())
            try:
                await journal.write(batch)
            except SequenceConflict:
                outcomes[writer_id] = "conflict"
            else:
                outcomes[writer_id] = "stored"

        async with trio.open_nursery() as nursery:
            for writer_id in ("w1", "w2", "w3"):
                nursery.start_soon(writer, writer_id)
        assert sorted(outcomes.values()) == ["conflict", "conflict", "stored"]
        (winner,) = [writer_id for writer_id, outcome in outcomes.items() if outcome == "stored"]
        stored = await replayed(journal, "a")
        assert [record.seq for record in stored] == [1, 2, 3, 4, 5]
        assert [record.writer_id for record in stored[2:]] == [winner] * 3
        assert await journal.highest_seq("a") == 5

    async def test_offsets_increase_in_commit_order_over_the_journal(
        self, journal: Journal
    ) -> None:
        all_offsets: list[int] = []
        all_offsets += await journal.write(events("a", 1, 2))
        all_offsets += await journal.write(events("b", 1, 1))
        all_offsets += await journal.write(events("a", 3, 5))
        all_offsets += await journal.write(events("c", 1, 2))
        assert all_offsets == sorted(all_offsets)
        assert len(set(all_offsets)) == len(all_offsets)
        stored = (
            await replayed(journal, "a")
            + await replayed(journal, "b")
            + await replayed(journal, "c")
        )
        assert sorted(record.offset for record in stored) == all_offsets

    async def test_highest_seq_waits_for_writes_already_started(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 1))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(journal.write, events("a", 2, 4))
            # the write has started (its task ran until it blocked, or finished)
            await trio.testing.wait_all_tasks_blocked()
            assert await journal.highest_seq("a") == 4

    # -- replay -----------------------------------------------------------------------

    async def test_replay_ranges(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 4))
        await journal.write(events("a", 5, 10))
        assert await seqs(journal, "a") == list(range(1, 11))
        assert await seqs(journal, "a", 4) == list(range(4, 11))
        assert await seqs(journal, "a", 4, 7) == [4, 5, 6, 7]
        assert await seqs(journal, "a", 1, 1) == [1]
        assert await seqs(journal, "a", 10, 10) == [10]
        assert await seqs(journal, "a", 3, 100) == list(range(3, 11))
        assert await seqs(journal, "a", 11) == []
        assert await seqs(journal, "a", 7, 6) == []
        assert await seqs(journal, "a", 1, 0) == []
        assert await seqs(journal, "other") == []

    async def test_replay_can_stop_early(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 600))
        seen = []
        async for record in journal.replay("a"):
            seen.append(record.seq)
            if record.seq == 300:
                break
        assert seen == list(range(1, 301))
        # the journal is unaffected by the abandoned replay
        await journal.write(events("a", 601, 601))
        assert await journal.highest_seq("a") == 601

    async def test_each_replay_is_a_new_iteration(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 3))
        assert await seqs(journal, "a") == [1, 2, 3]
        assert await seqs(journal, "a") == [1, 2, 3]

    async def test_a_long_replay_in_order(self, journal: Journal) -> None:
        total = 10_000
        for first in range(1, total + 1, 500):
            await journal.write(events("big", first, first + 499))
        await journal.write(events("small", 1, 3))
        count = 0
        async for record in journal.replay("big"):
            count += 1
            assert record.seq == count
            assert record.payload == f"big:{count}".encode()
        assert count == total
        assert await seqs(journal, "big", 9_990) == list(range(9_990, 10_001))

    async def test_replay_chunks_give_the_rows_of_replay(self, journal: Journal) -> None:
        for first in range(1, 3_001, 500):
            await journal.write(events("big", first, first + 499))
        await journal.write(events("small", 1, 3))
        await journal.delete_to("big", 10)
        expected = [
            (r.seq, r.serializer, r.manifest, r.payload) async for r in journal.replay("big", 5)
        ]
        chunks = [chunk async for chunk in journal.replay_chunks("big", 5)]
        assert all(chunks)  # no empty chunk
        assert [tuple(row) for chunk in chunks for row in chunk] == expected
        assert len(expected) == 2_990
        assert [chunk async for chunk in journal.replay_chunks("big", 3_001)] == []
        assert [chunk async for chunk in journal.replay_chunks("none")] == []

    async def test_a_long_replay_lets_other_tasks_run(self, journal: Journal) -> None:
        for first in range(1, 10_001, 1000):
            await journal.write(events("big", first, first + 999))
        ticks = 0
        ticks_during: list[int] = []

        async def ticker(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            nonlocal ticks
            task_status.started()
            while True:
                ticks += 1
                await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            await nursery.start(ticker)
            before = ticks
            count = 0
            async for _ in journal.replay("big"):
                count += 1
                if count % 2_500 == 0:
                    ticks_during.append(ticks)
            nursery.cancel_scope.cancel()
        assert count == 10_000
        assert ticks_during[-1] > before

    # -- delete -----------------------------------------------------------------------

    async def test_deleted_events_are_skipped(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 10))
        await journal.write(events("b", 1, 3))
        await journal.delete_to("a", 4)
        assert await seqs(journal, "a") == list(range(5, 11))
        assert await seqs(journal, "a", 1, 6) == [5, 6]
        assert await seqs(journal, "a", 1, 4) == []
        assert await seqs(journal, "b") == [1, 2, 3]
        await journal.delete_to("a", 2)  # already deleted: nothing changes
        assert await seqs(journal, "a") == list(range(5, 11))
        await journal.delete_to("a", 0)
        assert await seqs(journal, "a") == list(range(5, 11))

    async def test_delete_never_lowers_the_highest_seq(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 5))
        await journal.delete_to("a", 3)
        assert await journal.highest_seq("a") == 5
        await journal.delete_to("a", 5)
        assert await journal.highest_seq("a") == 5
        assert await seqs(journal, "a") == []
        # the next write continues from the highest, a deleted seq is still a conflict
        with pytest.raises(SequenceConflict):
            await journal.write([event("a", 1)])
        with pytest.raises(SequenceConflict):
            await journal.write([event("a", 5)])
        await journal.write(events("a", 6, 7))
        assert await seqs(journal, "a") == [6, 7]
        assert await journal.highest_seq("a") == 7

    async def test_delete_beyond_the_highest_deletes_all_and_keeps_the_highest(
        self, journal: Journal
    ) -> None:
        await journal.write(events("a", 1, 5))
        await journal.delete_to("a", 1_000)
        assert await seqs(journal, "a") == []
        assert await journal.highest_seq("a") == 5
        assert await journal.persistence_ids() == ["a"]
        await journal.write(events("a", 6, 6))
        assert await seqs(journal, "a") == [6]
        await journal.delete_to("unknown", 10)
        assert await journal.highest_seq("unknown") == 0

    async def test_deleted_events_are_not_in_tag_queries(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 4, tags=("t",)))
        await journal.write(events("b", 1, 2, tags=("t",)))
        await journal.delete_to("a", 2)
        assert keys(await tagged(journal, "t")) == [("a", 3), ("a", 4), ("b", 1), ("b", 2)]

    # -- events by tag ----------------------------------------------------------------

    async def test_events_by_tag_in_offset_order(self, journal: Journal) -> None:
        await journal.write([event("a", 1, tags=("red",)), event("a", 2, tags=("blue",))])
        await journal.write([event("b", 1, tags=("red", "blue"))])
        await journal.write([event("a", 3), event("a", 4, tags=("red",))])
        await journal.write([event("c", 1, tags=("red",))])
        red = await tagged(journal, "red")
        assert keys(red) == [("a", 1), ("b", 1), ("a", 4), ("c", 1)]
        assert [record.offset for record in red] == sorted(record.offset for record in red)
        assert all("red" in record.tags for record in red)
        assert keys(await tagged(journal, "blue")) == [("a", 2), ("b", 1)]
        assert await tagged(journal, "green") == []
        stored = {(r.persistence_id, r.seq): r for r in await replayed(journal, "a")}
        for record in red:
            if record.persistence_id == "a":
                assert record == stored[("a", record.seq)]

    async def test_events_by_tag_resume_from_an_offset(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 3, tags=("t",)))
        await journal.write(events("b", 1, 2, tags=("t",)))
        first = await tagged(journal, "t")
        assert len(first) == 5
        # resume after each position: exactly the rest
        for index, record in enumerate(first):
            rest = await tagged(journal, "t", record.offset)
            assert keys(rest) == keys(first[index + 1 :])
        last = first[-1].offset
        assert await tagged(journal, "t", last) == []
        # events committed later show up when resuming from the last offset seen
        await journal.write(events("a", 4, 5, tags=("t",)))
        await journal.write(events("c", 1, 1, tags=("other",)))
        await journal.write(events("c", 2, 2, tags=("t",)))
        assert keys(await tagged(journal, "t", last)) == [("a", 4), ("a", 5), ("c", 2)]
        assert await tagged(journal, "t", 10**12) == []

    async def test_events_by_tag_across_many_events(self, journal: Journal) -> None:
        for first in range(1, 2_001, 100):
            batch = [
                event("a", seq, tags=("even",) if seq % 2 == 0 else ())
                for seq in range(first, first + 100)
            ]
            await journal.write(batch)
        even = await tagged(journal, "even")
        assert [record.seq for record in even] == list(range(2, 2_001, 2))
        middle = even[499].offset
        assert [r.seq for r in await tagged(journal, "even", middle)] == list(
            range(1_002, 2_001, 2)
        )

    # -- events by tag, in chunks of rows (what projections read) ---------------------

    async def test_events_by_tag_chunks_give_the_events_of_events_by_tag(
        self, journal: Journal
    ) -> None:
        for first in range(1, 1_201, 200):
            for pid in ("a", "b", "c"):
                await journal.write(
                    [
                        event(pid, seq, tags=("t",) if seq % 3 else ("t", "u"))
                        for seq in range(first, first + 200)
                    ]
                )
        await journal.write(events("d", 1, 50, tags=("other",)))
        await journal.delete_to("b", 100)
        expected = await tagged(journal, "t")
        assert len(expected) == 3_500
        chunks = await tag_chunks(journal, "t")
        assert all(chunks)  # no empty chunk
        rows = [row for chunk in chunks for row in chunk]
        assert all(type(row) is tuple and len(row) == 9 for row in rows)
        # the fields of a record, in its order: PersistentRecord(*row) is the record
        assert [PersistentRecord(*row) for row in rows] == expected
        assert {row[5] for row in rows} == {frozenset({"t"}), frozenset({"t", "u"})}
        assert all(type(row[5]) is frozenset and type(row[4]) is bytes for row in rows)
        middle = expected[1_749].offset
        assert [PersistentRecord(*row) for row in await tag_rows(journal, "t", middle)] == (
            expected[1_750:]
        )
        assert await tag_chunks(journal, "t", expected[-1].offset) == []
        assert await tag_chunks(journal, "green") == []

    async def test_events_by_tag_chunks_resume_after_any_row(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 3, tags=("t",)))
        await journal.write(events("b", 1, 2, tags=("t",)))
        rows = await tag_rows(journal, "t")
        assert [(row[0], row[1]) for row in rows] == [
            ("a", 1),
            ("a", 2),
            ("a", 3),
            ("b", 1),
            ("b", 2),
        ]
        for index, row in enumerate(rows):
            assert await tag_rows(journal, "t", row[8]) == rows[index + 1 :]
        # events committed later show up when resuming from the last offset read
        await journal.write(events("a", 4, 4, tags=("t",)))
        await journal.write(events("c", 1, 1, tags=("other",)))
        later = await tag_rows(journal, "t", rows[-1][8])
        assert [(row[0], row[1]) for row in later] == [("a", 4)]

    async def test_chunk_readers_that_stop_early_hold_nothing(self, journal: Journal) -> None:
        for first in range(1, 2_001, 500):
            await journal.write(events("a", first, first + 499, tags=("t",)))
        abandoned = []
        for _ in range(10):  # more than a SQL journal's read connections
            chunks = journal.events_by_tag_chunks("t")
            assert (await chunks.__anext__())[0][:2] == ("a", 1)
            abandoned.append(chunks)
        # the journal goes on, and another reader reads everything
        await journal.write(events("a", 2_001, 2_001, tags=("t",)))
        assert len(await tag_rows(journal, "t")) == 2_001

    # -- the newest offset and the commit signal (for tag readers: lag, tailing) -------

    async def test_highest_offset_of_a_tag_and_of_the_journal(self, journal: Journal) -> None:
        assert await journal.highest_offset("t") == 0
        assert await journal.highest_offset() == 0
        red = await journal.write(events("a", 1, 2, tags=("red",)))
        blue = await journal.write(events("b", 1, 3, tags=("blue",)))
        untagged = await journal.write(events("c", 1, 1))
        assert await journal.highest_offset("red") == red[-1]
        assert await journal.highest_offset("blue") == blue[-1]
        assert await journal.highest_offset("green") == 0
        assert await journal.highest_offset() == untagged[-1]
        # what a reader that has read everything has seen last
        assert (await tagged(journal, "red"))[-1].offset == red[-1]

    async def test_highest_offset_leaves_out_deleted_events(self, journal: Journal) -> None:
        first = await journal.write(events("a", 1, 1, tags=("t",)))
        await journal.write(events("b", 1, 1, tags=("t",)))
        await journal.delete_to("b", 1)
        assert await journal.highest_offset("t") == first[-1]
        assert await journal.highest_offset() == first[-1]

    async def test_wait_for_commit_returns_after_a_write_commits(self, journal: Journal) -> None:
        woken: list[int] = []

        async def wait() -> None:
            await journal.wait_for_commit()
            woken.append(await journal.highest_offset() or 0)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            await journal.highest_seq("a")  # not a write of events
            await trio.testing.wait_all_tasks_blocked()
            assert woken == []
            offsets = await journal.write(events("a", 1, 2, tags=("t",)))
        # the waiter saw the write committed
        assert woken == [offsets[-1]]

    # -- persistence ids --------------------------------------------------------------

    async def test_persistence_ids_sorted(self, journal: Journal) -> None:
        for persistence_id in ("m", "b", "z", "a", "B"):
            await journal.write(events(persistence_id, 1, 2))
        await journal.write(events("m", 3, 3))
        assert await journal.persistence_ids() == ["B", "a", "b", "m", "z"]

    # -- checkpoints ------------------------------------------------------------------

    async def test_every_operation_is_a_checkpoint(self, journal: Journal) -> None:
        with trio.testing.assert_checkpoints():
            await journal.write(events("a", 1, 2, tags=("t",)))
        with trio.testing.assert_checkpoints():
            await journal.write([])
        with trio.testing.assert_checkpoints():
            await journal.highest_seq("a")
        with trio.testing.assert_checkpoints():
            await journal.persistence_ids()
        with trio.testing.assert_checkpoints():
            await replayed(journal, "a")
        with trio.testing.assert_checkpoints():
            await replayed(journal, "nobody")
        with trio.testing.assert_checkpoints():
            await tagged(journal, "t")
        with trio.testing.assert_checkpoints():
            await tagged(journal, "none")
        with trio.testing.assert_checkpoints():
            await tag_chunks(journal, "t")
        with trio.testing.assert_checkpoints():
            await tag_chunks(journal, "none")
        with trio.testing.assert_checkpoints():
            await journal.delete_to("a", 1)
        with trio.testing.assert_checkpoints(), pytest.raises(SequenceConflict):
            await journal.write([event("a", 1)])

    async def test_a_cancelled_write_stores_all_or_nothing(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 2))
        with trio.CancelScope() as scope:
            scope.cancel()
            await journal.write(events("a", 3, 5))
        stored = await seqs(journal, "a")
        assert stored in ([1, 2], [1, 2, 3, 4, 5])
        assert await journal.highest_seq("a") == stored[-1]

    # -- bounds: any int, clamped to the stored range; anything else a TypeError ------

    @pytest.mark.parametrize("to_seq", [2**63 - 1, 2**63, 2**64, 10**30])
    async def test_an_upper_bound_beyond_the_range_is_no_bound(
        self, journal: Journal, to_seq: int
    ) -> None:
        await journal.write(events("a", 1, 5))
        assert await seqs(journal, "a", 1, to_seq) == [1, 2, 3, 4, 5]
        assert await seqs(journal, "a", 4, to_seq) == [4, 5]
        assert await seqs(journal, "nobody", 1, to_seq) == []

    @pytest.mark.parametrize("to_seq", [0, -5, -(2**63), -(2**64), -(10**30)])
    async def test_an_upper_bound_below_the_start_selects_nothing(
        self, journal: Journal, to_seq: int
    ) -> None:
        await journal.write(events("a", 1, 5))
        assert await seqs(journal, "a", 1, to_seq) == []
        assert await seqs(journal, "a", -(10**30), to_seq) == []

    @pytest.mark.parametrize("from_seq", [1, 0, -5, -(2**63), -(2**64), -(10**30)])
    async def test_a_lower_bound_below_the_start_is_the_start(
        self, journal: Journal, from_seq: int
    ) -> None:
        await journal.write(events("a", 1, 5))
        assert await seqs(journal, "a", from_seq) == [1, 2, 3, 4, 5]
        assert await seqs(journal, "a", from_seq, 2) == [1, 2]
        assert await seqs(journal, "a", from_seq, 2**64) == [1, 2, 3, 4, 5]
        rows = [row async for chunk in journal.replay_chunks("a", from_seq) for row in chunk]
        assert [row[0] for row in rows] == [1, 2, 3, 4, 5]

    @pytest.mark.parametrize("from_seq", [2**63 - 1, 2**63, 2**64, 10**30])
    async def test_a_lower_bound_beyond_the_range_selects_nothing(
        self, journal: Journal, from_seq: int
    ) -> None:
        await journal.write(events("a", 1, 5))
        assert await seqs(journal, "a", from_seq) == []
        assert await seqs(journal, "a", from_seq, 2**64) == []
        assert [chunk async for chunk in journal.replay_chunks("a", from_seq)] == []

    @pytest.mark.parametrize("to_seq", [2**63 - 1, 2**63, 2**64, 10**30])
    async def test_delete_to_beyond_the_range_deletes_all_and_keeps_the_highest(
        self, journal: Journal, to_seq: int
    ) -> None:
        await journal.write(events("a", 1, 5, tags=("t",)))
        await journal.write(events("b", 1, 2, tags=("t",)))
        await journal.delete_to("a", to_seq)
        assert await seqs(journal, "a") == []
        assert await journal.highest_seq("a") == 5
        assert keys(await tagged(journal, "t")) == [("b", 1), ("b", 2)]
        assert await journal.persistence_ids() == ["a", "b"]
        with pytest.raises(SequenceConflict):
            await journal.write([event("a", 5)])
        await journal.write(events("a", 6, 6))
        assert await seqs(journal, "a") == [6]
        await journal.delete_to("unknown", to_seq)
        assert await journal.highest_seq("unknown") == 0

    @pytest.mark.parametrize("to_seq", [-1, -(2**63), -(2**64), -(10**30)])
    async def test_delete_to_below_the_start_deletes_nothing(
        self, journal: Journal, to_seq: int
    ) -> None:
        await journal.write(events("a", 1, 3))
        await journal.delete_to("a", to_seq)
        assert await seqs(journal, "a") == [1, 2, 3]
        assert await journal.highest_seq("a") == 3

    async def test_events_by_tag_bounds(self, journal: Journal) -> None:
        await journal.write(events("a", 1, 3, tags=("t",)))
        everything = keys(await tagged(journal, "t"))
        assert everything == [("a", 1), ("a", 2), ("a", 3)]
        for huge in (2**63 - 1, 2**63, 2**64, 10**30):
            assert await tagged(journal, "t", huge) == []
            assert await tag_chunks(journal, "t", huge) == []
        for below in (-1, -5, -(2**63), -(2**64), -(10**30)):
            assert keys(await tagged(journal, "t", below)) == everything
            assert [row[:2] for row in await tag_rows(journal, "t", below)] == everything

    @pytest.mark.parametrize("max_seq", [2**63 - 1, 2**63, 2**64, 10**30])
    async def test_snapshot_bounds_beyond_the_range_are_no_bound(
        self, snapshot_store: SnapshotStore, max_seq: int
    ) -> None:
        for seq in (5, 10):
            await snapshot_store.save(snapshot("a", seq))
        await snapshot_store.save(snapshot("b", 7))
        assert await snapshot_store.load("a", max_seq) == snapshot("a", 10)
        assert await snapshot_store.load("nobody", max_seq) is None
        await snapshot_store.delete("a", max_seq)
        assert await snapshot_store.load("a") is None
        assert await snapshot_store.load("b") == snapshot("b", 7)

    async def test_snapshot_bounds_below_the_range(self, snapshot_store: SnapshotStore) -> None:
        await snapshot_store.save(snapshot("a", 0))
        await snapshot_store.save(snapshot("a", 3))
        for below in (-1, -(2**63) - 1, -(10**30)):
            assert await snapshot_store.load("a", below) is None
            await snapshot_store.delete("a", below)
        assert await snapshot_store.load("a", 0) == snapshot("a", 0)
        assert await snapshot_store.load("a") == snapshot("a", 3)

    @pytest.mark.parametrize("bad", [1.0, 2.5, True, False, "1"])
    async def test_a_bound_that_is_not_an_int_is_a_type_error(
        self, journal: Journal, bad: Any
    ) -> None:
        await journal.write(events("a", 1, 3, tags=("t",)))
        with pytest.raises(TypeError, match="from_seq"):
            await replayed(journal, "a", bad)
        with pytest.raises(TypeError, match="to_seq"):
            await replayed(journal, "a", 1, bad)
        with pytest.raises(TypeError, match="from_seq"):
            [chunk async for chunk in journal.replay_chunks("a", bad)]
        with pytest.raises(TypeError, match="from_offset"):
            await tagged(journal, "t", bad)
        with pytest.raises(TypeError, match="from_offset"):
            await tag_chunks(journal, "t", bad)
        with pytest.raises(TypeError, match="to_seq"):
            await journal.delete_to("a", bad)
        with pytest.raises(TypeError, match="to_seq"):
            await journal.delete_to("a", None)  # type: ignore[arg-type]
        # nothing was deleted, and the journal goes on
        assert await seqs(journal, "a") == [1, 2, 3]
        await journal.write(events("a", 4, 4))
        assert await journal.highest_seq("a") == 4

    @pytest.mark.parametrize("bad", [1.0, 2.5, True, False, "1"])
    async def test_a_snapshot_bound_that_is_not_an_int_is_a_type_error(
        self, snapshot_store: SnapshotStore, bad: Any
    ) -> None:
        await snapshot_store.save(snapshot("a", 1))
        with pytest.raises(TypeError, match="max_seq"):
            await snapshot_store.load("a", bad)
        with pytest.raises(TypeError, match="max_seq"):
            await snapshot_store.delete("a", bad)
        with pytest.raises(TypeError, match="max_seq"):
            await snapshot_store.delete("a", None)  # type: ignore[arg-type]
        assert await snapshot_store.load("a") == snapshot("a", 1)

    # -- snapshots --------------------------------------------------------------------

    async def test_no_snapshot(self, snapshot_store: SnapshotStore) -> None:
        assert await snapshot_store.load("a") is None
        assert await snapshot_store.load("a", 100) is None
        await snapshot_store.delete("a", 100)  # nothing to delete is fine

    async def test_snapshot_round_trip(self, snapshot_store: SnapshotStore) -> None:
        saved = snapshot("a", 7, payload=b"\x00\x01 state")
        await snapshot_store.save(saved)
        assert await snapshot_store.load("a") == saved
        assert await snapshot_store.load("b") is None

    async def test_load_the_newest_matching_snapshot(self, snapshot_store: SnapshotStore) -> None:
        for seq in (10, 5, 15):
            await snapshot_store.save(snapshot("a", seq))
        await snapshot_store.save(snapshot("b", 20))
        assert await snapshot_store.load("a") == snapshot("a", 15)
        assert await snapshot_store.load("a", None) == snapshot("a", 15)
        assert await snapshot_store.load("a", 15) == snapshot("a", 15)
        assert await snapshot_store.load("a", 14) == snapshot("a", 10)
        assert await snapshot_store.load("a", 10) == snapshot("a", 10)
        assert await snapshot_store.load("a", 9) == snapshot("a", 5)
        assert await snapshot_store.load("a", 4) is None
        assert await snapshot_store.load("b") == snapshot("b", 20)

    async def test_fall_back_to_older_snapshots(self, snapshot_store: SnapshotStore) -> None:
        for seq in (3, 6, 9):
            await snapshot_store.save(snapshot("a", seq))
        found = []
        candidate = await snapshot_store.load("a")
        while candidate is not None:
            found.append(candidate.seq)
            candidate = await snapshot_store.load("a", candidate.seq - 1)
        assert found == [9, 6, 3]

    async def test_save_replaces_the_same_seq(self, snapshot_store: SnapshotStore) -> None:
        await snapshot_store.save(snapshot("a", 5, payload=b"old"))
        await snapshot_store.save(snapshot("a", 5, payload=b"new"))
        loaded = await snapshot_store.load("a")
        assert loaded is not None
        assert loaded.payload == b"new"
        await snapshot_store.delete("a", 5)
        assert await snapshot_store.load("a") is None

    async def test_delete_snapshots_up_to_a_seq(self, snapshot_store: SnapshotStore) -> None:
        for seq in (5, 10, 15):
            await snapshot_store.save(snapshot("a", seq))
        await snapshot_store.save(snapshot("b", 5))
        await snapshot_store.delete("a", 10)
        assert await snapshot_store.load("a") == snapshot("a", 15)
        assert await snapshot_store.load("a", 14) is None
        assert await snapshot_store.load("b") == snapshot("b", 5)
        await snapshot_store.delete("a", 100)
        assert await snapshot_store.load("a") is None
        await snapshot_store.save(snapshot("a", 20))
        assert await snapshot_store.load("a") == snapshot("a", 20)

    async def test_snapshot_operations_are_checkpoints(self, snapshot_store: SnapshotStore) -> None:
        with trio.testing.assert_checkpoints():
            await snapshot_store.save(snapshot("a", 1))
        with trio.testing.assert_checkpoints():
            await snapshot_store.load("a")
        with trio.testing.assert_checkpoints():
            await snapshot_store.load("nobody")
        with trio.testing.assert_checkpoints():
            await snapshot_store.delete("a", 1)
