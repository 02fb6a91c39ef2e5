"""A test that uses the testkit's async fixtures (``journal``, ``actor_system``, and
``probe`` and ``faults`` through it) outside trio fails at setup with a message that
says what to change: the exact trio mode settings, the trio marker, ``async def``, or
installing pytest-trio. Inner test runs use pytester, without trio mode."""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

TRIO_MODE_LINES = [
    "Turn on trio mode for the project, so that every async test runs under trio, in pytest.ini:",
    "    [pytest]",
    "    trio_mode = true",
    "or in pyproject.toml:",
    "    [tool.pytest.ini_options]",
    "    trio_mode = true",
    "or mark this test with @pytest.mark.trio.",
]


def test_an_async_test_without_trio_mode_is_told_how_to_turn_it_on(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
async def test_journal(journal):
    pass


async def test_probe(probe):
    pass


async def test_system(actor_system):
    pass
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at setup of test_journal*",
            "'test_journal' uses the trio-actors fixture 'journal', which is async and runs "
            "under pytest-trio, but this test does not run under trio.",
            *TRIO_MODE_LINES,
            "*ERROR at setup of test_probe*",
            "'test_probe' uses the trio-actors fixture 'journal' (through 'probe'), which is "
            "async*",
            *TRIO_MODE_LINES,
            "*ERROR at setup of test_system*",
            "'test_system' uses the trio-actors fixture 'journal' (through 'actor_system'),*",
            *TRIO_MODE_LINES,
        ]
    )
    output = result.stdout.str()
    # Neither pytest's generic message nor its stale-fixture error on the next tests.
    assert "with no plugin or hook that handled it" not in output
    assert "AssertionError" not in output


def test_the_settings_the_message_names_work(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
import pytest
from actors.persistence import InMemoryJournal


@pytest.mark.trio
async def test_marked(actor_system, probe):
    assert actor_system.name == "test"


async def test_unmarked(journal):
    assert isinstance(journal, InMemoryJournal)
"""
    )
    neither = pytester.runpytest("-p", "no:cacheprovider")
    neither.assert_outcomes(passed=1, errors=1)  # the marked one runs
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\ntrio_mode = true\n")
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=2)
    (pytester.path / "pyproject.toml").unlink()
    pytester.makefile(".ini", pytest="[pytest]\ntrio_mode = true\n")
    in_ini = pytester.runpytest("-p", "no:cacheprovider")
    in_ini.assert_outcomes(passed=2)
    in_ini.stdout.fnmatch_lines(["configfile: pytest.ini"])


def test_a_sync_test_is_told_to_be_async(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
def test_sync(probe):
    pass
"""
    )
    without = pytester.runpytest("-p", "no:cacheprovider")
    without.assert_outcomes(errors=1)
    without.stdout.fnmatch_lines(
        [
            "'test_sync' uses the trio-actors fixture 'journal' (through 'probe'), which is "
            "async and runs under pytest-trio, but this test does not run under trio.",
            "Only an async test can use it: write 'async def test_sync(...)', and turn on "
            "trio mode for the project, so that every async test runs under trio, in "
            "pytest.ini:",
            "    [pytest]",
            "    trio_mode = true",
        ]
    )
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    with_trio_mode = pytester.runpytest("-p", "no:cacheprovider")
    with_trio_mode.assert_outcomes(errors=1)
    with_trio_mode.stdout.fnmatch_lines(
        [
            "'test_sync' uses the trio-actors fixture 'journal' (through 'probe'),*",
            "Only an async test can use it: write 'async def test_sync(...)'.",
        ]
    )
    # Not pytest-trio's "Trio fixtures can only be used by Trio tests".
    assert "RuntimeError" not in with_trio_mode.stdout.str()


def test_without_pytest_trio_the_message_says_what_to_install(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        """
async def test_journal(journal):
    pass
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-p", "no:trio")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        [
            "'test_journal' uses the trio-actors fixture 'journal', which is async*",
            "pytest-trio is not installed: install the test kit with pip install "
            "'trio-actors[testkit]' (pytest and pytest-trio), then turn on trio mode for "
            "the project, so that every async test runs under trio, in pytest.ini:",
            "    [pytest]",
            "    trio_mode = true",
        ]
    )


def test_fixtures_of_the_same_name_from_the_user_are_left_alone(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        """
import pytest

@pytest.fixture
def journal():
    return "mine"
"""
    )
    pytester.makepyfile(
        """
def test_own_journal(journal):
    assert journal == "mine"
"""
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
