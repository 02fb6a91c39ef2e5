"""Fixtures shared by the test modules: a PostgreSQL server for the session."""

from __future__ import annotations

import os
from collections.abc import Iterator

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
