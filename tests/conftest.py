"""Fixtures shared by the test modules: a PostgreSQL server for the session, and a SQL
journal on either backend."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, closing
from pathlib import Path
from typing import Any

import pytest
from postgres_server import (
    DSN_VARIABLE,
    SKIP_HINT,
    ThrowawayServer,
    Unavailable,
    check_connection,
    server_required,
)


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """The DSN of a PostgreSQL server for this test session: ``ACTORS_TEST_POSTGRES_DSN``
    if set, else a throwaway server started here and removed at the end (see
    ``postgres_server.py``). Without psycopg or a server the tests that use it are
    skipped with the reason, or fail where a server is required (CI)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        if server_required():
            raise
        pytest.skip("PostgreSQL tests skipped: psycopg is not installed (pip install -e '.[test]')")
    server: ThrowawayServer | None = None
    try:
        dsn = os.environ.get(DSN_VARIABLE, "")
        if dsn:
            check_connection(dsn)
        else:
            server = ThrowawayServer()
            dsn = server.start()
            check_connection(dsn)
    except Unavailable as error:
        if server is not None:
            server.stop()
        if server_required():
            pytest.fail(f"PostgreSQL tests cannot run (a server is required here): {error}")
        pytest.skip(f"PostgreSQL tests skipped: no server ({SKIP_HINT}): {error}")
    try:
        yield dsn
    finally:
        if server is not None:
            server.stop()


SqlBackend = tuple[str, Callable[[], AbstractAsyncContextManager[Any]], Callable[[str], None]]
"""``(name, open a journal on the test's database, run admin statements on it)``; in
the admin statements ``{schema}`` names PostgreSQL's schema."""


@pytest.fixture(params=["sqlite", "postgres"])
def sql_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlBackend]:
    """A fresh SQL journal database for the test, on SQLite (a file in ``tmp_path``)
    and on PostgreSQL (a schema of its own, dropped afterwards; skipped as
    :func:`postgres_dsn` says when there is no server)."""
    from actors.persistence import open_sqlite_journal

    if request.param == "sqlite":
        path = tmp_path / "j.db"

        def admin_sqlite(statement: str) -> None:
            with closing(sqlite3.connect(path)) as conn:
                conn.executescript(statement)

        yield "sqlite", lambda: open_sqlite_journal(path), admin_sqlite
        return
    import psycopg

    from actors.persistence import open_postgres_journal

    dsn: str = request.getfixturevalue("postgres_dsn")
    schema = f"test_{uuid.uuid4().hex[:16]}"

    def admin_postgres(statement: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(statement.replace("{schema}", schema).encode())

    yield "postgres", lambda: open_postgres_journal(dsn, schema=schema), admin_postgres
    admin_postgres("DROP SCHEMA IF EXISTS {schema} CASCADE")
