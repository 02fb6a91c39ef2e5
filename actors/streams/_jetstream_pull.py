"""The consumer side of :class:`~actors.streams.JetStreamEngine`: pull requests, the
events they bring, and their settlements (ack, nak, term, in progress).

Everything here but the trio-facing classes (:class:`JetStreamConsumer`,
:class:`JetStreamReceived`) runs in the engine's asyncio loop (nats-py under
trio-asyncio), where a hop from trio costs ~0.2 ms; so:

- **Fetching** is one hop per :meth:`JetStreamConsumer.fetch`. Each durable consumer
  has one :class:`Puller` per engine, shared by every handle on it in this process,
  with as many inbox subscriptions as fetches through it ever ran at once: each fetch
  under way has an inbox of its own (an event arrives with its stream subject, so an
  inbox cannot tell which request it answers). A fetch first asks the server for what
  is available at once (``no_wait``); if nothing is, it asks for one event with an
  expiry (a lingering request) and, once that one arrives, for what is available
  after it (``no_wait`` again), so that it neither waits for a full batch nor leaves
  a request open on the server that would take events nobody waits for. Events that
  arrive for a request after its fetch gave up (cancelled, or its deadline passed)
  stay in the inbox's buffer and go to the next fetch; unfetched, they are delivered
  again after ``ack_wait`` (at least once).
- **Settlements** never hop: :meth:`JetStreamReceived.ack` (and the others) queue
  the settlement and wake the :class:`Settler`, an asyncio task that publishes what
  is queued. A settlement the server never gets (the connection was lost) is not an
  error: the event is delivered again (at least once). The last settlement of each
  batch for a consumer asks the server for a confirmation; :meth:`JetStreamConsumer.info`
  waits for it (and a fetch, after a ``nak``) so that they see the consumer as the
  settlements left it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import trio

from ._config import ConsumerConfig
from ._engine import Consumer, Received, StreamError, StreamNotFound, check_fetch

if TYPE_CHECKING:
    from ._jetstream import JetStreamEngine

_log: Final = logging.getLogger("actors.streams")

_ACK: Final = b"+ACK"
_TERM: Final = b"+TERM"
_PROGRESS: Final = b"+WPI"
_NAK: Final = b"-NAK"
_AFTER_FIRST: Final = 1.0
"""Seconds a fetch that has its first event waits at most for the server's answer to
the request for the rest (answered at once when the server is reachable)."""


class Waiter:
    """Answers awaited for ``count`` requests made together (their replies routed here
    by :class:`Replies`): ``answers[i]`` is the reply to the i-th, ``None`` until it
    came."""

    __slots__ = ("answers", "done", "left")

    def __init__(self, count: int) -> None:
        self.answers: list[Any] = [None] * count
        self.left = count
        self.done = asyncio.Event()

    def answered(self, index: int, msg: Any) -> None:
        self.answers[index] = msg
        self.left -= 1
        if not self.left:
            self.done.set()

    async def wait(self, timeout: float) -> bool:
        """Whether every answer came within ``timeout`` seconds."""
        if self.left:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), timeout)
        return not self.left


class Replies:
    """The replies to this engine's requests (publish acknowledgements, settlement
    confirmations) all arrive on one wildcard inbox subscription, each routed to its
    :class:`Waiter` by the last token of its subject."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._skip = len(prefix)
        self._next = 0
        self._waiting: dict[str, tuple[Waiter, int]] = {}

    def subject(self, waiter: Waiter, index: int) -> str:
        """A reply subject for answer ``index`` of ``waiter``."""
        self._next += 1
        token = str(self._next)
        self._waiting[token] = (waiter, index)
        return self.prefix + token

    def forget(self, waiter: Waiter) -> None:
        """Stop waiting for the answers ``waiter`` has not had (late ones are dropped)."""
        if waiter.left:
            for token in [t for t, (w, _) in self._waiting.items() if w is waiter]:
                del self._waiting[token]

    async def on_reply(self, msg: Any) -> None:
        entry = self._waiting.pop(msg.subject[self._skip :], None)
        if entry is not None:
            entry[0].answered(entry[1], msg)


