"""The PostgreSQL journal and snapshot store.

One schema of one PostgreSQL database holds both the events and the snapshots.
:func:`open_postgres_journal` connects, creates the tables if they are missing, and yields
a :class:`PostgresJournal` (the :class:`Journal`) whose :attr:`PostgresJournal.snapshots`
is the :class:`SnapshotStore` on the same schema. Several processes may open the same
schema: the database fences and orders them (see *Offsets* and *Fencing*).

psycopg 3 is used through its synchronous API, in ``trio.to_thread.run_sync`` (its async
API needs asyncio and does not run under trio).

Writes
    Every write (``write``, ``delete_to``, snapshot ``save``/``delete``, and the read done
    by ``highest_seq``) is queued on a memory channel to ONE writer task per journal, which
    owns one connection. Whenever the previous commit has finished, the writer takes
    everything queued (natural group commit: no timer ever waits for more work) and runs
    one transaction for the whole group in a thread. Each operation of the group runs in
    its own ``SAVEPOINT``, so one that fails (a sequence conflict, say) is rolled back alone
    and fails alone, while the others of the group commit. Each caller is woken only after
    the ``COMMIT`` returned. :attr:`PostgresJournal.transactions` counts the transactions
    and :attr:`PostgresJournal.ops_acknowledged` the operations (for tests and monitoring).

Offsets
    An event's offset is its ``event_offset``, drawn from an identity sequence when the row
    is inserted. A sequence alone hands out numbers in *insert* order, not in *commit*
    order: a transaction could draw offset 10, another draw 11 and commit first, and a tag
    reader that saw 11 and resumes after it would never see 10. So every transaction that
    inserts events first takes a transaction-level advisory lock,
    ``pg_advisory_xact_lock(key)``, with a ``key`` derived from the schema name
    (:attr:`PostgresJournal.offset_lock_key`), and holds it until it ends. Offsets are
    drawn only while holding the lock, so the transactions that draw them run one at a
    time, across every process writing to the schema; and PostgreSQL releases a
    transaction's locks only after its commit is visible to new snapshots. Hence when a
    transaction draws offsets, every transaction that drew smaller ones has already
    committed (or rolled back, leaving a gap that no later commit can fill): offsets are
    increasing in commit order, and a reader of ``events_by_tag`` that resumes after the
    last offset it saw never skips an event. The price is that writers of one schema
    commit one group at a time, which group commit amortises. Anything else inserting
    rows into the tables must take the same lock.

Fencing
    ``UNIQUE (persistence_id, seq)`` on the events, and a ``journal_metadata`` row per id
    holding the highest seq ever stored (read and updated under the lock above), make a
    second writer of an id (in this or another process) fail with
    :class:`SequenceConflict`; it never corrupts the journal. Deleting events keeps the
    metadata row, so the highest seq is never lowered.

Reads
    Replays and queries run in threads on a small pool of connections separate from the
    writer's (``autocommit``: every query sees what was committed when it started).
    Replays read ``chunk_size`` rows at a time with keyset pagination, so memory does not
    grow with the number of events, and no connection is held while the caller consumes a
    chunk.

Failures
    Any psycopg error becomes :class:`JournalFailure` naming the operation and the
    server (host, port and database; never the password), with the psycopg error as
    ``__cause__``. A connection that broke while idle is replaced transparently before
    the next transaction or query (nothing had been sent on it). A connection lost during
    a group's transaction fails the whole group (nothing of it was committed) and is
    re-established for the next operation. A connection lost during ``COMMIT`` fails the
    group with a :class:`JournalFailure` saying that the outcome is unknown (the commit
    may or may not have happened; recover by reading ``highest_seq``).

Cancellation
    A group's transaction runs with ``abandon_on_cancel=False``: a commit in flight is
    never abandoned midway. A caller cancelled while waiting for its write may therefore
    find that the write was committed anyway: the outcome of a cancelled ``write`` is
    unknown. Leaving :func:`open_postgres_journal` drains the queue: every queued
    operation is committed (normal exit) or failed with :class:`JournalFailure` (exit by
    cancellation or error); none is silently dropped.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any, TypeVar

import psycopg
import trio
from psycopg import errors as pg_errors
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict

from ._errors import JournalFailure, SequenceConflict
from ._group_commit import GroupCommitWriter, WriterOp, check_batch
from ._journal import Journal, SnapshotStore
from ._paging import PageChunks, Pages, page_reader
from ._records import PersistentRecord, SnapshotRecord

SCHEMA_VERSION = 1

_T = TypeVar("_T")

_MAX_BIGINT = 2**63 - 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS {schema_version} (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS {events} (
    event_offset BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    persistence_id TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    serializer TEXT NOT NULL,
    manifest TEXT NOT NULL,
    payload BYTEA NOT NULL,
    tags TEXT[] NOT NULL,
    writer_id TEXT NOT NULL,
    timestamp DOUBLE PRECISION NOT NULL,
    UNIQUE (persistence_id, seq)
);
CREATE TABLE IF NOT EXISTS {event_tags} (
    tag TEXT COLLATE "C" NOT NULL,
    event_offset BIGINT NOT NULL,
    PRIMARY KEY (tag, event_offset)
);
CREATE INDEX IF NOT EXISTS event_tags_by_offset ON {event_tags} (event_offset);
CREATE TABLE IF NOT EXISTS {journal_metadata} (
    persistence_id TEXT COLLATE "C" PRIMARY KEY,
    highest_seq BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS {snapshots} (
    persistence_id TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    serializer TEXT NOT NULL,
    manifest TEXT NOT NULL,
    payload BYTEA NOT NULL,
    timestamp DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (persistence_id, seq)
)
"""

