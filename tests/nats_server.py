"""Throwaway NATS servers (``nats-server`` with JetStream) for the cluster tests.

:class:`NatsServer` runs one ``nats-server`` process on 127.0.0.1 with JetStream, its
configuration file, store directory, ports file and log in a temporary directory of its
own. Options: user/password authentication, TLS (a certificate and key; required of
every client), and membership in a NATS cluster (a cluster name, a route
port and the routes to the other servers). :func:`start_cluster` starts several servers
joined by routes and waits until their JetStream cluster has a leader.

The ports are the server's choice on the first start (``-1``: no race with other
processes for a free port; it reports them in its ports file), then kept: :meth:`start`
after :meth:`stop` or :meth:`kill` (and :meth:`restart`) reuses the same client port, the
same monitoring port and the same store directory, so clients reconnect to the same URL
and JetStream data (streams, key-value buckets) persists. Route ports are chosen before
the first start (:func:`free_port`), because every server of a cluster lists every
other's route URL in its configuration.

Processes are stopped by PID (SIGTERM, then SIGKILL after a deadline) and are in the
test process's session and process group, so a Ctrl-C in the terminal reaches them too;
the fixtures stop them in their finalizers, and an :mod:`atexit` hook kills any still
running when the interpreter exits. Only the standard library is used, so this module
also serves subprocess scripts and benchmarks.

``nats-server`` is looked up by :func:`find_nats_server`. Without it the NATS tests are
skipped with :data:`SKIP_HINT`, unless a server is *required* (:func:`server_required`:
``CI`` is a true value or ``ACTORS_TEST_NATS_REQUIRED=1``), and then they fail.
"""

from __future__ import annotations

import atexit
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

REQUIRED_VARIABLE = "ACTORS_TEST_NATS_REQUIRED"
SKIP_HINT = "install nats-server: apt-get install nats-server"
HOST = "127.0.0.1"
START_TIMEOUT = 10.0
"""Seconds :meth:`NatsServer.start` waits for the server to accept clients."""
STOP_TIMEOUT = 10.0
"""Seconds :meth:`NatsServer.stop` waits after SIGTERM before it sends SIGKILL."""
_POLL_INTERVAL = 0.02
_LOG_TAIL_LINES = 30


class Unavailable(Exception):
    """A NATS server could not be started or is not ready; the message says why and
    ends with the tail of the server's log."""


def server_required() -> bool:
    """Whether a missing server fails the tests instead of skipping them: ``CI`` is a true
    value, or ``ACTORS_TEST_NATS_REQUIRED`` is."""
    truthy = {"1", "true", "yes", "on"}
    ci = os.environ.get("CI", "").strip().lower()
    required = os.environ.get(REQUIRED_VARIABLE, "").strip().lower()
    return ci in truthy or required in truthy


