"""W4 spawn: start 10,000 actors; actors/s and resident memory (RSS) per idle actor.

The clock runs from the first ``spawn`` until every new actor has started and parked
(``trio.testing.wait_all_tasks_blocked``). RSS is read from ``/proc/self/statm`` after a
``gc.collect()`` just before the first spawn and again with all 10,000 alive and idle.
Baseline: 10,000 raw trio tasks (``nursery.start_soon``), each waiting on its own memory
channel. Every measurement runs in a fresh subprocess so that RSS figures are not
polluted by memory an earlier measurement left in the allocator.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio
import trio.testing
from _common import REPEATS, Result, fmt_rate, fmt_ratio, main, rss_kib, yes_no

import actors

SPAWNS = 10_000
TARGET_RATIO = 1.0
TARGET_KIB = 6.0


class Idle(actors.Actor):
    def receive(self, message: object) -> None:
        pass


class Sample:
    """Seconds to start ``SPAWNS`` actors or tasks, and the RSS they added."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.rss_kib = 0

    def before(self) -> None:
        gc.collect()
        self.rss_kib = -rss_kib()
        self.seconds = -time.perf_counter()

    def after(self) -> None:
        self.seconds += time.perf_counter()
        gc.collect()
        self.rss_kib += rss_kib()


async def spawn_actors(sample: Sample) -> None:
    async with actors.open_system("bench") as system:
        await trio.testing.wait_all_tasks_blocked()
        sample.before()
        refs = [system.spawn(Idle) for _ in range(SPAWNS)]
        await trio.testing.wait_all_tasks_blocked()
        sample.after()
        assert len(refs) == SPAWNS


async def spawn_tasks(sample: Sample) -> None:
    async def idle(receive: trio.MemoryReceiveChannel[object]) -> None:
        await receive.receive()

    open_channel = trio.open_memory_channel[object]  # subscripted once, not in the timed loop
    async with trio.open_nursery() as nursery:
        await trio.testing.wait_all_tasks_blocked()
        sample.before()
        sends = []
        for _ in range(SPAWNS):
            send, receive = open_channel(0)
            nursery.start_soon(idle, receive)
            sends.append(send)
        await trio.testing.wait_all_tasks_blocked()
        sample.after()
        nursery.cancel_scope.cancel()


VARIANTS: dict[str, Callable[[Sample], Awaitable[None]]] = {
    "actors": spawn_actors,
    "raw": spawn_tasks,
}


def measure_here(variant: str) -> dict[str, float]:
    sample = Sample()
    trio.run(VARIANTS[variant], sample)
    return {"seconds": sample.seconds, "rss_kib": sample.rss_kib}


def measure_in_subprocess(variant: str) -> dict[str, float]:
    output = subprocess.run(
        [sys.executable, __file__, "--one", variant],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    measured: dict[str, float] = json.loads(output)
    return measured


def run() -> Result:
    samples: dict[str, list[dict[str, float]]] = {variant: [] for variant in VARIANTS}
    for _ in range(REPEATS):
        for variant, runs in samples.items():
            runs.append(measure_in_subprocess(variant))
    rate = {v: SPAWNS / min(s["seconds"] for s in runs) for v, runs in samples.items()}
    # The median run for memory: RSS grows in whole pages and arenas, so it is noisy.
    kib = {
        v: sorted(s["rss_kib"] for s in runs)[len(runs) // 2] / SPAWNS
        for v, runs in samples.items()
    }
    ratio = rate["actors"] / rate["raw"]
    data: dict[str, Any] = {
        "spawns": SPAWNS,
        "actors_per_s": rate["actors"],
        "raw_tasks_per_s": rate["raw"],
        "actors_kib_each": kib["actors"],
        "raw_kib_each": kib["raw"],
    }
    return {
        "rows": [
            {
                "workload": f"W4 spawn {SPAWNS:,} actors",
                "actors": fmt_rate(rate["actors"], "actors/s"),
                "baseline": fmt_rate(rate["raw"], "tasks/s"),
                "ratio": fmt_ratio(ratio),
                "target": f">= {TARGET_RATIO}x raw",
                "met": yes_no(ratio >= TARGET_RATIO),
            },
            {
                "workload": "W4 RSS per idle actor",
                "actors": f"{kib['actors']:.2f} KiB",
                "baseline": f"{kib['raw']:.2f} KiB",
                "ratio": fmt_ratio(kib["actors"] / kib["raw"]),
                "target": f"<= {TARGET_KIB:g} KiB",
                "met": yes_no(kib["actors"] <= TARGET_KIB),
            },
        ],
        "data": data,
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(measure_here(sys.argv[2])))
    else:
        main(run)
