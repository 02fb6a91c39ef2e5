"""``system.describe()``: a snapshot of the live actor tree (shape, classes, states,
mailbox and stash sizes, routers, persistent actors, strategies), rendered as text and
as a Mermaid flowchart; ``context.describe()`` and subtrees; wrong-thread calls."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
import actors.routing
import supervision as sv
from actors import Actor, ActorNode, ActorTree, Mailbox
from actors.persistence import InMemoryJournal, Persistence, PersistentActor


class Leaf(Actor):
    def receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash")
        return message


class Branch(Actor):
    """Spawns the children it is given, in order: ``(name, capacity or None)``."""

    def __init__(self, leaves: tuple[tuple[str, int | None], ...] = ()) -> None:
        self.leaves = leaves

    def pre_start(self) -> None:
        for name, capacity in self.leaves:
            self.context.spawn(Leaf, name=name, mailbox=Mailbox(capacity=capacity))

    def receive(self, message: Any) -> Any:
        if message == "describe":
            return self.context.describe()
        return None


class Blocked(Actor):
    """Its handler waits for ``release``: later messages pile up in its mailbox."""

    def __init__(self, release: trio.Event) -> None:
        self.release = release

    async def receive(self, message: Any) -> None:
        await self.release.wait()


class Stasher(Actor):
    def receive(self, message: Any) -> None:
        self.context.stash()


class Ledger(PersistentActor):
    persistence_id = "ledger-1"

    def __init__(self) -> None:
        self.total = 0

    def apply(self, event: Any) -> None:
        self.total += event

    async def receive(self, message: Any) -> int:
        return await self.persist(message)


def _node(name: str, *children: ActorNode, **changes: Any) -> ActorNode:
    fields: dict[str, Any] = {
        "path": f"/user/{name}",
        "name": name,
        "actor_class": "Leaf",
        "state": "running",
        "mailbox": 0,
        "capacity": None,
        "stash": 0,
        "details": {},
        "strategy": "OneForOne" if children else None,
        "children": children,
    }
    fields.update(changes)
    return ActorNode(**fields)


async def test_the_tree_has_every_live_actor_nested_in_spawn_order_and_prints_exactly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("shape") as system:
        system.spawn(Branch, (("b", None), ("a", 10)), name="bank")
        system.spawn(Leaf, name="audit")
        await trio.testing.wait_all_tasks_blocked()
        tree = system.describe()
        assert isinstance(tree, ActorTree)
        assert tree.system == "shape"
        assert [node.path for node in tree.walk()] == [
            "/user",
            "/user/bank",
            "/user/bank/b",
            "/user/bank/a",
            "/user/audit",
        ]
        assert len(tree) == 5
        root = tree.root
        assert (root.name, root.actor_class, root.state, root.strategy) == (
            "user",
            None,
            "running",
            "OneForOne",
        )
        bank = tree.find("/user/bank")
        assert bank is not None
        assert (bank.actor_class, bank.strategy, len(bank.children)) == ("Branch", "OneForOne", 2)
        a = tree.find("user/bank/a/")
        assert a is not None
        assert (a.capacity, a.strategy, a.children) == (10, None, ())
        assert tree.find("/user/nobody") is None
        assert (
            str(tree)
            == tree.to_text()
            == (
                "/user (running, mailbox 0) [one-for-one]\n"
                "├── bank (Branch, running, mailbox 0) [one-for-one]\n"
                "│   ├── b (Leaf, running, mailbox 0)\n"
                "│   └── a (Leaf, running, mailbox 0/10)\n"
                "└── audit (Leaf, running, mailbox 0)\n"
            )
        )
        assert tree.to_mermaid() == (
            "graph TD\n"
            "    classDef starting fill:#fff4cc,stroke:#b38f00\n"
            "    classDef running fill:#dff5e1,stroke:#2e7d32\n"
            "    classDef restarting fill:#ffe0b2,stroke:#e65100\n"
            "    classDef stopping fill:#eeeeee,stroke:#616161,stroke-dasharray:4 2\n"
            '    a0["/user"]:::running\n'
            '    a1["bank<br/>Branch"]:::running\n'
            '    a2["b<br/>Leaf"]:::running\n'
            '    a3["a<br/>Leaf"]:::running\n'
            '    a4["audit<br/>Leaf"]:::running\n'
            "    a0 --> a1\n"
            "    a0 --> a4\n"
            "    a1 --> a2\n"
            "    a1 --> a3\n"
        )
        # Deterministic: the same tree describes the same way.
        assert system.describe() == tree


async def test_the_snapshot_is_frozen_and_does_not_follow_later_changes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system() as system:
        leaf = system.spawn(Leaf, name="leaf")
        await trio.testing.wait_all_tasks_blocked()
        before = system.describe()
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            before.root.name = "other"  # type: ignore[misc]
        await system.graceful_stop(leaf)
        system.spawn(Leaf, name="new")
        await trio.testing.wait_all_tasks_blocked()
        assert [node.name for node in before.root.children] == ["leaf"]
        assert [node.name for node in system.describe().root.children] == ["new"]


async def test_a_pool_router_is_marked_and_its_routees_are_its_children(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system() as system:
        system.spawn(
            actors.routing.Router,
            actors.routing.RoundRobinRouting(),
            pool=Leaf,
            size=3,
            name="pool",
        )
        group = system.spawn(
            actors.routing.Router, actors.routing.RoundRobinRouting(), routees=[], name="group"
        )
        await trio.testing.wait_all_tasks_blocked()
        tree = system.describe()
        pool = tree.find("/user/pool")
        assert pool is not None
        assert (pool.actor_class, pool.strategy) == ("Router", "OneForOne")
        assert pool.details == {"routing": "RoundRobinRouting", "routees": 3}
        assert [child.name for child in pool.children] == ["$1", "$2", "$3"]
        assert not any(child.details for child in pool.children)
        assert system.describe(group).root.details["routees"] == 0
        assert (
            "pool (Router, running, mailbox 0) [routing=RoundRobinRouting, routees=3, "
            "one-for-one]\n" in tree.to_text()
        )
        assert (
            "group (Router, running, mailbox 0) [routing=RoundRobinRouting, routees=0]\n"
            in tree.to_text()
        )


async def test_a_persistent_actor_shows_its_persistence_id_and_last_sequence_number(
    autojump_clock: trio.testing.MockClock,
) -> None:
    journal = InMemoryJournal()
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        ledger = system.spawn(Ledger, name="ledger")
        assert await ledger.ask(5) == 1
        assert await ledger.ask(7) == 2
        node = system.describe(ledger).root
        assert node.details == {"persistence_id": "ledger-1", "last_seq": 2}
        assert node.actor_class == "Ledger"
        assert node.capacity is None  # no persist in flight: the mailbox's own bound
        assert str(system.describe(ledger)) == (
            "/user/ledger (Ledger, running, mailbox 0) [persistence_id=ledger-1, last_seq=2]\n"
        )
    async with actors.open_system(extensions=[Persistence(journal)]) as system:
        ledger = system.spawn(Ledger, name="ledger")
        await trio.testing.wait_all_tasks_blocked()
        assert system.describe(ledger).root.details["last_seq"] == 2  # recovered


async def test_mailbox_and_stash_sizes_of_a_busy_actor(
    autojump_clock: trio.testing.MockClock,
) -> None:
    release = trio.Event()
    async with actors.open_system() as system:
        blocked = system.spawn(Blocked, release, name="blocked", mailbox=Mailbox(capacity=5))
        stasher = system.spawn(Stasher, name="stasher")
        for n in range(4):
            blocked.tell(n)
            stasher.tell(n)
        await trio.testing.wait_all_tasks_blocked()
        tree = system.describe()
        busy = tree.find("/user/blocked")
        assert busy is not None
        # The first message is being handled; the other three wait.
        assert (busy.mailbox, busy.capacity, busy.stash, busy.state) == (3, 5, 0, "running")
        stashing = tree.find("/user/stasher")
        assert stashing is not None
        assert (stashing.mailbox, stashing.stash) == (0, 4)
        assert tree.to_text().splitlines()[1:] == [
            "├── blocked (Blocked, running, mailbox 3/5)",
            "└── stasher (Stasher, running, mailbox 0, stash 4)",
        ]
        release.set()
        await trio.testing.wait_all_tasks_blocked()
        assert system.describe(blocked).root.mailbox == 0


async def test_starting_and_stopping_states(autojump_clock: trio.testing.MockClock) -> None:
    gate = trio.Event()

    class SlowStart(Actor):
        async def pre_start(self) -> None:
            await gate.wait()

        def receive(self, message: Any) -> None:
            pass

    class SlowStop(Actor):
        def receive(self, message: Any) -> None:
            pass

        async def post_stop(self) -> None:
            await gate.wait()

    async with actors.open_system() as system:
        fresh = system.spawn(Leaf, name="fresh")
        # Its task has not run yet: no instance, the class comes from the factory.
        node = system.describe(fresh).root
        assert (node.state, node.actor_class) == ("starting", "Leaf")
        slow_start = system.spawn(SlowStart, name="slow-start")
        slow_stop = system.spawn(SlowStop, name="slow-stop")
        await trio.testing.wait_all_tasks_blocked()
        system.stop(slow_stop)
        await trio.testing.wait_all_tasks_blocked()
        states = {node.name: node.state for node in system.describe().walk()}
        assert states == {
            "user": "running",
            "fresh": "running",
            "slow-start": "starting",
            "slow-stop": "stopping",
        }
        mermaid = system.describe().to_mermaid()
        assert ":::starting\n" in mermaid
        assert ":::stopping\n" in mermaid
        gate.set()
        await trio.testing.wait_all_tasks_blocked()
        assert system.describe(slow_start).root.state == "running"
        assert system.find("/user/slow-stop") is None


async def test_an_actor_waiting_out_a_restart_backoff_is_restarting(
    mock_clock: trio.testing.MockClock,
) -> None:
    backoff = sv.OneForOne(backoff=sv.Backoff(min_delay=2.0, max_delay=2.0, jitter=0.0))
    async with actors.open_system() as system:
        parent = system.spawn(Branch, (("a", None), ("b", None)), supervisor_strategy=backoff)
        await trio.testing.wait_all_tasks_blocked()
        system.lookup(f"{parent.path}/a").tell("crash")
        system.lookup(f"{parent.path}/a").tell("queued")
        await trio.testing.wait_all_tasks_blocked()
        tree = system.describe(parent)
        a, b = tree.root.children
        assert (a.state, a.mailbox, b.state) == ("restarting", 1, "running")
        assert ":::restarting\n" in tree.to_mermaid()
        assert "├── a (Leaf, restarting, mailbox 1" in tree.to_text()
        mock_clock.jump(2.0)
        await trio.testing.wait_all_tasks_blocked()
        a, b = system.describe(parent).root.children
        assert (a.state, a.mailbox, b.state) == ("running", 0, "running")


async def test_a_one_for_all_strategy_restarts_the_siblings_too(
    mock_clock: trio.testing.MockClock,
) -> None:
    strategy = sv.OneForAll(backoff=sv.Backoff(min_delay=1.0, max_delay=1.0, jitter=0.0))
    async with actors.open_system() as system:
        parent = system.spawn(Branch, (("a", None), ("b", None)), supervisor_strategy=strategy)
        await trio.testing.wait_all_tasks_blocked()
        system.lookup(f"{parent.path}/b").tell("crash")
        await trio.testing.wait_all_tasks_blocked()
        root = system.describe(parent).root
        assert root.strategy == "OneForAll"
        assert [child.state for child in root.children] == ["restarting", "restarting"]
        assert str(system.describe(parent)).startswith(f"{parent.path} (Branch, running")
        assert "[one-for-all]" in str(system.describe(parent))
        mock_clock.jump(1.0)
        await trio.testing.wait_all_tasks_blocked()
        root = system.describe(parent).root
        assert [child.state for child in root.children] == ["running", "running"]


async def test_strategy_names_of_supervisors(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system() as system:
        system.spawn(Branch, (("x", None),), name="one", supervisor_strategy=sv.OneForOne())
        system.spawn(Branch, (("x", None),), name="rest", supervisor_strategy=sv.RestForOne())
        system.spawn(Branch, name="childless", supervisor_strategy=sv.RestForOne())
        await trio.testing.wait_all_tasks_blocked()
        text = system.describe().to_text()
    assert "├── one (Branch, running, mailbox 0) [one-for-one]\n" in text
    assert "├── rest (Branch, running, mailbox 0) [rest-for-one]\n" in text
    assert "└── childless (Branch, running, mailbox 0)\n" in text


async def test_subtrees_from_the_system_and_from_the_context(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system() as system:
        bank = system.spawn(Branch, (("b", None),), name="bank")
        await trio.testing.wait_all_tasks_blocked()
        by_ref = system.describe(bank)
        assert system.describe("/user/bank") == by_ref
        assert await bank.ask("describe") == by_ref
        assert by_ref.to_text() == (
            "/user/bank (Branch, running, mailbox 0) [one-for-one]\n"
            "└── b (Leaf, running, mailbox 0)\n"
        )
        assert system.describe("/user") == system.describe()
        with pytest.raises(actors.ActorNotFound):
            system.describe("/user/nobody")
        with pytest.raises(actors.ActorNotFound):
            system.describe("/system")
        await system.graceful_stop(bank)
        with pytest.raises(actors.ActorNotFound):
            system.describe(bank)
        async with actors.open_system("other") as other:
            elsewhere = other.spawn(Leaf, name="x")
            with pytest.raises(actors.ActorNotFound):
                system.describe(elsewhere)


async def test_describe_from_another_thread_raises_wrong_thread(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system() as system:
        with pytest.raises(actors.WrongThread):
            await trio.to_thread.run_sync(system.describe)
        tree = await trio.to_thread.run_sync(lambda: trio.from_thread.run_sync(system.describe))
        assert tree == system.describe()


def test_rendering_escapes_odd_names_classes_and_persistence_ids() -> None:
    odd = _node(
        "a:b@c+d=e,f~g$1",
        actor_class="make.<locals>.Odd",
        details={"persistence_id": 'he said "hi" [x]', "last_seq": 3},
        state="stopping",
        mailbox=2,
        stash=1,
    )
    tricky = ActorNode(
        path="/user/q",
        name='q"]:::x --> y[("',
        actor_class="A#{b}|c;&`d",
        state="restarting",
        mailbox=0,
        capacity=1,
        stash=0,
        details={"routing": "Odd Routing"},
        strategy="MyStrategy",
        children=(odd,),
    )
    tree = ActorTree("odd", _node("user", tricky, path="/user", actor_class=None))
    assert tree.to_text() == (
        "/user (running, mailbox 0) [one-for-one]\n"
        '└── q"]:::x --> y[(" (A#{b}|c;&`d, restarting, mailbox 0/1)'
        " [routing='Odd Routing', MyStrategy]\n"
        "    └── a:b@c+d=e,f~g$1 (make.<locals>.Odd, stopping, mailbox 2, stash 1)"
        " [persistence_id='he said \"hi\" [x]', last_seq=3]\n"
    )
    mermaid = tree.to_mermaid()
    assert mermaid.splitlines()[5:] == [
        '    a0["/user"]:::running',
        '    a1["q#34;#93;:::x --#62; y#91;#40;#34;<br/>A#35;#123;b#125;#124;c#59;#38;#96;d"]'
        ":::restarting",
        '    a2["a:b@c+d=e,f~g$1<br/>make.#60;locals#62;.Odd"]:::stopping',
        "    a0 --> a1",
        "    a1 --> a2",
    ]
