"""The child process of the projection kill test (``test_projection_crash.py``): it
runs an exactly-once projection from a SQLite journal into a SQLite read model, while it
writes more events into the journal, until it is killed.

Run it as a script (``python tests/projection_child.py JOURNAL MODEL ...``); the
script's directory is then on ``sys.path``, so the events decode as
``projection_events.Sold``.

Output (stdout, one line each, flushed as it is written)::

    started                      the journal and the system are open
    batch <first> <last>         the handler is applying the events of offsets
                                 first..last, inside the transaction (not committed yet)
    done <offset>                (--finish) caught up at <offset>; the process exits 0
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import trio
from projection_events import write_sales

import actors
import supervision as sv
from actors.persistence import Persistence, open_sqlite_journal
from actors.projection import (
    Envelope,
    JournalSource,
    Projection,
    SqliteExactlyOnce,
    WaitCaughtUp,
)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def setup(conn: Any) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS applied (pid TEXT, seq INTEGER, event_offset INTEGER)")


def handle(conn: Any, envelopes: list[Envelope]) -> None:
    say(f"batch {envelopes[0].offset} {envelopes[-1].offset}")
    for e in envelopes:
        conn.execute("INSERT INTO applied VALUES (?, ?, ?)", (e.persistence_id, e.seq, e.offset))
        time.sleep(0.0005)  # a longer transaction: more kills land inside one


async def write_more(journal: Any, pid: str, count: int) -> None:
    for seq in range(1, count + 1):
        await write_sales(journal, pid, seq, seq)
        await trio.sleep(0.002)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("journal")
    parser.add_argument("model")
    parser.add_argument("--writer", default=None, help="persistence id to write events as")
    parser.add_argument("--events", type=int, default=0, help="how many to write")
    parser.add_argument("--finish", action="store_true", help="exit once caught up")
    args = parser.parse_args()
    handler = SqliteExactlyOnce(args.model, handle, setup=setup)
    backoff = sv.Backoff(min_delay=0.01, max_delay=0.1, jitter=0.0)
    projection = Projection("sales", JournalSource("sale"), handler, batch_size=7, backoff=backoff)
    async with (
        open_sqlite_journal(args.journal, create=False) as journal,
        actors.open_system("child", extensions=[Persistence(journal)]) as system,
    ):
        ref = projection.spawn(system)
        say("started")
        if args.writer is not None:
            await write_more(journal, args.writer, args.events)
        if args.finish:
            status = await ref.ask(WaitCaughtUp(), timeout=60)
            say(f"done {status.offset}")
            return
        await trio.sleep_forever()


if __name__ == "__main__":
    trio.run(main)
