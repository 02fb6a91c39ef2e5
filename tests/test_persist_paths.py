"""``persist`` (one event) and ``persist_all`` (a batch) take different code paths (the
single one keeps fewer objects alive while its write is in flight): the same outcomes
through both, for what the other test files exercise through one of them only."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
from actors import ActorFailed
from actors.persistence import (
    InMemoryJournal,
    JournalFailure,
    Persistence,
    PersistentActor,
    PersistentRecord,
)


@attrs.frozen
class Added:
    n: int


@attrs.define
class BrokenJournal(InMemoryJournal):
    """An in-memory journal whose next ``write`` raises ``error`` (not a journal error:
    a bug of the journal, as the runtime sees it); or waits for ``released`` when
    ``hold`` is set."""

    error: BaseException | None = None
    hold: bool = False
    released: trio.Event = attrs.Factory(trio.Event)

    def __attrs_post_init__(self) -> None:
        InMemoryJournal.__init__(self)

    async def write(self, batch: Sequence[PersistentRecord]) -> list[int]:
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        if self.hold:
            await self.released.wait()
        return await super().write(batch)


class Counter(PersistentActor):
    persistence_id = "counter"

    def __init__(self) -> None:
        self.total = 0

    def apply(self, event: Any) -> None:
        self.total += event.n

    def tags_for(self, event: Any) -> Any:
        return ["odd"] if event.n % 2 else []

    async def receive(self, message: Any) -> Any:
        match message:
            case ("one", n, tags):
                return await self.persist(Added(n), tags=tags)
            case ("all", n, tags):
                return await self.persist_all([Added(n)], tags=tags)
            case ("queue-behind", n):
                return await self._queue_behind(n)
            case "state":
                return (self.total, self.last_seq)
        self.unhandled(message)
        return None

    async def _queue_behind(self, n: int) -> Any:
        # Two persists from tasks of the handler: the second waits for the first's turn
        # and gives up (cancelled) before it comes.
        outcomes: list[Any] = []

        async def first() -> None:
            outcomes.append(await self.persist(Added(n)))

        async def second() -> None:
            with trio.move_on_after(1) as scope:
                await self.persist(Added(100 * n))
            outcomes.append("gave up" if scope.cancelled_caught else "stored")

        async with trio.open_nursery() as nursery:
            nursery.start_soon(first)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(second)
        return outcomes


PATHS = ["one", "all"]


@pytest.mark.parametrize("path", PATHS)
async def test_a_journal_raising_an_unexpected_error_is_a_failure_naming_it(
    path: str, autojump_clock: trio.testing.MockClock
) -> None:
    journal = BrokenJournal()
    failures: list[ActorFailed] = []
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        system.events.subscribe(system.spawn(_Collect, failures), ActorFailed)
        counter = system.spawn(Counter)
        assert await counter.ask((path, 1, None)) == 1
        journal.error = RuntimeError("disk on fire")
        with pytest.raises(JournalFailure) as caught:
            await counter.ask((path, 2, None))
        message = str(caught.value)
        assert "the journal raised RuntimeError('disk on fire') writing seq 2..2" in message
        assert isinstance(caught.value.__cause__, RuntimeError)
        # The actor failed and was restarted: it recovered what was stored, and goes on.
        assert await counter.ask("state") == (1, 1)
        assert await counter.ask((path, 3, None)) == 2
    [failure] = failures
    assert isinstance(failure.error, JournalFailure)
    assert [r.seq async for r in journal.replay("counter")] == [1, 2]


@pytest.mark.parametrize("path", PATHS)
async def test_tags_given_or_from_tags_for_are_stored(path: str) -> None:
    journal = InMemoryJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        counter = system.spawn(Counter)
        await counter.ask((path, 1, None))  # tags_for: ["odd"]
        await counter.ask((path, 2, None))  # tags_for: []
        await counter.ask((path, 3, []))  # given: none
        await counter.ask((path, 4, ["b", "a", "b"]))
        await counter.ask((path, 5, iter(["g"])))  # any iterable
    tags = [r.tags async for r in journal.replay("counter")]
    assert tags == [
        frozenset({"odd"}),
        frozenset(),
        frozenset(),
        frozenset({"a", "b"}),
        frozenset({"g"}),
    ]
    assert [r.seq async for r in journal.events_by_tag("odd")] == [1]


async def test_a_persist_cancelled_while_waiting_for_its_turn_stores_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = BrokenJournal(hold=True)
    failures: list[ActorFailed] = []
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        system.events.subscribe(system.spawn(_Collect, failures), ActorFailed)
        counter = system.spawn(Counter)
        async with trio.open_nursery() as nursery:

            async def release_later() -> None:
                await trio.sleep(3)  # after the second persist gave up (at 1 s)
                journal.released.set()

            nursery.start_soon(release_later)
            assert await counter.ask(("queue-behind", 7), timeout=30) == ["gave up", 1]
        # Not a failure (nothing was written for it), and the turn is free again.
        assert await counter.ask(("one", 2, None)) == 2
        assert await counter.ask("state") == (9, 2)
    assert failures == []
    assert [r.seq async for r in journal.replay("counter")] == [1, 2]


class _Collect(actors.Actor):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.append(message)
