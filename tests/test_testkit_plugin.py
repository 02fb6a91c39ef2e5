"""The pytest plugin's fixtures: actors_seed (shown on failure, replayed with
--actors-seed), actors_random, journal (memory or SQLite), and how actor_system uses
them. Inner test runs use pytester."""

from __future__ import annotations

import random
import re
from typing import Any

import attrs
import pytest

from actors import ActorSystem, open_system
from actors.persistence import InMemoryJournal, Journal, Persistence, PersistentActor, SqliteJournal
from actors.testing import TestProbe

pytest_plugins = ["pytester"]

SEED_LINE = re.compile(r"trio-actors seed: (\d+) \(replay with --actors-seed (\d+)\)")


# -- actors_seed and actors_random, through inner pytest runs -----------------------------------

INNER_SEED_TESTS = """
import random


def test_records_its_seed(actors_seed, actors_random):
    assert isinstance(actors_seed, int)
    print("drawn", actors_random.random())
    assert False, "fails on purpose"


def test_passes(actors_seed):
    pass


def test_without_the_fixture():
    assert False
"""


def seeds_in(output: str) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b in SEED_LINE.findall(output)]


def test_the_seed_of_a_failed_test_is_in_its_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER_SEED_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=2)
    output = result.stdout.str()
    # One section: the failed test that used the seed (not the passing one, nor the
    # failed test without the fixture).
    ((seed, replay),) = seeds_in(output)
    assert seed == replay
    result.stdout.fnmatch_lines(
        [
            "*_ test_records_its_seed _*",
            "*- trio-actors seed -*",
            f"trio-actors seed: {seed} (replay with --actors-seed {seed})",
        ]
    )
    assert f"drawn {random.Random(seed).random()}" in output
    assert "trio-actors: every test's actors_seed" not in output  # no header without it


def test_actors_seed_option_replays_the_seed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_inner=INNER_SEED_TESTS)
    result = pytester.runpytest("-p", "no:cacheprovider", "--actors-seed", "1234")
    result.assert_outcomes(passed=1, failed=2)
    assert seeds_in(result.stdout.str()) == [(1234, 1234)]
    result.stdout.fnmatch_lines(["trio-actors: every test's actors_seed is 1234*"])
    assert f"drawn {random.Random(1234).random()}" in result.stdout.str()


def test_a_random_seed_is_new_per_test_and_replays(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_inner="""
        import pytest

        @pytest.mark.parametrize("n", range(3))
        def test_fails(n, actors_seed, actors_random):
            print("draws", [actors_random.randrange(1000) for _ in range(5)])
            assert False
        """
    )
    first = pytester.runpytest("-p", "no:cacheprovider")
    first.assert_outcomes(failed=3)
    seeds = [seed for seed, _ in seeds_in(first.stdout.str())]
    assert len(seeds) == 3
    assert len(set(seeds)) == 3  # a fresh seed per test (equal ones: chance 1e-9)
    draws = re.findall(r"draws \[.*\]", first.stdout.str())
    assert len(draws) == 3
    for seed, drawn in zip(seeds, draws, strict=True):
        again = pytester.runpytest("-p", "no:cacheprovider", "--actors-seed", str(seed), "-k", "0")
        again.assert_outcomes(failed=1)
        rng = random.Random(seed)
        expected = f"draws {[rng.randrange(1000) for _ in range(5)]}"
        assert expected == drawn
        assert expected in again.stdout.str()