_EVENT_COLUMNS = (
    "event_offset",
    "persistence_id",
    "seq",
    "serializer",
    "manifest",
    "payload",
    "tags",
    "writer_id",
    "timestamp",
)


def offset_lock_key(schema: str) -> int:
    """The key of the advisory lock that every transaction inserting events into the
    journal tables of ``schema`` holds (a signed 64-bit integer, stable across
    processes and versions)."""
    digest = hashlib.blake2b(f"trio-actors journal offsets {schema}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def describe_dsn(dsn: str) -> str:
    """Where ``dsn`` points, for messages: host, port and database, never the password
    (nor anything else of the DSN)."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "PostgreSQL (the DSN cannot be parsed; not shown, it may hold a password)"
    host = params.get("host") or params.get("hostaddr") or os.environ.get("PGHOST") or ""
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    dbname = (
        params.get("dbname")
        or os.environ.get("PGDATABASE")
        or params.get("user")
        or os.environ.get("PGUSER")
        or "(default)"
    )
    where = f"{host}:{port}" if host else f"(local socket, port {port})"
    return f"PostgreSQL database {dbname} on {where}"


_Op = WriterOp[psycopg.Connection[Any]]


class _Statements:
    """The SQL of one journal, with its schema's table names filled in."""

    def __init__(self, schema: str) -> None:
        names = {
            name: sql.Identifier(schema, name)
            for name in ("schema_version", "events", "event_tags", "journal_metadata", "snapshots")
        }
        columns = sql.SQL(", ").join(sql.Identifier(c) for c in _EVENT_COLUMNS)
        joined_columns = sql.SQL(", ").join(sql.Identifier("e", c) for c in _EVENT_COLUMNS)

        def q(text: str) -> sql.Composed:
            return sql.SQL(text).format(columns=columns, joined=joined_columns, **names)

        self.create_schema = sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(
            sql.Identifier(schema)
        )
        self.create_tables = [q(part) for part in _SCHEMA.split(";") if part.strip()]
        self.schema_version = q("SELECT version FROM {schema_version}")
        self.insert_version = q("INSERT INTO {schema_version} (version) VALUES (%s)")
        self.highest = q("SELECT highest_seq FROM {journal_metadata} WHERE persistence_id = %s")
        self.insert_event = q(
            "INSERT INTO {events} (persistence_id, seq, serializer, manifest, payload, tags, "
            "writer_id, timestamp) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            "RETURNING event_offset"
        )
        self.insert_tag = q("INSERT INTO {event_tags} (tag, event_offset) VALUES (%s, %s)")
        self.set_highest = q(
            "INSERT INTO {journal_metadata} AS m (persistence_id, highest_seq) VALUES (%s, %s) "
            "ON CONFLICT (persistence_id) DO UPDATE "
            "SET highest_seq = GREATEST(m.highest_seq, excluded.highest_seq)"
        )
        self.replay = q(
            "SELECT {columns} FROM {events} WHERE persistence_id = %s AND seq > %s "
            "AND seq <= %s ORDER BY seq LIMIT %s"
        )
        self.replay_rows = q(
            "SELECT seq, serializer, manifest, payload FROM {events} "
            "WHERE persistence_id = %s AND seq > %s ORDER BY seq LIMIT %s"
        )
        self.by_tag = q(
            "SELECT {joined} FROM {event_tags} t JOIN {events} e "
            "ON e.event_offset = t.event_offset WHERE t.tag = %s AND t.event_offset > %s "
            "ORDER BY t.event_offset LIMIT %s"
        )
        self.delete_tags = q(
            "DELETE FROM {event_tags} WHERE event_offset IN (SELECT event_offset FROM "
            "{events} WHERE persistence_id = %s AND seq <= %s)"
        )
        self.delete_events = q("DELETE FROM {events} WHERE persistence_id = %s AND seq <= %s")
        self.persistence_ids = q(
            "SELECT persistence_id FROM {journal_metadata} ORDER BY persistence_id"
        )
        self.save_snapshot = q(
            "INSERT INTO {snapshots} (persistence_id, seq, serializer, manifest, payload, "
            "timestamp) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (persistence_id, seq) "
            "DO UPDATE SET serializer = excluded.serializer, manifest = excluded.manifest, "
            "payload = excluded.payload, timestamp = excluded.timestamp"
        )
        self.load_snapshot = q(
            "SELECT persistence_id, seq, serializer, manifest, payload, timestamp "
            "FROM {snapshots} WHERE persistence_id = %s AND seq <= %s "
            "ORDER BY seq DESC LIMIT 1"
        )
        self.delete_snapshots = q("DELETE FROM {snapshots} WHERE persistence_id = %s AND seq <= %s")


def _record_from_row(row: Sequence[Any]) -> PersistentRecord:
    offset, pid, seq, serializer, manifest, payload, tags, writer_id, timestamp = row
    return PersistentRecord(
        persistence_id=pid,
        seq=seq,
        serializer=serializer,
        manifest=manifest,
        payload=bytes(payload),
        tags=frozenset(tags),
        writer_id=writer_id,
        timestamp=timestamp,
        offset=offset,
    )


def _is_broken(conn: psycopg.Connection[Any]) -> bool:
    return conn.closed or conn.broken


def _close_quietly(conn: psycopg.Connection[Any] | None) -> None:
    if conn is not None:
        with suppress(psycopg.Error):
            conn.close()


class PostgresJournal(GroupCommitWriter[psycopg.Connection[Any]], Journal):
    """The :class:`Journal` on one schema of a PostgreSQL database; made by
    :func:`open_postgres_journal`, which owns its writer task and connections (do not
    construct it directly).

    Errors: any psycopg error becomes :class:`JournalFailure` naming the operation and
    the server (:attr:`where`: host, port and database, never the password), with the
    psycopg error as ``__cause__``; a lost ``COMMIT`` says that the outcome is unknown. A
    batch whose seqs do not continue from the highest stored one (a seq already stored or
    deleted, a gap, seqs within the batch not consecutive or below 1) raises
    :class:`SequenceConflict` and stores nothing, also when another process wrote them; a
    batch with records of two persistence ids raises :class:`ValueError` (nothing queued).
    Every operation is a trio checkpoint.

    The writer task, its queue and the counters :attr:`transactions` and
    :attr:`ops_acknowledged` come from :class:`GroupCommitWriter`.
    """

    def __init__(
        self,
        dsn: str,
        schema: str,
        send: trio.MemorySendChannel[_Op],
        writer: psycopg.Connection[Any],
        chunk_size: int,
        max_readers: int,
        connect_timeout: float,
        application_name: str,
    ) -> None:
        self._dsn = dsn
        #: Where the journal is, for messages: host, port and database (no password).
        self.where = describe_dsn(dsn)
        #: The schema holding the journal's tables.
        self.schema = schema
        #: The key of the advisory lock taken by every transaction that inserts events.
        self.offset_lock_key = offset_lock_key(schema)
        self._sql = _Statements(schema)
        self._journal_name = f"journal on {self.where}"
        self._init_writer(send)
        self._writer: psycopg.Connection[Any] | None = writer
        self._chunk_size = chunk_size
        self._connect_timeout = connect_timeout
        self._application_name = application_name
        self._readers: list[psycopg.Connection[Any]] = []
        self._reader_limit = trio.CapacityLimiter(max_readers)
        self._shut = False
        self.snapshots = PostgresSnapshotStore(self)

    def _connect(self) -> psycopg.Connection[Any]:
        """In a thread: a new autocommit connection (the writer issues its own ``BEGIN``)."""
        return _connect(self._dsn, self._connect_timeout, self._application_name)

    # -- the writer side ----------------------------------------------------------------

    def _begin(self, lock: bool) -> psycopg.Connection[Any]:
        """In the writer's thread: start the group's transaction on the writer connection
        (connecting first if there is none, and once more if ``BEGIN`` finds the idle
        connection broken: nothing was sent on it yet), taking the offset lock if asked."""
        for attempt in (1, 2):
            conn = self._writer
            if conn is None or _is_broken(conn):
                _close_quietly(conn)
                self._writer = None
                conn = self._writer = self._connect()
            try:
                # READ COMMITTED whatever the server's default: each statement, notably
                # the read of the highest seq after the lock is taken, sees every commit.
                conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            except psycopg.OperationalError:
                if attempt == 2 or not _is_broken(conn):
                    raise
                continue
            if lock:
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (self.offset_lock_key,))
            return conn
        raise AssertionError("unreachable")  # pragma: no cover

    def _commit_group(self, group: list[_Op]) -> None:
        """In the writer's thread: one transaction for the group. The ops first run one
        after the other without savepoints (the common case, where none fails: two round
        trips fewer per op); if one fails, the transaction is rolled back and the group
        runs again with one savepoint per op, so that only the failing ones fail. Sets
        ``result`` or ``error`` on every op of the group; never raises."""
        draws_offsets = any(op.draws_offsets for op in group)
        try:
            conn = self._begin(draws_offsets)
        except psycopg.Error as error:
            self._abort_group(group, "begin transaction", error)
            return
        try:
            for op in group:
                op.result = op.run(conn)
        except Exception as error:
            if _is_broken(conn):
                # The transaction died with the connection: nothing of it committed.
                self._abort_group(group, "transaction (connection lost)", error)
                return
            try:
                conn.execute("ROLLBACK")
                conn = self._begin(draws_offsets)
            except psycopg.Error as retry_error:
                self._abort_group(group, "retry of the group", retry_error)
                return
            self._run_one_savepoint_each(conn, group)
        self._commit(conn, group)

    def _run_one_savepoint_each(self, conn: psycopg.Connection[Any], group: list[_Op]) -> None:
        for op in group:
            op.result = None
            try:
                conn.execute("SAVEPOINT op")
            except psycopg.Error as error:
                self._abort_group(group, "savepoint", error)
                return
            try:
                op.result = op.run(conn)
                conn.execute("RELEASE SAVEPOINT op")
            except Exception as error:
                op.result = None
                op.error = self._op_error(op, error)
                if _is_broken(conn):
                    # The transaction died with the connection: nothing of it committed.
                    self._abort_group(group, "transaction (connection lost)", error)
                    return
                try:
                    conn.execute("ROLLBACK TO SAVEPOINT op")
                    conn.execute("RELEASE SAVEPOINT op")
                except psycopg.Error as rollback_error:
                    self._abort_group(group, "rollback to savepoint", rollback_error)
                    return

    def _commit(self, conn: psycopg.Connection[Any], group: list[_Op]) -> None:
        if all(op.error is not None for op in group):
            # Aborted (or every op failed): nothing to commit.
            if not conn.closed and conn.info.transaction_status != pq.TransactionStatus.IDLE:
                with suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
            return
        try:
            conn.execute("COMMIT")
        except psycopg.Error as error:
            # With the connection alive, the server answered: the transaction was rolled
            # back. With the connection lost, nobody knows whether it committed.
            self._abort_group(group, "commit", error, unknown=_is_broken(conn))

    def _op_error(self, op: _Op, error: Exception) -> Exception:
        if isinstance(error, JournalFailure):
            return error
        if isinstance(error, pg_errors.UniqueViolation) and error.diag.table_name == "events":
            conflict = SequenceConflict(
                f"{op.what}: sequence number already stored in the journal on {self.where}; "
                "nothing of the batch was stored"
            )
            conflict.__cause__ = error
            return conflict
        return self._failure(op.what, error)

    def _abort_group(
        self, group: list[_Op], what: str, error: BaseException, *, unknown: bool = False
    ) -> None:
        """Fail every op of the group that has no error yet; roll back if the connection
        is alive, else drop it (the next group reconnects)."""
        conn = self._writer
        if conn is not None:
            if _is_broken(conn):
                _close_quietly(conn)
                self._writer = None
            elif conn.info.transaction_status != pq.TransactionStatus.IDLE:
                try:
                    conn.execute("ROLLBACK")
                except psycopg.Error:
                    _close_quietly(conn)
                    self._writer = None
        for op in group:
            if op.error is None:
                op.result = None
                if unknown:
                    detail = f"{what}: connection lost during COMMIT, outcome unknown"
                else:
                    detail = f"{what}; nothing of it was stored"
                op.error = self._failure(f"{op.what} ({detail})", error)

    def _failure(self, what: str, error: BaseException) -> JournalFailure:
        failure = JournalFailure(f"{what} failed on {self.where}: {error}")
        failure.__cause__ = error
        return failure

    # -- the read side ------------------------------------------------------------------

    async def _read(self, what: str, query: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        async with self._reader_limit:
            if self._shut:
                raise JournalFailure(f"{what}: the journal on {self.where} is closed")
            return await trio.to_thread.run_sync(self._read_in_thread, what, query)

    def _read_in_thread(self, what: str, query: Callable[[psycopg.Connection[Any]], _T]) -> _T:
        """Run ``query`` on an idle read connection (or a new one). A pooled connection
        found broken is replaced and the query retried once (reads are idempotent)."""
        while True:
            reused = bool(self._readers)
            try:
                conn = self._readers.pop() if reused else self._connect()
            except psycopg.Error as error:
                raise self._failure(f"{what} (connect)", error) from error
            try:
                result = query(conn)
            except psycopg.Error as error:
                broken = _is_broken(conn)
                _close_quietly(conn)
                if reused and broken:
                    continue
                raise self._failure(what, error) from error
            except BaseException:
                _close_quietly(conn)
                raise
            if self._shut:
                _close_quietly(conn)
            else:
                self._readers.append(conn)
            return result

    def _close_connections(self) -> None:
        self._shut = True
        while self._readers:
            _close_quietly(self._readers.pop())
        _close_quietly(self._writer)
        self._writer = None

    # -- the Journal contract -----------------------------------------------------------

    def _prepare_write(
        self, batch: Sequence[PersistentRecord]
    ) -> tuple[str, Callable[[psycopg.Connection[Any]], list[int]]]:
        """What a (checked, non-empty) batch's writer operation does: its description and
        the function run in the group transaction."""
        pid = batch[0].persistence_id
        first = batch[0].seq
        last = batch[-1].seq
        rows = [
            (
                r.persistence_id,
                r.seq,
                r.serializer,
                r.manifest,
                r.payload,
                sorted(r.tags),
                r.writer_id,
                r.timestamp,
            )
            for r in batch
        ]
        tags = [sorted(r.tags) for r in batch]
        what = f"write of {pid!r} seq {first}..{last}"
        statements = self._sql
        where = self.where

        def run(conn: psycopg.Connection[Any]) -> list[int]:
            found = conn.execute(statements.highest, (pid,)).fetchone()
            highest = int(found[0]) if found else 0
            if first <= highest:
                raise SequenceConflict(
                    f"{what}: {pid!r} already has events up to seq {highest} in the journal "
                    f"on {where} (another writer?); nothing was stored"
                )
            if first != highest + 1:
                raise SequenceConflict(
                    f"{what}: would leave a gap after seq {highest} of {pid!r} in the "
                    f"journal on {where}; nothing was stored"
                )
            offsets: list[int] = []
            with conn.cursor() as cursor:
                cursor.executemany(statements.insert_event, rows, returning=True)
                while True:
                    row = cursor.fetchone()
                    assert row is not None
                    offsets.append(int(row[0]))
                    if not cursor.nextset():
                        break
                tag_rows = [
                    (tag, offset)
                    for offset, row_tags in zip(offsets, tags, strict=True)
                    for tag in row_tags
                ]
                if tag_rows:
                    cursor.executemany(statements.insert_tag, tag_rows)
            conn.execute(statements.set_highest, (pid, last))
            return offsets

        return what, run

    async def write(self, batch: Sequence[PersistentRecord]) -> list[int]:
        """Store ``batch`` atomically and return its offsets once committed.

        On failure nothing of the batch is stored (:class:`SequenceConflict` for a seq
        already stored or a gap, :class:`JournalFailure` otherwise), except for a lost
        ``COMMIT``, whose :class:`JournalFailure` says the outcome is unknown. On
        cancellation the outcome is unknown: the batch may have been committed."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if not batch:
            await trio.lowlevel.checkpoint()
            return []
        try:
            check_batch(batch)
        except (ValueError, SequenceConflict):
            await trio.lowlevel.checkpoint()
            raise
        what, run = self._prepare_write(batch)
        result: list[int] = await self._wait(self._submit(what, run, draws_offsets=True))
        return result

    def replay(
        self, persistence_id: str, from_seq: int = 1, to_seq: int | None = None
    ) -> AsyncIterator[PersistentRecord]:
        """Stored events in ``seq`` order, read ``chunk_size`` at a time (keyset
        pagination on ``seq``; no connection is held between chunks, so stopping early
        needs no clean-up). Raises :class:`JournalFailure` if a chunk cannot be read."""
        upper = min(to_seq, _MAX_BIGINT) if to_seq is not None else _MAX_BIGINT
        limit = self._chunk_size
        statement = self._sql.replay

        def query(conn: psycopg.Connection[Any], after: int) -> list[Any]:
            return conn.execute(statement, (persistence_id, after, upper, limit)).fetchall()

        return Pages(
            page_reader(self._read, f"replay of {persistence_id!r}", query),
            max(from_seq, 1) - 1,
            2,
            limit,
            _record_from_row,
        )

    def replay_chunks(
        self, persistence_id: str, from_seq: int = 1
    ) -> AsyncIterator[list[tuple[int, str, str, bytes]]]:
        """The fast path of recovery: pages of ``(seq, serializer, manifest, payload)``
        rows in ``seq`` order, ``chunk_size`` rows per page, without building records."""
        limit = self._chunk_size
        statement = self._sql.replay_rows

        def query(conn: psycopg.Connection[Any], after: int) -> list[Any]:
            return conn.execute(statement, (persistence_id, after, limit)).fetchall()

        pager = page_reader(self._read, f"replay of {persistence_id!r}", query)
        return PageChunks(pager, max(from_seq, 1) - 1, 0, limit)

    async def highest_seq(self, persistence_id: str) -> int:
        """The highest seq ever stored (0 if none). Goes through the writer queue, so it
        answers after every write queued before it has finished."""
        statement = self._sql.highest

        def run(conn: psycopg.Connection[Any]) -> int:
            found = conn.execute(statement, (persistence_id,)).fetchone()
            return int(found[0]) if found else 0

        await trio.lowlevel.checkpoint_if_cancelled()
        result: int = await self._wait(self._submit(f"highest_seq of {persistence_id!r}", run))
        return result

    async def delete_to(self, persistence_id: str, to_seq: int) -> None:
        """Delete events with ``seq <= to_seq`` (and their tag rows) in the writer queue;
        the highest seq is kept in ``journal_metadata``. On cancellation the outcome is
        unknown."""
        statements = self._sql
        bound = min(to_seq, _MAX_BIGINT)

        def run(conn: psycopg.Connection[Any]) -> None:
            conn.execute(statements.delete_tags, (persistence_id, bound))
            conn.execute(statements.delete_events, (persistence_id, bound))

        await trio.lowlevel.checkpoint_if_cancelled()
        await self._wait(self._submit(f"delete of {persistence_id!r} to seq {to_seq}", run))

    def events_by_tag(self, tag: str, from_offset: int = 0) -> AsyncIterator[PersistentRecord]:
        """Events tagged ``tag`` with ``offset > from_offset`` in offset (= commit)
        order, read ``chunk_size`` at a time (keyset pagination on the offset)."""
        limit = self._chunk_size
        statement = self._sql.by_tag
        start = min(from_offset, _MAX_BIGINT)

        def query(conn: psycopg.Connection[Any], after: int) -> list[Any]:
            return conn.execute(statement, (tag, after, limit)).fetchall()

        return Pages(
            page_reader(self._read, f"events_by_tag {tag!r}", query),
            start,
            0,
            limit,
            _record_from_row,
        )

    async def persistence_ids(self) -> list[str]:
        """Every id with an event ever stored (deleted ones included), sorted by code
        point."""
        statement = self._sql.persistence_ids

        def query(conn: psycopg.Connection[Any]) -> list[str]:
            return [row[0] for row in conn.execute(statement).fetchall()]

        return await self._read("persistence_ids", query)

    async def close(self) -> None:
        """Stop accepting operations (they raise :class:`JournalFailure`) and wait until
        the writer has committed or failed everything already queued. The connections are
        closed when :func:`open_postgres_journal` exits."""
        await self._close_writer()


class PostgresSnapshotStore(SnapshotStore):
    """The :class:`SnapshotStore` in the schema of a :class:`PostgresJournal` (its
    :attr:`~PostgresJournal.snapshots`); saves and deletes go through the journal's writer
    queue (durable when they return; on cancellation the outcome is unknown), loads run on
    the read connections. Errors are :class:`JournalFailure` naming the server."""

    def __init__(self, journal: PostgresJournal) -> None:
        self._journal = journal

    async def save(self, snapshot: SnapshotRecord) -> None:
        """Store ``snapshot`` durably, replacing one with the same id and seq."""
        row = (
            snapshot.persistence_id,
            snapshot.seq,
            snapshot.serializer,
            snapshot.manifest,
            snapshot.payload,
            snapshot.timestamp,
        )
        statement = self._journal._sql.save_snapshot

        def run(conn: psycopg.Connection[Any]) -> None:
            conn.execute(statement, row)

        what = f"snapshot save of {snapshot.persistence_id!r} at seq {snapshot.seq}"
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._journal._wait(self._journal._submit(what, run))

    async def load(self, persistence_id: str, max_seq: int | None = None) -> SnapshotRecord | None:
        """The newest snapshot with ``seq <= max_seq`` (``None``: any), or ``None``."""
        upper = min(max_seq, _MAX_BIGINT) if max_seq is not None else _MAX_BIGINT
        statement = self._journal._sql.load_snapshot

        def query(conn: psycopg.Connection[Any]) -> Any:
            return conn.execute(statement, (persistence_id, upper)).fetchone()

        row = await self._journal._read(f"snapshot load of {persistence_id!r}", query)
        if row is None:
            return None
        pid, seq, serializer, manifest, payload, timestamp = row
        return SnapshotRecord(pid, seq, serializer, manifest, bytes(payload), timestamp)

    async def delete(self, persistence_id: str, max_seq: int) -> None:
        """Delete the snapshots with ``seq <= max_seq`` (durable when it returns)."""
        statement = self._journal._sql.delete_snapshots
        bound = min(max_seq, _MAX_BIGINT)

        def run(conn: psycopg.Connection[Any]) -> None:
            conn.execute(statement, (persistence_id, bound))

        what = f"snapshot delete of {persistence_id!r} to seq {max_seq}"
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._journal._wait(self._journal._submit(what, run))


def _connect(dsn: str, connect_timeout: float, application_name: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        dsn,
        autocommit=True,
        connect_timeout=max(2, math.ceil(connect_timeout)),
        application_name=application_name,
    )


def _open_writer(
    dsn: str, schema: str | None, connect_timeout: float, application_name: str
) -> tuple[psycopg.Connection[Any], str]:
    """In a thread: connect the writer, create the schema and tables if missing (under
    the offset lock, so that processes opening at once do not collide) and check the
    schema version. Returns the connection and the schema name."""
    conn = _connect(dsn, connect_timeout, application_name)
    try:
        if schema is None:
            found = conn.execute("SELECT current_schema()").fetchone()
            if found is None or found[0] is None:
                raise JournalFailure(
                    "no current schema (empty search_path): pass schema= to open_postgres_journal"
                )
            schema = str(found[0])
            statements = _Statements(schema)
            create_schema = False
        else:
            statements = _Statements(schema)
            create_schema = True
        conn.execute("BEGIN")
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (offset_lock_key(schema),))
        if create_schema:
            conn.execute(statements.create_schema)
        for statement in statements.create_tables:
            conn.execute(statement)
        versions = [row[0] for row in conn.execute(statements.schema_version).fetchall()]
        if not versions:
            conn.execute(statements.insert_version, (SCHEMA_VERSION,))
        elif versions != [SCHEMA_VERSION]:
            raise JournalFailure(
                f"unsupported schema version {versions} in schema {schema!r} "
                f"(this code reads {SCHEMA_VERSION})"
            )
        conn.execute("COMMIT")
    except BaseException:
        _close_quietly(conn)
        raise
    return conn, schema


@asynccontextmanager
async def open_postgres_journal(
    dsn: str,
    *,
    schema: str | None = None,
    chunk_size: int = 1000,
    max_readers: int = 4,
    connect_timeout: float = 10.0,
    application_name: str = "trio-actors journal",
) -> AsyncIterator[PostgresJournal]:
    """Connect to the PostgreSQL database at ``dsn`` (a libpq connection string or URI),
    create the journal's tables if missing, and yield the journal; its snapshot store is
    ``journal.snapshots``.

    ``schema`` is the schema holding the tables (created if missing); ``None`` uses the
    connection's current schema (the first of its ``search_path``, usually ``public``).
    ``chunk_size`` rows are read per query by replays and tag queries; ``max_readers``
    bounds the concurrent read threads and connections; ``connect_timeout`` (seconds,
    at least 2) bounds each connection attempt; ``application_name`` is shown in
    ``pg_stat_activity``.

    Raises :class:`JournalFailure` naming the server (never the password) if it cannot be
    reached, refuses the login, or holds an unsupported schema version. On exit: normal
    exit commits everything already queued before returning; exit by an exception or
    cancellation fails what is still queued with :class:`JournalFailure` (a group already
    in its transaction still commits). The connections are closed in both cases.
    """
    try:
        conninfo_to_dict(dsn)
    except psycopg.Error:
        # The parser's message may quote the DSN, password included: not shown.
        raise JournalFailure(
            "cannot open the PostgreSQL journal: the DSN cannot be parsed (not shown, it may "
            "hold a password)"
        ) from None
    where = describe_dsn(dsn)
    try:
        conn, resolved_schema = await trio.to_thread.run_sync(
            _open_writer, dsn, schema, connect_timeout, application_name
        )
    except JournalFailure as failure:
        raise JournalFailure(f"cannot open the PostgreSQL journal on {where}: {failure}") from None
    except psycopg.Error as error:
        raise JournalFailure(f"cannot open the PostgreSQL journal on {where}: {error}") from error
    send, receive = trio.open_memory_channel[_Op](math.inf)
    journal = PostgresJournal(
        dsn,
        resolved_schema,
        send,
        conn,
        chunk_size,
        max_readers,
        connect_timeout,
        application_name,
    )
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(journal._run_writer, receive)
            try:
                yield journal
            finally:
                # Synchronous: the writer drains the queue and ends (or is cancelled with
                # the nursery, failing what is left).
                journal._stop_accepting()
    finally:
        # Shielded so that a cancelled exit still closes the connections; bounded so that
        # it never hangs an exit (an abandoned close still finishes in its thread).
        with trio.move_on_after(30) as scope:
            scope.shield = True
            await trio.to_thread.run_sync(journal._close_connections, abandon_on_cancel=True)


for _cls in (PostgresJournal, PostgresSnapshotStore):
    _cls.__module__ = "actors.persistence"
open_postgres_journal.__module__ = "actors.persistence"
