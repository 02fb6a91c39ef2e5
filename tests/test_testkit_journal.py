"""Journal fault injection (``FaultyJournal`` and its policies) and the stepping journal,
on their own and under persistent actors: failure versus rejection, recovery retried by
supervision, and exact interleavings of recovery and persists."""

from __future__ import annotations

import pickle
import types
from collections.abc import Sequence
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
import supervision as sv
from actors import ActorFailed, ActorRestarted
from actors.persistence import (
    EventRejected,
    InMemoryJournal,
    Journal,
    JournalFailure,
    Persistence,
    PersistentActor,
    PersistentRecord,
    SnapshotRecord,
    SnapshotStore,
)
from actors.testing.journal import (
    FaultyJournal,
    JournalCall,
    JournalInjection,
    Operation,
    SteppingJournal,
    Verdict,
    any_of,
    fail_next,
    fail_when,
    reject_next,
    reject_when,
)

PID = "acct-1"
W, R, H = Operation.WRITE, Operation.REPLAY, Operation.HIGHEST_SEQ
LOAD, SAVE = Operation.SNAPSHOT_LOAD, Operation.SNAPSHOT_SAVE


@attrs.frozen
class Deposited:
    amount: int


class Account(PersistentActor):
    persistence_id = PID

    def __init__(self) -> None:
        self.balance = 0

    def apply(self, event: Any) -> None:
        self.balance += event.amount

    async def receive(self, message: Any) -> Any:
        match message:
            case ("deposit", amount):
                return await self.persist(Deposited(amount))
            case ("try-deposit", amount):
                try:
                    await self.persist(Deposited(amount))
                except EventRejected as error:
                    return ("rejected", str(error))
                return ("stored", self.last_seq)
            case "snapshot":
                return await self.save_snapshot()
            case "state":
                return (self.balance, self.last_seq)
        self.unhandled(message)
        return None


class SnapshottingAccount(Account):
    snapshot_every = 2

    def snapshot(self) -> Any:
        return self.balance

    def restore(self, state: Any) -> None:
        self.balance = state


class Collect(actors.Actor):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.append(message)


def record(seq: int, amount: int = 1, pid: str = PID) -> PersistentRecord:
    return PersistentRecord(pid, seq, "pickle", "Deposited", pickle.dumps(Deposited(amount)))


async def seqs(journal: Journal, pid: str = PID) -> list[int]:
    return [r.seq async for r in journal.replay(pid)]


def backoff(min_delay: float) -> sv.OneForOne:
    return sv.OneForOne(backoff=sv.Backoff(min_delay=min_delay, max_delay=8.0, jitter=0.0))


# -- policies ----------------------------------------------------------------------------------


def test_fail_next_counts_down_on_matching_operations_only() -> None:
    policy = fail_next(2, [W, R], persistence_id="a")
    assert policy("b", W) is Verdict.OK  # another id
    assert policy("a", H) is Verdict.OK  # another operation
    assert policy("a", W) is Verdict.FAIL
    assert policy("a", R) is Verdict.FAIL
    assert policy("a", W) is Verdict.OK  # used up
    assert repr(policy) == "fail_next(2, operations=REPLAY|WRITE, persistence_id='a')"


def test_reject_next_and_reject_when_only_for_rejectable_operations() -> None:
    policy = reject_next(1, SAVE)
    assert policy(PID, W) is Verdict.OK
    assert policy(PID, SAVE) is Verdict.REJECT
    assert policy(PID, SAVE) is Verdict.OK
    with pytest.raises(ValueError, match=r"only SNAPSHOT_SAVE\|WRITE can be rejected, not REPLAY"):
        reject_next(1, R)
    with pytest.raises(ValueError, match="n >= 0"):
        fail_next(-1)
    with pytest.raises(TypeError, match="operations"):
        fail_next(1, [])


def test_any_of_returns_the_first_fault_and_does_not_consume_the_later_policies() -> None:
    first, second = fail_next(1), reject_next(1)
    policy = any_of(first, second)
    assert policy(PID, W) is Verdict.FAIL
    assert second.remaining == 1
    assert policy(PID, W) is Verdict.REJECT
    assert policy(PID, W) is Verdict.OK
    always = fail_when(lambda pid, op: op is R)
    assert always(PID, R) is always(PID, R) is Verdict.FAIL
    assert "fail_when(" in repr(always)


# -- FaultyJournal on its own -----------------------------------------------------------------


