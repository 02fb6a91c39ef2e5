"""The NATS servers of the test fixtures (``nats_server.py`` and ``conftest.py``) really
serve: publish/subscribe, JetStream key-value (compare-and-set refuses a stale revision),
authentication, TLS, a two-server cluster, and JetStream data that survives a restart;
and the servers stop, restart and fail the way ``NatsServer`` documents.

The clients are raw nats-py clients run under trio through trio-asyncio, as the cluster
runtime runs them: one asyncio loop per test (``trio_asyncio.open_loop``) and each
scenario handed over with ``loop.run_aio_coroutine``. Real time, each body bounded by
``trio.fail_after``; nothing sleeps.

Two behaviours of nats-py 2.16 that the helpers below work around (and the runtime
must too): a failed ``connect`` leaves its socket open (a ``ResourceWarning`` later)
unless the client is closed; but after a failed TLS handshake ``close()`` never returns
(the transport was handed to ``start_tls``, which closed it itself), so the client must
not be closed then. And ``max_reconnect_attempts=0`` does not mean "no retries" for the
first connection: a refused connection is retried forever; ``1`` bounds it.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import nats
import nats.errors
import nats.js.errors
import pytest
import trio
import trio_asyncio
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats_server import (
    REQUIRED_VARIABLE,
    NatsServer,
    NatsTls,
    Unavailable,
    find_nats_server,
    server_required,
)

pytestmark = pytest.mark.nats

T = TypeVar("T")

LIMIT = 10.0
"""Seconds any one scenario may take (real time: a hang fails the test)."""

CONNECT_OPTIONS: dict[str, Any] = {
    "allow_reconnect": False,
    # 0 would retry a refused first connection forever (see the module docstring).
    "max_reconnect_attempts": 1,
    "reconnect_time_wait": 0.1,
    "connect_timeout": 2,
}


async def in_asyncio(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``scenario()`` on an asyncio loop of its own, from trio."""
    async with trio_asyncio.open_loop() as loop:
        result: T = await loop.run_aio_coroutine(scenario())
        return result


async def connect(url: str, **options: Any) -> Client:
    """A connected nats-py client that neither reconnects nor retries, or the error that
    refused it (the client cleaned up, see the module docstring)."""
    errors: list[Exception] = []

    async def collect(error: Exception) -> None:
        errors.append(error)  # raised by connect() below; nothing to log twice

    client = Client()
    try:
        await client.connect(url, error_cb=collect, **CONNECT_OPTIONS, **options)
    except ssl.SSLError:
        raise  # the failed handshake closed the socket; close() would hang
    except Exception:
        await client.close()
        raise
    return client


async def connect_error(url: str, **options: Any) -> Exception:
    """The error with which a connection to ``url`` is refused."""
    try:
        client = await connect(url, **options)
    except Exception as error:
        return error
    await client.close()
    raise AssertionError(f"the connection to {url} with {sorted(options)} was accepted")


async def round_trip(client: Client, subject: str, payload: bytes) -> bytes:
    """Subscribe, publish ``payload``, and return what the subscription received."""
    subscription = await client.subscribe(subject)
    await client.publish(subject, payload)
    message = await subscription.next_msg(timeout=LIMIT)
    await subscription.unsubscribe()
    return message.data


# -- one server --------------------------------------------------------------------------


async def test_publish_subscribe_round_trip(nats_url: str) -> None:
    async def scenario() -> bytes:
        client = await connect(nats_url)
        received = await round_trip(client, "test.greeting", b"hello")
        await client.close()
        return received

    with trio.fail_after(LIMIT):
        assert await in_asyncio(scenario) == b"hello"


async def test_key_value_put_get_and_stale_update_refused(nats_url: str) -> None:
    async def scenario() -> tuple[bytes | None, int, bytes | None, Exception]:
        client = await connect(nats_url)
        kv = await client.jetstream().create_key_value(bucket="fixture")
        first = await kv.put("owner", b"node-a")
        value = (await kv.get("owner")).value
        second = await kv.update("owner", b"node-b", last=first)
        try:
            await kv.update("owner", b"node-c", last=first)  # stale: second is the last
        except nats.js.errors.KeyWrongLastSequenceError as error:
            refused: Exception = error
        else:
            raise AssertionError("an update on a stale revision was accepted")
        final = (await kv.get("owner")).value
        await client.close()
        return value, second - first, final, refused

    with trio.fail_after(LIMIT):
        value, step, final, refused = await in_asyncio(scenario)
    assert value == b"node-a"
    assert step == 1
    assert final == b"node-b"
    assert "wrong last sequence" in str(refused)


