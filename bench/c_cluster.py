"""C1-C3 a cluster on NATS: actors on another node (another process), through a
nats-server.

C1
    Tell throughput: this process (node ``bench``) tells 100,000 small messages (``Tick``,
    a registered attrs class) to a counting actor of node ``n1`` (another process), found
    by its cluster-wide name; ``tell`` never yields, so the node's outbox hands them all
    to the NATS client in one hop into asyncio. The clock stops when the answer to an
    ask for the actor's count arrives. Baseline: raw nats-py under trio-asyncio, in this
    process, publishing as many payloads of the size of a sealed tell frame in one hop
    (then a request, on the same subject, for the count) to a subscriber process
    (nats-py under trio-asyncio) that counts what it receives. (Not 200,000 as X1: a
    burst that takes the receiving node longer than ``down_after`` to work through makes
    it count itself cut off, and 200,000 takes it close to that: see ``README.md``.)
C2
    2,000 sequential asks (``Ping``, echoed) to an actor of node ``n1``: asks/s, p50 and
    p99. Baseline: sequential ``nc.request`` under trio-asyncio (one hop per request),
    answered by a responder process (nats-py under trio-asyncio, ``msg.respond`` in its
    callback), with payloads of the size of a sealed ask frame.
C3
    Failover of a persistent sharded entity (an event-sourced ``Ledger``, SQLite journal
    shared by the nodes): nodes ``n1`` and ``n2`` host the entity type, this process only
    routes to it (``host=False``). A writer asks an entity of ``n1`` to persist events
    (an answer means the event is in the journal) until ``n1`` is killed with SIGKILL; the
    clock runs from the kill until the entity answers from ``n2``, and its state there must
    hold every acknowledged event. Every node uses ``Cluster``'s default heartbeat
    (0.5 s) and ``down_after`` (3.0 s); the target is ``down_after + 1 s``. Three runs
    (at most ``BENCH_REPEATS``), killing at different points between two heartbeats.

A throwaway nats-server (``tests/nats_server.py``) serves every workload; the node and
raw processes run this script (``python bench/c_cluster.py node|raw-count|raw-echo``).
Set-up (servers, processes, joining the cluster, looking names up) is outside every
clock. Without ``nats-server`` or the cluster extra (nats-py, trio-asyncio, msgspec) the
rows say so and are skipped. ``--quick``: C1 20,000 tells, C2 200 asks, C3 one run.
Positional ids (``C1 C3``) choose workloads (default: all three).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import logging
import math
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import attrs
import trio
import trio.lowlevel
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
    nats_missing,
    yes_no,
)

import actors
from actors.persistence import Persistence, PersistentActor, open_sqlite_journal

HERE: Final = Path(__file__).resolve().parent
TESTS: Final = HERE.parent / "tests"
sys.path.append(str(TESTS))  # (tests/nats_server.py: the throwaway nats-server)

IDS: Final = ("C1", "C2", "C3")
TARGET_C1_RATE = 100e3
TARGET_C1_RATIO = 0.5
TARGET_C2_RATIO = 0.8
TARGET_C2_P50_US = 1000.0
C3_SLACK = 1.0
"""C3's target: ``down_after`` plus this many seconds."""
KEY: Final = b"bench-cluster-key-of-32-bytes..."
SYSTEM: Final = "bench"
READY_TIMEOUT = 30.0
"""Seconds a node or raw process may take to say ``ready``."""
C3_RUNS = min(REPEATS, 3)
"""C3 runs (each starts two nodes and waits out ``down_after``: about 8 s)."""


class Sizes:
    """The counts of one run (``--quick``: smaller ones)."""

    def __init__(self, quick: bool) -> None:
        self.tells = 20_000 if quick else 100_000
        self.asks = 200 if quick else 2_000
        self.c3_runs = 1 if quick else C3_RUNS


# -- messages and actors (the same classes in every process: this script) --------------------


@attrs.frozen
class Tick:
    n: int


@attrs.frozen
class Count:
    """Ask a :class:`Counter` for its count (which starts again from 0)."""


@attrs.frozen
class Ping:
    n: int


@attrs.frozen
class Add:
    amount: int


@attrs.frozen
class Added:
    amount: int


@attrs.frozen
class Get:
    pass


@attrs.frozen
class Where:
    pass


