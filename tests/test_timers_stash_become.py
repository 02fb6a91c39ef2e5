"""Timers, receive timeout, become/unbecome and stash, all on virtual time."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

import actors
import supervision
from actors import (
    Actor,
    ActorDead,
    ActorRef,
    ActorSystem,
    DeadLetter,
    DeadLetterReason,
    ReceiveTimeout,
    StashOverflow,
    UnhandledMessage,
)
from actors.testing import TestProbe


class Scripted(Actor):
    """Runs ``script(self)`` in pre_start; reports every message with its time offset
    (from the spawn) to ``report``. Messages that are callables are run as commands
    with the actor as argument (their return value is the reply to an ask)."""

    def __init__(
        self,
        report: ActorRef,
        script: Callable[[Scripted], Any] | None = None,
        handle: Callable[[Scripted, Any], Any] | None = None,
    ) -> None:
        self.report = report
        self.script = script
        self.handle = handle
        self.t0 = trio.current_time()

    def now(self) -> float:
        return trio.current_time() - self.t0

    def pre_start(self) -> None:
        if self.script is not None:
            self.script(self)

    async def receive(self, message: Any) -> Any:
        if callable(message):
            result = message(self)
            if inspect.isawaitable(result):
                result = await result
            return result
        self.report.tell((message, self.now()))
        if self.handle is not None:
            result = self.handle(self, message)
            if result is not None:
                await result
        return None


# -- timers -----------------------------------------------------------------------------------


async def test_single_timer_fires_once_at_the_right_time(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    def script(actor: Scripted) -> None:
        actor.context.timers.start_single("k", "tick", 1.5)

    ref = actor_system.spawn(Scripted, probe.ref, script)
    assert await probe.expect_message(tuple) == ("tick", 1.5)
    await probe.expect_no_message(within=100)
    assert await ref.ask(lambda a: (a.context.timers.is_active("k"), len(a.context.timers))) == (
        False,
        0,
    )


async def test_single_timer_with_zero_delay(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    def script(actor: Scripted) -> None:
        actor.context.timers.start_single("now", "now", 0)

    actor_system.spawn(Scripted, probe.ref, script)
    await probe.expect_message(("now", 0))
    await probe.expect_no_message(within=10)


async def test_periodic_timer_runs_at_a_fixed_rate(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    async def slowish(actor: Scripted, message: Any) -> None:
        await trio.sleep(0.25)  # handling time must not shift later ticks (fixed rate)

    def script(actor: Scripted) -> None:
        actor.context.timers.start_at_fixed_rate("p", "tick", 1, initial_delay=0.5)

    ref = actor_system.spawn(Scripted, probe.ref, script, slowish)
    times = [(await probe.expect_message(tuple))[1] for _ in range(5)]
    assert times == [0.5, 1.5, 2.5, 3.5, 4.5]
    assert await ref.ask(lambda a: a.context.timers.is_active("p")) is True


async def test_periodic_timer_initial_delay_defaults_to_interval(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    def script(actor: Scripted) -> None:
        actor.context.timers.start_at_fixed_rate("p", "tick", 2)

    actor_system.spawn(Scripted, probe.ref, script)
    times = [(await probe.expect_message(tuple))[1] for _ in range(3)]
    assert times == [2, 4, 6]


async def test_periodic_ticks_do_not_pile_up_while_one_is_queued(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    async def slow(actor: Scripted, message: Any) -> None:
        await trio.sleep(2.25)

    def script(actor: Scripted) -> None:
        actor.context.timers.start_at_fixed_rate("p", "tick", 1)

    actor_system.spawn(Scripted, probe.ref, script, slow)
    times = [(await probe.expect_message(tuple, timeout=10))[1] for _ in range(4)]
    # Ticks due at 1..7 s; while one waits in the mailbox the next ones are skipped.
    assert times == [1, 3.25, 5.5, 7.75]


async def test_cancel_prevents_delivery_even_of_a_queued_tick(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    def script(actor: Scripted) -> None:
        actor.context.timers.start_single("single", "single", 1)
        actor.context.timers.start_at_fixed_rate("periodic", "periodic", 1)

    ref = actor_system.spawn(Scripted, probe.ref, script)

    async def busy_then_cancel(actor: Scripted) -> tuple[bool, ...]:
        await trio.sleep(2)  # both timers put a tick in the mailbox at 1 s
        timers = actor.context.timers
        result = (timers.cancel("single"), timers.cancel("periodic"), timers.cancel("single"))
        actor.report.tell(("cancelled", actor.now()))
        return result

    async with trio.open_nursery() as nursery:

        async def ask() -> None:
            assert await ref.ask(busy_then_cancel) == (True, True, False)

        nursery.start_soon(ask)
    await probe.expect_message(("cancelled", 2))
    await probe.expect_no_message(within=100)
    assert await ref.ask(lambda a: len(a.context.timers)) == 0


async def test_restarting_a_key_replaces_the_timer(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    def script(actor: Scripted) -> None:
        actor.context.timers.start_single("k", "old", 1)
        actor.context.timers.start_single("k", "new", 2)

    ref = actor_system.spawn(Scripted, probe.ref, script)
    await probe.expect_message(("new", 2))
    await probe.expect_no_message(within=10)
    assert await ref.ask(lambda a: len(a.context.timers)) == 0


async def test_restarting_a_key_discards_the_queued_tick_of_the_old_timer(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    def script(actor: Scripted) -> None:
        actor.context.timers.start_single("k", "old", 1)

    ref = actor_system.spawn(Scripted, probe.ref, script)

    async def busy_then_restart(actor: Scripted) -> None:
        await trio.sleep(2)  # "old" is queued at 1 s
        actor.context.timers.start_at_fixed_rate("k", "new", 1)

    ref.tell(busy_then_restart)
    assert await probe.expect_message(tuple, timeout=10) == ("new", 3)
    assert await probe.expect_message(tuple, timeout=10) == ("new", 4)


async def test_all_timers_are_cancelled_when_the_actor_stops(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    seen_in_post_stop: list[int] = []

    class Ticking(Scripted):
        def post_stop(self) -> None:
            seen_in_post_stop.append(len(self.context.timers))

    def script(actor: Scripted) -> None:
        timers = actor.context.timers
        timers.start_at_fixed_rate("fast", "fast", 1)
        timers.start_single("later", "later", 50)
        timers.start_at_fixed_rate("slow", "slow", 7)

    ref = actor_system.spawn(Ticking, probe.ref, script)
    probe.watch(ref)
    await probe.expect_message(("fast", 1))
    await probe.expect_message(("fast", 2))
    before = actor_system.dead_letter_count
    actor_system.stop(ref)
    await probe.expect_terminated(ref)
    assert seen_in_post_stop == [0]
    await probe.expect_no_message(within=100)
    assert actor_system.dead_letter_count == before
    # No timer task is left behind: the run only has the system's own tasks.
    await trio.testing.wait_all_tasks_blocked()
    names = [task.name for task in _all_tasks()]
    assert not [name for name in names if name.startswith("timer")]


def _all_tasks() -> list[trio.lowlevel.Task]:
    tasks: list[trio.lowlevel.Task] = []
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        assert task is not None
        tasks.append(task)
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return tasks


async def test_invalid_timer_arguments_raise(actor_system: ActorSystem) -> None:
    def bad(actor: Scripted) -> list[str]:
        errors = []
        timers = actor.context.timers
        calls: tuple[Callable[[], object], ...] = (
            lambda: timers.start_single("k", "m", -1),
            lambda: timers.start_single("k", "m", float("nan")),
            lambda: timers.start_at_fixed_rate("k", "m", 0),
            lambda: timers.start_at_fixed_rate("k", "m", 1, initial_delay=-0.5),
        )
        for call in calls:
            try:
                call()
            except ValueError:
                errors.append("ValueError")
        errors.append(str(len(timers)))
        return errors

    ref = actor_system.spawn(Scripted, actor_system.user_guardian)
    assert await ref.ask(bad) == ["ValueError"] * 4 + ["0"]


# -- receive timeout --------------------------------------------------------------------------


async def test_receive_timeout_fires_after_idle_period_and_repeats(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    def script(actor: Scripted) -> None:
        actor.context.set_receive_timeout(2)

    actor_system.spawn(Scripted, probe.ref, script)
    messages = [await probe.expect_message(tuple, timeout=10) for _ in range(3)]
    assert messages == [(ReceiveTimeout(), 2), (ReceiveTimeout(), 4), (ReceiveTimeout(), 6)]


async def test_receive_timeout_is_reset_by_messages(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    def script(actor: Scripted) -> None:
        actor.context.set_receive_timeout(2, "idle")

    ref = actor_system.spawn(Scripted, probe.ref, script)
    await trio.sleep(1.5)
    ref.tell("hello")
    await probe.expect_message(("hello", 1.5))
    await trio.sleep(1.5)
    ref.tell("again")
    await probe.expect_message(("again", 3))
    await probe.expect_message(("idle", 5), timeout=10)
    await probe.expect_message(("idle", 7), timeout=10)


async def test_receive_timeout_none_turns_it_off(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    def script(actor: Scripted) -> None:
        actor.context.set_receive_timeout(1)

    def handle(actor: Scripted, message: Any) -> None:
        if isinstance(message, ReceiveTimeout):
            actor.context.set_receive_timeout(None)

    ref = actor_system.spawn(Scripted, probe.ref, script, handle)
    await probe.expect_message((ReceiveTimeout(), 1))
    await probe.expect_no_message(within=100)
    ref.tell("still alive")
    await probe.expect_message(tuple)
    await probe.expect_no_message(within=100)


async def test_receive_timeout_rejects_non_positive_values(actor_system: ActorSystem) -> None:
    def bad(actor: Scripted) -> int:
        count = 0
        for value in (0, -1):
            try:
                actor.context.set_receive_timeout(value)
            except ValueError:
                count += 1
        return count

    ref = actor_system.spawn(Scripted, actor_system.user_guardian)
    assert await ref.ask(bad) == 2


# -- become / unbecome ------------------------------------------------------------------------


class Moody(Actor):
    """Behaviours are named; the reply to any ask is (behaviour name, message)."""

    def receive(self, message: Any) -> Any:
        return self.act("receive", message)

    def happy(self, message: Any) -> Any:
        return self.act("happy", message)

    async def sad(self, message: Any) -> Any:
        await trio.sleep(1)
        return self.act("sad", message)

    def act(self, name: str, message: Any) -> Any:
        match message:
            case ("become", behaviour, discard_old):
                self.context.become(getattr(self, behaviour), discard_old=discard_old)
            case "unbecome":
                self.context.unbecome()
            case "unknown":
                self.unhandled(message)
        return name


async def test_become_with_discard_old_replaces_the_behaviour(
    autojump_clock: MockClock, actor_system: ActorSystem
) -> None:
    ref = actor_system.spawn(Moody)
    assert await ref.ask("x") == "receive"
    assert await ref.ask(("become", "happy", True)) == "receive"  # applies from next message
    assert await ref.ask("x") == "happy"
    assert await ref.ask(("become", "sad", True)) == "happy"
    assert await ref.ask("x") == "sad"
    # The stack is empty: unbecome returns to receive, and stays there.
    assert await ref.ask("unbecome") == "sad"
    assert await ref.ask("x") == "receive"
    assert await ref.ask("unbecome") == "receive"
    assert await ref.ask("x") == "receive"


async def test_become_without_discard_old_is_a_stack(
    autojump_clock: MockClock, actor_system: ActorSystem
) -> None:
    ref = actor_system.spawn(Moody)
    await ref.ask(("become", "happy", False))
    await ref.ask(("become", "sad", False))
    assert await ref.ask("x") == "sad"
    await ref.ask("unbecome")
    assert await ref.ask("x") == "happy"
    await ref.ask("unbecome")
    assert await ref.ask("x") == "receive"
    await ref.ask("unbecome")
    assert await ref.ask("x") == "receive"


async def test_become_with_discard_old_replaces_the_top_of_the_stack(
    autojump_clock: MockClock, actor_system: ActorSystem
) -> None:
    # As in Akka: push happy, then replace it with sad; unbecome pops back to receive.
    ref = actor_system.spawn(Moody)
    await ref.ask(("become", "happy", False))
    await ref.ask(("become", "sad", True))
    assert await ref.ask("x") == "sad"
    await ref.ask("unbecome")
    assert await ref.ask("x") == "receive"


async def test_async_behaviour_and_unhandled_in_a_behaviour(
    autojump_clock: MockClock, actor_system: ActorSystem
) -> None:
    ref = actor_system.spawn(Moody)
    await ref.ask(("become", "sad", True))
    t0 = trio.current_time()
    assert await ref.ask("x") == "sad"
    assert trio.current_time() == t0 + 1  # the async behaviour was awaited
    before = actor_system.dead_letter_count
    with pytest.raises(UnhandledMessage):
        await ref.ask("unknown")
    assert actor_system.dead_letter_count == before + 1


async def test_become_in_the_constructor_takes_effect(actor_system: ActorSystem) -> None:
    """``self.context`` works in ``__init__``, so ``become`` there must set the initial
    behaviour (as in Akka, where ``context.become`` in the constructor is common)."""

    class StartsHappy(Moody):
        def __init__(self) -> None:
            self.context.become(self.happy)

    ref = actor_system.spawn(StartsHappy)
    assert await ref.ask("x") == "happy"


async def test_become_in_the_constructor_keeps_the_stack_consistent(
    actor_system: ActorSystem,
) -> None:
    class PushesHappy(Moody):
        def __init__(self) -> None:
            self.context.become(self.happy, discard_old=False)

    ref = actor_system.spawn(PushesHappy)
    assert await ref.ask("x") == "happy"
    assert await ref.ask("unbecome") == "happy"
    # Popping the behaviour pushed in __init__ returns to receive, not to a dead handler.
    assert await ref.ask("x") == "receive"


async def test_become_in_pre_start_takes_effect(actor_system: ActorSystem) -> None:
    class StartsHappyInPreStart(Moody):
        def pre_start(self) -> None:
            self.context.become(self.happy, discard_old=False)

    ref = actor_system.spawn(StartsHappyInPreStart)
    assert await ref.ask("x") == "happy"
    await ref.ask("unbecome")
    assert await ref.ask("x") == "receive"


async def test_become_with_a_non_callable_raises(actor_system: ActorSystem) -> None:
    def bad(actor: Scripted) -> str:
        try:
            actor.context.become(42)  # type: ignore[arg-type]
        except TypeError:
            return "TypeError"
        return "accepted"

    ref = actor_system.spawn(Scripted, actor_system.user_guardian)
    assert await ref.ask(bad) == "TypeError"


# -- stash ------------------------------------------------------------------------------------


class Gatekeeper(Actor):
    """Stashes everything until "open"; then unstashes and forwards to ``report``."""

    stash_capacity = 3

    def __init__(self, report: ActorRef) -> None:
        self.report = report

    def receive(self, message: Any) -> Any:
        if message == "open":
            count = self.context.unstash_all()
            self.report.tell(("unstashed", count))
            self.context.become(self.opened)
        elif message == "size":
            return self.context.stash_size
        else:
            self.context.stash()
        return None

    def opened(self, message: Any) -> Any:
        self.report.tell(message)
        return ("answer", message)


async def test_unstash_all_puts_messages_back_in_order_before_newer_ones(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    ref = actor_system.spawn(Gatekeeper, probe.ref)
    for message in (1, 2, 3):
        ref.tell(message)
    assert await ref.ask("size") == 3
    ref.tell("open")
    ref.tell(4)
    ref.tell(5)
    await probe.expect_message(("unstashed", 3))
    await probe.expect_messages(1, 2, 3, 4, 5)
    await probe.expect_no_message()


async def test_a_stashed_ask_is_answered_after_unstash(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    ref = actor_system.spawn(Gatekeeper, probe.ref)
    answers: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def ask() -> None:
            answers.append(await ref.ask("question"))

        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        assert answers == []
        assert await ref.ask("size") == 1
        ref.tell("open")
    assert answers == [("answer", "question")]
    await probe.expect_messages(("unstashed", 1), "question")


@pytest.mark.actor_system(
    guardian_strategy=supervision.OneForOne(
        decider=supervision.decider_from({Exception: supervision.Directive.STOP})
    )
)
async def test_stash_overflow_at_capacity(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    ref = actor_system.spawn(Gatekeeper, probe.ref)
    probe.watch(ref)
    for message in (1, 2, 3):
        ref.tell(message)
    assert await ref.ask("size") == 3
    # In an ask the overflow reaches the caller and the actor goes on.
    with pytest.raises(StashOverflow) as excinfo:
        await ref.ask("one too many")
    assert excinfo.value.capacity == 3
    assert excinfo.value.path == ref.path
    assert await ref.ask("size") == 3
    # Outside an ask it fails the actor (stopped, under this strategy).
    ref.tell(4)
    terminated = await probe.expect_terminated(ref)
    assert isinstance(terminated.error, StashOverflow)


async def test_stash_overflow_outside_an_ask_restarts_the_actor_keeping_the_stash(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    """Under the default strategy the overflow restarts the actor: the failing message
    is dead-lettered, the stashed ones go back to the mailbox (and are stashed again)."""
    dead = TestProbe(actor_system, name="dead")
    await trio.testing.wait_all_tasks_blocked()
    actor_system.events.subscribe(dead.ref, DeadLetter)
    ref = actor_system.spawn(Gatekeeper, probe.ref)
    probe.watch(ref)
    for message in (1, 2, 3):
        ref.tell(message)
    assert await ref.ask("size") == 3
    ref.tell(4)
    letter = await dead.expect_message(DeadLetter)
    assert (letter.message, letter.recipient, letter.reason) == (4, ref, DeadLetterReason.FAILED)
    assert await ref.ask("size") == 3  # the fresh instance, same ref
    ref.tell("open")
    await probe.expect_messages(("unstashed", 3), 1, 2, 3)
    await probe.expect_no_message()  # no Terminated: it was restarted, not stopped
    await dead.expect_no_message()


async def test_stash_contents_are_dead_lettered_on_stop(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    dead = TestProbe(actor_system, name="dead")
    await trio.testing.wait_all_tasks_blocked()
    actor_system.events.subscribe(dead.ref, DeadLetter)
    ref = actor_system.spawn(Gatekeeper, probe.ref)
    ref.tell("a", sender=probe.ref)
    ref.tell("b")
    results: list[Any] = []
    async with trio.open_nursery() as nursery:

        async def ask() -> None:
            try:
                await ref.ask("c")
            except ActorDead as exc:
                results.append(exc)

        nursery.start_soon(ask)
        await trio.testing.wait_all_tasks_blocked()
        assert await ref.ask("size") == 3
        await actor_system.graceful_stop(ref)
    assert len(results) == 1  # the stashed ask was told, not dead-lettered
    assert await dead.expect_message(DeadLetter) == DeadLetter(
        "a", probe.ref, ref, DeadLetterReason.STOPPED
    )
    assert await dead.expect_message(DeadLetter) == DeadLetter(
        "b", None, ref, DeadLetterReason.STOPPED
    )
    await dead.expect_no_message()


async def test_stashed_single_timer_message_survives_unstash(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    class Initializing(Gatekeeper):
        def pre_start(self) -> None:
            self.context.timers.start_single("once", "timer-message", 1)

    ref = actor_system.spawn(Initializing, probe.ref)
    await trio.sleep(2)
    assert await ref.ask("size") == 1
    ref.tell("open")
    await probe.expect_message(("unstashed", 1))
    await probe.expect_message("timer-message")


async def test_stash_outside_message_processing_raises(actor_system: ActorSystem) -> None:
    outcome: list[str] = []

    class EarlyStash(Actor):
        def pre_start(self) -> None:
            try:
                self.context.stash()
            except RuntimeError:
                outcome.append("RuntimeError")

        def receive(self, message: Any) -> Any:
            return self.context.unstash_all()

    ref = actor_system.spawn(EarlyStash)
    assert await ref.ask("unstash") == 0
    assert outcome == ["RuntimeError"]


# -- stop deadlines follow the behaviour (the loop enters a cancel scope only when needed)


class SyncThenStuck(actors.Actor):
    """Sync ``receive``; ``"stick"`` switches to an async behaviour that never returns."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def receive(self, message: object) -> None:
        if message == "stick":
            self.context.become(self.stuck, discard_old=False)
        elif message == "back":
            self.context.unbecome()
        else:
            self.log.append(f"sync {message}")

    async def stuck(self, message: object) -> None:
        if message == "back":
            self.context.unbecome()
            return
        self.log.append(f"stuck on {message}")
        await trio.sleep_forever()

    def post_stop(self) -> None:
        self.log.append(f"post_stop at {trio.current_time():g}")


