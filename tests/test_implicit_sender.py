"""The implicit sender: inside an actor (handlers, hooks, tasks it starts) messages carry
that actor as their sender unless ``sender=`` says otherwise; outside, none."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

import actors
from actors import Actor, ActorRef, ActorSystem, DeadLetter, DeadLetterReason, no_sender
from actors.routing import Broadcast, BroadcastRouting, Router
from actors.testing import TestProbe


class Reporter(Actor):
    """Tells ``report`` (message, the sender it saw); answers asks with the sender."""

    def __init__(self, report: ActorRef) -> None:
        self.report = report

    def receive(self, message: Any) -> Any:
        self.report.tell((message, self.context.sender), sender=None)
        return self.context.sender


class Everywhere(Actor):
    """Tells ``target`` from each place an actor's code runs."""

    def __init__(self, target: ActorRef) -> None:
        self.target = target
        target.tell("__init__")

    def pre_start(self) -> None:
        self.target.tell("pre_start")

    async def receive(self, message: Any) -> Any:
        if message == "go":
            self.target.tell("handler")
            await self.target.send("send")
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._in_a_task)
            return await self.target.ask("ask")
        return None

    async def _in_a_task(self) -> None:
        self.target.tell("task")

    def post_stop(self) -> None:
        self.target.tell("post_stop")


async def test_the_sending_actor_is_the_sender_wherever_its_code_runs(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    reporter = actor_system.spawn(Reporter, probe.ref)
    actor = actor_system.spawn(Everywhere, reporter)
    assert await actor.ask("go") == actor  # the asked handler saw the asking actor
    await actor_system.graceful_stop(actor)
    seen = [await probe.expect_message(tuple) for _ in range(7)]
    assert seen == [
        (where, actor) for where in ("__init__", "pre_start", "handler", "send", "task", "ask")
    ] + [("post_stop", actor)]


async def test_a_thread_started_by_an_actor_sends_as_that_actor(
    actor_system: ActorSystem, probe: TestProbe
) -> None:
    # (No autojump clock: it would jump ahead while the thread runs.)
    reporter = actor_system.spawn(Reporter, probe.ref)

    class Threaded(Actor):
        async def receive(self, message: Any) -> None:
            await trio.to_thread.run_sync(reporter.tell_threadsafe, "from a thread")

    actor = actor_system.spawn(Threaded)
    actor.tell("go")
    assert await probe.expect_message(tuple) == ("from a thread", actor)


async def test_a_script_has_no_sender(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    reporter = actor_system.spawn(Reporter, probe.ref)
    reporter.tell("tell")
    assert await reporter.ask("ask") is None
    assert await probe.expect_message(tuple) == ("tell", None)


async def test_an_explicit_sender_wins_and_no_sender_sends_none(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    reporter = actor_system.spawn(Reporter, probe.ref)
    third = actor_system.spawn(Reporter, probe.ref, name="third")

    class Chooses(Actor):
        def receive(self, message: Any) -> None:
            reporter.tell("explicit", sender=third)
            with no_sender():
                reporter.tell("anonymous")
                reporter.tell("explicit inside", sender=third)
            reporter.tell("implicit again")

    actor = actor_system.spawn(Chooses)
    actor.tell("go")
    assert [await probe.expect_message(tuple) for _ in range(4)] == [
        ("explicit", third),
        ("anonymous", None),
        ("explicit inside", third),
        ("implicit again", actor),
    ]
    with no_sender():  # outside any actor: nothing changes
        reporter.tell("script")
    assert await probe.expect_message(tuple) == ("script", None)


async def test_forward_keeps_the_original_sender(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    reporter = actor_system.spawn(Reporter, probe.ref)

    class Forwarder(Actor):
        def receive(self, message: Any) -> None:
            self.context.forward(reporter)

    forwarder = actor_system.spawn(Forwarder)

    class Origin(Actor):
        def pre_start(self) -> None:
            forwarder.tell("from an actor")

    forwarder.tell("from a script")
    assert await probe.expect_message(tuple) == ("from a script", None)
    origin = actor_system.spawn(Origin)
    assert await probe.expect_message(tuple) == ("from an actor", origin)


async def test_children_send_as_themselves(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    reporter = actor_system.spawn(Reporter, probe.ref)

    class Child(Actor):
        def pre_start(self) -> None:
            reporter.tell("child")

    class Parent(Actor):
        def pre_start(self) -> None:
            self.child = self.context.spawn(Child, name="child")
            reporter.tell("parent")

    parent = actor_system.spawn(Parent, name="parent")
    seen = {await probe.expect_message(tuple) for _ in range(2)}
    assert seen == {("parent", parent), ("child", actor_system.lookup("/user/parent/child"))}


async def test_a_router_keeps_a_missing_sender_missing(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    routees = [actor_system.spawn(Reporter, probe.ref) for _ in range(3)]
    router = actor_system.spawn(Router, BroadcastRouting(), routees=routees)
    await actor_system.started(router)
    router.tell(Broadcast("from a script"))  # through the router's own mailbox
    assert [await probe.expect_message(tuple) for _ in range(3)] == [("from a script", None)] * 3

    class Origin(Actor):
        def pre_start(self) -> None:
            router.tell(Broadcast("from an actor"))

    origin = actor_system.spawn(Origin)
    assert [await probe.expect_message(tuple) for _ in range(3)] == [("from an actor", origin)] * 3


async def test_a_late_reply_to_an_actors_ask_names_that_actor(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    probe.subscribe(DeadLetter)

    class Sleepy(Actor):
        async def receive(self, message: Any) -> str:
            await trio.sleep(10)
            return "late"

    sleepy = actor_system.spawn(Sleepy)

    class Impatient(Actor):
        async def receive(self, message: Any) -> None:
            with pytest.raises(actors.AskTimeout):
                await sleepy.ask("q", timeout=1)

    impatient = actor_system.spawn(Impatient)
    impatient.tell("go")
    letter = await probe.expect_message(DeadLetter, timeout=20)
    assert (letter.message, letter.reason) == ("late", DeadLetterReason.ASK_EXPIRED)
    assert letter.recipient == impatient
