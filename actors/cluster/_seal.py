"""Sealing what travels between nodes: an HMAC over every frame, checked before anything
in it is decoded, and a counter that refuses replays.

Anyone who may publish on a node's subject could otherwise hand it bytes of their
choosing. A frame is sealed by its sender with a key of the cluster's :class:`Keyring`;
the receiver's :class:`Opener` checks the seal and hands on the body only if the frame
was made by a holder of a key it knows, was not altered, is meant for it, and was not
accepted before.

Layout (integers big-endian; the key id, sender and recipient UTF-8)::

    0xA1                      magic and version (one byte)
    k, key id                 k: one byte, 1..255
    s, sender                 s: one byte, 1..255 (the sending node's name)
    r, recipient              r: one byte, 0..255 (empty: any receiver)
    incarnation               8 bytes: the sender's incarnation (changes when it restarts)
    counter                   8 bytes: strictly increasing over everything the sender seals
    body                      the rest, up to the tag
    tag                       32 bytes: HMAC-SHA256, with the key named, of all the above

Replays
    For each sender the opener keeps the newest incarnation it has accepted frames of and
    the last counter accepted from it: a frame must carry a greater counter (a sender uses
    one counter for all its receivers, so each sees an increasing subsequence), and a
    frame of an older incarnation is stale (a node that restarted must not have its old
    frames accepted). A frame of a newer incarnation starts its count afresh. Memory is
    one entry per sender name ever accepted (only key holders can add one).

    The counter protects a receiver for as long as it runs. So that frames recorded
    before a receiver restarted cannot be replayed to it afterwards, or frames meant for
    one receiver to another, the sender names the receiver in ``recipient``: pass the
    receiver's name *and incarnation* (e.g. ``"n2#1718000000"``), and give each
    :class:`Opener` its own.

Keys
    A :class:`Keyring` names its keys (at least 32 bytes each); ``current`` seals, and
    every key of the ring opens. To rotate: add the new key to every node's ring, then
    make it ``current`` everywhere, then remove the old one.

Cost (measured once, on a busy 2-core machine): sealing a 100-byte body about 2.8 µs,
opening it 3.2 µs (one ``hmac.digest`` each).
"""

from __future__ import annotations

import hmac
import secrets
import struct
from collections.abc import Mapping
from typing import Final, Literal

import attrs

from .._errors import ActorError, _hint

MAGIC: Final = 0xA1
TAG_SIZE: Final = 32
MIN_KEY_SIZE: Final = 32
_NUMBERS: Final = struct.Struct(">QQ")
_U64: Final = 2**64 - 1
_digest: Final = hmac.digest
_equal: Final = hmac.compare_digest

SealReason = Literal[
    "malformed", "unknown-key", "bad-tag", "misdirected", "stale-incarnation", "replayed"
]

_WHY: Final[Mapping[str, str]] = {
    "malformed": "it is not a sealed frame (truncated, or not made by a node)",
    "unknown-key": "it is sealed with a key id this node does not have",
    "bad-tag": "its tag does not match (a wrong key, a forged or an altered frame)",
    "misdirected": "it is addressed to another receiver",
    "stale-incarnation": "it comes from an older incarnation of that node",
    "replayed": "its counter is not above the last one accepted (a replay)",
}
_FIX: Final[Mapping[str, str]] = {
    "malformed": "Only nodes of the cluster should publish on its subjects: check the NATS "
    "permissions.",
    "unknown-key": "Every node must hold every key in use: during a rotation, add the new key "
    "to every node's Keyring before making it current anywhere.",
    "bad-tag": "Every node must hold the same bytes under the same key id. If they do, "
    "someone without the key published on the cluster's subjects.",
    "misdirected": "A frame meant for another node (or an earlier incarnation of this one) "
    "was delivered here: a replay, or a routing mistake.",
    "stale-incarnation": "That node has restarted since; frames of its earlier run are "
    "refused (a replay, or frames delayed across the restart).",
    "replayed": "A frame was delivered twice or out of order: a replay, or a duplicate delivery.",
}


class SealRefused(ActorError):
    """A frame that arrived from another node was refused before anything in it was
    decoded: ``reason`` is ``"malformed"``, ``"unknown-key"``, ``"bad-tag"``,
    ``"misdirected"``, ``"stale-incarnation"`` or ``"replayed"``, and ``sender`` the
    node it claims to come from (``None`` when it could not be read; until the tag is
    checked, the claim is not trusted)."""

    def __init__(self, reason: SealReason, sender: str | None = None) -> None:
        who = "a frame" if sender is None else f"a frame claiming to come from node {sender!r}"
        super().__init__(f"refused {who}: {_WHY[reason]}")
        self.reason = reason
        self.sender = sender
        _hint(self, _FIX[reason])


