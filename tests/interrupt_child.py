"""A child process of ``test_streams_interrupt.py``: it opens the JetStream engine (or a
node of a cluster), uses it and closes it, and sends itself SIGINT at one chosen point,
from inside the code running there (nats-py's connect, a JetStream request, the read of
an answer off the socket, the hop into the asyncio loop, the close...), so that the
interrupt lands exactly there. It prints ``SIGINT at <point>`` when it sends it, and
does not catch the ``KeyboardInterrupt``: the test reads the traceback Python prints.

Usage: ``python interrupt_child.py engine|cluster NATS_URL POINT``. Exits with status 3
(and says so) if the point was never reached.

``python interrupt_child.py handover NATS_URL`` checks a cancellation instead (no
SIGINT), one that would hang the process if it went wrong: the caller's scope is
cancelled just as the connected engine is handed over to the block. It prints whether
the scope caught it and whether the block ran, and exits with status 0.
"""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import sys
from collections.abc import Callable
from typing import Any

import trio

ENGINE_POINTS = (
    "connect",  # in nats-py's connect (asyncio side), while open_jetstream connects
    "connect-io",  # in the loop's read of the server's first bytes, while it connects
    "call",  # in a JetStream request (asyncio side) during stream_state
    "call-io",  # in the loop's read of stream_state's answer off the socket
    "call-hop",  # while stream_state hands its coroutine to the asyncio loop (trio side)
    "block",  # in the block's own code
    "close",  # in nats-py's close, while the block's end closes the engine
    "close-after-error",  # the same, while the block's own exception propagates
)
CLUSTER_POINTS = (
    "join",  # in nats-py's connect, while the node joins its cluster
    "join-io",  # in the loop's read of the server's first bytes, while the node joins
    "member-io",  # in the loop's read of a heartbeat, while the system is open
)

armed: str | None = None
"""The point that sends SIGINT when reached (``None``: none now)."""
fired: list[str] = []


def reached(point: str) -> None:
    """At ``point``: send this process SIGINT if it is the one armed (once)."""
    global armed
    if armed == point:
        armed = None
        fired.append(point)
        print(f"SIGINT at {point}", flush=True)
        os.kill(os.getpid(), signal.SIGINT)


def hook_coroutine(owner: Any, name: str, *points: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    async def hooked(*args: Any, **kwargs: Any) -> Any:
        for point in points:
            reached(point)
        return await original(*args, **kwargs)

    setattr(owner, name, hooked)


def hook_function(owner: Any, name: str, *points: str) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    @functools.wraps(original)
    def hooked(*args: Any, **kwargs: Any) -> Any:
        for point in points:
            reached(point)
        return original(*args, **kwargs)

    setattr(owner, name, hooked)


def install_hooks() -> None:
    from nats.aio.client import Client
    from nats.js.manager import JetStreamManager
    from trio_asyncio._base import BaseTrioEventLoop

    hook_coroutine(Client, "_process_connect_init", "connect", "join")
    hook_coroutine(Client, "close", "close", "close-after-error")
    hook_coroutine(JetStreamManager, "stream_info", "call")
    hook_function(BaseTrioEventLoop, "run_aio_coroutine", "call-hop")
    hook_function(
        asyncio.StreamReaderProtocol,
        "data_received",
        "connect-io",
        "call-io",
        "join-io",
        "member-io",
    )


async def engine(url: str, point: str) -> None:
    global armed
    from actors.streams import StreamConfig, open_jetstream

    if point in ("connect", "connect-io"):
        armed = point
    async with open_jetstream(url) as streams:
        await streams.add_stream(StreamConfig("S", ["s.>"]))
        if point in ("call", "call-io", "call-hop"):
            armed = point
        await streams.stream_state("S")
        if point == "block":
            armed = point
            reached(point)
            await trio.sleep(60)
        if point == "close":
            armed = point
        if point == "close-after-error":
            armed = point
            raise RuntimeError("the block failed")


async def cluster(url: str, point: str) -> None:
    global armed
    from actors import open_system
    from actors.cluster import Cluster

    if point in ("join", "join-io"):
        armed = point
    node = Cluster(servers=url, node="n1", key=b"k" * 32, heartbeat=0.1, down_after=3.0)
    async with open_system(f"interrupted-{point.replace('-', '_')}", cluster=node):
        if point == "member-io":
            armed = point
            await trio.sleep(60)


async def handover(url: str) -> None:
    from actors.streams import open_jetstream
    from actors.streams._jetstream import JetStreamEngine

    scope = trio.CancelScope()
    start = JetStreamEngine._start

    async def start_then_cancel(self: JetStreamEngine) -> None:
        await start(self)
        # (Runs after this coroutine ends, before the trio side gets the engine.)
        asyncio.get_running_loop().call_soon(scope.cancel)

    JetStreamEngine._start = start_then_cancel  # type: ignore[method-assign]
    entered = False
    with scope:
        async with open_jetstream(url):
            entered = True
            await trio.sleep(60)
    print(f"caught: {scope.cancelled_caught}, block entered: {entered}", flush=True)


def main() -> None:
    if sys.argv[1] == "handover":
        trio.run(handover, sys.argv[2])
        return
    target, url, point = sys.argv[1:]
    if point not in (ENGINE_POINTS if target == "engine" else CLUSTER_POINTS):
        sys.exit(f"no point {point!r} for {target!r}")
    install_hooks()
    trio.run(engine if target == "engine" else cluster, url, point)
    print(f"the point {point!r} was never reached (fired: {fired})", file=sys.stderr)
    sys.exit(3)


if __name__ == "__main__":
    main()
