"""Persistent actors: persist and apply, recovery (snapshots, fallback, upcasting), the
stash while a persist is in flight, failure versus rejection, retention, single writer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
import supervision as sv
from actors import ActorFailed, ActorRestarted, ActorStopped, DeadLetter
from actors.persistence import (
    EventRejected,
    InMemoryJournal,
    Journal,
    JournalFailure,
    Persistence,
    PersistentActor,
    PersistentRecord,
    RecoveryFailed,
    SequenceConflict,
    SnapshotRecord,
    open_sqlite_journal,
)
from actors.testing.journal import FaultyJournal, Operation, fail_next, reject_next

# -- events, actors and a journal with faults ----------------------------------------------


@attrs.frozen
class Deposited:
    amount: int


@attrs.frozen
class Renamed:
    name: str


@attrs.frozen
class Unpicklable:
    callback: Any  # a lambda: the pickle serializer rejects it


class Account(PersistentActor):
    """Balance from Deposited events; answers asks with what the tests look at."""

    def __init__(self, pid: str = "account-1", log: list[Any] | None = None) -> None:
        self.persistence_id = pid
        self.balance = 0
        self.applied: list[int] = []
        self.log = log if log is not None else []

    def apply(self, event: Any) -> None:
        if isinstance(event, Deposited):
            self.balance += event.amount
            self.applied.append(event.amount)

    def on_recovery_completed(self) -> None:
        self.log.append(("recovered", self.balance, self.last_seq))

    async def receive(self, message: Any) -> Any:
        match message:
            case ("deposit", amount):
                return await self.persist(Deposited(amount))
            case ("deposit-all", amounts):
                return await self.persist_all([Deposited(a) for a in amounts])
            case ("persist", event):
                return await self.persist(event)
            case ("try-persist", event):
                try:
                    await self.persist(event)
                except EventRejected as error:
                    return ("rejected", str(error), self.balance, self.last_seq)
                return ("stored", self.balance, self.last_seq)
            case "snapshot":
                return await self.save_snapshot()
            case "state":
                return (self.balance, self.last_seq)
            case "applied":
                return list(self.applied)
        self.unhandled(message)
        return None


class SnapshottingAccount(Account):
    snapshot_every = 3

    def snapshot(self) -> Any:
        return {"balance": self.balance}

    def restore(self, state: Any) -> None:
        self.log.append(("restore", state["balance"]))
        self.balance = state["balance"]


@attrs.define
class HoldingJournal(InMemoryJournal):
    """An in-memory journal whose writes or replays wait until ``released`` is set (the
    faults come from the testkit's ``FaultyJournal``)."""

    hold_replays: bool = False
    hold_writes: bool = False
    writes_started: int = 0
    released: trio.Event = attrs.Factory(trio.Event)

    def __attrs_post_init__(self) -> None:
        InMemoryJournal.__init__(self)

    async def write(self, batch: Sequence[PersistentRecord]) -> list[int]:
        self.writes_started += 1
        if self.hold_writes:
            await self.released.wait()
        return await super().write(batch)

    def replay_chunks(
        self, persistence_id: str, from_seq: int = 1
    ) -> AsyncIterator[list[tuple[int, str, str, bytes]]]:
        chunks = super().replay_chunks(persistence_id, from_seq)
        return self._held(chunks) if self.hold_replays else chunks

    async def _held(
        self, chunks: AsyncIterator[list[tuple[int, str, str, bytes]]]
    ) -> AsyncIterator[list[tuple[int, str, str, bytes]]]:
        await self.released.wait()
        async for chunk in chunks:
            yield chunk


async def stored(journal: Journal, pid: str = "account-1") -> list[int]:
    return [record.seq async for record in journal.replay(pid)]


async def snapshot_seqs(journal: InMemoryJournal, pid: str = "account-1") -> list[int]:
    """The seqs of the stored snapshots, oldest first (through the store's contract)."""
    seqs: list[int] = []
    max_seq: int | None = None
    while (record := await journal.snapshots.load(pid, max_seq)) is not None:
        seqs.insert(0, record.seq)
        max_seq = record.seq - 1
    return seqs


class Events(actors.Actor):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.append(message)


# -- persist, apply, recover -----------------------------------------------------------------


async def test_persist_applies_after_storing_and_recovery_replays() -> None:
    journal = InMemoryJournal()
    log: list[Any] = []
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(Account, "account-1", log, name="a")
        assert await account.ask(("deposit", 5)) == 1
        assert await account.ask(("deposit", 7)) == 2
        assert await account.ask("state") == (12, 2)
    assert await stored(journal) == [1, 2]
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(Account, "account-1", log, name="a")
        assert await account.ask("state") == (12, 2)
        assert await account.ask(("deposit", 1)) == 3
    # on_recovery_completed ran each time, also for the new id (balance 0, seq 0).
    assert log == [("recovered", 0, 0), ("recovered", 12, 2)]


async def test_persist_all_is_atomic_and_numbers_consecutively() -> None:
    journal = FaultyJournal(InMemoryJournal())
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(Account, name="a")
        assert await account.ask(("deposit-all", [1, 2, 3])) == 3
        assert await account.ask(("deposit-all", [])) == 3
        journal.add(fail_next(1))
        with pytest.raises(JournalFailure):
            await account.ask(("deposit-all", [10, 20]))
        # The failed incarnation is replaced; recovery has only the first batch.
        assert await account.ask("state") == (6, 3)
    assert await stored(journal) == [1, 2, 3]


async def test_defer_runs_after_the_persists_already_started() -> None:
    order: list[str] = []

    class Concurrent(Account):
        async def receive(self, message: Any) -> Any:
            if message == "go":
                async with trio.open_nursery() as nursery:
                    for amount in (1, 2, 3):
                        nursery.start_soon(self.persist, Deposited(amount))
                    await trio.testing.wait_all_tasks_blocked()

                    def note() -> str:
                        order.append(f"defer@{self.last_seq}")
                        return "deferred"

                    assert await self.defer(note) == "deferred"
                return list(self.applied)
            return await super().receive(message)

    async with actors.open_system(extensions=[Persistence(InMemoryJournal())]) as system:
        account = system.spawn(Concurrent, name="a")
        # The three persists run in the order their tasks happened to start.
        assert sorted(await account.ask("go")) == [1, 2, 3]
    assert order == ["defer@3"]


async def test_commands_wait_while_a_persist_is_in_flight() -> None:
    journal = HoldingJournal(hold_writes=True)
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(Account, name="a")
        results: dict[str, Any] = {}

        async def ask(message: Any) -> None:
            results[str(message)] = await account.ask(message)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, ("deposit", 1))
            await trio.testing.wait_all_tasks_blocked()
            assert journal.writes_started == 1
            nursery.start_soon(ask, "state")
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ask, ("deposit", 2))
            await trio.testing.wait_all_tasks_blocked()
            # The state query and the second deposit wait: no second write started.
            assert results == {}
            assert journal.writes_started == 1
            journal.released.set()
        # Handled in arrival order, after the persist: the query saw deposit 1 only.
        assert results == {"('deposit', 1)": 1, "state": (1, 1), "('deposit', 2)": 2}


