"""Mailboxes: unbounded and bounded, every overflow policy, the system lane, throughput
batching, per-sender FIFO ordering and exact dead-letter accounting."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

import actors
import supervision
from actors import DeadLetter, DeadLetterReason, Mailbox, Overflow
from actors.testing import TestProbe

# How ``/user`` treats a failing top-level actor: stop it, or escalate (end the system).
STOP = supervision.OneForOne(
    decider=supervision.decider_from({Exception: supervision.Directive.STOP})
)
ESCALATE = supervision.OneForOne(decider=lambda error: supervision.Directive.ESCALATE)

# -- helpers ------------------------------------------------------------------------------


class Gated(actors.Actor):
    """Records every message it handles; ``"hold"`` blocks until ``release`` is set.

    Replies to an ``ask`` with the message itself. Optionally watches ``watch`` (from
    ``pre_start``), so ``Terminated`` notifications land in the log as well.
    """

    def __init__(
        self,
        log: list[Any],
        release: trio.Event,
        watch: actors.ActorRef | None = None,
    ) -> None:
        self.log = log
        self.release = release
        self.watch = watch

    def pre_start(self) -> None:
        if self.watch is not None:
            self.context.watch(self.watch)

    async def receive(self, message: Any) -> Any:
        if message == "hold":
            await self.release.wait()
        self.log.append(message)
        return message


class Idle(actors.Actor):
    """Handles every message by doing nothing."""

    def receive(self, message: Any) -> None:
        return None


def dead_letter_probe(system: actors.ActorSystem) -> TestProbe:
    probe = TestProbe(system, name="dead-letters")
    system.events.subscribe(probe.ref, DeadLetter)
    return probe


async def expect_dead_letter(
    probe: TestProbe,
    message: Any,
    reason: DeadLetterReason,
    recipient: actors.ActorRef,
    sender: actors.ActorRef | None = None,
) -> DeadLetter:
    letter = await probe.expect_message(DeadLetter)
    assert letter.message == message
    assert letter.reason is reason
    assert letter.recipient == recipient
    assert letter.sender == sender
    return letter


async def spawn_held(
    system: actors.ActorSystem,
    mailbox: Mailbox | None,
    *,
    name: str = "held",
    watch: actors.ActorRef | None = None,
) -> tuple[actors.ActorRef, list[Any], trio.Event]:
    """Spawn a ``Gated`` actor and leave it blocked inside its ``"hold"`` handler with an
    empty mailbox."""
    log: list[Any] = []
    release = trio.Event()
    ref = system.spawn(Gated, log, release, watch, name=name, mailbox=mailbox)
    ref.tell("hold")
    await trio.testing.wait_all_tasks_blocked()
    assert log == []  # inside the "hold" handler, not past it
    return ref, log, release


# -- unbounded ----------------------------------------------------------------------------


async def test_unbounded_mailbox_accepts_everything_in_order(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref, log, release = await spawn_held(actor_system, None)
    for i in range(5_000):
        ref.tell(i)  # never raises, never blocks
    for i in range(5_000, 5_010):
        await ref.send(i)
    release.set()
    assert await ref.ask("done") == "done"
    assert log == ["hold", *range(5_010), "done"]
    assert actor_system.dead_letter_count == 0


async def test_default_mailbox_is_unbounded_backpressure() -> None:
    assert Mailbox() == Mailbox(capacity=None, overflow=Overflow.BACKPRESSURE)
    assert Mailbox(3, "drop_oldest").overflow is Overflow.DROP_OLDEST
    assert actors.Settings().mailbox.capacity is None


# -- bounded: backpressure ----------------------------------------------------------------


async def test_backpressure_tell_raises_mailbox_full_and_enqueues_nothing(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    dead = dead_letter_probe(actor_system)
    ref, log, release = await spawn_held(actor_system, Mailbox(2, Overflow.BACKPRESSURE))
    ref.tell("a")
    ref.tell("b")
    with pytest.raises(actors.MailboxFull) as info:
        ref.tell("c")
    err = info.value
    assert err.path == ref.path == "/user/held"
    assert err.capacity == 2
    assert "/user/held" in str(err)
    assert "2" in str(err)
    # Still full: a second refusal, still nothing enqueued.
    with pytest.raises(actors.MailboxFull):
        ref.tell("d")
    release.set()
    await trio.testing.wait_all_tasks_blocked()
    assert log == ["hold", "a", "b"]
    # Refused messages are the caller's, never dead letters.
    assert actor_system.dead_letter_count == 0
    await dead.expect_no_message()
    # Room again: tell works.
    ref.tell("e")
    await trio.testing.wait_all_tasks_blocked()
    assert log == ["hold", "a", "b", "e"]


async def test_backpressure_send_waits_for_room_and_completes_when_drained(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref, log, release = await spawn_held(actor_system, Mailbox(2))
    ref.tell("a")
    ref.tell("b")
    sent: list[str] = []

    async def sender(message: str) -> None:
        await ref.send(message)
        sent.append(message)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(sender, "c")
        await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(100)  # virtual time: waiting does not give up
        assert sent == []  # still waiting for room
        nursery.start_soon(sender, "d")
        await trio.testing.wait_all_tasks_blocked()
        assert sent == []
        release.set()
    assert sorted(sent) == ["c", "d"]
    await trio.testing.wait_all_tasks_blocked()
    assert log[:3] == ["hold", "a", "b"]
    assert sorted(log[3:]) == ["c", "d"]
    assert len(log) == 5
    assert actor_system.dead_letter_count == 0


async def test_send_cancelled_while_waiting_for_room_enqueues_nothing(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref, log, release = await spawn_held(actor_system, Mailbox(1))
    ref.tell("a")
    with trio.move_on_after(1) as scope:
        await ref.send("never")
    assert scope.cancelled_caught
    release.set()
    await trio.testing.wait_all_tasks_blocked()
    assert log == ["hold", "a"]
    assert actor_system.dead_letter_count == 0


async def test_backpressure_ask_waits_for_room(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref, log, release = await spawn_held(actor_system, Mailbox(1))
    ref.tell("a")
    replies: list[Any] = []

    async def asker() -> None:
        replies.append(await ref.ask("q", timeout=math.inf))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(asker)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(actors.MailboxFull):
            ref.tell("x")  # the waiting ask did not sneak in over capacity either
        assert replies == []
        release.set()
    assert replies == ["q"]
    assert log == ["hold", "a", "q"]


async def test_ask_timing_out_while_waiting_for_room_enqueues_nothing(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref, log, release = await spawn_held(actor_system, Mailbox(1))
    ref.tell("a")
    start = trio.current_time()
    with pytest.raises(actors.AskTimeout):
        await ref.ask("q", timeout=2)
    assert trio.current_time() - start == pytest.approx(2)
    release.set()
    await trio.testing.wait_all_tasks_blocked()
    assert log == ["hold", "a"]
    assert actor_system.dead_letter_count == 0


async def test_backpressure_tell_threadsafe_overflow_becomes_dead_letter(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    dead = dead_letter_probe(actor_system)
    ref, log, release = await spawn_held(actor_system, Mailbox(1))
    ref.tell("a")
    await trio.to_thread.run_sync(ref.tell_threadsafe, "from-thread")
    await expect_dead_letter(dead, "from-thread", DeadLetterReason.DROPPED_NEWEST, ref)
    release.set()
    await trio.testing.wait_all_tasks_blocked()
    assert log == ["hold", "a"]
    assert actor_system.dead_letter_count == 1


async def test_event_to_full_backpressure_subscriber_becomes_dead_letter(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref, log, release = await spawn_held(actor_system, Mailbox(1))
    actor_system.events.subscribe(ref, str)
    assert actor_system.events.publish("events", "event-1") == 1
    assert actor_system.events.publish("events", "event-2") == 1  # never raises
    assert actor_system.dead_letter_count == 1
    release.set()
    await trio.testing.wait_all_tasks_blocked()
    assert log == ["hold", "event-1"]


# -- bounded: drop_newest -----------------------------------------------------------------


async def test_drop_newest_dead_letters_the_new_message(
    actor_system: actors.ActorSystem,
    probe: TestProbe,
    autojump_clock: trio.testing.MockClock,
) -> None:
    dead = dead_letter_probe(actor_system)
    ref, log, release = await spawn_held(actor_system, Mailbox(2, Overflow.DROP_NEWEST))
    ref.tell("a")
    ref.tell("b")
    ref.tell("c", sender=probe.ref)  # no exception
    ref.tell("d")
    await expect_dead_letter(dead, "c", DeadLetterReason.DROPPED_NEWEST, ref, probe.ref)
    await expect_dead_letter(dead, "d", DeadLetterReason.DROPPED_NEWEST, ref)
    await dead.expect_no_message()
    assert actor_system.dead_letter_count == 2
    release.set()
    await trio.testing.wait_all_tasks_blocked()
    assert log == ["hold", "a", "b"]
    await dead.expect_no_message()
    assert actor_system.dead_letter_count == 2


async def test_drop_newest_send_and_ask_wait_for_room(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref, log, release = await spawn_held(actor_system, Mailbox(1, Overflow.DROP_NEWEST))
    ref.tell("a")
    replies: list[Any] = []

    async def asker() -> None:
        replies.append(await ref.ask("q", timeout=math.inf))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ref.send, "s")
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(asker)
        await trio.testing.wait_all_tasks_blocked()
        release.set()
    assert replies == ["q"]
    await trio.testing.wait_all_tasks_blocked()
    assert log == ["hold", "a", "s", "q"]
    assert actor_system.dead_letter_count == 0


# -- bounded: drop_oldest -----------------------------------------------------------------


async def test_drop_oldest_dead_letters_the_oldest_and_enqueues_the_new(
    actor_system: actors.ActorSystem,
    probe: TestProbe,
    autojump_clock: trio.testing.MockClock,
) -> None:
    dead = dead_letter_probe(actor_system)
    ref, log, release = await spawn_held(actor_system, Mailbox(2, Overflow.DROP_OLDEST))
    ref.tell("a", sender=probe.ref)
    ref.tell("b")
    ref.tell("c")  # drops "a"
    ref.tell("d")  # drops "b"
    await expect_dead_letter(dead, "a", DeadLetterReason.DROPPED_OLDEST, ref, probe.ref)
    await expect_dead_letter(dead, "b", DeadLetterReason.DROPPED_OLDEST, ref)
    await dead.expect_no_message()
    assert actor_system.dead_letter_count == 2
    release.set()
    await trio.testing.wait_all_tasks_blocked()
    assert log == ["hold", "c", "d"]
    assert actor_system.dead_letter_count == 2


async def test_drop_oldest_fails_a_dropped_ask_with_mailbox_full(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    dead = dead_letter_probe(actor_system)
    ref, log, release = await spawn_held(actor_system, Mailbox(2, Overflow.DROP_OLDEST))
    outcome: list[BaseException] = []

    async def asker() -> None:
        with pytest.raises(actors.MailboxFull) as info:
            await ref.ask("q", timeout=math.inf)
        outcome.append(info.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(asker)
        await trio.testing.wait_all_tasks_blocked()
        ref.tell("a")  # mailbox: q, a
        ref.tell("b")  # drops the ask
    [err] = outcome
    assert isinstance(err, actors.MailboxFull)
    assert err.path == ref.path
    assert err.capacity == 2
    # The asker was told directly; the question itself is not published a second time.
    await dead.expect_no_message()
    assert actor_system.dead_letter_count == 0
    release.set()
    await trio.testing.wait_all_tasks_blocked()
    assert log == ["hold", "a", "b"]


async def test_drop_oldest_dead_letters_an_evicted_poison_pill(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    # An evicted PoisonPill is a lost stop request: like any dropped message it must be
    # visible in dead letters (drop_newest does publish a dropped PoisonPill).
    dead = dead_letter_probe(actor_system)
    ref, log, release = await spawn_held(actor_system, Mailbox(1, Overflow.DROP_OLDEST))
    ref.tell(actors.PoisonPill)
    ref.tell("a")  # evicts the PoisonPill
    await expect_dead_letter(dead, actors.PoisonPill, DeadLetterReason.DROPPED_OLDEST, ref)
    assert actor_system.dead_letter_count == 1
    release.set()
    await trio.testing.wait_all_tasks_blocked()
    assert log == ["hold", "a"]


async def test_drop_newest_dead_letters_a_dropped_poison_pill(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    dead = dead_letter_probe(actor_system)
    ref, log, release = await spawn_held(actor_system, Mailbox(1, Overflow.DROP_NEWEST))
    ref.tell("a")
    ref.tell(actors.PoisonPill)  # dropped: the actor keeps running
    await expect_dead_letter(dead, actors.PoisonPill, DeadLetterReason.DROPPED_NEWEST, ref)
    release.set()
    assert await ref.ask("still-running") == "still-running"
    assert log == ["hold", "a", "still-running"]


# -- bounded: fail ------------------------------------------------------------------------


@pytest.mark.actor_system(guardian_strategy=STOP)
async def test_fail_policy_dead_letters_and_fails_the_actor_after_current_message(
    actor_system: actors.ActorSystem,
    probe: TestProbe,
    autojump_clock: trio.testing.MockClock,
) -> None:
    dead = dead_letter_probe(actor_system)
    ref, log, release = await spawn_held(actor_system, Mailbox(1, Overflow.FAIL))
    probe.watch(ref)
    ref.tell("a")
    ref.tell("b")  # overflows: never raises
    await expect_dead_letter(dead, "b", DeadLetterReason.MAILBOX_OVERFLOW, ref)
    # It finishes its current message first.
    await probe.expect_no_message()
    assert actor_system.find(ref.path) == ref
    release.set()
    terminated = await probe.expect_terminated(ref)
    assert isinstance(terminated.error, actors.MailboxOverflow)
    assert terminated.error.path == ref.path
    assert terminated.error.capacity == 1
    assert "/user/held" in str(terminated.error)
    assert log == ["hold"]
    # What was still queued goes to dead letters too.
    await expect_dead_letter(dead, "a", DeadLetterReason.STOPPED, ref)
    await dead.expect_no_message()
    assert actor_system.dead_letter_count == 2
    assert actor_system.find(ref.path) is None


async def test_fail_policy_overflow_restarts_the_actor_with_its_mailbox_by_default(
    actor_system: actors.ActorSystem,
    probe: TestProbe,
    autojump_clock: trio.testing.MockClock,
) -> None:
    dead = dead_letter_probe(actor_system)
    events = TestProbe(actor_system, name="events")
    await trio.testing.wait_all_tasks_blocked()
    actor_system.events.subscribe(events.ref, actors.ActorFailed)
    actor_system.events.subscribe(events.ref, actors.ActorRestarted)
    ref, log, release = await spawn_held(actor_system, Mailbox(1, Overflow.FAIL))
    probe.watch(ref)
    ref.tell("a")
    ref.tell("b")  # overflows: never raises
    await expect_dead_letter(dead, "b", DeadLetterReason.MAILBOX_OVERFLOW, ref)
    # It finishes its current message first.
    await events.expect_no_message()
    release.set()
    failed = await events.expect_message(actors.ActorFailed)
    assert failed.ref == ref
    assert isinstance(failed.error, actors.MailboxOverflow)
    assert failed.error.capacity == 1
    restarted = await events.expect_message(actors.ActorRestarted)
    assert restarted.ref == ref
    assert isinstance(restarted.error, actors.MailboxOverflow)
    # Restarted in place: the queued "a" survived in the mailbox and was handled by the
    # fresh instance (no failing message to drop: the overflow was not a handler's).
    assert await ref.ask("c") == "c"
    assert log == ["hold", "a", "c"]
    assert actor_system.find(ref.path) == ref
    await probe.expect_no_message()  # never terminated
    await dead.expect_no_message()
    assert actor_system.dead_letter_count == 1


async def test_fail_policy_overflow_escalated_to_user_is_an_unhandled_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    refs: list[actors.ActorRef] = []

    async def run_system() -> None:
        async with actors.open_system(
            "fail-policy", roundtrip_messages=True, guardian_strategy=ESCALATE
        ) as system:
            ref, _, release = await spawn_held(system, Mailbox(1, Overflow.FAIL))
            refs.append(ref)
            ref.tell("a")
            ref.tell("b")
            release.set()
            await trio.sleep_forever()  # the failure cancels the body

    with pytest.raises(actors.UnhandledFailure) as info:
        await run_system()
    [(failed_ref, error)] = info.value.failures
    assert failed_ref == refs[0]
    assert isinstance(error, actors.MailboxOverflow)
    assert error.capacity == 1
    assert info.value.__cause__ is error
    assert "/user/held" in str(info.value)


# -- the system lane ----------------------------------------------------------------------


async def test_stop_works_on_a_full_mailbox(
    actor_system: actors.ActorSystem,
    probe: TestProbe,
    autojump_clock: trio.testing.MockClock,
) -> None:
    dead = dead_letter_probe(actor_system)
    ref, log, release = await spawn_held(actor_system, Mailbox(1))
    probe.watch(ref)
    ref.tell("a")
    with pytest.raises(actors.MailboxFull):
        ref.tell("b")
    actor_system.stop(ref)  # never refused
    waiting_send_done = trio.Event()

    async def late_sender() -> None:
        await ref.send("late")
        waiting_send_done.set()

    asker_errors: list[BaseException] = []

    async def late_asker() -> None:
        with pytest.raises(actors.ActorDead) as info:
            await ref.ask("late-question", timeout=math.inf)
        asker_errors.append(info.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(late_sender)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(late_asker)
        await trio.testing.wait_all_tasks_blocked()
        assert not waiting_send_done.is_set()
        release.set()
        terminated = await probe.expect_terminated(ref)
    assert terminated.error is None
    assert waiting_send_done.is_set()
    assert len(asker_errors) == 1
    assert log == ["hold"]  # "a" was never processed
    await expect_dead_letter(dead, "a", DeadLetterReason.STOPPED, ref)
    await expect_dead_letter(dead, "late", DeadLetterReason.STOPPED, ref)
    await dead.expect_no_message()
    assert actor_system.dead_letter_count == 2


async def test_stop_of_a_stuck_actor_with_full_mailbox_cancels_after_stop_timeout(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref, log, _ = await spawn_held(actor_system, Mailbox(1))
    ref.tell("a")
    start = trio.current_time()
    await actor_system.graceful_stop(ref)
    assert trio.current_time() - start == pytest.approx(actor_system.settings.stop_timeout)
    assert log == []
    # "hold" was interrupted, "a" never ran: both are dead letters.
    assert actor_system.dead_letter_count == 2


async def test_terminated_is_delivered_even_with_a_full_mailbox(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    target = actor_system.spawn(Idle, name="target")
    ref, log, release = await spawn_held(actor_system, Mailbox(1), watch=target)
    ref.tell("a")
    await actor_system.graceful_stop(target)
    release.set()
    await trio.testing.wait_all_tasks_blocked()
    assert log[:2] == ["hold", "a"]
    assert log[2:] == [actors.Terminated(target, None, True)]
    assert actor_system.dead_letter_count == 0


async def test_terminated_does_not_count_against_capacity(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    # Mailbox docs: "Capacity counts user messages only ... Terminated notifications ...
    # are always accepted". A queued Terminated must not take a user message's place.
    target = actor_system.spawn(Idle, name="target")
    ref, log, release = await spawn_held(actor_system, Mailbox(2), watch=target)
    await actor_system.graceful_stop(target)
    ref.tell("a")
    ref.tell("b")
    release.set()
    await trio.testing.wait_all_tasks_blocked()
    assert log == ["hold", actors.Terminated(target, None, True), "a", "b"]


async def test_drop_oldest_never_drops_a_terminated(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    # Terminated arrives "exactly once per watch" and is "always accepted": a user
    # message arriving at a full drop_oldest mailbox must not evict it.
    target = actor_system.spawn(Idle, name="target")
    ref, log, release = await spawn_held(
        actor_system, Mailbox(1, Overflow.DROP_OLDEST), watch=target
    )
    await actor_system.graceful_stop(target)
    ref.tell("a")
    release.set()
    await trio.testing.wait_all_tasks_blocked()
    assert actors.Terminated(target, None, True) in log


class Ticking(Gated):
    """A ``Gated`` actor with a periodic timer delivering ``"tick"`` every second."""

    def pre_start(self) -> None:
        self.context.timers.start_at_fixed_rate("tick", "tick", 1.0)


async def test_a_queued_timer_tick_is_never_evicted_and_the_timer_keeps_ticking(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[Any] = []
    release = trio.Event()
    ref = actor_system.spawn(
        Ticking, log, release, name="ticking", mailbox=Mailbox(1, Overflow.DROP_OLDEST)
    )
    ref.tell("hold")
    await trio.sleep(1.5)  # the tick of t=1 waits in the mailbox
    assert log == []
    ref.tell("a")  # ticks do not count against capacity: nothing is evicted
    ref.tell("b")  # now the mailbox is full: "a" is evicted, never the tick
    release.set()
    await trio.sleep(0.1)
    assert log == ["hold", "tick", "b"]
    assert actor_system.dead_letter_count == 1
    # The periodic timer is still active, so the next ticks arrive.
    await trio.sleep(3)
    assert log.count("tick") == 4, log


# -- throughput batching ------------------------------------------------------------------


class StepCounter(trio.abc.Instrument):
    """Numbers every task step of the run: a checkpoint that yields starts a new step."""

    def __init__(self) -> None:
        self.step = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.step += 1


class StepLogger(actors.Actor):
    def __init__(self, tag: str, log: list[tuple[str, Any, int]], steps: StepCounter) -> None:
        self.tag = tag
        self.log = log
        self.steps = steps

    def receive(self, message: Any) -> None:
        self.log.append((self.tag, message, self.steps.step))


def batches(log: list[tuple[str, Any, int]]) -> list[tuple[str, list[Any]]]:
    """Group the log by task step: one group per uninterrupted run of an actor."""
    groups: list[tuple[str, list[Any]]] = []
    last_step = None
    for tag, message, step in log:
        if step != last_step:
            groups.append((tag, []))
            last_step = step
        assert groups[-1][0] == tag  # a step belongs to one task
        groups[-1][1].append(message)
    return groups


async def test_throughput_batches_interleave_two_actors_exactly(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    steps = StepCounter()
    log: list[tuple[str, Any, int]] = []
    trio.lowlevel.add_instrument(steps)
    try:
        a = actor_system.spawn(StepLogger, "A", log, steps, name="a", throughput=3)
        b = actor_system.spawn(StepLogger, "B", log, steps, name="b", throughput=3)
        for i in range(7):  # pre-filled before either task runs
            a.tell(i)
            b.tell(i)
        await trio.testing.wait_all_tasks_blocked()
    finally:
        trio.lowlevel.remove_instrument(steps)
    groups = batches(log)
    by_actor = {tag: [msgs for t, msgs in groups if t == tag] for tag in ("A", "B")}
    assert by_actor["A"] == [[0, 1, 2], [3, 4, 5], [6]]
    assert by_actor["B"] == [[0, 1, 2], [3, 4, 5], [6]]
    # Between two batches of one actor, the other got its turn: both actors' k-th
    # batches come before either's (k+1)-th (they take turns, round by round).
    rounds: dict[str, list[int]] = {"A": [], "B": []}
    last_step = None
    for tag, _, step in log:
        if step != last_step:
            rounds[tag].append(step)
            last_step = step
    for k in range(2):
        assert max(rounds["A"][k], rounds["B"][k]) < min(rounds["A"][k + 1], rounds["B"][k + 1])


@pytest.mark.parametrize(
    ("throughput", "count", "expected"), [(1, 3, [1, 1, 1]), (4, 10, [4, 4, 2])]
)
async def test_throughput_batch_sizes(
    actor_system: actors.ActorSystem,
    autojump_clock: trio.testing.MockClock,
    throughput: int,
    count: int,
    expected: list[int],
) -> None:
    steps = StepCounter()
    log: list[tuple[str, Any, int]] = []
    trio.lowlevel.add_instrument(steps)
    try:
        ref = actor_system.spawn(StepLogger, "X", log, steps, throughput=throughput)
        for i in range(count):
            ref.tell(i)
        await trio.testing.wait_all_tasks_blocked()
    finally:
        trio.lowlevel.remove_instrument(steps)
    assert [len(msgs) for _, msgs in batches(log)] == expected
    assert [m for _, m, _ in log] == list(range(count))


class BatchedLogger(StepLogger):
    throughput = 5


async def test_throughput_class_attribute_and_default(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    steps = StepCounter()
    log: list[tuple[str, Any, int]] = []
    trio.lowlevel.add_instrument(steps)
    try:
        by_class = actor_system.spawn(BatchedLogger, "class", log, steps)
        by_default = actor_system.spawn(StepLogger, "default", log, steps)
        for i in range(12):
            by_class.tell(i)
        for i in range(250):
            by_default.tell(i)
        await trio.testing.wait_all_tasks_blocked()
    finally:
        trio.lowlevel.remove_instrument(steps)
    sizes: dict[str, list[int]] = {"class": [], "default": []}
    for tag, msgs in batches(log):
        sizes[tag].append(len(msgs))
    assert sizes["class"] == [5, 5, 2]
    assert actor_system.settings.throughput == 100
    assert sizes["default"] == [100, 100, 50]


# -- ordering -----------------------------------------------------------------------------


class Collector(actors.Actor):
    def __init__(self) -> None:
        self.log: list[Any] = []

    def receive(self, message: Any) -> Any:
        if message == "log":
            return list(self.log)
        self.log.append(message)
        return None


async def test_per_sender_fifo_with_tell_send_and_ask(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref = actor_system.spawn(Collector)
    for i in range(10):
        ref.tell(("t", i))
        await ref.send(("s", i))
    assert await ref.ask("log") == [(k, i) for i in range(10) for k in ("t", "s")]


_OPS = st.sampled_from(["tell", "send", "ask", "tell+checkpoint", "send+checkpoint", "checkpoint"])


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(
    plans=st.lists(st.lists(_OPS, max_size=25), min_size=1, max_size=4),
    capacity=st.sampled_from([None, 1, 3]),
    throughput=st.integers(min_value=1, max_value=4),
)
async def test_per_sender_fifo_property(
    plans: list[list[str]], capacity: int | None, throughput: int
) -> None:
    async with actors.open_system("fifo", roundtrip_messages=True) as system:
        ref = system.spawn(
            Collector,
            name="collector",
            mailbox=Mailbox(capacity),
            throughput=throughput,
        )

        async def sender(index: int, plan: list[str]) -> None:
            seq = 0
            for op in plan:
                if op.startswith("tell"):
                    try:
                        ref.tell((index, seq))
                    except actors.MailboxFull:
                        assert capacity is not None
                        await ref.send((index, seq))  # refused: nothing was enqueued
                    seq += 1
                elif op.startswith("send"):
                    await ref.send((index, seq))
                    seq += 1
                elif op == "ask":
                    assert await ref.ask((index, seq), timeout=math.inf) is None
                    seq += 1
                if op.endswith("checkpoint"):
                    await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            for index, plan in enumerate(plans):
                nursery.start_soon(sender, index, plan)
        log = await ref.ask("log", timeout=math.inf)
        assert system.dead_letter_count == 0
    for index, plan in enumerate(plans):
        sent = sum(1 for op in plan if op != "checkpoint")
        assert [seq for i, seq in log if i == index] == list(range(sent))
    assert len(log) == sum(1 for plan in plans for op in plan if op != "checkpoint")


class Napper(actors.Actor):
    """Takes a second of trio's clock over ``"nap"``; answers anything else with it."""

    async def receive(self, message: Any) -> Any:
        if message == "nap":
            await trio.sleep(1)
        return message


