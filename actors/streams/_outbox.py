"""The outbox: the events persistent actors persisted, published to a durable stream
with the message id ``persistence_id/seq`` (:class:`Outbox`, a projection handler, and
:func:`spawn_outbox`, which runs one as a projection actor).

The outbox is a projection (:mod:`actors.projection`): a :class:`~actors.projection.
JournalSource` reads the events of one tag in the journal's commit order, and the
outbox publishes each batch with :meth:`Streams.publish_many`, then stores the offset
of the batch's last event (at least once, as :class:`~actors.projection.AtLeastOnce`
does). Tailing, offsets, backoff, status and supervision are the projection's.

Why nothing is lost and nothing is duplicated: a crash after the journal's commit and
before the publish leaves the offset behind the events, so the restarted outbox
publishes them; a crash after the publish and before the offset is stored makes the
restarted outbox publish them again, with the same message ids, and the stream drops
them as duplicates, provided it still remembers the ids (its ``duplicate_window``).
``docs/streams.md`` ("The outbox") states the guarantee in full.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from supervision import Backoff

from .._topics import check_topic
from ..projection import (
    AtLeastOnce,
    Envelope,
    JournalSource,
    OffsetStore,
    Projection,
    ProjectionError,
    ProjectionHandler,
)
from ..projection._handlers import HandlerSession
from ..projection._model import describe
from ..projection._projection import DEFAULT_BACKOFF
from ._engine import PubAck, StreamError
from ._streams import Streams, UnencodableEvent

if TYPE_CHECKING:
    from .._context import ActorContext
    from .._ref import ActorRef
    from .._system import ActorSystem
    from ..persistence import Journal

Subject = str | Callable[[Envelope], str]
"""Where the outbox publishes an event: a fixed topic, or a function of its
:class:`~actors.projection.Envelope` that returns one."""


class OutboxError(ProjectionError):
    """An outbox could not publish a batch: the engine refused it or did not answer
    (the :class:`StreamError` is the ``__cause__``). The offset is not stored, so the
    projection backs off and publishes the batch again (the events already stored are
    dropped as duplicates by their message ids). Its message names the outbox and the
    events."""


class UnpublishableEvent(OutboxError):
    """One event cannot be published as it is: the streams' codec cannot encode it,
    the ``subject`` function raised or returned something that is not a topic, or the
    envelope has no persistence id (it does not come from a journal). The events before
    it in the batch are published; the batch then fails, and the projection backs off
    and tries again, without ever skipping the event, until the cause is fixed (a type
    registered with the codec, the subject function corrected) and the outbox
    restarted. Its message names the event (persistence id, seq, offset) and the fix;
    the original error is the ``__cause__``."""


def _message_id(envelope: Envelope) -> str:
    """The message id of ``envelope``'s event: ``"<persistence_id>/<seq>"``."""
    return f"{envelope.persistence_id}/{envelope.seq}"


def _named(envelope: Envelope) -> str:
    return f"{envelope.persistence_id!r} seq {envelope.seq} (offset {envelope.offset})"


