"""The processes of the examples that run more than one (``cluster_bank.py``,
``durable_orders.py``): a throwaway ``nats-server -js``, child processes stopped by
their PID, and the way a child ends with its parent. A module the examples import, not a
script.

A child started by an example reads nothing on its stdin, which is a pipe from its
parent: :func:`until_stdin_closes` returns when that pipe closes, as it does when the
parent closes it, and also when the parent dies, however it dies (the operating system
closes it then). So no child outlives the example.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import trio


class Failed(Exception):
    """The example could not run (a process that did not start): the message says why."""


def find_nats_server() -> str | None:
    """``nats-server`` on ``PATH``, else in ``/usr/sbin`` (where Debian puts it, often not
    on a user's ``PATH``) or ``/usr/bin``; ``None`` if there is none."""
    found = shutil.which("nats-server")
    if found:
        return found
    for candidate in ("/usr/sbin/nats-server", "/usr/bin/nats-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


async def stop_processes(processes: list[trio.Process], grace: float) -> None:
    """Wait ``grace`` seconds for ``processes`` to exit, then kill those still running:
    at once if the wait is interrupted (a second Ctrl-C). Call it shielded."""
    try:
        with trio.move_on_after(grace):
            for process in processes:
                await process.wait()
    finally:
        for process in processes:
            if process.returncode is None:
                process.kill()
    with trio.move_on_after(5):
        for process in processes:
            await process.wait()


@contextlib.asynccontextmanager
async def nats_server(binary: str, directory: Path) -> AsyncIterator[str]:
    """A ``nats-server -js`` on a free port of 127.0.0.1, its store and log in
    ``directory``; yields its URL once it accepts clients. Stopped by its PID at the end
    (SIGTERM, SIGKILL after 10 seconds)."""
    log_path = trio.Path(directory / "nats-server.log")
    async with await log_path.open("wb") as log:
        process = await trio.lowlevel.open_process(
            [binary, "-js", "-a", "127.0.0.1", "-p", "-1", "-sd", str(directory / "nats")],
            stdin=subprocess.DEVNULL,
            stdout=log.fileno(),
            stderr=log.fileno(),
            # (A Ctrl-C in the terminal reaches the example's process only, which stops
            # its children first, while the server still serves them, then the server.)
            start_new_session=True,
        )
    try:
        # It says on which port it listens, then that it is ready, in its log (there is
        # nothing to wait on but the file).
        url = None
        with trio.move_on_after(15):
            while process.returncode is None:
                text = await log_path.read_text(errors="replace")
                port = re.search(r"Listening for client connections on [\d.]+:(\d+)", text)
                if port is not None and "Server is ready" in text:
                    url = f"nats://127.0.0.1:{port[1]}"
                    break
                with trio.move_on_after(0.05):
                    await process.wait()
        if url is None:
            log_text = await log_path.read_text(errors="replace")
            tail = "\n".join(log_text.splitlines()[-10:])
            raise Failed(f"nats-server did not start; the end of its log:\n{tail}")
        print(
            f"nats-server started (pid {process.pid}) on {url}, with a temporary store",
            flush=True,
        )
        yield url
    finally:
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.terminate()
            await stop_processes([process], 10)


@contextlib.asynccontextmanager
async def throwaway_nats(url: str | None, directory: Path) -> AsyncIterator[str]:
    """``url`` if it is given (a running server with JetStream), else the URL of a
    :func:`nats_server` started for the block, its store in ``directory``. ``Failed``
    if there is no ``nats-server`` to start."""
    if url is not None:
        yield url
        return
    binary = find_nats_server()
    if binary is None:
        raise Failed(
            "nats-server not found (on PATH or in /usr/sbin): install nats-server "
            "(apt-get install nats-server) or pass --nats URL"
        )
    async with nats_server(binary, directory) as started:
        yield started


async def until_stdin_closes() -> None:
    """Return once this process's stdin is closed: in a child of an example, once its
    parent closed the pipe, or died."""
    async with trio.lowlevel.FdStream(os.dup(sys.stdin.fileno())) as stdin:
        while await stdin.receive_some():
            pass
