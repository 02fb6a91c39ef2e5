"""The SQLite journal and snapshot store: the embedded default backend.

One database file holds both the events and the snapshots. :func:`open_sqlite_journal`
opens it and yields a :class:`SqliteJournal` (the :class:`Journal`) whose
:attr:`SqliteJournal.snapshots` is the :class:`SnapshotStore` on the same database. One
object per database, because both share the single writer task.

The journal itself (group commit, one savepoint per operation only when one fails,
paged reads, error mapping, cancellation) is :class:`~._sql_journal.SqlJournal`; this
module is its SQLite dialect, the schema (defined here only: the ``check`` command of
``python -m actors.persistence`` checks it with :mod:`._sqlite_check`) and the opening.

Durability
    The writer connection runs in WAL mode with ``synchronous=FULL``: a ``COMMIT`` that
    returned is durable, and a ``kill -9`` at any moment loses no acknowledged event
    (the WAL's checksums make recovery ignore a torn tail). Each transaction of the
    writer is ``BEGIN IMMEDIATE``: it takes SQLite's write lock first, so a second
    process writing to the file waits for it (up to ``busy_timeout``) instead of
    failing midway.

Offsets
    An event's offset is the ``INTEGER PRIMARY KEY AUTOINCREMENT`` of its row. Only the
    writer task inserts rows and its transactions run one after the other, so offsets are
    handed out in commit order: a reader of ``events_by_tag`` that resumes after the last
    offset it saw never skips an event. (A second process writing to the same file is
    serialised by SQLite's write lock, which keeps this true.)

Fencing
    Each group reads the highest seq of the ids it writes under the write lock (the
    highest stored event's, or the one a deletion kept in ``journal_metadata`` if
    larger) and refuses a write that does not continue it, so a second writer of an id
    fails with :class:`SequenceConflict`; ``UNIQUE (persistence_id, seq)`` stands
    behind that check.

Reads
    Read connections are ``query_only``; WAL lets them read while the writer commits.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from typing import Any

import trio

from ._errors import JournalFailure
from ._integrity import Integrity
from ._sql_dialect import TABLES, SqlDialect, Statements, highest_of
from ._sql_journal import SqlJournal, SqlSnapshotStore, install_schema, serving
from ._sqlite_access import probe_writable, raise_if_not_writable

SCHEMA_VERSION = 2

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS events (
    event_offset INTEGER PRIMARY KEY AUTOINCREMENT,
    persistence_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    serializer TEXT NOT NULL,
    manifest TEXT NOT NULL,
    payload BLOB NOT NULL,
    tags TEXT NOT NULL,
    writer_id TEXT NOT NULL,
    timestamp REAL NOT NULL,
    digest BLOB,
    UNIQUE (persistence_id, seq)
)""",
    """CREATE TABLE IF NOT EXISTS event_tags (
    tag TEXT NOT NULL,
    event_offset INTEGER NOT NULL,
    PRIMARY KEY (tag, event_offset)
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS event_tags_by_offset ON event_tags (event_offset)",
    """CREATE TABLE IF NOT EXISTS journal_metadata (
    persistence_id TEXT PRIMARY KEY,
    highest_seq INTEGER NOT NULL
) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS snapshots (
    persistence_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    serializer TEXT NOT NULL,
    manifest TEXT NOT NULL,
    payload BLOB NOT NULL,
    timestamp REAL NOT NULL,
    digest BLOB,
    PRIMARY KEY (persistence_id, seq)
) WITHOUT ROWID""",
)
"""The SQLite journal's schema (version :data:`SCHEMA_VERSION`): the tables
:data:`~._sql_dialect.TABLES`. ``tags`` holds the sorted tags as a JSON array; the
``event_tags`` rows index them for ``events_by_tag``. ``digest`` (new in version 2,
``NULL`` in the rows of a journal written before) is each record's checksum or signature
(:mod:`._integrity`)."""

_UPGRADES = {
    1: (
        "ALTER TABLE events ADD COLUMN digest BLOB",
        "ALTER TABLE snapshots ADD COLUMN digest BLOB",
    ),
}
"""The statements taking an existing journal from a version to the next (1 to 2: the
``digest`` columns, ``NULL`` in the rows already stored)."""

_NO_TAGS: frozenset[str] = frozenset()
_decoded_tags: dict[str, frozenset[str]] = {}

_HIGHEST_MANY = (
    "SELECT j.value, (SELECT max(seq) FROM events WHERE persistence_id = j.value), "
    "(SELECT highest_seq FROM journal_metadata WHERE persistence_id = j.value) "
    "FROM json_each(?) AS j"
)
"""The two highest seqs of each id of a JSON array (see ``highest_of``); each
subquery is one index lookup."""

_LAST_INSERTED = "SELECT last_insert_rowid()"

_LAST_OFFSET = (
    "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0), "
    "coalesce((SELECT max(event_offset) FROM events), 0))"
)
"""The largest offset ever handed out: AUTOINCREMENT's counter, or the largest offset
stored if that is larger (a row inserted with an explicit offset by another tool)."""


class SqliteDialect(SqlDialect[sqlite3.Connection]):
    """SQLite for :class:`~._sql_journal.SqlJournal`: the database file at ``path``,
    whose connections wait up to ``busy_timeout`` seconds for a lock held by another
    process."""

    error = sqlite3.Error

    blob = bytearray
    """Payloads and digests are bound as ``bytearray``: Python's ``sqlite3`` binds a
    ``bytearray`` as a BLOB directly, but looks a ``bytes`` up as a type that may need
    adapting (an ``__adapt__`` and a ``__conform__`` that are not there, each a raised
    and cleared ``AttributeError``), which cost more than the rest of the row's insert
    (measured: 2.5-2.9 against 0.8-1.5 µs per row of four columns). Read back, a BLOB
    is ``bytes`` either way."""

    def __init__(self, path: str, busy_timeout: float, key: bytes | None = None) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.where = self.journal_name = f"SQLite journal {path}"
        self.integrity = Integrity(key, self.journal_name)
        self.sql = Statements.compiled(self.compile)

    def compile(self, template: str) -> str:
        return template.format(**{table: table for table in TABLES}).replace("%s", "?")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )

    def connect_writer(self) -> sqlite3.Connection:
        """A writer connection: WAL mode and ``synchronous=FULL`` (durable commits)."""
        conn = self._connect()
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise sqlite3.OperationalError(f"cannot switch to WAL mode (mode is {mode})")
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    def connect_reader(self) -> sqlite3.Connection:
        conn = self._connect()
        conn.execute("PRAGMA query_only = ON")
        return conn

    def begin(self, conn: sqlite3.Connection, draws_offsets: bool) -> None:
        conn.execute("BEGIN IMMEDIATE")

    def in_transaction(self, conn: sqlite3.Connection) -> bool:
        return conn.in_transaction

    def is_conflict(self, error: Exception) -> bool:
        return isinstance(error, sqlite3.IntegrityError) and "UNIQUE" in str(error)

    def commit_unknown(self, conn: sqlite3.Connection) -> str:
        # SQLite rolls back on a failed COMMIT in most cases, but not all.
        return "the COMMIT failed and SQLite may not have rolled it back"

    def highest_many(
        self, conn: sqlite3.Connection, persistence_ids: Collection[str]
    ) -> dict[str, int]:
        ids = json.dumps(list(persistence_ids))
        return highest_of(conn.execute(_HIGHEST_MANY, (ids,)).fetchall())

    def offset_mark(self, conn: sqlite3.Connection) -> int:
        mark: int = conn.execute(_LAST_OFFSET).fetchone()[0]
        return mark

    def insert_events(
        self, conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]], mark: int | None = None
    ) -> list[int]:
        # One executemany for every row (one execute for one row, which gives its rowid
        # without a query). The writer holds the write lock (BEGIN IMMEDIATE), so
        # AUTOINCREMENT hands the rows the offsets that follow the largest ever handed
        # out (the mark: read now unless the writer knows it), one after the other;
        # the last one is checked after.
        base = self.offset_mark(conn) if mark is None else mark
        last: int
        if len(rows) == 1:
            last = conn.execute(self.sql.insert_event, rows[0]).lastrowid or 0
        else:
            conn.executemany(self.sql.insert_event, rows)
            last = conn.execute(_LAST_INSERTED).fetchone()[0]
        if last != base + len(rows):
            raise sqlite3.DatabaseError(
                f"the {len(rows)} events inserted after offset {base} did not get the "
                f"offsets that follow it (the last one got {last})"
            )
        return list(range(base + 1, last + 1))

    def executemany(
        self, conn: sqlite3.Connection, statement: Any, rows: Sequence[tuple[Any, ...]]
    ) -> None:
        conn.executemany(statement, rows)

    def encode_tags(self, tags: frozenset[str]) -> str:
        return json.dumps(sorted(tags)) if tags else "[]"

    def decode_tags(self, value: Any) -> frozenset[str]:
        # A journal holds few distinct sets of tags: each is parsed once (a tag reader,
        # such as a projection, decodes one per row). Bounded: cleared past 1,024.
        if value == "[]":
            return _NO_TAGS
        tags = _decoded_tags.get(value)
        if tags is None:
            tags = frozenset(json.loads(value))
            if len(_decoded_tags) >= 1024:
                _decoded_tags.clear()
            _decoded_tags[value] = tags
        return tags

    def upgrade(self, conn: sqlite3.Connection, version: int) -> None:
        for statement in _UPGRADES[version]:
            conn.execute(statement)


class SqliteJournal(SqlJournal[sqlite3.Connection]):
    """The :class:`Journal` on one SQLite database; made by :func:`open_sqlite_journal`,
    which owns its writer task and connections (do not construct it directly).

    Errors: any ``sqlite3`` error becomes :class:`JournalFailure` naming the operation and
    the database :attr:`path`, with the ``sqlite3`` error as ``__cause__``. Everything
    else (sequence conflicts, bounds, checkpoints, group commit and the counters
    :attr:`transactions` and :attr:`ops_acknowledged`) is
    :class:`~._sql_journal.SqlJournal`'s.
    """

    def __init__(
        self, dialect: SqliteDialect, writer: sqlite3.Connection, chunk_size: int, max_readers: int
    ) -> None:
        super().__init__(dialect, writer, chunk_size, max_readers)
        self.path = dialect.path  #: The database file.
        self.snapshots = SqliteSnapshotStore(self)  #: The snapshot store in the same file.


class SqliteSnapshotStore(SqlSnapshotStore):
    """The :class:`SnapshotStore` in the file of a :class:`SqliteJournal`, its
    :attr:`~SqliteJournal.snapshots` (see :class:`~._sql_journal.SqlSnapshotStore`)."""


def _open_writer(dialect: SqliteDialect, integrity_check: bool, create: bool) -> sqlite3.Connection:
    """In a thread: open the writer connection, check the file's integrity if asked,
    create the schema if missing (idempotent; unless ``create`` is false) and check its
    version. A journal that this process cannot write raises
    :class:`JournalNotWritable` here (SQLite would open it read-only
    and fail only at the first write): a write is tried and rolled back
    (:func:`~._sqlite_access.probe_writable`)."""
    path = dialect.path
    if not create:
        if not os.path.exists(path):
            raise JournalFailure(f"no SQLite journal at {path} (create=False)")
        if os.path.getsize(path) == 0:
            raise JournalFailure(
                f"the SQLite journal {path} is an empty file (truncated to 0 bytes?); "
                "with create=False it is not taken for a new journal"
            )
    try:
        conn = dialect.connect_writer()
    except sqlite3.Error as error:
        raise_if_not_writable(path, error)
        raise
    try:
        try:
            probe_writable(conn)
        except sqlite3.Error as error:
            raise_if_not_writable(path, error)
            raise
        if integrity_check:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
            if verdict != "ok":
                raise sqlite3.DatabaseError(f"integrity check failed: {verdict}")
        install_schema(dialect, conn, SCHEMA, SCHEMA_VERSION, create=create, where=path)
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
    key: bytes | None = None,
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

    Every event and snapshot is stored with a digest, checked by every read before
    anything of the record is decoded (:class:`RecordCorrupt` if it does not match): a
    CRC-32 checksum, or with ``key`` (bytes, at least 16; 32 random ones recommended) an
    HMAC-SHA256 signature; a journal opened with a key refuses every record not signed
    with it, and one opened without a key refuses signed records (it cannot verify
    them). A journal of schema version 1 is upgraded to version 2 on open (its rows keep
    no digest: read without a key, refused with one). See "Integrity: checksums and
    signed journals" in the persistence guide.

    Raises :class:`JournalFailure` naming ``path`` if the file cannot be opened, is not a
    SQLite database, or has an unsupported schema; :class:`JournalNotWritable` (a
    :class:`JournalFailure`) if this process cannot write it; :class:`TypeError` or
    :class:`ValueError` for a ``key`` that is not bytes or too short.

    On exit, normal, by an exception or by a cancellation alike, the journal stops
    accepting operations and commits everything already queued before returning, then
    closes its connections. Its writer is shielded from the cancellation of the scopes
    around the block, so that an actor system opened in the same ``async with``, after
    the journal (``open_system(..., extensions=[Persistence(journal)])``), shuts down in
    order with a working journal, as on a normal exit. The exit is bounded: past 30 s (a
    database that hangs), what is left fails with :class:`JournalFailure` naming that
    deadline. An exception from the block (``Cancelled`` and ``KeyboardInterrupt``
    included) comes out as itself, not in an exception group.
    """
    dialect = SqliteDialect(os.fspath(path), busy_timeout, key)
    try:
        conn = await trio.to_thread.run_sync(_open_writer, dialect, integrity_check, create)
    except sqlite3.Error as error:
        raise JournalFailure(f"cannot open SQLite journal {dialect.path}: {error}") from error
    async with serving(SqliteJournal(dialect, conn, chunk_size, max_readers)) as journal:
        yield journal