class Outbox(ProjectionHandler):
    """A projection handler that publishes each event to a durable stream through
    ``streams`` (an :func:`open_streams` block's :class:`Streams`), with the message id
    ``"<persistence_id>/<seq>"``, at least once: each batch is published with
    :meth:`Streams.publish_many` and, once every event of it is acknowledged by the
    stream, the offset of its last event is saved in ``offsets``.

    ``subject``: the topic of every event (a str), or a function of the
    :class:`~actors.projection.Envelope` that returns each event's (called in the
    projection actor, in commit order; it must not block). ``offsets``: where the
    position is kept, by the projection's name and key. It must outlive the process
    (a :class:`~actors.projection.SqliteOffsetStore` or
    :class:`~actors.projection.PostgresOffsetStore`): an outbox that starts with no
    stored offset publishes every event of its tag again, and those older than the
    stream's ``duplicate_window`` are stored twice.

    Run it as the handler of a :class:`~actors.projection.Projection` whose source is a
    :class:`~actors.projection.JournalSource` (:func:`spawn_outbox` does it). What
    happens on a failure: see :class:`OutboxError` and :class:`UnpublishableEvent`;
    both back off (the projection's ``backoff``) and are reported in its status
    (``last_error``) and on the ``actors.projection`` logger. A
    :class:`~actors.projection.Rebuild` clears the offset: every event of the tag is
    published again (dropped as duplicates within the window, stored again beyond it).

    :attr:`published` and :attr:`duplicates` count the events the stream acknowledged
    through this object, as new and as duplicates (of an earlier publish).
    """

    def __init__(self, streams: Streams, *, subject: Subject, offsets: OffsetStore) -> None:
        if not isinstance(streams, Streams):
            raise TypeError(
                f"Outbox needs the Streams of an open_streams block, got {type(streams).__name__}"
            )
        if isinstance(subject, str):
            check_topic(subject)
        elif not callable(subject):
            raise TypeError(
                "subject must be a topic (str) or a function of the Envelope that returns "
                f"one, got {type(subject).__name__} {subject!r}"
            )
        if not isinstance(offsets, OffsetStore):
            raise TypeError(
                f"offsets must be an OffsetStore (SqliteOffsetStore, PostgresOffsetStore; "
                f"InMemoryOffsetStore for tests), got {type(offsets).__name__}"
            )
        self.streams = streams
        self.subject = subject
        self.offsets = offsets
        self.published = 0
        self.duplicates = 0

    def __repr__(self) -> str:
        return f"<Outbox to {self.subject!r} on {self.streams.engine!r}>"

    def _session(self, name: str, key: str) -> HandlerSession:
        # The projection's at-least-once session does the rest: publish, then save.
        return AtLeastOnce(partial(self._publish, name), offsets=self.offsets)._session(name, key)

    def _subject_of(self, name: str, envelope: Envelope) -> str:
        if not envelope.persistence_id:
            raise UnpublishableEvent(
                f"outbox {name!r} got an event with no persistence id (offset "
                f"{envelope.offset}, subject {envelope.subject!r}): an outbox publishes "
                "the events of a journal; give its projection a JournalSource"
            )
        subject = self.subject
        if isinstance(subject, str):
            return subject
        try:
            topic = subject(envelope)
            return check_topic(topic)
        except Exception as error:
            raise UnpublishableEvent(
                f"outbox {name!r} cannot choose the subject of event {_named(envelope)}: "
                f"its subject function {getattr(subject, '__qualname__', subject)!r} "
                f"failed with {describe(error)}; fix it (it must return a topic such as "
                "'orders.created') and restart the outbox: the event is not skipped"
            ) from error

    async def _publish(self, name: str, envelopes: list[Envelope]) -> None:
        batch = [(self._subject_of(name, e), e.event, _message_id(e)) for e in envelopes]
        try:
            acks = await self._send(name, envelopes, batch)
        except UnencodableEvent as error:
            index = self._first_unencodable(batch)
            if index is None:  # (each encodes alone: fail the whole batch)
                raise OutboxError(
                    f"outbox {name!r} could not publish its batch of {len(envelopes)} "
                    f"events: {error}"
                ) from error
            if index > 0:
                self._count(await self._send(name, envelopes[:index], batch[:index]))
            bad = envelopes[index]
            raise UnpublishableEvent(
                f"outbox {name!r} cannot publish event {_named(bad)}: {error}; the "
                f"events before it are published, and the outbox retries from it with "
                "backoff, never skipping it: fix the codec and restart the outbox"
            ) from error
        self._count(acks)

    async def _send(
        self, name: str, envelopes: list[Envelope], batch: list[tuple[str, Any, str]]
    ) -> list[PubAck]:
        try:
            acks = await self.streams.publish_many(batch)
        except UnencodableEvent:
            raise
        except StreamError as error:
            first, last = envelopes[0], envelopes[-1]
            raise OutboxError(
                f"outbox {name!r} could not publish its batch of {len(envelopes)} events "
                f"(offsets {first.offset}..{last.offset}): {describe(error)}; the offset "
                "is not stored: it backs off and publishes the batch again (what the "
                "stream already holds is dropped as a duplicate)"
            ) from error
        return acks

    def _count(self, acks: list[PubAck]) -> None:
        duplicates = sum(1 for ack in acks if ack.duplicate)
        self.duplicates += duplicates
        self.published += len(acks) - duplicates

    def _first_unencodable(self, batch: list[tuple[str, Any, str]]) -> int | None:
        encode = self.streams.codec.encode_message
        for index, (_, event, _) in enumerate(batch):
            try:
                encode(event)
            except Exception:
                return index
        return None


def spawn_outbox(
    parent: ActorSystem | ActorContext,
    streams: Streams,
    tag: str,
    *,
    subject: Subject,
    offsets: OffsetStore,
    journal: Journal | None = None,
    name: str | None = None,
    batch_size: int = 100,
    poll_interval: float = 1.0,
    backoff: Backoff = DEFAULT_BACKOFF,
    seed: int | None = None,
) -> ActorRef:
    """Start an outbox for the events tagged ``tag``: a projection named ``name``
    (default ``"outbox-<tag>"``; also the actor's name) that reads them from
    ``journal`` (default: the system's :class:`~actors.persistence.Persistence`
    journal) in commit order and publishes them through ``streams`` with an
    :class:`Outbox` (``subject``, ``offsets``: see there), as a child of ``parent``
    (an actor system, or an actor's context: then it is that actor's supervised child).

    Returns the :class:`~actors.projection.ProjectionActor`'s ref at once: ask it
    :class:`~actors.projection.GetStatus` for its state and lag,
    :class:`~actors.projection.WaitCaughtUp` to wait until it has published everything
    committed so far. ``batch_size``, ``poll_interval``, ``backoff`` and ``seed`` are the
    :class:`~actors.projection.Projection`'s (an event that the journal cannot decode
    fails the batch and is retried: the outbox never skips one). For other settings,
    build the ``Projection(name, JournalSource(tag, journal), Outbox(...))`` yourself.

    Stop it (``system.graceful_stop(ref)``) before the ``open_streams`` block of
    ``streams`` ends: a publish after that fails (and backs off)."""
    outbox = Outbox(streams, subject=subject, offsets=offsets)
    projection = Projection(
        f"outbox-{tag}" if name is None else name,
        JournalSource(tag, journal),
        outbox,
        batch_size=batch_size,
        poll_interval=poll_interval,
        backoff=backoff,
        seed=seed,
    )
    return projection.spawn(parent)