class Events(actors.Actor):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.append(message)


async def test_a_flood_of_overflows_under_fail_is_one_failure_not_one_per_message(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="actors")
    events: list[Any] = []
    async with actors.open_system("flood") as system:
        recorder = system.spawn(Events, events)
        for kind in (actors.ActorFailed, actors.ActorRestarted, DeadLetter):
            system.events.subscribe(recorder, kind)
        ref = system.spawn(Napper, mailbox=Mailbox(capacity=1, overflow=Overflow.FAIL))
        ref.tell("nap")  # busy for a second
        await trio.testing.wait_all_tasks_blocked()
        ref.tell("kept")
        for n in range(1000):
            ref.tell(n)  # each refused: a dead letter, and the actor fails once
        assert await ref.ask("after") == "after"
    failed = [e for e in events if isinstance(e, actors.ActorFailed)]
    restarted = [e for e in events if isinstance(e, actors.ActorRestarted)]
    refused = [e for e in events if isinstance(e, DeadLetter)]
    assert len(failed) == len(restarted) == 1
    assert isinstance(failed[0].error, actors.MailboxOverflow)
    assert [e.message for e in refused] == list(range(1000))
    assert {e.reason for e in refused} == {DeadLetterReason.MAILBOX_OVERFLOW}
    assert len([r for r in caplog.records if r.name == "actors.supervision"]) == 1