@pytest.mark.parametrize("overflow", ["backpressure", "drop_newest"])
async def test_the_stash_during_a_persist_is_bounded(overflow: str) -> None:
    journal = HoldingJournal(hold_writes=True)

    class Bounded(Account):
        persist_stash = actors.Mailbox(capacity=2, overflow=actors.Overflow(overflow))

    dead: list[Any] = []
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        system.events.subscribe(system.spawn(Events, dead), DeadLetter)
        account = system.spawn(Bounded, name="a")
        account.tell(("deposit", 1))
        await trio.testing.wait_all_tasks_blocked()
        assert journal.writes_started == 1
        account.tell(("deposit", 2))
        account.tell(("deposit", 3))
        if overflow == "backpressure":
            with pytest.raises(actors.MailboxFull):
                account.tell(("deposit", 4))
        else:
            account.tell(("deposit", 4))
            await trio.testing.wait_all_tasks_blocked()
            assert [d.message for d in dead] == [("deposit", 4)]
        journal.hold_writes = False
        journal.released.set()
        assert await account.ask("state") == (6, 3)
        # The bound is lifted once the persist is done: the mailbox is unbounded again.
        for _n in range(5):
            account.tell(("deposit", 0))
        assert await account.ask("state") == (6, 8)


async def test_commands_wait_bounded_while_the_actor_recovers() -> None:
    class Bounded(Account):
        persist_stash = actors.Mailbox(capacity=2)

    journal = HoldingJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        await system.spawn(Account, name="a").ask(("deposit", 5))
    journal.hold_replays = True
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(Bounded, name="a")
        await trio.testing.wait_all_tasks_blocked()  # recovering: the replay is held
        account.tell(("deposit", 1))
        account.tell(("deposit", 2))
        with pytest.raises(actors.MailboxFull):
            account.tell(("deposit", 3))
        journal.released.set()
        # After recovery the two waiting commands run, in order, on the recovered state.
        assert await account.ask("state") == (8, 3)
        assert await account.ask("applied") == [5, 1, 2]


