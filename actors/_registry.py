"""Process-wide table of running actor systems, used to resolve refs that were unpickled."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._address import Address
    from ._cell import ActorCell
    from ._cell_state import CellState
    from ._system import ActorSystem

_running: dict[str, list[ActorSystem]] = {}

FailureObserver = Callable[["CellState", BaseException, Any], None]
failure_observers: list[FailureObserver] = []
"""Called as ``observer(cell, error, message)`` for every failure of an actor in any
system of this process (where ``ActorFailed`` is published; ``message`` is the one being
handled, else ``None``), in the failing actor's thread. The testkit's check for
unexpected failures (``actors.testing``) adds one per test. An observer must not raise."""


def report_failure(cell: CellState, error: BaseException, message: Any) -> None:
    for observer in tuple(failure_observers):
        observer(cell, error, message)


def register(system: ActorSystem) -> None:
    _running.setdefault(system.name, []).append(system)


def unregister(system: ActorSystem) -> None:
    systems = _running.get(system.name)
    if systems is not None and system in systems:
        systems.remove(system)
        if not systems:
            del _running[system.name]


def resolve(address: Address) -> ActorCell | None:
    """The live cell at ``address`` (same path *and* uid) in this process, or ``None``."""
    for system in _running.get(address.system, ()):
        cell = system._find_cell(address.path)
        if cell is not None and cell.ref.address.uid == address.uid:
            return cell
    return None


def system_named(name: str) -> ActorSystem | None:
    """A running system of this name in this process (the most recently opened one)."""
    systems = _running.get(name)
    return systems[-1] if systems else None
