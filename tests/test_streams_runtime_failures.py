"""The durable-streams runtime when things go wrong, on the in-memory engine in virtual
time: failing handlers (backoff, dead letters), undecodable events, timeouts, a failing
engine, and bad input."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing
from streams_runtime_actors import (
    ORDERS,
    PAYMENTS,
    Log,
    OrderPlaced,
    Recorder,
    eventually,
    publish_orders,
    running,
)

from actors import Actor, ActorDead, ActorSystem, Mailbox, open_system
from actors.cluster import PickleCodec
from actors.streams import (
    InMemoryStreams,
    Start,
    StreamConfig,
    StreamDeadLetter,
    StreamDeadLetterReason,
    StreamError,
    StreamEvent,
    StreamNotFound,
    Subscription,
    SubscriptionFailed,
    SubscriptionStats,
    open_streams,
)

# -- failing handlers ------------------------------------------------------------------


async def test_a_refused_event_comes_back_after_each_backoff_delay(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = Log()
    async with running(InMemoryStreams()) as (system, streams):
        ref = system.spawn(Recorder, log, fail=lambda order, attempt: attempt < 4)
        sub = await streams.subscribe(ref, "orders.>", durable="d", backoff=(1, 5))
        start = trio.current_time()
        await streams.publish("orders.eu.created", OrderPlaced(1))
        seen = await log.wait_for(4)
        assert [(s.delivered, s.at - start) for s in seen] == [(1, 0), (2, 1), (3, 6), (4, 11)]
        await eventually(lambda: sub.stats().acked == 1)
        assert sub.stats() == SubscriptionStats(delivered=4, acked=1, retried=3)


async def test_without_backoff_or_max_deliver_it_is_retried_at_once_until_it_succeeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = Log()
    async with running(InMemoryStreams()) as (system, streams):
        ref = system.spawn(Recorder, log, fail=lambda order, attempt: attempt <= 9)
        sub = await streams.subscribe(ref, "orders.>", durable="d", backoff=(), max_deliver=None)
        start = trio.current_time()
        await streams.publish("orders.eu.created", OrderPlaced(1))
        seen = await log.wait_for(10)
        assert [s.delivered for s in seen] == list(range(1, 11))
        assert seen[-1].at == start
        await eventually(lambda: sub.stats().acked == 1)
        assert (await streams.dead_letters()) == []


async def test_after_max_deliver_attempts_the_event_is_parked_with_its_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    log = Log()
    async with running(engine) as (system, streams):
        ref = system.spawn(Recorder, log, fail=lambda order, attempt: order == 2)
        sub = await streams.subscribe(
            ref, "orders.>", durable="shipping", max_deliver=3, backoff=(2,)
        )
        await publish_orders(streams, range(1, 4))
        await eventually(lambda: sub.stats().parked == 1)
        assert [(s.order_id, s.delivered) for s in log.items if s.order_id == 2] == [
            (2, 1),
            (2, 2),
            (2, 3),
        ]
        (letter,) = await streams.dead_letters()
        assert letter == StreamDeadLetter(
            seq=1,
            stream="ORDERS",
            subject="orders.eu.created",
            stream_seq=2,
            durable="shipping",
            reason=StreamDeadLetterReason.FAILED,
            attempts=3,
            error_type="streams_runtime_actors.PaymentDeclined",
            error="order 2 declined",
            event=OrderPlaced(2),
            data=letter.data,
            decode_error=None,
            published=letter.published,
            parked=letter.parked,
        )
        assert letter.published <= letter.parked
        stored = await engine.get("DEAD_LETTERS", 1)
        assert stored is not None
        assert stored.subject == "deadletters.ORDERS.shipping"
        assert stored.headers["Actors-DL-Reason"] == "failed"
        await trio.sleep(100)  # never delivered again
        assert len(log.items) == 5
        assert sub.stats() == SubscriptionStats(delivered=5, acked=2, retried=2, parked=1)
        consumer = sub.consumer
        assert await consumer.info() == (0, 0)
        # Reading them: by stream, by group, by page.
        assert await streams.dead_letters(durable="billing") == []
        assert await streams.dead_letters(stream="PAYMENTS") == []
        assert await streams.dead_letters(after=1) == []
        assert len(await streams.dead_letters(stream="ORDERS", durable="shipping", limit=1)) == 1
        with pytest.raises(ValueError, match="limit must be an int >= 1, got 0"):
            await streams.dead_letters(limit=0)


async def test_a_handler_that_does_not_answer_within_ack_wait_fails_with_ask_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = Log()
    async with running(InMemoryStreams()) as (system, streams):
        ref = system.spawn(Recorder, log, busy=8)
        sub = await streams.subscribe(
            ref, "orders.>", durable="d", ack_wait=5, max_deliver=2, backoff=(1,)
        )
        await streams.publish("orders.eu.created", OrderPlaced(1))
        await eventually(lambda: sub.stats().parked == 1)
        (letter,) = await streams.dead_letters()
        assert (letter.reason, letter.attempts, letter.error_type) == (
            StreamDeadLetterReason.FAILED,
            2,
            "actors.AskTimeout",
        )
        assert letter.error == "no reply from /user/$a within 5 s to StreamEvent".replace(
            "/user/$a", ref.path
        )


class Napper(Actor):
    """One place in its mailbox; a "nap" takes 8 s."""

    mailbox = Mailbox(capacity=1)

    def __init__(self, log: Log) -> None:
        self.log = log

    async def receive(self, message: Any) -> None:
        if message == "nap":
            await trio.sleep(8)
        else:
            self.log.add(message.delivered)


async def test_events_held_longer_than_ack_wait_are_kept_from_redelivery(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = Log()
    async with running(InMemoryStreams()) as (system, streams):
        ref = system.spawn(Napper, log)
        ref.tell("nap")
        await trio.testing.wait_all_tasks_blocked()
        ref.tell("nap")  # the mailbox is full until 8 s; the event is handled at 16 s
        sub = await streams.subscribe(ref, "orders.>", durable="d", ack_wait=10)
        await streams.publish("orders.eu.created", OrderPlaced(1))
        await log.wait_for(1)
        await trio.sleep(60)
        assert log.items == [1]  # held 16 s, more than ack_wait: delivered once
        assert sub.stats() == SubscriptionStats(delivered=1, acked=1)


class AsksTheDead(Actor):
    def __init__(self, dead: Any, log: Log) -> None:
        self.dead = dead
        self.log = log

    async def receive(self, message: StreamEvent) -> None:
        self.log.add(message.delivered)
        if message.delivered == 1:
            await self.dead.ask("anyone?")


async def test_an_actor_dead_error_of_the_handler_is_a_failure_not_the_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = Log()
    async with running(InMemoryStreams()) as (system, streams):
        dead = system.spawn(Recorder, Log())
        await system.graceful_stop(dead)
        sub = await streams.subscribe(
            system.spawn(AsksTheDead, dead, log), "orders.>", durable="d", backoff=(1,)
        )
        await streams.publish("orders.eu.created", OrderPlaced(1))
        await eventually(lambda: sub.stats().acked == 1)
        assert log.items == [1, 2]
        assert sub.active


# -- undecodable events ----------------------------------------------------------------


async def test_an_undecodable_event_is_parked_at_once_and_does_not_block_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    log = Log()
    async with running(engine) as (system, streams):
        await engine.publish("orders.eu.created", b"\x00 not msgpack", msg_id="raw-1")
        await streams.publish("orders.eu.created", OrderPlaced(2))
        sub = await streams.subscribe(system.spawn(Recorder, log), "orders.>", durable="d")
        seen = await log.wait_for(1)
        assert [s.order_id for s in seen] == [2]
        await eventually(lambda: sub.stats().parked == 1)
        (letter,) = await streams.dead_letters()
        assert letter.reason is StreamDeadLetterReason.UNDECODABLE
        assert (letter.stream_seq, letter.attempts, letter.event) == (1, 1, None)
        assert letter.error_type == "actors.cluster.UndecodableMessage"
        assert letter.error is not None
        assert "not a message of the safe codec" in letter.error
        assert letter.data == b"\x00 not msgpack"
        assert letter.decode_error is not None
        stored = await engine.get("DEAD_LETTERS", letter.seq)
        assert stored is not None
        assert stored.headers["Actors-DL-Msg-Id"] == "raw-1"
        assert sub.stats() == SubscriptionStats(delivered=1, acked=1, parked=1)


async def test_an_event_of_another_codec_is_parked_naming_both_codecs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    async with (
        running(engine) as (system, streams),
        open_streams(system, engine, streams=[ORDERS], codec=PickleCodec()) as pickled,
    ):
        await pickled.publish("orders.eu.created", OrderPlaced(1))
        sub = await streams.subscribe(system.spawn(Recorder, Log()), "orders.>", durable="d")
        await eventually(lambda: sub.stats().parked == 1)
        (letter,) = await streams.dead_letters()
        assert letter.error == (
            "the event was encoded with the 'pickle' codec, and this subscriber decodes "
            "with the 'safe' codec: every publisher and subscriber of a stream must use "
            "the same codec"
        )
        assert letter.event is None
        (readable,) = await pickled.dead_letters()  # its own codec decodes it
        assert readable.event == OrderPlaced(1)


async def test_an_event_that_comes_back_after_its_last_attempt_is_parked_unacknowledged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    log = Log()
    async with running(engine) as (system, streams):
        ref = system.spawn(Recorder, log, busy=1000)
        await streams.subscribe(ref, "orders.>", durable="d", max_deliver=1, ack_wait=10)
        await streams.publish("orders.eu.created", OrderPlaced(1))
        await log.wait_for(1)
    # That process is gone (its subscription left the event unsettled); another one:
    async with running(engine) as (system, streams):
        sub = await streams.subscribe(
            system.spawn(Recorder, log), "orders.>", durable="d", max_deliver=1
        )
        await eventually(lambda: sub.stats().parked == 1)
        (letter,) = await streams.dead_letters()
        assert (letter.reason, letter.attempts, letter.error_type) == (
            StreamDeadLetterReason.UNACKNOWLEDGED,
            2,
            None,
        )
        assert letter.error is not None
        assert "never settled" in letter.error
        assert len(log.items) == 1  # not shown to the actor again


# -- a failing engine ------------------------------------------------------------------


async def test_a_failed_ack_means_the_event_is_delivered_again(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    engine = InMemoryStreams()
    log = Log()
    async with running(engine) as (system, streams):
        sub = await streams.subscribe(
            system.spawn(Recorder, log), "orders.>", durable="d", ack_wait=10
        )
        engine.fail_acks(1)
        await streams.publish("orders.eu.created", OrderPlaced(1))
        seen = await log.wait_for(2)
        assert [(s.delivered, s.at) for s in seen] == [(1, 0), (2, 10)]
        await eventually(lambda: sub.stats().acked == 1)
    assert "could not ack an event" in caplog.text
    assert any(r.levelno == logging.WARNING and r.name == "actors.streams" for r in caplog.records)


async def test_parking_that_fails_is_tried_again_later(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    async with running(engine) as (system, streams):
        engine.fail_publishes(1, subject="deadletters.>")
        await engine.publish("orders.eu.created", b"garbage")
        sub = await streams.subscribe(system.spawn(Recorder, Log()), "orders.>", durable="d")
        await eventually(lambda: sub.stats().parked == 1)
        (letter,) = await streams.dead_letters()
        assert letter.attempts == 2


async def test_an_engine_that_stays_down_fails_open_streams_after_retry_for(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()
    reached_the_end = False
    subs: list[Subscription] = []

    async def run(system: ActorSystem) -> None:
        nonlocal reached_the_end
        async with open_streams(
            system, engine, streams=[ORDERS], types=[OrderPlaced], retry_for=10
        ) as streams:
            subs.append(
                await streams.subscribe(system.spawn(Recorder, Log()), "orders.>", durable="d")
            )
            await engine.close()
            await trio.sleep(1000)
            reached_the_end = True

    async with open_system("shop") as system:
        start = trio.current_time()
        with pytest.raises(SubscriptionFailed) as caught:
            await run(system)
    (sub,) = subs
    assert not reached_the_end  # the body was cancelled
    assert 10 <= trio.current_time() - start <= 16
    error = caught.value
    assert str(error).startswith(
        f"the durable subscription of {sub.ref.path} to 'orders.>' (group 'd' of stream "
        "ORDERS) gave up: its engine kept failing for "
    )
    assert "(retry_for=10); last error: this InMemoryStreams engine is closed" in str(error)
    assert isinstance(error.__cause__, StreamError)
    assert sub.ended is not None
    assert sub.ended.startswith("failed: ")


async def test_a_stream_deleted_under_a_subscription_fails_open_streams_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()

    async def run(system: ActorSystem) -> None:
        async with open_streams(system, engine, streams=[ORDERS], types=[]) as streams:
            await streams.subscribe(system.spawn(Recorder, Log()), "orders.>", durable="d")
            await engine.delete_stream("ORDERS")
            await trio.sleep(1000)

    async with open_system("shop") as system:
        with pytest.raises(SubscriptionFailed, match="cannot go on: no stream named 'ORDERS'"):
            await run(system)
        assert trio.current_time() < 10


async def test_a_body_error_wins_and_names_the_failed_subscription(
    autojump_clock: trio.testing.MockClock,
) -> None:
    engine = InMemoryStreams()

    async def run(system: ActorSystem) -> None:
        async with open_streams(system, engine, streams=[ORDERS], types=[]) as streams:
            await streams.subscribe(system.spawn(Recorder, Log()), "orders.>", durable="d")
            await engine.delete_stream("ORDERS")
            with trio.CancelScope(shield=True):
                await trio.sleep(1)  # (the subscription fails meanwhile)
            raise KeyError("mine")

    async with open_system("shop") as system:
        with pytest.raises(KeyError) as caught:
            await run(system)
        assert any("a durable subscription had failed" in n for n in caught.value.__notes__)


# -- bad input -------------------------------------------------------------------------


async def test_subscribe_explains_what_is_wrong(autojump_clock: trio.testing.MockClock) -> None:
    async with running(InMemoryStreams()) as (system, streams):
        ref = system.spawn(Recorder, Log())

        async def refused(error: type[Exception], pattern: str = "orders.>", **kw: Any) -> str:
            kw.setdefault("durable", "d")
            with pytest.raises(error) as caught:
                await streams.subscribe(ref, pattern, **kw)
            return str(caught.value)

        assert await refused(ValueError, ">") == (
            "pattern '>' is only partly stored by stream(s) ['ORDERS', 'PAYMENTS'] (declared: "
            "{'ORDERS': ['orders.>'], 'PAYMENTS': ['payments.*']}): topics it matches outside "
            "their subjects are not stored anywhere; subscribe with a pattern that one stream "
            "stores entirely"
        )
        assert "no stream declared in open_streams stores the topics of pattern 'invoices.>'" in (
            await refused(ValueError, "invoices.>")
        )
        assert "read the dead-letter stream with Streams.dead_letters()" in (
            await refused(ValueError, "deadletters.>")
        )
        assert await refused(ValueError, "deadletters.>", stream="DEAD_LETTERS") == (
            "'DEAD_LETTERS' is the dead-letter stream: read it with Streams.dead_letters()"
        )
        assert "does not store every topic of pattern 'payments.>'" in (
            await refused(ValueError, "payments.>", stream="PAYMENTS")
        )
        assert await refused(StreamNotFound, stream="ELSEWHERE")
        assert await refused(ValueError, "orders.eu*") == (
            "invalid pattern 'orders.eu*': segment 2 ('eu*') mixes a wildcard character with "
            "other characters; '*' and '>' are wildcards only as a whole segment (there is no "
            "prefix matching)"
        )
        assert await refused(ValueError, max_in_flight=0) == (
            "max_in_flight must be an int >= 1, got 0"
        )
        assert await refused(ValueError, max_deliver=0) == (
            "max_deliver must be an int >= 1 or None, got 0"
        )
        assert await refused(ValueError, backoff=(1, -2)) == (
            "each backoff delay must be a finite number of seconds > 0, got -2"
        )
        assert "contains '.'" in await refused(ValueError, durable="ship.ping")
        assert "start must be a Start" in await refused(TypeError, start="beginning")
        with pytest.raises(TypeError, match="needs the ActorRef to deliver to"):
            await streams.subscribe("/user/a", "orders.>", durable="d")  # type: ignore[arg-type]
        await system.graceful_stop(ref)
        assert await refused(ActorDead) == f"actor {ref.path} is not running: it cannot subscribe"
        assert streams.subscriptions() == []


async def test_open_streams_explains_what_is_wrong(autojump_clock: trio.testing.MockClock) -> None:
    engine = InMemoryStreams()
    async with open_system("shop") as system:

        async def refused(error: type[Exception], *args: Any, **kw: Any) -> str:
            kw.setdefault("types", [])
            with pytest.raises(error) as caught:
                async with open_streams(*args, **kw):
                    pass
            return str(caught.value)

        assert "needs the ActorSystem first" in await refused(TypeError, None, engine)
        assert "needs a StreamEngine" in await refused(TypeError, system, "nats://")
        assert await refused(ValueError, system, engine, streams=[ORDERS, ORDERS]) == (
            "stream 'ORDERS' is declared twice"
        )
        bad = StreamConfig("DL", ["dead.*"])
        assert "must have exactly one subject of the form '<prefix>.>'" in (
            await refused(ValueError, system, engine, dead_letters=bad)
        )
        clash = StreamConfig("DEAD_LETTERS", ["orders.>"])
        assert "is the dead-letter stream" in (
            await refused(ValueError, system, engine, streams=[clash])
        )
        assert "retry_for must be a number of seconds >= 0" in (
            await refused(ValueError, system, engine, retry_for=-1)
        )
        overlapping = StreamConfig("ALSO", ["orders.eu.>"])
        assert "overlaps" in await refused(
            StreamError, system, engine, streams=[ORDERS, overlapping]
        )


async def test_payments_stream_is_separate(autojump_clock: trio.testing.MockClock) -> None:
    log = Log()
    async with running(InMemoryStreams()) as (system, streams):
        assert set(streams.streams) == {ORDERS.name, PAYMENTS.name}
        sub = await streams.subscribe(
            system.spawn(Recorder, log), "payments.eu", durable="d", start=Start.new_only()
        )
        assert sub.stream == "PAYMENTS"
        await streams.publish("orders.eu.created", OrderPlaced(1))
        await streams.publish("payments.eu", OrderPlaced(2))
        seen = await log.wait_for(1)
        assert [s.order_id for s in seen] == [2]
