"""The testkit fails a test when an actor failed that the test did not expect: the
report names the actor, the message and the error; the marker
``expect_actor_failures`` and the ``actor_failures`` fixture declare expected failures;
the ini option ``trio_actors_fail_on_actor_failures = false`` turns the check off.

Inner test runs use pytester, with trio mode on and the check at its default (on)."""

from __future__ import annotations

from typing import Any

import pytest
import trio.testing

from actors import Actor, ActorRestarted, ActorSystem
from actors.testing import ActorFailure, ActorFailures, TestProbe

pytest_plugins = ["pytester"]

ACTORS = '''
import pytest
import supervision
import trio
from actors import Actor, ActorRestarted, open_system


class Counter(Actor):
    def receive(self, message):
        if message == "crash":
            raise RuntimeError("crash requested")
        return message


class Other(Actor):
    def receive(self, message):
        return message


class Broken(Actor):
    def __init__(self):
        raise ValueError("cannot build")


async def crash_once(system, name="counter"):
    """Crash a Counter and wait until it answers again (restarted)."""
    counter = system.spawn(Counter, name=name)
    counter.tell("crash")
    assert await counter.ask("hi") == "hi"
    return counter
'''


def run(pytester: pytest.Pytester, tests: str, *, ini: str = "") -> pytest.RunResult:
    pytester.makeini(f"[pytest]\ntrio_mode = true\n{ini}")
    pytester.makepyfile(actors_under_test=ACTORS, test_inner=tests)
    return pytester.runpytest("-p", "no:cacheprovider")


REPORT = (
    "1 unexpected actor failure: /user/counter (Counter) in system 'test' failed on "
    "message 'crash': RuntimeError('crash requested')"
)


def test_an_unexpected_crash_fails_the_test_with_a_report(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
from actors_under_test import crash_once

async def test_crashes_and_recovers(actor_system):
    await crash_once(actor_system)
""",
    )
    result.assert_outcomes(failed=1)
    output = result.stdout.str()
    assert REPORT in output
    result.stdout.fnmatch_lines(
        [
            "*_ test_crashes_and_recovers _*",
            REPORT,
            "*supervisor*",
            "  /user/counter (Counter) in system 'test' failed on message 'crash'*",
            "      Traceback (most recent call last):",
            '*raise RuntimeError("crash requested")',
            "      RuntimeError: crash requested",
            "If the test expects them, declare them: mark the test with",
            "    @pytest.mark.expect_actor_failures(error=RuntimeError)",
            "*actor_failures.expect(...)*",
            "*trio_actors_fail_on_actor_failures = false*[tool.pytest.ini_options]*",
            "FAILED test_inner.py::test_crashes_and_recovers - Failed: 1 unexpected actor*",
        ]
    )


def test_declared_failures_pass_and_others_still_fail(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import pytest
from actors_under_test import Counter, Other, crash_once


@pytest.mark.expect_actor_failures(error=RuntimeError)
async def test_marker_with_the_error(actor_system):
    await crash_once(actor_system)


@pytest.mark.expect_actor_failures
async def test_marker_without_arguments(actor_system):
    await crash_once(actor_system)


@pytest.mark.expect_actor_failures(error=(KeyError, RuntimeError), path="/user/count*")
async def test_marker_with_a_tuple_and_a_glob(actor_system):
    await crash_once(actor_system)


@pytest.mark.expect_actor_failures(actor=Counter)
async def test_marker_with_the_actor_class(actor_system):
    await crash_once(actor_system)


async def test_fixture_declares_it_after_the_fact(actor_system, actor_failures):
    await crash_once(actor_system)
    actor_failures.expect(RuntimeError, path="/user/counter")
    (failure,) = actor_failures.failures
    assert (failure.path, failure.message) == ("/user/counter", "crash")
    assert actor_failures.unexpected == []


@pytest.mark.expect_actor_failures(error=ValueError)
async def test_wrong_error(actor_system):
    await crash_once(actor_system)


@pytest.mark.expect_actor_failures(error=RuntimeError, path="/user/other")
async def test_wrong_path(actor_system):
    await crash_once(actor_system)


@pytest.mark.expect_actor_failures(error=RuntimeError, actor=Other)
async def test_wrong_actor_class(actor_system):
    await crash_once(actor_system)
""",
    )
    result.assert_outcomes(passed=5, failed=3)
    output = result.stdout.str()
    for name in ("test_wrong_error", "test_wrong_path", "test_wrong_actor_class"):
        assert f"FAILED test_inner.py::{name} - Failed: 1 unexpected" in output
    assert result.stdout.lines.count(REPORT) == 3  # whole lines: not the short summary


