"""The outbox on the in-memory journal and stream engine, on virtual time: commit order
and message ids, a failing publish backed off and retried with nothing skipped, restarts
from the stored offset, duplicates dropped when the offset save is lost (and stored
again once the duplicate window has passed), events that cannot be published, and bad
arguments."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from outbox_events import (
    DEAD_LETTERS,
    ORDERS,
    Order,
    Place,
    Placed,
    Shipping,
    by_pid,
    stored,
)

import actors
import supervision as sv
from actors import InvalidTopic
from actors.cluster import PickleCodec
from actors.persistence import InMemoryJournal, Persistence
from actors.projection import (
    GetStatus,
    InMemoryOffsetStore,
    JournalSource,
    Projection,
    ProjectionError,
    StreamSource,
    WaitCaughtUp,
)
from actors.streams import (
    InMemoryStreams,
    Outbox,
    StreamConfig,
    Streams,
    open_streams,
    spawn_outbox,
)

FAST = sv.Backoff(min_delay=1.0, max_delay=8.0, jitter=0.0)


@attrs.frozen
class Unlisted:
    """An event the safe codec of these tests does not know (not registered)."""

    note: str


@asynccontextmanager
async def running(
    journal: InMemoryJournal,
    engine: InMemoryStreams | None = None,
    *,
    orders: StreamConfig = ORDERS,
    **codec: Any,
) -> AsyncIterator[tuple[actors.ActorSystem, Streams]]:
    engine = InMemoryStreams() if engine is None else engine
    chosen = codec or {"codec": PickleCodec()}
    async with (
        actors.open_system("outbox", extensions=[Persistence(journal)], seed=1) as system,
        open_streams(
            system, engine, streams=[orders], dead_letters=DEAD_LETTERS, **chosen
        ) as streams,
    ):
        yield system, streams


async def commit_order(journal: InMemoryJournal) -> list[str]:
    return [f"{r.persistence_id}/{r.seq}" async for r in journal.events_by_tag("order")]


async def place(system: actors.ActorSystem, name: str, *items: str) -> None:
    """Order ``name`` persists one event per item, in one write (then stops)."""
    ref = system.spawn(Order, name)
    await ref.ask(Place(items))
    await system.graceful_stop(ref)


class ForgetfulOffsets(InMemoryOffsetStore):
    """An offset store whose next ``lose`` saves return without storing anything (as if
    the process had died right before the save), and whose next ``fail`` saves raise."""

    def __init__(self) -> None:
        super().__init__()
        self.lose = 0
        self.fail = 0

    async def save(self, name: str, key: str, offset: int) -> None:
        if self.fail:
            self.fail -= 1
            raise ProjectionError(f"the offset store is full (saving {offset})")
        if self.lose:
            self.lose -= 1
            await trio.lowlevel.checkpoint()
            return
        await super().save(name, key, offset)


# -- order and message ids ---------------------------------------------------------------


async def test_publishes_the_tag_in_commit_order_with_pid_seq_message_ids(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    offsets = InMemoryOffsetStore()
    async with running(journal) as (system, streams):
        a = system.spawn(Order, "a")
        b = system.spawn(Order, "b")
        await a.ask(Place(("apple", "pear")))
        await b.ask(Place(("fig",)))
        await a.ask(Placed("order-a", "plum"))
        await b.ask(Place(("kiwi", "lime")))
        outbox = Outbox(streams, subject=by_pid, offsets=offsets)
        ref = Projection("outbox", JournalSource("order"), outbox, batch_size=2).spawn(system)
        status = await ref.ask(WaitCaughtUp())
        await system.graceful_stop(ref)
        found = await stored(streams.engine)
        decode = streams.codec.decode_message
    expected = ["order-a/1", "order-a/2", "order-b/1", "order-a/3", "order-b/2", "order-b/3"]
    assert await commit_order(journal) == expected
    assert [msg_id for _, msg_id, _ in found] == expected
    assert [subject for subject, _, _ in found] == [
        f"orders.{msg_id.split('/')[0]}" for msg_id in expected
    ]
    assert [decode(data).item for _, _, data in found] == [
        "apple",
        "pear",
        "fig",
        "plum",
        "kiwi",
        "lime",
    ]
    assert (status.offset, status.lag, status.handled, status.state) == (6, 0, 6, "idle")
    assert await offsets.load("outbox", "order") == 6
    assert (outbox.published, outbox.duplicates) == (6, 0)


async def test_tails_the_journal_publishing_each_commit_as_it_comes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    async with running(journal) as (system, streams):
        ref = spawn_outbox(
            system, streams, "order", subject="orders.all", offsets=InMemoryOffsetStore()
        )
        await ref.ask(WaitCaughtUp())
        for name in ("x", "y", "z"):
            before = trio.current_time()
            await place(system, name, "cup")
            await ref.ask(WaitCaughtUp())
            assert trio.current_time() - before < 0.5  # woken by the commit, not polling
        found = await stored(streams.engine)
        await system.graceful_stop(ref)
    assert ref.path.endswith("/outbox-order")
    assert [(subject, msg_id) for subject, msg_id, _ in found] == [
        ("orders.all", "order-x/1"),
        ("orders.all", "order-y/1"),
        ("orders.all", "order-z/1"),
    ]


async def test_a_durable_subscriber_gets_each_event_with_its_message_id(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    handled: list[tuple[str | None, str]] = []
    done = trio.Event()
    async with running(journal) as (system, streams):
        ref = spawn_outbox(system, streams, "order", subject=by_pid, offsets=InMemoryOffsetStore())
        shipping = system.spawn(Shipping, handled, done, 3)
        await streams.subscribe(shipping, "orders.>", durable="shipping")
        await place(system, "a", "one", "two")
        await place(system, "b", "three")
        await done.wait()
        await system.graceful_stop(ref)
    assert handled == [("order-a/1", "one"), ("order-a/2", "two"), ("order-b/1", "three")]


# -- failures ----------------------------------------------------------------------------


async def test_a_failing_publish_is_backed_off_reported_and_retried_skipping_nothing(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    journal = InMemoryJournal()
    engine = InMemoryStreams()
    attempts: list[float] = []

    def subject(envelope: Any) -> str:
        if envelope.seq == 1:
            attempts.append(trio.current_time())
        return "orders.all"

    caplog.set_level(logging.WARNING, logger="actors.projection")
    async with running(journal, engine) as (system, streams):
        await place(system, "a", "tea", "jam", "bun")
        engine.fail_publishes(2)
        ref = spawn_outbox(
            system, streams, "order", subject=subject, offsets=InMemoryOffsetStore(), backoff=FAST
        )
        status = await ref.ask(WaitCaughtUp(), timeout=60)
        found = await stored(engine)
        await system.graceful_stop(ref)
    assert [b - attempts[0] for b in attempts] == [0.0, 1.0, 3.0]  # 1 s, then 2 s
    assert [msg_id for _, msg_id, _ in found] == ["order-a/1", "order-a/2", "order-a/3"]
    assert (status.offset, status.handled, status.failures, status.total_failures) == (3, 3, 0, 2)
    assert status.last_error == (
        "OutboxError: outbox 'outbox-order' could not publish its batch of 3 events "
        "(offsets 1..3): StreamError: publish to 'orders.all' failed: a fault injected by "
        "InMemoryStreams.fail_publishes; nothing was stored; the offset is not stored: it "
        "backs off and publishes the batch again (what the stream already holds is dropped "
        "as a duplicate)"
    )
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "could not publish its batch of 3 events" in warnings[0]


async def test_a_batch_that_failed_half_way_is_published_again_without_duplicates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    engine = InMemoryStreams()
    async with running(journal, engine) as (system, streams):
        await place(system, "a", "one", "two")
        await place(system, "b", "three")
        await place(system, "a", "four")
        engine.fail_publishes(1, subject="orders.order-b")  # the third event of the batch
        outbox = Outbox(streams, subject=by_pid, offsets=InMemoryOffsetStore())
        projection = Projection("outbox", JournalSource("order"), outbox, backoff=FAST)
        ref = projection.spawn(system)
        status = await ref.ask(WaitCaughtUp(), timeout=60)
        found = await stored(engine)
        await system.graceful_stop(ref)
    assert [msg_id for _, msg_id, _ in found] == [
        "order-a/1",
        "order-a/2",
        "order-b/1",
        "order-a/3",
    ]
    # The first attempt stored the first two (its acknowledgements lost in the failure),
    # the retry found them duplicates and stored the other two.
    assert (outbox.published, outbox.duplicates) == (2, 2)
    assert status.total_failures == 1


async def test_a_failing_offset_save_publishes_the_batch_again_as_duplicates(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    offsets = ForgetfulOffsets()
    offsets.fail = 1
    async with running(journal) as (system, streams):
        await place(system, "a", "one", "two", "three")
        outbox = Outbox(streams, subject=by_pid, offsets=offsets)
        ref = Projection("outbox", JournalSource("order"), outbox, backoff=FAST).spawn(system)
        status = await ref.ask(WaitCaughtUp(), timeout=60)
        found = await stored(streams.engine)
        await system.graceful_stop(ref)
    assert [msg_id for _, msg_id, _ in found] == ["order-a/1", "order-a/2", "order-a/3"]
    assert (outbox.published, outbox.duplicates) == (3, 3)
    assert status.last_error == "ProjectionError: the offset store is full (saving 3)"
    assert await offsets.load("outbox", "order") == 3


# -- restarts ----------------------------------------------------------------------------


async def test_a_new_outbox_resumes_after_the_stored_offset(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    offsets = InMemoryOffsetStore()
    async with running(journal) as (system, streams):
        await place(system, "a", "one", "two")
        first = Outbox(streams, subject=by_pid, offsets=offsets)
        ref = Projection("outbox", JournalSource("order"), first).spawn(system)
        await ref.ask(WaitCaughtUp())
        await system.graceful_stop(ref)
        await place(system, "b", "three")
        await place(system, "a", "four")
        second = Outbox(streams, subject=by_pid, offsets=offsets)
        ref = Projection("outbox", JournalSource("order"), second).spawn(system)
        status = await ref.ask(WaitCaughtUp())
        found = await stored(streams.engine)
        await system.graceful_stop(ref)
    assert (first.published, second.published, second.duplicates) == (2, 2, 0)
    assert [msg_id for _, msg_id, _ in found] == await commit_order(journal)
    assert status.offset == 4


async def test_a_lost_offset_save_is_made_good_by_the_streams_deduplication(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """As a crash after the publish and before the offset is stored: the restarted
    outbox publishes the events again, and the stream drops them."""
    journal = InMemoryJournal()
    offsets = ForgetfulOffsets()
    async with running(journal) as (system, streams):
        await place(system, "a", "one", "two", "three")
        offsets.lose = 1
        first = Outbox(streams, subject=by_pid, offsets=offsets)
        ref = Projection("outbox", JournalSource("order"), first).spawn(system)
        await ref.ask(WaitCaughtUp())
        await system.graceful_stop(ref)
        assert await offsets.load("outbox", "order") is None  # as if it had crashed
        await trio.sleep(100)  # a restart well within the duplicate window (120 s)
        await place(system, "b", "four")
        second = Outbox(streams, subject=by_pid, offsets=offsets)
        ref = Projection("outbox", JournalSource("order"), second).spawn(system)
        await ref.ask(WaitCaughtUp())
        found = await stored(streams.engine)
        await system.graceful_stop(ref)
    assert (first.published, second.published, second.duplicates) == (3, 1, 3)
    assert [msg_id for _, msg_id, _ in found] == [
        "order-a/1",
        "order-a/2",
        "order-a/3",
        "order-b/1",
    ]


async def test_beyond_the_duplicate_window_a_republished_event_is_stored_again(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The documented limit: the stream remembers message ids for its duplicate window
    only; consumers must be idempotent by message id for a restart later than that."""
    journal = InMemoryJournal()
    offsets = ForgetfulOffsets()
    orders = attrs.evolve(ORDERS, duplicate_window=60.0)
    async with running(journal, orders=orders) as (system, streams):
        await place(system, "a", "one", "two")
        offsets.lose = 1
        ref = spawn_outbox(system, streams, "order", subject=by_pid, offsets=offsets)
        await ref.ask(WaitCaughtUp())
        await system.graceful_stop(ref)
        await trio.sleep(61)
        second = Outbox(streams, subject=by_pid, offsets=offsets)
        ref = Projection("outbox-order", JournalSource("order"), second).spawn(system)
        await ref.ask(WaitCaughtUp())
        found = await stored(streams.engine)
        await system.graceful_stop(ref)
    assert (second.published, second.duplicates) == (2, 0)
    assert [msg_id for _, msg_id, _ in found] == [
        "order-a/1",
        "order-a/2",
        "order-a/1",
        "order-a/2",
    ]


