"""The watchdog of ``Settings.blocking_threshold``: it reports a handler, a hook or any
other task step that holds the trio thread too long (see ``docs/logging.md``).

trio runs every task of a run in one thread, and a task keeps that thread until it
reaches a checkpoint: a sync handler that calls ``time.sleep(2)`` stops every actor,
every timer and every timeout of the run for 2 s, and the timeouts fire only after.
Nothing inside the thread can notice that while it happens, so a thread watches from
outside, as asyncio's debug mode does for slow callbacks, without costing the actors'
hot path anything:

- one :class:`Watchdog` per trio run (shared by the systems open in it, started with the
  first and stopped, and its thread joined, when the last one closes) posts a *ping*
  to the trio thread (``TrioToken.run_sync_soon``) every ``threshold / 2`` seconds of
  real time, and waits for it to run;
- a ping still waiting after ``threshold`` means that the thread is held. The watchdog
  then *samples* the trio thread's stack (``sys._current_frames``) every
  ``threshold / 5``: which task step runs (trio's task and its step count), in which
  actor (the cell whose ``_run`` is on the stack, and the message in ``cell._current``)
  and in which function of the user's code;
- when the ping finally runs, on the trio thread, it knows how long the thread was held
  and logs one WARNING on ``actors.watchdog`` for each step that held it longer than
  ``threshold`` (see :func:`culprits`; a busy stretch of many short steps, one after
  another, is not reported: no step of it blocked).

The watchdog measures real time (``time.perf_counter``), whatever the clock of the run:
under trio's ``MockClock`` it reports what really blocks.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import threading
from time import perf_counter
from types import FrameType
from typing import TYPE_CHECKING, Final

import attrs
import trio

import supervision

from ._runtime_log import WARNING, watchdog_log

if TYPE_CHECKING:
    from ._system import ActorSystem

_HINT: Final = (
    "no other task, actor or timeout ran meanwhile (move blocking calls to trio.to_thread.run_sync)"
)


@attrs.frozen
class Step:
    """What one sample of the trio thread saw: the task step that held it."""

    key: tuple[int, int]
    """The trio task and how many steps it had taken: the same while one step runs."""
    task: str
    """The task's name (an actor's task is named by its path)."""
    actor_path: str | None
    """The actor whose task it is, or ``None`` for a task that is not an actor's."""
    message_type: str | None
    """The type of the message the actor was handling, or ``None`` (a hook)."""
    where: str
    """The innermost function of the application's own code (not the runtime's, trio's,
    the standard library's or an installed package's), with its current line:
    ``Slow.receive (slow.py:12)``; if there is none, the outermost function outside the
    runtime and trio."""


class _Ping:
    __slots__ = ("answered", "posted", "samples")

    def __init__(self) -> None:
        self.answered = threading.Event()
        self.posted = 0.0
        self.samples: list[tuple[float, Step | None]] = []


