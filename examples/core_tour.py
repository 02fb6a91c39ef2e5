"""A tour of the core runtime, as a small in-memory bank: one actor per account,
transfers coordinated by asks (the persistent bank is ``bank.py``).

Shows: a hierarchy (the bank spawns and watches its accounts), ``ask`` with errors that
reach the caller, ``become``/``stash`` (an account under audit holds its mail), keyed
timers on trio's clock, death watch, and dead letters observed through the event bus.

Run it: ``python examples/core_tour.py``
"""

from __future__ import annotations

import attrs
import trio

import actors


class InsufficientFunds(Exception):
    pass


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
class Audit:
    seconds: float


@attrs.frozen
class _AuditDone:
    pass


@attrs.frozen
class Open:
    name: str
    initial: int


@attrs.frozen
class Close:
    name: str


@attrs.frozen
class Transfer:
    source: str
    target: str
    amount: int


class Account(actors.Actor):
    """Holds one balance. During an audit it stashes every request until the audit ends."""

    def __init__(self, initial: int) -> None:
        self.balance = initial

    def receive(self, message: object) -> int | None:
        match message:
            case Deposit(amount):
                self.balance += amount
            case Withdraw(amount):
                if amount > self.balance:
                    raise InsufficientFunds(
                        f"{self.context.ref.name}: balance {self.balance} < {amount}"
                    )
                self.balance -= amount
            case Balance():
                return self.balance
            case Audit(seconds):
                self.context.timers.start_single("audit", _AuditDone(), seconds)
                self.context.become(self.auditing)
            case _:
                self.unhandled(message)
        return None

    def auditing(self, message: object) -> None:
        if isinstance(message, _AuditDone):
            self.context.unbecome()
            self.context.unstash_all()
        else:
            self.context.stash()


class Bank(actors.Actor):
    """Parent of the accounts; moves money with asks so that a refused withdrawal never
    deposits anything."""

    def __init__(self) -> None:
        self.closed: list[str] = []

    async def receive(self, message: object) -> object:
        match message:
            case Open(name, initial):
                return self.context.watch(self.context.spawn(Account, initial, name=name))
            case Close(name):
                account = self.context.child(name)
                if account is not None:
                    self.context.stop(account)
                return None
            case Transfer(source, target, amount):
                src, dst = self.context.child(source), self.context.child(target)
                if src is None or dst is None:
                    raise KeyError(f"unknown account {source if src is None else target}")
                await src.ask(Withdraw(amount))  # raises InsufficientFunds: nothing moved
                await dst.ask(Deposit(amount))
                return amount
            case Balance():
                return {ref.name: await ref.ask(Balance()) for ref in self.context.children}
            case actors.Terminated(ref):
                self.closed.append(ref.name)
                return None
            case "closed":
                return list(self.closed)
        self.unhandled(message)
        return None


class DeadLetterLog(actors.Actor):
    def __init__(self) -> None:
        self.seen: list[str] = []

    def receive(self, message: object) -> object:
        if isinstance(message, actors.DeadLetter):
            self.seen.append(f"{type(message.message).__name__} to {message.recipient.name}")
            return None
        return list(self.seen)


async def main() -> None:
    async with actors.open_system("bank") as system:
        log = system.spawn(DeadLetterLog, name="dead-letters")
        system.events.subscribe(log, actors.DeadLetter)

        bank = system.spawn(Bank, name="bank")
        alice = await bank.ask(Open("alice", 100))
        bob = await bank.ask(Open("bob", 20))
        print("opened:", alice.path)

        print("transfer:", await bank.ask(Transfer("alice", "bob", 70)))
        try:
            await bank.ask(Transfer("bob", "alice", 500))
        except InsufficientFunds as error:
            print("refused:", error)

        # During an audit, alice stashes requests; they run, in order, once it ends.
        alice.tell(Audit(seconds=0.5))
        alice.tell(Deposit(5))
        started = trio.current_time()
        balance = await alice.ask(Balance())
        waited = trio.current_time() - started
        print(f"alice after audit: {balance} (held until the audit ended: {waited >= 0.5})")

        print("balances:", await bank.ask(Balance()))
        await system.graceful_stop(bob)  # the bank watches it: it sees Terminated
        print("closed accounts:", await bank.ask("closed"))
        print("bob is gone:", system.find("/user/bank/bob") is None)

        bob.tell(Deposit(10))  # a ref to a stopped actor: the message is a dead letter
        print("dead letters:", await log.ask("list"), "count:", system.dead_letter_count)


if __name__ == "__main__":
    trio.run(main)
