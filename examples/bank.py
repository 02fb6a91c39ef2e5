"""A bank whose accounts survive crashes: persistent actors on SQLite.

Shows: ``PersistentActor`` (``persist``, ``apply``, recovery from the journal, snapshots),
an account that crashes and is restarted in place by its supervisor with its balance
recovered from its events, a transfer that survives a crash of the bank in its middle
(the bank journals the transfer before it moves money, and finishes it when it
recovers), and refusals that store nothing.

Run it twice: ``python examples/bank.py``. The journal is ``bank-journal.db`` in the
current directory (``--journal PATH`` to choose another, ``--reset`` to start over). The
first run opens the accounts; every later run recovers them from the journal, pays a
salary and moves money again. Balances never go negative and no money is created or
lost, however often the script is interrupted (try ``kill -9`` in the middle).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

import attrs
import trio

import actors
import supervision
from actors.persistence import Persistence, PersistentActor, open_sqlite_journal

# What the actors say about their restarts (the chaos test, examples/chaos_bank.py, keeps
# them quiet).
report: Callable[[str], None] = print

# -- commands (messages) and events (what the journal stores) ----------------------------


class InsufficientFunds(Exception):
    pass


class Crash(Exception):
    pass


@attrs.frozen
class Deposit:
    amount: int
    transfer: str | None = None  # a transfer id makes a repeated deposit a no-op


@attrs.frozen
class Withdraw:
    amount: int
    transfer: str


@attrs.frozen
class Balance:
    pass


@attrs.frozen
class CrashNow:
    pass


@attrs.frozen
class Deposited:
    amount: int
    transfer: str | None


@attrs.frozen
class Withdrawn:
    amount: int
    transfer: str


@attrs.frozen
class Open:
    name: str
    initial: int


@attrs.frozen
class Transfer:
    source: str
    target: str
    amount: int
    crash_midway: bool = False


@attrs.frozen
class Balances:
    pass


@attrs.frozen
class AccountOpened:
    name: str


@attrs.frozen
class TransferStarted:
    transfer: str
    source: str
    target: str
    amount: int


@attrs.frozen
class TransferEnded:
    transfer: str
    completed: bool


# -- the actors ---------------------------------------------------------------------------


class Account(PersistentActor):
    """One balance, rebuilt from its Deposited/Withdrawn events (with a snapshot every 5
    events, so recovery replays at most 4 of them after the snapshot)."""

    snapshot_every = 5

    def __init__(self, name: str) -> None:
        self.persistence_id = f"account-{name}"
        self.name = name
        self.balance = 0
        self.transfers: set[str] = set()

    def apply(self, event: Any) -> None:
        match event:
            case Deposited(amount):
                self.balance += amount
            case Withdrawn(amount):
                self.balance -= amount
        if event.transfer is not None:
            self.transfers.add(event.transfer)

    def snapshot(self) -> Any:
        return (self.balance, sorted(self.transfers))

    def restore(self, state: Any) -> None:
        self.balance, transfers = state
        self.transfers = set(transfers)

    def post_restart(self, error: BaseException) -> None:
        report(f"{self.name}: restarted after {error!r}, balance {self.balance} recovered")

    async def receive(self, message: object) -> int | None:
        match message:
            case Deposit(amount, transfer):
                if transfer is None or transfer not in self.transfers:
                    await self.persist(Deposited(amount, transfer))
                return self.balance
            case Withdraw(amount, transfer):
                if transfer in self.transfers:
                    return self.balance  # already done (a transfer being finished)
                if amount > self.balance:  # refused: nothing is stored
                    raise InsufficientFunds(f"{self.name}: balance {self.balance} < {amount}")
                await self.persist(Withdrawn(amount, transfer))
                return self.balance
            case Balance():
                return self.balance
            case CrashNow():
                raise Crash(f"{self.name} crashed")
        self.unhandled(message)
        return None


class Bank(PersistentActor):
    """Opens accounts (its children) and moves money between them. A transfer is
    journalled (``TransferStarted``) before any money moves, and ended
    (``TransferEnded``) after; a transfer started but not ended when the bank crashed is
    finished when the bank recovers. Accounts make a repeated step a no-op."""

    persistence_id = "bank"
    supervisor_strategy = supervision.OneForOne(
        intensity=supervision.RestartIntensity(max_restarts=10, within=10.0),
        backoff=supervision.Backoff(min_delay=0.05, max_delay=1.0),
    )

    def __init__(self) -> None:
        self.accounts: list[str] = []
        self.pending: dict[str, TransferStarted] = {}
        self.transfers = 0

    def apply(self, event: Any) -> None:
        match event:
            case AccountOpened(name):
                self.accounts.append(name)
            case TransferStarted(transfer):
                self.pending[transfer] = event
                self.transfers += 1
            case TransferEnded(transfer):
                del self.pending[transfer]

    async def on_recovery_completed(self) -> None:
        for name in self.accounts:
            self.account(name)
        for transfer in list(self.pending.values()):
            try:
                await self.carry_out(transfer)
            except InsufficientFunds:
                report(f"bank: refused transfer {transfer.transfer} after a restart")
            except actors.ActorError as error:  # an account is down: it stays pending
                report(f"bank: transfer {transfer.transfer} still pending ({error})")
            else:
                report(f"bank: finished transfer {transfer.transfer} after a restart")

    def account(self, name: str) -> actors.ActorRef:
        """The account's actor, spawned (and so recovered) on first use."""
        if name not in self.accounts:
            raise KeyError(f"no account {name!r}")
        return self.context.child(name) or self.context.spawn(Account, name, name=name)

    async def carry_out(self, transfer: TransferStarted, crash_midway: bool = False) -> None:
        try:
            await self.account(transfer.source).ask(Withdraw(transfer.amount, transfer.transfer))
        except InsufficientFunds:
            await self.persist(TransferEnded(transfer.transfer, completed=False))
            raise
        if crash_midway:
            raise Crash(f"the bank crashed in the middle of transfer {transfer.transfer}")
        await self.account(transfer.target).ask(Deposit(transfer.amount, transfer.transfer))
        await self.persist(TransferEnded(transfer.transfer, completed=True))

    async def receive(self, message: object) -> object:
        match message:
            case Open(name, initial):
                if name not in self.accounts:
                    await self.persist(AccountOpened(name))
                if initial:  # with an id: a retried or repeated Open pays once
                    await self.account(name).ask(Deposit(initial, f"open-{name}"))
                return self.account(name)
            case Transfer(source, target, amount, crash_midway):
                for name in (source, target):
                    self.account(name)  # raises KeyError (to the asker) if unknown
                started = TransferStarted(f"t{self.transfers + 1}", source, target, amount)
                await self.persist(started)
                await self.carry_out(started, crash_midway)
                return started.transfer
            case Balances():
                return {name: await self.account(name).ask(Balance()) for name in self.accounts}
        self.unhandled(message)
        return None


