"""``Router``: an actor that passes each message on to routees chosen by a routing logic."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from ._actor import Actor
from ._cell import DEAD
from ._context import ActorContext
from ._messages import DeadLetterReason, Terminated
from ._ref import ActorRef
from ._routing import RoutingLogic


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


class RouterContext(ActorContext):
    """The cell of a router: it routes ordinary messages in the sender's task, straight
    to the chosen routees, so a routed message crosses one mailbox, not two (what Akka
    does too). Management messages, ``Broadcast`` and ``Terminated`` go to the router's
    own mailbox. While anything waits in that mailbox (e.g. messages sent before the
    router started), new messages queue behind it, so each sender's order is kept."""

    __slots__ = ("_logic", "_routees")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._logic: RoutingLogic[ActorRef] | None = None  # set once routees are known
        self._routees: tuple[ActorRef, ...] = ()

    def _direct(self, message: Any) -> bool:
        return (
            self._logic is not None
            and self._thread == _get_ident()
            and not self._mailbox
            and self._state != DEAD
            and message.__class__ not in _MANAGEMENT
        )

    def _tell(self, message: Any, sender: ActorRef | None) -> None:
        # The per-message path: _direct() inlined.
        logic = self._logic
        if (
            logic is None
            or self._mailbox
            or message.__class__ in _MANAGEMENT
            or self._thread != _get_ident()
            or self._state == DEAD
        ):
            super()._tell(message, sender)
            return
        targets = logic.select(message, self._routees)
        if not targets:
            self.system._dead_letter(message, sender, self.ref, DeadLetterReason.NO_ROUTEES)
            return
        for target in targets:
            cell = target._cell
            if cell is None:
                cell = target._resolve()
            cell._tell(message, sender)

    async def _send(self, message: Any, sender: ActorRef | None) -> None:
        if not self._direct(message):
            await super()._send(message, sender)
            return
        assert self._logic is not None
        targets = self._logic.select(message, self._routees)
        if not targets:
            await super()._send(message, sender)  # the router dead-letters it
            return
        for target in targets:
            await target.send(message, sender)

    async def _ask(self, message: Any, timeout: float | None, sender: ActorRef | None) -> Any:
        if not self._direct(message):
            return await super()._ask(message, timeout, sender)
        assert self._logic is not None
        targets = self._logic.select(message, self._routees)
        if not targets:
            return await super()._ask(message, timeout, sender)  # dead letter + ActorDead
        first, *rest = targets
        for target in rest:
            target.tell(message, sender)
        return await first.ask(message, timeout=timeout, sender=sender)


class Router(Actor):
    """Routes every message it receives to routees chosen by ``logic`` (a
    :class:`RoutingLogic` such as :class:`RoundRobin` or :class:`ConsistentHashing`).

    A **pool** router (``pool=factory, size=n``) spawns ``n`` routees as its own
    children, so it supervises them with its ``supervisor_strategy`` (by default,
    restarted in place on failure: their refs stay routees). A **group** router
    (``routees=[refs]``) routes to existing actors. Either way the router watches its
    routees and drops those that stop.

    A routed message keeps its sender, and an ``ask`` sent to the router is answered
    by the routee that gets it (see :meth:`ActorContext.forward`). With several
    routees chosen (broadcast), the first one answers an ask and the others get the
    message as a plain one. A message arriving while there is no routee goes to dead
    letters with reason ``no-routees``.

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
        for ref in group:
            if not isinstance(ref, ActorRef):
                raise TypeError(f"routees must be ActorRefs, got {ref!r}")
        self.logic = logic
        self._pool = pool
        self._size = size
        self._routees: tuple[ActorRef, ...] = ()
        self._initial = group

    _cell_class = RouterContext

    def pre_start(self) -> None:
        for ref in self._initial:
            self._add(ref)
        self._initial = ()
        if self._pool is not None:
            self._grow(self._size)

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

    def _forward_as(self, target: ActorRef, payload: Any) -> None:
        """Forward the current message's reply slot and sender with another payload."""
        context = self.context
        current = context._current
        assert current is not None
        context._current = (payload, current[1], current[2])
        try:
            context.forward(target)
        finally:
            context._current = current

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
        context = self.context
        if isinstance(context, RouterContext):  # senders now route by themselves
            context._routees = routees
            context._logic = self.logic

    def post_stop(self) -> None:
        context = self.context
        if isinstance(context, RouterContext):
            context._logic = None

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
    {Broadcast, GetRoutees, AddRoutee, RemoveRoutee, AdjustPoolSize, Terminated}
)


def mailbox_size(ref: ActorRef) -> int:
    """How many messages wait in the mailbox of ``ref`` (0 for a stopped actor): the
    size function for ``SmallestMailbox(actors.mailbox_size)``."""
    cell = ref._resolve()
    return len(cell._mailbox) if cell._state != DEAD else 0


for _cls in (Broadcast, GetRoutees, AddRoutee, RemoveRoutee, AdjustPoolSize, Router, RouterContext):
    _cls.__module__ = "actors"
mailbox_size.__module__ = "actors"
