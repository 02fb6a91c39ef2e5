"""J1 persist throughput: ``PersistentActor.persist`` on the SQLite journal (and PostgreSQL
when a server is available).

Every raw baseline stores the same rows as the journal: the columns of
``EVENT_COLUMNS`` (``actors/persistence/_sql_dialect.py``) but the offset, the payload
pickled (protocol 5), no tags, and a ``digest`` computed as the journal computes it
without a key (``actors.persistence._integrity``: the CRC-32 checksum of the record's
message). The raw rows are built before the clock starts, except in the raw-trio group
commit of (b), whose tasks build their rows as they go, as the actors do.

(a) One actor persists events one after the other, awaiting each ``persist`` (so one
    durable commit per event). Baselines, in the same run, on an empty database (or
    file) of the same temporary directory:

    - SQLite, **the target's baseline** (raw trio): one ``BEGIN IMMEDIATE`` / ``INSERT``
      / ``COMMIT`` per event on a raw ``sqlite3`` connection with the journal's schema
      and pragmas (WAL, ``synchronous=FULL``), each commit run in
      ``trio.to_thread.run_sync`` (as any trio program must run blocking I/O, and as the
      journal's writer does). Target: >= 0.9x.
    - SQLite, reference: the same commits in a plain loop in the trio thread.
    - Reference: a raw loop appending a small record to a file and calling ``os.fsync``
      (the disk's raw fsync rate).
    - PostgreSQL, **the target's baseline** (raw trio): one ``BEGIN`` / ``INSERT ...
      RETURNING event_offset`` / ``COMMIT`` per event on one psycopg connection in
      autocommit mode, each commit run in ``trio.to_thread.run_sync``. Target: >= 0.9x.
      (The journal also takes its offset lock in the ``BEGIN`` round trip and reads the
      highest seq of the id in one more round trip; the baseline does neither.)
    - PostgreSQL, reference: the same commits in a plain loop in the trio thread.
(b) Many actors persist concurrently, each awaiting its own persists; the journal's
    writer task groups what is queued into one transaction (natural group commit).

    - SQLite, **the target's baseline** (raw trio group commit): as many plain trio
      tasks, each awaiting the commit of its own rows one by one, through one writer task
      that takes whatever is queued and commits it in ``trio.to_thread.run_sync``:
      ``BEGIN IMMEDIATE``, one ``executemany`` of the ``INSERT``, ``COMMIT`` (no actors,
      no serializer, no journal). Target: >= 0.7x.
    - SQLite, reference: raw ``sqlite3`` in a plain loop, the same rows (round-robin over
      the ids, as the actors produce them), one ``INSERT`` per row, in transactions of
      the average batch size the group commit achieved in the actors run just before.
    - SQLite, reference: the same transactions running the statements the journal runs
      per group now (imported from ``actors/persistence/_sqlite.py``): ``BEGIN
      IMMEDIATE``, one read of the highest seqs of the batch's ids (``json_each`` over
      them), one read of the last offset, one ``executemany`` insert of the rows, one
      read of the last offset inserted, ``COMMIT``.
    - PostgreSQL, **the target's baseline** (raw psycopg, the journal's batching): per
      transaction of the achieved batch size, ``BEGIN``; one ``SELECT`` of the highest
      seqs of the batch's ids (``unnest`` of an array, as the journal); the batch's
      offsets drawn with ``nextval`` over ``generate_series``; the rows sent by
      ``COPY``; ``COMMIT``. The journal sends batches of at most 16 rows as one
      multi-row ``INSERT`` instead, and takes its offset lock in the ``BEGIN`` round
      trip; the baseline does neither. Targets: >= 25k events/s and >= 0.8x.
    - PostgreSQL, reference: the same transactions with one ``INSERT`` per row.

PostgreSQL rows are measured when a server is available: ``BENCH_POSTGRES_DSN`` (or
``ACTORS_TEST_POSTGRES_DSN``), else a throwaway server started as the tests do
(``tests/postgres_server.py``: note that it runs with ``fsync=off``); otherwise they are
skipped with a message. Each PostgreSQL measurement uses a schema of its own, created by
opening the journal once and dropped afterwards.

Options: ``--quick`` (smaller counts, for smoke runs), ``--no-postgres``, ``--json``.
Temporary files go to ``BENCH_TMPDIR`` (default: the system temporary directory) and are
removed.
"""

