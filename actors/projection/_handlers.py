"""What a projection does with its events, and where it keeps its offset:
:class:`AtLeastOnce` (any async handler; the offset stored after it, in an
:class:`OffsetStore`), :class:`SqliteExactlyOnce` and :class:`PostgresExactlyOnce`
(a handler given the database connection, whose changes commit in the same transaction
as the offset).

A handler object is a description: the projection actor opens a session on it
(:meth:`ProjectionHandler._session`) each time it starts or recovers from a failure,
and closes it when it stops or fails.
"""

from __future__ import annotations

import abc
import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from ._model import Envelope, ProjectionError
from ._offsets import InMemoryOffsetStore, OffsetStore
from ._sql import (
    DEFAULT_TABLE,
    OffsetSql,
    check_identifier,
    connect_postgres,
    connect_sqlite,
    in_sqlite_transaction,
    postgres_statements,
    read_offset,
    sqlite_statements,
    store_fenced,
    where_postgres,
)


class HandlerSession(abc.ABC):
    """A handler opened for one projection (name and key), by one projection actor."""

    @abc.abstractmethod
    async def open(self) -> int:
        """Open what the handler needs; return the stored offset (0: none)."""

    @abc.abstractmethod
    async def process(self, envelopes: list[Envelope], offset: int) -> None:
        """Apply ``envelopes`` (maybe none, if every event of the batch was skipped) and
        store ``offset``, the offset of the batch's last event."""

    @abc.abstractmethod
    async def reset(self) -> None:
        """Run the user's reset hook and forget the stored offset."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release what :meth:`open` took; never raises an ``Exception``."""


class ProjectionHandler(abc.ABC):
    """What a projection does with its events: one of :class:`AtLeastOnce`,
    :class:`SqliteExactlyOnce` and :class:`PostgresExactlyOnce`."""

    @abc.abstractmethod
    def _session(self, name: str, key: str) -> HandlerSession:
        """A new, unopened session for projection ``name`` (``key``)."""


async def _maybe_await(value: object) -> None:
    if inspect.isawaitable(value):
        await value
    else:
        await trio.lowlevel.checkpoint()


