"""A bank on a cluster: its accounts are sharded persistent entities on three node
processes; one node is killed, and its accounts move to the others with every
acknowledged deposit.

Shows: a cluster of nodes on NATS (``open_system(cluster=Cluster(...))``); an entity
type (``EntityType``) whose entities, one per account, are activated on demand on one
live node and reached from any node by their id (``system.cluster.entity``); entities
that are persistent actors, their events in one journal that every node opens; and
failover. The node that hosts the most accounts is killed with SIGKILL. Once the others
count it as lost (its heartbeat lapsed for ``down_after`` seconds), its accounts are
activated again on the survivors, recovered from the journal with every deposit that
was acknowledged before the kill, and they take new deposits there.

The processes: run with no ``--node``, this script starts a throwaway ``nats-server -js``
(unless ``--nats URL`` names a running server with JetStream) and three node processes,
``n1``, ``n2`` and ``n3`` (this same file run with ``--node``), which host the accounts.
It is a node itself, ``main``, that only routes to them (``host=False``) and drives the
scenario. Every process it started is stopped at the end, also after an error or a
Ctrl-C: a node leaves the cluster when its stdin closes (as it does when this process
dies, however it dies), the server is stopped by its PID.

Run it: ``python examples/cluster_bank.py`` (a few seconds). It needs ``nats-server``
(``apt-get install nats-server``) and the cluster extra (``pip install
'trio-actors[cluster]'``). The PIDs, the port and the seconds vary from run to run;
which node hosts which account does not (it follows from the node names). Exit status 1
if a balance is not what was acknowledged.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import trio
from example_processes import Failed, stop_processes, throwaway_nats, until_stdin_closes

import actors
from actors.cluster import Cluster, ClusterError, EntityRef, EntityType, NodeLost
from actors.persistence import Persistence, PersistentActor, open_sqlite_journal

SYSTEM = "bank"
NODES = ("n1", "n2", "n3")
ACCOUNTS = (
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "mallory",
    "oscar",
)
# The secret that seals every message between nodes: the same on every node. (A real
# cluster makes one with secrets.token_bytes(32) and gives it to its nodes as a secret.)
KEY = b"examples/cluster_bank.py: not a secret key"
# A short heartbeat, so that a killed node counts as lost after one second (the defaults,
# 0.5 and 3 seconds, suit a real network better).
HEARTBEAT = 0.2
DOWN_AFTER = 1.0

# -- messages, events and the error a refusal raises ------------------------------------


@attrs.frozen
class Deposit:
    amount: int


@attrs.frozen
class Withdraw:
    amount: int


@attrs.frozen
class Balance:
    pass


@attrs.frozen
class WhereAreYou:
    pass


@attrs.frozen
class Here:
    """The answer to ``WhereAreYou``: the node an account runs on, and how many events it
    replayed from the journal when it was activated there."""

    node: str
    replayed: int


class Insufficient(Exception):
    """A withdrawal refused: nothing is stored."""


@attrs.frozen
class Deposited:
    amount: int


@attrs.frozen
class Withdrew:
    amount: int


# What may cross between nodes. The safe codec (the default) decodes only these types,
# and every node must register them under the same names. The names are given here
# ("bank.Deposit"), not derived from the classes' module, so that they do not depend on
# how this file was imported. An error class registered here comes back to the asker on
# another node as itself (an unregistered one arrives as a RemoteError).
TYPES: dict[str, type] = {
    "bank.Deposit": Deposit,
    "bank.Withdraw": Withdraw,
    "bank.Balance": Balance,
    "bank.WhereAreYou": WhereAreYou,
    "bank.Here": Here,
    "bank.Insufficient": Insufficient,
}

# -- the entity ---------------------------------------------------------------------------


class Account(PersistentActor):
    """One account: its balance rebuilt from its events wherever it is activated."""

    def __init__(self, account_id: str) -> None:
        self.persistence_id = f"account-{account_id}"
        self.account_id = account_id
        self.balance = 0
        self.replayed = 0

    def apply(self, event: Any) -> None:
        if self.recovering:
            self.replayed += 1
        match event:
            case Deposited(amount):
                self.balance += amount
            case Withdrew(amount):
                self.balance -= amount

    async def receive(self, message: Any) -> Any:
        match message:
            case Deposit(amount):
                await self.persist(Deposited(amount))  # the answer means: in the journal
                return self.balance
            case Withdraw(amount):
                if amount > self.balance:  # an error for the asker; the account goes on
                    raise Insufficient(f"{self.account_id} has only {self.balance}")
                await self.persist(Withdrew(amount))
                return self.balance
            case Balance():
                return self.balance
            case WhereAreYou():
                return Here(self.context.system.node, self.replayed)
        self.unhandled(message)
        return None


# Every node gives the same name and shards (an account's shard is a hash of its id; a
# shard lives on one node at a time). The factory makes an account from its id on the
# node that activates it; it does not cross the network, so it needs no registration.
ACCOUNT = EntityType(name="account", factory=Account, passivate_after=None)


def cluster(url: str, node: str) -> Cluster:
    return Cluster(
        servers=url, node=node, key=KEY, types=TYPES, heartbeat=HEARTBEAT, down_after=DOWN_AFTER
    )


# -- a node process (``--node n1``) -------------------------------------------------------


async def serve_node(node: str, url: str, journal_path: str) -> None:
    """Host accounts as node ``node`` until this process's stdin closes."""
    async with (
        open_sqlite_journal(journal_path) as journal,
        actors.open_system(
            SYSTEM, cluster=cluster(url, node), extensions=[Persistence(journal)]
        ) as system,
    ):
        await system.cluster.start_entities(ACCOUNT)
        print("ready", flush=True)
        # The main process closes this pipe to stop the node; the operating system closes
        # it too when the main process dies, however it dies: no node outlives it.
        await until_stdin_closes()
    # (Leaving the block stops the accounts, then leaves the cluster: the other nodes
    # see this node go at once, rather than after down_after.)


