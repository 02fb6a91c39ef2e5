"""``Router``: an actor that passes each message on to routees chosen by a routing logic."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs
import trio

from .._actor import Actor
from .._cell import ActorCell
from .._cell_state import DEAD
from .._envelope import Reply
from .._errors import AskTimeout
from .._messages import DeadLetterReason, PoisonPill, Terminated
from .._ref import ActorRef
from ._logics import BroadcastRouting, RoundRobinRouting, RoutingLogic, SingleRoutingLogic


@attrs.frozen
class Broadcast:
    """Send ``message`` to every routee of the router that receives this, bypassing its
    routing logic. (Asked through a router, the first routee answers; the others get
    it as a plain message.)"""

    message: Any


@attrs.frozen
class GetRoutees:
    """Ask a router for its routees: the reply is a tuple of refs, in routing order."""


@attrs.frozen
class AddRoutee:
    """Add ``ref`` to a router's routees (watched: it leaves them when it stops)."""

    ref: ActorRef


@attrs.frozen
class RemoveRoutee:
    """Remove ``ref`` from a router's routees. A pool router stops the routee."""

    ref: ActorRef


@attrs.frozen
class AdjustPoolSize:
    """Grow (``change > 0``) or shrink (``change < 0``) a pool router by that many
    routees; shrinking stops the newest routees first. Refused by a group router."""

    change: int


class ScatterGatherFirstCompletedRouting(BroadcastRouting[ActorRef]):
    """Ask every routee at once; the first reply answers the asker, later replies are
    discarded (they go to dead letters as ``ask_expired``, like any late reply). If no
    routee replies within ``within`` seconds (or the asker's own, shorter timeout), the
    asker gets :class:`AskTimeout`; if every routee fails, the asker gets the first
    error. A plain ``tell`` goes to every routee (there is no reply to wait for)."""

    __slots__ = ("within",)

    def __init__(self, within: float) -> None:
        if isinstance(within, bool) or not isinstance(within, int | float) or not within > 0:
            raise ValueError(f"within must be a number of seconds > 0, got {within!r}")
        self.within = float(within)

    def __repr__(self) -> str:
        return f"ScatterGatherFirstCompletedRouting(within={self.within!r})"