def _callable(what: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not callable(value):
        raise TypeError(f"{what} must be a callable, got {type(value).__name__} {value!r}")


# -- at least once -----------------------------------------------------------------------


class AtLeastOnce(ProjectionHandler):
    """A projection handler for any target: ``handle(envelopes)`` (``async def`` or
    plain, called in the projection actor) is given each batch, and the offset of the
    batch's last event is saved in ``offsets`` once it returns.

    At least once: after a crash, or a failure of the handler or of the save, the batch
    since the stored offset is handed over again, so the handler must be idempotent
    (an upsert keyed by persistence id and seq, a set, a check of the envelope's
    offset against what the target already holds). ``offsets``: where the offset is
    kept (default: a new :class:`InMemoryOffsetStore`, so a new handler object starts
    from the first event). ``reset()`` (optional, ``async def`` or plain) clears the
    read model when the projection is rebuilt (:class:`Rebuild`), before the offset is
    cleared.
    """

    def __init__(
        self,
        handle: Callable[[list[Envelope]], Awaitable[None] | None],
        *,
        offsets: OffsetStore | None = None,
        reset: Callable[[], Awaitable[None] | None] | None = None,
    ) -> None:
        _callable("handle", handle)
        _callable("reset", reset, optional=True)
        if offsets is not None and not isinstance(offsets, OffsetStore):
            raise TypeError(
                f"offsets must be an OffsetStore (InMemoryOffsetStore, SqliteOffsetStore, "
                f"PostgresOffsetStore), got {type(offsets).__name__}"
            )
        self.handle = handle
        self.offsets: OffsetStore = InMemoryOffsetStore() if offsets is None else offsets
        self.reset = reset

    def _session(self, name: str, key: str) -> HandlerSession:
        return _AtLeastOnceSession(self, name, key)


class _AtLeastOnceSession(HandlerSession):
    def __init__(self, handler: AtLeastOnce, name: str, key: str) -> None:
        self._handler = handler
        self._name = name
        self._key = key

    async def open(self) -> int:
        stored = await self._handler.offsets.load(self._name, self._key)
        return 0 if stored is None else stored

    async def process(self, envelopes: list[Envelope], offset: int) -> None:
        if envelopes:
            await _maybe_await(self._handler.handle(envelopes))
        await self._handler.offsets.save(self._name, self._key, offset)

    async def reset(self) -> None:
        if self._handler.reset is not None:
            await _maybe_await(self._handler.reset())
        await self._handler.offsets.clear(self._name, self._key)

    async def close(self) -> None:
        await trio.lowlevel.checkpoint()


# -- exactly once, on a SQL database -----------------------------------------------------


class _SqlSession(HandlerSession):
    """A session on one connection of its own, opened in :meth:`open` and used from
    worker threads, one call at a time. ``expected`` is the offset this session read or
    last committed (``None``: no row), which every commit fences on."""

    def __init__(self, name: str, key: str, sql: OffsetSql, where: str) -> None:
        self._name = name
        self._key = key
        self._sql = sql
        self._where = where
        self._conn: Any = None
        self._expected: int | None = None

    @abc.abstractmethod
    def _connect(self) -> Any:
        """In a thread: a new connection."""

    @abc.abstractmethod
    def _transaction(self, conn: Any, body: Callable[[], None], store: Callable[[], None]) -> None:
        """In a thread: ``body()`` then ``store()`` in one transaction, committed if both
        return, rolled back otherwise."""

    @abc.abstractmethod
    def _setup(self, conn: Any) -> None:
        """In a thread, in the open transaction: the user's ``setup`` hook, if any."""

    async def open(self) -> int:
        sql, name, key = self._sql, self._name, self._key

        def run() -> int | None:
            conn = self._connect()
            found: list[int | None] = []

            def prepare() -> None:
                conn.execute(sql.create)
                self._setup(conn)

            try:
                self._transaction(
                    conn, prepare, lambda: found.append(read_offset(conn, sql, name, key))
                )
            except BaseException:
                conn.close()
                raise
            self._conn = conn
            return found[0]

        try:
            self._expected = await trio.to_thread.run_sync(run)
        except Exception as error:
            raise ProjectionError(
                f"projection {name!r} cannot open its read model in {self._where}: "
                f"{type(error).__name__}: {error}"
            ) from error
        return 0 if self._expected is None else self._expected

    async def process(self, envelopes: list[Envelope], offset: int) -> None:
        conn, sql, name, key = self._conn, self._sql, self._name, self._key
        expected = self._expected
        handle = self._handle

        def body() -> None:
            if envelopes:
                handle(conn, envelopes)

        def store() -> None:
            store_fenced(conn, sql, name, key, expected, offset, self._duplicate())

        await trio.to_thread.run_sync(self._transaction, conn, body, store)
        self._expected = offset

    async def reset(self) -> None:
        conn, sql, name, key = self._conn, self._sql, self._name, self._key
        hook = self._reset

        def body() -> None:
            if hook is not None:
                hook(conn)

        def store() -> None:
            conn.execute(sql.delete, (name, key))

        await trio.to_thread.run_sync(self._transaction, conn, body, store)
        self._expected = None

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            await trio.lowlevel.checkpoint()
            return

        def close() -> None:
            try:
                conn.close()
            except Exception as error:  # closing a broken connection: nothing to do
                del error

        await trio.to_thread.run_sync(close)

    _handle: Callable[[Any, list[Envelope]], None]
    _reset: Callable[[Any], None] | None

    @abc.abstractmethod
    def _duplicate(self) -> type[Exception]:
        """The driver's error for a primary key already taken."""


class SqliteExactlyOnce(ProjectionHandler):
    """An exactly-once projection handler on the SQLite database at ``path`` (created
    if missing, put in WAL mode): ``handle(conn, envelopes)`` updates the read model
    with the ``sqlite3`` connection ``conn``, and the projection stores the offset of the
    batch's last event in the table ``table`` of the same database, in the same
    transaction. Either both commit or neither does: after a crash at any moment, no
    event is lost and none is applied twice.

    ``handle`` runs in a worker thread (``trio.to_thread``), inside a transaction the
    projection began (``BEGIN IMMEDIATE``): it must not commit or roll back (doing so is
    an error: :class:`ProjectionError`). Raising rolls the batch back; the projection
    backs off and retries it. ``setup(conn)`` (optional) runs when the projection
    starts, in a transaction with the creation of the offsets table: create the read
    model's tables there (``CREATE TABLE IF NOT EXISTS``). ``reset(conn)`` (optional)
    runs when the projection is rebuilt (:class:`Rebuild`), in the transaction that
    deletes the stored offset: clear the read model there.

    The offset row is also a fence: a commit that does not find the offset this
    instance read or last wrote fails with :class:`OffsetConflict` (a second instance
    of the same projection committed meanwhile). A stop waits for a batch in its thread
    to commit or roll back. ``busy_timeout``: seconds to wait for a lock held by another
    connection (the journal's own, if the read model shares its file).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        handle: Callable[[Any, list[Envelope]], None],
        *,
        setup: Callable[[Any], None] | None = None,
        reset: Callable[[Any], None] | None = None,
        table: str = DEFAULT_TABLE,
        busy_timeout: float = 10.0,
    ) -> None:
        _callable("handle", handle)
        _callable("setup", setup, optional=True)
        _callable("reset", reset, optional=True)
        check_identifier("table", table)
        self.path = os.fspath(path)
        self.handle = handle
        self.setup = setup
        self.reset = reset
        self.table = table
        self.busy_timeout = busy_timeout

    def _session(self, name: str, key: str) -> HandlerSession:
        return _SqliteSession(self, name, key)


class _SqliteSession(_SqlSession):
    def __init__(self, handler: SqliteExactlyOnce, name: str, key: str) -> None:
        super().__init__(
            name, key, sqlite_statements(handler.table), f"SQLite database {handler.path}"
        )
        self._handler = handler
        self._handle = handler.handle
        self._reset = handler.reset

    def _connect(self) -> Any:
        return connect_sqlite(self._handler.path, self._handler.busy_timeout)

    def _transaction(self, conn: Any, body: Callable[[], None], store: Callable[[], None]) -> None:
        in_sqlite_transaction(conn, self._name, body, store)

    def _setup(self, conn: Any) -> None:
        if self._handler.setup is not None:
            self._handler.setup(conn)

    def _duplicate(self) -> type[Exception]:
        import sqlite3

        return sqlite3.IntegrityError


class PostgresExactlyOnce(ProjectionHandler):
    """An exactly-once projection handler on the PostgreSQL database at ``dsn`` (needs
    psycopg: the ``postgres`` extra): ``handle(conn, envelopes)`` updates the read model
    with the psycopg (synchronous) connection ``conn``, and the projection stores the
    offset of the batch's last event in the table ``table`` of ``schema`` (both created
    if missing; ``None``: the connection's current schema), in the same transaction.
    Either both commit or neither does.

    ``handle`` runs in a worker thread, inside ``conn.transaction()``: it must not
    commit or roll back (psycopg refuses it: the batch fails). Raising rolls the batch
    back; the projection backs off and retries it. ``setup(conn)`` and ``reset(conn)``
    are as for :class:`SqliteExactlyOnce`, and so is the fence
    (:class:`OffsetConflict`). A connection lost mid-batch fails the batch (nothing of it
    committed); the projection reconnects when it retries. A ``COMMIT`` whose outcome is
    unknown is safe too: the retry reads the stored offset again.
    """

    def __init__(
        self,
        dsn: str,
        handle: Callable[[Any, list[Envelope]], None],
        *,
        setup: Callable[[Any], None] | None = None,
        reset: Callable[[Any], None] | None = None,
        schema: str | None = None,
        table: str = DEFAULT_TABLE,
        connect_timeout: float = 10.0,
    ) -> None:
        _callable("handle", handle)
        _callable("setup", setup, optional=True)
        _callable("reset", reset, optional=True)
        check_identifier("table", table)
        if schema is not None:
            check_identifier("schema", schema)
        self.dsn = dsn
        self.handle = handle
        self.setup = setup
        self.reset = reset
        self.schema = schema
        self.table = table
        self.connect_timeout = connect_timeout

    def _session(self, name: str, key: str) -> HandlerSession:
        return _PostgresSession(self, name, key)


class _PostgresSession(_SqlSession):
    def __init__(self, handler: PostgresExactlyOnce, name: str, key: str) -> None:
        super().__init__(
            name,
            key,
            postgres_statements(handler.schema, handler.table),
            where_postgres(handler.dsn),
        )
        self._handler = handler
        self._handle = handler.handle
        self._reset = handler.reset

    def _connect(self) -> Any:
        handler = self._handler
        return connect_postgres(handler.dsn, handler.connect_timeout, handler.schema)

    def _transaction(self, conn: Any, body: Callable[[], None], store: Callable[[], None]) -> None:
        with conn.transaction():
            body()
            store()

    def _setup(self, conn: Any) -> None:
        if self._handler.setup is not None:
            self._handler.setup(conn)

    def _duplicate(self) -> type[Exception]:
        from psycopg import errors

        return errors.UniqueViolation
