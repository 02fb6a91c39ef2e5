"""pytest plugin of trio-actors (entry point ``pytest11``): fixtures for trio tests.

The async fixtures (``actor_system``, ``probe``, ``journal``) need pytest-trio
(``trio_mode = true``, or mark the test with ``@pytest.mark.trio``); ``actors_seed``
and ``actors_random`` are plain fixtures that any test or fixture can use.
"""

from __future__ import annotations

import random
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from .._settings import Settings
from .._system import ActorSystem, open_system
from ..persistence import InMemoryJournal, Journal, Persistence, open_sqlite_journal
from ._chaos import seeded_scheduler
from ._faults import FaultInjector
from ._probe import TestProbe
from ._trace import MessageTrace

SEED_OPTION: Final = "--actors-seed"
SEED_SECTION: Final = "trio-actors seed"
JOURNAL_KINDS: Final = ("memory", "sqlite")

TRACE_OPTION: Final = "--actors-trace-dir"
TRACE_SECTION: Final = "trio-actors trace"

_seed_key = pytest.StashKey[int]()
_trace_key = pytest.StashKey[MessageTrace]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "trio_actors_roundtrip",
        "round-trip every message through cloudpickle in the actor_system fixture",
        type="bool",
        default=True,
    )
    group = parser.getgroup("trio-actors")
    group.addoption(
        SEED_OPTION,
        type=int,
        default=None,
        metavar="N",
        dest="actors_seed",
        help="the seed of every test's actors_seed fixture (default: a new random seed "
        "per test, shown in the report of a failed test)",
    )
    group.addoption(
        TRACE_OPTION,
        default=None,
        metavar="DIR",
        dest="actors_trace_dir",
        help="where the message trace of a failed test that used the faults fixture is "
        "written, as .txt and .mmd (default: next to the --junitxml report if given, "
        "else .actors-traces in the root directory)",
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "actor_system(**kwargs): keyword arguments of actors.open_system for the "
        "actor_system fixture, e.g. supervisor_strategy=... or guardian_strategy=...",
    )
    config.addinivalue_line(
        "markers",
        "journal(kind='memory', **options): the journal fixture's backend, 'memory' "
        "(InMemoryJournal) or 'sqlite' (open_sqlite_journal on a temporary file, with "
        "**options)",
    )


def pytest_report_header(config: pytest.Config) -> str | None:
    seed = config.getoption("actors_seed")
    if seed is None:
        return None
    return f"trio-actors: every test's actors_seed is {seed} ({SEED_OPTION} {seed})"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Any:  # a wrapper's result: the TestReport
    report = yield
    seed = item.stash.get(_seed_key, None)
    if seed is not None and report.failed:
        report.sections.append(
            (SEED_SECTION, f"{SEED_SECTION}: {seed} (replay with {SEED_OPTION} {seed})")
        )
    trace = item.stash.get(_trace_key, None)
    if trace is not None and report.failed and report.when == "call":
        text, mermaid = _write_trace(item, trace)
        report.sections.append(
            (
                TRACE_SECTION,
                f"message trace written to {text} and {mermaid}\n{trace.to_text(limit=40)}",
            )
        )
    return report


def _trace_dir(config: pytest.Config) -> Path:
    chosen = config.getoption("actors_trace_dir")
    if chosen:
        return Path(chosen)
    junit = config.getoption("xmlpath", None)
    if junit:
        return Path(junit).resolve().parent
    return config.rootpath / ".actors-traces"


def _write_trace(item: pytest.Item, trace: MessageTrace) -> tuple[Path, Path]:
    """Write ``trace`` as text and Mermaid, named after the test; return both paths."""
    folder = _trace_dir(item.config)
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid).strip("_")[:150]
    text, mermaid = folder / f"{stem}.trace.txt", folder / f"{stem}.trace.mmd"
    text.write_text(trace.to_text())
    mermaid.write_text(trace.to_mermaid())
    return text, mermaid


# -- seed and randomness ------------------------------------------------------------------------


@pytest.fixture
def actors_seed(request: pytest.FixtureRequest) -> Iterator[int]:
    """The seed of this test's randomness and fault injection: the ``--actors-seed``
    option if given (the same for every test), else a new random seed per test.

    A test that fails shows it in its report (section ``trio-actors seed``, with the
    option that replays it); it is also recorded as the user property
    ``trio_actors_seed`` (in JUnit XML). Other fixtures request it by name; derive an
    independent stream per purpose with a string seed, e.g.
    ``random.Random(f"{actors_seed}/faults")``. The ``actor_system`` fixture gives it to
    the system (``seed=``: restart jitter).

    For the duration of the test, trio's scheduler (which shuffles tasks that wake at
    the same time) is seeded with it too, so that a test on virtual time with no real
    I/O runs the same way again under the same seed."""
    option = request.config.getoption("actors_seed")
    seed = random.SystemRandom().randrange(2**32) if option is None else int(option)
    request.node.stash[_seed_key] = seed
    request.node.user_properties.append(("trio_actors_seed", seed))
    with seeded_scheduler(seed):
        yield seed


