"""Edge cases of bounded mailboxes and of roundtrip_messages found in review."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import trio
import trio.testing

import actors
from actors import DeadLetter, DeadLetterReason, Mailbox, Overflow
from actors.testing import TestProbe


class TwoArgs(Exception):
    """Pickles, but cannot be unpickled: a classic cross-process trap."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


class Tricky(actors.Actor):
    def receive(self, message: Any) -> Any:
        if message == "raise":
            raise TwoArgs(1, 2)
        if message == "return":
            return TwoArgs(3, 4)
        return message


async def test_a_reply_or_error_that_cannot_be_unpickled_fails_the_ask_not_the_system(
    actor_system: actors.ActorSystem,
) -> None:
    ref = actor_system.spawn(Tricky)
    with pytest.raises(actors.UnpicklableMessage, match="TwoArgs"):
        await ref.ask("raise")
    with pytest.raises(actors.UnpicklableMessage, match="TwoArgs"):
        await ref.ask("return")
    assert await ref.ask("still here") == "still here"


async def test_a_tell_that_cannot_be_unpickled_raises_unpicklable_message(
    actor_system: actors.ActorSystem,
) -> None:
    ref = actor_system.spawn(Tricky)
    with pytest.raises(actors.UnpicklableMessage):
        ref.tell(TwoArgs(5, 6))
    assert await ref.ask("ok") == "ok"
    assert actor_system.dead_letter_count == 0


async def test_an_unpicklable_event_reaches_dead_letter_listeners_once(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    dead = TestProbe(actor_system)
    actor_system.events.subscribe(dead.ref, DeadLetter)
    subscriber = TestProbe(actor_system)
    actor_system.events.subscribe(subscriber.ref, TwoArgs)
    assert actor_system.events.publish("pairs", TwoArgs(7, 8)) == 1
    letter = await dead.expect_message(DeadLetter)
    assert letter.reason is DeadLetterReason.UNPICKLABLE
    assert letter.recipient == subscriber.ref
    assert isinstance(letter.message, TwoArgs)
    await subscriber.expect_no_message()
    assert actor_system.dead_letter_count == 1


async def test_ask_to_an_unknown_address_still_checks_picklability(
    actor_system: actors.ActorSystem,
) -> None:
    ref = actor_system.spawn(Tricky)
    await actor_system.graceful_stop(ref)
    ghost = pickle.loads(pickle.dumps(ref))  # unresolved: no live actor at this address
    with pytest.raises(actors.UnpicklableMessage):
        await ghost.ask(TwoArgs(1, 1))
    with pytest.raises(actors.ActorDead):
        await ghost.ask("fine")


class Slow(actors.Actor):
    """Capacity 1; each message takes 1 s of trio's clock."""

    mailbox = Mailbox(capacity=1)

    def __init__(self, log: list[Any]) -> None:
        self.log = log

    async def receive(self, message: Any) -> None:
        if message == "steal":
            # Runs right after the place this message freed was promised to the waiting
            # sender, before that sender could use it.
            try:
                self.context.ref.tell("thief")
            except actors.MailboxFull:
                self.log.append("refused")
        await trio.sleep(1)
        if message == "self-send":
            await self.context.ref.send("never")
        self.log.append(message)


async def test_waiting_senders_get_places_in_the_order_they_started_waiting(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[Any] = []
    enqueued: list[str] = []
    async with actors.open_system("t") as system:
        slow = system.spawn(Slow, log)
        slow.tell("block")
        await trio.testing.wait_all_tasks_blocked()
        slow.tell("queued")  # the mailbox is full from here on

        async def send(message: str) -> None:
            await slow.send(message)
            enqueued.append(message)

        async with trio.open_nursery() as nursery:
            for name in "ABCDE":
                nursery.start_soon(send, name)
                await trio.testing.wait_all_tasks_blocked()
        await trio.sleep(10)
    assert enqueued == list("ABCDE")
    assert log == ["block", "queued", *"ABCDE"]


async def test_a_place_promised_to_a_waiting_sender_is_not_taken_by_a_tell(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[Any] = []
    async with actors.open_system("t") as system:
        slow = system.spawn(Slow, log)
        slow.tell("block")
        await trio.testing.wait_all_tasks_blocked()
        slow.tell("steal")  # the mailbox is full
        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow.send, "waiting")
        await trio.sleep(10)
    assert log == ["block", "refused", "steal", "waiting"]


async def test_an_actor_sending_to_its_own_full_mailbox_gets_an_error_not_a_deadlock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[Any] = []
    async with actors.open_system("t") as system:
        slow = system.spawn(Slow, log)

        async def asker() -> None:
            with pytest.raises(actors.MailboxFull, match="its own mailbox"):
                await slow.ask("self-send", timeout=60)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(asker)
            await trio.testing.wait_all_tasks_blocked()
            slow.tell("fills the mailbox")
        assert trio.current_time() == 1.0
        await trio.sleep(5)
    assert log == ["fills the mailbox"]


class StashesTick(actors.Actor):
    mailbox = Mailbox(1, Overflow.DROP_OLDEST)

    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.ready = False

    def pre_start(self) -> None:
        self.context.timers.start_single("t", "tick", 1)

    def receive(self, message: Any) -> None:
        if message == "tick" and not self.ready:
            self.context.stash()
            return
        if message == "go":
            self.ready = True
            self.context.unstash_all()
            self.context.ref.tell("after")  # full now? only if the tick counted
        self.log.append(message)


async def test_an_unstashed_timer_tick_stays_outside_capacity(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[Any] = []
    async with actors.open_system("t") as system:
        ref = system.spawn(StashesTick, log)
        await trio.sleep(2)
        ref.tell("go")
        await trio.testing.wait_all_tasks_blocked()
        assert log == ["go", "tick", "after"]
        assert system.dead_letter_count == 0


async def test_graceful_stop_refuses_a_ref_of_another_system() -> None:
    async with actors.open_system("one") as one, actors.open_system("two") as two:
        ref = one.spawn(Tricky)
        with pytest.raises(ValueError, match="belongs to system 'one'"):
            await two.graceful_stop(ref)
        with pytest.raises(ValueError, match="belongs to system 'one'"):
            two.stop(ref)
        assert await ref.ask("alive") == "alive"
