"""S3 consumer-group throughput: events of a durable stream handled by the actors of one
consumer group (``Streams.subscribe`` with the same durable name), with 1, 2 and 4
members, on the in-memory engine and on JetStream.

S3 (in-memory / JetStream, N members)
    The stream holds the events beforehand (published outside the clock, 100 bytes of
    payload each: an attrs event encoded by the safe codec). The clock runs from the
    first ``subscribe`` until every event has been handled by an actor (a trivial
    handler) and acknowledged. Each member has ``max_in_flight=64``; each run reads the
    whole stream with a consumer group of its own (``Start.beginning()``).
    Baseline: N plain trio tasks, each fetching from a handle on one durable consumer of
    the engine (batches of 64) and acknowledging each event after decoding it: the
    engine's own pace, without actors, asks, flow control or ordering.

There is no target: the rows say how the runtime scales with members and what it costs
over the engine. A throwaway nats-server (``tests/nats_server.py``, file storage) serves
the JetStream rows; without it, or without the cluster extra, those rows say why they
were skipped. Events/s of the best of ``BENCH_REPEATS`` runs, the runtime's and the raw
runs taking turns. ``--quick``: fewer events.
"""

from __future__ import annotations

import functools
import itertools
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Final

import attrs
import trio
import trio.lowlevel
import trio.testing
from _common import (
    Latch,
    Result,
    Row,
    best_seconds,
    chosen_workloads,
    fmt_rate,
    fmt_ratio,
    main,
    nats_missing,
)

from actors import Actor, open_system
from actors.streams import (
    ConsumerConfig,
    InMemoryStreams,
    Start,
    StreamConfig,
    StreamEngine,
    StreamEvent,
    open_streams,
)

HERE: Final = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent / "tests"))  # (tests/nats_server.py: the throwaway nats-server)

IDS: Final = ("S3",)
MEMBERS: Final = (1, 2, 4)
IN_FLIGHT: Final = 64
STREAM: Final = StreamConfig("GROUPS", ["groups.>"], storage="file")
_groups = itertools.count()  # (a consumer group of its own per run)


@attrs.frozen
class Shipped:
    order_id: int
    note: str


def event(n: int) -> Shipped:
    return Shipped(n, "x" * 80)


class Sizes:
    """The counts of one run (``--quick``: smaller ones)."""

    def __init__(self, quick: bool) -> None:
        self.memory = 4_000 if quick else 40_000
        self.jetstream = 1_000 if quick else 10_000


class Handler(Actor):
    def __init__(self, latch: Latch) -> None:
        self.latch = latch

    def receive(self, message: StreamEvent) -> None:
        self.latch.count_down()


async def fill(engine: StreamEngine, count: int) -> None:
    """Store ``count`` events in the stream (once per engine)."""
    from actors.cluster import SafeCodec

    await engine.add_stream(STREAM)
    state = await engine.stream_state(STREAM.name)
    encode = SafeCodec([Shipped]).encode_message
    headers = {"Actors-Codec": "safe"}
    for at in range(state.messages, count, 500):
        batch = [
            (f"groups.eu.{n % 7}", encode(event(n)), headers, None)
            for n in range(at, min(at + 500, count))
        ]
        await engine.publish_many(batch)


async def with_actors(open_engine: Callable[[], Any], members: int, count: int) -> float:
    latch = Latch(count)
    async with open_engine() as engine:
        await fill(engine, count)
        async with (
            open_system("bench") as system,
            open_streams(system, engine, streams=[STREAM], types=[Shipped]) as streams,
        ):
            refs = [system.spawn(Handler, latch) for _ in range(members)]
            durable = f"g{next(_groups)}"
            await trio.testing.wait_all_tasks_blocked()
            start = time.perf_counter()
            subs = [
                await streams.subscribe(ref, "groups.>", durable=durable, max_in_flight=IN_FLIGHT)
                for ref in refs
            ]
            await latch.done.wait()
            # (the last acknowledgements follow the last handler by a few tasks' turns)
            while sum(sub.stats().acked for sub in subs) < count:
                await trio.lowlevel.checkpoint()
            elapsed = time.perf_counter() - start
    return elapsed


