"""The order pipeline of a shop, durable end to end: killed with SIGKILL in the middle of
a run, resumed, and audited.

Shows, on a real journal and a real NATS JetStream:

- **entities**: each order is a persistent actor (``PersistentActor``, one per order id)
  that stores an ``OrderPlaced`` event in a SQLite journal, tagged ``order``. Placing an
  order that is already placed does nothing, so a resumed run can place every order
  again;
- **the outbox** (``spawn_outbox``): the events of the tag are published from the
  journal to the JetStream stream ``SHOP_ORDERS``, in commit order, each with the message
  id ``<persistence id>/<seq>``, so that publishing one again after a crash stores
  nothing new (JetStream drops the duplicate);
- **a consumer group**: two shippers subscribe to the stream as the durable group
  ``shipping``, which shares the orders between them and delivers each at least once;
  a shipper is idempotent (``INSERT OR IGNORE`` into a shipments table keyed by the
  order id), so an order delivered again is not shipped twice;
- **a projection** (``Projection`` with ``SqliteExactlyOnce``): the sales per product,
  a read model in SQLite built from the journal's ``order`` events, its offset committed
  in the same transaction as the totals, so that each order counts exactly once.

The processes: run with no arguments, this script starts a throwaway ``nats-server -js``
(unless ``--nats URL`` names a running server with JetStream; then the script deletes
its two streams, ``SHOP_ORDERS`` and ``SHOP_DEAD_LETTERS``, if an earlier run left them).
It runs the shop as a child process (this same file, run with ``--shop``), which places
orders one by one and kills itself with SIGKILL once 25 of the 40 are acknowledged,
wherever the outbox, the projection and the shippers are at that moment. A second shop
process resumes: it places all 40 orders again (the first 25 are no-ops), and waits until
the outbox, the projection and the shipping group have caught up. Then this process
audits what the shop left: the sales read model's totals are those of the 40 orders,
every order was shipped exactly once, and the stream holds each order's event exactly
once. Every process it started is stopped at the end, also after an error or a Ctrl-C
(a shop process ends when its stdin closes, as it does when this process dies; the
server is stopped by its PID).

Run it: ``python examples/durable_orders.py`` (a few seconds). It needs ``nats-server``
(``apt-get install nats-server``) and the cluster extra (``pip install
'trio-actors[cluster]'``). Its files (journal, read models, NATS store) are in a
temporary directory, deleted at the end. The PIDs and the line "as the kill left it" vary
from run to run (where the kill caught the pipeline); every other line does not. Exit
status 1 if a total is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import trio
from example_processes import Failed, stop_processes, throwaway_nats, until_stdin_closes

import actors
from actors.persistence import Persistence, PersistentActor, open_sqlite_journal
from actors.projection import (
    Envelope,
    JournalSource,
    Projection,
    SqliteExactlyOnce,
    SqliteOffsetStore,
    WaitCaughtUp,
)
from actors.streams import (
    StreamConfig,
    StreamEvent,
    StreamNotFound,
    open_jetstream,
    open_streams,
    spawn_outbox,
)

PRICES = {"coffee": 700, "mug": 1200, "tea": 450, "teapot": 3500}  # in cents
ORDER_COUNT = 40
KILL_AFTER = 25  # the first shop kills itself once this many orders are acknowledged
CATCH_UP = 60.0  # seconds the resumed shop waits for each stage to catch up

# The durable stream the outbox publishes to, and the dead-letter stream of the
# subscriptions. The duplicate window covers the time a crashed shop takes to come back:
# an event published again within it is dropped as a duplicate.
ORDERS = StreamConfig("SHOP_ORDERS", ["shop.orders.>"], duplicate_window=3600)
DEAD_LETTERS = StreamConfig("SHOP_DEAD_LETTERS", ["shop.deadletters.>"])
TOPIC = "shop.orders.placed"


def say(text: str) -> None:
    """Print a line at once (the processes of the example share one stdout)."""
    print(text, flush=True)


# -- commands and events -------------------------------------------------------------------


@attrs.frozen
class PlaceOrder:
    """A command: place order ``order_id``. Placing it again does nothing."""

    order_id: str
    product: str
    quantity: int


@attrs.frozen
class OrderPlaced:
    """The event an order stores, and the outbox publishes: ``amount`` in cents."""

    order_id: str
    product: str
    quantity: int
    amount: int


# The types that travel in the stream: the safe codec decodes only these (and plain data),
# under these names, whoever wrote to the stream.
TYPES: dict[str, type] = {"shop.OrderPlaced": OrderPlaced}


def the_orders() -> list[PlaceOrder]:
    """The 40 orders of the example, the same in every run."""
    products = sorted(PRICES)
    return [
        PlaceOrder(f"o{n:02}", products[(n * 7) % len(products)], 1 + (n * 5) % 3)
        for n in range(1, ORDER_COUNT + 1)
    ]


# -- the entity: an order ------------------------------------------------------------------


class Order(PersistentActor):
    """One order: it stores ``OrderPlaced`` once, and answers whether this placing was the
    one that stored it."""

    def __init__(self, order_id: str) -> None:
        self.persistence_id = f"order-{order_id}"
        self.placed: OrderPlaced | None = None

    def apply(self, event: Any) -> None:
        self.placed = event

    def tags_for(self, event: Any) -> set[str]:
        return {"order"}  # what the outbox and the sales projection read

    async def receive(self, message: Any) -> Any:
        match message:
            case PlaceOrder(order_id, product, quantity):
                if self.placed is not None:
                    return False  # placed before (by a shop that was killed since)
                amount = quantity * PRICES[product]
                await self.persist(OrderPlaced(order_id, product, quantity, amount))
                return True  # the answer means: in the journal
        self.unhandled(message)
        return None


# -- shipping: a consumer group of two shippers, and a tally to wait on --------------------


def create_shipments(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute(
            "CREATE TABLE IF NOT EXISTS shipments "
            "(order_id TEXT PRIMARY KEY, msg_id TEXT NOT NULL, shipper TEXT NOT NULL)"
        )


def ship(path: Path, order_id: str, msg_id: str | None, shipper: str) -> None:
    """Record the order as shipped, unless it is already (then nothing changes)."""
    with contextlib.closing(sqlite3.connect(path, timeout=10)) as db, db:
        db.execute("INSERT OR IGNORE INTO shipments VALUES (?, ?, ?)", (order_id, msg_id, shipper))


def shipped_orders(path: Path) -> set[str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return {order_id for (order_id,) in db.execute("SELECT order_id FROM shipments")}


@attrs.frozen
class Shipped:
    order_id: str


@attrs.frozen
class WaitShipped:
    """Ask the tally: reply once every one of ``order_ids`` is shipped."""

    order_ids: frozenset[str]


class Tally(actors.Actor):
    """Knows which orders are shipped: those in the shipments table when it starts, and
    those the shippers report since (each after its row is committed: none is missed).
    Answers ``WaitShipped`` once they are all shipped, without polling the table."""

    def __init__(self, shipments: Path) -> None:
        self.shipments = shipments
        self.shipped: set[str] = set()
        self.waiting: list[tuple[frozenset[str], actors.ReplyHandle]] = []

    async def pre_start(self) -> None:
        self.shipped |= await trio.to_thread.run_sync(shipped_orders, self.shipments)

    def receive(self, message: Any) -> None:
        match message:
            case Shipped(order_id):
                self.shipped.add(order_id)
            case WaitShipped():
                self.waiting.append((message.order_ids, self.context.reply_later()))
            case _:
                self.unhandled(message)
        still_waiting = []
        for order_ids, handle in self.waiting:
            if order_ids <= self.shipped:
                handle.reply(len(order_ids))
            else:
                still_waiting.append((order_ids, handle))
        self.waiting = still_waiting


class Shipper(actors.Actor):
    """A member of the consumer group ``shipping``: ships each order it is given, once.

    Delivery is at least once: an order whose acknowledgement was lost (the shop killed
    between the shipping and the acknowledgement) comes again. The shipments table keyed
    by the order id makes that harmless: ``INSERT OR IGNORE`` ships it once."""

    def __init__(self, shipments: Path, tally: actors.ActorRef) -> None:
        self.shipments = shipments
        self.tally = tally

    async def receive(self, message: StreamEvent) -> None:
        order: OrderPlaced = message.event
        shipper = self.context.ref.name
        await trio.to_thread.run_sync(ship, self.shipments, order.order_id, message.msg_id, shipper)
        self.tally.tell(Shipped(order.order_id))  # (once its row is committed)
        # Returning acknowledges the event; raising would have it delivered again.


# -- the sales read model: a projection, exactly once --------------------------------------


def create_sales(conn: sqlite3.Connection) -> None:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS sales (product TEXT PRIMARY KEY, orders INTEGER NOT NULL,"
        " quantity INTEGER NOT NULL, revenue INTEGER NOT NULL)"
    )


def count_sales(conn: sqlite3.Connection, envelopes: list[Envelope]) -> None:
    """The projection's handler: runs in the transaction that also stores its offset."""
    for envelope in envelopes:
        placed: OrderPlaced = envelope.event
        conn.execute(
            "INSERT INTO sales VALUES (?, 1, ?, ?) ON CONFLICT (product) DO UPDATE SET "
            "orders = orders + 1, quantity = quantity + excluded.quantity, "
            "revenue = revenue + excluded.revenue",
            (placed.product, placed.quantity, placed.amount),
        )