# -- snapshots -------------------------------------------------------------------------------


async def test_recovery_starts_from_the_newest_snapshot() -> None:
    journal = InMemoryJournal()
    log: list[Any] = []
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(SnapshottingAccount, "account-1", log, name="a")
        for amount in range(1, 11):  # snapshots at 3, 6 and 9 (keep_snapshots=2: 6, 9)
            await account.ask(("deposit", amount))
    assert await snapshot_seqs(journal) == [6, 9]
    log.clear()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(SnapshottingAccount, "account-1", log, name="a")
        assert await account.ask("state") == (55, 10)
        assert await account.ask("applied") == [10]  # only the event after the snapshot
    assert log == [("restore", 45), ("recovered", 55, 10)]


async def test_an_undecodable_snapshot_falls_back_to_an_older_one_then_to_replay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal = InMemoryJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(SnapshottingAccount, name="a")
        for amount in range(1, 8):  # snapshots at 3 and 6
            await account.ask(("deposit", amount))
    store = journal.snapshots
    newest = await store.load("account-1")
    assert newest is not None
    assert newest.seq == 6
    await store.save(attrs.evolve(newest, payload=b"garbage"))
    log: list[Any] = []
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(SnapshottingAccount, "account-1", log, name="a")
        assert await account.ask("state") == (28, 7)
        assert await account.ask("applied") == [4, 5, 6, 7]
    assert log[0] == ("restore", 6)
    assert "snapshot at seq 6 cannot be decoded" in caplog.text
    oldest = await store.load("account-1", 3)
    assert oldest is not None
    await store.save(attrs.evolve(oldest, serializer="no-such-serializer"))
    log.clear()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(SnapshottingAccount, "account-1", log, name="a")
        assert await account.ask("state") == (28, 7)
        assert await account.ask("applied") == [1, 2, 3, 4, 5, 6, 7]
    assert log == [("recovered", 28, 7)]


async def test_retention_deletes_old_snapshots_and_events_but_never_the_highest_seq() -> None:
    class Compacting(SnapshottingAccount):
        keep_snapshots = 2
        delete_events_on_snapshot = True

    journal = InMemoryJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(Compacting, name="a")
        for amount in range(1, 10):  # snapshots at 3, 6, 9: keeps 6 and 9
            await account.ask(("deposit", amount))
        assert await account.ask("snapshot") == 9  # on demand: replaces the one at 9
    assert await snapshot_seqs(journal) == [6, 9]
    assert await stored(journal) == [7, 8, 9]  # events up to the oldest kept snapshot
    assert await journal.highest_seq("account-1") == 9
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(Compacting, name="a")
        assert await account.ask("state") == (45, 9)
        assert await account.ask(("deposit", 10)) == 10