from __future__ import annotations

import contextlib
import functools
import json
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
from typing import TYPE_CHECKING, Any, Final

import trio
import trio.testing
from _common import (
    Latch,
    Result,
    Row,
    best_seconds,
    fmt_rate,
    fmt_ratio,
    main,
    start_clock,
    yes_no,
)

import actors
from actors.persistence import Journal, Persistence, PersistentActor, open_sqlite_journal
from actors.persistence._integrity import Integrity, event_message
from actors.persistence._sql_dialect import EVENT_COLUMNS
from actors.persistence._sqlite import _HIGHEST_MANY, _LAST_INSERTED, _LAST_OFFSET

if TYPE_CHECKING:
    import psycopg

TARGET_SINGLE_RATIO: Final = 0.9
"""(a), both backends: the actor's rate over raw trio's (each commit in a thread)."""
TARGET_SQLITE_MANY_RATIO: Final = 0.7
"""(b) SQLite: the actors' rate over the raw-trio group commit's."""
TARGET_PG_MANY_RATE: Final = 25_000.0
"""(b) PostgreSQL: the actors' rate, events/s."""
TARGET_PG_MANY_RATIO: Final = 0.8
"""(b) PostgreSQL: the actors' rate over raw psycopg's with the journal's batching."""

TMP_ROOT: Final = os.environ.get("BENCH_TMPDIR") or tempfile.gettempdir()
"""Where the databases and files of the benchmarks go (removed afterwards)."""

RAW_RECORD: Final = b"x" * 63 + b"\n"
"""The record appended by the raw fsync loop (about the size of a stored event row)."""

SERIALIZER: Final = "pickle"
MANIFEST: Final = "builtins.int"
ROW_COLUMNS: Final = EVENT_COLUMNS[1:]
"""The columns of a raw event row (:func:`event_row`): every column but the offset."""
INSERT_SQLITE: Final = (
    f"INSERT INTO events ({', '.join(ROW_COLUMNS)}) VALUES ({', '.join('?' * len(ROW_COLUMNS))})"
)
"""The journal's one-row insert (``insert_event``), as SQLite runs it."""

_SEAL: Final = Integrity(None, "bench journal").seal
"""Seals a record's message as a journal opened without a key does (CRC-32)."""


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


@contextlib.asynccontextmanager
async def raw_sqlite() -> AsyncIterator[sqlite3.Connection]:
    """A raw connection (:func:`sqlite_connect`) to a fresh journal database in a
    temporary directory, closed and removed on exit."""
    with temp_dir() as directory:
        path = directory / "raw.db"
        await create_sqlite_schema(path)
        conn = sqlite_connect(path)
        try:
            yield conn
        finally:
            conn.close()


def event_row(pid: str, seq: int, value: int, writer_id: str = "raw") -> tuple[Any, ...]:
    """The row the journal stores for the event ``value`` (pickle, no tags), in the order
    of :data:`ROW_COLUMNS`, with the digest the journal computes without a key."""
    payload = pickle.dumps(value, protocol=5)
    timestamp = time.time()
    digest = _SEAL(
        event_message(pid, seq, SERIALIZER, MANIFEST, payload, "[]", writer_id, timestamp)
    )
    return (pid, seq, SERIALIZER, MANIFEST, payload, "[]", writer_id, timestamp, digest)


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


@contextlib.asynccontextmanager
async def raw_postgres(dsn: str) -> AsyncIterator[tuple[psycopg.Connection[Any], str]]:
    """``(connection, schema)``: one psycopg connection in autocommit mode and a fresh
    schema holding the journal's tables (made by opening the journal once), dropped on
    exit."""
    import psycopg

    with postgres_schema(dsn) as schema:
        async with open_postgres(dsn, schema):
            pass
        with psycopg.connect(dsn, autocommit=True) as conn:
            yield conn, schema


def pg_insert(schema: str) -> Any:
    """The raw ``INSERT`` of one event row into ``schema`` (the journal's columns)."""
    from psycopg import sql

    return sql.SQL("INSERT INTO {} ({}) VALUES ({}) RETURNING event_offset").format(
        sql.Identifier(schema, "events"),
        sql.SQL(", ").join(map(sql.Identifier, ROW_COLUMNS)),
        sql.SQL(", ").join([sql.Placeholder()] * len(ROW_COLUMNS)),
    )


