"""CPU-bound work on worker processes: faster than one process, and a killed worker is
survived.

Shows: ``open_system(workers=2)`` starting two worker processes; actors placed on them
with ``placement=actors.AnyWorker()`` (round-robin: one on ``w1``, one on ``w2``) and
used through the same refs as local actors; the speed-up over one process, since each
worker runs on a core of its own; and a worker killed with SIGKILL in the middle of a
run. The actor it hosted fails with ``ProcessLost`` and its supervisor restarts it on a
new process of ``w1``; the asks that were waiting for it fail at once with
``ActorDead``, and the coordinator asks them again. Every tile is hashed exactly as
before, so the combined digest matches the one computed in a single process.

Run it: ``python examples/cpu_workers.py`` (a few seconds on 2 cores; the times printed
vary from run to run).
"""

from __future__ import annotations

import hashlib
import os
import signal
import time
from collections.abc import Callable

import trio

import actors

TILES = 48
ROUNDS = 100_000  # PBKDF2 rounds per tile: about 25 ms of CPU each


class Hasher(actors.Actor):
    """Hashes one tile per message: CPU-bound, it holds its process while it works."""

    def receive(self, tile: int) -> bytes:
        return hashlib.pbkdf2_hmac("sha256", f"tile {tile}".encode(), b"tiles", ROUNDS)


async def hash_tiles(
    hashers: list[actors.ActorRef], halfway: Callable[[], None] | None = None
) -> tuple[str, float, int]:
    """Hash every tile, all asked at once (tile ``i`` of ``hashers[i % n]``), and call
    ``halfway()`` once half of them are done. Returns the combined digest of the tiles
    in order, the seconds it took and how many asks had to be made again."""
    digests: dict[int, bytes] = {}
    asked_again = 0

    async def hash_tile(tile: int) -> None:
        nonlocal asked_again
        hasher = hashers[tile % len(hashers)]
        for attempt in range(1, 4):
            try:
                digests[tile] = await hasher.ask(tile, timeout=60)
                break
            except actors.ActorDead as dead:
                # Its process was lost: its supervisor restarts it on a new process,
                # where the same ref reaches it. Ask again (a few times at most).
                if not isinstance(dead.error, actors.ProcessLost) or attempt == 3:
                    raise
                asked_again += 1
        if len(digests) == TILES // 2 and halfway is not None:
            halfway()

    start = time.perf_counter()
    async with trio.open_nursery() as nursery:
        for tile in range(TILES):
            nursery.start_soon(hash_tile, tile)
    seconds = time.perf_counter() - start
    combined = hashlib.sha256(b"".join(digests[tile] for tile in range(TILES)))
    return combined.hexdigest()[:16], seconds, asked_again


def worker(system: actors.ActorSystem, name: str) -> actors.WorkerInfo:
    [info] = [info for info in system.workers() if info.name == name]
    return info


async def main() -> None:
    # throughput=1: a hasher yields after each tile, so its answer goes out at once
    # (by default an actor handles up to 100 queued messages per turn).
    async with actors.open_system("tiles", throughput=1) as system:
        alone, alone_s, _ = await hash_tiles([system.spawn(Hasher, name="hasher")])
    print(f"{TILES} tiles hashed by one actor in this process: {alone_s:.2f} s")

    async with actors.open_system("tiles", throughput=1, workers=2) as system:
        hashers = [
            system.spawn(Hasher, name=f"hasher-{i}", placement=actors.AnyWorker()) for i in (1, 2)
        ]
        spread, spread_s, _ = await hash_tiles(hashers)
        print(
            f"{TILES} tiles over 2 worker processes: {spread_s:.2f} s "
            f"({alone_s / spread_s:.1f}x faster)"
        )

        # Again, and kill the process that hosts hasher-1 when half the tiles are done.
        node = hashers[0].address.node  # "w1"
        before = worker(system, node)

        def kill() -> None:
            assert before.pid is not None
            os.kill(before.pid, signal.SIGKILL)

        survived, survived_s, asked_again = await hash_tiles(hashers, halfway=kill)
        after = worker(system, node)
        print(
            f"{TILES} tiles, worker {node} killed (SIGKILL) after {TILES // 2} tiles: "
            f"{survived_s:.2f} s, {asked_again} tiles asked again"
        )
        print(
            f"{node} replaced by a new process: {after.pid != before.pid} "
            f"(restarts: {after.restarts}, state: {after.state})"
        )
    print(f"combined digest {alone}; the same in all three runs: {alone == spread == survived}")


if __name__ == "__main__":
    trio.run(main)