@pytest.fixture
def actors_random(actors_seed: int) -> random.Random:
    """A ``random.Random`` seeded with ``actors_seed``: the test's randomness replays
    with ``--actors-seed``."""
    return random.Random(actors_seed)


# -- journal ------------------------------------------------------------------------------------


@pytest.fixture
async def journal(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Journal]:
    """A fresh, empty journal for one test; the ``actor_system`` fixture uses it.

    ``InMemoryJournal`` by default. ``@pytest.mark.journal("sqlite", **options)`` asks
    for a SQLite journal on a new temporary file (``options`` go to
    ``open_sqlite_journal``), closed after the test; ``"memory"`` is the default kind.
    An indirect parameter chooses the kind too and takes precedence over the marker:
    ``@pytest.mark.parametrize("journal", ["memory", "sqlite"], indirect=True)`` runs
    the test on both. Do not combine the SQLite journal with ``autojump_clock``: while
    every task waits for one of its threads, the autojump clock jumps to the next
    deadline, so whatever waits on a write times out at once."""
    kind: Any = "memory"
    options: dict[str, Any] = {}
    marker = request.node.get_closest_marker("journal")
    if marker is not None:
        if len(marker.args) > 1:
            raise TypeError("@pytest.mark.journal takes one positional argument, the kind")
        kind = marker.args[0] if marker.args else "memory"
        options = dict(marker.kwargs)
    param = getattr(request, "param", None)
    if param is not None:
        kind, options = param, {}
    if kind == "memory":
        if options:
            raise TypeError(f"the in-memory journal takes no options, got {sorted(options)}")
        yield InMemoryJournal()
    elif kind == "sqlite":
        path = tmp_path_factory.mktemp("journal") / "journal.db"
        async with open_sqlite_journal(path, **options) as opened:
            yield opened
    else:
        raise ValueError(f"unknown journal kind {kind!r}: expected one of {JOURNAL_KINDS}")


# -- the system and its probe -------------------------------------------------------------------


@pytest.fixture
async def actor_system(
    request: pytest.FixtureRequest, journal: Journal, actors_seed: int
) -> AsyncIterator[ActorSystem]:
    """A running actor system for one test, shut down (in order) after it.

    Messages are round-tripped through cloudpickle (ini option ``trio_actors_roundtrip``,
    default true) so the test proves they could cross a process boundary. A failure that
    reaches the top of the supervision tree fails the test at teardown with
    ``UnhandledFailure``. The system's journal is the ``journal`` fixture (so persistent
    actors work; see there to choose SQLite) and its seed is ``actors_seed``.

    The marker ``@pytest.mark.actor_system(**kwargs)`` passes keyword arguments to
    ``open_system`` (the name stays ``"test"``), for instance a stop strategy to keep
    failing actors stopped instead of restarted::

        @pytest.mark.actor_system(
            guardian_strategy=supervision.OneForOne(lambda e: supervision.Directive.STOP)
        )

    A :class:`~actors.persistence.Persistence` among its ``extensions=`` replaces the
    journal fixture's, and its ``seed=`` the fixture's seed; so do those of a
    ``settings=`` it passes (a seed when it is not ``None``).
    """
    roundtrip = bool(request.config.getini("trio_actors_roundtrip"))
    options: dict[str, Any] = {"roundtrip_messages": roundtrip}
    marker = request.node.get_closest_marker("actor_system")
    if marker is not None:
        if marker.args:
            raise TypeError("@pytest.mark.actor_system takes keyword arguments only")
        options.update(marker.kwargs)
    settings = options.get("settings")
    if not isinstance(settings, Settings):
        settings = Settings()
    extensions = options.get("extensions", settings.extensions)
    if not any(isinstance(extension, Persistence) for extension in extensions):
        options["extensions"] = (*extensions, Persistence(journal))
    if settings.seed is None:
        options.setdefault("seed", actors_seed)
    async with open_system("test", **options) as system:
        yield system


@pytest.fixture
def faults(
    actor_system: ActorSystem, actors_seed: int, request: pytest.FixtureRequest
) -> FaultInjector:
    """A :class:`FaultInjector` seeded with ``actors_seed``, installed on the
    ``actor_system`` fixture's system, with a :class:`MessageTrace` attached
    (``faults.trace``). If the test fails, the trace is written as text and as a Mermaid
    diagram (see the ``--actors-trace-dir`` option) and shown in the report, next to the
    seed that replays the run (``--actors-seed``)."""
    injector = FaultInjector(actors_seed).install(actor_system)
    trace = MessageTrace.attach(injector)
    injector.trace = trace
    request.node.stash[_trace_key] = trace
    return injector


@pytest.fixture
def probe(actor_system: ActorSystem) -> TestProbe:
    """A :class:`TestProbe` in the ``actor_system`` fixture's system."""
    return TestProbe(actor_system)
