"""Edge cases where user code misbehaves in ways the runtime must absorb."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

import actors
import supervision
from actors import Mailbox
from actors._cell import ActorCell
from actors.testing import TestProbe


class ErrorWhileCancelled(actors.Actor):
    """An async handler whose nursery child raises while the stop deadline cancels it: the
    handler ends with a group holding both ``Cancelled`` and ``ValueError``."""

    async def receive(self, message: Any) -> None:
        async def pump() -> None:
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                raise ValueError("close failed while cancelling") from None

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pump)
            await trio.sleep_forever()


async def test_an_error_raised_while_the_stop_deadline_cancels_a_handler_is_a_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("t", stop_timeout=1.0) as system:
        watcher = TestProbe(system)
        ref = system.spawn(ErrorWhileCancelled)
        watcher.watch(ref)
        ref.tell("go")
        await trio.testing.wait_all_tasks_blocked()
        system.stop(ref)
        terminated = await watcher.expect_terminated(ref)
        assert trio.current_time() == 1.0
    assert isinstance(terminated.error, ExceptionGroup)
    assert terminated.error.subgroup(ValueError) is not None


class Ticker(actors.Actor):
    def __init__(self, clock: trio.testing.MockClock) -> None:
        self.clock = clock
        self.ticks: list[float] = []

    def pre_start(self) -> None:
        self.context.timers.start_at_fixed_rate("t", "tick", 1.0)

    def receive(self, message: Any) -> Any:
        if message == "tick":
            self.ticks.append(trio.current_time())
        elif message == "stall":
            self.clock.jump(1000.5)  # as if this handler had blocked the thread
        return list(self.ticks)


class TaskSteps(trio.abc.Instrument):
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.startswith(self.prefix):
            self.steps += 1


async def test_a_periodic_timer_that_fell_behind_skips_missed_ticks_without_spinning(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("t") as system:
        ref = system.spawn(Ticker, autojump_clock)
        await trio.sleep(2.5)
        steps = TaskSteps("timer")
        trio.lowlevel.add_instrument(steps)
        await ref.ask("stall")  # the clock jumps to 1003.0
        await trio.sleep(1.25)
        trio.lowlevel.remove_instrument(steps)
        ticks = await ref.ask("ticks")
    assert ticks[:2] == [1.0, 2.0]
    # One coalesced tick right after the stall, then on the original grid again.
    assert ticks[2:] == [1003.0, 1004.0]
    assert steps.steps <= 4  # not one wake-up per missed tick (about 1,000)


class Worker(actors.Actor):
    mailbox = Mailbox(capacity=2)
    throughput = 7
    stash_capacity = 5

    def __init__(self, name: str) -> None:
        self.worker_name = name

    def receive(self, message: Any) -> Any:
        return self.worker_name


async def test_class_defaults_apply_through_functools_partial(
    actor_system: actors.ActorSystem,
) -> None:
    ref = actor_system.spawn(functools.partial(Worker, name="w"))
    assert await ref.ask("name?") == "w"
    cell = ref._resolve()
    assert isinstance(cell, ActorCell)
    assert (cell._capacity, cell._throughput, cell._stash_capacity) == (2, 7, 5)


async def test_the_body_error_is_kept_when_unhandled_failures_also_happen(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Boom(actors.Actor):
        def receive(self, message: Any) -> None:
            raise RuntimeError("boom")

    async def body_fails_after_an_actor_did() -> None:
        escalate = supervision.OneForOne(decider=lambda e: supervision.Directive.ESCALATE)
        async with actors.open_system("t", guardian_strategy=escalate) as system:
            system.spawn(Boom).tell("x")  # escalated to /user: an unhandled failure
            with trio.CancelScope(shield=True):  # the failure cancels the body; not yet
                await trio.testing.wait_all_tasks_blocked()
            raise KeyError("body")

    with pytest.raises(KeyError) as caught:
        await body_fails_after_an_actor_did()
    assert any("RuntimeError('boom')" in note for note in caught.value.__notes__)


# -- leaving open_system by cancellation ----------------------------------------------------


class Worker2(actors.Actor):
    def __init__(self, label: str, log: list[str]) -> None:
        self.label = label
        self.log = log

    async def receive(self, message: Any) -> None:
        await trio.sleep(0.5)
        self.log.append(f"{self.label} finished {message}")

    async def post_stop(self) -> None:
        await trio.sleep(0.1)
        self.log.append(f"{self.label} post_stop at {trio.current_time():g}")


async def test_an_outer_cancel_runs_the_same_ordered_shutdown_as_a_normal_exit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    with trio.move_on_after(1.0) as scope:
        async with actors.open_system("t") as system:
            older = system.spawn(Worker2, "A", log)
            newer = system.spawn(Worker2, "B", log)
            await trio.sleep(0.8)
            older.tell("job")
            newer.tell("job")
            await trio.sleep_forever()
    assert scope.cancelled_caught
    # Handlers finish their message (within stop_timeout); newest stops first.
    assert log == [
        "A finished job" if log[0].startswith("A") else "B finished job",
        "B finished job" if log[0].startswith("A") else "A finished job",
        "B post_stop at 1.4",
        "A post_stop at 1.5",
    ]


class StuckChild(actors.Actor):
    async def receive(self, message: Any) -> None:
        await trio.sleep_forever()

    async def post_stop(self) -> None:
        await trio.sleep_forever()


class ParentOfStuck(actors.Actor):
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def pre_start(self) -> None:
        self.context.spawn(StuckChild, name="child").tell("work")

    def post_stop(self) -> None:
        self.log.append(f"parent post_stop at {trio.current_time():g}")


async def test_past_shutdown_timeout_a_parent_still_runs_its_post_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[str] = []
    async with actors.open_system("t", shutdown_timeout=1, stop_timeout=5) as system:
        system.spawn(ParentOfStuck, log, name="parent")
        await trio.testing.wait_all_tasks_blocked()
    assert log == ["parent post_stop at 6"]
    assert trio.current_time() == 6


# -- stash, PoisonPill and ask edge cases ---------------------------------------------------


class Stasher(actors.Actor):
    def __init__(self, log: list[Any]) -> None:
        self.log = log

    def receive(self, message: Any) -> Any:
        self.log.append(message)
        if message == "twice":
            self.context.stash()
            self.context.stash()
        elif message == "stash-then-fail":
            self.context.stash()
            raise ValueError("failed after stashing")
        elif message == "go":
            return self.context.unstash_all()
        return None


async def test_stash_twice_is_refused_and_a_failed_stashed_message_never_comes_back(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[Any] = []
    async with actors.open_system("t") as system:
        ref = system.spawn(Stasher, log)
        with pytest.raises(RuntimeError, match="already stashed"):
            await ref.ask("twice")
        with pytest.raises(ValueError, match="failed after stashing"):
            await ref.ask("stash-then-fail")
        # Both handlers failed after stashing: the failure settled their messages.
        assert await ref.ask("go") == 0
        await trio.testing.wait_all_tasks_blocked()
    assert log == ["twice", "stash-then-fail", "go"]
    assert system.dead_letter_count == 0


class Timed(actors.Actor):
    def pre_start(self) -> None:
        self.context.timers.start_single("die", actors.PoisonPill, 2.0)

    def receive(self, message: Any) -> Any:
        return message


async def test_a_poison_pill_from_a_timer_or_an_ask_stops_the_actor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("t") as system:
        probe = TestProbe(system)
        timed = probe.watch(system.spawn(Timed))
        await probe.expect_terminated(timed)
        assert trio.current_time() == 2.0
        asked = probe.watch(system.spawn(Timed))
        with pytest.raises(actors.ActorDead, match="PoisonPill"):
            await asked.ask(actors.PoisonPill)
        await probe.expect_terminated(asked)


async def test_an_ask_in_a_cancelled_scope_sends_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[Any] = []
    async with actors.open_system("t") as system:
        ref = system.spawn(Stasher, log)
        with trio.CancelScope() as scope:
            scope.cancel()
            await ref.ask("must not arrive")
        await trio.testing.wait_all_tasks_blocked()
        assert log == []
        assert system.dead_letter_count == 0


class Blocked(actors.Actor):
    mailbox = Mailbox(capacity=1)

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    async def receive(self, message: Any) -> None:
        await trio.sleep(1.0)
        self.log.append(message)


async def test_an_ask_that_times_out_waiting_for_room_is_never_enqueued(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[Any] = []
    async with actors.open_system("t") as system:
        ref = system.spawn(Blocked, log)
        ref.tell("m0")
        await trio.testing.wait_all_tasks_blocked()
        ref.tell("m1")  # full until m0 is done, at t=1.0: the same instant as the timeout
        with pytest.raises(actors.AskTimeout):
            await ref.ask("question", timeout=1.0)
        await trio.sleep(5)
    assert log == ["m0", "m1"]
    assert system.dead_letter_count == 0


async def test_answered_asks_keep_no_reply_alive(
    actor_system: actors.ActorSystem,
) -> None:
    import gc
    import weakref

    class Payload:
        pass

    class Giver(actors.Actor):
        def receive(self, message: Any) -> Payload:
            return Payload()

    giver = actor_system.spawn(Giver)
    alive = []
    for _ in range(20):
        alive.append(weakref.ref(await giver.ask("x")))
    gc.collect()
    assert sum(1 for ref in alive if ref() is not None) == 0


async def test_a_ref_to_a_stopped_actor_keeps_its_spawn_arguments_alive_no_longer() -> None:
    import gc
    import weakref

    class Big:
        pass

    class Holder(actors.Actor):
        def __init__(self, big: Big) -> None:
            self.big = big

    async with actors.open_system("t") as system:
        big = Big()
        witness = weakref.ref(big)
        ref = system.spawn(Holder, big)
        del big
        await system.graceful_stop(ref)
        gc.collect()
        assert witness() is None
        assert ref.path == "/user/$1"


# -- misuse that must give a clear error -------------------------------------------------------


class SelfStopper(actors.Actor):
    async def receive(self, message: Any) -> None:
        await self.context.system.graceful_stop(self.context.ref)


async def test_graceful_stop_of_yourself_is_refused_not_a_deadlock(
    actor_system: actors.ActorSystem,
) -> None:
    ref = actor_system.spawn(SelfStopper)
    with pytest.raises(actors.ActorError, match="would wait for its own end"):
        await ref.ask("stop yourself")


async def test_the_user_guardian_cannot_be_stopped_by_hand(
    actor_system: actors.ActorSystem,
) -> None:
    with pytest.raises(ValueError, match="/user"):
        actor_system.stop(actor_system.user_guardian)
    actor_system.user_guardian.tell(actors.PoisonPill)
    await trio.testing.wait_all_tasks_blocked()
    assert actor_system.find("/user") == actor_system.user_guardian
    assert not actor_system.terminating


async def test_terminating_is_true_once_shutdown_begins() -> None:
    seen: list[bool] = []

    class Observer(actors.Actor):
        def post_stop(self) -> None:
            seen.append(self.context.system.terminating)

    async with actors.open_system("t") as system:
        system.spawn(Observer)
        await trio.testing.wait_all_tasks_blocked()  # started, so post_stop will run
        assert not system.terminating
    assert seen == [True]


async def test_the_system_refuses_calls_from_other_threads(
    actor_system: actors.ActorSystem,
) -> None:
    ref = actor_system.spawn(Stasher, [])

    def from_thread() -> list[str]:
        refused = []
        calls: list[tuple[str, Callable[[], object]]] = [
            ("spawn", lambda: actor_system.spawn(Stasher, [])),
            ("stop", lambda: actor_system.stop(ref)),
            ("lookup", lambda: actor_system.lookup(ref.path)),
            ("publish", lambda: actor_system.events.publish("topic", "event")),
            ("subscribe", lambda: actor_system.events.subscribe(ref, str)),
        ]
        for name, call in calls:
            try:
                call()
            except actors.WrongThread:
                refused.append(name)
        return refused

    refused = await trio.to_thread.run_sync(from_thread)
    assert refused == ["spawn", "stop", "lookup", "publish", "subscribe"]
    assert [c.path for c in [ref]] == [ref.path]
    guardian = actor_system.user_guardian._resolve()
    assert isinstance(guardian, ActorCell)
    assert len(guardian._children or {}) == 1  # nothing half-made


async def test_subscribing_a_stopped_actor_does_nothing(actor_system: actors.ActorSystem) -> None:
    ref = actor_system.spawn(Stasher, [])
    await actor_system.graceful_stop(ref)
    assert actor_system.events.subscribe(ref, str) is False
    assert actor_system.events.subscribers(str) == []
    assert actor_system.events.publish("topic", "event") == 0


async def test_an_ask_cut_by_the_stop_deadline_with_an_error_group_gets_the_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("t", stop_timeout=1.0) as system:
        ref = system.spawn(ErrorWhileCancelled)

        async def stop_soon() -> None:
            await trio.sleep(0.5)
            system.stop(ref)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(stop_soon)
            with pytest.raises(ExceptionGroup) as caught:
                await ref.ask("q", timeout=10)
        assert trio.current_time() == 1.5
        assert caught.value.subgroup(ValueError) is not None
        assert system.dead_letter_count == 0
