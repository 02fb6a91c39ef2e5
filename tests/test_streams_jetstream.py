"""What only the JetStream engine has to show (the contract itself is checked for every
engine by ``test_streams_conformance.py``): connecting (refused, credentials, TLS), a
NATS server that restarts or goes away under it, the hops into asyncio it saves, and a
node of a cluster in the same process.

Real nats-servers (tests/conftest.py), real time: every wait is bounded by
``trio.fail_after`` and ends on an answer or an error, never on a sleep.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest
import trio

pytest.importorskip("nats")
pytest.importorskip("trio_asyncio")

from cluster_harness import own_node

from actors.streams import (
    ConsumerConfig,
    JetStreamEngine,
    NoStreamForSubject,
    Received,
    Start,
    StreamConfig,
    StreamError,
    StreamNotFound,
    open_jetstream,
)

pytestmark = pytest.mark.nats

_T = TypeVar("_T")
ORDERS = StreamConfig("ORDERS", ["orders.>"])


def closed_port() -> int:
    """A port of 127.0.0.1 where nothing listens (now)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class CountingLoop:
    """The engine's trio-asyncio loop, counting the hops into it."""

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.hops = 0

    async def run_aio_coroutine(self, coro: Awaitable[_T]) -> _T:
        self.hops += 1
        result: _T = await self.loop.run_aio_coroutine(coro)
        return result


async def drain(consumer: Any, count: int) -> list[Received]:
    """Fetch until ``count`` events came (each fetch waits up to 5 s for one)."""
    got: list[Received] = []
    while len(got) < count:
        more = await consumer.fetch(count - len(got), 5)
        assert more, f"only {len(got)} of {count} events came"
        got.extend(more)
    return got


# -- connecting ----------------------------------------------------------------------------


async def test_no_server_is_a_stream_error_naming_the_url_with_the_cause() -> None:
    url = f"nats://127.0.0.1:{closed_port()}"
    with trio.fail_after(20), pytest.raises(StreamError) as caught:
        async with open_jetstream(url, connect_timeout=1, reconnect_time_wait=0.2):
            pytest.fail("connected to nothing")
    assert str(caught.value).startswith(f"could not connect to NATS at {url}: ")
    assert isinstance(caught.value.__cause__, OSError)


async def test_refused_credentials_are_a_stream_error_with_the_servers_refusal(
    nats_auth_server: Any,
) -> None:
    server = nats_auth_server
    with trio.fail_after(30):
        async with open_jetstream(server.url, user=server.user, password=server.password) as ok:
            await ok.add_stream(ORDERS)
            assert (await ok.publish("orders.1", b"x")).seq == 1
        with pytest.raises(StreamError, match="could not connect to NATS") as caught:
            async with open_jetstream(
                server.url, user=server.user, password="wrong", connect_timeout=2
            ):
                pytest.fail("connected with a wrong password")
    assert "authorization" in str(caught.value).lower()
    assert caught.value.__cause__ is not None


async def test_tls_and_a_server_without_it_refused(nats_tls: Any, nats_url: str) -> None:
    with trio.fail_after(30):
        async with open_jetstream(nats_tls.url, tls=nats_tls.ssl_context) as engine:
            await engine.add_stream(ORDERS)
            assert (await engine.publish("orders.1", b"secret")).seq == 1
            stored = await engine.get("ORDERS", 1)
            assert stored is not None
            assert stored.data == b"secret"
        with pytest.raises(StreamError, match="does not use TLS"):
            async with open_jetstream(nats_url, tls=nats_tls.ssl_context, connect_timeout=2):
                pytest.fail("talked in clear to a server without TLS")


async def test_bad_options_name_the_fix() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"servers": []}, "needs NATS server URLs"),
        ({"servers": "nats://x", "user": "u"}, "give both user and password"),
        ({"servers": "nats://x", "token": "t", "user": "u", "password": "p"}, "not both"),
        ({"servers": "nats://x", "timeout": 0}, r"timeout=\.\.\.\) takes seconds > 0"),
    ]
    for options, message in cases:
        with pytest.raises(ValueError, match=message):
            async with open_jetstream(**options):
                pytest.fail("opened with bad options")
    with pytest.raises(TypeError, match=r"ssl\.SSLContext"):
        async with open_jetstream("nats://x", tls=True):  # type: ignore[arg-type]
            pytest.fail("opened with bad options")


