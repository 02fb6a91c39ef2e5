"""Durable publish and durable subscriptions of actors: :func:`open_streams` and
:class:`Streams` (``docs/streams.md`` is the user's guide).

``open_streams`` declares the streams with the engine, chooses the codec that turns
events into bytes, and owns the nursery in which every :class:`Subscription` runs.
Leaving the block cancels them: events they held and had not settled stay
unacknowledged and are delivered again later (at least once). A subscription that
cannot go on cancels the body, and the block raises :class:`SubscriptionFailed`.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final, final

import trio

from .._errors import ActorDead
from .._public import NoPublicConstructor
from .._ref import ActorRef
from .._system import ActorSystem
from .._topics import check_pattern, check_topic
from ._arguments import check_delays, choose_codec, covers, overlaps
from ._config import ConsumerConfig, Start, StreamConfig
from ._dead_letters import (
    CODEC_HEADER,
    DEFAULT_DEAD_LETTERS,
    StreamDeadLetter,
    StreamDeadLetterReason,
    qualified_name,
    read,
    record,
    subject_prefix,
)
from ._engine import PubAck, Received, StreamEngine, StreamError
from ._subscription import Subscription

if TYPE_CHECKING:
    from ..cluster._codec import Codec


class UnencodableEvent(StreamError, TypeError):
    """An event given to :meth:`Streams.publish` cannot be encoded by the streams'
    codec (its type is not registered with :class:`~actors.cluster.SafeCodec`, or it
    does not pickle): nothing was stored. ``type_name`` names its type; the codec's
    refusal is chained."""

    def __init__(self, text: str, type_name: str) -> None:
        super().__init__(text)
        self.type_name = type_name


_BEGINNING: Final = Start.beginning()


@final
class Streams(metaclass=NoPublicConstructor):
    """Durable publish and subscriptions on ``engine`` for the actors of ``system``,
    made by :func:`open_streams` and valid inside its block. ``codec`` turns events
    into bytes and back; ``streams`` maps the names of the streams declared here to
    their configurations; ``dead_letters`` is the dead-letter stream's."""

    def __init__(
        self,
        system: ActorSystem,
        engine: StreamEngine,
        codec: Codec,
        declared: Mapping[str, StreamConfig],
        dead_letters: StreamConfig,
        nursery: trio.Nursery,
        retry_for: float,
    ) -> None:
        self.system = system
        self.engine = engine
        self.codec = codec
        self.streams: Mapping[str, StreamConfig] = MappingProxyType(dict(declared))
        self.dead_letters_stream = dead_letters
        self._prefix = subject_prefix(dead_letters)
        self._nursery = nursery
        self._retry_for = retry_for
        self._headers: Mapping[str, str] = MappingProxyType({CODEC_HEADER: codec.name})
        self._subscriptions: dict[Subscription, None] = {}
        self._groups: dict[tuple[str, str], str] = {}
        self._failures: list[tuple[Subscription, BaseException]] = []
        self._body_scope = trio.CancelScope()
        self._closed = False

    def __repr__(self) -> str:
        return f"<Streams on {self.engine!r}, {len(self._subscriptions)} subscriptions>"

    def _check_open(self, what: str) -> None:
        if self._closed:
            raise RuntimeError(f"Streams.{what}() after its open_streams block ended")

    # -- publishing -----------------------------------------------------------------------

    def _encode(self, topic: str, event: Any) -> bytes:
        check_topic(topic)
        try:
            return self.codec.encode_message(event)
        except Exception as error:
            name = qualified_name(type(event))
            fix = (
                "register its class (and those of its fields) with open_streams(types=[...]),"
                " or use codec=PickleCodec() if every publisher is trusted"
                if self.codec.name == "safe"
                else "make it a plain picklable value (a frozen attrs class of plain fields)"
            )
            raise UnencodableEvent(
                f"event of type {name} published on {topic!r} cannot be encoded by "
                f"{self.codec!r}: {fix}; nothing was stored",
                name,
            ) from error

    async def publish(self, topic: str, event: Any, *, msg_id: str | None = None) -> PubAck:
        """Store ``event`` in the stream whose subjects match ``topic``; returns once it
        is stored, with its place (:class:`PubAck`). With ``msg_id``, a second publish
        of the same id within the stream's ``duplicate_window`` stores nothing and
        answers ``duplicate=True``.

        Raises :class:`UnencodableEvent` (nothing stored) if the codec cannot encode
        it, :class:`~actors.InvalidTopic` for a malformed topic,
        :class:`NoStreamForSubject` if no stream stores ``topic``, and
        :class:`StreamError` if the engine refused it or its outcome is unknown (then
        publish again with the same ``msg_id`` to be sure). Cancelled, the event may or
        may not have been stored."""
        self._check_open("publish")
        data = self._encode(topic, event)
        return await self.engine.publish(topic, data, headers=self._headers, msg_id=msg_id)

    async def publish_many(
        self, events: Iterable[tuple[str, Any] | tuple[str, Any, str | None]]
    ) -> list[PubAck]:
        """Publish ``(topic, event)`` or ``(topic, event, msg_id)`` tuples together,
        their acknowledgements awaited at once; the answers are in order. Every event
        is encoded before anything is sent, so an :class:`UnencodableEvent` stores
        nothing; an engine's refusal raises after the events before it may have been
        stored."""
        self._check_open("publish_many")
        batch: list[tuple[str, bytes, Mapping[str, str] | None, str | None]] = []
        for item in events:
            if not isinstance(item, tuple) or len(item) not in (2, 3):
                raise TypeError(
                    f"publish_many() takes (topic, event) or (topic, event, msg_id) tuples, "
                    f"got {item!r}"
                )
            topic, event = item[0], item[1]
            msg_id = item[2] if len(item) == 3 else None
            batch.append((topic, self._encode(topic, event), self._headers, msg_id))
        if not batch:
            return []
        return await self.engine.publish_many(batch)

    # -- decoding and parking (for the subscriptions) -------------------------------------

    def _decode(self, data: bytes, headers: Mapping[str, str]) -> Any:
        used = headers.get(CODEC_HEADER)
        if used is not None and used != self.codec.name:
            from ..cluster._codec import UndecodableMessage

            raise UndecodableMessage(
                f"the event was encoded with the {used!r} codec, and this subscriber "
                f"decodes with the {self.codec.name!r} codec: every publisher and "
                "subscriber of a stream must use the same codec"
            )
        return self.codec.decode_message(data)

    async def _park(
        self,
        received: Received,
        durable: str,
        reason: StreamDeadLetterReason,
        error: BaseException | None,
        detail: str | None,
    ) -> None:
        subject, data, headers, msg_id = record(
            self._prefix, received, durable, reason, error, detail
        )
        await self.engine.publish(subject, data, headers=headers, msg_id=msg_id)

    async def dead_letters(
        self,
        *,
        stream: str | None = None,
        durable: str | None = None,
        after: int = 0,
        limit: int = 100,
    ) -> list[StreamDeadLetter]:
        """The events parked in the dead-letter stream, oldest first: at most ``limit``
        of them, after its sequence ``after`` (pass the last record's ``seq`` to read
        on), only those of ``stream`` and of the consumer group ``durable`` when given.
        Each record names why it was parked and holds the event, decoded when this
        codec can."""
        self._check_open("dead_letters")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"limit must be an int >= 1, got {limit!r}")
        state = await self.engine.stream_state(self.dead_letters_stream.name)
        found: list[StreamDeadLetter] = []
        seq = max(after + 1, state.first_seq)
        while seq <= state.last_seq and len(found) < limit:
            stored = await self.engine.get(self.dead_letters_stream.name, seq)
            seq += 1
            if stored is None:
                continue
            letter = read(stored, self._decode)
            if letter is None:
                continue
            if stream is not None and letter.stream != stream:
                continue
            if durable is not None and letter.durable != durable:
                continue
            found.append(letter)
        return found

    # -- subscribing ----------------------------------------------------------------------

    def _stream_for(self, pattern: str, named: str | None) -> str:
        if named is not None:
            config = self.streams.get(named)
            if config is not None and not any(covers(s, pattern) for s in config.subjects):
                raise ValueError(
                    f"stream {named!r} does not store every topic of pattern {pattern!r} "
                    f"(its subjects are {list(config.subjects)}); subscribe with a pattern "
                    "inside them"
                )
            return named
        whole = [
            c.name for c in self.streams.values() if any(covers(s, pattern) for s in c.subjects)
        ]
        if len(whole) == 1:
            return whole[0]
        declared = {c.name: list(c.subjects) for c in self.streams.values()}
        if len(whole) > 1:
            raise ValueError(
                f"pattern {pattern!r} is stored by several streams ({whole}); name the one "
                "to read with subscribe(..., stream=...)"
            )
        partly = [
            c.name for c in self.streams.values() if any(overlaps(s, pattern) for s in c.subjects)
        ]
        if partly:
            raise ValueError(
                f"pattern {pattern!r} is only partly stored by stream(s) {partly} "
                f"(declared: {declared}): topics it matches outside their subjects are not "
                "stored anywhere; subscribe with a pattern that one stream stores entirely"
            )
        if pattern.startswith(self._prefix + ".") or pattern == ">":
            where = "; read the dead-letter stream with Streams.dead_letters()"
        else:
            where = ""
        raise ValueError(
            f"no stream declared in open_streams stores the topics of pattern {pattern!r} "
            f"(declared: {declared}){where}; declare it in open_streams(streams=[...]), or "
            "name a stream declared elsewhere with subscribe(..., stream=...)"
        )

    async def subscribe(
        self,
        ref: ActorRef,
        pattern: str,
        *,
        durable: str,
        start: Start = _BEGINNING,
        max_in_flight: int = 10,
        ack_wait: float = 30.0,
        max_deliver: int | None = 5,
        backoff: Sequence[float] = (1.0, 5.0, 30.0),
        stream: str | None = None,
    ) -> Subscription:
        """Deliver the events of the stream that stores ``pattern`` to the actor
        ``ref``, as :class:`StreamEvent` asks, as a member of the consumer group
        ``durable`` (created at ``start`` if it is new; otherwise it goes on where the
        group is). Members of one group share its events, each event to one of them.

        - At most ``max_in_flight`` events are unsettled at a time (in the actor's
          mailbox or being handled); they enter the mailbox in the order fetched.
        - The handler returning acknowledges an event. Raising, or not answering within
          ``ack_wait`` seconds of the event entering the mailbox, refuses it: it comes
          back after ``backoff[attempt - 1]`` seconds (the last delay repeats; ``()``:
          at once), and after ``max_deliver`` attempts (``None``: never) it is parked in
          the dead-letter stream with the error, and not delivered again.
        - An event the codec cannot decode is parked at once.
        - The actor stopping ends the subscription (see :class:`Subscription`).

        ``stream`` names the stream to read, for one declared elsewhere; otherwise
        exactly one stream declared in ``open_streams`` must store every topic that
        ``pattern`` matches (``ValueError`` otherwise). Raises :class:`StreamNotFound`
        if the stream does not exist, :class:`~actors.ActorDead` if the actor has
        stopped. Returns once the subscription runs."""
        self._check_open("subscribe")
        if not isinstance(ref, ActorRef):
            raise TypeError(f"subscribe() needs the ActorRef to deliver to, got {ref!r}")
        check_pattern(pattern)
        if (
            isinstance(max_in_flight, bool)
            or not isinstance(max_in_flight, int)
            or max_in_flight < 1
        ):
            raise ValueError(f"max_in_flight must be an int >= 1, got {max_in_flight!r}")
        if not isinstance(start, Start):
            raise TypeError(
                f"start must be a Start (Start.beginning(), Start.new_only(), "
                f"Start.at_seq(n), Start.at_time(t)), got {start!r}"
            )
        config = ConsumerConfig(
            durable,
            filter=pattern,
            start=start,
            ack_wait=ack_wait,
            max_deliver=None,  # (counted here: an event past it is parked, not lost)
            max_ack_pending=max(1000, max_in_flight),
        )
        delays = check_delays(max_deliver, backoff)
        if ack_wait == math.inf:
            raise ValueError("ack_wait must be finite: it bounds how long an event may take")
        name = self._stream_for(pattern, stream)
        if name == self.dead_letters_stream.name:
            raise ValueError(
                f"{name!r} is the dead-letter stream: read it with Streams.dead_letters()"
            )
        group = self._groups.get((name, durable))
        if group is not None and group != pattern:
            raise ValueError(
                f"the consumer group {durable!r} of stream {name} reads pattern {group!r}; "
                f"a member cannot read {pattern!r}: every member of a group subscribes "
                "with the same pattern (or use another durable name)"
            )
        if ref._resolve().is_dead():
            raise ActorDead(ref.path, "is not running: it cannot subscribe")
        consumer = await self.engine.consumer(name, config)
        self._check_open("subscribe")
        sub = Subscription._create(
            self,
            consumer,
            ref,
            pattern,
            max_in_flight=max_in_flight,
            ack_wait=float(ack_wait),
            max_deliver=max_deliver,
            backoff=delays,
            retry_for=self._retry_for,
        )
        self._groups[(name, durable)] = pattern
        self._subscriptions[sub] = None
        await self._nursery.start(sub._run, name=repr(sub))
        return sub

    async def unsubscribe(self, sub: Subscription) -> None:
        """End ``sub``: it fetches nothing more, and returns once the events it held are
        settled (handled and acknowledged, or refused). Cancelled while it waits, it
        stops at once: the events still held are delivered again later. Ending an
        ended subscription does nothing."""
        if not isinstance(sub, Subscription):
            raise TypeError(f"unsubscribe() takes a Subscription, got {sub!r}")
        await sub._stop()

    def subscriptions(self) -> list[Subscription]:
        """The subscriptions running now, oldest first."""
        return list(self._subscriptions)

    def _subscription_ended(self, sub: Subscription) -> None:
        self._subscriptions.pop(sub, None)
        if not any(
            s.stream == sub.stream and s.durable == sub.durable for s in self._subscriptions
        ):
            self._groups.pop((sub.stream, sub.durable), None)

    def _subscription_failed(self, sub: Subscription, error: BaseException) -> None:
        self._failures.append((sub, error))
        self._body_scope.cancel()


