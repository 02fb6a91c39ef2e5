"""Recovery while another writer commits events of the same persistence id (issue 14).

Recovery replays the events, then reads the journal's highest sequence number; events
that another writer committed meanwhile are more events to replay, not missing ones.
The tests inject such commits at the exact point of the race (after the replay's last
chunk, before the highest read) on the in-memory journal and on SQLite, check that a
writer fenced by ``SequenceConflict`` is restarted and recovers the other's events, and
run two real processes that write one persistence id on one SQLite file.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
from actors import ActorFailed, ActorStopped
from actors.persistence import (
    InMemoryJournal,
    Journal,
    Persistence,
    PersistentActor,
    PersistentRecord,
    RecoveryFailed,
    SequenceConflict,
    Serialization,
    SnapshotRecord,
    open_sqlite_journal,
)

PID = "ledger-1"
MAIN = Path(__file__).resolve().parents[1]


@attrs.frozen
class Entry:
    writer: str
    n: int


class Ledger(PersistentActor):
    """Keeps every entry it applied; ``("add", n)`` persists ``Entry(name, n)``."""

    def __init__(self, name: str) -> None:
        self.persistence_id = PID
        self.name = name
        self.entries: list[Entry] = []

    def apply(self, event: Any) -> None:
        self.entries.append(event)

    async def receive(self, message: Any) -> Any:
        match message:
            case ("add", n):
                return await self.persist(Entry(self.name, n))
            case "state":
                return (list(self.entries), self.last_seq)
        self.unhandled(message)
        return None


class Collect(actors.Actor):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.append(message)


def records(writer: str, first: int, last: int) -> list[PersistentRecord]:
    """Events ``first..last`` of :data:`PID` as another writer ``writer`` stores them."""
    serialization = Serialization()
    batch = []
    for seq in range(first, last + 1):
        serializer, manifest, payload = serialization.serialize(Entry(writer, seq))
        batch.append(PersistentRecord(PID, seq, serializer, manifest, payload, writer_id=writer))
    return batch


class Interleaved(Journal):
    """A journal that delegates to ``inner`` and, each time a replay of :data:`PID` has
    yielded its last chunk (before recovery goes on to read the highest seq), awaits
    ``after_replay(n)`` with the number ``n`` of that replay (1, 2, ...): the test's
    "other writer" commits there."""

    def __init__(self, inner: Journal, after_replay: Callable[[int], Awaitable[None]]) -> None:
        self.inner = inner
        self.snapshots = getattr(inner, "snapshots", None)
        self.after_replay = after_replay
        self.replays = 0

    async def write(self, batch: Sequence[PersistentRecord]) -> list[int]:
        return await self.inner.write(batch)

    def replay(
        self, persistence_id: str, from_seq: int = 1, to_seq: int | None = None
    ) -> AsyncIterator[PersistentRecord]:
        return self.inner.replay(persistence_id, from_seq, to_seq)

    def replay_chunks(
        self, persistence_id: str, from_seq: int = 1
    ) -> AsyncIterator[list[tuple[int, str, str, bytes]]]:
        chunks = self.inner.replay_chunks(persistence_id, from_seq)
        return chunks if persistence_id != PID else self._then_another_writer(chunks)

    async def _then_another_writer(
        self, chunks: AsyncIterator[list[tuple[int, str, str, bytes]]]
    ) -> AsyncIterator[list[tuple[int, str, str, bytes]]]:
        async for chunk in chunks:
            yield chunk
        self.replays += 1
        await self.after_replay(self.replays)

    async def highest_seq(self, persistence_id: str) -> int:
        return await self.inner.highest_seq(persistence_id)

    async def delete_to(self, persistence_id: str, to_seq: int) -> None:
        await self.inner.delete_to(persistence_id, to_seq)

    def events_by_tag(self, tag: str, from_offset: int = 0) -> AsyncIterator[PersistentRecord]:
        return self.inner.events_by_tag(tag, from_offset)

    async def persistence_ids(self) -> list[str]:
        return await self.inner.persistence_ids()


@pytest.fixture(params=["memory", "sqlite"])
async def journal(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Journal]:
    if request.param == "memory":
        yield InMemoryJournal()
    else:
        # Two rows per query: the replay takes several chunks.
        async with open_sqlite_journal(tmp_path / "journal.db", chunk_size=2) as sqlite:
            yield sqlite


async def stored(journal: Journal) -> list[tuple[int, Any]]:
    serialization = Serialization()
    return [
        (r.seq, serialization.deserialize(r.serializer, r.manifest, r.payload))
        async for r in journal.replay(PID)
    ]


async def watch(system: actors.ActorSystem) -> list[Any]:
    seen: list[Any] = []
    ref = system.spawn(Collect, seen)
    system.events.subscribe(ref, ActorFailed)
    system.events.subscribe(ref, ActorStopped)
    await trio.testing.wait_all_tasks_blocked()
    return seen


def history(writer: str, first: int, last: int) -> list[Entry]:
    return [Entry(writer, n) for n in range(first, last + 1)]


# -- the race, injected ---------------------------------------------------------------------


async def test_events_another_writer_commits_during_the_replay_are_recovered_too(
    journal: Journal,
) -> None:
    await journal.write(records("other", 1, 3))

    async def other_writer(replay: int) -> None:
        if replay == 1:
            await journal.write(records("other", 4, 5))

    interleaved = Interleaved(journal, other_writer)
    async with actors.open_system(extensions=[Persistence(interleaved)]) as system:
        seen = await watch(system)
        ledger = system.spawn(Ledger, "me", name="ledger")
        assert await ledger.ask("state") == (history("other", 1, 5), 5)
        assert await ledger.ask(("add", 6)) == 6  # running, and numbering goes on
        assert seen == []  # neither failed nor stopped
    assert interleaved.replays == 2  # the events 4 and 5 were read by a second replay
    assert [seq for seq, _ in await stored(journal)] == [1, 2, 3, 4, 5, 6]


async def test_recovery_ends_at_the_highest_seq_it_read_and_a_later_commit_fences_it(
    journal: Journal,
) -> None:
    # The other writer commits after the first replay and again after the second one:
    # recovery replays up to the highest seq it read after the first (5) and finishes;
    # the events committed after that read (6, 7) come later than this recovery, and
    # the actor's first persist is fenced by them: it is restarted and recovers them.
    await journal.write(records("other", 1, 3))

    async def other_writer(replay: int) -> None:
        if replay == 1:
            await journal.write(records("other", 4, 5))
        elif replay == 2:
            await journal.write(records("other", 6, 7))

    interleaved = Interleaved(journal, other_writer)
    async with actors.open_system(extensions=[Persistence(interleaved)]) as system:
        seen = await watch(system)
        ledger = system.spawn(Ledger, "me", name="ledger")
        assert await ledger.ask("state") == (history("other", 1, 5), 5)
        assert interleaved.replays == 2
        with pytest.raises(SequenceConflict):
            await ledger.ask(("add", 6))  # seq 6 is taken
        assert await ledger.ask("state") == (history("other", 1, 7), 7)
        assert await ledger.ask(("add", 8)) == 8
        assert [type(e).__name__ for e in seen] == ["ActorFailed"]
        assert isinstance(seen[0].error, SequenceConflict)
    assert [seq for seq, _ in await stored(journal)] == list(range(1, 9))


async def test_events_deleted_before_the_second_replay_are_still_missing() -> None:
    # The other writer commits 4..5 and deletes 1..5 before recovery reads the highest
    # seq: nothing (no snapshot either) holds 4 and 5, so recovery cannot help it.
    journal = InMemoryJournal()
    await journal.write(records("other", 1, 3))

    async def other_writer(replay: int) -> None:
        if replay == 1:
            await journal.write(records("other", 4, 5))
            await journal.delete_to(PID, 5)

    async with actors.open_system(extensions=[Persistence(Interleaved(journal, other_writer))]) as (
        system
    ):
        seen = await watch(system)
        ledger = system.spawn(Ledger, "me", name="ledger")
        await trio.testing.wait_all_tasks_blocked()
        stopped = [e for e in seen if isinstance(e, ActorStopped) and e.ref == ledger]
        assert len(stopped) == 1
        error = stopped[0].error
        assert isinstance(error, RecoveryFailed)
        assert not error.retryable
        assert (error.persistence_id, error.seq) == (PID, 4)
        assert "events 4..5 are missing from the journal (deleted" in str(error)


class SnapshotLedger(Ledger):
    def snapshot(self) -> Any:
        return list(self.entries)

    def restore(self, state: Any) -> None:
        self.entries = list(state)


def snapshot_of(entries: list[Entry]) -> SnapshotRecord:
    serializer, manifest, payload = Serialization().serialize(entries)
    return SnapshotRecord(PID, len(entries), serializer, manifest, payload)


async def test_after_a_snapshot_the_other_writers_events_are_recovered_too() -> None:
    journal = InMemoryJournal()
    await journal.write(records("other", 1, 4))
    await journal.snapshots.save(snapshot_of(history("other", 1, 3)))

    async def other_writer(replay: int) -> None:
        if replay == 1:
            await journal.write(records("other", 5, 6))

    interleaved = Interleaved(journal, other_writer)
    async with actors.open_system(extensions=[Persistence(interleaved)]) as system:
        seen = await watch(system)
        ledger = system.spawn(SnapshotLedger, "me", name="ledger")
        assert await ledger.ask("state") == (history("other", 1, 6), 6)
        assert seen == []
    assert interleaved.replays == 2


async def test_a_snapshot_ahead_of_the_journal_stops_the_actor_with_a_clear_error() -> None:
    other = InMemoryJournal()  # the journal the snapshot store belongs to
    await other.snapshots.save(snapshot_of(history("other", 1, 3)))
    persistence = Persistence(InMemoryJournal(), snapshot_store=other.snapshots)
    async with actors.open_system(extensions=[persistence]) as system:
        seen = await watch(system)
        ledger = system.spawn(SnapshotLedger, "me", name="ledger")
        await trio.testing.wait_all_tasks_blocked()
        [stopped] = [e for e in seen if isinstance(e, ActorStopped) and e.ref == ledger]
    error = stopped.error
    assert isinstance(error, RecoveryFailed)
    assert not error.retryable
    assert (error.persistence_id, error.seq) == (PID, 3)
    assert str(error).startswith(
        "recovery of persistence id 'ledger-1' failed at seq 3: the snapshot at seq 3 is "
        "ahead of the journal, whose highest seq is 0: the snapshot store holds snapshots "
        "of another journal, or the journal lost events; give the system the snapshot "
        "store of this journal"
    )


# -- a fenced writer catches up ------------------------------------------------------------


@attrs.define
class Journals:
    """Two journal objects on one store: one per actor system (for SQLite, two
    connections to one file, as two processes would have)."""

    one: Journal
    two: Journal


@pytest.fixture(params=["memory", "sqlite"])
async def journals(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Journals]:
    if request.param == "memory":
        shared = InMemoryJournal()
        yield Journals(shared, shared)
    else:
        path = tmp_path / "journal.db"
        async with open_sqlite_journal(path) as one, open_sqlite_journal(path) as two:
            yield Journals(one, two)


async def test_a_fenced_writer_is_restarted_and_recovers_what_the_other_wrote_meanwhile(
    journals: Journals,
) -> None:
    first_ref: list[actors.ActorRef] = []

    async def first_writes_during_the_restart(replay: int) -> None:
        # Replay 1: the second writer's first recovery; replay 2: its recovery after
        # the SequenceConflict, during which the first writer persists twice more.
        if replay == 2:
            assert await first_ref[0].ask(("add", 3)) == 3
            assert await first_ref[0].ask(("add", 4)) == 4

    two_journal = Interleaved(journals.two, first_writes_during_the_restart)
    async with (
        actors.open_system("one", extensions=[Persistence(journals.one)]) as one,
        actors.open_system("two", extensions=[Persistence(two_journal)]) as two,
    ):
        seen = await watch(two)
        first = one.spawn(Ledger, "first", name="ledger")
        first_ref.append(first)
        second = two.spawn(Ledger, "second", name="ledger")
        assert await first.ask("state") == ([], 0)
        assert await second.ask("state") == ([], 0)
        assert await first.ask(("add", 1)) == 1
        assert await first.ask(("add", 2)) == 2
        with pytest.raises(SequenceConflict):
            await second.ask(("add", 1))  # its seq 1 is taken: fenced
        # Restarted, it recovered all four events of the first writer, also the two
        # committed while it was replaying, and it writes on after them.
        assert await second.ask("state") == (history("first", 1, 4), 4)
        assert await second.ask(("add", 5)) == 5
        assert two_journal.replays == 3
        assert [type(e).__name__ for e in seen] == ["ActorFailed"]
        assert isinstance(seen[0].error, SequenceConflict)
    assert await stored(journals.one) == [
        *enumerate(history("first", 1, 4), start=1),
        (5, Entry("second", 5)),
    ]


# -- two real processes ---------------------------------------------------------------------

WRITER = """
import sys

