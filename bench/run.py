"""Run every workload, each in its own subprocess, and print one table of results.

Usage: ``python bench/run.py [W1 J2 ...] [--skip J1,J2] [--quick] [--no-postgres]``
(default: all workloads). ``--skip`` leaves workloads out (repeatable, or a comma-separated
list); ``--quick`` is passed to the journal, worker, cluster and stream workloads (J1, J2,
X1-X4, C1-C3, S1-S3): smaller counts for a smoke run; ``--no-postgres`` to the journal workloads: no
PostgreSQL rows.
The environment variable ``BENCH_REPEATS`` (default 5) sets how many runs each figure is
the best of.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import trio
from _common import REPEATS, Result, Row, format_table

HERE = Path(__file__).resolve().parent
WORKLOADS = {
    "W1": "w1_tell.py",
    "W2": "w2_ask.py",
    "W3": "w3_fanout.py",
    "W4": "w4_spawn.py",
    "W5": "w5_ring.py",
    "W6": "w6_restart.py",
    "W7": "w7_publish.py",
    "W8": "w8_router.py",
    "J1": "j1_persist.py",
    "J2": "j2_recovery.py",
    "X1": "x_workers.py",
    "X2": "x_workers.py",
    "X3": "x_workers.py",
    "X4": "x_workers.py",
    "C1": "c_cluster.py",
    "C2": "c_cluster.py",
    "C3": "c_cluster.py",
    "S1": "s_streams.py",
    "S2": "s_projection.py",
    "S3": "s_groups.py",
}
JOURNAL_WORKLOADS = {"J1", "J2"}
"""The workloads that take ``--quick`` and ``--no-postgres``."""
WORKER_WORKLOADS = {"X1", "X2", "X3", "X4"}
"""The workloads that take ``--quick``. They share one script, which runs once and is
given the ids chosen."""
CLUSTER_WORKLOADS = {"C1", "C2", "C3"}
"""The cluster workloads: they take ``--quick`` and share one script, as the X ones."""
QUICK_WORKLOADS = {"S1", "S2", "S3"}
"""Other workloads that take ``--quick``."""


def run_workload(script: str, options: list[str]) -> Result:
    completed = subprocess.run(
        [sys.executable, str(HERE / script), "--json", *options],
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    result: Result = json.loads(completed.stdout)
    return result


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def revision() -> str:
    """The commit measured, flagged if ``actors/`` has uncommitted changes."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=HERE, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        head = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--", "../actors")
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"commit {head}" + (" + uncommitted changes in actors/" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the benchmarks and print one table.")
    parser.add_argument("workloads", nargs="*", metavar="ID", help="default: all of them")
    parser.add_argument(
        "--skip", action="append", default=[], metavar="ID[,ID...]", help="leave these out"
    )
    parser.add_argument("--quick", action="store_true", help="J, X, C, S: smaller counts")
    parser.add_argument("--no-postgres", action="store_true", help="J1/J2: no PostgreSQL")
    args = parser.parse_args()
    skipped = {name.strip().upper() for names in args.skip for name in names.split(",")}
    skipped.discard("")
    chosen = [name.upper() for name in args.workloads] or list(WORKLOADS)
    unknown = sorted((set(chosen) | skipped) - set(WORKLOADS))
    if unknown:
        sys.exit(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    chosen = [name for name in chosen if name not in skipped]
    journal_options = ["--quick"] * args.quick + ["--no-postgres"] * args.no_postgres
    print(
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, "
        f"{os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
        f"trio {trio.__version__}, {revision()}, best of {REPEATS}",
        flush=True,
    )
    rows: list[Row] = []
    start = time.perf_counter()
    ran: set[str] = set()
    for name in chosen:
        script = WORKLOADS[name]
        if script in ran:  # (a script of several workloads ran them all at once)
            continue
        ran.add(script)
        if name in WORKER_WORKLOADS or name in CLUSTER_WORKLOADS:
            group = WORKER_WORKLOADS if name in WORKER_WORKLOADS else CLUSTER_WORKLOADS
            ids = [other for other in chosen if other in group]
            options = ["--quick"] * args.quick + ids
        else:
            ids = [name]
            options = journal_options if name in JOURNAL_WORKLOADS else []
            if name in QUICK_WORKLOADS:
                options = ["--quick"] * args.quick
        print(f"running {', '.join(ids)} ({script}) ...", file=sys.stderr, flush=True)
        rows.extend(run_workload(script, options)["rows"])
    print(format_table(rows))
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
