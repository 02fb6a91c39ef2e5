"""The cell of a persistent actor (the cell class hook of ``PersistentActor``): the
check that every persist was awaited, and the event-sourced test kit's inspection.

Un-awaited persists
    ``self.persist(event)`` without ``await`` only makes a coroutine: nothing is stored,
    and Python says so at best with a ``RuntimeWarning`` when the coroutine is collected,
    long after the handler replied as if the event were stored. So each call of
    ``persist``, ``persist_all``, ``defer`` and ``save_snapshot`` is registered on the
    incarnation (``IncarnationState.pending``) as it is made, and looked at when the code
    that made it returns: the handler (every behaviour, ``receive`` or one set with
    ``become``), ``on_recovery_completed``, ``pre_start``/``post_restart``. A call whose
    coroutine never started is closed (so no warning follows) and raised as
    :class:`PersistNotAwaited`, naming the actor and the call: the asker of the handler
    gets it, and the actor fails (a ``tell`` becomes a dead letter, as for any handler
    error). If the handler raised an error of its own, that error goes on, with a note
    naming the un-awaited call. The look costs one list test per message.

Inspection
    A message of class :class:`Inspect` is answered by the cell's ``_inspector`` (set by
    the event-sourced test kit) before the behaviour: it reaches neither ``receive`` nor a
    behaviour set with ``become``, and it is answered in mailbox order, after the
    messages before it.
"""

from __future__ import annotations

import functools
import inspect
import reprlib
import weakref
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final, TypeVar

from .._cell import ActorCell
from .._cell_state import Failure, not_started
from .._envelope import Reply
from ._errors import PersistNotAwaited

if TYPE_CHECKING:
    from ._recovery import IncarnationState

_T = TypeVar("_T")
_CREATED: Final = inspect.CORO_CREATED
_coroutine_state: Final = inspect.getcoroutinestate

#: What is lost when each call is not awaited.
_LOST: Final = {
    "persist": "the event was not stored",
    "persist_all": "the events were not stored",
    "defer": "the function did not run",
    "save_snapshot": "no snapshot was saved",
}

_PRUNE_AT: Final = 256

_short: Final = reprlib.Repr()
_short.maxstring = _short.maxother = 80

#: The behaviours this module made (so that ``unbecome`` does not wrap them twice).
_CHECKED: Final[weakref.WeakSet[Callable[[Any], Any]]] = weakref.WeakSet()