class TailChoppingRouting(RoundRobinRouting[ActorRef]):
    """Ask one routee; if it has not replied after ``interval`` seconds, ask the next one
    too, and so on (in round-robin order); the first reply answers the asker and the
    others are discarded. Past ``within`` seconds the asker gets :class:`AskTimeout`;
    once every routee has failed, the first error. A plain ``tell`` goes to one routee,
    round-robin."""

    __slots__ = ("interval", "within")

    def __init__(self, interval: float, within: float) -> None:
        super().__init__()
        for what, value in (("interval", interval), ("within", within)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{what} must be a number of seconds > 0, got {value!r}")
        self.interval = float(interval)
        self.within = float(within)

    def __repr__(self) -> str:
        return f"TailChoppingRouting(interval={self.interval!r}, within={self.within!r})"


def _ask_order(
    logic: ScatterGatherFirstCompletedRouting | TailChoppingRouting,
    message: Any,
    routees: tuple[ActorRef, ...],
) -> tuple[tuple[ActorRef, ...], float]:
    """The routees in the order to ask them, and the interval between two asks:
    scatter-gather asks all at once; tail-chopping starts at the next routee in its
    rotation (advanced now, in the caller's turn)."""
    if isinstance(logic, TailChoppingRouting):
        start = routees.index(logic.select(message, routees)[0])
        return routees[start:] + routees[:start], logic.interval
    return routees, 0.0


async def _first_reply(
    message: Any,
    order: Sequence[ActorRef],
    *,
    interval: float,
    within: float,
    timeout: float | None,
    sender: ActorRef | None,
    path: str,
) -> Any:
    """Ask ``order[0]``, then each next routee every ``interval`` seconds (0: all at
    once), and return the first reply. Losers are cancelled (their late replies are
    dead letters). All failed: the first error; nothing by the deadline: AskTimeout."""
    limit = within if timeout is None else min(within, timeout)
    result: list[Any] = []
    errors: list[BaseException] = []
    pending = len(order)

    async with trio.open_nursery() as nursery:

        async def one(ref: ActorRef, delay: float) -> None:
            nonlocal pending
            if delay:
                await trio.sleep(delay)
            try:
                value = await ref.ask(message, timeout=math.inf, sender=sender)
            except Exception as exc:
                errors.append(exc)
                pending -= 1
                if not pending:
                    nursery.cancel_scope.cancel()
                return
            if not result:
                result.append(value)
                nursery.cancel_scope.cancel()

        nursery.cancel_scope.deadline = trio.current_time() + limit
        for index, ref in enumerate(order):
            nursery.start_soon(one, ref, index * interval)
    if result:
        return result[0]
    if errors and not pending:
        raise errors[0]
    raise AskTimeout(path, limit, message)


_MANAGEMENT: frozenset[type] = frozenset()  # filled below, once the classes exist
_get_ident = threading.get_ident


class RouterCell(ActorCell):
    """The cell of a router (the cell class hook of :class:`Router`): it routes ordinary
    messages in the sender's task, straight to the chosen routees, so a routed message
    crosses one mailbox, not two (what Akka does too). Management messages,
    ``Broadcast``, ``Terminated`` and ``PoisonPill`` go to the router's own mailbox.
    While anything waits in that mailbox (e.g. messages sent before the router started),
    new messages queue behind it, so each sender's order is kept."""

    __slots__ = ("_logic", "_pick", "_routees")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._logic: RoutingLogic[ActorRef] | None = None  # set once routees are known
        # The logic's select_one when it picks one routee per message (the fast path).
        self._pick: Callable[[Any, Sequence[ActorRef]], ActorRef | None] | None = None
        self._routees: tuple[ActorRef, ...] = ()

    def _route(self, logic: RoutingLogic[ActorRef] | None, routees: tuple[ActorRef, ...]) -> None:
        """Route senders' messages with ``logic`` over ``routees`` from now on (``None``:
        every message goes to the router's own mailbox)."""
        self._logic = logic
        self._pick = logic.select_one if isinstance(logic, SingleRoutingLogic) else None
        self._routees = routees

    def _finalize(self) -> None:
        self._route(None, ())
        super()._finalize()

    def _direct(self, message: Any) -> bool:
        return (
            self._logic is not None
            and self._thread == _get_ident()
            and not self._mailbox
            and self._state != DEAD
            and message.__class__ not in _MANAGEMENT
        )

    def tell(self, message: Any, sender: ActorRef | None) -> None:
        # The per-message path: _direct() inlined for a one-routee logic (a stopped
        # router has none). The caller's thread is checked by the routee's own tell (a
        # direct route needs the routees in the router's thread anyway).
        pick = self._pick
        if pick is not None and not self._mailbox and message.__class__ not in _MANAGEMENT:
            target = pick(message, self._routees)
            if target is None:
                self.system._dead_letter(message, sender, self.ref, DeadLetterReason.NO_ROUTEES)
                return
            cell = target._cell
            if cell is None:
                cell = target._resolve()
            cell.tell(message, sender)
            return
        logic = self._logic
        if (
            logic is None
            or self._mailbox
            or message.__class__ in _MANAGEMENT
            or self._thread != _get_ident()
            or self._state == DEAD
        ):
            super().tell(message, sender)
            return
        targets = logic.select(message, self._routees)
        if not targets:
            self.system._dead_letter(message, sender, self.ref, DeadLetterReason.NO_ROUTEES)
            return
        for target in targets:
            cell = target._cell
            if cell is None:
                cell = target._resolve()
            cell.tell(message, sender)

    async def send(self, message: Any, sender: ActorRef | None) -> None:
        if not self._direct(message):
            await super().send(message, sender)
            return
        assert self._logic is not None
        targets = self._logic.select(message, self._routees)
        if not targets:
            await super().send(message, sender)  # the router dead-letters it
            return
        for target in targets:
            await target.send(message, sender)

    async def ask(self, message: Any, timeout: float | None, sender: ActorRef | None) -> Any:
        if not self._direct(message):
            return await super().ask(message, timeout, sender)
        logic = self._logic
        assert logic is not None
        first_reply = ScatterGatherFirstCompletedRouting | TailChoppingRouting
        if isinstance(logic, first_reply) and self._routees:
            routees, interval = _ask_order(logic, message, self._routees)
            return await _first_reply(
                message,
                routees,
                interval=interval,
                within=logic.within,
                timeout=timeout,
                sender=sender,
                path=self.ref.path,
            )
        targets = logic.select(message, self._routees)
        if not targets:
            return await super().ask(message, timeout, sender)  # dead letter + ActorDead
        first, *rest = targets
        for target in rest:
            target.tell(message, sender)
        return await first.ask(message, timeout=timeout, sender=sender)


def _check_number(what: str, value: object, *, low: float, integer: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int if integer else int | float)
    if not ok or not value >= low:  # type: ignore[operator]
        kind = "an int" if integer else "a number"
        raise ValueError(f"{what} must be {kind} >= {low}, got {value!r}")


@attrs.frozen
class Resizer:
    """Grows and shrinks a pool router with the pressure on its routees, checked every
    ``interval`` seconds (a timer of the router, so on trio's clock).

    A routee is *busy* when at least ``pressure_threshold`` messages wait in its
    mailbox. When every routee is busy, the pool grows by ``ceil(rampup_rate * size)``
    (at least 1); when fewer than ``backoff_threshold`` of them are busy, it shrinks by
    ``floor(backoff_rate * size)`` (at least 1 once it is above ``lower``). The size
    always stays within ``[lower, upper]``. Shrinking stops the newest routees first
    (each finishes its current message; what is left in its mailbox goes to dead
    letters, as for any stop)."""

    lower: int = 1
    upper: int = 10
    pressure_threshold: int = 1
    rampup_rate: float = 0.2
    backoff_threshold: float = 0.3
    backoff_rate: float = 0.1
    interval: float = 1.0

    def __attrs_post_init__(self) -> None:
        _check_number("lower", self.lower, low=0, integer=True)
        _check_number("upper", self.upper, low=1, integer=True)
        if self.upper < self.lower:
            raise ValueError(f"upper ({self.upper}) must not be below lower ({self.lower})")
        _check_number("pressure_threshold", self.pressure_threshold, low=1, integer=True)
        for what in ("rampup_rate", "backoff_threshold", "backoff_rate"):
            _check_number(what, getattr(self, what), low=0)
        if not self.interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {self.interval!r}")

    def change(self, mailbox_sizes: Sequence[int]) -> int:
        """How many routees to add (> 0) or remove (< 0), given each routee's mailbox
        size."""
        size = len(mailbox_sizes)
        if size < self.lower:
            return self.lower - size
        if size > self.upper:
            return self.upper - size
        if not size:
            return 0
        busy = sum(1 for n in mailbox_sizes if n >= self.pressure_threshold)
        delta = 0
        if busy == size:
            delta = max(1, math.ceil(self.rampup_rate * size))
        elif busy / size < self.backoff_threshold:
            delta = -max(1, math.floor(self.backoff_rate * size))
        return max(self.lower, min(self.upper, size + delta)) - size


@attrs.frozen
class _Resize:
    """The resizer's timer tick (sent by a pool router to itself)."""


class Router(Actor):
    """Routes every message it receives to routees chosen by ``logic`` (a
    :class:`RoutingLogic` such as :class:`RoundRobinRouting` or :class:`ConsistentHashingRouting`).

    A **pool** router (``pool=factory, size=n``) spawns ``n`` routees as its own
    children, so it supervises them with its ``supervisor_strategy`` (by default,
    restarted in place on failure: their refs stay routees). A **group** router
    (``routees=[refs]``) routes to existing actors. Either way the router watches its
    routees and drops those that stop.

    A routed message keeps its sender, and an ``ask`` sent to the router is answered
    by the routee that gets it (see :meth:`ActorContext.forward`). With several
    routees chosen (broadcast), the first one answers an ask and the others get the
    message as a plain one. A message arriving while there is no routee goes to dead
    letters with reason ``no_routees``.

    Management messages (use ``ask``): :class:`GetRoutees`, :class:`AddRoutee`,
    :class:`RemoveRoutee`, :class:`AdjustPoolSize`; :class:`Broadcast` wraps a message
    for every routee.
    """

    def __init__(
        self,
        logic: RoutingLogic[ActorRef],
        *,
        pool: Callable[..., Actor] | None = None,
        size: int = 0,
        routees: Iterable[ActorRef] = (),
        resizer: Resizer | None = None,
    ) -> None:
        if not isinstance(logic, RoutingLogic):
            raise TypeError(f"logic must be a RoutingLogic, got {logic!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"size must be an int >= 0, got {size!r}")
        group = tuple(routees)
        if pool is not None and group:
            raise ValueError("a router is a pool (pool=, size=) or a group (routees=), not both")
        if pool is None and size:
            raise ValueError("size= needs pool= (the factory of the routees)")
        if resizer is not None and (pool is None or not isinstance(resizer, Resizer)):
            raise ValueError("resizer= needs pool= and an actors.Resizer")
        for ref in group:
            if not isinstance(ref, ActorRef):
                raise TypeError(f"routees must be ActorRefs, got {ref!r}")
        self.logic = logic
        self._pool = pool
        self._size = size
        self._routees: tuple[ActorRef, ...] = ()
        self._initial = group
        self._resizer = resizer

    _cell_class = RouterCell

    def pre_start(self) -> None:
        for ref in self._initial:
            self._add(ref)
        self._initial = ()
        if self._pool is not None:
            self._grow(self._size)
        if self._resizer is not None:
            self.context.timers.start_periodic(_Resize, _Resize(), self._resizer.interval)

    @property
    def routees(self) -> tuple[ActorRef, ...]:
        """The current routees, in routing order."""
        return self._routees

    def receive(self, message: Any) -> Any:
        cls = message.__class__
        context = self.context
        if cls is Broadcast:
            routees = self._routees
            if not routees:
                self._no_routees(message)
                return None
            first, *rest = routees
            sender = context.sender
            for ref in rest:
                ref.tell(message.message, sender)
            self._forward_as(first, message.message)
            return None
        if cls is Terminated:
            if message.ref in self._routees:
                self._remove(message.ref)
                return None
            self.unhandled(message)
            return None
        if cls is GetRoutees:
            return self._routees
        if cls is AddRoutee:
            self._add(message.ref)
            return None
        if cls is RemoveRoutee:
            self._remove(message.ref, stop=self._pool is not None)
            return None
        if cls is AdjustPoolSize:
            self._adjust(message.change)
            return None
        if cls is _Resize:
            assert self._resizer is not None
            change = self._resizer.change([ref.stats().mailbox for ref in self._routees])
            if change:
                self._adjust(change)
            return None
        if self._ask_first_reply(message):
            return None
        targets = self.logic.select(message, self._routees)
        if not targets:
            self._no_routees(message)
            return None
        if len(targets) == 1:
            context.forward(targets[0])
            return None
        sender = context.sender
        for ref in targets[1:]:
            ref.tell(message, sender)
        context.forward(targets[0])
        return None

    # -- helpers ---------------------------------------------------------------------------

    def _ask_first_reply(self, message: Any) -> bool:
        """An ask that reached the router's mailbox (e.g. before it had started) under
        scatter-gather or tail-chopping: answer it from a task of the system, so that
        the router goes on with its next message meanwhile."""
        logic = self.logic
        cell = self._router_cell()
        current = cell._current
        slot = None if current is None else current[2]
        if not isinstance(logic, ScatterGatherFirstCompletedRouting | TailChoppingRouting):
            return False
        if not isinstance(slot, Reply) or not self._routees:
            return False
        routees, interval = _ask_order(logic, message, self._routees)
        cell._current_stashed = True  # answered by the task below, not by this handler
        sender = self.context.sender
        path = cell.ref.path

        async def answer() -> None:
            try:
                value = await _first_reply(
                    message,
                    routees,
                    interval=interval,
                    within=logic.within,
                    timeout=slot.timeout,
                    sender=sender,
                    path=path,
                )
            except Exception as exc:
                cell._complete(slot, None, exc)
            else:
                cell._complete(slot, value, None)

        cell.system._nursery.start_soon(answer, name=f"{path} first reply")
        return True

    def _router_cell(self) -> RouterCell:
        cell = self._actor_cell
        assert isinstance(cell, RouterCell), "a Router is made by spawn"
        return cell

    def _describe_details(self) -> dict[str, object]:
        return {"routing": type(self.logic).__name__, "routees": len(self._routees)}

    def _forward_as(self, target: ActorRef, payload: Any) -> None:
        """Forward the current message's reply slot and sender with another payload."""
        cell = self._router_cell()
        current = cell._current
        assert current is not None
        cell._current = (payload, current[1], current[2])
        try:
            self.context.forward(target)
        finally:
            cell._current = current

    def _no_routees(self, message: Any) -> None:
        context = self.context
        context.system._dead_letter(
            message, context.sender, context.ref, DeadLetterReason.NO_ROUTEES
        )

    def _add(self, ref: ActorRef) -> None:
        if ref in self._routees:
            return
        self.context.watch(ref)
        self._set((*self._routees, ref))

    def _remove(self, ref: ActorRef, *, stop: bool = False) -> None:
        if ref not in self._routees:
            return
        self._set(tuple(r for r in self._routees if r != ref))
        context = self.context
        context.unwatch(ref)
        if stop and context.child(ref.name) == ref:
            context.stop(ref)

    def _set(self, routees: tuple[ActorRef, ...]) -> None:
        self._routees = routees
        self.logic.routees_changed(routees)
        self._router_cell()._route(self.logic, routees)  # senders now route by themselves

    def post_stop(self) -> None:
        self._router_cell()._route(None, ())

    def _grow(self, count: int) -> None:
        assert self._pool is not None
        for _ in range(count):
            self._add(self.context.spawn(self._pool))

    def _adjust(self, change: int) -> None:
        if self._pool is None:
            raise ValueError("AdjustPoolSize is for pool routers; this one routes to a group")
        if isinstance(change, bool) or not isinstance(change, int):
            raise TypeError(f"AdjustPoolSize.change must be an int, got {change!r}")
        if change > 0:
            self._grow(change)
        else:
            for ref in self._routees[::-1][:-change]:
                self._remove(ref, stop=True)


_MANAGEMENT = frozenset(
    {
        Broadcast,
        GetRoutees,
        AddRoutee,
        RemoveRoutee,
        AdjustPoolSize,
        Terminated,
        _Resize,
        PoisonPill.__class__,  # stops the router itself (and a pool's routees with it)
    }
)
