"""One supervised trio task: its record, the stop protocol and the public views of it."""

from __future__ import annotations

import contextvars
from collections.abc import Hashable
from typing import Any

import attrs
import trio

from ._spec import ChildSpec, Restart


@attrs.frozen
class ChildInfo:
    """One child of a :class:`TaskSupervisor`, as :meth:`~TaskSupervisor.which_children`
    reports it: ``running`` is true from the moment its task reported started until the
    supervisor has dealt with its end (while it is being stopped, it still runs)."""

    id: Hashable
    running: bool
    restart: Restart
    significant: bool


@attrs.frozen
class ChildCounts:
    """What :meth:`~TaskSupervisor.count_children` reports (OTP's ``count_children``):
    ``specs`` children known to the supervisor, ``active`` of them running."""

    specs: int
    active: int


class _Incarnation:
    """One run of one child: from its start to the end of its task.

    A restart makes a new incarnation, so an exit that arrives late (after the
    supervisor stopped or restarted that child) is recognised as stale by identity.
    """

    __slots__ = (
        "cancel_scope",
        "done",
        "error",
        "listening",
        "spec",
        "stop_event",
        "stopping",
    )

    def __init__(self, spec: ChildSpec) -> None:
        self.spec = spec
        self.cancel_scope = trio.CancelScope()
        self.done = trio.Event()
        """Set when the task has ended, however it ended."""
        self.stop_event = trio.Event()
        """Set when the supervisor asks the child to stop (see :func:`listen_for_stop`)."""
        self.listening = False
        """Whether the child called :func:`listen_for_stop` (then it is asked, not cancelled)."""
        self.stopping = False
        """Whether the supervisor stopped it on purpose (its exit is then not a failure)."""
        self.error: Exception | None = None

    def request_stop(self, now: float) -> None:
        """Start stopping the task as its spec says; :attr:`done` tells when it has ended.

        ``BRUTAL``, or a child that never called :func:`listen_for_stop`: cancelled now.
        Otherwise its stop event is set and its cancel scope gets a deadline ``shutdown``
        seconds from ``now``.
        """
        self.stopping = True
        if self.done.is_set():
            return
        shutdown = self.spec.shutdown
        if isinstance(shutdown, str) or not self.listening:  # BRUTAL is the only str
            self.cancel_scope.cancel()
            return
        self.stop_event.set()
        self.cancel_scope.deadline = min(self.cancel_scope.deadline, now + shutdown)


_current: contextvars.ContextVar[_Incarnation] = contextvars.ContextVar("supervision_child")


def listen_for_stop() -> trio.Event:
    """Declare that the calling child task stops gracefully, and return the event its
    supervisor sets when it asks it to stop.

    Call it from inside a task that a :class:`TaskSupervisor` started (or from a task
    that one spawned). Calling it is the child's way of saying "I stop gracefully": when
    the supervisor stops it, the event is set and the child has its spec's ``shutdown``
    seconds to end by itself before it is cancelled. A child that never called it is
    cancelled at once (like an OTP worker that does not trap exits), and so is every
    child whose ``shutdown`` is ``BRUTAL``.

    Raises ``RuntimeError`` outside a supervised task.
    """
    event = listen_for_stop_if_supervised()
    if event is None:
        raise RuntimeError(
            "listen_for_stop() is only available inside a task run by a supervisor; call it "
            "from the child task's own code (its function or a task it started)"
        )
    return event


def listen_for_stop_if_supervised() -> trio.Event | None:
    """:func:`listen_for_stop`, or ``None`` outside a supervised task."""
    incarnation = _current.get(None)
    if incarnation is None:
        return None
    incarnation.listening = True
    return incarnation.stop_event


class _Status(trio.TaskStatus[Any]):
    """Passes ``started()`` on to trio and remembers that the child called it."""

    __slots__ = ("_inner", "called")

    def __init__(self, inner: trio.TaskStatus[Any]) -> None:
        self._inner = inner
        self.called = False

    def started(self, value: Any = None) -> None:
        self.called = True
        self._inner.started(value)


async def run_incarnation(incarnation: _Incarnation, *, task_status: trio.TaskStatus[Any]) -> bool:
    """Run one child task to its end (started with ``nursery.start``).

    An ``Exception`` raised before the child reported started propagates (so
    ``nursery.start`` raises it: a failed start); after that it is kept in
    ``incarnation.error``. Anything that is not an ``Exception`` (``Cancelled`` from
    outside, ``KeyboardInterrupt``, ...) propagates untouched. Returns whether the
    child had started, i.e. whether its end must be reported to the supervisor.
    """
    _current.set(incarnation)
    status = _Status(task_status)
    try:
        with incarnation.cancel_scope:
            try:
                await incarnation.spec.start(task_status=status)
            except Exception as exc:
                if not status.called:
                    raise
                incarnation.error = exc
        return status.called
    finally:
        incarnation.done.set()
