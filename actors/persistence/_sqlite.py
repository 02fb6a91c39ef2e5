"""The SQLite journal and snapshot store: the embedded default backend.

One database file holds both the events and the snapshots. :func:`open_sqlite_journal`
opens it and yields a :class:`SqliteJournal` (the :class:`Journal`) whose
:attr:`SqliteJournal.snapshots` is the :class:`SnapshotStore` on the same database. One
object per database, because both share the single writer task below.

Writes
    Every write (``write``, ``delete_to``, snapshot ``save``/``delete``, and the read done
    by ``highest_seq``) is queued on a memory channel to ONE writer task per database.
    Whenever the previous commit has finished, the writer takes everything queued (natural
    group commit: no timer ever waits for more work) and runs one transaction for the whole
    group in ``trio.to_thread.run_sync``. The operations first run one after the other
    without savepoints; if one fails (a sequence conflict, say), the transaction is rolled
    back and the group runs again with one ``SAVEPOINT`` per operation, so that the
    failing one is rolled back alone and fails alone, while the others of the group
    commit. Each caller is woken only after the
    ``COMMIT`` (``synchronous=FULL`` in WAL mode: the commit is durable).
    :attr:`SqliteJournal.transactions` counts the transactions (for tests and monitoring).

Offsets
    An event's offset is the ``INTEGER PRIMARY KEY AUTOINCREMENT`` of its row. Only the
    writer task inserts rows and its transactions run one after the other, so offsets are
    handed out in commit order: a reader of ``events_by_tag`` that resumes after the last
    offset it saw never skips an event. (A second process writing to the same file is
    serialised by SQLite's write lock, which keeps this true.)

Reads
    Replays and queries run in ``trio.to_thread.run_sync`` on a small pool of read-only
    connections (WAL lets them read while the writer commits). Replays read in chunks of
    ``chunk_size`` rows with keyset pagination, so memory does not grow with the number of
    events, and no connection is held while the caller consumes a chunk.

Cancellation
    A write runs its transaction with ``abandon_on_cancel=False``: a commit is never
    abandoned midway. A caller cancelled while waiting for its write may therefore find
    that the write was committed anyway: the outcome of a cancelled ``write`` is unknown
    (recover by reading ``highest_seq``). Leaving :func:`open_sqlite_journal` drains the
    queue: every queued write is committed (normal exit) or failed with
    :class:`JournalFailure` (exit by cancellation or error); none is silently dropped.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from ._errors import JournalFailure, SequenceConflict
from ._group_commit import GroupCommitWriter, WriterOp, check_batch
from ._journal import Journal, SnapshotStore
from ._paging import PageChunks, Pages, page_reader
from ._records import PersistentRecord, SnapshotRecord

SCHEMA_VERSION = 1

_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    event_offset INTEGER PRIMARY KEY AUTOINCREMENT,
    persistence_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    serializer TEXT NOT NULL,
    manifest TEXT NOT NULL,
    payload BLOB NOT NULL,
    tags TEXT NOT NULL,
    writer_id TEXT NOT NULL,
    timestamp REAL NOT NULL,
    UNIQUE (persistence_id, seq)
);
CREATE TABLE IF NOT EXISTS event_tags (
    tag TEXT NOT NULL,
    event_offset INTEGER NOT NULL,
    PRIMARY KEY (tag, event_offset)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS event_tags_by_offset ON event_tags (event_offset);
CREATE TABLE IF NOT EXISTS journal_metadata (
    persistence_id TEXT PRIMARY KEY,
    highest_seq INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS snapshots (
    persistence_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    serializer TEXT NOT NULL,
    manifest TEXT NOT NULL,
    payload BLOB NOT NULL,
    timestamp REAL NOT NULL,
    PRIMARY KEY (persistence_id, seq)
) WITHOUT ROWID;
"""

_EVENT_COLUMNS = (
    "event_offset, persistence_id, seq, serializer, manifest, payload, tags, writer_id, timestamp"
)


_Op = WriterOp[sqlite3.Connection]


_NO_TAGS: frozenset[str] = frozenset()


def _record_from_row(row: sqlite3.Row | tuple[Any, ...]) -> PersistentRecord:
    offset, pid, seq, serializer, manifest, payload, tags, writer_id, timestamp = row
    return PersistentRecord(
        persistence_id=pid,
        seq=seq,
        serializer=serializer,
        manifest=manifest,
        payload=bytes(payload),
        tags=_NO_TAGS if tags == "[]" else frozenset(json.loads(tags)),
        writer_id=writer_id,
        timestamp=timestamp,
        offset=offset,
    )