# -- events that cannot be published -----------------------------------------------------


async def test_an_unencodable_event_stops_the_outbox_before_it_reported_never_skipped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    async with running(journal, types=[Placed]) as (system, streams):
        order = system.spawn(Order, "a")
        await order.ask(Placed("order-a", "one"))
        await order.ask(Unlisted("not registered"))
        await order.ask(Placed("order-a", "three"))
        outbox = Outbox(streams, subject=by_pid, offsets=InMemoryOffsetStore())
        ref = Projection("outbox", JournalSource("order"), outbox, backoff=FAST).spawn(system)
        await trio.sleep(20)
        status = await ref.ask(GetStatus())
        found = await stored(streams.engine)
        await system.graceful_stop(ref)
    assert [msg_id for _, msg_id, _ in found] == ["order-a/1"]  # the one before it, once
    assert outbox.published == 1
    assert outbox.duplicates == status.total_failures - 1 >= 3  # republished at each retry
    assert (status.state, status.offset, status.lag, status.handled) == ("backing_off", 0, 3, 0)
    assert status.last_error is not None
    assert status.last_error.startswith(
        "UnpublishableEvent: outbox 'outbox' cannot publish event 'order-a' seq 2 (offset 2): "
        "event of type test_outbox.Unlisted published on 'orders.order-a' cannot be encoded by"
    )
    assert status.last_error.endswith(
        "the events before it are published, and the outbox retries from it with backoff, "
        "never skipping it: fix the codec and restart the outbox"
    )


