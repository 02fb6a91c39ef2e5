""":class:`InMemoryStreams`: a stream engine in memory, for fast tests, that follows the
contract of ``_engine.py`` as JetStream does, on trio's clock, with fault injection."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from types import TracebackType

import trio

from .._topics import TopicTrie, check_pattern, check_topic
from ._config import ConsumerConfig, Start, StreamConfig
from ._engine import (
    Consumer,
    NoStreamForSubject,
    PubAck,
    StoredEvent,
    StreamEngine,
    StreamError,
    StreamNotFound,
    StreamState,
)
from ._memory_delivery import Faults, MemoryConsumer
from ._memory_state import (
    DEFAULT_MAX_MSG_SIZE,
    MSG_ID_HEADER,
    ConsumerState,
    Event,
    StreamData,
    header_size,
    pattern_within,
    patterns_overlap,
    stored_size,
)


class InMemoryStreams(StreamEngine):
    """A :class:`StreamEngine` in memory: durable streams and consumers that live as long
    as this object, for fast tests of code written against the engine contract (the
    runtime of ``open_streams``, projections). One conformance suite checks it against
    JetStream; it is meant to be no more forgiving than JetStream, so it refuses what
    JetStream refuses (subjects that overlap another stream's, a filter outside the
    stream's subjects, overlapping consumers of a workqueue stream, a backoff list as
    long as ``max_deliver``, an event bigger than ``max_msg_size`` or NATS' 1 MiB) and
    forgets what JetStream forgets (events beyond the limits, the message ids of the
    duplicate window, which is never longer than ``max_age``).

    **Time.** Every timer (``ack_wait``, ``backoff``, a nak's delay, ``max_age``, the
    duplicate window, a fetch's timeout) runs on trio's clock, so a test with
    ``autojump_clock`` or a ``MockClock`` runs them in virtual time. The timestamps of
    events are wall-clock seconds from ``clock`` (``time.time`` unless given), which
    :meth:`Start.at_time` compares with. The engine runs no task of its own: a timer
    takes effect at the next call that looks (a waiting ``fetch`` wakes up for it).

    **Settlements** take effect when the call returns (JetStream applies them a moment
    later). ``ack`` and ``term`` of an event whose delivery was stale (it was
    redelivered since) still settle it, as on JetStream; settling after the consumer was
    deleted does nothing. An event delivered ``max_deliver`` times that times out or is
    refused is dropped from the consumer's pending events at the next ``fetch``.
    Stored events keep their message id in the header ``Nats-Msg-Id``, as JetStream's do.
    Where JetStream is silent it is stricter: a fetch from a consumer that was deleted
    raises :class:`StreamNotFound` (JetStream's just finds nothing).

    **Faults.** :meth:`fail_publishes`, :meth:`fail_acks`, :meth:`lose_acks`,
    :meth:`duplicate_deliveries` arm faults that the next matching calls consume, one
    each; :meth:`redeliver_now` acts at once; :meth:`armed_faults` and
    :meth:`clear_faults` show and disarm them.

    Use it as ``engine = InMemoryStreams()`` or ``async with InMemoryStreams() as
    engine:`` (which closes it on the way out). After :meth:`close` every call raises
    :class:`StreamError`, and waiting fetches wake up to raise it.
    """

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._streams: dict[str, StreamData] = {}
        self._subjects: TopicTrie[str] = TopicTrie()
        self._faults = Faults()
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._streams)} streams"
        return f"<InMemoryStreams: {state}>"

    async def __aenter__(self) -> InMemoryStreams:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -- streams ----------------------------------------------------------------------

    async def add_stream(self, config: StreamConfig) -> None:
        """See :meth:`StreamEngine.add_stream`. Refused (:class:`StreamError`): subjects
        that repeat or overlap within ``config`` or with another stream's, and an update
        that changes ``storage`` or ``retention``. An update applies the new limits at
        once."""
        if not isinstance(config, StreamConfig):
            raise TypeError(f"add_stream needs a StreamConfig, got {config!r}")
        await trio.lowlevel.checkpoint()
        self._require_open()
        self._check_subjects(config)
        stream = self._streams.get(config.name)
        if stream is None:
            self._streams[config.name] = StreamData(config)
        else:
            for setting in ("storage", "retention"):
                old, new = getattr(stream.config, setting), getattr(config, setting)
                if old != new:
                    raise StreamError(
                        f"stream {config.name!r}: its {setting} cannot change ({old!r} to "
                        f"{new!r}); delete the stream and add it again"
                    )
            for subject in stream.config.subjects:
                self._subjects.remove(subject, config.name)
            stream.config = config
            stream.refresh(trio.current_time())
            stream.enforce_limits()
            stream.notify()
        for subject in config.subjects:
            self._subjects.add(subject, config.name)

    def _check_subjects(self, config: StreamConfig) -> None:
        subjects = config.subjects
        for index, subject in enumerate(subjects):
            for later in subjects[index + 1 :]:
                if patterns_overlap(subject, later):
                    raise StreamError(
                        f"stream {config.name!r}: its subjects {subject!r} and {later!r} "
                        "overlap; list each subject once, the widest pattern only"
                    )
        for other in self._streams.values():
            if other.name == config.name:
                continue
            for subject in subjects:
                for theirs in other.config.subjects:
                    if patterns_overlap(subject, theirs):
                        raise StreamError(
                            f"stream {config.name!r}: its subject {subject!r} overlaps "
                            f"{theirs!r} of stream {other.name!r}; every subject is "
                            "stored by one stream at most"
                        )

    async def delete_stream(self, name: str) -> None:
        """See :meth:`StreamEngine.delete_stream`."""
        await trio.lowlevel.checkpoint()
        stream = self._stream(name)
        del self._streams[name]
        for subject in stream.config.subjects:
            self._subjects.remove(subject, name)
        stream.notify()

    async def stream_state(self, name: str) -> StreamState:
        """See :meth:`StreamEngine.stream_state` (consumers sorted by name)."""
        await trio.lowlevel.checkpoint()
        stream = self._stream(name)
        return StreamState(
            name=name,
            messages=len(stream.events),
            first_seq=stream.first_seq(),
            last_seq=stream.last_seq,
            consumers=tuple(sorted(stream.consumers)),
        )

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        msg_id: str | None = None,
    ) -> PubAck:
        """See :meth:`StreamEngine.publish`. A ``Nats-Msg-Id`` header is the message id
        when ``msg_id`` is not given (as on JetStream). Raises ``InvalidTopic`` for a
        subject with wildcards or empty segments, ``TypeError`` for data that is not
        bytes, and :class:`StreamError` for an event (headers and data) larger than the
        stream's ``max_msg_size`` or 1 MiB, or when a fault is armed
        (:meth:`fail_publishes`)."""
        check_topic(subject)
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"publish needs bytes, got {type(data).__name__}: {data!r:.80}")
        stored_headers = _headers(headers, msg_id)
        await trio.lowlevel.checkpoint()
        self._require_open()
        if self._faults.take("fail_publish", lambda pattern: pattern_within(subject, pattern)):
            raise StreamError(
                f"publish to {subject!r} failed: a fault injected by "
                "InMemoryStreams.fail_publishes; nothing was stored"
            )
        names = self._subjects.match(subject)
        if not names:
            raise NoStreamForSubject(subject)
        stream = self._streams[names[0]]
        now = trio.current_time()
        stream.refresh(now)
        the_id = stored_headers.get(MSG_ID_HEADER)
        if the_id is not None and the_id in stream.msg_ids:
            return PubAck(stream.name, stream.msg_ids[the_id][0], duplicate=True)
        body = bytes(data)
        size = header_size(stored_headers) + len(body)
        limit = min(stream.config.max_msg_size or DEFAULT_MAX_MSG_SIZE, DEFAULT_MAX_MSG_SIZE)
        if size > limit:
            raise StreamError(
                f"publish to {subject!r} refused: the event is {size} bytes (headers and "
                f"data), more than the {limit} bytes stream {stream.name!r} allows; "
                "nothing was stored"
            )
        seq = stream.last_seq + 1
        counted = stored_size(stream.config.storage, subject, size - len(body), len(body))
        event = Event(subject, body, stored_headers, seq, self._clock(), now, counted)
        stream.append(event, the_id)
        stream.notify()
        return PubAck(stream.name, seq)

    async def get(self, stream: str, seq: int) -> StoredEvent | None:
        """See :meth:`StreamEngine.get`."""
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise TypeError(f"get needs an int stream sequence, got {seq!r}")
        await trio.lowlevel.checkpoint()
        event = self._stream(stream).events.get(seq)
        if event is None:
            return None
        return StoredEvent(
            event.subject,
            event.data,
            event.headers,
            event.seq,
            event.timestamp,
            event.headers.get(MSG_ID_HEADER),
        )

    # -- consumers --------------------------------------------------------------------

    async def consumer(self, stream: str, config: ConsumerConfig) -> Consumer:
        """See :meth:`StreamEngine.consumer`. An existing consumer takes every setting of
        ``config`` but ``start``. Refused (:class:`StreamError`) as JetStream refuses:
        a filter that is neither within nor around one of the stream's subjects,
        ``backoff`` with ``max_deliver`` not greater than its length, and on a
        workqueue stream a start other than the beginning or a filter that overlaps
        another consumer's."""
        if not isinstance(config, ConsumerConfig):
            raise TypeError(f"consumer needs a ConsumerConfig, got {config!r}")
        await trio.lowlevel.checkpoint()
        data = self._stream(stream)
        state = data.consumers.get(config.durable)
        data.check_consumer(config, creating=state is None)
        if state is None:
            start = _start_seq(data, config.start)
            data.consumers[config.durable] = ConsumerState(data, config, start)
        else:
            state.reconfigure(data, config)
        data.notify()
        return MemoryConsumer(self, stream, config)

    async def delete_consumer(self, stream: str, durable: str) -> None:
        """See :meth:`StreamEngine.delete_consumer`. :class:`StreamNotFound` if the
        stream or the consumer does not exist (as JetStream answers). Under interest
        retention, events no remaining consumer needs are removed."""
        await trio.lowlevel.checkpoint()
        data, _ = self._consumer_state(stream, durable)
        del data.consumers[durable]
        if data.config.retention == "interest":
            for seq in list(data.events):
                data.drop_if_done(seq)
        data.notify()

    async def close(self) -> None:
        """Close the engine: from now on every call raises :class:`StreamError`
        (waiting fetches included). Its streams are kept in memory, but unreachable."""
        await trio.lowlevel.checkpoint()
        self._closed = True
        for stream in self._streams.values():
            stream.notify()

    # -- faults -----------------------------------------------------------------------

    def fail_publishes(self, count: int = 1, *, subject: str | None = None) -> None:
        """The next ``count`` publishes (to subjects matching the pattern ``subject``,
        or to any subject) raise :class:`StreamError` and store nothing."""
        if subject is not None:
            check_pattern(subject)
        self._faults.arm("fail_publish", count, subject)

    def fail_acks(self, count: int = 1, *, durable: str | None = None) -> None:
        """The next ``count`` calls of ``Received.ack`` (of consumer ``durable``, or of
        any) raise :class:`StreamError`: the event stays unacknowledged (and the
        ``Received`` unsettled), so it is delivered again after its ``ack_wait``."""
        self._faults.arm("fail_ack", count, durable)

    def lose_acks(self, count: int = 1, *, durable: str | None = None) -> None:
        """The next ``count`` calls of ``Received.ack`` (of consumer ``durable``, or of
        any) return as if they had succeeded, but the engine never gets them (like an
        acknowledgement lost on the network): the event is delivered again after its
        ``ack_wait``."""
        self._faults.arm("lose_ack", count, durable)

    def duplicate_deliveries(self, count: int = 1, *, durable: str | None = None) -> None:
        """Each of the next ``count`` deliveries (of consumer ``durable``, or of any) is
        handed out twice: once by the fetch that takes it, and again (its ``delivered``
        one more) by the next fetch of the consumer, whichever member makes it, as if its
        ``ack_wait`` had run out at once. Settling either settles the event. The second
        delivery counts against ``max_deliver`` like any redelivery."""
        self._faults.arm("duplicate", count, durable)

    def redeliver_now(self, stream: str, durable: str, seq: int | None = None) -> list[int]:
        """Make the events that consumer ``durable`` of ``stream`` delivered and that are
        not settled (or only ``seq``) due for redelivery now, as if their ``ack_wait``
        had run out; a waiting fetch gets them at once. Returns their sequences.
        ``ValueError`` if ``seq`` is given and is not such an event."""
        self._require_open()
        data, state = self._consumer_state(stream, durable)
        now = trio.current_time()
        data.refresh(now)
        if seq is None:
            chosen = sorted(state.pending)
        elif seq in state.pending:
            chosen = [seq]
        else:
            raise ValueError(
                f"consumer {durable!r} of stream {stream!r} has no unsettled delivery of "
                f"seq {seq!r}; its unsettled events are {sorted(state.pending)}"
            )
        for chosen_seq in chosen:
            state.pending[chosen_seq].due = now
        data.notify()
        return chosen

    def armed_faults(self) -> dict[str, int]:
        """How many of each fault are armed and not yet consumed, by the name of the
        method that armed them (``{}`` when none)."""
        return self._faults.counts()

    def clear_faults(self) -> None:
        """Disarm every fault that is still armed."""
        self._faults.clear()

    # -- what consumers and received events call --------------------------------------

    def _require_open(self) -> None:
        if self._closed:
            raise StreamError("this InMemoryStreams engine is closed; make a new one")

    def _stream(self, name: str) -> StreamData:
        self._require_open()
        stream = self._streams.get(name)
        if stream is None:
            raise StreamNotFound(f"no stream named {name!r}; add it with add_stream")
        stream.refresh(trio.current_time())
        return stream

    def _consumer_state(self, stream: str, durable: str) -> tuple[StreamData, ConsumerState]:
        data = self._stream(stream)
        state = data.consumers.get(durable)
        if state is None:
            raise StreamNotFound(
                f"stream {stream!r} has no durable consumer {durable!r} (never created, "
                "or deleted); engine.consumer(stream, config) creates it"
            )
        return data, state


def _headers(headers: Mapping[str, str] | None, msg_id: str | None) -> dict[str, str]:
    stored = dict(headers or {})
    for key, value in stored.items():
        if not isinstance(key, str) or not isinstance(value, str) or not key:
            raise TypeError(f"headers map non-empty str to str, got {key!r}: {value!r}")
    if msg_id is not None:
        if not isinstance(msg_id, str) or not msg_id:
            raise ValueError(f"msg_id must be a non-empty str or None, got {msg_id!r}")
        stored[MSG_ID_HEADER] = msg_id
    return stored


def _start_seq(data: StreamData, start: Start) -> int:
    """The first stream sequence a new consumer starting at ``start`` may deliver."""
    if start.kind == "new":
        return data.last_seq + 1
    if start.kind == "seq":
        return start.seq
    if start.kind == "time":
        for seq, event in data.events.items():
            if event.timestamp >= start.time:
                return seq
        return data.last_seq + 1
    return data.first_seq()
