"""The event bus: topic pub/sub with NATS-style wildcards, and subscriptions by type.

It carries user events and the runtime's own, under reserved topics: dead letters on
``system.deadletters`` and lifecycle events on ``system.lifecycle.<kind>``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Final, final

import trio

from ._errors import ActorDead
from ._messages import (
    ActorFailed,
    ActorRestarted,
    ActorStarted,
    ActorStopped,
    DeadLetter,
    SupervisorGaveUp,
)
from ._public import NoPublicConstructor
from ._ref import ActorRef
from ._topics import TopicTrie, check_pattern, check_topic

if TYPE_CHECKING:
    from ._cell import Cell
    from ._system import ActorSystem

RESERVED_PREFIX: Final = "system"
"""The first segment of the runtime's own topics: users may subscribe, not publish."""

_RUNTIME_TOPICS: Final[dict[type, str]] = {
    DeadLetter: "system.deadletters",
    ActorStarted: "system.lifecycle.started",
    ActorRestarted: "system.lifecycle.restarted",
    ActorFailed: "system.lifecycle.failed",
    ActorStopped: "system.lifecycle.stopped",
    SupervisorGaveUp: "system.lifecycle.gave_up",
}


@final
class EventBus(metaclass=NoPublicConstructor):
    """``system.events``: publish an event on a topic; actors subscribe to topic patterns
    or to event types.

    Topics are dot-separated (``orders.eu.created``). A pattern may use ``*`` for exactly
    one segment and, as its last segment, ``>`` for one or more (``orders.>``), as NATS
    subjects do. A subscription to a class receives every event of that class or a
    subclass, whatever its topic. A subscriber gets each event once, even when several
    of its subscriptions match.

    Delivery goes through each subscriber's mailbox, in publish order per subscriber.
    :meth:`publish` never blocks and never raises for a subscriber's sake: a full
    mailbox applies its overflow policy (a full ``backpressure`` mailbox turns the
    event into a dead letter). :meth:`send` waits for room in every bounded subscriber
    instead. Subscriptions end when the subscriber stops.

    The runtime publishes dead letters on ``system.deadletters`` and lifecycle events
    on ``system.lifecycle.started``, ``.restarted``, ``.failed``, ``.stopped`` and
    ``.gave_up``; topics under ``system.`` are reserved for it. The runtime makes the
    bus of each system; it cannot be constructed or subclassed.
    """

    __slots__ = ("_by_type", "_subscriptions", "_system", "_topics", "_types_of")

    def __init__(self, system: ActorSystem) -> None:
        self._system = system
        self._topics: TopicTrie[ActorRef] = TopicTrie()
        self._by_type: dict[type, dict[ActorRef, None]] = {}
        self._types_of: dict[ActorRef, set[type]] = {}
        # How many subscriptions exist: the runtime skips building events when 0.
        self._subscriptions = 0

    # -- subscriptions ---------------------------------------------------------------------

    def subscribe(self, ref: ActorRef, pattern: str | type) -> bool:
        """Deliver future events that match ``pattern`` (a topic pattern, or an event
        class) to ``ref``. Returns ``False`` if it was already subscribed with exactly
        that pattern, or if ``ref`` has stopped (it would receive nothing).

        Raises ``ValueError`` for a malformed pattern, ``TypeError`` for anything that
        is neither a string nor a class."""
        self._system._check_thread()
        if isinstance(pattern, str):
            check_pattern(pattern)
        elif not isinstance(pattern, type):
            raise TypeError(
                f"subscribe() takes a topic pattern (str) or an event class, got {pattern!r}"
            )
        try:
            if ref._resolve().is_dead():
                return False  # a stopped actor receives nothing: no subscription to end
        except ActorDead:
            return False
        if isinstance(pattern, str):
            added = self._topics.add(pattern, ref)
        else:
            subscribers = self._by_type.setdefault(pattern, {})
            added = ref not in subscribers
            if added:
                subscribers[ref] = None
                self._types_of.setdefault(ref, set()).add(pattern)
        if added:
            self._subscriptions += 1
        return added

    def unsubscribe(self, ref: ActorRef, pattern: str | type | None = None) -> None:
        """End ``ref``'s subscription to ``pattern``, or all its subscriptions if omitted.
        Unknown subscriptions are ignored."""
        self._system._check_thread()
        if pattern is None:
            self._remove_subscriber(ref)
            return
        if isinstance(pattern, str):
            if self._topics.remove(pattern, ref):
                self._subscriptions -= 1
            return
        types = self._types_of.get(ref)
        if types is None or pattern not in types:
            return
        types.discard(pattern)
        if not types:
            del self._types_of[ref]
        subscribers = self._by_type[pattern]
        del subscribers[ref]
        if not subscribers:
            del self._by_type[pattern]
        self._subscriptions -= 1

    def subscribers(self, pattern: str | type) -> list[ActorRef]:
        """The refs subscribed with exactly ``pattern`` (a topic pattern or a class)."""
        self._system._check_thread()
        if isinstance(pattern, str):
            check_pattern(pattern)
            topics = self._topics
            return [ref for ref in topics.values() if pattern in topics.patterns_of(ref)]
        return list(self._by_type.get(pattern, ()))

    def _remove_subscriber(self, ref: ActorRef) -> None:
        """End every subscription of ``ref`` (it stopped)."""
        removed = self._topics.clear_value(ref)
        for event_type in self._types_of.pop(ref, ()):
            subscribers = self._by_type[event_type]
            del subscribers[ref]
            if not subscribers:
                del self._by_type[event_type]
            removed += 1
        self._subscriptions -= removed

    # -- publishing ------------------------------------------------------------------------

    def publish(self, topic: str, event: Any) -> int:
        """Offer ``event`` to every subscriber whose pattern matches ``topic`` or who
        subscribed to the class of ``event`` or one of its base classes (its MRO; classes
        registered with an ABC do not count), each once. Never blocks. Returns how many
        subscribers it was offered to.

        Under ``roundtrip_messages`` each subscriber gets its own unpickled copy; an event
        that cannot be pickled becomes a dead letter (reason ``"unpicklable"``). Raises
        ``ValueError`` for a malformed topic or one under the reserved ``system.``."""
        self._system._check_thread()
        _check_user_topic(topic)
        targets = self._targets(topic, event)
        for cell in targets:
            cell.offer(event, None)  # to a stopped actor: a dead letter
        return len(targets)

    async def send(self, topic: str, event: Any) -> int:
        """Like :meth:`publish`, but wait for room in each bounded subscriber's mailbox,
        one subscriber after the other (backpressure from the slowest). Cancelled while
        waiting, the subscribers not yet served do not get the event. Under
        ``roundtrip_messages`` an unpicklable event raises :class:`UnpicklableMessage`
        (as ``ref.send`` does) instead of becoming dead letters. A subscriber of a system
        running in another thread gets the event handed over, without waiting."""
        self._system._check_thread()
        _check_user_topic(topic)
        targets = self._targets(topic, event)
        here = threading.get_ident()
        for cell in targets:
            if cell._thread == here:
                await cell.send(event, None)
            else:  # a subscriber of a system in another thread: handed over, no wait
                cell.offer(event, None)
        if not targets:
            await trio.lowlevel.checkpoint()
        return len(targets)

    def _publish_runtime(self, event: Any) -> int:
        """Publish an event of the runtime itself (dead letters, lifecycle) on its
        reserved topic: delivered as is, never round-tripped, since it may carry what
        could not be delivered."""
        targets = self._targets(_RUNTIME_TOPICS[type(event)], event)
        for cell in targets:
            cell.offer(event, None, False)
        return len(targets)

    def _targets(self, topic: str, event: Any) -> list[Cell]:
        """The live cells to deliver to, each once, in a stable order."""
        if not self._subscriptions:
            return []
        refs: Iterable[ActorRef] = self._topics.match(topic)  # each ref once
        by_type = self._by_type
        if by_type:
            unique = dict.fromkeys(refs)
            for cls in type(event).__mro__:
                subscribers = by_type.get(cls)
                if subscribers:
                    unique.update(subscribers)
            refs = unique
        cells = []
        for ref in refs:
            cell = ref._cell
            if cell is None:
                try:
                    cell = ref._resolve()
                except ActorDead:  # its system has ended: the subscription ends too
                    self._remove_subscriber(ref)
                    continue
            cells.append(cell)
            if cell.is_dead():  # of another system, which could not tell this bus
                self._remove_subscriber(ref)
        return cells


_checked: dict[str, None] = {}  # user topics found valid (bounded: cleared when full)


def _check_user_topic(topic: str) -> None:
    if type(topic) is str and topic in _checked:
        return
    check_topic(topic)
    if topic.partition(".")[0] == RESERVED_PREFIX:
        raise ValueError(
            f"topic {topic!r} is reserved: topics under '{RESERVED_PREFIX}.' carry the "
            "runtime's own events (subscribe to them; publish elsewhere)"
        )
    if type(topic) is str:
        if len(_checked) >= 1024:
            _checked.clear()
        _checked[topic] = None