def pg_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """An SQLite event row as PostgreSQL stores it (tags as a text array)."""
    pid, seq, serializer, manifest, payload, _, writer_id, timestamp, digest = row
    return (pid, seq, serializer, manifest, payload, [], writer_id, timestamp, digest)


def journal_counters(journal: Journal) -> tuple[int, int]:
    """``(transactions, ops_acknowledged)`` of a SQLite or PostgreSQL journal."""
    return int(getattr(journal, "transactions", 0)), int(getattr(journal, "ops_acknowledged", 0))


# -- measurements: the actors -------------------------------------------------------------

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
            start = start_clock()
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
            start = start_clock()
            for ref in refs:
                ref.tell(("run", per_actor))
            await latch.done.wait()
            elapsed = time.perf_counter() - start
            transactions_after, ops_after = journal_counters(journal)
    events = actor_count * per_actor
    assert ops_after - ops == events, (ops_after - ops, events)
    stats.runs.append((elapsed, transactions_after - transactions, events))
    return elapsed


def pg_opener(dsn: str) -> OpenJournal:
    """Open a PostgreSQL journal on a fresh schema (the path is ignored), dropped after."""

    @contextlib.asynccontextmanager
    async def open_journal(_: Path) -> AsyncIterator[Journal]:
        with postgres_schema(dsn) as schema:
            async with open_postgres(dsn, schema) as journal:
                yield journal

    return open_journal


# -- measurements: SQLite baselines -------------------------------------------------------


