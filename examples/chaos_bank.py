"""A chaos test of the bank (``bank.py``): random crashes, delays and duplicates under
many seeds, and the bank's promise checked after each run.

Shows: ``actors.testing.run_chaos`` with a ``FaultModel`` (the faults are drawn from a
seed, so a failing seed replays the same run), invariants checked after each run, an
injected kill of the bank in the middle (its supervisor restarts it, and it finishes the
transfers in flight from its journal), and virtual time (a ``MockClock``), so that
delays and timeouts cost nothing.

The invariants: no money is created or lost (the total is what was deposited), no
balance is negative, and no transfer is left half done. Accounts refuse a repeated step
of a transfer (they remember its id), so duplicates and retries are harmless.

A seed replays alone exactly as it ran among the others (the same faults at the same
moments, the same result): ``--replay SEED`` runs that one seed and prints its message
trace, which is how a seed that failed is studied.

Run it: ``python examples/chaos_bank.py [--seeds N | --replay SEED]``
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import random

import bank
import trio
import trio.testing

import actors
import supervision
from actors.persistence import InMemoryJournal, Persistence
from actors.testing import FaultInjector, FaultModel, run_chaos

ACCOUNTS = {"alice": 100, "bob": 100, "carol": 100, "dave": 100}


async def scenario(system: actors.ActorSystem, faults: FaultInjector) -> dict[str, int]:
    """Open the accounts, run 20 random transfers under faults (some fail: that is
    allowed), kill the bank once in the middle; then heal (no more faults), kill the bank
    once more so that its recovery finishes what is still in flight, and return the
    balances."""
    teller = system.spawn(bank.Bank, name="bank")
    for name, initial in ACCOUNTS.items():
        for _ in range(10):  # opening is idempotent: retry what a fault interrupted
            try:
                await teller.ask(bank.Open(name, initial), timeout=5)
                break
            except actors.ActorError:
                continue
    rng = random.Random(faults.seed)
    for number in range(20):
        source, target = rng.sample(sorted(ACCOUNTS), 2)
        if number == 10:
            faults.kill(teller)
        # Refused, lost or crashed: the invariants say what must hold all the same.
        with contextlib.suppress(bank.InsufficientFunds, actors.ActorError):
            await teller.ask(bank.Transfer(source, target, rng.randint(1, 80)), timeout=5)
    faults.heal()
    faults.kill(teller)  # its recovery finishes every transfer still in flight
    balances: dict[str, int] = await teller.ask(bank.Balances(), timeout=60)
    return balances


def no_money_created_or_lost(balances: dict[str, int]) -> None:
    assert sum(balances.values()) == sum(ACCOUNTS.values()), balances


def no_negative_balance(balances: dict[str, int]) -> None:
    assert min(balances.values()) >= 0, balances


async def main(seeds: int | list[int]) -> None:
    bank.report = lambda text: None  # the accounts' restart messages are noise here
    faults = FaultModel(
        crash=0.05,
        delay=0.1,
        max_delay=2.0,
        duplicate=0.05,
        type=(bank.Withdraw, bank.Deposit),
    )
    runs = await run_chaos(
        scenario,
        seeds=seeds,
        faults=faults,
        invariants=[no_money_created_or_lost, no_negative_balance],
        per_run=lambda: {"extensions": [Persistence(InMemoryJournal())]},
        # /user restarts the bank after each kill (more than the default 3 in 5 s).
        guardian_strategy=supervision.OneForOne(
            intensity=supervision.RestartIntensity(max_restarts=20, within=10.0)
        ),
    )
    if isinstance(seeds, list):  # a replay: what happened, and when
        [run] = runs
        print(run.trace.to_text(limit=60), end="")
        print(f"seed {run.seed}: {run.injected} faults injected, balances {run.result}")
        return
    injected = sum(run.injected for run in runs)
    print(f"{len(runs)} seeded runs, {injected} faults injected")
    print("every run: no money created or lost, no negative balance")
    print("balances of seed 0:", runs[0].result)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds to run")
    parser.add_argument("--replay", type=int, help="run this one seed and show its trace")
    args = parser.parse_args()
    seeds = args.seeds if args.replay is None else [args.replay]
    # The crashes are injected on purpose, hundreds of them: keep the one line the runtime
    # prints for each failure by default out of the output (see docs/logging.md).
    logging.getLogger("actors").addHandler(logging.NullHandler())
    trio.run(main, seeds, clock=trio.testing.MockClock(autojump_threshold=0))
