"""J1 persist throughput: ``PersistentActor.persist`` on the SQLite journal (and PostgreSQL
when a server is available).

(a) One actor persists events one after the other, awaiting each ``persist`` (so one
    durable commit per event). Baselines measured in the same run, in a file of the same
    temporary directory: a raw loop appending a small record to a file and calling
    ``os.fsync`` (the disk's raw fsync rate: the ratio of the target uses this one), and
    a raw ``sqlite3`` loop with the journal's schema and pragmas (WAL, ``synchronous=FULL``)
    doing one ``BEGIN IMMEDIATE`` / ``INSERT`` / ``COMMIT`` per event (for reference).
(b) 1,000 actors persist concurrently, each awaiting its own persists; the journal's
    writer task groups what is queued into one transaction (natural group commit).
    Baseline: a raw ``sqlite3`` loop inserting the same rows (one ``INSERT`` per row, the
    rows built before the clock starts) in transactions of the average batch size the
    group commit achieved in the actors run just before it. A second, reference row runs
    the SQL the journal runs per operation (savepoint, read of the highest seq, insert,
    upsert of the highest seq, release) in the same transactions, to separate the cost of
    that SQL from the runtime's.

PostgreSQL rows are measured when a server is available: ``BENCH_POSTGRES_DSN`` (or
``ACTORS_TEST_POSTGRES_DSN``), else a throwaway server started as the tests do
(``tests/postgres_server.py``: note that it runs with ``fsync=off``); otherwise they are
skipped with a message. Each PostgreSQL measurement uses a schema of its own, dropped
afterwards.

Options: ``--quick`` (smaller counts, for smoke runs), ``--no-postgres``, ``--json``.
Temporary files go to ``BENCH_TMPDIR`` (default: the system temporary directory) and are
removed.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import pickle
import sqlite3
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Final

import trio
import trio.testing
from _common import Latch, Result, Row, best_seconds, fmt_rate, fmt_ratio, main, yes_no

import actors
from actors.persistence import Journal, Persistence, PersistentActor, open_sqlite_journal

TARGET_RATIO: Final = 0.8

TMP_ROOT: Final = os.environ.get("BENCH_TMPDIR") or tempfile.gettempdir()
"""Where the databases and files of the benchmarks go (removed afterwards)."""

RAW_RECORD: Final = b"x" * 63 + b"\n"
"""The record appended by the raw fsync loop (about the size of a stored event row)."""

SERIALIZER: Final = "pickle"
MANIFEST: Final = "builtins.int"
INSERT_SQLITE: Final = (
    "INSERT INTO events (persistence_id, seq, serializer, manifest, payload, tags, writer_id,"
    " timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


class Sizes:
    """The counts of one run (``--quick``: smaller ones)."""

    def __init__(self, quick: bool) -> None:
        self.single = 200 if quick else 2_000
        self.actors = 100 if quick else 1_000
        self.per_actor = 10 if quick else 20
        self.pg_single = 200 if quick else 1_000
        self.pg_actors = 100 if quick else 1_000
        self.pg_per_actor = 5 if quick else 10


# -- the actor ------------------------------------------------------------------------------


class Writer(PersistentActor):
    """Persists ``n`` events (ints) when told ``("run", n)``, awaiting each one; answers
    anything else with its event count."""

    def __init__(self, pid: str, latch: Latch | None = None) -> None:
        self.persistence_id = pid
        self.latch = latch
        self.count = 0

    def apply(self, event: Any) -> None:
        self.count += 1

    async def receive(self, message: Any) -> Any:
        if isinstance(message, tuple):
            _, n = message
            persist = self.persist
            for i in range(n):
                await persist(i)
            if self.latch is not None:
                self.latch.count_down()
        return self.count


# -- shared helpers (also used by j2_recovery.py) -----------------------------------------


@contextlib.contextmanager
def temp_dir() -> Iterator[Path]:
    """A fresh temporary directory under :data:`TMP_ROOT`, removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="trio-actors-bench-", dir=TMP_ROOT) as name:
        yield Path(name)