@pytest.mark.parametrize(
    ("subject", "problem"),
    [
        (lambda envelope: "orders.no spaces", "InvalidTopic: "),
        (lambda envelope: 1 / 0, "ZeroDivisionError: division by zero"),
    ],
    ids=["not-a-topic", "raises"],
)
async def test_a_subject_function_that_fails_stops_the_outbox_naming_the_event(
    subject: Any, problem: str, autojump_clock: trio.testing.MockClock
) -> None:
    journal = InMemoryJournal()
    async with running(journal) as (system, streams):
        await place(system, "a", "one")
        outbox = Outbox(streams, subject=subject, offsets=InMemoryOffsetStore())
        ref = Projection("outbox", JournalSource("order"), outbox, backoff=FAST).spawn(system)
        await trio.sleep(5)
        status = await ref.ask(GetStatus())
        found = await stored(streams.engine)
        await system.graceful_stop(ref)
    assert found == []
    assert status.failures >= 2
    assert status.last_error is not None
    assert status.last_error.startswith(
        "UnpublishableEvent: outbox 'outbox' cannot choose the subject of event 'order-a' "
        "seq 1 (offset 1): its subject function "
    )
    assert f"failed with {problem}" in status.last_error
    assert status.last_error.endswith("and restart the outbox: the event is not skipped")


