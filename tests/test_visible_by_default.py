"""Failures, give-ups and lost messages are visible by default (docs/logging.md).

While the application has configured no logging, the ``actors`` logger's default output
prints each WARNING or ERROR record of the runtime as one line on stderr, and notable
dead letters as rate-limited lines. As soon as any other handler would get a record
(``logging.basicConfig``, a handler on an ``actors`` logger, pytest's own capture), it
prints nothing and that configuration rules.

Under pytest the root logger holds pytest's capture handlers, so the default output
stays quiet and the records go to ``caplog`` and the report of a failed test. The
``no_logging_configured`` fixture takes pytest's handlers off the root for one test, as
in an application that configured nothing, and ``capsys`` reads the lines.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
from actors import Actor, Mailbox, Overflow, open_system
from actors._runtime_log import DEAD_LETTER_LINE_EVERY, DefaultOutput, default_output, heard
from supervision import Backoff, Directive, OneForOne, RestartIntensity


@attrs.frozen
class Boom:
    reason: str


class Fragile(Actor):
    def receive(self, message: Any) -> Any:
        if isinstance(message, Boom):
            raise ValueError(message.reason)
        return message


class Picky(Actor):
    def receive(self, message: Any) -> Any:
        if message == "known":
            return "ok"
        self.unhandled(message)
        return None


class Multiline(Exception):
    def __repr__(self) -> str:
        return "Multiline(first line\nsecond line)"


class Breaks(Actor):
    def receive(self, message: Any) -> None:
        raise Multiline()


@pytest.fixture
async def no_logging_configured() -> AsyncIterator[None]:
    """Logging as in an application that configured none: no handler on the root, the
    default levels. pytest puts its capture handlers on the root just before the test
    function runs, after the fixtures are set up; an async fixture is set up by
    pytest-trio inside that call, after them, so it can take them off (and put them
    back)."""
    root = logging.getLogger()
    package = logging.getLogger("actors")
    saved = (root.handlers[:], root.level, package.level, package.handlers[:])
    root.handlers.clear()
    root.setLevel(logging.WARNING)
    package.setLevel(logging.NOTSET)
    assert package.handlers == [default_output]
    try:
        yield
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
        package.setLevel(saved[2])
        package.handlers[:] = saved[3]


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    captured = capsys.readouterr()
    assert captured.out == ""
    return captured.err.splitlines()


# -- failures ----------------------------------------------------------------------------


async def test_a_supervised_failure_is_one_line(
    no_logging_configured: None, capsys: pytest.CaptureFixture[str]
) -> None:
    async with open_system() as system:
        ref = system.spawn(Fragile, name="fragile")
        ref.tell(Boom("bad input"))
        assert await ref.ask("still there") == "still there"
    # Its message went to dead letters too ("failed"): the failure's line names it.
    assert system.dead_letter_count == 1
    assert lines(capsys) == [
        "WARNING actors.supervision: /user/fragile failed on Boom: ValueError('bad input'); "
        "restarting it"
    ]


async def test_a_restart_with_a_backoff_says_its_delay(
    no_logging_configured: None,
    capsys: pytest.CaptureFixture[str],
    autojump_clock: trio.testing.MockClock,
) -> None:
    strategy = OneForOne(backoff=Backoff(min_delay=0.5, max_delay=4, jitter=0))
    async with open_system(supervisor_strategy=strategy) as system:
        ref = system.spawn(Fragile, name="fragile")
        for n in range(3):
            ref.tell(Boom(str(n)))
            assert await ref.ask("back") == "back"
    assert lines(capsys) == [
        "WARNING actors.supervision: /user/fragile failed on Boom: ValueError('0'); "
        "restarting it in 0.5 s",
        "WARNING actors.supervision: /user/fragile failed on Boom: ValueError('1'); "
        "restarting it in 1 s",
        "WARNING actors.supervision: /user/fragile failed on Boom: ValueError('2'); "
        "restarting it in 2 s",
    ]


async def test_a_give_up_is_one_line_and_so_is_the_failure_it_sends_up(
    no_logging_configured: None,
    capsys: pytest.CaptureFixture[str],
    autojump_clock: trio.testing.MockClock,
) -> None:
    strategy = OneForOne(intensity=RestartIntensity(max_restarts=1, within=10))

    async def run() -> None:
        async with open_system(supervisor_strategy=strategy) as system:
            ref = system.spawn(Fragile, name="fragile")
            ref.tell(Boom("1"))
            ref.tell(Boom("2"))
            await trio.sleep(5)

    with pytest.raises(actors.UnhandledFailure):
        await run()
    assert lines(capsys) == [
        "WARNING actors.supervision: /user/fragile failed on Boom: ValueError('1'); restarting it",
        "ERROR actors.supervision: /user/fragile failed on Boom: ValueError('2'); "
        "its supervisor /user gives up (too many restarts) and fails in turn",
        "ERROR actors.supervision: failure of /user/fragile reached /user: "
        "TooManyRestarts('fragile', ValueError('2'), 1, 10); actor system 'actors' shuts "
        "down and open_system raises UnhandledFailure",
    ]


async def test_an_overflowing_mailbox_is_one_failure_one_line(
    no_logging_configured: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    mailbox = Mailbox(capacity=2, overflow=Overflow.FAIL)
    async with open_system() as system:
        ref = system.spawn(Fragile, name="full", mailbox=mailbox)
        for n in range(10):  # 8 overflow before the actor runs
            ref.tell(n)
        await trio.testing.wait_all_tasks_blocked()
    assert lines(capsys) == [
        'WARNING actors.supervision: /user/full failed: MailboxOverflow("mailbox of '
        "/user/full overflowed its capacity of 2 (overflow policy 'fail'), so the actor "
        "failed; its supervisor decides what follows. Let senders wait for room (`await "
        'ref.send(message)`), raise the capacity, or pick a dropping overflow policy"); '
        "restarting it"
    ]


async def test_the_line_stays_one_line_whatever_the_error_prints(
    no_logging_configured: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    stop = OneForOne(decider=lambda error: Directive.STOP)
    async with open_system(supervisor_strategy=stop) as system:
        system.spawn(Breaks, name="breaks").tell("x")
        await trio.testing.wait_all_tasks_blocked()
    assert lines(capsys) == [
        "WARNING actors.supervision: /user/breaks failed on str: Multiline(first line "
        "second line); stopped by /user"
    ]


# -- who decides: the application's configuration -----------------------------------------


async def test_a_handler_of_the_application_takes_over_with_the_traceback(
    no_logging_configured: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    got: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record)

    logging.getLogger().addHandler(Keep())  # what logging.basicConfig does
    async with open_system() as system:
        ref = system.spawn(Fragile, name="fragile")
        ref.tell(Boom("x"))
        await ref.ask("sync")
    assert lines(capsys) == []
    [record] = got
    assert record.getMessage() == ("/user/fragile failed on Boom: ValueError('x'); restarting it")
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)


async def test_a_handler_on_an_actors_logger_takes_over_for_that_logger_only(
    no_logging_configured: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    got: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record.getMessage())

    logging.getLogger("actors.deadletters").addHandler(Keep(logging.DEBUG))
    logging.getLogger("actors.deadletters").setLevel(logging.DEBUG)
    try:
        async with open_system() as system:
            ref = system.spawn(Fragile, name="fragile")
            ref.tell(Boom("x"))
            await ref.ask("sync")
    finally:
        logging.getLogger("actors.deadletters").handlers.clear()
        logging.getLogger("actors.deadletters").setLevel(logging.NOTSET)
    assert got == ["dead letter (failed) (no sender) -> /user/fragile: Boom"]
    assert lines(capsys) == [
        "WARNING actors.supervision: /user/fragile failed on Boom: ValueError('x'); restarting it"
    ]


@pytest.mark.parametrize(
    "silence",
    [
        lambda: logging.getLogger("actors").addHandler(logging.NullHandler()),
        lambda: logging.getLogger("actors").setLevel(logging.CRITICAL),
    ],
    ids=["null-handler", "level-critical"],
)
async def test_the_documented_ways_to_silence_it(
    no_logging_configured: None, capsys: pytest.CaptureFixture[str], silence: Any
) -> None:
    silence()
    async with open_system() as system:
        ref = system.spawn(Fragile, name="fragile")
        ref.tell(Boom("x"))
        await ref.ask("sync")
        await system.graceful_stop(ref)
        ref.tell("lost")
    assert lines(capsys) == []


async def test_under_pytest_records_go_to_caplog_not_to_stderr(
    capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    # pytest's capture handlers are on the root logger: the default output steps aside.
    assert logging.getLogger().handlers
    caplog.set_level(logging.WARNING, logger="actors")
    async with open_system() as system:
        ref = system.spawn(Fragile, name="fragile")
        ref.tell(Boom("x"))
        await ref.ask("sync")
    assert capsys.readouterr().err == ""
    assert [r.getMessage() for r in caplog.records if r.name == "actors.supervision"] == [
        "/user/fragile failed on Boom: ValueError('x'); restarting it"
    ]


def test_it_is_the_only_handler_of_the_package_and_lets_debug_pass() -> None:
    assert logging.getLogger("actors").handlers == [default_output]
    assert isinstance(default_output, DefaultOutput)
    assert default_output.level == logging.WARNING


# -- dead letters ------------------------------------------------------------------------


async def test_lost_messages_are_shown_at_most_one_line_per_interval(
    no_logging_configured: None,
    capsys: pytest.CaptureFixture[str],
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_system() as system:
        gone = system.spawn(Fragile, name="gone")
        sender = system.spawn(Fragile, name="sender")
        await system.graceful_stop(gone)
        gone.tell(Boom("1"), sender=sender)
        gone.tell(Boom("2"))
        gone.tell(Boom("3"))
        assert lines(capsys) == [
            "WARNING actors.deadletters: dead letter (stopped) /user/sender -> /user/gone: Boom"
        ]
        await trio.sleep(DEAD_LETTER_LINE_EVERY)
        picky = system.spawn(Picky, name="picky")
        picky.tell("unknown")
        await trio.testing.wait_all_tasks_blocked()
        assert lines(capsys) == [
            "WARNING actors.deadletters: dead letter (unhandled) (no sender) -> /user/picky: "
            "str (and 2 more since the last one shown)"
        ]
        await trio.sleep(DEAD_LETTER_LINE_EVERY)
        sender.tell("queued")  # while the system shuts down: expected, not shown
        system.stop(sender)
    assert system.dead_letter_count == 5
    assert lines(capsys) == []


async def test_chosen_losses_are_not_shown(
    no_logging_configured: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Dropped by the overflow policy, or the message of a failure (its own line says it).
    mailbox = Mailbox(capacity=1, overflow=Overflow.DROP_NEWEST)
    async with open_system() as system:
        ref = system.spawn(Fragile, name="drops", mailbox=mailbox)
        for n in range(5):
            ref.tell(n)
        await trio.testing.wait_all_tasks_blocked()
        assert system.dead_letter_count == 4
        assert lines(capsys) == []


# -- a real interpreter ------------------------------------------------------------------

SCRIPT = """
import logging, sys, trio
from actors import Actor, open_system

