"""pytest plugin of trio-actors (entry point ``pytest11``): fixtures for trio tests.

The async fixtures (``actor_system``, ``journal``, and ``probe`` and ``faults``, which
use ``actor_system``) need pytest-trio (``trio_mode = true``, or mark the test with
``@pytest.mark.trio``); a test that uses one without it fails at setup with a message
that says so. ``actors_seed``, ``actors_random`` and ``actor_failures`` are plain
fixtures that any test or fixture can use.

Every test also records the actor failures of the process while it runs
(:class:`~actors.testing.ActorFailures`) and fails if one was not expected, unless
the ini option ``trio_actors_fail_on_actor_failures`` is false.
"""

from __future__ import annotations

import inspect
import random
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from .. import _registry
from .._settings import Settings
from .._system import ActorSystem, open_system
from ..persistence import InMemoryJournal, Journal, Persistence, open_sqlite_journal
from ._chaos import seeded_scheduler
from ._failures import INI_OPTION, MARKER, ActorFailure, ActorFailures, describe
from ._faults import FaultInjector
from ._probe import TestProbe
from ._trace import MessageTrace

SEED_OPTION: Final = "--actors-seed"
SEED_SECTION: Final = "trio-actors seed"
JOURNAL_KINDS: Final = ("memory", "sqlite")

TRACE_OPTION: Final = "--actors-trace-dir"
TRACE_SECTION: Final = "trio-actors trace"
FAILURES_SECTION: Final = "trio-actors actor failures"

