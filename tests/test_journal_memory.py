"""The journal conformance suite, run against the in-memory backend, and what only the
in-memory backend promises."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from journal_conformance import JournalConformance, events

from actors.persistence import InMemoryJournal, InMemorySnapshotStore, Journal, SnapshotStore


class TestInMemoryJournal(JournalConformance):
    @pytest.fixture
    def journal(self) -> Journal:
        return InMemoryJournal()

    @pytest.fixture
    def snapshot_store(self) -> SnapshotStore:
        return InMemorySnapshotStore()


async def test_a_cancelled_write_stores_nothing() -> None:
    journal = InMemoryJournal()
    with trio.CancelScope() as scope:
        scope.cancel()
        await journal.write(events("a", 1, 3))
    assert await journal.highest_seq("a") == 0
    assert await journal.persistence_ids() == []


async def test_replay_sees_later_writes_and_skips_later_deletes() -> None:
    journal = InMemoryJournal()
    await journal.write(events("a", 1, 1_000))
    replay = journal.replay("a")
    first = await replay.__anext__()
    assert first.seq == 1
    await journal.delete_to("a", 600)  # the first chunk is already read
    await journal.write(events("a", 1_001, 1_010))
    rest = [record.seq async for record in replay]
    assert rest[0] == 2
    assert 601 in rest
    assert 599 not in rest
    assert rest[-1] == 1_010


async def test_the_conflict_message_says_what_happened() -> None:
    journal = InMemoryJournal()
    await journal.write(events("a", 1, 3))
    with pytest.raises(Exception, match=r"seq 2 of 'a'.*already stored.*highest stored seq is 3"):
        await journal.write(events("a", 2, 2))
    with pytest.raises(Exception, match=r"seq 5 of 'a'.*leaves a gap.*continue with 4"):
        await journal.write(events("a", 5, 5))