if sys.argv[1:] == ["configured"]:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")

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


def run_script(*argv: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, *argv],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout == ""
    return result.stderr


def test_a_script_without_logging_prints_the_line() -> None:
    assert run_script() == (
        "WARNING actors.supervision: /user/fails failed on int: ValueError('boom'); restarting it\n"
    )


def test_with_basic_config_the_applications_format_and_the_traceback_rule() -> None:
    err = run_script("configured")
    first, *rest = err.splitlines()
    assert first == (
        "WARNING actors.supervision: /user/fails failed on int: ValueError('boom'); restarting it"
    )
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: boom"
    assert err.count("failed on int") == 1  # the default output printed nothing


async def test_a_failure_builds_no_record_when_nothing_would_print_it(
    no_logging_configured: None,
) -> None:
    # Building a record with its traceback costs microseconds: only when someone prints it.
    log = logging.getLogger("actors.supervision")
    assert heard(log, logging.WARNING)  # the default output prints it
    assert not heard(log, logging.DEBUG)
    logging.getLogger("actors").addHandler(logging.NullHandler())
    assert not heard(log, logging.WARNING)  # silenced
    logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))
    assert heard(log, logging.WARNING)  # the application prints it


async def test_a_restart_storm_is_one_line_then_a_count(
    no_logging_configured: None,
    capsys: pytest.CaptureFixture[str],
    autojump_clock: trio.testing.MockClock,
) -> None:
    strategy = OneForOne(intensity=RestartIntensity(max_restarts=10_000, within=1))
    async with open_system(supervisor_strategy=strategy) as system:
        ref = system.spawn(Fragile, name="fragile")
        other = system.spawn(Fragile, name="other")
        for n in range(500):
            ref.tell(Boom(str(n)))
        assert await ref.ask("back") == "back"
        other.tell(Boom("elsewhere"))  # another actor: its own first line
        assert await other.ask("back") == "back"
        await trio.sleep(10)
        ref.tell(Boom("later"))
        assert await ref.ask("back") == "back"
    assert lines(capsys) == [
        "WARNING actors.supervision: /user/fragile failed on Boom: ValueError('0'); restarting it",
        "WARNING actors.supervision: /user/other failed on Boom: ValueError('elsewhere'); "
        "restarting it",
        "WARNING actors.supervision: /user/fragile failed on Boom: ValueError('later'); "
        "restarting it (499 more failures of it not shown since the last line)",
    ]
