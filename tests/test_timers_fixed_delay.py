"""Fixed-delay timers (the next tick comes ``delay`` after the previous one was handled)
next to fixed-rate ones (``start_at_fixed_rate``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

import supervision as sv
from actors import Actor, ActorSystem


class Ticks(Actor):
    """Starts a timer with ``start(self)``; each tick is handled for ``busy`` virtual
    seconds (``handle`` may do more) and its arrival time logged."""

    def __init__(
        self,
        log: list[Any],
        start: Callable[[Ticks], None],
        busy: float = 0.0,
        handle: Callable[[Ticks, Any], None] | None = None,
    ) -> None:
        self.log = log
        self.busy = busy
        self.handle = handle
        self.count = 0
        start(self)

    async def receive(self, message: Any) -> Any:
        if message == "tick":
            self.count += 1
            self.log.append(trio.current_time())
            if self.busy:
                await trio.sleep(self.busy)
            if self.handle is not None:
                self.handle(self, message)
            return None
        if message == "block":
            await trio.sleep(5)
        return message


def fixed_delay(actor: Ticks) -> None:
    actor.context.timers.start_with_fixed_delay("t", "tick", 1.0)


def fixed_rate(actor: Ticks) -> None:
    actor.context.timers.start_at_fixed_rate("t", "tick", 1.0)


async def test_fixed_delay_counts_from_the_end_of_handling(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    delayed: list[float] = []
    rated: list[float] = []
    actor_system.spawn(Ticks, delayed, fixed_delay, busy=0.5)
    actor_system.spawn(Ticks, rated, fixed_rate, busy=0.5)
    await trio.sleep(5.9)
    assert delayed == [1.0, 2.5, 4.0, 5.5]
    assert rated == [1.0, 2.0, 3.0, 4.0, 5.0]


async def test_a_busy_mailbox_pushes_the_next_tick_back(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    log: list[float] = []
    ref = actor_system.spawn(Ticks, log, fixed_delay)
    await trio.sleep(0.5)
    ref.tell("block")  # handled from 0.5 to 5.5: the first tick (due at 1) waits
    await trio.sleep(7.9)
    assert log == [5.5, 6.5, 7.5]


async def test_a_sync_handler_counts_too(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    log: list[float] = []

    class SyncTicks(Actor):
        def __init__(self) -> None:
            self.context.timers.start_with_fixed_delay("t", "tick", 2.0, initial_delay=0)

        def receive(self, message: Any) -> None:
            log.append(trio.current_time())

    actor_system.spawn(SyncTicks)
    await trio.sleep(6.5)
    assert log == [0, 2, 4, 6]


async def test_become_in_a_tick_handler_works_as_usual(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    log: list[Any] = []

    def switch(actor: Ticks, message: Any) -> None:
        if actor.count == 2:

            def counting(message: Any) -> None:
                log.append(("become", message, trio.current_time()))

            actor.context.become(counting)

    actor_system.spawn(Ticks, log, fixed_delay, 0.0, switch)
    await trio.sleep(4.5)
    assert log == [1.0, 2.0, ("become", "tick", 3.0), ("become", "tick", 4.0)]


@pytest.mark.actor_system(guardian_strategy=sv.OneForOne(lambda e: sv.Directive.RESUME))
async def test_a_tick_whose_handler_raises_counts_as_handled(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    log: list[float] = []

    def fail(actor: Ticks, message: Any) -> None:
        raise RuntimeError("tick failed")

    ref = actor_system.spawn(Ticks, log, fixed_delay, 0.5, fail)
    await trio.sleep(4.4)
    assert log == [1.0, 2.5, 4.0]  # resumed each time; the timer goes on
    assert ref.stats().restarts == 0


async def test_a_stashed_tick_counts_as_handled_when_its_handler_returns(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    log: list[Any] = []

    def stash_first(actor: Ticks, message: Any) -> None:
        if actor.count == 1:
            actor.context.stash()
        elif actor.count == 2:
            actor.context.unstash_all()

    actor_system.spawn(Ticks, log, fixed_delay, 0.0, stash_first)
    await trio.sleep(2.5)
    # The stashed first tick comes back after the second (an ordinary message then).
    assert log == [1.0, 2.0, 2.0]


async def test_cancel_and_replace(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    log: list[Any] = []

    def cancel_at_two(actor: Ticks, message: Any) -> None:
        if actor.count == 2:
            actor.context.timers.cancel("t")

    ref = actor_system.spawn(Ticks, log, fixed_delay, 0.0, cancel_at_two)
    await trio.sleep(10)
    assert log == [1.0, 2.0]
    assert await ref.ask("ping") == "ping"  # the behaviour is the actor's own again


async def test_bad_arguments(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    errors: list[str] = []

    def bad(actor: Ticks) -> None:
        timers = actor.context.timers
        calls: list[Callable[[], None]] = [
            lambda: timers.start_with_fixed_delay("k", "m", 0),
            lambda: timers.start_with_fixed_delay("k", "m", -1),
            lambda: timers.start_with_fixed_delay("k", "m", 1, initial_delay=float("nan")),
            lambda: timers.start_at_fixed_rate("k", "m", 0),
        ]
        for call in calls:
            try:
                call()
            except ValueError as exc:
                errors.append(str(exc))

    actor_system.spawn(Ticks, [], bad)
    await actor_system.idle()
    assert errors == [
        "a fixed-delay timer needs a positive delay, got 0",
        "timer delay must be a number >= 0, got -1",
        "timer initial_delay must be a number >= 0, got nan",
        "a periodic timer needs a positive interval, got 0",
    ]
