"""A handler, hook or task that holds the trio thread is reported (docs/logging.md), and
blocking work in ``trio.to_thread.run_sync`` keeps the shutdown bound (docs/lifecycle.md).

The watchdog measures real time, so these tests block the thread for real (``time.sleep``
in a handler) with a small ``blocking_threshold``. What they assert does not depend on
the machine's speed: that the block is reported once, naming the actor, the message
type and the function, with a duration of at least most of the block (never an upper
bound). A report arrives on the trio thread once the block is over: the tests wait for
it with an event, not with a sleep.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from actors import Actor, Settings, open_system
from actors._watchdog import Step, _watchdogs, culprits

THRESHOLD = 0.05
BLOCK = 0.5
HINT = (
    "no other task, actor or timeout ran meanwhile (move blocking calls to trio.to_thread.run_sync)"
)


@attrs.frozen
class Nap:
    seconds: float


def line_of(marker: str) -> int:
    """The line of this file that ends with ``# <marker>``."""
    with open(__file__) as source:
        for number, line in enumerate(source, 1):
            if line.rstrip().endswith("# " + marker):
                return number
    raise AssertionError(marker)


class Sleeper(Actor):
    def receive(self, message: Any) -> Any:
        if isinstance(message, Nap):
            time.sleep(message.seconds)  # sync-sleep
            return "rested"
        return message


class AsyncSleeper(Actor):
    async def receive(self, message: Any) -> Any:
        await trio.lowlevel.checkpoint()
        time.sleep(message.seconds)  # noqa: ASYNC251 (on purpose)  # async-sleep
        return "rested"


class SlowStart(Actor):
    def pre_start(self) -> None:
        time.sleep(BLOCK)  # pre-start-sleep

    def receive(self, message: Any) -> Any:
        return message


class Reports:
    """The watchdog's records, and an event set by each (they are emitted on the trio
    thread, so the event may be a trio one)."""

    def __init__(self) -> None:
        self.records: list[logging.LogRecord] = []
        self.arrived = trio.Event()

    def about(self, path: str | None) -> list[logging.LogRecord]:
        return [r for r in self.records if r.actor_path == path]  # type: ignore[attr-defined]

    async def wait(self, path: str | None) -> logging.LogRecord:
        """The first report about ``path`` (``None``: a task that is no actor's)."""
        with trio.fail_after(30):
            while not self.about(path):
                self.arrived = trio.Event()
                await self.arrived.wait()
        return self.about(path)[0]


@pytest.fixture
async def reports() -> AsyncIterator[Reports]:
    found = Reports()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            found.records.append(record)
            found.arrived.set()

    handler = Collect()
    logger = logging.getLogger("actors.watchdog")
    logger.addHandler(handler)
    try:
        yield found
    finally:
        logger.removeHandler(handler)


def settings(threshold: float | None = THRESHOLD) -> Settings:
    return Settings(blocking_threshold=threshold)


# -- reports -------------------------------------------------------------------------------


async def test_a_sync_handler_that_blocks_is_reported(reports: Reports) -> None:
    async with open_system(settings=settings()) as system:
        ref = system.spawn(Sleeper, name="sleeper")
        # The ask's timeout cannot fire while the thread is held: the reply is in first.
        assert await ref.ask(Nap(BLOCK), timeout=BLOCK / 2) == "rested"
        record = await reports.wait("/user/sleeper")
        assert await ref.ask("more") == "more"
    [record] = reports.about("/user/sleeper")
    assert record.name == "actors.watchdog"
    assert record.levelno == logging.WARNING
    assert record.message_type == "Nap"  # type: ignore[attr-defined]
    duration: float = record.duration  # type: ignore[attr-defined]
    assert duration >= BLOCK - 0.1
    assert record.getMessage() == (
        f"/user/sleeper blocked the trio thread for {duration:.2f} s in Sleeper.receive "
        f"(test_slow_handlers.py:{line_of('sync-sleep')}) handling Nap; {HINT}"
    )


