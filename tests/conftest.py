"""Fixtures shared by the test modules: a PostgreSQL server for the session, a SQL
journal on either backend, and throwaway NATS servers (alone, with authentication, with
TLS, or two in a cluster) for the cluster tests."""

from __future__ import annotations

import os
import sqlite3
import ssl
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager, closing
from pathlib import Path
from typing import Any, NoReturn

import nats_server as nats_servers
import pytest
from nats_server import NatsServer, NatsTls
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


# -- NATS servers for the cluster tests (see nats_server.py) ------------------------------
# Each fixture starts its own throwaway nats-server(s) with JetStream on free ports of
# 127.0.0.1 and stops them (by PID) and removes their directories in its finalizer. Without
# the nats-server binary the tests that use them are skipped with the reason, or fail
# where a server is required (CI, or ACTORS_TEST_NATS_REQUIRED=1). A server that is there
# but does not start fails the test, with the end of the server's log.

NATS_TEST_USER = "actors-test"
NATS_TEST_PASSWORD = "actors-test-password"


def _nats_cannot_run(reason: str) -> NoReturn:
    if nats_servers.server_required():
        pytest.fail(f"NATS tests cannot run (a nats-server is required here): {reason}")
    pytest.skip(f"NATS tests skipped: {reason}")


def _start_nats(server: NatsServer) -> NatsServer:
    try:
        server.start()
    except nats_servers.Unavailable as error:
        server.close()
        pytest.fail(f"nats-server did not start: {error}")
    return server


@pytest.fixture
def nats_server_binary() -> str:
    """The path of the nats-server binary (for tests that make their own servers)."""
    binary = nats_servers.find_nats_server()
    if binary is None:
        where = "on PATH, in /usr/sbin or in /usr/bin"
        _nats_cannot_run(f"no nats-server {where} ({nats_servers.SKIP_HINT})")
    return binary


@pytest.fixture
def nats_server(nats_server_binary: str) -> Iterator[NatsServer]:
    """A started nats-server with JetStream, for this test only."""
    server = _start_nats(NatsServer(binary=nats_server_binary))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    """The URL (``nats://127.0.0.1:PORT``) of the test's :func:`nats_server`."""
    return nats_server.url


@pytest.fixture
def nats_auth_server(nats_server_binary: str) -> Iterator[NatsServer]:
    """A started nats-server that requires a user and password of every client: its
    ``user`` and ``password`` attributes."""
    server = _start_nats(
        NatsServer(binary=nats_server_binary, user=NATS_TEST_USER, password=NATS_TEST_PASSWORD)
    )
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def nats_tls(nats_server_binary: str, tmp_path: Path) -> Iterator[NatsTls]:
    """A started nats-server that requires TLS of every client, with a certificate for
    127.0.0.1 and localhost from a throwaway CA (trustme): its ``tls://`` URL, the CA's
    PEM file and a client ``ssl.SSLContext`` that trusts it."""
    import trustme

    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "localhost")
    ca_pem = tmp_path / "nats-ca.pem"
    cert_pem = tmp_path / "nats-server-cert.pem"
    key_pem = tmp_path / "nats-server-key.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    issued.private_key_pem.write_to_path(str(key_pem))
    for index, blob in enumerate(issued.cert_chain_pems):
        blob.write_to_path(str(cert_pem), append=index > 0)
    server = _start_nats(NatsServer(binary=nats_server_binary, tls_cert=cert_pem, tls_key=key_pem))
    try:
        context = ssl.create_default_context(cafile=str(ca_pem))
        yield NatsTls(server=server, url=server.tls_url, ca_pem=ca_pem, ssl_context=context)
    finally:
        server.close()


@pytest.fixture
def nats_cluster(nats_server_binary: str) -> Iterator[tuple[NatsServer, NatsServer]]:
    """Two started nats-servers joined by routes into one NATS cluster, their JetStream
    cluster ready (replicas 1). Interest (subscriptions) crosses the route asynchronously:
    a message published on one right after a subscription on the other may find no
    subscriber yet."""
    try:
        first, second = nats_servers.start_cluster(2, binary=nats_server_binary)
    except nats_servers.Unavailable as error:
        pytest.fail(f"the NATS cluster did not start: {error}")
    try:
        yield first, second
    finally:
        nats_servers.close_all([first, second])
