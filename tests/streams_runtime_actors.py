"""Events, actors and helpers shared by the tests of the durable-streams runtime
(tests/test_streams_runtime*.py)."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from actors import Actor, ActorSystem, open_system
from actors.streams import StreamConfig, StreamEngine, StreamEvent, Streams, open_streams

ORDERS = StreamConfig("ORDERS", ["orders.>"])
PAYMENTS = StreamConfig("PAYMENTS", ["payments.*"])


@attrs.frozen
class OrderPlaced:
    order_id: int
    total: float = 1.0


class PaymentDeclined(Exception):
    """What a failing handler raises."""


class Log:
    """What actors saw, and a way to wait until they saw enough."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self._changed = trio.Event()

    def add(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, count: int, *, within: float = 300) -> list[Any]:
        with trio.fail_after(within):
            while len(self.items) < count:
                await self._changed.wait()
        return self.items


@attrs.frozen
class Seen:
    who: str
    order_id: int
    seq: int
    delivered: int
    at: float
    subject: str


class Recorder(Actor):
    """Records every StreamEvent; fails as ``fail`` says (order id, attempt) -> bool;
    handling takes ``busy`` seconds."""

    def __init__(
        self,
        log: Log,
        who: str = "a",
        *,
        busy: float = 0.0,
        fail: Callable[[int, int], bool] | None = None,
    ) -> None:
        self.log = log
        self.who = who
        self.busy = busy
        self.fail = fail

    async def receive(self, message: Any) -> Any:
        if not isinstance(message, StreamEvent):
            if message == "nap":
                await trio.sleep(self.busy)
            return None
        event = message.event
        self.log.add(
            Seen(
                self.who,
                event.order_id,
                message.seq,
                message.delivered,
                trio.current_time(),
                message.subject,
            )
        )
        if self.busy:
            await trio.sleep(self.busy)
        if self.fail is not None and self.fail(event.order_id, message.delivered):
            raise PaymentDeclined(f"order {event.order_id} declined")
        return None


@asynccontextmanager
async def running(
    engine: StreamEngine, **options: Any
) -> AsyncIterator[tuple[ActorSystem, Streams]]:
    options.setdefault("streams", [ORDERS, PAYMENTS])
    if "codec" not in options:
        options.setdefault("types", [OrderPlaced])
    async with open_system("shop") as system, open_streams(system, engine, **options) as streams:
        yield system, streams


async def eventually(check: Callable[[], bool], *, within: float = 300) -> None:
    """Wait (in virtual time) until ``check()`` holds."""
    with trio.fail_after(within):
        while not check():  # noqa: ASYNC110 - (figures of the runtime, polled)
            await trio.sleep(0.01)


async def publish_orders(streams: Streams, ids: range, subject: str = "orders.eu") -> None:
    for order_id in ids:
        await streams.publish(f"{subject}.created", OrderPlaced(order_id))


INF = math.inf