class Keyring:
    """The keys a node seals and opens with: ``keys`` maps key ids (non-empty, at most
    255 bytes of UTF-8) to keys (``bytes``, at least 32 of them, e.g.
    ``secrets.token_bytes(32)``); ``current`` is the id sealing uses. Every key opens.
    Immutable; keys never appear in its ``repr``."""

    __slots__ = ("_by_id", "_current", "_current_key", "_ids")

    def __init__(self, keys: Mapping[str, bytes], current: str) -> None:
        by_id: dict[bytes, bytes] = {}
        for key_id, key in keys.items():
            if not isinstance(key_id, str) or not 0 < len(key_id.encode()) <= 255:
                raise ValueError(
                    f"a key id must be a str of 1 to 255 bytes of UTF-8, not {key_id!r}"
                )
            if not isinstance(key, bytes | bytearray):
                raise TypeError(f"key {key_id!r} must be bytes, not {type(key).__qualname__}")
            if len(key) < MIN_KEY_SIZE:
                raise ValueError(
                    f"key {key_id!r} is {len(key)} bytes long; keys must be at least "
                    f"{MIN_KEY_SIZE} bytes (make one with secrets.token_bytes(32))"
                )
            by_id[key_id.encode()] = bytes(key)
        if current not in keys:
            raise ValueError(
                f"the current key id {current!r} is not among the keyring's ids "
                f"{sorted(keys)}; add its key, or name one of those"
            )
        self._by_id: Final = by_id
        self._ids: Final = tuple(keys)
        self._current: Final = current.encode()
        self._current_key: Final = by_id[self._current]

    @staticmethod
    def generate(key_id: str = "k1") -> Keyring:
        """A keyring of one new random key (32 bytes from :mod:`secrets`), current."""
        return Keyring({key_id: secrets.token_bytes(32)}, key_id)

    @property
    def ids(self) -> tuple[str, ...]:
        """The key ids, in the order given."""
        return self._ids

    @property
    def current(self) -> str:
        """The id of the key that seals."""
        return self._current.decode()

    def __repr__(self) -> str:
        return f"Keyring(ids={list(self._ids)!r}, current={self.current!r})"


def _short(text: str, what: str, empty: bool = False) -> bytes:
    raw = text.encode()
    if len(raw) > 255 or (not raw and not empty):
        raise ValueError(f"a {what} must be 1 to 255 bytes of UTF-8, not {text!r}")
    return bytes((len(raw),)) + raw


def seal(
    keyring: Keyring,
    sender: str,
    incarnation: int,
    counter: int,
    body: bytes,
    *,
    recipient: str = "",
) -> bytes:
    """``body`` sealed by ``sender`` (its ``incarnation`` and this frame's ``counter``,
    both ``0 <= n < 2**64``) with the keyring's current key, for ``recipient`` (``""``:
    any receiver). See the module documentation for the layout."""
    if not (0 <= incarnation <= _U64 and 0 <= counter <= _U64):
        raise ValueError(
            f"incarnation and counter must be in 0 .. 2**64 - 1, not {incarnation}, {counter}"
        )
    key_id = keyring._current
    data = b"".join(
        (
            bytes((MAGIC, len(key_id))),
            key_id,
            _short(sender, "sender name"),
            _short(recipient, "recipient", empty=True),
            _NUMBERS.pack(incarnation, counter),
            body,
        )
    )
    return data + _digest(keyring._current_key, data, "sha256")


@attrs.frozen
class Sealed:
    """What :meth:`Opener.open` found in a frame it accepted."""

    sender: str
    incarnation: int
    counter: int
    body: bytes


class Opener:
    """Checks sealed frames for one receiver (see the module documentation): ``recipient``
    is this receiver's name as senders put it in :func:`seal` (a frame addressed to
    ``""`` is accepted by every receiver). ``keyring`` may be replaced (a rotation);
    what has been accepted is kept."""

    __slots__ = ("_last", "_recipient", "keyring")

    def __init__(self, keyring: Keyring, recipient: str = "") -> None:
        self.keyring = keyring
        self._recipient = recipient.encode()
        self._last: dict[str, list[int]] = {}  # sender -> [incarnation, last counter]

    def open(self, data: bytes) -> Sealed:
        """The sender, incarnation, counter and body of ``data``, once it passed every
        check, in this order: its layout, its key id, its tag, its recipient, its
        incarnation and its counter. Raises :class:`SealRefused` (with the reason) on the
        first that fails; a refused frame changes nothing."""
        if data.__class__ is not bytes:
            data = bytes(data)
        tag_at = len(data) - TAG_SIZE
        if tag_at < 5 + 16 or data[0] != MAGIC:
            raise SealRefused("malformed")
        end = 2 + data[1]  # the key id's end
        if end >= tag_at:
            raise SealRefused("malformed")
        at = end + 1 + data[end]  # the sender's end
        if at >= tag_at:
            raise SealRefused("malformed")
        to_end = at + 1 + data[at]  # the recipient's end
        body_at = to_end + 16
        key_id = data[2:end]
        sender_bytes = data[end + 1 : at]
        if not key_id or not sender_bytes or body_at > tag_at:
            raise SealRefused("malformed")
        recipient = data[at + 1 : to_end]
        try:
            sender = sender_bytes.decode()
        except UnicodeDecodeError:
            raise SealRefused("malformed") from None
        key = self.keyring._by_id.get(key_id)
        if key is None:
            raise SealRefused("unknown-key", sender)
        if not _equal(_digest(key, data[:tag_at], "sha256"), data[tag_at:]):
            raise SealRefused("bad-tag", sender)
        if recipient and recipient != self._recipient:
            raise SealRefused("misdirected", sender)
        incarnation, counter = _NUMBERS.unpack_from(data, to_end)
        last = self._last.get(sender)
        if last is None:
            self._last[sender] = [incarnation, counter]
        elif incarnation == last[0]:
            if counter <= last[1]:
                raise SealRefused("replayed", sender)
            last[1] = counter
        elif incarnation > last[0]:
            last[0] = incarnation
            last[1] = counter
        else:
            raise SealRefused("stale-incarnation", sender)
        return Sealed(sender, incarnation, counter, data[body_at:tag_at])

    def retire(self, sender: str, incarnation: int) -> None:
        """Refuse from now on every frame of ``sender``'s ``incarnation`` and older ones
        (``"stale-incarnation"``): call it when a node is known to have ended (its
        membership entry lapsed, or a newer incarnation announced itself)."""
        last = self._last.get(sender)
        if last is None or last[0] <= incarnation:
            self._last[sender] = [incarnation + 1, -1]

    def __repr__(self) -> str:
        return f"<Opener for {self._recipient.decode()!r}: {len(self._last)} senders seen>"
