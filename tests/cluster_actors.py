"""Messages and actors for the cluster tests (``tests/test_cluster*.py``), and the
program of a node process (``python tests/cluster_actors.py ...``).

A module of its own, not a test module, so that a node process started by a test
imports the same classes by the same names: the safe codec decodes only the types in
:data:`TYPES`, registered by every node.

A node process joins the cluster given on its command line, spawns one actor per
``NAME=CLASS`` argument and registers it under ``NAME``, prints ``ready`` and runs
until its stdin closes (then it leaves the cluster in order) or it is killed.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

import attrs
import trio

import actors
from actors.cluster import Cluster, EntityType
from actors.persistence import Persistence, PersistentActor, open_sqlite_journal


@attrs.frozen
class Add:
    amount: int


@attrs.frozen
class Get:
    pass


@attrs.frozen
class Fail:
    text: str
    registered: bool = True


@attrs.frozen
class Ignore:
    """Never answered (for ask timeouts and asks in flight when a node dies)."""


@attrs.frozen
class Echo:
    text: str
    reply_to: actors.ActorRef | None = None


@attrs.frozen
class Echoed:
    text: str
    by: str


@attrs.frozen
class Where:
    """Ask an actor which node it runs on."""


class Refused(Exception):
    """An error class registered with the codec: it comes back as itself."""


class NotRegistered(Exception):
    """An error class not registered: it comes back as a RemoteError."""


class Counter(actors.Actor):
    def __init__(self) -> None:
        self.total = 0
        self.seen: list[int] = []
        self.held: list[actors.ReplyHandle] = []

    def receive(self, message: Any) -> Any:
        match message:
            case Add(amount):
                self.total += amount
                self.seen.append(amount)
            case Get():
                return self.seen
            case Fail(text, registered):
                raise Refused(text) if registered else NotRegistered(text)
            case Ignore():
                self.held.append(self.context.reply_later())  # (never answered)
            case Echo(text, reply_to):
                answer = Echoed(text, self.context.system.node)
                if reply_to is None:
                    return answer
                reply_to.tell(answer, self.context.ref)
            case Where():
                return self.context.system.node
        return None


class Tally(actors.Actor):
    """A sharded entity: it adds what it is sent, and says where it runs."""

    def __init__(self, entity_id: str) -> None:
        self.entity_id = entity_id
        self.seen: list[int] = []

    def receive(self, message: Any) -> Any:
        match message:
            case Add(amount):
                self.seen.append(amount)
            case Get():
                return self.seen
            case Where():
                return f"{self.entity_id}@{self.context.system.node}"
        return None


@attrs.frozen
class Added:
    """The event of a :class:`Ledger`."""

    amount: int


class Ledger(PersistentActor):
    """A persistent sharded entity: an acknowledged ``Add`` (asked) is in the journal."""

    def __init__(self, entity_id: str) -> None:
        self.persistence_id = f"ledger-{entity_id}"
        self.entity_id = entity_id
        self.seen: list[int] = []

    def apply(self, event: Any) -> None:
        self.seen.append(event.amount)

    async def receive(self, message: Any) -> Any:
        match message:
            case Add(amount):
                await self.persist(Added(amount))
                return len(self.seen)
            case Get():
                return self.seen
            case Where():
                return f"{self.entity_id}@{self.context.system.node}"
        return None


LEDGER = EntityType(name="ledger", factory=Ledger, shards=8, passivate_after=None)
TALLY = EntityType(name="tally", factory=Tally, shards=16, passivate_after=None)
TYPES: tuple[type, ...] = (Add, Get, Fail, Ignore, Echo, Echoed, Where, Refused)
CLASSES: dict[str, type[actors.Actor]] = {"Counter": Counter}
KEY = b"k" * 32


def cluster(url: str, node: str, **options: Any) -> Cluster:
    options.setdefault("actors", (Counter,))
    return Cluster(servers=url, node=node, key=KEY, types=TYPES, **options)


async def _main(args: argparse.Namespace) -> None:
    config = cluster(args.url, args.node, heartbeat=args.heartbeat, down_after=args.down_after)
    async with contextlib.AsyncExitStack() as stack:
        extensions = []
        if args.journal:
            journal = await stack.enter_async_context(open_sqlite_journal(args.journal))
            extensions.append(Persistence(journal))
        system = await stack.enter_async_context(
            actors.open_system(args.system, cluster=config, extensions=extensions)
        )
        for spec in args.spawn:
            name, _, class_name = spec.partition("=")
            ref = system.spawn(CLASSES[class_name], name=name)
            await system.cluster.register(name, ref)
        if args.entities:
            await system.cluster.start_entities(TALLY)
        if args.journal:
            await system.cluster.start_entities(LEDGER)
        print("ready", flush=True)
        await trio.to_thread.run_sync(sys.stdin.read, abandon_on_cancel=True)


if __name__ == "__main__":
    # (The classes are registered by their names in module cluster_actors, which this
    # program imports as such: run as a script, its own module is __main__.)
    from cluster_actors import _main as main

    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--node", required=True)
    parser.add_argument("--system", default="test")
    parser.add_argument("--heartbeat", type=float, default=0.2)
    parser.add_argument("--down-after", type=float, default=1.0)
    parser.add_argument("--entities", action="store_true")
    parser.add_argument("--journal", help="host Ledger entities, with this SQLite journal")
    parser.add_argument("spawn", nargs="*")
    trio.run(main, parser.parse_args())
