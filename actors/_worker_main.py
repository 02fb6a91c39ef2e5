"""The program a worker process runs: ``python -m actors._worker_main FD``.

``FD`` is the worker's end of the socket pair the root made (``_worker_pool.py``); the
system's key is in the environment variable ``TRIO_ACTORS_WORKER_KEY``, which is removed
from this process's environment as it is read (so the user's code here, and the
processes it starts, do not see it). The worker proves it holds the key and checks that
the root does (``_handshake.py``) before it unpickles anything, reads ``hello``, opens
the system as its node, and serves the root until told to shut down or until the link
closes (the root exited or was killed): then it stops its actors, each within the
system's stop timeout, and exits. It never outlives its link.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import socket
import sys
from typing import Any, Final

import attrs
import trio

from ._errors import WorkerError
from ._handshake import handshake
from ._link import Link
from ._system import running_system
from ._wire import WireError
from ._worker_host import WorkerNode
from ._worker_pool import KEY_ENV

_log: Final = logging.getLogger("actors.workers")
HELLO_TIMEOUT: Final = 60.0
"""How long a worker waits for the root's ``hello`` after the handshake."""


async def serve(fd: int, key: bytes) -> None:
    """Serve the root over the socket ``fd`` (see the module documentation)."""
    sock = trio.socket.from_stdlib_socket(socket.socket(fileno=fd))
    stream = trio.SocketStream(sock)
    await handshake(stream, key, initiator=False, name="root")
    link = Link(stream, name="root")
    early: list[bytes] = []
    hello: list[tuple[Any, ...]] = []
    got_hello = trio.Event()
    node: list[WorkerNode] = []

    def on_frame(payload: bytes) -> None:
        if node:
            node[0].dispatch(payload)
        elif not hello:
            frame = pickle.loads(payload)  # (authenticated: the root's first frame)
            if frame[0] != "hello":
                raise WorkerError(f"expected hello from the root, got {frame[0]!r}")
            hello.append(frame)
            got_hello.set()
        else:
            early.append(payload)

    async with trio.open_nursery() as nursery:
        link_done = trio.Event()

        async def run_link() -> None:
            try:
                await link.run(on_frame)
            finally:
                link_done.set()

        nursery.start_soon(run_link)

        async def until_link_ends() -> None:
            await link_done.wait()
            got_hello.set()

        nursery.start_soon(until_link_ends)
        with trio.move_on_after(HELLO_TIMEOUT):
            await got_hello.wait()
        if not hello:
            link.close("no hello from the root")
            raise WorkerError(
                "the root closed the link or sent no hello within "
                f"{HELLO_TIMEOUT:g} s of the handshake; exiting"
            )
        _, system_name, node_name, settings, for_workers, path = hello[0]
        for entry in reversed(path):
            if entry not in sys.path:
                sys.path.insert(0, entry)
        # The extensions open their own resources here (a journal), around the system.
        async with contextlib.AsyncExitStack() as stack:
            opened = [await stack.enter_async_context(made.open()) for made in for_workers]
            settings = attrs.evolve(settings, extensions=tuple(opened))
            async with running_system(system_name, settings, node=node_name) as system:
                worker = WorkerNode(system, link)
                system._router = worker
                system._guardian._relay = worker
                worker._nursery = system._nursery
                node.append(worker)
                for payload in early:
                    worker.dispatch(payload)
                early.clear()

                async def until_link_done() -> None:
                    await link_done.wait()
                    worker.shutdown.set()

                nursery.start_soon(until_link_done)
                await worker.shutdown.wait()
        link.close("the worker is exiting")
        nursery.cancel_scope.deadline = trio.current_time() + 5


def main() -> None:
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.exit("usage: python -m actors._worker_main FD (started by trio-actors only)")
    key_hex = os.environ.pop(KEY_ENV, None)
    if key_hex is None:
        sys.exit(f"trio-actors worker: {KEY_ENV} is not set (started by trio-actors only)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        trio.run(serve, int(sys.argv[1]), bytes.fromhex(key_hex))
    except (WireError, WorkerError) as error:
        # Refused at the handshake, or no usable root: one line, and a failure status.
        sys.exit(f"trio-actors worker (pid {os.getpid()}): {error}")


if __name__ == "__main__":
    main()
