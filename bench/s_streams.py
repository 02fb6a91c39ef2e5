"""S1 durable publish with acks: events stored in a JetStream stream (file storage), each
acknowledged by the server, through ``actors.streams.open_jetstream``'s engine.

S1 (batches)
    40,000 events of 100 bytes, each with a message id (``Nats-Msg-Id``: the outbox's
    way), published in batches of 200 with ``engine.publish_many`` (the batch in flight
    at once, its acknowledgements awaited together: one hop into asyncio per batch).
    Baseline: raw nats-py under trio-asyncio, batched the same way: per batch, one hop
    that calls ``js.publish_async`` for each event (the same headers) and awaits the
    futures of their acknowledgements with ``asyncio.gather``.
S1 (batches, against the fastest raw loop)
    The same batches against a stronger baseline than nats-py's own JetStream API: core
    ``nc.publish`` of each event with a reply subject of its own, one inbox subscription
    whose callback decodes the answers (msgspec) and counts them, one hop per batch
    (what the engine does, without the engine).
S1 (one at a time)
    2,000 sequential ``await engine.publish(...)`` (each waits for its acknowledgement).
    Baseline: sequential ``js.publish`` under trio-asyncio (one hop each).

A throwaway nats-server (``tests/nats_server.py``) with JetStream serves both; each run
opens its own connection (outside the clock) and uses message ids of its own, so that
none is a duplicate. Events/s of the best of ``BENCH_REPEATS`` runs, the engine's and
the raw runs taking turns. ``--quick``: 8,000 events in batches, 300 one at a time.
Without ``nats-server`` or the cluster extra (nats-py, trio-asyncio) the rows say so.
"""

from __future__ import annotations

import functools
import itertools
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import trio
import trio.testing
from _common import (
    Result,
    Row,
    best_seconds,
    chosen_workloads,
    fmt_rate,
    fmt_ratio,
    main,
    nats_missing,
    yes_no,
)

HERE: Final = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent / "tests"))  # (tests/nats_server.py: the throwaway nats-server)

IDS: Final = ("S1",)
TARGET_S1_RATIO = 0.8
PAYLOAD: Final = bytes(100)
BATCH: Final = 200
SUBJECT: Final = "bench.orders.created"
_runs = itertools.count()  # (a prefix of message ids per run: none is a duplicate)


class Sizes:
    """The counts of one run (``--quick``: smaller ones)."""

    def __init__(self, quick: bool) -> None:
        self.batched = 8_000 if quick else 40_000
        self.sequential = 300 if quick else 2_000


def events(count: int) -> list[tuple[str, bytes, None, str]]:
    run = next(_runs)
    return [(SUBJECT, PAYLOAD, None, f"r{run}-{n}") for n in range(count)]


async def engine_batches(url: str, count: int) -> float:
    from actors.streams import open_jetstream

    batch = events(count)
    async with open_jetstream(url) as engine:
        await trio.testing.wait_all_tasks_blocked()
        publish_many = engine.publish_many
        start = time.perf_counter()
        for at in range(0, count, BATCH):
            acks = await publish_many(batch[at : at + BATCH])
        elapsed = time.perf_counter() - start
    assert not acks[-1].duplicate, acks[-1]
    return elapsed


async def raw_batches(url: str, count: int) -> float:
    import asyncio

    import nats
    import trio_asyncio

    batch = events(count)
    async with trio_asyncio.open_loop() as loop:
        nc = await loop.run_aio_coroutine(nats.connect(url))
        try:
            js = nc.jetstream()

            async def publish(chunk: list[tuple[str, bytes, None, str]]) -> list[Any]:
                futures = [
                    await js.publish_async(subject, data, headers={"Nats-Msg-Id": msg_id})
                    for subject, data, _, msg_id in chunk
                ]
                return await asyncio.gather(*futures)

            await trio.testing.wait_all_tasks_blocked()
            start = time.perf_counter()
            for at in range(0, count, BATCH):
                acks = await loop.run_aio_coroutine(publish(batch[at : at + BATCH]))
            elapsed = time.perf_counter() - start
        finally:
            await loop.run_aio_coroutine(nc.close())
    assert not acks[-1].duplicate, acks[-1]
    return elapsed


async def raw_core_batches(url: str, count: int) -> float:
    """The fastest raw nats-py loop: each event published with a reply subject of its
    own on one inbox subscription, whose callback decodes the answers (msgspec) and
    counts them."""
    import asyncio

    import msgspec
    import nats
    import trio_asyncio

    decode = msgspec.json.decode
    batch = events(count)
    async with trio_asyncio.open_loop() as loop:
        nc = await loop.run_aio_coroutine(nats.connect(url))
        try:
            prefix = nc.new_inbox() + "."
            skip = len(prefix)
            answers: list[Any] = []
            state: dict[str, Any] = {"left": 0, "done": None}

            async def on_reply(msg: Any) -> None:
                answers[int(msg.subject[skip:])] = decode(msg.data)
                state["left"] -= 1
                if not state["left"]:
                    state["done"].set()

            await loop.run_aio_coroutine(nc.subscribe(prefix + "*", cb=on_reply))

            async def publish(chunk: list[tuple[str, bytes, None, str]]) -> list[Any]:
                answers[:] = [None] * len(chunk)
                state["left"], state["done"] = len(chunk), asyncio.Event()
                for index, (subject, data, _, msg_id) in enumerate(chunk):
                    await nc.publish(
                        subject, data, reply=prefix + str(index), headers={"Nats-Msg-Id": msg_id}
                    )
                await state["done"].wait()
                return answers

            await trio.testing.wait_all_tasks_blocked()
            start = time.perf_counter()
            for at in range(0, count, BATCH):
                acks = await loop.run_aio_coroutine(publish(batch[at : at + BATCH]))
            elapsed = time.perf_counter() - start
        finally:
            await loop.run_aio_coroutine(nc.close())
    assert "duplicate" not in acks[-1], acks[-1]
    return elapsed


