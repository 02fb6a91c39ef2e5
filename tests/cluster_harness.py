"""Node processes for the cluster tests: :func:`node_process` starts one (the program
of ``tests/cluster_actors.py``) and waits until it is ready; :func:`own_node` makes the
test's own process node ``t`` of the same system."""

from __future__ import annotations

import contextlib
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
    url: str,
    name: str,
    *spawn: str,
    options: tuple[str, ...] = (),
    down_after: float = DOWN_AFTER,
    stderr: Path | None = None,
) -> AsyncIterator[NodeProcess]:
    """A node process of system ``test`` that spawns and registers ``NAME=CLASS``
    actors (``options``: more of its command line, such as ``--entities``), once it is
    ready; it leaves when its stdin closes (or is killed). ``stderr``: a file for what
    it writes there (its warnings and a traceback if it fails)."""
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
        str(down_after),
        *options,
        *spawn,
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent), str(HERE)])}
    with contextlib.ExitStack() as files:
        errors = None if stderr is None else files.enter_context(stderr.open("wb"))
        process = await trio.lowlevel.open_process(
            command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, env=env
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


class Collector(actors.Actor):
    """Puts every message it gets into a memory channel of the test's."""

    def __init__(self, into: trio.MemorySendChannel[Any]) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.send_nowait(message)


class _Watcher(Collector):
    def __init__(self, into: trio.MemorySendChannel[Any], watched: actors.ActorRef) -> None:
        super().__init__(into)
        self.watched = watched

    async def pre_start(self) -> None:
        self.context.watch(self.watched)


async def watch_from(
    system: actors.ActorSystem, ref: actors.ActorRef
) -> trio.MemoryReceiveChannel[Any]:
    """Watch ``ref`` from an actor of ``system``; what it gets (``Terminated``) comes
    out of the channel returned. Returns once the watch is registered."""
    send, receive = trio.open_memory_channel[Any](10)
    system.spawn(_Watcher, send, ref)
    await system.idle()
    return receive


@asynccontextmanager
async def own_node(url: str, **options: Any) -> AsyncIterator[actors.ActorSystem]:
    options.setdefault("heartbeat", HEARTBEAT)
    options.setdefault("down_after", DOWN_AFTER)
    config = cluster(url, "t", **options)
    async with actors.open_system("test", cluster=config) as system:
        yield system


class Partition:
    """A TCP proxy in front of a NATS server, to cut a node off for real: the node
    connects through it; :meth:`cut` closes every connection through it and refuses
    new ones (the node sees NATS go away, the others see the node go quiet)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.is_cut = False
        self._scopes: set[trio.CancelScope] = set()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def cut(self) -> None:
        self.is_cut = True
        for scope in self._scopes:
            scope.cancel()

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started()
        await trio.serve_listeners(self._serve, listeners)

    async def _serve(self, client: trio.SocketStream) -> None:
        async with client:
            if self.is_cut:
                return
            with trio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    server = await trio.open_tcp_stream("127.0.0.1", self.target_port)
                    async with server, trio.open_nursery() as nursery:
                        nursery.start_soon(_pipe, client, server, nursery.cancel_scope)
                        nursery.start_soon(_pipe, server, client, nursery.cancel_scope)
                finally:
                    self._scopes.discard(scope)


async def _pipe(source: trio.SocketStream, sink: trio.SocketStream, done: trio.CancelScope) -> None:
    try:
        while data := await source.receive_some(65536):
            await sink.send_all(data)
    except trio.BrokenResourceError:
        pass
    done.cancel()
