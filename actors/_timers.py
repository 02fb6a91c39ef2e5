"""Keyed timers that deliver messages to their own actor."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable
from typing import TYPE_CHECKING, Any, Final, final

import trio

from ._cell_state import DEAD
from ._envelope import TIMER
from ._messages import PoisonPill
from ._public import NoPublicConstructor

if TYPE_CHECKING:
    from ._cell import ActorCell


class Timer:
    """One scheduled timer; also the mailbox slot of each tick it enqueues."""

    __slots__ = ("fixed_delay", "handled", "interval", "key", "message", "pending", "scope")
    kind: Final = TIMER

    def __init__(
        self, key: Hashable, message: Any, interval: float | None, fixed_delay: bool = False
    ) -> None:
        self.key = key
        self.message = message
        self.interval = interval  # None: a single timer
        self.fixed_delay = fixed_delay  # the next tick comes ``interval`` after handling
        # A fixed-delay timer's current tick: set once its handler has returned.
        self.handled: trio.Event | None = None
        self.scope = trio.CancelScope()
        self.pending = False


@final
class Timers(metaclass=NoPublicConstructor):
    """``context.timers``: timers keyed by any hashable value, owned by one actor.

    Starting a timer with a key that is in use replaces the old timer, and a tick the
    old timer already enqueued is discarded, never delivered: after ``cancel(key)`` or a
    restart of the key, no stale message for that key arrives. Every timer is cancelled
    when the actor stops. Ticks are enqueued whatever the mailbox capacity (they come
    from the actor itself), all delays run on trio's clock (virtual time in tests).
    The runtime makes it; it cannot be constructed or subclassed.
    """

    __slots__ = ("_cell", "_timers")

    def __init__(self, cell: ActorCell) -> None:
        self._cell = cell
        self._timers: dict[Hashable, Timer] = {}

    def start_single(self, key: Hashable, message: Any, delay: float) -> None:
        """Deliver ``message`` once, ``delay`` seconds from now."""
        _check_delay("delay", delay)
        self._start(Timer(key, message, None), delay)

    def start_at_fixed_rate(
        self,
        key: Hashable,
        message: Any,
        interval: float,
        *,
        initial_delay: float | None = None,
    ) -> None:
        """Deliver ``message`` every ``interval`` seconds (first after ``initial_delay``,
        default ``interval``), at a fixed rate: tick *n* is due ``initial_delay + n *
        interval`` after the start, however long handling takes. While a tick is still
        waiting in the mailbox, later ticks of the same timer are skipped instead of
        piling up (no burst to catch up)."""
        _check_delay("interval", interval)
        if interval <= 0:
            raise ValueError(f"a periodic timer needs a positive interval, got {interval}")
        first = interval if initial_delay is None else initial_delay
        _check_delay("initial_delay", first)
        self._start(Timer(key, message, interval), first)

    def start_with_fixed_delay(
        self,
        key: Hashable,
        message: Any,
        delay: float,
        *,
        initial_delay: float | None = None,
    ) -> None:
        """Deliver ``message`` first after ``initial_delay`` seconds (default ``delay``),
        then each time ``delay`` seconds after the handler of the previous tick
        returned (or raised). A slow handler or a busy mailbox pushes the next ticks
        back: there is never more than one tick of this timer in the mailbox or in
        hand, and never less than ``delay`` between the end of handling one and the
        next one's arrival. A tick that is stashed counts as handled when the handler
        that stashed it returns."""
        _check_delay("delay", delay)
        if delay <= 0:
            raise ValueError(f"a fixed-delay timer needs a positive delay, got {delay}")
        first = delay if initial_delay is None else initial_delay
        _check_delay("initial_delay", first)
        self._start(Timer(key, message, delay, fixed_delay=True), first)

    def cancel(self, key: Hashable) -> bool:
        """Cancel the timer ``key``; returns whether one was active. A tick of it that is
        already queued is discarded."""
        timer = self._timers.pop(key, None)
        if timer is None:
            return False
        timer.scope.cancel()
        return True

    def cancel_all(self) -> None:
        """Cancel every timer of this actor."""
        timers, self._timers = self._timers, {}
        for timer in timers.values():
            timer.scope.cancel()

    def is_active(self, key: Hashable) -> bool:
        """Whether a timer with this key is scheduled (or its single tick is queued)."""
        return key in self._timers

    def __len__(self) -> int:
        return len(self._timers)

    # -- runtime side ---------------------------------------------------------------------

    def _start(self, timer: Timer, first_delay: float) -> None:
        cell = self._cell
        if cell._state == DEAD:
            return
        self.cancel(timer.key)
        self._timers[timer.key] = timer
        run = self._run_fixed_delay if timer.fixed_delay else self._run
        cell.system._nursery.start_soon(run, timer, first_delay, name=f"timer {timer.key!r}")

    async def _run_fixed_delay(self, timer: Timer, first_delay: float) -> None:
        assert timer.interval is not None
        with timer.scope:
            await trio.sleep(first_delay)
            while True:
                handled = timer.handled = trio.Event()
                timer.pending = True
                self._cell._append_uncounted((timer.message, None, timer))
                await handled.wait()  # set by the handler of the tick (see _accept)
                await trio.sleep(timer.interval)

    async def _run(self, timer: Timer, first_delay: float) -> None:
        with timer.scope:
            deadline = trio.current_time() + first_delay
            while True:
                await trio.sleep_until(deadline)
                if not timer.pending:
                    timer.pending = True
                    self._cell._append_uncounted((timer.message, None, timer))
                if timer.interval is None:
                    return
                deadline += timer.interval
                now = trio.current_time()
                if deadline <= now:
                    # Fell behind (the thread was blocked): skip the missed ticks, keep the
                    # grid of the fixed rate.
                    deadline += (now - deadline) // timer.interval * timer.interval + timer.interval

    def _accept(self, timer: Timer) -> bool:
        """Called when a tick reaches the front of the mailbox: deliver it or not."""
        timer.pending = False
        if self._timers.get(timer.key) is not timer:
            return False
        if timer.interval is None:
            del self._timers[timer.key]
        elif timer.fixed_delay and timer.message is not PoisonPill:
            _signal_when_handled(self._cell, timer)
        return True


def _signal_when_handled(cell: ActorCell, timer: Timer) -> None:
    """The loop calls the behaviour next, for this tick: wrap it once so that the
    timer learns when the handler has returned (or raised), without a check per message.
    The wrapper puts the behaviour back before calling it (so ``become`` in the handler
    works as usual)."""
    behavior = cell._behavior
    handled = timer.handled
    assert handled is not None
    once: Callable[[Any], Any]
    if cell._behavior_async:

        async def once_async(message: Any) -> Any:
            if cell._behavior is once:
                cell._behavior = behavior
            try:
                return await behavior(message)
            finally:
                handled.set()

        once = once_async
    else:

        def once_sync(message: Any) -> Any:
            if cell._behavior is once:
                cell._behavior = behavior
            try:
                return behavior(message)
            finally:
                handled.set()

        once = once_sync
    cell._behavior = once


def _check_delay(what: str, value: float) -> None:
    if not isinstance(value, int | float) or math.isnan(value) or value < 0:
        raise ValueError(f"timer {what} must be a number >= 0, got {value!r}")