TYPES: Final[dict[str, type]] = {
    f"bench.{cls.__name__}": cls for cls in (Tick, Count, Ping, Add, Added, Get, Where)
}
"""Registered by explicit names, so that this script's classes have the same names in
every process (``__main__`` in this one, module ``c_cluster`` in the node processes)."""


class Counter(actors.Actor):
    def __init__(self) -> None:
        self.count = 0

    def receive(self, message: Tick | Count) -> int | None:
        if isinstance(message, Count):
            count, self.count = self.count, 0
            return count
        self.count += 1
        return None


class Echo(actors.Actor):
    def receive(self, message: object) -> object:
        return message


def cluster_config(url: str, node: str) -> Any:
    """``Cluster`` of node ``node``: the defaults of heartbeat (0.5 s) and down_after
    (3.0 s)."""
    from actors.cluster import Cluster

    return Cluster(servers=url, node=node, key=KEY, types=TYPES)


class Ledger(PersistentActor):
    """C3's persistent entity: it persists each ``Add`` before it answers (an answer:
    the event is in the journal)."""

    def __init__(self, entity_id: str) -> None:
        self.persistence_id = f"ledger-{entity_id}"
        self.seen: list[int] = []

    def apply(self, event: Added) -> None:
        self.seen.append(event.amount)

    async def receive(self, message: Any) -> Any:
        match message:
            case Add(amount):
                await self.persist(Added(amount))
                return len(self.seen)
            case Get():
                return self.seen
            case Where():
                return self.context.system.node
        return None


def ledger_type() -> Any:
    """C3's entity type (``actors.cluster`` needs the cluster extra: imported here)."""
    from actors.cluster import EntityType

    return EntityType(name="ledger", factory=Ledger, shards=16, passivate_after=None)


# -- the node and raw processes --------------------------------------------------------------


async def node_main(url: str, name: str, system_name: str, journal: str | None) -> None:
    """A node process: C1/C2's ``counter`` and ``echo`` (registered cluster-wide), or
    with ``journal`` C3's ledger entities. Runs until its stdin closes."""
    async with contextlib.AsyncExitStack() as stack:
        extensions = []
        if journal is not None:
            store = await stack.enter_async_context(open_sqlite_journal(journal))
            extensions.append(Persistence(store))
        system = await stack.enter_async_context(
            actors.open_system(
                system_name, cluster=cluster_config(url, name), extensions=extensions
            )
        )
        if journal is not None:
            await system.cluster.start_entities(ledger_type())
        else:
            for actor_name, cls in (("counter", Counter), ("echo", Echo)):
                ref = system.spawn(cls, name=actor_name)
                await system.cluster.register(actor_name, ref)
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


async def raw_main(url: str, mode: str, subject: str) -> None:
    """A raw nats-py process under trio-asyncio: ``count`` counts what arrives on
    ``subject`` and answers a request there with the count (which starts again from 0);
    ``echo`` answers every request with its payload. Runs until its stdin closes."""
    import nats
    import trio_asyncio

    count = 0

    async def counting(msg: Any) -> None:
        nonlocal count
        if msg.reply:
            await msg.respond(str(count).encode())
            count = 0
        else:
            count += 1

    async def echoing(msg: Any) -> None:
        await msg.respond(msg.data)

    async with trio_asyncio.open_loop() as loop:
        nc = await loop.run_aio_coroutine(nats.connect(url))
        callback = counting if mode == "count" else echoing
        await loop.run_aio_coroutine(nc.subscribe(subject, cb=callback))
        await loop.run_aio_coroutine(nc.flush())
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)
        await loop.run_aio_coroutine(nc.close())


class Child:
    """A node or raw process (this script), ``ready`` once started; :meth:`stop` closes
    its stdin (it leaves in order), :meth:`kill` sends SIGKILL."""

    def __init__(self, *args: str, log: Path) -> None:
        self.log = log
        with open(log, "ab") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, str(Path(__file__).resolve()), *args],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
            )
        self.args = args

    def wait_ready(self) -> None:
        assert self.process.stdout is not None
        deadline = time.monotonic() + READY_TIMEOUT
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            readable, _, _ = select.select([self.process.stdout], [], [], max(left, 0))
            if not readable:
                self.kill()
                raise RuntimeError(f"{' '.join(self.args)}: not ready in time{self.tail()}")
            chunk = os.read(self.process.stdout.fileno(), 1)
            if not chunk:
                raise RuntimeError(f"{' '.join(self.args)}: exited before ready{self.tail()}")
            line += chunk
        assert line == b"ready\n", line

    def tail(self) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "; the end of its stderr:\n" + "\n".join(text.splitlines()[-20:])

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.closed:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.kill()
        if self.process.stdout is not None:
            self.process.stdout.close()