async def test_an_injected_write_failure_or_rejection_stores_nothing_and_says_so() -> None:
    inner = InMemoryJournal()
    journal = FaultyJournal(inner, fail_next(1))
    with pytest.raises(JournalFailure, match=r"write of 'acct-1' failed: injected by Fau"):
        await journal.write([record(1)])
    assert await seqs(inner) == []
    journal.add(reject_next(1))
    with pytest.raises(EventRejected, match="injected by FaultyJournal policy reject_next"):
        await journal.write([record(1)])
    assert await journal.write([record(1)]) == [1]
    assert await journal.write([]) == []  # an empty batch is not an operation
    assert journal.injected == [
        JournalInjection(PID, W, Verdict.FAIL),
        JournalInjection(PID, W, Verdict.REJECT),
    ]
    assert await seqs(inner) == [1]


async def test_read_faults_are_raised_by_the_iterators_including_replay_chunks() -> None:
    inner = InMemoryJournal()
    await inner.write([record(1), record(2)])
    journal = FaultyJournal(inner, fail_next(2, R))
    with pytest.raises(JournalFailure, match="replay of 'acct-1' failed"):
        [r async for r in journal.replay(PID)]
    with pytest.raises(JournalFailure, match="replay of 'acct-1' failed"):
        [c async for c in journal.replay_chunks(PID)]
    # Asked once per replay (not per chunk): the next two succeed.
    assert [r.seq async for r in journal.replay(PID, 2)] == [2]
    assert [[row[0] for row in c] async for c in journal.replay_chunks(PID)] == [[1, 2]]

    journal.add(fail_when(lambda pid, op: pid is None))  # the journal-wide queries
    with pytest.raises(JournalFailure, match="events_by_tag of None failed"):
        [r async for r in journal.events_by_tag("t")]
    with pytest.raises(JournalFailure, match="persistence_ids of None failed"):
        await journal.persistence_ids()
    assert await journal.highest_seq(PID) == 2
    journal.clear()
    assert await journal.persistence_ids() == [PID]


async def test_a_policy_rejecting_a_read_is_a_test_bug() -> None:
    journal = FaultyJournal(InMemoryJournal(), reject_when(lambda pid, op: True))
    with pytest.raises(ValueError, match=r"rejected a highest_seq of 'acct-1'.*return FAIL"):
        await journal.highest_seq(PID)
    assert journal.injected == []


async def test_the_snapshot_store_is_wrapped_with_the_same_policies() -> None:
    inner = InMemoryJournal()
    journal = FaultyJournal(inner, fail_next(1, [LOAD, Operation.SNAPSHOT_DELETE]))
    journal.add(reject_next(1, SAVE))
    store = journal.snapshots
    assert store is not None
    snapshot = SnapshotRecord(PID, 3, "pickle", "int", b"x")
    with pytest.raises(EventRejected, match="snapshot_save of 'acct-1' rejected"):
        await store.save(snapshot)
    assert await inner.snapshots.load(PID) is None
    await store.save(snapshot)
    with pytest.raises(JournalFailure, match="snapshot_load of 'acct-1' failed"):
        await store.load(PID)
    assert await store.load(PID) == snapshot
    await store.delete(PID, 3)
    assert await inner.snapshots.load(PID) is None
    assert [i.operation for i in journal.injected] == [SAVE, LOAD]
    # A store given explicitly is the one wrapped.
    other = InMemoryJournal().snapshots
    wrapped = FaultyJournal(inner, snapshots=other).snapshots
    assert isinstance(wrapped, SnapshotStore)
    assert getattr(wrapped, "inner", None) is other


# -- FaultyJournal under a persistent actor ---------------------------------------------------


async def test_an_injected_persist_failure_restarts_the_actor_which_recovers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = FaultyJournal(InMemoryJournal())
    seen: list[Any] = []
    async with actors.open_system(
        extensions=[Persistence(journal)], guardian_strategy=backoff(1.0)
    ) as system:
        collector = system.spawn(Collect, seen)
        system.events.subscribe(collector, ActorFailed)
        system.events.subscribe(collector, ActorRestarted)
        account = system.spawn(Account, name="a")
        assert await account.ask(("deposit", 5)) == 1
        policy = journal.add(fail_next(1))
        start = trio.current_time()
        with pytest.raises(JournalFailure, match="injected by FaultyJournal policy fail_next"):
            await account.ask(("deposit", 7))
        # The actor fails after the handler, is restarted after the backoff, and
        # recovers what was stored: only the first deposit.
        assert await account.ask("state") == (5, 1)
        assert trio.current_time() - start == pytest.approx(1.0)
        assert await account.ask(("deposit", 7)) == 2
    assert policy.remaining == 0
    assert journal.injected == [JournalInjection(PID, W, Verdict.FAIL)]
    [failed] = [e for e in seen if isinstance(e, ActorFailed) and e.ref == account]
    [restarted] = [e for e in seen if isinstance(e, ActorRestarted) and e.ref == account]
    assert "injected by FaultyJournal policy fail_next(1, operations=WRITE)" in str(failed.error)
    assert restarted.error is failed.error
    assert await seqs(journal.inner) == [1, 2]