async def test_missing_events_fail_recovery_instead_of_starting_from_a_partial_history() -> None:
    journal = InMemoryJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(Account, name="a")
        for amount in range(1, 5):
            await account.ask(("deposit", amount))
    await journal.delete_to("account-1", 2)  # and there is no snapshot
    stopped: list[Any] = []
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        system.events.subscribe(system.spawn(Events, stopped), ActorStopped)
        account = system.spawn(Account, name="a")
        with pytest.raises(actors.ActorDead):
            await account.ask("state")
        await trio.testing.wait_all_tasks_blocked()
    [event] = [e for e in stopped if e.ref == account]
    assert isinstance(event.error, RecoveryFailed)
    assert not event.error.retryable
    assert "'account-1'" in str(event.error)
    assert "seq 1" in str(event.error)
    assert "events 1..2 are missing" in str(event.error)


# -- failure versus rejection ------------------------------------------------------------------


async def test_a_rejected_event_raises_in_the_handler_and_changes_nothing() -> None:
    journal = FaultyJournal(InMemoryJournal())
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(Account, name="a")
        await account.ask(("deposit", 3))
        answer = await account.ask(("try-persist", Unpicklable(lambda: None)))
        assert answer[0] == "rejected"
        assert answer[2:] == (3, 1)
        assert "Unpicklable" in answer[1]
        journal.add(reject_next(1))
        answer = await account.ask(("try-persist", Deposited(100)))
        assert answer[0] == "rejected"
        assert "injected by FaultyJournal policy reject_next" in answer[1]
        assert answer[2:] == (3, 1)
        # Uncaught in an ask: the asker gets it, and the actor goes on unrestarted.
        with pytest.raises(EventRejected):
            await account.ask(("persist", Unpicklable(lambda: None)))
        assert await account.ask(("deposit", 4)) == 2
        assert await account.ask("applied") == [3, 4]
    assert await stored(journal) == [1, 2]


async def test_a_journal_failure_fails_the_actor_and_the_restart_recovers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = FaultyJournal(InMemoryJournal())
    events: list[Any] = []
    strategy = sv.OneForOne(backoff=sv.Backoff(min_delay=1.0, max_delay=8.0, jitter=0.0))

    class Swallowing(Account):
        """Catches the failure: the actor fails all the same once the handler returns."""

        async def receive(self, message: Any) -> Any:
            if message == "swallow":
                try:
                    await self.persist(Deposited(50))
                except JournalFailure:
                    with pytest.raises(JournalFailure, match="earlier persist"):
                        await self.persist(Deposited(60))
                    return "swallowed"
            return await super().receive(message)

    async with actors.open_system(
        extensions=[Persistence(journal)], guardian_strategy=strategy
    ) as system:
        system.events.subscribe(system.spawn(Events, events), ActorRestarted)
        account = system.spawn(Swallowing, name="a")
        await account.ask(("deposit", 1))
        journal.add(fail_next(1))
        start = trio.current_time()
        account.tell(("deposit", 2))  # a tell: the failure goes to the supervisor
        assert await account.ask("state") == (1, 1)
        assert trio.current_time() - start == pytest.approx(1.0)  # the backoff
        journal.add(fail_next(1))
        assert await account.ask("swallow") == "swallowed"
        assert await account.ask("state") == (1, 1)
        assert await account.ask(("deposit", 3)) == 2
    assert len([e for e in events if e.ref == account]) == 2
    assert await stored(journal) == [1, 2]


async def test_a_cancelled_write_has_an_unknown_outcome_and_fails_the_actor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = HoldingJournal(hold_writes=True)
    failures: list[Any] = []

    class Impatient(Account):
        async def receive(self, message: Any) -> Any:
            if message == "impatient":
                with trio.move_on_after(1):
                    await self.persist(Deposited(9))
                return "gave up waiting"
            return await super().receive(message)

    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        system.events.subscribe(system.spawn(Events, failures), ActorFailed)
        account = system.spawn(Impatient, name="a")
        assert await account.ask("impatient") == "gave up waiting"
        journal.hold_writes = False
        journal.released.set()
        assert await account.ask("state") == (0, 0)
    [failure] = [f for f in failures if f.ref == account]
    assert isinstance(failure.error, JournalFailure)
    assert "outcome is unknown" in str(failure.error)