class Settler:
    """Publishes the settlements queued from trio (:meth:`put`), from an asyncio task
    (:meth:`run`), so that settling costs no hop; see the module documentation."""

    def __init__(self, nc: Any, replies: Replies, timeout: float) -> None:
        self._nc = nc
        self._replies = replies
        self._timeout = timeout
        self._queue: list[tuple[str, bytes, Puller]] = []
        self._wake: asyncio.Event | None = None
        self._lock = asyncio.Lock()

    def put(self, reply: str, payload: bytes, puller: Puller) -> None:
        """Queue a settlement (from trio: no hop) and wake the task that sends it."""
        self._queue.append((reply, payload, puller))
        wake = self._wake
        if wake is not None and not wake.is_set():
            wake.set()

    async def run(self) -> None:
        """The asyncio task: send what is queued, then wait to be woken; until
        cancelled (when the engine closes, after a last :meth:`send`)."""
        wake = self._wake = asyncio.Event()
        while True:
            await self.send()
            await wake.wait()
            wake.clear()

    async def send(self) -> None:
        """Publish every settlement queued (in order). Called by the task, and before
        any other request of the engine, so that those come after them."""
        if not self._queue:
            return
        async with self._lock:
            while self._queue:
                batch, self._queue = self._queue, []
                last = {puller: at for at, (_, _, puller) in enumerate(batch)}
                failed: Exception | None = None
                for at, (reply, payload, puller) in enumerate(batch):
                    try:
                        if last[puller] == at:  # (confirmed: the others are before it)
                            waiter = Waiter(1)
                            puller.barrier = waiter
                            subject = self._replies.subject(waiter, 0)
                            await self._nc.publish(reply, payload, reply=subject)
                        else:
                            await self._nc.publish(reply, payload)
                        if payload[:4] == _NAK:
                            puller.nak_sent = True
                    except Exception as error:  # (the server delivers those events again)
                        failed = error
                if failed is not None:
                    _log.warning(
                        "JetStream: settlements of %d events not sent (%r); the events not "
                        "settled are delivered again after their ack_wait",
                        len(batch),
                        failed,
                    )

    async def confirmed(self, puller: Puller, *, naks_only: bool) -> None:
        """Send what is queued, then wait (at most the engine's timeout) until the
        server confirms it processed the last settlement sent for ``puller``'s
        consumer (``naks_only``: only if a ``nak`` is among those not confirmed)."""
        await self.send()
        waiter = puller.barrier
        if waiter is None or (naks_only and not puller.nak_sent):
            return
        await waiter.wait(self._timeout)
        if puller.barrier is waiter:
            puller.barrier = None
            puller.nak_sent = False


