"""The fair lock that takes one persistent actor's persists in call order."""

from __future__ import annotations

from collections import deque

import trio


class Turns:
    """``async with turns:`` waits for this actor's earlier persists (and ``defer`` and
    ``save_snapshot`` calls) to finish, first come first served, then holds the turn
    until the block ends.

    Entering a free turn has no schedule point (a persist has one anyway, when it waits
    for the journal; one task switch less per persist counts when thousands of actors
    persist at once). Leaving hands the turn straight to the next waiter. A waiter
    cancelled before its turn came leaves the queue; nothing else changes. The hot path
    (one ``persist``) uses :meth:`take`, :meth:`wait` and :meth:`release` directly, which
    saves the two coroutine objects of ``async with`` per persist. Used only by the
    runtime, on the trio thread."""

    __slots__ = ("_held", "_waiting")

    def __init__(self) -> None:
        self._held = False
        self._waiting: deque[trio.lowlevel.Task] = deque()

    def take(self) -> bool:
        """Take the turn if it is free (``True``), without a schedule point; else
        ``False``, and the caller awaits :meth:`wait` for it."""
        if self._held:
            return False
        self._held = True
        return True

    async def wait(self) -> None:
        """Wait until the turn is handed to this task (after :meth:`take` said no). On
        cancellation the task leaves the queue and holds nothing."""
        task = trio.lowlevel.current_task()
        waiting = self._waiting
        waiting.append(task)

        def abort(raise_cancel: object) -> trio.lowlevel.Abort:
            waiting.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)  # the turn was handed over

    def release(self) -> None:
        """Hand the turn to the next waiter, or free it."""
        if self._waiting:
            trio.lowlevel.reschedule(self._waiting.popleft())  # still held: handed over
        else:
            self._held = False

    async def __aenter__(self) -> None:
        if not self.take():
            await self.wait()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()
