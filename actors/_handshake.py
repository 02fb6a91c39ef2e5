"""The mutual authentication that opens a link between two trio-actors processes.

Both sides prove they hold the system's key (a random secret made per system) with an
HMAC-SHA256 challenge/response, before a single frame is read: no byte of a peer that
failed is ever decoded. Only fixed-size fields are exchanged, and nothing is parsed
beyond comparing bytes.

The exchange (``I`` is the initiator, ``A`` the acceptor, ``ctx`` is
``b"trio-actors link"``):

1. Both send ``MAGIC`` (8 bytes) and a fresh random challenge (32 bytes): ``cI``, ``cA``.
2. The initiator sends ``HMAC(key, ctx + b"I" + cA + cI)``.
3. The acceptor checks it. If it matches, it sends ``HMAC(key, ctx + b"A" + cI + cA)``;
   if not, it sends 32 zero bytes (a refusal) and fails.
4. The initiator checks the acceptor's answer.

Each response is bound to its sender's role, so a response sent back to its author (a
reflection) does not pass; and the acceptor answers only an initiator that proved itself,
so a peer without the key gets no response out of it at all (and a refusal names the
problem on both sides).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import secrets
from typing import Final

import trio

from ._wire import Unauthenticated, closed_by_peer

MAGIC: Final = b"TRACTR01"
"""What a trio-actors peer sends first (the last two digits are the protocol version)."""

CHALLENGE_SIZE: Final = 32
RESPONSE_SIZE: Final = 32  # HMAC-SHA256
MIN_KEY_SIZE: Final = 16
_CONTEXT: Final = b"trio-actors link"
_INITIATOR: Final = b"I"
_ACCEPTOR: Final = b"A"
_REFUSAL: Final = bytes(RESPONSE_SIZE)

_NOT_A_PEER: Final = "not a trio-actors peer (or another version)"
_NO_KEY: Final = "the peer's response does not match: the peer does not hold this system's key"
_REFUSED: Final = "the peer refused this side's response: the two sides do not hold the same key"
_PEER_CLOSED: Final = "peer closed the connection during the handshake"
_BROKEN: Final = "the connection broke during the handshake"


def check_key(key: bytes) -> bytes:
    """``key`` if it can be a system's key (bytes, at least :data:`MIN_KEY_SIZE` long),
    else a ``TypeError`` or ``ValueError`` that says how to make one."""
    if not isinstance(key, bytes):
        raise TypeError(
            f"the link key must be bytes, not {type(key).__qualname__}; make one per "
            "system with secrets.token_bytes(32)"
        )
    if len(key) < MIN_KEY_SIZE:
        raise ValueError(
            f"the link key is {len(key)} bytes long, too short to be a secret (at least "
            f"{MIN_KEY_SIZE}); make one per system with secrets.token_bytes(32)"
        )
    return key


def _response(
    key: bytes, role: bytes, initiator_challenge: bytes, acceptor_challenge: bytes
) -> bytes:
    # The challenge of the side being answered comes first: each side answers the
    # other's challenge, bound to its own.
    challenges = (
        acceptor_challenge + initiator_challenge
        if role == _INITIATOR
        else initiator_challenge + acceptor_challenge
    )
    return hmac.digest(key, _CONTEXT + role + challenges, hashlib.sha256)


def _broken(name: str, error: trio.BrokenResourceError) -> Unauthenticated:
    return Unauthenticated(name, _PEER_CLOSED if closed_by_peer(error) else _BROKEN)


async def _receive_exactly(stream: trio.abc.Stream, size: int, name: str) -> bytes:
    """Exactly ``size`` bytes from ``stream``, however they are split; never more (what
    follows the handshake belongs to the link's frames)."""
    received = bytearray()
    while len(received) < size:
        try:
            chunk = await stream.receive_some(size - len(received))
        except trio.BrokenResourceError as error:
            raise Unauthenticated(
                name, _PEER_CLOSED if closed_by_peer(error) else _BROKEN
            ) from error
        if not chunk:
            raise Unauthenticated(name, _PEER_CLOSED)
        received += chunk
    return bytes(received)


async def _send(stream: trio.abc.Stream, data: bytes, name: str) -> None:
    try:
        await stream.send_all(data)
    except trio.BrokenResourceError as error:
        raise _broken(name, error) from error


async def handshake(
    stream: trio.abc.Stream,
    key: bytes,
    *,
    initiator: bool,
    name: str = "link",
    timeout: float = 10.0,
) -> None:
    """Authenticate both ends of ``stream`` with the system's ``key``.

    One end passes ``initiator=True``, the other ``initiator=False``. Returns when each
    side has proved to the other that it holds ``key``; the stream is then positioned
    at the first byte after the handshake (nothing beyond it was read), ready for
    frames. ``name`` names the link in errors.

    Raises :class:`Unauthenticated` when the peer does not hold the key, is not a
    trio-actors peer of this protocol version, closes the connection (or it breaks)
    during the handshake, or does not complete it within ``timeout`` seconds. Nothing
    the peer sent is decoded: its bytes are only compared. On failure the stream is
    left as it is, in an undefined position: the caller closes it. Raises ``TypeError``
    or ``ValueError`` for a key that is not bytes or shorter than 16 bytes, or a
    timeout that is not positive. If the caller is cancelled, ``Cancelled`` propagates
    and the stream is likewise left to be closed.

    What it guarantees: a peer that completes it holds ``key`` and took part in this
    very exchange (fresh random challenges on both sides: an old exchange replayed does
    not pass, nor does a response reflected back to its sender).

    What it does not do: encrypt anything, or authenticate the frames that follow (they
    are not bound to this exchange). A link must therefore run on a channel nobody else
    can read, write or relay, such as a socketpair between processes of this system; on
    a network, inside an encrypted and integrity-protected channel (TLS). Neither does it
    tell one key holder from another: any process that holds the key is trusted."""
    check_key(key)
    if not timeout > 0:  # (NaN too)
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    own_challenge = secrets.token_bytes(CHALLENGE_SIZE)
    with trio.move_on_after(timeout):
        await _send(stream, MAGIC + own_challenge, name)
        hello = await _receive_exactly(stream, len(MAGIC) + CHALLENGE_SIZE, name)
        if not hmac.compare_digest(hello[: len(MAGIC)], MAGIC):
            raise Unauthenticated(name, _NOT_A_PEER)
        peer_challenge = hello[len(MAGIC) :]
        if initiator:
            await _send(stream, _response(key, _INITIATOR, own_challenge, peer_challenge), name)
            answer = await _receive_exactly(stream, RESPONSE_SIZE, name)
            expected = _response(key, _ACCEPTOR, own_challenge, peer_challenge)
            if hmac.compare_digest(answer, expected):
                return
            raise Unauthenticated(
                name, _REFUSED if hmac.compare_digest(answer, _REFUSAL) else _NO_KEY
            )
        answer = await _receive_exactly(stream, RESPONSE_SIZE, name)
        expected = _response(key, _INITIATOR, peer_challenge, own_challenge)
        if not hmac.compare_digest(answer, expected):
            with contextlib.suppress(trio.BrokenResourceError):
                await stream.send_all(_REFUSAL)  # (tells the initiator why it failed)
            raise Unauthenticated(name, _NO_KEY)
        await _send(stream, _response(key, _ACCEPTOR, peer_challenge, own_challenge), name)
        return
    raise Unauthenticated(
        name,
        f"timed out after {timeout:g} s: the peer did not complete the handshake (it is "
        "stuck, not a trio-actors peer, or waits for something else)",
    )
