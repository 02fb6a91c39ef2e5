"""Events, a persistent actor and stream helpers shared by the outbox tests
(importable, so that the events pickle by reference, also in the child process of the
kill tests)."""

from __future__ import annotations

from typing import Any

import attrs
import trio

from actors import Actor
from actors.persistence import PersistentActor
from actors.streams import StreamConfig, StreamEngine, StreamEvent

ORDERS = StreamConfig("ORDERS", ["orders.>"])
DEAD_LETTERS = StreamConfig("OUTBOX_DEAD_LETTERS", ["outbox-deadletters.>"])


@attrs.frozen
class Placed:
    """An event: ``item`` placed on order ``order``."""

    order: str
    item: str


@attrs.frozen
class Place:
    """A command: place these items, persisted as one write (one commit)."""

    items: tuple[str, ...]


class Order(PersistentActor):
    """Persists a :class:`Placed` per item, tagged ``order``; answers its last seq."""

    def __init__(self, name: str) -> None:
        self.persistence_id = f"order-{name}"
        self.items: list[str] = []

    def apply(self, event: Any) -> None:
        self.items.append(getattr(event, "item", "?"))

    def tags_for(self, event: Any) -> set[str]:
        return {"order"}

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Place):
            await self.persist_all([Placed(self.persistence_id, item) for item in message.items])
        else:
            await self.persist(message)
        return self.last_seq


def by_pid(envelope: Any) -> str:
    """The outbox's subject function of these tests: ``orders.<persistence id>``."""
    return f"orders.{envelope.persistence_id}"


async def stored(engine: StreamEngine, stream: str = "ORDERS") -> list[tuple[str, str, bytes]]:
    """Every event of ``stream``, oldest first: ``(subject, message id, data)``."""
    state = await engine.stream_state(stream)
    found = []
    for seq in range(state.first_seq, state.last_seq + 1):
        event = await engine.get(stream, seq)
        assert event is not None, f"seq {seq} of {stream} is missing"
        found.append((event.subject, event.headers.get("Nats-Msg-Id", ""), event.data))
    return found


class Shipping(Actor):
    """A durable subscriber that records ``(msg_id, item)`` of every event delivered to
    it in ``handled``, and sets ``done`` once it has seen ``count`` message ids."""

    def __init__(self, handled: list[tuple[str | None, str]], done: trio.Event, count: int):
        self.handled = handled
        self.done = done
        self.count = count

    def receive(self, message: StreamEvent) -> None:
        self.handled.append((message.msg_id, message.event.item))
        if len({msg_id for msg_id, _ in self.handled}) >= self.count:
            self.done.set()
