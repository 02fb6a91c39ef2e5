"""Frames on a link between two trio-actors processes, and the errors of a link.

A frame is a 4-byte big-endian unsigned length followed by that many bytes of payload.
Payloads are opaque bytes here: this layer never decodes (let alone unpickles) them. The
length is checked against a maximum before anything is allocated for the payload, so a
peer that announces a huge frame costs nothing but the 4 bytes of its header.
"""

from __future__ import annotations

import struct
from typing import Final

from ._errors import ActorError, _hint, describe_error

MAX_FRAME: Final = 64 * 1024 * 1024
"""Default maximum payload size of one frame, in bytes."""

HEADER_SIZE: Final = 4
"""Size of a frame's header (the payload's length), in bytes."""

_LARGEST: Final = 2**32 - 1  # what a 4-byte header can announce
_header: Final = struct.Struct(">I")
pack_header: Final = _header.pack
"""``pack_header(size)``: the 4-byte header of a payload of ``size`` bytes."""
unpack_header: Final = _header.unpack_from
"""``unpack_header(data, offset)``: ``(size,)``, read from the header at ``offset``."""


class WireError(ActorError):
    """Base class of the errors of a link between two processes: :class:`FrameTooLarge`,
    :class:`Unauthenticated`, :class:`LinkClosed` and :class:`LinkFull`. Each carries the
    link's name as ``link``."""

    link: str


class FrameTooLarge(WireError):
    """A frame's payload is over the link's maximum frame size (``max_frame``).

    Raised when sending (nothing was queued or written; ``received`` is false) and when
    a peer's header announces too large a frame (``received`` is true): then the payload
    was neither waited for nor buffered, and the link is broken, because the stream can
    no longer be trusted to be split into frames correctly."""

    def __init__(self, link: str, size: int, limit: int, *, received: bool) -> None:
        if received:
            text = (
                f"the peer on link {link} announced a frame of {size} bytes, over the "
                f"limit of {limit} bytes"
            )
        else:
            text = f"a frame of {size} bytes is over the limit of {limit} bytes on link {link}"
        super().__init__(text)
        self.link = link
        self.size = size
        self.limit = limit
        self.received = received
        _hint(
            self,
            "The stream no longer splits into frames the two sides agree on, so the link "
            "is closed. Either the peer is not a trio-actors process of this version, the "
            "stream was corrupted, or the two sides were given different max_frame values."
            if received
            else "Nothing was sent. Send smaller messages (split a large value, or pass a "
            "path or a handle instead of the data), or raise max_frame on both ends of the "
            "link.",
        )


class Unauthenticated(WireError):
    """The peer of a link failed the handshake: it does not hold this system's key, it is
    not a trio-actors peer (or runs another version of the protocol), or it closed the
    connection or stayed silent during the handshake. Nothing it sent was decoded."""

    def __init__(self, link: str, problem: str) -> None:
        super().__init__(f"handshake on link {link} failed: {problem}")
        self.link = link
        self.problem = problem
        _hint(
            self,
            "Both ends of a link must be trio-actors processes of the same system, holding "
            "its key (made per system with secrets.token_bytes(32) and handed to its "
            "workers). Close this connection: nothing more should be read from it or "
            "written to it.",
        )


class LinkClosed(WireError):
    """A link has ended, or is ending: ``reason`` says why (``"peer closed the link"``,
    ``"closed by this side"``, ...), and ``__cause__`` is the error that ended it, if an
    error did.

    ``Link.run`` returns one when the link ends; ``Link.send`` raises one when the link
    is closed or closing (nothing was queued)."""

    def __init__(self, link: str, reason: str, cause: BaseException | None = None) -> None:
        text = f"link {link} closed: {reason}"
        if cause is not None:
            text += f" ({describe_error(cause)})"
        super().__init__(text)
        self.link = link
        self.reason = reason
        if cause is not None:
            self.__cause__ = cause


class LinkFull(WireError):
    """The outbox of a link has no room for one more frame: the payload bytes queued (or
    being written) plus this frame's would pass ``max_outbox_bytes``. Nothing was queued.
    """

    def __init__(self, link: str, queued: int, size: int, limit: int) -> None:
        super().__init__(
            f"outbox of link {link} is full: {queued} bytes are queued, and a frame of "
            f"{size} bytes would pass its limit of {limit} bytes (max_outbox_bytes)"
        )
        self.link = link
        self.queued = queued
        self.size = size
        self.limit = limit
        _hint(
            self,
            "The peer reads slower than this side sends, or is stuck. Nothing was queued: "
            "send less or wait for the peer to catch up (for instance for replies), or "
            "raise max_outbox_bytes."
            if size <= limit
            else "This frame alone is larger than the outbox can ever hold: raise "
            "max_outbox_bytes to at least the largest frame you send.",
        )


