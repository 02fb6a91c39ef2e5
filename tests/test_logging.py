"""Logging under ``actors.*`` (docs/logging.md) and the hints of the public errors.

What is logged, at which level, with which context (``actor_path``, ``message_type``),
that nothing is printed without logging configured, that a normal run is quiet at INFO,
and that ``trace_deliveries`` logs every delivery on ``actors.delivery`` through the
cells' slow path (and only then).
"""

from __future__ import annotations

import logging
import pickle
import subprocess
import sys
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
from actors import Actor, open_system
from actors._cell import ActorCell
from actors.persistence import (
    InMemoryJournal,
    JournalFailure,
    Persistence,
    PersistentActor,
    RecoveryFailed,
    SequenceConflict,
)
from actors.testing import FaultInjector
from supervision import Directive, OneForAll, OneForOne, RestartIntensity, TooManyRestarts


@attrs.frozen
class Boom:
    reason: str


class Fragile(Actor):
    def receive(self, message: Any) -> Any:
        if isinstance(message, Boom):
            raise ValueError(message.reason)
        return message


class Forwarder(Actor):
    def __init__(self, target: actors.ActorRef) -> None:
        self.target = target

    def receive(self, message: Any) -> Any:
        if message == "forward":
            self.context.forward(self.target)
        else:
            self.target.tell(message, sender=self.context.ref)


def records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


def texts(caplog: pytest.LogCaptureFixture, name: str) -> list[str]:
    return [r.getMessage() for r in records(caplog, name)]


# -- setup -------------------------------------------------------------------------------


def test_package_logger_has_the_default_output_only() -> None:
    # Not a NullHandler: the default output (test_visible_by_default.py) takes its place.
    handlers = logging.getLogger("actors").handlers
    assert [type(h).__name__ for h in handlers] == ["DefaultOutput"]


