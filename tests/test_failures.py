"""Actor failures and how they end: stopped, restarted, reported or unhandled.

An exception raised by a handler outside an ``ask`` (or by the constructor or
``pre_start``) is a failure: ``ActorFailed`` is published, the failing message is
dead-lettered (``failed``), and the parent's supervisor strategy decides. By default the
actor is restarted in place (same ref, same mailbox); under a ``STOP`` strategy it stops
and watchers get ``Terminated(error=error)``. A failure that reaches ``/user`` (escalated,
or ``/user`` gave up after too many restarts) cancels the body of ``open_system``, which
raises ``UnhandledFailure``. A failure while the actor is already stopping is only
reported (``ActorFailed``, a log record on ``actors.supervision``, the reason of the stop).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

import supervision
from actors import (
    Actor,
    ActorFailed,
    ActorInitializationError,
    ActorRef,
    ActorRestarted,
    ActorStopped,
    ActorSystem,
    DeadLetter,
    DeadLetterReason,
    SupervisorGaveUp,
    Terminated,
    UnhandledFailure,
    open_system,
)
from actors.testing import TestProbe

# -- helpers ----------------------------------------------------------------------------------

STOP = supervision.OneForOne(
    decider=supervision.decider_from({Exception: supervision.Directive.STOP})
)
"""A failing actor stops (the failure is not raised from ``open_system``)."""

ESCALATE = supervision.OneForOne(decider=lambda error: supervision.Directive.ESCALATE)
"""A failing actor stops and its failure goes up: at ``/user``, it ends the system."""

stop_on_failure = pytest.mark.actor_system(guardian_strategy=STOP)


class Boom(Exception):
    pass


class Fatal(BaseException):
    """Stands in for KeyboardInterrupt / SystemExit: must never be swallowed."""


class Collector(Actor):
    """Appends every message to a plain list that outlives the system."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def receive(self, message: Any) -> None:
        self.log.append(message)


class Failing(Actor):
    """Raises ``Boom(message)`` for every message except "ping"; records its hooks."""

    def __init__(self, log: list[Any], errors: list[BaseException]) -> None:
        self.log = log
        self.errors = errors

    def receive(self, message: Any) -> Any:
        if message == "ping":
            return "pong"
        error = Boom(message)
        self.errors.append(error)
        raise error

    def post_stop(self) -> None:
        self.log.append(("post_stop", self.context.ref.path))


class FailsInPostStop(Actor):
    def __init__(self, errors: list[BaseException]) -> None:
        self.errors = errors

    def post_stop(self) -> None:
        error = Boom("post_stop")
        self.errors.append(error)
        raise error


