"""Restarts of several actors at once, in OTP's order (one-for-all, rest-for-one).

When a failure restarts siblings too, the failed child's old instance goes first, then
the affected siblings are taken down one at a time in reverse start order (each within
its shutdown deadline), then every affected child starts again in start order. No new
instance runs beside an old instance of a sibling, and the order is the same whatever
trio's scheduler does (it shuffles tasks woken together: every test here runs under many
seeds of it).
"""

from __future__ import annotations

import itertools
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
import supervision as sv
from actors import Actor
from actors.testing._chaos import seeded_scheduler

SEEDS = range(12)


class Boom(Exception):
    pass


@attrs.frozen
class Crash:
    pass


class Member(Actor):
    """Logs its lifecycle as ``(event, tag, incarnation)``; ``"busy"`` keeps its async
    handler waiting for ever, ``Crash()`` fails it."""

    def __init__(self, log: list[tuple[Any, ...]], tag: str, counter: itertools.count[int]):
        self.log = log
        self.tag = tag
        self.incarnation = next(counter)
        log.append(("init", tag, self.incarnation))

    def pre_restart(self, error: BaseException, message: Any) -> None:
        self.log.append(("down", self.tag, self.incarnation))

    def post_restart(self, error: BaseException) -> None:
        self.log.append(("up", self.tag, self.incarnation))

    async def receive(self, message: Any) -> Any:
        if isinstance(message, Crash):
            raise Boom(self.tag)
        if message == "busy":
            self.log.append(("busy", self.tag, self.incarnation))
            await trio.sleep_forever()
        return (self.tag, self.incarnation)


class Family(Actor):
    """Spawns one Member per tag, in order, under the strategy it is given."""

    def __init__(self, log: list[tuple[Any, ...]], tags: tuple[str, ...]) -> None:
        for tag in tags:
            self.context.spawn(Member, log, tag, itertools.count(1), name=tag)

    def receive(self, message: Any) -> Any:
        return {ref.name: ref for ref in self.context.children}


async def _group_restart(
    strategy: sv.Strategy, crash: str, busy: tuple[str, ...] = ()
) -> tuple[list[tuple[Any, ...]], float]:
    """Run one family of a, b, c; make ``busy`` ones busy, crash ``crash``; return the
    log of what happened and how long the restart took on trio's clock."""
    log: list[tuple[Any, ...]] = []
    async with actors.open_system("group") as system:
        family = system.spawn(Family, log, ("a", "b", "c"), supervisor_strategy=strategy)
        members = await family.ask("members")
        for ref in members.values():
            await ref.ask("ready")  # every first instance has been made
        for tag in busy:
            members[tag].tell("busy")
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        members[crash].tell(Crash())
        # Each member answers once it runs again (the mailbox kept the question).
        for ref in members.values():
            await ref.ask("hello", timeout=60)
        took = trio.current_time() - start
        assert await family.ask("members") == members  # same refs: restarted in place
    return log, took