@asynccontextmanager
async def open_streams(
    system: ActorSystem,
    engine: StreamEngine,
    *,
    streams: Iterable[StreamConfig] = (),
    codec: Codec | None = None,
    types: Iterable[type] | Mapping[str, type] | None = None,
    dead_letters: StreamConfig = DEFAULT_DEAD_LETTERS,
    retry_for: float = 60.0,
) -> AsyncIterator[Streams]:
    """Durable streams for the actors of ``system``, on ``engine``
    (:class:`~actors.streams.InMemoryStreams`, or :func:`~actors.streams.open_jetstream`'s
    engine), for the duration of the block.

    Declares ``streams`` and the ``dead_letters`` stream with the engine (creating
    them, or updating them to these configurations). Events are encoded with ``codec``,
    or with ``SafeCodec(types)`` when ``types`` is given (one of the two is required:
    see ``docs/streams.md``, "Codecs and security").

    A subscription whose engine keeps failing for ``retry_for`` seconds (or whose stream
    disappears) cancels the body, and the block raises :class:`SubscriptionFailed`
    with the cause chained. Leaving the block cancels the subscriptions: events they
    held and had not settled are delivered again later (at least once)."""
    if not isinstance(system, ActorSystem):
        raise TypeError(f"open_streams() needs the ActorSystem first, got {system!r}")
    if not isinstance(engine, StreamEngine):
        raise TypeError(
            f"open_streams() needs a StreamEngine (InMemoryStreams(), or the engine of "
            f"open_jetstream(url)), got {engine!r}"
        )
    chosen = choose_codec(codec, types)
    configs: dict[str, StreamConfig] = {}
    for config in streams:
        if not isinstance(config, StreamConfig):
            raise TypeError(f"streams takes StreamConfig values, got {config!r}")
        if config.name in configs:
            raise ValueError(f"stream {config.name!r} is declared twice")
        configs[config.name] = config
    if not isinstance(dead_letters, StreamConfig):
        raise TypeError(f"dead_letters must be a StreamConfig, got {dead_letters!r}")
    subject_prefix(dead_letters)
    if dead_letters.name in configs:
        raise ValueError(
            f"stream {dead_letters.name!r} is the dead-letter stream; declare your streams "
            "under other names"
        )
    if isinstance(retry_for, bool) or not isinstance(retry_for, int | float) or not retry_for >= 0:
        raise ValueError(f"retry_for must be a number of seconds >= 0, got {retry_for!r}")
    for config in (*configs.values(), dead_letters):
        await engine.add_stream(config)
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        runtime = Streams._create(
            system, engine, chosen, configs, dead_letters, nursery, float(retry_for)
        )
        try:
            with runtime._body_scope:
                yield runtime
        except BaseException as exc:
            body_error = exc  # (raised below, outside the nursery: not in a group)
        runtime._closed = True
        nursery.cancel_scope.cancel()
    failures = runtime._failures
    if failures:
        failed = failures[0][1]
        if body_error is None or isinstance(body_error, trio.Cancelled):
            raise failed
        body_error.add_note(f"a durable subscription had failed: {failed}")
    if body_error is not None:
        raise body_error
