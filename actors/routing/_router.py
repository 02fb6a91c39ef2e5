"""``Router``: an actor that passes each message on to routees chosen by a routing logic."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import attrs

from .._actor import Actor
from .._cell import ActorCell
from .._cell_state import DEAD
from .._envelope import Reply
from .._messages import DeadLetterReason, PoisonPill, Terminated
from .._ref import ActorRef
from ._first_reply import (
    ScatterGatherFirstCompletedRouting,
    TailChoppingRouting,
    ask_order,
    first_reply,
)
from ._logics import RoundRobinRouting, RoutingLogic, SingleRoutingLogic
from ._resizer import Resizer, _Resize


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


_MANAGEMENT: frozenset[type] = frozenset()  # filled below, once the classes exist
_get_ident = threading.get_ident


class RouterCell(ActorCell):
    """The cell of a router (the cell class hook of :class:`Router`): it routes ordinary
    messages in the sender's task, straight to the chosen routees, so a routed message
    crosses one mailbox, not two (what Akka does too). Management messages,
    ``Broadcast``, ``Terminated``, ``PoisonPill`` and ``Kill`` go to the router's own
    mailbox.
    While anything waits in that mailbox (e.g. messages sent before the router started),
    new messages queue behind it, so each sender's order is kept."""

    __slots__ = ("_logic", "_pick", "_rotation", "_routees")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._logic: RoutingLogic[ActorRef] | None = None  # set once routees are known
        # The logic's select_one when it picks one routee per message (the fast path).
        self._pick: Callable[[Any, Sequence[ActorRef]], ActorRef | None] | None = None
        self._routees: tuple[ActorRef, ...] = ()
        # The logic again when it is exactly RoundRobinRouting: its step is inlined in tell.
        self._rotation: RoundRobinRouting[ActorRef] | None = None

    def _route(self, logic: RoutingLogic[ActorRef] | None, routees: tuple[ActorRef, ...]) -> None:
        """Route senders' messages with ``logic`` over ``routees`` from now on (``None``:
        every message goes to the router's own mailbox)."""
        self._logic = logic
        self._pick = logic.select_one if isinstance(logic, SingleRoutingLogic) else None
        self._rotation = logic if type(logic) is RoundRobinRouting else None
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
        # The per-message paths: _direct() inlined, first for round-robin, then for any
        # one-routee logic (a stopped router has neither). The caller's thread is
        # checked by the routee's own tell (a direct route needs the routees in the
        # router's thread anyway).
        rotation = self._rotation
        routees = self._routees
        if (
            rotation is not None
            and rotation._routees is routees
            and not self._mailbox
            and message.__class__ not in _MANAGEMENT
        ):
            # RoundRobinRouting.select_one's serving step, inlined (it saves a call per
            # message; W8). Any other state of the rotation goes through select_one.
            i = rotation._at
            i = i + 1 if i < rotation._end else 0
            rotation._at = i
            target = routees[i]
            cell = target._cell
            if cell is None:
                cell = target._resolve()
            cell.tell(message, sender)
            return
        pick = self._pick
        if pick is not None and not self._mailbox and message.__class__ not in _MANAGEMENT:
            chosen = pick(message, routees)
            if chosen is None:
                self._check_thread()  # (else the routee's tell checks it)
                self.system._dead_letter(message, sender, self.ref, DeadLetterReason.NO_ROUTEES)
                return
            cell = chosen._cell
            if cell is None:
                cell = chosen._resolve()
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
        by_first_reply = ScatterGatherFirstCompletedRouting | TailChoppingRouting
        if isinstance(logic, by_first_reply) and self._routees:
            routees, interval = ask_order(logic, message, self._routees)
            return await first_reply(
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
            self.context.timers.start_at_fixed_rate(_Resize, _Resize(), self._resizer.interval)

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
            for ref in rest:  # (through the cell: the sender stays, even if None)
                ref._resolve().tell(message.message, sender)
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
        for ref in targets[1:]:  # (through the cell: the sender stays, even if None)
            ref._resolve().tell(message, sender)
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
        routees, interval = ask_order(logic, message, self._routees)
        cell._current_stashed = True  # answered by the task below, not by this handler
        sender = self.context.sender
        path = cell.ref.path

        async def answer() -> None:
            try:
                value = await first_reply(
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
        # PoisonPill and Kill (one class): they stop, or fail, the router itself (and a
        # pool's routees with it), not its routees.
        PoisonPill.__class__,
    }
)