def closed_by_peer(error: BaseException) -> bool:
    """Whether a stream error (``trio.BrokenResourceError``) only says that the peer
    closed its end: a write to a closed socket, or a read after the peer closed its
    socket without reading all we had sent (the OS then resets the connection, after
    the data the peer did send)."""
    return isinstance(error.__cause__, (BrokenPipeError, ConnectionResetError))


def check_max_frame(max_frame: int) -> int:
    """``max_frame`` if it is a valid maximum frame size, else a ``TypeError`` or
    ``ValueError`` that says what is allowed."""
    if not isinstance(max_frame, int) or isinstance(max_frame, bool):
        raise TypeError(f"max_frame must be an int (bytes), not {type(max_frame).__qualname__}")
    if not 0 <= max_frame <= _LARGEST:
        raise ValueError(
            f"max_frame must be between 0 and {_LARGEST} bytes (what a 4-byte header can "
            f"announce), got {max_frame}"
        )
    return max_frame


def frame(payload: bytes, max_frame: int = MAX_FRAME, *, name: str = "link") -> bytes:
    """``payload`` as one frame: its length (4 bytes, big-endian, unsigned), then itself.

    Raises :class:`FrameTooLarge` (naming the link ``name``) if the payload is longer
    than ``max_frame`` bytes."""
    size = len(payload)
    if size > max_frame:
        raise FrameTooLarge(name, size, max_frame, received=False)
    return pack_header(size) + payload


class FrameParser:
    """Splits a byte stream back into the payloads of its frames.

    Feed it the bytes as they arrive, in any pieces: :meth:`feed` returns the payloads
    each piece completes, in order, and keeps an incomplete frame until the rest arrives.
    Many small frames in one piece are split without copying the piece over and over:
    frames are cut from the piece itself, and only an incomplete tail is kept.

    A header that announces more than ``max_frame`` bytes raises :class:`FrameTooLarge`
    as soon as its 4 bytes are in, without waiting for (or buffering) the payload.
    The stream is broken from there on: payloads completed earlier in the same piece are
    not returned, and every later :meth:`feed` raises the same error again."""

    __slots__ = ("_broken", "_buffer", "_max_frame", "name")

    def __init__(self, max_frame: int = MAX_FRAME, name: str = "link") -> None:
        self._max_frame = check_max_frame(max_frame)
        self.name = name
        self._buffer = bytearray()
        self._broken: FrameTooLarge | None = None

    @property
    def buffered(self) -> int:
        """How many bytes of an incomplete frame are kept, waiting for the rest."""
        return len(self._buffer)

    def feed(self, data: bytes | bytearray) -> list[bytes]:
        """The payloads that ``data`` completes, in order (possibly none)."""
        if self._broken is not None:
            raise self._broken
        buffer = self._buffer
        if not buffer and data.__class__ is bytes and len(data) >= HEADER_SIZE:
            # The common case of a request or its reply: exactly one frame.
            (size,) = _header.unpack_from(data)
            if size + HEADER_SIZE == len(data) and size <= self._max_frame:
                return [data[HEADER_SIZE:]]
        source: bytes | bytearray
        if buffer:
            buffer += data
            source = buffer
        else:
            source = data
        end = len(source)
        limit = self._max_frame
        unpack_from = _header.unpack_from
        payloads: list[bytes] = []
        position = 0
        with memoryview(source) as view:
            while end - position >= HEADER_SIZE:
                (size,) = unpack_from(source, position)
                if size > limit:
                    self._buffer = bytearray()
                    self._broken = FrameTooLarge(self.name, size, limit, received=True)
                    raise self._broken
                start = position + HEADER_SIZE
                stop = start + size
                if stop > end:
                    break
                payloads.append(view[start:stop].tobytes())
                position = stop
            if source is not buffer and position < end:
                buffer += view[position:]  # an incomplete frame: keep it
        if source is buffer:
            del buffer[:position]  # (cheap: a bytearray drops its head without moving)
        return payloads
