"""Fault injection at delivery and in actors (``actors.testing.FaultInjector``), and the
message trace."""

from __future__ import annotations

import contextlib
import random
import types
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
import actors.routing
import supervision as sv
from actors import ActorRestarted, DeadLetter, DeadLetterReason
from actors.testing import (
    ActorKilled,
    Crash,
    Delay,
    Duplicate,
    FaultInjector,
    FaultModel,
    Hang,
    InjectedFault,
    Match,
    MessageTrace,
    Reorder,
    Schedule,
    Selectors,
)


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
    # A failed start stops the actor by default: retrying it takes a decider that says so.
    strategy = sv.OneForOne(
        decider=sv.decider_from({actors.ActorInitializationError: sv.Directive.RESTART}),
        intensity=sv.RestartIntensity(max_restarts=2, within=60),
    )
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
    with pytest.raises(ValueError, match=r"Delay\(seconds=...\) must be a number of seconds >= 0"):
        faults.delay(-1)
    with pytest.raises(TypeError, match="unexpected selector"):
        faults.drop(nht=2)  # type: ignore[call-arg]
    assert faults.rules == []
    faults.uninstall()  # not installed: nothing to do
    with pytest.raises(RuntimeError, match="not installed"):
        faults._require_system()


@pytest.mark.parametrize(
    ("make", "error", "text"),
    [
        (lambda: Delay(float("nan")), ValueError, "seconds >= 0"),
        (lambda: Delay(True), ValueError, "seconds >= 0"),
        (lambda: Hang(0), ValueError, "seconds > 0"),
        (lambda: Reorder(-0.5), ValueError, "seconds >= 0"),
        (lambda: Duplicate(0), ValueError, "copies must be an int >= 1"),
        (lambda: Duplicate(1.5), ValueError, "copies must be an int >= 1"),  # type: ignore[arg-type]
        (lambda: Crash(InjectedFault), TypeError, "exception instance"),  # type: ignore[arg-type]
        (lambda: Schedule(nth=0), ValueError, "nth must be an int >= 1"),
        (lambda: Schedule(times=-1), ValueError, "times must be an int >= 0"),
        (lambda: Schedule(probability=-0.1), ValueError, "probability"),
        (lambda: Match(to=3), TypeError, "to must be a ref"),  # type: ignore[arg-type]
        (lambda: Match(type=()), TypeError, "type must be a class"),
        (lambda: Match(where="m > 1"), TypeError, "where must be a predicate"),  # type: ignore[arg-type]
        (lambda: FaultInjector(seed=1).add("drop"), TypeError, "one of Drop, Delay"),  # type: ignore[arg-type]
        (lambda: FaultModel(drop=2.0), ValueError, "FaultModel.drop is a probability"),
    ],
)
def test_each_part_of_a_rule_checks_its_own_arguments(
    make: Callable[[], object], error: type[Exception], text: str
) -> None:
    with pytest.raises(error, match=text):
        make()


def test_the_short_forms_build_a_match_a_schedule_and_an_action() -> None:
    faults = FaultInjector(seed=1)
    rule = faults.delay(2.5, to="w", type=Job, nth=2, probability=0.5)
    assert rule.action == Delay(2.5)
    assert rule.match == Match(to="w", type=Job)
    assert rule.schedule == Schedule(nth=2, probability=0.5)
    assert (rule.kind, rule.seen, rule.fired, rule.active) == ("delay", 0, 0, True)
    assert faults.reorder(within=3.0).action == Reorder(3.0)
    assert faults.hang().action == Hang()
    assert faults.crash().action == Crash()
    assert faults.duplicate(3, sender="/user/a").match == Match(sender="/user/a")
    # The keywords of the short forms are exactly the fields of Match and Schedule.
    fields = set(attrs.fields_dict(Match)) | set(attrs.fields_dict(Schedule))
    assert set(Selectors.__annotations__) == fields


