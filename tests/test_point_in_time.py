"""A persistent actor recovered to a point in time as a read-only replica (``Replica``):
the bounds (seq, time, both, none), snapshots at or before the point, clocks that went
back, missing events, refused writes, and a replica beside the live actor on the real
SQL journals changing nothing and holding nothing up.

Times are controlled by writing records with chosen timestamps through the journal's
API (``Journal.write``), as a writer would have stored them."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from conftest import SqlBackend

import actors
from actors import ActorDead, ActorInitializationError, ActorRef
from actors.persistence import (
    InMemoryJournal,
    Journal,
    Persistence,
    PersistentActor,
    PersistentRecord,
    ReadOnlyReplica,
    RecoveryFailed,
    Replica,
    Serialization,
    SnapshotRecord,
    SnapshotStore,
    open_sqlite_journal,
)

T0 = 1_796_551_200.0  # 2026-12-06T10:00:00Z
MINUTE = 60.0


@attrs.frozen
class Deposited:
    amount: int


class Account(PersistentActor):
    """Applies ``Deposited``; answers what the tests look at."""

    def __init__(self, pid: str = "acct") -> None:
        self.persistence_id = pid
        self.balance = 0
        self.applied: list[int] = []
        self.restored_from: int | None = None

    def apply(self, event: Any) -> None:
        self.balance += event.amount
        self.applied.append(event.amount)

    def snapshot(self) -> Any:
        return (self.last_seq, self.balance, list(self.applied))

    def restore(self, state: Any) -> None:
        self.restored_from, self.balance, self.applied = state[0], state[1], list(state[2])

    async def receive(self, message: Any) -> Any:
        match message:
            case "state":
                return self.applied, self.last_seq, self.restored_from
            case "replica":
                return self.replica
            case ("deposit", amount):
                return await self.persist(Deposited(amount))
            case ("deposit-all", amounts):
                return await self.persist_all([Deposited(a) for a in amounts])
            case "save-snapshot":
                return await self.save_snapshot()
            case "defer":
                return await self.defer(lambda: ("deferred", self.last_seq))
        self.unhandled(message)
        return None


class OpensOnFirstStart(Account):
    """Persists an event of its own when it recovers an empty history, and notes that it
    was asked to."""

    async def on_recovery_completed(self) -> None:
        self.applied.append(-1)
        if self.last_seq == 0:
            await self.persist(Deposited(100))


class PersistsInPreStart(Account):
    async def pre_start(self) -> None:
        await self.persist(Deposited(7))


class NotPersistent(actors.Actor):
    def receive(self, message: Any) -> Any:
        return message


def _record(pid: str, seq: int, timestamp: float) -> PersistentRecord:
    """Event ``seq`` of ``pid`` (``Deposited(seq)``), stored at ``timestamp``."""
    serializer, manifest, payload = Serialization().serialize(Deposited(seq))
    return PersistentRecord(
        persistence_id=pid,
        seq=seq,
        serializer=serializer,
        manifest=manifest,
        payload=payload,
        writer_id="w",
        timestamp=timestamp,
    )


async def _write(journal: Journal, pid: str, times: list[float], first: int = 1) -> None:
    """Events ``first``, ``first + 1``... of ``pid``, stored at ``times``."""
    await journal.write([_record(pid, first + i, t) for i, t in enumerate(times)])


async def _snapshot(store: SnapshotStore, pid: str, seq: int, timestamp: float) -> None:
    """The snapshot ``Account`` saves after events 1..``seq`` (``Deposited(1..seq)``)."""
    applied = list(range(1, seq + 1))
    serializer, manifest, payload = Serialization().serialize((seq, sum(applied), applied))
    await store.save(SnapshotRecord(pid, seq, serializer, manifest, payload, timestamp))


def _minutes(*offsets: float) -> list[float]:
    return [T0 + m * MINUTE for m in offsets]


async def _state(system: actors.ActorSystem, factory: Callable[..., Any], *args: Any) -> Any:
    """Spawn ``factory`` and return its answer to ``"state"``."""
    return await system.spawn(factory, *args).ask("state")


async def _failure(system: actors.ActorSystem, factory: Callable[..., Any]) -> BaseException:
    """Spawn ``factory``, which must stop at start; return the error it stopped with."""
    with pytest.raises(ActorDead) as raised:
        await system.spawn(factory).ask("state")
    assert raised.value.error is not None
    return raised.value.error


# -- the point ----------------------------------------------------------------------------


async def test_a_replica_to_a_seq_answers_from_the_past_while_the_live_actor_goes_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        live = system.spawn(Account)
        assert await live.ask(("deposit-all", [1, 2, 3, 4, 5])) == 5
        replica = system.spawn(Replica(Account, to_seq=3))
        assert await replica.ask("state") == ([1, 2, 3], 3, None)
        assert await replica.ask("replica") == Replica(Account, to_seq=3)
        assert await live.ask("replica") is None
        assert await live.ask(("deposit", 6)) == 6  # the live actor is not fenced
        assert await replica.ask("state") == ([1, 2, 3], 3, None)  # nor does it follow
        # A point beyond the end: everything stored (when it recovered).
        assert await _state(system, Replica(Account, to_seq=99)) == ([1, 2, 3, 4, 5, 6], 6, None)
        assert await _state(system, Replica(Account)) == ([1, 2, 3, 4, 5, 6], 6, None)
        assert await _state(system, Replica(Account, to_seq=0)) == ([], 0, None)


async def test_a_time_bound_takes_the_events_stored_at_or_before_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    await _write(journal, "acct", _minutes(1, 2, 3, 4, 5))
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        # at, as seconds since the epoch or as an aware datetime: the same moment.
        at_three = datetime.fromtimestamp(T0 + 3 * MINUTE, tz=UTC)
        assert await _state(system, Replica(Account, at=T0 + 3 * MINUTE)) == ([1, 2, 3], 3, None)
        assert await _state(system, Replica(Account, at=at_three)) == ([1, 2, 3], 3, None)
        in_paris = at_three.astimezone(timezone(timedelta(hours=1)))
        assert await _state(system, Replica(Account, at=in_paris)) == ([1, 2, 3], 3, None)
        assert await _state(system, Replica(Account, at=at_three - timedelta(microseconds=1))) == (
            [1, 2],
            2,
            None,
        )
        assert await _state(system, Replica(Account, at=T0)) == ([], 0, None)  # before any
        # Both bounds: the events that meet both.
        both = Replica(Account, to_seq=2, at=T0 + 4 * MINUTE)
        assert await _state(system, both) == ([1, 2], 2, None)
        both = Replica(Account, to_seq=4, at=T0 + 1.5 * MINUTE)
        assert await _state(system, both) == ([1], 1, None)


async def test_a_clock_that_went_back_stops_the_replay_at_the_first_later_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    # Event 4 is stamped before event 3 (the writer's clock stepped back).
    await _write(journal, "acct", _minutes(1, 2, 5, 3, 6))
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        # At minute 4, event 4 (minute 3) comes after event 3 (minute 5): not applied,
        # so the state is one the live actor really had.
        assert await _state(system, Replica(Account, at=T0 + 4 * MINUTE)) == ([1, 2], 2, None)
        assert await _state(system, Replica(Account, at=T0 + 5 * MINUTE)) == (
            [1, 2, 3, 4],
            4,
            None,
        )


async def test_snapshots_saved_after_the_point_are_not_used(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    await _write(journal, "acct", _minutes(1, 2, 3, 4, 5, 6))
    await _snapshot(journal.snapshots, "acct", 2, T0 + 2.5 * MINUTE)
    await _snapshot(journal.snapshots, "acct", 4, T0 + 4.5 * MINUTE)
    all_six = [1, 2, 3, 4, 5, 6]
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        # The newest snapshot with seq <= to_seq, then the events up to it.
        assert await _state(system, Replica(Account, to_seq=5)) == (all_six[:5], 5, 4)
        assert await _state(system, Replica(Account, to_seq=4)) == (all_six[:4], 4, 4)
        assert await _state(system, Replica(Account, to_seq=3)) == (all_six[:3], 3, 2)
        assert await _state(system, Replica(Account, to_seq=1)) == (all_six[:1], 1, None)
        # With a time: only snapshots saved at or before it (4 was saved at 4.5 min).
        at = Replica(Account, at=T0 + 4.2 * MINUTE)
        assert await _state(system, at) == (all_six[:4], 4, 2)
        at = Replica(Account, at=T0 + 5 * MINUTE)
        assert await _state(system, at) == (all_six[:5], 5, 4)
        at = Replica(Account, at=T0 + 2.2 * MINUTE)
        assert await _state(system, at) == (all_six[:2], 2, None)
        # The live actor recovers from the newest one.
        assert await _state(system, Account) == (all_six, 6, 4)


# -- missing events -----------------------------------------------------------------------


async def test_events_the_point_needs_that_were_deleted_fail_the_recovery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    await _write(journal, "acct", _minutes(1, 2, 3, 4, 5, 6))
    await _snapshot(journal.snapshots, "acct", 4, T0 + 4.5 * MINUTE)
    await journal.delete_to("acct", 4)
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        assert await _state(system, Replica(Account, to_seq=5)) == ([1, 2, 3, 4, 5], 5, 4)
        assert await _state(system, Replica(Account, to_seq=4)) == ([1, 2, 3, 4], 4, 4)
        error = await _failure(system, Replica(Account, to_seq=3))
        assert isinstance(error, RecoveryFailed)
        assert (error.persistence_id, error.seq, error.retryable) == ("acct", 1, False)
        assert str(error) == (
            "recovery of persistence id 'acct' failed at seq 1: events 1..4 are missing "
            "from the journal (deleted), and no snapshot that can be decoded, taken at or "
            "before seq 3, covers them: the state at that point cannot be rebuilt"
        )
        # A time before the snapshot was saved: events 1..4 would be needed.
        error = await _failure(system, Replica(Account, at=T0 + 3 * MINUTE))
        assert isinstance(error, RecoveryFailed)
        assert "events 1..4 are missing" in str(error)
        assert "taken at or before 2026-12-06T10:03:00Z" in str(error)


async def test_a_history_deleted_up_to_its_end_is_missing_not_empty(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    await _write(journal, "acct", _minutes(1, 2, 3, 4))
    await _snapshot(journal.snapshots, "acct", 4, T0 + 4.5 * MINUTE)
    await journal.delete_to("acct", 4)  # nothing stored after the snapshot
    await _write(journal, "gone", _minutes(1, 2))
    await journal.delete_to("gone", 2)  # and no snapshot at all
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        assert await _state(system, Replica(Account, to_seq=9)) == ([1, 2, 3, 4], 4, 4)
        error = await _failure(system, Replica(Account, to_seq=2))
        assert "events 1..2 are missing" in str(error)
        error = await _failure(system, Replica(functools.partial(Account, "gone"), to_seq=1))
        assert isinstance(error, RecoveryFailed)
        assert "events from 1 on are missing" in str(error)
        # An id with nothing stored is a new one, as for the live actor.
        assert await _state(system, Replica(functools.partial(Account, "new"))) == ([], 0, None)


# -- writes refused --------------------------------------------------------------------------


async def test_writes_in_a_replica_raise_read_only_replica_and_it_keeps_answering(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    await _write(journal, "acct", _minutes(1, 2, 3))
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        replica = system.spawn(Replica(Account, to_seq=2, at=T0 + 10 * MINUTE))
        for command, call in [
            (("deposit", 7), "persist"),
            (("deposit-all", [7, 8]), "persist_all"),
            ("save-snapshot", "save_snapshot"),
        ]:
            with pytest.raises(ReadOnlyReplica) as raised:
                await replica.ask(command)
            assert str(raised.value) == (
                f"{call}() refused: persistence id 'acct' runs here as a read-only replica "
                "recovered to seq 2 and 2026-12-06T10:10:00Z; nothing was stored"
            )
            assert (raised.value.persistence_id, raised.value.call) == ("acct", call)
            assert raised.value.point == "seq 2 and 2026-12-06T10:10:00Z"
        assert await replica.ask("defer") == ("deferred", 2)  # writes nothing: allowed
        # A tell whose handler is refused: the replica is resumed, its state intact.
        replica.tell(("deposit", 9))
        assert await replica.ask("state") == ([1, 2], 2, None)
        assert replica.stats().restarts == 0
        assert await journal.highest_seq("acct") == 3
        assert [r.seq async for r in journal.replay("acct")] == [1, 2, 3]
        assert await journal.snapshots.load("acct") is None


class SnapshotsEveryTwo(Account):
    snapshot_every = 2


async def test_a_replica_skips_on_recovery_completed_and_saves_no_snapshot(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        # The hook where the live actor acts on what it recovered is not called.
        assert await _state(system, Replica(OpensOnFirstStart)) == ([], 0, None)
        # The live actor of the same class opens it.
        assert await _state(system, OpensOnFirstStart) == ([-1, 100], 1, None)
        assert await _state(system, Replica(OpensOnFirstStart)) == ([100], 1, None)
        # A pre_start that persists fails the replica's start.
        error = await _failure(system, Replica(PersistsInPreStart))
        assert isinstance(error, ActorInitializationError)
        assert isinstance(error.error, ReadOnlyReplica)
        assert str(error.error) == (
            "persist() refused: persistence id 'acct' runs here as a read-only replica "
            "recovered to the end of its journal; nothing was stored"
        )
        replica = system.spawn(Replica(SnapshotsEveryTwo))
        assert await replica.ask("state") == ([100], 1, None)
        with pytest.raises(ReadOnlyReplica):
            await replica.ask(("deposit", 1))
    assert await journal.snapshots.load("acct") is None
    assert await journal.highest_seq("acct") == 1


# -- the factory ------------------------------------------------------------------------------


def make_account(pid: str) -> Account:
    return Account(pid)


def make_nothing() -> Any:
    return NotPersistent()


async def test_a_replica_takes_a_class_or_a_factory_and_spawn_checks_its_arguments(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    await _write(journal, "a-1", _minutes(1, 2, 3))
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        assert await _state(system, Replica(Account, to_seq=1), "a-1") == ([1], 1, None)
        assert await _state(system, Replica(make_account, to_seq=2), "a-1") == ([1, 2], 2, None)
        partial = functools.partial(Account, pid="a-1")
        assert await _state(system, Replica(partial, to_seq=3)) == ([1, 2, 3], 3, None)
        with pytest.raises(TypeError) as raised:
            system.spawn(Replica(make_account), "a-1", "extra")
        assert str(raised.value).startswith(
            "cannot spawn Replica(make_account): its arguments ('a-1', 'extra') do not fit "
            "Replica(make_account)(pid)"
        )
        error = await _failure(system, Replica(make_nothing))
        assert isinstance(error, ActorInitializationError)
        assert isinstance(error.error, TypeError)
        assert str(error.error) == (
            f"Replica recovers persistent actors; {make_nothing!r} returned a NotPersistent"
        )


def test_replica_arguments_are_checked_at_once() -> None:
    naive = datetime(2026, 12, 6, 10, 0)
    cases: list[tuple[Callable[[], Any], type[Exception], str]] = [
        (lambda: Replica(Account, at=naive), ValueError, "without a time zone is ambiguous"),
        (lambda: Replica(Account, at="10:00"), TypeError, "got '10:00'"),  # type: ignore[arg-type]
        (lambda: Replica(Account, at=float("nan")), TypeError, "seconds since the epoch"),
        (lambda: Replica(Account, at=float("inf")), TypeError, "a finite int or float"),
        (lambda: Replica(Account, to_seq=-1), ValueError, "an int >= 0 or None, got -1"),
        (lambda: Replica(Account, to_seq=True), ValueError, "got True"),
        (lambda: Replica(NotPersistent), TypeError, "NotPersistent is not a subclass"),
        (lambda: Replica(Account()), TypeError, "got <"),  # type: ignore[arg-type]
        (lambda: Replica(Replica(Account)), TypeError, "give the actor class"),
    ]
    for make, kind, text in cases:
        with pytest.raises(kind) as raised:
            make()
        assert text in str(raised.value)
    replica = Replica(Account, to_seq=3, at=datetime(2026, 12, 6, 10, 0, tzinfo=UTC))
    assert replica.at == T0
    assert repr(replica) == "Replica(Account, to_seq=3, at=2026-12-06T10:00:00Z)"
    assert Replica(Account).point == "the end of its journal"
    assert Replica(Account, at=1e300).point == "1e+300"


# -- on the SQL journals -------------------------------------------------------------------------


async def _journal_contents(journal: Any) -> Any:
    """Everything a reader can see of the journal (``highest_seq`` goes through its
    writer: a transaction)."""
    ids = await journal.persistence_ids()
    return (
        ids,
        {pid: [record async for record in journal.replay(pid)] for pid in ids},
        {pid: await journal.highest_seq(pid) for pid in ids},
        {pid: await journal.snapshots.load(pid) for pid in ids},
    )


async def test_a_replica_beside_the_live_actor_changes_nothing_in_the_sql_journal(
    sql_backend: SqlBackend,
) -> None:
    _, open_journal, _ = sql_backend
    async with (
        open_journal() as journal,
        actors.open_system(extensions=[Persistence(journal)]) as system,
    ):
        live = system.spawn(Account, name="live")
        await live.ask(("deposit-all", [1, 2, 3]))
        assert await live.ask("save-snapshot") == 3
        await live.ask(("deposit", 4))
        before = await _journal_contents(journal)
        counters = (journal.transactions, journal.ops_acknowledged)
        replica = system.spawn(Replica(Account, to_seq=2), name="replica")
        assert await replica.ask("state") == ([1, 2], 2, None)
        newest = system.spawn(Replica(Account), name="newest")
        assert await newest.ask("state") == ([1, 2, 3, 4], 4, 3)
        with pytest.raises(ReadOnlyReplica):
            await replica.ask(("deposit", 5))
        # Nothing went through the journal's writer: no write, no highest_seq.
        assert (journal.transactions, journal.ops_acknowledged) == counters
        assert await _journal_contents(journal) == before
        # Another journal object on the same database (another process, say).
        async with open_journal() as other:
            opened = (other.transactions, other.ops_acknowledged)
            async with actors.open_system(extensions=[Persistence(other)]) as elsewhere:
                far = elsewhere.spawn(Replica(Account, to_seq=3))
                assert await far.ask("state") == ([1, 2, 3], 3, 3)
            assert (other.transactions, other.ops_acknowledged) == opened
        # The live writer is not fenced by any of them.
        assert await live.ask(("deposit", 5)) == 5
        assert await replica.ask("state") == ([1, 2], 2, None)


async def test_time_bounds_and_snapshots_on_the_sql_journals(sql_backend: SqlBackend) -> None:
    _, open_journal, _ = sql_backend
    async with open_journal() as journal:
        await _write(journal, "acct", _minutes(1, 2, 5, 3, 6, 7))
        await _snapshot(journal.snapshots, "acct", 2, T0 + 2.5 * MINUTE)
        async with actors.open_system(extensions=[Persistence(journal)]) as system:
            assert await _state(system, Replica(Account, at=T0 + 4 * MINUTE)) == ([1, 2], 2, 2)
            assert await _state(system, Replica(Account, at=T0 + 2.2 * MINUTE)) == (
                [1, 2],
                2,
                None,
            )
            assert await _state(system, Replica(Account, to_seq=5, at=T0 + 9 * MINUTE)) == (
                [1, 2, 3, 4, 5],
                5,
                2,
            )
            await journal.delete_to("acct", 2)
            error = await _failure(system, Replica(Account, to_seq=1))
            assert "events 1..2 are missing from the journal" in str(error)


async def test_a_replica_recovers_while_another_process_holds_the_sqlite_write_lock(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_journal(path) as journal:
        await _write(journal, "acct", _minutes(1, 2, 3))
        with closing(sqlite3.connect(path, isolation_level=None)) as writer:
            writer.execute("BEGIN IMMEDIATE")  # SQLite's write lock, held by "another writer"
            try:
                async with actors.open_system(extensions=[Persistence(journal)]) as system:
                    with trio.fail_after(30):  # a guard only: it answers at once
                        replica: ActorRef = system.spawn(Replica(Account, to_seq=2))
                        assert await replica.ask("state") == ([1, 2], 2, None)
            finally:
                writer.execute("ROLLBACK")


async def test_describe_shows_a_replica_and_its_point(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    await _write(journal, "acct", _minutes(1, 2, 3))
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        replica = system.spawn(Replica(Account, to_seq=2), name="past")
        await replica.ask("state")
        node = system.describe(replica).root
        assert node.details == {"persistence_id": "acct", "last_seq": 2, "replica_to": "seq 2"}
        assert str(system.describe(replica)) == (
            "/user/past (Account, running, mailbox 0) [persistence_id=acct, last_seq=2, "
            "replica_to='seq 2']\n"
        )