class Stops(Actor):
    """Records its post_stop."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def post_stop(self) -> None:
        self.log.append(("post_stop", self.context.ref.path))


async def event_collector(system: ActorSystem, log: list[Any], *types: type) -> ActorRef:
    ref = system.spawn(Collector, log, name="collector")
    await trio.testing.wait_all_tasks_blocked()
    for event_type in types:
        system.events.subscribe(ref, event_type)
    return ref


# -- stop, restart, unhandled -----------------------------------------------------------------


async def test_failure_under_a_stop_strategy_stops_the_actor(autojump_clock: MockClock) -> None:
    log: list[Any] = []
    errors: list[BaseException] = []
    events: list[Any] = []
    async with open_system("stopped", guardian_strategy=STOP) as system:
        await event_collector(system, events, ActorFailed, ActorStopped, DeadLetter)
        probe = TestProbe(system)
        ref = system.spawn(Failing, log, errors, name="failing")
        probe.watch(ref)
        assert await ref.ask("ping") == "pong"
        ref.tell("bad", sender=probe.ref)
        ref.tell("queued")
        terminated = await probe.expect_terminated(ref)
        assert terminated.error is errors[0]
        assert str(errors[0]) == "bad"
        assert log == [("post_stop", "/user/failing")]
        assert system.find("/user/failing") is None
        await trio.testing.wait_all_tasks_blocked()
        assert events == [
            DeadLetter("bad", probe.ref, ref, DeadLetterReason.FAILED),
            ActorFailed(ref, errors[0]),
            DeadLetter("queued", None, ref, DeadLetterReason.STOPPED),
            ActorStopped(ref, errors[0]),
        ]
        assert system.dead_letter_count == 2
        body_went_on = True
    # The strategy handled the failure: leaving the system raises nothing.
    assert body_went_on


async def test_failure_under_the_default_strategy_restarts_the_actor_in_place(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []
    errors: list[BaseException] = []
    events: list[Any] = []
    async with open_system("restarted") as system:
        await event_collector(system, events, ActorFailed, ActorRestarted, ActorStopped, DeadLetter)
        probe = TestProbe(system)
        ref = system.spawn(Failing, log, errors, name="failing")
        probe.watch(ref)
        assert await ref.ask("ping") == "pong"
        ref.tell("bad", sender=probe.ref)
        # Queued behind the failing message: it waits in the mailbox through the restart.
        assert await ref.ask("ping") == "pong"
        assert [str(e) for e in errors] == ["bad"]
        # Same ref, still registered; the old instance's post_stop ran from pre_restart.
        assert system.find("/user/failing") == ref
        assert log == [("post_stop", "/user/failing")]
        await trio.testing.wait_all_tasks_blocked()
        assert events == [
            DeadLetter("bad", probe.ref, ref, DeadLetterReason.FAILED),
            ActorFailed(ref, errors[0]),
            ActorRestarted(ref, errors[0]),
        ]
        assert system.dead_letter_count == 1
        # A restart is not a termination: the watching probe saw nothing.
        await probe.expect_no_message()
    # Restarted, so handled: leaving the system raises nothing.
    assert log == [("post_stop", "/user/failing")] * 2


async def test_failure_inside_an_ask_is_raised_in_the_caller_and_the_actor_goes_on(
    actor_system: ActorSystem, probe: TestProbe, autojump_clock: MockClock
) -> None:
    log: list[Any] = []
    errors: list[BaseException] = []
    ref = actor_system.spawn(Failing, log, errors)
    probe.watch(ref)
    with pytest.raises(Boom, match=r"^question$"):
        await ref.ask("question")
    assert len(errors) == 1
    assert await ref.ask("ping") == "pong"
    await probe.expect_no_message()
    assert log == []


async def test_a_failure_escalated_to_user_cancels_the_body_and_raises_unhandled_failure(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []
    errors: list[BaseException] = []
    reached: list[str] = []
    refs: list[ActorRef] = []

    async def run() -> None:
        async with open_system("escalated", guardian_strategy=ESCALATE) as system:
            system.spawn(Stops, log, name="bystander")
            ref = system.spawn(Failing, log, errors, name="failing")
            refs.append(ref)
            ref.tell("bad")
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                reached.append("cancelled")
                raise
            reached.append("after sleep_forever")  # pragma: no cover

    t0 = trio.current_time()
    with pytest.raises(UnhandledFailure) as excinfo:
        await run()
    assert trio.current_time() == t0
    assert reached == ["cancelled"]
    failure = excinfo.value
    assert failure.__cause__ is errors[0]
    assert failure.failures == [(refs[0], errors[0])]
    assert "/user/failing" in str(failure)
    # The whole system was shut down in order.
    assert log == [("post_stop", "/user/failing"), ("post_stop", "/user/bystander")]


async def test_user_giving_up_after_too_many_restarts_raises_unhandled_failure(
    autojump_clock: MockClock,
) -> None:
    """Under the default strategy (3 restarts within 5 s) the fourth failure in a row makes
    ``/user`` give up: the body is cancelled and ``UnhandledFailure`` names the child."""
    log: list[Any] = []
    errors: list[BaseException] = []
    events: list[Any] = []
    reached: list[str] = []
    refs: list[ActorRef] = []
    users: list[ActorRef] = []

    async def run() -> None:
        async with open_system("gives-up") as system:
            users.append(system.lookup("/user"))
            await event_collector(system, events, ActorRestarted, SupervisorGaveUp)
            system.spawn(Stops, log, name="bystander")
            ref = system.spawn(Failing, log, errors, name="failing")
            refs.append(ref)
            for i in range(4):
                ref.tell(f"bad {i}")
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                reached.append("cancelled")
                raise

    t0 = trio.current_time()
    with pytest.raises(UnhandledFailure) as excinfo:
        await run()
    assert trio.current_time() == t0
    assert reached == ["cancelled"]
    assert [str(e) for e in errors] == ["bad 0", "bad 1", "bad 2", "bad 3"]
    [(ref, error)] = excinfo.value.failures
    assert ref == refs[0]
    assert isinstance(error, supervision.TooManyRestarts)
    assert (error.child, error.error, error.max_restarts, error.within) == (
        "failing",
        errors[3],
        3,
        5.0,
    )
    assert error.__cause__ is errors[3]
    assert excinfo.value.__cause__ is error
    assert "/user/failing" in str(excinfo.value)
    assert events == [ActorRestarted(ref, e) for e in errors[:3]] + [
        SupervisorGaveUp(users[0], ref, errors[3])
    ]
    # Three restarts (pre_restart calls post_stop), the final stop, then the bystander.
    assert log == [("post_stop", "/user/failing")] * 4 + [("post_stop", "/user/bystander")]


async def test_every_unhandled_failure_is_listed_in_order(autojump_clock: MockClock) -> None:
    log: list[Any] = []
    errors: list[BaseException] = []
    refs: dict[str, ActorRef] = {}

    async def run() -> None:
        async with open_system("several", guardian_strategy=ESCALATE) as system:
            for name in ("one", "two"):
                refs[name] = system.spawn(Failing, log, errors, name=name)
                refs[name].tell(name)
            # Both fail before the body reacts to the cancellation of the first one.
            with trio.CancelScope(shield=True):
                await trio.testing.wait_all_tasks_blocked()
            await trio.sleep_forever()

    with pytest.raises(UnhandledFailure) as excinfo:
        await run()
    assert sorted(str(e) for e in errors) == ["one", "two"]
    # In the order the failures happened; __cause__ is the first one.
    assert excinfo.value.failures == [(refs[str(e)], e) for e in errors]
    assert excinfo.value.__cause__ is errors[0]


# -- initialization failures ------------------------------------------------------------------


class FailsInInit(Actor):
    def __init__(self, errors: list[BaseException]) -> None:
        error = Boom("init")
        errors.append(error)
        raise error

    def receive(self, message: Any) -> None:  # pragma: no cover - never constructed
        raise AssertionError("never reached")


class FailsInPreStart(Actor):
    def __init__(self, log: list[Any], errors: list[BaseException]) -> None:
        self.log = log
        self.errors = errors

    async def pre_start(self) -> None:
        self.context.spawn(Stops, self.log, name="early-child")
        await trio.sleep(1)
        error = Boom("pre_start")
        self.errors.append(error)
        raise error

    def receive(self, message: Any) -> None:
        self.log.append(("receive", message))


async def test_failure_in_constructor_is_an_initialization_error(
    autojump_clock: MockClock,
) -> None:
    errors: list[BaseException] = []
    dead: list[Any] = []
    async with open_system("ctor", guardian_strategy=STOP) as system:
        await event_collector(system, dead, DeadLetter)
        probe = TestProbe(system)
        ref = system.spawn(FailsInInit, errors, name="broken")
        probe.watch(ref)
        ref.tell("hello")
        terminated = await probe.expect_terminated(ref)
        error = terminated.error
        assert isinstance(error, ActorInitializationError)
        assert error.path == "/user/broken"
        assert "Boom('init')" in str(error)
        await trio.testing.wait_all_tasks_blocked()
        assert dead == [DeadLetter("hello", None, ref, DeadLetterReason.STOPPED)]


async def test_failure_in_pre_start_is_an_initialization_error(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []
    errors: list[BaseException] = []
    async with open_system("pre-start", guardian_strategy=STOP) as system:
        probe = TestProbe(system)
        ref = system.spawn(FailsInPreStart, log, errors, name="broken")
        probe.watch(ref)
        ref.tell("never processed")
        terminated = await probe.expect_terminated(ref)
        assert trio.current_time() == 1
        assert isinstance(terminated.error, ActorInitializationError)
        assert terminated.error.path == "/user/broken"
        # The child spawned before the failure was stopped; no message was processed.
        assert log == [("post_stop", "/user/broken/early-child")]


async def test_initialization_failure_escalated_to_user_raises_unhandled_failure(
    autojump_clock: MockClock,
) -> None:
    errors: list[BaseException] = []

    async def run() -> None:
        async with open_system("init-escalated", guardian_strategy=ESCALATE) as system:
            system.spawn(FailsInInit, errors, name="broken")
            await trio.sleep_forever()

    with pytest.raises(UnhandledFailure) as excinfo:
        await run()
    [(ref, error)] = excinfo.value.failures
    assert ref.path == "/user/broken"
    assert isinstance(error, ActorInitializationError)
    assert error.__cause__ is errors[0]
    assert excinfo.value.__cause__ is error


async def test_initialization_failure_is_retried_when_the_decider_says_restart(
    autojump_clock: MockClock,
) -> None:
    """By default a failed start stops the actor (tests/test_errors_travel.py); with a
    decider that restarts on ActorInitializationError, a constructor that fails once is
    simply called again: the restarted actor runs."""
    attempts: list[int] = []

    class FailsOnce(Actor):
        def __init__(self) -> None:
            attempts.append(len(attempts))
            if len(attempts) == 1:
                raise Boom("first attempt")

        def receive(self, message: Any) -> Any:
            return ("handled", message, len(attempts))

    retry = supervision.OneForOne(
        decider=supervision.decider_from({ActorInitializationError: supervision.Directive.RESTART})
    )
    async with open_system("init-retried", guardian_strategy=retry) as system:
        events: list[Any] = []
        await event_collector(system, events, ActorFailed, ActorRestarted)
        probe = TestProbe(system)
        ref = probe.watch(system.spawn(FailsOnce, name="flaky"))
        assert await ref.ask("hello") == ("handled", "hello", 2)
        await trio.testing.wait_all_tasks_blocked()
        [failed, restarted] = events
        assert failed.ref == restarted.ref == ref
        assert isinstance(failed.error, ActorInitializationError)
        assert restarted.error is failed.error
        assert str(failed.error.__cause__) == "first attempt"
        await probe.expect_no_message()  # no Terminated: it never stopped


@pytest.mark.parametrize("where", ["__init__", "pre_start"])
async def test_initialization_error_keeps_the_original_exception_as_cause(
    autojump_clock: MockClock, where: str
) -> None:
    log: list[Any] = []
    errors: list[BaseException] = []
    async with open_system("init-cause", guardian_strategy=STOP) as system:
        probe = TestProbe(system)
        if where == "__init__":
            ref = system.spawn(FailsInInit, errors)
        else:
            ref = system.spawn(FailsInPreStart, log, errors)
        probe.watch(ref)
        terminated = await probe.expect_terminated(ref)
    error = terminated.error
    assert isinstance(error, ActorInitializationError)
    # The original error (and its traceback) must stay reachable.
    assert error.__cause__ is errors[0]


# -- failures while stopping ------------------------------------------------------------------


def stop_failures(caplog: pytest.LogCaptureFixture) -> list[tuple[str, BaseException | None]]:
    """The failures reported (not raised) while actors were stopping: (message, error)."""
    return [
        (r.getMessage(), None if r.exc_info is None else r.exc_info[1])
        for r in caplog.records
        if r.name == "actors.supervision" and r.levelno == logging.ERROR
    ]


async def test_failure_in_post_stop_is_reported_to_watchers(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[BaseException] = []
    events: list[Any] = []
    async with open_system("post-stop") as system:
        await event_collector(system, events, ActorFailed, ActorStopped, ActorRestarted)
        probe = TestProbe(system)
        ref = system.spawn(FailsInPostStop, errors)
        probe.watch(ref)
        await trio.testing.wait_all_tasks_blocked()  # started: post_stop will run
        await system.graceful_stop(ref)
        terminated = await probe.expect_terminated(ref)
        assert terminated.error is errors[0]
        await trio.testing.wait_all_tasks_blocked()
        # Reported, never restarted: the actor was stopping anyway.
        assert events == [ActorFailed(ref, errors[0]), ActorStopped(ref, errors[0])]
    assert stop_failures(caplog) == [(f"{ref.path} failed while stopping", errors[0])]


async def test_unwatched_failure_in_post_stop_is_reported_not_raised(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[BaseException] = []
    events: list[Any] = []
    refs: list[ActorRef] = []
    async with open_system("post-stop-unwatched") as system:
        await event_collector(system, events, ActorFailed, ActorStopped)
        ref = system.spawn(FailsInPostStop, errors)
        refs.append(ref)
        await trio.testing.wait_all_tasks_blocked()  # started: post_stop will run
        await system.graceful_stop(ref)
        await trio.testing.wait_all_tasks_blocked()
        assert events == [ActorFailed(ref, errors[0]), ActorStopped(ref, errors[0])]
        body_went_on = True
    # Nobody watched it, and still nothing is raised: the failure is in the log.
    assert body_went_on
    assert stop_failures(caplog) == [(f"{refs[0].path} failed while stopping", errors[0])]


async def test_failure_during_shutdown_is_reported_and_does_not_interrupt_it(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    log: list[Any] = []
    errors: list[BaseException] = []
    body_done: list[bool] = []

    async with open_system("shutdown-failure") as system:
        system.spawn(Stops, log, name="older")
        system.spawn(FailsInPostStop, errors, name="fails")
        system.spawn(Stops, log, name="newer")
        await trio.testing.wait_all_tasks_blocked()
        body_done.append(True)

    assert body_done == [True]
    assert len(errors) == 1
    assert stop_failures(caplog) == [("/user/fails failed while stopping", errors[0])]
    # The failure did not interrupt the ordered shutdown of the other actors.
    assert log == [("post_stop", "/user/newer"), ("post_stop", "/user/older")]


async def test_failure_during_shutdown_is_not_lost_when_the_watcher_is_stopping(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The parent watches its child, but by the time the child fails (in post_stop during
    shutdown) the parent is itself stopping and will never process the ``Terminated``: the
    failure must still surface (in the log) instead of vanishing into dead letters."""
    errors: list[BaseException] = []

    class Parent(Actor):
        def pre_start(self) -> None:
            self.context.watch(self.context.spawn(FailsInPostStop, errors, name="child"))

        def receive(self, message: Any) -> None:  # pragma: no cover - nothing is sent
            pass

    async with open_system("shutdown-watched") as system:
        system.spawn(Parent, name="parent")
        await trio.testing.wait_all_tasks_blocked()

    assert len(errors) == 1
    assert stop_failures(caplog) == [("/user/parent/child failed while stopping", errors[0])]