def test_the_ini_option_turns_the_check_off(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
from actors_under_test import crash_once

async def test_crashes(actor_system, actor_failures):
    await crash_once(actor_system)
    # still recorded, only not checked
    assert [f.path for f in actor_failures.unexpected] == ["/user/counter"]
""",
        ini="trio_actors_fail_on_actor_failures = false\n",
    )
    result.assert_outcomes(passed=1)


def test_a_system_the_test_opens_itself_is_checked_too(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import trio
from actors import open_system
from actors_under_test import crash_once


async def test_async_test_with_its_own_system():
    async with open_system("mine") as system:
        await crash_once(system, name="c")


def test_sync_test_running_trio_itself():
    async def main():
        async with open_system("sync") as system:
            await crash_once(system, name="s")

    trio.run(main)
""",
    )
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines_random(
        [
            "1 unexpected actor failure: /user/c (Counter) in system 'mine' failed on "
            "message 'crash': RuntimeError('crash requested')",
            "1 unexpected actor failure: /user/s (Counter) in system 'sync' failed on "
            "message 'crash': RuntimeError('crash requested')",
        ]
    )


def test_a_failure_in_the_teardown_of_a_sync_fixture_fails_the_teardown(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
import pytest
import trio
from actors import open_system
from actors_under_test import crash_once


@pytest.fixture
def crashes_when_torn_down():
    yield

    async def main():
        async with open_system("late") as system:
            await crash_once(system, name="late")

    trio.run(main)


def test_passes(crashes_when_torn_down):
    pass
""",
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_passes*",
            "1 unexpected actor failure: /user/late (Counter) in system 'late' failed on*",
        ]
    )


def test_faults_the_test_injected_are_expected(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
from actors import ActorRestarted
from actors_under_test import Counter


async def test_kill_and_crash(actor_system, faults, probe):
    probe.subscribe(ActorRestarted)
    counter = actor_system.spawn(Counter, name="counter")
    assert await counter.ask("up") == "up"
    faults.kill(counter)
    await probe.expect_event(ActorRestarted)
    faults.crash(to="counter", nth=1)
    counter.tell("boom")
    await probe.expect_event(ActorRestarted)
    assert await counter.ask("hi") == "hi"


async def test_a_custom_injected_error_is_not(actor_system, faults, probe):
    probe.subscribe(ActorRestarted)
    counter = actor_system.spawn(Counter, name="counter")
    faults.crash(OSError("disk full"), to="counter", nth=1)
    counter.tell("write")
    await probe.expect_event(ActorRestarted)
""",
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "1 unexpected actor failure: /user/counter (Counter) in system 'test' failed on "
            "message 'write': OSError('disk full')",
        ]
    )


def test_an_escalated_failure_is_reported_once_where_it_happened(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
import supervision
from actors import Actor, ActorRestarted
from actors_under_test import Counter

ESCALATE = supervision.OneForOne(decider=lambda error: supervision.Directive.ESCALATE)


class Parent(Actor):
    def __init__(self):
        self.child = self.context.spawn(Counter, name="child")

    def receive(self, message):
        self.child.tell(message)


async def test_escalates(actor_system, probe):
    probe.subscribe(ActorRestarted)
    parent = actor_system.spawn(Parent, name="parent", supervisor_strategy=ESCALATE)
    parent.tell("crash")
    restarted = await probe.expect_event(ActorRestarted)
    assert restarted.ref == parent
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "1 unexpected actor failure: /user/parent/child (Counter) in system 'test' "
            "failed on message 'crash': RuntimeError('crash requested')",
        ]
    )
    result.stdout.no_fnmatch_line("*/user/parent (Parent)*")


