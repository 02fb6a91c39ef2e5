"""A cluster on NATS, with real node processes: refs, asks, errors, death watch, names
and a node lost, between the test's own node and nodes in other processes.

Each test starts a throwaway nats-server (the ``nats_url`` fixture) and node processes
(``tests/cluster_actors.py``), and is itself node ``t`` of the same system. Time is real
(NATS is a real server); every wait is bounded by ``trio.fail_after`` and ends on an
event, never on a sleep.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
from actors.cluster import NodeLost, UnencodableMessage

pytest.importorskip("nats")
pytest.importorskip("trio_asyncio")

from cluster_actors import Add, Counter, Echo, Echoed, Fail, Get, Ignore, Refused, Where
from cluster_harness import DOWN_AFTER, Collector, node_process, own_node, watch_from

pytestmark = [pytest.mark.nats, pytest.mark.workers]


async def test_tell_and_ask_between_nodes_keep_order(nats_url: str) -> None:
    with trio.fail_after(60):
        async with node_process(nats_url, "n1", "counter=Counter"), own_node(nats_url) as system:
            await system.cluster.wait_for_members({"n1"})
            counter = await system.cluster.lookup("counter")
            assert counter is not None
            assert counter.address.node == "n1"
            for amount in range(1, 201):
                counter.tell(Add(amount))
            assert await counter.ask(Get()) == list(range(1, 201))
            assert await counter.ask(Where()) == "n1"
            assert system.cluster.live_members() == ["n1", "t"]


async def test_errors_come_back_with_their_type(nats_url: str) -> None:
    with trio.fail_after(60):
        async with node_process(nats_url, "n1", "counter=Counter"), own_node(nats_url) as system:
            await system.cluster.wait_for_members({"n1"})
            counter = await system.cluster.lookup("counter")
            assert counter is not None
            with pytest.raises(Refused, match="no funds"):
                await counter.ask(Fail("no funds"))
            with pytest.raises(actors.RemoteError, match="NotRegistered") as caught:
                await counter.ask(Fail("not this one", registered=False))
            assert "not this one" in str(caught.value)
            with pytest.raises(actors.AskTimeout):
                await counter.ask(Ignore(), timeout=0.3)
            # The actor is still there (its failures were resumed? no: restarted) and answers.
            assert await counter.ask(Where()) == "n1"


async def test_a_message_of_an_unregistered_type_is_refused_at_the_call(nats_url: str) -> None:
    @attrs.frozen
    class Secret:
        pass

    with trio.fail_after(60):
        async with node_process(nats_url, "n1", "counter=Counter"), own_node(nats_url) as system:
            await system.cluster.wait_for_members({"n1"})
            counter = await system.cluster.lookup("counter")
            assert counter is not None
            with pytest.raises(UnencodableMessage, match="Secret"):
                counter.tell(Secret())


async def test_sender_refs_travel_inside_messages(nats_url: str) -> None:
    with trio.fail_after(60):
        async with node_process(nats_url, "n1", "counter=Counter"), own_node(nats_url) as system:
            await system.cluster.wait_for_members({"n1"})
            counter = await system.cluster.lookup("counter")
            assert counter is not None
            send, receive = trio.open_memory_channel[Any](10)
            collector = system.spawn(Collector, send, name="collector")
            counter.tell(Echo("hello", reply_to=collector))
            assert await receive.receive() == Echoed("hello", "n1")


async def test_death_watch_and_names_across_nodes(nats_url: str) -> None:
    with trio.fail_after(60):
        async with node_process(nats_url, "n1", "counter=Counter"), own_node(nats_url) as system:
            await system.cluster.wait_for_members({"n1"})
            counter = await system.cluster.lookup("counter")
            assert counter is not None
            receive = await watch_from(system, counter)
            system.stop(counter)
            terminated = await receive.receive()
            assert isinstance(terminated, actors.Terminated)
            assert terminated.ref == counter
            # A message from here to it now is a dead letter here, on its sender's node.
            letters, dead_letters = trio.open_memory_channel[Any](10)
            system.events.subscribe(system.spawn(Collector, letters), actors.DeadLetter)
            sender = system.spawn(Collector, trio.open_memory_channel[Any](1)[0])
            await system.idle()
            counter.tell(Add(9), sender)
            letter = await dead_letters.receive()
            assert letter.message == Add(9)
            assert letter.sender == sender
            assert letter.recipient == counter
            assert letter.reason == actors.DeadLetterReason.NO_SUCH_ACTOR
            # Its node frees its name when it stops (seen here only by looking it up).
            with trio.fail_after(10):
                while await system.cluster.lookup("counter") is not None:  # noqa: ASYNC110
                    await trio.sleep(0.05)


@pytest.mark.crash
async def test_a_node_killed_is_lost_promptly(nats_url: str, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, "actors.cluster")
    with trio.fail_after(60):
        async with (
            node_process(nats_url, "n1", "counter=Counter") as n1,
            own_node(nats_url) as system,
        ):
            await system.cluster.wait_for_members({"n1"})
            counter = await system.cluster.lookup("counter")
            assert counter is not None
            receive = await watch_from(system, counter)
            failed: list[BaseException] = []

            async def ask_in_flight() -> None:
                try:
                    await counter.ask(Ignore(), timeout=30)
                except actors.ActorDead as error:
                    failed.append(error)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask_in_flight)
                await trio.testing.wait_all_tasks_blocked()
                n1.kill()
                started = trio.current_time()
                terminated = await receive.receive()
            assert isinstance(terminated, actors.Terminated)
            assert isinstance(terminated.error, NodeLost)
            assert "heartbeat lapsed" in str(terminated.error)
            # Lost after about down_after, not after the ask's 30 s timeout.
            assert trio.current_time() - started < DOWN_AFTER + 5
            assert len(failed) == 1
            assert isinstance(failed[0].__cause__, NodeLost)
            assert "n1" not in system.cluster.live_members()
            # Its name is no longer found (its node is lost), and messages to it are
            # dead letters rather than lost silently.
            assert await system.cluster.lookup("counter") is None
            letters, dead_letters = trio.open_memory_channel[Any](10)
            system.events.subscribe(system.spawn(Collector, letters), actors.DeadLetter)
            await system.idle()
            counter.tell(Add(1))
            letter = await dead_letters.receive()
            assert letter.message == Add(1)
            assert letter.reason == actors.DeadLetterReason.PROCESS_LOST


async def test_spawn_on_another_node(nats_url: str) -> None:
    with trio.fail_after(60):
        async with node_process(nats_url, "n1"), own_node(nats_url) as system:
            await system.cluster.wait_for_members({"n1"})
            ref = await system.cluster.spawn(Counter, node="n1", name="made")
            assert ref.address.node == "n1"
            assert ref.path == "/user/made"
            ref.tell(Add(5))
            assert await ref.ask(Get()) == [5]
            assert await ref.ask(Where()) == "n1"
            # Taken names and unknown classes fail as they would here.
            with pytest.raises(actors.ActorNameTaken):
                await system.cluster.spawn(Counter, node="n1", name="made")
            with pytest.raises(actors.ActorError, match="does not let other nodes start"):
                await system.cluster.spawn("cluster_actors.Nope", node="n1")
            # Without a node, the nodes that list the class take turns.
            nodes = {(await system.cluster.spawn(Counter)).address.node for _ in range(4)}
            assert nodes == {"n1", "t"}


async def test_forward_poison_pill_and_kill_across_nodes(nats_url: str) -> None:
    with trio.fail_after(60):
        async with (
            node_process(nats_url, "n1", "counter=Counter", "other=Counter"),
            own_node(nats_url) as system,
        ):
            await system.cluster.wait_for_members({"n1"})
            counter = await system.cluster.lookup("counter")
            other = await system.cluster.lookup("other")
            assert counter is not None
            assert other is not None

            to = counter

            class Forwarder(actors.Actor):
                def receive(self, message: Any) -> None:
                    self.context.forward(to)

            forwarder = system.spawn(Forwarder, name="forwarder")
            # An ask forwarded to an actor on another node: the asker gets its answer.
            assert await forwarder.ask(Where()) == "n1"
            forwarder.tell(Add(7))
            await system.idle()  # (forwarded: its frame is ahead of the ask's in the outbox)
            assert await counter.ask(Get()) == [7]
            # Kill fails it (its supervisor there restarts it: a fresh instance);
            # PoisonPill stops it in mailbox order: the tell before it is handled.
            counter.tell(actors.Kill)
            with trio.fail_after(10):
                while await counter.ask(Get()) != []:  # noqa: ASYNC110
                    await trio.sleep(0.05)  # (the restart there is seen only by asking)
            receive = await watch_from(system, other)
            other.tell(Add(1))
            other.tell(actors.PoisonPill)
            terminated = await receive.receive()
            assert isinstance(terminated, actors.Terminated)
            assert terminated.error is None
            with pytest.raises(actors.ActorDead):
                await other.ask(Get())