def test_actors_seed_is_usable_from_another_fixture(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import random

        import pytest


        @pytest.fixture
        def faults(actors_seed):
            return random.Random(f"{actors_seed}/faults")
        """
    )
    pytester.makepyfile(
        test_inner="""
        import random


        def test_uses_faults(faults, actors_seed, request):
            assert faults.random() == random.Random(f"{actors_seed}/faults").random()
            assert ("trio_actors_seed", actors_seed) in request.node.user_properties
            assert False
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--actors-seed", "77")
    result.assert_outcomes(failed=1)
    assert seeds_in(result.stdout.str()) == [(77, 77)]


def test_the_seed_is_shown_for_a_failing_actor_system_test(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(
        test_inner="""
        async def test_system(actor_system, actors_seed, probe, autojump_clock):
            assert actor_system.settings.seed == actors_seed
            await probe.expect_message("never", timeout=1)
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "--actors-seed", "5")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*expected 'never', but nothing arrived within 1 s*",
            "trio-actors seed: 5 (replay with --actors-seed 5)",
        ]
    )


def test_seed_fixtures_directly(actors_seed: int, actors_random: random.Random) -> None:
    assert 0 <= actors_seed < 2**32
    assert actors_random.random() == random.Random(actors_seed).random()


# -- journal and actor_system -----------------------------------------------------------------


@attrs.frozen
class Added:
    amount: int


class Tally(PersistentActor):
    persistence_id = "tally"

    def __init__(self) -> None:
        self.total = 0

    def apply(self, event: Any) -> None:
        if isinstance(event, Added):
            self.total += event.amount

    async def receive(self, message: Any) -> Any:
        if isinstance(message, int):
            await self.persist(Added(message))
        return self.total


async def recovered_total(journal: Journal) -> int:
    async with open_system("again", extensions=[Persistence(journal)]) as system:
        total: int = await system.spawn(Tally).ask("total")
        return total


async def test_journal_defaults_to_memory_and_the_system_uses_it(
    journal: Journal, actor_system: ActorSystem, actors_seed: int
) -> None:
    assert isinstance(journal, InMemoryJournal)
    assert _journal_of(actor_system) is journal
    assert actor_system.settings.seed == actors_seed
    tally = actor_system.spawn(Tally)
    assert await tally.ask(2) == 2
    assert await tally.ask(3) == 5
    assert await recovered_total(journal) == 5


@pytest.mark.journal("sqlite", chunk_size=10)
async def test_journal_marker_asks_for_sqlite(
    journal: Journal, actor_system: ActorSystem, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert isinstance(journal, SqliteJournal)
    assert _journal_of(actor_system) is journal
    tally = actor_system.spawn(Tally)
    for n in range(1, 5):
        await tally.ask(n)
    assert await recovered_total(journal) == 10
    assert await journal.highest_seq("tally") == 4


@pytest.mark.parametrize("journal", ["memory", "sqlite"], indirect=True)
async def test_journal_as_an_indirect_parameter(
    journal: Journal, actor_system: ActorSystem, request: pytest.FixtureRequest
) -> None:
    kind = request.node.callspec.params["journal"]
    assert isinstance(journal, InMemoryJournal if kind == "memory" else SqliteJournal)
    assert await actor_system.spawn(Tally).ask(7) == 7
    assert await recovered_total(journal) == 7


OTHER_JOURNAL = InMemoryJournal()


def _journal_of(system: ActorSystem) -> object:
    persistence = system.settings.extension(Persistence)
    assert persistence is not None
    return persistence.journal


@pytest.mark.actor_system(extensions=[Persistence(OTHER_JOURNAL)], seed=99)
async def test_the_actor_system_marker_overrides_journal_and_seed(
    journal: Journal, actor_system: ActorSystem
) -> None:
    assert _journal_of(actor_system) is OTHER_JOURNAL
    assert journal is not OTHER_JOURNAL
    assert actor_system.settings.seed == 99


def test_unknown_journal_kinds_and_bad_options_fail(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(
        test_inner="""
        import pytest


        @pytest.mark.journal("postgres")
        async def test_unknown(journal):
            pass


        @pytest.mark.journal("memory", chunk_size=3)
        async def test_memory_options(journal):
            pass


        @pytest.mark.journal("memory", "sqlite")
        async def test_two_kinds(journal):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(failed=3)  # pytest-trio sets async fixtures up in the test
    output = result.stdout.str()
    for error in (
        "ValueError: unknown journal kind 'postgres': expected one of ('memory', 'sqlite')",
        "TypeError: the in-memory journal takes no options, got ['chunk_size']",
        "TypeError: @pytest.mark.journal takes one positional argument, the kind",
    ):
        assert error in output


async def test_probe_fixture_lives_in_the_actor_system(
    actor_system: ActorSystem, probe: TestProbe
) -> None:
    assert probe.system is actor_system
    probe.ref.tell("hello")
    assert await probe.expect_message("hello") == "hello"


# -- the faults fixture: seeded injector, trace written on failure ------------------------------

INNER_FAULTS_TEST = """
import actors


class Echo(actors.Actor):
    def receive(self, message):
        return message


async def test_lost(actor_system, faults, autojump_clock):
    assert faults.seed == {seed}
    faults.drop(to="echo", where=lambda m: m == "lost")
    echo = actor_system.spawn(Echo, name="echo")
    echo.tell("hello")
    echo.tell("lost")
    assert await echo.ask("ping") == "ping"
    assert faults.trace is not None
    assert False, "fails on purpose"


async def test_fine(actor_system, faults):
    faults.drop(to="nobody")
    assert await actor_system.spawn(Echo).ask("ping") == "ping"
"""


def test_the_faults_fixture_writes_the_trace_of_a_failed_test(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(test_inner=INNER_FAULTS_TEST.format(seed=99))
    traces = pytester.path / "traces"
    result = pytester.runpytest(
        "-p", "no:cacheprovider", "--actors-seed", "99", "--actors-trace-dir", str(traces)
    )
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        [
            "trio-actors seed: 99 (replay with --actors-seed 99)",
            "*- trio-actors trace -*",
            f"message trace written to {traces}*test_lost.trace.txt and *test_lost.trace.mmd",
            "*drop        /user/echo  'lost'",
        ]
    )
    [text] = traces.glob("*.trace.txt")  # only the failed test's
    [mermaid] = traces.glob("*.trace.mmd")
    assert "send        /user/echo  'hello'" in text.read_text()
    assert mermaid.read_text().startswith("sequenceDiagram\n")


INNER_UNEXPECTED_FAULT = """
import actors


class Counter(actors.Actor):
    def __init__(self):
        self.count = 0

    def receive(self, message):
        if message == "add":
            self.count += 1
            return None
        return self.count


async def test_counts(actor_system, faults, autojump_clock):
    faults.crash(to="counter", nth=2)  # the test below does not expect it
    counter = actor_system.spawn(Counter, name="counter")
    for _ in range(3):
        counter.tell("add")
    assert await counter.ask("count") == 3
"""


def test_an_unexpected_injected_fault_fails_the_test_with_a_useful_report(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\ntrio_mode = true\n")
    pytester.makepyfile(test_inner=INNER_UNEXPECTED_FAULT)
    result = pytester.runpytest("-p", "no:cacheprovider", "--actors-trace-dir", "traces")
    result.assert_outcomes(failed=1)
    # The assertion shows the wrong count; the trace shows why: the crash on the second
    # message and the restart that lost the first count.
    result.stdout.fnmatch_lines(
        [
            "*assert 1 == 3*",
            "*- trio-actors trace -*",
            "*send        /user/counter  'add'",
            "*crash       /user/counter  'add'",
            "*send        /user/counter  'add'",
            "*restarted   /user/counter  InjectedFault(*crashed on purpose*",
        ]
    )
