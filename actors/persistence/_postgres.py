"""The PostgreSQL journal and snapshot store.

One schema of one PostgreSQL database holds both the events and the snapshots.
:func:`open_postgres_journal` connects, creates the tables if they are missing, and yields
a :class:`PostgresJournal` (the :class:`Journal`) whose :attr:`PostgresJournal.snapshots`
is the :class:`SnapshotStore` on the same schema. Several processes may open the same
schema: the database fences and orders them (see *Offsets* and *Fencing*).

The journal itself (natural group commit with one transaction per group, one savepoint
per operation only when one fails, paged reads on a pool of read connections, error
mapping, cancellation, draining on exit) is :class:`~._sql_journal.SqlJournal`; this
module is its PostgreSQL dialect, the schema and the opening. psycopg 3 is used through
its synchronous API, in ``trio.to_thread.run_sync`` (its async API needs asyncio and
does not run under trio). Every connection is ``autocommit``: the writer issues its
own ``BEGIN ISOLATION LEVEL READ COMMITTED``, and each read sees what was committed
when it started.

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
    Each group reads the highest seq of the ids it writes under the lock above (the
    highest stored event's, or the one a deletion kept in ``journal_metadata`` if
    larger) and refuses a write that does not continue it, so a second writer of an id
    (in this or another process) fails with :class:`SequenceConflict`; ``UNIQUE
    (persistence_id, seq)`` stands behind that check. It never corrupts the journal.
    A deletion keeps the id's highest seq in ``journal_metadata`` first, so the highest
    seq is never lowered.

Round trips
    A group of writes costs a handful of round trips whatever its size: ``BEGIN`` and
    the lock together, one read of the highest seqs, the event rows (one multi-row
    ``INSERT`` for a few rows, else the offsets drawn in one query and the rows sent by
    ``COPY``), the tag rows if any, and ``COMMIT``.

Failures
    Messages name the server (:attr:`PostgresJournal.where`: host, port and database;
    never the password). A connection that broke while idle is replaced transparently
    before the next transaction or query (nothing had been sent on it). A connection
    lost during a group's transaction fails the whole group (nothing of it was
    committed) and is re-established for the next operation. A connection lost during
    ``COMMIT`` fails the group with a :class:`JournalFailure` saying that the outcome is
    unknown (the commit may or may not have happened; recover by reading
    ``highest_seq``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager, suppress
from typing import Any

import psycopg
import trio
from psycopg import errors as pg_errors
from psycopg import pq, sql
from psycopg.conninfo import conninfo_to_dict

from ._errors import JournalFailure
from ._integrity import Integrity, check_key
from ._sql_dialect import EVENT_COLUMNS, TABLES, SqlDialect, Statements, highest_of
from ._sql_journal import SqlJournal, SqlSnapshotStore, install_schema, serving

SCHEMA_VERSION = 2

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS {schema_version} (
    version INTEGER NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS {events} (
    event_offset BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    persistence_id TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    serializer TEXT NOT NULL,
    manifest TEXT NOT NULL,
    payload BYTEA NOT NULL,
    tags TEXT[] NOT NULL,
    writer_id TEXT NOT NULL,
    timestamp DOUBLE PRECISION NOT NULL,
    digest BYTEA,
    UNIQUE (persistence_id, seq)
)""",
    """CREATE TABLE IF NOT EXISTS {event_tags} (
    tag TEXT COLLATE "C" NOT NULL,
    event_offset BIGINT NOT NULL,
    PRIMARY KEY (tag, event_offset)
)""",
    "CREATE INDEX IF NOT EXISTS event_tags_by_offset ON {event_tags} (event_offset)",
    """CREATE TABLE IF NOT EXISTS {journal_metadata} (
    persistence_id TEXT COLLATE "C" PRIMARY KEY,
    highest_seq BIGINT NOT NULL
)""",
    """CREATE TABLE IF NOT EXISTS {snapshots} (
    persistence_id TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    serializer TEXT NOT NULL,
    manifest TEXT NOT NULL,
    payload BYTEA NOT NULL,
    timestamp DOUBLE PRECISION NOT NULL,
    digest BYTEA,
    PRIMARY KEY (persistence_id, seq)
)""",
)
"""The PostgreSQL journal's schema (version :data:`SCHEMA_VERSION`), with the table
names in braces (filled in schema-qualified). Persistence ids and tags sort by code
point (``COLLATE "C"``), like in SQLite. ``digest`` (new in version 2, ``NULL`` in the
rows of a journal written before) is each record's checksum or signature
(:mod:`._integrity`)."""