async def raw_fsync(events: int) -> float:
    """(a) reference: append a small record to a file and ``os.fsync`` it, ``events``
    times."""
    with temp_dir() as directory:
        fd = os.open(directory / "raw.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            start = start_clock()
            for _ in range(events):
                os.write(fd, RAW_RECORD)
                os.fsync(fd)
            return time.perf_counter() - start
        finally:
            os.close(fd)


async def raw_sqlite_single(events: int) -> float:
    """(a) reference: one ``BEGIN IMMEDIATE`` / ``INSERT`` / ``COMMIT`` per event, in the
    trio thread."""
    async with raw_sqlite() as conn:
        rows = [event_row("single", seq, seq - 1) for seq in range(1, events + 1)]
        execute = conn.execute
        start = start_clock()
        for row in rows:
            execute("BEGIN IMMEDIATE")
            execute(INSERT_SQLITE, row)
            execute("COMMIT")
        return time.perf_counter() - start


async def raw_sqlite_single_in_thread(events: int) -> float:
    """(a) the raw-trio baseline: the same commits, each run in ``trio.to_thread`` as any
    trio program must run blocking I/O (what the journal's writer does)."""
    async with raw_sqlite() as conn:
        rows = [event_row("single", seq, seq - 1) for seq in range(1, events + 1)]

        def commit(row: tuple[Any, ...]) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(INSERT_SQLITE, row)
            conn.execute("COMMIT")

        start = start_clock()
        for row in rows:
            await trio.to_thread.run_sync(commit, row)
        return time.perf_counter() - start


async def raw_sqlite_batched(actor_count: int, per_actor: int, stats: ManyStats) -> float:
    """(b) reference: the same rows, one ``INSERT`` each, in transactions of the batch
    size the group commit achieved in the previous actors run."""
    batch = stats.last_batch()
    async with raw_sqlite() as conn:
        rows = round_robin_rows(actor_count, per_actor)
        execute = conn.execute
        start = start_clock()
        for first in range(0, len(rows), batch):
            execute("BEGIN IMMEDIATE")
            for row in rows[first : first + batch]:
                execute(INSERT_SQLITE, row)
            execute("COMMIT")
        return time.perf_counter() - start


async def raw_sqlite_journal_statements(
    actor_count: int, per_actor: int, stats: ManyStats
) -> float:
    """(b) reference: the same transactions as :func:`raw_sqlite_batched`, each running
    the statements the journal runs per group (those of ``_sqlite.py``): the highest seqs
    of the batch's ids (``json_each``), the last offset, one ``executemany`` insert, the
    last offset inserted."""
    batch = stats.last_batch()
    async with raw_sqlite() as conn:
        rows = round_robin_rows(actor_count, per_actor)
        execute = conn.execute
        executemany = conn.executemany
        start = start_clock()
        for first in range(0, len(rows), batch):
            chunk = rows[first : first + batch]
            execute("BEGIN IMMEDIATE")
            ids = json.dumps(list({row[0] for row in chunk}))
            execute(_HIGHEST_MANY, (ids,)).fetchall()
            base: int = execute(_LAST_OFFSET).fetchone()[0]
            executemany(INSERT_SQLITE, chunk)
            assert execute(_LAST_INSERTED).fetchone()[0] == base + len(chunk)
            execute("COMMIT")
        elapsed = time.perf_counter() - start
        (stored,) = execute("SELECT count(*) FROM events").fetchone()
    assert stored == len(rows), (stored, len(rows))
    return elapsed


async def raw_trio_group_commit(actor_count: int, per_actor: int) -> float:
    """(b) the raw-trio baseline: ``actor_count`` plain trio tasks, each awaiting the
    commit of its own rows one by one, through one writer task that commits whatever is
    queued in one transaction in ``trio.to_thread`` (natural group commit, no actors,
    no serializer, no journal)."""
    async with raw_sqlite() as conn:

        def commit(rows: list[tuple[Any, ...]]) -> None:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(INSERT_SQLITE, rows)
            conn.execute("COMMIT")

        return await tasks_through_one_writer(commit, actor_count, per_actor, event_row)


async def tasks_through_one_writer(
    commit: Callable[[list[tuple[Any, ...]]], None],
    actor_count: int,
    per_actor: int,
    make_row: Callable[[str, int, int], tuple[Any, ...]],
) -> float:
    """The seconds ``actor_count`` plain trio tasks take to store ``per_actor`` rows each
    (``make_row(pid, seq, value)``), awaiting each one, through one writer task that
    hands whatever is queued to ``commit`` in ``trio.to_thread``: the raw trio group
    commit."""
    send, receive = trio.open_memory_channel[tuple[tuple[Any, ...], trio.Event]](math.inf)

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
            send.send_nowait((make_row(pid, seq, seq - 1), done))
            await done.wait()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        start = start_clock()
        async with trio.open_nursery() as tasks:
            for a in range(actor_count):
                tasks.start_soon(task, f"w{a}")
        elapsed = time.perf_counter() - start
        send.close()
    return elapsed


# -- measurements: PostgreSQL baselines ---------------------------------------------------


async def raw_pg_single(dsn: str, events: int) -> float:
    """(a) PostgreSQL reference: one ``BEGIN`` / ``INSERT`` / ``COMMIT`` per event, in
    the trio thread."""
    async with raw_postgres(dsn) as (conn, schema):
        insert = pg_insert(schema)
        rows = [pg_row(event_row("single", seq, seq - 1)) for seq in range(1, events + 1)]
        execute = conn.execute
        start = start_clock()
        for row in rows:
            execute("BEGIN")
            execute(insert, row).fetchone()
            execute("COMMIT")
        return time.perf_counter() - start


async def raw_pg_single_in_thread(dsn: str, events: int) -> float:
    """(a) PostgreSQL raw-trio baseline: the same commits, each run in
    ``trio.to_thread.run_sync`` on the one connection (as the journal's writer does)."""
    async with raw_postgres(dsn) as (conn, schema):
        insert = pg_insert(schema)
        rows = [pg_row(event_row("single", seq, seq - 1)) for seq in range(1, events + 1)]

        def commit(row: tuple[Any, ...]) -> None:
            conn.execute("BEGIN")
            conn.execute(insert, row).fetchone()
            conn.execute("COMMIT")

        start = start_clock()
        for row in rows:
            await trio.to_thread.run_sync(commit, row)
        return time.perf_counter() - start


async def raw_pg_insert_per_row(
    dsn: str, actor_count: int, per_actor: int, stats: ManyStats
) -> float:
    """(b) PostgreSQL reference: the same rows, one ``INSERT`` each, in transactions of
    the batch size the group commit achieved in the previous actors run."""
    batch = stats.last_batch()
    async with raw_postgres(dsn) as (conn, schema):
        insert = pg_insert(schema)
        rows = [pg_row(row) for row in round_robin_rows(actor_count, per_actor)]
        execute = conn.execute
        start = start_clock()
        for first in range(0, len(rows), batch):
            execute("BEGIN")
            for row in rows[first : first + batch]:
                execute(insert, row)
            execute("COMMIT")
        return time.perf_counter() - start


def pg_group_commit(
    conn: psycopg.Connection[Any], schema: str
) -> Callable[[list[tuple[Any, ...]]], None]:
    """``commit(rows)``: one transaction storing PostgreSQL rows (:func:`pg_row`) the way
    the journal stores a group: ``BEGIN``; one read of the highest seqs of the rows' ids;
    the offsets drawn with ``nextval`` over ``generate_series``; the rows by ``COPY``;
    ``COMMIT``."""
    from psycopg import sql

    events = sql.Identifier(schema, "events")
    highest = sql.SQL(
        "SELECT p, (SELECT max(seq) FROM {} WHERE persistence_id = p), "
        "(SELECT highest_seq FROM {} WHERE persistence_id = p) "
        "FROM unnest(%s::text[]) AS p"
    ).format(events, sql.Identifier(schema, "journal_metadata"))
    draw = sql.SQL(
        "SELECT nextval(pg_get_serial_sequence(format('%%I.%%I', %s::text, 'events'), "
        "'event_offset')) FROM generate_series(1, %s)"
    )
    copy_in = sql.SQL("COPY {} ({}) FROM STDIN").format(
        events, sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS))
    )
    execute = conn.execute

    def commit(chunk: list[tuple[Any, ...]]) -> None:
        execute("BEGIN")
        execute(highest, (list({row[0] for row in chunk}),)).fetchall()
        drawn = execute(draw, (schema, len(chunk))).fetchall()
        offsets = sorted(int(offset) for (offset,) in drawn)
        with conn.cursor() as cursor, cursor.copy(copy_in) as copy:
            write_row = copy.write_row
            for offset, row in zip(offsets, chunk, strict=True):
                write_row((offset, *row))
        execute("COMMIT")

    return commit


