"""The fields of an actor cell, in one place.

A cell is the runtime side of one actor incarnation. Its behaviour is split by concern
into layers, each a class with ``__slots__ = ()`` that adds methods on top of the one
below (a method found through the class hierarchy costs nothing more per call: CPython
caches attribute lookups per type):

- ``CellState`` (here): every field, documented once, and their initial values;
- ``MailboxOps`` (``_mailbox.py``): capacity, overflow, eviction, waiting for room;
- ``Delivery`` (``_delivery.py``): the hot path, ``tell`` → mailbox → the loop that
  calls ``receive``, and every other way into the mailbox through one seam;
- ``Stopping`` (``_stopping.py``): stopping, the end of life and death watch;
- ``Lifecycle`` (``_lifecycle.py``): the actor's task: start, failure, restart;
- ``ActorCell`` (``_cell.py``): the assembled class, and the ``Cell`` protocol that
  refs rely on.

The parent's side of supervision is plain functions in ``_supervising.py``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ._address import Address
from ._ref import ActorRef

if TYPE_CHECKING:
    import trio

    from supervision import RestartEngine, Strategy

    from ._actor import Actor
    from ._cell import ActorCell
    from ._envelope import Envelope
    from ._mailbox import Mailbox, Overflow
    from ._reply_later import ReplyHandle
    from ._supervising import Order, SupervisionRelay
    from ._system import ActorSystem
    from ._timers import Timers

# Cell states, in the order a cell goes through them.
NEW: Final = 0
RUNNING: Final = 1
STOPPING: Final = 2
DEAD: Final = 3

# Requests on the system lane (never bounded, looked at between messages).
STOP: Final = 1  # leave the loop and stop
FAIL: Final = 2  # arg: (error, stop its children before reporting the failure)
RESCOPE: Final = 3  # the behaviour became async: re-enter the loop in a cancel scope
ORDER: Final = 4  # arg: an Order of its supervisor (a restart with failed siblings)
# arg: (error, False): a failure of the current incarnation (a persistent actor whose journal
# failed), reported once its handler returns; dropped when the incarnation is replaced.
BROKEN: Final = 5

Failure = tuple[BaseException, Any]  # (error, the message being handled or None)


def not_started(message: Any) -> Any:
    """The behaviour of a cell without an instance (never called)."""
    raise AssertionError("this actor is not running")  # pragma: no cover


class CellState:
    """Every field of a cell (the layers above add behaviour only)."""

    __slots__ = (
        "_behavior",
        "_behavior_async",
        "_behaviors",
        "_capacity",
        "_child_counter",
        "_children",
        "_current",
        "_current_stashed",
        "_drop_children",
        "_engine",
        "_factory",
        "_failing",
        "_failure",
        "_granted",
        "_instance",
        "_last_activity",
        "_mailbox",
        "_name",
        "_on_child_exit",
        "_order",
        "_overflow",
        "_overflow_reported",
        "_parent",
        "_parked",
        "_pipes",
        "_processed",
        "_ready",
        "_reason",
        "_recv_timeout",
        "_recv_timeout_msg",
        "_relay",
        "_reply_handles",
        "_restarts",
        "_roundtrip",
        "_scope",
        "_slow",
        "_space",
        "_started",
        "_stash",
        "_stash_capacity",
        "_state",
        "_stop_deadline",
        "_stop_requested",
        "_stopped_by_parent",
        "_strategy",
        "_suspended",
        "_sysq",
        "_task",
        "_terminated",
        "_thread",
        "_throughput",
        "_timers",
        "_uncounted",
        "_watchers",
        "_watching",
        "ref",
        "system",
    )

    def __init__(
        self,
        system: ActorSystem,
        parent: ActorCell | None,
        name: str,
        path: str,
        uid: int,
        factory: Callable[[], Actor],
        mailbox: Mailbox,
        throughput: int,
        stash_capacity: int,
        strategy: Strategy | None = None,
    ) -> None:
        # -- identity ---------------------------------------------------------------------
        self.system = system
        self.ref = ActorRef._create(Address(system.name, path, uid, system.node), self)
        self._name = name
        self._parent = parent
        self._thread = system._thread_id  # the thread that runs the system
        # -- the instance and its behaviour ---------------------------------------------------
        self._factory = factory
        self._instance: Actor | None = None
        self._behavior: Callable[[Any], Any] = not_started
        self._behavior_async = False
        self._behaviors: list[tuple[Callable[[Any], Any], bool]] | None = None  # become stack
        # -- the mailbox (see _mailbox.py) -----------------------------------------------------
        self._mailbox: deque[Envelope] = deque()
        self._uncounted = 0  # timer ticks and notes in the mailbox: outside capacity
        self._capacity = mailbox.capacity
        self._overflow: Overflow | None = mailbox.overflow  # None: the restart stash is full
        self._overflow_reported = False  # an overflow under FAIL already queued a failure
        self._space: trio.lowlevel.ParkingLot | None = None  # senders waiting for room
        self._granted = 0  # waiting senders woken for a free place, not yet enqueued
        # (capacity, overflow) in force before a temporary bound (restart stash, persist).
        self._suspended: tuple[int | None, Overflow | None] | None = None
        self._stash: deque[Envelope] | None = None
        self._stash_capacity = stash_capacity
        # -- delivery and the loop (see _delivery.py) ----------------------------------------
        self._roundtrip = system.settings.roundtrip_messages
        # Deliveries take the slow path through the seam: round trips or delivery hooks.
        self._slow = self._roundtrip or bool(system._delivery_hooks)
        self._sysq: list[tuple[int, Any]] | None = None  # the system lane
        self._parked: trio.lowlevel.Task | None = None  # the task, parked on an empty mailbox
        self._task: trio.lowlevel.Task | None = None
        self._throughput = throughput
        self._current: Envelope | None = None  # the message being handled
        self._current_stashed = False  # ... and it was stashed or forwarded
        self._recv_timeout: float | None = None
        self._recv_timeout_msg: Any = None
        self._last_activity = 0.0
        self._scope: trio.CancelScope | None = None  # around user code that can await
        self._processed = 0  # messages handled, for stats()
        # Unanswered reply handles it took for asks, failed when it stops or restarts
        # (see _reply_later.py); the cancel scopes of its pending pipes (see _pipes.py).
        self._reply_handles: dict[ReplyHandle, None] | None = None
        self._pipes: set[trio.CancelScope] | None = None
        # -- lifecycle (see _lifecycle.py and _stopping.py) -------------------------------
        self._state = NEW
        self._started = False  # the current instance has started (pre_start returned)
        self._ready: trio.Event | None = None  # set once started (or dead)
        self._timers: Timers | None = None
        self._stop_deadline = math.inf
        self._stop_requested = False
        self._stopped_by_parent = False
        self._reason: BaseException | None = None  # why it stopped (None: normally)
        self._terminated: trio.Event | None = None
        self._failure: Failure | None = None  # a failure to report once the loop is left
        self._failing = False  # it gave up or escalated: no more decisions until handled
        self._drop_children = False  # stop its children before reporting its failure
        self._order: Order | None = None  # what its supervisor ordered (group restart)
        self._restarts = 0  # restarts of this actor so far, for stats()
        # -- family and death watch ---------------------------------------------------------
        self._children: dict[str, ActorCell] | None = None  # by name, in start order
        self._child_counter = 0
        self._watchers: dict[ActorCell, None] | None = None
        # ref -> its cell; an entry stays until its Terminated has been processed.
        self._watching: dict[ActorRef, Any] | None = None
        # -- supervision of its children (see _supervising.py) -------------------------------
        self._strategy = strategy
        self._engine: RestartEngine | None = None  # made at the first failure of a child
        self._on_child_exit: Callable[[ActorCell], None] | None = None  # Supervisor's hook
        # The parent in another process that supervises its children (a worker's host of
        # actors spawned from the root: see _worker_host.py), else None.
        self._relay: SupervisionRelay | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.ref.path}>"

    if TYPE_CHECKING:
        # Methods of higher layers that lower layers call (see the module docstring).

        def _fail(self, error: BaseException, message: Any = None) -> None: ...

        def _failed_message(self, envelope: Envelope, error: Exception) -> None: ...

        def _take_terminated(self, ref: ActorRef) -> bool: ...