async def raw(open_engine: Callable[[], Any], members: int, count: int) -> float:
    from actors.cluster import SafeCodec

    decode = SafeCodec([Shipped]).decode_message
    left = [count]
    async with open_engine() as engine:
        await fill(engine, count)
        config = ConsumerConfig(f"g{next(_groups)}", start=Start.beginning(), max_deliver=None)
        done = trio.Event()

        async def member() -> None:
            consumer = await engine.consumer(STREAM.name, config)
            while left[0] > 0:
                for received in await consumer.fetch(IN_FLIGHT, 1.0):
                    decode(received.data)
                    await received.ack()
                    left[0] -= 1
                    if left[0] == 0:
                        done.set()

        await trio.testing.wait_all_tasks_blocked()
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(members):
                nursery.start_soon(member)
            await done.wait()
            elapsed = time.perf_counter() - start
            nursery.cancel_scope.cancel()
    return elapsed


@asynccontextmanager
async def memory_engine() -> AsyncIterator[StreamEngine]:
    async with InMemoryStreams() as engine:
        yield engine


def jetstream_engine(url: str) -> Callable[[], Any]:
    from actors.streams import open_jetstream

    return functools.partial(open_jetstream, url)


def rows_for(
    name: str, open_engine: Callable[[], Any], count: int
) -> tuple[list[Row], dict[str, Any]]:
    trio.run(with_actors, open_engine, 1, min(count, 500))  # (warm up: imports)
    rows: list[Row] = []
    data: dict[str, Any] = {}
    for members in MEMBERS:
        ours_s, raw_s = best_seconds(
            functools.partial(with_actors, open_engine, members, count),
            functools.partial(raw, open_engine, members, count),
        )
        ours, baseline = count / ours_s, count / raw_s
        rows.append(
            {
                "workload": (
                    f"S3 consumer group on {name}, {members} member"
                    f"{'s' if members > 1 else ''}, {count:,} events, max_in_flight="
                    f"{IN_FLIGHT} (actors asked, acked after the handler, vs plain tasks "
                    "fetching and acking)"
                ),
                "actors": fmt_rate(ours, "events/s"),
                "baseline": fmt_rate(baseline, "events/s"),
                "ratio": fmt_ratio(ours / baseline),
                "target": "none (how it scales)",
                "met": "yes",
            }
        )
        key = name.replace(" ", "_").replace("-", "_")
        data[f"s3_{key}_{members}_events_per_s"] = ours
        data[f"s3_{key}_{members}_raw_events_per_s"] = baseline
    data[f"s3_{name.replace(' ', '_').replace('-', '_')}_events"] = count
    return rows, data


def run(ids: Sequence[str] = IDS, quick: bool = False) -> Result:
    sizes = Sizes(quick)
    rows, data = rows_for("the in-memory engine", memory_engine, sizes.memory)
    why = nats_missing()
    if why is not None:
        print(f"S3 on JetStream skipped: {why}", file=sys.stderr)
        rows.append(
            {
                "workload": f"S3 on JetStream skipped: {why}",
                "actors": "-",
                "baseline": "-",
                "ratio": "-",
                "target": "-",
                "met": "-",
            }
        )
        data["jetstream_skipped"] = why
    else:
        from nats_server import NatsServer

        with NatsServer() as server:
            more, more_data = rows_for("JetStream", jetstream_engine(server.url), sizes.jetstream)
        rows.extend(more)
        data.update(more_data)
    data["quick"] = quick
    return {"rows": rows, "data": data}


if __name__ == "__main__":
    main(lambda: run(*chosen_workloads(sys.argv[1:], IDS)))
