"""W1 tell throughput: one actor counts 200k messages sent with ``ref.tell``.

The sender tells every message in a loop (``tell`` never yields), then waits for the
final count with ``ask``. Baselines: one raw trio task receiving from an unbounded memory
channel, fed with ``send_nowait`` and drained with ``receive_nowait`` (the fastest raw
loop), and the plain ``await send`` / ``async for`` loop.
"""

from __future__ import annotations

import math
import time

import trio
import trio.testing
from _common import Result, best_seconds, drain, fmt_rate, fmt_ratio, main, yes_no

import actors

MESSAGES = 200_000
TARGET_RATE = 1.5e6
TARGET_RATIO = 0.55

_COUNT = object()


class Counter(actors.Actor):
    def __init__(self) -> None:
        self.count = 0

    def receive(self, message: object) -> int | None:
        if message is _COUNT:
            return self.count
        self.count += 1
        return None


async def actors_tell() -> float:
    async with actors.open_system("bench") as system:
        ref = system.spawn(Counter)
        await ref.ask(_COUNT)  # started and parked
        tell = ref.tell
        start = time.perf_counter()
        for i in range(MESSAGES):
            tell(i)
        count = await ref.ask(_COUNT, timeout=math.inf)
        elapsed = time.perf_counter() - start
    assert count == MESSAGES, count
    return elapsed


async def raw_drain() -> float:
    send, receive = trio.open_memory_channel[int](math.inf)
    async with trio.open_nursery() as nursery:
        done = trio.Event()

        async def consumer() -> None:
            await drain(receive, MESSAGES)
            done.set()

        nursery.start_soon(consumer)
        await trio.testing.wait_all_tasks_blocked()
        send_nowait = send.send_nowait
        start = time.perf_counter()
        for i in range(MESSAGES):
            send_nowait(i)
        await done.wait()
        return time.perf_counter() - start


async def raw_await() -> float:
    send, receive = trio.open_memory_channel[int](math.inf)
    async with trio.open_nursery() as nursery:
        done = trio.Event()

        async def consumer() -> None:
            count = 0
            async for _ in receive:
                count += 1
                if count == MESSAGES:
                    break
            done.set()

        nursery.start_soon(consumer)
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        for i in range(MESSAGES):
            await send.send(i)
        await done.wait()
        return time.perf_counter() - start


def run() -> Result:
    actor_s, drain_s, await_s = best_seconds(actors_tell, raw_drain, raw_await)
    actor_rate, drain_rate, await_rate = (MESSAGES / s for s in (actor_s, drain_s, await_s))
    ratio = actor_rate / drain_rate
    return {
        "rows": [
            {
                "workload": "W1 tell throughput (vs send_nowait + drain)",
                "actors": fmt_rate(actor_rate, "msgs/s"),
                "baseline": fmt_rate(drain_rate, "msgs/s"),
                "ratio": fmt_ratio(ratio),
                "target": f">= {fmt_rate(TARGET_RATE, 'msgs/s')}, >= {TARGET_RATIO}x",
                "met": f"rate {yes_no(actor_rate >= TARGET_RATE)}, "
                f"ratio {yes_no(ratio >= TARGET_RATIO)}",
            },
            {
                "workload": "W1 tell throughput (vs await send + async for)",
                "actors": fmt_rate(actor_rate, "msgs/s"),
                "baseline": fmt_rate(await_rate, "msgs/s"),
                "ratio": fmt_ratio(actor_rate / await_rate),
                "target": "(reference only)",
                "met": "-",
            },
        ],
        "data": {
            "messages": MESSAGES,
            "actors_msgs_per_s": actor_rate,
            "raw_drain_msgs_per_s": drain_rate,
            "raw_await_msgs_per_s": await_rate,
        },
    }


if __name__ == "__main__":
    main(run)