_seed_key = pytest.StashKey[int]()
_trace_key = pytest.StashKey[MessageTrace]()
_failures_key = pytest.StashKey[ActorFailures]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "trio_actors_roundtrip",
        "round-trip every message through cloudpickle in the actor_system fixture",
        type="bool",
        default=True,
    )
    parser.addini(
        INI_OPTION,
        "fail a test when an actor fails during it and the test did not declare the "
        f"failure expected (@pytest.mark.{MARKER}, or the actor_failures fixture)",
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
    config.addinivalue_line(
        "markers",
        f"{MARKER}(error=None, path=None, actor=None): actor failures this test expects "
        "(errors of this class or tuple of classes, of actors at this path or glob, of "
        "this Actor class; no arguments: any failure), which then do not fail it",
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
    failures = item.stash.get(_failures_key, None)
    if failures is not None and report.failed and report.when == "call" and _checking(item):
        # The test failed anyway: list the unexpected actor failures next to its error.
        unexpected = failures._take_unexpected()
        if unexpected:
            report.sections.append((FAILURES_SECTION, describe(unexpected)))
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


# -- async fixtures outside trio tests -----------------------------------------------------------

_TRIO_MODE_HELP: Final = """\
trio mode for the project, so that every async test runs under trio, in pytest.ini:

    [pytest]
    trio_mode = true

or in pyproject.toml:

    [tool.pytest.ini_options]
    trio_mode = true

or mark this test with @pytest.mark.trio."""

_ASYNC_FIXTURES: Final = ("actor_system", "journal", "probe", "faults")


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(
    fixturedef: pytest.FixtureDef[Any], request: pytest.FixtureRequest
) -> object | None:
    """Fail a test that uses one of our async fixtures outside trio (no trio mode, no
    trio marker, or a sync test) with a message that says what to change, instead of
    pytest's generic one about async fixtures."""
    func = getattr(fixturedef, "func", None)
    if getattr(func, "__module__", None) != __name__ or not (
        inspect.iscoroutinefunction(func) or inspect.isasyncgenfunction(func)
    ):
        return None  # not one of ours, or not async
    node = request.node
    if node.get_closest_marker("trio") is not None or node.get_closest_marker("anyio"):
        return None  # a trio test (pytest-trio), or one that anyio's plugin runs
    try:
        pytest.fail(_outside_trio(request, fixturedef.argname), pytrace=False)
    except pytest.fail.Exception as failure:
        # Cached as pytest caches a fixture that raised: the fixture is then reset after
        # this test, and fails the same way for the next one instead of tripping on
        # stale state.
        key = fixturedef.cache_key(request)  # type: ignore[arg-type]  # a SubRequest
        fixturedef.cached_result = (None, key, (failure, failure.__traceback__))
        raise


def _outside_trio(request: pytest.FixtureRequest, fixture: str) -> str:
    node = request.node
    test = getattr(node, "name", repr(node))
    info = getattr(node, "_fixtureinfo", None)
    requested = [name for name in getattr(info, "argnames", ()) if name in _ASYNC_FIXTURES]
    through = "" if not requested or fixture in requested else f" (through {requested[0]!r})"
    head = (
        f"{test!r} uses the trio-actors fixture {fixture!r}{through}, which is async and "
        "runs under pytest-trio, but this test does not run under trio."
    )
    function = getattr(node, "obj", None)
    if not request.config.pluginmanager.hasplugin("trio"):
        return (
            f"{head}\npytest-trio is not installed: install the test kit with "
            "pip install 'trio-actors[testkit]' (pytest and pytest-trio), then turn on "
            + _TRIO_MODE_HELP
        )
    if callable(function) and not inspect.iscoroutinefunction(function):
        if request.config.getini("trio_mode"):
            return f"{head}\nOnly an async test can use it: write 'async def {test}(...)'."
        return (
            f"{head}\nOnly an async test can use it: write 'async def {test}(...)', "
            "and turn on " + _TRIO_MODE_HELP
        )
    return f"{head}\nTurn on {_TRIO_MODE_HELP}"


# -- unexpected actor failures ------------------------------------------------------------------


def _checking(item: pytest.Item) -> bool:
    return bool(item.config.getini(INI_OPTION))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Record the actor failures of the process from the test's setup to its teardown."""
    failures = ActorFailures()
    item.stash[_failures_key] = failures
    _registry.failure_observers.append(failures._observe)
    bad: str | None = None
    for marker in item.iter_markers(MARKER):
        try:
            failures.expect(*marker.args, **marker.kwargs)
        except TypeError as error:
            bad = f"@pytest.mark.{MARKER}: {error}"
    result = yield  # bad markers fail the setup after it ran: other plugins rely on it
    if bad is not None:
        pytest.fail(bad, pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """A test that passed fails if an actor failed that it did not expect. (pytest-trio
    runs async fixtures inside the test's call, so their systems have shut down here.)"""
    result = yield
    failures = item.stash.get(_failures_key, None)
    if failures is not None and _checking(item):
        unexpected = failures._take_unexpected()
        if unexpected:
            pytest.fail(describe(unexpected), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """Stop recording; failures in the teardown of sync fixtures fail it too."""
    failures = item.stash.get(_failures_key, None)
    unexpected: list[ActorFailure] = []
    try:
        result = yield
    finally:
        if failures is not None:
            if failures._observe in _registry.failure_observers:
                _registry.failure_observers.remove(failures._observe)
            if _checking(item):
                unexpected = failures._take_unexpected()
            # The item lives until the session ends; the failures (errors, tracebacks,
            # their frames) need not.
            failures._release()
    if unexpected:
        pytest.fail(describe(unexpected), pytrace=False)
    return result


@pytest.fixture
def actor_failures(request: pytest.FixtureRequest) -> ActorFailures:
    """The actor failures of this test (:class:`~actors.testing.ActorFailures`): every
    actor that failed in any actor system while the test ran, in ``failures``; declare
    those the test expects with ``actor_failures.expect(ErrorClass, path=..., actor=...)``
    (or the marker ``@pytest.mark.expect_actor_failures(...)``). Unless the ini option
    ``trio_actors_fail_on_actor_failures`` is false, a failure nothing declared fails
    the test, with a report naming the actor, the message and the error."""
    failures: ActorFailures = request.node.stash[_failures_key]
    return failures


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
