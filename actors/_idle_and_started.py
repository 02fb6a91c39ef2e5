"""Waiting for the system: until every actor is idle (``system.idle()``), and until an
actor has started (``system.started(ref)``).

``idle()`` does not poll. It scans the live actor tree once; for each busy actor it waits
until that actor parks (its loop found the mailbox empty) or dies, then scans again, until
one scan finds every actor idle. An actor tells it that it parks through
:data:`park_watchers`: ``Delivery._park`` (and ``_wait_for_wake``, ``_finalize``) look
at this dict, one truthiness check per park, and only when it holds the parking cell do
they set its event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import trio

from ._cell_state import DEAD
from ._errors import ActorDead, ActorError
from ._sender import current_actor

if TYPE_CHECKING:
    from ._cell import ActorCell
    from ._ref import ActorRef
    from ._system import ActorSystem

park_watchers: Final[dict[object, trio.Event]] = {}
"""Cells some ``idle()`` waits for, each with the event to set when it parks or dies.
Shared by the systems of the process (a cell is only ever touched by its own thread)."""


def notify_parked(cell: object) -> None:
    """``cell`` parks on an empty mailbox or dies: wake an ``idle()`` waiting for it."""
    event = park_watchers.pop(cell, None)
    if event is not None:
        event.set()


def is_idle(cell: ActorCell) -> bool:
    """Whether ``cell`` has nothing to do now: dead, or parked with an empty mailbox, no
    system request and no pending pipe (a running handler, a hook, a start or a stop in
    progress is busy; a timer or a receive timeout that has not fired is not)."""
    if cell._state == DEAD:
        return True
    return cell._parked is not None and not cell._mailbox and not cell._sysq and not cell._pipes


def _live_cells(system: ActorSystem) -> list[ActorCell]:
    cells: list[ActorCell] = []
    pending = [system._guardian]
    while pending:
        cell = pending.pop()
        cells.append(cell)
        if cell._children:
            pending.extend(cell._children.values())
    return cells


async def wait_idle(system: ActorSystem) -> None:
    """``ActorSystem.idle``: see its documentation."""
    system._check_thread()
    actor = current_actor.get()
    if actor is not None and actor.address.system == system.name:
        raise ActorError(
            f"system.idle() called by {actor.path} (or a task it started), which is busy "
            "while it waits, so it would wait for itself; call it from outside the actors "
            "(a script or a test)"
        )
    await trio.lowlevel.checkpoint()
    while True:
        busy = [cell for cell in _live_cells(system) if not is_idle(cell)]
        if not busy:
            return
        for cell in busy:
            while not is_idle(cell):
                # (Shared by every idle() waiting for this cell. If this one is
                # cancelled, the entry stays until the cell parks or dies.)
                await park_watchers.setdefault(cell, trio.Event()).wait()


async def wait_started(system: ActorSystem, ref: ActorRef) -> ActorRef:
    """``ActorSystem.started``: see its documentation."""
    from ._cell import ActorCell

    system._check_thread()
    try:
        cell = ref._resolve()
    except ActorDead:
        await trio.lowlevel.checkpoint()
        raise
    if cell.system is not system:
        raise ValueError(f"{ref.path} belongs to system {cell.system.name!r}, not {system.name!r}")
    if not isinstance(cell, ActorCell):
        await trio.lowlevel.checkpoint()
        raise ActorDead(ref.path, "does not exist (no live actor at this address)")
    if cell._state == DEAD:
        await trio.lowlevel.checkpoint()
        raise ActorDead(ref.path, "is not running", cell._reason)
    if not cell._started and cell._task is trio.lowlevel.current_task():
        raise ActorError(
            f"{ref.path} waited for its own start (system.started in its own __init__ or "
            "pre_start), which would wait forever"
        )
    if not await cell._wait_ready():
        raise ActorDead(ref.path, "stopped before it started", cell._reason)
    return ref
