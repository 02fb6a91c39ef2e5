"""The state behind :class:`~actors.streams.InMemoryStreams`: stored events, streams and
durable consumers, and the rules of JetStream they follow (subject overlap, sizes,
limits, retention, redelivery). The engine (``_memory.py``) holds the public API and the
fault injection; this module holds no trio task and does no I/O: every change happens
inside one engine call, on trio's clock (``trio.current_time()``) passed in as ``now``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

import trio

from .._topics import TopicTrie
from ._config import ConsumerConfig, StreamConfig
from ._engine import StreamError

MSG_ID_HEADER = "Nats-Msg-Id"
"""The header that carries a message id, as JetStream stores it (``Received.headers`` and
``StoredEvent.headers`` show it, as they do on JetStream)."""

DEFAULT_MAX_MSG_SIZE = 1024 * 1024
"""NATS' default ``max_payload``: the largest event (headers and data) when the stream
sets no ``max_msg_size``."""

_HEADER_LINE = b"NATS/1.0\r\n"


def pattern_within(inner: str, outer: str) -> bool:
    """Whether every subject that ``inner`` matches also matches ``outer``."""
    a, b = inner.split("."), outer.split(".")
    for index, segment in enumerate(b):
        if segment == ">":
            return index < len(a)
        if index >= len(a) or a[index] == ">":
            return False
        if segment != "*" and a[index] != segment:
            return False
    return len(a) == len(b)


def patterns_overlap(first: str, second: str) -> bool:
    """Whether some subject matches both patterns."""
    a, b = first.split("."), second.split(".")
    for index in range(min(len(a), len(b))):
        x, y = a[index], b[index]
        if x == ">" or y == ">":
            return True
        if x != "*" and y != "*" and x != y:
            return False
    return len(a) == len(b)


def header_size(headers: Mapping[str, str]) -> int:
    """The size of ``headers`` in NATS' wire form (``0`` when there are none)."""
    if not headers:
        return 0
    lines = sum(len(f"{key}: {value}\r\n".encode()) for key, value in headers.items())
    return len(_HEADER_LINE) + lines + 2


def stored_size(storage: str, subject: str, headers_size: int, data_size: int) -> int:
    """What one event counts against ``max_bytes``, as JetStream counts it: subject,
    headers and data, plus its per-event overhead (file: 30 bytes, and 4 more with
    headers; memory: 16 bytes)."""
    body = len(subject.encode()) + headers_size + data_size
    if storage == "memory":
        return body + 16
    return body + 30 + (4 if headers_size else 0)


class Event:
    """One stored event. ``stored_at`` is trio's clock when it was stored (for
    ``max_age``), ``timestamp`` the wall clock (what users see)."""

    __slots__ = ("data", "headers", "seq", "size", "stored_at", "subject", "timestamp")

    def __init__(
        self,
        subject: str,
        data: bytes,
        headers: Mapping[str, str],
        seq: int,
        timestamp: float,
        stored_at: float,
        size: int,
    ) -> None:
        self.subject = subject
        self.data = data
        self.headers = MappingProxyType(dict(headers))
        self.seq = seq
        self.timestamp = timestamp
        self.stored_at = stored_at
        self.size = size


class Delivery:
    """An event handed out and not settled: how many times it was delivered, and when
    (trio's clock) it is due for redelivery (its ack_wait, a nak's delay)."""

    __slots__ = ("delivered", "due")

    def __init__(self, delivered: int, due: float) -> None:
        self.delivered = delivered
        self.due = due


class ConsumerState:
    """A durable consumer: ``next_seq`` (the next stream sequence to deliver for the first
    time), ``pending`` (delivered, not settled), and ``undelivered`` (stored events that
    match its filter at or after ``next_seq``, kept up to date by its stream)."""

    def __init__(self, stream: StreamData, config: ConsumerConfig, next_seq: int) -> None:
        self.name = config.durable
        self.config = config
        self.next_seq = next_seq
        self.pending: dict[int, Delivery] = {}
        self._filter: TopicTrie[bool] = TopicTrie()
        self.reconfigure(stream, config)

    def reconfigure(self, stream: StreamData, config: ConsumerConfig) -> None:
        """Take the settings of ``config`` (all but ``start``), and recount."""
        self.config = config
        self._filter = TopicTrie()
        self._filter.add(config.filter or ">", True)
        self.undelivered = sum(
            1
            for seq, event in stream.events.items()
            if seq >= self.next_seq and self.matches(event.subject)
        )

    def matches(self, subject: str) -> bool:
        return bool(self._filter.match(subject))

    def ack_wait(self, delivered: int) -> float:
        """Seconds the ``delivered``-th delivery of an event waits for its settlement."""
        backoff = self.config.backoff
        if backoff:
            return backoff[min(delivered, len(backoff)) - 1]
        return self.config.ack_wait

    def next_due(self) -> float:
        """The earliest time a pending event is due (``inf`` if none)."""
        return min((d.due for d in self.pending.values()), default=math.inf)

    def settled(self, seq: int) -> bool:
        """Whether this consumer is done with ``seq`` (for interest retention)."""
        return seq < self.next_seq and seq not in self.pending