async def engine_sequential(url: str, count: int) -> float:
    from actors.streams import open_jetstream

    batch = events(count)
    async with open_jetstream(url) as engine:
        await trio.testing.wait_all_tasks_blocked()
        publish = engine.publish
        start = time.perf_counter()
        for subject, data, _, msg_id in batch:
            ack = await publish(subject, data, msg_id=msg_id)
        elapsed = time.perf_counter() - start
    assert not ack.duplicate, ack
    return elapsed


async def raw_sequential(url: str, count: int) -> float:
    import nats
    import trio_asyncio

    batch = events(count)
    async with trio_asyncio.open_loop() as loop:
        nc = await loop.run_aio_coroutine(nats.connect(url))
        try:
            js = nc.jetstream()
            publish = js.publish
            await trio.testing.wait_all_tasks_blocked()
            start = time.perf_counter()
            for subject, data, _, msg_id in batch:
                headers = {"Nats-Msg-Id": msg_id}
                ack = await loop.run_aio_coroutine(publish(subject, data, headers=headers))
            elapsed = time.perf_counter() - start
        finally:
            await loop.run_aio_coroutine(nc.close())
    assert not ack.duplicate, ack
    return elapsed


async def add_stream(url: str) -> None:
    from actors.streams import StreamConfig, open_jetstream

    async with open_jetstream(url) as engine:
        await engine.add_stream(StreamConfig("BENCH", ["bench.>"], storage="file"))


def s1(url: str, sizes: Sizes) -> tuple[list[Row], dict[str, Any]]:
    trio.run(add_stream, url)
    for warm_up in (engine_batches, raw_batches, raw_core_batches):  # (imports, first blocks)
        trio.run(warm_up, url, 1000)
    batched, sequential = sizes.batched, sizes.sequential
    ours_s, raw_s, core_s, ours_seq_s, raw_seq_s = best_seconds(
        functools.partial(engine_batches, url, batched),
        functools.partial(raw_batches, url, batched),
        functools.partial(raw_core_batches, url, batched),
        functools.partial(engine_sequential, url, sequential),
        functools.partial(raw_sequential, url, sequential),
    )
    ours, raw, core = batched / ours_s, batched / raw_s, batched / core_s
    ours_seq, raw_seq = sequential / ours_seq_s, sequential / raw_seq_s

    def row(workload: str, actors: float, baseline: float) -> Row:
        return {
            "workload": workload,
            "actors": fmt_rate(actors, "events/s"),
            "baseline": fmt_rate(baseline, "events/s"),
            "ratio": fmt_ratio(actors / baseline),
            "target": f">= {TARGET_S1_RATIO}x raw",
            "met": yes_no(actors / baseline >= TARGET_S1_RATIO),
        }

    rows = [
        row(
            f"S1 durable publish with acks, {batched:,} events of {len(PAYLOAD)} bytes with "
            f"message ids, file storage, batches of {BATCH} (engine.publish_many vs raw "
            "nats-py js.publish_async + gather, one hop per batch)",
            ours,
            raw,
        ),
        row(
            "S1 the same batches vs the fastest raw nats-py loop (core publish with a reply "
            "subject each, one inbox subscription counting the answers, msgspec)",
            ours,
            core,
        ),
        row(
            f"S1 durable publish with acks, one at a time, {sequential:,} events "
            "(engine.publish vs raw nats-py js.publish, one hop each)",
            ours_seq,
            raw_seq,
        ),
    ]
    data = {
        "s1_events": batched,
        "s1_batch": BATCH,
        "s1_payload_bytes": len(PAYLOAD),
        "s1_engine_events_per_s": ours,
        "s1_raw_events_per_s": raw,
        "s1_raw_core_events_per_s": core,
        "s1_sequential_events": sequential,
        "s1_engine_sequential_per_s": ours_seq,
        "s1_raw_sequential_per_s": raw_seq,
    }
    return rows, data


# -- running -----------------------------------------------------------------------------------


def run(ids: Sequence[str] = IDS, quick: bool = False) -> Result:
    why = nats_missing()
    if why is not None:
        print(f"S1 skipped: {why}", file=sys.stderr)
        row: Row = {
            "workload": f"S1 skipped: {why}",
            "actors": "-",
            "baseline": "-",
            "ratio": "-",
            "target": "-",
            "met": "-",
        }
        return {"rows": [row], "data": {"skipped": why}}
    from nats_server import NatsServer

    with NatsServer() as server:
        rows, data = s1(server.url, Sizes(quick))
    data["quick"] = quick
    return {"rows": rows, "data": data}


if __name__ == "__main__":
    main(lambda: run(*chosen_workloads(sys.argv[1:], IDS)))
