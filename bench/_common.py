"""Helpers shared by the benchmark scripts: timing, raw-trio building blocks, output.

Every workload script exposes ``run() -> Result`` and calls :func:`main` when run as a
script: ``python bench/wN_*.py`` prints its rows as a table, ``--json`` prints the result
as JSON (that is what ``bench/run.py`` reads).
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypedDict

import trio

# The workloads hold the trio thread on purpose (a loop of 200,000 tells, say), which
# the watchdog rightly reports; its lines would only bury the tables.
logging.getLogger("actors.watchdog").setLevel(logging.ERROR)

REPEATS = int(os.environ.get("BENCH_REPEATS", "5"))
"""How many times each measurement is repeated; the best run is kept."""


class Row(TypedDict):
    """One line of the results table (every field already formatted)."""

    workload: str
    actors: str
    baseline: str
    ratio: str
    target: str
    met: str


class Result(TypedDict):
    rows: list[Row]
    data: dict[str, Any]
    """The raw measured numbers behind ``rows``."""


HEADER: Final = ("workload", "trio-actors", "raw trio baseline", "ratio", "target", "met?")


def best_seconds(*measures: Callable[[], Awaitable[float]]) -> list[float]:
    """Run each measure ``REPEATS`` times, interleaved, each in a fresh ``trio.run``.

    A measure returns the seconds it timed itself (set-up and tear-down excluded).
    Returns the best (lowest) time of each measure, in the order given.
    """
    best = [math.inf] * len(measures)
    for _ in range(REPEATS):
        for i, measure in enumerate(measures):
            gc.collect()
            best[i] = min(best[i], trio.run(measure))
    return best


def start_clock() -> float:
    """``time.perf_counter()``, after a full collection of the garbage the set-up left: a
    set-up that allocates much (a thousand actors, rows made in advance) otherwise
    leaves the garbage collector a full pass due, which lands in the timed window of
    some runs and not others."""
    gc.collect()
    return time.perf_counter()


async def drain(receive: trio.MemoryReceiveChannel[Any], count: int) -> None:
    """Receive ``count`` messages the fastest raw-trio way: wait for one, then take all
    that are already queued with ``receive_nowait`` before waiting again."""
    receive_nowait = receive.receive_nowait
    while count:
        await receive.receive()
        count -= 1
        try:
            while count:
                receive_nowait()
                count -= 1
        except trio.WouldBlock:
            pass


class Latch:
    """Set :attr:`done` once :meth:`count_down` has been called ``count`` times."""

    __slots__ = ("count", "done")

    def __init__(self, count: int) -> None:
        self.count = count
        self.done = trio.Event()

    def count_down(self) -> None:
        self.count -= 1
        if not self.count:
            self.done.set()


def rss_kib() -> int:
    """Resident set size of this process in KiB (from ``/proc/self/statm``)."""
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") // 1024


def fmt_rate(per_second: float, unit: str) -> str:
    """``1234567.0, "msgs/s"`` -> ``"1.23M msgs/s"``."""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if per_second >= scale:
            return f"{per_second / scale:.2f}{suffix} {unit}"
    return f"{per_second:.0f} {unit}"


def fmt_ratio(ratio: float) -> str:
    return f"{ratio:.2f}x"


def yes_no(ok: bool) -> str:
    return "yes" if ok else "NO"


def format_table(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = [
        HEADER,
        *(
            (r["workload"], r["actors"], r["baseline"], r["ratio"], r["target"], r["met"])
            for r in rows
        ),
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADER))]

    def render(cells: tuple[str, ...]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([render(lines[0]), rule, *map(render, lines[1:])])


def main(run: Callable[[], Result]) -> None:
    """Entry point of a workload script: ``--json`` for the runner, a table otherwise."""
    result = run()
    if "--json" in sys.argv[1:]:
        print(json.dumps(result))
    else:
        print(format_table(result["rows"]))


class Run:
    """Round trips per second and latency percentiles of one run of sequential round
    trips (W2, X2), from the run's total and each trip's time, in nanoseconds."""

    def __init__(self, total_ns: int, latencies_ns: list[int]) -> None:
        self.rate = len(latencies_ns) / (total_ns / 1e9)
        cuts = statistics.quantiles(latencies_ns, n=100, method="inclusive")
        self.p50_us = cuts[49] / 1e3
        self.p99_us = cuts[98] / 1e3

    def latency(self, digits: int = 1) -> str:
        return f"p50 {self.p50_us:.{digits}f} us, p99 {self.p99_us:.{digits}f} us"


def chosen_workloads(argv: Sequence[str], ids: Sequence[str]) -> tuple[list[str], bool]:
    """For a script of several workloads: the ids chosen on its command line (positional,
    default all of ``ids``; exits naming an unknown one) and whether ``--quick`` is."""
    chosen = [arg.upper() for arg in argv if not arg.startswith("--")]
    unknown = sorted(set(chosen) - set(ids))
    if unknown:
        sys.exit(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(ids)}")
    return chosen or list(ids), "--quick" in argv


def nats_missing() -> str | None:
    """Why the workloads on NATS (C1-C3, S1, S3's JetStream rows) cannot run here, or
    ``None``: the cluster extra (nats-py, trio-asyncio, msgspec) or a ``nats-server``
    binary is missing. Finds the throwaway server's helper in ``tests/nats_server.py``."""
    import importlib.util
    from pathlib import Path

    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.append(tests)
    from nats_server import SKIP_HINT, find_nats_server

    absent = [m for m in ("nats", "trio_asyncio", "msgspec") if importlib.util.find_spec(m) is None]
    if absent:
        return (
            f"the cluster extra is not installed (no {', '.join(absent)}): "
            "pip install 'trio-actors[cluster]'"
        )
    if find_nats_server() is None:
        return f"nats-server not found ({SKIP_HINT})"
    return None
