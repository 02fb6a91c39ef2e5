"""The durable-streams runtime on real JetStream (a nats-server per test, real time):
consumer groups, redelivery after a failing handler, dead letters after max_deliver,
and NATS restarting under a durable subscriber.

Every wait is bounded by ``trio.fail_after`` and ends on what the actors saw, never on
a sleep."""

from __future__ import annotations

from typing import Any

import pytest
import trio

pytest.importorskip("nats")
pytest.importorskip("trio_asyncio")

from streams_runtime_actors import Log, OrderPlaced, Recorder, publish_orders, running

from actors.streams import StreamConfig, StreamDeadLetterReason, StreamError, open_jetstream

pytestmark = pytest.mark.nats

ORDERS = StreamConfig("ORDERS", ["orders.>"], storage="file")
DEAD_LETTERS = StreamConfig("DEAD_LETTERS", ["deadletters.>"], storage="file")


async def until(check: Any, *, within: float = 30) -> None:
    """Wait until ``check()`` (an async function) is true, looking again every 50 ms."""
    with trio.fail_after(within):
        while not await check():  # noqa: ASYNC110 - (the server's figures, polled)
            await trio.sleep(0.05)


async def test_members_of_a_group_share_the_events_on_jetstream(nats_url: str) -> None:
    log = Log()
    with trio.fail_after(60):
        async with (
            open_jetstream(nats_url) as engine,
            running(engine, streams=[ORDERS], dead_letters=DEAD_LETTERS) as (system, streams),
        ):
            subs = [
                await streams.subscribe(
                    system.spawn(Recorder, log, who, busy=0.01),
                    "orders.>",
                    durable="shipping",
                    max_in_flight=4,
                )
                for who in ("a", "b")
            ]
            await publish_orders(streams, range(60))
            seen = await log.wait_for(60)
            await until(lambda: _settled(subs[0], 0))
            assert sorted(s.order_id for s in seen) == list(range(60))  # each once
            assert {s.who for s in seen} == {"a", "b"}
            assert sum(sub.stats().acked for sub in subs) == 60


async def _settled(sub: Any, pending: int) -> bool:
    return bool(await sub.consumer.info() == (pending, 0))


async def test_a_failing_handler_gets_the_event_again_then_it_is_parked(nats_url: str) -> None:
    log = Log()
    with trio.fail_after(60):
        async with (
            open_jetstream(nats_url) as engine,
            running(engine, streams=[ORDERS], dead_letters=DEAD_LETTERS) as (system, streams),
        ):
            # Order 1 fails once; order 2 always.
            ref = system.spawn(
                Recorder, log, fail=lambda order, attempt: order == 2 or attempt == 1
            )
            sub = await streams.subscribe(
                ref, "orders.>", durable="d", max_deliver=3, backoff=(0.2,), ack_wait=5
            )
            await publish_orders(streams, range(1, 3))
            await log.wait_for(5)
            await until(lambda: _settled(sub, 0))
            attempts = sorted((s.order_id, s.delivered) for s in log.items)
            assert attempts == [(1, 1), (1, 2), (2, 1), (2, 2), (2, 3)]
            (letter,) = await streams.dead_letters()
            assert (letter.reason, letter.stream_seq, letter.attempts, letter.event) == (
                StreamDeadLetterReason.FAILED,
                2,
                3,
                OrderPlaced(2),
            )
            assert letter.error == "order 2 declined"
            assert letter.error_type == "streams_runtime_actors.PaymentDeclined"
            assert sub.stats().acked == 1


async def test_nats_restarting_under_a_durable_subscriber_loses_nothing_acknowledged(
    nats_server: Any,
) -> None:
    log = Log()
    with trio.fail_after(120):
        async with (
            open_jetstream(nats_server.url, timeout=2) as engine,
            running(engine, streams=[ORDERS], dead_letters=DEAD_LETTERS, retry_for=60) as (
                system,
                streams,
            ),
        ):
            sub = await streams.subscribe(
                system.spawn(Recorder, log), "orders.>", durable="shipping", ack_wait=2
            )
            await publish_orders(streams, range(10))
            await log.wait_for(10)
            await until(lambda: _settled(sub, 0))  # all ten acknowledged, on the server

            await trio.to_thread.run_sync(nats_server.restart)

            for order_id in range(10, 25):
                # While the client reconnects a publish may fail, its outcome unknown:
                # again with the same message id, stored once either way.
                while True:
                    try:
                        await streams.publish(
                            "orders.eu.created", OrderPlaced(order_id), msg_id=f"o-{order_id}"
                        )
                        break
                    except StreamError:
                        await trio.sleep(0.1)
            await log.wait_for(25)
            await until(lambda: _settled(sub, 0))
            assert sub.active
            seen = [s.order_id for s in log.items]
            assert sorted(set(seen)) == list(range(25))  # nothing lost
            assert sorted(seen[:10]) == list(range(10))
            assert all(seen.count(n) == 1 for n in range(10))  # acknowledged: never again
            state = await engine.stream_state("ORDERS")
            assert state.messages == 25