# -- the shop (a child process: ``--shop first`` or ``--shop resume``) ----------------------


async def caught_up(what: str, ref: actors.ActorRef, question: Any) -> Any:
    """Ask ``ref`` ``question`` (a wait that replies once ``what`` has caught up), for at
    most ``CATCH_UP`` seconds."""
    try:
        with trio.fail_after(CATCH_UP):
            return await ref.ask(question, timeout=math.inf)
    except trio.TooSlowError:
        raise Failed(f"{what} did not catch up within {CATCH_UP:g} s") from None


async def run_shop(resume: bool, url: str, directory: Path) -> None:
    shipments = directory / "shipments.db"
    create_shipments(shipments)
    sales = Projection(
        "sales",
        JournalSource("order"),
        SqliteExactlyOnce(directory / "sales.db", count_sales, setup=create_sales),
    )
    # The engine outside the system, so that the actors stop before its connection closes.
    async with (
        open_jetstream(url) as engine,
        open_sqlite_journal(directory / "journal.db") as journal,
        SqliteOffsetStore(directory / "outbox.db") as offsets,
        actors.open_system("shop", extensions=[Persistence(journal)]) as system,
        open_streams(
            system, engine, streams=[ORDERS], dead_letters=DEAD_LETTERS, types=TYPES
        ) as streams,
    ):
        outbox = spawn_outbox(system, streams, "order", subject=TOPIC, offsets=offsets)
        sales_ref = sales.spawn(system)
        tally = system.spawn(Tally, shipments, name="tally")
        subscriptions = []
        for name in ("shipper-1", "shipper-2"):
            shipper = system.spawn(Shipper, shipments, tally, name=name)
            subscription = await streams.subscribe(
                shipper,
                "shop.orders.>",
                durable="shipping",
                max_in_flight=5,
                # Short, so that the orders the killed shop held come back within seconds
                # (the default, 30 s, suits handlers that take longer).
                ack_wait=5,
            )
            subscriptions.append(subscription)

        new = 0
        for order in the_orders():
            ref = system.spawn(Order, order.order_id, name=f"order-{order.order_id}")
            new += await ref.ask(order)
            if not resume and new == KILL_AFTER:
                say(f"placed {new} orders (acknowledged: in the journal); killing the shop now")
                os.kill(os.getpid(), signal.SIGKILL)
        say(f"placed the {ORDER_COUNT} orders again: {new} new, {ORDER_COUNT - new} placed before")

        published = await caught_up("the outbox", outbox, WaitCaughtUp())
        counted = await caught_up("the sales projection", sales_ref, WaitCaughtUp())
        every_order = frozenset(order.order_id for order in the_orders())
        shipped = await caught_up("the shipping group", tally, WaitShipped(every_order))
        say(
            f"caught up: the outbox (lag {published.lag}), the sales projection (lag "
            f"{counted.lag}), shipping ({shipped} of {ORDER_COUNT} orders shipped)"
        )
        for subscription in subscriptions:  # (returns once what they hold is acknowledged)
            await streams.unsubscribe(subscription)
        await system.graceful_stop(outbox)  # (before the streams close)


