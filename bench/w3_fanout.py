"""W3 fan-out: 1,000 actors x 100 messages each, sent with ``tell``, until all processed.

The workers are started and idle before the clock starts; the sender then tells one
message to each worker in turn, 100 rounds, and waits until every worker has counted
its 100 messages. Baseline: 1,000 raw trio tasks, each draining its own unbounded memory
channel (``send_nowait`` + ``receive_nowait``, as in W1).
"""

from __future__ import annotations

import math
import time

import trio
import trio.testing
from _common import Latch, Result, best_seconds, drain, fmt_rate, fmt_ratio, main, yes_no

import actors

WORKERS = 1_000
PER_WORKER = 100
MESSAGES = WORKERS * PER_WORKER
TARGET_RATE = 1e6


class Worker(actors.Actor):
    def __init__(self, latch: Latch) -> None:
        self.left = PER_WORKER
        self.latch = latch

    def receive(self, message: int) -> None:
        self.left -= 1
        if not self.left:
            self.latch.count_down()


async def actors_fanout() -> float:
    latch = Latch(WORKERS)
    async with actors.open_system("bench") as system:
        tells = [system.spawn(Worker, latch).tell for _ in range(WORKERS)]
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        for i in range(PER_WORKER):
            for tell in tells:
                tell(i)
        await latch.done.wait()
        return time.perf_counter() - start


async def raw_fanout() -> float:
    latch = Latch(WORKERS)

    async def worker(receive: trio.MemoryReceiveChannel[int]) -> None:
        await drain(receive, PER_WORKER)
        latch.count_down()

    async with trio.open_nursery() as nursery:
        sends = []
        for _ in range(WORKERS):
            send, receive = trio.open_memory_channel[int](math.inf)
            nursery.start_soon(worker, receive)
            sends.append(send.send_nowait)
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        for i in range(PER_WORKER):
            for send_nowait in sends:
                send_nowait(i)
        await latch.done.wait()
        return time.perf_counter() - start


def run() -> Result:
    actor_s, raw_s = best_seconds(actors_fanout, raw_fanout)
    actor_rate, raw_rate = MESSAGES / actor_s, MESSAGES / raw_s
    return {
        "rows": [
            {
                "workload": f"W3 fan-out {WORKERS:,} actors x {PER_WORKER} tells",
                "actors": fmt_rate(actor_rate, "msgs/s"),
                "baseline": fmt_rate(raw_rate, "msgs/s"),
                "ratio": fmt_ratio(actor_rate / raw_rate),
                "target": f">= {fmt_rate(TARGET_RATE, 'msgs/s')}",
                "met": yes_no(actor_rate >= TARGET_RATE),
            }
        ],
        "data": {
            "messages": MESSAGES,
            "actors_msgs_per_s": actor_rate,
            "raw_msgs_per_s": raw_rate,
        },
    }


if __name__ == "__main__":
    main(run)