async def test_body_exception_propagates_with_a_note_about_unhandled_failures(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []
    errors: list[BaseException] = []

    class BodyError(Exception):
        pass

    async def run() -> None:
        async with open_system("body-error", guardian_strategy=ESCALATE) as system:
            ref = system.spawn(Failing, log, errors, name="failing")
            ref.tell("bad")
            with trio.CancelScope(shield=True):
                await trio.testing.wait_all_tasks_blocked()
            assert errors  # the actor has failed, the body was not interrupted
            raise BodyError("from the body")

    with pytest.raises(BodyError, match="from the body") as excinfo:
        await run()
    notes = excinfo.value.__notes__
    assert len(notes) == 1
    assert "1 unhandled actor failure(s)" in notes[0]
    assert "/user/failing" in notes[0]
    assert repr(errors[0]) in notes[0]


async def test_body_exception_is_not_annotated_with_a_failure_during_shutdown(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[BaseException] = []

    async def run() -> None:
        async with open_system("body-error-2") as system:
            system.spawn(FailsInPostStop, errors, name="fails")
            await trio.testing.wait_all_tasks_blocked()
            raise KeyError("body")

    with pytest.raises(KeyError) as excinfo:
        await run()
    assert len(errors) == 1
    # Only reported: it is not an unhandled failure, so the body's error stays as it was.
    assert not hasattr(excinfo.value, "__notes__")
    assert stop_failures(caplog) == [("/user/fails failed while stopping", errors[0])]


@stop_on_failure
async def test_children_of_a_failed_actor_are_stopped(
    actor_system: ActorSystem, probe: TestProbe, autojump_clock: MockClock
) -> None:
    log: list[Any] = []
    errors: list[BaseException] = []

    class Parent(Failing):
        def pre_start(self) -> None:
            self.context.spawn(Stops, log, name="c1")
            self.context.spawn(Stops, log, name="c2")

    parent = actor_system.spawn(Parent, log, errors, name="parent")
    await trio.testing.wait_all_tasks_blocked()
    c1 = actor_system.lookup("/user/parent/c1")
    c2 = actor_system.lookup("/user/parent/c2")
    for ref in (parent, c1, c2):
        probe.watch(ref)
    parent.tell("bad")
    assert await probe.expect_message(Terminated) == Terminated(c2, None)
    assert await probe.expect_message(Terminated) == Terminated(c1, None)
    assert await probe.expect_message(Terminated) == Terminated(parent, errors[0])
    assert log == [
        ("post_stop", "/user/parent/c2"),
        ("post_stop", "/user/parent/c1"),
        ("post_stop", "/user/parent"),
    ]
    assert actor_system.find("/user/parent/c1") is None


# -- BaseException and cancellation -----------------------------------------------------------


async def test_base_exception_from_a_handler_is_not_swallowed(autojump_clock: MockClock) -> None:
    log: list[Any] = []
    reached: list[str] = []

    class Interrupts(Actor):
        async def receive(self, message: Any) -> None:
            await trio.sleep(1)
            raise Fatal("stop everything")

        def post_stop(self) -> None:
            log.append(("post_stop", self.context.ref.path))

    async def run() -> None:
        async with open_system("fatal") as system:
            system.spawn(Stops, log, name="bystander")
            ref = system.spawn(Interrupts, name="fatal")
            ref.tell("go")
            await trio.sleep_forever()
        reached.append("after open_system")  # pragma: no cover

    with pytest.RaisesGroup(Fatal, allow_unwrapped=True, flatten_subgroups=True):
        await run()
    assert reached == []
    # Every actor still ran its post_stop on the way out.
    assert sorted(log) == [("post_stop", "/user/bystander"), ("post_stop", "/user/fatal")]


async def test_cancellation_around_open_system_is_never_swallowed(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []
    reached: list[str] = []

    class Stuck(Stops):
        async def receive(self, message: Any) -> None:
            await trio.sleep_forever()

    t0 = trio.current_time()
    with trio.move_on_after(5) as scope:
        async with open_system("cancelled") as system:
            system.spawn(Stops, log, name="idle")
            stuck = system.spawn(Stuck, log, name="stuck")
            stuck.tell("hang")
            await trio.sleep_forever()
        reached.append("after open_system")  # pragma: no cover
    assert scope.cancelled_caught
    assert reached == []
    # The cancel reaches the body only; the ordered shutdown follows, and the stuck
    # handler gets its stop_timeout (5 s) like on a normal exit.
    assert trio.current_time() == t0 + 5 + 5
    assert sorted(log) == [("post_stop", "/user/idle"), ("post_stop", "/user/stuck")]
    assert system.find("/user/idle") is None
    assert system.find("/user/stuck") is None


async def test_cancellation_while_asking_is_never_swallowed(autojump_clock: MockClock) -> None:
    log: list[Any] = []

    class Stuck(Stops):
        async def receive(self, message: Any) -> None:
            await trio.sleep_forever()

    with trio.move_on_after(2) as scope:
        async with open_system("cancel-ask", ask_timeout=100) as system:
            stuck = system.spawn(Stuck, log, name="stuck")
            await stuck.ask("question")
    assert scope.cancelled_caught
    assert trio.current_time() == 2 + 5  # the stuck handler's stop_timeout
    assert log == [("post_stop", "/user/stuck")]


async def test_cancellation_bounds_a_hanging_post_stop_by_stop_timeout(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []

    class Hangs(Actor):
        async def post_stop(self) -> None:
            try:
                await trio.sleep_forever()
            finally:
                log.append(("post_stop-cancelled", trio.current_time()))

    with trio.move_on_after(1) as scope:
        async with open_system("cancel-hang", stop_timeout=3) as system:
            system.spawn(Hangs)
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert trio.current_time() == 4
    assert log == [("post_stop-cancelled", 4)]


async def test_an_unhandled_failure_is_not_swallowed_by_a_cancel_of_the_surrounding_scope(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []
    errors: list[BaseException] = []

    async def cancelled_system() -> None:
        with trio.move_on_after(1):
            async with open_system("cancel-fail", guardian_strategy=ESCALATE) as system:
                system.spawn(Failing, log, errors, name="failing").tell("bad")
                # The failure (at 0 s) and the outer cancel (at 1 s) both happen before
                # the body sees either.
                with trio.CancelScope(shield=True):
                    await trio.sleep(2)
                await trio.sleep_forever()

    # The cancel scope would absorb the Cancelled, and with it the failure: so the
    # failure is raised instead, and leaves the scope.
    with pytest.raises(UnhandledFailure) as caught:
        await cancelled_system()
    assert trio.current_time() == 2
    assert len(errors) == 1
    [(ref, error)] = caught.value.failures
    assert (ref.path, error) == ("/user/failing", errors[0])
    assert caught.value.__cause__ is errors[0]


async def test_a_failure_during_a_cancelled_shutdown_is_reported_and_the_cancel_goes_on(
    autojump_clock: MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    errors: list[BaseException] = []

    with trio.move_on_after(1) as scope:
        async with open_system("cancel-fail-2") as system:
            system.spawn(FailsInPostStop, errors, name="fails")
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert len(errors) == 1
    assert stop_failures(caplog) == [("/user/fails failed while stopping", errors[0])]