async def serve_shop(resume: bool, url: str, directory: Path) -> int:
    """Run the shop, unless this process's stdin closes first (the main process is gone,
    or stops it): then stop it. Returns the exit status."""
    async with trio.open_nursery() as nursery:

        async def stop_when_stdin_closes() -> None:
            await until_stdin_closes()
            nursery.cancel_scope.cancel()

        nursery.start_soon(stop_when_stdin_closes)
        try:
            await run_shop(resume, url, directory)
        except Failed as error:
            print(f"durable_orders.py: shop: {error}", file=sys.stderr)
            return 1
        finally:
            nursery.cancel_scope.cancel()
        return 0
    return 1  # (stopped from outside)


# -- the main process: start the shop twice, then audit ------------------------------------


async def run_shop_process(mode: str, url: str, directory: Path) -> int:
    """Run this file as a shop process (``--shop mode``) and return its exit status. The
    shop writes to this process's stdout and stderr."""
    command = [sys.executable, __file__, "--shop", mode, "--nats", url, "--dir", str(directory)]
    # (A Ctrl-C in the terminal does not reach it: it follows its stdin.)
    process = await trio.lowlevel.open_process(
        command, stdin=subprocess.PIPE, start_new_session=True
    )
    say(f"shop started (pid {process.pid}), {mode}")
    try:
        with trio.fail_after(120):
            return await process.wait()
    except trio.TooSlowError:
        raise Failed(f"the shop ({mode}) did not finish within 120 s") from None
    finally:
        with trio.CancelScope(shield=True):
            with trio.move_on_after(1):
                if process.stdin is not None:
                    await process.stdin.aclose()
            await stop_processes([process], 10)