async def test_the_blocks_own_error_comes_out_as_itself(nats_url: str) -> None:
    with trio.fail_after(20), pytest.raises(KeyError, match="mine"):
        async with open_jetstream(nats_url):
            raise KeyError("mine")


async def test_after_the_block_every_call_is_refused(nats_url: str) -> None:
    with trio.fail_after(20):
        async with open_jetstream(nats_url) as engine:
            await engine.add_stream(ORDERS)
            await engine.publish("orders.1", b"x")
            consumer = await engine.consumer("ORDERS", ConsumerConfig("late"))
            [received] = await consumer.fetch(1, 5)
        with pytest.raises(StreamError, match="engine is closed"):
            await engine.publish("orders.2", b"y")
        with pytest.raises(StreamError, match="delivered again after its ack_wait"):
            await received.ack()


# -- the hops into asyncio ------------------------------------------------------------------


async def test_a_batch_is_one_hop_and_settling_costs_none(nats_url: str) -> None:
    with trio.fail_after(30):
        async with open_jetstream(nats_url) as engine:
            await engine.add_stream(ORDERS)
            config = ConsumerConfig("hops", max_ack_pending=2000)
            consumer = await engine.consumer("ORDERS", config)
            counting = CountingLoop(engine._loop)
            engine._loop = counting
            events = [(f"orders.{i % 7}", b"%d" % i, None, f"id-{i}") for i in range(2000)]
            acks = await engine.publish_many(events)
            assert counting.hops == 1
            assert [ack.seq for ack in acks] == list(range(1, 2001))
            got = await drain(consumer, 2000)
            fetches = counting.hops - 1
            for received in got[:1000]:
                await received.ack()
            for received in got[1000:1500]:
                await received.term()
            for received in got[1500:]:
                await received.in_progress()
                await received.nak(delay=60)
            assert counting.hops == 1 + fetches  # (no hop for 2,500 settlements)
            # ... and the server got them all: 500 refused, waiting to be delivered again.
            assert await consumer.info() == (0, 500)
            assert [ack.duplicate for ack in await engine.publish_many(events[:3])] == [True] * 3


# -- NATS going away -----------------------------------------------------------------------


async def test_nats_restarting_under_a_consumer_loses_nothing_acknowledged(
    nats_server: Any,
) -> None:
    stream = StreamConfig("ORDERS", ["orders.>"], storage="file")
    with trio.fail_after(120):
        async with open_jetstream(nats_server.url, timeout=2) as engine:
            await engine.add_stream(stream)
            stored = await engine.publish_many(
                [(f"orders.{n}", b"%d" % n, None, f"o-{n}") for n in range(1, 21)]
            )
            assert [ack.seq for ack in stored] == list(range(1, 21))
            config = ConsumerConfig("shipping", ack_wait=1.0, max_deliver=None)
            consumer = await engine.consumer("ORDERS", config)
            first = await drain(consumer, 10)
            assert [r.seq for r in first] == list(range(1, 11))
            for received in first[:5]:
                await received.ack()
            assert await consumer.info() == (10, 5)  # (the acks are on the server)

            await trio.to_thread.run_sync(nats_server.restart)

            # Publishing while the client reconnects may fail with the outcome unknown:
            # again with the same message id until acknowledged, stored once either way.
            for n in range(21, 26):
                while True:
                    try:
                        ack = await engine.publish(f"orders.{n}", b"%d" % n, msg_id=f"o-{n}")
                        break
                    except StreamError:
                        continue
                assert ack.seq == n
            seen: dict[int, int] = {}
            while len(seen) < 20:
                for received in await consumer.fetch(20, 5):
                    assert received.data == b"%d" % received.seq
                    seen[received.seq] = received.delivered
                    await received.ack()
            assert sorted(seen) == list(range(6, 26))  # acknowledged ones never again
            assert all(seen[seq] >= 2 for seq in range(6, 11))  # the others redelivered
            assert await consumer.info() == (0, 0)
            state = await engine.stream_state("ORDERS")
            assert (state.messages, state.first_seq, state.last_seq) == (25, 1, 25)
            assert state.consumers == ("shipping",)


