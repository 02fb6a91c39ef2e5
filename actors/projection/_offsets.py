"""Where an at-least-once projection keeps its offset: :class:`OffsetStore` and its
three implementations, in memory, in a SQLite file and in PostgreSQL.

(An exactly-once handler keeps its offset itself, in its target database, in the same
transaction as the read-model update: see :mod:`._handlers`.)
"""

from __future__ import annotations

import abc
import os
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import trio

from ._model import ProjectionError
from ._sql import (
    DEFAULT_TABLE,
    OffsetSql,
    check_identifier,
    connect_postgres,
    connect_sqlite,
    postgres_statements,
    read_offset,
    sqlite_statements,
    where_postgres,
)

_T = TypeVar("_T")
_S = TypeVar("_S", bound="OffsetStore")


class OffsetStore(abc.ABC):
    """Where an :class:`AtLeastOnce` projection stores its offset, by projection name
    and key. Several projections may share one store.

    Use it as an async context manager (``async with SqliteOffsetStore(path) as
    offsets:``), or call :meth:`aclose` when done: the projection does not close a store
    it was given. Every method is a trio checkpoint; a failure raises
    :class:`ProjectionError` naming the store, with the driver's error as its cause.
    """

    @abc.abstractmethod
    async def load(self, name: str, key: str) -> int | None:
        """The stored offset of projection ``name`` (``key``), ``None`` if none."""

    @abc.abstractmethod
    async def save(self, name: str, key: str, offset: int) -> None:
        """Store ``offset`` for projection ``name`` (``key``), durably when it returns.
        Cancelled, its outcome is unknown (the older offset may still be there: at
        least once)."""

    @abc.abstractmethod
    async def clear(self, name: str, key: str) -> None:
        """Forget the offset of projection ``name`` (``key``): it starts from the first
        event next time."""

    async def aclose(self) -> None:  # noqa: B027 - optional
        """Release the store's resources (a later call opens them again). The default
        does nothing."""

    async def __aenter__(self: _S) -> _S:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await self.aclose()


class InMemoryOffsetStore(OffsetStore):
    """Offsets in a dict: for tests, and for a read model that lives in memory too (it
    starts from the first event with each new store). A projection actor restarted by
    its supervisor finds the offset where it left it, since the store object outlives
    the actor's incarnations."""

    def __init__(self) -> None:
        self._offsets: dict[tuple[str, str], int] = {}

    async def load(self, name: str, key: str) -> int | None:
        await trio.lowlevel.checkpoint()
        return self._offsets.get((name, key))

    async def save(self, name: str, key: str, offset: int) -> None:
        await trio.lowlevel.checkpoint()
        self._offsets[(name, key)] = offset

    async def clear(self, name: str, key: str) -> None:
        await trio.lowlevel.checkpoint()
        self._offsets.pop((name, key), None)


class _SqlOffsetStore(OffsetStore):
    """A store on one connection, opened on first use (in a worker thread), used by one
    operation at a time, and dropped after a failure (the next operation opens a new
    one)."""

    def __init__(self, sql: OffsetSql, where: str) -> None:
        self._sql = sql
        self._where = where
        self._conn: Any = None
        self._lock = trio.Lock()

    @abc.abstractmethod
    def _connect(self) -> Any:
        """In a thread: a new connection, the table created if missing."""

    async def _run(self, what: str, operation: Callable[[Any], _T]) -> _T:
        def run() -> _T:
            if self._conn is None:
                self._conn = self._connect()
            try:
                return operation(self._conn)
            except BaseException:
                conn, self._conn = self._conn, None
                conn.close()
                raise

        async with self._lock:
            try:
                return await trio.to_thread.run_sync(run)
            except Exception as error:
                raise ProjectionError(
                    f"the offset store in {self._where} failed to {what}: "
                    f"{type(error).__name__}: {error}"
                ) from error

    async def load(self, name: str, key: str) -> int | None:
        sql = self._sql
        return await self._run(
            f"load the offset of {name!r}", lambda conn: read_offset(conn, sql, name, key)
        )

    async def save(self, name: str, key: str, offset: int) -> None:
        import time

        sql = self._sql

        def save(conn: Any) -> None:
            conn.execute(sql.upsert, (name, key, offset, time.time()))

        await self._run(f"save the offset of {name!r}", save)

    async def clear(self, name: str, key: str) -> None:
        sql = self._sql

        def clear(conn: Any) -> None:
            conn.execute(sql.delete, (name, key))

        await self._run(f"clear the offset of {name!r}", clear)

    async def aclose(self) -> None:
        async with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                await trio.to_thread.run_sync(conn.close)
            else:
                await trio.lowlevel.checkpoint()


class SqliteOffsetStore(_SqlOffsetStore):
    """Offsets in the table ``table`` (created if missing) of the SQLite database at
    ``path`` (created if missing, put in WAL mode), one row per projection name and
    key. Each save is one committed statement (durable when it returns).
    ``busy_timeout``: seconds to wait for a lock held by another connection."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        table: str = DEFAULT_TABLE,
        busy_timeout: float = 10.0,
    ) -> None:
        self.path = os.fspath(path)
        self._busy_timeout = busy_timeout
        super().__init__(sqlite_statements(table), f"SQLite database {self.path}")

    def _connect(self) -> Any:
        conn = connect_sqlite(self.path, self._busy_timeout)
        try:
            conn.execute(self._sql.create)
        except BaseException:
            conn.close()
            raise
        return conn


class PostgresOffsetStore(_SqlOffsetStore):
    """Offsets in the table ``table`` of ``schema`` (both created if missing;
    ``None``: the connection's current schema) of the PostgreSQL database at ``dsn``,
    one row per projection name and key (needs psycopg: the ``postgres`` extra). Each
    save is one committed statement."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        table: str = DEFAULT_TABLE,
        connect_timeout: float = 10.0,
    ) -> None:
        if schema is not None:
            check_identifier("schema", schema)
        self._dsn = dsn
        self._schema = schema
        self._connect_timeout = connect_timeout
        super().__init__(postgres_statements(schema, table), where_postgres(dsn))

    def _connect(self) -> Any:
        conn = connect_postgres(self._dsn, self._connect_timeout, self._schema)
        try:
            conn.execute(self._sql.create)
        except BaseException:
            conn.close()
            raise
        return conn
