"""Asking without blocking: ``context.ask``, ``context.ask_all`` and
``context.pipe_to_self`` deliver their outcome as a message; failures arrive as
``AskFailed`` / ``PipeFailed``; pending pipes end with the actor (not with a restart)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from actors import (
    Actor,
    ActorDead,
    ActorRef,
    ActorSystem,
    AskFailed,
    AskTimeout,
    DeadLetter,
    DeadLetterReason,
    Mailbox,
    MailboxFull,
    Overflow,
    PipeFailed,
)
from actors.testing import TestProbe


class Boom(Exception):
    pass


class Service(Actor):
    """Answers ``("echo", x)`` with x, ``("slow", s, x)`` with x after s seconds, and
    raises on ``"boom"``."""

    async def receive(self, message: Any) -> Any:
        match message:
            case ("echo", value):
                return value
            case ("slow", seconds, value):
                await trio.sleep(seconds)
                return value
            case "boom":
                raise Boom("the service failed")
        return None


@attrs.frozen
class Run:
    """Tells a Client to run ``action(client)`` (a command from the test)."""

    action: Callable[[Any], Any]


class Client(Actor):
    """Runs commands; reports every other message, with the time, to ``report``."""

    def __init__(self, report: ActorRef) -> None:
        self.report = report

    def receive(self, message: Any) -> Any:
        if isinstance(message, Run):
            return message.action(self)
        self.report.tell((message, trio.current_time()))
        return None


async def test_the_reply_arrives_as_a_message_and_the_actor_is_not_blocked(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    service = actor_system.spawn(Service)
    client = actor_system.spawn(Client, probe.ref)
    client.tell(
        Run(lambda c: c.context.ask(service, ("slow", 4, 21), adapt=lambda r: ("priced", r * 2)))
    )
    client.tell("meanwhile")  # handled at once: the client does not wait for the reply
    assert await probe.expect_message(tuple) == ("meanwhile", 0)
    assert await probe.expect_message(tuple, timeout=10) == (("priced", 42), 4)


async def test_without_adapt_the_reply_itself_arrives(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    service = actor_system.spawn(Service)
    client = actor_system.spawn(Client, probe.ref)
    client.tell(Run(lambda c: c.context.ask(service, ("echo", "plain"))))
    assert await probe.expect_message(tuple) == ("plain", 0)


async def test_failures_arrive_as_ask_failed(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    service = actor_system.spawn(Service, name="service")
    client = actor_system.spawn(Client, probe.ref)

    def ask(message: Any, **options: Any) -> Run:
        return Run(lambda c: c.context.ask(service, message, **options))

    client.tell(ask("boom"))
    failed, _ = await probe.expect_message(tuple)
    assert isinstance(failed, AskFailed)
    assert isinstance(failed.error, Boom)
    assert (failed.request, failed.target) == ("boom", service)

    client.tell(ask(("slow", 5, "x"), timeout=1))
    failed, when = await probe.expect_message(tuple)
    assert isinstance(failed.error, AskTimeout)
    assert str(failed.error) == "no reply from /user/service within 1 s to tuple"
    assert when == pytest.approx(1)

    client.tell(ask(("echo", 1), adapt=lambda reply: 1 / 0))  # (after the slow one, at 5)
    failed, _ = await probe.expect_message(tuple, timeout=10)
    assert isinstance(failed.error, ZeroDivisionError)
    assert failed.request == ("echo", 1)

    await actor_system.graceful_stop(service)
    client.tell(ask(("echo", 1)))
    failed, _ = await probe.expect_message(tuple)
    assert isinstance(failed.error, ActorDead)


async def test_ask_all_gathers_the_replies_in_order(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    services = [actor_system.spawn(Service) for _ in range(3)]
    client = actor_system.spawn(Client, probe.ref)
    requests = [(ref, ("slow", 3 - n, n)) for n, ref in enumerate(services)]
    client.tell(Run(lambda c: c.context.ask_all(requests, adapt=lambda rs: ("all", rs))))
    assert await probe.expect_message(tuple, timeout=10) == (("all", (0, 1, 2)), 3)
    client.tell(Run(lambda c: c.context.ask_all([])))
    assert await probe.expect_message(tuple) == ((), 3)


async def test_ask_all_fails_with_the_first_failure_and_cancels_the_others(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    letters = TestProbe(actor_system).subscribe(DeadLetter)
    slow, failing = actor_system.spawn(Service), actor_system.spawn(Service, name="failing")
    client = actor_system.spawn(Client, probe.ref)
    requests = [(slow, ("slow", 5, "late")), (failing, "boom")]
    client.tell(Run(lambda c: c.context.ask_all(requests)))
    failed, when = await probe.expect_message(tuple)
    assert isinstance(failed, AskFailed)
    assert isinstance(failed.error, Boom)
    assert (failed.request, failed.target, when) == ("boom", failing, 0)
    # The cancelled ask's question was still answered: its reply is a dead letter.
    letter = await letters.expect_message(DeadLetter, timeout=10)
    assert (letter.message, letter.reason) == ("late", DeadLetterReason.ASK_EXPIRED)
    assert letter.recipient == client
    await probe.expect_no_message()


async def test_ask_all_has_one_deadline(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    fast, slow = actor_system.spawn(Service), actor_system.spawn(Service, name="slow")
    client = actor_system.spawn(Client, probe.ref)
    requests = [(fast, ("slow", 1, "a")), (slow, ("slow", 3, "b"))]
    client.tell(Run(lambda c: c.context.ask_all(requests, timeout=2)))
    failed, when = await probe.expect_message(tuple)
    assert isinstance(failed.error, AskTimeout)
    assert str(failed.error) == "no reply from /user/slow within 2 s to tuple"
    assert (failed.request, failed.target, when) == (("slow", 3, "b"), slow, 2)


async def test_pipe_to_self_delivers_any_awaitables_result(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    async def compute(seconds: float, value: int) -> int:
        await trio.sleep(seconds)
        if value < 0:
            raise Boom("negative")
        return value

    client = actor_system.spawn(Client, probe.ref)
    client.tell(Run(lambda c: c.context.pipe_to_self(compute, 2, 7, adapt=lambda v: ("got", v))))
    client.tell(Run(lambda c: c.context.pipe_to_self(compute, 1, 8)))
    client.tell(Run(lambda c: c.context.pipe_to_self(compute, 3, -1)))
    assert await probe.expect_message(tuple) == (8, 1)
    assert await probe.expect_message(tuple) == (("got", 7), 2)
    failed, when = await probe.expect_message(tuple)
    assert isinstance(failed, PipeFailed)
    assert isinstance(failed.error, Boom)
    assert when == 3


async def test_pending_pipes_are_cancelled_when_the_actor_stops(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    letters = TestProbe(actor_system).subscribe(DeadLetter)
    service = actor_system.spawn(Service)
    client = actor_system.spawn(Client, probe.ref)
    client.tell(Run(lambda c: c.context.ask(service, ("slow", 5, "late"), timeout=math.inf)))
    client.tell(Run(lambda c: c.context.pipe_to_self(trio.sleep_forever)))
    await client.ask(Run(lambda c: None))  # both pipes are started
    await actor_system.graceful_stop(client)
    await actor_system.idle()  # no pipe is left (a pending one would count as busy)
    assert trio.current_time() == 5  # the service finished its slow question
    letter = await letters.expect_message(DeadLetter)
    assert (letter.message, letter.reason) == ("late", DeadLetterReason.ASK_EXPIRED)
    await probe.expect_no_message()


async def test_pending_pipes_survive_a_restart(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    service = actor_system.spawn(Service)
    client = actor_system.spawn(Client, probe.ref)

    def ask_then_crash(c: Client) -> None:
        c.context.ask(service, ("slow", 4, "after the restart"))
        raise Boom("crash")

    client.tell(Run(ask_then_crash))
    assert await probe.expect_message(tuple, timeout=10) == ("after the restart", 4)
    assert client.stats().restarts == 1


async def test_an_actor_may_ask_itself_this_way(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    client = actor_system.spawn(Client, probe.ref)
    client.tell(Run(lambda c: c.context.ask(c.context.ref, Run(lambda c2: "from myself"))))
    assert await probe.expect_message(tuple) == ("from myself", 0)


async def test_outcomes_arrive_outside_the_mailboxs_capacity(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    class Busy(Client):
        mailbox = Mailbox(capacity=1, overflow=Overflow.BACKPRESSURE)

        async def receive(self, message: Any) -> Any:
            if message == "block":
                await trio.sleep(10)
                return None
            return super().receive(message)

    service = actor_system.spawn(Service)
    busy = actor_system.spawn(Busy, probe.ref)
    await busy.ask(Run(lambda c: c.context.ask(service, ("slow", 1, "reply"))))
    busy.tell("block")
    await trio.testing.wait_all_tasks_blocked()  # in its handler until t=10
    busy.tell("queued")
    with pytest.raises(MailboxFull):
        busy.tell("no room")
    # At t=1 the reply comes in anyway, behind the queued message.
    assert await probe.expect_message(tuple, timeout=20) == ("queued", 10)
    assert await probe.expect_message(tuple) == ("reply", 10)


async def test_bad_arguments_raise_at_the_call(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    service = actor_system.spawn(Service)

    def errors(c: Client) -> list[str]:
        found = []
        calls: list[Callable[[], Any]] = [
            lambda: c.context.ask("not a ref", 1),  # type: ignore[arg-type]
            lambda: c.context.ask(service, 1, timeout=0),
            lambda: c.context.ask(service, 1, adapt="nope"),  # type: ignore[arg-type]
            lambda: c.context.ask_all([service]),  # type: ignore[list-item]
            lambda: c.context.pipe_to_self(42),  # type: ignore[arg-type]
        ]
        for call in calls:
            try:
                call()
            except (TypeError, ValueError) as exc:
                found.append(f"{type(exc).__name__}: {str(exc).split(';')[0]}")
        return found

    client = actor_system.spawn(Client, None)
    assert await client.ask(Run(errors)) == [
        "TypeError: ask() needs an ActorRef to ask, got 'not a ref'",
        "ValueError: ask timeout must be > 0 seconds, got 0",
        "TypeError: adapt must be a callable taking the result, got 'nope'",
        f"TypeError: ask_all() needs (ActorRef, message) pairs, got {service!r}",
        "TypeError: pipe_to_self() needs an async function to call, got 42",
    ]
