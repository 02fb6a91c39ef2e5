"""Ctrl-C and the asyncio loops of trio-asyncio (which the cluster node and the
JetStream engine run nats-py in): :func:`protect_aio_loops`.

Trio raises ``KeyboardInterrupt`` at the point a SIGINT arrives, in whatever Python code
runs then, unless that code is protected (:func:`trio.lowlevel.enable_ki_protection`);
then it delivers it to the main task at its next checkpoint instead. trio-asyncio runs
its loop (asyncio's callbacks and tasks, the reads and writes of its sockets) in trio
tasks of its own, unprotected: a Ctrl-C that lands in one of those kills the loop in
the middle of a callback. The loop's nursery then raises an exception group, and every
call waiting for an asyncio future of that loop waits forever, since the loop that
would complete it is gone (``run_aio_coroutine`` can only be cancelled by the asyncio
task it waits for), so closing a connection hangs.

Protected, the loop goes on: the ``KeyboardInterrupt`` goes to the main task, where a
call into the loop (``run_aio_coroutine``) cancels its asyncio task and raises it, and
the loop closes as on any other exit. (asyncio's own ``asyncio.run`` does the same in
spirit: Ctrl-C cancels its main task rather than being raised inside the loop.)
"""

from __future__ import annotations

from typing import Final

import trio

_PROTECTED: Final[list[bool]] = []


def protect_aio_loops() -> None:
    """Protect the loop machinery of trio-asyncio from ``KeyboardInterrupt`` raised in
    it (see the module documentation): the loop's main task, its callbacks and its I/O
    tasks, in every trio-asyncio loop of the process (the marks are on trio-asyncio's
    code). Idempotent; called before a loop is opened. Code run in the loop by a call
    from trio stays interruptible: the interrupt comes out of that call."""
    if _PROTECTED:
        return
    from trio_asyncio._base import BaseTrioEventLoop

    for method in (
        BaseTrioEventLoop._main_loop,
        BaseTrioEventLoop._main_loop_one,
        BaseTrioEventLoop._io_task,
    ):
        trio.lowlevel.enable_ki_protection(method)
    _PROTECTED.append(True)
