"""The contract of a stream engine, which every engine follows and one conformance suite
checks (``tests/test_streams_conformance.py``): :class:`StreamEngine`,
:class:`Consumer`, :class:`Received`, :class:`PubAck`, :class:`StreamState` and the
errors.

An engine stores events in durable streams and hands them to durable consumers, at least
once. Two engines exist: :class:`~actors.streams.JetStreamEngine` (NATS JetStream, the
real one) and :class:`~actors.streams.InMemoryStreams` (a stand-in for fast tests, with
fault injection). Engines move bytes: turning events into bytes is the runtime's
business (``open_streams`` and its codec).

Every method runs in the trio thread of its caller. Cancelling a call leaves the engine
usable; a cancelled ``publish`` may or may not have stored its event (publish again with
the same message id to be sure: the duplicate is dropped).
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping, Sequence

import attrs

from .._errors import ActorError
from ._config import ConsumerConfig, StreamConfig


class StreamError(ActorError):
    """A stream operation failed: the engine refused it (no stream has a subject that
    matches, a limit was hit, the server said no) or its outcome is unknown (the
    connection was lost before the engine answered). The engine's own error, when there
    is one, is chained (``__cause__``)."""


class NoStreamForSubject(StreamError):
    """``publish`` to a subject that no stream stores: nothing was stored. Declare a
    stream whose ``subjects`` match it."""

    def __init__(self, subject: str) -> None:
        super().__init__(
            f"no durable stream stores subject {subject!r}: nothing was stored; declare a "
            "StreamConfig whose subjects match it"
        )
        self.subject = subject


class StreamNotFound(StreamError):
    """A stream (or consumer) named in a call does not exist."""


@attrs.frozen
class PubAck:
    """The engine's answer to a publish: the event is stored in ``stream`` as
    ``seq``; ``duplicate`` if its message id was already stored within the stream's
    duplicate window (then ``seq`` is that earlier event's, and nothing new was
    stored)."""

    stream: str
    seq: int
    duplicate: bool = False


@attrs.frozen
class StreamState:
    """What a stream holds now: ``messages`` events, sequences ``first_seq`` ..
    ``last_seq`` (``first_seq`` is ``last_seq + 1`` when it is empty), and the
    consumers' names."""

    name: str
    messages: int
    first_seq: int
    last_seq: int
    consumers: tuple[str, ...] = ()


@attrs.frozen
class StoredEvent:
    """One event as the stream stored it."""

    subject: str
    data: bytes
    headers: Mapping[str, str]
    seq: int
    timestamp: float
    """Wall-clock seconds since the epoch when the engine stored it."""
    msg_id: str | None = None
    """The message id it was published with (``publish(msg_id=...)``, or a
    ``Nats-Msg-Id`` header; it stays among ``headers`` too), ``None`` if it had none."""


class Received(abc.ABC):
    """One event handed out by :meth:`Consumer.fetch`, to be settled exactly once with
    :meth:`ack`, :meth:`nak` or :meth:`term` (a second settlement is ignored). Until it
    is settled it counts against the consumer's ``max_ack_pending``; if it is not
    settled within ``ack_wait`` (extended by :meth:`in_progress`), the engine delivers it
    again.
    """

    subject: str
    data: bytes
    headers: Mapping[str, str]
    stream: str
    seq: int
    """The stream sequence: stable across redeliveries."""
    delivered: int
    """How many times this event has been delivered to this consumer, this time included
    (1 on the first delivery)."""
    timestamp: float
    """Wall-clock seconds since the epoch when the stream stored the event."""
    pending: int
    """Events of the consumer not yet delivered after this one (at fetch time)."""

    @abc.abstractmethod
    async def ack(self) -> None:
        """Done with it: never deliver it again to this consumer."""

    @abc.abstractmethod
    async def nak(self, delay: float | None = None) -> None:
        """Not done: deliver it again, after ``delay`` seconds (``None``: at once), unless
        it has been delivered ``max_deliver`` times already."""

    @abc.abstractmethod
    async def term(self) -> None:
        """Give up on it: never deliver it again to this consumer (the runtime calls this
        after parking it in a dead-letter stream). On a ``workqueue`` or ``interest``
        stream this removes the event as an ack would."""

    @abc.abstractmethod
    async def in_progress(self) -> None:
        """Still working on it: restart its ``ack_wait``."""


