"""The dead-letter stream of durable subscriptions: where an event that cannot be
handled is parked, with why, so that it neither blocks its consumer nor is lost.

An event is parked when its handler failed on its last allowed attempt
(:attr:`StreamDeadLetterReason.FAILED`), when it came back after its last attempt was
never settled, because the subscriber died or vanished
(:attr:`StreamDeadLetterReason.UNACKNOWLEDGED`), or when it cannot be decoded
(:attr:`StreamDeadLetterReason.UNDECODABLE`). The record stored in the dead-letter
stream is the original event's bytes, unchanged, with headers that say where it came
from and what went wrong (readable by any client of the engine, the ``nats`` CLI
included): ``Actors-DL-Stream``, ``-Subject``, ``-Seq``, ``-Durable``, ``-Attempts``,
``-Reason``, ``-Error-Type``, ``-Error``, ``-Published`` and ``-Parked``, plus the
original event's own headers (its message id moved to ``Actors-DL-Msg-Id``). Its
subject is ``<prefix>.<stream>.<durable>`` and its message id
``dl/<stream>/<durable>/<seq>``, so parking the same event twice (a crash between
parking and settling it) stores it once.

:meth:`Streams.dead_letters <actors.streams.Streams.dead_letters>` reads them back as
:class:`StreamDeadLetter` records.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from ._config import StreamConfig
from ._engine import StoredEvent

if TYPE_CHECKING:
    from ._engine import Received

CODEC_HEADER: Final = "Actors-Codec"
"""The header naming the codec (its ``name``) that encoded an event the runtime
published."""

_PREFIX: Final = "Actors-DL-"
_STREAM: Final = _PREFIX + "Stream"
_SUBJECT: Final = _PREFIX + "Subject"
_SEQ: Final = _PREFIX + "Seq"
_DURABLE: Final = _PREFIX + "Durable"
_ATTEMPTS: Final = _PREFIX + "Attempts"
_REASON: Final = _PREFIX + "Reason"
_ERROR_TYPE: Final = _PREFIX + "Error-Type"
_ERROR: Final = _PREFIX + "Error"
_PUBLISHED: Final = _PREFIX + "Published"
_PARKED: Final = _PREFIX + "Parked"
_ORIGINAL_ID: Final = _PREFIX + "Msg-Id"
_MSG_ID: Final = "Nats-Msg-Id"
_HEADER_TEXT: Final = 2000  # characters of an error's text kept in a header

DEFAULT_DEAD_LETTERS: Final = StreamConfig("DEAD_LETTERS", ["deadletters.>"])
"""The dead-letter stream ``open_streams`` declares unless told otherwise."""


class StreamDeadLetterReason(enum.Enum):
    """Why an event was parked in the dead-letter stream."""

    FAILED = "failed"
    """The handler raised (or did not answer within ``ack_wait``) on the last of its
    ``max_deliver`` attempts; the record names the error."""
    UNACKNOWLEDGED = "unacknowledged"
    """It came back after its last allowed attempt was never settled: the subscriber's
    process died, or lost the engine, while it held the event."""
    UNDECODABLE = "undecodable"
    """The subscriber's codec cannot decode it (malformed bytes, a type it does not
    register, another codec); parked at once, never shown to the actor."""


@attrs.frozen
class StreamDeadLetter:
    """One parked event, as :meth:`Streams.dead_letters
    <actors.streams.Streams.dead_letters>` reads it back.

    ``seq`` is its place in the dead-letter stream; ``stream``, ``subject`` and
    ``stream_seq`` say where the event was stored, ``durable`` which consumer gave up on
    it, after ``attempts`` deliveries. ``error_type`` and ``error`` are the failure's
    class (qualified name) and text (``None`` for an event never handed to the actor
    but undecodable, where ``error`` holds the decoding error). ``event`` is the
    event, decoded by this :class:`Streams`' codec, or ``None`` when it cannot be
    (``decode_error`` then says why); ``data`` its bytes as stored. ``published`` and
    ``parked`` are ``time.time()`` values: when the stream stored the event, and when it
    was parked."""

    seq: int
    stream: str
    subject: str
    stream_seq: int
    durable: str
    reason: StreamDeadLetterReason
    attempts: int
    error_type: str | None
    error: str | None
    event: Any
    data: bytes = attrs.field(repr=False)
    decode_error: str | None
    published: float
    parked: float


def subject_prefix(config: StreamConfig) -> str:
    """The subject prefix of the dead-letter stream ``config`` (its one subject,
    ``<prefix>.>``); ``ValueError`` naming the fix for any other shape."""
    subjects = config.subjects
    if len(subjects) != 1 or not subjects[0].endswith(".>") or "*" in subjects[0]:
        raise ValueError(
            f"the dead-letter stream {config.name!r} must have exactly one subject of the "
            f"form '<prefix>.>' without other wildcards (got {list(subjects)}), for example "
            "StreamConfig('DEAD_LETTERS', ['deadletters.>'])"
        )
    return subjects[0][:-2]


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _HEADER_TEXT else line[: _HEADER_TEXT - 3] + "..."


def _error_text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return f"<{type(error).__qualname__} whose str() raised>"


def qualified_name(cls: type) -> str:
    """``module.QualName`` (only ``QualName`` for builtins)."""
    name = cls.__qualname__
    return name if cls.__module__ == "builtins" else f"{cls.__module__}.{name}"


def record(
    prefix: str,
    received: Received,
    durable: str,
    reason: StreamDeadLetterReason,
    error: BaseException | None,
    detail: str | None = None,
) -> tuple[str, bytes, dict[str, str], str]:
    """What to publish to park ``received``: ``(subject, data, headers, msg_id)``.
    ``detail`` replaces the error's text when given."""
    headers = dict(received.headers)
    original_id = headers.pop(_MSG_ID, None)
    if original_id is not None:  # (the record has its own)
        headers[_ORIGINAL_ID] = original_id
    headers.update(
        {
            _STREAM: received.stream,
            _SUBJECT: received.subject,
            _SEQ: str(received.seq),
            _DURABLE: durable,
            _ATTEMPTS: str(received.delivered),
            _REASON: reason.value,
            _PUBLISHED: repr(received.timestamp),
            _PARKED: repr(time.time()),
        }
    )
    if error is not None:
        headers[_ERROR_TYPE] = qualified_name(type(error))
    text = detail if detail is not None else None if error is None else _error_text(error)
    if text is not None:
        headers[_ERROR] = _one_line(text)
    subject = f"{prefix}.{received.stream}.{durable}"
    return subject, received.data, headers, f"dl/{received.stream}/{durable}/{received.seq}"