@contextlib.contextmanager
def children(*specs: tuple[str, ...], directory: Path) -> Iterator[list[Child]]:
    """Start the processes (at once), wait until each is ready; stop them on the way
    out."""
    started: list[Child] = []
    try:
        for i, args in enumerate(specs):
            started.append(Child(*args, log=directory / f"child-{i}.log"))
        for child in started:
            child.wait_ready()
        yield started
    except BaseException:
        for child in started:
            print(f"{' '.join(child.args[:3])}{child.tail()}", file=sys.stderr)
        raise
    finally:
        for child in started:
            child.stop()


# -- this process as node ``bench`` -------------------------------------------------------------


@contextlib.asynccontextmanager
async def bench_node(url: str, system_name: str = SYSTEM) -> AsyncIterator[actors.ActorSystem]:
    async with actors.open_system(system_name, cluster=cluster_config(url, "bench")) as system:
        yield system


async def found(system: actors.ActorSystem, name: str) -> actors.ActorRef:
    """The actor registered as ``name`` on ``n1``, once it answers this node (``n1`` may
    see this node join a moment after this node sees it)."""
    node = system.cluster
    await node.wait_for_members({"n1"})
    ref = await node.lookup(name)
    assert ref is not None, name
    for _ in range(50):
        with contextlib.suppress(actors.AskTimeout):
            await ref.ask(Count() if name == "counter" else Ping(-1), timeout=0.2)
            return ref
    raise RuntimeError(f"{name} on n1 does not answer node bench")


def sealed_size(system: actors.ActorSystem, frame: bytes) -> int:
    """The size of ``frame`` as published: sealed for ``n1`` (see ``_seal.py``)."""
    from actors.cluster._seal import Keyring, seal

    node = system.cluster
    recipient = f"n1#{node.incarnation_of('n1')}"
    return len(
        seal(Keyring({"k1": KEY}, "k1"), "bench", node.incarnation, 1, frame, recipient=recipient)
    )


# -- C1 tell ------------------------------------------------------------------------------------


async def actors_tell(url: str, tells: int, measured: dict[str, float]) -> float:
    async with bench_node(url) as system:
        counter = await found(system, "counter")
        node = system.cluster
        frame = node.tell_frame(counter.address, None, node.encode(Tick(tells)))
        measured["tell"] = sealed_size(system, frame)
        await trio.testing.wait_all_tasks_blocked()
        tell = counter.tell
        start = time.perf_counter()
        for i in range(tells):
            tell(Tick(i))
        told = time.perf_counter()
        count = await counter.ask(Count(), timeout=math.inf)
        elapsed = time.perf_counter() - start
    assert count == tells, count
    measured["loop"] = min(measured.get("loop", math.inf), told - start)
    return elapsed


def raw_payload(size: int) -> Callable[[int], bytes]:
    """Payloads of ``size`` bytes, each with its number in the first 8."""
    padding = bytes(max(size - 8, 0))
    return lambda i: i.to_bytes(8, "big") + padding


async def raw_publish(url: str, subject: str, tells: int, measured: dict[str, float]) -> float:
    import nats
    import trio_asyncio

    payload = raw_payload(int(measured["tell"]))
    async with trio_asyncio.open_loop() as loop:
        nc = await loop.run_aio_coroutine(nats.connect(url))
        try:
            await loop.run_aio_coroutine(nc.request(subject, b"?", timeout=10))  # (from 0)
            await trio.testing.wait_all_tasks_blocked()

            async def publish(batch: list[bytes]) -> int:
                for data in batch:
                    await nc.publish(subject, data)
                answer = await nc.request(subject, b"?", timeout=600)
                return int(answer.data)

            start = time.perf_counter()
            batch = []
            for i in range(tells):
                batch.append(payload(i))
            count = await loop.run_aio_coroutine(publish(batch))
            elapsed = time.perf_counter() - start
        finally:
            await loop.run_aio_coroutine(nc.close())
    assert count == tells, count
    return elapsed


