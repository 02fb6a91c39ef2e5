"""``Kill``: the actor fails with ``ActorKilled`` when it reaches the message in its
mailbox, and its supervisor decides (``PoisonPill`` stops it instead)."""

from __future__ import annotations

import functools
import pickle
from typing import Any

import pytest
import trio
import trio.testing

import actors
import actors.testing
import supervision as sv
from actors import Actor, ActorFailed, ActorKilled, ActorRestarted, Kill, PoisonPill
from actors.routing import GetRoutees, RoundRobinRouting, Router
from actors.testing import TestProbe


class Counter(Actor):
    """Counts what it handled since it started; logs restarts."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log
        self.count = 0

    def pre_restart(self, error: BaseException, message: Any) -> None:
        self.log.append(("pre_restart", type(error).__name__, message))

    def receive(self, message: Any) -> Any:
        self.count += 1
        self.log.append((message, self.count))
        return self.count


async def _failures(system: actors.ActorSystem) -> list[Any]:
    seen: list[Any] = []

    class Collect(Actor):
        def receive(self, message: Any) -> None:
            seen.append(message)

    ref = system.spawn(Collect)
    system.events.subscribe(ref, ActorFailed)
    system.events.subscribe(ref, ActorRestarted)
    await trio.testing.wait_all_tasks_blocked()
    return seen


async def test_kill_fails_the_actor_in_its_turn_and_the_default_restarts_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[Any] = []
    async with actors.open_system("kill") as system:
        seen = await _failures(system)
        ref = system.spawn(Counter, log, name="c")
        for message in ("a", "b", Kill, "c"):
            ref.tell(message)
        assert await ref.ask("d") == 2  # a fresh instance handled "c" and "d"
        await trio.testing.wait_all_tasks_blocked()
    assert log == [("a", 1), ("b", 2), ("pre_restart", "ActorKilled", None), ("c", 1), ("d", 2)]
    [failed, restarted] = [e for e in seen if e.ref == ref]
    assert isinstance(failed, ActorFailed)
    assert isinstance(restarted, ActorRestarted)
    assert isinstance(failed.error, ActorKilled)
    assert str(failed.error) == "actor /user/c was killed: it reached a Kill message in its mailbox"
    assert restarted.error is failed.error


async def test_asking_kill_raises_actor_killed_in_the_caller(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("ask-kill") as system:
        ref = system.spawn(Counter, [], name="c")
        with pytest.raises(ActorKilled) as info:
            await ref.ask(Kill)
        assert info.value.path == "/user/c"
        assert await ref.ask("after") == 1  # restarted
    assert "To stop an actor, tell it PoisonPill" in "".join(info.value.__notes__)


async def test_under_a_stop_strategy_kill_stops_and_watchers_learn_why(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stop = sv.OneForOne(decider=lambda error: sv.Directive.STOP)
    async with actors.open_system("kill-stops", guardian_strategy=stop) as system:
        probe = TestProbe(system)
        ref = probe.watch(system.spawn(Counter, [], name="c"))
        ref.tell(Kill)
        ref.tell("never handled")
        terminated = await probe.expect_terminated(ref)
        with pytest.raises(actors.ActorDead) as info:
            await ref.ask("?")
    assert isinstance(terminated.error, ActorKilled)
    assert info.value.error is terminated.error
    assert str(info.value) == (
        "actor /user/c is not running: it failed with ActorKilled: actor /user/c was "
        "killed: it reached a Kill message in its mailbox"
    )


async def test_poison_pill_stops_where_kill_fails(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system("pill") as system:
        probe = TestProbe(system)
        ref = probe.watch(system.spawn(Counter, [], name="c"))
        ref.tell(PoisonPill)
        terminated = await probe.expect_terminated(ref)
    assert terminated.error is None


async def test_kill_to_a_router_fails_the_router_not_a_routee(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("kill-router") as system:
        seen = await _failures(system)
        pool = functools.partial(Counter, [])
        router = system.spawn(Router, RoundRobinRouting(), pool=pool, size=2, name="pool")
        before = await router.ask(GetRoutees())
        router.tell(Kill)
        after = await router.ask(GetRoutees())
        await trio.testing.wait_all_tasks_blocked()
    failures = [e for e in seen if isinstance(e, ActorFailed)]
    assert [(e.ref, type(e.error)) for e in failures] == [(router, ActorKilled)]
    assert len(before) == len(after) == 2
    assert set(before).isdisjoint(after)  # a fresh pool after the restart


async def test_kill_and_poison_pill_pickle_to_themselves(
    autojump_clock: trio.testing.MockClock,
) -> None:
    assert pickle.loads(pickle.dumps(Kill)) is Kill
    assert pickle.loads(pickle.dumps(PoisonPill)) is PoisonPill
    assert (repr(Kill), repr(PoisonPill)) == ("Kill", "PoisonPill")
    async with actors.open_system("kill-copied", roundtrip_messages=True) as system:
        ref = system.spawn(Counter, [], name="c")
        with pytest.raises(ActorKilled):
            await ref.ask(Kill)
    error = pickle.loads(pickle.dumps(ActorKilled("/user/c")))
    assert (type(error), error.path) == (ActorKilled, "/user/c")


def test_the_testkit_kill_is_an_actor_killed() -> None:
    assert issubclass(actors.testing.ActorKilled, ActorKilled)
    assert issubclass(actors.testing.ActorKilled, actors.testing.InjectedFault)
    error = actors.testing.ActorKilled("/user/w", "was killed by a fault injector (seed 3)")
    assert str(error) == "actor /user/w was killed by a fault injector (seed 3)"
    assert "FaultInjector killed it on purpose" in "".join(error.__notes__)
