"""The chaos runner: one scenario under many seeds of random faults, with invariants.

:func:`run_chaos` runs ``scenario`` once per seed, each time in a fresh actor system with
a :class:`FaultInjector` seeded with that seed and loaded with the random faults of a
:class:`FaultModel`, then checks every invariant on what the scenario returned. The
first run that fails (the scenario raised, or an invariant did not hold) raises
:class:`ChaosFailure`, which names the seed and holds the run's message trace; running
the scenario again with only that seed replays the same schedule.

Replaying depends on the run being deterministic apart from the seed: the faults are
drawn from the injector's seeded random source in delivery order, and for the duration
of each run trio's own scheduler (which shuffles tasks that wake together) is seeded
from the same seed. Run it under trio's virtual clock (``autojump_clock``), and keep the
scenario free of wall-clock time and real I/O.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

import attrs
import trio

from .._system import ActorSystem, open_system
from ._faults import FaultInjector, Target
from ._trace import MessageTrace

_T = TypeVar("_T")


@attrs.frozen
class FaultModel:
    """The random faults of a chaos run: for each message that matches ``to``, ``type``
    and ``where``, the probability of each fault (tried in this order: drop, crash,
    delay, duplicate, reorder; at most one applies). A delay is one of ten steps up to
    ``max_delay`` seconds of trio's clock, drawn from the seed too; a crash makes the
    recipient fail with :class:`InjectedFault`."""

    drop: float = 0.0
    crash: float = 0.0
    delay: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    max_delay: float = 1.0
    to: Target = None
    type: type | tuple[type, ...] | None = None
    where: Callable[[Any], bool] | None = None

    def install(self, faults: FaultInjector) -> None:
        """Add this model's rules to ``faults``."""
        to, kind, where = self.to, self.type, self.where
        if self.drop:
            faults.drop(probability=self.drop, to=to, type=kind, where=where)
        if self.crash:
            faults.crash(probability=self.crash, to=to, type=kind, where=where)
        if self.delay:
            # Ten rules of growing delays, each firing on a tenth of the messages: the
            # delay itself comes from the seed too.
            steps = 10
            for step in range(1, steps + 1):
                share = self.delay / steps / (1 - self.delay * (step - 1) / steps)
                seconds = self.max_delay * step / steps
                faults.delay(seconds, probability=share, to=to, type=kind, where=where)
        if self.duplicate:
            faults.duplicate(probability=self.duplicate, to=to, type=kind, where=where)
        if self.reorder:
            faults.reorder(probability=self.reorder, to=to, type=kind, where=where)


class ChaosFailure(AssertionError):
    """A chaos run failed: ``seed`` replays it, ``trace`` is its message flow,
    ``injected`` what the injector did; the original error is the ``__cause__``."""

    def __init__(self, seed: int, trace: MessageTrace | None, detail: str) -> None:
        text = f"chaos run with seed {seed} failed: {detail}\nreplay it with seeds=[{seed}]" + (
            "" if trace is None else "\n--- message trace ---\n" + trace.to_text(limit=80)
        )
        super().__init__(text)
        self.seed = seed
        self.trace = trace


@attrs.frozen
class ChaosRun(Generic[_T]):
    """The outcome of one seed: what the scenario returned and what was injected."""

    seed: int
    result: _T
    injected: int
    trace: MessageTrace


@contextmanager
def seeded_scheduler(seed: int) -> Iterator[None]:
    """Seed trio's scheduler (it shuffles tasks woken together) until the block ends,
    then put its random state back."""
    from trio._core import _run  # private, but the only way to replay a schedule

    rng = getattr(_run, "_r", None)
    if rng is None:  # pragma: no cover - a future trio without it
        yield
        return
    state = rng.getstate()
    rng.seed(seed)
    try:
        yield
    finally:
        rng.setstate(state)


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
    ``lambda: {"extensions": [Persistence(InMemoryJournal())]}``), installs a
    :class:`FaultInjector` with the seed and ``faults`` (the scenario may add rules of
    its own), traces it, awaits the scenario within ``timeout`` seconds of trio's clock,
    leaves the system (so that its shutdown is part of the run), and calls each
    invariant with the scenario's result: an invariant fails by raising
    ``AssertionError`` or returning ``False``.

    Raises :class:`ChaosFailure` for the first run that fails, with the seed, the
    trace and the cause.
    """
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    runs: list[ChaosRun[_T]] = []
    for seed in seed_list:
        injector = FaultInjector(seed)
        trace: MessageTrace | None = None
        with seeded_scheduler(seed):
            try:
                with trio.fail_after(timeout):
                    options = dict(system_options)
                    if per_run is not None:
                        options.update(per_run())
                    async with open_system(f"chaos-{seed}", **options) as system:
                        injector.install(system)
                        trace = MessageTrace.attach(injector)
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
