"""How :class:`~actors.streams.JetStreamEngine` speaks JetStream: the stream and consumer
configurations made of :class:`StreamConfig` and :class:`ConsumerConfig` (see
``_jetstream.py`` for what they become), an event checked before it is published, and
JetStream's answer to a publish."""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from typing import Any, Final

from .._topics import check_topic
from ._config import ConsumerConfig, StreamConfig
from ._engine import NoStreamForSubject, PubAck, StreamError

MSG_ID: Final = "Nats-Msg-Id"


def describe(error: BaseException) -> str:
    description = getattr(error, "description", None)
    if description:
        return f"{description} (JetStream error {getattr(error, 'err_code', None)})"
    return repr(error)


def stream_config(config: StreamConfig) -> Any:
    from nats.js import api

    window = config.duplicate_window
    if config.max_age is not None:
        window = min(window, config.max_age)  # (JetStream refuses a longer one)
    return api.StreamConfig(
        name=config.name,
        subjects=list(config.subjects),
        retention=api.RetentionPolicy(config.retention),
        max_msgs=-1 if config.max_msgs is None else config.max_msgs,
        max_bytes=-1 if config.max_bytes is None else config.max_bytes,
        max_age=config.max_age,
        duplicate_window=window,
        storage=api.StorageType(config.storage),
        max_msg_size=-1 if config.max_msg_size is None else config.max_msg_size,
        discard=api.DiscardPolicy.OLD,
        num_replicas=1,
    )


def consumer_config(config: ConsumerConfig) -> Any:
    from nats.js import api

    start = config.start
    seq: int | None = None
    when: datetime.datetime | None = None
    if start.kind == "new":
        policy = api.DeliverPolicy.NEW
    elif start.kind == "seq":
        policy, seq = api.DeliverPolicy.BY_START_SEQUENCE, start.seq
    elif start.kind == "time":
        policy = api.DeliverPolicy.BY_START_TIME
        when = datetime.datetime.fromtimestamp(start.time, datetime.UTC)
    else:
        policy = api.DeliverPolicy.ALL
    return api.ConsumerConfig(
        durable_name=config.durable,
        deliver_policy=policy,
        opt_start_seq=seq,
        opt_start_time=when,
        ack_policy=api.AckPolicy.EXPLICIT,
        ack_wait=config.ack_wait,
        max_deliver=-1 if config.max_deliver is None else config.max_deliver,
        backoff=list(config.backoff) or None,
        filter_subject=config.filter,
        max_ack_pending=config.max_ack_pending,
        replay_policy=api.ReplayPolicy.INSTANT,
    )


def checked(
    subject: str, data: bytes, headers: Mapping[str, str] | None, msg_id: str | None
) -> tuple[str, bytes, dict[str, str] | None]:
    """An event to publish as nats-py takes it (its message id among its headers)."""
    check_topic(subject)
    if not isinstance(data, bytes):
        if not isinstance(data, bytearray | memoryview):
            raise TypeError(
                f"an event's data must be bytes (encode it first), got {type(data).__name__}"
            )
        data = bytes(data)
    sent: dict[str, str] | None = None
    if headers:
        sent = {}
        for key, value in headers.items():
            if not (isinstance(key, str) and isinstance(value, str)):
                raise TypeError(f"headers map str to str, got {key!r}: {value!r}")
            if not key or any(c in key for c in ":\r\n \t") or any(c in value for c in "\r\n"):
                raise ValueError(
                    f"header {key!r}: {value!r}: a header name has no ':' or whitespace, "
                    "and neither has a line break"
                )
            sent[key] = value
    if msg_id is not None:
        if not isinstance(msg_id, str) or not msg_id or "\n" in msg_id or "\r" in msg_id:
            raise ValueError(f"msg_id must be a non-empty str on one line, got {msg_id!r}")
        sent = sent or {}
        sent[MSG_ID] = msg_id
    return subject, data, sent


_decoder: list[Any] = []  # (msgspec's decoder of JetStream's answers, made at first use)


def _decode(data: bytes) -> Any:
    if not _decoder:
        import msgspec

        class Answer(msgspec.Struct):
            stream: str = ""
            seq: int = 0
            duplicate: bool = False
            error: dict[str, Any] | None = None

        _decoder.append(msgspec.json.Decoder(Answer).decode)
    return _decoder[0](data)


def pub_ack(subject: str, msg: Any) -> PubAck:
    """The :class:`PubAck` of JetStream's answer ``msg`` to a publish on ``subject``, or
    the refusal it says, as :class:`StreamError` (:class:`NoStreamForSubject` for
    no responders)."""
    headers = msg.headers
    if headers and headers.get("Status") == "503":  # (no responders)
        raise NoStreamForSubject(subject)
    try:
        answer = _decode(msg.data)
        if not (answer.error or answer.stream):
            raise ValueError("neither a stream nor an error")
    except Exception as bad:  # (msgspec's DecodeError or ValidationError)
        raise StreamError(
            f"publish to {subject!r}: the answer {msg.data[:200]!r} is not JetStream's (does "
            "another subscriber of that subject answer requests?)"
        ) from bad
    error = answer.error
    if not error:
        return PubAck(answer.stream, answer.seq, answer.duplicate)
    from nats.js.errors import APIError

    cause = APIError(
        code=error.get("code"), description=error.get("description"), err_code=error.get("err_code")
    )
    raise StreamError(f"JetStream refused the event on {subject!r}: {describe(cause)}") from cause
