"""Ctrl-C and cancellation at every stage of the JetStream engine's life (connecting,
a call, the block, closing) and of a cluster node's (joining, a member): the
``KeyboardInterrupt`` (or ``Cancelled``) comes out as itself, not in an exception
group, promptly, and nothing hangs.

SIGINT is sent by a child process to itself from inside the code at each point
(``interrupt_child.py``): nats-py's connect and close, a JetStream request, the asyncio
loop's read of the socket, the hop from trio into the loop. No timing decides where it
lands. The test reads how each child ended: killed by SIGINT (Python re-raises it when
a ``KeyboardInterrupt`` is not caught), the traceback of a ``KeyboardInterrupt`` and
nothing else on stderr, within a bound (a child that hangs is killed and reported).
Cancellations are checked in this process, at the same points.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

pytest.importorskip("nats")
pytest.importorskip("trio_asyncio")

from interrupt_child import CLUSTER_POINTS, ENGINE_POINTS
from nats.aio.client import Client
from nats.js.manager import JetStreamManager

from actors.streams import ConsumerConfig, StreamConfig, open_jetstream

pytestmark = [pytest.mark.nats, pytest.mark.crash]

CHILD = Path(__file__).parent / "interrupt_child.py"
WITHIN = 30.0
"""Seconds a child may take in all (about one here; a loaded machine is slow): past it,
it hangs."""
NOISE = ("ExceptionGroup", "never awaited", "never retrieved", "Task was destroyed")
"""What stderr must not show: an exception group, or what an asyncio loop broken by
the interrupt leaves behind."""
STREAM = StreamConfig("S", ["s.>"])


async def run_child(*arguments: str) -> subprocess.CompletedProcess[bytes] | None:
    """Run ``interrupt_child.py`` with ``arguments``; ``None`` if it hangs (then it is
    killed)."""
    finished: subprocess.CompletedProcess[bytes] | None = None
    with trio.move_on_after(WITHIN):  # (cancelled, run_process kills the child)
        finished = await trio.run_process(
            [sys.executable, str(CHILD), *arguments],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    return finished


async def interrupted_badly(target: str, url: str, point: str) -> str | None:
    """Run the child at ``point``; what is wrong with how it ended (``None``: nothing)."""
    finished = await run_child(target, url, point)
    if finished is None:
        return f"still running after {WITHIN:g} s: it hangs (killed)"
    stdout = finished.stdout.decode()
    stderr = finished.stderr.decode()
    lines = stderr.strip().splitlines()
    expected_last = "KeyboardInterrupt"
    if point == "close-after-error":  # (the note naming the block's own exception)
        expected_last = "the block of open_jetstream had raised RuntimeError('the block failed')"
    problems = []
    if stdout != f"SIGINT at {point}\n":
        problems.append(f"the SIGINT was not sent at {point} (stdout {stdout!r})")
    if finished.returncode != -signal.SIGINT:
        problems.append(f"exit status {finished.returncode}, not killed by SIGINT")
    if not lines or lines[-1] != expected_last or "KeyboardInterrupt" not in lines:
        problems.append(f"the traceback does not end in {expected_last!r}")
    problems += [f"{noise!r} on stderr" for noise in NOISE if noise in stderr]
    if not problems:
        return None
    return "; ".join(problems) + "\n" + "\n".join(lines[-40:])


async def check_points(target: str, url: str, points: tuple[str, ...]) -> None:
    failures: dict[str, str] = {}
    limiter = trio.CapacityLimiter(4)

    async def one(point: str) -> None:
        async with limiter:
            problem = await interrupted_badly(target, url, point)
        if problem is not None:
            failures[point] = problem

    async with trio.open_nursery() as nursery:
        for point in points:
            nursery.start_soon(one, point)
    assert not failures, "\n\n".join(f"== {p}: {what}" for p, what in failures.items())


async def test_ctrl_c_anywhere_in_the_engines_life_comes_out_as_itself(nats_url: str) -> None:
    await check_points("engine", nats_url, ENGINE_POINTS)


async def test_ctrl_c_while_a_cluster_node_joins_or_runs_comes_out_as_itself(
    nats_url: str,
) -> None:
    await check_points("cluster", nats_url, CLUSTER_POINTS)


# -- cancellation, in this process ------------------------------------------------------------


def cancel_in(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, scope: trio.CancelScope
) -> list[bool]:
    """Make the coroutine method ``owner.name`` (nats-py's, run in the asyncio loop)
    cancel ``scope`` when it starts (once); the list returned says whether it did."""
    original: Callable[..., Awaitable[Any]] = getattr(owner, name)
    reached: list[bool] = []

    async def cancelling(*args: Any, **kwargs: Any) -> Any:
        if not reached:
            reached.append(True)
            scope.cancel()
        return await original(*args, **kwargs)

    monkeypatch.setattr(owner, name, cancelling)
    return reached


async def test_a_cancellation_while_connecting_gives_up_the_connection(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    scope = trio.CancelScope()
    reached = cancel_in(monkeypatch, Client, "_process_connect_init", scope)
    entered = False
    with scope:
        async with open_jetstream(nats_url):
            entered = True
    assert reached == [True]
    assert scope.cancelled_caught  # (caught by its scope: not in an exception group)
    assert not entered


async def test_a_cancellation_during_a_call_comes_out_of_the_call(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_jetstream(nats_url) as engine:
        await engine.add_stream(STREAM)
        scope = trio.CancelScope()
        reached = cancel_in(monkeypatch, JetStreamManager, "stream_info", scope)
        with scope:
            await engine.stream_state("S")
        assert reached == [True]
        assert scope.cancelled_caught
        assert (await engine.stream_state("S")).name == "S"  # (the engine goes on)


async def test_a_cancellation_while_closing_lets_the_close_finish(
    nats_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_jetstream(nats_url) as engine:
        await engine.add_stream(STREAM)
        await engine.publish("s.a", b"one")
        await engine.consumer("S", ConsumerConfig("readers"))
    scope = trio.CancelScope()
    with scope:
        async with open_jetstream(nats_url) as engine:
            consumer = await engine.consumer("S", ConsumerConfig("readers"))
            (event,) = await consumer.fetch(1, timeout=WITHIN)
            await event.ack()  # (queued: the close sends it before it disconnects)
            reached = cancel_in(monkeypatch, Client, "close", scope)
    assert reached == [True]
    monkeypatch.undo()
    async with open_jetstream(nats_url) as engine:
        consumer = await engine.consumer("S", ConsumerConfig("readers"))
        assert await consumer.info() == (0, 0)  # (nothing pending: the ack was sent)


async def test_a_cancellation_as_the_engine_is_handed_over_ends_the_block_unentered(
    nats_url: str,
) -> None:
    # (In a child: gone wrong, this one hangs, in a task nothing can cancel.)
    finished = await run_child("handover", nats_url)
    assert finished is not None, f"still running after {WITHIN:g} s: it hangs (killed)"
    assert (finished.returncode, finished.stdout.decode()) == (
        0,
        "caught: True, block entered: False\n",
    ), finished.stderr.decode()
