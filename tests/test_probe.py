"""The TestProbe: expectations by type and value, failures, quiescence, watch, reply."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing
from trio.testing import MockClock

from actors import Actor, ActorRef, ActorSystem, Terminated
from actors.testing import TestProbe


@attrs.frozen
class Ping:
    n: int


@attrs.frozen
class Pong:
    n: int


class Echo(Actor):
    """Answers Ping(n) with Pong(n) to the sender; "delayed" answers after a timer."""

    def receive(self, message: Any) -> None:
        sender = self.context.sender
        match message:
            case Ping(n):
                assert sender is not None
                sender.tell(Pong(n), sender=self.context.self)
            case ("delayed", seconds, payload):
                assert sender is not None
                self.context.timers.start_single("delayed", ("reply-to", sender, payload), seconds)
            case ("reply-to", target, payload):
                target.tell(payload)
            case _:
                self.unhandled(message)


class Client(Actor):
    """Tells ``server`` "request" with itself as sender; reports whatever comes back."""

    def __init__(self, server: ActorRef, report: ActorRef) -> None:
        self.report = report
        server.tell("request", sender=self.context.self)

    def receive(self, message: Any) -> None:
        self.report.tell(("client got", message, self.context.sender), sender=self.context.self)


async def test_expect_message_by_type_and_by_value(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    echo = actor_system.spawn(Echo)
    probe.tell(echo, Ping(1))
    probe.tell(echo, Ping(2))
    by_type = await probe.expect_message(Pong)
    assert by_type == Pong(1)
    by_value = await probe.expect_message(Pong(2))
    assert by_value == Pong(2)
    assert probe.pending == 0


async def test_expect_messages_in_order(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    echo = actor_system.spawn(Echo)
    for n in range(3):
        probe.tell(echo, Ping(n))
    assert await probe.expect_messages(Pong, Pong(1), Pong(2)) == [Pong(0), Pong(1), Pong(2)]


async def test_expect_message_of_the_wrong_type_or_value_raises(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    echo = actor_system.spawn(Echo)
    probe.tell(echo, Ping(1))
    with pytest.raises(AssertionError, match="expected a Ping, got Pong"):
        await probe.expect_message(Ping)
    # A mismatch consumes the message: the next expectation sees the next one.
    probe.tell(echo, Ping(2))
    with pytest.raises(AssertionError, match=r"expected Pong\(n=3\), got Pong\(n=2\)"):
        await probe.expect_message(Pong(3))
    assert probe.pending == 0


async def test_expect_message_times_out_on_virtual_time(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    t0 = trio.current_time()
    with pytest.raises(AssertionError, match="no message within 3 s"):
        await probe.expect_message(Pong)
    assert trio.current_time() == t0 + 3  # the probe's default timeout

    t1 = trio.current_time()
    with pytest.raises(AssertionError, match=r"no message within 0\.5 s"):
        await probe.receive_message(timeout=0.5)
    assert trio.current_time() == t1 + 0.5

    patient = TestProbe(actor_system, timeout=20)
    t2 = trio.current_time()
    with pytest.raises(AssertionError, match="no message within 20 s"):
        await patient.expect_message(Pong)
    assert trio.current_time() == t2 + 20


async def test_expect_message_waits_for_a_late_message(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    echo = actor_system.spawn(Echo)
    probe.tell(echo, ("delayed", 2.5, "late"))
    t0 = trio.current_time()
    assert await probe.expect_message("late") == "late"
    assert trio.current_time() == t0 + 2.5
    probe.tell(echo, ("delayed", 5, "too late"))
    with pytest.raises(AssertionError):
        await probe.expect_message("too late", timeout=4)
    assert await probe.expect_message("too late", timeout=2) == "too late"


async def test_expect_no_message_by_quiescence(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    echo = actor_system.spawn(Echo)
    t0 = trio.current_time()
    await probe.expect_no_message()
    assert trio.current_time() == t0  # quiescence costs no clock time

    # A message that is on its way (probe -> echo -> probe) is waited for, then reported.
    probe.tell(echo, Ping(7))
    with pytest.raises(AssertionError, match=r"expected no message, got Pong\(n=7\)"):
        await probe.expect_no_message()
    assert trio.current_time() == t0
    await probe.expect_message(Pong(7))
    await probe.expect_no_message()


async def test_expect_no_message_within_lets_virtual_time_pass(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    echo = actor_system.spawn(Echo)
    probe.tell(echo, ("delayed", 10, "after ten"))
    t0 = trio.current_time()
    await probe.expect_no_message()  # quiescence alone does not see the timer
    await probe.expect_no_message(within=9)
    assert trio.current_time() == t0 + 9
    with pytest.raises(AssertionError, match="expected no message, got 'after ten'"):
        await probe.expect_no_message(within=2)
    assert trio.current_time() == t0 + 11
    await probe.expect_message("after ten")


async def test_expect_terminated(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    echo = actor_system.spawn(Echo)
    other = actor_system.spawn(Echo)
    assert probe.watch(echo) == echo
    probe.watch(other)
    await actor_system.graceful_stop(echo)
    terminated = await probe.expect_terminated(echo)
    assert terminated == Terminated(echo, None, True)

    await actor_system.graceful_stop(other)
    with pytest.raises(AssertionError, match="expected Terminated for"):
        await probe.expect_terminated(echo)

    # Not a Terminated at all.
    third = actor_system.spawn(Echo)
    probe.tell(third, Ping(3))
    with pytest.raises(AssertionError, match="expected a Terminated"):
        await probe.expect_terminated(third)

    # Nothing arrives: times out.
    t0 = trio.current_time()
    with pytest.raises(AssertionError, match="no message within 1 s"):
        await probe.expect_terminated(third, timeout=1)
    assert trio.current_time() == t0 + 1


async def test_last_sender_and_reply(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    server = TestProbe(actor_system, name="server")
    client = actor_system.spawn(Client, server.ref, probe.ref)
    assert server.last_sender is None
    await server.expect_message("request")
    assert server.last_sender == client
    server.reply("response")
    assert await probe.expect_message(tuple) == ("client got", "response", server.ref)
    assert probe.last_sender == client

    # A message without a sender: last_sender becomes None and reply refuses.
    server.ref.tell("anonymous")
    await server.expect_message("anonymous")
    assert server.last_sender is None
    with pytest.raises(AssertionError, match="no sender to reply to"):
        server.reply("nobody")
    await probe.expect_no_message()


async def test_probe_tell_sets_the_probe_as_sender(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    other = TestProbe(actor_system, name="other")
    assert other.ref.path == "/user/other"
    probe.tell(other.ref, "hi")
    assert await other.receive_message() == "hi"
    assert other.last_sender == probe.ref
    assert repr(other) == "<TestProbe /user/other>"


async def test_pending_counts_arrived_messages(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    assert probe.pending == 0
    for n in range(4):
        probe.ref.tell(n)
    await trio.testing.wait_all_tasks_blocked()
    assert probe.pending == 4
    assert await probe.receive_message() == 0
    assert probe.pending == 3
    assert await probe.expect_messages(1, 2, 3) == [1, 2, 3]
    assert probe.pending == 0
