"""One task per system that enforces every ``ask`` timeout.

A trio cancel scope with a deadline costs several microseconds to enter and leave, as
much as the rest of an ``ask``; so asks do not get one each. Instead each pending ask
registers ``(deadline, reply)`` here, in a heap, and a single task sleeps until the
earliest deadline and fails the asks that are still waiting then. Answered asks are not
removed one by one: they are skipped when they come up, and the heap is compacted when it
has grown to twice its last live size, so its size stays proportional to the asks in
flight.
"""

from __future__ import annotations

import heapq
import itertools
import math
import numbers
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from ._envelope import Reply

_MIN_COMPACT: Final = 1024


def check_timeout(timeout: object) -> float:
    """The ``timeout`` given to an ``ask``, checked (callers pass ``None``, the default,
    and a ``float`` > 0 without calling this): a real number of seconds > 0, where
    ``math.inf`` waits forever. ``TypeError`` for a ``bool``, a ``str`` or anything
    else that is not a real number; ``ValueError`` for 0, a negative number or NaN."""
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(
            f"ask timeout must be a number of seconds > 0, got {timeout!r} (a "
            f"{type(timeout).__qualname__}); pass e.g. timeout=2.5, math.inf to wait "
            "forever, or leave it out (None) for Settings.ask_timeout"
        )
    value = float(timeout)
    if not value > 0:  # (NaN included)
        raise ValueError(
            f"ask timeout must be > 0 seconds, got {timeout!r}; pass math.inf to wait "
            "forever, or leave it out (None) for Settings.ask_timeout"
        )
    return value


class AskDeadlines:
    __slots__ = ("_counter", "_heap", "_limit", "_scope", "_task")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Reply]] = []
        self._counter = itertools.count()
        self._limit = _MIN_COMPACT
        self._task: trio.lowlevel.Task | None = None  # set while parked with nothing due
        self._scope: trio.CancelScope | None = None  # the sleep until the earliest one

    def add(self, deadline: float, reply: Reply) -> None:
        heap = self._heap
        if len(heap) >= self._limit:
            heap[:] = [entry for entry in heap if entry[2].task is not None]
            heapq.heapify(heap)
            self._limit = max(_MIN_COMPACT, 2 * len(heap))
        heapq.heappush(heap, (deadline, next(self._counter), reply))
        task = self._task
        if task is not None:
            self._task = None
            trio.lowlevel.reschedule(task)
        elif self._scope is not None and deadline < self._scope.deadline:
            self._scope.deadline = deadline

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._task = None
        return trio.lowlevel.Abort.SUCCEEDED

    async def run(self) -> None:
        """Runs until cancelled (by the system, once every actor has stopped)."""
        from ._errors import AskTimeout

        heap = self._heap
        while True:
            if not heap:
                self._task = trio.lowlevel.current_task()
                await trio.lowlevel.wait_task_rescheduled(self._abort)
                continue
            with trio.CancelScope(deadline=heap[0][0]) as scope:
                self._scope = scope
                await trio.sleep_forever()
            self._scope = None
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, reply = heapq.heappop(heap)
                task = reply.task
                if task is not None:
                    reply.task = None
                    reply.error = AskTimeout(reply.path, reply.timeout, reply.message)
                    trio.lowlevel.reschedule(task)


def deadline_after(timeout: float) -> float:
    return math.inf if timeout == math.inf else trio.current_time() + timeout
