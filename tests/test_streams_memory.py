"""``InMemoryStreams`` beyond the conformance suite: its timers in virtual time
(``autojump_clock``: ack_wait, backoff, nak delays, max_age, the duplicate window, fetch
timeouts), its fault injection (failed and lost acks, duplicate deliveries, forced
redeliveries, failed publishes), the refusals it shares with JetStream, and the
bookkeeping of its counters under random operations."""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing

from actors import InvalidTopic
from actors.streams import (
    Consumer,
    ConsumerConfig,
    InMemoryStreams,
    PubAck,
    Received,
    Start,
    StreamConfig,
    StreamError,
    StreamNotFound,
)

ORDERS = StreamConfig("ORDERS", ["orders.>"])


async def consumer_of(
    engine: InMemoryStreams, durable: str = "shipping", **settings: Any
) -> Consumer:
    """A consumer of ORDERS (added if need be)."""
    try:
        await engine.stream_state("ORDERS")
    except StreamNotFound:
        await engine.add_stream(ORDERS)
    return await engine.consumer("ORDERS", ConsumerConfig(durable, **settings))


async def publish(engine: InMemoryStreams, count: int, subject: str = "orders.x") -> None:
    for index in range(count):
        await engine.publish(subject, str(index).encode())


def deliveries(events: list[Received]) -> list[tuple[int, int]]:
    return [(r.seq, r.delivered) for r in events]


# -- virtual time ---------------------------------------------------------------------------


async def test_ack_wait_and_backoff_run_on_trios_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    consumer = await consumer_of(engine, ack_wait=30, backoff=(1, 5, 30), max_deliver=5)
    await publish(engine, 1)
    start = trio.current_time()
    times = []
    for _ in range(5):
        (received,) = await consumer.fetch(1, timeout=1000)
        times.append((received.delivered, trio.current_time() - start))
    # backoff replaces ack_wait: 1 s, then 5 s, then 30 s (the last repeated).
    assert times == [(1, 0), (2, 1), (3, 6), (4, 36), (5, 66)]
    assert await consumer.fetch(1, timeout=1000) == []  # max_deliver reached
    assert await consumer.info() == (0, 0)


