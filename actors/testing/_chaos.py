"""The chaos runner: one scenario under many seeds of random faults, with invariants.

:func:`run_chaos` runs ``scenario`` once per seed, each time in a fresh actor system with
a :class:`FaultInjector` seeded with that seed and loaded with the random faults of a
:class:`FaultModel`, then checks every invariant on what the scenario returned. The
first run that fails (the scenario raised, or an invariant did not hold) raises
:class:`ChaosFailure`, which names the seed and holds the run's message trace; running
the scenario again with only that seed replays the same run exactly.

What makes a run depend on its seed only, and not on the runs before it in the same
``trio.run``:

* the faults are drawn from the injector's random source, seeded with the seed, in
  delivery order; the system's own random source (restart jitter) is seeded with it,
  and so are the uids of the actors the scenario spawns;
* trio's scheduler, which shuffles the tasks that wake together, is seeded from it and
  put in trio's deterministic mode (tasks woken together are ordered by creation, not
  by memory addresses, before the seeded shuffle);
* under a ``MockClock`` that only moves by jumps (``autojump_clock``), each run starts
  at a fresh origin of trio's clock: the next multiple of 1024 s from ``2**24`` s on.
  Times on the clock are floats, whose rounding depends on their magnitude: a delayed
  message and a timeout that a run starting at 0 s would see at the same instant, a run
  starting at 37.3 s can see one after the other. At an origin of that form the clock
  reads the same to the last bit, relative to the origin, in every run (for the first
  16384 runs of a ``trio.run``). The clock does not jump past a deadline of the
  caller's; the runs then start where they are, and replay only approximately.

Keep the scenario free of wall-clock time, real I/O and tasks outside the system that
wake during the run.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final, Generic, TypeVar

import attrs
import trio
import trio.testing

from .._system import ActorSystem, open_system
from ._faults import FaultInjector
from ._rules import (
    Action,
    Crash,
    Delay,
    Drop,
    Duplicate,
    KillWorker,
    Match,
    MessageType,
    Reorder,
    Schedule,
    Target,
)
from ._trace import MessageTrace

_T = TypeVar("_T")

FIRST_ORIGIN: Final = 2.0**24
"""Where trio's virtual clock stands when the first chaos run of a ``trio.run`` starts."""
ORIGIN_STEP: Final = 2.0**10
"""Each later run starts at the next multiple of this many seconds."""


def _probability(_: object, field: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"FaultModel.{field.name} is a probability within [0, 1], got {value!r}")


@attrs.frozen
class FaultModel:
    """The random faults of a chaos run, for each message that matches ``to``, ``type``
    and ``where``: the probability of each fault, tried in this order (at most one
    applies to a message): drop, crash, delay, duplicate, reorder, kill_worker. A crash makes the
    recipient fail with :class:`InjectedFault`; a delay is one of ten steps up to
    ``max_delay`` seconds of trio's clock, the step drawn from the seed too."""

    drop: float = attrs.field(default=0.0, validator=_probability)
    """The chance that a message is dropped (a dead letter)."""
    crash: float = attrs.field(default=0.0, validator=_probability)
    """The chance that a message crashes its recipient when it reaches it."""
    delay: float = attrs.field(default=0.0, validator=_probability)
    """The chance that a message is delayed."""
    duplicate: float = attrs.field(default=0.0, validator=_probability)
    """The chance that a message is delivered twice."""
    reorder: float = attrs.field(default=0.0, validator=_probability)
    """The chance that a message is held back until the next one to its recipient."""
    kill_worker: float = attrs.field(default=0.0, validator=_probability)
    """The chance that a message to an actor on a worker process kills that process
    first (:class:`KillWorker`; with ``open_system(workers=...)`` in the runner's
    system options). Real processes run on real time: such runs replay the same faults
    for a seed, not the same timings."""
    max_delay: float = attrs.field(default=1.0, validator=attrs.validators.ge(0.0))
    """The longest delay, in seconds (``>= 0``)."""
    to: Target = None
    """The recipients concerned (see :class:`Match`); ``None``: every actor."""
    type: MessageType = None
    """The messages concerned, by class; ``None``: every message."""
    where: Callable[[Any], bool] | None = None
    """A predicate on the messages concerned."""

    def rules(self) -> list[tuple[Action, Schedule]]:
        """The actions and schedules of this model's rules, in the order they are tried."""
        rules: list[tuple[Action, Schedule]] = []
        if self.drop:
            rules.append((Drop(), Schedule(probability=self.drop)))
        if self.crash:
            rules.append((Crash(), Schedule(probability=self.crash)))
        if self.delay:
            # Ten rules of growing delays, each firing on a tenth of the messages: the
            # delay itself comes from the seed too.
            steps = 10
            for step in range(1, steps + 1):
                share = self.delay / steps / (1 - self.delay * (step - 1) / steps)
                seconds = self.max_delay * step / steps
                rules.append((Delay(seconds), Schedule(probability=min(share, 1.0))))
        if self.duplicate:
            rules.append((Duplicate(), Schedule(probability=self.duplicate)))
        if self.reorder:
            rules.append((Reorder(), Schedule(probability=self.reorder)))
        if self.kill_worker:
            rules.append((KillWorker(), Schedule(probability=self.kill_worker)))
        return rules

    def install(self, faults: FaultInjector) -> None:
        """Add this model's rules to ``faults``, after the rules it has."""
        match = Match(to=self.to, type=self.type, where=self.where)
        for action, schedule in self.rules():
            faults.add(action, match, schedule)


