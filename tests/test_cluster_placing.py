"""Children placed on other nodes of a cluster, supervised by their parent's node: a
failure there is decided here, and a child whose node is killed is restarted on another
node, under the same ref.

Real node processes and a real nats-server; every wait is bounded by ``trio.fail_after``
and ends on an answer or an event.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

pytest.importorskip("nats")
pytest.importorskip("trio_asyncio")

from cluster_actors import Add, Counter, Fail, Get, Refused, Where
from cluster_harness import node_process, own_node, watch_from

import actors
from actors.cluster import AnyNode, OnNode

pytestmark = [pytest.mark.nats, pytest.mark.workers]


class Parent(actors.Actor):
    """Places a Counter on another node and hands out its ref; records its children's
    failures as its supervisor sees them."""

    def __init__(self, placement: Any, failures: list[BaseException]) -> None:
        self.placement = placement
        self.failures = failures

    async def pre_start(self) -> None:
        self.child = self.context.spawn(Counter, name="child", placement=self.placement)

    def receive(self, message: Any) -> Any:
        return self.child


async def test_a_placed_child_fails_there_and_its_parent_here_restarts_it(nats_url: str) -> None:
    with trio.fail_after(60):
        async with node_process(nats_url, "n1"), own_node(nats_url) as system:
            await system.cluster.wait_for_members({"n1"})
            parent = system.spawn(Parent, OnNode("n1"), [], name="parent")
            child = await parent.ask("child?")
            assert child.path == "/user/parent/child"
            assert child.address.node == "t"  # (the parent's node: the ref stays valid)
            assert await child.ask(Where()) == "n1"
            child.tell(Add(3))
            assert await child.ask(Get()) == [3]
            # An asker gets the handler's error (the actor goes on, as in one process).
            with pytest.raises(Refused):
                await child.ask(Fail("boom"))
            assert await child.ask(Get()) == [3]
            # A told message that fails it: its supervisor here restarts it there (a
            # fresh instance); the next message waits for the restart.
            child.tell(Fail("boom"))
            assert await child.ask(Get()) == []
            assert await child.ask(Where()) == "n1"
            # Stopping the parent stops the child there.
            watched = await watch_from(system, child)
            system.stop(parent)
            terminated = await watched.receive()
            assert terminated.ref == child


@pytest.mark.crash
async def test_a_placed_child_is_restarted_on_another_node_when_its_node_is_killed(
    nats_url: str,
) -> None:
    with trio.fail_after(90):
        async with (
            node_process(nats_url, "n1") as n1,
            node_process(nats_url, "n2") as n2,
            own_node(nats_url) as system,
        ):
            await system.cluster.wait_for_members({"n1", "n2"})
            parent = system.spawn(Parent, AnyNode(), [], name="parent")
            child = await parent.ask("child?")
            first = await child.ask(Where())
            assert first in ("n1", "n2")
            child.tell(Add(1))
            assert await child.ask(Get()) == [1]
            watched = await watch_from(system, child)
            (n1 if first == "n1" else n2).kill()
            # Its parent's supervisor restarts it on the node that is left, same ref.
            while True:
                try:
                    where = await child.ask(Where(), timeout=5)
                except actors.ActorDead:
                    continue  # (asked while it was being restarted)
                if where != first:
                    break
            assert where == ("n2" if first == "n1" else "n1")
            assert await child.ask(Get()) == []  # a fresh instance
            assert first not in system.cluster.live_members()
            # A restart is not an end: the watcher got nothing.
            with trio.move_on_after(0.2):
                got = await watched.receive()
                raise AssertionError(f"a watcher got {got!r} for a restart")


async def test_placement_needs_a_class_and_a_live_node(nats_url: str) -> None:
    with trio.fail_after(60):
        async with node_process(nats_url, "n1"), own_node(nats_url) as system:
            await system.cluster.wait_for_members({"n1"})
            with pytest.raises(actors.ActorError, match="is this node"):
                system.spawn(Counter, placement=OnNode("t"))
            with pytest.raises(actors.ActorError, match="not a live member"):
                system.spawn(Counter, placement=OnNode("n9"))
            with pytest.raises(TypeError, match="give an actor class"):
                system.spawn(lambda: Counter(), placement=AnyNode())


async def test_a_node_that_leaves_stops_the_children_placed_on_it_first(nats_url: str) -> None:
    with trio.fail_after(60):
        async with own_node(nats_url) as system:
            async with node_process(nats_url, "n1"):
                await system.cluster.wait_for_members({"n1"})
                parent = system.spawn(Parent, OnNode("n1"), [], name="parent")
                child = await parent.ask("child?")
                assert await child.ask(Where()) == "n1"
                watched = await watch_from(system, child)
            # n1 has left in order: the child ended there first (not lost with it).
            terminated = await watched.receive()
            assert terminated.ref == child
            assert terminated.error is None
            assert "n1" not in system.cluster.live_members()
