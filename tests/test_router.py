"""Router actors: pools and groups over the routing logics, forwarding (asks answered by
the routee), Broadcast, management messages, routee death and restart, no routees."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, ClassVar

import pytest
import trio
import trio.testing

import actors
import actors.routing
from actors import Actor, ActorRef, DeadLetter, DeadLetterReason
from actors.testing import TestProbe


class Echo(Actor):
    """Answers with (its name, the message); records what it got."""

    log: ClassVar[list[tuple[str, Any]]] = []

    def receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash")
        Echo.log.append((self.context.ref.name, message))
        return (self.context.ref.name, message)


@pytest.fixture(autouse=True)
def _fresh_log() -> None:
    Echo.log = []


async def test_round_robin_pool_routes_exactly_in_turn_and_asks_are_answered_by_routees(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("rr") as system:
        router = system.spawn(
            actors.routing.Router, actors.routing.RoundRobinRouting(), pool=Echo, size=3, name="r"
        )
        routees = await router.ask(actors.routing.GetRoutees())
        assert len(routees) == 3
        assert all(ref.path.startswith("/user/r/") for ref in routees)
        replies = [await router.ask(n) for n in range(9)]
    names = [ref.name for ref in routees]
    assert replies == [(names[n % 3], n) for n in range(9)]


async def test_a_routed_tell_keeps_its_sender(autojump_clock: trio.testing.MockClock) -> None:
    class Replier(Actor):
        def receive(self, message: Any) -> None:
            sender = self.context.sender
            assert sender is not None
            sender.tell(("re", message))

    async with actors.open_system("sender") as system:
        probe = TestProbe(system)
        router = system.spawn(
            actors.routing.Router, actors.routing.RoundRobinRouting(), pool=Replier, size=2
        )
        router.tell("hi", sender=probe.ref)
        assert await probe.expect_message(("re", "hi")) == ("re", "hi")


async def test_group_router_drops_routees_that_stop(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system("group") as system:
        a = system.spawn(Echo, name="a")
        b = system.spawn(Echo, name="b")
        router = system.spawn(
            actors.routing.Router, actors.routing.RoundRobinRouting(), routees=[a, b]
        )
        assert await router.ask(actors.routing.GetRoutees()) == (a, b)
        await system.graceful_stop(a)
        await trio.testing.wait_all_tasks_blocked()
        assert await router.ask(actors.routing.GetRoutees()) == (b,)
        assert [await router.ask(n) for n in range(3)] == [("b", 0), ("b", 1), ("b", 2)]


async def test_pool_routees_are_supervised_and_restarted_in_place(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("pool") as system:
        restarted: list[Any] = []
        watcher = system.spawn(_Collector, restarted)
        system.events.subscribe(watcher, actors.ActorRestarted)
        router = system.spawn(
            actors.routing.Router, actors.routing.RoundRobinRouting(), pool=Echo, size=2
        )
        before = await router.ask(actors.routing.GetRoutees())
        router.tell("crash")  # the first routee fails and is restarted by the router
        await trio.testing.wait_all_tasks_blocked()
        assert await router.ask(actors.routing.GetRoutees()) == before
        assert [e.ref for e in restarted] == [before[0]]


async def test_no_routees_sends_to_dead_letters_with_a_clear_reason(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("empty") as system:
        dead: list[DeadLetter] = []
        system.events.subscribe(system.spawn(_Collector, dead), DeadLetter)
        router = system.spawn(
            actors.routing.Router, actors.routing.RoundRobinRouting(), name="lonely"
        )
        router.tell("nobody")
        router.tell(actors.routing.Broadcast("nobody either"))
        await trio.testing.wait_all_tasks_blocked()
    assert [(d.message, d.reason, d.recipient.path) for d in dead] == [
        ("nobody", DeadLetterReason.NO_ROUTEES, "/user/lonely"),
        (actors.routing.Broadcast("nobody either"), DeadLetterReason.NO_ROUTEES, "/user/lonely"),
    ]


async def test_broadcast_reaches_every_routee_and_the_first_answers_an_ask(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("broadcast") as system:
        router = system.spawn(
            actors.routing.Router, actors.routing.RandomRouting(seed=1), pool=Echo, size=3
        )
        routees = await router.ask(actors.routing.GetRoutees())
        reply = await router.ask(actors.routing.Broadcast("all"))
        await trio.testing.wait_all_tasks_blocked()
    assert reply == (routees[0].name, "all")
    assert sorted(Echo.log) == sorted((ref.name, "all") for ref in routees)


async def test_management_messages_add_remove_and_resize(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("manage") as system:
        probe = TestProbe(system)
        router = system.spawn(
            actors.routing.Router, actors.routing.RoundRobinRouting(), pool=Echo, size=2
        )
        await router.ask(actors.routing.AdjustPoolSize(3))
        routees = await router.ask(actors.routing.GetRoutees())
        assert len(routees) == 5
        probe.watch(routees[-1])
        await router.ask(actors.routing.AdjustPoolSize(-2))  # the newest two stop
        assert await router.ask(actors.routing.GetRoutees()) == routees[:3]
        await probe.expect_terminated(routees[-1])
        outsider = system.spawn(Echo, name="outsider")
        await router.ask(actors.routing.AddRoutee(outsider))
        await router.ask(actors.routing.RemoveRoutee(routees[0]))
        assert await router.ask(actors.routing.GetRoutees()) == (*routees[1:3], outsider)
        group = system.spawn(
            actors.routing.Router, actors.routing.RoundRobinRouting(), routees=[outsider]
        )
        with pytest.raises(ValueError, match="pool routers"):
            await group.ask(actors.routing.AdjustPoolSize(1))
        await group.ask(actors.routing.RemoveRoutee(outsider))  # a group does not stop it
        assert await outsider.ask("still here") == ("outsider", "still here")


async def test_round_robin_router_tells_follow_the_logic_across_routee_changes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The router inlines round-robin's per-message step: told messages must land exactly
    # where the logic itself would send them, however the routees change in between.
    rng = random.Random(12)
    reference = actors.routing.RoundRobinRouting[ActorRef]()
    expected: dict[str, list[int]] = {}
    async with actors.open_system("rr-changes") as system:
        spare = [system.spawn(Echo, name=f"e{n}") for n in range(8)]
        router = system.spawn(
            actors.routing.Router, actors.routing.RoundRobinRouting(), routees=spare[:3]
        )
        current: tuple[ActorRef, ...] = await router.ask(actors.routing.GetRoutees())
        message = 0
        for _ in range(60):
            step = rng.random()
            if step < 0.2 and len(current) < len(spare):
                outside = [ref for ref in spare if ref not in current]
                await router.ask(actors.routing.AddRoutee(rng.choice(outside)))
            elif step < 0.35 and len(current) > 1:
                await router.ask(actors.routing.RemoveRoutee(rng.choice(current)))
            else:
                for _ in range(rng.randint(1, 7)):
                    chosen = reference.select_one(message, current)
                    assert chosen is not None
                    expected.setdefault(chosen.name, []).append(message)
                    router.tell(message)
                    message += 1
            current = await router.ask(actors.routing.GetRoutees())
        await trio.testing.wait_all_tasks_blocked()
    got: dict[str, list[int]] = {}
    for name, value in Echo.log:
        got.setdefault(name, []).append(value)
    assert message > 100
    assert got == expected


async def test_consistent_hashing_keeps_each_key_on_one_routee(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def customer(message: Any) -> Any:
        return message[0]

    async with actors.open_system("hashing") as system:
        router = system.spawn(
            actors.routing.Router,
            actors.routing.ConsistentHashingRouting(customer),
            pool=Echo,
            size=4,
        )
        for n in range(200):
            router.tell((f"customer-{n % 20}", n))
        await trio.testing.wait_all_tasks_blocked()
    owners: dict[str, set[str]] = {}
    for routee, (key, _) in Echo.log:
        owners.setdefault(key, set()).add(routee)
    assert len(owners) == 20
    assert all(len(names) == 1 for names in owners.values())
    assert len({next(iter(names)) for names in owners.values()}) > 1  # spread out


async def test_smallest_mailbox_prefers_the_least_loaded_routee(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Slow(Actor):
        async def receive(self, message: Any) -> None:
            Echo.log.append((self.context.ref.name, message))
            await trio.sleep(1.0)

    async with actors.open_system("smallest") as system:
        busy = system.spawn(Slow, name="busy")
        idle = system.spawn(Slow, name="idle")
        for n in range(3):
            busy.tell(("preload", n))
        await trio.testing.wait_all_tasks_blocked()
        router = system.spawn(
            actors.routing.Router, actors.routing.SmallestMailboxRouting(), routees=[busy, idle]
        )
        router.tell("routed")
        await trio.sleep(10)
    assert ("idle", "routed") in Echo.log


async def test_random_routing_is_reproducible_with_a_seed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    runs = []
    for _ in range(2):
        Echo.log = []
        async with actors.open_system("random") as system:
            a, b, c = (system.spawn(Echo, name=n) for n in "abc")
            router = system.spawn(
                actors.routing.Router, actors.routing.RandomRouting(seed=7), routees=[a, b, c]
            )
            for n in range(300):
                assert await router.ask(n) is not None
        runs.append([name for name, _ in Echo.log])
    assert runs[0] == runs[1]
    counts = Counter(runs[0])
    assert all(70 <= counts[name] <= 130 for name in "abc")


def test_router_arguments_are_checked() -> None:
    with pytest.raises(TypeError, match="RoutingLogic"):
        actors.routing.Router("round robin")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="size"):
        actors.routing.Router(actors.routing.RoundRobinRouting(), size=-1)
    with pytest.raises(ValueError, match="needs pool"):
        actors.routing.Router(actors.routing.RoundRobinRouting(), size=2)


class _Collector(Actor):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.append(message)


async def test_forward_outside_a_router(autojump_clock: trio.testing.MockClock) -> None:
    class Front(Actor):
        def __init__(self, back: ActorRef) -> None:
            self.back = back

        def receive(self, message: Any) -> str:
            self.context.forward(self.back)
            return "ignored: the back answers"

    async with actors.open_system("forward") as system:
        back = system.spawn(Echo, name="back")
        front = system.spawn(Front, back)
        assert await front.ask("q") == ("back", "q")
        await system.graceful_stop(back)
        with pytest.raises(actors.ActorDead):
            await front.ask("q2")


class _Delayed(Actor):
    """Replies after its own delay; raises if the delay is negative."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def receive(self, message: Any) -> Any:
        if self.delay < 0:
            raise LookupError(f"{self.context.ref.name} failed")
        await trio.sleep(self.delay)
        return (self.context.ref.name, trio.current_time())


