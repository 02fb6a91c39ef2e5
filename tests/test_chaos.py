"""The chaos runner: seeds, fault models, invariants, replay."""

from __future__ import annotations

import random
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from trio._core import _run as trio_run_module

import actors
import supervision as sv
from actors.testing._chaos import ChaosFailure, FaultModel, run_chaos
from actors.testing._faults import FaultInjector, Injection


@attrs.frozen
class Add:
    n: int


class Counter(actors.Actor):
    def __init__(self) -> None:
        self.total = 0
        self.count = 0

    def receive(self, message: Any) -> Any:
        if isinstance(message, Add):
            self.total += message.n
            self.count += 1
            return None
        return (self.count, self.total)


async def add_fifty(system: actors.ActorSystem, faults: FaultInjector) -> tuple[int, int]:
    counter = system.spawn(Counter, name="counter")
    for n in range(50):
        counter.tell(Add(n))
    await trio.sleep(5)  # let delayed messages land (virtual time)
    result: tuple[int, int] = await counter.ask("total", timeout=30)
    return result


def at_most_fifty(result: tuple[int, int]) -> None:
    count, _ = result
    assert count <= 50, f"{count} additions from 50 messages"


def none_lost(result: tuple[int, int]) -> bool:
    return result[0] == 50


async def test_runs_each_seed_and_checks_the_invariants(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model = FaultModel(drop=0.1, delay=0.2, max_delay=2.0, type=Add)
    runs = await run_chaos(add_fifty, seeds=5, faults=model, invariants=[at_most_fifty])
    assert [run.seed for run in runs] == [0, 1, 2, 3, 4]
    assert all(run.injected > 0 for run in runs)
    assert all(run.result[0] < 50 for run in runs)  # some drops in each run


async def test_a_failing_seed_is_named_and_replays_the_same_schedule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    model = FaultModel(drop=0.05, duplicate=0.05, reorder=0.1, type=Add)
    with pytest.raises(ChaosFailure) as caught:
        await run_chaos(add_fifty, seeds=range(10, 20), faults=model, invariants=[none_lost])
    failure = caught.value
    assert f"seed {failure.seed} failed: invariant none_lost returned False" in str(failure)
    assert f"seeds=[{failure.seed}]" in str(failure)
    assert failure.trace is not None
    assert "--- message trace ---" in str(failure)
    with pytest.raises(ChaosFailure) as again:
        await run_chaos(add_fifty, seeds=[failure.seed], faults=model, invariants=[none_lost])
    assert again.value.seed == failure.seed
    assert again.value.trace is not None
    assert again.value.trace.to_text() == failure.trace.to_text()


async def test_a_crashing_scenario_is_a_failure_with_its_cause(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def asks(system: actors.ActorSystem, faults: FaultInjector) -> int:
        counter = system.spawn(Counter)
        faults.crash(to=counter, nth=1)
        await counter.ask("total")
        return 0

    with pytest.raises(ChaosFailure, match="seed 3 failed: InjectedFault") as caught:
        await run_chaos(asks, seeds=[3])
    assert "crash" in str(caught.value)


async def test_a_scenario_that_hangs_times_out(autojump_clock: trio.testing.MockClock) -> None:
    async def forever(system: actors.ActorSystem, faults: FaultInjector) -> None:
        await trio.sleep_forever()

    with pytest.raises(ChaosFailure, match="did not finish within 30 s"):
        await run_chaos(forever, seeds=[1], timeout=30)


# -- exact replay ---------------------------------------------------------------------------


@attrs.frozen
class Work:
    n: int
    report_to: actors.ActorRef  # its repr (with the uid) shows in the trace


class Tally(actors.Actor):
    def __init__(self) -> None:
        self.reports: list[tuple[str, int]] = []

    def receive(self, message: Any) -> Any:
        if message == "reports":
            return list(self.reports)
        self.reports.append(message)
        return None


class Busy(actors.Actor):
    """Takes a while over some of its work (so that kills find it busy), then reports."""

    async def receive(self, message: Work) -> None:
        await trio.sleep(0.05 * (message.n % 3))
        message.report_to.tell((self.context.ref.name, message.n))


async def busy_workers(system: actors.ActorSystem, faults: FaultInjector) -> list[tuple[str, int]]:
    tally = system.spawn(Tally, name="tally")
    workers = [system.spawn(Busy, name=f"w{i}") for i in range(3)]
    rng = random.Random(faults.seed)
    for n in range(60):
        workers[n % 3].tell(Work(n, tally))
        if n % 6 == 5:
            await trio.sleep(rng.choice((0.1, 0.2, 0.3)))
        if n in (20, 40):
            faults.kill(workers[n // 20])
    await trio.sleep(3)
    faults.heal()
    await trio.sleep(3)
    reports: list[tuple[str, int]] = await tally.ask("reports", timeout=30)
    return reports


EVERY_FAULT = FaultModel(
    drop=0.05, crash=0.05, delay=0.2, duplicate=0.05, reorder=0.1, max_delay=1.0, type=Work
)
# Restarts wait a jittered backoff: the jitter comes from the system's random source.
JITTERY = sv.OneForOne(
    intensity=sv.RestartIntensity(max_restarts=1000, within=1.0),
    backoff=sv.Backoff(min_delay=0.05, max_delay=0.5, jitter=0.5),
)


async def test_a_seed_replays_alone_exactly_as_it_ran_in_the_batch(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As in a plain trio.run: the scheduler breaks ties by memory address (pytest loads
    # Hypothesis, whose plugin turns trio's deterministic mode on for the session).
    monkeypatch.setattr(trio_run_module, "_ALLOW_DETERMINISTIC_SCHEDULING", False)
    injections: list[list[Injection]] = []

    async def scenario(system: actors.ActorSystem, faults: FaultInjector) -> list[Any]:
        injections.append(faults.injected)
        return await busy_workers(system, faults)

    batch = await run_chaos(
        scenario, seeds=range(100, 106), faults=EVERY_FAULT, guardian_strategy=JITTERY
    )
    in_batch = list(injections)
    kinds = {entry.kind for run in batch for entry in run.trace.entries}
    assert {"drop", "crash", "delay", "duplicate", "reorder", "kill", "restarted"} <= kinds
    for index, run in enumerate(batch[1:], start=1):
        [alone] = await run_chaos(
            scenario, seeds=[run.seed], faults=EVERY_FAULT, guardian_strategy=JITTERY
        )
        assert alone.result == run.result, f"seed {run.seed}"
        assert alone.trace.entries == run.trace.entries, f"seed {run.seed}"  # times too
        assert injections[-1] == in_batch[index], f"seed {run.seed}"  # times too


async def test_each_run_starts_at_a_fresh_origin_of_the_virtual_clock(
    autojump_clock: trio.testing.MockClock,
) -> None:
    starts: list[float] = []

    async def note_the_time(system: actors.ActorSystem, faults: FaultInjector) -> None:
        starts.append(trio.current_time())
        assert faults.origin == starts[-1]
        await trio.sleep(1500)  # longer than the step between origins

    await run_chaos(note_the_time, seeds=3, timeout=2000)
    assert starts == [2.0**24, 2.0**24 + 2048, 2.0**24 + 4096]


async def test_the_clock_does_not_jump_past_a_deadline_of_the_caller(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.move_on_after(100) as scope:
        runs = await run_chaos(add_fifty, seeds=2, faults=FaultModel(delay=0.5, type=Add))
    assert not scope.cancelled_caught
    assert [run.result for run in runs] == [(50, 1225)] * 2
    assert trio.current_time() < 100