# -- the processes the main process starts ------------------------------------------------


class NodeProcess:
    """A node process: this file run with ``--node``."""

    def __init__(self, name: str, process: trio.Process) -> None:
        self.name = name
        self.process = process

    async def ready(self) -> None:
        """Wait until the node says it hosts accounts (``Failed`` if it exits first)."""
        assert self.process.stdout is not None
        line = b""
        with trio.move_on_after(60):
            while not line.endswith(b"\n"):
                chunk = await self.process.stdout.receive_some(64)
                if not chunk:
                    break
                line += chunk
        if line != b"ready\n":
            raise Failed(f"node {self.name} did not start (its errors are above)")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)


@contextlib.asynccontextmanager
async def node_processes(url: str, journal: Path) -> AsyncIterator[dict[str, NodeProcess]]:
    """Start a process per node in :data:`NODES` and yield them once all are ready. At
    the end, close their stdin (each leaves the cluster), and kill those that have not
    exited 10 seconds later."""
    nodes: dict[str, NodeProcess] = {}
    try:
        for name in NODES:
            command = [sys.executable, __file__, "--node", name, "--nats", url]
            process = await trio.lowlevel.open_process(
                [*command, "--journal", str(journal)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # (A Ctrl-C in the terminal does not reach it: it follows its stdin.)
                start_new_session=True,
            )
            nodes[name] = NodeProcess(name, process)
        for node in nodes.values():  # (they start side by side)
            await node.ready()
            print(f"node {node.name} ready (pid {node.process.pid}), hosting accounts")
        yield nodes
    finally:
        with trio.CancelScope(shield=True):
            try:
                with trio.move_on_after(1):
                    for node in nodes.values():
                        if node.process.stdin is not None:
                            await node.process.stdin.aclose()
            finally:
                await stop_processes([node.process for node in nodes.values()], 10)
            with trio.move_on_after(1):
                for node in nodes.values():
                    if node.process.stdout is not None:
                        await node.process.stdout.aclose()


# -- the scenario (the main process, node "main") -----------------------------------------


async def ask_again_if_lost(account: EntityRef, message: Any) -> Any:
    """Ask ``account``; ask again if its node was lost while the ask waited (it went to
    the killed node before this node counted it as lost: the next goes to a survivor)."""
    for _ in range(5):
        try:
            return await account.ask(message, timeout=10)
        except actors.ActorDead as dead:
            if not isinstance(dead.error, NodeLost):
                raise
    raise Failed(f"{account} was lost with its node five times in a row")


async def scenario(system: actors.ActorSystem, nodes: dict[str, NodeProcess]) -> int:
    """Deposit, kill the busiest node, check that every account moved with its money."""
    await system.cluster.wait_for_members(set(nodes))
    await system.cluster.start_entities(ACCOUNT, host=False)  # routes; hosts nothing
    accounts = {name: system.cluster.entity("account", name) for name in ACCOUNTS}

    acknowledged: dict[str, int] = {}  # what the answers confirmed, account by account
    for i, (name, account) in enumerate(accounts.items()):
        acknowledged[name] = 0
        for amount in (100, 10 * (i + 1)):
            await account.ask(Deposit(amount))  # answered once it is in the journal
            acknowledged[name] += amount
        await account.ask(Withdraw(25))
        acknowledged[name] -= 25
    print(f"{len(accounts)} accounts: 2 deposits and a withdrawal each, all acknowledged")
    try:
        await accounts["bob"].ask(Withdraw(1000))
    except Insufficient as refused:  # (raised on another node, registered: itself here)
        print(f"bob: withdrawal of 1000 refused: {refused}")

    where = {name: (await account.ask(WhereAreYou())).node for name, account in accounts.items()}
    for name in accounts:
        print(f"{name}: {acknowledged[name]} on {where[name]}")
    hosted = Counter(where.values())
    print("accounts per node: " + ", ".join(f"{n} {hosted[n]}" for n in NODES))

    victim = max(NODES, key=lambda n: (hosted[n], n))
    nodes[victim].kill()
    moving = [name for name in accounts if where[name] == victim]
    pid = nodes[victim].process.pid
    print(f"killed {victim} (pid {pid}) with SIGKILL; it hosted {', '.join(moving)}")

    killed_at = trio.current_time()
    here: dict[str, Here] = {}
    balances: dict[str, int] = {}
    with trio.move_on_after(30):
        for name, account in accounts.items():
            here[name] = await ask_again_if_lost(account, WhereAreYou())
            balances[name] = await ask_again_if_lost(account, Balance())
    if len(balances) < len(accounts):
        print(f"not every account answered within 30 s of the kill: {sorted(balances)}")
        return 1
    print(
        f"every account answers again {trio.current_time() - killed_at:.1f} s after the kill; "
        f"live nodes: {', '.join(system.cluster.live_members())}"
    )
    for name in accounts:
        moved = ""
        if here[name].node != where[name]:
            moved = f" (moved from {where[name]}; {here[name].replayed} events replayed)"
        print(f"{name}: {balances[name]} on {here[name].node}{moved}")

    wrong = [name for name in accounts if balances[name] != acknowledged[name]]
    for name in wrong:
        print(f"{name}: balance {balances[name]}, but {acknowledged[name]} was acknowledged")
    if any(here[name].node == victim for name in accounts):
        print(f"an account still answers from {victim}, which was killed")
        return 1
    if wrong:
        return 1
    new_balances = []
    for name in moving:  # (their new activations write to the journal too)
        new_balances.append(f"{name} {await accounts[name].ask(Deposit(5))}")
    print(f"the moved accounts take deposits of 5 there: {', '.join(new_balances)}")
    print(f"all {len(accounts)} balances intact after losing {victim}")
    return 0


async def run_main(nats: str | None) -> int:
    with tempfile.TemporaryDirectory(prefix="cluster-bank-") as directory:
        async with contextlib.AsyncExitStack() as stack:
            nats = await stack.enter_async_context(throwaway_nats(nats, Path(directory)))
            journal = Path(directory) / "journal.db"
            # Made here, before the nodes open it: three processes that create one SQLite
            # journal at the same moment may find it locked.
            async with open_sqlite_journal(journal):
                pass
            nodes = await stack.enter_async_context(node_processes(nats, journal))
            async with actors.open_system(SYSTEM, cluster=cluster(nats, "main")) as system:
                return await scenario(system, nodes)
    raise AssertionError("unreachable")  # (for mypy: the block above returns)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--nats", metavar="URL", help="a running NATS server with JetStream")
    parser.add_argument("--node", help=argparse.SUPPRESS)  # (a node process)
    parser.add_argument("--journal", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    missing = [m for m in ("nats", "trio_asyncio", "msgspec") if not importlib.util.find_spec(m)]
    if missing:
        print(f"{', '.join(missing)} missing: pip install 'trio-actors[cluster]'", file=sys.stderr)
        return 2
    if args.node is not None:
        try:
            trio.run(serve_node, args.node, args.nats, args.journal)
        except ClusterError as error:  # (NATS unreachable...: the main process says so too)
            print(error, file=sys.stderr)
            return 1
        return 0
    # SIGTERM, or the terminal hanging up: stop everything as on Ctrl-C (trio turns the
    # SIGINT into KeyboardInterrupt where it is safe to).
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        return trio.run(run_main, args.nats)
    except Failed as error:
        print(f"cluster_bank.py: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; every process this script started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # This file runs as __main__, but the journal stores events by their class's module
    # and name, and pickle refuses classes of __main__ (which no other program could
    # import to read them): the script imports itself under its own name, cluster_bank,
    # and runs from there, in every process, so that its classes are cluster_bank's.
    from cluster_bank import main as main_of_module

    sys.exit(main_of_module(sys.argv[1:]))