async def main(path: str) -> None:
    fresh = not await trio.Path(path).exists()
    async with (
        open_sqlite_journal(path) as journal,
        actors.open_system("bank", extensions=[Persistence(journal)]) as system,
    ):
        bank = system.spawn(Bank, name="bank")
        if fresh:
            print("new journal: opening accounts")
            await bank.ask(Open("alice", 100))
            await bank.ask(Open("bob", 20))
        else:
            print("recovered from the journal:", await bank.ask(Balances()))

        alice = await bank.ask(Open("alice", 0))  # opening again gives the account
        await alice.ask(Deposit(30))
        print("salary paid:", await bank.ask(Balances()))
        print("transfer:", await bank.ask(Transfer("alice", "bob", 30)))
        try:
            await bank.ask(Transfer("bob", "alice", 1000))
        except InsufficientFunds as error:
            print("refused:", error)

        # An account crashes: its supervisor (the bank) restarts it in place, and it
        # recovers its balance from its events before it handles the next message.
        bob = await bank.ask(Open("bob", 0))
        bob.tell(CrashNow())
        print("bob after the crash:", await bob.ask(Balance()))

        # The bank crashes between the withdrawal and the deposit of a transfer: it is
        # restarted, recovers, and finishes the transfer before it answers again.
        bank.tell(Transfer("bob", "alice", 10, crash_midway=True))
        balances = await bank.ask(Balances())
        print("balances:", balances, "total:", sum(balances.values()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journal", default="bank-journal.db", help="the SQLite journal")
    parser.add_argument("--reset", action="store_true", help="delete the journal first")
    args = parser.parse_args()
    if args.reset:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(args.journal + suffix):
                os.remove(args.journal + suffix)
    trio.run(main, args.journal)
