"""Sharded entities on a cluster of real node processes: activation on demand on one
node, reaching an entity from any node, failover after a kill -9 with no acknowledged
event lost, rebalancing when a node joins, and passivation.

Real time (NATS is a real server); every wait is bounded by ``trio.fail_after`` and ends
on an event or an answer.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

pytest.importorskip("nats")
pytest.importorskip("trio_asyncio")

from cluster_actors import LEDGER, TALLY, Add, Get, Tally, Where
from cluster_harness import node_process, own_node

import actors
from actors.cluster import EntityRef, EntityType
from actors.cluster._sharding import preferred_node, shard_of

pytestmark = [pytest.mark.nats, pytest.mark.workers]


def test_shards_and_preferred_nodes_are_stable_and_spread() -> None:
    assert shard_of("alice", 64) == shard_of("alice", 64)
    counts: dict[str, int] = {}
    for shard in range(300):
        chosen = preferred_node(f"t.{shard}", ["n1", "n2", "n3"])
        counts[chosen] = counts.get(chosen, 0) + 1
    assert set(counts) == {"n1", "n2", "n3"}
    assert min(counts.values()) > 60  # (about 100 each)
    # A node that joins takes shards only from the others, never moves them between them.
    for shard in range(300):
        before = preferred_node(f"t.{shard}", ["n1", "n2", "n3"])
        after = preferred_node(f"t.{shard}", ["n1", "n2", "n3", "n4"])
        assert after in (before, "n4")


async def test_entities_are_reached_from_any_node_and_live_on_one(nats_url: str) -> None:
    with trio.fail_after(90):
        async with (
            node_process(nats_url, "n1", options=("--entities",)),
            node_process(nats_url, "n2", options=("--entities",)),
            own_node(nats_url) as system,
        ):
            await system.cluster.wait_for_members({"n1", "n2"})
            await system.cluster.start_entities(TALLY, host=False)  # (routes only)
            where = {}
            for i in range(24):
                entity = system.cluster.entity("tally", f"e{i}")
                entity.tell(Add(i))
                entity.tell(Add(i + 100))
                where[i] = await entity.ask(Where())
            for i in range(24):
                assert await system.cluster.entity("tally", f"e{i}").ask(Get()) == [i, i + 100]
            hosts = {w.split("@")[1] for w in where.values()}
            assert hosts == {"n1", "n2"}  # both host some; t (host=False) none
            # The same entity answers from the same node each time.
            for i in range(24):
                assert await system.cluster.entity("tally", f"e{i}").ask(Where()) == where[i]


@pytest.mark.crash
async def test_a_persistent_entity_survives_its_node_killed(nats_url: str, tmp_path: Path) -> None:
    """Three nodes (n1, n2, and this one, which only routes); writers ask each ledger
    to persist numbers without pause; n1 is killed in the middle of it. Afterwards every
    ledger answers from n2 with every acknowledged number, in order, and nothing that
    was never sent."""
    journal_path = tmp_path / "journal.db"
    options = ("--journal", str(journal_path))
    with trio.fail_after(120):
        async with (
            node_process(nats_url, "n1", options=options) as n1,
            node_process(nats_url, "n2", options=options),
            own_node(nats_url) as system,
        ):
            await system.cluster.wait_for_members({"n1", "n2"})
            await system.cluster.start_entities(LEDGER, host=False)
            ledgers = [system.cluster.entity("ledger", f"acct{i}") for i in range(8)]
            where = {ledger.entity_id: await ledger.ask(Where()) for ledger in ledgers}
            assert any(w.endswith("@n1") for w in where.values()), where
            acknowledged: dict[str, list[int]] = {e.entity_id: [] for e in ledgers}
            attempted: dict[str, list[int]] = {e.entity_id: [] for e in ledgers}
            killed = trio.Event()
            going = trio.Event()
            after_kill: dict[str, int] = {e.entity_id: 0 for e in ledgers}
            numbers = iter(range(1, 1_000_000))

            async def write(ledger: EntityRef) -> None:
                entity_id = ledger.entity_id
                while after_kill[entity_id] < 3:
                    amount = next(numbers)
                    attempted[entity_id].append(amount)
                    try:
                        await ledger.ask(Add(amount), timeout=5)
                    except (actors.ActorDead, actors.AskTimeout):
                        continue  # (not acknowledged: it may or may not be in the journal)
                    acknowledged[entity_id].append(amount)
                    if min(len(a) for a in acknowledged.values()) >= 5:
                        going.set()  # (every writer is well under way: time to kill)
                    if killed.is_set():
                        after_kill[entity_id] += 1

            async with trio.open_nursery() as nursery:
                for ledger in ledgers:
                    nursery.start_soon(write, ledger)
                await going.wait()
                n1.kill()
                killed.set()
            for ledger in ledgers:
                seen = await ledger.ask(Get(), timeout=10)
                ours = acknowledged[ledger.entity_id]
                assert [n for n in seen if n in set(ours)] == ours  # every ack, in order
                assert set(seen) <= set(attempted[ledger.entity_id])
                assert await ledger.ask(Where()) == f"{ledger.entity_id}@n2"
            assert "n1" not in system.cluster.live_members()


async def test_shards_move_to_a_node_that_joins(nats_url: str) -> None:
    with trio.fail_after(90):
        async with own_node(nats_url) as system:
            await system.cluster.start_entities(TALLY)
            ids = [f"e{i}" for i in range(24)]
            for entity_id in ids:
                assert await system.cluster.entity("tally", entity_id).ask(Where()) == (
                    f"{entity_id}@t"
                )
            async with node_process(nats_url, "n1", options=("--entities",)):
                await system.cluster.wait_for_members({"n1"})
                moved = []
                for entity_id in ids:
                    shard = shard_of(entity_id, TALLY.shards)
                    if preferred_node(f"tally.{shard}", ["n1", "t"]) == "n1":
                        moved.append(entity_id)
                assert moved
                with trio.fail_after(30):
                    for entity_id in ids:
                        expected = "n1" if entity_id in moved else "t"
                        while True:
                            where = await system.cluster.entity("tally", entity_id).ask(Where())
                            if where == f"{entity_id}@{expected}":
                                break
                            # (the hand-over waits for n1's heartbeat saying it hosts tally)
                            await trio.sleep(0.05)


async def test_idle_entities_are_passivated_and_come_back(nats_url: str) -> None:
    started: list[str] = []

    class Counted(Tally):
        async def pre_start(self) -> None:
            started.append(self.entity_id)

    kind = EntityType(name="counted", factory=Counted, shards=4, passivate_after=0.2)
    with trio.fail_after(60):
        async with own_node(nats_url) as system:
            await system.cluster.start_entities(kind)
            entity = system.cluster.entity("counted", "x")
            entity.tell(Add(1))
            assert await entity.ask(Get()) == [1]
            region = system.cluster.regions["counted"]
            await region.gone["x"].wait()  # passivated once idle
            assert "x" not in region.entities
            assert await entity.ask(Get()) == []  # a new activation (not persistent)
            assert started == ["x", "x"]


async def test_an_entity_id_must_be_a_valid_actor_name(nats_url: str) -> None:
    async with own_node(nats_url) as system:
        await system.cluster.start_entities(TALLY)
        with pytest.raises(actors.InvalidActorName):
            system.cluster.entity("tally", "a/b")
        with pytest.raises(KeyError, match="not started"):
            system.cluster.entity("nope", "x")
