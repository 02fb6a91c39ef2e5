"""W2 sequential ask round trip: 20k ``await ref.ask(x)`` one after another.

Each ask is timed with ``time.perf_counter_ns``; the result gives asks/s and the median
and 99th percentile latency. Baseline: raw trio request/reply over two unbounded memory
channels, a server task receiving requests on one and replying on the other (``await
receive`` + ``send_nowait`` on both sides: one task switch each way, as with ``ask``).
"""

from __future__ import annotations

import gc
import math
import time
from operator import attrgetter

import trio
import trio.testing
from _common import REPEATS, Result, Run, fmt_rate, fmt_ratio, main, yes_no

import actors

ASKS = 20_000
TARGET_RATIO = 1.0
TARGET_P99_OVER_P50 = 3.0


class Echo(actors.Actor):
    def receive(self, message: int) -> int:
        return message


async def actors_ask() -> Run:
    latencies = [0] * ASKS
    clock = time.perf_counter_ns
    async with actors.open_system("bench") as system:
        ref = system.spawn(Echo)
        await ref.ask(-1)  # started and parked
        ask = ref.ask
        begin = clock()
        for i in range(ASKS):
            start = clock()
            await ask(i)
            latencies[i] = clock() - start
        total = clock() - begin
    return Run(total, latencies)


async def raw_request_reply() -> Run:
    latencies = [0] * ASKS
    clock = time.perf_counter_ns
    request_send, request_receive = trio.open_memory_channel[int](math.inf)
    reply_send, reply_receive = trio.open_memory_channel[int](math.inf)

    async def server() -> None:
        receive, reply = request_receive.receive, reply_send.send_nowait
        while True:
            reply(await receive())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        await trio.testing.wait_all_tasks_blocked()
        request, receive = request_send.send_nowait, reply_receive.receive
        begin = clock()
        for i in range(ASKS):
            start = clock()
            request(i)
            await receive()
            latencies[i] = clock() - start
        total = clock() - begin
        nursery.cancel_scope.cancel()
    return Run(total, latencies)


def run() -> Result:
    actor_runs: list[Run] = []
    raw_runs: list[Run] = []
    for _ in range(REPEATS):  # interleaved, so both see the same machine state
        for measure, runs in ((actors_ask, actor_runs), (raw_request_reply, raw_runs)):
            gc.collect()
            runs.append(trio.run(measure))
    actor = max(actor_runs, key=attrgetter("rate"))
    raw = max(raw_runs, key=attrgetter("rate"))
    ratio = actor.rate / raw.rate
    tail = actor.p99_us / actor.p50_us
    return {
        "rows": [
            {
                "workload": "W2 sequential ask round trip",
                "actors": fmt_rate(actor.rate, "asks/s"),
                "baseline": fmt_rate(raw.rate, "asks/s"),
                "ratio": fmt_ratio(ratio),
                "target": f">= {TARGET_RATIO}x raw",
                "met": yes_no(ratio >= TARGET_RATIO),
            },
            {
                "workload": "W2 ask latency",
                "actors": actor.latency(),
                "baseline": raw.latency(),
                "ratio": f"p99/p50 {tail:.2f}",
                "target": f"p99 <= {TARGET_P99_OVER_P50:g}x p50",
                "met": yes_no(tail <= TARGET_P99_OVER_P50),
            },
        ],
        "data": {
            "asks": ASKS,
            "actors_asks_per_s": actor.rate,
            "actors_p50_us": actor.p50_us,
            "actors_p99_us": actor.p99_us,
            "raw_asks_per_s": raw.rate,
            "raw_p50_us": raw.p50_us,
            "raw_p99_us": raw.p99_us,
        },
    }


if __name__ == "__main__":
    main(run)
