"""Projections on the in-memory journal, on virtual time: order and batches, tailing
(woken by commits, or polling), backoff and reporting of failures, undecodable events,
restarts from the stored offset, rebuilds, lag and status, and bad arguments."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest
import trio
import trio.testing
from projection_events import SERIALIZATION, Sold, record, write_sales

import actors
import supervision as sv
from actors import ActorFailed
from actors.persistence import InMemoryJournal, Persistence, PersistentActor, PersistentRecord
from actors.projection import (
    AtLeastOnce,
    Envelope,
    GetStatus,
    InMemoryOffsetStore,
    JournalSource,
    Projection,
    ProjectionActor,
    ProjectionError,
    ProjectionFailed,
    ProjectionStatus,
    Rebuild,
    UndecodableEvent,
    WaitCaughtUp,
)
from actors.testing import TestProbe
from actors.testing.journal import FaultyJournal


class Collector:
    """An at-least-once handler that keeps what it was given, failing while
    ``failing`` says so (with ``ValueError("boom N")``, N counting the failures)."""

    def __init__(self) -> None:
        self.batches: list[list[Envelope]] = []
        self.calls: list[float] = []
        self.failing = 0  # fail the next N calls
        self.failed = 0
        self.arrived = trio.Event()

    async def __call__(self, envelopes: list[Envelope]) -> None:
        self.calls.append(trio.current_time())
        await trio.lowlevel.checkpoint()
        if self.failing:
            self.failing -= 1
            self.failed += 1
            raise ValueError(f"boom {self.failed}")
        self.batches.append(envelopes)
        self.arrived.set()

    @property
    def events(self) -> list[tuple[str, int]]:
        return [(e.persistence_id, e.seq) for batch in self.batches for e in batch]


@pytest.fixture
def journal() -> InMemoryJournal:
    return InMemoryJournal()


def system_with(journal: Any, seed: int = 1) -> Any:
    return actors.open_system("projections", extensions=[Persistence(journal)], seed=seed)


# -- reading -----------------------------------------------------------------------------


async def test_reads_a_tag_in_commit_order_in_batches(
    journal: InMemoryJournal, autojump_clock: trio.testing.MockClock
) -> None:
    await write_sales(journal, "a", 1, 3)
    await write_sales(journal, "b", 1, 2, tags=("other",))
    await write_sales(journal, "b", 3, 4)
    offsets = await write_sales(journal, "a", 4, 5)
    collect = Collector()
    async with system_with(journal) as system:
        ref = Projection("sales", JournalSource("sale"), AtLeastOnce(collect), batch_size=2).spawn(
            system
        )
        status = await ref.ask(WaitCaughtUp())
    assert [[(e.persistence_id, e.seq) for e in batch] for batch in collect.batches] == [
        [("a", 1), ("a", 2)],
        [("a", 3), ("b", 3)],
        [("b", 4), ("a", 4)],
        [("a", 5)],
    ]
    stored = [r async for r in journal.events_by_tag("sale")]
    envelopes = [e for batch in collect.batches for e in batch]
    for envelope, written in zip(envelopes, stored, strict=True):
        assert envelope.offset == written.offset
        assert envelope.timestamp == written.timestamp
        assert envelope.tags == frozenset({"sale"})
        assert envelope.event == Sold(written.persistence_id, written.seq)
        assert envelope.subject == ""
    assert status == ProjectionStatus(
        name="sales",
        key="sale",
        state="idle",
        offset=offsets[-1],
        lag=0,
        handled=7,
        skipped=0,
        failures=0,
        total_failures=0,
        last_error=None,
        retry_in=None,
    )


class Shop(PersistentActor):
    """Persists ``Sold`` events tagged ``sale`` (the usual way events reach a tag)."""

    def __init__(self, name: str) -> None:
        self.persistence_id = f"shop-{name}"

    def apply(self, event: Any) -> None:
        pass

    def tags_for(self, event: Any) -> set[str]:
        return {"sale"}

    async def receive(self, message: Any) -> Any:
        await self.persist(Sold(self.persistence_id, message))
        return self.last_seq


async def test_tails_the_journal_and_wakes_at_its_commits(
    journal: InMemoryJournal, autojump_clock: trio.testing.MockClock
) -> None:
    collect = Collector()
    projection = Projection(
        "sales", JournalSource("sale"), AtLeastOnce(collect), poll_interval=600.0
    )
    async with system_with(journal) as system:
        ref = projection.spawn(system)
        await ref.ask(WaitCaughtUp())
        shop = system.spawn(Shop, "north")
        for amount in (5, 7):
            collect.arrived = trio.Event()
            before = trio.current_time()
            await shop.ask(amount)
            with trio.fail_after(60):  # far less than the poll interval
                await collect.arrived.wait()
            assert trio.current_time() - before < 1.0
    assert [e.event.amount for batch in collect.batches for e in batch] == [5, 7]


class Blind(FaultyJournal):
    """A journal that never says when it commits: its readers must poll."""

    async def wait_for_commit(self) -> None:
        await trio.sleep_forever()


async def test_polls_at_its_interval_when_the_journal_does_not_wake_it(
    journal: InMemoryJournal, autojump_clock: trio.testing.MockClock
) -> None:
    collect = Collector()
    blind = Blind(journal)
    projection = Projection(
        "sales", JournalSource("sale", blind), AtLeastOnce(collect), poll_interval=30.0
    )
    async with system_with(journal) as system:
        ref = projection.spawn(system)
        await ref.ask(WaitCaughtUp())
        await trio.testing.wait_all_tasks_blocked()
        before = trio.current_time()
        await write_sales(journal, "a", 1, 1)
        await collect.arrived.wait()
        assert trio.current_time() - before == pytest.approx(30.0, abs=1e-6)
    assert collect.events == [("a", 1)]


# -- failures ----------------------------------------------------------------------------


async def test_a_failing_handler_is_backed_off_with_seeded_jitter_and_reported(
    journal: InMemoryJournal,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await write_sales(journal, "a", 1, 3)
    collect = Collector()
    collect.failing = 4
    backoff = sv.Backoff(min_delay=1.0, max_delay=4.0, jitter=0.5)
    projection = Projection(
        "sales", JournalSource("sale"), AtLeastOnce(collect), backoff=backoff, seed=7
    )
    caplog.set_level(logging.WARNING, logger="actors.projection")
    async with system_with(journal) as system:
        ref = projection.spawn(system)
        status = await ref.ask(WaitCaughtUp(), timeout=100)
    expected = sv.BackoffState(backoff, random.Random(7))
    delays = [expected.next_delay(0.0) for _ in range(4)]
    waits = [
        later - earlier for earlier, later in zip(collect.calls, collect.calls[1:], strict=False)
    ]
    assert waits == pytest.approx(delays)
    assert collect.events == [("a", 1), ("a", 2), ("a", 3)]  # all at once, after the failures
    assert (status.failures, status.total_failures, status.handled) == (0, 4, 3)
    assert status.last_error == "ValueError: boom 4"
    warnings = [r for r in caplog.records if r.name == "actors.projection"]
    assert [r.levelno for r in warnings] == [logging.WARNING] * 4
    assert warnings[0].getMessage() == (
        "projection 'sales' (key 'sale') failed after offset 0 (failure 1 in a row): "
        f"ValueError: boom 1; retrying in {delays[0]:.3g} s"
    )
    assert warnings[0].exc_info is not None  # the first of a series has the traceback
    assert all(r.exc_info is None for r in warnings[1:])


async def test_a_projection_that_keeps_failing_is_never_spun_and_answers_meanwhile(
    journal: InMemoryJournal, autojump_clock: trio.testing.MockClock
) -> None:
    offsets = await write_sales(journal, "a", 1, 3)
    collect = Collector()
    collect.failing = 10**6
    backoff = sv.Backoff(min_delay=1.0, max_delay=8.0, jitter=0.0)
    projection = Projection("sales", JournalSource("sale"), AtLeastOnce(collect), backoff=backoff)
    async with system_with(journal) as system:
        ref = projection.spawn(system)
        await trio.sleep(0.5)  # the first attempt failed at 0, the next is at 1
        status = await ref.ask(GetStatus())
        assert trio.current_time() == pytest.approx(0.5)  # answered at once
        assert status.state == "backing_off"
        assert (status.offset, status.lag) == (0, offsets[-1])
        assert (status.failures, status.last_error) == (1, "ValueError: boom 1")
        assert status.retry_in == pytest.approx(0.5)
        await trio.sleep(100)
    # attempts at 0, 1, 3, 7, 15, then every 8 s: 23, 31, ..., 95
    assert collect.calls == pytest.approx([0, 1, 3, 7, 15, *range(23, 100, 8)])


class StopOnFailure(actors.Actor):
    """Runs a projection as its child and stops it when it fails."""

    supervisor_strategy = sv.OneForOne(decider=lambda error: sv.Directive.STOP)

    def __init__(self, projection: Projection) -> None:
        self.child = projection.spawn(self.context)

    def receive(self, message: Any) -> Any:
        return self.child


async def test_a_projection_gives_up_after_max_restarts_and_its_supervisor_decides(
    journal: InMemoryJournal,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await write_sales(journal, "a", 1, 1)
    collect = Collector()
    collect.failing = 10**6
    backoff = sv.Backoff(min_delay=1.0, max_delay=1.0, jitter=0.0, max_restarts=2)
    projection = Projection("sales", JournalSource("sale"), AtLeastOnce(collect), backoff=backoff)
    async with system_with(journal) as system:
        probe = TestProbe(system).subscribe(ActorFailed)
        parent = system.spawn(StopOnFailure, projection, name="parent")
        child = await parent.ask("child")
        probe.watch(child)
        failed = await probe.expect_message(ActorFailed, timeout=10)
        await probe.expect_terminated(child)
    assert len(collect.calls) == 3
    error = failed.error
    assert isinstance(error, ProjectionFailed)
    assert str(error) == (
        "projection 'sales' (key 'sale') gave up after 3 consecutive failures at offset 0 "
        "(backoff max_restarts=2); the last: ValueError: boom 3"
    )
    assert isinstance(error.__cause__, ValueError)
    errors = [
        r for r in caplog.records if r.levelno == logging.ERROR and r.name == "actors.projection"
    ]
    assert len(errors) == 1


async def test_an_undecodable_event_fails_the_projection_naming_it(
    journal: InMemoryJournal, autojump_clock: trio.testing.MockClock
) -> None:
    await write_sales(journal, "a", 1, 1)
    _, manifest, payload = SERIALIZATION.serialize(Sold("a", 2))
    bad = PersistentRecord("a", 2, "nope", manifest, payload, tags=frozenset({"sale"}))
    (bad_offset,) = await journal.write([bad])
    await write_sales(journal, "a", 3, 3)
    collect = Collector()
    backoff = sv.Backoff(min_delay=1.0, max_delay=1.0, jitter=0.0)
    projection = Projection("sales", JournalSource("sale"), AtLeastOnce(collect), backoff=backoff)
    async with system_with(journal) as system:
        ref = projection.spawn(system)
        await trio.sleep(2.5)
        status = await ref.ask(GetStatus())
    assert collect.events == [("a", 1)]  # the events before it, and none after
    assert status.offset == bad_offset - 1
    assert (status.state, status.failures) == ("backing_off", 3)
    assert status.last_error == (
        f"UndecodableEvent: projection 'sales' cannot decode event 'a' seq 2 (offset "
        f"{bad_offset}) of tag 'sale': RecordUndecodable: cannot decode a record with manifest "
        f"'{manifest}': no serializer with id 'nope' is registered (registered: cloudpickle, "
        "pickle)"
    )


async def test_undecodable_events_can_be_skipped_and_are_counted(
    journal: InMemoryJournal,
    autojump_clock: trio.testing.MockClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await write_sales(journal, "a", 1, 1)
    garbled = PersistentRecord("a", 2, "pickle", "x.Y", b"not a pickle", tags=frozenset({"sale"}))
    (bad_offset,) = await journal.write([garbled])
    await write_sales(journal, "a", 3, 3)
    collect = Collector()
    projection = Projection(
        "sales", JournalSource("sale"), AtLeastOnce(collect), on_undecodable="skip"
    )
    async with system_with(journal) as system:
        status = await projection.spawn(system).ask(WaitCaughtUp())
    assert collect.events == [("a", 1), ("a", 3)]
    assert (status.handled, status.skipped, status.failures) == (2, 1, 0)
    (warning,) = [r for r in caplog.records if r.name == "actors.projection"]
    assert warning.getMessage().startswith(
        f"projection 'sales' cannot decode event 'a' seq 2 (offset {bad_offset}) of tag 'sale': "
        "RecordUndecodable"
    )
    assert warning.getMessage().endswith("; skipped (on_undecodable='skip')")


async def test_upcast_is_applied_to_each_event(
    journal: InMemoryJournal, autojump_clock: trio.testing.MockClock
) -> None:
    await write_sales(journal, "a", 1, 2)
    collect = Collector()
    manifests: list[str] = []

    def upcast(event: Any, manifest: str) -> Any:
        manifests.append(manifest)
        return Sold(event.item.upper(), event.amount * 10)

    source = JournalSource("sale", upcast=upcast)
    async with system_with(journal) as system:
        await Projection("p", source, AtLeastOnce(collect)).spawn(system).ask(WaitCaughtUp())
    assert [e.event for b in collect.batches for e in b] == [Sold("A", 10), Sold("A", 20)]
    assert manifests == ["projection_events.Sold"] * 2


# -- offsets: restarts and rebuilds ------------------------------------------------------


async def test_a_new_projection_actor_resumes_from_the_stored_offset(
    journal: InMemoryJournal, autojump_clock: trio.testing.MockClock
) -> None:
    await write_sales(journal, "a", 1, 3)
    offsets = InMemoryOffsetStore()
    first, second = Collector(), Collector()
    async with system_with(journal) as system:
        ref = Projection("sales", JournalSource("sale"), AtLeastOnce(first, offsets=offsets)).spawn(
            system
        )
        await ref.ask(WaitCaughtUp())
    await write_sales(journal, "a", 4, 5)
    async with system_with(journal) as system:
        projection = Projection(
            "sales", JournalSource("sale"), AtLeastOnce(second, offsets=offsets)
        )
        status = await projection.spawn(system).ask(WaitCaughtUp())
    assert first.events == [("a", 1), ("a", 2), ("a", 3)]
    assert second.events == [("a", 4), ("a", 5)]
    assert status.offset == await offsets.load("sales", "sale") == 5


async def test_a_restart_by_the_supervisor_resumes_from_the_stored_offset(
    journal: InMemoryJournal, autojump_clock: trio.testing.MockClock
) -> None:
    await write_sales(journal, "a", 1, 2)
    collect = Collector()
    async with system_with(journal) as system:
        probe = TestProbe(system).subscribe(actors.ActorRestarted)
        ref = Projection("sales", JournalSource("sale"), AtLeastOnce(collect)).spawn(system)
        await ref.ask(WaitCaughtUp())
        ref.tell(actors.Kill)
        await probe.expect_message(actors.ActorRestarted)
        await write_sales(journal, "a", 3, 3)
        status = await ref.ask(WaitCaughtUp())
    assert collect.events == [("a", 1), ("a", 2), ("a", 3)]  # nothing handled twice
    assert (status.offset, status.handled) == (3, 1)  # counted by this incarnation


async def test_at_least_once_hands_a_failed_batch_over_again(
    journal: InMemoryJournal, autojump_clock: trio.testing.MockClock
) -> None:
    await write_sales(journal, "a", 1, 2)
    seen: list[int] = []
    failures = [ValueError("after the effect")]

    async def handle(envelopes: list[Envelope]) -> None:
        seen.extend(e.seq for e in envelopes)
        if failures:
            raise failures.pop()

    async with system_with(journal) as system:
        projection = Projection("sales", JournalSource("sale"), AtLeastOnce(handle))
        status = await projection.spawn(system).ask(WaitCaughtUp(), timeout=60)
    assert seen == [1, 2, 1, 2]  # at least once: the effect of the failed call is repeated
    assert (status.offset, status.total_failures) == (2, 1)


async def test_rebuild_resets_the_read_model_and_reads_from_the_first_event(
    journal: InMemoryJournal, autojump_clock: trio.testing.MockClock
) -> None:
    await write_sales(journal, "a", 1, 3)
    totals: dict[str, int] = {}
    resets: list[dict[str, int]] = []

    def handle(envelopes: list[Envelope]) -> None:  # a plain function works too
        for e in envelopes:
            totals[e.event.item] = totals.get(e.event.item, 0) + e.event.amount

    def reset() -> None:
        resets.append(dict(totals))
        totals.clear()

    offsets = InMemoryOffsetStore()
    handler = AtLeastOnce(handle, offsets=offsets, reset=reset)
    async with system_with(journal) as system:
        ref = Projection("sales", JournalSource("sale"), handler).spawn(system)
        await ref.ask(WaitCaughtUp())
        assert totals == {"a": 6}
        assert await ref.ask(Rebuild()) is None
        assert await offsets.load("sales", "sale") is None
        status = await ref.ask(WaitCaughtUp())
    assert resets == [{"a": 6}]
    assert totals == {"a": 6}
    assert (status.offset, status.handled) == (3, 6)


async def test_two_keys_of_one_projection_keep_their_own_offsets(
    journal: InMemoryJournal, autojump_clock: trio.testing.MockClock
) -> None:
    await write_sales(journal, "a", 1, 2, tags=("sale", "eu"))
    await write_sales(journal, "b", 1, 1, tags=("us",))
    offsets = InMemoryOffsetStore()
    eu, us = Collector(), Collector()
    async with system_with(journal) as system:
        for tag, collect in (("eu", eu), ("us", us)):
            handler = AtLeastOnce(collect, offsets=offsets)
            projection = Projection("regions", JournalSource(tag), handler)
            await projection.spawn(system, name=f"regions-{tag}").ask(WaitCaughtUp())
    assert (eu.events, us.events) == ([("a", 1), ("a", 2)], [("b", 1)])
    assert await offsets.load("regions", "eu") == 2
    assert await offsets.load("regions", "us") == 3


# -- lag and the journal's newest offset -------------------------------------------------


async def test_lag_is_the_distance_to_the_newest_offset_of_the_tag(
    journal: InMemoryJournal, autojump_clock: trio.testing.MockClock
) -> None:
    await write_sales(journal, "a", 1, 2)
    collect = Collector()
    projection = Projection("sales", JournalSource("sale"), AtLeastOnce(collect))
    async with system_with(journal) as system:
        ref = projection.spawn(system)
        assert (await ref.ask(WaitCaughtUp())).lag == 0
        collect.failing = 10**6  # from now on it stays behind
        await write_sales(journal, "a", 3, 4)
        await trio.sleep(1)
        assert (await ref.ask(GetStatus())).lag == 2
        await write_sales(journal, "b", 1, 3, tags=("other",))  # offsets 5..7
        assert (await ref.ask(GetStatus())).lag == 2  # other tags do not count...
        await write_sales(journal, "a", 5, 5)  # offset 8
        status = await ref.ask(GetStatus())
        assert (status.offset, status.lag) == (2, 6)  # ... but they take offsets


# -- the journal source without a journal, and bad arguments -----------------------------


async def test_a_journal_source_takes_the_systems_journal_or_says_what_is_missing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("bare") as system:
        probe = TestProbe(system).subscribe(ActorFailed)
        ref = Projection("sales", JournalSource("sale"), AtLeastOnce(Collector())).spawn(system)
        probe.watch(ref)
        failed = await probe.expect_message(ActorFailed)
    cause = failed.error.__cause__
    assert isinstance(cause, ProjectionError)
    assert str(cause) == (
        "projection 'sales' reads tag 'sale' from no journal: give one "
        "(JournalSource(tag, journal)) or configure the system's "
        "(open_system(extensions=[Persistence(journal)]))"
    )


def test_bad_arguments_are_refused_naming_them() -> None:
    source, handler = JournalSource("t"), AtLeastOnce(Collector())
    with pytest.raises(ValueError, match="name must be a non-empty str, got ''"):
        Projection("", source, handler)
    with pytest.raises(TypeError, match="source must be a ProjectionSource"):
        Projection("p", "t", handler)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="handler must be a ProjectionHandler"):
        Projection("p", source, print)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        Projection("p", source, handler, batch_size=0)
    with pytest.raises(ValueError, match="poll_interval must be a number of seconds > 0"):
        Projection("p", source, handler, poll_interval=0)
    with pytest.raises(ValueError, match='on_undecodable must be "fail" or "skip"'):
        Projection("p", source, handler, on_undecodable="ignore")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tag must be a non-empty str"):
        JournalSource("")
    with pytest.raises(TypeError, match="journal must be a Journal"):
        JournalSource("t", "journal.db")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="handle must be a callable"):
        AtLeastOnce(None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="offsets must be an OffsetStore"):
        AtLeastOnce(Collector(), offsets={})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="ProjectionActor takes a Projection"):
        ProjectionActor.__init__(object.__new__(ProjectionActor), "p")  # type: ignore[arg-type]


def test_the_status_and_messages_pickle() -> None:
    import pickle

    status = ProjectionStatus("p", "k", "idle", 3, 0, 3, 0, 0, 0, None, None)
    assert pickle.loads(pickle.dumps(status)) == status
    for message in (GetStatus(), Rebuild(), WaitCaughtUp()):
        assert pickle.loads(pickle.dumps(message)) == message
    error = UndecodableEvent("x")
    assert str(pickle.loads(pickle.dumps(error))) == "x"
    assert record("a", 1, Sold("a", 1)).tags == frozenset({"sale"})
