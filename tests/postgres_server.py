"""A PostgreSQL server for the tests of the PostgreSQL journal.

:func:`postgres_dsn` gives the DSN of a server to test against, in this order:

1. the environment variable ``ACTORS_TEST_POSTGRES_DSN``, if set (CI starts a server and
   sets it);
2. otherwise a throwaway server started here: ``initdb`` into a temporary directory and
   ``pg_ctl start`` on a free port of 127.0.0.1 (its unix socket in the same temporary
   directory, trust authentication, ``fsync=off``), run as the ``postgres`` user when the
   tests run as root (the server refuses to run as root). It is stopped and its directory
   removed by :meth:`ThrowawayServer.stop` at the end of the test session.

If neither works (or ``psycopg`` is not installed), the PostgreSQL tests are skipped with
the reason, unless a server is *required*: when ``CI`` is set to a true value or
``ACTORS_TEST_POSTGRES_REQUIRED=1``, what would have been a skip is a failure.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

DSN_VARIABLE = "ACTORS_TEST_POSTGRES_DSN"
REQUIRED_VARIABLE = "ACTORS_TEST_POSTGRES_REQUIRED"
SKIP_HINT = f"set {DSN_VARIABLE} or install postgresql"


class Unavailable(Exception):
    """No PostgreSQL server for the tests; the message says why."""


def server_required() -> bool:
    """Whether a missing server fails the tests instead of skipping them."""
    ci = os.environ.get("CI", "").strip().lower()
    required = os.environ.get(REQUIRED_VARIABLE, "").strip().lower()
    truthy = {"1", "true", "yes", "on"}
    return ci in truthy or required in truthy


def find_bin_dir() -> Path:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``: from ``PATH``, else
    the newest ``/usr/lib/postgresql/*/bin`` (Debian keeps them off ``PATH``)."""
    initdb = shutil.which("initdb")
    pg_ctl = shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return Path(pg_ctl).resolve().parent
    candidates = []
    for found in glob.glob("/usr/lib/postgresql/*/bin"):
        version = Path(found).parent.name
        if (Path(found) / "initdb").exists() and (Path(found) / "pg_ctl").exists():
            key = int(version) if version.isdigit() else 0
            candidates.append((key, Path(found)))
    if not candidates:
        raise Unavailable("no initdb/pg_ctl on PATH or in /usr/lib/postgresql/*/bin")
    return max(candidates)[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ThrowawayServer:
    """A PostgreSQL server in a temporary directory, for one test session."""

    def __init__(self) -> None:
        self.bin_dir = find_bin_dir()
        self.as_root = os.geteuid() == 0
        self.directory = Path(tempfile.mkdtemp(prefix="actors-pg-"))
        self.data = self.directory / "data"
        self.log = self.directory / "server.log"
        self.port = free_port()
        self.started = False

    def _command(self, *args: str) -> list[str]:
        if not self.as_root:
            return list(args)
        runuser = shutil.which("runuser")
        if runuser:
            return [runuser, "-u", "postgres", "--", *args]
        su = shutil.which("su")
        if su is None:
            raise Unavailable("running as root, but neither runuser nor su is available")
        return [su, "postgres", "-s", "/bin/sh", "-c", subprocess.list2cmdline(args)]

    def _run(self, *args: str, timeout: float) -> None:
        try:
            subprocess.run(
                self._command(*args),
                check=True,
                capture_output=True,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                cwd=self.directory,
            )
        except subprocess.CalledProcessError as error:
            output = (error.stdout + error.stderr).decode(errors="replace").strip()
            raise Unavailable(f"{Path(args[0]).name} failed: {output[-2000:]}") from error
        except (OSError, subprocess.TimeoutExpired) as error:
            raise Unavailable(f"{Path(args[0]).name} failed: {error}") from error

    def start(self) -> str:
        """Create and start the server; return its DSN."""
        if self.as_root:
            try:
                shutil.chown(self.directory, user="postgres", group=None)
            except (LookupError, OSError) as error:
                raise Unavailable(
                    f"running as root and no usable 'postgres' user: {error}"
                ) from error
        self._run(
            str(self.bin_dir / "initdb"),
            "--pgdata",
            str(self.data),
            "--auth=trust",
            "--username=postgres",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
            timeout=120,
        )
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} "
            f"-c unix_socket_directories={self.directory} -c fsync=off "
            "-c full_page_writes=off -c max_connections=200"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "--pgdata",
            str(self.data),
            "--log",
            str(self.log),
            "--options",
            options,
            "--wait",
            "--timeout=60",
            "start",
            timeout=90,
        )
        self.started = True
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def stop(self) -> None:
        """Stop the server (if started) and remove its directory."""
        try:
            if self.started:
                with contextlib.suppress(Unavailable):
                    self._run(
                        str(self.bin_dir / "pg_ctl"),
                        "--pgdata",
                        str(self.data),
                        "--mode=immediate",
                        "--wait",
                        "stop",
                        timeout=60,
                    )
                self.started = False
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


def check_connection(dsn: str) -> None:
    """Raise :class:`Unavailable` if no connection can be made with ``dsn``."""
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=10, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as error:
        message = " ".join(str(error).split())  # libpq's messages span lines
        raise Unavailable(f"cannot connect to {dsn_without_password(dsn)}: {message}") from error


def dsn_without_password(dsn: str) -> str:
    """``dsn`` for messages: its password (if any) masked."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    try:
        params = conninfo_to_dict(dsn)
    except Exception:
        return "(an unparseable DSN)"
    if "password" in params:
        params["password"] = "***"
    return make_conninfo("", **params)
