"""The child process of the crash-safety tests (``test_crash_safety.py``): it persists
events as fast as it can and reports every acknowledged one, until it is killed.

Run it as a script (``python tests/crash_writer.py --sqlite PATH``); the script's
directory is then first on ``sys.path``, and the classes below are pickled as
``crash_writer.Appended`` (not ``__main__.Appended``), so the test process, which has
this directory on its path too, can decode the events it reads back.

With ``--wait`` it imports everything, then waits for a line on stdin before it opens
the journal: the test starts the next child while the current one runs, so that the
interpreter's start-up (about 0.3 s, mostly ``import trio``) is not paid between kills.

Output (stdout, one line each, flushed as it is written)::

    opened                           the journal and the actor system are open
    recovered <pid> <seq> <checksum> <pid> has recovered its events 1..seq
    writing <pid> <first> <last>     a batch of <pid> goes to the journal now
    ack <pid> <seq>                  <pid>'s event <seq> is committed (persist returned)
    failed <path> <error>            an actor failed or stopped with an error (exit 3)

Each writer's state is verifiable: ``apply`` requires the events of its id to be exactly
1, 2, 3, ... (a gap or a reordering makes the recovery fail, which the process reports
with ``failed`` and exit status 3), and it keeps a running checksum of them
(:func:`checksum_of` gives the expected one).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

import actors
from actors import ActorFailed, ActorStopped
from actors.persistence import (
    Journal,
    Persistence,
    PersistentActor,
    PersistentRecord,
    open_sqlite_journal,
)

#: The exit status of a child that saw a failure (a failed recovery, a failed persist).
EXIT_FAILED = 3

_MODULUS = 2**61 - 1


@attrs.frozen
class Appended:
    """Event ``n`` of the writer ``pid``; stored as seq ``n``."""

    pid: str
    n: int


def next_checksum(checksum: int, n: int) -> int:
    return (checksum * 1_000_003 + n) % _MODULUS


def checksum_of(count: int) -> int:
    """The checksum of the events 1..count of one writer."""
    checksum = 0
    for n in range(1, count + 1):
        checksum = next_checksum(checksum, n)
    return checksum


def emit(line: str) -> None:
    """Write one line to stdout and flush it (one ``write`` on the pipe)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Writer(PersistentActor):
    """Persists ``Appended(pid, n)`` for n = 1, 2, 3, ... when told ``"run"``: one event
    per persist, or ``batch`` events per ``persist_all``; reports each acknowledged
    persist through ``out``."""

    def __init__(self, pid: str, batch: int = 1, out: Callable[[str], None] = emit) -> None:
        self.persistence_id = pid
        self.batch = batch
        self.out = out
        self.count = 0
        self.checksum = 0

    def apply(self, event: Any) -> None:
        if not isinstance(event, Appended):
            raise TypeError(f"unexpected event {event!r}")
        if event.pid != self.persistence_id or event.n != self.count + 1:
            raise ValueError(
                f"{self.persistence_id}: expected event {self.count + 1}, got {event!r}"
            )
        self.count = event.n
        self.checksum = next_checksum(self.checksum, event.n)

    def on_recovery_completed(self) -> None:
        if self.count != self.last_seq:
            raise RuntimeError(f"applied {self.count} events but last_seq is {self.last_seq}")
        self.out(f"recovered {self.persistence_id} {self.last_seq} {self.checksum}")

    async def receive(self, message: Any) -> Any:
        if message == "state":
            return (self.last_seq, self.checksum)
        if message != "run":
            self.unhandled(message)
            return None
        pid = self.persistence_id
        while True:
            first = self.count + 1
            events = [Appended(pid, n) for n in range(first, first + self.batch)]
            seq = await self.persist_all(events)
            self.out(f"ack {pid} {seq}")


