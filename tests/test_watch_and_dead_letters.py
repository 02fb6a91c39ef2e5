"""Death watch, dead letters and the event bus (including lifecycle events)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing
from trio.testing import MockClock

import supervision
from actors import (
    Actor,
    ActorFailed,
    ActorRef,
    ActorStarted,
    ActorStopped,
    ActorSystem,
    DeadLetter,
    DeadLetterReason,
    Mailbox,
    MailboxFull,
    MailboxOverflow,
    Overflow,
    Terminated,
    UnhandledMessage,
    open_system,
)
from actors.testing import TestProbe

# Top-level actors that fail stop, and their watchers get ``Terminated(error=error)``
# (by default ``/user`` would restart them in place, and watchers would see nothing).
STOP = supervision.OneForOne(
    decider=supervision.decider_from({Exception: supervision.Directive.STOP})
)
stop_on_failure = pytest.mark.actor_system(guardian_strategy=STOP)

# -- helpers ----------------------------------------------------------------------------------


class Boom(Exception):
    pass


class Idle(Actor):
    """Handles "ping" (replies "pong"), "fail" (raises Boom), declares the rest unhandled."""

    def receive(self, message: Any) -> Any:
        if message == "ping":
            return "pong"
        if message == "fail":
            raise Boom("fail")
        return self.unhandled(message)


class Watcher(Actor):
    """Watches/unwatches on command and forwards everything else to ``report``."""

    def __init__(self, report: ActorRef) -> None:
        self.report = report

    def receive(self, message: Any) -> Any:
        match message:
            case ("watch", ref):
                self.context.watch(ref)
                return "watching"
            case ("unwatch", ref):
                self.context.unwatch(ref)
                return "unwatched"
            case _:
                self.report.tell(message)
                return None


class Chatty(Actor):
    """On ("go", n, target): tells target 0..n-1, then stops (or fails) itself; its
    post_stop sends one last message."""

    def __init__(self, target: ActorRef) -> None:
        self.target = target

    def receive(self, message: Any) -> None:
        _, n, how = message
        for i in range(n):
            self.target.tell(i)
        if how == "fail":
            raise Boom("chatty")
        self.context.stop()

    def post_stop(self) -> None:
        self.target.tell("post_stop")


def same_error(actual: BaseException | None, expected: BaseException) -> bool:
    """Equal errors (the same object, or a copy made by ``roundtrip_messages``)."""
    return type(actual) is type(expected) and actual.args == expected.args


async def started_probe(system: ActorSystem, name: str | None = None) -> TestProbe:
    """A probe whose own start (and ActorStarted) is over before it subscribes to anything."""
    probe = TestProbe(system, name=name)
    await trio.testing.wait_all_tasks_blocked()
    return probe


async def dead_letter_probe(system: ActorSystem) -> TestProbe:
    probe = await started_probe(system, "dead-letters")
    system.events.subscribe(probe.ref, DeadLetter)
    return probe


# -- death watch ------------------------------------------------------------------------------


async def test_terminated_exactly_once_even_if_watched_twice(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    target = actor_system.spawn(Idle)
    assert probe.watch(target) == target
    probe.watch(target)
    watcher = actor_system.spawn(Watcher, probe.ref)
    assert await watcher.ask(("watch", target)) == "watching"
    assert await watcher.ask(("watch", target)) == "watching"
    await actor_system.graceful_stop(target)
    # One Terminated for the probe's own watch, one forwarded by the watcher actor.
    first = await probe.expect_message(Terminated)
    second = await probe.expect_message(Terminated)
    assert first == second == Terminated(target, None, True)
    await probe.expect_no_message(within=10)


async def test_watching_a_dead_actor_gives_terminated_without_confirmed_existence(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    target = actor_system.spawn(Idle)
    await actor_system.graceful_stop(target)
    probe.watch(target)
    terminated = await probe.expect_terminated(target)
    assert terminated == Terminated(target, None, existence_confirmed=False)
    assert not terminated.failed
    await probe.expect_no_message()


@stop_on_failure
async def test_watching_a_dead_failed_actor_names_its_error(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    target = actor_system.spawn(Idle)
    probe.watch(target)
    target.tell("fail")
    first = await probe.expect_terminated(target)
    assert isinstance(first.error, Boom)
    watcher = actor_system.spawn(Watcher, probe.ref)
    await watcher.ask(("watch", target))
    late = await probe.expect_terminated(target)
    assert late.existence_confirmed is False
    # (A copy: the probe's system round-trips messages.)
    assert isinstance(late.error, Boom)
    assert late.error.args == ("fail",)


async def test_unwatch_prevents_delivery(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    target = actor_system.spawn(Idle)
    watcher = actor_system.spawn(Watcher, probe.ref)
    await watcher.ask(("watch", target))
    assert await watcher.ask(("unwatch", target)) == "unwatched"
    await actor_system.graceful_stop(target)
    await probe.expect_no_message(within=10)

    # Watching again after an unwatch gives exactly one Terminated.
    other = actor_system.spawn(Idle)
    await watcher.ask(("watch", other))
    await watcher.ask(("unwatch", other))
    await watcher.ask(("watch", other))
    await actor_system.graceful_stop(other)
    await probe.expect_terminated(other)
    await probe.expect_no_message(within=10)


async def test_unwatch_withdraws_a_terminated_that_is_already_queued(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    """As in Akka: after ``unwatch`` no ``Terminated`` for that ref is received, even one
    that was already in the mailbox when ``unwatch`` was called."""

    class BusyWatcher(Actor):
        def __init__(self, report: ActorRef) -> None:
            self.report = report

        async def receive(self, message: Any) -> None:
            match message:
                case ("watch-then-busy", ref):
                    self.context.watch(ref)
                    self.report.tell("watching")
                    await trio.sleep(5)  # the target stops meanwhile: Terminated is queued
                    self.context.unwatch(ref)
                    self.report.tell("unwatched")
                case _:
                    self.report.tell(message)

    target = actor_system.spawn(Idle)
    watcher = actor_system.spawn(BusyWatcher, probe.ref)
    watcher.tell(("watch-then-busy", target))
    await probe.expect_message("watching")
    await actor_system.graceful_stop(target)
    await probe.expect_message("unwatched", timeout=10)
    watcher.tell("marker")
    await probe.expect_message("marker")
    await probe.expect_no_message(within=10)


@stop_on_failure
@pytest.mark.parametrize("how", ["stop", "fail"])
async def test_terminated_arrives_after_the_messages_the_dead_actor_sent(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe, how: str
) -> None:
    target = actor_system.spawn(Chatty, probe.ref)
    probe.watch(target)
    target.tell(("go", 50, how))
    await probe.expect_messages(*range(50))
    await probe.expect_message("post_stop")
    terminated = await probe.expect_terminated(target)
    assert terminated.failed == (how == "fail")
    await probe.expect_no_message()


@stop_on_failure
async def test_terminated_reason_is_none_for_stop_and_the_error_for_failure(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    errors: list[BaseException] = []

    class Fails(Actor):
        def receive(self, message: Any) -> None:
            error = Boom(message)
            errors.append(error)
            raise error

    stopped = actor_system.spawn(Idle)
    failed = actor_system.spawn(Fails)
    probe.watch(stopped)
    probe.watch(failed)
    actor_system.stop(stopped)
    normal = await probe.expect_terminated(stopped)
    assert normal.error is None
    assert not normal.failed
    failed.tell("why")
    failure = await probe.expect_terminated(failed)
    assert failure.failed
    assert same_error(failure.error, errors[0])
    assert failure.existence_confirmed


async def test_a_watcher_that_dies_first_is_removed(autojump_clock: MockClock) -> None:
    async with open_system("watcher-dies", guardian_strategy=STOP) as system:
        report = await started_probe(system)
        dead = await dead_letter_probe(system)
        target = system.spawn(Idle)
        watcher = system.spawn(Watcher, report.ref)
        await watcher.ask(("watch", target))
        await system.graceful_stop(watcher)
        live = await started_probe(system, "live")
        live.watch(target)
        target.tell("fail")
        terminated = await live.expect_terminated(target)
        assert isinstance(terminated.error, Boom)
        # Only the failing message is a dead letter: no Terminated was queued for (or
        # dead-lettered at) the watcher that had stopped, and it forwarded nothing.
        letter = await dead.expect_message(DeadLetter)
        assert (letter.message, letter.recipient) == ("fail", target)
        assert letter.reason is DeadLetterReason.FAILED
        await dead.expect_no_message()
        assert report.pending == 0
        assert system.dead_letter_count == 1


async def test_a_live_watcher_sees_the_failure_of_a_stopped_actor(
    autojump_clock: MockClock,
) -> None:
    async with open_system("watcher-lives", guardian_strategy=STOP) as system:
        report = await started_probe(system)
        target = system.spawn(Idle)
        watcher = system.spawn(Watcher, report.ref)
        await watcher.ask(("watch", target))
        target.tell("fail")
        terminated = await report.expect_terminated(target)
        assert isinstance(terminated.error, Boom)
    # The STOP strategy handled it: leaving the system raised nothing.


async def test_a_watcher_sees_nothing_while_the_watched_actor_is_restarted(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    """Under the default strategy a failure restarts the actor in place: no
    ``Terminated``; it comes only when the actor really stops."""
    target = actor_system.spawn(Idle)
    watcher = actor_system.spawn(Watcher, probe.ref)
    await watcher.ask(("watch", target))
    target.tell("fail")
    assert await target.ask("ping") == "pong"  # the restarted instance, same ref
    await probe.expect_no_message()
    await actor_system.graceful_stop(target)
    assert await probe.expect_terminated(target) == Terminated(target, None, True)
    await probe.expect_no_message()


async def test_watching_self_is_a_no_op(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    class WatchesSelf(Actor):
        def receive(self, message: Any) -> Any:
            return self.context.watch(self.context.ref)

    ref = actor_system.spawn(WatchesSelf)
    assert await ref.ask("x") == ref
    probe.watch(ref)
    await actor_system.graceful_stop(ref)
    await probe.expect_terminated(ref)
    await probe.expect_no_message()


# -- dead letters -----------------------------------------------------------------------------


async def test_dead_letter_for_tell_to_a_stopped_actor(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    dead = await dead_letter_probe(actor_system)
    target = actor_system.spawn(Idle)
    await actor_system.graceful_stop(target)
    target.tell("late", sender=probe.ref)
    assert await dead.expect_message(DeadLetter) == DeadLetter(
        "late", probe.ref, target, DeadLetterReason.STOPPED
    )
    await dead.expect_no_message()


async def test_dead_letter_for_unhandled_messages(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    class Default(Actor):
        pass  # the default receive declares everything unhandled

    dead = await dead_letter_probe(actor_system)
    default = actor_system.spawn(Default)
    explicit = actor_system.spawn(Idle)
    default.tell(("what", 1), sender=probe.ref)
    assert await dead.expect_message(DeadLetter) == DeadLetter(
        ("what", 1), probe.ref, default, DeadLetterReason.UNHANDLED
    )
    explicit.tell("huh")
    assert await dead.expect_message(DeadLetter) == DeadLetter(
        "huh", None, explicit, DeadLetterReason.UNHANDLED
    )
    await dead.expect_no_message()
    # Unhandled is not a failure: the actor keeps running.
    assert await explicit.ask("ping") == "pong"


async def test_unhandled_in_an_ask_raises_unhandled_message_in_the_caller(
    autojump_clock: MockClock, actor_system: ActorSystem
) -> None:
    class Default(Actor):
        pass

    dead = await dead_letter_probe(actor_system)
    default = actor_system.spawn(Default)
    explicit = actor_system.spawn(Idle)
    with pytest.raises(UnhandledMessage) as excinfo:
        await default.ask("what?")
    assert excinfo.value.path == default.path
    with pytest.raises(UnhandledMessage):
        await explicit.ask("unknown")
    assert await explicit.ask("ping") == "pong"
    letters = [await dead.expect_message(DeadLetter) for _ in range(2)]
    assert [(d.message, d.recipient, d.reason) for d in letters] == [
        ("what?", default, DeadLetterReason.UNHANDLED),
        ("unknown", explicit, DeadLetterReason.UNHANDLED),
    ]


class Gate(Actor):
    """Blocks in pre_start until ``gate`` is set, then forwards messages to ``report``."""

    def __init__(self, gate: trio.Event, report: ActorRef) -> None:
        self.gate = gate
        self.report = report

    async def pre_start(self) -> None:
        await self.gate.wait()

    def receive(self, message: Any) -> None:
        self.report.tell(message)


@pytest.mark.parametrize(
    ("overflow", "dropped", "reason", "kept"),
    [
        (Overflow.DROP_NEWEST, [3, 4], DeadLetterReason.DROPPED_NEWEST, [1, 2]),
        (Overflow.DROP_OLDEST, [1, 2], DeadLetterReason.DROPPED_OLDEST, [3, 4]),
    ],
)
async def test_dead_letter_when_a_bounded_mailbox_drops(
    autojump_clock: MockClock,
    actor_system: ActorSystem,
    probe: TestProbe,
    overflow: Overflow,
    dropped: list[int],
    reason: DeadLetterReason,
    kept: list[int],
) -> None:
    dead = await dead_letter_probe(actor_system)
    gate = trio.Event()
    ref = actor_system.spawn(Gate, gate, probe.ref, mailbox=Mailbox(2, overflow))
    before = actor_system.dead_letter_count
    for i in (1, 2, 3, 4):
        ref.tell(i, sender=probe.ref)
    for message in dropped:
        assert await dead.expect_message(DeadLetter) == DeadLetter(message, probe.ref, ref, reason)
    assert actor_system.dead_letter_count == before + 2
    gate.set()
    await probe.expect_messages(*kept)
    await probe.expect_no_message()
    await dead.expect_no_message()


async def test_backpressure_mailbox_refuses_without_dead_letter(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    gate = trio.Event()
    ref = actor_system.spawn(Gate, gate, probe.ref, mailbox=Mailbox(1))
    before = actor_system.dead_letter_count
    ref.tell("a")
    with pytest.raises(MailboxFull):
        ref.tell("b")
    assert actor_system.dead_letter_count == before
    gate.set()
    await probe.expect_message("a")
    await probe.expect_no_message()


@stop_on_failure
async def test_fail_mailbox_dead_letters_the_refused_message_and_fails(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    dead = await dead_letter_probe(actor_system)
    gate = trio.Event()
    ref = actor_system.spawn(Gate, gate, probe.ref, mailbox=Mailbox(1, Overflow.FAIL))
    probe.watch(ref)
    ref.tell("kept")
    ref.tell("refused")
    assert await dead.expect_message(DeadLetter) == DeadLetter(
        "refused", None, ref, DeadLetterReason.MAILBOX_OVERFLOW
    )
    gate.set()
    terminated = await probe.expect_terminated(ref)
    assert isinstance(terminated.error, MailboxOverflow)


async def test_dead_letters_for_messages_queued_when_stopped(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    dead = await dead_letter_probe(actor_system)
    gate = trio.Event()
    ref = actor_system.spawn(Gate, gate, probe.ref)
    for i in range(3):
        ref.tell(i, sender=probe.ref)
    actor_system.stop(ref)
    gate.set()
    letters = [await dead.expect_message(DeadLetter) for _ in range(3)]
    assert letters == [DeadLetter(i, probe.ref, ref, DeadLetterReason.STOPPED) for i in range(3)]
    await dead.expect_no_message()
    await probe.expect_no_message()


async def test_dead_letter_count_is_exact(autojump_clock: MockClock) -> None:
    async with open_system("count") as system:
        assert system.dead_letter_count == 0
        idle = system.spawn(Idle)
        assert await idle.ask("ping") == "pong"
        assert system.dead_letter_count == 0
        idle.tell("unknown")  # unhandled: 1
        await trio.testing.wait_all_tasks_blocked()
        assert system.dead_letter_count == 1
        with pytest.raises(UnhandledMessage):
            await idle.ask("unknown")  # unhandled ask: 2
        assert system.dead_letter_count == 2

        gate = trio.Event()
        sink = system.spawn(Idle)
        gated = system.spawn(Gate, gate, sink, mailbox=Mailbox(1, Overflow.DROP_NEWEST))
        gated.tell("a")
        gated.tell("b")  # dropped: 3
        assert system.dead_letter_count == 3
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert system.dead_letter_count == 4  # "a" is forwarded to sink, unhandled there: 4

        await system.graceful_stop(idle)
        assert system.dead_letter_count == 4  # a clean stop loses nothing
        for i in range(5):
            idle.tell(i)  # stopped: 5..9
        assert system.dead_letter_count == 9
        await trio.testing.wait_all_tasks_blocked()
        assert system.dead_letter_count == 9
    assert system.dead_letter_count == 9  # shutting down an idle system loses nothing


# -- event bus --------------------------------------------------------------------------------


@attrs.frozen
class Event:
    n: int


@attrs.frozen
class SubEvent(Event):
    pass


@attrs.frozen
class Other:
    n: int


async def test_subscription_by_type_receives_subclasses(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    await trio.testing.wait_all_tasks_blocked()
    bus = actor_system.events
    assert bus.subscribe(probe.ref, Event) is True
    assert bus.subscribe(probe.ref, Event) is False
    assert bus.subscribers(Event) == [probe.ref]
    assert bus.publish("events", Event(1)) == 1
    assert bus.publish("events", SubEvent(2)) == 1
    assert bus.publish("events", Other(3)) == 0
    await probe.expect_message(Event(1))
    assert await probe.expect_message(SubEvent) == SubEvent(2)
    await probe.expect_no_message()

    # Subscribed to a class and its subclass: the event is delivered once.
    assert bus.subscribe(probe.ref, SubEvent) is True
    assert bus.publish("events", SubEvent(4)) == 1
    await probe.expect_message(SubEvent(4))
    await probe.expect_no_message()

    with pytest.raises(TypeError):
        bus.subscribe(probe.ref, Event(5))  # type: ignore[arg-type]


async def test_unsubscribe(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    await trio.testing.wait_all_tasks_blocked()
    bus = actor_system.events
    bus.subscribe(probe.ref, Event)
    bus.subscribe(probe.ref, Other)
    bus.unsubscribe(probe.ref, Event)
    assert bus.subscribers(Event) == []
    assert bus.publish("events", Event(1)) == 0
    assert bus.publish("events", Other(2)) == 1
    await probe.expect_message(Other(2))
    bus.unsubscribe(probe.ref)
    assert bus.publish("events", Other(3)) == 0
    assert bus.subscribers(Other) == []
    bus.unsubscribe(probe.ref)  # no-op
    await probe.expect_no_message()


async def test_subscription_ends_when_subscriber_stops(
    autojump_clock: MockClock, actor_system: ActorSystem
) -> None:
    bus = actor_system.events
    subscriber = actor_system.spawn(Idle)
    await trio.testing.wait_all_tasks_blocked()
    bus.subscribe(subscriber, Event)
    bus.subscribe(subscriber, Other)
    await actor_system.graceful_stop(subscriber)
    assert bus.subscribers(Event) == []
    assert bus.subscribers(Other) == []
    before = actor_system.dead_letter_count
    assert bus.publish("events", Event(1)) == 0
    assert actor_system.dead_letter_count == before


async def test_each_subscriber_receives_events_in_publish_order(
    autojump_clock: MockClock, actor_system: ActorSystem
) -> None:
    first = await started_probe(actor_system)
    second = await started_probe(actor_system)
    actor_system.events.subscribe(first.ref, Event)
    actor_system.events.subscribe(second.ref, object)
    events = [SubEvent(i) if i % 3 else Event(i) for i in range(60)]
    for event in events:
        actor_system.events.publish("events", event)
    await first.expect_messages(*events)
    await second.expect_messages(*events)
    await first.expect_no_message()
    await second.expect_no_message()


@stop_on_failure
async def test_lifecycle_events_are_published(
    autojump_clock: MockClock, actor_system: ActorSystem
) -> None:
    events = await started_probe(actor_system, "events")
    watcher = await started_probe(actor_system, "watcher")
    for event_type in (ActorStarted, ActorStopped, ActorFailed):
        actor_system.events.subscribe(events.ref, event_type)

    class SlowStart(Idle):
        async def pre_start(self) -> None:
            await trio.sleep(1)

    normal = actor_system.spawn(SlowStart)
    assert events.pending == 0  # ActorStarted only once pre_start has returned
    await events.expect_message(ActorStarted(normal))
    await actor_system.graceful_stop(normal)
    await events.expect_message(ActorStopped(normal, None))

    failing = actor_system.spawn(Idle)
    watcher.watch(failing)
    await events.expect_message(ActorStarted(failing))
    failing.tell("fail")
    failed = await events.expect_message(ActorFailed)
    assert failed.ref == failing
    assert same_error(failed.error, Boom("fail"))
    stopped = await events.expect_message(ActorStopped)
    assert stopped.ref == failing
    assert same_error(stopped.error, Boom("fail"))
    terminated = await watcher.expect_terminated(failing)
    assert same_error(terminated.error, Boom("fail"))
    await events.expect_no_message()
