"""X1-X4 worker processes: actors in another process of the same machine.

X1
    Tell throughput: the root tells 200,000 ints to a ``Counter`` actor placed on worker
    ``w1`` (``tell`` never yields), then asks it for its count; the clock stops when the
    answer arrives. Baseline: a raw trio socketpair to a child process (started the same
    way, ``trio.lowlevel.open_process`` with the child's end in ``pass_fds``), each
    message pickled with the standard ``pickle`` as the runtime pickles messages (it
    falls back to cloudpickle only for what pickle cannot carry), framed (4-byte
    length) and queued in an outbox from which one writer task writes everything queued
    with one ``send_all``; the child unpickles and counts every frame and answers the
    final one with its count. A reference row pickles with cloudpickle; another also
    writes the queue from the loop once 64 KiB are queued, as the runtime's link does
    (:class:`EagerOutbox`).
X2
    5,000 sequential ``await ref.ask(i)`` to an echo actor on ``w1``; asks/s and p50/p99
    latency. Baseline: request/reply of pickled frames over a raw trio socketpair with a
    child process that unpickles each frame, pickles it back and writes it.
X3
    CPU-bound handlers: 40 jobs of a pure-Python loop (about 20 ms each here), asked
    concurrently, job ``i`` of the actor ``i % 2``; the two actors are placed with
    ``AnyWorker()`` (round-robin: one on ``w1``, one on ``w2``). Baseline: the same jobs
    asked of one actor in the root process. The ratio is the speed-up.
X4
    SIGKILL of the worker hosting an actor (the pid from ``system.workers()``), until the
    restarted actor (restarted by its supervisor on a new process of that worker)
    answers an ask: the loop asks with a short timeout and asks again after
    ``ActorDead`` or ``AskTimeout``. The worker has been up longer than its
    ``restart_window`` (0.2 s here; default 5 s), so it is started again at once
    rather than after a backoff. Baseline (reference): starting a new interpreter that
    imports trio and answers on a socketpair.

Set-up (systems, workers, child processes, actors started and idle) is outside every
clock. ``--quick``: X1 20,000 tells, X2 500 asks, X3 10 jobs. Positional ids (``X1 X3``)
choose workloads (default: all four); ``bench/run.py`` passes them.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import logging
import math
import os
import pickle
import signal
import socket
import struct
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, Final

import cloudpickle
import trio
import trio.testing
from _common import (
    REPEATS,
    Result,
    Row,
    Run,
    best_seconds,
    chosen_workloads,
    fmt_rate,
    fmt_ratio,
    main,
    yes_no,
)

import actors

IDS: Final = ("X1", "X2", "X3", "X4")
TARGET_X1_RATE = 100e3
TARGET_X1_RATIO = 0.8
TARGET_X2_RATIO = 0.8
TARGET_X3_SPEEDUP = 1.7
TARGET_X4_SECONDS = 1.0
SPIN = 250_000
"""Iterations of one X3 job's loop (about 20 ms on this machine)."""
RESTART_WINDOW = 0.2
"""X4's ``Workers.restart_window``: the worker is older than this when it is killed."""

# X4 kills workers on purpose: the runtime's lines about it would only bury the tables.
for _name in ("actors.workers", "actors.supervision", "actors.deadletters", "actors.link"):
    logging.getLogger(_name).setLevel(logging.CRITICAL)


class Sizes:
    """The counts of one run (``--quick``: smaller ones)."""

    def __init__(self, quick: bool) -> None:
        self.tells = 20_000 if quick else 200_000
        self.asks = 500 if quick else 5_000
        self.jobs = 10 if quick else 40


# -- the actors ----------------------------------------------------------------------------


class Counter(actors.Actor):
    """Counts what it is told; ``None`` asks for the count."""

    def __init__(self) -> None:
        self.count = 0

    def receive(self, message: int | None) -> int | None:
        if message is None:
            return self.count
        self.count += 1
        return None


class Echo(actors.Actor):
    def receive(self, message: object) -> object:
        return message


def spin(n: int) -> int:
    """A pure-Python loop of ``n`` steps (holds the GIL throughout)."""
    h = 0
    for i in range(n):
        h = (h * 1_000_003 ^ i) & 0xFFFF_FFFF_FFFF
    return h


