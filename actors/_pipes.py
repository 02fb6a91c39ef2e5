"""Asking without blocking: work whose outcome comes back to the actor as a message.

``context.ask``, ``context.ask_all`` and ``context.pipe_to_self`` start a task (a
*pipe*) in the system's nursery that awaits the reply (or any awaitable) and then puts
the outcome into the actor's mailbox, outside its capacity like a timer tick, to be
handled in turn with the other messages. The actor is not blocked meanwhile.

The cell keeps the cancel scope of each pending pipe (``cell._pipes``): pipes end when
the actor stops (``Stopping._run_post_stop`` and ``_finalize`` cancel them), so nothing
arrives after the stop; an outcome that came in while the actor was already stopping
becomes a dead letter. A restart does not cancel them: like the mailbox and the ref,
they outlive the failed instance, and the new one gets their outcomes.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from ._ask_deadlines import check_timeout
from ._cell_state import DEAD
from ._envelope import Note
from ._errors import AskTimeout
from ._messages import DeadLetterReason
from ._ref import ActorRef

if TYPE_CHECKING:
    from ._cell import ActorCell

PIPED: Final = Note()
"""The slot of an outcome a pipe puts into its actor's mailbox (a notification: outside
capacity, delivered as is)."""

_NOTHING: Final = object()


@attrs.frozen
class AskFailed:
    """What an actor receives when an ask it made with ``context.ask`` or
    ``context.ask_all`` got no reply.

    ``error`` is what the ``ask`` raised (:class:`AskTimeout`, :class:`ActorDead`, or
    the error the target's handler raised), or what ``adapt`` raised on the reply.
    ``request`` is the message that was asked and ``target`` the actor it was asked of
    (for ``ask_all``, those of the ask that failed first; for an ``adapt`` that failed
    on the gathered replies, the tuple of every request and ``None``)."""

    error: BaseException
    request: Any
    target: ActorRef | None


@attrs.frozen
class PipeFailed:
    """What an actor receives when the work it gave ``context.pipe_to_self`` raised
    (``error``), or its ``adapt`` raised on the result."""

    error: BaseException


class _Gathered(Exception):
    """The first failed ask of an ``ask_all`` (internal: becomes its ``AskFailed``)."""

    def __init__(self, failed: AskFailed) -> None:
        super().__init__(failed)
        self.failed = failed


def start_pipe(
    cell: ActorCell,
    run: Callable[[], Awaitable[Any]],
    adapt: Callable[[Any], Any] | None,
    failed: Callable[[Exception], Any],
    name: str,
) -> None:
    """Run ``run()`` in a task owned by ``cell`` and deliver ``adapt(result)`` (or the
    result), or ``failed(error)``, to the actor as a message."""
    cell._check_thread()
    if adapt is not None and not callable(adapt):
        raise TypeError(f"adapt must be a callable taking the result, got {adapt!r}")
    if cell._state == DEAD:
        return  # (its own code cannot run once it is dead)
    scope = trio.CancelScope()
    pipes = cell._pipes
    if pipes is None:
        pipes = cell._pipes = set()
    pipes.add(scope)
    cell.system._nursery.start_soon(_pipe, cell, scope, run, adapt, failed, name=name)


async def _pipe(
    cell: ActorCell,
    scope: trio.CancelScope,
    run: Callable[[], Awaitable[Any]],
    adapt: Callable[[Any], Any] | None,
    failed: Callable[[Exception], Any],
) -> None:
    outcome: Any = _NOTHING
    try:
        with scope:
            try:
                value = await run()
            except Exception as exc:
                outcome = failed(exc)
            else:
                try:
                    outcome = value if adapt is None else adapt(value)
                except Exception as exc:
                    outcome = failed(exc)
    finally:
        pipes = cell._pipes
        if pipes is not None:
            pipes.discard(scope)
    if outcome is _NOTHING:
        return  # cancelled: the actor stopped
    if scope.cancel_called or cell._state == DEAD or cell._stop_requested:
        # The outcome came in, but the actor is stopping: it will never handle it.
        cell.system._dead_letter(outcome, None, cell.ref, DeadLetterReason.STOPPED)
        return
    cell._append_uncounted((outcome, None, PIPED))


def cancel_pipes(cell: ActorCell) -> None:
    """The actor stops: cancel its pending pipes (nothing of theirs arrives now)."""
    pipes, cell._pipes = cell._pipes, None
    for scope in pipes or ():
        scope.cancel()


def ask_via_mailbox(
    cell: ActorCell,
    target: ActorRef,
    message: Any,
    timeout: float | None,
    adapt: Callable[[Any], Any] | None,
) -> None:
    """``context.ask``: see its documentation."""
    if not isinstance(target, ActorRef):
        raise TypeError(f"ask() needs an ActorRef to ask, got {target!r}")
    if timeout is not None:
        timeout = check_timeout(timeout)
    run = functools.partial(target.ask, message, timeout=timeout)
    start_pipe(
        cell,
        run,
        adapt,
        lambda error: AskFailed(error, message, target),
        f"{cell.ref.path} asks {target.path}",
    )


def ask_all_via_mailbox(
    cell: ActorCell,
    requests: Iterable[tuple[ActorRef, Any]],
    timeout: float | None,
    adapt: Callable[[tuple[Any, ...]], Any] | None,
) -> None:
    """``context.ask_all``: see its documentation."""
    pairs = tuple(requests)
    for pair in pairs:
        if not (isinstance(pair, tuple) and len(pair) == 2 and isinstance(pair[0], ActorRef)):
            raise TypeError(
                f"ask_all() needs (ActorRef, message) pairs, got {pair!r}; e.g. "
                "ask_all([(prices, GetPrice(item)), (stock, GetStock(item))])"
            )
    limit = cell.system.settings.ask_timeout if timeout is None else check_timeout(timeout)
    requests_only = tuple(message for _, message in pairs)

    def failed(error: Exception) -> AskFailed:
        if isinstance(error, _Gathered):
            return error.failed
        return AskFailed(error, requests_only, None)

    start_pipe(
        cell,
        functools.partial(_gather, pairs, limit),
        adapt,
        failed,
        f"{cell.ref.path} asks {len(pairs)} actors",
    )


async def _gather(pairs: tuple[tuple[ActorRef, Any], ...], limit: float) -> tuple[Any, ...]:
    """Ask every ``(ref, message)`` at once and return the replies in order; the first
    failure (or the deadline, ``limit`` seconds from now) cancels the others and raises
    ``_Gathered``. A cancelled ask's question stays queued: its late reply becomes an
    ``ask_expired`` dead letter."""
    replies: list[Any] = [_NOTHING] * len(pairs)
    first: list[AskFailed] = []

    async def one(index: int, ref: ActorRef, message: Any) -> None:
        try:
            replies[index] = await ref.ask(message, timeout=math.inf)
        except Exception as exc:
            if not first:
                first.append(AskFailed(exc, message, ref))
                nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        if limit != math.inf:
            nursery.cancel_scope.deadline = trio.current_time() + limit
        for index, (ref, message) in enumerate(pairs):
            nursery.start_soon(one, index, ref, message)
    if first:
        raise _Gathered(first[0])
    for index, reply in enumerate(replies):
        if reply is _NOTHING:  # the deadline passed before this one replied
            ref, message = pairs[index]
            raise _Gathered(AskFailed(AskTimeout(ref.path, limit, message), message, ref))
    return tuple(replies)


def pipe_to_self(
    cell: ActorCell,
    function: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
    adapt: Callable[[Any], Any] | None,
) -> None:
    """``context.pipe_to_self``: see its documentation."""
    if not callable(function):
        raise TypeError(
            f"pipe_to_self() needs an async function to call, got {function!r}; pass the "
            "function and its arguments, not a coroutine: pipe_to_self(fetch, url)"
        )
    name = getattr(function, "__qualname__", repr(function))
    start_pipe(
        cell,
        functools.partial(function, *args),
        adapt,
        PipeFailed,
        f"{cell.ref.path} pipes {name}",
    )
