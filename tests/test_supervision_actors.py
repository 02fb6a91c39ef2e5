"""Supervision of actors: restarts in place, directives, strategies, intensity, backoff,
the restart stash, escalation, lifecycle events and the OTP-style ``Supervisor``."""

from __future__ import annotations

import functools
import logging
import random
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
import supervision as sv
from actors import Actor, ActorRef, DeadLetter, DeadLetterReason
from actors.testing import TestProbe

STOP_ALL = sv.OneForOne(decider=lambda error: sv.Directive.STOP)


class Boom(Exception):
    pass


@attrs.frozen
class Crash:
    tag: str = ""


class Recorder(Actor):
    """Collects every message it gets (events, dead letters)."""

    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.append(message)


class Worker(Actor):
    """Counts messages; raises on ``Crash``; logs its lifecycle to ``log``."""

    def __init__(self, log: list[tuple[Any, ...]], tag: str = "w") -> None:
        self.log = log
        self.tag = tag
        self.count = 0
        log.append(("init", tag))

    def pre_start(self) -> None:
        self.log.append(("pre_start", self.tag))

    def post_stop(self) -> None:
        self.log.append(("post_stop", self.tag))

    def pre_restart(self, error: BaseException, message: Any) -> None:
        self.log.append(("pre_restart", self.tag, type(error).__name__, message))
        super().pre_restart(error, message)

    def post_restart(self, error: BaseException) -> None:
        self.log.append(("post_restart", self.tag, type(error).__name__))
        super().post_restart(error)

    def receive(self, message: Any) -> Any:
        if isinstance(message, Crash):
            raise Boom(message.tag)
        if message == "count":
            return self.count
        self.count += 1
        self.log.append(("got", self.tag, message))
        return None


class Parent(Actor):
    """Spawns the named workers in order; answers ``"children"`` with their refs."""

    def __init__(self, log: list[tuple[Any, ...]], names: tuple[str, ...]) -> None:
        self.log = log
        self.names = names

    def pre_start(self) -> None:
        for name in self.names:
            if self.context.child(name) is None:  # kept through a restart: keep it
                self.context.spawn(Worker, self.log, name, name=name)

    def receive(self, message: Any) -> Any:
        if message == "children":
            return {ref.name: ref for ref in self.context.children}
        if isinstance(message, Crash):
            raise Boom(message.tag)
        return None


async def _events(system: actors.ActorSystem, *types: type) -> list[Any]:
    seen: list[Any] = []
    recorder = system.spawn(Recorder, seen, name="events")
    for event_type in types:
        system.events.subscribe(recorder, event_type)
    return seen


# -- restart in place ----------------------------------------------------------------------


