"""An event-driven order pipeline: topics, a consistent-hashing router, a broadcast audit.

Shows: orders published on the event bus under topics such as ``orders.eu.placed``; a
router subscribed to ``orders.>`` that keeps every customer's events on one worker
(consistent hashing on the customer), so each worker sees a customer's events in order;
an audit log that receives every event through its own ``*`` pattern (every event is
delivered to both subscribers); resizing the router's pool; and the dead letters of a
router left without routees.

Run it with ``python examples/order_pipeline.py``.
"""

from __future__ import annotations

from typing import Any

import attrs
import trio

import actors
import actors.routing


@attrs.frozen
class OrderEvent:
    customer: str
    order: int
    kind: str  # placed, paid, shipped


@attrs.frozen
class Report:
    """Broadcast to the workers: each answers with what it handled."""


class Worker(actors.Actor):
    """Handles the events of the customers the router gives it, in order."""

    def __init__(self) -> None:
        self.seen: dict[str, list[str]] = {}

    def receive(self, message: Any) -> Any:
        if isinstance(message, Report):
            return self.seen
        assert isinstance(message, OrderEvent)
        steps = self.seen.setdefault(message.customer, [])
        steps.append(f"{message.order}:{message.kind}")
        return None


class Audit(actors.Actor):
    """Keeps every event it receives, in arrival order."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def receive(self, message: Any) -> Any:
        if message == "log":
            return self.log
        if isinstance(message, OrderEvent):
            self.log.append(f"{message.customer}/{message.order}/{message.kind}")
        return None


def path_of(ref: actors.ActorRef) -> str:
    """Place routees on the hash ring by path: the same layout in every run."""
    return ref.path


def customer_of(event: Any) -> str:
    customer: str = event.customer
    return customer


async def main() -> None:
    async with actors.open_system("orders") as system:
        router = system.spawn(
            actors.routing.Router,
            actors.routing.ConsistentHashingRouting(customer_of, node_key=path_of),
            pool=Worker,
            size=3,
            name="workers",
        )
        audit = system.spawn(Audit, name="audit")
        system.events.subscribe(router, "orders.>")
        system.events.subscribe(audit, "orders.*.*")
        await system.idle()  # every actor has started

        customers = ["ada", "bob", "cy", "dee", "eve"]
        for order in range(1, 4):
            for n, customer in enumerate(customers):
                region = "eu" if n % 2 else "us"
                for kind in ("placed", "paid", "shipped"):
                    event = OrderEvent(customer, order * 10 + n, kind)
                    system.events.publish(f"orders.{region}.{kind}", event)
        await system.idle()  # every event has been handled

        owners: dict[str, list[str]] = {}
        in_order = True
        for routee in await router.ask(actors.routing.GetRoutees()):
            for customer, steps in (await routee.ask(Report())).items():
                owners.setdefault(customer, []).append(routee.name)
                n = customers.index(customer)
                expected = [
                    f"{order * 10 + n}:{kind}"
                    for order in range(1, 4)
                    for kind in ("placed", "paid", "shipped")
                ]
                in_order &= steps == expected
        print("every customer on exactly one worker:", all(len(w) == 1 for w in owners.values()))
        print("each customer's events in publish order:", in_order)
        print("workers in use:", len({w[0] for w in owners.values()}), "of 3")
        log = await audit.ask("log")
        print("audit entries:", len(log), "first:", log[0], "last:", log[-1])

        # Without routees, routed events become dead letters with a clear reason.
        dead: list[actors.DeadLetter] = []

        class Dead(actors.Actor):
            def receive(self, message: Any) -> None:
                dead.append(message)

        system.events.subscribe(system.spawn(Dead), "system.deadletters")
        await router.ask(actors.routing.AdjustPoolSize(-3))
        system.events.publish("orders.eu.placed", OrderEvent("fay", 99, "placed"))
        await system.idle()
        print("dead letters:", [(d.message.customer, str(d.reason)) for d in dead])


if __name__ == "__main__":
    trio.run(main)
