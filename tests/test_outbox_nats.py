"""The outbox on real JetStream and a real SQLite journal, in one process (real time):
a batch published again after its offset was lost is dropped by JetStream's
de-duplication, and a durable subscriber gets each event once, with its message id.

(The kill -9 tests are in ``test_outbox_crash.py``.) Every wait is bounded by
``trio.fail_after`` and ends on what the actors saw, never on a sleep."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio

pytest.importorskip("nats")
pytest.importorskip("trio_asyncio")

from outbox_events import DEAD_LETTERS, ORDERS, Order, Place, Shipping, by_pid, stored

import actors
from actors.cluster import PickleCodec
from actors.persistence import Persistence, open_sqlite_journal
from actors.projection import JournalSource, Projection, SqliteOffsetStore, WaitCaughtUp
from actors.streams import Outbox, open_jetstream, open_streams, spawn_outbox

pytestmark = pytest.mark.nats


class LosingOffsets(SqliteOffsetStore):
    """Its next ``lose`` saves store nothing (as if the process died right before)."""

    lose = 0

    async def save(self, name: str, key: str, offset: int) -> None:
        if self.lose:
            self.lose -= 1
            await trio.lowlevel.checkpoint()
            return
        await super().save(name, key, offset)


async def test_a_batch_published_again_is_dropped_by_jetstream_and_delivered_once(
    tmp_path: Path, nats_url: str
) -> None:
    handled: list[tuple[str | None, str]] = []
    done = trio.Event()
    with trio.fail_after(60):
        async with (
            open_sqlite_journal(tmp_path / "journal.db") as journal,
            actors.open_system("outbox", extensions=[Persistence(journal)]) as system,
            open_jetstream(nats_url) as engine,
            open_streams(
                system, engine, streams=[ORDERS], dead_letters=DEAD_LETTERS, codec=PickleCodec()
            ) as streams,
            LosingOffsets(tmp_path / "offsets.db") as offsets,
        ):
            shipping = system.spawn(Shipping, handled, done, 4)
            await streams.subscribe(shipping, "orders.>", durable="shipping")
            order = system.spawn(Order, "a")
            await order.ask(Place(("one", "two", "three")))
            offsets.lose = 1
            first = Outbox(streams, subject=by_pid, offsets=offsets)
            ref = Projection("outbox-order", JournalSource("order"), first).spawn(system)
            await ref.ask(WaitCaughtUp(), timeout=30)
            await system.graceful_stop(ref)
            assert await offsets.load("outbox-order", "order") is None
            await order.ask(Place(("four",)))
            second = Outbox(streams, subject=by_pid, offsets=offsets)
            ref = Projection("outbox-order", JournalSource("order"), second).spawn(system)
            status = await ref.ask(WaitCaughtUp(), timeout=30)
            await system.graceful_stop(ref)
            await done.wait()
            found = await stored(engine)
    assert (first.published, second.published, second.duplicates) == (3, 1, 3)
    assert status.offset == 4
    ids = ["order-a/1", "order-a/2", "order-a/3", "order-a/4"]
    assert [(subject, msg_id) for subject, msg_id, _ in found] == [
        ("orders.order-a", msg_id) for msg_id in ids
    ]
    assert handled == list(zip(ids, ["one", "two", "three", "four"], strict=True))


async def test_spawn_outbox_publishes_a_tag_of_the_systems_journal_to_jetstream(
    tmp_path: Path, nats_url: str
) -> None:
    with trio.fail_after(60):
        async with (
            open_sqlite_journal(tmp_path / "journal.db") as journal,
            actors.open_system("outbox", extensions=[Persistence(journal)]) as system,
            open_jetstream(nats_url) as engine,
            open_streams(
                system, engine, streams=[ORDERS], dead_letters=DEAD_LETTERS, codec=PickleCodec()
            ) as streams,
            SqliteOffsetStore(tmp_path / "offsets.db") as offsets,
        ):
            ref = spawn_outbox(
                system, streams, "order", subject="orders.all", offsets=offsets, batch_size=2
            )
            for name in ("a", "b", "a", "c", "b"):
                order = system.spawn(Order, name)
                await order.ask(Place((f"{name}-item",)))
                await system.graceful_stop(order)
            status = await ref.ask(WaitCaughtUp(), timeout=30)
            await system.graceful_stop(ref)
            found = await stored(engine)
            commits = [f"{r.persistence_id}/{r.seq}" async for r in journal.events_by_tag("order")]
    assert [msg_id for _, msg_id, _ in found] == commits
    assert commits == ["order-a/1", "order-b/1", "order-a/2", "order-c/1", "order-b/2"]
    assert (status.offset, status.lag, status.handled) == (5, 0, 5)