def test_without_logging_configured_a_failure_is_one_line_on_stderr() -> None:
    # Without the default output, logging's last-resort handler would print the message
    # alone; with a NullHandler, nothing at all.
    code = """
import trio
from actors import Actor, open_system

class Fails(Actor):
    def receive(self, message):
        raise ValueError("boom")

async def main():
    async with open_system() as system:
        ref = system.spawn(Fails, name="fails")
        ref.tell(1)
        await trio.sleep(0.05)

trio.run(main)
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout == ""
    assert result.stderr == (
        "WARNING actors.supervision: /user/fails failed on int: ValueError('boom'); restarting it\n"
    )


async def test_a_normal_run_is_quiet_at_info(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="actors")
    # (No watchdog: it measures real time, and a loaded machine may stall this test.)
    async with open_system("quiet", settings=actors.Settings(blocking_threshold=None)) as system:
        refs = [system.spawn(Fragile, name=f"a{i}") for i in range(3)]
        for ref in refs:
            for n in range(100):
                ref.tell(n)
            assert await ref.ask("x") == "x"
        system.stop(refs[0])
        refs[0].tell("dead letter")
    assert [(r.name, r.levelname, r.getMessage()) for r in caplog.records] == [
        ("actors.lifecycle", "INFO", "actor system 'quiet' started"),
        ("actors.lifecycle", "INFO", "actor system 'quiet' shut down"),
    ]


# -- supervision -------------------------------------------------------------------------


async def test_supervised_failure_is_a_warning_with_context(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="actors")
    async with open_system() as system:
        ref = system.spawn(Fragile, name="fragile")
        ref.tell(Boom("bad input"))
        assert await ref.ask("still there") == "still there"
    [record] = records(caplog, "actors.supervision")
    assert record.levelno == logging.WARNING
    assert record.getMessage() == (
        "/user/fragile failed on Boom: ValueError('bad input'); restarting it"
    )
    assert record.actor_path == "/user/fragile"  # type: ignore[attr-defined]
    assert record.message_type == "Boom"  # type: ignore[attr-defined]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)


@pytest.mark.parametrize(
    ("directive", "outcome"),
    [
        (Directive.RESUME, "resumed by /user/parent"),
        (Directive.STOP, "stopped by /user/parent"),
        (Directive.ESCALATE, "escalated by /user/parent to its own supervisor"),
    ],
)
async def test_the_record_says_what_the_supervisor_does(
    caplog: pytest.LogCaptureFixture, directive: Directive, outcome: str
) -> None:
    caplog.set_level(logging.WARNING, logger="actors")

    class Parent(Actor):
        supervisor_strategy = OneForOne(decider=lambda error: directive)

        def pre_start(self) -> None:
            self.context.spawn(Fragile, name="child")

        def receive(self, message: Any) -> Any:
            return self.context.child("child")

    async with open_system(guardian_strategy=OneForOne(decider=lambda e: Directive.RESUME)) as sys_:
        parent = sys_.spawn(Parent, name="parent")
        child = await parent.ask("child")
        child.tell(Boom("x"))
        await trio.testing.wait_all_tasks_blocked()
    messages = texts(caplog, "actors.supervision")
    assert messages[0] == f"/user/parent/child failed on Boom: ValueError('x'); {outcome}"


async def test_a_failure_to_start_has_no_message_type(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="actors")

    class NoStart(Actor):
        def pre_start(self) -> None:
            raise RuntimeError("no database")

        def receive(self, message: Any) -> None:
            pass

    async with open_system(supervisor_strategy=OneForOne(decider=lambda e: Directive.STOP)) as s:
        s.spawn(NoStart, name="nostart")
        await trio.testing.wait_all_tasks_blocked()
    [record] = records(caplog, "actors.supervision")
    assert record.getMessage().startswith("/user/nostart failed: ActorInitializationError(")
    assert record.getMessage().endswith("; stopped by /user")
    assert record.message_type is None  # type: ignore[attr-defined]


async def test_giving_up_is_an_error_and_so_is_the_unhandled_failure(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="actors")
    strategy = OneForOne(intensity=RestartIntensity(max_restarts=1, within=10))

    async def run() -> None:
        async with open_system(supervisor_strategy=strategy) as system:
            ref = system.spawn(Fragile, name="fragile")
            ref.tell(Boom("1"))
            ref.tell(Boom("2"))
            await trio.sleep(5)

    with pytest.raises(actors.UnhandledFailure):
        await run()
    got = [(r.levelname, r.getMessage()) for r in records(caplog, "actors.supervision")]
    assert got == [
        ("WARNING", "/user/fragile failed on Boom: ValueError('1'); restarting it"),
        (
            "ERROR",
            "/user/fragile failed on Boom: ValueError('2'); its supervisor /user gives up "
            "(too many restarts) and fails in turn",
        ),
        (
            "ERROR",
            "failure of /user/fragile reached /user: TooManyRestarts('fragile', "
            "ValueError('2'), 1, 10); actor system 'actors' shuts down and open_system "
            "raises UnhandledFailure",
        ),
    ]


async def test_siblings_restarted_with_a_failed_child_are_logged_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.supervision")
    async with open_system(supervisor_strategy=OneForAll()) as system:
        a = system.spawn(Fragile, name="a")
        system.spawn(Fragile, name="b")
        a.tell(Boom("x"))
        assert await a.ask(1) == 1
    assert texts(caplog, "actors.supervision") == [
        "/user/a failed on Boom: ValueError('x'); restarting it",
        "/user/b restarts with its failed sibling /user/a",
    ]


# -- lifecycle and dead letters ----------------------------------------------------------


async def test_lifecycle_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.lifecycle")
    async with open_system("life") as system:
        ref = system.spawn(Fragile, name="f")
        await ref.ask(0)
        ref.tell(Boom("x"))
        await ref.ask(0)
        await system.graceful_stop(ref)
    got = texts(caplog, "actors.lifecycle")
    assert got[0] == "actor system 'life' started"
    assert got[-1] == "actor system 'life' shut down"
    assert [t for t in got if t.startswith("/user/f")] == [
        "/user/f started",
        "/user/f restarted after ValueError('x')",
        "/user/f stopped",
    ]
    assert all(r.levelno == logging.DEBUG for r in records(caplog, "actors.lifecycle")[1:-1])


async def test_dead_letters_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.deadletters")
    async with open_system() as system:
        sender = system.spawn(Fragile, name="sender")
        ref = system.spawn(Fragile, name="gone")
        await system.graceful_stop(ref)
        ref.tell(Boom("late"), sender=sender)
    [record] = records(caplog, "actors.deadletters")
    assert record.levelno == logging.DEBUG
    assert record.getMessage() == "dead letter (stopped) /user/sender -> /user/gone: Boom"
    assert record.actor_path == "/user/gone"  # type: ignore[attr-defined]
    assert record.sender_path == "/user/sender"  # type: ignore[attr-defined]
    assert record.reason == "stopped"  # type: ignore[attr-defined]


# -- delivery tracing --------------------------------------------------------------------


async def test_deliveries_are_not_traced_by_default(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="actors")
    async with open_system() as system:
        ref = system.spawn(Fragile)
        ref.tell(1)
        await ref.ask(2)
        assert not _slow(ref)
    assert records(caplog, "actors.delivery") == []


async def test_trace_deliveries_logs_every_kind(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.delivery")
    async with open_system(trace_deliveries=True) as system:
        target = system.spawn(Fragile, name="target")
        front = system.spawn(Forwarder, target, name="front")
        assert _slow(front)
        assert _slow(target)
        front.tell("relay")  # front tells target with itself as sender
        await trio.testing.wait_all_tasks_blocked()
        await target.send("sent")
        assert await front.ask("forward") == "forward"  # forwarded to target
        system.events.subscribe(target, "news")
        system.events.publish("news", "extra")
        await target.ask("done")
    got = [r.getMessage() for r in records(caplog, "actors.delivery")]
    assert got == [
        "tell (no sender) -> /user/front: str",
        "tell /user/front -> /user/target: str",
        "send (no sender) -> /user/target: str",
        "ask (no sender) -> /user/front: str",
        "forward (no sender) -> /user/target: str",
        "publish (no sender) -> /user/target: str",
        "ask (no sender) -> /user/target: str",
    ]
    record = records(caplog, "actors.delivery")[1]
    assert record.levelno == logging.DEBUG
    assert record.actor_path == "/user/target"  # type: ignore[attr-defined]
    assert record.sender_path == "/user/front"  # type: ignore[attr-defined]
    assert record.message_type == "str"  # type: ignore[attr-defined]
    assert record.delivery == "tell"  # type: ignore[attr-defined]


async def test_trace_deliveries_is_a_setting(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.delivery")
    settings = actors.Settings(trace_deliveries=True)
    async with open_system(settings=settings) as system:
        await system.spawn(Fragile, name="x").ask(1)
    assert texts(caplog, "actors.delivery") == ["ask (no sender) -> /user/x: int"]


async def test_the_fault_injector_keeps_tracing_on(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.delivery")
    async with open_system(trace_deliveries=True) as system:
        ref = system.spawn(Fragile, name="x")
        faults = FaultInjector(seed=1).install(system)
        faults.uninstall()
        assert _slow(ref)
        ref.tell(1)
        await ref.ask(2)
    async with open_system() as system:
        ref = system.spawn(Fragile, name="y")
        FaultInjector(seed=1).install(system).uninstall()
        assert not _slow(ref)
    assert texts(caplog, "actors.delivery") == [
        "tell (no sender) -> /user/x: int",
        "ask (no sender) -> /user/x: int",
    ]


# -- persistence -------------------------------------------------------------------------


class Account(PersistentActor):
    persistence_id = "acct"

    def __init__(self) -> None:
        self.total = 0

    def apply(self, event: Any) -> None:
        self.total += event

    async def receive(self, message: Any) -> Any:
        await self.persist(message)
        return self.total


async def test_recovery_is_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="actors.persistence")
    journal = InMemoryJournal()
    async with open_system(extensions=[Persistence(journal)]) as system:
        await system.spawn(Account, name="acct").ask(5)
        await system.spawn(Account, name="other").ask(0)  # same id, but after the first
    got = texts(caplog, "actors.persistence")
    assert got == [
        "/user/acct recovered persistence id 'acct' at seq 0 (snapshot at seq 0, "
        "0 events replayed)",
        "/user/other recovered persistence id 'acct' at seq 1 (snapshot at seq 0, "
        "1 events replayed)",
    ]


# -- error messages ----------------------------------------------------------------------


def test_errors_say_what_to_do() -> None:
    full = actors.MailboxFull("/user/a", 10)
    assert str(full).startswith("mailbox of /user/a is full (10 messages); ")
    assert "await ref.send(message)" in str(full)
    own = actors.MailboxFull("/user/a", 10, "; the actor itself cannot wait")
    assert str(own) == "mailbox of /user/a is full (10 messages); the actor itself cannot wait"
    assert "capacity" in str(actors.MailboxOverflow("/user/a", 3))
    assert "unstash_all" in str(actors.StashOverflow("/user/a", 3))
    # Errors whose one-line text is printed by the guide carry the hint as a note.
    hinted = [
        actors.AskTimeout("/user/a", 1.0, "q"),
        actors.ActorDead("/user/a"),
        actors.UnhandledMessage("/user/a", "q"),
        actors.ActorNameTaken("/user/a"),
        actors.ActorNotFound("/user/a"),
        actors.ActorInitializationError("/user/a", ValueError("x")),
        actors.UnpicklableMessage(object(), TypeError("no")),
        actors.UnhandledFailure([]),
        TooManyRestarts("a", ValueError("x"), 3, 5.0),
        RecoveryFailed("p", 1, "gone", retryable=True),
        RecoveryFailed("p", 1, "gone", retryable=False),
        JournalFailure("disk full"),
        SequenceConflict("two writers"),
    ]
    for error in hinted:
        assert len(error.__notes__) == 1, error
        copy = pickle.loads(pickle.dumps(error))
        assert str(copy) == str(error)
        assert copy.__notes__ == error.__notes__, error
    assert "timeout=" in actors.AskTimeout("/user/a", 1.0, "q").__notes__[0]
    assert (
        "One writer" in SequenceConflict("x").__notes__[0]
        or "one writer" in (SequenceConflict("x").__notes__[0])
    )
    assert "supervisor_strategy" in actors.UnhandledFailure([]).__notes__[0]


def _slow(ref: actors.ActorRef) -> bool:
    """Whether deliveries to ``ref`` take the slow path through the seam."""
    cell = ref._resolve()
    assert isinstance(cell, ActorCell)
    return cell._slow