class Inspect:
    """The event-sourced test kit's question to the actor (see the module
    documentation); one instance, :data:`INSPECT`, is enough."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<EventSourcedTestKit inspect>"


INSPECT: Final = Inspect()


def track(
    state: IncarnationState, coroutine: Coroutine[Any, Any, _T], method: str, argument: object
) -> Coroutine[Any, Any, _T]:
    """Register the coroutine of a call of ``method(argument)`` on the incarnation, to
    be checked when the code that made it returns; return it. ``state.pending`` holds
    the calls flat, three items each (coroutine, method, argument): no tuple per call,
    which counts when thousands of persists are in flight. A long list (a handler that
    persists thousands of events, or a behaviour that is not checked) is pruned of the
    calls already awaited, so it stays short."""
    pending = state.pending
    if len(pending) >= _PRUNE_AT:
        pending[:] = _calls(_not_started(pending))
    pending.append(coroutine)
    pending.append(method)
    pending.append(argument)
    return coroutine


def _not_started(pending: list[Any]) -> list[tuple[Coroutine[Any, Any, Any], str, object]]:
    """The calls of ``pending`` whose coroutine never started, as triples."""
    return [
        (pending[at], pending[at + 1], pending[at + 2])
        for at in range(0, len(pending), 3)
        if _coroutine_state(pending[at]) == _CREATED
    ]


def _calls(triples: list[tuple[Coroutine[Any, Any, Any], str, object]]) -> list[Any]:
    return [item for triple in triples for item in triple]


def unawaited(state: IncarnationState) -> PersistNotAwaited | None:
    """Settle the calls registered since the last look: close those never awaited and
    return the error naming them (``None`` if every one was awaited)."""
    pending = state.pending
    missed = _not_started(pending)
    pending.clear()
    if not missed:
        return None
    for coroutine, _, _ in missed:
        coroutine.close()
    _, method, argument = missed[0]
    shown = "" if method == "save_snapshot" else _short.repr(argument)
    more = f" (and {len(missed) - 1} more call(s) not awaited)" if len(missed) > 1 else ""
    instance = state.cell._instance
    return PersistNotAwaited(
        f"persistent actor {state.cell.ref.path} ({type(instance).__qualname__}) called "
        f"{method}({shown}) without await: {_LOST[method]}{more}; write "
        f"`await self.{method}(...)`"
    )


def settle_after_error(state: IncarnationState | None, error: BaseException) -> None:
    """The code that registered calls raised ``error``: close the calls never awaited,
    and name them in a note on ``error`` (which goes on as it is)."""
    if state is None or not state.pending:
        return
    missed = unawaited(state)
    if missed is not None and isinstance(error, Exception):
        error.add_note(f"Also: {missed}")


def _state_of(cell: ActorCell) -> IncarnationState | None:
    state: IncarnationState | None = getattr(cell._instance, "_persistence", None)
    return state


def _check(cell: ActorCell) -> None:
    """After a handler returned: raise :class:`PersistNotAwaited` if it left a call not
    awaited. For an ask the actor must fail too, not only the asker get the error."""
    state = _state_of(cell)
    if state is None or not state.pending:
        return
    error = unawaited(state)
    if error is None:
        return
    current = cell._current
    if current is not None and isinstance(current[2], Reply):
        cell._break(error)
    raise error


def _inspected(cell: ActorCell) -> tuple[bool, Any]:
    inspector: Callable[[Any], Any] | None = getattr(cell, "_inspector", None)
    if inspector is None:
        return False, None
    return True, inspector(cell._instance)


def checked(cell: ActorCell, handler: Callable[[Any], Any], is_async: bool) -> Callable[[Any], Any]:
    """``handler`` as the behaviour of a persistent actor: answering the test kit's
    :class:`Inspect` first, and checking after each message that every persist was
    awaited (see the module documentation). A behaviour made here is returned as it is."""
    try:
        if handler in _CHECKED:
            return handler
    except TypeError:  # a callable that takes no weak reference: not one of ours
        pass
    behavior: Callable[[Any], Any]
    if is_async:

        async def async_behavior(message: Any) -> Any:
            if message.__class__ is Inspect:
                answered, state = _inspected(cell)
                if answered:
                    return state
            try:
                result = await handler(message)
            except BaseException as error:
                settle_after_error(_state_of(cell), error)
                raise
            _check(cell)
            return result

        behavior = async_behavior
    else:

        def sync_behavior(message: Any) -> Any:
            if message.__class__ is Inspect:
                answered, state = _inspected(cell)
                if answered:
                    return state
            try:
                result = handler(message)
            except BaseException as error:
                settle_after_error(_state_of(cell), error)
                raise
            _check(cell)
            return result

        behavior = sync_behavior
    functools.update_wrapper(behavior, handler)  # errors and logs name the handler
    _CHECKED.add(behavior)
    return behavior


class PersistentCell(ActorCell):
    """The cell of a persistent actor: every behaviour (``receive``, and those set with
    ``become``/``unbecome``) goes through :func:`checked`, and calls left un-awaited by
    ``pre_start``/``post_restart`` fail the actor before its first message.
    ``_inspector`` (``None``: none) answers :class:`Inspect` messages."""

    __slots__ = ("_inspector",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._inspector: Callable[[Any], Any] | None = None

    def _set_behavior(self, handler: Callable[[Any], Any], is_async: bool | None = None) -> None:
        if is_async is None:
            is_async = inspect.iscoroutinefunction(handler)
        super()._set_behavior(checked(self, handler, is_async), is_async)

    async def _start(self, restarted_after: BaseException | None) -> Failure | None:
        failure = await super()._start(restarted_after)
        if self._behavior is not not_started:
            self._behavior = checked(self, self._behavior, self._behavior_async)
        state = _state_of(self)
        if state is not None and state.pending:
            error = unawaited(state)
            if error is not None and failure is None:
                self._break(error)  # it fails before its first message
        return failure