def sqlite_connect(path: Path) -> sqlite3.Connection:
    """A raw connection with the journal's pragmas (WAL, ``synchronous=FULL``), usable
    from worker threads (one at a time)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    return conn


async def create_sqlite_schema(path: Path) -> None:
    """Create the journal's database (schema and WAL mode) by opening the journal once."""
    async with open_sqlite_journal(path):
        pass


def event_row(pid: str, seq: int, value: int, writer_id: str = "raw") -> tuple[Any, ...]:
    """The row the journal stores for the event ``value`` (pickle, no tags)."""
    payload = pickle.dumps(value, protocol=5)
    return (pid, seq, SERIALIZER, MANIFEST, payload, "[]", writer_id, time.time())


def round_robin_rows(actor_count: int, per_actor: int) -> list[tuple[Any, ...]]:
    """The rows of ``actor_count`` ids with ``per_actor`` events each, in the order
    concurrent writers would produce them (one event of each id, round after round)."""
    return [
        event_row(f"w{a}", seq, seq - 1)
        for seq in range(1, per_actor + 1)
        for a in range(actor_count)
    ]


@contextlib.contextmanager
def postgres_server() -> Iterator[tuple[str | None, str]]:
    """Yield ``(dsn, where)`` of a PostgreSQL server to measure, or ``(None, why not)``.

    ``BENCH_POSTGRES_DSN`` or ``ACTORS_TEST_POSTGRES_DSN`` if set; otherwise a throwaway
    server started like the tests do (``tests/postgres_server.py``), stopped and removed
    on exit."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        yield None, "psycopg is not installed"
        return
    dsn = os.environ.get("BENCH_POSTGRES_DSN") or os.environ.get("ACTORS_TEST_POSTGRES_DSN")
    if dsn:
        yield dsn, "server from the DSN in the environment"
        return
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.append(tests)
    try:
        import postgres_server as pg
    except ImportError as error:
        yield None, f"tests/postgres_server.py cannot be imported: {error}"
        return
    try:
        server = pg.ThrowawayServer()
    except pg.Unavailable as error:
        yield None, str(error)
        return
    try:
        try:
            dsn = server.start()
        except pg.Unavailable as error:
            yield None, str(error)
            return
        yield dsn, "throwaway server of tests/postgres_server.py (fsync=off)"
    finally:
        server.stop()


@contextlib.contextmanager
def postgres_schema(dsn: str) -> Iterator[str]:
    """A fresh schema name (created by the journal when opened), dropped on exit."""
    import psycopg
    from psycopg import sql

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    try:
        yield schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@contextlib.asynccontextmanager
async def open_postgres(dsn: str, schema: str) -> AsyncIterator[Journal]:
    """The PostgreSQL journal on ``schema`` (imported here: the backend is optional)."""
    from actors.persistence._postgres import open_postgres_journal

    async with open_postgres_journal(dsn, schema=schema) as journal:
        yield journal


def pg_insert(schema: str) -> Any:
    """The raw ``INSERT`` of one event row into ``schema`` (the journal's statement)."""
    from psycopg import sql

    return sql.SQL(
        "INSERT INTO {} (persistence_id, seq, serializer, manifest, payload, tags, writer_id,"
        " timestamp) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING event_offset"
    ).format(sql.Identifier(schema, "events"))


def pg_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """An SQLite event row as PostgreSQL stores it (tags as a text array)."""
    pid, seq, serializer, manifest, payload, _, writer_id, timestamp = row
    return (pid, seq, serializer, manifest, payload, [], writer_id, timestamp)


def journal_counters(journal: Journal) -> tuple[int, int]:
    """``(transactions, ops_acknowledged)`` of a SQLite or PostgreSQL journal."""
    return int(getattr(journal, "transactions", 0)), int(getattr(journal, "ops_acknowledged", 0))


# -- measurements ---------------------------------------------------------------------------

OpenJournal = Callable[[Path], contextlib.AbstractAsyncContextManager[Journal]]


async def actors_single(open_journal: OpenJournal, events: int) -> float:
    """(a) One actor, ``events`` persists awaited one by one."""
    with temp_dir() as directory:
        async with (
            open_journal(directory / "journal.db") as journal,
            actors.open_system("bench", extensions=[Persistence(journal)]) as system,
        ):
            ref = system.spawn(Writer, "single")
            await ref.ask("ready")  # recovered and started
            await trio.testing.wait_all_tasks_blocked()
            start = time.perf_counter()
            count = await ref.ask(("run", events), timeout=math.inf)
            elapsed = time.perf_counter() - start
    assert count == events, count
    return elapsed


class ManyStats:
    """Group-commit statistics of each ``actors_many`` run, in order."""

    def __init__(self) -> None:
        self.runs: list[tuple[float, int, int]] = []  # (seconds, transactions, events)

    def last_batch(self) -> int:
        _, transactions, events = self.runs[-1]
        return max(1, round(events / transactions))


async def actors_many(
    open_journal: OpenJournal, actor_count: int, per_actor: int, stats: ManyStats
) -> float:
    """(b) ``actor_count`` actors, each persisting ``per_actor`` events one by one."""
    with temp_dir() as directory:
        async with (
            open_journal(directory / "journal.db") as journal,
            actors.open_system("bench", extensions=[Persistence(journal)]) as system,
        ):
            latch = Latch(actor_count)
            refs = [system.spawn(Writer, f"w{a}", latch) for a in range(actor_count)]
            for ref in refs:
                await ref.ask("ready")
            await trio.testing.wait_all_tasks_blocked()
            transactions, ops = journal_counters(journal)
            start = time.perf_counter()
            for ref in refs:
                ref.tell(("run", per_actor))
            await latch.done.wait()
            elapsed = time.perf_counter() - start
            transactions_after, ops_after = journal_counters(journal)
    events = actor_count * per_actor
    assert ops_after - ops == events, (ops_after - ops, events)
    stats.runs.append((elapsed, transactions_after - transactions, events))
    return elapsed


async def raw_fsync(events: int) -> float:
    """(a) baseline: append a small record to a file and ``os.fsync`` it, ``events`` times."""
    with temp_dir() as directory:
        fd = os.open(directory / "raw.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            start = time.perf_counter()
            for _ in range(events):
                os.write(fd, RAW_RECORD)
                os.fsync(fd)
            return time.perf_counter() - start
        finally:
            os.close(fd)


async def raw_sqlite_single(events: int) -> float:
    """(a) reference: one ``BEGIN IMMEDIATE`` / ``INSERT`` / ``COMMIT`` per event."""
    with temp_dir() as directory:
        path = directory / "raw.db"
        await create_sqlite_schema(path)
        rows = [event_row("single", seq, seq - 1) for seq in range(1, events + 1)]
        conn = sqlite_connect(path)
        try:
            execute = conn.execute
            start = time.perf_counter()
            for row in rows:
                execute("BEGIN IMMEDIATE")
                execute(INSERT_SQLITE, row)
                execute("COMMIT")
            return time.perf_counter() - start
        finally:
            conn.close()


async def raw_sqlite_single_in_thread(events: int) -> float:
    """(a) the raw-trio baseline: the same commits, each run in ``trio.to_thread`` as any
    trio program must run blocking I/O (what the journal's writer does)."""
    with temp_dir() as directory:
        path = directory / "raw.db"
        await create_sqlite_schema(path)
        rows = [event_row("single", seq, seq - 1) for seq in range(1, events + 1)]
        conn = sqlite_connect(path)

        def commit(row: tuple[Any, ...]) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(INSERT_SQLITE, row)
            conn.execute("COMMIT")

        try:
            start = time.perf_counter()
            for row in rows:
                await trio.to_thread.run_sync(commit, row)
            return time.perf_counter() - start
        finally:
            conn.close()


def sqlite_journal_ops(conn: sqlite3.Connection, row: tuple[Any, ...]) -> None:
    """What the SQLite journal runs for a one-event write inside the group transaction
    (when no op of the group fails, it needs no savepoint)."""
    execute = conn.execute
    execute("SELECT highest_seq FROM journal_metadata WHERE persistence_id = ?", (row[0],))
    execute(INSERT_SQLITE, row)
    execute(
        "INSERT INTO journal_metadata (persistence_id, highest_seq) VALUES (?, ?) "
        "ON CONFLICT (persistence_id) DO UPDATE SET highest_seq = excluded.highest_seq",
        (row[0], row[1]),
    )


async def raw_sqlite_batched(
    actor_count: int, per_actor: int, stats: ManyStats, journal_sql: bool
) -> float:
    """(b) baseline: the same rows in transactions of the batch size the group commit
    achieved in the previous actors run; ``journal_sql``: the journal's statements per
    event instead of the one ``INSERT``."""
    batch = stats.last_batch()
    with temp_dir() as directory:
        path = directory / "raw.db"
        await create_sqlite_schema(path)
        rows = round_robin_rows(actor_count, per_actor)
        conn = sqlite_connect(path)
        try:
            execute = conn.execute
            start = time.perf_counter()
            for first in range(0, len(rows), batch):
                execute("BEGIN IMMEDIATE")
                for row in rows[first : first + batch]:
                    if journal_sql:
                        sqlite_journal_ops(conn, row)
                    else:
                        execute(INSERT_SQLITE, row)
                execute("COMMIT")
            return time.perf_counter() - start
        finally:
            conn.close()


async def raw_trio_group_commit(actor_count: int, per_actor: int) -> float:
    """(b) the raw-trio baseline: ``actor_count`` plain trio tasks, each awaiting the
    commit of its own rows one by one, through one writer task that commits whatever is
    queued in one transaction in ``trio.to_thread`` (natural group commit, no actors, no
    serialization, no journal)."""
    with temp_dir() as directory:
        path = directory / "raw.db"
        await create_sqlite_schema(path)
        conn = sqlite_connect(path)
        send, receive = trio.open_memory_channel[tuple[tuple[Any, ...], trio.Event]](math.inf)

        def commit(rows: list[tuple[Any, ...]]) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_SQLITE, rows)
            conn.execute("COMMIT")

        async def writer() -> None:
            async for first in receive:
                group = [first]
                while True:
                    try:
                        group.append(receive.receive_nowait())
                    except trio.WouldBlock:
                        break
                await trio.to_thread.run_sync(commit, [row for row, _ in group])
                for _, done in group:
                    done.set()

        async def task(pid: str) -> None:
            for seq in range(1, per_actor + 1):
                done = trio.Event()
                send.send_nowait((event_row(pid, seq, seq - 1), done))
                await done.wait()

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writer)
                start = time.perf_counter()
                async with trio.open_nursery() as tasks:
                    for a in range(actor_count):
                        tasks.start_soon(task, f"w{a}")
                elapsed = time.perf_counter() - start
                send.close()
            return elapsed
        finally:
            conn.close()


