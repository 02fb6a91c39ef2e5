"""Errors that reach the user: when an actor stops because of an error, that error
travels to whoever asks it (``ActorDead.error``, ``__cause__`` and the message), to its
watchers (``Terminated.error``) and to the bus (``ActorStopped.error``); and a failure
to start stops the actor by default instead of ending the system."""

from __future__ import annotations

import logging
import pickle
import threading
from typing import Any

import pytest
import trio
import trio.testing

import actors
import supervision as sv
from actors import (
    Actor,
    ActorDead,
    ActorFailed,
    ActorInitializationError,
    ActorStopped,
    Terminated,
)
from actors._system import _FAILED_REMEMBERED
from actors.persistence import (
    InMemoryJournal,
    Persistence,
    PersistentActor,
    PersistentRecord,
    RecoveryFailed,
)
from actors.testing import TestProbe

NO_JOURNAL = (
    "recovery of persistence id 'acct' failed at seq 0: no journal is configured: pass "
    "extensions=[Persistence(journal=...)] to open_system (for example a journal opened "
    "with open_sqlite_journal)"
)


class Boom(Exception):
    pass


class Account(PersistentActor):
    def __init__(self, pid: Any = "acct") -> None:
        self.persistence_id = pid
        self.balance = 0

    def apply(self, event: Any) -> None:
        self.balance += event

    def receive(self, message: Any) -> Any:
        return self.balance


class Collect(Actor):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.append(message)


async def _collect(system: actors.ActorSystem, *kinds: type) -> list[Any]:
    into: list[Any] = []
    ref = system.spawn(Collect, into)
    for kind in kinds:
        system.events.subscribe(ref, kind)
    await trio.testing.wait_all_tasks_blocked()
    return into


# -- a persistent actor whose recovery cannot succeed ---------------------------------------


