"""The child process of the outbox kill tests (``test_outbox_crash.py``): persistent
actors persist events into a SQLite journal, and an outbox publishes them to JetStream,
its offset in a SQLite offset store; the child blocks at the kill point it is told, for
the test to SIGKILL it there.

Run it as a script (``python tests/outbox_child.py NATS_URL JOURNAL OFFSETS MODE``); the
script's directory is then on ``sys.path``, so the events decode as
``outbox_events.Placed``.

Modes and output (stdout, one line each, flushed as it is written):

``before-publish`` / ``before-save``
    Persists three events (``order-a`` 1, 2, ``order-b`` 1), waits until the outbox has
    published them and stored its offset (``caught-up <offset>``), then arms the kill
    point and persists three more in one write (``order-a`` 3, 4, 5: one commit). The
    outbox then blocks, the whole process with it, either when it asks the subject of
    the first new event, after the commit and before the publish (``blocked before
    publishing <msg id>``), or when it stores the offset of the new batch, after the
    stream acknowledged it (``blocked before saving <offset>``).
``resume``
    Starts the outbox again, waits until it has caught up, and prints ``done <offset>
    published <n> duplicates <n>`` (the counts of the stream's acknowledgements, new and
    duplicate), then exits 0.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import trio
from outbox_events import DEAD_LETTERS, ORDERS, Order, Place, by_pid

import actors
import supervision as sv
from actors.cluster import PickleCodec
from actors.persistence import Persistence, open_sqlite_journal
from actors.projection import JournalSource, Projection, SqliteOffsetStore, WaitCaughtUp
from actors.streams import Outbox, open_jetstream, open_streams, spawn_outbox

BACKOFF = sv.Backoff(min_delay=0.05, max_delay=0.5, jitter=0.0)
armed = False


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def block(line: str) -> None:
    """Print ``line`` and block the process (the trio thread) until it is killed."""
    say(line)
    while True:
        time.sleep(3600)


def subject_before_publish(envelope: Any) -> str:
    if armed:
        block(f"blocked before publishing {envelope.persistence_id}/{envelope.seq}")
    return by_pid(envelope)


class BlockingOffsets(SqliteOffsetStore):
    """Blocks in ``save`` once armed: the batch is published and acknowledged."""

    async def save(self, name: str, key: str, offset: int) -> None:
        if armed:
            block(f"blocked before saving {offset}")
        await super().save(name, key, offset)


async def main() -> None:
    global armed
    parser = argparse.ArgumentParser()
    parser.add_argument("nats_url")
    parser.add_argument("journal")
    parser.add_argument("offsets")
    parser.add_argument("mode", choices=["before-publish", "before-save", "resume"])
    args = parser.parse_args()
    mode = args.mode
    async with (
        open_sqlite_journal(args.journal) as journal,
        actors.open_system("outbox-child", extensions=[Persistence(journal)]) as system,
        open_jetstream(args.nats_url) as engine,
        open_streams(
            system, engine, streams=[ORDERS], dead_letters=DEAD_LETTERS, codec=PickleCodec()
        ) as streams,
        BlockingOffsets(args.offsets) as offsets,
    ):
        if mode == "resume":
            outbox = Outbox(streams, subject=by_pid, offsets=offsets)
            projection = Projection("outbox-order", JournalSource("order"), outbox, backoff=BACKOFF)
            ref = projection.spawn(system)
            status = await ref.ask(WaitCaughtUp(), timeout=60)
            await system.graceful_stop(ref)
            say(f"done {status.offset} published {outbox.published} duplicates {outbox.duplicates}")
            return
        subject = subject_before_publish if mode == "before-publish" else by_pid
        ref = spawn_outbox(
            system, streams, "order", subject=subject, offsets=offsets, backoff=BACKOFF
        )
        a, b = system.spawn(Order, "a"), system.spawn(Order, "b")
        await a.ask(Place(("one", "two")))
        await b.ask(Place(("three",)))
        status = await ref.ask(WaitCaughtUp(), timeout=60)
        say(f"caught-up {status.offset}")
        armed = True
        await a.ask(Place(("four", "five", "six")))
        await trio.sleep_forever()  # (the outbox blocks the process; the test kills it)


if __name__ == "__main__":
    trio.run(main)