def _restart_part(log: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The log from the first take-down on."""
    first = next(i for i, entry in enumerate(log) if entry[0] in ("down", "busy"))
    return [entry for entry in log[first:] if entry[0] != "busy"]


# The failed child's old instance goes first, then its affected siblings, newest first;
# then every affected child starts again, in start order.
ONE_FOR_ALL_B = ["down b", "down c", "down a", "up a", "up b", "up c"]
REST_FOR_ONE_A = ["down a", "down c", "down b", "up a", "up b", "up c"]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    ("strategy", "crash", "expected"),
    [(sv.OneForAll(), "b", ONE_FOR_ALL_B), (sv.RestForOne(), "a", REST_FOR_ONE_A)],
    ids=["one-for-all", "rest-for-one"],
)
async def test_a_group_takes_down_in_reverse_and_starts_in_order(
    autojump_clock: trio.testing.MockClock,
    seed: int,
    strategy: sv.Strategy,
    crash: str,
    expected: list[str],
) -> None:
    with seeded_scheduler(seed):
        log, _ = await _group_restart(strategy, crash=crash)
    steps = [(event, tag, n) for event, tag, n in _restart_part(log) if event != "init"]
    assert [f"{event} {tag}" for event, tag, _ in steps] == expected
    # Each new instance (incarnation 2) was made right before its post_restart.
    assert all(n == (1 if event == "down" else 2) for event, _, n in steps)
    inits = [entry for entry in _restart_part(log) if entry[0] == "init"]
    assert [tag for _, tag, _ in inits] == [step.split()[1] for step in expected[3:]]


@pytest.mark.parametrize("seed", SEEDS)
async def test_rest_for_one_leaves_the_children_started_before_alone(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    with seeded_scheduler(seed):
        log, _ = await _group_restart(sv.RestForOne(), crash="c")
    assert _restart_part(log) == [("down", "c", 1), ("init", "c", 2), ("up", "c", 2)]


async def test_a_busy_sibling_is_cancelled_at_its_stop_deadline_not_waited_for(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Its handler never returns: the group restart cancels it after stop_timeout (5 s),
    # as a stop would, instead of waiting for it for ever.
    log, took = await _group_restart(sv.OneForAll(), crash="a", busy=("c",))
    assert took == pytest.approx(5.0)
    assert _restart_part(log)[:3] == [("down", "a", 1), ("down", "c", 1), ("down", "b", 1)]


class Busy(Actor):
    """Under a Supervisor: ``"busy"`` keeps its handler waiting; logs its restarts."""

    def __init__(self, log: list[tuple[str, float]], tag: str) -> None:
        self.log = log
        self.tag = tag

    def pre_restart(self, error: BaseException, message: Any) -> None:
        self.log.append((f"down {self.tag}", trio.current_time()))

    async def receive(self, message: Any) -> Any:
        if message == "busy":
            await trio.sleep_forever()
        if isinstance(message, Crash):
            raise Boom(self.tag)
        return self.tag


@pytest.mark.parametrize(("shutdown", "waited"), [(sv.BRUTAL, 0.0), (2.0, 2.0), (7.5, 7.5)])
async def test_a_supervisor_takes_a_sibling_down_within_its_spec_shutdown(
    autojump_clock: trio.testing.MockClock, shutdown: float | str, waited: float
) -> None:
    log: list[tuple[str, float]] = []
    specs = [
        sv.ChildSpec("worker", lambda: Busy(log, "worker"), shutdown=shutdown),
        sv.ChildSpec("crasher", lambda: Busy(log, "crasher")),
    ]
    async with actors.open_system("supervisor") as system:
        supervisor = system.spawn(actors.Supervisor, specs, sv.OneForAll(), name="sup")
        children = {c.id: c.ref for c in await supervisor.ask(actors.WhichChildren())}
        children["worker"].tell("busy")
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        children["crasher"].tell(Crash())
        assert await children["worker"].ask("who", timeout=60) == "worker"
    assert [(what, when - start) for what, when in log] == [
        ("down crasher", 0.0),
        ("down worker", waited),
    ]


class Tracker(Actor):
    """Counts how many instances of each tag are alive (started, not yet taken down)."""

    def __init__(self, alive: dict[str, int], peak: list[int], tag: str) -> None:
        self.alive = alive
        self.peak = peak
        self.tag = tag

    def pre_start(self) -> None:
        self.alive[self.tag] = self.alive.get(self.tag, 0) + 1
        self.peak.append(max(self.alive.values()))

    def post_stop(self) -> None:
        self.alive[self.tag] -= 1

    def receive(self, message: Any) -> Any:
        if isinstance(message, Crash):
            raise Boom(self.tag)
        return self.tag


@pytest.mark.parametrize("seed", SEEDS)
async def test_no_new_instance_runs_beside_an_old_one_under_repeated_failures(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    # Failures of several siblings at once (some while a group restart is under way)
    # are decided one after the other: there is never more than one instance per child.
    alive: dict[str, int] = {}
    peak: list[int] = []
    specs = [sv.ChildSpec(tag, lambda tag=tag: Tracker(alive, peak, tag)) for tag in "abcd"]
    strategy = sv.OneForAll(intensity=sv.RestartIntensity(max_restarts=100, within=1.0))
    with seeded_scheduler(seed):
        async with actors.open_system("storm") as system:
            supervisor = system.spawn(actors.Supervisor, specs, strategy, name="sup")
            refs = [c.ref for c in await supervisor.ask(actors.WhichChildren())]
            for round_ in range(5):
                for ref in refs[round_ % 2 :: 2]:
                    ref.tell(Crash())
                await trio.testing.wait_all_tasks_blocked()
            assert [await ref.ask("who") for ref in refs] == list("abcd")
    assert max(peak) == 1
    assert alive == dict.fromkeys("abcd", 0)


class Ends(Actor):
    """Under a Supervisor: logs its start and stop; ``"end"`` stops it normally."""

    def __init__(self, log: list[str], tag: str) -> None:
        self.log = log
        self.tag = tag

    def pre_start(self) -> None:
        self.log.append(f"start {self.tag}")

    def post_stop(self) -> None:
        self.log.append(f"stop {self.tag}")

    def receive(self, message: Any) -> Any:
        if message == "end":
            self.context.stop()
        return self.tag


@pytest.mark.parametrize("seed", SEEDS)
async def test_a_permanent_child_ending_normally_restarts_its_group_in_order(
    autojump_clock: trio.testing.MockClock, seed: int
) -> None:
    log: list[str] = []
    specs = [sv.ChildSpec(tag, lambda tag=tag: Ends(log, tag)) for tag in "abc"]
    with seeded_scheduler(seed):
        async with actors.open_system("normal") as system:
            supervisor = system.spawn(actors.Supervisor, specs, sv.OneForAll(), name="sup")
            children = {c.id: c.ref for c in await supervisor.ask(actors.WhichChildren())}
            del log[:]
            children["b"].tell("end")
            await trio.testing.wait_all_tasks_blocked()
            now = {c.id: c.ref for c in await supervisor.ask(actors.WhichChildren())}
            assert all(ref is not None for ref in now.values())
    assert log == [
        *("stop b", "stop c", "stop a"),  # b ended; its siblings stop newest first
        *("start a", "start b", "start c"),  # all start again in order
        *("stop c", "stop b", "stop a"),  # the system's shutdown
    ]