async def test_an_async_handler_that_blocks_between_checkpoints_is_reported(
    reports: Reports,
) -> None:
    async with open_system(settings=settings()) as system:
        ref = system.spawn(AsyncSleeper, name="sleeper")
        assert await ref.ask(Nap(BLOCK)) == "rested"
        record = await reports.wait("/user/sleeper")
    assert record.message_type == "Nap"  # type: ignore[attr-defined]
    assert record.duration >= BLOCK - 0.1  # type: ignore[attr-defined]
    assert f"in AsyncSleeper.receive (test_slow_handlers.py:{line_of('async-sleep')})" in (
        record.getMessage()
    )


async def test_a_hook_that_blocks_is_reported_without_a_message_type(
    reports: Reports,
) -> None:
    async with open_system(settings=settings()) as system:
        ref = system.spawn(SlowStart, name="slow-start")
        assert await ref.ask("up?") == "up?"
        record = await reports.wait("/user/slow-start")
    assert record.message_type is None  # type: ignore[attr-defined]
    assert record.duration >= BLOCK - 0.1  # type: ignore[attr-defined]
    assert record.getMessage().startswith("/user/slow-start blocked the trio thread for ")
    assert record.getMessage().endswith(
        f" s in SlowStart.pre_start (test_slow_handlers.py:{line_of('pre-start-sleep')}); " + HINT
    )


async def test_blocking_outside_any_actor_is_reported_without_an_actor(
    reports: Reports,
) -> None:
    async with open_system(settings=settings()):
        time.sleep(BLOCK)  # noqa: ASYNC251 (on purpose)  # own-task-sleep
        record = await reports.wait(None)
    task = trio.lowlevel.current_task().name
    duration: float = record.duration  # type: ignore[attr-defined]
    assert duration >= BLOCK - 0.1
    assert record.message_type is None  # type: ignore[attr-defined]
    assert record.task == task  # type: ignore[attr-defined]
    where = "test_blocking_outside_any_actor_is_reported_without_an_actor"
    assert record.getMessage() == (
        f"task {task!r} blocked the trio thread for {duration:.2f} s in {where} "
        f"(test_slow_handlers.py:{line_of('own-task-sleep')}); {HINT}"
    )


async def test_it_works_under_virtual_time(
    reports: Reports, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_system(settings=settings()) as system:
        ref = system.spawn(Sleeper, name="sleeper")
        start = trio.current_time()
        assert await ref.ask(Nap(BLOCK)) == "rested"
        assert trio.current_time() == start  # real time passed, not trio's
        # The ping waiting since the block runs as soon as trio looks at its I/O again.
        await trio.testing.wait_all_tasks_blocked()
        [record] = reports.about("/user/sleeper")
    assert record.duration >= BLOCK - 0.1  # type: ignore[attr-defined]


async def test_none_turns_it_off(reports: Reports) -> None:
    async with open_system(settings=settings(None)) as system:
        assert not any(t.name == "actors watchdog" for t in threading.enumerate())
        ref = system.spawn(Sleeper, name="sleeper")
        assert await ref.ask(Nap(0.2)) == "rested"
        await trio.testing.wait_all_tasks_blocked()
    assert reports.about("/user/sleeper") == []


# -- the watchdog's thread ---------------------------------------------------------------------


def watchdog_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "actors watchdog"]


async def test_one_thread_per_run_shared_by_systems_and_joined_with_the_last() -> None:
    before = watchdog_threads()
    token = trio.lowlevel.current_trio_token()
    async with open_system("a", settings=settings(0.2)):
        [thread] = [t for t in watchdog_threads() if t not in before]
        async with open_system("b", settings=settings(0.1)):
            assert [t for t in watchdog_threads() if t not in before] == [thread]
            assert _watchdogs[token].threshold == 0.1  # the smallest of the two
        assert _watchdogs[token].threshold == 0.2
        assert thread.is_alive()
    assert not thread.is_alive()  # stopped and joined when "a" closed
    assert token not in _watchdogs