def c1(url: str, sizes: Sizes, directory: Path) -> tuple[list[Row], dict[str, Any]]:
    tells = sizes.tells
    subject = f"raw.{SYSTEM}.count"
    measured: dict[str, float] = {}  # (the frame's size; the best time of the tell loop)
    with children(("node", url, "n1", SYSTEM), ("raw-count", url, subject), directory=directory):
        trio.run(actors_tell, url, 10, measured)  # (warm-up; measures the frame size)
        del measured["loop"]
        actor_s, raw_s = best_seconds(
            functools.partial(actors_tell, url, tells, measured),
            functools.partial(raw_publish, url, subject, tells, measured),
        )
    actor, raw = tells / actor_s, tells / raw_s
    ratio = actor / raw
    frame_bytes, loop_us = int(measured["tell"]), measured["loop"] / tells * 1e6
    rows: list[Row] = [
        {
            "workload": f"C1 tell to an actor on another node through NATS, {tells:,} msgs "
            f"(vs raw nats-py publish of {frame_bytes}-byte payloads, one hop, "
            "to a subscriber process)",
            "actors": fmt_rate(actor, "msgs/s"),
            "baseline": fmt_rate(raw, "msgs/s"),
            "ratio": fmt_ratio(ratio),
            "target": f">= {fmt_rate(TARGET_C1_RATE, 'msgs/s')}, >= {TARGET_C1_RATIO}x",
            "met": f"rate {yes_no(actor >= TARGET_C1_RATE)}, "
            f"ratio {yes_no(ratio >= TARGET_C1_RATIO)}",
        },
        {
            "workload": "C1 the sender's tell loop alone (encode, frame, seal, queue: before "
            "anything is published), per tell (vs raw, end to end, per msg)",
            "actors": f"{loop_us:.2f} us",
            "baseline": f"{1e6 / raw:.2f} us",
            "ratio": "-",
            "target": "(reference only)",
            "met": "-",
        },
    ]
    data = {
        "c1_tells": tells,
        "c1_frame_bytes": frame_bytes,
        "c1_tell_loop_us": loop_us,
        "c1_actors_msgs_per_s": actor,
        "c1_raw_msgs_per_s": raw,
    }
    return rows, data


# -- C2 ask -------------------------------------------------------------------------------------


async def actors_ask(url: str, asks: int, sizes: dict[str, int]) -> Run:
    latencies = [0] * asks
    clock = time.perf_counter_ns
    async with bench_node(url) as system:
        echo = await found(system, "echo")
        node = system.cluster
        payload = node.encode(Ping(asks))
        frame = node.pack(("ask", 1, tuple(echo.address), None, payload, 5.0))
        sizes["ask"] = sealed_size(system, frame)
        await trio.testing.wait_all_tasks_blocked()
        ask = echo.ask
        begin = clock()
        reply = None
        for i in range(asks):
            start = clock()
            reply = await ask(Ping(i))
            latencies[i] = clock() - start
        total = clock() - begin
    assert reply == Ping(asks - 1), reply
    return Run(total, latencies)


async def raw_request_reply(url: str, subject: str, asks: int, sizes: dict[str, int]) -> Run:
    import nats
    import trio_asyncio

    latencies = [0] * asks
    clock = time.perf_counter_ns
    payload = raw_payload(sizes["ask"])
    async with trio_asyncio.open_loop() as loop:
        run = loop.run_aio_coroutine
        nc = await run(nats.connect(url))
        try:
            await run(nc.request(subject, payload(0), timeout=10))
            await trio.testing.wait_all_tasks_blocked()
            request = nc.request
            begin = clock()
            answer = None
            for i in range(asks):
                start = clock()
                answer = await run(request(subject, payload(i), timeout=5))
                latencies[i] = clock() - start
            total = clock() - begin
        finally:
            await run(nc.close())
    assert answer is not None
    assert answer.data == payload(asks - 1)
    return Run(total, latencies)