async def test_restart_keeps_ref_and_mailbox_and_drops_only_the_failing_message(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    async with actors.open_system("restart") as system:
        seen = await _events(system, DeadLetter, actors.ActorRestarted, actors.ActorFailed)
        ref = system.spawn(Worker, log, name="w")
        ref.tell(1)
        ref.tell(Crash("x"))
        ref.tell(2)
        ref.tell(3)
        assert await ref.ask("count") == 2  # the fresh instance got 2 and 3
        assert system.lookup("/user/w") == ref
        await trio.testing.wait_all_tasks_blocked()
    assert log == [
        ("init", "w"),
        ("pre_start", "w"),
        ("got", "w", 1),
        ("pre_restart", "w", "Boom", Crash("x")),
        ("post_stop", "w"),  # the default pre_restart
        ("init", "w"),
        ("post_restart", "w", "Boom"),
        ("pre_start", "w"),  # the default post_restart
        ("got", "w", 2),
        ("got", "w", 3),
        ("post_stop", "w"),
    ]
    dead = [e for e in seen if isinstance(e, DeadLetter)]
    assert [(d.message, d.reason) for d in dead] == [(Crash("x"), DeadLetterReason.FAILED)]
    restarted = [e for e in seen if isinstance(e, actors.ActorRestarted)]
    assert [(e.ref, type(e.error)) for e in restarted] == [(ref, Boom)]


async def test_watchers_see_no_terminated_on_restart_only_on_the_real_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("watch") as system:
        probe = TestProbe(system)
        ref = system.spawn(Worker, [], name="w")
        probe.watch(ref)
        ref.tell(Crash())
        assert await ref.ask("count") == 0
        await probe.expect_no_message()
        system.stop(ref)
        terminated = await probe.expect_terminated(ref)
        assert terminated.error is None


async def test_timers_and_receive_timeout_are_reset_on_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[Any] = []

    class Ticking(Actor):
        def pre_start(self) -> None:
            got.append("start")
            if len(got) == 1:  # the first incarnation only
                self.context.timers.start_at_fixed_rate("tick", "tick", 1.0)
                self.context.set_receive_timeout(0.5, "idle")

        def receive(self, message: Any) -> None:
            got.append(message)
            if message == "crash":
                raise Boom()

    async with actors.open_system("timers") as system:
        ref = system.spawn(Ticking, name="t")
        await trio.sleep(0.75)  # one receive timeout at 0.5
        ref.tell("crash")
        await trio.sleep(10)
    assert got == ["start", "idle", "crash", "start"]


async def test_children_are_stopped_on_restart_unless_the_strategy_keeps_them(
    autojump_clock: trio.testing.MockClock,
) -> None:
    for keep in (False, True):
        log: list[tuple[Any, ...]] = []
        strategy = sv.OneForOne(stop_children=not keep)
        async with actors.open_system("kids", supervisor_strategy=strategy) as system:
            parent = system.spawn(Parent, log, ("a",), name="p")
            before = await parent.ask("children")
            parent.tell(Crash())
            await trio.testing.wait_all_tasks_blocked()
            after = await parent.ask("children")
        if keep:
            assert after == before  # the same child, never stopped
            assert log.count(("init", "a")) == 1
        else:
            # The old child stopped; the fresh parent spawned a new one with the name.
            assert after["a"] != before["a"]
            assert log[:4] == [("init", "a"), ("pre_start", "a"), ("post_stop", "a"), ("init", "a")]


async def test_stash_is_returned_to_the_mailbox_on_restart(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[Any] = []
    incarnations: list[int] = []

    class Stasher(Actor):
        def __init__(self) -> None:
            incarnations.append(len(incarnations))
            self.first = len(incarnations) == 1

        def receive(self, message: Any) -> None:
            if message == "crash":
                raise Boom()
            if self.first:
                self.context.stash()  # the first incarnation stashes everything else
                return
            got.append(message)

    async with actors.open_system("stash") as system:
        ref = system.spawn(Stasher, name="s")
        ref.tell(1)
        ref.tell(2)
        ref.tell("crash")
        ref.tell(3)
        await trio.testing.wait_all_tasks_blocked()
    # 1 and 2 were stashed; the restart put them back ahead of 3, nothing was lost.
    assert incarnations == [0, 1]
    assert got == [1, 2, 3]


# -- directives ----------------------------------------------------------------------------


async def test_resume_keeps_the_instance_and_its_state(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    resume = sv.OneForOne(decider=sv.decider_from({Boom: sv.Directive.RESUME}))
    async with actors.open_system("resume", guardian_strategy=resume) as system:
        ref = system.spawn(Worker, log, name="w")
        ref.tell(1)
        ref.tell(Crash())
        ref.tell(2)
        assert await ref.ask("count") == 2
    assert ("pre_restart", "w", "Boom", Crash()) not in log
    assert log.count(("init", "w")) == 1


async def test_stop_directive_stops_with_the_error_as_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("stop", guardian_strategy=STOP_ALL) as system:
        seen = await _events(system, actors.ActorStopped)
        probe = TestProbe(system)
        ref = system.spawn(Worker, [], name="w")
        probe.watch(ref)
        ref.tell(Crash("bye"))
        ref.tell("after")
        terminated = await probe.expect_terminated(ref)
        assert isinstance(terminated.error, Boom)
        await trio.testing.wait_all_tasks_blocked()
        stopped = [e for e in seen if e.ref == ref]
        assert len(stopped) == 1
        assert isinstance(stopped[0].error, Boom)


async def test_escalate_fails_the_parent_whose_supervisor_restarts_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    escalate = sv.OneForOne(decider=lambda error: sv.Directive.ESCALATE)
    async with actors.open_system("esc") as system:
        seen = await _events(system, actors.ActorRestarted)
        parent = system.spawn(Parent, log, ("a",), name="p", supervisor_strategy=escalate)
        children = await parent.ask("children")
        children["a"].tell(Crash())
        await trio.testing.wait_all_tasks_blocked()
        assert [e.ref for e in seen if isinstance(e, actors.ActorRestarted)] == [parent]
        fresh = await parent.ask("children")
        assert fresh["a"] != children["a"]  # the parent restarted: a new child


async def test_a_failing_decider_fails_the_supervisor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def broken(error: BaseException) -> sv.Directive:
        raise RuntimeError("decider bug")

    async def run_system() -> None:
        async with actors.open_system("decider", guardian_strategy=sv.OneForOne(broken)) as s:
            s.spawn(Worker, [], name="w").tell(Crash())
            await trio.sleep_forever()

    with pytest.raises(actors.UnhandledFailure) as info:
        await run_system()
    [(ref, error)] = info.value.failures
    assert ref.path == "/user/w"
    assert isinstance(error, RuntimeError)
    assert isinstance(error.__context__, Boom)


async def test_resume_after_a_failed_start_stops_the_actor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class BadStart(Actor):
        def pre_start(self) -> None:
            raise Boom("no start")

    resume = sv.OneForOne(decider=lambda error: sv.Directive.RESUME)
    async with actors.open_system("resume-start", guardian_strategy=resume) as system:
        probe = TestProbe(system)
        ref = probe.watch(system.spawn(BadStart, name="b"))
        terminated = await probe.expect_terminated(ref)
        assert isinstance(terminated.error, actors.ActorInitializationError)


# -- strategies ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [
        (sv.OneForOne(), ["b"]),
        (sv.OneForAll(), ["a", "b", "c"]),
        (sv.RestForOne(), ["b", "c"]),
    ],
)
async def test_each_strategy_restarts_the_right_children_in_place(
    autojump_clock: trio.testing.MockClock, strategy: sv.Strategy, restarted: list[str]
) -> None:
    log: list[tuple[Any, ...]] = []
    async with actors.open_system("strategies") as system:
        parent = system.spawn(Parent, log, ("a", "b", "c"), name="p", supervisor_strategy=strategy)
        children = await parent.ask("children")
        for ref in children.values():
            ref.tell("hello")
        await trio.testing.wait_all_tasks_blocked()  # each has counted its "hello"
        children["b"].tell(Crash())
        await trio.testing.wait_all_tasks_blocked()
        assert await parent.ask("children") == children  # refs survive
        counts = {name: await ref.ask("count") for name, ref in children.items()}
    assert sorted(e[1] for e in log if e[0] == "post_restart") == restarted
    # A restarted child lost its count (fresh instance); the others kept theirs.
    assert counts == {name: 0 if name in restarted else 1 for name in "abc"}


# -- restart intensity ---------------------------------------------------------------------


@pytest.mark.parametrize("crashes", [3, 4])
async def test_intensity_n_restarts_are_fine_and_one_more_gives_up(
    autojump_clock: trio.testing.MockClock, crashes: int
) -> None:
    log: list[tuple[Any, ...]] = []
    strategy = sv.OneForOne(intensity=sv.RestartIntensity(max_restarts=3, within=5.0))
    async with actors.open_system("intensity") as system:
        seen = await _events(
            system, actors.SupervisorGaveUp, actors.ActorFailed, actors.ActorRestarted
        )
        parent = system.spawn(Parent, log, ("a", "b", "c"), name="p", supervisor_strategy=strategy)
        children = await parent.ask("children")
        for _ in range(crashes):
            children["a"].tell(Crash())
            await trio.sleep(1.0)  # all inside the 5 s window
        now_children = await parent.ask("children")
    restarted = [e.ref.path for e in seen if isinstance(e, actors.ActorRestarted)]
    gave_up = [e for e in seen if isinstance(e, actors.SupervisorGaveUp)]
    if crashes == 3:
        assert restarted == ["/user/p/a"] * 3
        assert gave_up == []
        assert now_children == children  # still the same children
        return
    # The 4th failure within 5 s: /p gives up, stops its other children newest first,
    # and fails with TooManyRestarts; /user (default strategy) restarts /p.
    assert [(e.supervisor.path, e.child.path, type(e.error)) for e in gave_up] == [
        ("/user/p", "/user/p/a", Boom)
    ]
    failed = [e.error for e in seen if isinstance(e, actors.ActorFailed) and e.ref == parent]
    assert len(failed) == 1
    assert isinstance(failed[0], sv.TooManyRestarts)
    assert failed[0].child == "a"
    assert isinstance(failed[0].error, Boom)
    assert restarted == ["/user/p/a"] * 3 + ["/user/p"]
    first_stops = [e[1] for e in log if e[0] == "post_stop"]
    assert first_stops.index("c") < first_stops.index("b")
    assert set(now_children) == {"a", "b", "c"}
    assert not set(now_children.values()) & set(children.values())  # all new children


async def test_give_up_at_the_root_is_raised_from_open_system(
    autojump_clock: trio.testing.MockClock,
) -> None:
    strategy = sv.OneForOne(intensity=sv.RestartIntensity(max_restarts=2, within=5.0))

    async def run_system() -> None:
        async with actors.open_system("root", guardian_strategy=strategy) as system:
            ref = system.spawn(Worker, [], name="w")
            for _ in range(3):
                ref.tell(Crash())
            await trio.sleep_forever()

    with pytest.raises(actors.UnhandledFailure) as info:
        await run_system()
    [(ref, error)] = info.value.failures
    assert ref.path == "/user/w"
    assert isinstance(error, sv.TooManyRestarts)
    assert isinstance(error.error, Boom)
    assert "gave up" in str(error)
    assert "'w'" in str(error)


async def test_escalation_through_three_levels_reaches_open_system(
    autojump_clock: trio.testing.MockClock,
) -> None:
    escalate = sv.OneForOne(decider=lambda error: sv.Directive.ESCALATE)

    class Level(Actor):
        supervisor_strategy = escalate

        def __init__(self, depth: int) -> None:
            self.depth = depth

        def pre_start(self) -> None:
            if self.depth < 3:
                self.context.spawn(Level, self.depth + 1, name=f"l{self.depth + 1}")

        def receive(self, message: Any) -> None:
            raise Boom(f"level {self.depth}")

    async def run_system() -> None:
        async with actors.open_system("levels", guardian_strategy=escalate) as system:
            system.spawn(Level, 1, name="l1")
            await trio.testing.wait_all_tasks_blocked()
            system.lookup("/user/l1/l2/l3").tell("fail")
            await trio.sleep_forever()

    with pytest.raises(actors.UnhandledFailure) as info:
        await run_system()
    [(ref, error)] = info.value.failures
    assert ref.path == "/user/l1"
    assert isinstance(error, Boom)
    assert str(error) == "level 3"


# -- backoff and the restart stash ---------------------------------------------------------


async def test_backoff_delays_follow_the_seeded_formula(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = sv.Backoff(min_delay=1.0, max_delay=4.0, jitter=0.5, reset_after=100.0)
    strategy = sv.OneForOne(
        intensity=sv.RestartIntensity(max_restarts=10, within=1.0), backoff=backoff
    )
    restarted_at: list[float] = []

    class Timed(Actor):
        def post_restart(self, error: BaseException) -> None:
            restarted_at.append(trio.current_time())

        def receive(self, message: Any) -> None:
            raise Boom()

    failed_at: list[float] = []
    async with actors.open_system("backoff", guardian_strategy=strategy, seed=1234) as system:
        ref = system.spawn(Timed, name="t")
        for _ in range(5):
            failed_at.append(trio.current_time())
            ref.tell("x")
            await trio.sleep(10)
    rng = random.Random(1234)
    expected = [min(4.0, 1.0 * 2**n) * (1 + rng.random() * 0.5) for n in range(5)]
    delays = [r - f for r, f in zip(restarted_at, failed_at, strict=True)]
    assert delays == pytest.approx(expected)
    assert delays[3] > 4.0
    assert delays[4] > 4.0


async def test_restart_stash_bounds_a_flood_with_an_exact_account(
    autojump_clock: trio.testing.MockClock,
) -> None:
    backoff = sv.Backoff(min_delay=5.0, max_delay=5.0, jitter=0.0)
    strategy = sv.OneForOne(backoff=backoff)
    got: list[int] = []

    class Slow(Actor):
        def receive(self, message: Any) -> None:
            if message == "crash":
                raise Boom()
            got.append(message)

    async with actors.open_system(
        "flood", guardian_strategy=strategy, restart_stash_capacity=100
    ) as system:
        seen = await _events(system, DeadLetter)
        ref = system.spawn(Slow, name="s")
        ref.tell("crash")
        await trio.sleep(1.0)  # now inside the 5 s backoff
        for n in range(1000):
            ref.tell(n)
        await trio.sleep(10)
        await trio.testing.wait_all_tasks_blocked()
    overflow = [d.message for d in seen if d.reason is DeadLetterReason.RESTART_STASH_OVERFLOW]
    assert got == list(range(100))
    assert overflow == list(range(100, 1000))
    assert len(got) + len(overflow) == 1000


# -- failures while stopping ---------------------------------------------------------------


async def test_a_failure_in_post_stop_is_reported_not_raised(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    class BadStop(Actor):
        def post_stop(self) -> None:
            raise Boom("cleanup")

    caplog.set_level(logging.ERROR, logger="actors.supervision")
    async with actors.open_system("post-stop") as system:
        seen = await _events(system, actors.ActorFailed, actors.ActorStopped)
        probe = TestProbe(system)
        ref = probe.watch(system.spawn(BadStop, name="b"))
        await trio.testing.wait_all_tasks_blocked()  # started: post_stop will run
        system.stop(ref)
        terminated = await probe.expect_terminated(ref)
        assert isinstance(terminated.error, Boom)
        await trio.testing.wait_all_tasks_blocked()
    assert [type(e).__name__ for e in seen if e.ref == ref] == ["ActorFailed", "ActorStopped"]
    assert any("/user/b failed while stopping" in r.getMessage() for r in caplog.records)


async def test_a_failure_during_shutdown_does_not_restart_and_the_system_ends(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    stopped: list[str] = []

    class FailsOnStop(Actor):
        async def receive(self, message: Any) -> None:
            try:
                await trio.sleep_forever()
            finally:
                stopped.append("handler")
                raise Boom("during shutdown")

        def post_restart(self, error: BaseException) -> None:
            stopped.append("restarted")

    caplog.set_level(logging.ERROR, logger="actors.supervision")
    async with actors.open_system("shutdown", stop_timeout=1.0) as system:
        ref = system.spawn(FailsOnStop, name="f")
        ref.tell("hang")
        await trio.testing.wait_all_tasks_blocked()
        left_at = trio.current_time()
    # Cancelled at its stop deadline, it raised: reported, not restarted, not raised.
    assert stopped == ["handler"]
    assert trio.current_time() == left_at + 1.0
    [record] = [r for r in caplog.records if r.name == "actors.supervision"]
    assert record.getMessage() == "/user/f failed while stopping"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], Boom)


# -- the Supervisor actor ------------------------------------------------------------------


def _spec(name: str, log: list[tuple[Any, ...]], **kwargs: Any) -> sv.ChildSpec:
    return sv.ChildSpec(name, functools.partial(Worker, log, name), **kwargs)


async def test_supervisor_starts_in_order_and_stops_in_reverse(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    specs = [_spec(n, log) for n in "abc"]
    async with actors.open_system("sup") as system:
        sup = system.spawn(actors.Supervisor, specs, name="sup")
        children = await sup.ask(actors.WhichChildren())
        assert [(c.id, c.ref is not None) for c in children] == [(n, True) for n in "abc"]
        assert await sup.ask(actors.CountChildren()) == sv.ChildCounts(3, 3)
    starts = [e[1] for e in log if e[0] == "pre_start"]
    stops = [e[1] for e in log if e[0] == "post_stop"]
    assert starts == ["a", "b", "c"]
    assert stops == ["c", "b", "a"]


async def test_supervisor_restart_types_after_a_normal_stop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    specs = [
        _spec("perm", log),
        _spec("trans", log, restart=sv.Restart.TRANSIENT),
        _spec("temp", log, restart=sv.Restart.TEMPORARY),
    ]
    async with actors.open_system("types") as system:
        sup = system.spawn(actors.Supervisor, specs, name="sup")
        before = {c.id: c.ref for c in await sup.ask(actors.WhichChildren())}
        for ref in before.values():
            assert ref is not None
            ref.tell(actors.PoisonPill)
        await trio.testing.wait_all_tasks_blocked()
        after = {c.id: c.ref for c in await sup.ask(actors.WhichChildren())}
    assert set(after) == {"perm", "trans"}  # the temporary child is forgotten
    assert after["trans"] is None  # a transient child that stopped normally stays down
    assert after["perm"] is not None
    assert after["perm"] != before["perm"]
    assert after["perm"].path == before["perm"].path


async def test_supervisor_failures_restart_in_place_and_temporary_is_not_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    specs = [_spec("a", log), _spec("t", log, restart=sv.Restart.TEMPORARY), _spec("c", log)]
    async with actors.open_system("group") as system:
        sup = system.spawn(actors.Supervisor, specs, sv.OneForAll(), name="sup")
        before = {c.id: c.ref for c in await sup.ask(actors.WhichChildren())}
        assert before["a"] is not None
        before["a"].tell(Crash())
        await trio.testing.wait_all_tasks_blocked()
        after = {c.id: c.ref for c in await sup.ask(actors.WhichChildren())}
    assert after == {"a": before["a"], "c": before["c"]}  # same refs; "t" is gone
    assert sorted(e[1] for e in log if e[0] == "post_restart") == ["a", "c"]


async def test_supervisor_brutal_and_deadline_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ends: dict[str, float] = {}

    class Busy(Actor):
        def __init__(self, name: str) -> None:
            self.name = name

        async def receive(self, message: Any) -> None:
            try:
                await trio.sleep_forever()
            finally:
                ends[self.name] = trio.current_time()

    specs = [
        sv.ChildSpec("slow", functools.partial(Busy, "slow"), shutdown=3.0),
        sv.ChildSpec("brutal", functools.partial(Busy, "brutal"), shutdown=sv.BRUTAL),
    ]
    async with actors.open_system("shutdown-modes") as system:
        sup = system.spawn(actors.Supervisor, specs, name="sup")
        for child in await sup.ask(actors.WhichChildren()):
            assert child.ref is not None
            child.ref.tell("work")
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
    # Reverse order: "brutal" first, cancelled at once; then "slow" gets its 3 s.
    assert ends == {"brutal": start, "slow": start + 3.0}


async def test_supervisor_significant_children_and_auto_shutdown(
    autojump_clock: trio.testing.MockClock,
) -> None:
    for mode, stops_after_first in (
        (sv.AutoShutdown.ANY_SIGNIFICANT, True),
        (sv.AutoShutdown.ALL_SIGNIFICANT, False),
    ):
        log: list[tuple[Any, ...]] = []
        specs = [
            _spec("s1", log, restart=sv.Restart.TRANSIENT, significant=True),
            _spec("s2", log, restart=sv.Restart.TRANSIENT, significant=True),
            _spec("other", log),
        ]
        async with actors.open_system("significant") as system:
            probe = TestProbe(system)
            sup = probe.watch(
                system.spawn(actors.Supervisor, specs, auto_shutdown=mode, name="sup")
            )
            refs = {c.id: c.ref for c in await sup.ask(actors.WhichChildren())}
            assert refs["s1"] is not None
            assert refs["s2"] is not None
            refs["s1"].tell(actors.PoisonPill)
            if stops_after_first:
                terminated = await probe.expect_terminated(sup)
                assert terminated.error is None
            else:
                await probe.expect_no_message()
                refs["s2"].tell(actors.PoisonPill)
                await probe.expect_terminated(sup)
        assert ("post_stop", "other") in log


async def test_supervisor_api_calls_and_their_errors(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    async with actors.open_system("api") as system:
        sup = system.spawn(actors.Supervisor, [_spec("a", log)], name="sup")
        b = await sup.ask(actors.StartChild(_spec("b", log)))
        assert isinstance(b, ActorRef)
        assert b.path == "/user/sup/b"
        with pytest.raises(ValueError, match="already exists"):
            await sup.ask(actors.StartChild(_spec("b", log)))
        await sup.ask(actors.TerminateChild("b"))
        assert await sup.ask(actors.CountChildren()) == sv.ChildCounts(2, 1)
        assert [(c.id, c.ref) for c in await sup.ask(actors.WhichChildren())][1] == ("b", None)
        with pytest.raises(RuntimeError, match="running"):
            await sup.ask(actors.DeleteChild("a"))
        b2 = await sup.ask(actors.RestartChild("b"))
        assert b2 != b
        assert b2.path == b.path
        with pytest.raises(RuntimeError, match="already running"):
            await sup.ask(actors.RestartChild("b"))
        await sup.ask(actors.TerminateChild("b"))
        await sup.ask(actors.DeleteChild("b"))
        with pytest.raises(KeyError, match="'b'"):
            await sup.ask(actors.RestartChild("b"))
        assert await sup.ask(actors.CountChildren()) == sv.ChildCounts(1, 1)


async def test_supervisor_rejects_a_bad_spec_as_an_initialization_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("bad-spec", guardian_strategy=STOP_ALL) as system:
        probe = TestProbe(system)
        for bad, message in (
            (sv.ChildSpec(1, Worker), "str"),
            (sv.ChildSpec("a/b", Worker), "invalid actor name"),
            (sv.ChildSpec("a", 42), "actor factory"),
            ("not a spec", "ChildSpec"),
        ):
            ref = probe.watch(system.spawn(actors.Supervisor, [bad]))
            terminated = await probe.expect_terminated(ref)
            assert isinstance(terminated.error, actors.ActorInitializationError)
            assert message in str(terminated.error)


async def test_a_failing_pre_start_counts_towards_intensity_and_cannot_loop(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts: list[str] = []

    class NeverStarts(Actor):
        def pre_start(self) -> None:
            attempts.append("pre_start")
            raise Boom("no database")

    # A failed start stops the actor by default; this decider retries it instead.
    strategy = sv.OneForOne(
        decider=sv.decider_from({actors.ActorInitializationError: sv.Directive.RESTART}),
        intensity=sv.RestartIntensity(max_restarts=3, within=60.0),
    )

    async def run_system() -> None:
        async with actors.open_system("pre-start", guardian_strategy=strategy) as system:
            system.spawn(NeverStarts, name="n")
            await trio.sleep_forever()

    with pytest.raises(actors.UnhandledFailure) as info:
        await run_system()
    # The first start and 3 restarts (post_restart calls pre_start), then /user gives up.
    assert attempts == ["pre_start"] * 4
    [(ref, error)] = info.value.failures
    assert ref.path == "/user/n"
    assert isinstance(error, sv.TooManyRestarts)
    assert isinstance(error.error, actors.ActorInitializationError)
    assert isinstance(error.error.error, Boom)


async def test_ask_errors_are_the_callers_and_never_restart_the_actor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, ...]] = []
    async with actors.open_system("ask-errors") as system:
        seen = await _events(system, actors.ActorFailed, actors.ActorRestarted)
        ref = system.spawn(Worker, log, name="w")
        ref.tell(1)
        with pytest.raises(Boom):
            await ref.ask(Crash())
        assert await ref.ask("count") == 1
        await trio.testing.wait_all_tasks_blocked()
    assert seen == []
    assert log.count(("init", "w")) == 1
