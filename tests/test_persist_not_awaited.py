"""A persist called without ``await`` stores nothing: the actor fails with
``PersistNotAwaited`` when the code that made the call returns, the asker gets that
error, and no "coroutine was never awaited" warning is left behind."""

from __future__ import annotations

import gc
import warnings
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
import supervision as sv
from actors import (
    ActorDead,
    ActorFailed,
    ActorRestarted,
    ActorStopped,
    DeadLetter,
)
from actors.persistence import (
    InMemoryJournal,
    Journal,
    Persistence,
    PersistentActor,
    PersistNotAwaited,
)


@attrs.frozen
class Deposited:
    amount: int


class Events(actors.Actor):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.append(message)


class Account(PersistentActor):
    persistence_id = "acct"

    def __init__(self) -> None:
        self.balance = 0

    def apply(self, event: Any) -> None:
        self.balance += event.amount

    def snapshot(self) -> Any:
        return self.balance

    def restore(self, state: Any) -> None:
        self.balance = state

    async def receive(self, message: Any) -> Any:
        match message:
            case ("deposit", amount):
                await self.persist(Deposited(amount))
            case ("forget", amount):
                self.persist(Deposited(amount))  # type: ignore[unused-coroutine]  # the bug: no await
            case ("forget-all", amounts):
                self.persist_all([Deposited(a) for a in amounts])  # type: ignore[unused-coroutine]
            case ("forget-twice", amount):
                self.persist(Deposited(amount))  # type: ignore[unused-coroutine]
                self.persist(Deposited(amount + 1))  # type: ignore[unused-coroutine]
            case "forget-defer":
                self.defer(lambda: None)  # type: ignore[unused-coroutine]
            case "forget-snapshot":
                self.save_snapshot()  # type: ignore[unused-coroutine]
            case ("forget-then-raise", amount):
                self.persist(Deposited(amount))  # type: ignore[unused-coroutine]
                raise ValueError("the handler's own error")
            case ("in-tasks", amounts):
                async with trio.open_nursery() as nursery:
                    for amount in amounts:
                        nursery.start_soon(self.persist, Deposited(amount))
            case "state":
                return self.balance, self.last_seq
        return self.balance


async def stored(journal: Journal) -> list[Any]:
    return [record.seq async for record in journal.replay("acct")]