# -- which step held the thread: the rules on samples -------------------------------------------


def step(task: int, points: int, where: str = "f (x.py:1)") -> Step:
    return Step((task, points), f"task {task}", None, None, where)


@pytest.mark.parametrize(
    ("samples", "expected"),
    [
        # One step seen throughout: held from the ping's posting to its run.
        ([(1.1, step(1, 0)), (1.12, step(1, 0))], [((1, 0), 0.5)]),
        # Seen once only, but alone: it is the one.
        ([(1.1, step(1, 0))], [((1, 0), 0.5)]),
        # Trio between steps (None) does not count.
        ([(1.1, step(1, 0)), (1.12, None), (1.14, step(1, 0))], [((1, 0), 0.5)]),
        # Two long steps of one task (its checkpoint came while the ping waited).
        (
            [(1.1, step(1, 0)), (1.12, step(1, 0)), (1.3, step(1, 1)), (1.32, step(1, 1))],
            [((1, 0), 0.3), ((1, 1), 0.2)],
        ),
        # Many short steps, each seen once: a busy stretch, nobody blocked.
        ([(1.1, step(1, 0)), (1.12, step(2, 0)), (1.14, step(3, 0))], []),
    ],
)
def test_which_steps_held_the_thread(
    samples: list[tuple[float, Step | None]], expected: list[tuple[tuple[int, int], float]]
) -> None:
    found = culprits(samples, posted=1.0, ended=1.5, threshold=0.1)
    assert [(s.key, round(d, 6)) for s, d in found] == expected


# -- settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, -1, "0.1", True])
def test_a_bad_threshold_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="blocking_threshold must be a number > 0") as info:
        Settings(blocking_threshold=value)
    assert str(info.value) == (
        f"blocking_threshold must be a number > 0 (seconds) or None (off), got {value!r}"
    )


def test_the_default_threshold_is_100_ms() -> None:
    assert Settings().blocking_threshold == 0.1


# -- blocking work in a thread, and the shutdown bound -------------------------------------------


class Offloads(Actor):
    """Runs blocking work in a worker thread, as docs/actors-and-messages.md shows."""

    def __init__(self, release: threading.Event, abandon: bool) -> None:
        self.release = release
        self.abandon = abandon

    async def receive(self, message: Any) -> Any:
        await trio.to_thread.run_sync(self.release.wait, abandon_on_cancel=self.abandon)
        return "done"


@pytest.fixture
def release() -> Iterator[threading.Event]:
    event = threading.Event()
    yield event
    event.set()  # the worker thread ends with the test


SHUTDOWN, STOP = 10.0, 2.0
BOUND = SHUTDOWN + 2 * STOP


async def test_abandon_on_cancel_keeps_the_shutdown_bound(
    autojump_clock: trio.testing.MockClock, release: threading.Event
) -> None:
    start = trio.current_time()
    async with open_system(shutdown_timeout=SHUTDOWN, stop_timeout=STOP) as system:
        system.spawn(Offloads, release, True, name="offloads").tell("work")
        await trio.testing.wait_all_tasks_blocked()
    assert trio.current_time() - start <= BOUND
    assert not release.is_set()  # the thread still runs: its result will be dropped


async def test_without_abandon_on_cancel_the_shutdown_waits_for_the_thread(
    autojump_clock: trio.testing.MockClock, release: threading.Event
) -> None:
    start = trio.current_time()
    closed_at: list[float] = []

    async def run_system() -> None:
        async with open_system(shutdown_timeout=SHUTDOWN, stop_timeout=STOP) as system:
            system.spawn(Offloads, release, False, name="offloads").tell("work")
            await trio.testing.wait_all_tasks_blocked()
        closed_at.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_system)
        await trio.sleep(BOUND + 60)
        assert closed_at == []  # still waiting for the worker thread, past the bound
        release.set()
    assert closed_at[0] - start >= BOUND + 60