async def raw_pg_single(dsn: str, events: int) -> float:
    """(a) PostgreSQL reference: one ``BEGIN`` / ``INSERT`` / ``COMMIT`` per event."""
    import psycopg

    with postgres_schema(dsn) as schema:
        async with open_postgres(dsn, schema):
            pass
        insert = pg_insert(schema)
        rows = [pg_row(event_row("single", seq, seq - 1)) for seq in range(1, events + 1)]
        with psycopg.connect(dsn, autocommit=True) as conn:
            execute = conn.execute
            start = time.perf_counter()
            for row in rows:
                execute("BEGIN")
                execute(insert, row)
                execute("COMMIT")
            return time.perf_counter() - start


async def raw_pg_batched(dsn: str, actor_count: int, per_actor: int, stats: ManyStats) -> float:
    """(b) PostgreSQL baseline: the same rows, one ``INSERT`` each, in transactions of the
    batch size the group commit achieved in the previous actors run."""
    import psycopg

    batch = stats.last_batch()
    with postgres_schema(dsn) as schema:
        async with open_postgres(dsn, schema):
            pass
        insert = pg_insert(schema)
        rows = [pg_row(row) for row in round_robin_rows(actor_count, per_actor)]
        with psycopg.connect(dsn, autocommit=True) as conn:
            execute = conn.execute
            start = time.perf_counter()
            for first in range(0, len(rows), batch):
                execute("BEGIN")
                for row in rows[first : first + batch]:
                    execute(insert, row)
                execute("COMMIT")
            return time.perf_counter() - start