# -- authentication ---------------------------------------------------------------------


async def test_right_password_connects(nats_auth_server: NatsServer) -> None:
    server = nats_auth_server

    async def scenario() -> bytes:
        client = await connect(server.url, user=server.user, password=server.password)
        received = await round_trip(client, "test.auth", b"in")
        await client.close()
        return received

    with trio.fail_after(LIMIT):
        assert await in_asyncio(scenario) == b"in"


async def test_wrong_or_missing_password_is_refused(nats_auth_server: NatsServer) -> None:
    server = nats_auth_server

    async def scenario() -> list[Exception]:
        return [
            await connect_error(server.url, user=server.user, password="not-the-password"),
            await connect_error(server.url),
        ]

    with trio.fail_after(LIMIT):
        errors = await in_asyncio(scenario)
    for error in errors:
        # nats-py raises its base error with the server's -ERR text, not AuthorizationError.
        assert isinstance(error, nats.errors.Error)
        assert str(error) == "nats: 'Authorization Violation'"


# -- TLS --------------------------------------------------------------------------------


async def test_tls_client_trusting_the_ca_round_trips(nats_tls: NatsTls) -> None:
    assert nats_tls.url.startswith("tls://127.0.0.1:")
    assert nats_tls.ca_pem.read_text().startswith("-----BEGIN CERTIFICATE-----")

    async def scenario() -> tuple[bytes, bytes]:
        client = await connect(nats_tls.url, tls=nats_tls.ssl_context)
        by_address = await round_trip(client, "test.tls", b"secret")
        await client.close()
        # The certificate names localhost too.
        by_name = nats_tls.url.replace("127.0.0.1", "localhost")
        client = await connect(by_name, tls=nats_tls.ssl_context)
        by_hostname = await round_trip(client, "test.tls", b"named")
        await client.close()
        return by_address, by_hostname

    with trio.fail_after(LIMIT):
        assert await in_asyncio(scenario) == (b"secret", b"named")


async def test_tls_client_without_the_ca_is_refused(nats_tls: NatsTls) -> None:
    async def scenario() -> list[Exception]:
        return [
            # The system's trust store does not know the test CA.
            await connect_error(nats_tls.url, tls=ssl.create_default_context()),
            # A nats:// URL: the client upgrades, as the server requires, and fails alike.
            await connect_error(nats_tls.server.url),
        ]

    with trio.fail_after(LIMIT):
        errors = await in_asyncio(scenario)
    for error in errors:
        assert isinstance(error, ssl.SSLCertVerificationError)
        assert "certificate verify failed" in str(error)


# -- a cluster of two servers ------------------------------------------------------------


async def test_cluster_carries_messages_and_key_values_across_servers(
    nats_cluster: tuple[NatsServer, NatsServer],
) -> None:
    first, second = nats_cluster
    assert first.cluster_url != second.cluster_url
    assert first.info["cluster"] == second.info["cluster"] == "actors-test"

    async def scenario() -> tuple[bytes, bytes, bytes | None]:
        a = await connect(first.url)
        b = await connect(second.url)
        data = await a.subscribe("cluster.data")

        async def answer(message: Msg) -> None:
            await message.respond(b"pong")

        await a.subscribe("cluster.ready", cb=answer)
        await a.flush()
        # Interest crosses the route asynchronously: B answers "no responders" until it
        # knows of A's subscriptions (both, as they travel in order on the route).
        while True:
            try:
                reply = await b.request("cluster.ready", b"ping", timeout=LIMIT)
            except nats.errors.NoRespondersError:
                continue
            break
        await b.publish("cluster.data", b"from-b")
        await b.flush()
        message = await data.next_msg(timeout=LIMIT)
        # A key-value bucket made through one server is read through the other.
        kv_a = await a.jetstream().create_key_value(bucket="cluster")
        await kv_a.put("where", b"written-on-a")
        kv_b = await b.jetstream().key_value("cluster")
        value = (await kv_b.get("where")).value
        await a.close()
        await b.close()
        return reply.data, message.data, value

    with trio.fail_after(LIMIT):
        assert await in_asyncio(scenario) == (b"pong", b"from-b", b"written-on-a")


