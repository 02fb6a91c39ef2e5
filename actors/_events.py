"""A minimal event bus: actors subscribe to event types, anyone publishes.

It carries the runtime's own events (``DeadLetter``, ``ActorStarted``, ``ActorStopped``,
``ActorFailed``) and any user event. Topic patterns arrive with the full event bus.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._cell import DEAD
from ._errors import ActorDead
from ._ref import ActorRef

if TYPE_CHECKING:
    from ._system import ActorSystem


class EventBus:
    """``system.events``: publish an event to every actor subscribed to its type.

    A subscription to a class also receives instances of its subclasses. Each subscriber
    receives events in publish order, through its own mailbox: publishing never blocks
    and never raises for a subscriber's sake; a full subscriber mailbox applies its
    overflow policy (a ``backpressure`` mailbox that is full turns the event into a dead
    letter). Subscriptions end when the subscriber stops.
    """

    __slots__ = ("_by_ref", "_subscriptions", "_system")

    def __init__(self, system: ActorSystem) -> None:
        self._system = system
        self._subscriptions: dict[type, dict[ActorRef, None]] = {}
        self._by_ref: dict[ActorRef, set[type]] = {}

    def subscribe(self, ref: ActorRef, event_type: type) -> bool:
        """Deliver future events of ``event_type`` (or a subclass) to ``ref``. Returns
        ``False`` if it was already subscribed to exactly this type."""
        self._system._check_thread()
        if not isinstance(event_type, type):
            raise TypeError(f"subscribe() takes an event class, got {event_type!r}")
        try:
            if ref._resolve()._state == DEAD:
                return False  # a stopped actor receives nothing: no subscription to end
        except ActorDead:
            return False
        subscribers = self._subscriptions.setdefault(event_type, {})
        if ref in subscribers:
            return False
        subscribers[ref] = None
        self._by_ref.setdefault(ref, set()).add(event_type)
        return True

    def unsubscribe(self, ref: ActorRef, event_type: type | None = None) -> None:
        """End ``ref``'s subscription to ``event_type``, or to everything if omitted."""
        types = self._by_ref.get(ref)
        if not types:
            return
        for t in [event_type] if event_type is not None else list(types):
            subscribers = self._subscriptions.get(t)
            if subscribers is not None and subscribers.pop(ref, False) is None:
                types.discard(t)
                if not subscribers:
                    del self._subscriptions[t]
        if not types:
            del self._by_ref[ref]

    def publish(self, event: Any) -> int:
        """Send ``event`` to every subscriber of its type or one of its base classes
        (each subscriber once). Returns how many subscribers it was offered to.

        Under ``roundtrip_messages`` each subscriber gets its own unpickled copy; an event
        that cannot be pickled becomes a dead letter (reason ``"unpicklable"``)."""
        self._system._check_thread()
        return self._publish(event, True)

    def _publish_runtime(self, event: Any) -> int:
        """Publish an event of the runtime itself (dead letters, lifecycle): delivered
        as is, never round-tripped, since it may carry what could not be delivered."""
        return self._publish(event, False)

    def _publish(self, event: Any, copy: bool) -> int:
        subscriptions = self._subscriptions
        if not subscriptions:
            return 0
        targets: dict[ActorRef, None] = {}
        for cls in type(event).__mro__:
            subscribers = subscriptions.get(cls)
            if subscribers:
                targets.update(subscribers)
        for ref in targets:
            try:
                cell = ref._resolve()
            except ActorDead:  # its system has ended: the subscription ends too
                self.unsubscribe(ref)
                continue
            cell._offer(event, None, copy)  # to a stopped actor: a dead letter
            if cell._state == DEAD:  # of another system, which could not tell this bus
                self.unsubscribe(ref)
        return len(targets)

    def subscribers(self, event_type: type) -> list[ActorRef]:
        """The refs subscribed to exactly ``event_type``."""
        return list(self._subscriptions.get(event_type, ()))

    def _remove_subscriber(self, ref: ActorRef) -> None:
        if ref in self._by_ref:
            self.unsubscribe(ref)


EventBus.__module__ = "actors"
