"""W7 event bus: publish throughput, (a) to 1, 100 and 1,000 subscribers of one topic
(events delivered/s), and (b) to 1 subscriber while 10, 1,000 and 100,000 unrelated
subscriptions exist (events published/s: matching must not slow down with them).

Every subscriber counts its events and the run ends when all have arrived. Baseline:
the same number of raw trio tasks, each draining its own unbounded memory channel, and a
publisher that ``send_nowait``s each event to every channel (a hand-written fan-out with
no matching at all).
"""

from __future__ import annotations

import math
import time

import trio
import trio.testing
from _common import Latch, Result, Row, best_seconds, drain, fmt_rate, fmt_ratio, main

import actors

DELIVERIES = 200_000  # events delivered per measurement (split over the subscribers)
UNRELATED = (10, 1_000, 100_000)
FANOUT = (1, 100, 1_000)


class Counter(actors.Actor):
    def __init__(self, expected: int, latch: Latch) -> None:
        self.left = expected
        self.latch = latch

    def receive(self, message: object) -> None:
        self.left -= 1
        if not self.left:
            self.latch.count_down()


def actors_publish(subscribers: int, unrelated: int, events: int) -> object:
    async def measure() -> float:
        latch = Latch(subscribers)
        async with actors.open_system("bench") as system:
            bus = system.events
            for _ in range(subscribers):
                bus.subscribe(system.spawn(Counter, events, latch), "orders.eu.created")
            if unrelated:
                idle = system.spawn(Counter, 1, Latch(1))
                for n in range(unrelated):
                    # Siblings at every level and wildcards elsewhere: nothing matches.
                    bus.subscribe(idle, f"orders.r{n % 100}.t{n}" if n % 2 else f"stock.{n}.>")
            await trio.testing.wait_all_tasks_blocked()
            publish = bus.publish
            start = time.perf_counter()
            for i in range(events):
                publish("orders.eu.created", i)
            await latch.done.wait()
            return time.perf_counter() - start

    return measure


def raw_publish(subscribers: int, events: int) -> object:
    async def measure() -> float:
        latch = Latch(subscribers)

        async def worker(receive: trio.MemoryReceiveChannel[int]) -> None:
            await drain(receive, events)
            latch.count_down()

        async with trio.open_nursery() as nursery:
            sends = []
            for _ in range(subscribers):
                send, receive = trio.open_memory_channel[int](math.inf)
                nursery.start_soon(worker, receive)
                sends.append(send.send_nowait)
            await trio.testing.wait_all_tasks_blocked()
            start = time.perf_counter()
            for i in range(events):
                for send_nowait in sends:
                    send_nowait(i)
            await latch.done.wait()
            return time.perf_counter() - start

    return measure


def run() -> Result:
    rows: list[Row] = []
    data: dict[str, float] = {}
    for subscribers in FANOUT:
        events = DELIVERIES // subscribers
        actor_s, raw_s = best_seconds(
            actors_publish(subscribers, 0, events),  # type: ignore[arg-type]
            raw_publish(subscribers, events),  # type: ignore[arg-type]
        )
        rate, raw_rate = DELIVERIES / actor_s, DELIVERIES / raw_s
        data[f"deliveries_per_s_{subscribers}_subscribers"] = rate
        rows.append(
            {
                "workload": f"W7 publish to {subscribers:,} subscriber(s)",
                "actors": fmt_rate(rate, "deliveries/s"),
                "baseline": fmt_rate(raw_rate, "deliveries/s"),
                "ratio": fmt_ratio(rate / raw_rate),
                "target": "none set (informational)",
                "met": "-",
            }
        )
    events = DELIVERIES // 2
    rates = []
    for unrelated in UNRELATED:
        actor_s, raw_s = best_seconds(
            actors_publish(1, unrelated, events),  # type: ignore[arg-type]
            raw_publish(1, events),  # type: ignore[arg-type]
        )
        rate, raw_rate = events / actor_s, events / raw_s
        rates.append(rate)
        data[f"publish_per_s_{unrelated}_unrelated"] = rate
        rows.append(
            {
                "workload": f"W7 publish, 1 subscriber, {unrelated:,} unrelated subscriptions",
                "actors": fmt_rate(rate, "events/s"),
                "baseline": fmt_rate(raw_rate, "events/s"),
                "ratio": fmt_ratio(rate / raw_rate),
                "target": "flat in unrelated subscriptions",
                "met": "yes" if rates[-1] >= 0.8 * rates[0] else "NO",
            }
        )
    return {"rows": rows, "data": data}


if __name__ == "__main__":
    main(run)
