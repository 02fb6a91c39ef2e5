"""The durable-streams runtime on the in-memory engine, in virtual time: publishing,
delivery to actors, consumer groups, order, flow control, start positions and how
subscriptions end. Failures and dead letters: test_streams_runtime_failures.py."""

from __future__ import annotations

import time
from typing import Any

import pytest
import trio
import trio.testing
from streams_runtime_actors import (
    ORDERS,
    Log,
    OrderPlaced,
    Recorder,
    eventually,
    publish_orders,
    running,
)

from actors import Actor, Mailbox, open_system
from actors.cluster import PickleCodec
from actors.streams import (
    InMemoryStreams,
    NoStreamForSubject,
    PubAck,
    Start,
    StreamEvent,
    SubscriptionStats,
    UnencodableEvent,
    open_streams,
)


class NotRegistered:
    pass


# -- publishing ------------------------------------------------------------------------


async def test_publish_returns_once_stored_and_a_message_id_is_stored_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    async with running(engine) as (_, streams):
        first = await streams.publish("orders.eu.created", OrderPlaced(1), msg_id="o-1")
        again = await streams.publish("orders.eu.created", OrderPlaced(1), msg_id="o-1")
        other = await streams.publish("payments.eu", OrderPlaced(2))
        assert first == PubAck("ORDERS", 1)
        assert again == PubAck("ORDERS", 1, duplicate=True)
        assert other == PubAck("PAYMENTS", 1)
        stored = await engine.get("ORDERS", 1)
        assert stored is not None
        assert streams.codec.decode_message(stored.data) == OrderPlaced(1)
        assert stored.headers["Actors-Codec"] == "safe"
        assert (await engine.stream_state("ORDERS")).messages == 1


async def test_publish_refuses_what_it_cannot_store_and_stores_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    async with running(engine) as (_, streams):
        with pytest.raises(UnencodableEvent) as caught:
            await streams.publish("orders.eu.created", NotRegistered())
        text = str(caught.value)
        assert "event of type test_streams_runtime.NotRegistered published on" in text
        assert "open_streams(types=[...])" in text
        assert "nothing was stored" in text
        assert caught.value.type_name == "test_streams_runtime.NotRegistered"
        assert isinstance(caught.value, TypeError)
        with pytest.raises(NoStreamForSubject, match=r"'invoices\.eu'"):
            await streams.publish("invoices.eu", OrderPlaced(1))
        with pytest.raises(ValueError, match=r"invalid topic 'orders\.\*'"):
            await streams.publish("orders.*", OrderPlaced(1))
        with pytest.raises(UnencodableEvent):  # encoded first: nothing of the batch stored
            await streams.publish_many(
                [("orders.eu.created", OrderPlaced(1)), ("orders.eu.created", NotRegistered())]
            )
        assert (await engine.stream_state("ORDERS")).messages == 0
        acks = await streams.publish_many(
            [("orders.eu.created", OrderPlaced(1), "a"), ("orders.us.created", OrderPlaced(2))]
        )
        assert [ack.seq for ack in acks] == [1, 2]
        with pytest.raises(TypeError, match=r"takes \(topic, event\)"):
            await streams.publish_many(["orders.eu.created"])  # type: ignore[list-item]


async def test_a_codec_must_be_chosen_and_pickle_is_a_choice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_system("shop") as system:
        with pytest.raises(TypeError, match=r"pass types=.*or codec=PickleCodec"):
            async with open_streams(system, InMemoryStreams(), streams=[ORDERS]):
                pass
        with pytest.raises(ValueError, match="give one of them"):
            async with open_streams(
                system, InMemoryStreams(), codec=PickleCodec(), types=[OrderPlaced]
            ):
                pass
        with pytest.raises(TypeError, match=r"an actors\.cluster codec"):
            async with open_streams(system, InMemoryStreams(), codec="pickle"):  # type: ignore[arg-type]
                pass
        engine = InMemoryStreams()
        async with open_streams(system, engine, streams=[ORDERS], codec=PickleCodec()) as streams:
            await streams.publish("orders.eu.created", NotRegistered())
            stored = await engine.get("ORDERS", 1)
            assert stored is not None
            assert stored.headers["Actors-Codec"] == "pickle"
        with pytest.raises(RuntimeError, match=r"publish\(\) after its open_streams block"):
            await streams.publish("orders.eu.created", OrderPlaced(1))