def pg_opener(dsn: str) -> OpenJournal:
    """Open a PostgreSQL journal on a fresh schema (the path is ignored), dropped after."""

    @contextlib.asynccontextmanager
    async def open_journal(_: Path) -> AsyncIterator[Journal]:
        with postgres_schema(dsn) as schema:
            async with open_postgres(dsn, schema) as journal:
                yield journal

    return open_journal


# -- the run --------------------------------------------------------------------------------


def group_stats(stats: ManyStats, best: float) -> dict[str, float]:
    """The statistics of the best actors run (the one whose time is reported)."""
    _, transactions, events = min(stats.runs, key=lambda run: abs(run[0] - best))
    return {"transactions": transactions, "events": events, "batch": events / transactions}


def fmt_stats(stats: dict[str, float]) -> str:
    return f"{stats['transactions']:,.0f} transactions, avg batch {stats['batch']:.1f}"


def measure_sqlite(sizes: Sizes) -> tuple[list[Row], dict[str, Any]]:
    single = sizes.single
    actor_s, fsync_s, sqlite_s, thread_s = best_seconds(
        functools.partial(actors_single, open_sqlite_journal, single),
        functools.partial(raw_fsync, single),
        functools.partial(raw_sqlite_single, single),
        functools.partial(raw_sqlite_single_in_thread, single),
    )
    actor_rate, fsync_rate, sqlite_rate, thread_rate = (
        single / s for s in (actor_s, fsync_s, sqlite_s, thread_s)
    )

    stats = ManyStats()
    count, per = sizes.actors, sizes.per_actor
    many: list[Callable[[], Awaitable[float]]] = [
        functools.partial(actors_many, open_sqlite_journal, count, per, stats),
        functools.partial(raw_sqlite_batched, count, per, stats, False),
        functools.partial(raw_sqlite_batched, count, per, stats, True),
        functools.partial(raw_trio_group_commit, count, per),
    ]
    many_s, batched_s, journal_sql_s, trio_s = best_seconds(*many)
    events = count * per
    many_rate, batched_rate, journal_sql_rate, trio_rate = (
        events / s for s in (many_s, batched_s, journal_sql_s, trio_s)
    )
    best_stats = group_stats(stats, many_s)
    raw_batch = round(best_stats["batch"])
    ratio_a = actor_rate / fsync_rate
    ratio_b = many_rate / batched_rate
    rows: list[Row] = [
        {
            "workload": f"J1a SQLite, 1 actor, {single:,} awaited persists (vs raw fsync)",
            "actors": fmt_rate(actor_rate, "events/s"),
            "baseline": fmt_rate(fsync_rate, "fsyncs/s"),
            "ratio": fmt_ratio(ratio_a),
            "target": f">= {TARGET_RATIO}x raw fsync",
            "met": yes_no(ratio_a >= TARGET_RATIO),
        },
        {
            "workload": "J1a SQLite, 1 actor (vs raw sqlite3 INSERT+COMMIT per event)",
            "actors": fmt_rate(actor_rate, "events/s"),
            "baseline": fmt_rate(sqlite_rate, "events/s"),
            "ratio": fmt_ratio(actor_rate / sqlite_rate),
            "target": "(reference)",
            "met": "-",
        },
        {
            "workload": "J1a SQLite, 1 actor (vs raw trio: that commit in trio.to_thread)",
            "actors": fmt_rate(actor_rate, "events/s"),
            "baseline": fmt_rate(thread_rate, "events/s"),
            "ratio": fmt_ratio(actor_rate / thread_rate),
            "target": "(reference)",
            "met": "-",
        },
        {
            "workload": f"J1b SQLite, {count:,} actors x {per} persists ({fmt_stats(best_stats)})",
            "actors": fmt_rate(many_rate, "events/s"),
            "baseline": fmt_rate(batched_rate, "events/s") + f" (batches of {raw_batch})",
            "ratio": fmt_ratio(ratio_b),
            "target": f">= {TARGET_RATIO}x raw batched",
            "met": yes_no(ratio_b >= TARGET_RATIO),
        },
        {
            "workload": "J1b SQLite (vs raw sqlite3 running the journal's SQL per event)",
            "actors": fmt_rate(many_rate, "events/s"),
            "baseline": fmt_rate(journal_sql_rate, "events/s") + f" (batches of {raw_batch})",
            "ratio": fmt_ratio(many_rate / journal_sql_rate),
            "target": "(reference)",
            "met": "-",
        },
        {
            "workload": "J1b SQLite (vs raw trio: tasks awaiting a group-commit writer task)",
            "actors": fmt_rate(many_rate, "events/s"),
            "baseline": fmt_rate(trio_rate, "events/s"),
            "ratio": fmt_ratio(many_rate / trio_rate),
            "target": "(reference)",
            "met": "-",
        },
    ]
    data = {
        "single_events": single,
        "single_actor_events_per_s": actor_rate,
        "raw_fsync_per_s": fsync_rate,
        "raw_sqlite_commits_per_s": sqlite_rate,
        "raw_sqlite_commits_in_thread_per_s": thread_rate,
        "many_actors": count,
        "many_per_actor": per,
        "many_events_per_s": many_rate,
        "many_group_commit": best_stats,
        "many_all_runs": stats.runs,
        "raw_batched_events_per_s": batched_rate,
        "raw_journal_sql_events_per_s": journal_sql_rate,
        "raw_trio_group_commit_events_per_s": trio_rate,
    }
    return rows, data


