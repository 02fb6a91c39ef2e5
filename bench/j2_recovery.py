"""J2 recovery: the time until a persistent actor with a long history is ready.

(a) One actor with 1,000,000 events and no snapshot: the clock runs from
    ``system.spawn`` until its first ``ask`` is answered (recovery done: every event read,
    decoded and applied, then the highest seq checked). Reported as events/s replayed into
    ``apply`` and the time to ready. Baseline in the same run: raw ``sqlite3`` running one
    ``SELECT`` of the same rows (the columns the journal reads, ordered by seq) and
    ``pickle.loads`` of each payload into the same fold.
(b) The same actor with a snapshot at its last event: the time to ready, compared with
    the same recovery of an actor with only 1,000 events and a snapshot (near-constant:
    it should not grow with the history).

The events are written before the clock starts with the journal's own ``write()`` in
batches of 10,000 events (the records the actor would write: pickled ints, no tags); the
snapshot with the snapshot store's ``save()``. The no-snapshot run gives the actor an
empty in-memory snapshot store, so the same events serve both runs.

PostgreSQL rows are measured when a server is available (see ``j1_persist.py``), with
fewer events (200,000 by default); its tables are analyzed after the build (as
autovacuum would have done in a running server), and its target is >= 0.8x the raw
baseline.

Options: ``--quick`` (100,000 events, 20,000 on PostgreSQL), ``--no-postgres``,
``--json``. Temporary files go to ``BENCH_TMPDIR`` (default: the system temporary
directory) and are removed.
"""

from __future__ import annotations

import contextlib
import functools
import pickle
import sqlite3
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import trio
from _common import Result, Row, best_seconds, fmt_rate, fmt_ratio, main, yes_no
from j1_persist import (
    MANIFEST,
    SERIALIZER,
    TMP_ROOT,
    open_postgres,
    postgres_schema,
    postgres_server,
    skipped_row,
    temp_dir,
)

import actors
from actors.persistence import (
    InMemorySnapshotStore,
    Journal,
    Persistence,
    PersistentActor,
    PersistentRecord,
    SnapshotRecord,
    SnapshotStore,
    open_sqlite_journal,
)

TARGET_RATE: Final = 300_000.0
TARGET_PG_RATIO: Final = 0.8
"""PostgreSQL recovery against its raw baseline (issue 14)."""
CONSTANT_FACTOR: Final = 1.5
"""(b) is met if the time to ready with a snapshot of the long history is within this
factor of the one with a snapshot of the short one."""

WRITE_BATCH: Final = 10_000
SMALL: Final = 1_000
BIG_PID: Final = "big"
SMALL_PID: Final = "small"
COLUMNS: Final = (
    "event_offset, persistence_id, seq, serializer, manifest, payload, tags, writer_id, timestamp"
)


class Replayer(PersistentActor):
    """Folds its events (ints) into a count and a sum; answers every message with the
    count."""

    def __init__(self, pid: str) -> None:
        self.persistence_id = pid
        self.count = 0
        self.total = 0

    def apply(self, event: Any) -> None:
        self.count += 1
        self.total += event

    def snapshot(self) -> Any:
        return (self.count, self.total)

    def restore(self, state: Any) -> None:
        self.count, self.total = state

    def receive(self, message: Any) -> Any:
        return self.count


OpenJournal = Callable[[], contextlib.AbstractAsyncContextManager[Journal]]