def c2(url: str, sizes: Sizes, directory: Path) -> tuple[list[Row], dict[str, Any]]:
    asks = sizes.asks
    subject = f"raw.{SYSTEM}.echo"
    frame_sizes: dict[str, int] = {}
    actor_runs: list[Run] = []
    raw_runs: list[Run] = []
    with children(("node", url, "n1", SYSTEM), ("raw-echo", url, subject), directory=directory):
        trio.run(actors_ask, url, 10, frame_sizes)  # (warm-up; measures the frame size)
        for _ in range(REPEATS):  # interleaved, so both see the same machine state
            gc.collect()
            actor_runs.append(trio.run(actors_ask, url, asks, frame_sizes))
            gc.collect()
            raw_runs.append(trio.run(raw_request_reply, url, subject, asks, frame_sizes))
    actor = max(actor_runs, key=lambda run: run.rate)
    raw = max(raw_runs, key=lambda run: run.rate)
    ratio = actor.rate / raw.rate
    rows: list[Row] = [
        {
            "workload": f"C2 sequential ask to an actor on another node, {asks:,} asks (vs raw "
            f"nats-py request/reply, {frame_sizes['ask']}-byte payloads, responder process)",
            "actors": fmt_rate(actor.rate, "asks/s"),
            "baseline": fmt_rate(raw.rate, "asks/s"),
            "ratio": fmt_ratio(ratio),
            "target": f">= {TARGET_C2_RATIO}x raw",
            "met": yes_no(ratio >= TARGET_C2_RATIO),
        },
        {
            "workload": "C2 ask latency",
            "actors": actor.latency(digits=0),
            "baseline": raw.latency(digits=0),
            "ratio": f"p50 {actor.p50_us / raw.p50_us:.2f}x",
            "target": f"p50 <= {TARGET_C2_P50_US / 1000:g} ms",
            "met": yes_no(actor.p50_us <= TARGET_C2_P50_US),
        },
    ]
    data = {
        "c2_asks": asks,
        "c2_frame_bytes": frame_sizes["ask"],
        "c2_actors_asks_per_s": actor.rate,
        "c2_actors_p50_us": actor.p50_us,
        "c2_actors_p99_us": actor.p99_us,
        "c2_raw_asks_per_s": raw.rate,
        "c2_raw_p50_us": raw.p50_us,
        "c2_raw_p99_us": raw.p99_us,
    }
    return rows, data


# -- C3 kill -9 of a node hosting a persistent entity ------------------------------------------


@attrs.define
class Failover:
    seconds: float
    detected: float  # (from the kill until an ask failed with NodeLost)
    acknowledged: int
    lost: int
    down_after: float
    heartbeat: float


async def kill_and_ask_again(url: str, system_name: str, n1: Child, phase: float) -> Failover:
    """Kill ``n1`` ``phase`` heartbeats (0 to 1) after 50 events are stored, so that the
    runs see the kill at different points between two heartbeats."""
    async with bench_node(url, system_name) as system:
        node = system.cluster
        await node.wait_for_members({"n1", "n2"})
        await node.start_entities(ledger_type(), host=False)
        # An entity of n1 (its shard's owner is chosen by hashing among n1 and n2).
        for i in range(64):
            entity = node.entity("ledger", f"acct{i}")
            if await entity.ask(Where(), timeout=10) == "n1":
                break
        else:
            raise RuntimeError("no entity of the first 64 ids landed on n1")
        acknowledged: list[int] = []
        writing = trio.Event()  # (set once 50 events are stored; the writer goes on)
        async with trio.open_nursery() as nursery:

            async def write() -> None:
                amount = 0
                while True:
                    amount += 1
                    await entity.ask(Add(amount), timeout=10)
                    acknowledged.append(amount)
                    if amount == 50:
                        writing.set()

            nursery.start_soon(write)
            await writing.wait()
            await trio.sleep(phase * node.config.heartbeat)
            start = time.perf_counter()
            n1.process.send_signal(signal.SIGKILL)
            nursery.cancel_scope.cancel()  # (the ask in flight: not acknowledged)
        detected = math.nan
        while True:
            try:
                seen = await entity.ask(Get(), timeout=30)
                break
            except actors.ActorDead:  # (sent before n1 was declared lost: fails then)
                if math.isnan(detected):
                    detected = time.perf_counter() - start
                await trio.lowlevel.checkpoint()
        elapsed = time.perf_counter() - start
        where = await entity.ask(Where(), timeout=10)
        assert where == "n2", where
        lost = len(set(acknowledged) - set(seen))
        # Nothing but what was asked, in order; one more than acknowledged at most (the
        # ask in flight when n1 died may have been stored without its answer arriving).
        assert seen == list(range(1, len(seen) + 1)), seen
        assert len(seen) <= len(acknowledged) + 1, (len(seen), len(acknowledged))
        config = node.config
        return Failover(
            elapsed, detected, len(acknowledged), lost, config.down_after, config.heartbeat
        )