class Monitor(actors.Actor):
    """Reports any failure or stop with an error of an actor, and ends the process."""

    def receive(self, message: Any) -> None:
        if isinstance(message, ActorFailed):
            error: BaseException | None = message.error
        elif isinstance(message, ActorStopped):
            error = message.error
        else:
            return
        if error is None:
            return
        emit(f"failed {message.ref.path} {error!r}".replace("\n", " "))
        os._exit(EXIT_FAILED)


class AnnouncingJournal(Journal):
    """Delegates to ``inner``; prints ``writing <pid> <first> <last>`` just before each
    write goes to it, so the test can kill the process while that write is committing."""

    def __init__(self, inner: Journal) -> None:
        self.inner = inner
        self.snapshots = getattr(inner, "snapshots", None)

    async def write(self, batch: Sequence[PersistentRecord]) -> list[int]:
        if batch:
            emit(f"writing {batch[0].persistence_id} {batch[0].seq} {batch[-1].seq}")
        return await self.inner.write(batch)

    def replay(
        self, persistence_id: str, from_seq: int = 1, to_seq: int | None = None
    ) -> AsyncIterator[PersistentRecord]:
        return self.inner.replay(persistence_id, from_seq, to_seq)

    async def highest_seq(self, persistence_id: str) -> int:
        return await self.inner.highest_seq(persistence_id)

    async def delete_to(self, persistence_id: str, to_seq: int) -> None:
        await self.inner.delete_to(persistence_id, to_seq)

    def events_by_tag(self, tag: str, from_offset: int = 0) -> AsyncIterator[PersistentRecord]:
        return self.inner.events_by_tag(tag, from_offset)

    async def persistence_ids(self) -> list[str]:
        return await self.inner.persistence_ids()


@asynccontextmanager
async def open_journal(options: argparse.Namespace) -> AsyncIterator[Journal]:
    if options.sqlite is not None:
        async with open_sqlite_journal(options.sqlite) as journal:
            yield journal
    else:
        from actors.persistence._postgres import open_postgres_journal

        async with open_postgres_journal(options.postgres, schema=options.schema) as journal:
            yield journal


async def run(options: argparse.Namespace) -> None:
    async with open_journal(options) as opened:
        journal = AnnouncingJournal(opened) if options.announce else opened
        async with actors.open_system("crash", extensions=[Persistence(journal)]) as system:
            monitor = system.spawn(Monitor, name="monitor")
            system.events.subscribe(monitor, ActorFailed)
            system.events.subscribe(monitor, ActorStopped)
            emit("opened")
            writers = [
                system.spawn(Writer, f"{options.prefix}-{i}", options.batch, name=f"w{i}")
                for i in range(options.writers)
            ]
            for writer in writers:
                writer.tell("run")
            await trio.sleep_forever()


def parse(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="crash_writer.py", description=__doc__)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sqlite", metavar="PATH", help="the SQLite journal file")
    where.add_argument("--postgres", metavar="DSN", help="the PostgreSQL DSN")
    parser.add_argument("--schema", help="the PostgreSQL schema (default: the current one)")
    parser.add_argument("--writers", type=int, default=1, help="concurrent writers (ids)")
    parser.add_argument("--prefix", default="pid", help="ids are <prefix>-0, <prefix>-1, ...")
    parser.add_argument("--batch", type=int, default=1, help="events per persist_all")
    parser.add_argument(
        "--announce", action="store_true", help="print 'writing ...' before each write"
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="once imported, wait for a line on stdin before opening the journal",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    options = parse(sys.argv[1:] if argv is None else argv)
    if options.wait and not sys.stdin.readline():
        return  # stdin closed without a go: nothing to do
    try:
        trio.run(run, options)
    except BaseException as error:
        emit(f"failed main {error!r}".replace("\n", " "))
        raise


if __name__ == "__main__":
    # Import this file as the module ``crash_writer`` so that its classes are pickled
    # under that name (the script's directory is first on sys.path).
    import crash_writer

    crash_writer.main()