# -- restarts and stopping ---------------------------------------------------------------


async def test_jetstream_data_survives_a_restart(nats_server: NatsServer) -> None:
    url, pid = nats_server.url, nats_server.pid

    async def write() -> tuple[int, int]:
        client = await connect(url)
        js = client.jetstream()
        kv = await js.create_key_value(bucket="durable")
        revision = await kv.put("key", b"before")
        await js.add_stream(name="EVENTS", subjects=["events.>"])
        ack = await js.publish("events.one", b"event-1")
        await client.close()
        return revision, ack.seq

    async def read(sequence: int) -> tuple[bytes | None, int, bytes | None]:
        client = await connect(url)
        js = client.jetstream()
        entry = await (await js.key_value("durable")).get("key")
        message = await js.get_msg("EVENTS", sequence)
        await client.close()
        return entry.value, entry.revision or 0, message.data

    with trio.fail_after(3 * LIMIT):
        revision, sequence = await in_asyncio(write)
        await trio.to_thread.run_sync(nats_server.restart)
        assert nats_server.pid != pid
        assert nats_server.url == url
        assert await in_asyncio(lambda: read(sequence)) == (b"before", revision, b"event-1")


async def test_a_stopped_server_refuses_connections_at_once(nats_server: NatsServer) -> None:
    url = nats_server.url
    nats_server.stop()

    with trio.fail_after(LIMIT):
        error = await in_asyncio(lambda: connect_error(url))
    # After the one retry that max_reconnect_attempts=1 allows (0 would retry forever).
    assert isinstance(error, nats.errors.NoServersError)


def test_stop_is_idempotent_and_start_reuses_the_port(nats_server: NatsServer) -> None:
    url = nats_server.url
    assert nats_server.running
    nats_server.stop()
    assert not nats_server.running
    assert nats_server.pid is None
    # SIGTERM: a clean shutdown (nats-server then exits with status 1), not a kill.
    assert nats_server.returncode == 1
    assert nats_server.log_tail(1).endswith("[INF] Server Exiting..")
    nats_server.stop()
    nats_server.start()
    assert nats_server.running
    assert nats_server.url == url


def test_kill_is_a_crash_and_close_removes_everything(nats_server: NatsServer) -> None:
    nats_server.kill()
    assert nats_server.returncode == -9
    nats_server.kill()
    assert nats_server.directory.exists()
    nats_server.close()
    assert not nats_server.directory.exists()
    with pytest.raises(ValueError, match="was closed; make a new one"):
        nats_server.start()


def test_a_server_that_cannot_start_says_why(nats_server_binary: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing-cert.pem"
    broken = NatsServer(binary=nats_server_binary, tls_cert=missing, tls_key=missing)
    try:
        with pytest.raises(Unavailable) as raised:
            broken.start()
        assert not broken.running
        message = str(raised.value)
        assert message.startswith("nats-server exited (status 1); the end of its log")
        assert "error parsing X509 certificate/key pair" in message
        assert str(missing) in message
    finally:
        broken.close()


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="give both user and password"):
        NatsServer(binary="nats-server", user="someone")
    with pytest.raises(ValueError, match="give both tls_cert and tls_key"):
        NatsServer(binary="nats-server", tls_cert="cert.pem")
    with pytest.raises(ValueError, match="cluster_port and routes need a cluster_name"):
        NatsServer(binary="nats-server", routes=["nats://127.0.0.1:1"])


def test_server_required_reads_ci_and_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv(REQUIRED_VARIABLE, raising=False)
    assert not server_required()
    monkeypatch.setenv("CI", "true")
    assert server_required()
    monkeypatch.setenv("CI", "0")
    assert not server_required()
    monkeypatch.setenv(REQUIRED_VARIABLE, "1")
    assert server_required()


def test_find_nats_server_finds_the_fixtures_binary(nats_server_binary: str) -> None:
    found = find_nats_server()
    assert found == nats_server_binary
    assert os.access(found, os.X_OK)