# -- delivery ----------------------------------------------------------------------------


class Keeps(Actor):
    def __init__(self, got: list[StreamEvent]) -> None:
        self.got = got

    def receive(self, message: StreamEvent) -> None:
        self.got.append(message)


async def test_an_actor_is_asked_with_a_stream_event_and_returning_acknowledges(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    got: list[StreamEvent] = []
    async with running(engine) as (system, streams):
        before = time.time()
        await streams.publish("orders.eu.created", OrderPlaced(7, 9.5))
        sub = await streams.subscribe(system.spawn(Keeps, got), "orders.>", durable="shipping")
        await eventually(lambda: sub.stats().acked == 1)
        (message,) = got
        assert message == StreamEvent(
            OrderPlaced(7, 9.5), "orders.eu.created", "ORDERS", 1, 1, message.timestamp, "shipping"
        )
        assert before <= message.timestamp <= time.time()
        assert sub.stats() == SubscriptionStats(delivered=1, acked=1)
        consumer = sub.consumer
        assert await consumer.info() == (0, 0)  # nothing pending, nothing unacknowledged
        assert (sub.stream, sub.durable, sub.pattern, sub.active) == (
            "ORDERS",
            "shipping",
            "orders.>",
            True,
        )
        assert streams.subscriptions() == [sub]


async def test_members_of_a_group_share_the_events_and_groups_each_get_all(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    log = Log()
    async with running(engine) as (system, streams):
        refs = {who: system.spawn(Recorder, log, who, busy=1) for who in ("a", "b", "audit")}
        for who in ("a", "b"):
            await streams.subscribe(refs[who], "orders.>", durable="shipping", max_in_flight=2)
        await streams.subscribe(refs["audit"], "orders.>", durable="audit", max_in_flight=20)
        await publish_orders(streams, range(20))
        seen = await log.wait_for(40)
        shipping = [s for s in seen if s.who != "audit"]
        assert sorted(s.order_id for s in shipping) == list(range(20))  # each once
        assert {s.who for s in shipping} == {"a", "b"}  # both took part
        assert [s.order_id for s in seen if s.who == "audit"] == list(range(20))
        assert all(s.delivered == 1 for s in seen)


async def test_a_member_must_read_the_pattern_of_its_group(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with running(InMemoryStreams()) as (system, streams):
        ref = system.spawn(Recorder, Log())
        await streams.subscribe(ref, "orders.eu.>", durable="shipping")
        with pytest.raises(ValueError, match="every member of a group") as caught:
            await streams.subscribe(ref, "orders.>", durable="shipping")
        assert str(caught.value) == (
            "the consumer group 'shipping' of stream ORDERS reads pattern 'orders.eu.>'; a "
            "member cannot read 'orders.>': every member of a group subscribes with the "
            "same pattern (or use another durable name)"
        )


async def test_events_enter_the_mailbox_in_fetch_order_with_many_in_flight(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = Log()
    async with running(InMemoryStreams()) as (system, streams):
        await publish_orders(streams, range(60))
        sub = await streams.subscribe(
            system.spawn(Recorder, log), "orders.>", durable="d", max_in_flight=16
        )
        seen = await log.wait_for(60)
        assert [s.order_id for s in seen] == list(range(60))
        await eventually(lambda: sub.stats().acked == 60)


class Flooded(Actor):
    """A small bounded mailbox, handled many messages per turn: that frees several
    places at once, and the senders waiting for them are woken together (and trio may
    run them in any order)."""

    mailbox = Mailbox(capacity=2)

    def __init__(self, log: Log) -> None:
        self.log = log

    def receive(self, message: Any) -> None:
        if isinstance(message, StreamEvent):
            self.log.add(message.event.order_id)


async def test_order_holds_when_a_bounded_mailbox_is_full_of_other_messages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    for _ in range(3):  # (without the runtime's care, each round reorders some)
        log = Log()
        async with running(InMemoryStreams()) as (system, streams):
            ref = system.spawn(Flooded, log)
            async with trio.open_nursery() as nursery:

                async def flood(ref: Any) -> None:
                    for n in range(1000):
                        await ref.send(f"other {n}")

                for _ in range(3):
                    nursery.start_soon(flood, ref)
                await publish_orders(streams, range(200))
                await streams.subscribe(ref, "orders.>", durable="d", max_in_flight=16)
                seen = await log.wait_for(200)
                nursery.cancel_scope.cancel()
        assert seen == list(range(200))


class Watches(Actor):
    """Notes how many messages wait in its own mailbox while it handles one."""

    def __init__(self, waiting: list[int]) -> None:
        self.waiting = waiting

    async def receive(self, message: StreamEvent) -> None:
        self.waiting.append(self.context.ref.stats().mailbox)
        await trio.sleep(1)


async def test_at_most_max_in_flight_events_are_unsettled_per_subscriber(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    waiting: list[int] = []
    async with running(engine) as (system, streams):
        await publish_orders(streams, range(30))
        sub = await streams.subscribe(
            system.spawn(Watches, waiting), "orders.>", durable="d", max_in_flight=3
        )
        consumer = sub.consumer
        pending_seen = set()
        while sub.stats().acked < 30:
            pending_seen.add((await consumer.info())[1])
            assert sub.stats().in_flight <= 3
            await trio.sleep(0.25)
        assert max(waiting) <= 2  # one handled, at most two queued behind it
        assert max(pending_seen) == 3


# -- start positions ---------------------------------------------------------------------


async def test_start_positions_and_a_group_resumes_where_it_stopped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = Log()
    engine = InMemoryStreams(clock=lambda: 1000 + trio.current_time())
    async with running(engine) as (system, streams):
        await publish_orders(streams, range(1, 3))  # seqs 1, 2 at 1000
        await trio.sleep(10)
        await publish_orders(streams, range(3, 5))  # seqs 3, 4 at 1010
        starts = {
            "all": Start.beginning(),
            "new": Start.new_only(),
            "seq2": Start.at_seq(2),
            "time": Start.at_time(1005),
        }
        for name, start in starts.items():
            ref = system.spawn(Recorder, log, name)
            await streams.subscribe(ref, "orders.>", durable=name, start=start)
        await streams.publish("orders.eu.created", OrderPlaced(5))
        await log.wait_for(5 + 1 + 4 + 3)
        got = {name: [s.order_id for s in log.items if s.who == name] for name in starts}
        assert got == {
            "all": [1, 2, 3, 4, 5],
            "new": [5],
            "seq2": [2, 3, 4, 5],
            "time": [3, 4, 5],
        }

        ref = system.spawn(Recorder, log, "resume")
        first = await streams.subscribe(ref, "orders.eu.>", durable="resume")
        await eventually(lambda: first.stats().acked == 5)
        await streams.unsubscribe(first)
        await publish_orders(streams, range(6, 8))
        again = await streams.subscribe(ref, "orders.eu.>", durable="resume")  # (beginning)
        await eventually(lambda: again.stats().acked == 2)
        assert [s.order_id for s in log.items if s.who == "resume"] == [1, 2, 3, 4, 5, 6, 7]


# -- how subscriptions end ---------------------------------------------------------------


async def test_unsubscribe_settles_what_the_actor_holds_then_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    log = Log()
    async with running(engine) as (system, streams):
        await publish_orders(streams, range(10))
        sub = await streams.subscribe(
            system.spawn(Recorder, log, busy=1), "orders.>", durable="d", max_in_flight=4
        )
        await eventually(lambda: sub.stats().delivered == 4)  # all four in the mailbox
        await streams.unsubscribe(sub)
        assert sub.stats() == SubscriptionStats(delivered=4, acked=4)
        assert (sub.active, sub.ended) == (False, "unsubscribed")
        assert streams.subscriptions() == []
        consumer = sub.consumer
        assert await consumer.info() == (6, 0)
        await streams.unsubscribe(sub)  # again: nothing to do
        assert "ended: unsubscribed" in repr(sub)


async def test_the_actor_stopping_ends_its_subscription_and_loses_no_event(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    log = Log()
    async with running(engine) as (system, streams):
        slow = system.spawn(Recorder, log, "slow", busy=10)
        await publish_orders(streams, range(3))
        sub = await streams.subscribe(slow, "orders.>", durable="d", max_in_flight=3)
        await log.wait_for(1)  # 0 is handled; 1 and 2 wait in the mailbox
        system.stop(slow)
        await sub.wait_ended()
        assert sub.ended == "the actor stopped"
        assert sub.stats().acked == 0
        fresh = system.spawn(Recorder, log, "fresh")
        await streams.subscribe(fresh, "orders.>", durable="d")
        await log.wait_for(4)
        again = sorted((s.order_id, s.delivered) for s in log.items if s.who == "fresh")
        assert again == [(0, 2), (1, 2), (2, 2)]


async def test_an_idle_subscription_of_a_stopped_actor_ends_without_taking_events(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    async with running(engine) as (system, streams):
        ref = system.spawn(Recorder, Log())
        sub = await streams.subscribe(ref, "orders.>", durable="d")
        await system.graceful_stop(ref)
        await sub.wait_ended()
        assert sub.ended == "the actor stopped"
        await streams.publish("orders.eu.created", OrderPlaced(1))
        consumer = sub.consumer
        assert await consumer.info() == (1, 0)  # still there for the group


async def test_leaving_open_streams_leaves_held_events_to_be_delivered_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    log = Log()
    async with running(engine) as (system, streams):
        await publish_orders(streams, range(2))
        ref = system.spawn(Recorder, log, "first", busy=100)
        started = trio.current_time()
        sub = await streams.subscribe(ref, "orders.>", durable="d", ack_wait=20)
        await log.wait_for(1)
    assert (sub.active, sub.ended) == (False, "open_streams ended")
    async with running(engine) as (system, streams):
        await streams.subscribe(system.spawn(Recorder, log, "second"), "orders.>", durable="d")
        await log.wait_for(3)
    again = [(s.order_id, s.delivered, s.at - started) for s in log.items if s.who == "second"]
    assert [(o, d) for o, d, _ in again] == [(0, 2), (1, 2)]
    assert again[0][2] >= 19  # after the ack_wait of the first delivery ran out


async def test_the_subscriber_is_asked_without_a_sender(
    autojump_clock: trio.testing.MockClock,
) -> None:
    senders: list[Any] = []

    class Notes(Actor):
        def receive(self, message: Any) -> None:
            senders.append(self.context.sender)

    class Subscriber(Actor):
        def __init__(self, streams: Any) -> None:
            self.streams = streams

        async def receive(self, message: Any) -> None:
            target = self.context.spawn(Notes)
            await self.streams.subscribe(target, "orders.>", durable="d")

    async with running(InMemoryStreams()) as (system, streams):
        await system.spawn(Subscriber, streams).ask("go")
        await streams.publish("orders.eu.created", OrderPlaced(1))
        await eventually(lambda: len(senders) == 1)
        assert senders == [None]


async def test_a_stream_declared_elsewhere_is_read_by_naming_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    log = Log()
    async with running(engine) as (_, publisher):
        await publish_orders(publisher, range(2))
    async with (
        open_system("reader") as system,
        open_streams(
            system, engine, types={"streams_runtime_actors.OrderPlaced": OrderPlaced}
        ) as streams,
    ):
        assert dict(streams.streams) == {}
        with pytest.raises(ValueError, match="name a stream declared elsewhere"):
            await streams.subscribe(system.spawn(Recorder, log), "orders.>", durable="d")
        sub = await streams.subscribe(
            system.spawn(Recorder, log), "orders.>", durable="d", stream="ORDERS"
        )
        seen = await log.wait_for(2)
        assert [s.order_id for s in seen] == [0, 1]
        assert sub.stream == "ORDERS"
