"""W8 routers: 200,000 messages told to a router over 4 routees, for each routing logic,
relative to telling the same routees directly (round-robin by the sender) in the same run.

Each routee counts down one shared total; the run ends when all have arrived (for
broadcast, every routee gets every message: 4 deliveries per message, while the rate
counts messages). The baseline of the router rows is the plain ``tell`` of trio-actors
to the same routees: what a router costs on top of sending to them yourself. A first row
measures that direct tell against raw trio (4 tasks draining memory channels, fed
round-robin with ``send_nowait``) in the same run.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable

import trio
import trio.testing
from _common import Latch, Result, Row, best_seconds, drain, fmt_rate, fmt_ratio, main

import actors
import actors.routing

MESSAGES = 200_000
ROUTEES = 4
TARGET = 0.8  # round-robin router vs direct tell (issue 4)


class Tally(actors.Actor):
    """Counts down one shared total (the same handler for routed and direct runs)."""

    def __init__(self, latch: Latch) -> None:
        self.latch = latch

    def receive(self, message: object) -> None:
        self.latch.count_down()


def _logics() -> dict[str, Callable[[], actors.routing.RoutingLogic[actors.ActorRef]]]:
    return {
        "round-robin": actors.routing.RoundRobinRouting,
        "random": lambda: actors.routing.RandomRouting(seed=1),
        "consistent hashing": lambda: actors.routing.ConsistentHashingRouting(lambda m: m % 1024),
        "smallest mailbox": lambda: actors.routing.SmallestMailboxRouting(),
        "broadcast": actors.routing.BroadcastRouting,
    }


def routed(name: str) -> Callable[[], Awaitable[float]]:
    async def measure() -> float:
        broadcast = name == "broadcast"
        latch = Latch(MESSAGES * (ROUTEES if broadcast else 1))
        async with actors.open_system("bench") as system:
            routees = [system.spawn(Tally, latch) for _ in range(ROUTEES)]
            router = system.spawn(actors.routing.Router, _logics()[name](), routees=routees)
            await trio.testing.wait_all_tasks_blocked()
            tell = router.tell
            start = time.perf_counter()
            for i in range(MESSAGES):
                tell(i)
            await latch.done.wait()
            return time.perf_counter() - start

    return measure


async def direct() -> float:
    latch = Latch(MESSAGES)
    async with actors.open_system("bench") as system:
        tells = [system.spawn(Tally, latch).tell for _ in range(ROUTEES)]
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        for i in range(MESSAGES):
            tells[i % ROUTEES](i)
        await latch.done.wait()
        return time.perf_counter() - start


async def raw_round_robin() -> float:
    """Raw trio: 4 tasks draining their own unbounded channels, fed round-robin."""
    latch = Latch(ROUTEES)

    async def worker(receive: trio.MemoryReceiveChannel[int]) -> None:
        await drain(receive, MESSAGES // ROUTEES)
        latch.count_down()

    async with trio.open_nursery() as nursery:
        sends = []
        for _ in range(ROUTEES):
            send, receive = trio.open_memory_channel[int](math.inf)
            nursery.start_soon(worker, receive)
            sends.append(send.send_nowait)
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        for i in range(MESSAGES):
            sends[i % ROUTEES](i)
        await latch.done.wait()
        return time.perf_counter() - start


def run() -> Result:
    rows: list[Row] = []
    data: dict[str, float] = {}
    direct_s, raw_s = best_seconds(direct, raw_round_robin)
    rows.append(
        {
            "workload": f"W8 direct tell, round-robin over {ROUTEES} actors (reference)",
            "actors": fmt_rate(MESSAGES / direct_s, "msgs/s"),
            "baseline": fmt_rate(MESSAGES / raw_s, "msgs/s") + " raw trio",
            "ratio": fmt_ratio(raw_s / direct_s),
            "target": "(reference for the rows below)",
            "met": "-",
        }
    )
    for name in _logics():
        router_s, direct_s = best_seconds(routed(name), direct)
        rate, direct_rate = MESSAGES / router_s, MESSAGES / direct_s
        ratio = rate / direct_rate
        data[f"{name}_msgs_per_s"] = rate
        data["direct_msgs_per_s"] = direct_rate
        is_rr = name == "round-robin"
        rows.append(
            {
                "workload": f"W8 router, {name}, {ROUTEES} routees",
                "actors": fmt_rate(rate, "msgs/s"),
                "baseline": fmt_rate(direct_rate, "msgs/s") + " direct tell",
                "ratio": fmt_ratio(ratio),
                "target": f">= {TARGET}x direct tell" if is_rr else "(informational)",
                "met": ("yes" if ratio >= TARGET else "NO") if is_rr else "-",
            }
        )
    return {"rows": rows, "data": data}


if __name__ == "__main__":
    main(run)