import trio

import actors
import supervision as sv
from actors import ActorStopped
from actors.persistence import (
    Persistence, PersistentActor, SequenceConflict, open_sqlite_journal,
)


class Shared(PersistentActor):
    persistence_id = "shared"

    def apply(self, event):
        pass

    async def receive(self, message):
        return await self.persist(message)


class Report(actors.Actor):
    def receive(self, message):
        if message.error is not None:
            text = str(message.error).replace("\\n", " ")
            print("stopped", message.ref.path, type(message.error).__name__, text, flush=True)


async def main(path, name, count):
    # Every SequenceConflict restarts the actor: no restart limit in practice.
    strategy = sv.OneForOne(intensity=sv.RestartIntensity(max_restarts=10**9, within=1.0))
    async with (
        open_sqlite_journal(path) as journal,
        actors.open_system(name, guardian_strategy=strategy, extensions=[Persistence(journal)])
        as system,
    ):
        system.events.subscribe(system.spawn(Report), ActorStopped)
        shared = system.spawn(Shared, name="shared")
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.readline)
        conflicts = 0
        for i in range(count):
            while True:
                try:
                    seq = await shared.ask((name, i))
                except SequenceConflict:
                    conflicts += 1  # nothing was stored: the restarted actor tries again
                    continue
                except Exception as error:
                    print("failed", i, type(error).__name__, error, flush=True)
                    sys.exit(3)
                print("ack", seq, i, flush=True)
                break
        print("done", conflicts, flush=True)


