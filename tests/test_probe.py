"""The TestProbe: expectations by type, value and predicate, in order or any order,
fish_for, receive_while, events, failures that show what arrived, quiescence, watch,
reply."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing
from trio.testing import MockClock

from actors import (
    Actor,
    ActorRef,
    ActorRestarted,
    ActorStarted,
    ActorSystem,
    DeadLetter,
    DeadLetterReason,
    Terminated,
)
from actors.testing import TestProbe


@attrs.frozen
class Ping:
    n: int


@attrs.frozen
class Pong:
    n: int


class Echo(Actor):
    """Answers Ping(n) with Pong(n) to the sender; "delayed" answers after a timer;
    "crash" fails; anything else is unhandled (a dead letter)."""

    def receive(self, message: Any) -> None:
        sender = self.context.sender
        match message:
            case Ping(n):
                assert sender is not None
                sender.tell(Pong(n), sender=self.context.ref)
            case ("delayed", seconds, payload):
                assert sender is not None
                self.context.timers.start_single(
                    f"delayed {payload}", ("reply-to", sender, payload), seconds
                )
            case ("reply-to", target, payload):
                target.tell(payload)
            case "crash":
                raise RuntimeError("crash requested")
            case _:
                self.unhandled(message)


class Client(Actor):
    """Tells ``server`` "request" with itself as sender; reports whatever comes back."""

    def __init__(self, server: ActorRef, report: ActorRef) -> None:
        self.report = report
        server.tell("request", sender=self.context.ref)

    def receive(self, message: Any) -> None:
        self.report.tell(("client got", message, self.context.sender), sender=self.context.ref)


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
    with pytest.raises(AssertionError, match="expected a Pong, but nothing arrived within 3 s"):
        await probe.expect_message(Pong)
    assert trio.current_time() == t0 + 3  # the probe's default timeout

    t1 = trio.current_time()
    with pytest.raises(
        AssertionError, match=r"expected a message, but nothing arrived within 0\.5 s"
    ):
        await probe.receive_message(timeout=0.5)
    assert trio.current_time() == t1 + 0.5

    patient = TestProbe(actor_system, timeout=20)
    t2 = trio.current_time()
    with pytest.raises(AssertionError, match="nothing arrived within 20 s"):
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
    with pytest.raises(AssertionError, match="expected no message within 2 s, got 'after ten'"):
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
    with pytest.raises(
        AssertionError, match=r"expected Terminated for /user/\$\d+, got Pong\(n=3\)"
    ):
        await probe.expect_terminated(third)

    # Nothing arrives: times out.
    t0 = trio.current_time()
    with pytest.raises(
        AssertionError, match=r"expected Terminated for .*, but nothing arrived within 1 s"
    ):
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


def line_of(function: Any) -> int:
    return int(function.__code__.co_firstlineno)


async def test_expect_message_by_predicate(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    echo = actor_system.spawn(Echo)
    probe.tell(echo, Ping(4))
    probe.tell(echo, Ping(5))
    assert await probe.expect_message(lambda m: isinstance(m, Pong) and m.n % 2 == 0) == Pong(4)

    def is_even_pong(message: Any) -> bool:
        return isinstance(message, Pong) and message.n % 2 == 0

    with pytest.raises(
        AssertionError,
        match=r"expected a message matching .*is_even_pong, got Pong\(n=5\) \(from /user/\$",
    ):
        await probe.expect_message(is_even_pong)

    # A lambda is named by its file and line.
    probe.tell(echo, Ping(7))
    odd = lambda m: m == Pong(8)  # noqa: E731
    with pytest.raises(AssertionError) as info:
        await probe.expect_message(odd)
    assert f"a message matching <lambda> at test_probe.py:{line_of(odd)}, got Pong(n=7)" in str(
        info.value
    )


async def test_a_mismatch_shows_what_is_queued_after_it(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    for n in range(3):
        probe.ref.tell(n)
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(AssertionError) as info:
        await probe.expect_message("zero")
    assert str(info.value) == (f"{probe}: expected 'zero', got 0\n  queued after it: 1, 2")
    assert await probe.receive_while(int) == [1, 2]

    # Long lists show the first ten and a count; long reprs are cut.
    for n in range(15):
        probe.ref.tell("x" * 300 if n == 1 else n)
    await trio.testing.wait_all_tasks_blocked()
    with pytest.raises(AssertionError) as info:
        await probe.expect_message(str)
    text = str(info.value)
    assert text.startswith(f"{probe}: expected a str, got 0\n  queued after it: 'xxx")
    assert text.endswith("..., 2, 3, 4, 5, 6, 7, 8, 9, 10, ... and 4 more (14 in all)")
    assert "x" * 300 not in text
    assert "'" + "x" * 196 + "..., 2, " in text


async def test_expect_messages_in_order_failures_show_what_arrived(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    for message in ("a", "b", "c", "d"):
        probe.ref.tell(message)
    with pytest.raises(AssertionError) as info:
        await probe.expect_messages("a", "x", "c")
    assert str(info.value) == (
        f"{probe}: expected message 2 of 3 to be 'x', got 'b'\n"
        "  taken before: 'a'\n"
        "  queued after it: 'c', 'd'"
    )
    t0 = trio.current_time()
    with pytest.raises(AssertionError) as info:
        await probe.expect_messages("c", "d", "e", timeout=2)
    assert str(info.value) == (
        f"{probe}: expected message 3 of 3 to be 'e', but nothing arrived within 2 s\n"
        "  taken before: 'c', 'd'"
    )
    assert trio.current_time() == t0 + 2
    assert await probe.expect_messages() == []


async def test_expect_messages_in_any_order(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    echo = actor_system.spawn(Echo)
    for n in (3, 1, 2):
        probe.tell(echo, Ping(n))
    got = await probe.expect_messages(Pong(1), Pong(2), Pong(3), any_order=True)
    assert got == [Pong(3), Pong(1), Pong(2)]  # in arrival order

    # Overlapping expectations: Pong(1) first takes the class, then moves to the value.
    for n in (1, 2):
        probe.tell(echo, Ping(n))
    assert await probe.expect_messages(Pong, Pong(1), any_order=True) == [Pong(1), Pong(2)]

    for n in (1, 5, 6):
        probe.tell(echo, Ping(n))
    with pytest.raises(AssertionError) as info:
        await probe.expect_messages(Pong(1), Pong(2), Pong(6), any_order=True)
    assert str(info.value) == (
        f"{probe}: expected 3 messages in any order: [Pong(n=1), Pong(n=2), Pong(n=6)], "
        f"got Pong(n=5) (from {echo.path}), which fits none of [Pong(n=2), Pong(n=6)]\n"
        "  taken before: Pong(n=1)\n"
        "  queued after it: Pong(n=6)"
    )
    with pytest.raises(AssertionError, match=r"in any order: \[Pong\(n=6\), a Ping\], but "):
        await probe.expect_messages(Pong(6), Ping, any_order=True, timeout=1)


async def test_fish_for_skips_until_a_match(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    echo = actor_system.spawn(Echo)
    for n in range(5):
        probe.tell(echo, Ping(n))
    assert await probe.fish_for(lambda m: m.n >= 2) == Pong(2)
    assert probe.pending == 2  # Pong(3), Pong(4) stay queued
    assert await probe.fish_for(Pong(4)) == Pong(4)
    assert probe.pending == 0

    # It waits for a late match, within one deadline for the whole search.
    probe.tell(echo, ("delayed", 2, "late"))
    probe.ref.tell("early")
    t0 = trio.current_time()
    assert await probe.fish_for(str, timeout=3) == "early"
    assert await probe.fish_for("late", timeout=3) == "late"
    assert trio.current_time() == t0 + 2


async def test_fish_for_failure_lists_what_it_skipped(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    for n in range(12):
        probe.ref.tell(n)
    t0 = trio.current_time()
    with pytest.raises(AssertionError) as info:
        await probe.fish_for(str, timeout=5)
    assert str(info.value) == (
        f"{probe}: fish_for: expected a str within 5 s, but 12 arrived and none matched\n"
        "  skipped: 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, ... and 2 more (12 in all)"
    )
    assert trio.current_time() == t0 + 5
    assert probe.pending == 0  # skipped messages are consumed

    with pytest.raises(AssertionError) as info:
        await probe.fish_for(str, timeout=1)
    assert str(info.value) == (f"{probe}: fish_for: expected a str within 1 s, but nothing arrived")


async def test_receive_while_stops_at_the_first_mismatch(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    for message in (1, 2, 3, "stop", 4):
        probe.ref.tell(message)
    t0 = trio.current_time()
    assert await probe.receive_while(int) == [1, 2, 3]
    assert await probe.receive_message() == "stop"  # the mismatch stayed queued
    assert await probe.receive_while(int, max=0) == []
    assert await probe.receive_while(lambda m: m < 10) == [4]
    assert trio.current_time() == t0  # quiescence: no clock time

    for n in range(5):
        probe.ref.tell(n)
    assert await probe.receive_while(int, max=3) == [0, 1, 2]
    assert await probe.receive_while(int) == [3, 4]


async def test_receive_while_idle_and_timeout_on_virtual_time(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    echo = actor_system.spawn(Echo)
    for seconds in (1, 2, 3, 10):
        probe.tell(echo, ("delayed", seconds, seconds))
    t0 = trio.current_time()
    assert await probe.receive_while(int) == []  # quiescent: timers are not waited for
    assert await probe.receive_while(int, idle=1.5, timeout=10) == [1, 2, 3]
    assert trio.current_time() == t0 + 4.5  # the last arrived at 3, then 1.5 s idle
    assert await probe.receive_while(int, idle=5, timeout=2) == []
    assert trio.current_time() == t0 + 6.5  # the overall timeout ended it
    assert await probe.receive_while(int, idle=5, timeout=5) == [10]
    assert trio.current_time() == t0 + 11.5  # the timeout came before 5 s of idleness


async def test_expect_no_message_shows_everything_that_arrived(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    for message in ("a", "b", "c"):
        probe.ref.tell(message)
    with pytest.raises(AssertionError) as info:
        await probe.expect_no_message()
    assert str(info.value) == (
        f"{probe}: expected no message, got 'a'\n  queued after it: 'b', 'c'"
    )
    assert probe.pending == 3
    assert await probe.receive_while(str) == ["a", "b", "c"]
    other = TestProbe(actor_system, name="other")
    probe.tell(other.ref, "hi")
    with pytest.raises(AssertionError) as info:
        await other.expect_no_message(within=1)
    assert str(info.value) == (
        f"{other}: expected no message within 1 s, got 'hi' (from {probe.ref.path})"
    )


async def test_unwatch_drops_a_terminated_that_already_arrived(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    echo = probe.watch(actor_system.spawn(Echo))
    await actor_system.graceful_stop(echo)
    await trio.testing.wait_all_tasks_blocked()
    assert probe.pending == 1
    assert probe.unwatch(echo) == echo
    assert probe.pending == 0
    await probe.expect_no_message()


async def test_expect_event_of_a_restart(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    assert probe.subscribe(ActorRestarted) is probe
    echo = actor_system.spawn(Echo)
    other = actor_system.spawn(Echo)
    other.tell("crash")
    await trio.testing.wait_all_tasks_blocked()  # other's restart is queued first
    echo.tell("crash")
    restarted = await probe.expect_event(ActorRestarted, where=lambda e: e.ref == echo)
    assert restarted.ref == echo
    assert isinstance(restarted.error, RuntimeError)
    await probe.expect_no_message()  # the restart of `other` was skipped


async def test_expect_event_of_a_dead_letter_by_topic(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    probe.subscribe("system.deadletters", "system.lifecycle.>")
    echo = actor_system.spawn(Echo)
    echo.tell("unknown")
    letter = await probe.expect_event(DeadLetter)
    assert letter.message == "unknown"
    assert letter.recipient == echo
    assert letter.reason == DeadLetterReason.UNHANDLED
    probe.unsubscribe("system.lifecycle.>")
    actor_system.spawn(Echo)
    echo.tell("unknown again")
    assert (await probe.expect_event(DeadLetter)).message == "unknown again"
    await probe.expect_no_message()  # no ActorStarted: that subscription ended
    probe.unsubscribe()
    echo.tell("unheard")
    await probe.expect_no_message()


async def test_expect_event_failure_lists_the_skipped_events(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    probe.subscribe(ActorStarted)
    first = actor_system.spawn(Echo, name="first")
    await trio.testing.wait_all_tasks_blocked()  # started before the second
    actor_system.spawn(Echo, name="second")

    def is_third(event: ActorStarted) -> bool:
        return event.ref.path == "/user/third"

    with pytest.raises(AssertionError) as info:
        await probe.expect_event(ActorStarted, where=is_third, timeout=2)
    assert str(info.value) == (
        f"{probe}: expect_event: expected an ActorStarted where "
        "test_expect_event_failure_lists_the_skipped_events.<locals>.is_third within 2 s, "
        "but 2 arrived and none matched\n"
        f"  skipped: ActorStarted(ref={first!r}), "
        f"ActorStarted(ref={actor_system.lookup('/user/second')!r})"
    )


async def test_expect_event_without_subscription_says_so(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    t0 = trio.current_time()
    with pytest.raises(AssertionError) as info:
        await probe.expect_event(ActorRestarted)
    assert str(info.value) == (
        f"{probe}: expect_event: expected an ActorRestarted within 3 s, but nothing arrived\n"
        "  (the probe subscribes to no events: call probe.subscribe(pattern or class) "
        "before the action)"
    )
    assert trio.current_time() == t0 + 3
