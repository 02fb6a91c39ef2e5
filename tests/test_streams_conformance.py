"""The stream engine contract (``actors/streams/_engine.py``), checked on every engine:
``InMemoryStreams`` ("memory") and JetStream on a throwaway nats-server ("jetstream",
marked ``nats``). Both must behave alike here, so that tests written against the
in-memory stand-in hold on JetStream.

Time is real (JetStream is a real server), for both engines alike. Every wait is bounded
and ends on an outcome: a fetch that returns what it should, a state polled until it
holds. Settlements reach JetStream a moment after the call returns, so what depends on
them is polled (``eventually``). Redelivery tests use an ``ack_wait`` of about a second;
a check that nothing comes waits a bounded time past the moment it would have come.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import pytest
import trio

from actors.streams import (
    Consumer,
    ConsumerConfig,
    InMemoryStreams,
    NoStreamForSubject,
    PubAck,
    Received,
    Start,
    StreamConfig,
    StreamEngine,
    StreamError,
    StreamNotFound,
    open_jetstream,
)

T = TypeVar("T")

ORDERS = StreamConfig("ORDERS", ["orders.>"])
WITHIN = 10.0  # seconds an expected outcome may take (a loaded machine is slow)
QUIET = 0.5  # seconds a fetch waits to show that nothing comes


@pytest.fixture(params=["memory", pytest.param("jetstream", marks=pytest.mark.nats)])
def engine_kind(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """``(kind, nats_url)``: the engine to test, with the URL of a throwaway nats-server
    for JetStream."""
    if request.param == "memory":
        return "memory", None
    pytest.importorskip("nats")
    pytest.importorskip("trio_asyncio")
    url: str = request.getfixturevalue("nats_url")
    return "jetstream", url


@pytest.fixture
async def engine(engine_kind: tuple[str, str | None]) -> AsyncIterator[StreamEngine]:
    kind, url = engine_kind
    if kind == "memory":
        async with InMemoryStreams() as memory:
            yield memory
        return
    assert url is not None
    async with open_jetstream(url) as jetstream:
        yield jetstream


# -- helpers ------------------------------------------------------------------------------


async def publish_all(engine: StreamEngine, *subjects: str) -> list[PubAck]:
    """Publish ``subjects`` in order, the data of each its index as bytes."""
    return [await engine.publish(s, str(i).encode()) for i, s in enumerate(subjects)]


async def take(consumer: Consumer, count: int) -> list[Received]:
    """Fetch until ``count`` events came (or ``WITHIN`` seconds passed: then fewer)."""
    got: list[Received] = []
    with trio.move_on_after(WITHIN):
        while len(got) < count:
            got += await consumer.fetch(count - len(got), timeout=1.0)
    return got


async def eventually(probe: Callable[[], Awaitable[T]], expected: T) -> None:
    """Poll ``probe`` until it returns ``expected`` (within ``WITHIN`` seconds)."""
    seen = await probe()
    with trio.move_on_after(WITHIN):
        while seen != expected:
            await trio.sleep(0.02)
            seen = await probe()
    assert seen == expected


def seqs(events: list[Received]) -> list[int]:
    return [r.seq for r in events]


def deliveries(events: list[Received]) -> list[tuple[int, int]]:
    return [(r.seq, r.delivered) for r in events]


async def orders_consumer(engine: StreamEngine, **settings: Any) -> Consumer:
    await engine.add_stream(ORDERS)
    return await engine.consumer("ORDERS", ConsumerConfig("shipping", **settings))


# -- publishing and streams ---------------------------------------------------------------


async def test_publish_stores_in_order_and_acknowledges_with_the_sequence(
    engine: StreamEngine,
) -> None:
    await engine.add_stream(ORDERS)
    before = time.time()
    acks = [
        await engine.publish("orders.eu.created", b"first", headers={"trace": "t-1"}),
        await engine.publish("orders.us.created", b""),
        await engine.publish("orders.eu.paid", b"third"),
    ]
    after = time.time()
    assert acks == [PubAck("ORDERS", 1), PubAck("ORDERS", 2), PubAck("ORDERS", 3)]
    state = await engine.stream_state("ORDERS")
    assert (state.name, state.messages, state.first_seq, state.last_seq) == ("ORDERS", 3, 1, 3)
    stored = await engine.get("ORDERS", 1)
    assert stored is not None
    assert (stored.subject, stored.data, stored.seq) == ("orders.eu.created", b"first", 1)
    assert stored.headers["trace"] == "t-1"
    assert before - 1 <= stored.timestamp <= after + 1
    empty = await engine.get("ORDERS", 2)
    assert empty is not None
    assert empty.data == b""
    assert await engine.get("ORDERS", 4) is None


async def test_a_message_id_seen_within_the_window_is_a_duplicate(engine: StreamEngine) -> None:
    await engine.add_stream(ORDERS)
    assert await engine.publish("orders.a", b"1", msg_id="o-1") == PubAck("ORDERS", 1)
    assert await engine.publish("orders.b", b"2", msg_id="o-2") == PubAck("ORDERS", 2)
    again = await engine.publish("orders.a", b"other data", msg_id="o-1")
    assert again == PubAck("ORDERS", 1, duplicate=True)
    many = await engine.publish_many(
        [("orders.c", b"3", None, "o-3"), ("orders.b", b"2", None, "o-2")]
    )
    assert many == [PubAck("ORDERS", 3), PubAck("ORDERS", 2, duplicate=True)]
    assert (await engine.stream_state("ORDERS")).messages == 3
    stored = await engine.get("ORDERS", 1)
    assert stored is not None
    assert stored.data == b"1"


async def test_publish_to_a_subject_no_stream_stores_raises(engine: StreamEngine) -> None:
    await engine.add_stream(ORDERS)
    with pytest.raises(NoStreamForSubject, match=r"no durable stream stores subject 'invoices\.x'"):
        await engine.publish("invoices.x", b"lost")
    with pytest.raises(NoStreamForSubject) as caught:
        await engine.publish("orders", b"not under orders.>")
    assert caught.value.subject == "orders"
    assert isinstance(caught.value, StreamError)
    assert (await engine.stream_state("ORDERS")).messages == 0


async def test_add_stream_is_idempotent_and_updates_keeping_the_events(
    engine: StreamEngine,
) -> None:
    await engine.add_stream(ORDERS)
    await engine.add_stream(ORDERS)
    await publish_all(engine, "orders.a", "orders.b", "orders.c", "orders.d")
    await engine.add_stream(StreamConfig("ORDERS", ["orders.>", "refunds.*"], max_msgs=3))
    state = await engine.stream_state("ORDERS")
    assert (state.messages, state.first_seq, state.last_seq) == (3, 2, 4)
    assert await engine.publish("refunds.r1", b"r") == PubAck("ORDERS", 5)
    state = await engine.stream_state("ORDERS")
    assert (state.messages, state.first_seq, state.last_seq) == (3, 3, 5)


async def test_streams_whose_subjects_overlap_are_refused(engine: StreamEngine) -> None:
    await engine.add_stream(ORDERS)
    for subjects in (["orders.eu"], ["*.eu.created"], [">"]):
        with pytest.raises(StreamError):
            await engine.add_stream(StreamConfig("OTHER", subjects))
    await engine.add_stream(StreamConfig("OTHER", ["invoices.*"]))
    assert await engine.publish("invoices.x", b"i") == PubAck("OTHER", 1)
    assert await engine.publish("orders.x", b"o") == PubAck("ORDERS", 1)


async def test_stream_state_of_an_empty_stream_and_of_none(engine: StreamEngine) -> None:
    await engine.add_stream(ORDERS)
    state = await engine.stream_state("ORDERS")
    assert (state.messages, state.first_seq, state.last_seq, state.consumers) == (0, 1, 0, ())
    await engine.consumer("ORDERS", ConsumerConfig("b"))
    await engine.consumer("ORDERS", ConsumerConfig("a"))
    assert sorted((await engine.stream_state("ORDERS")).consumers) == ["a", "b"]
    with pytest.raises(StreamNotFound):
        await engine.stream_state("NOPE")
    with pytest.raises(StreamNotFound):
        await engine.consumer("NOPE", ConsumerConfig("a"))


async def test_max_msgs_discards_the_oldest_events(engine: StreamEngine) -> None:
    await engine.add_stream(StreamConfig("ORDERS", ["orders.>"], max_msgs=3))
    await publish_all(engine, *["orders.x"] * 5)
    state = await engine.stream_state("ORDERS")
    assert (state.messages, state.first_seq, state.last_seq) == (3, 3, 5)
    assert await engine.get("ORDERS", 2) is None
    consumer = await engine.consumer("ORDERS", ConsumerConfig("c"))
    assert seqs(await take(consumer, 3)) == [3, 4, 5]


async def test_delete_stream_deletes_its_events_and_consumers(engine: StreamEngine) -> None:
    await engine.add_stream(ORDERS)
    await publish_all(engine, "orders.x")
    await engine.consumer("ORDERS", ConsumerConfig("c"))
    await engine.delete_stream("ORDERS")
    with pytest.raises(StreamNotFound):
        await engine.stream_state("ORDERS")
    with pytest.raises(NoStreamForSubject):
        await engine.publish("orders.x", b"gone")
    with pytest.raises(StreamNotFound):
        await engine.delete_stream("ORDERS")
    await engine.add_stream(ORDERS)
    state = await engine.stream_state("ORDERS")
    assert (state.messages, state.last_seq, state.consumers) == (0, 0, ())


# -- consumers ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["beginning", "new_only", "at_seq", "at_time"])
async def test_a_new_consumer_starts_where_it_is_told(engine: StreamEngine, kind: str) -> None:
    await engine.add_stream(ORDERS)
    await publish_all(engine, "orders.a", "orders.b")
    now = time.time()
    starts = {
        "beginning": Start.beginning(),
        "new_only": Start.new_only(),
        "at_seq": Start.at_seq(2),
        "at_time": Start.at_time(now),
    }
    consumer = await engine.consumer("ORDERS", ConsumerConfig("c", start=starts[kind]))
    await publish_all(engine, "orders.c", "orders.d")
    expected = {"beginning": [1, 2, 3, 4], "new_only": [3, 4], "at_seq": [2, 3, 4]}
    got = await take(consumer, len(expected.get(kind, [3, 4])))
    assert seqs(got) == expected.get(kind, [3, 4])
    assert await consumer.fetch(5, timeout=QUIET) == []


async def test_a_consumer_that_exists_resumes_where_it_stopped(engine: StreamEngine) -> None:
    consumer = await orders_consumer(engine)
    await publish_all(engine, "orders.a", "orders.b", "orders.c")
    for received in await take(consumer, 2):
        await received.ack()
    again = await engine.consumer("ORDERS", ConsumerConfig("shipping", start=Start.new_only()))
    assert seqs(await take(again, 1)) == [3]


async def test_a_filter_restricts_the_consumer_to_matching_subjects(
    engine: StreamEngine,
) -> None:
    await engine.add_stream(ORDERS)
    await publish_all(engine, "orders.eu.a", "orders.us.b", "orders.eu.c", "orders.eu.d.x")
    consumer = await engine.consumer("ORDERS", ConsumerConfig("eu", filter="orders.eu.*"))
    assert await consumer.info() == (2, 0)
    await publish_all(engine, "orders.us.e", "orders.eu.f")
    got = await take(consumer, 3)
    assert [(r.seq, r.subject) for r in got] == [
        (1, "orders.eu.a"),
        (3, "orders.eu.c"),
        (6, "orders.eu.f"),
    ]
    assert [r.pending for r in got] == [2, 1, 0]
    assert await consumer.fetch(5, timeout=QUIET) == []


async def test_received_events_carry_what_was_stored(engine: StreamEngine) -> None:
    consumer = await orders_consumer(engine)
    before = time.time()
    await engine.publish("orders.a", b"payload", headers={"k": "v"}, msg_id="m-1")
    (received,) = await take(consumer, 1)
    assert (received.subject, received.data, received.stream) == ("orders.a", b"payload", "ORDERS")
    assert (received.seq, received.delivered, received.pending) == (1, 1, 0)
    assert received.headers["k"] == "v"
    assert before - 1 <= received.timestamp <= time.time() + 1


async def test_refused_consumer_settings(engine: StreamEngine) -> None:
    await engine.add_stream(ORDERS)
    with pytest.raises(StreamError):  # the stream does not store these subjects
        await engine.consumer("ORDERS", ConsumerConfig("c", filter="invoices.>"))
    with pytest.raises(StreamError):  # max_deliver must exceed the backoff list
        await engine.consumer("ORDERS", ConsumerConfig("c", backoff=(1, 2), max_deliver=2))
    with pytest.raises(StreamError):
        await engine.consumer("ORDERS", ConsumerConfig("c", backoff=(1,), max_deliver=None))
    assert (await engine.stream_state("ORDERS")).consumers == ()


async def test_a_consumer_group_shares_the_events(engine: StreamEngine) -> None:
    first = await orders_consumer(engine)
    second = await engine.consumer("ORDERS", ConsumerConfig("shipping"))
    await publish_all(engine, *[f"orders.o{i}" for i in range(10)])
    by_member: list[list[int]] = [[], []]
    with trio.move_on_after(WITHIN):
        while len(by_member[0]) + len(by_member[1]) < 10:
            for index, member in enumerate((first, second)):
                for received in await member.fetch(3, timeout=0.2):
                    by_member[index].append(received.seq)
                    await received.ack()
    assert by_member[0]  # both members got some
    assert by_member[1]
    assert sorted(by_member[0] + by_member[1]) == list(range(1, 11))  # each exactly once
    await eventually(first.info, (0, 0))
    assert await second.fetch(5, timeout=QUIET) == []


# -- settling -----------------------------------------------------------------------------


async def test_an_acknowledged_event_is_not_delivered_again(engine: StreamEngine) -> None:
    consumer = await orders_consumer(engine, ack_wait=1)
    await publish_all(engine, "orders.a", "orders.b")
    first, second = await take(consumer, 2)
    assert await consumer.info() == (0, 2)
    await first.ack()
    await first.ack()  # a second settlement is ignored
    await first.nak()
    await eventually(consumer.info, (0, 1))
    # Only the unacknowledged one comes back after ack_wait.
    assert deliveries(await take(consumer, 1)) == [(2, 2)]
    await second.ack()
    assert await consumer.fetch(5, timeout=1.5) == []


async def test_nak_redelivers_at_once_and_counts_deliveries(engine: StreamEngine) -> None:
    consumer = await orders_consumer(engine, ack_wait=30)
    await publish_all(engine, "orders.a")
    for delivered in (1, 2, 3):
        (received,) = await take(consumer, 1)
        assert (received.seq, received.delivered, received.data) == (1, delivered, b"0")
        await received.nak()
    (received,) = await take(consumer, 1)
    assert received.delivered == 4
    await received.ack()


async def test_nak_with_a_delay_redelivers_after_it(engine: StreamEngine) -> None:
    consumer = await orders_consumer(engine, ack_wait=30)
    await publish_all(engine, "orders.a")
    (received,) = await take(consumer, 1)
    await received.nak(delay=2.0)
    assert await consumer.fetch(1, timeout=QUIET) == []
    assert deliveries(await take(consumer, 1)) == [(1, 2)]


async def test_an_event_not_settled_within_ack_wait_is_delivered_again(
    engine: StreamEngine,
) -> None:
    consumer = await orders_consumer(engine, ack_wait=1)
    await publish_all(engine, "orders.a")
    assert deliveries(await take(consumer, 1)) == [(1, 1)]
    assert deliveries(await take(consumer, 1)) == [(1, 2)]
    # ... to any member of the group.
    other = await engine.consumer("ORDERS", ConsumerConfig("shipping", ack_wait=1))
    (received,) = await take(other, 1)
    assert (received.seq, received.delivered) == (1, 3)
    await received.ack()


async def test_backoff_replaces_ack_wait_for_redeliveries(engine: StreamEngine) -> None:
    consumer = await orders_consumer(engine, ack_wait=60, backoff=(0.5, 1.0), max_deliver=4)
    await publish_all(engine, "orders.a")
    got = await take(consumer, 3)  # ack_wait alone would take a minute
    assert deliveries(got) == [(1, 1), (1, 2), (1, 3)]


async def test_redeliveries_go_out_while_max_ack_pending_holds_new_events_back(
    engine: StreamEngine,
) -> None:
    consumer = await orders_consumer(engine, ack_wait=1, max_ack_pending=2)
    await publish_all(engine, "orders.a", "orders.b", "orders.c", "orders.d")
    assert deliveries(await take(consumer, 2)) == [(1, 1), (2, 1)]
    again = await take(consumer, 2)
    assert deliveries(again) == [(1, 2), (2, 2)]
    for received in again:
        await received.ack()
    assert deliveries(await take(consumer, 2)) == [(3, 1), (4, 1)]


async def test_max_ack_pending_limits_what_fetch_hands_out(engine: StreamEngine) -> None:
    consumer = await orders_consumer(engine, max_ack_pending=2)
    second = await engine.consumer("ORDERS", ConsumerConfig("shipping", max_ack_pending=2))
    await publish_all(engine, *["orders.x"] * 5)
    got = await consumer.fetch(5, timeout=QUIET)
    assert seqs(got) == [1, 2]
    assert await second.fetch(5, timeout=QUIET) == []  # the limit is the group's
    assert await consumer.info() == (3, 2)
    await got[0].ack()
    assert seqs(await take(second, 1)) == [3]
    assert await consumer.fetch(5, timeout=QUIET) == []


async def test_max_deliver_stops_redelivery(engine: StreamEngine) -> None:
    consumer = await orders_consumer(engine, ack_wait=1, max_deliver=2)
    await publish_all(engine, "orders.a")
    (received,) = await take(consumer, 1)
    await received.nak()
    (received,) = await take(consumer, 1)
    assert received.delivered == 2
    await received.nak()
    await publish_all(engine, "orders.b")
    got = await take(consumer, 1)
    assert deliveries(got) == [(2, 1)]
    await got[0].ack()
    assert await consumer.fetch(5, timeout=1.5) == []
    await eventually(consumer.info, (0, 0))


async def test_term_gives_up_on_an_event(engine: StreamEngine) -> None:
    consumer = await orders_consumer(engine, ack_wait=1)
    await publish_all(engine, "orders.a", "orders.b")
    first, second = await take(consumer, 2)
    await first.term()
    await first.nak()  # ignored: already settled
    await second.ack()
    await eventually(consumer.info, (0, 0))
    assert await consumer.fetch(5, timeout=1.5) == []
    assert (await engine.stream_state("ORDERS")).messages == 2  # limits: kept


async def test_in_progress_restarts_ack_wait(engine: StreamEngine) -> None:
    consumer = await orders_consumer(engine, ack_wait=1.5)
    await publish_all(engine, "orders.a")
    (received,) = await take(consumer, 1)

    async def keep_working(task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        while True:
            await received.in_progress()
            await trio.sleep(0.2)

    async with trio.open_nursery() as nursery:
        await nursery.start(keep_working)
        # Twice ack_wait passes without a redelivery while it reports progress.
        assert await consumer.fetch(1, timeout=3.0) == []
        nursery.cancel_scope.cancel()
    assert deliveries(await take(consumer, 1)) == [(1, 2)]


async def test_delete_consumer_forgets_its_position(engine: StreamEngine) -> None:
    consumer = await orders_consumer(engine)
    await publish_all(engine, "orders.a", "orders.b")
    for received in await take(consumer, 2):
        await received.ack()
    await engine.delete_consumer("ORDERS", "shipping")
    assert (await engine.stream_state("ORDERS")).consumers == ()
    with pytest.raises(StreamNotFound):
        await engine.delete_consumer("ORDERS", "shipping")
    again = await engine.consumer("ORDERS", ConsumerConfig("shipping"))
    assert seqs(await take(again, 2)) == [1, 2]


# -- retention ----------------------------------------------------------------------------


async def test_workqueue_retention_removes_acknowledged_events(engine: StreamEngine) -> None:
    await engine.add_stream(StreamConfig("JOBS", ["jobs.>"], retention="workqueue"))
    await publish_all(engine, "jobs.a", "jobs.b", "jobs.c")
    consumer = await engine.consumer("JOBS", ConsumerConfig("workers"))
    first, second, third = await take(consumer, 3)
    await first.ack()
    await third.ack()

    async def stored() -> tuple[int, int, int]:
        state = await engine.stream_state("JOBS")
        return state.messages, state.first_seq, state.last_seq

    await eventually(stored, (1, 2, 3))
    assert await engine.get("JOBS", 1) is None
    with pytest.raises(StreamError):  # one consumer per event on a work queue
        await engine.consumer("JOBS", ConsumerConfig("others"))
    await engine.consumer("JOBS", ConsumerConfig("workers"))  # the same group: fine
    await second.ack()
    await eventually(stored, (0, 4, 3))


async def test_interest_retention_removes_what_every_consumer_acknowledged(
    engine: StreamEngine,
) -> None:
    await engine.add_stream(StreamConfig("ORDERS", ["orders.>"], retention="interest"))
    await publish_all(engine, "orders.a")  # nobody is interested: not kept
    assert (await engine.stream_state("ORDERS")).messages == 0
    shipping = await engine.consumer("ORDERS", ConsumerConfig("shipping"))
    billing = await engine.consumer("ORDERS", ConsumerConfig("billing"))
    await publish_all(engine, "orders.b")

    async def messages() -> int:
        return (await engine.stream_state("ORDERS")).messages

    assert await messages() == 1
    (received,) = await take(shipping, 1)
    await received.ack()
    assert await messages() == 1  # billing has not acknowledged it yet
    (received,) = await take(billing, 1)
    await received.ack()
    await eventually(messages, 0)


async def test_get_returns_the_message_id_an_event_was_published_with(
    engine: StreamEngine,
) -> None:
    await engine.add_stream(ORDERS)
    await engine.publish("orders.a", b"with an id", msg_id="order-1/1")
    await engine.publish("orders.b", b"with none")
    await engine.publish("orders.c", b"in a header", headers={"Nats-Msg-Id": "order-2/1"})
    first, second, third = [await engine.get("ORDERS", seq) for seq in (1, 2, 3)]
    assert first is not None
    assert second is not None
    assert third is not None
    assert (first.msg_id, second.msg_id, third.msg_id) == ("order-1/1", None, "order-2/1")
    assert first.headers["Nats-Msg-Id"] == "order-1/1"  # (kept among the headers too)
    assert (first.data, second.data, third.data) == (b"with an id", b"with none", b"in a header")