def pg_count(conn: psycopg.Connection[Any], schema: str) -> int:
    from psycopg import sql

    counted = conn.execute(
        sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "events"))
    ).fetchone()
    assert counted is not None
    return int(counted[0])


async def raw_pg_same_batching(
    dsn: str, actor_count: int, per_actor: int, stats: ManyStats
) -> float:
    """(b) PostgreSQL baseline: the same rows, made before the clock starts, stored in
    transactions of the batch size the group commit achieved in the previous actors run,
    each as the journal stores a group (:func:`pg_group_commit`), one after the other
    from the trio thread."""
    batch = stats.last_batch()
    async with raw_postgres(dsn) as (conn, schema):
        commit = pg_group_commit(conn, schema)
        rows = [pg_row(row) for row in round_robin_rows(actor_count, per_actor)]
        start = start_clock()
        for first in range(0, len(rows), batch):
            commit(rows[first : first + batch])
        elapsed = time.perf_counter() - start
        assert pg_count(conn, schema) == len(rows)
    return elapsed


async def raw_trio_pg_group_commit(dsn: str, actor_count: int, per_actor: int) -> float:
    """(b) reference: what raw trio reaches with that batching, as
    :func:`raw_trio_group_commit` for SQLite: ``actor_count`` plain trio tasks, each
    making its rows and awaiting their commit one by one, through one writer task that
    stores whatever is queued with :func:`pg_group_commit` in ``trio.to_thread``."""
    async with raw_postgres(dsn) as (conn, schema):
        commit = pg_group_commit(conn, schema)

        def make_row(pid: str, seq: int, value: int) -> tuple[Any, ...]:
            return pg_row(event_row(pid, seq, value))

        elapsed = await tasks_through_one_writer(commit, actor_count, per_actor, make_row)
        assert pg_count(conn, schema) == actor_count * per_actor
    return elapsed


# -- the run --------------------------------------------------------------------------------


def group_stats(stats: ManyStats, best: float) -> dict[str, float]:
    """The statistics of the best actors run (the one whose time is reported)."""
    _, transactions, events = min(stats.runs, key=lambda run: abs(run[0] - best))
    return {"transactions": transactions, "events": events, "batch": events / transactions}


def fmt_stats(stats: dict[str, float]) -> str:
    return f"{stats['transactions']:,.0f} transactions, avg batch {stats['batch']:.1f}"