async def test_publishing_while_nats_is_down_raises_rather_than_hangs(nats_server: Any) -> None:
    with trio.fail_after(90):
        async with open_jetstream(nats_server.url, timeout=1) as engine:
            await engine.add_stream(StreamConfig("ORDERS", ["orders.>"], storage="file"))
            consumer = await engine.consumer("ORDERS", ConsumerConfig("c"))
            await trio.to_thread.run_sync(nats_server.stop)
            with pytest.raises(StreamError, match="outcome is unknown") as caught:
                await engine.publish("orders.1", b"maybe", msg_id="once")
            assert "publish it again with the same msg_id" in str(caught.value)
            with pytest.raises(StreamError, match="did not answer within 1 s"):
                await engine.stream_state("ORDERS")
            assert await consumer.fetch(5, 0.5) == []  # (nothing came: no error)

            await trio.to_thread.run_sync(nats_server.start)
            while True:  # (until the client is back)
                try:
                    again = await engine.publish("orders.1", b"maybe", msg_id="once")
                    break
                except StreamError:
                    continue
            # Stored once, whether the first one reached the stream or not.
            assert again.seq == 1
            assert (await engine.stream_state("ORDERS")).messages == 1
            [received] = await consumer.fetch(5, 5)
            assert (received.seq, received.data, received.headers["Nats-Msg-Id"]) == (
                1,
                b"maybe",
                "once",
            )


# -- errors --------------------------------------------------------------------------------


async def test_refusals_name_the_problem_with_the_servers_error_chained(nats_url: str) -> None:
    with trio.fail_after(30):
        async with open_jetstream(nats_url) as engine:
            await engine.add_stream(ORDERS)
            with pytest.raises(StreamError, match="refused stream 'EU'") as caught:
                await engine.add_stream(StreamConfig("EU", ["orders.eu.*"]))
            assert "overlap" in str(caught.value)
            assert type(caught.value.__cause__).__module__.startswith("nats")
            with pytest.raises(NoStreamForSubject, match=r"'invoices\.1'"):
                await engine.publish("invoices.1", b"x")
            with pytest.raises(StreamNotFound, match="no stream named 'NOPE'"):
                await engine.consumer("NOPE", ConsumerConfig("c"))
            with pytest.raises(StreamNotFound, match="has no durable consumer 'c'"):
                await engine.delete_consumer("ORDERS", "c")
            message = "consumer 'b' of stream 'ORDERS' failed: max deliver is required"
            with pytest.raises(StreamError, match=message) as caught:
                await engine.consumer("ORDERS", ConsumerConfig("b", backoff=(1, 2), max_deliver=2))
            assert caught.value.__cause__ is not None


async def test_a_fetch_for_a_deleted_consumer_says_so(nats_url: str) -> None:
    with trio.fail_after(30):
        async with open_jetstream(nats_url) as engine:
            await engine.add_stream(ORDERS)
            consumer = await engine.consumer("ORDERS", ConsumerConfig("gone"))
            await engine.delete_consumer("ORDERS", "gone")
            with pytest.raises(StreamNotFound, match="has no durable consumer 'gone'"):
                await consumer.fetch(1, 0.5)
            # Made again (by anyone), the handle follows it by name.
            await engine.consumer("ORDERS", ConsumerConfig("gone", start=Start.new_only()))
            await engine.publish("orders.1", b"x")
            [received] = await consumer.fetch(1, 5)
            assert received.seq == 1


# -- with a node of a cluster ---------------------------------------------------------------


async def test_an_engine_beside_a_node_of_a_cluster(nats_url: str) -> None:
    with trio.fail_after(60):
        async with (
            own_node(nats_url) as system,
            open_jetstream(nats_url) as engine,
        ):
            assert isinstance(engine, JetStreamEngine)
            await engine.add_stream(ORDERS)
            consumer = await engine.consumer("ORDERS", ConsumerConfig("beside"))
            assert (await engine.publish("orders.1", b"x")).seq == 1
            [received] = await consumer.fetch(1, 5)
            await received.ack()
            assert await consumer.info() == (0, 0)
            assert system.cluster.live_members() == ["t"]
            assert await system.cluster.lookup("nobody") is None
