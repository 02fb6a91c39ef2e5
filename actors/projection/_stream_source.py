""":class:`StreamSource`: a projection that reads a durable stream of a
:class:`~actors.streams.StreamEngine` (JetStream, or :class:`InMemoryStreams` in
tests), its offset being the stream sequence.

The projection's own stored offset is the truth, not the consumer's acknowledgements:
each time the session starts (when the projection starts, and again after every
failure) it deletes its durable consumer and creates it anew at the stored sequence +
1, so that the events after the stored offset, and only those, come next; events
handed out again by the engine (a redelivery, a duplicate) whose sequence is not beyond
the last one taken are dropped. Events are acknowledged once their batch is committed,
which keeps the consumer's count of unsettled events low; that is all the
acknowledgements do. Hence the stream must keep its events by its limits
(``retention="limits"``, the default), not until a consumer acknowledges them: with
``"workqueue"`` or ``"interest"``, deleting the consumer could let the engine drop events
the projection has not committed yet.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import trio

from .._errors import _hint
from ._model import Envelope, UndecodableEvent, describe
from ._source import Item, ProjectionSource, SourceSession, Undecodable

if TYPE_CHECKING:
    from .._system import ActorSystem
    from ..cluster._codec import Codec
    from ..streams import Consumer, Received, StreamEngine

# actors.streams is imported when a StreamSource is made, not with actors.projection.

_CODEC_HEADER = "Actors-Codec"  # as open_streams writes it (actors.streams._dead_letters)
_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9_-]")
_ACK_WAIT = 300.0
"""Seconds before the engine hands an unacknowledged event out again: long, since
events are acknowledged after their batch is committed, and a redelivery is dropped
anyway."""


class StreamSource(ProjectionSource):
    """The events of the durable stream ``stream`` of ``engine`` (only those on subjects
    matching ``filter``, if given), in stream order, decoded with ``codec`` (the codec
    the publishers used: ``open_streams(codec=...)``, e.g. ``PickleCodec()`` or
    ``SafeCodec(types=[...])`` of :mod:`actors.cluster`). The projection's offset is the
    stream sequence of the last event handled; its key defaults to ``filter``, else the
    stream's name.

    The projection reads through a durable consumer named ``durable`` (default:
    ``projection-<name>-<key>``, with characters other than letters, digits, ``_`` and
    ``-`` made ``_``), which it recreates each time it starts at its stored sequence +
    1, and deletes when it stops: give each projection its own. The stream must keep
    its events by its limits (``retention="limits"``, the default). It polls: once
    caught up it fetches again every ``poll_interval`` of the projection. An event that
    cannot be decoded is an :class:`UndecodableEvent` naming the stream, its sequence
    and its subject; the projection's ``on_undecodable`` decides.
    """

    def __init__(
        self,
        engine: StreamEngine,
        stream: str,
        *,
        codec: Codec,
        filter: str | None = None,
        durable: str | None = None,
    ) -> None:
        from ..cluster._codec import Codec
        from ..streams import ConsumerConfig, StreamEngine

        if not isinstance(engine, StreamEngine):
            raise TypeError(
                f"engine must be a StreamEngine (InMemoryStreams, or the engine of "
                f"open_jetstream), got {type(engine).__name__}"
            )
        if not isinstance(codec, Codec):
            raise TypeError(
                "codec must be the actors.cluster codec the publishers use "
                f"(PickleCodec() or SafeCodec(types=[...])), got {codec!r}"
            )
        # ConsumerConfig checks the names and the filter when the session starts; check
        # them now, so that a mistake is reported where it is made.
        ConsumerConfig(durable or "check", filter=filter)
        if not isinstance(stream, str) or not stream:
            raise ValueError(f"stream must be a non-empty str, got {stream!r}")
        self.engine = engine
        self.stream = stream
        self.codec = codec
        self.filter = filter
        self.durable = durable

    def _default_key(self) -> str:
        return self.filter if self.filter is not None else self.stream

    def _session(self, system: ActorSystem, name: str, key: str, batch_size: int) -> SourceSession:
        durable = self.durable
        if durable is None:
            durable = _NOT_IN_A_NAME.sub("_", f"projection-{name}-{key}")
        return _StreamSession(self, durable, name, batch_size)


class _StreamSession(SourceSession):
    def __init__(self, source: StreamSource, durable: str, name: str, batch_size: int) -> None:
        self._engine = source.engine
        self._stream = source.stream
        self._filter = source.filter
        self._codec = source.codec
        self._durable = durable
        self._name = name
        self._max_pending = max(1000, 2 * batch_size)
        self._consumer: Consumer | None = None
        self._position = 0  # the last sequence taken
        self._unsettled: list[Received] = []

    async def start(self, offset: int) -> None:
        from ..streams import ConsumerConfig, Start

        await self.stop()
        start = Start.beginning() if offset < 1 else Start.at_seq(offset + 1)
        config = ConsumerConfig(
            self._durable,
            filter=self._filter,
            start=start,
            ack_wait=_ACK_WAIT,
            max_deliver=None,
            max_ack_pending=self._max_pending,
        )
        self._consumer = await self._engine.consumer(self._stream, config)
        self._position = offset

    async def read(self, limit: int) -> list[Item]:
        consumer = self._consumer
        assert consumer is not None, "read before start"
        items: list[Item] = []
        while not items:
            received = await consumer.fetch(limit, 0)
            if not received:
                break
            for event in received:
                self._unsettled.append(event)
                if event.seq <= self._position:
                    continue  # handed out again: taken already
                self._position = event.seq
                items.append(self._decode(event))
        return items

    def _decode(self, event: Received) -> Item:
        try:
            used = event.headers.get(_CODEC_HEADER)
            if used is not None and used != self._codec.name:
                raise ValueError(
                    f"it was encoded with the {used!r} codec, and this projection decodes "
                    f"with {self._codec.name!r}"
                )
            decoded = self._codec.decode_message(event.data)
        except Exception as error:
            undecodable = UndecodableEvent(
                f"projection {self._name!r} cannot decode the event of stream "
                f"{self._stream!r} seq {event.seq} (subject {event.subject!r}): "
                f"{describe(error)}"
            )
            undecodable.__cause__ = error
            _hint(
                undecodable,
                "Decode with the codec the publishers use (StreamSource(codec=...)), with "
                "the event's type registered if it is a SafeCodec; or let the projection "
                'skip such events (on_undecodable="skip").',
            )
            return Undecodable(event.seq, undecodable)
        return Envelope(
            "", event.seq, event.seq, event.timestamp, frozenset(), decoded, event.subject
        )

    async def wait(self) -> None:
        await trio.sleep_forever()  # polls: the projection's poll_interval ends the wait

    async def settle(self, offset: int) -> None:
        done = [event for event in self._unsettled if event.seq <= offset]
        self._unsettled = [event for event in self._unsettled if event.seq > offset]
        for event in done:
            await event.ack()

    async def lag(self, offset: int) -> int | None:
        consumer = self._consumer
        if consumer is not None:
            pending, unsettled = await consumer.info()
            return pending + unsettled
        if self._filter is None:
            state = await self._engine.stream_state(self._stream)
            return max(0, state.last_seq - offset)
        return None

    async def stop(self) -> None:
        from ..streams import StreamNotFound

        consumer, self._consumer = self._consumer, None
        self._unsettled = []
        try:
            await self._engine.delete_consumer(self._stream, self._durable)
        except StreamNotFound:
            pass  # not there (first start), which is what is wanted
        except Exception as error:  # stop never raises; start deletes it again
            del error
        del consumer
