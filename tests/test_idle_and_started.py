"""``system.started(ref)`` (wait until an actor, and a supervisor's static children, have
started) and ``system.idle()`` (wait until every mailbox is empty and every actor idle,
without polling)."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import trio
import trio.testing

import actors
import supervision as sv
from actors import (
    Actor,
    ActorDead,
    ActorInitializationError,
    ActorNotFound,
    ActorRef,
    ActorSystem,
    Supervisor,
)
from actors._idle_and_started import park_watchers


class Boom(Exception):
    pass


class SlowStart(Actor):
    async def pre_start(self) -> None:
        await trio.sleep(1)

    def receive(self, message: Any) -> Any:
        return message


# -- started ------------------------------------------------------------------------------------


async def test_a_supervisors_children_can_be_looked_up_once_it_has_started(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    specs = [sv.ChildSpec("db", SlowStart), sv.ChildSpec("web", SlowStart)]
    sup = actor_system.spawn(Supervisor, specs, name="app")
    with pytest.raises(ActorNotFound):  # spawn returns at once: nothing has started yet
        actor_system.lookup("/user/app/db")
    assert await actor_system.started(sup) is sup
    assert trio.current_time() == 2  # each child started in turn
    assert await actor_system.lookup("/user/app/db").ask("hi") == "hi"
    assert await actor_system.lookup("/user/app/web").ask("hi") == "hi"


async def test_started_returns_at_once_for_a_started_actor(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    ref = await actor_system.started(actor_system.spawn(SlowStart))
    assert trio.current_time() == 1
    assert await actor_system.started(ref) is ref
    assert trio.current_time() == 1


@pytest.mark.actor_system(guardian_strategy=sv.OneForOne(lambda e: sv.Directive.STOP))
async def test_a_failed_start_raises_actor_dead_with_the_init_error(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    class NeverStarts(Actor):
        async def pre_start(self) -> None:
            await trio.sleep(1)
            raise Boom("no database")

    ref = actor_system.spawn(NeverStarts, name="never")
    with pytest.raises(ActorDead) as info:
        await actor_system.started(ref)
    error = info.value
    assert str(error).startswith("actor /user/never stopped before it started: it failed with")
    assert isinstance(error.error, ActorInitializationError)
    assert error.__cause__ is error.error
    assert isinstance(error.error.error, Boom)
    # Already dead: the same, at once.
    with pytest.raises(ActorDead, match="is not running") as again:
        await actor_system.started(ref)
    assert again.value.error is error.error


async def test_a_start_that_fails_then_succeeds_counts_once_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts: list[int] = []

    class SecondTime(Actor):
        def pre_start(self) -> None:
            attempts.append(1)
            if len(attempts) == 1:
                raise Boom("first start fails")

    restart = sv.OneForOne(lambda e: sv.Directive.RESTART)
    async with actors.open_system("restarts", guardian_strategy=restart) as system:
        ref = system.spawn(SecondTime)
        assert await system.started(ref) is ref
        assert len(attempts) == 2
        assert ref.stats().restarts == 1


async def test_started_on_a_ref_with_no_actor_raises(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    ref = actor_system.spawn(SlowStart, name="gone")
    await actor_system.graceful_stop(ref)
    actor_system.spawn(SlowStart, name="gone")  # another incarnation at the same path
    with pytest.raises(ActorDead, match="does not exist"):
        await actor_system.started(pickle.loads(pickle.dumps(ref)))


async def test_an_actor_cannot_wait_for_its_own_start(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    class Selfish(Actor):
        async def pre_start(self) -> None:
            try:
                await self.context.system.started(self.context.ref)
            except actors.ActorError as exc:
                self.error = str(exc)

        def receive(self, message: Any) -> str:
            return self.error

    ref = actor_system.spawn(Selfish, name="selfish")
    assert await ref.ask("why") == (
        "/user/selfish waited for its own start (system.started in its own __init__ or "
        "pre_start), which would wait forever"
    )


# -- idle ---------------------------------------------------------------------------------------


class Relay(Actor):
    """Handles each number for ``n`` virtual seconds, then passes ``n - 1`` on."""

    def __init__(self, log: list[tuple[str, int, float]], next_hop: ActorRef | None) -> None:
        self.log = log
        self.next_hop = next_hop

    async def receive(self, n: int) -> None:
        await trio.sleep(n)
        self.log.append((self.context.ref.name, n, trio.current_time()))
        if n > 1 and self.next_hop is not None:
            self.next_hop.tell(n - 1)


async def test_idle_waits_for_a_chain_of_messages_to_settle(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    log: list[tuple[str, int, float]] = []
    c = actor_system.spawn(Relay, log, None, name="c")
    b = actor_system.spawn(Relay, log, c, name="b")
    a = actor_system.spawn(Relay, log, b, name="a")
    a.tell(3)
    a.tell(1)
    await actor_system.idle()
    assert log == [("a", 3, 3), ("a", 1, 4), ("b", 2, 5), ("c", 1, 6)]
    assert trio.current_time() == 6
    assert all(ref.stats().mailbox == 0 for ref in (a, b, c))
    assert not park_watchers  # nothing left behind


async def test_idle_returns_at_once_when_nothing_is_busy(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    await actor_system.idle()
    actor_system.spawn(SlowStart)  # starting is busy
    await actor_system.idle()
    assert trio.current_time() == 1
    await actor_system.idle()
    assert trio.current_time() == 1


async def test_pending_timers_do_not_count_as_busy(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    ticks: list[float] = []

    class Ticking(Actor):
        def pre_start(self) -> None:
            self.context.timers.start_at_fixed_rate("t", "tick", 10)
            self.context.set_receive_timeout(3)

        def receive(self, message: Any) -> None:
            if message == "tick":
                ticks.append(trio.current_time())

    actor_system.spawn(Ticking)
    await actor_system.idle()
    assert (trio.current_time(), ticks) == (0, [])
    await trio.sleep(25)
    await actor_system.idle()
    assert ticks == [10, 20]


async def test_pending_pipes_count_as_busy(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    got: list[Any] = []

    class Piping(Actor):
        def pre_start(self) -> None:
            self.context.pipe_to_self(trio.sleep, 4, adapt=lambda _: "done")

        def receive(self, message: Any) -> None:
            got.append((message, trio.current_time()))

    actor_system.spawn(Piping)
    await actor_system.idle()
    assert got == [("done", 4)]


async def test_idle_waits_for_a_stop_in_progress(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    class SlowStop(Actor):
        async def post_stop(self) -> None:
            await trio.sleep(2)

    ref = actor_system.spawn(SlowStop)
    await actor_system.idle()
    actor_system.stop(ref)
    await actor_system.idle()
    assert trio.current_time() == 2
    assert not ref.stats().alive


async def test_idle_from_inside_an_actor_raises(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    class Impatient(Actor):
        async def receive(self, message: Any) -> str:
            try:
                await self.context.system.idle()
            except actors.ActorError as exc:
                return str(exc)
            return "no error"

    ref = actor_system.spawn(Impatient, name="impatient")
    assert await ref.ask("go") == (
        "system.idle() called by /user/impatient (or a task it started), which is busy "
        "while it waits, so it would wait for itself; call it from outside the actors "
        "(a script or a test)"
    )


async def test_a_cancelled_idle_leaves_nothing_behind_once_the_actor_parks(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    log: list[tuple[str, int, float]] = []
    ref = actor_system.spawn(Relay, log, None)
    ref.tell(5)
    with trio.move_on_after(1):
        await actor_system.idle()
    assert trio.current_time() == 1
    assert park_watchers  # it waits for the relay to park
    await actor_system.idle()
    assert trio.current_time() == 5
    assert not park_watchers