async def test_reject_next_makes_persist_raise_and_the_actor_goes_on() -> None:
    journal = FaultyJournal(InMemoryJournal(), reject_next(1, persistence_id=PID))
    restarts: list[Any] = []
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        system.events.subscribe(system.spawn(Collect, restarts), ActorRestarted)
        account = system.spawn(Account, name="a")
        verdict, message = await account.ask(("try-deposit", 3))
        assert verdict == "rejected"
        assert "nothing stored" in message
        assert "reject_next(1, operations=WRITE, persistence_id='acct-1')" in message
        assert await account.ask("state") == (0, 0)
        assert await account.ask(("try-deposit", 4)) == ("stored", 1)
        assert await account.ask("state") == (4, 1)
    assert restarts == []
    assert journal.injected == [JournalInjection(PID, W, Verdict.REJECT)]


async def test_a_snapshot_load_failure_is_retried_by_supervision_with_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = FaultyJournal(InMemoryJournal())
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(SnapshottingAccount, name="a")
        for amount in (1, 2, 3):
            await account.ask(("deposit", amount))
    journal.add(fail_next(2, LOAD))
    async with actors.open_system(
        extensions=[Persistence(journal)], guardian_strategy=backoff(0.5)
    ) as system:
        start = trio.current_time()
        account = system.spawn(SnapshottingAccount, name="a")
        assert await account.ask("state") == (6, 3)
        assert trio.current_time() - start == pytest.approx(0.5 + 1.0)
    assert journal.injected == [JournalInjection(PID, LOAD, Verdict.FAIL)] * 2


async def test_a_replay_failure_is_retried_by_supervision_with_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = FaultyJournal(InMemoryJournal())
    await journal.write([record(1, 4), record(2, 6)])
    journal.add(fail_next(3, [R, H]))
    failures: list[Any] = []
    async with actors.open_system(
        extensions=[Persistence(journal)], guardian_strategy=backoff(0.25)
    ) as system:
        system.events.subscribe(system.spawn(Collect, failures), ActorFailed)
        start = trio.current_time()
        account = system.spawn(Account, name="a")
        assert await account.ask("state") == (10, 2)
        assert trio.current_time() - start == pytest.approx(0.25 + 0.5 + 1.0)
    # Three recoveries failed at the replay, the fourth got through both reads.
    assert [i.operation for i in journal.injected] == [R, R, R]
    assert len(failures) == 3
    assert all("recovery of persistence id 'acct-1' failed" in str(f.error) for f in failures)


async def test_a_failed_snapshot_save_is_logged_and_a_rejected_one_raises(
    caplog: pytest.LogCaptureFixture,
) -> None:
    journal = FaultyJournal(InMemoryJournal(), fail_next(1, SAVE))
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(SnapshottingAccount, name="a")
        await account.ask(("deposit", 1))
        assert await account.ask(("deposit", 2)) == 2  # the snapshot at 2 failed: logged
        assert "saving the snapshot at seq 2 failed" in caplog.text
        journal.add(reject_next(1, SAVE))
        with pytest.raises(EventRejected, match="snapshot_save"):
            await account.ask("snapshot")
        assert await account.ask("state") == (3, 2)
        assert await account.ask("snapshot") == 2
    assert journal.snapshots is not None
    stored = await journal.snapshots.load(PID)
    assert stored is not None
    assert stored.seq == 2


# -- SteppingJournal ------------------------------------------------------------------------------