def _number(headers: Mapping[str, str], name: str, kind: type[int] | type[float]) -> Any:
    try:
        return kind(headers.get(name, "0"))
    except ValueError:
        return kind(0)


def read(
    stored: StoredEvent, decode: Callable[[bytes, Mapping[str, str]], Any]
) -> StreamDeadLetter | None:
    """The record ``stored`` (an event of the dead-letter stream), its event decoded
    with ``decode(data, headers)``; ``None`` if it is not a record the runtime
    parked."""
    headers = stored.headers
    if _STREAM not in headers or _REASON not in headers:
        return None
    try:
        reason = StreamDeadLetterReason(headers[_REASON])
    except ValueError:
        return None
    event: Any = None
    decode_error: str | None = None
    try:
        event = decode(stored.data, headers)
    except Exception as error:
        decode_error = f"{type(error).__qualname__}: {_error_text(error)}"
    return StreamDeadLetter(
        seq=stored.seq,
        stream=headers[_STREAM],
        subject=headers.get(_SUBJECT, ""),
        stream_seq=_number(headers, _SEQ, int),
        durable=headers.get(_DURABLE, ""),
        reason=reason,
        attempts=_number(headers, _ATTEMPTS, int),
        error_type=headers.get(_ERROR_TYPE),
        error=headers.get(_ERROR),
        event=event,
        data=stored.data,
        decode_error=decode_error,
        published=_number(headers, _PUBLISHED, float),
        parked=_number(headers, _PARKED, float),
    )