async def test_an_ask_in_flight_gets_the_recovery_error_of_an_actor_without_journal(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("no-journal") as system:
        ref = system.spawn(Account, name="acct")
        with pytest.raises(ActorDead) as info:
            await ref.ask("balance")
    error = info.value
    assert str(error) == (
        f"actor /user/acct stopped before replying: it failed with RecoveryFailed: {NO_JOURNAL}"
    )
    assert isinstance(error.error, RecoveryFailed)
    assert error.__cause__ is error.error
    assert error.__suppress_context__


async def test_an_ask_after_the_death_gets_the_error_through_the_ref_and_a_fresh_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("no-journal-later") as system:
        probe = TestProbe(system)
        ref = probe.watch(system.spawn(Account, name="acct"))
        terminated = await probe.expect_terminated(ref)
        assert isinstance(terminated.error, RecoveryFailed)
        # The ref spawn returned still holds the dead cell.
        with pytest.raises(ActorDead) as info:
            await ref.ask("balance")
        assert str(info.value) == (
            f"actor /user/acct is not running: it failed with RecoveryFailed: {NO_JOURNAL}"
        )
        assert info.value.__cause__ is terminated.error
        # A ref that resolves again (unpickled) finds the tombstone, which remembers.
        fresh = pickle.loads(pickle.dumps(ref))
        with pytest.raises(ActorDead) as info:
            await fresh.ask("balance")
        assert str(info.value) == (
            f"actor /user/acct has stopped: it failed with RecoveryFailed: {NO_JOURNAL}"
        )
        assert info.value.error is terminated.error
        assert info.value.__cause__ is terminated.error


async def test_watching_an_actor_already_dead_names_its_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("no-journal-watched-late") as system:
        first = TestProbe(system)
        ref = first.watch(system.spawn(Account, name="acct"))
        error = (await first.expect_terminated(ref)).error
        assert isinstance(error, RecoveryFailed)
        # Watched after its death: through the ref spawn returned (its dead cell) and
        # through a fresh ref (the tombstone), Terminated still carries the error.
        for watched in (ref, pickle.loads(pickle.dumps(ref))):
            late = TestProbe(system)
            late.watch(watched)
            terminated = await late.expect_terminated(watched)
            assert terminated.error is error
            assert terminated.existence_confirmed is False


async def test_no_persistence_id_reaches_the_asker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("no-id", extensions=[Persistence(InMemoryJournal())]) as system:
        ref = system.spawn(Account, None, name="nameless")
        with pytest.raises(ActorDead) as info:
            await ref.ask("balance")
    assert str(info.value) == (
        "actor /user/nameless stopped before replying: it failed with RecoveryFailed: "
        "recovery of persistence id 'None' failed at seq 0: Account has no persistence_id "
        "(a non-empty str); set it as a class attribute or in __init__"
    )
    assert isinstance(info.value.__cause__, RecoveryFailed)


async def test_an_undecodable_event_reaches_the_asker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    await journal.write([PersistentRecord("acct", 1, "pickle", "Deposited", b"\x80\x05junk")])
    async with actors.open_system("undecodable", extensions=[Persistence(journal)]) as system:
        ref = system.spawn(Account, name="acct")
        with pytest.raises(ActorDead) as info:
            await ref.ask("balance")
    text = str(info.value)
    assert text.startswith(
        "actor /user/acct stopped before replying: it failed with RecoveryFailed: recovery "
        "of persistence id 'acct' failed at seq 1: event 1 (Deposited) cannot be decoded"
    )
    cause = info.value.__cause__
    assert isinstance(cause, RecoveryFailed)
    assert cause.seq == 1


async def test_watchers_and_the_bus_get_the_error_too(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("no-journal-events") as system:
        seen = await _collect(system, ActorFailed, ActorStopped)
        probe = TestProbe(system)
        ref = probe.watch(system.spawn(Account, name="acct"))
        terminated = await probe.expect_terminated(ref)
        await trio.testing.wait_all_tasks_blocked()
    [failed, stopped] = [e for e in seen if e.ref == ref]
    assert (type(failed), type(stopped)) == (ActorFailed, ActorStopped)
    assert failed.ref == stopped.ref == ref
    assert failed.error is stopped.error is terminated.error
    assert isinstance(terminated.error, RecoveryFailed)


# -- a give-up by the supervisor -----------------------------------------------------------


class Crashes(Actor):
    def receive(self, message: Any) -> Any:
        if message == "crash":
            raise Boom("it broke")
        return message


class Parent(Actor):
    supervisor_strategy = sv.OneForOne(intensity=sv.RestartIntensity(max_restarts=0, within=5))

    def receive(self, message: Any) -> Any:
        return self.context.spawn(Crashes, name="child")


async def test_a_pending_ask_learns_of_the_failure_its_supervisor_gave_up_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stop_all = sv.OneForOne(decider=lambda error: sv.Directive.STOP)
    async with actors.open_system("give-up", guardian_strategy=stop_all) as system:
        parent = system.spawn(Parent, name="parent")
        child = await parent.ask("spawn")
        child.tell("crash")
        with pytest.raises(ActorDead) as info:
            await child.ask("after the crash")
    assert str(info.value) == (
        "actor /user/parent/child stopped before replying: it failed with Boom: it broke"
    )
    assert isinstance(info.value.error, Boom)


# -- a failure to start stops the actor by default -------------------------------------------


class FailsInInit(Actor):
    def __init__(self) -> None:
        raise Boom("no database")

    def receive(self, message: Any) -> Any:  # pragma: no cover - never constructed
        return message


class FailsInPreStart(Actor):
    def pre_start(self) -> None:
        raise Boom("no database")

    def receive(self, message: Any) -> Any:  # pragma: no cover - never started
        return message


@pytest.mark.parametrize("factory", [FailsInInit, FailsInPreStart], ids=["init", "pre_start"])
async def test_a_failed_start_stops_the_actor_and_the_system_goes_on(
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
    factory: type[Actor],
) -> None:
    caplog.set_level(logging.ERROR, logger="actors.supervision")
    async with actors.open_system("init-stops") as system:
        seen = await _collect(system, ActorFailed, ActorStopped)
        probe = TestProbe(system)
        ref = probe.watch(system.spawn(factory, name="db"))
        with pytest.raises(ActorDead) as info:
            await ref.ask("query")
        terminated = await probe.expect_terminated(ref)
        await trio.testing.wait_all_tasks_blocked()
        # The system goes on: other actors can still be spawned and asked.
        assert await system.spawn(Crashes).ask("still here") == "still here"
    assert str(info.value) == (
        "actor /user/db stopped before replying: it failed with ActorInitializationError: "
        "actor /user/db failed to start: Boom('no database')"
    )
    error = info.value.error
    assert isinstance(error, ActorInitializationError)
    assert isinstance(error.__cause__, Boom)
    assert terminated.error is error
    mine = [e for e in seen if e.ref == ref]
    assert [type(e) for e in mine] == [ActorFailed, ActorStopped]
    assert all(e.error is error for e in mine)
    [record] = [r for r in caplog.records if r.name == "actors.supervision"]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == (
        '/user/db failed: ActorInitializationError("actor /user/db failed to start: '
        "Boom('no database')\"); stopped by /user"
    )
    # The traceback of the record shows the error's note: how to retry instead.
    assert record.exc_info is not None
    assert "decider_from({ActorInitializationError: Directive.RESTART})" in "".join(
        record.exc_info[1].__notes__  # type: ignore[union-attr]
    )


async def test_a_decider_that_restarts_on_initialization_errors_still_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts: list[int] = []

    class FailsTwice(Actor):
        def __init__(self) -> None:
            attempts.append(len(attempts))
            if len(attempts) <= 2:
                raise Boom("not yet")

        def receive(self, message: Any) -> Any:
            return (message, len(attempts))

    retry = sv.OneForOne(
        decider=sv.decider_from({ActorInitializationError: sv.Directive.RESTART}),
        backoff=sv.Backoff(min_delay=1.0, max_delay=1.0, jitter=0.0),
    )
    async with actors.open_system("init-retried", guardian_strategy=retry) as system:
        ref = system.spawn(FailsTwice)
        assert await ref.ask("hello", timeout=10) == ("hello", 3)
        assert trio.current_time() == 2  # two restarts after a second each
    assert attempts == [0, 1, 2]


async def test_a_constructor_that_fails_in_a_restart_stops_the_actor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Akka's rule, on a restart too: an actor that ran before and whose fresh instance
    cannot be made stops; the question behind the crash learns why."""
    made: list[int] = []

    class FirstOnly(Actor):
        def __init__(self) -> None:
            made.append(1)
            if len(made) > 1:
                raise Boom("cannot reconnect")

        def receive(self, message: Any) -> Any:
            if message == "crash":
                raise Boom("lost the connection")
            return message

    async with actors.open_system("restart-init") as system:
        probe = TestProbe(system)
        ref = probe.watch(system.spawn(FirstOnly, name="conn"))
        assert await ref.ask("ping") == "ping"
        ref.tell("crash")
        with pytest.raises(ActorDead) as info:
            await ref.ask("ping")
        terminated = await probe.expect_terminated(ref)
    assert len(made) == 2
    assert str(info.value) == (
        "actor /user/conn stopped before replying: it failed with ActorInitializationError: "
        "actor /user/conn failed to start: Boom('cannot reconnect')"
    )
    assert terminated.error is info.value.error


def test_the_default_decider_reads_the_directive_an_error_class_names() -> None:
    error = ActorInitializationError("/user/a", Boom("x"))
    assert sv.default_decider(error) is sv.Directive.STOP
    assert sv.default_decider(Boom("x")) is sv.Directive.RESTART
    assert sv.default_decider(KeyboardInterrupt()) is sv.Directive.ESCALATE
    # A table overrides it; an error the table does not name falls back to the default.
    decide = sv.decider_from({ActorInitializationError: sv.Directive.RESTART})
    assert decide(error) is sv.Directive.RESTART
    assert sv.decider_from({KeyError: sv.Directive.RESUME})(error) is sv.Directive.STOP


# -- Supervisor children that cannot start ---------------------------------------------------


class Fine(Actor):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def post_stop(self) -> None:
        self.log.append("fine stopped")

    def receive(self, message: Any) -> Any:
        return message


async def test_a_supervisor_whose_child_cannot_start_fails_its_own_start(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """As OTP's supervisor start: the children started before stop, and the supervisor
    stops with an error that names the child and the cause."""
    import functools

    log: list[str] = []
    specs = [
        sv.ChildSpec("fine", functools.partial(Fine, log)),
        sv.ChildSpec("db", FailsInInit),
        sv.ChildSpec("never", functools.partial(Fine, log)),
    ]
    async with actors.open_system("sup-start") as system:
        probe = TestProbe(system)
        sup = probe.watch(system.spawn(actors.Supervisor, specs, name="sup"))
        terminated = await probe.expect_terminated(sup)
    error = terminated.error
    assert isinstance(error, ActorInitializationError)
    assert str(error) == (
        'actor /user/sup failed to start: ActorDead("actor /user/sup/db stopped before it '
        "started: it failed with ActorInitializationError: actor /user/sup/db failed to "
        "start: Boom('no database')\")"
    )
    child_dead = error.error
    assert isinstance(child_dead, ActorDead)
    assert isinstance(child_dead.error, ActorInitializationError)
    assert log == ["fine stopped"]  # "never" was never started


async def test_start_child_that_cannot_start_tells_the_asker_why(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("sup-start-child") as system:
        sup = system.spawn(actors.Supervisor, [], name="sup")
        with pytest.raises(ActorDead) as info:
            await sup.ask(actors.StartChild(sv.ChildSpec("db", FailsInPreStart)))
        assert str(info.value) == (
            "actor /user/sup/db stopped before it started: it failed with "
            "ActorInitializationError: actor /user/sup/db failed to start: "
            "Boom('no database')"
        )
        # The supervisor itself goes on.
        assert await sup.ask(actors.CountChildren()) == sv.ChildCounts(1, 0)


# -- ActorDead itself ------------------------------------------------------------------------


def test_actor_dead_pickles_with_its_error() -> None:
    cause = ActorInitializationError("/user/a", ValueError("bad"))
    error = ActorDead("/user/a", "stopped before replying", cause)
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == str(error)
    assert copy.path == "/user/a"
    assert isinstance(copy.error, ActorInitializationError)
    assert str(copy.error) == str(cause)
    assert copy.__cause__ is copy.error
    plain = pickle.loads(pickle.dumps(ActorDead("/user/b")))
    assert (str(plain), plain.error, plain.__cause__) == (
        "actor /user/b is not running",
        None,
        None,
    )


class Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("holds a lock")
        self.lock = threading.Lock()


def test_actor_dead_with_an_unpicklable_error_pickles_without_it() -> None:
    error = ActorDead("/user/a", "stopped before replying", Unpicklable())
    copy = pickle.loads(pickle.dumps(error))
    assert str(copy) == (
        "actor /user/a stopped before replying: it failed with Unpicklable: holds a lock"
    )
    assert copy.error is None


async def test_the_error_travels_through_a_round_trip_system(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("roundtrip", roundtrip_messages=True) as system:
        ref = system.spawn(FailsInInit, name="db")
        with pytest.raises(ActorDead) as info:
            await ref.ask("query")
    assert isinstance(info.value.error, ActorInitializationError)
    assert str(info.value).endswith("failed to start: Boom('no database')")


async def test_tombstones_remember_a_bounded_number_of_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("many-failures") as system:
        probe = TestProbe(system)
        for _ in range(_FAILED_REMEMBERED + 1):
            probe.watch(system.spawn(FailsInInit))
        died = []  # in the order they died
        for _ in range(_FAILED_REMEMBERED + 1):
            terminated = await probe.expect_message(Terminated)
            assert isinstance(terminated.error, ActorInitializationError)
            died.append(terminated.ref)
        oldest, newest = (pickle.loads(pickle.dumps(r)) for r in (died[0], died[-1]))
        with pytest.raises(ActorDead) as info:
            await oldest.ask("?")
        assert info.value.error is None  # forgotten: the table is bounded
        assert str(info.value).endswith("does not exist (no live actor at this address)")
        with pytest.raises(ActorDead) as info:
            await newest.ask("?")
        assert isinstance(info.value.error, ActorInitializationError)
        assert len(system._failed) == _FAILED_REMEMBERED