def measure_postgres(sizes: Sizes, dsn: str, where: str) -> tuple[list[Row], dict[str, Any]]:
    opener = pg_opener(dsn)
    single = sizes.pg_single
    actor_s, raw_s = best_seconds(
        functools.partial(actors_single, opener, single),
        functools.partial(raw_pg_single, dsn, single),
    )
    actor_rate, raw_rate = single / actor_s, single / raw_s
    stats = ManyStats()
    count, per = sizes.pg_actors, sizes.pg_per_actor
    many_s, batched_s = best_seconds(
        functools.partial(actors_many, opener, count, per, stats),
        functools.partial(raw_pg_batched, dsn, count, per, stats),
    )
    events = count * per
    many_rate, batched_rate = events / many_s, events / batched_s
    best_stats = group_stats(stats, many_s)
    rows: list[Row] = [
        {
            "workload": f"J1a PostgreSQL, 1 actor, {single:,} awaited persists",
            "actors": fmt_rate(actor_rate, "events/s"),
            "baseline": fmt_rate(raw_rate, "events/s") + " raw psycopg",
            "ratio": fmt_ratio(actor_rate / raw_rate),
            "target": "(informational)",
            "met": "-",
        },
        {
            "workload": f"J1b PostgreSQL, {count:,} actors x {per} persists "
            f"({fmt_stats(best_stats)})",
            "actors": fmt_rate(many_rate, "events/s"),
            "baseline": fmt_rate(batched_rate, "events/s")
            + f" raw psycopg (batches of {round(best_stats['batch'])})",
            "ratio": fmt_ratio(many_rate / batched_rate),
            "target": "(informational)",
            "met": "-",
        },
    ]
    data = {
        "pg_server": where,
        "pg_single_events": single,
        "pg_single_actor_events_per_s": actor_rate,
        "pg_raw_single_events_per_s": raw_rate,
        "pg_many_actors": count,
        "pg_many_per_actor": per,
        "pg_many_events_per_s": many_rate,
        "pg_many_group_commit": best_stats,
        "pg_raw_batched_events_per_s": batched_rate,
    }
    return rows, data


def skipped_row(name: str, why: str) -> Row:
    return {
        "workload": f"{name} PostgreSQL: skipped ({why})",
        "actors": "-",
        "baseline": "-",
        "ratio": "-",
        "target": "-",
        "met": "-",
    }


def run(quick: bool = False, postgres: bool = True) -> Result:
    sizes = Sizes(quick)
    rows, data = measure_sqlite(sizes)
    data["tmp_root"] = TMP_ROOT
    data["quick"] = quick
    if postgres:
        with postgres_server() as (dsn, where):
            if dsn is None:
                print(f"J1: PostgreSQL skipped: {where}", file=sys.stderr)
                rows.append(skipped_row("J1", where))
            else:
                pg_rows, pg_data = measure_postgres(sizes, dsn, where)
                rows.extend(pg_rows)
                data.update(pg_data)
    return {"rows": rows, "data": data}


if __name__ == "__main__":
    main(lambda: run(quick="--quick" in sys.argv[1:], postgres="--no-postgres" not in sys.argv[1:]))
