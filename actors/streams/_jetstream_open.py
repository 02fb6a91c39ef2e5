"""Opening :class:`~actors.streams.JetStreamEngine`: :func:`open_jetstream`, and the
task that runs the engine's asyncio loop and its connection.

The loop (trio-asyncio's) and the connection live in a task of their own, not in the
task of the ``async with``: trio delivers a ``KeyboardInterrupt`` to the main task at
whatever it waits for, and trio-asyncio's loop cannot be interrupted halfway through
opening or closing (the loop is left half-stopped and its nursery waits forever). In a
task of its own the loop is only ever cancelled, which it handles; the interrupt comes
out of the ``async with`` itself (see :func:`open_jetstream` for when).
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from .._aio_interrupts import protect_aio_loops
from .._interrupts import interrupt_in
from ._jetstream import JetStreamEngine
from ._jetstream_connect import check_options, connect


@asynccontextmanager
@trio.lowlevel.enable_ki_protection
async def open_jetstream(
    servers: str | Sequence[str],
    *,
    user: str | None = None,
    password: str | None = None,
    token: str | None = None,
    tls: ssl.SSLContext | None = None,
    name: str | None = None,
    connect_timeout: float = 5.0,
    timeout: float = 5.0,
    reconnect_time_wait: float = 1.0,
) -> AsyncIterator[JetStreamEngine]:
    """Connect to NATS (JetStream enabled: ``nats-server -js``) and yield a
    :class:`JetStreamEngine` for the block; leaving the block closes it (the
    settlements still queued are sent first; shielded, at most 5 s).

    ``servers``: one URL or several (``nats://host:4222``, ``tls://host:4222``).
    ``user`` and ``password``, or ``token``: the server's authentication. ``tls``: an
    :class:`ssl.SSLContext`; given, a server that does not require TLS is refused (the
    client would otherwise talk to it in clear). ``name``: the connection's name in
    the server's monitoring. ``connect_timeout``: seconds for one attempt to connect
    (two attempts per server, ``reconnect_time_wait`` apart). ``timeout``: seconds an
    operation waits for JetStream's answer before it raises :class:`StreamError` (its
    outcome unknown). Once connected, the client reconnects by itself, forever, if the
    connection is lost.

    Raises :class:`StreamError` naming the servers, with the client's error chained
    (refused connection, refused credentials or certificate), if it cannot connect.
    The loop is trio-asyncio's, the engine's own: a node of a cluster in the same
    process (which has its own) is no obstacle. The block's own exception comes out as
    itself, not in an exception group.

    Ctrl-C (``KeyboardInterrupt``) or a cancellation while it connects gives up the
    connection at once and comes out as itself. In the block, it comes out of the call
    it interrupts (an engine call cancels its request), and the engine is closed on the
    way out as usual. While the engine closes, a ``KeyboardInterrupt`` waits for the
    close (at most 5 s), then comes out as itself (the block's own exception, if any,
    named in a note).
    """
    urls = check_options(
        servers,
        user,
        password,
        token,
        tls,
        {
            "connect_timeout": connect_timeout,
            "timeout": timeout,
            "reconnect_time_wait": reconnect_time_wait,
        },
    )
    try:
        import nats  # noqa: F401
        import trio_asyncio  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"open_jetstream needs the cluster extra ({error.name} is missing): "
            "pip install 'trio-actors[cluster]'"
        ) from error
    options: dict[str, Any] = {
        "servers": urls,
        "name": name or "trio-actors streams",
        "connect_timeout": connect_timeout,
        "reconnect_time_wait": reconnect_time_wait,
        "max_reconnect_attempts": 1,  # (while connecting: -1, forever, once connected)
    }
    if user is not None:
        options["user"], options["password"] = user, password
    if token is not None:
        options["token"] = token
    if tls is not None:
        options["tls"] = tls
    protect_aio_loops()
    # (This function is protected from KeyboardInterrupt raised in it: one comes out of
    # what it awaits, or out of the block, so that it is caught and re-raised below.)
    closing = trio.Event()
    failure: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                engine: JetStreamEngine = await nursery.start(
                    _run_engine,
                    urls,
                    options,
                    tls is not None,
                    connect_timeout,
                    timeout,
                    closing,
                    nursery,
                    name="JetStream engine",
                )
                # (Cancelled meanwhile, the engine may not have been handed over, and
                # is closed then: the block is not entered.)
                await trio.lowlevel.checkpoint_if_cancelled()
                try:
                    yield engine
                except BaseException as error:
                    failure = error
            except BaseException as error:  # (not connected, interrupted, cancelled)
                failure = error
            finally:
                closing.set()  # (the engine's task closes it, then ends)
    except BaseExceptionGroup as group:
        # KeyboardInterrupt delivered while waiting for the engine's task to close it
        # (or the task's own crash, a bug: out as it is).
        interrupt = interrupt_in(group)
        if interrupt is None:
            raise
        if failure is not None and failure is not interrupt:
            interrupt.add_note(f"the block of open_jetstream had raised {failure!r}")
        raise interrupt from None
    if failure is not None:
        # (Raised here, outside the nursery, so that it comes out as itself.)
        raise interrupt_in(failure) or failure


@trio.lowlevel.enable_ki_protection
async def _run_engine(
    urls: list[str],
    options: dict[str, Any],
    tls: bool,
    connect_timeout: float,
    timeout: float,
    closing: trio.Event,
    home: trio.Nursery,
    *,
    task_status: trio.TaskStatus[JetStreamEngine] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The engine's task: open its asyncio loop, connect, start the engine, hand it
    over, and once ``closing`` is set close it (shielded, at most 5 s) and the loop.
    Cancelled before it is handed over, it gives up (and closes what it opened); after,
    only ``closing`` ends it: the engine stays open until its block ends, also when the
    block is cancelled (so that a shielded cleanup in the block can still use it)."""
    import trio_asyncio

    failure: BaseException | None = None
    # (Raised after the asyncio loop is closed, so that it comes out as itself, not in
    # the exception group of the loop's own nursery.)
    async with trio_asyncio.open_loop() as loop:
        try:
            nc = await connect(loop, urls, options, tls, connect_timeout)
            engine = JetStreamEngine(loop, nc, timeout)
            try:
                await engine._aio(engine._start(), "starting the JetStream engine")
                task_status.started(engine)
                # started() does not hand the engine over if the start was cancelled
                # meanwhile (the task then stays where it started): nobody would set
                # ``closing``, so do not wait for it.
                if trio.lowlevel.current_task().parent_nursery is home:
                    with trio.CancelScope(shield=True):
                        await closing.wait()
            finally:
                await engine.close()
        except BaseException as error:
            failure = error
    if failure is not None:
        raise failure
