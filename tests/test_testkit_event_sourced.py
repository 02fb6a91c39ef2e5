"""The event-sourced testkit on a small bank account: the events, reply and state of each
command, rejections, recovery after a restart, journal failures, and the serialization
round trip of commands, events and states."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
import supervision as sv
from actors.persistence import (
    EventRejected,
    InMemoryJournal,
    JournalFailure,
    Persistence,
    PersistentActor,
)
from actors.testing._event_sourced import (
    CommandResult,
    EventSourcedTestKit,
    SerializationCheckFailed,
    event_sourced_testkit,
)
from actors.testing.journal import FaultyJournal, fail_next, reject_next

# -- the account: commands, events, replies --------------------------------------------------


@attrs.frozen
class Deposit:
    amount: int


@attrs.frozen
class Withdraw:
    amount: int


@attrs.frozen
class Transfer:
    amount: int
    fee: int


@attrs.frozen
class Deposited:
    amount: int


@attrs.frozen
class Withdrawn:
    amount: int


@attrs.frozen
class Lossy:
    """An event whose pickle loses its amount: it does not survive the round trip."""

    amount: int

    def __reduce__(self) -> tuple[Any, ...]:
        return (Lossy, (0,))


@attrs.frozen
class Balance:
    amount: int


@attrs.frozen
class Refused:
    reason: str


class BankAccount(PersistentActor):
    def __init__(self, owner: str) -> None:
        self.persistence_id = f"account-{owner}"
        self.balance = 0
        self.starts = 0
        self.ledger: list[Any] = []

    def apply(self, event: Any) -> None:
        self.ledger.append(event)
        match event:
            case Deposited(amount) | Lossy(amount):
                self.balance += amount
            case Withdrawn(amount):
                self.balance -= amount

    def snapshot(self) -> Any:
        return {"balance": self.balance}

    def restore(self, state: Any) -> None:
        self.balance = state["balance"]

    def on_recovery_completed(self) -> None:
        self.starts += 1

    async def receive(self, message: Any) -> Any:
        match message:
            case Deposit(amount) if amount <= 0:
                raise ValueError(f"cannot deposit {amount}")
            case Deposit(amount):
                await self.persist(Deposited(amount))
                return Balance(self.balance)
            case Withdraw(amount) if amount > self.balance:
                return Refused(f"insufficient funds: {self.balance} < {amount}")
            case Withdraw(amount):
                await self.persist(Withdrawn(amount))
                return Balance(self.balance)
            case Transfer(amount, fee):
                await self.persist_all([Withdrawn(amount), Withdrawn(fee)])
                return Balance(self.balance)
            case ("lossy", amount):
                await self.persist(Lossy(amount))
                return Balance(self.balance)
            case "balance":
                return Balance(self.balance)
            case "close":
                self.context.stop()
                return "closed"
        self.unhandled(message)
        return None


class Plain(BankAccount):
    """No snapshot(): the kit reports no state unless given a state function."""

    snapshot = PersistentActor.snapshot
    restore = PersistentActor.restore


# -- commands, events, replies, state ------------------------------------------------------------


async def test_each_command_reports_its_events_reply_and_state() -> None:
    async with event_sourced_testkit(BankAccount, "alice") as kit:
        assert kit.state == {"balance": 0}
        assert kit.persistence_id == "account-alice"

        result = await kit.run_command(Deposit(100))
        assert result == CommandResult(
            Deposit(100), [Deposited(100)], {"balance": 100}, Balance(100)
        )
        assert result.event == Deposited(100)
        assert result.error is None

        result = await kit.run_command(Transfer(30, 2))
        assert result.events == [Withdrawn(30), Withdrawn(2)]
        assert result.reply == Balance(68)
        assert result.state == kit.state == {"balance": 68}
        with pytest.raises(AssertionError, match="persisted 2 events, not one"):
            _ = result.event

        result = await kit.run_command("balance")  # a query persists nothing
        assert result.events == []
        assert result.reply == Balance(68)

        assert await kit.persisted_events() == [Deposited(100), Withdrawn(30), Withdrawn(2)]


async def test_a_refused_command_replies_without_events_and_an_error_is_the_reply() -> None:
    async with event_sourced_testkit(BankAccount, "bob") as kit:
        await kit.run_command(Deposit(10))
        result = await kit.run_command(Withdraw(50))
        assert result.reply == Refused("insufficient funds: 10 < 50")
        assert result.events == []
        assert result.state == {"balance": 10}

        result = await kit.run_command(Deposit(-5))
        assert isinstance(result.error, ValueError)
        assert result.reply is result.error
        assert str(result.error) == "cannot deposit -5"
        assert result.events == []
        assert not result.stopped
        # The actor went on (an error raised to an asker does not fail it).
        assert (await kit.run_command(Withdraw(4))).events == [Withdrawn(4)]


async def test_a_journal_rejection_is_the_reply_and_the_actor_goes_on() -> None:
    journal = FaultyJournal(InMemoryJournal(), reject_next(1))
    async with event_sourced_testkit(BankAccount, "carol", journal=journal) as kit:
        result = await kit.run_command(Deposit(7))
        assert result.rejected
        assert isinstance(result.error, EventRejected)
        assert result.events == []
        assert result.state == {"balance": 0}
        result = await kit.run_command(Deposit(7))
        assert result.events == [Deposited(7)]
        assert kit.actor.starts == 1  # never restarted


async def test_restart_recovers_the_state_from_the_journal() -> None:
    journal = InMemoryJournal()
    async with event_sourced_testkit(BankAccount, "dave", journal=journal) as kit:
        for command in (Deposit(50), Withdraw(20), Deposit(5)):
            await kit.run_command(command)
        before = kit.actor
        assert await kit.restart() == {"balance": 35}
        assert kit.state == {"balance": 35}
        assert kit.actor is not before
        assert kit.actor.starts == 1  # a new instance, recovered once
        assert kit.actor.last_seq == 3
        result = await kit.run_command(Withdraw(35))
        assert result.events == [Withdrawn(35)]
        assert result.state == {"balance": 0}
    # The journal outlives the kit: another one recovers from it.
    async with event_sourced_testkit(BankAccount, "dave", journal=journal) as kit:
        assert kit.state == {"balance": 0}
        assert len(await kit.persisted_events()) == 4


async def test_a_journal_failure_reports_the_state_the_restarted_actor_recovered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = FaultyJournal(InMemoryJournal())
    strategy = sv.OneForOne(backoff=sv.Backoff(min_delay=2.0, jitter=0.0))
    async with event_sourced_testkit(
        BankAccount, "erin", journal=journal, system_options={"guardian_strategy": strategy}
    ) as kit:
        await kit.run_command(Deposit(10))
        journal.add(fail_next(1))
        start = trio.current_time()
        result = await kit.run_command(Deposit(99))
        assert isinstance(result.error, JournalFailure)
        assert "injected by FaultyJournal" in str(result.error)
        assert result.events == []
        assert result.state == {"balance": 10}
        assert trio.current_time() - start == pytest.approx(2.0)  # waited for the restart
        assert kit.actor.starts == 1  # the state came from a fresh, recovered instance


async def test_a_state_function_and_no_state_at_all() -> None:
    async with event_sourced_testkit(
        Plain, "fay", state=lambda actor: (actor.balance, actor.last_seq)
    ) as kit:
        assert kit.state == (0, 0)
        assert (await kit.run_command(Deposit(3))).state == (3, 1)
    async with event_sourced_testkit(Plain, "gus") as kit:
        assert kit.state is None
        assert (await kit.run_command(Deposit(3))).state is None


async def test_the_kit_runs_in_a_system_of_the_test() -> None:
    journal = InMemoryJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        kit = EventSourcedTestKit(system, BankAccount, "hal", name="hal")
        with pytest.raises(RuntimeError, match=r"await kit.ready\(\)"):
            _ = kit.state
        assert kit.ref.path == "/user/hal"
        result = await kit.run_command(Deposit(1))  # waits for the recovery first
        assert result.events == [Deposited(1)]
    async with actors.open_system() as system:
        with pytest.raises(ValueError, match="needs a system with a journal"):
            EventSourcedTestKit(system, BankAccount, "ivy")


async def test_a_command_that_stops_the_actor_is_reported_as_stopped() -> None:
    async with event_sourced_testkit(BankAccount, "ned") as kit:
        await kit.run_command(Deposit(2))
        result = await kit.run_command("close")
        assert result.reply == "closed"
        assert result.stopped
        assert result.state is None
        result = await kit.run_command("balance")
        assert isinstance(result.error, actors.ActorDead)
        assert await kit.restart() == {"balance": 2}  # a new start recovers it
        assert (await kit.run_command("balance")).reply == Balance(2)


# -- serialization checks -------------------------------------------------------------------------


@attrs.frozen
class WithCallback:
    callback: Any


async def test_a_command_that_cannot_be_serialized_is_named_and_not_sent() -> None:
    async with event_sourced_testkit(BankAccount, "jo") as kit:
        with pytest.raises(SerializationCheckFailed) as caught:
            await kit.run_command(WithCallback(lambda: None))
        message = str(caught.value)
        assert message.startswith("the command WithCallback(callback=<function")
        assert f"({__name__}.WithCallback) cannot be serialized" in message
        assert isinstance(caught.value.__cause__, EventRejected)
        # Unchecked, the same command reaches the actor (which does not handle it).
        kit.check_serialization = False
        result = await kit.run_command(WithCallback(lambda: None))
        assert isinstance(result.error, actors.UnhandledMessage)


async def test_an_event_that_does_not_survive_the_round_trip_is_named() -> None:
    async with event_sourced_testkit(BankAccount, "kim") as kit:
        with pytest.raises(SerializationCheckFailed) as caught:
            await kit.run_command(("lossy", 5))
        assert str(caught.value) == (
            f"the event Lossy(amount=5) ({__name__}.Lossy) does not survive the "
            f"serialization round trip: it comes back as Lossy(amount=0) ({__name__}.Lossy)"
        )
    async with event_sourced_testkit(BankAccount, "kim", check_serialization=False) as kit:
        result = await kit.run_command(("lossy", 5))
        assert result.events == [Lossy(0)]  # what the journal holds
        assert result.state == {"balance": 5}  # what the actor applied


async def test_a_state_that_cannot_be_serialized_is_named() -> None:
    with pytest.raises(SerializationCheckFailed, match=r"the state <function .*cannot be ser"):
        async with event_sourced_testkit(BankAccount, "lee", state=lambda actor: lambda: 1):
            pytest.fail("the kit must not start")  # pragma: no cover


async def test_reported_states_are_copies_that_later_commands_do_not_change() -> None:
    async with event_sourced_testkit(BankAccount, "max", state=lambda actor: actor.ledger) as kit:
        first = await kit.run_command(Deposit(1))
        second = await kit.run_command(Deposit(2))
        assert first.state == [Deposited(1)]
        assert second.state == [Deposited(1), Deposited(2)]
        assert first.state is not kit.actor.ledger


# -- actors that change their behaviour with become -----------------------------------------------


class Vault(BankAccount):
    """Locks itself with ``become``: while locked, its behaviour refuses every message
    with an error, and the kit must still see its state."""

    async def receive(self, message: Any) -> Any:
        if message == "lock":
            self.context.become(self.locked)
            return "locked"
        return await super().receive(message)

    def locked(self, message: Any) -> Any:
        if message == "unlock":
            self.context.unbecome()
            return "unlocked"
        raise PermissionError(f"the vault is locked: {message!r} refused")


async def test_the_kit_inspects_an_actor_that_changed_its_behaviour() -> None:
    async with event_sourced_testkit(Vault, "vault") as kit:
        assert (await kit.run_command(Deposit(10))).state == {"balance": 10}
        locked = await kit.run_command("lock")
        # The kit's question went around the locked behaviour: no PermissionError.
        assert (locked.reply, locked.state, locked.events) == ("locked", {"balance": 10}, [])
        refused = await kit.run_command(Deposit(5))
        assert isinstance(refused.error, PermissionError)
        assert str(refused.error) == "the vault is locked: Deposit(amount=5) refused"
        assert (refused.state, refused.events) == ({"balance": 10}, [])
        assert (await kit.run_command("unlock")).reply == "unlocked"
        assert (await kit.run_command(Deposit(5))).state == {"balance": 15}
        await kit.run_command("lock")
        assert await kit.restart() == {"balance": 15}  # a restart starts with receive again
        assert (await kit.run_command(Deposit(1))).reply == Balance(16)


class Tight(BankAccount):
    """A class attribute the runtime reads when the class is spawned: the kit keeps
    it."""

    mailbox = actors.Mailbox(capacity=3)


async def test_the_kit_spawns_with_the_class_attributes_of_the_actor() -> None:
    async with event_sourced_testkit(Tight, "tight") as kit:
        stats = kit.ref.stats()
        assert stats.capacity == 3
        assert (await kit.run_command(Deposit(2))).state == {"balance": 2}


async def test_the_kit_inspects_through_the_message_round_trip() -> None:
    """With ``roundtrip_messages`` the kit's question arrives as a copy: it is still
    answered by the cell, not by the behaviour."""
    async with event_sourced_testkit(
        Vault, "vault", system_options={"roundtrip_messages": True}
    ) as kit:
        await kit.run_command("lock")
        assert (await kit.run_command("balance")).state == {"balance": 0}
