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
from collections.abc import Callable, Sequence
from contextlib import suppress
from typing import Any, Generic, Protocol, TypeVar

import attrs


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
)
"""The columns of an event row, in the order :meth:`SqlDialect.insert_events` and the
replays use them."""

_COLUMNS = ", ".join(EVENT_COLUMNS)
_JOINED_COLUMNS = ", ".join(f"e.{column}" for column in EVENT_COLUMNS)

_TEMPLATES = {
    "schema_version": "SELECT version FROM {schema_version}",
    "insert_version": "INSERT INTO {schema_version} (version) VALUES (%s)",
    "highest": "SELECT highest_seq FROM {journal_metadata} WHERE persistence_id = %s",
    "insert_event": (
        "INSERT INTO {events} (persistence_id, seq, serializer, manifest, payload, tags, "
        "writer_id, timestamp) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    ),
    "insert_tag": "INSERT INTO {event_tags} (tag, event_offset) VALUES (%s, %s)",
    # The writer has checked that the batch continues from the highest seq; the guard
    # keeps the highest from going down even for a writer that has not.
    "set_highest": (
        "INSERT INTO {journal_metadata} AS m (persistence_id, highest_seq) VALUES (%s, %s) "
        "ON CONFLICT (persistence_id) DO UPDATE SET highest_seq = excluded.highest_seq "
        "WHERE excluded.highest_seq > m.highest_seq"
    ),
    "replay": (
        f"SELECT {_COLUMNS} FROM {{events}} WHERE persistence_id = %s AND seq > %s "
        "AND seq <= %s ORDER BY seq LIMIT %s"
    ),
    "replay_rows": (
        "SELECT seq, serializer, manifest, payload FROM {events} "
        "WHERE persistence_id = %s AND seq > %s ORDER BY seq LIMIT %s"
    ),
    "by_tag": (
        f"SELECT {_JOINED_COLUMNS} FROM {{event_tags}} t JOIN {{events}} e "
        "ON e.event_offset = t.event_offset WHERE t.tag = %s AND t.event_offset > %s "
        "ORDER BY t.event_offset LIMIT %s"
    ),
    "delete_tags": (
        "DELETE FROM {event_tags} WHERE event_offset IN (SELECT event_offset FROM "
        "{events} WHERE persistence_id = %s AND seq <= %s)"
    ),
    "delete_events": "DELETE FROM {events} WHERE persistence_id = %s AND seq <= %s",
    "persistence_ids": "SELECT persistence_id FROM {journal_metadata} ORDER BY persistence_id",
    "save_snapshot": (
        "INSERT INTO {snapshots} (persistence_id, seq, serializer, manifest, payload, "
        "timestamp) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (persistence_id, seq) "
        "DO UPDATE SET serializer = excluded.serializer, manifest = excluded.manifest, "
        "payload = excluded.payload, timestamp = excluded.timestamp"
    ),
    "load_snapshot": (
        "SELECT persistence_id, seq, serializer, manifest, payload, timestamp "
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
    highest: Any
    insert_event: Any
    insert_tag: Any
    set_highest: Any
    replay: Any
    replay_rows: Any
    by_tag: Any
    delete_tags: Any
    delete_events: Any
    persistence_ids: Any
    save_snapshot: Any
    load_snapshot: Any
    delete_snapshots: Any

    @classmethod
    def compiled(cls, compile: Callable[[str], Any]) -> Statements:
        """Every template, compiled by ``compile``."""
        return cls(**{name: compile(text) for name, text in _TEMPLATES.items()})


class SqlDialect(abc.ABC, Generic[_C]):
    """How one database does what the SQL journal needs. Methods taking a connection
    run in a worker thread; they raise :attr:`error` (the driver's base exception) when
    the database fails, and the journal maps that to :class:`JournalFailure`.

    A subclass sets :attr:`error`, :attr:`where` and :attr:`journal_name`, and
    :attr:`sql` (``Statements.compiled(self.compile)``) in its constructor.
    """

    #: The driver's base exception (``sqlite3.Error``, ``psycopg.Error``).
    error: type[Exception]
    #: Where the journal is, for messages (never a password).
    where: str
    #: The journal, for messages: ``"the {journal_name} is closed"``.
    journal_name: str
    #: The journal's SQL, compiled for this database.
    sql: Statements

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
    def insert_events(self, conn: _C, rows: Sequence[tuple[Any, ...]]) -> list[int]:
        """Insert event rows (the columns of :data:`EVENT_COLUMNS` but the offset) in
        the open transaction; return their offsets, in order."""

    @abc.abstractmethod
    def executemany(self, conn: _C, statement: Any, rows: Sequence[tuple[Any, ...]]) -> None:
        """Run ``statement`` once per row of ``rows``."""

    @abc.abstractmethod
    def encode_tags(self, tags: frozenset[str]) -> Any:
        """The ``tags`` column's value for ``tags``."""

    @abc.abstractmethod
    def decode_tags(self, value: Any) -> frozenset[str]:
        """The tags stored as ``value`` in the ``tags`` column."""