class Inbox:
    """One inbox subscription of a :class:`Puller`, and the fetch through it: one fetch
    at a time (its events arrive with their stream subjects, so the inbox cannot tell
    the fetch's requests from another's; a fetch counts the events it waits for)."""

    def __init__(self, nc: Any, next_subject: str) -> None:
        self._nc = nc
        self._next_subject = next_subject
        self._inbox = ""
        self._requests = 0
        self._sub: Any = None
        self.buffer: collections.deque[Any] = collections.deque()
        self._ended: dict[str, str] = {}  # (open request's subject -> its end status)
        self._open: set[str] = set()
        self._changed = asyncio.Event()
        self._waiting = 0  # (fetches waiting for _changed)

    @property
    def subscribed(self) -> bool:
        return self._sub is not None

    async def subscribe(self) -> None:
        self._inbox = self._nc.new_inbox() + "."
        self._sub = await self._nc.subscribe(self._inbox + "*", cb=self._on_message)

    async def unsubscribe(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            await sub.unsubscribe()

    async def _on_message(self, msg: Any) -> None:
        if msg.reply:  # (an event: its reply subject is the one to settle it on)
            self.buffer.append(msg)
        else:  # (a status: the end of a request (404, 408, 409), or a heartbeat (100))
            headers = msg.headers or {}
            status = headers.get("Status", "")
            if status == "100" or msg.subject not in self._open:
                return
            self._ended[msg.subject] = f"{status} {headers.get('Description', '')}".strip()
        if self._waiting:
            changed, self._changed = self._changed, asyncio.Event()
            changed.set()

    async def _request(self, batch: int, *, expires: float | None) -> str:
        self._requests += 1
        subject = f"{self._inbox}{self._requests}"
        self._open.add(subject)
        if expires is None:
            body = {"batch": batch, "no_wait": True}
        else:
            body = {"batch": batch, "expires": int(expires * 1e9)}
        await self._nc.publish(self._next_subject, json.dumps(body).encode(), reply=subject)
        return subject

    def _close_request(self, subject: str) -> None:
        self._open.discard(subject)
        self._ended.pop(subject, None)

    async def _wait(self, subject: str, count: int, deadline: float) -> None:
        """Until ``count`` events are buffered, or the request ``subject`` ended, or
        the loop's clock passes ``deadline``. (``asyncio.timeout_at``, not ``wait_for``:
        on Python 3.11 ``wait_for`` loses a cancellation that comes as the event is
        set, and the cancelled fetch would wait on until its deadline.)"""
        while len(self.buffer) < count and subject not in self._ended:
            if deadline <= asyncio.get_running_loop().time():
                return
            self._waiting += 1
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout_at(deadline):
                        await self._changed.wait()
            finally:
                self._waiting -= 1

    def take(self, batch: int, into: list[Any]) -> None:
        buffer = self.buffer
        while buffer and len(into) < batch:
            into.append(buffer.popleft())

    async def fetch(self, batch: int, deadline: float) -> tuple[list[Any], bool]:
        """See :meth:`Puller.fetch` (``deadline`` on the loop's clock)."""
        loop = asyncio.get_running_loop()
        taken: list[Any] = []
        self.take(batch, taken)
        if taken:
            return taken, True
        # Whatever is available at once.
        subject = await self._request(batch, expires=None)
        try:
            await self._wait(subject, batch, max(deadline, loop.time() + 0.05))
            answered = subject in self._ended or bool(self.buffer)
        finally:
            self._close_request(subject)
        self.take(batch, taken)
        if taken:
            return taken, True
        # Nothing: wait for one (the server expires the request just before the deadline).
        expires = deadline - loop.time() - 0.01
        if expires < 0.001:
            return taken, answered
        subject = await self._request(1, expires=expires)
        try:
            await self._wait(subject, 1, deadline)
            answered = answered or subject in self._ended or bool(self.buffer)
        finally:
            self._close_request(subject)
        self.take(batch, taken)
        if not taken or len(taken) == batch:
            return taken, answered
        # The rest of what is available after the first (at once, as the first request).
        subject = await self._request(batch - len(taken), expires=None)
        try:
            await self._wait(subject, batch - len(taken), loop.time() + _AFTER_FIRST)
        finally:
            self._close_request(subject)
        self.take(batch, taken)
        return taken, True


class Puller:
    """The inboxes of one durable consumer in this engine, the fetches through them,
    and the confirmation of its settlements (asyncio side; see the module
    documentation)."""

    def __init__(self, nc: Any, stream: str, durable: str) -> None:
        self._nc = nc
        self.stream = stream
        self.durable = durable
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inboxes: list[Inbox] = []
        self._free: list[Inbox] = []  # (those no fetch is using)
        self._closed = False
        self.barrier: Waiter | None = None  # (the last settlement sent, confirmed)
        self.nak_sent = False

    async def _new_inbox(self) -> Inbox:
        inbox = Inbox(self._nc, self._next_subject)
        self._inboxes.append(inbox)  # (before subscribing: unsubscribe() sees it)
        await inbox.subscribe()
        return inbox

    async def subscribe(self) -> None:
        self._free.append(await self._new_inbox())

    async def unsubscribe(self) -> None:
        self._closed = True
        self._free.clear()
        inboxes, self._inboxes = self._inboxes, []
        for inbox in inboxes:
            await inbox.unsubscribe()

    async def fetch(self, batch: int, timeout: float) -> tuple[list[Any], bool]:
        """Up to ``batch`` events (nats-py messages); and whether the server answered
        at all (``False``: it was silent until the deadline).

        Each fetch under way has an inbox of its own (taken from those no fetch uses,
        or a new one, so there are as many as fetches ever ran at once), so that the
        events of its requests are counted by it alone: fetches through one shared
        inbox would take each other's events and then wait for their own until their
        deadline. Events left in an inbox by a fetch that gave up go to the next fetch
        (through any inbox)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        taken: list[Any] = []
        for idle in self._free:  # (leftovers: no fetch is counting on them)
            idle.take(batch, taken)
        if taken:
            return taken, True
        inbox = self._free.pop() if self._free else await self._new_inbox()
        try:
            return await inbox.fetch(batch, deadline)
        finally:
            if not self._closed and inbox.subscribed:
                self._free.append(inbox)


def headers_of(msg: Any) -> Mapping[str, str]:
    headers: dict[str, str] | None = msg.headers
    return headers or {}


class JetStreamReceived(Received):
    """An event fetched from a JetStream consumer (see :class:`Received`). Settling it
    queues the settlement for the engine's asyncio side (no hop); the settlement is
    sent in order with the engine's other requests."""

    __slots__ = (
        "_engine",
        "_puller",
        "_reply",
        "_settled",
        "data",
        "delivered",
        "headers",
        "pending",
        "seq",
        "stream",
        "subject",
        "timestamp",
    )

    def __init__(self, engine: JetStreamEngine, puller: Puller, msg: Any) -> None:
        reply: str = msg.reply
        tokens = reply.split(".")
        if len(tokens) == 9:  # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
            at = 2
        elif len(tokens) >= 11:  # $JS.ACK.<domain>.<account>.<stream>...
            at = 4
        else:
            raise StreamError(f"JetStream delivered an event with an unknown reply {reply!r}")
        self._engine = engine
        self._puller = puller
        self._reply = reply
        self._settled = False
        self.subject: str = msg.subject
        self.data: bytes = msg.data
        self.headers = headers_of(msg)
        self.stream = tokens[at]
        self.delivered = int(tokens[at + 2])
        self.seq = int(tokens[at + 3])
        self.timestamp = int(tokens[at + 5]) / 1e9
        self.pending = int(tokens[at + 6])

    def __repr__(self) -> str:
        return (
            f"<JetStreamReceived {self.stream}#{self.seq} on {self.subject!r}, "
            f"delivery {self.delivered}, {len(self.data)} bytes>"
        )

    def _settle(self, payload: bytes) -> None:
        if self._settled:
            return
        self._settled = True
        self._engine._settle(self._reply, payload, self._puller)

    async def ack(self) -> None:
        await trio.lowlevel.checkpoint()
        self._settle(_ACK)

    async def nak(self, delay: float | None = None) -> None:
        if delay is not None and (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or math.isnan(delay)
            or delay < 0
        ):
            raise ValueError(f"nak(delay) takes seconds >= 0 or None, got {delay!r}")
        await trio.lowlevel.checkpoint()
        if delay:
            self._settle(_NAK + b' {"delay": %d}' % int(delay * 1e9))
        else:
            self._settle(_NAK)

    async def term(self) -> None:
        await trio.lowlevel.checkpoint()
        self._settle(_TERM)

    async def in_progress(self) -> None:
        await trio.lowlevel.checkpoint()
        if not self._settled:
            self._engine._settle(self._reply, _PROGRESS, self._puller)


class JetStreamConsumer(Consumer):
    """A handle on a durable JetStream consumer (see :class:`Consumer`), made by
    :meth:`JetStreamEngine.consumer`. Handles on the same durable name share its events
    (a pull consumer: each event to one fetcher)."""

    def __init__(self, engine: JetStreamEngine, stream: str, config: ConsumerConfig) -> None:
        self.stream = stream
        self.config = config
        self._engine = engine

    def __repr__(self) -> str:
        return f"<JetStreamConsumer {self.config.durable!r} of stream {self.stream!r}>"

    async def fetch(self, batch: int, timeout: float) -> list[Received]:
        """See :meth:`Consumer.fetch`. One hop into asyncio. Cancelled, it hands out
        nothing: events that arrive for it go to the next fetch (or are delivered again
        after ``ack_wait``). :class:`StreamNotFound` if the consumer (or its stream) no
        longer exists (checked when the server answered nothing until the deadline)."""
        timeout = check_fetch(batch, timeout)
        engine = self._engine
        puller, msgs = await engine._aio(self._fetch(batch, timeout), "fetch")
        return [JetStreamReceived(engine, puller, msg) for msg in msgs]

    async def _fetch(self, batch: int, timeout: float) -> tuple[Puller, list[Any]]:
        engine = self._engine
        puller = await engine._puller(self.stream, self.config.durable)
        await engine._settler.confirmed(puller, naks_only=True)
        msgs, answered = await puller.fetch(batch, timeout)
        if not msgs and not answered and engine._nc.is_connected:
            # (a pull request for a consumer that is gone is not answered at all; any
            # other trouble here (JetStream still recovering) is not the fetch's)
            try:
                await engine._consumer_info(self.stream, self.config.durable)
            except StreamNotFound:
                raise
            except Exception as error:
                _log.debug("JetStream: checking consumer %s: %r", self.config.durable, error)
        return puller, msgs

    async def info(self) -> tuple[int, int]:
        """See :meth:`Consumer.info`; it reflects every settlement made before the
        call. JetStream counts an event refused with ``nak`` (not yet delivered again)
        as ``ack_pending``."""

        async def ask() -> tuple[int, int]:
            engine = self._engine
            puller = await engine._puller(self.stream, self.config.durable)
            await engine._settler.confirmed(puller, naks_only=False)
            info = await engine._consumer_info(self.stream, self.config.durable)
            return int(info.num_pending or 0), int(info.num_ack_pending or 0)

        return await self._engine._aio(ask(), "info")