async def test_add_applies_an_action_to_what_the_match_and_schedule_select(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system() as system:
        faults = FaultInjector(seed=1).install(system)
        even = Match(to="w", type=Job, where=lambda m: m.n % 2 == 0)
        late = faults.add(Delay(2.0), even, Schedule(times=2))
        worker = system.spawn(Collector, name="w")
        other = system.spawn(Collector, name="other")
        for n in range(1, 8):
            worker.tell(Job(n))
            other.tell(Job(n))
        await trio.sleep(1)
        assert await worker.ask("seen") == [1, 3, 5, 6, 7]  # the 2nd and the 4th are late
        await trio.sleep(2)
        assert await worker.ask("seen") == [1, 3, 5, 6, 7, 2, 4]
        assert await other.ask("seen") == list(range(1, 8))
    assert (late.seen, late.fired) == (3, 2)  # jobs 2, 4 and 6 matched
    assert [(i.kind, i.message, i.time) for i in faults.injected] == [
        ("delay", Job(2), 0.0),
        ("delay", Job(4), 0.0),
    ]


def test_what_actors_testing_exports_has_its_public_module() -> None:
    import actors.testing

    for name in actors.testing.__all__:
        value = getattr(actors.testing, name)
        if isinstance(value, type | types.FunctionType):
            assert value.__module__ == "actors.testing", name
            assert value.__qualname__ == name, name


# -- accounting under kills -------------------------------------------------------------------


class Lingering(actors.Actor):
    """Takes 0 to 3 ms of trio's clock over each number, then notes it as handled."""

    def __init__(self, handled: list[int]) -> None:
        self.handled = handled

    async def receive(self, message: int) -> None:
        await trio.sleep(0.001 * (message % 4))
        self.handled.append(message)  # no checkpoint after this: handled to completion


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_in_a_kill_storm_every_message_is_handled_or_a_dead_letter_exactly_once(
    seed: int, autojump_clock: trio.testing.MockClock
) -> None:
    rng = random.Random(seed)
    handled: list[int] = []
    events: list[Any] = []
    restart_always = sv.OneForOne(intensity=sv.RestartIntensity(max_restarts=10**6, within=1))
    kills_asked = 0
    async with actors.open_system(guardian_strategy=restart_always) as system:
        listener = system.spawn(Events, events)
        for kind in (DeadLetter, actors.ActorFailed):
            system.events.subscribe(listener, kind)
        faults = FaultInjector(seed=seed).install(system)
        workers = [system.spawn(Lingering, handled, name=f"w{i}") for i in range(5)]

        async def kill_at_random() -> None:
            nonlocal kills_asked
            for _ in range(400):
                await trio.sleep(rng.choice((0, 0.0005, 0.001, 0.002, 0.004)))
                target = rng.choice(workers)
                faults.kill(target)
                kills_asked += 1
                if rng.random() < 0.25:  # again at once: its failure is pending now
                    faults.kill(target)
                    kills_asked += 1

        async with trio.open_nursery() as nursery:
            nursery.start_soon(kill_at_random)
            for n in range(3000):
                workers[n % 5].tell(n)
                if n % 10 == 9:
                    await trio.sleep(0.001)
        await trio.sleep(10)  # no more kills: the workers finish what is queued
        await trio.testing.wait_all_tasks_blocked()
        assert all(worker.stats().mailbox == 0 for worker in workers)

        dead = [e.message for e in events if isinstance(e, DeadLetter)]
        assert sorted(handled + dead) == list(range(3000))  # each exactly once
        assert len(dead) > 100  # kills did cancel handlers: their tells are dead letters

        # Kills that merged into a pending failure (or a restart) are reported as such,
        # and only the others failed an actor.
        kinds = [i.kind for i in faults.injected]
        assert set(kinds) == {"kill", "kill_merged"}
        assert len(kinds) == kills_asked
        failures = [e for e in events if isinstance(e, actors.ActorFailed)]
        assert all(isinstance(e.error, ActorKilled) for e in failures)
        assert len(failures) == kinds.count("kill")
        assert kinds.count("kill_merged") >= 60  # at least every second kill of a pair


async def test_a_kill_that_merges_into_a_pending_failure_is_recorded_and_traced_apart() -> None:
    events: list[Any] = []
    async with actors.open_system() as system:
        faults = FaultInjector(seed=1).install(system)
        trace = MessageTrace.attach(faults)
        system.events.subscribe(system.spawn(Events, events), actors.ActorFailed)
        worker = system.spawn(Collector, name="w")
        await worker.ask("seen")
        assert faults.kill(worker)  # it fails...
        assert not faults.kill(worker)  # ...and this one merges into that failure
        assert await worker.ask("seen") == []  # restarted once
        assert faults.kill(worker)
        await trio.testing.wait_all_tasks_blocked()
    assert [i.kind for i in faults.injected] == ["kill", "kill_merged", "kill"]
    assert len([e for e in events if e.ref == worker]) == 2
    lines = [line.split(None, 1)[1] for line in trace.to_text().splitlines()]
    assert lines[1:3] == ["kill        /user/w", "kill_merged /user/w"]


# -- fault injection keeps mailbox semantics ------------------------------------------------


class Gated(actors.Actor):
    """Waits for the gate in its handler of "wait", so that what comes after queues up."""

    def __init__(self, gate: trio.Event, handled: list[Any]) -> None:
        self.gate = gate
        self.handled = handled

    async def receive(self, message: Any) -> Any:
        if message == "wait":
            await self.gate.wait()
        self.handled.append(message)
        return message


@attrs.define
class Bounded:
    """A gated actor with a mailbox of one place, busy with "wait", and what it saw."""

    system: actors.ActorSystem
    faults: FaultInjector
    ref: actors.ActorRef
    gate: trio.Event
    handled: list[Any]
    events: list[Any]

    def dead_letters(self) -> list[tuple[Any, DeadLetterReason]]:
        return [(e.message, e.reason) for e in self.events if isinstance(e, DeadLetter)]

    def failures(self) -> list[BaseException]:
        return [e.error for e in self.events if isinstance(e, actors.ActorFailed)]


@contextlib.asynccontextmanager
async def bounded(overflow: actors.Overflow) -> AsyncIterator[Bounded]:
    events: list[Any] = []
    async with actors.open_system() as system:
        listener = system.spawn(Events, events)
        for kind in (DeadLetter, actors.ActorFailed):
            system.events.subscribe(listener, kind)
        faults = FaultInjector(seed=1).install(system)
        gate = trio.Event()
        handled: list[Any] = []
        box = actors.Mailbox(capacity=1, overflow=overflow)
        ref = system.spawn(Gated, gate, handled, name="g", mailbox=box)
        ref.tell("wait")
        await trio.testing.wait_all_tasks_blocked()  # in its handler: the mailbox is empty
        yield Bounded(system, faults, ref, gate, handled, events)


@pytest.mark.parametrize("overflow", list(actors.Overflow))
@pytest.mark.parametrize("fault", ["delay", "duplicate", "reorder"])
async def test_released_messages_need_room_and_overflow_by_the_mailbox_policy(
    fault: str, overflow: actors.Overflow, autojump_clock: trio.testing.MockClock
) -> None:
    occupant: Any
    late: list[Any]
    async with bounded(overflow) as g:
        if fault == "delay":  # both delayed jobs come back to a full mailbox
            g.faults.delay(1.0, type=Job)
            g.ref.tell(Job(1))
            g.ref.tell(Job(2))
            g.ref.tell("a")  # takes the one place: the delayed jobs took none
            occupant, late = "a", [Job(1), Job(2)]
        elif fault == "duplicate":  # the job takes the place, its two copies find none
            g.faults.duplicate(2, type=Job)
            g.ref.tell(Job(1))
            occupant, late = Job(1), [Job(1), Job(1)]
        else:  # the held job comes after "a", which took the place
            g.faults.reorder(type=Job)
            g.ref.tell(Job(1))
            g.ref.tell("a")
            occupant, late = "a", [Job(1)]
        await trio.sleep(2)
        assert g.ref.stats().mailbox == 1
        g.gate.set()
        await trio.sleep(1)
        await trio.testing.wait_all_tasks_blocked()
        Reason = DeadLetterReason
        if overflow is actors.Overflow.DROP_OLDEST:  # each one evicts the oldest queued
            evicted = [occupant, *late[:-1]]
            assert g.dead_letters() == [(m, Reason.DROPPED_OLDEST) for m in evicted]
            assert g.handled == ["wait", late[-1]]
        elif overflow is actors.Overflow.FAIL:  # one failure, however many overflow
            assert g.dead_letters() == [(m, Reason.MAILBOX_OVERFLOW) for m in late]
            assert [type(e) for e in g.failures()] == [actors.MailboxOverflow]
            assert g.handled == ["wait", occupant]  # the restarted actor handles it
        else:  # backpressure (the runtime's deliveries do not wait) and drop_newest
            assert g.dead_letters() == [(m, Reason.DROPPED_NEWEST) for m in late]
            assert g.handled == ["wait", occupant]
        if overflow is not actors.Overflow.FAIL:
            assert g.failures() == []


async def test_a_delayed_ask_that_finds_no_room_gets_mailbox_full(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with bounded(actors.Overflow.BACKPRESSURE) as g:
        g.faults.delay(1.0, type=Job)
        async with trio.open_nursery() as nursery:

            async def ask() -> None:
                with pytest.raises(actors.MailboxFull):
                    await g.ref.ask(Job(1), timeout=5)

            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            g.ref.tell("a")  # the ask took no place while delayed: "a" takes it
        g.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert g.handled == ["wait", "a"]
        assert g.dead_letters() == []  # the asker was told instead


async def test_a_held_message_takes_no_room_and_a_full_mailbox_refuses_the_next_tell(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with bounded(actors.Overflow.BACKPRESSURE) as g:
        g.ref.tell("a")  # the one place
        g.faults.reorder(within=5.0, type=Job)
        g.ref.tell(Job(1))  # held: no room needed, no error
        with pytest.raises(actors.MailboxFull):
            g.ref.tell("b")  # as without the injector; Job(1) stays held
        g.gate.set()
        await trio.sleep(1)
        assert g.handled == ["wait", "a"]
        await trio.sleep(5)  # its deadline: released into the room there is now
        assert g.handled == ["wait", "a", Job(1)]
    assert g.dead_letters() == []


@pytest.mark.parametrize("fault", ["crash", "hang"])
async def test_a_crash_or_hang_message_takes_a_place_and_is_evicted_as_the_oldest(
    fault: str, autojump_clock: trio.testing.MockClock
) -> None:
    async with bounded(actors.Overflow.BACKPRESSURE) as g:
        getattr(g.faults, fault)(where=lambda m: m == "boom")
        g.ref.tell("boom")  # queued with its crash (or hang) riding on it
        with pytest.raises(actors.MailboxFull):
            g.ref.tell("a")
        g.gate.set()
    async with bounded(actors.Overflow.DROP_OLDEST) as g:
        getattr(g.faults, fault)(where=lambda m: m == "boom")
        g.ref.tell("boom")
        g.ref.tell("a")  # evicts "boom": no crash, no hang
        g.gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert g.handled == ["wait", "a"]
        assert g.dead_letters() == [("boom", DeadLetterReason.DROPPED_OLDEST)]
        assert g.failures() == []
        assert [i.kind for i in g.faults.injected] == [fault]


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
