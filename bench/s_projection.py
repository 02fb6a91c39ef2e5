"""S2 projection: events by tag from the SQLite journal into a SQLite read model.

A projection (``actors.projection``) with an exactly-once SQLite handler reads the
events tagged ``sale`` from the journal, in commit order, decodes them (pickle) and
inserts one row per event into the read model, committing each batch of 1,000 with the
projection's offset. The clock runs from ``spawn`` until the projection has caught up
(its ``WaitCaughtUp`` is answered). Reported as events/s.

Baseline in the same run: a raw ``sqlite3`` loop over the same journal file doing what
the projection does, with the same statements: ``SELECT`` a page of 1,000 tagged events
after the last offset (the journal's own query, the same columns), ``pickle.loads`` each
payload, and in one transaction of the read model an ``executemany`` of the same
``INSERT`` and the ``UPDATE`` of the offset, then ``COMMIT``; until a page comes back
empty. (The journal also checks each record's checksum; the raw loop does not.)

The events (pickled ``(item, amount)`` tuples of 100 persistence ids, every one tagged
``sale``) are written before the clock starts, with the journal's ``write()`` in batches
of 10,000. Each run projects into a new read model file.

Options: ``--quick`` (20,000 events instead of 200,000), ``--json``. Temporary files go to
``BENCH_TMPDIR`` (default: the system temporary directory) and are removed.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import pickle
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, Final

import trio
from _common import Result, Row, best_seconds, fmt_rate, fmt_ratio, main, yes_no
from j1_persist import TMP_ROOT, temp_dir

import actors
from actors.persistence import Persistence, PersistentRecord, Serialization, open_sqlite_journal
from actors.projection import (
    Envelope,
    JournalSource,
    Projection,
    SqliteExactlyOnce,
    WaitCaughtUp,
)

TARGET_RATE: Final = 100_000.0
BATCH: Final = 1_000
WRITE_BATCH: Final = 10_000
IDS: Final = 100
TAG: Final = "sale"

CREATE: Final = (
    "CREATE TABLE IF NOT EXISTS sales (pid TEXT NOT NULL, seq INTEGER NOT NULL, "
    "item TEXT NOT NULL, amount INTEGER NOT NULL)"
)
INSERT: Final = "INSERT INTO sales (pid, seq, item, amount) VALUES (?, ?, ?, ?)"
BY_TAG: Final = (
    "SELECT e.event_offset, e.persistence_id, e.seq, e.serializer, e.manifest, e.payload, "
    "e.tags, e.writer_id, e.timestamp, e.digest FROM event_tags t JOIN events e "
    "ON e.event_offset = t.event_offset WHERE t.tag = ? AND t.event_offset > ? "
    "ORDER BY t.event_offset LIMIT ?"
)
"""The journal's ``events_by_tag`` query (``actors/persistence/_sql_dialect.py``)."""
OFFSETS: Final = (
    "CREATE TABLE IF NOT EXISTS projection_offsets (projection_name TEXT NOT NULL, "
    "projection_key TEXT NOT NULL, current_offset INTEGER NOT NULL, updated_at REAL NOT NULL, "
    "PRIMARY KEY (projection_name, projection_key))"
)
STORE_OFFSET: Final = (
    "UPDATE projection_offsets SET current_offset = ?, updated_at = ? "
    "WHERE projection_name = ? AND projection_key = ? AND current_offset = ?"
)
"""The projection's statements on its offsets table (``actors/projection/_sql.py``)."""

_models = itertools.count()


def setup(conn: Any) -> None:
    conn.execute(CREATE)


def handle(conn: Any, envelopes: list[Envelope]) -> None:
    conn.executemany(INSERT, [(e.persistence_id, e.seq, e.event[0], e.event[1]) for e in envelopes])


async def build(journal_path: Path, events: int) -> float:
    """Write ``events`` tagged events, spread over :data:`IDS` ids; the seconds it took."""
    serialization = Serialization()
    start = time.perf_counter()
    now = time.time()
    seqs = dict.fromkeys(range(IDS), 0)
    async with open_sqlite_journal(journal_path) as journal:
        for first in range(0, events, WRITE_BATCH):
            count = min(WRITE_BATCH, events - first) // IDS
            async with trio.open_nursery() as nursery:  # the ids' batches share commits
                for owner in range(IDS):
                    batch = []
                    for _ in range(count):
                        seqs[owner] += 1
                        seq = seqs[owner]
                        serializer, manifest, payload = serialization.serialize((f"i{seq}", seq))
                        batch.append(
                            PersistentRecord(
                                f"shop-{owner}",
                                seq,
                                serializer,
                                manifest,
                                payload,
                                tags=frozenset({TAG}),
                                writer_id="bench",
                                timestamp=now,
                            )
                        )
                    nursery.start_soon(journal.write, batch)
    return time.perf_counter() - start


