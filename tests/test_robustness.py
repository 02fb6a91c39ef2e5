"""Edge cases where user code misbehaves in ways the runtime must absorb."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import trio
import trio.testing

import actors
from actors import Mailbox
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
    assert isinstance(terminated.reason, ExceptionGroup)
    assert terminated.reason.subgroup(ValueError) is not None


class Ticker(actors.Actor):
    def __init__(self, clock: trio.testing.MockClock) -> None:
        self.clock = clock
        self.ticks: list[float] = []

    def pre_start(self) -> None:
        self.context.timers.start_periodic("t", "tick", 1.0)

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
    assert (cell._capacity, cell._throughput, cell._stash_capacity) == (2, 7, 5)


async def test_the_body_error_is_kept_when_unhandled_failures_also_happen(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Boom(actors.Actor):
        def receive(self, message: Any) -> None:
            raise RuntimeError("boom")

    async def body_fails_after_an_actor_did() -> None:
        async with actors.open_system("t") as system:
            system.spawn(Boom).tell("x")
            with trio.CancelScope(shield=True):  # the failure cancels the body; not yet
                await trio.testing.wait_all_tasks_blocked()
            raise KeyError("body")

    with pytest.raises(KeyError) as caught:
        await body_fails_after_an_actor_did()
    assert any("RuntimeError('boom')" in note for note in caught.value.__notes__)
