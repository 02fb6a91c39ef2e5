"""Ctrl-C at the edges of ``open_system``. While it shuts down: the shutdown stops
waiting for the actors still stopping, cancels them, and the ``KeyboardInterrupt`` comes
out as itself, at once. While it starts its watchdog thread: the interrupt comes out as
itself, not as the cleanup's failure to join a thread that never started.

Real processes: a SIGINT reaches trio while its own code runs (sent from a thread) and
is delivered to the main task, which waits in the shielded shutdown. With the system's
deadlines at an hour, a shutdown that kept waiting would outlive the subprocess timeout.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.crash

CHILD = """
import os, signal
import trio
from actors import Actor, open_system


class Slow(Actor):
    async def post_stop(self) -> None:
        await trio.to_thread.run_sync(os.kill, os.getpid(), signal.SIGINT)
        print("interrupted during shutdown", flush=True)
        await trio.sleep(3600)


async def main() -> None:
    async with open_system("sys", shutdown_timeout=3600, stop_timeout=3600) as system:
        system.spawn(Slow)
        await system.idle()


try:
    trio.run(main)
except KeyboardInterrupt:
    print("KeyboardInterrupt came out of trio.run", flush=True)
    raise
"""


def test_ctrl_c_during_the_shutdown_cancels_what_still_stops_and_comes_out_as_itself() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.splitlines() == [
        "interrupted during shutdown",
        "KeyboardInterrupt came out of trio.run",
    ], result.stderr
    assert result.returncode != 0
    assert result.stderr.rstrip().endswith("KeyboardInterrupt"), result.stderr
    assert "ExceptionGroup" not in result.stderr, result.stderr


WATCHDOG_CHILD = """
import os, signal
import trio
from actors import _watchdog, open_system

started = _watchdog.Watchdog.start


def start(self):
    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C lands while the watchdog's thread starts
    started(self)


_watchdog.Watchdog.start = start


async def main() -> None:
    async with open_system("sys"):  # (the watchdog is on by default)
        await trio.sleep(3600)


try:
    trio.run(main)
except KeyboardInterrupt:
    print("KeyboardInterrupt came out of trio.run", flush=True)
    raise
"""


def test_ctrl_c_while_the_watchdog_starts_comes_out_as_itself() -> None:
    """Ctrl-C while ``open_system`` starts its watchdog thread: the interrupt comes out
    as itself (not as "cannot join thread before it is started" from the cleanup)."""
    result = subprocess.run(
        [sys.executable, "-c", WATCHDOG_CHILD],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.splitlines() == ["KeyboardInterrupt came out of trio.run"], result.stderr
    assert result.stderr.rstrip().endswith("KeyboardInterrupt"), result.stderr
    assert "RuntimeError" not in result.stderr, result.stderr
