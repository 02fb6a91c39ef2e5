"""What the SQL journals need from a database: the dialect interface, and the SQL text
they share.

:class:`~._sql_journal.SqlJournal` (the journal and its snapshot store, written once)
runs over a :class:`SqlDialect`; ``_sqlite.py`` and ``_postgres.py`` each implement
one. A dialect says how to connect (a writer connection and read connections), how to
begin a group's transaction, how to insert events and get their offsets, how tags are
stored, and how the driver's errors are told apart (a lost connection, a duplicate seq,
a ``COMMIT`` whose outcome is unknown). Everything it does runs in a worker thread,
never in the trio thread; none of it may block forever (the drivers' timeouts bound
it).

The SQL shared by both backends is written here once, as templates: ``{events}`` and
the other table names in braces, ``%s`` for parameters. A dialect compiles each
template (:meth:`SqlDialect.compile`) into what its driver executes: SQLite fills in
bare table names and ``?``, PostgreSQL schema-qualified identifiers. The statements
that control a group's transaction (``SAVEPOINT``, ``RELEASE SAVEPOINT``, ``ROLLBACK
TO SAVEPOINT``, ``ROLLBACK``, ``COMMIT``) are the same in both and written in
:mod:`._sql_writer`. Only the schema (the ``CREATE`` statements), ``BEGIN`` and the
event insert (how the new offsets come back) are the dialect's own.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import suppress
from typing import Any, Generic, Protocol, TypeVar

import attrs

from ._integrity import Integrity


class SqlConnection(Protocol):
    """What the journals use of a DB-API connection (``sqlite3`` and psycopg 3 both
    have it): ``execute`` returns a cursor; ``close``."""

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...

    def close(self) -> None: ...


_C = TypeVar("_C", bound=SqlConnection)

#: The tables of a journal, in creation order.
TABLES = ("schema_version", "events", "event_tags", "journal_metadata", "snapshots")

EVENT_COLUMNS = (
    "event_offset",
    "persistence_id",
    "seq",
    "serializer",
    "manifest",
    "payload",
    "tags",
    "writer_id",
    "timestamp",
    "digest",
)
"""The columns of an event row, in the order :meth:`SqlDialect.insert_events` and the
replays use them. ``digest`` (schema version 2) is the record's checksum or signature
(:mod:`._integrity`), ``NULL`` in a row written before version 2."""

_COLUMNS = ", ".join(EVENT_COLUMNS)
_JOINED_COLUMNS = ", ".join(f"e.{column}" for column in EVENT_COLUMNS)

_TEMPLATES = {
    "schema_version": "SELECT version FROM {schema_version}",
    "insert_version": "INSERT INTO {schema_version} (version) VALUES (%s)",
    "set_version": "UPDATE {schema_version} SET version = %s",
    # An id's highest seq is the larger of its highest stored event and the one kept in
    # journal_metadata when events are deleted (written only then, not on every write).
    "highest": (
        "SELECT max(h) FROM (SELECT max(seq) AS h FROM {events} WHERE persistence_id = %s "
        "UNION ALL SELECT highest_seq FROM {journal_metadata} WHERE persistence_id = %s) t"
    ),
    "insert_event": (
        "INSERT INTO {events} (persistence_id, seq, serializer, manifest, payload, tags, "
        "writer_id, timestamp, digest) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    ),
    "insert_tag": "INSERT INTO {event_tags} (tag, event_offset) VALUES (%s, %s)",
    # The writer has checked that the batch continues from the highest seq; the guard
    # keeps the highest from going down even for a writer that has not.
    # Before a delete: keep the id's highest stored seq (never lowering the one kept).
    "keep_highest": (
        "INSERT INTO {journal_metadata} AS m (persistence_id, highest_seq) "
        "SELECT persistence_id, max(seq) FROM {events} WHERE persistence_id = %s "
        "GROUP BY persistence_id ON CONFLICT (persistence_id) DO UPDATE "
        "SET highest_seq = excluded.highest_seq WHERE excluded.highest_seq > m.highest_seq"
    ),
    "replay": (
        f"SELECT {_COLUMNS} FROM {{events}} WHERE persistence_id = %s AND seq > %s "
        "AND seq <= %s ORDER BY seq LIMIT %s"
    ),
    "replay_rows": (
        "SELECT seq, serializer, manifest, payload, tags, writer_id, timestamp, digest, "
        "event_offset FROM {events} WHERE persistence_id = %s AND seq > %s ORDER BY seq "
        "LIMIT %s"
    ),
    "by_tag": (
        f"SELECT {_JOINED_COLUMNS} FROM {{event_tags}} t JOIN {{events}} e "
        "ON e.event_offset = t.event_offset WHERE t.tag = %s AND t.event_offset > %s "
        "ORDER BY t.event_offset LIMIT %s"
    ),
    # The same events as rows of Journal.events_by_tag_chunks (a record's fields in its
    # order), the offset (the page's key) and the digest after them.
    "by_tag_rows": (
        "SELECT e.persistence_id, e.seq, e.serializer, e.manifest, e.payload, e.tags, "
        "e.writer_id, e.timestamp, e.event_offset, e.digest FROM {event_tags} t JOIN "
        "{events} e ON e.event_offset = t.event_offset WHERE t.tag = %s AND "
        "t.event_offset > %s ORDER BY t.event_offset LIMIT %s"
    ),
    "delete_tags": (
        "DELETE FROM {event_tags} WHERE event_offset IN (SELECT event_offset FROM "
        "{events} WHERE persistence_id = %s AND seq <= %s)"
    ),
    "delete_events": "DELETE FROM {events} WHERE persistence_id = %s AND seq <= %s",
    "persistence_ids": (
        "SELECT persistence_id FROM {journal_metadata} UNION "
        "SELECT DISTINCT persistence_id FROM {events} ORDER BY 1"
    ),
    # The lag of a tag reader: one index lookup each (the primary keys).
    "highest_offset": "SELECT max(event_offset) FROM {events}",
    "highest_tag_offset": "SELECT max(event_offset) FROM {event_tags} WHERE tag = %s",
    "save_snapshot": (
        "INSERT INTO {snapshots} (persistence_id, seq, serializer, manifest, payload, "
        "timestamp, digest) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT "
        "(persistence_id, seq) DO UPDATE SET serializer = excluded.serializer, "
        "manifest = excluded.manifest, payload = excluded.payload, "
        "timestamp = excluded.timestamp, digest = excluded.digest"
    ),
    "load_snapshot": (
        "SELECT persistence_id, seq, serializer, manifest, payload, timestamp, digest "
        "FROM {snapshots} WHERE persistence_id = %s AND seq <= %s "
        "ORDER BY seq DESC LIMIT 1"
    ),
    "delete_snapshots": "DELETE FROM {snapshots} WHERE persistence_id = %s AND seq <= %s",
}


@attrs.frozen
class Statements:
    """The journal's SQL, compiled by a dialect (``str`` for SQLite, composed SQL for
    PostgreSQL: whatever its driver executes)."""

    schema_version: Any
    insert_version: Any
    set_version: Any
    highest: Any
    insert_event: Any
    insert_tag: Any
    keep_highest: Any
    replay: Any
    replay_rows: Any
    by_tag: Any
    by_tag_rows: Any
    delete_tags: Any
    delete_events: Any
    persistence_ids: Any
    highest_offset: Any
    highest_tag_offset: Any
    save_snapshot: Any
    load_snapshot: Any
    delete_snapshots: Any

    @classmethod
    def compiled(cls, compile: Callable[[str], Any]) -> Statements:
        """Every template, compiled by ``compile``."""
        return cls(**{name: compile(text) for name, text in _TEMPLATES.items()})


def highest_of(rows: Iterable[Sequence[Any]]) -> dict[str, int]:
    """``{persistence_id: highest seq}`` from rows of ``(id, highest stored event's seq,
    highest kept in journal_metadata)`` (either may be ``NULL``), leaving out the ids
    that have neither."""
    found: dict[str, int] = {}
    for pid, stored, kept in rows:
        if stored is None:
            if kept is not None:
                found[pid] = int(kept)
        elif kept is None or stored >= kept:
            found[pid] = int(stored)
        else:
            found[pid] = int(kept)
    return found


class SqlDialect(abc.ABC, Generic[_C]):
    """How one database does what the SQL journal needs. Methods taking a connection
    run in a worker thread; they raise :attr:`error` (the driver's base exception) when
    the database fails, and the journal maps that to :class:`JournalFailure`.

    A subclass sets :attr:`error`, :attr:`where`, :attr:`journal_name`,
    :attr:`integrity` and :attr:`sql` (``Statements.compiled(self.compile)``) in its
    constructor.
    """

    #: The driver's base exception (``sqlite3.Error``, ``psycopg.Error``).
    error: type[Exception]
    #: Where the journal is, for messages (never a password).
    where: str
    #: The journal, for messages: ``"the {journal_name} is closed"``.
    journal_name: str
    #: The journal's SQL, compiled for this database.
    sql: Statements
    #: Seals the records written and checks those read (with the journal's key, if any).
    integrity: Integrity

    @abc.abstractmethod
    def compile(self, template: str) -> Any:
        """One SQL template of this module, as this driver executes it."""

    @abc.abstractmethod
    def connect_writer(self) -> _C:
        """A new connection for the writer (autocommit: the writer issues ``BEGIN``)."""

    @abc.abstractmethod
    def connect_reader(self) -> _C:
        """A new connection for reads (autocommit: each query sees what was committed
        when it started)."""

    @abc.abstractmethod
    def begin(self, conn: _C, draws_offsets: bool) -> None:
        """Begin a group's transaction on the writer connection; ``draws_offsets``: the
        group inserts events (offsets must come out in commit order)."""

    def begin_group(
        self, conn: _C, draws_offsets: bool, ids: Collection[str]
    ) -> tuple[int | None, dict[str, int]]:
        """:meth:`begin`, then, for a group that draws offsets, read the offset mark
        (:meth:`offset_mark`) and the highest seq of ``ids`` (``{}`` if none): what a
        group that writes events needs first. ``(None, {})`` for a group that draws no
        offsets. The default runs :meth:`begin`, :meth:`offset_mark` and
        :meth:`highest_many`."""
        self.begin(conn, draws_offsets)
        if not draws_offsets:
            return None, {}
        return self.offset_mark(conn), self.highest_many(conn, ids) if ids else {}

    blob: Callable[[bytes], Any] | None = None
    """What the event rows hold a payload and a digest as, if not the ``bytes`` they
    are made as (``None``): made once per row, when the write is queued, so that the
    driver binds them at the least cost (SQLite: see ``SqliteDialect.blob``)."""

    rows_with_begin: int = 0
    """At most how many event rows :meth:`begin_and_insert` takes (0: it is not
    implemented: an embedded database has no round trip to save)."""

    def begin_and_insert(
        self, conn: _C, rows: Sequence[tuple[Any, ...]]
    ) -> tuple[int, list[int]] | None:
        """For a database across a network: :meth:`begin` a transaction that draws
        offsets, read the offset mark and insert the event ``rows`` in it, in one round
        trip; return ``(mark, offsets)``, the mark as read before the insert. ``None``
        if the dialect does not, or not for these rows (nothing was sent then). The
        default: ``None``."""
        return None

    @abc.abstractmethod
    def offset_mark(self, conn: _C) -> int:
        """In a transaction begun to draw offsets: the largest offset ever handed out
        (0 if none), which every insert of events moves (see
        :class:`~._sql_writes.KnownHighest`)."""

    def is_broken(self, conn: _C) -> bool:
        """Whether ``conn`` is closed or lost (to be replaced, never reused). The
        default: never (an embedded database has no connection to lose)."""
        return False

    @abc.abstractmethod
    def in_transaction(self, conn: _C) -> bool:
        """Whether a transaction is open on the (unbroken) ``conn``."""

    def close(self, conn: _C | None) -> None:
        """Close ``conn`` (if any), ignoring the driver's errors."""
        if conn is not None:
            with suppress(self.error):
                conn.close()

    @abc.abstractmethod
    def is_conflict(self, error: Exception) -> bool:
        """Whether ``error`` says that an event's ``(persistence_id, seq)`` is already
        stored (the ``UNIQUE`` constraint fencing a second writer)."""

    @abc.abstractmethod
    def commit_unknown(self, conn: _C) -> str | None:
        """After ``COMMIT`` raised: why its outcome is unknown, for the message, or
        ``None`` if the database answered that nothing was committed."""

    @abc.abstractmethod
    def highest_many(self, conn: _C, persistence_ids: Collection[str]) -> dict[str, int]:
        """The highest seq stored of each of ``persistence_ids`` that has one, in the
        open transaction, in as few statements as the database allows."""

    @abc.abstractmethod
    def insert_events(
        self, conn: _C, rows: Sequence[tuple[Any, ...]], mark: int | None = None
    ) -> list[int]:
        """Insert event rows (the columns of :data:`EVENT_COLUMNS` but the offset) in
        the open transaction, in as few statements as the database allows; return their
        offsets, in order (increasing in row order). ``mark``, when the caller knows it,
        is the offset mark (:meth:`offset_mark`) as it stands now, in this transaction,
        which a backend may use instead of reading it again."""

    @abc.abstractmethod
    def executemany(self, conn: _C, statement: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        """Run ``statement`` once per row of ``rows``."""

    @abc.abstractmethod
    def encode_tags(self, tags: frozenset[str]) -> Any:
        """The ``tags`` column's value for ``tags``."""

    @abc.abstractmethod
    def decode_tags(self, value: Any) -> frozenset[str]:
        """The tags stored as ``value`` in the ``tags`` column."""

    def fetch_all(self, conn: _C, statement: Any, params: Sequence[Any]) -> list[Any]:
        """The rows of a read query (the default: ``execute`` then ``fetchall``)."""
        rows: list[Any] = conn.execute(statement, params).fetchall()
        return rows

    def tags_text(self, value: Any) -> str:
        """The tags stored as ``value`` in the ``tags`` column, as a record's digest
        covers them (:func:`._integrity.tags_text`: the sorted JSON array). The default,
        for a database that stores that text: the column itself (another type of value,
        from an edited row, gives a text that no digest matches)."""
        return value if type(value) is str else repr(value)

    @abc.abstractmethod
    def upgrade(self, conn: _C, version: int) -> None:
        """In the transaction of :func:`._sql_journal.install_schema`: take an existing
        journal's schema from ``version`` to ``version + 1``."""
