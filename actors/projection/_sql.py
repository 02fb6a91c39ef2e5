"""The offsets table of projections in a SQL database (SQLite or PostgreSQL), and the
blocking functions that read and write it, run in worker threads by the handlers and
offset stores (:mod:`._handlers`, :mod:`._offsets`).

One row per projection name and key holds the offset of the last event whose effect
is committed. An exactly-once handler moves it in the transaction of its read-model
update, *fenced*: the row must still hold the offset this projection instance read or
last wrote (an ``UPDATE ... WHERE current_offset = <expected>`` that must change one
row, or an ``INSERT`` that must not collide), so that a second instance of the same
projection cannot commit a batch twice without the other noticing
(:class:`OffsetConflict`).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from typing import Any

import attrs

from ._model import OffsetConflict, ProjectionError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

DEFAULT_TABLE = "projection_offsets"
"""The table that holds the offsets of projections, unless told otherwise."""


def check_identifier(what: str, value: object) -> str:
    """``value`` if it is a plain SQL identifier (letters, digits, ``_``; not starting
    with a digit), else :class:`ValueError` naming ``what`` and the rule."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValueError(
            f"{what} must be a plain SQL identifier (letters, digits and _, not starting "
            f"with a digit), got {value!r}"
        )
    return value


@attrs.frozen
class OffsetSql:
    """The statements on one offsets table, for one driver's parameter style."""

    create: str
    select: str
    insert: str
    update: str
    upsert: str
    delete: str

    @classmethod
    def build(cls, table: str, *, param: str, integer: str, real: str) -> OffsetSql:
        """The statements on ``table`` (already quoted or qualified as the driver needs),
        ``param`` the parameter marker, ``integer`` and ``real`` the column types."""
        p = param
        where = f"projection_name = {p} AND projection_key = {p}"
        columns = "(projection_name, projection_key, current_offset, updated_at)"
        return cls(
            create=(
                f"CREATE TABLE IF NOT EXISTS {table} (projection_name TEXT NOT NULL, "
                f"projection_key TEXT NOT NULL, current_offset {integer} NOT NULL, "
                f"updated_at {real} NOT NULL, PRIMARY KEY (projection_name, projection_key))"
            ),
            select=f"SELECT current_offset FROM {table} WHERE {where}",
            insert=f"INSERT INTO {table} {columns} VALUES ({p}, {p}, {p}, {p})",
            update=(
                f"UPDATE {table} SET current_offset = {p}, updated_at = {p} "
                f"WHERE {where} AND current_offset = {p}"
            ),
            upsert=(
                f"INSERT INTO {table} {columns} VALUES ({p}, {p}, {p}, {p}) "
                "ON CONFLICT (projection_name, projection_key) DO UPDATE SET "
                "current_offset = excluded.current_offset, updated_at = excluded.updated_at"
            ),
            delete=f"DELETE FROM {table} WHERE {where}",
        )


def sqlite_statements(table: str) -> OffsetSql:
    return OffsetSql.build(
        check_identifier("table", table), param="?", integer="INTEGER", real="REAL"
    )


def read_offset(conn: Any, sql: OffsetSql, name: str, key: str) -> int | None:
    """The stored offset of the projection, or ``None`` if it has none."""
    row = conn.execute(sql.select, (name, key)).fetchone()
    return None if row is None else int(row[0])


def store_fenced(
    conn: Any,
    sql: OffsetSql,
    name: str,
    key: str,
    expected: int | None,
    offset: int,
    duplicate: type[Exception],
) -> None:
    """In the caller's transaction: move the stored offset from ``expected`` (``None``:
    no row yet) to ``offset``. :class:`OffsetConflict` if the row is not as expected
    (``duplicate``: the driver's error for a primary key already taken)."""
    now = time.time()
    if expected is None:
        try:
            conn.execute(sql.insert, (name, key, offset, now))
        except duplicate as error:
            raise _conflict(name, key, expected, offset) from error
        return
    changed = conn.execute(sql.update, (offset, now, name, key, expected)).rowcount
    if changed != 1:
        raise _conflict(name, key, expected, offset)


def _conflict(name: str, key: str, expected: int | None, offset: int) -> OffsetConflict:
    was = "no stored offset" if expected is None else f"the stored offset {expected}"
    return OffsetConflict(
        f"projection {name!r} (key {key!r}) expected {was}, as this instance left it, "
        f"but the offsets table holds another: another instance of the projection is "
        f"running, or the offset was changed by hand; the batch up to offset {offset} "
        "was not committed (the projection reads the stored offset again and goes on "
        "from there)"
    )


def in_sqlite_transaction(
    conn: Any, name: str, handle: Callable[[], None], store: Callable[[], None]
) -> None:
    """``handle()`` then ``store()`` in one ``BEGIN IMMEDIATE`` transaction of the
    SQLite ``conn`` (autocommit mode): committed if both return, rolled back if either
    raises. A ``handle`` that ended the transaction itself (a ``COMMIT`` of its own) is
    an error, :class:`ProjectionError`, raised before the offset is stored."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        handle()
        if not conn.in_transaction:
            raise ProjectionError(
                f"the handler of projection {name!r} ended the transaction (COMMIT or "
                "ROLLBACK, or a statement that commits): its changes were committed "
                "without the offset, so the events of this batch will be handed to it "
                "again; remove the commit from the handler (the projection commits the "
                "transaction, with the offset, after the handler returns)"
            )
        store()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(Exception):  # the connection is dropped after a failure
                conn.execute("ROLLBACK")
        raise


def connect_sqlite(path: str, busy_timeout: float) -> Any:
    """A connection to the SQLite database at ``path`` for a projection, in autocommit
    mode (transactions are begun explicitly), usable from any worker thread (one at a
    time), in WAL mode (so that readers of the read model do not block the projection),
    waiting up to ``busy_timeout`` seconds for a lock held by another connection."""
    import sqlite3

    conn = sqlite3.connect(
        path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


def postgres_table(schema: str | None, table: str) -> str:
    """``"schema"."table"`` (or ``"table"``) for PostgreSQL, both checked plain
    identifiers (so that quoting them is safe)."""
    check_identifier("table", table)
    if schema is None:
        return f'"{table}"'
    return f'"{check_identifier("schema", schema)}"."{table}"'


def postgres_statements(schema: str | None, table: str) -> OffsetSql:
    return OffsetSql.build(
        postgres_table(schema, table), param="%s", integer="BIGINT", real="DOUBLE PRECISION"
    )


def connect_postgres(dsn: str, connect_timeout: float, schema: str | None) -> Any:
    """A psycopg connection for a projection (autocommit: transactions are begun with
    ``conn.transaction()``), with ``schema`` created if it is given and missing."""
    import math

    import psycopg

    conn = psycopg.connect(
        dsn,
        autocommit=True,
        connect_timeout=max(2, math.ceil(connect_timeout)),
        application_name="trio-actors projection",
    )
    try:
        if schema is not None:
            conn.execute(f'CREATE SCHEMA IF NOT EXISTS "{check_identifier("schema", schema)}"')
    except BaseException:
        conn.close()
        raise
    return conn


def where_postgres(dsn: str) -> str:
    """Where ``dsn`` points, for messages (never the password)."""
    from ..persistence._postgres import describe_dsn

    return describe_dsn(dsn)
