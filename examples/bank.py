"""A bank whose accounts survive crashes: persistent actors on SQLite.

Shows: ``PersistentActor`` (``persist``, ``apply``, recovery from the journal, snapshots),
an account that crashes and is restarted in place by its supervisor with its balance
recovered from its events, a transfer that survives a crash of the bank in its middle
(the bank journals the transfer before it moves money, and finishes it when it
recovers), and refusals that store nothing. Both crashes are on purpose, and the script
says so as they happen.

Run it twice: ``python examples/bank.py``. The journal is ``bank-journal.db`` in the
current directory (``--journal PATH`` to choose another, ``--reset`` to delete it first
and start over). The first run opens the accounts; every later run recovers them from
the journal, pays a salary and moves money again. Balances never go negative and no money
is created or lost, however often the script is interrupted (try ``kill -9`` in the
middle). The events are in ``bank_events.py``, a module of their own, so that other
programs can read the journal (see that module). README.md explains each line of the
output.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

import attrs
import trio
from bank_events import AccountOpened, Deposited, TransferEnded, TransferStarted, Withdrawn

import actors
import supervision
from actors.persistence import Persistence, PersistentActor, open_sqlite_journal

# What the actors say about their restarts (the chaos test, examples/chaos_bank.py, keeps
# them quiet).
report: Callable[[str], None] = print

# -- commands (messages); the events the journal stores are in bank_events.py -------------


class InsufficientFunds(Exception):
    pass


class Crash(Exception):
    """A crash on purpose, to show what survives it."""


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
        report(
            f"{self.name}: restarted by the bank after {error!r}; balance {self.balance} "
            "recovered from its journal"
        )

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
                    raise InsufficientFunds(f"{self.name} has only {self.balance}")
                await self.persist(Withdrawn(amount, transfer))
                return self.balance
            case Balance():
                return self.balance
            case CrashNow():
                report(f"{self.name}: crashing on purpose")
                raise Crash(f"{self.name} crashed on purpose")
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
        self.finished: list[str] = []  # what recovery finished, for the report

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
            except InsufficientFunds as error:
                report(f"bank: {error} (on recovery)")
            except actors.ActorError as error:  # an account is down: it stays pending
                report(f"bank: transfer {transfer.transfer} still pending ({error})")
            else:
                self.finished.append(
                    f"{transfer.transfer} ({transfer.amount} from {transfer.source} to "
                    f"{transfer.target})"
                )

    def recovered(self) -> str:
        """What the bank recovered from its journal (and finished), in words."""
        done = f"; finished transfer {', '.join(self.finished)}" if self.finished else ""
        return f"accounts {' and '.join(self.accounts) or 'none'}, {self.transfers} transfers{done}"

    def pre_start(self) -> None:
        if self.finished:  # a transfer left half done by a process that was killed
            report(f"bank: recovered from its journal: {self.recovered()}")

    def post_restart(self, error: BaseException) -> None:
        report(f"bank: restarted after {error!r}; recovered from its journal: {self.recovered()}")

    def account(self, name: str) -> actors.ActorRef:
        """The account's actor, spawned (and so recovered) on first use."""
        if name not in self.accounts:
            raise KeyError(f"no account {name!r}")
        return self.context.child(name) or self.context.spawn(Account, name, name=name)

    async def carry_out(self, transfer: TransferStarted, crash_midway: bool = False) -> None:
        try:
            await self.account(transfer.source).ask(Withdraw(transfer.amount, transfer.transfer))
        except InsufficientFunds as error:
            await self.persist(TransferEnded(transfer.transfer, completed=False))
            raise InsufficientFunds(
                f"transfer {transfer.transfer} refused: {transfer.amount} from "
                f"{transfer.source} to {transfer.target}, but {error}; nothing moved"
            ) from error
        if crash_midway:
            report(
                f"bank: crashing on purpose in the middle of transfer {transfer.transfer} "
                f"({transfer.amount} taken from {transfer.source}, not yet paid to "
                f"{transfer.target})"
            )
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
            print(f"new journal {path}: opening the accounts alice (100) and bob (20)")
            await bank.ask(Open("alice", 100))
            await bank.ask(Open("bob", 20))
        else:
            print(f"journal {path} found: balances recovered from it:", await bank.ask(Balances()))

        alice = await bank.ask(Open("alice", 0))  # opening again gives the account
        await alice.ask(Deposit(30))
        print("alice is paid a salary of 30; balances:", await bank.ask(Balances()))
        transfer = await bank.ask(Transfer("alice", "bob", 30))
        print(
            f"transfer {transfer} done: 30 from alice to bob; balances:", await bank.ask(Balances())
        )
        try:
            await bank.ask(Transfer("bob", "alice", 1000))
        except InsufficientFunds as error:
            print(error)

        # An account crashes: its supervisor (the bank) restarts it in place, and it
        # recovers its balance from its events before it handles the next message.
        bob = await bank.ask(Open("bob", 0))
        bob.tell(CrashNow())
        print("bob's balance, asked after its crash:", await bob.ask(Balance()))

        # The bank crashes between the withdrawal and the deposit of a transfer: it is
        # restarted, recovers, and finishes the transfer before it answers again.
        bank.tell(Transfer("bob", "alice", 10, crash_midway=True))
        balances = await bank.ask(Balances())
        print(
            f"balances at the end of this run: {balances}, total {sum(balances.values())} "
            "(120 paid in at opening + 30 of salary per run: no money created or lost)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--journal", default="bank-journal.db", help="the SQLite journal")
    parser.add_argument(
        "--reset", action="store_true", help="delete the journal first and start over"
    )
    args = parser.parse_args()
    if args.reset:
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(args.journal + suffix):
                os.remove(args.journal + suffix)
    trio.run(main, args.journal)