class Cruncher(actors.Actor):
    def receive(self, n: int) -> int:
        return spin(n)


class Pid(actors.Actor):
    def receive(self, message: object) -> int:
        return os.getpid()


# -- raw trio over a socketpair --------------------------------------------------------------

_header: Final = struct.Struct(">I")

RAW_CHILD: Final = r"""
import pickle, socket, struct, sys
import trio

header = struct.Struct(">I")


def frame(value):
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    return header.pack(len(payload)) + payload


async def main(mode, fd):
    stream = trio.SocketStream(trio.socket.from_stdlib_socket(socket.socket(fileno=fd)))
    await stream.send_all(frame("ready"))
    if mode == "hello":
        return
    loads, unpack_from = pickle.loads, header.unpack_from
    buffer = bytearray()
    count = 0
    while True:
        data = await stream.receive_some(65536)
        if not data:
            return
        buffer += data
        position, end, replies = 0, len(buffer), []
        while end - position >= 4:
            (size,) = unpack_from(buffer, position)
            stop = position + 4 + size
            if stop > end:
                break
            message = loads(buffer[position + 4 : stop])
            position = stop
            if mode == "echo":
                replies.append(frame(message))
            elif message is None:  # count: the final question
                replies.append(frame(count))
            else:
                count += 1
        del buffer[:position]
        if replies:
            await stream.send_all(b"".join(replies))


trio.run(main, sys.argv[1], int(sys.argv[2]))
"""
"""The child of the raw baselines: ``python -c RAW_CHILD MODE FD``. It first sends
``"ready"``; then ``count`` counts frames and answers ``None`` with the count, ``echo``
sends every frame back (unpickled and pickled again), ``hello`` exits."""


class Frames:
    """Reads frames (4-byte length, payload) from a stream."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = bytearray()

    async def next(self) -> bytes:
        buffer = self.buffer
        while True:
            if len(buffer) >= 4:
                (size,) = _header.unpack_from(buffer)
                if len(buffer) >= 4 + size:
                    payload = bytes(buffer[4 : 4 + size])
                    del buffer[: 4 + size]
                    return payload
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError("the raw child closed its end")
            buffer += data


class Outbox:
    """Coalesced writes: :meth:`send` queues a frame; one writer task (:meth:`run`)
    writes everything queued with one ``send_all``."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.chunks: list[bytes] = []
        self.wakeup = trio.Event()
        self.writing = False

    def send(self, payload: bytes) -> None:
        self.chunks.append(_header.pack(len(payload)))
        self.chunks.append(payload)
        self.wakeup.set()

    async def run(self) -> None:
        while True:
            if not self.chunks:
                self.wakeup = trio.Event()
                await self.wakeup.wait()
                continue
            chunks, self.chunks = self.chunks, []
            self.writing = True
            await self.stream.send_all(b"".join(chunks))
            self.writing = False


class EagerOutbox(Outbox):
    """:class:`Outbox`, plus what the runtime's link does for a sender that never
    yields: once ``FLUSH_AT`` bytes are queued, :meth:`send` itself writes what the
    socket takes (non-blocking), so the child starts while the loop goes on."""

    FLUSH_AT = 64 * 1024

    def __init__(self, stream: trio.SocketStream) -> None:
        super().__init__(stream)
        self.queued = 0
        self.writing = False
        self.fd = stream.socket.fileno()

    def send(self, payload: bytes) -> None:
        super().send(payload)
        self.queued += 4 + len(payload)
        if self.queued >= self.FLUSH_AT and not self.writing:
            self.queued = 0
            data = b"".join(self.chunks)
            try:
                written = os.write(self.fd, data)
            except BlockingIOError:
                written = 0
            self.chunks = [data[written:]] if written < len(data) else []