async def test_apply_raising_after_a_persist_fails_the_actor_and_then_its_recovery() -> None:
    class Picky(Account):
        def apply(self, event: Any) -> None:
            if event.amount < 0:
                raise ValueError("negative")
            super().apply(event)

    stopped: list[Any] = []
    journal = InMemoryJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        system.events.subscribe(system.spawn(Events, stopped), ActorStopped)
        account = system.spawn(Picky, name="a")
        await account.ask(("deposit", 1))
        with pytest.raises(ValueError, match="negative"):
            await account.ask(("deposit", -1))  # stored, then apply raised
        # The restart replays event 2, apply raises again: recovery fails for good.
        await trio.testing.wait_all_tasks_blocked()
    [event] = [e for e in stopped if e.ref == account]
    assert isinstance(event.error, RecoveryFailed)
    assert event.error.seq == 2
    assert "applying event 2" in str(event.error)


async def test_an_undecodable_event_stops_the_actor_naming_id_and_seq() -> None:
    journal = InMemoryJournal()
    await journal.write(
        [
            PersistentRecord("account-1", 1, "pickle", "Deposited", b"\x80\x05garbage"),
        ]
    )
    stopped: list[Any] = []
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        system.events.subscribe(system.spawn(Events, stopped), ActorStopped)
        account = system.spawn(Account, name="a")
        with pytest.raises(actors.ActorDead):
            await account.ask("state")
    [event] = [e for e in stopped if e.ref == account]
    assert isinstance(event.error, RecoveryFailed)
    assert (event.error.persistence_id, event.error.seq) == ("account-1", 1)
    assert "cannot be decoded" in str(event.error)


async def test_a_journal_failure_during_recovery_is_retried_by_the_supervisor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = FaultyJournal(InMemoryJournal())
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        await system.spawn(Account, name="a").ask(("deposit", 4))
    replays = journal.add(fail_next(2, Operation.REPLAY))
    strategy = sv.OneForOne(backoff=sv.Backoff(min_delay=0.5, max_delay=4.0, jitter=0.0))
    async with actors.open_system(
        extensions=[Persistence(journal)], guardian_strategy=strategy
    ) as system:
        start = trio.current_time()
        account = system.spawn(Account, name="a")
        assert await account.ask("state") == (4, 1)
        assert trio.current_time() - start == pytest.approx(0.5 + 1.0)
    assert replays.remaining == 0


async def test_no_journal_configured_stops_the_actor_with_a_clear_reason() -> None:
    stopped: list[Any] = []
    async with actors.open_system() as system:
        system.events.subscribe(system.spawn(Events, stopped), ActorStopped)
        account = system.spawn(Account, name="a")
        await trio.testing.wait_all_tasks_blocked()
    [event] = [e for e in stopped if e.ref == account]
    assert "no journal is configured" in str(event.error)


# -- single writer, upcasting, misuse ------------------------------------------------------


async def test_a_second_writer_for_the_same_id_is_fenced_and_then_catches_up() -> None:
    journal = InMemoryJournal()
    failures: list[Any] = []
    async with (
        actors.open_system("one", extensions=[Persistence(journal)]) as one,
        actors.open_system("two", extensions=[Persistence(journal)]) as two,
    ):
        two.events.subscribe(two.spawn(Events, failures), ActorFailed)
        first = one.spawn(Account, name="a")
        second = two.spawn(Account, name="a")
        assert await first.ask("state") == (0, 0)
        assert await second.ask("state") == (0, 0)
        assert await first.ask(("deposit", 10)) == 1
        with pytest.raises(SequenceConflict):
            await second.ask(("deposit", 20))  # its seq 1 is taken
        # Restarted, the second writer has recovered the first one's event.
        assert await second.ask("state") == (10, 1)
        assert await second.ask(("deposit", 20)) == 2
    assert [type(f.error) for f in failures] == [SequenceConflict]
    assert next(r.payload for r in [r async for r in journal.replay("account-1")]) != b""