def test_an_error_matches_through_its_causes(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import pytest
import supervision
from actors import Actor, ActorStopped
from actors_under_test import Broken, Counter

TOLERATE_ONE = supervision.OneForOne(intensity=supervision.RestartIntensity(max_restarts=1))


class Parent(Actor):
    def __init__(self):
        self.child = self.context.spawn(Counter, name="child")

    def receive(self, message):
        self.child.tell(message)


@pytest.mark.expect_actor_failures(error=ValueError)
async def test_a_constructor_error(actor_system, probe, actor_failures):
    probe.subscribe(ActorStopped)
    broken = actor_system.spawn(Broken, name="broken")
    await probe.expect_event(ActorStopped, where=lambda e: e.ref == broken)
    (failure,) = actor_failures.failures
    assert failure.message is None
    assert isinstance(failure.error.__cause__, ValueError)


@pytest.mark.expect_actor_failures(error=RuntimeError)
async def test_a_supervisor_giving_up(actor_system, probe, actor_failures, autojump_clock):
    probe.subscribe(ActorStopped)
    parent = actor_system.spawn(Parent, name="parent", supervisor_strategy=TOLERATE_ONE)
    parent.tell("crash")
    parent.tell("crash")
    await probe.expect_event(ActorStopped, where=lambda e: e.ref.path == "/user/parent/child")
    assert [type(f.error) for f in actor_failures.failures] == [
        RuntimeError, RuntimeError, supervision.TooManyRestarts
    ]
    assert actor_failures.failures[-1].path == "/user/parent"
""",
    )
    result.assert_outcomes(passed=2)


def test_a_test_that_fails_anyway_lists_the_failures_in_a_section(
    pytester: pytest.Pytester,
) -> None:
    result = run(
        pytester,
        """
from actors_under_test import crash_once

async def test_fails(actor_system):
    await crash_once(actor_system)
    assert 1 == 2, "fails on its own"
""",
    )
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*AssertionError: fails on its own*",
            "*- trio-actors actor failures -*",
            REPORT,
        ]
    )
    assert result.stdout.lines.count(REPORT) == 1  # whole lines: not the short summary


def test_bad_declarations_fail_with_the_fix(pytester: pytest.Pytester) -> None:
    result = run(
        pytester,
        """
import pytest


@pytest.mark.expect_actor_failures(error="RuntimeError")
def test_error_as_a_string():
    pass


@pytest.mark.expect_actor_failures(path="counter")
def test_relative_path():
    pass


def test_actor_not_a_class(actor_failures):
    actor_failures.expect(actor="Counter")
""",
    )
    result.assert_outcomes(errors=2, failed=1)
    result.stdout.fnmatch_lines_random(
        [
            "*error= is an exception class or a tuple of them (e.g. RuntimeError), got "
            "'RuntimeError'*",
            "*path= is an actor path or a glob pattern such as '/user/worker-*', got 'counter'*",
            "*actor= is an Actor class, got 'Counter'*",
        ]
    )


# -- the fixture in this suite (where the check is off: see pyproject.toml) ----------------------


class Crashing(Actor):
    def receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash requested")
        return message


async def test_the_fixture_records_failures_with_path_message_and_error(
    actor_system: ActorSystem, probe: TestProbe, actor_failures: ActorFailures
) -> None:
    probe.subscribe(ActorRestarted)
    worker = actor_system.spawn(Crashing, name="worker")
    worker.tell("crash")
    await probe.expect_event(ActorRestarted, where=lambda e: e.ref == worker)
    (failure,) = actor_failures.failures
    assert isinstance(failure, ActorFailure)
    assert (failure.path, failure.system, failure.actor) == ("/user/worker", "test", Crashing)
    assert failure.message == "crash"
    assert isinstance(failure.error, RuntimeError)
    assert str(failure) == (
        "/user/worker (Crashing) in system 'test' failed on message 'crash': "
        "RuntimeError('crash requested')"
    )
    assert actor_failures.unexpected == [failure]
    actor_failures.expect(KeyError)
    assert actor_failures.unexpected == [failure]
    actor_failures.expect(path="/user/w*")
    assert actor_failures.unexpected == []


async def test_no_failure_no_record(
    actor_system: ActorSystem, actor_failures: ActorFailures
) -> None:
    worker = actor_system.spawn(Crashing)
    assert await worker.ask("fine") == "fine"
    await trio.testing.wait_all_tasks_blocked()
    assert actor_failures.failures == []
    assert "0 failure(s), 0 unexpected" in repr(actor_failures)