def c3(url: str, sizes: Sizes, directory: Path) -> tuple[list[Row], dict[str, Any]]:
    runs: list[Failover] = []
    for run in range(sizes.c3_runs):
        system_name = f"bench-c3-{os.getpid()}-{run}"  # (fresh buckets each run)
        journal = str(directory / f"journal-{run}.db")
        with children(
            ("node", url, "n1", system_name, "--journal", journal),
            ("node", url, "n2", system_name, "--journal", journal),
            directory=directory,
        ) as (n1, _):
            gc.collect()
            phase = run / sizes.c3_runs
            runs.append(trio.run(kill_and_ask_again, url, system_name, n1, phase))
    seconds = sorted(run.seconds for run in runs)
    down_after, heartbeat = runs[0].down_after, runs[0].heartbeat
    target = down_after + C3_SLACK
    acknowledged = sum(run.acknowledged for run in runs)
    lost = sum(run.lost for run in runs)
    median = seconds[len(seconds) // 2]
    spread = f" ({seconds[0]:.2f}-{seconds[-1]:.2f} s)" if len(seconds) > 1 else ""
    after = sorted(run.seconds - run.detected for run in runs)
    rows: list[Row] = [
        {
            "workload": f"C3 kill -9 a node until its persistent entity answers on another node "
            f"(heartbeat {heartbeat:g} s, down_after {down_after:g} s: the defaults), "
            f"{len(runs)} run(s): {lost} of {acknowledged} acknowledged events lost; "
            f"answered {after[len(after) // 2] * 1e3:.0f} ms after the node was declared lost",
            "actors": f"{median:.2f} s{spread}",
            "baseline": f"down_after {down_after:g} s",
            "ratio": f"{median / down_after:.2f}x",
            "target": f"<= {target:g} s, none lost",
            "met": f"time {yes_no(seconds[-1] <= target)}, lost {yes_no(lost == 0)}",
        }
    ]
    data = {
        "c3_seconds": seconds,
        "c3_after_lost_seconds": after,
        "c3_down_after": down_after,
        "c3_heartbeat": heartbeat,
        "c3_acknowledged": acknowledged,
        "c3_lost": lost,
    }
    return rows, data


# -- running -----------------------------------------------------------------------------------


def skipped(ids: Sequence[str], why: str) -> Result:
    print(f"C workloads skipped: {why}", file=sys.stderr)
    rows: list[Row] = [
        {
            "workload": f"{name} skipped: {why}",
            "actors": "-",
            "baseline": "-",
            "ratio": "-",
            "target": "-",
            "met": "-",
        }
        for name in IDS
        if name in ids
    ]
    return {"rows": rows, "data": {"skipped": why}}


def run(ids: Sequence[str] = IDS, quick: bool = False) -> Result:
    why = nats_missing()
    if why is not None:
        return skipped(ids, why)
    from nats_server import NatsServer

    # C3 kills a node on purpose: this node's lines about it would only bury the tables.
    # (The node processes log to files of their own, shown if one fails.)
    for name in ("actors.cluster", "actors.deadletters", "actors.supervision"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    sizes = Sizes(quick)
    measures = {"C1": c1, "C2": c2, "C3": c3}
    rows: list[Row] = []
    data: dict[str, Any] = {"quick": quick}
    with NatsServer() as server, tempfile.TemporaryDirectory(prefix="bench-c-") as tmp:
        for name in IDS:
            if name in ids:
                more_rows, more_data = measures[name](server.url, sizes, Path(tmp))
                rows.extend(more_rows)
                data.update(more_data)
    return {"rows": rows, "data": data}


def child_main(argv: Sequence[str]) -> None:
    """``node URL NAME SYSTEM [--journal PATH]`` or ``raw-count|raw-echo URL SUBJECT``."""
    parser = argparse.ArgumentParser(prog="c_cluster.py")
    parser.add_argument("mode", choices=("node", "raw-count", "raw-echo"))
    parser.add_argument("url")
    parser.add_argument("rest", nargs="+")
    parser.add_argument("--journal")
    args = parser.parse_args(argv)
    if args.mode == "node":
        name, system_name = args.rest
        trio.run(node_main, args.url, name, system_name, args.journal)
    else:
        [subject] = args.rest
        trio.run(raw_main, args.url, args.mode.removeprefix("raw-"), subject)


if __name__ == "__main__":
    if sys.argv[1:2] and sys.argv[1] in ("node", "raw-count", "raw-echo"):
        # (From module c_cluster, not __main__: the journal stores the class of C3's
        # events by its importable name.)
        from c_cluster import child_main as child

        child(sys.argv[1:])
    else:
        main(lambda: run(*chosen_workloads(sys.argv[1:], IDS)))