async def test_an_event_with_no_persistence_id_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    engine = InMemoryStreams()
    other = StreamConfig("OTHER", ["other.>"])
    async with running(journal, engine) as (system, streams):
        await engine.add_stream(other)
        await streams.engine.publish("other.x", streams.codec.encode_message(Placed("o", "i")))
        outbox = Outbox(streams, subject="orders.all", offsets=InMemoryOffsetStore())
        source = StreamSource(engine, "OTHER", codec=streams.codec)
        ref = Projection("outbox", source, outbox, backoff=FAST).spawn(system)
        await trio.sleep(3)
        status = await ref.ask(GetStatus())
        await system.graceful_stop(ref)
    assert status.last_error == (
        "UnpublishableEvent: outbox 'outbox' got an event with no persistence id (offset 1, "
        "subject 'other.x'): an outbox publishes the events of a journal; give its "
        "projection a JournalSource"
    )


# -- bad arguments -----------------------------------------------------------------------


async def test_bad_arguments_are_refused_with_the_fix(
    autojump_clock: trio.testing.MockClock,
) -> None:
    offsets = InMemoryOffsetStore()
    with pytest.raises(TypeError, match="Outbox needs the Streams of an open_streams block"):
        Outbox(InMemoryStreams(), subject="orders.x", offsets=offsets)  # type: ignore[arg-type]
    async with running(InMemoryJournal()) as (system, streams):
        with pytest.raises(InvalidTopic):
            Outbox(streams, subject="orders.>", offsets=offsets)
        with pytest.raises(TypeError, match="subject must be a topic"):
            Outbox(streams, subject=7, offsets=offsets)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"offsets must be an OffsetStore \(Sqlite"):
            Outbox(streams, subject="orders.x", offsets={})  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="tag must be a non-empty str"):
            spawn_outbox(system, streams, "", subject="orders.x", offsets=offsets)