async def test_scatter_gather_answers_with_the_first_reply_and_discards_the_rest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("scatter") as system:
        dead: list[DeadLetter] = []
        system.events.subscribe(system.spawn(_Collector, dead), DeadLetter)
        slow, fast, mid = (
            system.spawn(_Delayed, d, name=n)
            for n, d in (("slow", 3.0), ("fast", 0.5), ("mid", 1.0))
        )
        router = system.spawn(
            actors.routing.Router,
            actors.routing.ScatterGatherFirstCompletedRouting(within=10),
            routees=[slow, fast, mid],
        )
        start = trio.current_time()
        name, replied_at = await router.ask("q")
        assert (name, replied_at - start) == ("fast", 0.5)
        await trio.sleep(5)
        # The two late replies were discarded with a trace.
        late = sorted(d.message[0] for d in dead if d.reason is DeadLetterReason.ASK_EXPIRED)
        assert late == ["mid", "slow"]
        with pytest.raises(actors.AskTimeout):
            await router.ask("q", timeout=0.25)  # the asker's own, shorter, timeout


async def test_scatter_gather_raises_the_first_error_when_every_routee_fails(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("scatter-fail") as system:
        bad = [system.spawn(_Delayed, -1.0, name=f"bad{n}") for n in range(2)]
        router = system.spawn(
            actors.routing.Router,
            actors.routing.ScatterGatherFirstCompletedRouting(within=10),
            routees=bad,
        )
        with pytest.raises(LookupError, match="failed"):
            await router.ask("q")


async def test_tail_chopping_asks_the_next_routee_after_each_interval(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("tail") as system:
        stuck = system.spawn(_Delayed, 100.0, name="stuck")
        quick = system.spawn(_Delayed, 0.25, name="quick")
        router = system.spawn(
            actors.routing.Router,
            actors.routing.TailChoppingRouting(interval=1.0, within=5.0),
            routees=[stuck, quick],
        )
        start = trio.current_time()
        name, replied_at = await router.ask("q")  # stuck first, quick asked 1 s later
        assert (name, replied_at - start) == ("quick", 1.25)
        # Round-robin: the next question starts with quick.
        start = trio.current_time()
        assert (await router.ask("q"))[0] == "quick"
        assert trio.current_time() - start == 0.25
        only_stuck = system.spawn(
            actors.routing.Router,
            actors.routing.TailChoppingRouting(interval=1.0, within=5.0),
            routees=[stuck],
        )
        start = trio.current_time()
        with pytest.raises(actors.AskTimeout):
            await only_stuck.ask("q")
        assert trio.current_time() - start == 5.0


def test_ask_time_strategies_check_their_arguments() -> None:
    with pytest.raises(ValueError, match="within"):
        actors.routing.ScatterGatherFirstCompletedRouting(within=0)
    with pytest.raises(ValueError, match="interval"):
        actors.routing.TailChoppingRouting(interval=-1, within=1)


def test_resizer_change_follows_pressure_within_bounds() -> None:
    resizer = actors.routing.Resizer(lower=2, upper=5, pressure_threshold=2, rampup_rate=0.5)
    assert resizer.change([]) == 2  # below lower: up to lower
    assert resizer.change([3, 2]) == 1  # all busy: +ceil(0.5 * 2)
    assert resizer.change([3, 2, 9, 9]) == 1  # +2 would pass upper: clamped to 5
    assert resizer.change([3, 1]) == 0  # half busy: neither grow nor shrink
    assert resizer.change([0, 0, 0, 0]) == -1  # idle: shrink by at least 1
    assert resizer.change([0, 0]) == 0  # already at lower
    assert resizer.change([0] * 7) == -2  # above upper: down to upper
    with pytest.raises(ValueError, match="upper"):
        actors.routing.Resizer(lower=3, upper=2)
    with pytest.raises(ValueError, match="resizer= needs pool="):
        actors.routing.Router(actors.routing.RoundRobinRouting(), resizer=resizer)


async def test_a_resizing_pool_grows_under_pressure_and_shrinks_when_idle(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Slow(Actor):
        async def receive(self, message: Any) -> None:
            await trio.sleep(1.0)

    resizer = actors.routing.Resizer(
        lower=1, upper=4, rampup_rate=1.0, backoff_rate=0.5, interval=0.5
    )
    sizes: list[int] = []
    async with actors.open_system("resize") as system:
        router = system.spawn(
            actors.routing.Router,
            actors.routing.RoundRobinRouting(),
            pool=Slow,
            size=1,
            resizer=resizer,
        )
        await trio.testing.wait_all_tasks_blocked()
        for step in range(100):  # 20 busy steps (6 messages/s; 4 routees do 4/s), then idle
            if step < 20:
                for n in range(3):
                    router.tell(n)
            await trio.sleep(0.5)
            sizes.append(len(await router.ask(actors.routing.GetRoutees())))
    assert sizes[0] in (1, 2)  # at 0.5 s the resize tick may come before or after the ask
    assert max(sizes) == 4  # never above upper
    grow = sizes[: sizes.index(4) + 1]
    assert grow == sorted(grow)  # only grew until it reached the upper bound
    assert sizes[-1] == 1  # idle at the end: back to lower


# -- PoisonPill --------------------------------------------------------------------------


@pytest.mark.parametrize("queued", [0, 3])
async def test_a_poison_pill_stops_the_router_and_its_pool_whatever_its_mailbox_holds(
    autojump_clock: trio.testing.MockClock, queued: int
) -> None:
    lost: list[Any] = []
    async with actors.open_system("pill") as system:
        system.events.subscribe(system.spawn(_Collector, lost, name="letters"), DeadLetter)
        probe = TestProbe(system)
        router = system.spawn(
            actors.routing.Router, actors.routing.RoundRobinRouting(), pool=Echo, size=3
        )
        probe.watch(router)
        # Told before the router has started, these wait in its own mailbox, ahead of
        # the pill: they are routed first. With none, the pill finds it empty.
        for n in range(queued):
            router.tell(n)
        if not queued:
            await trio.testing.wait_all_tasks_blocked()
        router.tell(actors.PoisonPill)
        await probe.expect_terminated(router)
        # The router and its pool are gone; the collector and the probe remain.
        assert [node.name for node in system.describe().root.children] == ["letters", "$1"]
    # Every routed message was handled by a routee or is a dead letter of the stopping
    # pool; the pill itself was not routed.
    handled = [message for _, message in Echo.log]
    dropped = [letter.message for letter in lost if isinstance(letter.message, int)]
    assert sorted(handled + dropped) == list(range(queued))
    assert actors.PoisonPill not in handled


async def test_a_poison_pill_in_a_broadcast_stops_only_the_routees(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("pill-broadcast") as system:
        router = system.spawn(
            actors.routing.Router, actors.routing.RoundRobinRouting(), pool=Echo, size=2
        )
        routees = await router.ask(actors.routing.GetRoutees())
        router.tell(actors.routing.Broadcast(actors.PoisonPill))
        await trio.testing.wait_all_tasks_blocked()
        assert [ref.stats().alive for ref in routees] == [False, False]
        assert router.stats().alive
        assert await router.ask(actors.routing.GetRoutees()) == ()