async def test_a_sync_actor_that_becomes_async_is_cancelled_at_its_stop_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    async with actors.open_system("t", stop_timeout=2.0) as system:
        ref = system.spawn(SyncThenStuck, log)
        ref.tell("a")
        ref.tell("stick")
        ref.tell("b")
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["sync a", "stuck on b"]
        start = trio.current_time()
        with trio.fail_after(60):  # a failure, not a hang, if the deadline is ignored
            await system.graceful_stop(ref)
        assert trio.current_time() - start == 2.0
    assert log == ["sync a", "stuck on b", f"post_stop at {start + 2.0:g}"]


async def test_unbecome_back_to_an_async_behaviour_keeps_the_stop_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    async with actors.open_system("t", stop_timeout=3.0) as system:
        ref = system.spawn(SyncThenStuck, log)
        ref.tell("stick")  # async behaviour on top of the stack
        ref.tell("back")  # back to sync receive
        ref.tell("x")
        ref.tell("stick")  # async again
        ref.tell("y")
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["sync x", "stuck on y"]
        start = trio.current_time()
        with trio.fail_after(60):  # a failure, not a hang, if the deadline is ignored
            await system.graceful_stop(ref)
        assert trio.current_time() - start == 3.0


class SlowStart(actors.Actor):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def pre_start(self) -> None:
        self.log.append("starting")
        await trio.sleep_forever()

    def receive(self, message: object) -> None:
        self.log.append(f"got {message}")


async def test_an_async_pre_start_that_hangs_is_cancelled_at_the_stop_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    async with actors.open_system("t", stop_timeout=4.0) as system:
        ref = system.spawn(SlowStart, log)
        ref.tell("m")
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        with trio.fail_after(60):  # a failure, not a hang, if the deadline is ignored
            await system.graceful_stop(ref)
        assert trio.current_time() - start == 4.0
        assert system.dead_letter_count == 1  # "m" was never processed
    assert log == ["starting"]