async def start_child(mode: str) -> tuple[trio.Process, trio.SocketStream]:
    """Start the raw child as the runtime starts a worker: ``open_process``, its end of
    an AF_UNIX socketpair in ``pass_fds``."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-c", RAW_CHILD, mode, str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
        )
    finally:
        theirs.close()
    return process, trio.SocketStream(trio.socket.from_stdlib_socket(ours))


@contextlib.asynccontextmanager
async def raw_child(mode: str) -> AsyncIterator[tuple[trio.SocketStream, Frames]]:
    """A raw child, up and ready; closed and reaped on the way out."""
    process, stream = await start_child(mode)
    frames = Frames(stream)
    try:
        assert pickle.loads(await frames.next()) == "ready"
        yield stream, frames
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()
            with trio.move_on_after(5):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


# -- X1 tell ---------------------------------------------------------------------------------


async def actors_tell(tells: int) -> float:
    async with actors.open_system("bench", workers=1) as system:
        ref = system.spawn(Counter, placement=actors.OnWorker("w1"))
        await ref.ask(None)  # started and parked
        await trio.testing.wait_all_tasks_blocked()
        tell = ref.tell
        start = time.perf_counter()
        for i in range(tells):
            tell(i)
        count = await ref.ask(None, timeout=math.inf)
        elapsed = time.perf_counter() - start
    assert count == tells, count
    return elapsed


async def raw_tell(tells: int, dumps: Callable[..., bytes], eager: bool = False) -> float:
    async with raw_child("count") as (stream, frames), trio.open_nursery() as nursery:
        outbox = EagerOutbox(stream) if eager else Outbox(stream)
        nursery.start_soon(outbox.run)
        await trio.testing.wait_all_tasks_blocked()
        send = outbox.send
        protocol = pickle.HIGHEST_PROTOCOL
        start = time.perf_counter()
        for i in range(tells):
            send(dumps(i, protocol=protocol))
        send(dumps(None, protocol=protocol))
        count = pickle.loads(await frames.next())
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    assert count == tells, count
    return elapsed


def x1(sizes: Sizes) -> tuple[list[Row], dict[str, Any]]:
    tells = sizes.tells
    actor_s, raw_s, stdlib_s, eager_s = best_seconds(
        functools.partial(actors_tell, tells),
        functools.partial(raw_tell, tells, cloudpickle.dumps),
        functools.partial(raw_tell, tells, pickle.dumps),
        functools.partial(raw_tell, tells, pickle.dumps, eager=True),
    )
    actor, raw, stdlib, eager = (tells / s for s in (actor_s, raw_s, stdlib_s, eager_s))
    # The target's baseline pickles as the runtime does: with the stdlib pickle (the
    # runtime falls back to cloudpickle only for what pickle cannot carry).
    ratio = actor / stdlib
    rows: list[Row] = [
        {
            "workload": f"X1 tell to an actor on a worker, {tells:,} msgs "
            "(vs raw socketpair, coalesced writes, stdlib pickle)",
            "actors": fmt_rate(actor, "msgs/s"),
            "baseline": fmt_rate(stdlib, "msgs/s"),
            "ratio": fmt_ratio(ratio),
            "target": f">= {fmt_rate(TARGET_X1_RATE, 'msgs/s')}, >= {TARGET_X1_RATIO}x",
            "met": f"rate {yes_no(actor >= TARGET_X1_RATE)}, "
            f"ratio {yes_no(ratio >= TARGET_X1_RATIO)}",
        },
        {
            "workload": "X1 (vs the same raw socketpair, pickled with cloudpickle)",
            "actors": fmt_rate(actor, "msgs/s"),
            "baseline": fmt_rate(raw, "msgs/s"),
            "ratio": fmt_ratio(actor / raw),
            "target": "(reference only)",
            "met": "-",
        },
        {
            "workload": "X1 (vs the raw loop also writing every 64 KiB from the loop, "
            "as the runtime's link does)",
            "actors": fmt_rate(actor, "msgs/s"),
            "baseline": fmt_rate(eager, "msgs/s"),
            "ratio": fmt_ratio(actor / eager),
            "target": "(reference only)",
            "met": "-",
        },
    ]
    data = {
        "x1_tells": tells,
        "x1_raw_eager_msgs_per_s": eager,
        "x1_actors_msgs_per_s": actor,
        "x1_raw_cloudpickle_msgs_per_s": raw,
        "x1_raw_pickle_msgs_per_s": stdlib,
    }
    return rows, data


# -- X2 ask ----------------------------------------------------------------------------------


async def actors_ask(asks: int) -> Run:
    latencies = [0] * asks
    clock = time.perf_counter_ns
    async with actors.open_system("bench", workers=1) as system:
        ref = system.spawn(Echo, placement=actors.OnWorker("w1"))
        await ref.ask(-1)  # started and parked
        await trio.testing.wait_all_tasks_blocked()
        ask = ref.ask
        begin = clock()
        for i in range(asks):
            start = clock()
            await ask(i)
            latencies[i] = clock() - start
        total = clock() - begin
    return Run(total, latencies)


async def raw_request_reply(asks: int) -> Run:
    latencies = [0] * asks
    clock = time.perf_counter_ns
    async with raw_child("echo") as (stream, frames):
        send_all, receive = stream.send_all, frames.next
        dumps, loads, pack = cloudpickle.dumps, pickle.loads, _header.pack
        protocol = pickle.HIGHEST_PROTOCOL
        begin = clock()
        for i in range(asks):
            start = clock()
            payload = dumps(i, protocol=protocol)
            await send_all(pack(len(payload)) + payload)
            loads(await receive())
            latencies[i] = clock() - start
        total = clock() - begin
    return Run(total, latencies)


def x2(sizes: Sizes) -> tuple[list[Row], dict[str, Any]]:
    asks = sizes.asks
    actor_runs: list[Run] = []
    raw_runs: list[Run] = []
    for _ in range(REPEATS):  # interleaved, so both see the same machine state
        for measure, runs in ((actors_ask, actor_runs), (raw_request_reply, raw_runs)):
            gc.collect()
            runs.append(trio.run(measure, asks))
    actor = max(actor_runs, key=lambda run: run.rate)
    raw = max(raw_runs, key=lambda run: run.rate)
    ratio = actor.rate / raw.rate
    rows: list[Row] = [
        {
            "workload": f"X2 sequential ask to an actor on a worker, {asks:,} asks "
            "(vs raw socketpair request/reply)",
            "actors": fmt_rate(actor.rate, "asks/s"),
            "baseline": fmt_rate(raw.rate, "asks/s"),
            "ratio": fmt_ratio(ratio),
            "target": f">= {TARGET_X2_RATIO}x raw",
            "met": yes_no(ratio >= TARGET_X2_RATIO),
        },
        {
            "workload": "X2 ask latency",
            "actors": actor.latency(digits=0),
            "baseline": raw.latency(digits=0),
            "ratio": f"p50 {actor.p50_us / raw.p50_us:.2f}x",
            "target": "(reference only)",
            "met": "-",
        },
    ]
    data = {
        "x2_asks": asks,
        "x2_actors_asks_per_s": actor.rate,
        "x2_actors_p50_us": actor.p50_us,
        "x2_actors_p99_us": actor.p99_us,
        "x2_raw_asks_per_s": raw.rate,
        "x2_raw_p50_us": raw.p50_us,
        "x2_raw_p99_us": raw.p99_us,
    }
    return rows, data


# -- X3 CPU-bound jobs -----------------------------------------------------------------------

QUIET: Final = actors.Settings(blocking_threshold=None)
"""X3's jobs hold the trio thread on purpose: no watchdog (the workers' would report
them on their stderr)."""


async def crunch(refs: Sequence[actors.ActorRef], jobs: int) -> float:
    """Ask every job at once (job ``i`` of ``refs[i % len(refs)]``) and time them all."""
    results = [0] * jobs

    async def job(i: int) -> None:
        results[i] = await refs[i % len(refs)].ask(SPIN, timeout=math.inf)

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for i in range(jobs):
            nursery.start_soon(job, i)
    elapsed = time.perf_counter() - start
    assert results == [results[0]] * jobs, "every job computes the same value"
    return elapsed


async def crunch_on_workers(jobs: int) -> float:
    async with actors.open_system("bench", settings=QUIET, workers=2) as system:
        refs = [system.spawn(Cruncher, placement=actors.AnyWorker()) for _ in range(2)]
        for ref in refs:
            await ref.ask(0)  # started and parked
        placed = sorted(info.name for info in system.workers() if info.actors)
        assert placed == ["w1", "w2"], placed
        await trio.testing.wait_all_tasks_blocked()
        return await crunch(refs, jobs)


async def crunch_in_one_process(jobs: int) -> float:
    async with actors.open_system("bench", settings=QUIET) as system:
        ref = system.spawn(Cruncher)
        await ref.ask(0)
        await trio.testing.wait_all_tasks_blocked()
        return await crunch([ref], jobs)


def x3(sizes: Sizes) -> tuple[list[Row], dict[str, Any]]:
    jobs = sizes.jobs
    workers_s, one_s = best_seconds(
        functools.partial(crunch_on_workers, jobs), functools.partial(crunch_in_one_process, jobs)
    )
    speedup = one_s / workers_s
    rows: list[Row] = [
        {
            "workload": f"X3 {jobs} CPU-bound jobs (~{one_s / jobs * 1e3:.0f} ms each) over 2 "
            "workers (vs one actor in the root process)",
            "actors": fmt_rate(jobs / workers_s, "jobs/s"),
            "baseline": fmt_rate(jobs / one_s, "jobs/s") + " (one process)",
            "ratio": fmt_ratio(speedup),
            "target": f">= {TARGET_X3_SPEEDUP}x one process",
            "met": yes_no(speedup >= TARGET_X3_SPEEDUP),
        }
    ]
    data = {"x3_jobs": jobs, "x3_workers_s": workers_s, "x3_one_process_s": one_s}
    return rows, data


# -- X4 SIGKILL of a worker ------------------------------------------------------------------


async def kill_and_ask_again() -> float:
    config = actors.Workers(count=1, restart_window=RESTART_WINDOW)
    async with actors.open_system("bench", workers=config) as system:
        ref = system.spawn(Pid, placement=actors.OnWorker("w1"))
        [worker] = system.workers()
        assert worker.pid is not None
        assert await ref.ask(None) == worker.pid
        await trio.sleep(RESTART_WINDOW)  # (older than restart_window: no backoff)
        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        os.kill(worker.pid, signal.SIGKILL)
        while True:
            try:
                pid = await ref.ask(None, timeout=0.5)
                break
            except (actors.ActorDead, actors.AskTimeout):
                await trio.sleep(0.001)
        elapsed = time.perf_counter() - start
        assert pid != worker.pid, "answered by a new process"
        assert system.workers()[0].restarts == 1
    return elapsed


async def start_interpreter() -> float:
    start = time.perf_counter()
    process, stream = await start_child("hello")
    try:
        assert pickle.loads(await Frames(stream).next()) == "ready"
        return time.perf_counter() - start
    finally:
        with trio.CancelScope(shield=True):
            await stream.aclose()
            await process.wait()


def x4() -> tuple[list[Row], dict[str, Any]]:
    restart_s, interpreter_s = best_seconds(kill_and_ask_again, start_interpreter)
    rows: list[Row] = [
        {
            "workload": "X4 SIGKILL a worker until the restarted actor answers "
            "(vs start of a raw interpreter importing trio)",
            "actors": f"{restart_s:.3f} s",
            "baseline": f"{interpreter_s:.3f} s",
            "ratio": fmt_ratio(restart_s / interpreter_s),
            "target": f"<= {TARGET_X4_SECONDS:g} s",
            "met": yes_no(restart_s <= TARGET_X4_SECONDS),
        }
    ]
    return rows, {"x4_restart_s": restart_s, "x4_raw_interpreter_s": interpreter_s}


def run(ids: Sequence[str] = IDS, quick: bool = False) -> Result:
    sizes = Sizes(quick)
    measures = {
        "X1": lambda: x1(sizes),
        "X2": lambda: x2(sizes),
        "X3": lambda: x3(sizes),
        "X4": x4,
    }
    rows: list[Row] = []
    data: dict[str, Any] = {"quick": quick}
    for name in IDS:
        if name in ids:
            more_rows, more_data = measures[name]()
            rows.extend(more_rows)
            data.update(more_data)
    return {"rows": rows, "data": data}


if __name__ == "__main__":
    main(lambda: run(*chosen_workloads(sys.argv[1:], IDS)))
