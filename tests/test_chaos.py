"""The chaos runner: seeds, fault models, invariants, replay."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
from actors.testing._chaos import ChaosFailure, FaultModel, run_chaos
from actors.testing._faults import FaultInjector


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