async def test_stepping_a_direct_write_and_a_cancelled_wait() -> None:
    inner = InMemoryJournal()
    journal = SteppingJournal(inner)
    results: list[list[int]] = []

    async def write(batch: Sequence[PersistentRecord]) -> None:
        results.append(await journal.write(batch))

    async with trio.open_nursery() as nursery:
        # step() may be called before the operation arrives: it waits for it.
        nursery.start_soon(journal.step)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(write, [record(1)])
        await trio.testing.wait_all_tasks_blocked()
        assert results == [[1]]
        nursery.start_soon(write, [record(2)])
        assert await journal.next_operation() == JournalCall(PID, W)
        assert journal.pending == [JournalCall(PID, W)]
        nursery.cancel_scope.cancel()  # cancels the waiting write
    assert journal.pending == []  # the cancelled write left the queue, never ran
    assert await seqs(inner) == [1]
    assert journal.released == [JournalCall(PID, W)]


async def test_a_command_arriving_during_recovery_is_handled_after_it() -> None:
    inner = InMemoryJournal()
    await inner.write([record(1, 10)])
    journal = SteppingJournal(inner)
    replies: list[Any] = []
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(Account, name="a")
        assert await journal.next_operation() == JournalCall(PID, LOAD)

        async with trio.open_nursery() as nursery:

            async def ask(message: Any) -> None:
                replies.append(await account.ask(message))

            nursery.start_soon(ask, ("deposit", 5))
            await trio.testing.wait_all_tasks_blocked()
            assert journal.pending == [JournalCall(PID, LOAD)]  # the deposit waits
            # Snapshot, the replay's first chunk, its end, then highest_seq.
            assert await journal.step(4) == [
                JournalCall(PID, LOAD),
                JournalCall(PID, R),
                JournalCall(PID, R),
                JournalCall(PID, H),
            ]
            await trio.testing.wait_all_tasks_blocked()
            # Recovered; only now is the deposit handled, and its write waits.
            assert journal.pending == [JournalCall(PID, W)]
            assert replies == []
            await journal.step()
        assert replies == [2]
        assert await account.ask("state") == (15, 2)
    assert journal.released == [JournalCall(PID, op) for op in (LOAD, R, R, H, W)]


async def test_persists_of_consecutive_commands_are_written_one_after_the_other() -> None:
    journal = SteppingJournal(InMemoryJournal())
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(Account, name="a")
        await journal.step(3)  # recovery of a new id: snapshot, replay, highest_seq
        account.tell(("deposit", 1))
        account.tell(("deposit", 2))
        await trio.testing.wait_all_tasks_blocked()
        assert journal.pending == [JournalCall(PID, W)]  # one write at a time
        await journal.step()
        await trio.testing.wait_all_tasks_blocked()
        assert journal.pending == [JournalCall(PID, W)]  # the second one, after the first
        assert [r.seq async for r in journal.inner.replay(PID)] == [1]
        await journal.step()
        await trio.testing.wait_all_tasks_blocked()
        assert journal.pending == []
        journal.run_freely()
        assert await account.ask("state") == (3, 2)
    payloads = [r.payload async for r in journal.inner.replay(PID)]
    assert [pickle.loads(p) for p in payloads] == [Deposited(1), Deposited(2)]


async def test_stepping_over_faults_puts_a_failure_at_an_exact_point(
    autojump_clock: trio.testing.MockClock,
) -> None:
    faulty = FaultyJournal(InMemoryJournal())
    journal = SteppingJournal(faulty)
    async with actors.open_system(
        extensions=[Persistence(journal)], guardian_strategy=backoff(1.0)
    ) as system:
        account = system.spawn(Account, name="a")
        await journal.step(3)
        account.tell(("deposit", 1))
        assert await journal.next_operation() == JournalCall(PID, W)
        faulty.add(fail_next(1))  # decided when the write is let through, not before
        await journal.step()
        # The failed write restarts the actor after 1 s; its recovery waits for steps.
        assert await journal.step(3) == [JournalCall(PID, op) for op in (LOAD, R, H)]
        journal.run_freely()
        assert await account.ask("state") == (0, 0)
    assert faulty.injected == [JournalInjection(PID, W, Verdict.FAIL)]


def test_the_journal_tools_are_public_in_their_own_module() -> None:
    import actors.testing
    import actors.testing.journal

    for name in actors.testing.journal.__all__:
        value = getattr(actors.testing.journal, name)
        if isinstance(value, type | types.FunctionType):
            assert value.__module__ == "actors.testing.journal", name
        assert name not in actors.testing.__all__, name
        assert not hasattr(actors.testing, name), name
    assert pickle.loads(pickle.dumps(JournalCall(PID, W))) == JournalCall(PID, W)