async def test_upcast_transforms_old_events_on_replay() -> None:
    journal = InMemoryJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        await system.spawn(Account, name="a").ask(("persist", Renamed("x")))
    manifests = [r.manifest async for r in journal.replay("account-1")]
    assert manifests == [f"{__name__}.Renamed"]

    seen: list[str] = []

    class Upcasting(Account):
        def upcast(self, event: Any, manifest: str) -> Any:
            seen.append(manifest)
            if isinstance(event, Renamed):
                return Deposited(len(event.name) * 100)
            return event

    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        assert await system.spawn(Upcasting, name="a").ask("state") == (100, 1)
    assert seen == [f"{__name__}.Renamed"]


async def test_persist_from_a_task_that_is_not_the_actor_is_refused() -> None:
    instance: list[Account] = []

    class Leaky(Account):
        def pre_start(self) -> None:
            instance.append(self)

    async with actors.open_system(extensions=[Persistence(InMemoryJournal())]) as system:
        system.spawn(Leaky, name="a")
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(RuntimeError, match="not the actor's own"):
            await instance[0].persist(Deposited(1))
        assert instance[0].last_seq == 0


async def test_apply_knows_whether_it_runs_in_recovery() -> None:
    seen: list[tuple[int, bool]] = []

    class Watching(Account):
        def apply(self, event: Any) -> None:
            super().apply(event)
            seen.append((event.amount, self.recovering))

    journal = InMemoryJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        await system.spawn(Watching, name="a").ask(("deposit", 1))
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        await system.spawn(Watching, name="a").ask(("deposit", 2))
    assert seen == [(1, False), (1, True), (2, False)]


def test_snapshot_every_without_snapshot_hooks_is_a_class_error() -> None:
    with pytest.raises(TypeError, match="snapshot_every"):

        class Broken(Account):
            snapshot_every = 10

    with pytest.raises(ValueError, match="keep_snapshots"):

        class Keeps(Account):
            keep_snapshots = 0


# -- a real backend ----------------------------------------------------------------------------


async def test_on_sqlite_the_state_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "bank.db"
    async with (
        open_sqlite_journal(path) as journal,
        actors.open_system(extensions=[Persistence(journal)]) as system,
    ):
        account = system.spawn(SnapshottingAccount, name="a")
        for amount in range(1, 8):
            await account.ask(("deposit", amount))
    log: list[Any] = []
    async with open_sqlite_journal(path) as journal:
        async with actors.open_system(extensions=[Persistence(journal)]) as system:
            account = system.spawn(SnapshottingAccount, "account-1", log, name="a")
            assert await account.ask("state") == (28, 7)
            assert await account.ask("applied") == [7]
        snapshot = await journal.snapshots.load("account-1")
        assert isinstance(snapshot, SnapshotRecord)
        assert snapshot.seq == 6
    assert log == [("restore", 21), ("recovered", 28, 7)]


async def test_on_postgresql_the_state_survives_a_reopen(postgres_dsn: str) -> None:
    import uuid

    import psycopg
    from psycopg import sql

    from actors.persistence import open_postgres_journal

    schema = f"actor_{uuid.uuid4().hex[:12]}"
    try:
        async with (
            open_postgres_journal(postgres_dsn, schema=schema) as journal,
            actors.open_system(extensions=[Persistence(journal)]) as system,
        ):
            account = system.spawn(SnapshottingAccount, name="a")
            for amount in range(1, 8):
                await account.ask(("deposit", amount))
        log: list[Any] = []
        async with (
            open_postgres_journal(postgres_dsn, schema=schema) as journal,
            actors.open_system(extensions=[Persistence(journal)]) as system,
        ):
            account = system.spawn(SnapshottingAccount, "account-1", log, name="a")
            assert await account.ask("state") == (28, 7)
            assert await account.ask("applied") == [7]
        assert log == [("restore", 21), ("recovered", 28, 7)]
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
