"""The event bus: topics with wildcards, subscriptions by type, reserved runtime topics,
ordering, slow subscribers and backpressure."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
from actors import Actor, ActorRef, Mailbox, Overflow


@attrs.frozen
class OrderPlaced:
    order: int


@attrs.frozen
class ExpressOrderPlaced(OrderPlaced):
    pass


class Collector(Actor):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.append(message)


async def _collector(system: actors.ActorSystem, *patterns: str | type) -> list[Any]:
    got: list[Any] = []
    ref = system.spawn(Collector, got)
    for pattern in patterns:
        assert system.events.subscribe(ref, pattern)
    return got


async def test_topic_patterns_select_what_each_subscriber_gets(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("topics") as system:
        exact = await _collector(system, "orders.eu.created")
        one = await _collector(system, "orders.*.created")
        rest = await _collector(system, "orders.>")
        everything = await _collector(system, ">")
        for topic, n in (
            ("orders.eu.created", 1),
            ("orders.us.created", 2),
            ("orders.eu.created.late", 3),
            ("orders", 4),
            ("payments.eu", 5),
        ):
            system.events.publish(topic, n)
        await trio.testing.wait_all_tasks_blocked()
    assert exact == [1]
    assert one == [1, 2]
    assert rest == [1, 2, 3]
    # ">" matches every topic, the runtime's own too (the collectors' ActorStarted).
    assert [e for e in everything if isinstance(e, int)] == [1, 2, 3, 4, 5]
    assert all(isinstance(e, actors.ActorStarted) for e in everything if not isinstance(e, int))


async def test_a_subscriber_gets_an_event_once_whatever_matches_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("once") as system:
        got = await _collector(system, "orders.>", "orders.*", OrderPlaced)
        assert system.events.publish("orders.eu", ExpressOrderPlaced(1)) == 1
        assert system.events.publish("other", ExpressOrderPlaced(2)) == 1  # by type only
        assert system.events.publish("other", "not an order") == 0
        await trio.testing.wait_all_tasks_blocked()
    assert got == [ExpressOrderPlaced(1), ExpressOrderPlaced(2)]


async def test_each_subscriber_gets_events_in_publish_order(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("order") as system:
        lists = [await _collector(system, "ticks.>") for _ in range(5)]
        for n in range(200):
            system.events.publish(f"ticks.{n % 7}", n)
        await trio.testing.wait_all_tasks_blocked()
    assert all(got == list(range(200)) for got in lists)


async def test_subscriptions_end_when_the_subscriber_stops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("ends") as system:
        got: list[Any] = []
        ref = system.spawn(Collector, got)
        system.events.subscribe(ref, "a.>")
        system.events.subscribe(ref, OrderPlaced)
        assert system.events.subscribers("a.>") == [ref]
        await system.graceful_stop(ref)
        assert system.events.subscribers("a.>") == []
        assert system.events.subscribers(OrderPlaced) == []
        assert system.events.publish("a.b", OrderPlaced(1)) == 0
        assert not system.events.subscribe(ref, "a.>")  # a stopped actor: refused


async def test_unsubscribe_one_pattern_or_everything(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("unsub") as system:
        got: list[Any] = []
        ref = system.spawn(Collector, got)
        events = system.events
        assert events.subscribe(ref, "a.*")
        assert not events.subscribe(ref, "a.*")  # already
        assert events.subscribe(ref, "b")
        events.publish("a.x", 1)
        events.unsubscribe(ref, "a.*")
        events.publish("a.x", 2)
        events.publish("b", 3)
        events.unsubscribe(ref)
        events.publish("b", 4)
        events.unsubscribe(ref, "never.subscribed")  # ignored
        await trio.testing.wait_all_tasks_blocked()
    assert got == [1, 3]


async def test_runtime_events_run_on_reserved_topics(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Fails(Actor):
        def receive(self, message: Any) -> None:
            raise ValueError("no")

    async with actors.open_system("reserved") as system:
        lifecycle = await _collector(system, "system.lifecycle.*")
        dead = await _collector(system, "system.deadletters")
        ref = system.spawn(Fails, name="f")
        ref.tell("boom")
        await trio.testing.wait_all_tasks_blocked()
        await system.graceful_stop(ref)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(ValueError, match="reserved"):
            system.events.publish("system.lifecycle.started", "fake")
    kinds = [type(e).__name__ for e in lifecycle if getattr(e, "ref", None) == ref]
    assert kinds == ["ActorStarted", "ActorFailed", "ActorRestarted", "ActorStopped"]
    assert [(d.message, d.reason) for d in dead] == [("boom", actors.DeadLetterReason.FAILED)]


@pytest.mark.parametrize(
    ("topic", "problem"),
    [("", "empty"), ("a..b", "empty"), ("a.*", "wildcard"), ("a.>", "wildcard")],
)
async def test_bad_topics_are_refused_with_a_clear_error(
    autojump_clock: trio.testing.MockClock, topic: str, problem: str
) -> None:
    async with actors.open_system("bad-topic") as system:
        with pytest.raises(ValueError, match=problem):
            system.events.publish(topic, "event")


async def test_bad_patterns_are_refused(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system("bad-pattern") as system:
        ref = system.spawn(Collector, [])
        with pytest.raises(ValueError, match=r"a\.>\.b"):
            system.events.subscribe(ref, "a.>.b")
        with pytest.raises(TypeError, match="topic pattern"):
            system.events.subscribe(ref, 42)  # type: ignore[arg-type]


async def test_a_slow_subscriber_follows_its_own_mailbox_policy(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("slow") as system:
        fast = await _collector(system, "feed")
        slow_got: list[Any] = []
        slow = system.spawn(
            Collector, slow_got, mailbox=Mailbox(capacity=2, overflow=Overflow.DROP_NEWEST)
        )
        system.events.subscribe(slow, "feed")
        dropped = await _collector(system, "system.deadletters")
        for n in range(5):  # none of these waits
            assert system.events.publish("feed", n) == 2
        await trio.testing.wait_all_tasks_blocked()
    assert fast == [0, 1, 2, 3, 4]
    assert slow_got == [0, 1]
    assert [d.message for d in dropped if d.recipient == slow] == [2, 3, 4]


async def test_send_waits_for_room_in_every_bounded_subscriber(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Slow(Actor):
        def __init__(self, into: list[Any]) -> None:
            self.into = into

        async def receive(self, message: Any) -> None:
            await trio.sleep(1.0)
            self.into.append(message)

    async with actors.open_system("backpressure") as system:
        got: list[Any] = []
        ref: ActorRef = system.spawn(Slow, got, mailbox=Mailbox(capacity=1))
        system.events.subscribe(ref, "work")
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        for n in range(4):
            await system.events.send("work", n)
        # 0 is being handled, 1 waits in the mailbox: 2 and 3 each waited a second.
        assert trio.current_time() - start == 2.0
        await trio.sleep(10)
    assert got == [0, 1, 2, 3]