class Watchdog:
    """Watches the trio thread of one run; see the module's documentation."""

    def __init__(self, token: trio.lowlevel.TrioToken) -> None:
        self._token = token
        self._ident = threading.get_ident()  # (made in the trio thread)
        self.systems: list[ActorSystem] = []
        self.threshold = 0.1
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ping: _Ping | None = None
        self._thread = threading.Thread(target=self._watch, name="actors watchdog", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def started(self) -> bool:
        """Whether its thread was started (it may have stopped since)."""
        return self._thread.ident is not None

    def stop(self) -> None:
        """Stop the thread and join it (it wakes at once)."""
        with self._lock:
            self._stopping.set()
            ping = self._ping
        if ping is not None:
            ping.answered.set()
        self._thread.join(timeout=5.0)

    # -- the watchdog's thread -----------------------------------------------------------

    def _watch(self) -> None:
        stopping = self._stopping
        while not stopping.wait(self.threshold / 2):
            threshold = self.threshold
            ping = _Ping()
            with self._lock:
                if stopping.is_set():
                    return
                self._ping = ping
            ping.posted = perf_counter()
            try:
                self._token.run_sync_soon(self._answer, ping, threshold)
            except trio.RunFinishedError:
                return
            if ping.answered.wait(threshold):
                continue
            # Held for `threshold` already: see who holds it, until the ping runs.
            every = max(threshold / 5, 0.001)
            while True:
                try:
                    step = sample(self._ident)
                except Exception:  # (the other thread moved on under our feet)
                    step = None
                when = perf_counter()
                with self._lock:
                    if ping.answered.is_set():
                        break
                    ping.samples.append((when, step))
                if ping.answered.wait(every):
                    break

    # -- the trio thread -----------------------------------------------------------------

    def _answer(self, ping: _Ping, threshold: float) -> None:
        """The ping runs: the trio thread is free again. Report what held it."""
        held = perf_counter() - ping.posted
        with self._lock:
            ping.answered.set()
            samples = ping.samples
            if self._ping is ping:
                self._ping = None
        if not samples or held < threshold or self._stopping.is_set():
            return
        if watchdog_log.isEnabledFor(WARNING):
            # A run_sync_soon callback must not raise: that would crash the trio run.
            try:
                for step, duration in culprits(samples, ping.posted, ping.posted + held, threshold):
                    report(step, duration)
            except Exception:
                watchdog_log.exception("the watchdog could not report a blocked trio thread")


def culprits(
    samples: list[tuple[float, Step | None]], posted: float, ended: float, threshold: float
) -> list[tuple[Step, float]]:
    """The steps that held the thread while a ping waited from ``posted`` to
    ``ended``, each with how long it held it, from ``samples`` (taken every
    ``threshold / 5`` from ``posted + threshold`` on, each with its time).

    Consecutive samples of the same step make a segment. A segment lasted from the first
    sample of its own (for the first one: from ``posted``) to the first sample of the
    next (for the last one: to ``ended``). It is reported if that is at least
    ``threshold`` and it was seen twice, or it is the only one: a busy stretch of many
    short steps, each seen once, is not reported. Samples that saw no step (trio
    between two steps) do not count."""
    segments: list[tuple[float, Step, int]] = []  # (first seen, step, times seen)
    for when, step in samples:
        if step is None:
            continue
        if segments and segments[-1][1].key == step.key:
            first, _, seen = segments[-1]
            segments[-1] = (first, segments[-1][1], seen + 1)
        else:
            segments.append((when, step, 1))
    found = []
    for index, (first, step, seen) in enumerate(segments):
        start = posted if index == 0 else first
        end = segments[index + 1][0] if index + 1 < len(segments) else ended
        if end - start >= threshold and (seen > 1 or len(segments) == 1):
            found.append((step, end - start))
    return found


def report(step: Step, held: float) -> None:
    extra = {
        "actor_path": step.actor_path,
        "message_type": step.message_type,
        "duration": held,
        "task": step.task,
    }
    if step.actor_path is None:
        watchdog_log.warning(
            "task %r blocked the trio thread for %.2f s in %s; %s",
            step.task,
            held,
            step.where,
            _HINT,
            extra=extra,
        )
    else:
        watchdog_log.warning(
            "%s blocked the trio thread for %.2f s in %s%s; %s",
            step.actor_path,
            held,
            step.where,
            "" if step.message_type is None else " handling " + step.message_type,
            _HINT,
            extra=extra,
        )


# -- sampling ---------------------------------------------------------------------------------

_RUNTIME_DIRS: Final = tuple(
    os.path.dirname(path) + os.sep
    for path in (
        __file__,  # actors/ (with persistence/, routing/, testing/)
        supervision.__file__ or "",
        trio.__file__ or "",
    )
)
# Where the standard library and installed packages live: not the user's own code.
_LIBRARY_DIRS: Final = tuple(
    {
        os.path.join(path, "")
        for key in ("stdlib", "platstdlib", "purelib", "platlib")
        if (path := sysconfig.get_paths().get(key))
    }
)


def _runner_frame(frame: FrameType) -> bool:
    """Whether ``frame`` is trio's run loop, which runs one task step at a time."""
    return frame.f_code.co_name == "unrolled_run" and frame.f_globals.get("__name__") == (
        "trio._core._run"
    )


def sample(ident: int) -> Step | None:
    """What the thread ``ident`` (a trio thread) runs now: the task step, or ``None``
    when it runs no task (it waits for I/O, or trio is between steps)."""
    from ._cell import ActorCell
    from ._lifecycle import Lifecycle

    frame = sys._current_frames().get(ident)
    frames: list[FrameType] = []
    while frame is not None and not _runner_frame(frame):
        frames.append(frame)
        frame = frame.f_back
    if frame is None or not frames:
        return None
    task = frame.f_locals.get("task")
    root = frames[-1]
    if isinstance(task, trio.lowlevel.Task):
        key = (id(task), getattr(task, "_schedule_points", 0))
        name = task.name
    else:  # (another version of trio)
        key = (id(root), 0)
        name = root.f_code.co_qualname
    actor_path = message_type = None
    run = Lifecycle._run.__code__
    for candidate in frames:
        if candidate.f_code is run:
            cell = candidate.f_locals.get("self")
            if isinstance(cell, ActorCell):
                actor_path = cell.ref.path
                current = cell._current
                if current is not None:
                    message_type = type(current[0]).__qualname__
            break
    # The user's code: the innermost frame of the application; else (the blocking call is
    # in the runtime or a library, called by runtime code) the outermost frame outside
    # the runtime; else the innermost one.
    user = next(
        (f for f in frames if not f.f_code.co_filename.startswith(_RUNTIME_DIRS + _LIBRARY_DIRS)),
        None,
    ) or next(
        (f for f in reversed(frames) if not f.f_code.co_filename.startswith(_RUNTIME_DIRS)),
        frames[0],
    )
    code = user.f_code
    where = f"{code.co_qualname} ({os.path.basename(code.co_filename)}:{user.f_lineno})"
    return Step(key, name, actor_path, message_type, where)


# -- one watchdog per trio run ------------------------------------------------------------------

_watchdogs: dict[trio.lowlevel.TrioToken, Watchdog] = {}


def attach(system: ActorSystem) -> None:
    """Watch the trio thread of ``system`` while it is open (with its
    ``blocking_threshold``; the smallest one when several systems share a run). Called
    in the trio thread."""
    threshold = system.settings.blocking_threshold
    if threshold is None:
        return
    token = system._token
    watchdog = _watchdogs.get(token)
    if watchdog is None:
        watchdog = Watchdog(token)
        watchdog.threshold = threshold
        try:
            watchdog.start()
        except BaseException:  # (Ctrl-C landing while the thread starts)
            if watchdog.started:
                watchdog.stop()
            raise
        _watchdogs[token] = watchdog  # (only a started one: detach joins it)
        watchdog.systems.append(system)
        return
    watchdog.systems.append(system)
    watchdog.threshold = min(watchdog.threshold, threshold)


def detach(system: ActorSystem) -> None:
    """``system`` has closed: the last one of its run stops the watchdog and joins its
    thread."""
    watchdog = _watchdogs.get(system._token)
    if watchdog is None or system not in watchdog.systems:
        return
    watchdog.systems.remove(system)
    if watchdog.systems:
        thresholds = [s.settings.blocking_threshold for s in watchdog.systems]
        watchdog.threshold = min(t for t in thresholds if t is not None)
        return
    del _watchdogs[system._token]
    watchdog.stop()
