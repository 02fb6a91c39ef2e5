"""W6 restart: one actor fails on every message and is restarted in place, 20k times;
restarts/s.

The actor raises on each of 20k told messages; its parent's one-for-one strategy (no
backoff, an intensity large enough never to give up) restarts it in place each time:
the failing message is dead-lettered, ``pre_restart`` runs, a fresh instance is created
and ``post_restart`` runs, and the mailbox with the next messages survives. Baseline: a
raw trio worker task reading a memory channel that raises on each message; a
supervising loop catches the error from the worker's nursery and starts a new worker on
the same channel (the channel survives, as the mailbox does).
"""

from __future__ import annotations

import math
import time

import trio
import trio.testing
from _common import Result, best_seconds, fmt_rate, fmt_ratio, main

import actors
import supervision

RESTARTS = 20_000


class Crasher(actors.Actor):
    def __init__(self, done: trio.Event, counter: list[int]) -> None:
        self.done = done
        self.counter = counter

    def post_restart(self, error: BaseException) -> None:
        self.counter[0] += 1
        if self.counter[0] == RESTARTS:
            self.done.set()

    def receive(self, message: object) -> None:
        raise ValueError(message)


async def actors_restarts() -> float:
    done = trio.Event()
    counter = [0]
    strategy = supervision.OneForOne(
        intensity=supervision.RestartIntensity(max_restarts=RESTARTS + 1, within=1e9)
    )
    async with actors.open_system("bench", guardian_strategy=strategy) as system:
        ref = system.spawn(Crasher, done, counter)
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        for n in range(RESTARTS):
            ref.tell(n)
        await done.wait()
        return time.perf_counter() - start


async def raw_restarts() -> float:
    send, receive = trio.open_memory_channel[int](math.inf)

    async def worker() -> None:
        while True:
            message = await receive.receive()
            raise ValueError(message)

    restarts = 0
    for n in range(RESTARTS):
        send.send_nowait(n)
    start = time.perf_counter()
    while restarts < RESTARTS:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(worker)
        except* ValueError:
            restarts += 1
    return time.perf_counter() - start


def run() -> Result:
    actor_s, raw_s = best_seconds(actors_restarts, raw_restarts)
    actor_rate, raw_rate = RESTARTS / actor_s, RESTARTS / raw_s
    ratio = actor_rate / raw_rate
    return {
        "rows": [
            {
                "workload": f"W6 {RESTARTS // 1000}k restarts in place of one actor",
                "actors": fmt_rate(actor_rate, "restarts/s"),
                "baseline": fmt_rate(raw_rate, "restarts/s"),
                "ratio": fmt_ratio(ratio),
                "target": "none set (informational)",
                "met": "-",
            }
        ],
        "data": {
            "restarts": RESTARTS,
            "actors_restarts_per_s": actor_rate,
            "raw_restarts_per_s": raw_rate,
        },
    }


if __name__ == "__main__":
    main(run)