async def delete_streams(url: str) -> None:
    """Start from empty streams (on a server given with ``--nats``, an earlier run left
    them)."""
    async with open_jetstream(url) as engine:
        for config in (ORDERS, DEAD_LETTERS):
            with contextlib.suppress(StreamNotFound):
                await engine.delete_stream(config.name)


def sqlite_count(path: Path, query: str) -> int:
    """The number ``query`` answers (0 if the table does not exist yet)."""
    if not path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(path)) as db:
        try:
            return int(db.execute(query).fetchone()[0] or 0)
        except sqlite3.OperationalError as error:
            if "no such table" in str(error):
                return 0
            raise


async def what_the_kill_left(url: str, directory: Path) -> None:
    async with open_sqlite_journal(directory / "journal.db", create=False) as journal:
        stored = [record.persistence_id async for record in journal.events_by_tag("order")]
    async with open_jetstream(url) as engine:
        in_stream = (await engine.stream_state(ORDERS.name)).messages
    counted = sqlite_count(directory / "sales.db", "SELECT SUM(orders) FROM sales")
    shipped = sqlite_count(directory / "shipments.db", "SELECT COUNT(*) FROM shipments")
    say(
        f"as the kill left it: {len(stored)} orders in the journal, {in_stream} in the "
        f"stream, {counted} in the sales read model, {shipped} shipped"
    )


async def stream_contents(url: str) -> tuple[list[tuple[str | None, OrderPlaced]], int]:
    """``(message id, event)`` of every event of the orders' stream, in order, and the
    count of dead letters."""
    from actors.cluster import SafeCodec

    decode = SafeCodec(TYPES).decode_message
    found = []
    async with open_jetstream(url) as engine:
        state = await engine.stream_state(ORDERS.name)
        for seq in range(state.first_seq, state.last_seq + 1):
            stored = await engine.get(ORDERS.name, seq)
            if stored is not None:
                found.append((stored.headers.get("Nats-Msg-Id"), decode(stored.data)))
        dead = (await engine.stream_state(DEAD_LETTERS.name)).messages
    return found, dead