class SqliteJournal(GroupCommitWriter[sqlite3.Connection], Journal):
    """The :class:`Journal` on one SQLite database; made by :func:`open_sqlite_journal`,
    which owns its writer task and connections (do not construct it directly).

    Errors: any ``sqlite3`` error becomes :class:`JournalFailure` naming the operation and
    the database path, with the ``sqlite3`` error as ``__cause__``. A batch whose seqs do
    not continue from the highest stored one (a seq already stored or deleted, a gap, seqs
    within the batch not consecutive or below 1) raises :class:`SequenceConflict` and
    stores nothing; a batch with records of two persistence ids raises
    :class:`ValueError` (nothing queued). Every operation is a trio checkpoint.

    The writer task, its queue and the counters :attr:`transactions` and
    :attr:`ops_acknowledged` come from :class:`GroupCommitWriter`.
    """

    def __init__(
        self,
        path: str,
        send: trio.MemorySendChannel[_Op],
        conn: sqlite3.Connection,
        chunk_size: int,
        busy_timeout: float,
        max_readers: int,
    ) -> None:
        self.path = path
        self._journal_name = f"SQLite journal {path}"
        self._init_writer(send)
        self._conn = conn
        self._chunk_size = chunk_size
        self._busy_timeout = busy_timeout
        self._readers: list[sqlite3.Connection] = []
        self._reader_limit = trio.CapacityLimiter(max_readers)
        self._shut = False
        self.snapshots = SqliteSnapshotStore(self)

    # -- the writer side ----------------------------------------------------------------

    def _commit_group(self, group: list[_Op]) -> None:
        """In the writer's thread: one transaction for the group, in which an op that
        fails is rolled back alone (see :meth:`_commit_optimistically`). Sets ``result``
        or ``error`` on every op; never raises."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            self._abort_group(conn, group, "begin transaction", error)
            return
        if len(group) == 1:
            # One operation: the transaction is its savepoint (fewer statements per commit).
            op = group[0]
            try:
                op.result = op.run(conn)
            except Exception as error:
                op.result = None
                op.error = self._op_error(op, error)
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as rollback_error:
                    self._abort_group(conn, group, "rollback", rollback_error)
                return
        if len(group) > 1 and not self._commit_optimistically(conn, group):
            return  # the group failed as a whole (its ops have their errors)
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as error:
            # SQLite rolls back on a failed COMMIT in most cases, but not all: the outcome
            # is unknown, which the contract reports as a failure.
            self._abort_group(conn, group, "commit", error, unknown=True)

    def _commit_optimistically(self, conn: sqlite3.Connection, group: list[_Op]) -> bool:
        """Run the ops of ``group`` in the open transaction, first all together (no
        savepoints: the common case, where none fails); if one fails, roll back and run
        them again one savepoint each, so that only the failing ones fail. ``False`` if
        the transaction itself broke (every op then has its error)."""
        try:
            for op in group:
                op.result = op.run(conn)
            return True
        except Exception:
            try:
                conn.execute("ROLLBACK")
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as error:
                self._abort_group(conn, group, "retry of the group", error)
                return False
        for op in group:
            op.result = None
            try:
                conn.execute("SAVEPOINT op")
            except sqlite3.Error as error:
                self._abort_group(conn, group, "savepoint", error)
                return False
            try:
                op.result = op.run(conn)
                conn.execute("RELEASE op")
            except Exception as error:
                op.result = None
                op.error = self._op_error(op, error)
                try:
                    conn.execute("ROLLBACK TO op")
                    conn.execute("RELEASE op")
                except sqlite3.Error as rollback_error:
                    self._abort_group(conn, group, "rollback to savepoint", rollback_error)
                    return False
        return True

    def _op_error(self, op: _Op, error: Exception) -> Exception:
        if isinstance(error, JournalFailure):
            return error
        if isinstance(error, sqlite3.IntegrityError) and "UNIQUE" in str(error):
            conflict = SequenceConflict(
                f"{op.what}: sequence number already stored in SQLite journal "
                f"{self.path}; nothing of the batch was stored"
            )
            conflict.__cause__ = error
            return conflict
        return self._failure(op.what, error)

    def _abort_group(
        self,
        conn: sqlite3.Connection,
        group: list[_Op],
        what: str,
        error: sqlite3.Error,
        *,
        unknown: bool = False,
    ) -> None:
        try:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        for op in group:
            if op.error is None:
                op.result = None
                suffix = " (outcome unknown)" if unknown else ""
                op.error = self._failure(f"{op.what}: {what}{suffix}", error)

    def _failure(self, what: str, error: BaseException) -> JournalFailure:
        failure = JournalFailure(f"{what} failed on SQLite journal {self.path}: {error}")
        failure.__cause__ = error
        return failure

    # -- the read side ------------------------------------------------------------------

    async def _read(self, what: str, query: Callable[[sqlite3.Connection], _T]) -> _T:
        async with self._reader_limit:
            if self._shut:
                raise JournalFailure(f"{what}: the SQLite journal {self.path} is closed")
            return await trio.to_thread.run_sync(self._read_in_thread, what, query)

    def _read_in_thread(self, what: str, query: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            conn = self._readers.pop() if self._readers else self._connect_reader()
        except sqlite3.Error as error:
            raise self._failure(f"{what} (open read connection)", error) from error
        try:
            result = query(conn)
        except sqlite3.Error as error:
            conn.close()
            raise self._failure(what, error) from error
        except BaseException:
            conn.close()
            raise
        if self._shut:
            conn.close()
        else:
            self._readers.append(conn)
        return result

    def _connect_reader(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute("PRAGMA query_only = ON")
        return conn

    def _close_readers(self) -> None:
        while self._readers:
            self._readers.pop().close()

    # -- the Journal contract -----------------------------------------------------------

    async def write(self, batch: Sequence[PersistentRecord]) -> list[int]:
        """Store ``batch`` atomically and return its offsets once committed.

        On failure nothing of the batch is stored (:class:`SequenceConflict` for a seq
        already stored or a gap, :class:`JournalFailure` otherwise). On cancellation the
        outcome is unknown: the batch may have been committed."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if not batch:
            await trio.lowlevel.checkpoint()
            return []
        try:
            check_batch(batch)
        except (ValueError, SequenceConflict):
            await trio.lowlevel.checkpoint()
            raise
        pid = batch[0].persistence_id
        first = batch[0].seq
        rows = [
            (
                r.persistence_id,
                r.seq,
                r.serializer,
                r.manifest,
                r.payload,
                json.dumps(sorted(r.tags)) if r.tags else "[]",
                r.writer_id,
                r.timestamp,
            )
            for r in batch
        ]
        tags = [sorted(r.tags) for r in batch]
        last = batch[-1].seq
        what = f"write of {pid!r} seq {first}..{last}"
        path = self.path

        def run(conn: sqlite3.Connection) -> list[int]:
            found = conn.execute(
                "SELECT highest_seq FROM journal_metadata WHERE persistence_id = ?", (pid,)
            ).fetchone()
            highest = found[0] if found else 0
            if first <= highest:
                raise SequenceConflict(
                    f"{what}: {pid!r} already has events up to seq {highest} in SQLite "
                    f"journal {path} (another writer?); nothing was stored"
                )
            if first != highest + 1:
                raise SequenceConflict(
                    f"{what}: would leave a gap after seq {highest} of {pid!r} in SQLite "
                    f"journal {path}; nothing was stored"
                )
            offsets: list[int] = []
            for row, row_tags in zip(rows, tags, strict=True):
                cursor = conn.execute(
                    "INSERT INTO events (persistence_id, seq, serializer, manifest, payload,"
                    " tags, writer_id, timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
                offset = cursor.lastrowid
                assert offset is not None
                offsets.append(offset)
                if row_tags:
                    conn.executemany(
                        "INSERT INTO event_tags (tag, event_offset) VALUES (?, ?)",
                        [(tag, offset) for tag in row_tags],
                    )
            conn.execute(
                "INSERT INTO journal_metadata (persistence_id, highest_seq) VALUES (?, ?) "
                "ON CONFLICT (persistence_id) DO UPDATE SET highest_seq = excluded.highest_seq",
                (pid, last),
            )
            return offsets

        result: list[int] = await self._wait(self._submit(what, run))
        return result

    def replay(
        self, persistence_id: str, from_seq: int = 1, to_seq: int | None = None
    ) -> AsyncIterator[PersistentRecord]:
        """Stored events in ``seq`` order, read ``chunk_size`` at a time (keyset
        pagination on ``seq``; no connection is held between chunks, so stopping early
        needs no clean-up). Raises :class:`JournalFailure` if a chunk cannot be read."""
        upper = to_seq if to_seq is not None else 2**63 - 1
        limit = self._chunk_size

        def query(conn: sqlite3.Connection, after: int) -> list[Any]:
            return conn.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE persistence_id = ? "
                "AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?",
                (persistence_id, after, upper, limit),
            ).fetchall()

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

        def query(conn: sqlite3.Connection, after: int) -> list[Any]:
            return conn.execute(
                "SELECT seq, serializer, manifest, payload FROM events "
                "WHERE persistence_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (persistence_id, after, limit),
            ).fetchall()

        pager = page_reader(self._read, f"replay of {persistence_id!r}", query)
        return PageChunks(pager, max(from_seq, 1) - 1, 0, limit)

    async def highest_seq(self, persistence_id: str) -> int:
        """The highest seq ever stored (0 if none). Goes through the writer queue, so it
        answers after every write queued before it has finished."""

        def run(conn: sqlite3.Connection) -> int:
            found = conn.execute(
                "SELECT highest_seq FROM journal_metadata WHERE persistence_id = ?",
                (persistence_id,),
            ).fetchone()
            return int(found[0]) if found else 0

        await trio.lowlevel.checkpoint_if_cancelled()
        result: int = await self._wait(self._submit(f"highest_seq of {persistence_id!r}", run))
        return result

    async def delete_to(self, persistence_id: str, to_seq: int) -> None:
        """Delete events with ``seq <= to_seq`` (and their tag rows) in the writer queue;
        the highest seq is kept in ``journal_metadata``. On cancellation the outcome is
        unknown."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM event_tags WHERE event_offset IN (SELECT event_offset FROM "
                "events WHERE persistence_id = ? AND seq <= ?)",
                (persistence_id, to_seq),
            )
            conn.execute(
                "DELETE FROM events WHERE persistence_id = ? AND seq <= ?",
                (persistence_id, to_seq),
            )

        await trio.lowlevel.checkpoint_if_cancelled()
        await self._wait(self._submit(f"delete of {persistence_id!r} to seq {to_seq}", run))

    def events_by_tag(self, tag: str, from_offset: int = 0) -> AsyncIterator[PersistentRecord]:
        """Events tagged ``tag`` with ``offset > from_offset`` in offset (= commit)
        order, read ``chunk_size`` at a time (keyset pagination on the offset)."""
        limit = self._chunk_size
        columns = ", ".join(f"e.{c.strip()}" for c in _EVENT_COLUMNS.split(","))

        def query(conn: sqlite3.Connection, after: int) -> list[Any]:
            return conn.execute(
                f"SELECT {columns} FROM event_tags t JOIN events e "
                "ON e.event_offset = t.event_offset WHERE t.tag = ? "
                "AND t.event_offset > ? ORDER BY t.event_offset LIMIT ?",
                (tag, after, limit),
            ).fetchall()

        return Pages(
            page_reader(self._read, f"events_by_tag {tag!r}", query),
            from_offset,
            0,
            limit,
            _record_from_row,
        )

    async def persistence_ids(self) -> list[str]:
        """Every id with an event ever stored (deleted ones included), sorted."""

        def query(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT persistence_id FROM journal_metadata ORDER BY persistence_id"
            ).fetchall()
            return [row[0] for row in rows]

        return await self._read("persistence_ids", query)

    async def close(self) -> None:
        """Stop accepting operations (they raise :class:`JournalFailure`) and wait until
        the writer has committed or failed everything already queued. The connections are
        closed when :func:`open_sqlite_journal` exits."""
        await self._close_writer()


class SqliteSnapshotStore(SnapshotStore):
    """The :class:`SnapshotStore` on the database of a :class:`SqliteJournal` (its
    :attr:`~SqliteJournal.snapshots`); saves and deletes go through the journal's writer
    queue (durable when they return; on cancellation the outcome is unknown), loads run on
    the read connections. Errors are :class:`JournalFailure` naming the path."""

    def __init__(self, journal: SqliteJournal) -> None:
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

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT OR REPLACE INTO snapshots (persistence_id, seq, serializer, "
                "manifest, payload, timestamp) VALUES (?, ?, ?, ?, ?, ?)",
                row,
            )

        what = f"snapshot save of {snapshot.persistence_id!r} at seq {snapshot.seq}"
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._journal._wait(self._journal._submit(what, run))

    async def load(self, persistence_id: str, max_seq: int | None = None) -> SnapshotRecord | None:
        """The newest snapshot with ``seq <= max_seq`` (``None``: any), or ``None``."""
        upper = max_seq if max_seq is not None else 2**63 - 1

        def query(conn: sqlite3.Connection) -> Any:
            return conn.execute(
                "SELECT persistence_id, seq, serializer, manifest, payload, timestamp "
                "FROM snapshots WHERE persistence_id = ? AND seq <= ? "
                "ORDER BY seq DESC LIMIT 1",
                (persistence_id, upper),
            ).fetchone()

        row = await self._journal._read(f"snapshot load of {persistence_id!r}", query)
        if row is None:
            return None
        pid, seq, serializer, manifest, payload, timestamp = row
        return SnapshotRecord(pid, seq, serializer, manifest, bytes(payload), timestamp)

    async def delete(self, persistence_id: str, max_seq: int) -> None:
        """Delete the snapshots with ``seq <= max_seq`` (durable when it returns)."""

        def run(conn: sqlite3.Connection) -> None:
            conn.execute(
                "DELETE FROM snapshots WHERE persistence_id = ? AND seq <= ?",
                (persistence_id, max_seq),
            )

        what = f"snapshot delete of {persistence_id!r} to seq {max_seq}"
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._journal._wait(self._journal._submit(what, run))


def _open_writer(
    path: str, busy_timeout: float, integrity_check: bool, create: bool
) -> sqlite3.Connection:
    """In a thread: open the writer connection, set WAL and ``synchronous=FULL``, create
    the schema if missing (idempotent; unless ``create`` is false) and check its version."""
    if not create:
        if not os.path.exists(path):
            raise JournalFailure(f"no SQLite journal at {path} (create=False)")
        if os.path.getsize(path) == 0:
            raise JournalFailure(
                f"the SQLite journal {path} is an empty file (truncated to 0 bytes?); "
                "with create=False it is not taken for a new journal"
            )
    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(f"cannot switch to WAL mode (mode is {mode})")
        conn.execute("PRAGMA synchronous = FULL")
        if integrity_check:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {verdict}")
        conn.execute("BEGIN IMMEDIATE")
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        found = conn.execute("SELECT version FROM schema_version").fetchall()
        if not found and not create:
            raise JournalFailure(f"{path} holds no journal (create=False)")
        if not found:
            conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
        elif found != [(SCHEMA_VERSION,)]:
            raise sqlite3.DatabaseError(
                f"unsupported schema version {found} (this code reads {SCHEMA_VERSION})"
            )
        conn.execute("COMMIT")
    except BaseException:
        conn.close()
        raise
    return conn


@asynccontextmanager
async def open_sqlite_journal(
    path: str | os.PathLike[str],
    *,
    chunk_size: int = 1000,
    busy_timeout: float = 10.0,
    max_readers: int = 4,
    integrity_check: bool = False,
    create: bool = True,
) -> AsyncIterator[SqliteJournal]:
    """Open (creating if needed) the SQLite journal at ``path`` and yield it; its
    snapshot store is ``journal.snapshots``.

    ``chunk_size`` rows are read per query by replays and tag queries; ``busy_timeout``
    (seconds) is how long a connection waits for a lock held by another process;
    ``max_readers`` bounds the concurrent read threads and connections;
    ``integrity_check`` runs ``PRAGMA quick_check`` on open (reads the whole file).
    ``create=False`` refuses to start a new journal: a missing file, an empty one, or a
    database without the journal's tables raises :class:`JournalFailure` (no table is
    created). Use it once the journal exists: SQLite takes a file truncated to
    0 bytes for a new database, so only ``create=False`` tells that loss from a first run.

    Raises :class:`JournalFailure` naming ``path`` if the file cannot be opened, is not a
    SQLite database, or has an unsupported schema. On exit: normal exit commits everything
    already queued before returning; exit by an exception or cancellation fails what is
    still queued with :class:`JournalFailure` (a group already in its transaction still
    commits). The connections are closed in both cases.
    """
    path = os.fspath(path)
    try:
        conn = await trio.to_thread.run_sync(
            _open_writer, path, busy_timeout, integrity_check, create
        )
    except sqlite3.Error as error:
        raise JournalFailure(f"cannot open SQLite journal {path}: {error}") from error
    send, receive = trio.open_memory_channel[_Op](math.inf)
    journal = SqliteJournal(path, send, conn, chunk_size, busy_timeout, max_readers)
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
            await trio.to_thread.run_sync(_close_all, journal, conn, abandon_on_cancel=True)


def _close_all(journal: SqliteJournal, conn: sqlite3.Connection) -> None:
    journal._shut = True
    journal._close_readers()
    conn.close()


for _cls in (SqliteJournal, SqliteSnapshotStore):
    _cls.__module__ = "actors.persistence"
open_sqlite_journal.__module__ = "actors.persistence"