async def write_history(journal: Journal, pid: str, events: int, snapshot: bool) -> None:
    """``events`` events (the ints ``0..events-1``) for ``pid``, written with the journal's
    ``write()`` in batches; then, if asked, a snapshot at the last one."""
    now = time.time()
    for first in range(1, events + 1, WRITE_BATCH):
        last = min(first + WRITE_BATCH - 1, events)
        await journal.write(
            [
                PersistentRecord(
                    persistence_id=pid,
                    seq=seq,
                    serializer=SERIALIZER,
                    manifest=MANIFEST,
                    payload=pickle.dumps(seq - 1, protocol=5),
                    writer_id="bench",
                    timestamp=now,
                )
                for seq in range(first, last + 1)
            ]
        )
    if snapshot:
        store: SnapshotStore = journal.snapshots  # type: ignore[attr-defined]
        state = (events, events * (events - 1) // 2)
        await store.save(
            SnapshotRecord(
                persistence_id=pid,
                seq=events,
                serializer=SERIALIZER,
                manifest="builtins.tuple",
                payload=pickle.dumps(state, protocol=5),
                timestamp=now,
            )
        )


async def build(open_journal: OpenJournal, events: int) -> float:
    """Write both histories; return the seconds it took."""
    start = time.perf_counter()
    async with open_journal() as journal:
        await write_history(journal, BIG_PID, events, snapshot=True)
        await write_history(journal, SMALL_PID, SMALL, snapshot=True)
    return time.perf_counter() - start


async def time_to_ready(open_journal: OpenJournal, pid: str, events: int, snapshot: bool) -> float:
    """Seconds from ``spawn`` until the first ``ask`` is answered. Without ``snapshot``
    the actor gets an empty snapshot store, so it replays every event."""
    async with open_journal() as journal:
        store: SnapshotStore | None = None if snapshot else InMemorySnapshotStore()
        async with actors.open_system(
            "bench", extensions=[Persistence(journal, snapshot_store=store)]
        ) as system:
            start = time.perf_counter()
            ref = system.spawn(Replayer, pid)
            count = await ref.ask("count", timeout=600)
            elapsed = time.perf_counter() - start
    assert count == events, (count, events)
    return elapsed


async def raw_sqlite_replay(path: Path, events: int) -> float:
    """The same rows with one raw ``SELECT``, each payload unpickled into the fold."""
    conn = sqlite3.connect(path)
    try:
        loads = pickle.loads
        count = total = 0
        start = time.perf_counter()
        cursor = conn.execute(
            f"SELECT {COLUMNS} FROM events WHERE persistence_id = ? ORDER BY seq", (BIG_PID,)
        )
        for row in cursor:
            count += 1
            total += loads(row[5])
        elapsed = time.perf_counter() - start
    finally:
        conn.close()
    assert count == events, (count, events)
    return elapsed


async def raw_pg_replay(dsn: str, schema: str, events: int) -> float:
    """PostgreSQL: the same rows with one raw ``SELECT`` through psycopg, unpickled."""
    import psycopg
    from psycopg import sql

    query = sql.SQL("SELECT " + COLUMNS + " FROM {} WHERE persistence_id = %s ORDER BY seq").format(
        sql.Identifier(schema, "events")
    )
    with psycopg.connect(dsn, autocommit=True) as conn:
        loads = pickle.loads
        count = total = 0
        start = time.perf_counter()
        for row in conn.execute(query, (BIG_PID,)):
            count += 1
            total += loads(row[5])
        elapsed = time.perf_counter() - start
    assert count == events, (count, events)
    return elapsed


def analyze_postgres(dsn: str, schema: str) -> None:
    """``ANALYZE`` the journal's tables after the build, as autovacuum does in any
    running server: without statistics, the planner reads a freshly loaded table of one
    persistence id with a sort instead of its index (for the raw baseline and the
    journal alike), which no deployment would measure."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        for table in ("events", "journal_metadata", "snapshots"):
            conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, table)))


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms"


def measure(
    name: str,
    open_journal: OpenJournal,
    raw: Callable[[], Awaitable[float]],
    events: int,
    after_build: Callable[[], None] | None = None,
) -> tuple[list[Row], dict[str, Any]]:
    """Build the histories (then run ``after_build``), then time the recoveries against
    ``raw``."""
    build_s = trio.run(build, open_journal, events)
    print(f"J2 {name}: wrote {events:,} + {SMALL:,} events in {build_s:.1f} s", file=sys.stderr)
    if after_build is not None:
        after_build()
    replay_s, raw_s, big_snap_s, small_snap_s = best_seconds(
        functools.partial(time_to_ready, open_journal, BIG_PID, events, False),
        raw,
        functools.partial(time_to_ready, open_journal, BIG_PID, events, True),
        functools.partial(time_to_ready, open_journal, SMALL_PID, SMALL, True),
    )
    rate, raw_rate = events / replay_s, events / raw_s
    constant = big_snap_s / small_snap_s
    if name == "PostgreSQL":
        target = f">= {TARGET_PG_RATIO}x raw"
        met = yes_no(rate / raw_rate >= TARGET_PG_RATIO)
    else:
        target = f">= {fmt_rate(TARGET_RATE, 'events/s')}"
        met = yes_no(rate >= TARGET_RATE)
    rows: list[Row] = [
        {
            "workload": f"J2 {name}, recover {events:,} events, no snapshot "
            f"(ready in {replay_s:.2f} s)",
            "actors": fmt_rate(rate, "events/s"),
            "baseline": fmt_rate(raw_rate, "events/s") + " raw SELECT + pickle.loads",
            "ratio": fmt_ratio(rate / raw_rate),
            "target": target,
            "met": met,
        },
        {
            "workload": f"J2 {name}, time to ready with a snapshot at the last of "
            f"{events:,} events (vs of {SMALL:,})",
            "actors": fmt_ms(big_snap_s),
            "baseline": fmt_ms(small_snap_s),
            "ratio": fmt_ratio(constant),
            "target": f"near-constant (<= {CONSTANT_FACTOR}x)",
            "met": yes_no(constant <= CONSTANT_FACTOR),
        },
    ]
    data = {
        "events": events,
        "build_seconds": build_s,
        "replay_seconds": replay_s,
        "replay_events_per_s": rate,
        "raw_seconds": raw_s,
        "raw_events_per_s": raw_rate,
        "snapshot_big_seconds": big_snap_s,
        "snapshot_small_seconds": small_snap_s,
    }
    return rows, data


def run(quick: bool = False, postgres: bool = True) -> Result:
    events = 100_000 if quick else 1_000_000
    pg_events = 20_000 if quick else 200_000
    data: dict[str, Any] = {"tmp_root": TMP_ROOT, "quick": quick}
    with temp_dir() as directory:
        path = directory / "journal.db"
        rows, sqlite_data = measure(
            "SQLite",
            functools.partial(open_sqlite_journal, path),
            functools.partial(raw_sqlite_replay, path, events),
            events,
        )
    data["sqlite"] = sqlite_data
    if postgres:
        with postgres_server() as (dsn, where):
            if dsn is None:
                print(f"J2: PostgreSQL skipped: {where}", file=sys.stderr)
                rows.append(skipped_row("J2", where))
            else:
                with postgres_schema(dsn) as schema:

                    @contextlib.asynccontextmanager
                    async def open_journal() -> AsyncIterator[Journal]:
                        async with open_postgres(dsn, schema) as journal:
                            yield journal

                    pg_rows, pg_data = measure(
                        "PostgreSQL",
                        open_journal,
                        functools.partial(raw_pg_replay, dsn, schema, pg_events),
                        pg_events,
                        functools.partial(analyze_postgres, dsn, schema),
                    )
                rows.extend(pg_rows)
                data["postgres"] = {"server": where, **pg_data}
    return {"rows": rows, "data": data}


if __name__ == "__main__":
    main(lambda: run(quick="--quick" in sys.argv[1:], postgres="--no-postgres" not in sys.argv[1:]))