def find_nats_server() -> str | None:
    """The path of ``nats-server``: on ``PATH``, else ``/usr/sbin`` (where Debian puts it,
    often not on a user's ``PATH``), else ``/usr/bin``; ``None`` if there is none."""
    found = shutil.which("nats-server")
    if found:
        return found
    for candidate in ("/usr/sbin/nats-server", "/usr/bin/nats-server"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now (another process may take it before it is
    used: only for the route ports, which must be known before the servers start)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def _conf_string(value: str | Path) -> str:
    # NATS configuration strings are double-quoted with JSON's escapes.
    return json.dumps(str(value))


_running: set[NatsServer] = set()


@atexit.register
def _kill_survivors() -> None:
    """Kill the servers still running when the interpreter exits (a fixture finalizer
    that never ran, or a script that forgot to stop its server)."""
    for server in list(_running):
        server.kill()


class NatsServer:
    """One throwaway ``nats-server`` with JetStream on 127.0.0.1.

    Nothing runs until :meth:`start`. Use as a context manager (start, then
    :meth:`close`), or call :meth:`start` and :meth:`close` yourself. ``user`` and
    ``password`` require them of every client. ``tls_cert`` and ``tls_key`` (PEM files)
    make TLS required of every client. (Not optional TLS, nats-server's
    ``allow_non_tls``: its ``INFO`` then says ``tls_available``, not ``tls_required``,
    and nats-py 2.16 connects in plain text, even to a ``tls://`` URL with a TLS
    context.) ``cluster_name`` makes it a member of a NATS cluster: it
    listens for routes on ``cluster_port`` (a free port if not given) and connects to
    ``routes`` (``nats://host:port`` route URLs; listing the server's own route URL too
    is fine, it is ignored), which may be changed until :meth:`start`. JetStream in a
    cluster needs the routes and a unique ``server_name`` (by default the name of the
    server's temporary directory, unique on this machine).
    """

    def __init__(
        self,
        *,
        binary: str | None = None,
        user: str | None = None,
        password: str | None = None,
        tls_cert: str | Path | None = None,
        tls_key: str | Path | None = None,
        cluster_name: str | None = None,
        cluster_port: int | None = None,
        routes: Iterable[str] = (),
        server_name: str | None = None,
        jetstream: bool = True,
    ) -> None:
        found = binary or find_nats_server()
        if found is None:
            where = "on PATH, in /usr/sbin or in /usr/bin"
            raise Unavailable(f"nats-server not found {where} ({SKIP_HINT})")
        if (user is None) != (password is None):
            raise ValueError("give both user and password, or neither")
        if (tls_cert is None) != (tls_key is None):
            raise ValueError("give both tls_cert and tls_key (PEM files), or neither")
        route_list = list(routes)
        if cluster_name is None and (cluster_port is not None or route_list):
            raise ValueError("cluster_port and routes need a cluster_name")
        self.binary = found
        self.user = user
        self.password = password
        self.tls_cert = Path(tls_cert) if tls_cert is not None else None
        self.tls_key = Path(tls_key) if tls_key is not None else None
        self.cluster_name = cluster_name
        self.cluster_port = (
            (cluster_port if cluster_port is not None else free_port()) if cluster_name else None
        )
        self.routes: list[str] = route_list
        self.jetstream = jetstream
        self.directory = Path(tempfile.mkdtemp(prefix="actors-nats-"))
        self.server_name = server_name or self.directory.name
        self.store_dir = self.directory / "store"
        self.config_path = self.directory / "server.conf"
        self.log_path = self.directory / "server.log"
        self.port: int | None = None
        """The client port: ``None`` until the first :meth:`start`, then kept."""
        self.monitor_port: int | None = None
        """The HTTP monitoring port (``/healthz``, ``/varz``): as :attr:`port`."""
        self.info: dict[str, Any] = {}
        """The server's ``INFO`` (a JSON object) read by the last :meth:`start`."""
        self._process: subprocess.Popen[bytes] | None = None
        self._closed = False

    # -- addresses ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``nats://127.0.0.1:PORT`` (a client upgrades to TLS when the server requires
        it)."""
        return f"nats://{HOST}:{self._started_port()}"

    @property
    def tls_url(self) -> str:
        """``tls://127.0.0.1:PORT``: the same port, TLS from the start."""
        return f"tls://{HOST}:{self._started_port()}"

    @property
    def cluster_url(self) -> str:
        """The route URL other cluster members list in their ``routes``."""
        if self.cluster_port is None:
            raise ValueError("this server is not in a cluster (no cluster_name)")
        return f"nats://{HOST}:{self.cluster_port}"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs, else ``None``."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def returncode(self) -> int | None:
        """The last process's exit status (negative: the signal that ended it), or
        ``None`` if it runs or never ran."""
        return None if self._process is None else self._process.poll()

    def _started_port(self) -> int:
        if self.port is None:
            raise ValueError("the server has no port yet: start() it first")
        return self.port

    # -- lifecycle ---------------------------------------------------------------------

    def start(self, *, timeout: float = START_TIMEOUT) -> None:
        """Start the server and wait until it accepts clients (a TCP connection gets the
        server's ``INFO`` line) and, outside a cluster, its JetStream is ready. A
        cluster member's JetStream needs the other members: see :func:`start_cluster` and
        :meth:`wait_jetstream`. Raises :class:`Unavailable` (with the log's tail) if the
        server exits or is not ready within ``timeout`` seconds; the process is killed
        then. After :meth:`stop` or :meth:`kill` it starts again on the same ports and
        store."""
        if self._closed:
            raise ValueError("this NatsServer was closed; make a new one")
        if self.running:
            raise ValueError(f"the server is already running (pid {self.pid})")
        deadline = time.monotonic() + timeout
        self.config_path.write_text(self._config())
        with open(self.log_path, "ab") as output:
            # stdout/stderr (anything before the log file is open) go to the log too.
            self._process = subprocess.Popen(
                [self.binary, "-c", str(self.config_path), "-l", str(self.log_path)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.directory,
                start_new_session=False,
            )
        _running.add(self)
        try:
            self._wait_for_ports(deadline)
            self.info = self._wait_for_info(deadline)
            if self.jetstream and self.cluster_name is None:
                self.wait_jetstream(timeout=max(0.0, deadline - time.monotonic()))
        except BaseException:
            self.kill()
            raise

    def wait_jetstream(self, *, timeout: float = START_TIMEOUT) -> None:
        """Wait until the server's ``/healthz`` says JetStream is ready (in a cluster:
        the cluster has elected its meta leader and this server knows it). Raises
        :class:`Unavailable` with the last answer and the log's tail on the deadline."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while True:
            self._check_alive()
            last = self._healthz()
            if last == "ok":
                return
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"nats-server's JetStream not ready after {timeout:g} s "
                    f"(/healthz: {last}){self._log_excerpt()}"
                )
            time.sleep(_POLL_INTERVAL)

    def stop(self, *, timeout: float = STOP_TIMEOUT) -> None:
        """Stop the server: SIGTERM (a clean shutdown, JetStream data flushed; the exit
        status is then 1), then SIGKILL if it has not exited after ``timeout`` seconds.
        Does nothing if it is not running; safe to call again."""
        process = self._process
        if process is None:
            return
        try:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(process.pid, signal.SIGKILL)
                    process.wait()
        finally:
            _running.discard(self)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would; safe to call again."""
        process = self._process
        if process is None:
            return
        try:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)
            process.wait()
        finally:
            _running.discard(self)

    def restart(self, *, timeout: float = START_TIMEOUT) -> None:
        """:meth:`stop`, then :meth:`start` on the same ports and store directory."""
        self.stop()
        self.start(timeout=timeout)

    def close(self) -> None:
        """Stop the server and remove its temporary directory (store and log too).
        Safe to call again."""
        try:
            self.stop()
        finally:
            self._closed = True
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> NatsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.url if self.port is not None else "not started"
        state = f"pid {self.pid}" if self.running else "not running"
        return f"<NatsServer {self.server_name} {where} {state}>"

    # -- the log -----------------------------------------------------------------------

    def log_tail(self, lines: int = _LOG_TAIL_LINES) -> str:
        """The last ``lines`` lines of the server's log (empty if there is none)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _log_excerpt(self) -> str:
        tail = self.log_tail()
        return f"; the end of its log ({self.log_path}):\n{tail}" if tail else ""

    # -- internals ---------------------------------------------------------------------

    def _config(self) -> str:
        port = self.port if self.port is not None else -1
        monitor_port = self.monitor_port if self.monitor_port is not None else -1
        lines = [
            f"host: {_conf_string(HOST)}",
            f"port: {port}",
            f"http: {_conf_string(f'{HOST}:{monitor_port}')}",
            f"server_name: {_conf_string(self.server_name)}",
            f"ports_file_dir: {_conf_string(self.directory)}",
        ]
        if self.jetstream:
            lines.append(f"jetstream {{ store_dir: {_conf_string(self.store_dir)} }}")
        if self.user is not None and self.password is not None:
            lines.append(
                f"authorization {{ user: {_conf_string(self.user)}, "
                f"password: {_conf_string(self.password)} }}"
            )
        if self.tls_cert is not None and self.tls_key is not None:
            lines.append(
                f"tls {{ cert_file: {_conf_string(self.tls_cert)}, "
                f"key_file: {_conf_string(self.tls_key)} }}"
            )
        if self.cluster_name is not None:
            routes = ", ".join(_conf_string(route) for route in self.routes)
            lines.append(
                f"cluster {{ name: {_conf_string(self.cluster_name)}, "
                f"listen: {_conf_string(f'{HOST}:{self.cluster_port}')}, routes: [{routes}] }}"
            )
        return "\n".join(lines) + "\n"

    def _check_alive(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            code = None if process is None else process.returncode
            raise Unavailable(f"nats-server exited (status {code}){self._log_excerpt()}")

    def _wait_for_ports(self, deadline: float) -> None:
        """Learn the ports the server chose (its ports file, written once it listens)."""
        assert self._process is not None
        if self.port is not None and self.monitor_port is not None:
            return
        ports_file = self.directory / f"{Path(self.binary).name}_{self._process.pid}.ports"
        while True:
            self._check_alive()
            try:
                ports = json.loads(ports_file.read_text())
                client = str(ports["nats"][0])
                monitoring = str(ports["monitoring"][0])
            except (OSError, ValueError, KeyError, IndexError):
                pass  # not written yet, or half written
            else:
                self.port = int(client.rsplit(":", 1)[1])
                self.monitor_port = int(monitoring.rsplit(":", 1)[1])
                return
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"nats-server wrote no ports file ({ports_file}) in time{self._log_excerpt()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _wait_for_info(self, deadline: float) -> dict[str, Any]:
        """Connect until the server sends its ``INFO`` line (it accepts clients)."""
        port = self._started_port()
        problem = "no connection"
        while True:
            self._check_alive()
            try:
                with socket.create_connection((HOST, port), timeout=1.0) as sock:
                    line = sock.makefile("rb").readline(1 << 16)
                if line.startswith(b"INFO "):
                    info: dict[str, Any] = json.loads(line[5:])
                    return info
                problem = f"unexpected greeting {line[:80]!r}"
            except (OSError, ValueError) as error:
                problem = str(error)
            if time.monotonic() >= deadline:
                raise Unavailable(
                    f"nats-server on {HOST}:{port} does not accept clients ({problem})"
                    f"{self._log_excerpt()}"
                )
            time.sleep(_POLL_INTERVAL)

    def _healthz(self) -> str:
        """``ok``, or what ``/healthz`` says is wrong."""
        if self.monitor_port is None:
            return "no monitoring port yet"
        connection = http.client.HTTPConnection(HOST, self.monitor_port, timeout=2.0)
        try:
            connection.request("GET", "/healthz")
            body = connection.getresponse().read()
        except OSError as error:
            return str(error)
        finally:
            connection.close()
        try:
            answer = json.loads(body)
        except ValueError:
            return repr(body[:200])
        if answer.get("status") == "ok":
            return "ok"
        return str(answer.get("error") or answer)


def start_cluster(
    size: int = 2,
    *,
    cluster_name: str = "actors-test",
    timeout: float = START_TIMEOUT,
    **options: Any,
) -> list[NatsServer]:
    """Start ``size`` servers joined by routes into one NATS cluster (each lists every
    route URL), and wait until each accepts clients and their JetStream cluster is ready.
    ``options`` are passed to every :class:`NatsServer`. On failure every server is
    closed and :class:`Unavailable` raised; on success the caller closes them."""
    if size < 1:
        raise ValueError(f"a cluster needs at least one server, not {size}")
    servers: list[NatsServer] = []
    try:
        for _ in range(size):
            servers.append(NatsServer(cluster_name=cluster_name, **options))
        routes = [server.cluster_url for server in servers]
        for server in servers:
            server.routes = list(routes)
            server.start(timeout=timeout)
        for server in servers:
            server.wait_jetstream(timeout=timeout)
    except BaseException:
        close_all(servers)
        raise
    return servers


@dataclass(frozen=True)
class NatsTls:
    """A server that requires TLS, and what a client needs to trust it."""

    server: NatsServer
    url: str
    """``tls://127.0.0.1:PORT``."""
    ca_pem: Path
    """The certificate authority's certificate (PEM) that signed the server's."""
    ssl_context: ssl.SSLContext
    """A client context that trusts the CA (and verifies the server's name)."""


def close_all(servers: Sequence[NatsServer]) -> None:
    """Close every server, even if closing one fails (the first error is raised)."""
    errors: list[Exception] = []
    for server in servers:
        try:
            server.close()
        except Exception as error:
            errors.append(error)
    if errors:
        raise errors[0]
