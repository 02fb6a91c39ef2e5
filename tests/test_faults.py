"""Fault injection at delivery and in actors (``actors.testing.FaultInjector``), and the
message trace."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
import actors.routing
import supervision as sv
from actors import ActorRestarted, DeadLetter, DeadLetterReason
from actors.testing._faults import ActorKilled, FaultInjector, InjectedFault
from actors.testing._trace import MessageTrace


@attrs.frozen
class Job:
    n: int


class Collector(actors.Actor):
    """Records the jobs it gets; answers "seen" with them."""

    def __init__(self, log: list[Any] | None = None) -> None:
        self.seen: list[int] = []
        self.log = log if log is not None else []

    def receive(self, message: Any) -> Any:
        if isinstance(message, Job):
            self.seen.append(message.n)
            return message.n
        if message == "seen":
            return list(self.seen)
        self.unhandled(message)
        return None

    def pre_restart(self, error: BaseException, message: Any) -> None:
        self.log.append(("pre_restart", type(error).__name__))

    def post_stop(self) -> None:
        self.log.append(("post_stop",))


class Events(actors.Actor):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.append(message)


async def test_drop_the_nth_message_to_one_actor() -> None:
    dead: list[DeadLetter] = []
    async with actors.open_system() as system:
        system.events.subscribe(system.spawn(Events, dead), DeadLetter)
        faults = FaultInjector(seed=1).install(system)
        rule = faults.drop(to="worker-2", nth=3)
        one = system.spawn(Collector, name="worker-1")
        two = system.spawn(Collector, name="worker-2")
        for n in range(1, 6):
            one.tell(Job(n))
            two.tell(Job(n))
        assert await one.ask("seen") == [1, 2, 3, 4, 5]
        assert await two.ask("seen") == [1, 2, 4, 5]
        await trio.testing.wait_all_tasks_blocked()
    assert (rule.seen, rule.fired) == (6, 1)  # five jobs and the "seen" ask matched
    assert [(d.message, d.reason) for d in dead] == [(Job(3), DeadLetterReason.FAULT_DROPPED)]
    assert [(i.kind, i.recipient, i.message) for i in faults.injected] == [
        ("drop", "/user/worker-2", Job(3))
    ]


async def test_the_same_seed_gives_the_same_schedule() -> None:
    async def run(seed: int) -> list[int]:
        async with actors.open_system() as system:
            faults = FaultInjector(seed=seed).install(system)
            faults.drop(type=Job, probability=0.3)
            worker = system.spawn(Collector)
            for n in range(100):
                worker.tell(Job(n))
            seen: list[int] = await worker.ask("seen")
            return seen

    first, again, other = await run(7), await run(7), await run(8)
    assert first == again
    assert 50 < len(first) < 90  # about 70 of 100 arrive
    assert first != other


async def test_delay_duplicate_and_reorder(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system() as system:
        faults = FaultInjector(seed=1).install(system)
        faults.delay(5.0, where=lambda m: m == Job(1))
        faults.duplicate(2, where=lambda m: m == Job(2))
        faults.reorder(where=lambda m: m == Job(3))
        worker = system.spawn(Collector)
        start = trio.current_time()
        for n in (1, 2, 3, 4):
            worker.tell(Job(n))
        assert await worker.ask("seen") == [2, 2, 2, 4, 3]
        await trio.sleep(4.9)
        assert await worker.ask("seen") == [2, 2, 2, 4, 3]
        await trio.sleep(0.2)
        assert await worker.ask("seen") == [2, 2, 2, 4, 3, 1]
        assert trio.current_time() - start == pytest.approx(5.1)


async def test_a_held_message_goes_after_a_while_and_delayed_ones_are_not_lost(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system() as system:
        faults = FaultInjector(seed=1).install(system)
        faults.reorder(within=2.0, type=Job, nth=1)
        faults.delay(60.0, type=Job, nth=2)
        worker = system.spawn(Collector, name="w")
        worker.tell(Job(1))  # held
        await trio.sleep(2.5)  # nothing else came: released after 2 s
        assert await worker.ask("seen") == [1]
        worker.tell(Job(2))  # delayed past the end of the system
        before = system.dead_letter_count
    # Leaving the block released it into the stopped actor: a dead letter, not silence.
    assert system.dead_letter_count == before + 1
    assert trio.current_time() < 60


async def test_crash_on_the_nth_message_is_a_failure_the_supervisor_handles() -> None:
    restarted: list[Any] = []
    log: list[Any] = []
    async with actors.open_system() as system:
        system.events.subscribe(system.spawn(Events, restarted), ActorRestarted)
        faults = FaultInjector(seed=3).install(system)
        faults.crash(to="w", type=Job, nth=2)
        worker = system.spawn(Collector, log, name="w")
        assert await worker.ask(Job(1)) == 1
        with pytest.raises(InjectedFault, match="crashed on purpose"):
            await worker.ask(Job(2))
        assert await worker.ask(Job(3)) == 3
        assert await worker.ask("seen") == [3]  # a new instance after the restart
    assert [type(e.error) for e in restarted if e.ref == worker] == [InjectedFault]
    assert log[0] == ("pre_restart", "InjectedFault")


async def test_a_hang_makes_asks_time_out_and_ends_at_the_stop_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[Any] = []
    dead: list[DeadLetter] = []
    async with actors.open_system(stop_timeout=2.0) as system:
        system.events.subscribe(system.spawn(Events, dead), DeadLetter)
        faults = FaultInjector(seed=1).install(system)
        faults.hang(to="w", where=lambda m: m == Job(1))
        faults.hang(4.0, to="w", where=lambda m: m == Job(2))
        worker = system.spawn(Collector, log, name="w")
        with pytest.raises(actors.AskTimeout):
            await worker.ask(Job(1), timeout=1.0)
        start = trio.current_time()
        await system.graceful_stop(worker)
        assert trio.current_time() - start == pytest.approx(2.0)  # the stop deadline
    assert log == [("post_stop",)]
    # The asker had given up; the stop ended the hang: the message is a dead letter.
    assert [d.reason for d in dead if d.message == Job(1)] == [DeadLetterReason.STOPPED]


async def test_a_finite_hang_delays_the_message(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system() as system:
        faults = FaultInjector(seed=1).install(system)
        faults.hang(4.0, type=Job, nth=1)
        worker = system.spawn(Collector)
        start = trio.current_time()
        assert await worker.ask(Job(1), timeout=10) == 1
        assert trio.current_time() - start == pytest.approx(4.0)


async def test_kill_fails_the_actor_without_its_hooks_and_cancels_its_handler() -> None:
    log: list[Any] = []
    entered = trio.Event()

    class Slow(Collector):
        async def receive(self, message: Any) -> Any:
            if message == "block":
                entered.set()
                await trio.sleep_forever()
            return super().receive(message)

    restarted: list[Any] = []
    async with actors.open_system() as system:
        system.events.subscribe(system.spawn(Events, restarted), ActorRestarted)
        faults = FaultInjector(seed=1).install(system)
        worker = system.spawn(Slow, log, name="w")
        await worker.ask(Job(1))
        faults.kill(worker)  # idle
        assert await worker.ask("seen") == []  # restarted: a fresh instance
        async with trio.open_nursery() as nursery:

            async def ask_block() -> None:
                with pytest.raises(ActorKilled):
                    await worker.ask("block")

            nursery.start_soon(ask_block)
            await entered.wait()
            faults.kill(worker)  # in the middle of a handler
        assert await worker.ask(Job(2)) == 2
    assert [type(e.error) for e in restarted if e.ref == worker] == [ActorKilled, ActorKilled]
    assert log == [("post_stop",)]  # no pre_restart for the killed ones; post_stop at the end


async def test_crash_in_pre_start_counts_towards_restart_intensity() -> None:
    strategy = sv.OneForOne(intensity=sv.RestartIntensity(max_restarts=2, within=60))
    async with actors.open_system(guardian_strategy=strategy) as system:
        faults = FaultInjector(seed=1).install(system)
        worker = system.spawn(faults.crash_in_pre_start(Collector, times=2), name="w")
        assert await worker.ask(Job(5)) == 5  # started on the third try
    assert [i.kind for i in faults.injected] == ["pre_start", "pre_start"]

    async def three_failures() -> None:
        async with actors.open_system(guardian_strategy=strategy) as system:
            faults = FaultInjector(seed=1).install(system)
            system.spawn(faults.crash_in_pre_start(Collector, times=3), name="w")
            await trio.sleep_forever()

    with pytest.raises(actors.UnhandledFailure):
        await three_failures()


async def test_through_a_router_drop_the_third_message_to_one_routee() -> None:
    async with actors.open_system() as system:
        faults = FaultInjector(seed=1).install(system)
        faults.drop(to="/user/pool/*1", type=Job, nth=3)
        pool = system.spawn(
            actors.routing.Router,
            actors.routing.RoundRobinRouting(),
            pool=Collector,
            size=2,
            name="pool",
        )
        for n in range(12):
            pool.tell(Job(n))
        routees = await pool.ask(actors.routing.GetRoutees())
        seen = {ref.name: await ref.ask("seen") for ref in routees}
    assert sorted(n for jobs in seen.values() for n in jobs) != list(range(12))
    [(name, jobs)] = [(name, jobs) for name, jobs in seen.items() if name.endswith("1")]
    [other] = [jobs for n, jobs in seen.items() if n != name]
    assert len(other) == 6
    expected = sorted(set(range(12)) - set(other))  # what round-robin gave this routee
    assert jobs == expected[:2] + expected[3:]  # all but its third


async def test_uninstall_delivers_what_is_held_and_stops_injecting() -> None:
    async with actors.open_system() as system:
        faults = FaultInjector(seed=1).install(system)
        faults.delay(100.0, type=Job)
        worker = system.spawn(Collector)
        worker.tell(Job(1))
        faults.uninstall()
        worker.tell(Job(2))
        assert await worker.ask("seen") == [1, 2]
        assert faults not in system._delivery_hooks


def test_rules_check_their_arguments() -> None:
    faults = FaultInjector(seed=1)
    with pytest.raises(ValueError, match="nth"):
        faults.drop(nth=0)
    with pytest.raises(ValueError, match="probability"):
        faults.drop(probability=1.5)
    with pytest.raises(ValueError, match="delay"):
        faults.delay(-1)
    faults.uninstall()  # not installed: nothing to do
    with pytest.raises(RuntimeError, match="not installed"):
        faults._require_system()


# -- the trace ----------------------------------------------------------------------------


async def test_the_trace_shows_the_flow_faults_and_failures() -> None:
    async with actors.open_system() as system:
        faults = FaultInjector(seed=1).install(system)
        trace = MessageTrace.attach(faults)
        faults.drop(type=Job, nth=2)
        faults.crash(type=Job, nth=3)
        worker = system.spawn(Collector, name="w")
        for n in range(1, 5):
            worker.tell(Job(n))
        for _ in range(30):
            worker.tell("noise")
        assert await worker.ask("seen") == [4]  # the instance after the crash
        await trio.testing.wait_all_tasks_blocked()
    text = trace.to_text()
    lines = [line.split(None, 1)[1] for line in text.splitlines()]
    assert lines[:4] == [
        "send        /user/w  Job(n=1)",
        "drop        /user/w  Job(n=2)",
        "crash       /user/w  Job(n=3)",
        "send        /user/w  Job(n=4)",
    ]
    assert "send        /user/w  'noise' x30" in lines
    assert any(line.startswith("dead-letter /user/w  Job(n=2) (fault_dropped)") for line in lines)
    assert any(line.startswith("restarted   /user/w  InjectedFault(") for line in lines)
    mermaid = trace.to_mermaid()
    assert mermaid.startswith("sequenceDiagram\n")
    assert "participant A0 as /user/w" in mermaid
    assert "Note over A0: drop Job(n=2)" in mermaid
    short = trace.to_text(limit=4)
    assert "more entries" in short
    assert len(short.splitlines()) == 5