class ChaosFailure(AssertionError):
    """A chaos run failed: ``seed`` replays it, ``trace`` is its message flow (with what
    the injector did); the original error is the ``__cause__``."""

    def __init__(self, seed: int, trace: MessageTrace | None, detail: str) -> None:
        text = f"chaos run with seed {seed} failed: {detail}\nreplay it with seeds=[{seed}]" + (
            "" if trace is None else "\n--- message trace ---\n" + trace.to_text(limit=80)
        )
        super().__init__(text)
        self.seed = seed
        self.trace = trace


@attrs.frozen
class ChaosRun(Generic[_T]):
    """The outcome of one seed: what the scenario returned, how many faults were
    injected (kills included), and the run's message trace."""

    seed: int
    result: _T
    injected: int
    trace: MessageTrace


@contextmanager
def seeded_scheduler(seed: int) -> Iterator[None]:
    """Until the block ends, seed trio's scheduler (it shuffles tasks woken together)
    from ``seed`` and put it in its deterministic mode, which orders the tasks woken
    together by creation before shuffling them (otherwise the order of tasks whose
    deadlines expire together follows their cancel scopes' memory addresses); then put
    both back as they were."""
    from trio._core import _run  # private, but the only way to replay a schedule

    rng = getattr(_run, "_r", None)
    deterministic = getattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING", None)
    if rng is None or deterministic is None:  # pragma: no cover - a future trio without them
        yield
        return
    state = rng.getstate()
    rng.seed(f"trio-scheduler/{seed}")
    setattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING", True)  # noqa: B010 - a Final of trio's
    try:
        yield
    finally:
        setattr(_run, "_ALLOW_DETERMINISTIC_SCHEDULING", deterministic)  # noqa: B010
        rng.setstate(state)


def start_at_fresh_origin() -> None:
    """Move trio's clock forward to the next run origin (see the module documentation)
    if it is a ``MockClock`` that only moves by jumps and no deadline of the calling
    task comes before that origin; otherwise leave it alone."""
    clock = trio.lowlevel.current_clock()
    if not isinstance(clock, trio.testing.MockClock) or clock.rate != 0:
        return
    while True:
        now = trio.current_time()
        origin = max(FIRST_ORIGIN, math.ceil(now / ORIGIN_STEP) * ORIGIN_STEP)
        if origin == now or origin >= trio.current_effective_deadline():
            return
        # A jump lands on the origin, or (rounded) next to it: then once more, exactly.
        clock.jump(origin - now)


async def run_chaos(
    scenario: Callable[[ActorSystem, FaultInjector], Awaitable[_T]],
    *,
    seeds: int | Iterable[int] = 20,
    faults: FaultModel | None = None,
    invariants: Sequence[Callable[[_T], object]] = (),
    timeout: float = 600.0,
    per_run: Callable[[], Mapping[str, Any]] | None = None,
    **system_options: Any,
) -> list[ChaosRun[_T]]:
    """Run ``scenario(system, faults)`` once per seed (``seeds``: a count, meaning seeds
    0..n-1, or the seeds themselves) and return the runs.

    Each run opens its own system (``open_system(**system_options, **per_run())``:
    ``per_run`` makes what must be fresh for each run, such as
    ``lambda: {"extensions": [Persistence(InMemoryJournal())]}``; the system's ``seed``
    is the run's unless given), installs a :class:`FaultInjector` with the seed and
    ``faults`` (the scenario may add rules of its own), traces it, awaits the scenario
    within ``timeout`` seconds of trio's clock, leaves the system (so that its shutdown
    is part of the run), and calls each invariant with the scenario's result: an
    invariant fails by raising ``AssertionError`` or returning ``False``. Under
    ``autojump_clock`` each run starts at a fresh origin of trio's clock (see the module
    documentation), so that a seed replays alone exactly as it ran in the batch.

    Raises :class:`ChaosFailure` for the first run that fails, with the seed, the
    trace and the cause.
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    runs: list[ChaosRun[_T]] = []
    for seed in seed_list:
        injector = FaultInjector(seed)
        trace: MessageTrace | None = None
        start_at_fresh_origin()
        with seeded_scheduler(seed):
            try:
                with trio.fail_after(timeout):
                    options = dict(system_options)
                    if per_run is not None:
                        options.update(per_run())
                    settings = options.get("settings")
                    if options.get("seed") is None and getattr(settings, "seed", None) is None:
                        options["seed"] = seed
                    async with open_system(f"chaos-{seed}", **options) as system:
                        # The uids of the actors spawned from here on come from the seed.
                        system._uids.seed(f"chaos-uids/{seed}")
                        injector.install(system)
                        trace = MessageTrace.attach(injector)
                        injector.trace = trace
                        if faults is not None:
                            faults.install(injector)
                        result = await scenario(system, injector)
            except trio.TooSlowError as error:
                raise ChaosFailure(
                    seed, trace, f"the scenario did not finish within {timeout:g} s"
                ) from error
            except Exception as error:
                raise ChaosFailure(seed, trace, f"{type(error).__name__}: {error}") from error
        assert trace is not None
        for invariant in invariants:
            name = getattr(invariant, "__name__", repr(invariant))
            try:
                verdict = invariant(result)
            except AssertionError as error:
                raise ChaosFailure(seed, trace, f"invariant {name} failed: {error}") from error
            if verdict is False:
                raise ChaosFailure(seed, trace, f"invariant {name} returned False")
        runs.append(ChaosRun(seed, result, len(injector.injected), trace))
    return runs