def check_fetch(batch: object, timeout: object) -> float:
    """The checks of :meth:`Consumer.fetch`'s arguments, shared by the engines:
    ``ValueError`` naming the argument unless ``batch`` is an int >= 1 and ``timeout``
    a number of seconds >= 0; returns ``timeout`` as a float."""
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"fetch needs a batch int >= 1, got {batch!r}")
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or math.isnan(timeout)
        or timeout < 0
    ):
        raise ValueError(f"fetch needs a timeout of seconds >= 0, got {timeout!r}")
    return float(timeout)


class Consumer(abc.ABC):
    """A handle on one durable consumer. Several handles (in one process or several) on
    the same durable name share its events: each event goes to one of them (a consumer
    group)."""

    stream: str
    config: ConsumerConfig

    @abc.abstractmethod
    async def fetch(self, batch: int, timeout: float) -> list[Received]:
        """Up to ``batch`` events, in stream order except for redeliveries (which come
        first, in the order they became due: on JetStream a ``nak`` still on its way
        may let a new event come first), waiting at most ``timeout`` seconds for the
        first one; ``[]`` if none came. Never hands out more than ``max_ack_pending``
        unsettled events for the durable name as a whole."""

    @abc.abstractmethod
    async def info(self) -> tuple[int, int]:
        """``(pending, ack_pending)``: events not yet delivered, and delivered but not
        settled."""


class StreamEngine(abc.ABC):
    """Durable streams and their consumers (see the module documentation)."""

    @abc.abstractmethod
    async def add_stream(self, config: StreamConfig) -> None:
        """Create the stream, or update it to ``config`` if one of that name exists
        (its events are kept). :class:`StreamError` if the engine refuses, for example
        because its subjects overlap another stream's."""

    @abc.abstractmethod
    async def delete_stream(self, name: str) -> None:
        """Delete the stream, its events and its consumers. :class:`StreamNotFound` if
        there is none."""

    @abc.abstractmethod
    async def stream_state(self, name: str) -> StreamState:
        """What the stream holds now. :class:`StreamNotFound` if there is none."""

    @abc.abstractmethod
    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        msg_id: str | None = None,
    ) -> PubAck:
        """Store one event; returns once the stream stored it (or found ``msg_id`` a
        duplicate). :class:`NoStreamForSubject` if no stream matches ``subject``;
        :class:`StreamError` for any other refusal, or when the outcome is unknown."""

    async def publish_many(
        self, events: Sequence[tuple[str, bytes, Mapping[str, str] | None, str | None]]
    ) -> list[PubAck]:
        """Store several events ``(subject, data, headers, msg_id)``, waiting for all
        their acknowledgements together, in order. The first refusal raises (events
        before it may be stored). The default publishes one by one; an engine overrides
        it to have them in flight together."""
        return [
            await self.publish(subject, data, headers=headers, msg_id=msg_id)
            for subject, data, headers, msg_id in events
        ]

    @abc.abstractmethod
    async def get(self, stream: str, seq: int) -> StoredEvent | None:
        """The event stored as ``seq`` (``None`` if there is none, or it was removed)."""

    @abc.abstractmethod
    async def consumer(self, stream: str, config: ConsumerConfig) -> Consumer:
        """A handle on the durable consumer ``config.durable`` of ``stream``, created if
        it does not exist (then it starts at ``config.start``), otherwise bound as it is
        (its position kept; other settings updated where the engine allows).
        :class:`StreamNotFound` if the stream does not exist."""

    @abc.abstractmethod
    async def delete_consumer(self, stream: str, durable: str) -> None:
        """Forget the durable consumer and its position. :class:`StreamNotFound` if
        there is none."""

    async def close(self) -> None:  # noqa: B027 - optional for engines
        """Release the engine's resources. The default does nothing."""