def count_rows(model: Path) -> int:
    with contextlib.closing(sqlite3.connect(model)) as conn:
        found: int = conn.execute("SELECT count(*) FROM sales").fetchone()[0]
    return found


async def projection_run(journal_path: Path, directory: Path, events: int) -> float:
    """Seconds from ``spawn`` until the projection has caught up."""
    model = directory / f"read-{next(_models)}.db"
    handler = SqliteExactlyOnce(model, handle, setup=setup)
    projection = Projection("sales", JournalSource(TAG), handler, batch_size=BATCH)
    async with (
        open_sqlite_journal(journal_path, create=False) as journal,
        actors.open_system("bench", extensions=[Persistence(journal)]) as system,
    ):
        start = time.perf_counter()
        status = await projection.spawn(system).ask(WaitCaughtUp(), timeout=600)
        elapsed = time.perf_counter() - start
    assert status.handled == events, (status.handled, events)
    assert count_rows(model) == events
    return elapsed


async def raw_run(journal_path: Path, directory: Path, events: int) -> float:
    """The same work with raw ``sqlite3``: page, unpickle, insert and move the offset."""
    model = directory / f"raw-{next(_models)}.db"
    source = sqlite3.connect(journal_path)
    target = sqlite3.connect(model, isolation_level=None)
    try:
        target.execute("PRAGMA journal_mode = WAL")
        target.execute(CREATE)
        target.execute(OFFSETS)
        target.execute("INSERT INTO projection_offsets VALUES ('sales', 'sale', 0, 0)")
        loads = pickle.loads
        offset = handled = 0
        start = time.perf_counter()
        while True:
            page = source.execute(BY_TAG, (TAG, offset, BATCH)).fetchall()
            if not page:
                break
            rows = []
            for row in page:
                item, amount = loads(row[5])
                rows.append((row[1], row[2], item, amount))
            target.execute("BEGIN IMMEDIATE")
            target.executemany(INSERT, rows)
            last = page[-1][0]
            target.execute(STORE_OFFSET, (last, time.time(), "sales", "sale", offset))
            target.execute("COMMIT")
            offset = last
            handled += len(rows)
        elapsed = time.perf_counter() - start
    finally:
        source.close()
        target.close()
    assert handled == events, (handled, events)
    return elapsed


def run(quick: bool = False) -> Result:
    events = 20_000 if quick else 200_000
    data: dict[str, Any] = {"tmp_root": TMP_ROOT, "quick": quick, "events": events}
    with temp_dir() as directory:
        journal_path = directory / "journal.db"
        build_s = trio.run(build, journal_path, events)
        print(f"S2: wrote {events:,} events in {build_s:.1f} s", file=sys.stderr)
        projection_s, raw_s = best_seconds(
            functools.partial(projection_run, journal_path, directory, events),
            functools.partial(raw_run, journal_path, directory, events),
        )
    rate, raw_rate = events / projection_s, events / raw_s
    row: Row = {
        "workload": f"S2 projection, SQLite journal -> SQLite read model, {events:,} events, "
        f"batches of {BATCH:,}, exactly once",
        "actors": fmt_rate(rate, "events/s"),
        "baseline": fmt_rate(raw_rate, "events/s") + " raw SELECT + INSERT loop",
        "ratio": fmt_ratio(rate / raw_rate),
        "target": f">= {fmt_rate(TARGET_RATE, 'events/s')}",
        "met": yes_no(rate >= TARGET_RATE),
    }
    data.update(
        build_seconds=build_s,
        projection_seconds=projection_s,
        projection_events_per_s=rate,
        raw_seconds=raw_s,
        raw_events_per_s=raw_rate,
    )
    return {"rows": [row], "data": data}


if __name__ == "__main__":
    main(lambda: run(quick="--quick" in sys.argv[1:]))