def table_row(
    workload: str, measured: str, baseline: str, ratio: float | None, target: str, met: bool | None
) -> Row:
    """A table row; ``ratio`` or ``met`` ``None``: shown as ``-``."""
    return {
        "workload": workload,
        "actors": measured,
        "baseline": baseline,
        "ratio": "-" if ratio is None else fmt_ratio(ratio),
        "target": target,
        "met": "-" if met is None else yes_no(met),
    }


def reference(workload: str, measured: str, baseline: str, ratio: float) -> Row:
    """A reference row: a ratio, no target."""
    return table_row(workload, measured, baseline, ratio, "(reference)", None)


def measure_sqlite(sizes: Sizes) -> tuple[list[Row], dict[str, Any]]:
    single = sizes.single
    actor_s, thread_s, sqlite_s, fsync_s = best_seconds(
        functools.partial(actors_single, open_sqlite_journal, single),
        functools.partial(raw_sqlite_single_in_thread, single),
        functools.partial(raw_sqlite_single, single),
        functools.partial(raw_fsync, single),
    )
    actor_rate, thread_rate, sqlite_rate, fsync_rate = (
        single / s for s in (actor_s, thread_s, sqlite_s, fsync_s)
    )

    stats = ManyStats()
    count, per = sizes.actors, sizes.per_actor
    many: list[Callable[[], Awaitable[float]]] = [
        functools.partial(actors_many, open_sqlite_journal, count, per, stats),
        functools.partial(raw_trio_group_commit, count, per),
        functools.partial(raw_sqlite_batched, count, per, stats),
        functools.partial(raw_sqlite_journal_statements, count, per, stats),
    ]
    many_s, trio_s, batched_s, statements_s = best_seconds(*many)
    events = count * per
    many_rate, trio_rate, batched_rate, statements_rate = (
        events / s for s in (many_s, trio_s, batched_s, statements_s)
    )
    best_stats = group_stats(stats, many_s)
    batches = f" (batches of {round(best_stats['batch'])})"
    ratio_a = actor_rate / thread_rate
    ratio_b = many_rate / trio_rate
    single_rate = fmt_rate(actor_rate, "events/s")
    many_fmt = fmt_rate(many_rate, "events/s")
    rows: list[Row] = [
        table_row(
            f"J1a SQLite, 1 actor, {single:,} awaited persists "
            "(vs raw trio: that commit in trio.to_thread)",
            single_rate,
            fmt_rate(thread_rate, "events/s"),
            ratio_a,
            f">= {TARGET_SINGLE_RATIO}x raw trio",
            ratio_a >= TARGET_SINGLE_RATIO,
        ),
        reference(
            "J1a SQLite, 1 actor (vs raw sqlite3 INSERT+COMMIT per event, trio thread)",
            single_rate,
            fmt_rate(sqlite_rate, "events/s"),
            actor_rate / sqlite_rate,
        ),
        reference(
            "J1a SQLite, 1 actor (vs raw fsync)",
            single_rate,
            fmt_rate(fsync_rate, "fsyncs/s"),
            actor_rate / fsync_rate,
        ),
        table_row(
            f"J1b SQLite, {count:,} actors x {per} persists, {fmt_stats(best_stats)} "
            "(vs raw trio group commit)",
            many_fmt,
            fmt_rate(trio_rate, "events/s"),
            ratio_b,
            f">= {TARGET_SQLITE_MANY_RATIO}x raw trio group commit",
            ratio_b >= TARGET_SQLITE_MANY_RATIO,
        ),
        reference(
            "J1b SQLite (vs raw sqlite3, one INSERT per row)",
            many_fmt,
            fmt_rate(batched_rate, "events/s") + batches,
            many_rate / batched_rate,
        ),
        reference(
            "J1b SQLite (vs raw sqlite3 running the journal's statements)",
            many_fmt,
            fmt_rate(statements_rate, "events/s") + batches,
            many_rate / statements_rate,
        ),
    ]
    data = {
        "single_events": single,
        "single_actor_events_per_s": actor_rate,
        "raw_sqlite_commits_in_thread_per_s": thread_rate,
        "raw_sqlite_commits_per_s": sqlite_rate,
        "raw_fsync_per_s": fsync_rate,
        "many_actors": count,
        "many_per_actor": per,
        "many_events_per_s": many_rate,
        "many_group_commit": best_stats,
        "many_all_runs": stats.runs,
        "raw_trio_group_commit_events_per_s": trio_rate,
        "raw_batched_events_per_s": batched_rate,
        "raw_journal_statements_events_per_s": statements_rate,
    }
    return rows, data