def no_unawaited_warning() -> None:
    """Collect garbage and fail if a coroutine was left never awaited."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    assert [str(w.message) for w in caught if "never awaited" in str(w.message)] == []


async def test_an_unawaited_persist_fails_the_ask_and_the_actor() -> None:
    journal = InMemoryJournal()
    events: list[Any] = []
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        system.events.subscribe(system.spawn(Events, events), ActorRestarted)
        account = system.spawn(Account, name="acct")
        await account.ask(("deposit", 5))
        with pytest.raises(PersistNotAwaited) as caught:
            await account.ask(("forget", 10))
        assert str(caught.value) == (
            "persistent actor /user/acct (Account) called persist(Deposited(amount=10)) "
            "without await: the event was not stored; write `await self.persist(...)`"
        )
        # The actor failed too (not only the asker): it was restarted and recovered
        # what was really stored.
        assert await account.ask("state") == (5, 1)
        await trio.testing.wait_all_tasks_blocked()
        assert [event.error for event in events if event.ref == account] == [caught.value]
    assert await stored(journal) == [1]
    no_unawaited_warning()


async def test_a_told_message_fails_the_actor_and_becomes_a_dead_letter() -> None:
    journal = InMemoryJournal()
    failures: list[Any] = []
    letters: list[Any] = []
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        system.events.subscribe(system.spawn(Events, failures), ActorFailed)
        system.events.subscribe(system.spawn(Events, letters), DeadLetter)
        account = system.spawn(Account, name="acct")
        account.tell(("forget", 10))
        assert await account.ask("state") == (0, 0)
        await trio.testing.wait_all_tasks_blocked()
    [failure] = [f for f in failures if f.ref == account]
    assert isinstance(failure.error, PersistNotAwaited)
    assert "called persist(Deposited(amount=10)) without await" in str(failure.error)
    assert [(d.message, d.reason.value) for d in letters] == [(("forget", 10), "failed")]
    assert await stored(journal) == []
    no_unawaited_warning()


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (
            ("forget-all", [1, 2]),
            "called persist_all([Deposited(amount=1), Deposited(amount=2)]) without await: "
            "the events were not stored; write `await self.persist_all(...)`",
        ),
        ("forget-defer", "called defer(<function Account.receive.<locals>.<lambda> at "),
        (
            "forget-snapshot",
            "called save_snapshot() without await: no snapshot was saved; write "
            "`await self.save_snapshot(...)`",
        ),
        (
            ("forget-twice", 1),
            "called persist(Deposited(amount=1)) without await: the event was not stored "
            "(and 1 more call(s) not awaited); write `await self.persist(...)`",
        ),
    ],
)
async def test_every_persist_like_call_is_checked(command: Any, expected: str) -> None:
    journal = InMemoryJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(Account, name="acct")
        with pytest.raises(PersistNotAwaited) as caught:
            await account.ask(command)
        assert expected in str(caught.value)
        assert await account.ask("state") == (0, 0)
    assert await stored(journal) == []
    assert await journal.snapshots.load("acct") is None
    no_unawaited_warning()


async def test_the_handlers_own_error_goes_on_with_a_note() -> None:
    async with actors.open_system(extensions=[Persistence(InMemoryJournal())]) as system:
        account = system.spawn(Account, name="acct")
        with pytest.raises(ValueError, match="the handler's own error") as caught:
            await account.ask(("forget-then-raise", 3))
        assert caught.value.__notes__ == [
            "Also: persistent actor /user/acct (Account) called persist(Deposited(amount=3)) "
            "without await: the event was not stored; write `await self.persist(...)`"
        ]
    no_unawaited_warning()


async def test_persists_started_as_tasks_are_awaited_by_their_tasks() -> None:
    journal = InMemoryJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(Account, name="acct")
        assert await account.ask(("in-tasks", [1, 2, 3])) == 6
        assert await account.ask("state") == (6, 3)
    assert await stored(journal) == [1, 2, 3]


class Moody(Account):
    """Switches to ``careless`` with ``become``: that behaviour is checked too, sync
    ones as well as async ones."""

    async def receive(self, message: Any) -> Any:
        if message == "careless":
            self.context.become(self.careless, discard_old=False)
            return "careless now"
        return await super().receive(message)

    def careless(self, message: Any) -> Any:
        if message == "back":
            self.context.unbecome()
            return "back"
        self.persist(Deposited(message))  # type: ignore[unused-coroutine]  # a sync handler cannot await: a bug
        return "done"


async def test_behaviours_set_with_become_are_checked() -> None:
    journal = InMemoryJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(Moody, name="acct")
        await account.ask("careless")
        with pytest.raises(PersistNotAwaited, match=r"called persist\(Deposited\(amount=4\)\)"):
            await account.ask(4)
        # Restarted with receive; become and unbecome again keep the check.
        assert await account.ask("careless") == "careless now"
        assert await account.ask("back") == "back"
        with pytest.raises(PersistNotAwaited):
            await account.ask(("forget", 1))
        assert await account.ask(("deposit", 2)) == 2
    assert await stored(journal) == [1]
    no_unawaited_warning()


class CarelessRecovery(Account):
    def on_recovery_completed(self) -> None:
        self.persist(Deposited(1))  # type: ignore[unused-coroutine]


class CarelessStart(Account):
    async def pre_start(self) -> None:
        self.persist(Deposited(1))  # type: ignore[unused-coroutine]


@pytest.mark.parametrize("cls", [CarelessRecovery, CarelessStart])
async def test_unawaited_persists_of_start_hooks_fail_the_actor(
    cls: type[Account],
) -> None:
    journal = InMemoryJournal()
    stopped: list[Any] = []
    stop = sv.OneForOne(decider=lambda error: sv.Directive.STOP)
    async with actors.open_system(
        extensions=[Persistence(journal)], guardian_strategy=stop
    ) as system:
        system.events.subscribe(system.spawn(Events, stopped), ActorStopped)
        account = system.spawn(cls, name="acct")
        with pytest.raises(ActorDead):  # it fails before its first message
            await account.ask("state")
        await trio.testing.wait_all_tasks_blocked()
    [event] = [event for event in stopped if event.ref == account]
    error = event.error
    assert isinstance(error, PersistNotAwaited)
    assert str(error) == (
        f"persistent actor /user/acct ({cls.__qualname__}) called persist(Deposited("
        "amount=1)) without await: the event was not stored; write `await self.persist(...)`"
    )
    assert await stored(journal) == []
    no_unawaited_warning()


async def test_an_actor_spawned_from_a_factory_function_is_checked_in_receive() -> None:
    journal = InMemoryJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(lambda: Account(), name="acct")  # hides the class
        with pytest.raises(PersistNotAwaited):
            await account.ask(("forget", 1))
        assert await account.ask(("deposit", 2)) == 2
    assert await stored(journal) == [1]
    no_unawaited_warning()


class Busy(Account):
    async def receive(self, message: Any) -> Any:
        if message == "many":
            for _ in range(1000):
                await self.persist(Deposited(1))
            assert self._persistence is not None
            return len(self._persistence.pending)  # calls still registered, in the handler
        return await super().receive(message)


async def test_a_long_handler_keeps_the_list_of_calls_short() -> None:
    journal = InMemoryJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        account = system.spawn(Busy, name="acct")
        assert await account.ask("many") <= 256  # pruned of the calls already awaited
        assert await account.ask("state") == (1000, 1000)
        with pytest.raises(PersistNotAwaited):
            await account.ask(("forget", 1))
    assert len(await stored(journal)) == 1000
