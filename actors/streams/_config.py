"""What a durable stream and a durable consumer are made of: :class:`StreamConfig`,
:class:`ConsumerConfig` and :class:`Start` (where a new consumer begins).

These are plain data shared by every engine (:class:`~actors.streams.JetStreamEngine`,
:class:`~actors.streams.InMemoryStreams`): an engine maps them onto its own settings
(JetStream's stream and consumer configurations) and follows the contract of
``_engine.py`` for what they mean.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Literal

import attrs

from .._topics import check_pattern


def _positive(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{name} must be a number > 0 or None, got {value!r}")
    if isinstance(value, float) and math.isnan(value):
        raise ValueError(f"{name} must be a number > 0 or None, got {value!r}")


def _stream_name(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty str, got {value!r}")
    bad = [c for c in value if c in ".*> \t\r\n/\\"]
    if bad:
        raise ValueError(
            f"stream name {value!r} contains {bad[0]!r}: a stream name has no dots, "
            "wildcards, slashes or whitespace (JetStream's rule)"
        )


def _patterns(value: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = (value,)
    patterns = tuple(value)
    for pattern in patterns:
        check_pattern(pattern)
    return patterns


def _delays(value: Iterable[float]) -> tuple[float, ...]:
    return tuple(value)


@attrs.frozen
class StreamConfig:
    """A durable stream: every event published on a subject matching one of
    ``subjects`` (topic patterns of the event bus, ``*`` and ``>`` included) is stored
    in it, numbered from 1 in the order the engine stored them (the stream sequence).

    Limits, when set, discard the *oldest* events once exceeded (``max_msgs`` events,
    ``max_bytes`` bytes of payload, ``max_age`` seconds). ``retention`` says when
    events are removed otherwise: ``"limits"`` only by the limits, ``"workqueue"`` once
    one consumer acknowledged them, ``"interest"`` once every consumer did.
    ``duplicate_window`` (seconds) is how long a message id is remembered: a publish
    with an id already stored within the window is acknowledged as a duplicate and
    stores nothing; it is shortened to ``max_age`` when that is shorter (JetStream's
    rule). ``storage`` is ``"file"`` (survives a server restart) or
    ``"memory"``. ``max_msg_size`` bounds one event's payload (``None``: the engine's).
    """

    name: str = attrs.field(validator=_stream_name)
    subjects: tuple[str, ...] = attrs.field(converter=_patterns)
    retention: Literal["limits", "workqueue", "interest"] = "limits"
    max_msgs: int | None = None
    max_bytes: int | None = None
    max_age: float | None = None
    duplicate_window: float = 120.0
    storage: Literal["file", "memory"] = "file"
    max_msg_size: int | None = None

    def __attrs_post_init__(self) -> None:
        if not self.subjects:
            raise ValueError(f"stream {self.name!r} needs at least one subject pattern")
        if self.retention not in ("limits", "workqueue", "interest"):
            raise ValueError(
                f"retention must be 'limits', 'workqueue' or 'interest', got {self.retention!r}"
            )
        if self.storage not in ("file", "memory"):
            raise ValueError(f"storage must be 'file' or 'memory', got {self.storage!r}")
        for name in ("max_msgs", "max_bytes", "max_age", "max_msg_size", "duplicate_window"):
            _positive(name, getattr(self, name))


@attrs.frozen
class Start:
    """Where a new durable consumer starts reading its stream (a consumer that already
    exists resumes where it stopped, whatever its ``start``). Make one with
    :meth:`beginning`, :meth:`new_only`, :meth:`at_seq` or :meth:`at_time`."""

    kind: Literal["all", "new", "seq", "time"] = "all"
    seq: int = 0
    time: float = 0.0
    """Wall-clock seconds since the epoch (``time.time()``)."""

    @classmethod
    def beginning(cls) -> Start:
        """Every event still in the stream, from the oldest."""
        return cls("all")

    @classmethod
    def new_only(cls) -> Start:
        """Only events stored after the consumer was created."""
        return cls("new")

    @classmethod
    def at_seq(cls, seq: int) -> Start:
        """From stream sequence ``seq`` (an int >= 1) on."""
        if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
            raise ValueError(f"Start.at_seq needs an int >= 1, got {seq!r}")
        return cls("seq", seq=seq)

    @classmethod
    def at_time(cls, when: float) -> Start:
        """From the first event stored at or after ``when`` (``time.time()`` seconds)."""
        if isinstance(when, bool) or not isinstance(when, int | float) or math.isnan(when):
            raise ValueError(f"Start.at_time needs a time.time() value, got {when!r}")
        return cls("time", time=float(when))


@attrs.frozen
class ConsumerConfig:
    """A durable consumer of one stream, named ``durable``: it remembers which events
    were acknowledged, so that whoever fetches from it next (after a restart, or another
    member of the same consumer group) goes on from there.

    ``filter`` restricts it to subjects matching one topic pattern (``None``: the whole
    stream). ``start``: where a *new* consumer begins (see :class:`Start`).

    Delivery is at least once. An event fetched and not acknowledged within
    ``ack_wait`` seconds, or refused with ``nak``, is delivered again; ``backoff``
    (seconds, one per redelivery, the last repeated) replaces ``ack_wait`` as the delay
    before the n-th redelivery of an event that timed out. An event delivered
    ``max_deliver`` times is not delivered again (``None``: no limit); what to do with it
    then is the subscriber's business (the runtime parks it in a dead-letter stream).
    ``max_ack_pending`` bounds the events fetched and not yet acknowledged over all the
    consumer's fetchers: beyond it, fetch returns nothing more until some are settled.

    Rules every engine enforces (JetStream's), refused with :class:`StreamError`: the
    ``filter`` must lie within one of the stream's subjects (or contain it); with a
    ``backoff`` list, ``max_deliver`` must be greater than its length; on a
    ``workqueue`` stream a consumer starts at the beginning and the filters of its
    consumers do not overlap.
    """

    durable: str = attrs.field(validator=_stream_name)
    filter: str | None = None
    start: Start = Start()
    ack_wait: float = 30.0
    max_deliver: int | None = 5
    backoff: tuple[float, ...] = attrs.field(default=(), converter=_delays)
    max_ack_pending: int = 1000

    def __attrs_post_init__(self) -> None:
        if self.filter is not None:
            check_pattern(self.filter)
        _positive("ack_wait", self.ack_wait)
        if self.max_deliver is not None and (
            isinstance(self.max_deliver, bool)
            or not isinstance(self.max_deliver, int)
            or self.max_deliver < 1
        ):
            raise ValueError(f"max_deliver must be an int >= 1 or None, got {self.max_deliver!r}")
        for delay in self.backoff:
            _positive("each backoff delay", delay)
        if (
            isinstance(self.max_ack_pending, bool)
            or not isinstance(self.max_ack_pending, int)
            or self.max_ack_pending < 1
        ):
            raise ValueError(f"max_ack_pending must be an int >= 1, got {self.max_ack_pending!r}")