def measure_postgres(sizes: Sizes, dsn: str, where: str) -> tuple[list[Row], dict[str, Any]]:
    opener = pg_opener(dsn)
    single = sizes.pg_single
    actor_s, thread_s, raw_s = best_seconds(
        functools.partial(actors_single, opener, single),
        functools.partial(raw_pg_single_in_thread, dsn, single),
        functools.partial(raw_pg_single, dsn, single),
    )
    actor_rate, thread_rate, raw_rate = (single / s for s in (actor_s, thread_s, raw_s))
    stats = ManyStats()
    count, per = sizes.pg_actors, sizes.pg_per_actor
    many_s, same_s, trio_s, per_row_s = best_seconds(
        functools.partial(actors_many, opener, count, per, stats),
        functools.partial(raw_pg_same_batching, dsn, count, per, stats),
        functools.partial(raw_trio_pg_group_commit, dsn, count, per),
        functools.partial(raw_pg_insert_per_row, dsn, count, per, stats),
    )
    events = count * per
    many_rate, same_rate, trio_rate, per_row_rate = (
        events / s for s in (many_s, same_s, trio_s, per_row_s)
    )
    best_stats = group_stats(stats, many_s)
    batches = f" (batches of {round(best_stats['batch'])})"
    ratio_a = actor_rate / thread_rate
    ratio_b = many_rate / same_rate
    single_rate = fmt_rate(actor_rate, "events/s")
    many_fmt = fmt_rate(many_rate, "events/s")
    rows: list[Row] = [
        table_row(
            f"J1a PostgreSQL, 1 actor, {single:,} awaited persists "
            "(vs raw trio: that commit in trio.to_thread)",
            single_rate,
            fmt_rate(thread_rate, "events/s"),
            ratio_a,
            f">= {TARGET_SINGLE_RATIO}x raw trio",
            ratio_a >= TARGET_SINGLE_RATIO,
        ),
        reference(
            "J1a PostgreSQL, 1 actor (vs raw psycopg BEGIN+INSERT+COMMIT, trio thread)",
            single_rate,
            fmt_rate(raw_rate, "events/s"),
            actor_rate / raw_rate,
        ),
        table_row(
            f"J1b PostgreSQL, {count:,} actors x {per} persists, {fmt_stats(best_stats)}",
            many_fmt,
            "-",
            None,
            f">= {fmt_rate(TARGET_PG_MANY_RATE, 'events/s')}",
            many_rate >= TARGET_PG_MANY_RATE,
        ),
        table_row(
            "J1b PostgreSQL (vs raw psycopg, same batching: highest read, nextval, COPY)",
            many_fmt,
            fmt_rate(same_rate, "events/s") + batches,
            ratio_b,
            f">= {TARGET_PG_MANY_RATIO}x raw psycopg, same batching",
            ratio_b >= TARGET_PG_MANY_RATIO,
        ),
        reference(
            "J1b PostgreSQL (vs raw trio tasks through one writer, that same batching)",
            many_fmt,
            fmt_rate(trio_rate, "events/s"),
            many_rate / trio_rate,
        ),
        reference(
            "J1b PostgreSQL (vs raw psycopg, one INSERT per row)",
            many_fmt,
            fmt_rate(per_row_rate, "events/s") + batches,
            many_rate / per_row_rate,
        ),
    ]
    data = {
        "pg_server": where,
        "pg_single_events": single,
        "pg_single_actor_events_per_s": actor_rate,
        "pg_raw_single_in_thread_events_per_s": thread_rate,
        "pg_raw_single_events_per_s": raw_rate,
        "pg_many_actors": count,
        "pg_many_per_actor": per,
        "pg_many_events_per_s": many_rate,
        "pg_many_group_commit": best_stats,
        "pg_many_all_runs": stats.runs,
        "pg_raw_same_batching_events_per_s": same_rate,
        "pg_raw_trio_group_commit_events_per_s": trio_rate,
        "pg_raw_insert_per_row_events_per_s": per_row_rate,
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