def totals(rows: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    return (sum(r[0] for r in rows), sum(r[1] for r in rows), sum(r[2] for r in rows))


def figures(name: str, row: tuple[int, int, int]) -> str:
    count, quantity, revenue = row
    return f"{name}: {count}, {quantity}, {revenue / 100:.2f}"


def audit(directory: Path, stream: list[tuple[str | None, OrderPlaced]], dead: int) -> int:
    """Check what the shop left against the orders, print the report, and return the
    exit status: 0 if every total is right, 1 otherwise."""
    orders = the_orders()
    every_order = Counter(order.order_id for order in orders)
    wrong: list[str] = []

    # The stream: each order's event exactly once, under the outbox's message id.
    published = Counter(event.order_id for _, event in stream)
    say(f"stream {ORDERS.name}: {len(stream)} events, of {len(published)} orders")
    if published != every_order:
        wrong.append(f"the stream does not hold each order's event once: {published}")
    if any(msg_id != f"order-{event.order_id}/1" for msg_id, event in stream):
        wrong.append("an event of the stream has another message id than <persistence id>/<seq>")

    # The shipments: every order shipped exactly once.
    with contextlib.closing(sqlite3.connect(directory / "shipments.db")) as db:
        shipped = Counter(order_id for (order_id,) in db.execute("SELECT order_id FROM shipments"))
    say(f"shipments: {shipped.total()} rows, of {len(shipped)} orders")
    if shipped != every_order:
        wrong.append(f"the orders are not shipped once each: {shipped}")

    # The sales read model: the orders' totals, product by product.
    with contextlib.closing(sqlite3.connect(directory / "sales.db")) as db:
        rows = db.execute("SELECT product, orders, quantity, revenue FROM sales").fetchall()
    sales = {product: (count, quantity, revenue) for product, count, quantity, revenue in rows}
    expected: dict[str, tuple[int, int, int]] = {}
    for order in orders:
        count, quantity, revenue = expected.get(order.product, (0, 0, 0))
        amount = order.quantity * PRICES[order.product]
        expected[order.product] = (count + 1, quantity + order.quantity, revenue + amount)
    say("sales read model (product: orders, units, revenue):")
    for product in sorted(sales):
        say("  " + figures(product, sales[product]))
    say("  " + figures("total", totals(list(sales.values()))))
    say(figures(f"the {len(orders)} orders placed", totals(list(expected.values()))))
    if sales != expected:
        wrong.append(f"the sales read model is {sales}; the orders make {expected}")

    say(f"dead letters: {dead}")
    if dead:
        wrong.append(f"{dead} events were parked in {DEAD_LETTERS.name}")

    for problem in wrong:
        say(f"WRONG: {problem}")
    if wrong:
        return 1
    say("all totals right: every order published, shipped and counted exactly once")
    return 0


async def run_main(nats: str | None) -> int:
    with tempfile.TemporaryDirectory(prefix="durable-orders-") as name:
        directory = Path(name)
        async with throwaway_nats(nats, directory) as url:
            await delete_streams(url)
            status = await run_shop_process("first", url, directory)
            if status != -signal.SIGKILL:
                raise Failed(f"the first shop exited with status {status}, not killed by SIGKILL")
            say("the shop was killed (SIGKILL)")
            await what_the_kill_left(url, directory)
            status = await run_shop_process("resume", url, directory)
            if status != 0:
                raise Failed(f"the resumed shop failed (exit status {status}): see its errors")
            stream, dead = await stream_contents(url)
            return audit(directory, stream, dead)
    raise AssertionError("unreachable")  # (for mypy: the block above returns)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--nats", metavar="URL", help="a running NATS server with JetStream")
    parser.add_argument("--shop", choices=["first", "resume"], help=argparse.SUPPRESS)
    parser.add_argument("--dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    missing = [m for m in ("nats", "trio_asyncio", "msgspec") if not importlib.util.find_spec(m)]
    if missing:
        print(f"{', '.join(missing)} missing: pip install 'trio-actors[cluster]'", file=sys.stderr)
        return 2
    try:
        if args.shop is not None:  # (a shop process)
            return trio.run(serve_shop, args.shop == "resume", args.nats, Path(args.dir))
        # SIGTERM, or the terminal hanging up: stop everything as on Ctrl-C.
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda *_: os.kill(os.getpid(), signal.SIGINT))
        return trio.run(run_main, args.nats)
    except Failed as error:
        print(f"durable_orders.py: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; every process this script started is stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # This file runs as __main__, but the journal stores events by their class's module
    # and name, and pickle refuses classes of __main__ (which no other program could
    # import to read them): the script imports itself under its own name,
    # durable_orders, and runs from there, in every process.
    from durable_orders import main as main_of_module

    sys.exit(main_of_module(sys.argv[1:]))
