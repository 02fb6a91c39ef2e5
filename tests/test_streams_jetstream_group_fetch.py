"""Several handles on one durable JetStream consumer in one engine (the members of a
consumer group in one process) fetching at the same time: together they drain the
stream, every event once, no fetch waiting until its deadline for events another one
took, and the fetches still waiting when the drain ends are cancelled at once (on
Python 3.11 ``asyncio.wait_for`` lost such a cancellation now and then, and the
cancelled fetch waited on until its deadline). (The stealing the per-fetch inboxes
prevent needs actors' timing to show: the S3 benchmark, ``bench/s_groups.py``.)

Real nats-server (tests/conftest.py), real time: every wait is bounded by
``trio.fail_after`` and ends on an answer or an error, never on a sleep.
"""

from __future__ import annotations

import pytest
import trio

pytest.importorskip("nats")
pytest.importorskip("trio_asyncio")

from actors.streams import Consumer, ConsumerConfig, StreamConfig, open_jetstream

pytestmark = pytest.mark.nats

ORDERS = StreamConfig("ORDERS", ["orders.>"])
EVENTS = 3000
FETCH_TIMEOUT = 60.0
"""Far longer than the whole drain may take: a fetch that waited for events another
fetch took would wait this long, and fail the test's bound."""


@pytest.mark.parametrize("members", [2, 4])
async def test_concurrent_fetches_of_one_group_drain_it_and_cancel_at_once(
    nats_url: str, members: int
) -> None:
    async with open_jetstream(nats_url) as engine:
        await engine.add_stream(ORDERS)
        config = ConsumerConfig("group", max_ack_pending=EVENTS)
        handles = [await engine.consumer("ORDERS", config) for _ in range(members)]
        await engine.publish_many(
            [(f"orders.{i % 7}", b"%d" % i, None, None) for i in range(EVENTS)]
        )
        seqs: list[int] = []  # (of the events fetched and acknowledged)
        fetches = [0] * members
        all_in = trio.Event()

        async def member(at: int, consumer: Consumer) -> None:
            while True:
                got = await consumer.fetch(50, FETCH_TIMEOUT)
                fetches[at] += 1
                for received in got:
                    await received.ack()
                    seqs.append(received.seq)
                if len(seqs) >= EVENTS:
                    all_in.set()
                await trio.lowlevel.checkpoint()

        with trio.fail_after(FETCH_TIMEOUT / 3):
            async with trio.open_nursery() as nursery:
                for at, consumer in enumerate(handles):
                    nursery.start_soon(member, at, consumer)
                await all_in.wait()
                nursery.cancel_scope.cancel()
            assert sorted(seqs) == list(range(1, EVENTS + 1))
            assert await handles[0].info() == (0, 0)
        # (every member fetched: they ran at the same time, not one after another)
        assert all(fetches), fetches
