"""Projections that read a durable stream (``StreamSource``): on InMemoryStreams (virtual
time): order, filter, offsets as stream sequences, restarts from the stored sequence,
redeliveries and duplicates dropped, failed acks, undecodable events, polling; and one
exactly-once run on a real JetStream (marked ``nats``)."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from projection_events import Sold

import actors
import supervision as sv
from actors.cluster import PickleCodec
from actors.projection import (
    AtLeastOnce,
    Envelope,
    GetStatus,
    InMemoryOffsetStore,
    Projection,
    SqliteExactlyOnce,
    StreamSource,
    WaitCaughtUp,
)
from actors.streams import InMemoryStreams, StreamConfig, StreamEngine, open_streams

CODEC = PickleCodec()
ORDERS = StreamConfig("ORDERS", ["orders.>"])
FAST = sv.Backoff(min_delay=0.5, max_delay=0.5, jitter=0.0)


async def publish(engine: StreamEngine, subject: str, *events: Sold) -> list[int]:
    seqs = []
    for event in events:
        ack = await engine.publish(
            subject, CODEC.encode_message(event), headers={"Actors-Codec": CODEC.name}
        )
        seqs.append(ack.seq)
    return seqs


class Collector:
    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []

    async def __call__(self, envelopes: list[Envelope]) -> None:
        await trio.lowlevel.checkpoint()
        self.envelopes.extend(envelopes)

    @property
    def seqs(self) -> list[int]:
        return [e.seq for e in self.envelopes]


@pytest.fixture
async def engine() -> Any:
    async with InMemoryStreams() as engine:
        await engine.add_stream(ORDERS)
        yield engine


def system() -> Any:
    return actors.open_system("projections", seed=5)


async def test_reads_the_stream_in_order_with_the_sequence_as_offset(
    engine: InMemoryStreams, autojump_clock: trio.testing.MockClock
) -> None:
    await publish(engine, "orders.eu", Sold("a", 1), Sold("b", 2))
    await publish(engine, "orders.us", Sold("c", 3))
    await publish(engine, "orders.eu", Sold("d", 4))
    collect = Collector()
    source = StreamSource(engine, "ORDERS", codec=CODEC, filter="orders.eu")
    async with system() as actor_system:
        projection = Projection("eu", source, AtLeastOnce(collect), batch_size=2)
        status = await projection.spawn(actor_system).ask(WaitCaughtUp())
    assert [(e.seq, e.offset, e.subject, e.event) for e in collect.envelopes] == [
        (1, 1, "orders.eu", Sold("a", 1)),
        (2, 2, "orders.eu", Sold("b", 2)),
        (4, 4, "orders.eu", Sold("d", 4)),
    ]
    assert all(e.persistence_id == "" and e.tags == frozenset() for e in collect.envelopes)
    assert (status.key, status.offset, status.lag, status.handled) == ("orders.eu", 4, 0, 3)


async def test_reads_what_open_streams_published(
    engine: InMemoryStreams, autojump_clock: trio.testing.MockClock
) -> None:
    collect = Collector()
    async with (
        system() as actor_system,
        open_streams(actor_system, engine, streams=[ORDERS], codec=CODEC) as streams,
    ):
        for n in range(3):
            await streams.publish("orders.eu.created", Sold("x", n))
        projection = Projection(
            "all", StreamSource(engine, "ORDERS", codec=CODEC), AtLeastOnce(collect)
        )
        await projection.spawn(actor_system).ask(WaitCaughtUp())
    assert [e.event for e in collect.envelopes] == [Sold("x", 0), Sold("x", 1), Sold("x", 2)]


async def test_a_new_projection_resumes_after_its_stored_sequence(
    engine: InMemoryStreams, autojump_clock: trio.testing.MockClock
) -> None:
    await publish(engine, "orders.eu", *(Sold("a", n) for n in range(1, 4)))
    offsets = InMemoryOffsetStore()
    first, second = Collector(), Collector()
    source = StreamSource(engine, "ORDERS", codec=CODEC)
    async with system() as actor_system:
        projection = Projection("p", source, AtLeastOnce(first, offsets=offsets))
        await projection.spawn(actor_system).ask(WaitCaughtUp())
    # stopped: its consumer is gone, its offset stays
    assert (await engine.stream_state("ORDERS")).consumers == ()
    await publish(engine, "orders.eu", Sold("a", 4), Sold("a", 5))
    async with system() as actor_system:
        projection = Projection("p", source, AtLeastOnce(second, offsets=offsets))
        status = await projection.spawn(actor_system).ask(WaitCaughtUp())
    assert (first.seqs, second.seqs, status.offset) == ([1, 2, 3], [4, 5], 5)


async def test_events_handed_out_again_are_dropped(
    engine: InMemoryStreams, autojump_clock: trio.testing.MockClock
) -> None:
    collect = Collector()
    source = StreamSource(engine, "ORDERS", codec=CODEC, durable="p")
    async with system() as actor_system:
        ref = Projection("p", source, AtLeastOnce(collect), batch_size=2).spawn(actor_system)
        await ref.ask(WaitCaughtUp())
        engine.duplicate_deliveries(3, durable="p")
        engine.lose_acks(2, durable="p")
        await publish(engine, "orders.eu", *(Sold("a", n) for n in range(1, 7)))
        await ref.ask(WaitCaughtUp())
        engine.redeliver_now("ORDERS", "p")  # the events whose acks were lost
        await publish(engine, "orders.eu", Sold("a", 7))
        status = await ref.ask(WaitCaughtUp())
    assert engine.armed_faults() == {}
    assert collect.seqs == [1, 2, 3, 4, 5, 6, 7]  # each once, in order
    assert (status.offset, status.total_failures) == (7, 0)


async def test_a_failed_acknowledgement_costs_a_retry_not_a_duplicate(
    engine: InMemoryStreams, autojump_clock: trio.testing.MockClock
) -> None:
    await publish(engine, "orders.eu", *(Sold("a", n) for n in range(1, 5)))
    collect = Collector()
    engine.fail_acks(1)
    source = StreamSource(engine, "ORDERS", codec=CODEC)
    async with system() as actor_system:
        projection = Projection("p", source, AtLeastOnce(collect), batch_size=2, backoff=FAST)
        status = await projection.spawn(actor_system).ask(WaitCaughtUp())
    assert collect.seqs == [1, 2, 3, 4]
    assert (status.offset, status.total_failures) == (4, 1)
    assert status.last_error is not None
    assert status.last_error.startswith("StreamError")


async def test_an_undecodable_event_is_named_by_stream_seq_and_subject(
    engine: InMemoryStreams, autojump_clock: trio.testing.MockClock
) -> None:
    await publish(engine, "orders.eu", Sold("a", 1))
    await engine.publish("orders.eu", b"\x80garbage", headers={"Actors-Codec": "pickle"})
    await publish(engine, "orders.eu", Sold("a", 3))
    failing, skipping = Collector(), Collector()
    async with system() as actor_system:
        ref = Projection(
            "strict",
            StreamSource(engine, "ORDERS", codec=CODEC),
            AtLeastOnce(failing),
            backoff=FAST,
        ).spawn(actor_system)
        await trio.sleep(1.2)
        strict = await ref.ask(GetStatus())
        lenient = Projection(
            "lenient",
            StreamSource(engine, "ORDERS", codec=CODEC),
            AtLeastOnce(skipping),
            on_undecodable="skip",
        )
        skipped = await lenient.spawn(actor_system).ask(WaitCaughtUp())
    assert failing.seqs == [1]
    assert (strict.offset, strict.state, strict.failures) == (1, "backing_off", 3)
    assert strict.last_error is not None
    assert strict.last_error.startswith(
        "UndecodableEvent: projection 'strict' cannot decode the event of stream 'ORDERS' "
        "seq 2 (subject 'orders.eu'): UndecodableMessage"
    )
    assert (skipping.seqs, skipped.skipped, skipped.offset) == ([1, 3], 1, 3)


async def test_a_caught_up_stream_projection_polls_at_its_interval(
    engine: InMemoryStreams, autojump_clock: trio.testing.MockClock
) -> None:
    collect = Collector()
    arrived = trio.Event()

    async def handle(envelopes: list[Envelope]) -> None:
        await collect(envelopes)
        arrived.set()

    source = StreamSource(engine, "ORDERS", codec=CODEC)
    async with system() as actor_system:
        ref = Projection("p", source, AtLeastOnce(handle), poll_interval=2.0).spawn(actor_system)
        await ref.ask(WaitCaughtUp())
        await trio.testing.wait_all_tasks_blocked()
        before = trio.current_time()
        await publish(engine, "orders.eu", Sold("a", 1))
        await arrived.wait()
        assert trio.current_time() - before == pytest.approx(2.0, abs=1e-6)
        assert (await ref.ask(GetStatus())).lag == 0


def test_bad_stream_sources_are_refused() -> None:
    with pytest.raises(TypeError, match="engine must be a StreamEngine"):
        StreamSource("nats://x", "ORDERS", codec=CODEC)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"codec must be the actors\.cluster codec"):
        StreamSource(InMemoryStreams(), "ORDERS", codec="pickle")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"stream name 'a\.b' contains '\.'"):
        StreamSource(InMemoryStreams(), "ORDERS", codec=CODEC, durable="a.b")


# -- on a real JetStream -----------------------------------------------------------------


def setup(conn: Any) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS applied (seq INTEGER, item TEXT)")


def handle(conn: Any, envelopes: list[Envelope]) -> None:
    conn.executemany(
        "INSERT INTO applied VALUES (?, ?)", [(e.seq, e.event.item) for e in envelopes]
    )


@pytest.mark.nats
async def test_exactly_once_from_jetstream_into_sqlite(nats_url: str, tmp_path: Path) -> None:
    from actors.streams import open_jetstream

    model = tmp_path / "read.db"
    handler = SqliteExactlyOnce(model, handle, setup=setup)
    async with open_jetstream(nats_url) as jetstream:
        await jetstream.add_stream(ORDERS)
        await publish(jetstream, "orders.eu", *(Sold(f"i{n}", n) for n in range(1, 26)))
        source = StreamSource(jetstream, "ORDERS", codec=CODEC)
        async with system() as actor_system:
            projection = Projection("jet", source, handler, batch_size=10, poll_interval=0.1)
            first = await projection.spawn(actor_system).ask(WaitCaughtUp(), timeout=30)
        await publish(jetstream, "orders.eu", *(Sold(f"i{n}", n) for n in range(26, 31)))
        async with system() as actor_system:
            second = await projection.spawn(actor_system).ask(WaitCaughtUp(), timeout=30)
    with closing(sqlite3.connect(model)) as conn:
        applied = conn.execute("SELECT seq, item FROM applied ORDER BY rowid").fetchall()
    assert applied == [(n, f"i{n}") for n in range(1, 31)]  # each once, in order
    assert (first.offset, second.offset, second.handled) == (25, 30, 5)
