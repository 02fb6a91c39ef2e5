"""Worker processes with the rest of the runtime: death watch across processes,
persistent actors on workers (with a kill -9 in the middle of their writes),
``describe()``, and the test kit's worker faults and trace.

Real processes run on real time: no virtual clock here; every wait is bounded by
``trio.fail_after`` and nothing is asserted about durations.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pytest
import trio

import actors
from actors.persistence import (
    Persistence,
    PersistentActor,
    RecoveryFailed,
    open_sqlite_journal,
)
from actors.testing import FaultInjector, FaultModel, KillWorker, MessageTrace, run_chaos

pytestmark = pytest.mark.workers

LIMIT = 30  # seconds: generous bounds for real processes on a busy machine


class Collector(actors.Actor):
    """Keeps what it is told; ``"get"`` asks for it."""

    def __init__(self) -> None:
        self.got: list[Any] = []

    def receive(self, message: Any) -> Any:
        if message == "get":
            return list(self.got)
        self.got.append(message)
        return None


class Echo(actors.Actor):
    def receive(self, message: Any) -> Any:
        if message == "pid":
            return os.getpid()
        if message == "kid":
            return self.context.spawn(Echo, name="kid")
        return message


class Watcher(actors.Actor):
    """Watches ``target`` and tells ``sink`` each ``Terminated`` it gets, with the
    process it runs in."""

    def __init__(self, target: actors.ActorRef, sink: actors.ActorRef) -> None:
        self.sink = sink
        self.context.watch(target)

    def receive(self, message: Any) -> Any:
        if isinstance(message, actors.Terminated):
            error = None if message.error is None else type(message.error).__name__
            self.sink.tell((self.context.ref.address.node, message.ref.path, error))
        return message


class Account(PersistentActor):
    def __init__(self, pid: str) -> None:
        self.persistence_id = pid
        self.balance = 0

    def apply(self, event: Any) -> None:
        self.balance += event

    async def receive(self, message: Any) -> Any:
        if message == "pid":
            return os.getpid()
        if message == "state":
            return (self.balance, self.last_seq)
        return await self.persist(message)


async def until(predicate: Any, *args: Any) -> Any:
    """Poll an async predicate until it returns something true (bounded by LIMIT)."""
    with trio.fail_after(LIMIT):
        while True:
            found = await predicate(*args)
            if found:
                return found
            await trio.sleep(0.01)


async def ask_until_answered(ref: actors.ActorRef, message: Any) -> Any:
    """Ask until the actor answers (it may be restarting on a new worker)."""
    with trio.fail_after(LIMIT):
        while True:
            try:
                return await ref.ask(message, timeout=LIMIT)
            except actors.ActorDead:
                await trio.sleep(0.01)


# -- death watch across processes ---------------------------------------------------------------


async def test_terminated_crosses_processes_in_every_direction() -> None:
    async with actors.open_system("watch-across", workers=2) as system:
        sink = system.spawn(Collector, name="sink")

        async def seen(count: int) -> list[Any] | None:
            got: list[Any] = await sink.ask("get")
            return got if len(got) >= count else None

        # An actor on w1 watches an actor of the root, which stops normally.
        local = system.spawn(Echo, name="local")
        w1 = actors.OnWorker("w1")
        on_w1 = system.spawn(Watcher, local, sink, name="w1-watcher", placement=w1)
        assert await on_w1.ask("sync") == "sync"  # (its watch is registered)
        system.stop(local)
        assert await until(seen, 1) == [("w1", "/user/local", None)]
        # An actor on w2 spawns a child there; the root and an actor on w1 watch it; its
        # process is killed: both get Terminated, with ProcessLost as the reason.
        parent = system.spawn(Echo, name="parent", placement=actors.OnWorker("w2"))
        kid = await parent.ask("kid")
        assert kid.address.node == "w2"
        system.spawn(Watcher, kid, sink, name="root-watcher")
        other = system.spawn(Watcher, kid, sink, name="w1-watcher-2", placement=w1)
        assert await other.ask("sync") == "sync"
        await system.started(system.spawn(Echo, name="barrier"))
        os.kill(await parent.ask("pid"), 9)
        got = await until(seen, 3)
        assert sorted(got[1:]) == [
            ("local", "/user/parent/kid", "ProcessLost"),
            ("w1", "/user/parent/kid", "ProcessLost"),
        ]
        # Exactly once: nothing more arrives for them.
        assert await ask_until_answered(parent, "sync") == "sync"  # (restarted)
        assert len(await sink.ask("get")) == 3


# -- persistent actors on workers -------------------------------------------------------------


@pytest.mark.crash
async def test_a_persistent_actor_on_a_killed_worker_loses_no_acknowledged_event(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    opener = functools.partial(open_sqlite_journal, path)
    async with (
        open_sqlite_journal(path) as journal,
        actors.open_system(
            "persist-on-workers",
            workers=1,
            extensions=[Persistence(journal, worker_journal=opener)],
        ) as system,
    ):
        account = system.spawn(Account, "acc-1", name="acc", placement=actors.OnWorker("w1"))
        first_pid = await account.ask("pid")
        acknowledged: list[int] = []
        causes: list[BaseException | None] = []
        with trio.fail_after(LIMIT):
            for amount in range(1, 121):
                if amount == 40:
                    os.kill(first_pid, 9)  # in the middle of the writes
                try:
                    acknowledged.append(await account.ask(amount, timeout=LIMIT))
                except actors.ActorDead as error:
                    causes.append(error.__cause__)
        failed = len(causes)
        assert all(isinstance(cause, actors.ProcessLost) for cause in causes)
        assert await account.ask("pid") != first_pid  # restarted on a new process
        stored = [record async for record in journal.replay("acc-1")]
        balance, last_seq = await account.ask("state")
    # Every acknowledged event is stored, in a gap-free history that the restarted
    # actor recovered in full; the asks that failed may or may not have been stored.
    seqs = [record.seq for record in stored]
    assert seqs == list(range(1, len(seqs) + 1))
    assert set(acknowledged) <= set(seqs)
    assert len(acknowledged) + failed == 120
    assert last_seq == len(seqs)
    assert balance == sum(pickled_amount(record) for record in stored)


def pickled_amount(record: Any) -> int:
    import pickle

    value: int = pickle.loads(record.payload)
    return value


async def test_a_persistent_actor_on_a_worker_without_a_worker_journal_says_how() -> None:
    failures: list[actors.ActorFailed] = []

    class Failures(actors.Actor):
        def receive(self, message: Any) -> None:
            failures.append(message)

    async with actors.open_system(
        "persist-no-worker-journal",
        workers=1,
        extensions=[Persistence(None)],
    ) as system:
        system.events.subscribe(system.spawn(Failures), actors.ActorStopped)
        account = system.spawn(Account, "acc-2", name="acc", placement=actors.OnWorker("w1"))
        with trio.fail_after(LIMIT):
            with pytest.raises(actors.ActorDead) as caught:
                await system.started(account)
    error = caught.value.error
    assert error is not None
    text = str(error)
    assert "no journal is configured in worker process w1" in text
    assert "worker_journal=" in text
    assert isinstance(error, RecoveryFailed) or "RecoveryFailed" in text


# -- describe() and the test kit ----------------------------------------------------------------


async def test_describe_names_the_process_of_each_actor() -> None:
    async with actors.open_system("describe-workers", workers=1) as system:
        system.spawn(Echo, name="here")
        remote = system.spawn(Echo, name="there", placement=actors.OnWorker("w1"))
        await system.started(remote)
        tree = system.describe()
    there = tree.find("/user/there")
    here = tree.find("/user/here")
    assert there is not None
    assert here is not None
    assert (there.node, there.actor_class) == ("w1", "Echo")
    assert here.node == "local"
    assert "there (Echo, running, mailbox 0, on w1)" in tree.to_text()
    assert "here (Echo, running, mailbox 0)\n" in tree.to_text()


@pytest.mark.crash
async def test_the_fault_injector_kills_a_worker_and_the_trace_shows_where_actors_ran() -> None:
    async with actors.open_system("kill-worker", workers=1) as system:
        faults = FaultInjector(seed=3)
        faults.install(system)
        trace = MessageTrace.attach(faults)
        echo = system.spawn(Echo, name="echo", placement=actors.OnWorker("w1"))
        before = await echo.ask("pid")
        assert faults.kill_worker("w1") == before
        with pytest.raises(actors.WorkerError, match="worker w1 is restarting"):
            faults.kill_worker("w1")  # (no process up to kill)
        with pytest.raises(ValueError, match="no worker named 'w9'"):
            faults.kill_worker("w9")
        after = await ask_until_answered(echo, "pid")
        [info] = system.workers()
        assert after != before
        assert (info.name, info.pid, info.restarts, info.state) == ("w1", after, 1, "up")
    kinds = [(entry.kind, entry.recipient) for entry in trace.entries]
    assert ("ask", "/user/echo@w1") in kinds
    assert ("kill_worker", "w1") in kinds
    assert ("failed", "/user/echo@w1") in kinds
    assert ("restarted", "/user/echo@w1") in kinds
    [injection] = [i for i in faults.injected if i.kind == "kill_worker"]
    assert injection.recipient == "w1"


@pytest.mark.crash
async def test_a_kill_worker_rule_kills_before_delivering_and_the_message_is_not_lost() -> None:
    async with actors.open_system("kill-worker-rule", workers=1) as system:
        faults = FaultInjector(seed=5)
        faults.install(system)
        echo = system.spawn(Echo, name="echo", placement=actors.OnWorker("w1"))
        before = await echo.ask("pid")
        faults.add(KillWorker(), actors.testing.Match(type=str, where=lambda m: m == "boom"))
        # The message that kills waits for the restarted actor, which answers it.
        with trio.fail_after(LIMIT):
            assert await echo.ask("boom", timeout=LIMIT) == "boom"
        assert await echo.ask("pid") != before
        assert [i.kind for i in faults.injected] == ["kill_worker"]


@pytest.mark.crash
async def test_the_chaos_runner_can_kill_workers() -> None:
    async def scenario(system: actors.ActorSystem, faults: FaultInjector) -> list[Any]:
        echo = system.spawn(Echo, name="echo", placement=actors.OnWorker("w1"))
        return [await ask_until_answered(echo, n) for n in range(6)]

    runs = await run_chaos(
        scenario,
        seeds=[11],
        faults=FaultModel(kill_worker=0.5, type=int),
        invariants=[lambda answers: answers == list(range(6))],
        workers=1,
    )
    [run] = runs
    assert run.injected >= 1  # with this seed, at least one worker was killed


async def test_dead_letters_in_a_worker_reach_the_roots_bus() -> None:
    async with actors.open_system("dead-letters-across", workers=1) as system:
        sink = system.spawn(Collector, name="sink")
        system.events.subscribe(sink, actors.DeadLetter)
        parent = system.spawn(Echo, name="parent", placement=actors.OnWorker("w1"))
        kid = await parent.ask("kid")  # lives in w1 only: the root routes to it
        kid.tell(actors.PoisonPill)
        kid.tell("too late")  # reaches w1 after the pill: a dead letter there

        async def dead() -> list[actors.DeadLetter]:
            got = await sink.ask("get")
            return [d for d in got if isinstance(d, actors.DeadLetter) and d.message == "too late"]

        [letter] = await until(dead)
    assert letter.recipient == kid
    assert letter.reason in (
        actors.DeadLetterReason.STOPPED,
        actors.DeadLetterReason.NO_SUCH_ACTOR,
    )
    assert system.dead_letter_count >= 1


async def test_an_actor_in_a_process_of_its_own_takes_it_down_when_it_stops() -> None:
    async with actors.open_system("own-process", workers=0) as system:
        first = system.spawn(Echo, name="first", placement=actors.OwnProcess())
        second = system.spawn(Echo, name="second", placement=actors.OwnProcess())
        pids = {await first.ask("pid"), await second.ask("pid")}
        assert len(pids) == 2
        assert os.getpid() not in pids
        assert (first.address.node, second.address.node) == ("p1", "p2")
        assert [(w.name, w.state, w.actors) for w in system.workers()] == [
            ("p1", "up", 1),
            ("p2", "up", 1),
        ]
        first_pid = await first.ask("pid")
        first.tell(actors.PoisonPill)

        async def p1_gone() -> bool:
            return all(w.name != "p1" for w in system.workers())

        await until(p1_gone)
        with pytest.raises(ProcessLookupError):
            os.kill(first_pid, 0)  # (reaped: not even a zombie)
        with pytest.raises(ValueError, match="needs workers: this system has none"):
            system.spawn(Echo, placement=actors.AnyWorker())
        second_pid = await second.ask("pid")
    with pytest.raises(ProcessLookupError):
        os.kill(second_pid, 0)


class Counter(actors.Actor):
    """Counts what it is told, by message; ``"counts"`` asks for the counts."""

    def __init__(self) -> None:
        self.counts: dict[Any, int] = {}

    def receive(self, message: Any) -> Any:
        if message == "counts":
            return dict(self.counts)
        self.counts[message] = self.counts.get(message, 0) + 1
        return None


async def test_faults_drop_hold_and_duplicate_messages_to_an_actor_on_a_worker() -> None:
    async with actors.open_system("faults-on-links", workers=1) as system:
        sink = system.spawn(Collector, name="sink")
        system.events.subscribe(sink, actors.DeadLetter)
        faults = FaultInjector(seed=7)
        faults.install(system)
        counter = system.spawn(Counter, name="counter", placement=actors.OnWorker("w1"))
        faults.drop(to="counter", where=lambda m: m == "dropped")
        faults.duplicate(2, to="counter", where=lambda m: m == "tripled")
        faults.delay(math.inf, to="counter", where=lambda m: m == "held")  # until the end
        for message in ("dropped", "tripled", "held", "plain"):
            counter.tell(message)
        assert await counter.ask("counts") == {"tripled": 3, "plain": 1}
        letters = [d for d in await sink.ask("get") if isinstance(d, actors.DeadLetter)]
    assert [(d.message, d.reason) for d in letters] == [
        ("dropped", actors.DeadLetterReason.FAULT_DROPPED)
    ]
    assert sorted(i.kind for i in faults.injected) == ["delay", "drop", "duplicate"]


class Exiter(actors.Actor):
    """Ends its whole process when told to (``os._exit``, as a crash in C would)."""

    def receive(self, message: Any) -> Any:
        if message == "exit":
            os._exit(3)
        if message == "pid":
            return os.getpid()
        return message


@pytest.mark.crash
async def test_a_worker_that_exits_on_its_own_is_lost_and_its_actor_restarted() -> None:
    async with actors.open_system("os-exit", workers=1) as system:
        sink = system.spawn(Collector, name="sink")
        system.events.subscribe(sink, actors.ActorFailed)
        exiter = system.spawn(Exiter, name="exiter", placement=actors.OnWorker("w1"))
        before = await exiter.ask("pid")
        with trio.fail_after(LIMIT), pytest.raises(actors.ActorDead) as caught:
            await exiter.ask("exit", timeout=LIMIT)  # answered by the loss, not a timeout
        cause = caught.value.__cause__
        assert isinstance(cause, actors.ProcessLost)
        assert str(cause) == f"worker process w1 (pid {before}) was lost: it exited with status 3"
        assert await ask_until_answered(exiter, "pid") != before

        async def failures() -> list[Any]:
            got = await sink.ask("get")
            return [f for f in got if isinstance(f, actors.ActorFailed)]

        [failure] = await until(failures)
    assert failure.ref == exiter
    assert isinstance(failure.error, actors.ProcessLost)


class Replier(actors.Actor):
    """Answers ``"lock"`` with something that cannot be pickled."""

    def receive(self, message: Any) -> Any:
        if message == "lock":
            return threading.Lock()
        return len(message) if isinstance(message, bytes) else message


async def test_bad_answers_and_oversized_messages_are_clear_errors_at_the_call() -> None:
    async with actors.open_system("bad-sizes", workers=2) as system:
        replier = system.spawn(Replier, name="replier", placement=actors.OnWorker("w1"))
        with pytest.raises(actors.UnpicklableMessage, match=r"_thread\.lock"):
            await replier.ask("lock")
        huge = b"x" * (65 * 1024 * 1024)
        with pytest.raises(actors.FrameTooLarge, match="over the limit"):
            replier.tell(huge)
        with pytest.raises(actors.FrameTooLarge, match="over the limit"):
            await replier.ask(huge)
        assert await replier.ask(b"fits") == 4  # nothing else was sent; it goes on
        # Spawned at once, least loaded counts them from the spawn on: they spread.
        spread = [
            system.spawn(Echo, placement=actors.AnyWorker("least_loaded")).address.node
            for _ in range(3)
        ]
    assert spread == ["w2", "w1", "w2"]


async def test_a_message_a_worker_cannot_unpickle_is_an_undecodable_dead_letter() -> None:
    # A class that pickles by reference here, from a module only this process has.
    module = types.ModuleType("root_only_messages")
    exec("class OnlyHere:\n    pass\n", module.__dict__)
    sys.modules[module.__name__] = module
    try:
        async with actors.open_system("undecodable", workers=1) as system:
            sink = system.spawn(Collector, name="sink")
            system.events.subscribe(sink, actors.DeadLetter)
            echo = system.spawn(Echo, name="echo", placement=actors.OnWorker("w1"))
            assert await echo.ask("sync") == "sync"
            echo.tell(module.OnlyHere())

            async def undecodable() -> list[actors.DeadLetter]:
                got = await sink.ask("get")
                return [
                    d
                    for d in got
                    if isinstance(d, actors.DeadLetter)
                    and d.reason is actors.DeadLetterReason.UNDECODABLE
                ]

            [letter] = await until(undecodable)
            assert await echo.ask("still here") == "still here"  # nothing else was lost
    finally:
        del sys.modules[module.__name__]
    assert letter.recipient == echo
    assert "No module named 'root_only_messages'" in str(letter.message)