async def test_nak_delay_in_progress_and_fetch_timeouts_are_exact(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    consumer = await consumer_of(engine, ack_wait=10)
    start = trio.current_time()
    assert await consumer.fetch(5, timeout=3) == []
    assert trio.current_time() - start == 3
    await publish(engine, 1)
    (received,) = await consumer.fetch(1, timeout=0)
    await received.nak(delay=7)
    (received,) = await consumer.fetch(1, timeout=100)
    assert (received.delivered, trio.current_time() - start) == (2, 10)
    await trio.sleep(8)
    await received.in_progress()  # at 18: ack_wait restarts, so due at 28, not 20
    (received,) = await consumer.fetch(1, timeout=100)
    assert (received.delivered, trio.current_time() - start) == (3, 28)


async def test_a_waiting_fetch_wakes_up_when_an_event_is_published(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    consumer = await consumer_of(engine)
    got: list[tuple[list[int], float]] = []

    async def fetch() -> None:
        events = await consumer.fetch(10, timeout=100)
        got.append(([r.seq for r in events], trio.current_time()))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch)
        await trio.sleep(5)
        start = trio.current_time()
        await publish(engine, 1)
    assert got == [([1], start)]


async def test_a_cancelled_fetch_loses_nothing(autojump_clock: trio.testing.MockClock) -> None:
    engine = InMemoryStreams()
    consumer = await consumer_of(engine)
    await publish(engine, 1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await consumer.fetch(1, timeout=0)
    assert scope.cancelled_caught
    assert await consumer.info() == (1, 0)  # cancelled before it looked: nothing taken
    got: list[list[int]] = []

    async def fetch() -> None:
        got.append([r.seq for r in await consumer.fetch(5, timeout=100)])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch)
        await trio.testing.wait_all_tasks_blocked()
        assert got == [[1]]
        nursery.start_soon(fetch)
        await trio.testing.wait_all_tasks_blocked()
        await publish(engine, 1)  # wakes the waiting fetch ...
        nursery.cancel_scope.cancel()  # ... which is cancelled before it runs
    # What it took reached its caller: nothing is taken and dropped.
    assert got == [[1], [2]]
    assert await consumer.info() == (0, 2)


async def test_max_age_and_the_duplicate_window_forget_on_trios_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    await engine.add_stream(StreamConfig("ORDERS", ["orders.>"], max_age=60))
    await engine.add_stream(StreamConfig("LOG", ["log.>"]))  # duplicate_window 120
    assert await engine.publish("orders.a", b"1", msg_id="a") == PubAck("ORDERS", 1)
    assert await engine.publish("log.a", b"1", msg_id="a") == PubAck("LOG", 1)
    await trio.sleep(30)
    await engine.publish("orders.b", b"2")
    await trio.sleep(30)  # at 60 the first event is as old as max_age
    state = await engine.stream_state("ORDERS")
    assert (state.messages, state.first_seq, state.last_seq) == (1, 2, 2)
    # The window is never longer than max_age (JetStream's rule): "a" is forgotten.
    assert await engine.publish("orders.a", b"1", msg_id="a") == PubAck("ORDERS", 3)
    assert await engine.publish("log.a", b"1", msg_id="a") == PubAck("LOG", 1, duplicate=True)
    await trio.sleep(60)
    assert await engine.publish("log.a", b"1", msg_id="a") == PubAck("LOG", 2)
    consumer = await engine.consumer("ORDERS", ConsumerConfig("c"))
    assert [r.seq for r in await consumer.fetch(10, timeout=0)] == []  # all expired
    assert await engine.get("ORDERS", 3) is None


async def test_at_time_compares_with_the_engines_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams(clock=lambda: 1_000_000 + trio.current_time())
    await engine.add_stream(ORDERS)
    await publish(engine, 2)
    await trio.sleep(10)
    middle = 1_000_000 + trio.current_time()
    await publish(engine, 2)
    stored = await engine.get("ORDERS", 3)
    assert stored is not None
    assert stored.timestamp == middle
    consumer = await engine.consumer("ORDERS", ConsumerConfig("c", start=Start.at_time(middle)))
    assert [r.seq for r in await consumer.fetch(10, timeout=0)] == [3, 4]


async def test_due_redeliveries_go_out_earliest_due_first(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    consumer = await consumer_of(engine, ack_wait=100)
    await publish(engine, 4)
    first, second, third, _ = await consumer.fetch(4, timeout=0)
    await third.nak()
    await trio.sleep(1)
    await first.nak()
    await trio.sleep(1)
    await second.nak(delay=5)
    assert deliveries(await consumer.fetch(10, timeout=0)) == [(3, 2), (1, 2)]
    assert deliveries(await consumer.fetch(10, timeout=10)) == [(2, 2)]


async def test_closing_wakes_waiting_fetchers_and_refuses_every_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with InMemoryStreams() as engine:
        consumer = await consumer_of(engine)
        await publish(engine, 1)
        (received,) = await consumer.fetch(1, timeout=0)

        async def wait() -> None:
            with pytest.raises(StreamError, match="closed"):
                await consumer.fetch(1, timeout=100)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait)
            await trio.testing.wait_all_tasks_blocked()
            await engine.close()
    assert trio.current_time() < 100
    for call in (
        lambda: engine.publish("orders.x", b""),
        lambda: engine.stream_state("ORDERS"),
        received.ack,
        consumer.info,
    ):
        with pytest.raises(StreamError, match="this InMemoryStreams engine is closed"):
            await call()
    assert repr(engine) == "<InMemoryStreams: closed>"


async def test_deleting_the_consumer_or_stream_wakes_its_fetchers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    consumer = await consumer_of(engine)

    async def wait() -> None:
        with pytest.raises(StreamNotFound, match="has no durable consumer 'shipping'"):
            await consumer.fetch(1, timeout=100)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        await engine.delete_consumer("ORDERS", "shipping")
    assert trio.current_time() == 0
    await engine.consumer("ORDERS", ConsumerConfig("shipping"))  # the handle follows the name
    await publish(engine, 1)
    assert [r.seq for r in await consumer.fetch(1, timeout=0)] == [1]
    await engine.delete_stream("ORDERS")
    with pytest.raises(StreamNotFound, match="no stream named 'ORDERS'"):
        await consumer.fetch(1, timeout=0)


# -- fault injection ------------------------------------------------------------------------


async def test_fail_publishes_stores_nothing(autojump_clock: trio.testing.MockClock) -> None:
    engine = InMemoryStreams()
    await engine.add_stream(ORDERS)
    await engine.add_stream(StreamConfig("DLQ", ["dead.>"]))
    engine.fail_publishes(2)
    engine.fail_publishes(subject="orders.eu.*")
    assert engine.armed_faults() == {"fail_publishes": 3}
    for subject in ("orders.us.a", "dead.x"):
        with pytest.raises(StreamError, match=f"publish to '{subject}' failed: a fault injected"):
            await engine.publish(subject, b"")
    assert await engine.publish("orders.us.b", b"") == PubAck("ORDERS", 1)
    assert await engine.publish("dead.y", b"") == PubAck("DLQ", 1)
    with pytest.raises(StreamError, match="nothing was stored"):
        await engine.publish("orders.eu.c", b"")
    assert await engine.publish("orders.eu.c", b"") == PubAck("ORDERS", 2)
    assert engine.armed_faults() == {}


async def test_a_failed_ack_leaves_the_event_to_be_redelivered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    consumer = await consumer_of(engine, ack_wait=30)
    await publish(engine, 2)
    first, second = await consumer.fetch(2, timeout=0)
    engine.fail_acks(2)
    with pytest.raises(StreamError) as caught:
        await first.ack()
    assert str(caught.value) == (
        "ack of ORDERS seq 1 (consumer 'shipping') failed: a fault injected by "
        "InMemoryStreams.fail_acks; the event stays unacknowledged and will be delivered "
        "again"
    )
    with pytest.raises(StreamError):
        await second.ack()
    await second.ack()  # unsettled still: this one counts
    assert await consumer.info() == (0, 1)
    start = trio.current_time()
    assert deliveries(await consumer.fetch(5, timeout=100)) == [(1, 2)]
    assert trio.current_time() - start == 30


async def test_faults_aimed_at_one_durable_spare_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    shipping = await consumer_of(engine, "shipping")
    billing = await consumer_of(engine, "billing")
    await publish(engine, 1)
    engine.fail_acks(durable="billing")
    engine.duplicate_deliveries(durable="billing")
    (for_shipping,) = await shipping.fetch(1, timeout=0)
    await for_shipping.ack()
    assert await shipping.fetch(1, timeout=0) == []
    assert engine.armed_faults() == {"fail_acks": 1, "duplicate_deliveries": 1}
    (for_billing,) = await billing.fetch(1, timeout=0)
    with pytest.raises(StreamError):
        await for_billing.ack()
    assert deliveries(await billing.fetch(1, timeout=0)) == [(1, 2)]  # the duplicate
    assert engine.armed_faults() == {}


async def test_a_lost_ack_looks_fine_but_the_event_comes_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    consumer = await consumer_of(engine, ack_wait=30)
    await publish(engine, 1)
    (received,) = await consumer.fetch(1, timeout=0)
    engine.lose_acks()
    await received.ack()
    await received.ack()  # settled, as far as the subscriber knows: ignored
    assert await consumer.info() == (0, 1)
    (again,) = await consumer.fetch(1, timeout=100)
    assert (again.seq, again.delivered) == (1, 2)
    await again.ack()
    assert await consumer.info() == (0, 0)


async def test_a_duplicated_delivery_goes_to_the_next_fetch_of_any_member(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    first = await consumer_of(engine, ack_wait=30)
    second = await consumer_of(engine, ack_wait=30)
    await publish(engine, 3)
    engine.duplicate_deliveries()
    got = await first.fetch(1, timeout=0)
    assert deliveries(got) == [(1, 1)]
    duplicate = await second.fetch(2, timeout=0)
    assert deliveries(duplicate) == [(1, 2), (2, 1)]  # at once, before new events
    await duplicate[0].ack()
    await got[0].ack()  # settling the other copy too is harmless
    await duplicate[1].ack()
    assert trio.current_time() == 0
    assert await first.info() == (1, 0)


async def test_a_duplicate_counts_against_max_deliver(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    consumer = await consumer_of(engine, max_deliver=1)
    await publish(engine, 1)
    engine.duplicate_deliveries()
    (received,) = await consumer.fetch(1, timeout=0)
    assert await consumer.fetch(1, timeout=0) == []
    await received.ack()  # too late: it was dropped, as JetStream drops it
    assert await consumer.info() == (0, 0)


async def test_redeliver_now_makes_unsettled_events_due(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    consumer = await consumer_of(engine, ack_wait=30)
    await publish(engine, 4)
    events = await consumer.fetch(3, timeout=0)
    await events[0].ack()
    assert engine.redeliver_now("ORDERS", "shipping", 3) == [3]
    assert deliveries(await consumer.fetch(10, timeout=0)) == [(3, 2), (4, 1)]
    assert engine.redeliver_now("ORDERS", "shipping") == [2, 3, 4]
    assert deliveries(await consumer.fetch(10, timeout=0)) == [(2, 2), (3, 3), (4, 2)]
    with pytest.raises(ValueError, match=r"no unsettled delivery of seq 1; .* \[2, 3, 4\]"):
        engine.redeliver_now("ORDERS", "shipping", 1)
    with pytest.raises(StreamNotFound):
        engine.redeliver_now("ORDERS", "billing")
    assert trio.current_time() == 0


async def test_a_waiting_fetch_gets_a_forced_redelivery_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    consumer = await consumer_of(engine, ack_wait=30)
    await publish(engine, 1)
    await consumer.fetch(1, timeout=0)
    got: list[list[tuple[int, int]]] = []

    async def fetch() -> None:
        got.append(deliveries(await consumer.fetch(1, timeout=100)))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(fetch)
        await trio.sleep(2)
        engine.redeliver_now("ORDERS", "shipping")
    assert got == [[(1, 2)]]
    assert trio.current_time() == 2


def test_fault_arguments_are_checked() -> None:
    engine = InMemoryStreams()
    for bad in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="count must be an int >= 1"):
            engine.fail_acks(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidTopic):
        engine.fail_publishes(subject="orders..x")
    engine.fail_acks(3)
    engine.lose_acks(durable="d")
    assert engine.armed_faults() == {"fail_acks": 3, "lose_acks": 1}
    engine.clear_faults()
    assert engine.armed_faults() == {}


# -- refusals JetStream makes too -----------------------------------------------------------


async def test_refused_streams_and_updates() -> None:
    engine = InMemoryStreams()
    with pytest.raises(StreamError, match=r"subjects 'a\.>' and 'a\.b' overlap"):
        await engine.add_stream(StreamConfig("A", ["a.>", "a.b"]))
    with pytest.raises(StreamError, match="overlap"):
        await engine.add_stream(StreamConfig("A", ["a.b", "a.b"]))
    await engine.add_stream(ORDERS)
    with pytest.raises(StreamError, match=r"'orders\.\*' overlaps 'orders\.>' of stream 'ORDERS'"):
        await engine.add_stream(StreamConfig("OTHER", ["orders.*"]))
    with pytest.raises(StreamError, match="its storage cannot change"):
        await engine.add_stream(StreamConfig("ORDERS", ["orders.>"], storage="memory"))
    with pytest.raises(StreamError, match="its retention cannot change"):
        await engine.add_stream(StreamConfig("ORDERS", ["orders.>"], retention="interest"))
    with pytest.raises(TypeError, match="needs a StreamConfig"):
        await engine.add_stream("ORDERS")  # type: ignore[arg-type]


async def test_an_event_larger_than_the_stream_allows_is_refused() -> None:
    engine = InMemoryStreams()
    await engine.add_stream(StreamConfig("ORDERS", ["orders.>"], max_msg_size=20))
    await engine.publish("orders.x", b"x" * 20)
    with pytest.raises(StreamError, match=r"the event is 21 bytes .* more than the 20 bytes"):
        await engine.publish("orders.x", b"x" * 21)
    # Headers count, in NATS' wire form: "NATS/1.0\r\nk: v\r\n\r\n" is 18 bytes.
    await engine.publish("orders.x", b"xx", headers={"k": "v"})
    with pytest.raises(StreamError):
        await engine.publish("orders.x", b"xxx", headers={"k": "v"})
    await engine.add_stream(StreamConfig("BIG", ["big.>"]))
    await engine.publish("big.x", b"x" * (1024 * 1024))
    with pytest.raises(StreamError, match="more than the 1048576 bytes"):
        await engine.publish("big.x", b"x" * (1024 * 1024 + 1))
    assert (await engine.stream_state("ORDERS")).messages == 2


async def test_max_bytes_counts_as_jetstream_counts() -> None:
    engine = InMemoryStreams()
    # file storage: subject + data + 30 bytes per event (subject "s.x": 3 bytes)
    await engine.add_stream(StreamConfig("S", ["s.>"], max_bytes=3 * (3 + 10 + 30)))
    for _ in range(4):
        await engine.publish("s.x", b"0123456789")
    state = await engine.stream_state("S")
    assert (state.messages, state.first_seq) == (3, 2)
    await engine.add_stream(StreamConfig("M", ["m.>"], storage="memory", max_bytes=2 * 29))
    for _ in range(3):
        await engine.publish("m.x", b"0123456789")  # 3 + 10 + 16
    assert (await engine.stream_state("M")).messages == 2


async def test_workqueue_consumers_start_at_the_beginning_on_disjoint_filters() -> None:
    engine = InMemoryStreams()
    await engine.add_stream(StreamConfig("JOBS", ["jobs.>"], retention="workqueue"))
    with pytest.raises(StreamError, match="starts at the beginning"):
        await engine.consumer("JOBS", ConsumerConfig("w", start=Start.new_only()))
    await engine.consumer("JOBS", ConsumerConfig("eu", filter="jobs.eu.*"))
    await engine.consumer("JOBS", ConsumerConfig("us", filter="jobs.us.>"))
    with pytest.raises(StreamError, match="overlaps consumer 'eu'"):
        await engine.consumer("JOBS", ConsumerConfig("any", filter="jobs.*.x"))
    assert (await engine.stream_state("JOBS")).consumers == ("eu", "us")


async def test_a_filter_must_fall_within_or_around_the_streams_subjects() -> None:
    engine = InMemoryStreams()
    await engine.add_stream(StreamConfig("A", ["a.b.>", "x.*"]))
    for good in ("a.b.c", "a.>", "x.y", "x.>", "*.*", ">"):
        await engine.consumer("A", ConsumerConfig("c", filter=good))
    for bad in ("b.x", "a.*.c"):
        with pytest.raises(StreamError, match=f"its filter '{bad}' is not a subset"):
            await engine.consumer("A", ConsumerConfig("d", filter=bad))


async def test_bad_input_is_refused_with_the_problem_named() -> None:
    engine = InMemoryStreams()
    consumer = await consumer_of(engine)
    with pytest.raises(InvalidTopic, match="must be concrete"):
        await engine.publish("orders.*", b"")
    with pytest.raises(TypeError, match="publish needs bytes, got str"):
        await engine.publish("orders.x", "text")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="msg_id must be a non-empty str"):
        await engine.publish("orders.x", b"", msg_id="")
    with pytest.raises(TypeError, match="headers map non-empty str to str"):
        await engine.publish("orders.x", b"", headers={"k": 1})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="batch int >= 1"):
        await consumer.fetch(0, timeout=1)
    with pytest.raises(ValueError, match="timeout of seconds >= 0"):
        await consumer.fetch(1, timeout=-1)
    await engine.publish("orders.x", bytearray(b"ok"))  # type: ignore[arg-type]
    (received,) = await consumer.fetch(1, timeout=0)
    assert received.data == b"ok"
    with pytest.raises(ValueError, match="delay of seconds >= 0"):
        await received.nak(delay=-1)
    with pytest.raises(TypeError, match="needs an int stream sequence"):
        await engine.get("ORDERS", "1")  # type: ignore[arg-type]


async def test_the_message_id_is_stored_as_jetstream_stores_it() -> None:
    engine = InMemoryStreams()
    consumer = await consumer_of(engine)
    await engine.publish("orders.x", b"", headers={"k": "v"}, msg_id="o-1")
    # A Nats-Msg-Id header is a message id too, as on JetStream.
    again = await engine.publish("orders.x", b"", headers={"Nats-Msg-Id": "o-1"})
    assert again == PubAck("ORDERS", 1, duplicate=True)
    (received,) = await consumer.fetch(1, timeout=0)
    assert dict(received.headers) == {"k": "v", "Nats-Msg-Id": "o-1"}


async def test_settling_after_the_consumer_was_recreated_does_nothing() -> None:
    engine = InMemoryStreams()
    consumer = await consumer_of(engine, ack_wait=30)
    await publish(engine, 1)
    (old,) = await consumer.fetch(1, timeout=0)
    await engine.delete_consumer("ORDERS", "shipping")
    await engine.consumer("ORDERS", ConsumerConfig("shipping", ack_wait=30))
    (new,) = await consumer.fetch(1, timeout=0)
    await old.ack()  # a delivery of the consumer that was deleted
    assert await consumer.info() == (0, 1)
    await new.ack()
    assert await consumer.info() == (0, 0)


# -- bookkeeping ----------------------------------------------------------------------------


async def test_the_counters_stay_true_under_random_operations(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Random publishes (with limits discarding), fetches and settlements on two filtered
    consumers and one group: after each step, ``info()`` agrees with a recount, and no
    event is handed out unsettled twice at once except by a redelivery."""
    rng = random.Random("streams-memory")
    engine = InMemoryStreams()
    await engine.add_stream(StreamConfig("ORDERS", ["orders.>"], max_msgs=40, max_age=500))
    consumers = {
        "eu": await engine.consumer("ORDERS", ConsumerConfig("eu", filter="orders.eu.*")),
        "all": await engine.consumer(
            "ORDERS", ConsumerConfig("all", ack_wait=20, max_deliver=3, max_ack_pending=7)
        ),
        "all2": await engine.consumer(
            "ORDERS", ConsumerConfig("all", ack_wait=20, max_deliver=3, max_ack_pending=7)
        ),
    }
    held: list[Received] = []
    settle: list[Callable[[Received], Awaitable[None]]] = [
        lambda r: r.ack(),
        lambda r: r.nak(),
        lambda r: r.nak(delay=rng.choice([1, 5])),
        lambda r: r.term(),
        lambda r: r.in_progress(),
    ]
    for _ in range(600):
        step = rng.random()
        if step < 0.35:
            region = rng.choice(["eu", "us", "asia"])
            await engine.publish(f"orders.{region}.{rng.randint(1, 3)}", b"e")
        elif step < 0.65:
            held += await rng.choice(list(consumers.values())).fetch(rng.randint(1, 4), timeout=0)
        elif step < 0.9 and held:
            received = held.pop(rng.randrange(len(held)))
            await settle[rng.randrange(len(settle))](received)
        else:
            await trio.sleep(rng.choice([1, 10, 30]))
        state = engine._streams["ORDERS"]
        for name, consumer_state in state.consumers.items():
            recount = sum(
                1
                for seq, event in state.events.items()
                if seq >= consumer_state.next_seq and consumer_state.matches(event.subject)
            )
            assert consumer_state.undelivered == recount, name
            assert set(consumer_state.pending) <= set(state.events), name
            assert len(consumer_state.pending) <= consumer_state.config.max_ack_pending
        assert len(state.events) <= 40
    assert (await consumers["all"].info())[1] <= 7
