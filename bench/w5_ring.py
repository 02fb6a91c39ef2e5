"""W5 ring: 100 actors pass one token around, 100k hops in total; hops/s.

Each node tells the token (a count of hops left) to the next node; the node that
receives 0 ends the run. Baseline: a raw trio ring of 100 tasks, each receiving on its
own memory channel and passing the token on with ``send_nowait``.
"""

from __future__ import annotations

import math
import time

import trio
import trio.testing
from _common import Result, best_seconds, fmt_rate, fmt_ratio, main, yes_no

import actors

NODES = 100
HOPS = 100_000
TARGET_RATIO = 1.0


class Node(actors.Actor):
    def __init__(self, done: trio.Event) -> None:
        self.done = done
        self.next: actors.ActorRef  # set by the first message, before the token arrives

    def receive(self, message: int | actors.ActorRef) -> None:
        if isinstance(message, int):
            if message:
                self.next.tell(message - 1)
            else:
                self.done.set()
        else:
            self.next = message


async def actors_ring() -> float:
    done = trio.Event()
    async with actors.open_system("bench") as system:
        ring = [system.spawn(Node, done) for _ in range(NODES)]
        for node, next_node in zip(ring, ring[1:] + ring[:1], strict=True):
            node.tell(next_node)
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        ring[0].tell(HOPS)
        await done.wait()
        return time.perf_counter() - start


async def raw_ring() -> float:
    done = trio.Event()

    async def node(
        receive: trio.MemoryReceiveChannel[int], send: trio.MemorySendChannel[int]
    ) -> None:
        receive_one, pass_on = receive.receive, send.send_nowait
        while True:
            hops = await receive_one()
            if hops:
                pass_on(hops - 1)
            else:
                done.set()

    channels = [trio.open_memory_channel[int](math.inf) for _ in range(NODES)]
    async with trio.open_nursery() as nursery:
        for i, (_, receive) in enumerate(channels):
            nursery.start_soon(node, receive, channels[(i + 1) % NODES][0])
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        channels[0][0].send_nowait(HOPS)
        await done.wait()
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return elapsed


def run() -> Result:
    actor_s, raw_s = best_seconds(actors_ring, raw_ring)
    actor_rate, raw_rate = HOPS / actor_s, HOPS / raw_s
    ratio = actor_rate / raw_rate
    return {
        "rows": [
            {
                "workload": f"W5 ring of {NODES} actors, {HOPS // 1000}k hops",
                "actors": fmt_rate(actor_rate, "hops/s"),
                "baseline": fmt_rate(raw_rate, "hops/s"),
                "ratio": fmt_ratio(ratio),
                "target": f">= {TARGET_RATIO}x raw",
                "met": yes_no(ratio >= TARGET_RATIO),
            }
        ],
        "data": {"hops": HOPS, "actors_hops_per_s": actor_rate, "raw_hops_per_s": raw_rate},
    }


if __name__ == "__main__":
    main(run)