trio.run(main, sys.argv[1], sys.argv[2], int(sys.argv[3]))
"""

COUNT = 400


class Lines:
    """The lines of a process's stdout, read as they come."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self.stream = stream
        self.buffer = b""
        self.lines: list[str] = []

    async def next(self) -> str | None:
        while b"\n" not in self.buffer:
            data = await self.stream.receive_some()
            if not data:
                return None
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        self.lines.append(line.decode())
        return self.lines[-1]

    async def rest(self) -> None:
        while await self.next() is not None:
            pass


@pytest.mark.crash
async def test_two_processes_writing_one_persistence_id_keep_a_gapless_history(
    tmp_path: Path,
) -> None:
    script = tmp_path / "shared_writer.py"
    script.write_text(textwrap.dedent(WRITER))
    path = tmp_path / "journal.db"
    async with open_sqlite_journal(path):
        pass  # created once, before the two writers open it
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(MAIN), os.environ.get("PYTHONPATH")])),
    }
    names = ["p1", "p2"]
    errors = {name: tmp_path / f"{name}.stderr" for name in names}
    with trio.fail_after(60):
        processes = []
        for name in names:
            with errors[name].open("wb") as stderr:
                command = [sys.executable, str(script), str(path), name, str(COUNT)]
                processes.append(
                    await trio.lowlevel.open_process(
                        command,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=stderr,
                        env=env,
                    )
                )
        try:
            outputs = []
            for process in processes:
                assert process.stdout is not None
                lines = Lines(process.stdout)
                assert await lines.next() == "ready"
                outputs.append(lines)
            for process in processes:  # both are ready: they start writing together
                assert process.stdin is not None
                await process.stdin.send_all(b"go\n")
            async with trio.open_nursery() as nursery:
                for lines in outputs:
                    nursery.start_soon(lines.rest)
            codes = [await process.wait() for process in processes]
        finally:
            for process in processes:
                if process.returncode is None:
                    process.kill()
                    with trio.CancelScope(shield=True), trio.move_on_after(5):
                        await process.wait()
    for name, lines, code in zip(names, outputs, codes, strict=True):
        problems = [line for line in lines.lines[1:] if not line.startswith(("ack ", "done "))]
        assert problems == [], f"{name}: {problems}"  # no "stopped ... missing", no "failed"
        assert code == 0, (name, lines.lines[-5:], errors[name].read_text()[-2000:])
        assert lines.lines[-1].startswith("done ")
    acked = {
        name: [tuple(map(int, line.split()[1:])) for line in lines.lines if line.startswith("ack ")]
        for name, lines in zip(names, outputs, strict=True)
    }
    async with open_sqlite_journal(path, create=False) as journal:
        serialization = Serialization()
        events = {
            r.seq: tuple(serialization.deserialize(r.serializer, r.manifest, r.payload))
            async for r in journal.replay("shared")
        }
        highest = await journal.highest_seq("shared")
    # Gapless, each item of each process stored exactly once (a conflict stores nothing
    # and the item is persisted again), and each acknowledged seq holds what was acked.
    assert sorted(events) == list(range(1, 2 * COUNT + 1))
    assert highest == 2 * COUNT
    assert sorted(events.values()) == sorted((name, i) for name in names for i in range(COUNT))
    for name in names:
        assert [i for _, i in acked[name]] == list(range(COUNT))
        assert all(events[seq] == (name, i) for seq, i in acked[name])