class StreamData:
    """One stream: its events by sequence (oldest first), the message ids of its
    duplicate window, its consumers, and an event that wakes its waiting fetchers."""

    def __init__(self, config: StreamConfig) -> None:
        self.config = config
        self.events: dict[int, Event] = {}
        self.last_seq = 0
        self.bytes = 0
        self.msg_ids: dict[str, tuple[int, float]] = {}  # id -> (seq, stored_at)
        self.consumers: dict[str, ConsumerState] = {}
        self.changed = trio.Event()

    @property
    def name(self) -> str:
        return self.config.name

    def first_seq(self) -> int:
        return next(iter(self.events)) if self.events else self.last_seq + 1

    def notify(self) -> None:
        """Wake every fetcher waiting on this stream (it looks again)."""
        self.changed.set()
        self.changed = trio.Event()

    def duplicate_window(self) -> float:
        """JetStream's: no longer than ``max_age``."""
        window = self.config.duplicate_window
        return window if self.config.max_age is None else min(window, self.config.max_age)

    def refresh(self, now: float) -> None:
        """Drop the events older than ``max_age`` and the message ids older than the
        duplicate window."""
        max_age = self.config.max_age
        if max_age is not None:
            while self.events:
                oldest = next(iter(self.events.values()))
                if oldest.stored_at > now - max_age:
                    break
                self.remove(oldest.seq)
        horizon = now - self.duplicate_window()
        while self.msg_ids:
            msg_id, (_, stored_at) = next(iter(self.msg_ids.items()))
            if stored_at > horizon:
                break
            del self.msg_ids[msg_id]

    def append(self, event: Event, msg_id: str | None) -> None:
        """Store ``event`` (numbered ``last_seq + 1``), then apply the limits and, for
        interest retention, drop it at once if no consumer's filter matches it."""
        self.events[event.seq] = event
        self.last_seq = event.seq
        self.bytes += event.size
        if msg_id is not None:
            self.msg_ids[msg_id] = (event.seq, event.stored_at)
        for consumer in self.consumers.values():
            if event.seq >= consumer.next_seq and consumer.matches(event.subject):
                consumer.undelivered += 1
        self.enforce_limits()
        if self.config.retention == "interest" and event.seq in self.events:
            self.drop_if_done(event.seq)

    def enforce_limits(self) -> None:
        """Discard the oldest events while ``max_msgs`` or ``max_bytes`` is exceeded."""
        config = self.config
        while self.events and (
            (config.max_msgs is not None and len(self.events) > config.max_msgs)
            or (config.max_bytes is not None and self.bytes > config.max_bytes)
        ):
            self.remove(next(iter(self.events)))

    def remove(self, seq: int) -> None:
        """Remove one stored event. A consumer that had it pending treats it as settled
        (as JetStream does); one that had not delivered it yet counts one less."""
        event = self.events.pop(seq)
        self.bytes -= event.size
        for consumer in self.consumers.values():
            was_pending = consumer.pending.pop(seq, None) is not None
            if not was_pending and seq >= consumer.next_seq and consumer.matches(event.subject):
                consumer.undelivered -= 1

    def drop_if_done(self, seq: int) -> None:
        """Under interest retention: remove ``seq`` once every consumer whose filter
        matches it settled it (at once if none matches)."""
        event = self.events.get(seq)
        if event is None:
            return
        for consumer in self.consumers.values():
            if consumer.matches(event.subject) and not consumer.settled(seq):
                return
        self.remove(seq)

    def settled_by(self, consumer: ConsumerState, seq: int) -> None:
        """``consumer`` acknowledged or terminated ``seq``: apply the retention."""
        if consumer.pending.pop(seq, None) is None:
            return
        if self.config.retention == "workqueue":
            if seq in self.events:
                self.remove(seq)
        elif self.config.retention == "interest":
            self.drop_if_done(seq)

    def check_consumer(self, config: ConsumerConfig, creating: bool) -> None:
        """Refuse what JetStream refuses of a consumer of this stream."""
        name = f"consumer {config.durable!r} of stream {self.name!r}"
        if config.filter is not None and not any(
            pattern_within(config.filter, subject) or pattern_within(subject, config.filter)
            for subject in self.config.subjects
        ):
            raise StreamError(
                f"{name}: its filter {config.filter!r} is not a subset of the stream's "
                f"subjects {list(self.config.subjects)} (nor a superset of one of them); "
                "filter on subjects the stream stores"
            )
        if config.backoff and (
            config.max_deliver is None or config.max_deliver <= len(config.backoff)
        ):
            raise StreamError(
                f"{name}: with {len(config.backoff)} backoff delays, max_deliver must be an "
                f"int greater than {len(config.backoff)} (JetStream's rule), got "
                f"{config.max_deliver!r}"
            )
        if self.config.retention != "workqueue":
            return
        if creating and config.start.kind != "all":
            raise StreamError(
                f"{name}: a consumer of a workqueue stream starts at the beginning "
                f"(Start.beginning()), not {config.start!r}"
            )
        mine = config.filter or ">"
        for other in self.consumers.values():
            theirs = other.config.filter or ">"
            if other.name != config.durable and patterns_overlap(mine, theirs):
                raise StreamError(
                    f"{name}: on a workqueue stream each event goes to one consumer, but "
                    f"its filter {mine!r} overlaps consumer {other.name!r}'s {theirs!r}; "
                    "share one durable consumer (a consumer group) or filter disjoint "
                    "subjects"
                )
