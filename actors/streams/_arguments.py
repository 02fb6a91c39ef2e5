"""What ``open_streams`` and ``Streams.subscribe`` check of their arguments: the codec
to use, whether a stream stores every topic of a pattern, and retry settings."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..cluster._codec import Codec


def _segments(pattern: str) -> tuple[str, ...]:
    return tuple(pattern.split("."))


def covers(outer: str, inner: str) -> bool:
    """Whether every topic matching pattern ``inner`` also matches pattern ``outer``."""
    a, b = _segments(outer), _segments(inner)
    for index, segment in enumerate(a):
        if segment == ">":
            return len(b) > index
        if index >= len(b) or b[index] == ">":
            return False
        if segment != "*" and b[index] != segment:
            return False
    return len(a) == len(b)


def overlaps(one: str, other: str) -> bool:
    """Whether some topic matches both patterns."""
    a, b = _segments(one), _segments(other)
    for x, y in zip(a, b, strict=False):
        if x == ">" or y == ">":
            return True
        if x != "*" and y != "*" and x != y:
            return False
    return len(a) == len(b)


def choose_codec(codec: Codec | None, types: Any) -> Codec:
    from ..cluster._codec import Codec

    if codec is not None and types is not None:
        raise ValueError(
            "open_streams(codec=..., types=...): give one of them; types= makes a "
            "SafeCodec(types=...), codec= is used as it is"
        )
    if codec is not None:
        if not isinstance(codec, Codec):
            raise TypeError(
                f"codec must be an actors.cluster codec (SafeCodec(types=[...]) or "
                f"PickleCodec()), got {codec!r}"
            )
        return codec
    if types is None:
        raise TypeError(
            "open_streams() needs to know how to encode events: pass types=[OrderPlaced, "
            "...] (a SafeCodec: only those types and plain data are decoded, whoever "
            "wrote to the stream), or codec=PickleCodec() if every publisher to these "
            "streams is trusted (unpickling runs whatever the bytes say)"
        )
    try:
        from ..cluster._safe_codec import SafeCodec
    except ImportError as error:  # (msgspec, of the cluster extra)
        raise ImportError(
            f"open_streams(types=...) uses the safe codec, which needs msgspec ({error}): "
            "pip install 'trio-actors[cluster]'"
        ) from error
    return SafeCodec(types)


def check_delays(max_deliver: int | None, backoff: Sequence[float]) -> tuple[float, ...]:
    if max_deliver is not None and (
        isinstance(max_deliver, bool) or not isinstance(max_deliver, int) or max_deliver < 1
    ):
        raise ValueError(f"max_deliver must be an int >= 1 or None, got {max_deliver!r}")
    if isinstance(backoff, str) or not isinstance(backoff, Sequence):
        raise TypeError(f"backoff must be a sequence of delays in seconds, got {backoff!r}")
    delays = tuple(backoff)
    for delay in delays:
        if (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or not 0 < delay < math.inf
        ):
            raise ValueError(
                f"each backoff delay must be a finite number of seconds > 0, got {delay!r}"
            )
    return tuple(float(delay) for delay in delays)