_UPGRADES = {
    1: (
        "ALTER TABLE {events} ADD COLUMN IF NOT EXISTS digest BYTEA",
        "ALTER TABLE {snapshots} ADD COLUMN IF NOT EXISTS digest BYTEA",
    ),
}
"""The statements taking an existing journal from a version to the next (1 to 2: the
``digest`` columns, ``NULL`` in the rows already stored)."""


_ROWS_PER_INSERT = 16
"""At most this many event rows go in one multi-row ``INSERT``; more go by ``COPY``."""

_BEGIN = "BEGIN ISOLATION LEVEL READ COMMITTED"

_IDS_WITH_BEGIN = 16
"""A group writing at most this many persistence ids reads their highest seqs in the
round trip of its ``BEGIN``; more are read by a query of their own (a long literal list
costs more to build than the round trip)."""


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


def _connect(dsn: str, connect_timeout: float, application_name: str) -> psycopg.Connection[Any]:
    return psycopg.connect(
        dsn,
        autocommit=True,
        connect_timeout=max(2, math.ceil(connect_timeout)),
        application_name=application_name,
    )


_Conn = psycopg.Connection[Any]


class _Literals:
    """Event rows as SQL literals for a simple query on ``conn`` (see
    ``PostgresDialect.begin_and_insert``), escaped by libpq for the connection's
    encoding and settings."""

    __slots__ = ("_escaping",)

    def __init__(self, conn: _Conn) -> None:
        self._escaping = pq.Escaping(conn.pgconn)

    def row(self, row: tuple[Any, ...]) -> bytes | None:
        """``(v1, v2, ...)`` of the row's values, or ``None`` if one has no plain
        literal here."""
        parts = []
        for value in row:
            literal = self.literal(value)
            if literal is None:
                return None
            parts.append(literal)
        return b"(" + b", ".join(parts) + b")"

    def literal(self, value: Any) -> bytes | None:
        kind = type(value)
        if kind is str:
            if "\x00" in value:
                return None
            return self._escaping.escape_literal(value.encode())
        if kind is int:
            return str(value).encode()
        if kind is float:
            return repr(value).encode() + b"::float8" if math.isfinite(value) else None
        if kind is bytes:
            return b"'" + self._escaping.escape_bytea(value) + b"'::bytea"
        if kind is list and not value:
            return b"'{}'::text[]"
        return None


