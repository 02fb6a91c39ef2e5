"""Node processes for the cluster tests: :func:`node_process` starts one (the program
of ``tests/cluster_actors.py``) and waits until it is ready; :func:`own_node` makes the
test's own process node ``t`` of the same system."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import trio
from cluster_actors import cluster

import actors

HERE = Path(__file__).parent
HEARTBEAT = 0.2
DOWN_AFTER = 1.0


class NodeProcess:
    def __init__(self, name: str, process: trio.Process) -> None:
        self.name = name
        self.process = process

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)


@asynccontextmanager
async def node_process(
    url: str, name: str, *spawn: str, options: tuple[str, ...] = ()
) -> AsyncIterator[NodeProcess]:
    """A node process of system ``test`` that spawns and registers ``NAME=CLASS``
    actors (``options``: more of its command line, such as ``--entities``), once it is
    ready; it leaves when its stdin closes (or is killed)."""
    command = [
        sys.executable,
        str(HERE / "cluster_actors.py"),
        "--url",
        url,
        "--node",
        name,
        "--heartbeat",
        str(HEARTBEAT),
        "--down-after",
        str(DOWN_AFTER),
        *options,
        *spawn,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])}
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    assert process.stdout is not None
    assert process.stdin is not None
    try:
        with trio.fail_after(30):
            line = b""
            while not line.endswith(b"\n"):
                chunk = await process.stdout.receive_some(1)
                if not chunk:
                    raise RuntimeError(f"node {name} exited before it was ready")
                line += chunk
        assert line == b"ready\n", line
        yield NodeProcess(name, process)
    finally:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(10):
                await process.stdin.aclose()
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


@asynccontextmanager
async def own_node(url: str, **options: Any) -> AsyncIterator[actors.ActorSystem]:
    config = cluster(url, "t", heartbeat=HEARTBEAT, down_after=DOWN_AFTER, **options)
    async with actors.open_system("test", cluster=config) as system:
        yield system