class PostgresDialect(SqlDialect[_Conn]):
    """PostgreSQL for :class:`~._sql_journal.SqlJournal`: the tables of ``schema`` in
    the database at ``dsn``."""

    error = psycopg.Error
    rows_with_begin = _ROWS_PER_INSERT

    def __init__(
        self,
        dsn: str,
        schema: str,
        connect_timeout: float,
        application_name: str,
        key: bytes | None = None,
    ) -> None:
        self.dsn = dsn
        self.schema = schema
        self.connect_timeout = connect_timeout
        self.application_name = application_name
        self.where = describe_dsn(dsn)
        self.journal_name = f"journal on {self.where}"
        self.integrity = Integrity(key, self.journal_name)
        self.offset_lock_key = offset_lock_key(schema)
        self._tables = {name: sql.Identifier(schema, name) for name in TABLES}
        self.sql = Statements.compiled(self.compile)
        columns = sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS[1:]))
        self._insert_head = sql.SQL("INSERT INTO {} ({}) VALUES ").format(
            self._tables["events"], columns
        )
        self._row_marks = sql.SQL("({})").format(
            sql.SQL(", ").join([sql.Placeholder()] * (len(EVENT_COLUMNS) - 1))
        )
        self._insert_tail = sql.SQL(" RETURNING persistence_id, seq, event_offset")
        self._inserts: dict[int, bytes] = {}
        self._begin_locked = f"{_BEGIN}; SELECT pg_advisory_xact_lock({int(self.offset_lock_key)})"
        # The identity sequence's last value (0 before the first): the offset mark.
        self._mark = (
            sql.SQL(
                "SELECT coalesce(pg_sequence_last_value(pg_get_serial_sequence("
                "format('%I.%I', {}, 'events'), 'event_offset')::regclass), 0)"
            )
            .format(sql.Literal(schema))
            .as_string(None)
        )
        self._begin_and_mark = f"{self._begin_locked}; {self._mark}"
        self._begin_and_mark_bytes = self._begin_and_mark.encode()
        self._literal_head: bytes | None = None
        self._begin_and_read = sql.SQL(
            self._begin_and_mark.replace("{", "{{").replace("}", "}}")
            + "; SELECT p, (SELECT max(seq) FROM {events} WHERE "
            "persistence_id = p), (SELECT highest_seq FROM {journal_metadata} WHERE "
            "persistence_id = p) FROM unnest(ARRAY[{ids}]::text[]) AS p"
        )
        self._draw_offsets = sql.SQL(
            "SELECT nextval(pg_get_serial_sequence(format('%%I.%%I', %s::text, 'events'), "
            "'event_offset')) FROM generate_series(1, %s)"
        )
        self._copy_in = sql.SQL("COPY {} ({}) FROM STDIN").format(
            self._tables["events"], sql.SQL(", ").join(map(sql.Identifier, EVENT_COLUMNS))
        )
        self._highest_many = self.compile(
            "SELECT p, (SELECT max(seq) FROM {events} WHERE persistence_id = p), "
            "(SELECT highest_seq FROM {journal_metadata} WHERE persistence_id = p) "
            "FROM unnest(%s::text[]) AS p"
        )
        #: The statements creating the schema and its tables if they are missing.
        self.create = [sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))]
        self.create += [self.compile(statement) for statement in _SCHEMA]

    def compile(self, template: str) -> sql.Composed:
        return sql.SQL(template).format(**self._tables)

    def connect_writer(self) -> _Conn:
        return _connect(self.dsn, self.connect_timeout, self.application_name)

    def connect_reader(self) -> _Conn:
        return _connect(self.dsn, self.connect_timeout, self.application_name)

    def begin(self, conn: _Conn, draws_offsets: bool) -> None:
        # READ COMMITTED whatever the server's default: each statement, notably the read
        # of the highest seq after the lock is taken, sees every commit.
        # With the offset lock: both statements in one round trip (no parameters; the
        # key is an integer of ours).
        conn.execute(self._begin_locked if draws_offsets else _BEGIN)

    def begin_group(
        self, conn: _Conn, draws_offsets: bool, ids: Collection[str]
    ) -> tuple[int | None, dict[str, int]]:
        if not draws_offsets:
            self.begin(conn, draws_offsets)
            return None, {}
        # BEGIN, the lock, the offset mark and (for a few ids) their highest seqs in one
        # round trip: a simple query (no parameters), the ids as quoted literals.
        inline = 0 < len(ids) <= _IDS_WITH_BEGIN
        if inline:
            listed = sql.SQL(", ").join(map(sql.Literal, ids))
            query: Any = self._begin_and_read.format(ids=listed, **self._tables)
        else:
            query = self._begin_and_mark
        cursor = conn.execute(query)
        results = []
        while True:
            if cursor.description is not None:
                results.append(cursor.fetchall())
            if not cursor.nextset():
                break
        mark = int(results[1][0][0])  # (the lock's result, the mark's, the highest seqs)
        if inline:
            return mark, highest_of(results[2])
        return mark, self.highest_many(conn, ids) if ids else {}

    def offset_mark(self, conn: _Conn) -> int:
        found = conn.execute(self._mark).fetchone()
        return int(found[0]) if found else 0

    def is_broken(self, conn: _Conn) -> bool:
        return conn.closed or conn.broken

    def in_transaction(self, conn: _Conn) -> bool:
        return conn.info.transaction_status != pq.TransactionStatus.IDLE

    def is_conflict(self, error: Exception) -> bool:
        return isinstance(error, pg_errors.UniqueViolation) and error.diag.table_name == "events"

    def commit_unknown(self, conn: _Conn) -> str | None:
        # With the connection alive, the server answered: the transaction was rolled
        # back. With the connection lost, nobody knows whether it committed.
        return "connection lost during COMMIT" if self.is_broken(conn) else None

    def highest_many(self, conn: _Conn, persistence_ids: Collection[str]) -> dict[str, int]:
        rows = conn.execute(self._highest_many, (list(persistence_ids),)).fetchall()
        return highest_of(rows)

    def insert_events(
        self, conn: _Conn, rows: Sequence[tuple[Any, ...]], mark: int | None = None
    ) -> list[int]:
        # A few rows: one multi-row INSERT ... RETURNING (one round trip). More: draw
        # their offsets from the identity's sequence (under the offset lock, so in
        # order) and COPY the rows with them (two round trips, and COPY is far cheaper
        # per row than a statement's parameters).
        if len(rows) > _ROWS_PER_INSERT:
            return self._copy_events(conn, rows)
        # The offsets are matched back by (persistence_id, seq) rather than by the order
        # of RETURNING; the rows are drawn their offsets in VALUES order.
        statement = self._insert_rows(conn, len(rows))
        params = [value for row in rows for value in row]
        drawn = {(pid, seq): offset for pid, seq, offset in conn.execute(statement, params)}
        return [drawn[row[0], row[1]] for row in rows]

    def begin_and_insert(
        self, conn: _Conn, rows: Sequence[tuple[Any, ...]]
    ) -> tuple[int, list[int]] | None:
        # BEGIN, the offset lock, the offset mark and the INSERT of a few rows in one
        # round trip: a simple query, so the rows go as literals, escaped by libpq
        # (PQescapeLiteral, PQescapeByteaConn). Only for what has a plain literal: no
        # tags, finite timestamps, text without NUL; else None (the caller takes the
        # usual round trips).
        if not rows or len(rows) > _ROWS_PER_INSERT:
            return None
        literals = _Literals(conn)
        values = []
        for row in rows:
            line = literals.row(row)
            if line is None:
                return None
            values.append(line)
        query = b"".join(
            (self._begin_and_mark_bytes, b"; ", self._insert_head_bytes(conn), b", ".join(values))
        )
        cursor = conn.execute(query + self._insert_tail_bytes(conn))
        results = []
        while True:
            if cursor.description is not None:
                results.append(cursor.fetchall())
            if not cursor.nextset():
                break
        mark = int(results[1][0][0])  # (the lock's result, the mark's, the inserted rows)
        drawn = {(pid, seq): int(offset) for pid, seq, offset in results[2]}
        return mark, [drawn[row[0], row[1]] for row in rows]

    def _insert_head_bytes(self, conn: _Conn) -> bytes:
        head = self._literal_head
        if head is None:
            head = self._literal_head = self._insert_head.as_bytes(conn)
        return head

    def _insert_tail_bytes(self, conn: _Conn) -> bytes:
        return self._insert_tail.as_bytes(conn)

    def _copy_events(self, conn: _Conn, rows: Sequence[tuple[Any, ...]]) -> list[int]:
        drawn = conn.execute(self._draw_offsets, (self.schema, len(rows))).fetchall()
        offsets = sorted(int(row[0]) for row in drawn)
        with conn.cursor() as cursor, cursor.copy(self._copy_in) as copy:
            write_row = copy.write_row
            for offset, row in zip(offsets, rows, strict=True):
                write_row((offset, *row))
        return offsets

    def _insert_rows(self, conn: _Conn, count: int) -> bytes:
        # As bytes, made once per row count: composing the statement on every call
        # costs as much as a tenth of its round trip.
        statement = self._inserts.get(count)
        if statement is None:
            values = sql.SQL(", ").join([self._row_marks] * count)
            composed = self._insert_head + values + self._insert_tail
            statement = self._inserts[count] = composed.as_bytes(conn)
        return statement

    def executemany(self, conn: _Conn, statement: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        with conn.cursor() as cursor:
            cursor.executemany(statement, rows)

    def encode_tags(self, tags: frozenset[str]) -> list[str]:
        return sorted(tags)

    def decode_tags(self, value: Any) -> frozenset[str]:
        return frozenset(value)

    def fetch_all(self, conn: _Conn, statement: Any, params: Sequence[Any]) -> list[Any]:
        # Rows in the binary format: bytea, numbers and arrays arrive without the text
        # parsing (the same Python values).
        with conn.cursor(binary=True) as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall()

    def tags_text(self, value: Any) -> str:
        # Stored sorted (encode_tags): the same JSON array as SQLite's column.
        if isinstance(value, list) and all(type(tag) is str for tag in value):
            return json.dumps(value) if value else "[]"
        return repr(value)

    def upgrade(self, conn: _Conn, version: int) -> None:
        for statement in _UPGRADES[version]:
            conn.execute(self.compile(statement))


class PostgresJournal(SqlJournal[_Conn]):
    """The :class:`Journal` on one schema of a PostgreSQL database; made by
    :func:`open_postgres_journal`, which owns its writer task and connections (do not
    construct it directly).

    Errors: any psycopg error becomes :class:`JournalFailure` naming the operation and
    the server (:attr:`where`: host, port and database, never the password), with the
    psycopg error as ``__cause__``; a lost ``COMMIT`` says that the outcome is unknown.
    Everything else (sequence conflicts, also with another process; bounds; checkpoints;
    group commit and the counters :attr:`transactions` and :attr:`ops_acknowledged`) is
    :class:`~._sql_journal.SqlJournal`'s.
    """

    def __init__(
        self, dialect: PostgresDialect, writer: _Conn, chunk_size: int, max_readers: int
    ) -> None:
        super().__init__(dialect, writer, chunk_size, max_readers)
        self._dsn = dialect.dsn
        #: The schema holding the journal's tables.
        self.schema = dialect.schema
        #: The key of the advisory lock taken by every transaction that inserts events.
        self.offset_lock_key = dialect.offset_lock_key
        #: The snapshot store in the same schema.
        self.snapshots = PostgresSnapshotStore(self)


class PostgresSnapshotStore(SqlSnapshotStore):
    """The :class:`SnapshotStore` in the schema of a :class:`PostgresJournal`, its
    :attr:`~PostgresJournal.snapshots`. Saves and deletes are durable when they return;
    errors name the server (see :class:`~._sql_journal.SqlSnapshotStore`)."""


def _open_writer(
    dsn: str,
    schema: str | None,
    connect_timeout: float,
    application_name: str,
    key: bytes | None = None,
) -> tuple[_Conn, PostgresDialect]:
    """In a thread: connect the writer, create the schema and tables if missing (under
    the offset lock, so that processes opening at once do not collide) and check the
    schema version. Returns the connection and the dialect (of the schema given, or the
    connection's current one)."""
    conn = _connect(dsn, connect_timeout, application_name)
    try:
        create = schema is not None
        if schema is None:
            found = conn.execute("SELECT current_schema()").fetchone()
            if found is None or found[0] is None:
                raise JournalFailure(
                    "no current schema (empty search_path): pass schema= to open_postgres_journal"
                )
            schema = str(found[0])
        dialect = PostgresDialect(dsn, schema, connect_timeout, application_name, key)
        statements = dialect.create if create else dialect.create[1:]
        where = f"schema {schema!r}"
        install_schema(dialect, conn, statements, SCHEMA_VERSION, create=True, where=where)
    except BaseException:
        with suppress(psycopg.Error):
            conn.close()
        raise
    return conn, dialect


@asynccontextmanager
async def open_postgres_journal(
    dsn: str,
    *,
    schema: str | None = None,
    chunk_size: int = 1000,
    max_readers: int = 4,
    connect_timeout: float = 10.0,
    application_name: str = "trio-actors journal",
    key: bytes | None = None,
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

    Every event and snapshot is stored with a digest, checked by every read before
    anything of the record is decoded (:class:`RecordCorrupt` if it does not match): a
    CRC-32 checksum, or with ``key`` (bytes, at least 16; 32 random ones recommended) an
    HMAC-SHA256 signature; a journal opened with a key refuses every record not signed
    with it, and one opened without a key refuses signed records. A schema of version 1
    is upgraded to version 2 on open (its rows keep no digest: read without a key,
    refused with one). See "Integrity: checksums and signed journals" in the
    persistence guide.

    Raises :class:`JournalFailure` naming the server (never the password) if it cannot be
    reached, refuses the login, or holds an unsupported schema version;
    :class:`TypeError` or :class:`ValueError` for a ``key`` that is not bytes or too
    short.

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
    key = check_key(key)
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
        conn, dialect = await trio.to_thread.run_sync(
            _open_writer, dsn, schema, connect_timeout, application_name, key
        )
    except JournalFailure as failure:
        raise JournalFailure(f"cannot open the PostgreSQL journal on {where}: {failure}") from None
    except psycopg.Error as error:
        raise JournalFailure(f"cannot open the PostgreSQL journal on {where}: {error}") from error
    async with serving(PostgresJournal(dialect, conn, chunk_size, max_readers)) as journal:
        yield journal


def schema_versions(dsn: str) -> list[int] | None:
    """The schema versions recorded by a journal in the current schema of the database
    at ``dsn`` (read only: nothing is created); ``None`` if there is no journal there, or
    the database cannot be read now (opening the journal then says why)."""
    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
            found = conn.execute("SELECT current_schema()").fetchone()
            if found is None or found[0] is None:
                return None
            table = sql.Identifier(str(found[0]), "schema_version")
            exists = conn.execute("SELECT to_regclass(%s)", (table.as_string(conn),)).fetchone()
            if exists is None or exists[0] is None:
                return None
            rows = conn.execute(sql.SQL("SELECT version FROM {}").format(table)).fetchall()
    except psycopg.Error:
        return None
    return [int(row[0]) for row in rows]
