"""Frames (``actors._wire``) and the handshake that opens a link (``actors._handshake``),
at real AF_UNIX sockets."""

from __future__ import annotations

import pickle
import random
import secrets
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from actors import ActorError
from actors._handshake import MAGIC, handshake
from actors._wire import (
    MAX_FRAME,
    FrameParser,
    FrameTooLarge,
    LinkClosed,
    LinkFull,
    Unauthenticated,
    WireError,
    frame,
    pack_header,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def stream_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


# -- frames ---------------------------------------------------------------------------


def test_frame_is_a_big_endian_length_then_the_payload() -> None:
    assert frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert frame(b"") == b"\x00\x00\x00\x00"
    assert frame(b"x" * 258) == b"\x00\x00\x01\x02" + b"x" * 258
    assert MAX_FRAME == 64 * 1024 * 1024


def test_frame_refuses_a_payload_over_the_limit() -> None:
    assert frame(b"x" * 10, 10) == b"\x00\x00\x00\x0a" + b"x" * 10
    with pytest.raises(FrameTooLarge) as caught:
        frame(b"x" * 11, 10, name="worker-1")
    error = caught.value
    assert str(error) == "a frame of 11 bytes is over the limit of 10 bytes on link worker-1"
    assert (error.link, error.size, error.limit, error.received) == ("worker-1", 11, 10, False)
    assert "raise max_frame on both ends" in "".join(error.__notes__)


def payloads_for_test(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    sizes = [0, 1, 2, 3, 4, 5, 255, 256, 1000]
    return [rng.randbytes(rng.choice(sizes)) for _ in range(count)]


def test_parser_round_trip_split_at_every_byte() -> None:
    payloads = payloads_for_test(40, seed=1)
    data = b"".join(frame(p) for p in payloads)
    for cut in range(len(data) + 1):
        parser = FrameParser()
        got = parser.feed(data[:cut])
        got += parser.feed(data[cut:])
        assert got == payloads, cut
        assert parser.buffered == 0


def test_parser_byte_by_byte_and_in_random_pieces() -> None:
    payloads = payloads_for_test(300, seed=2)
    data = b"".join(frame(p) for p in payloads)
    parser = FrameParser()
    got: list[bytes] = []
    for i in range(len(data)):
        got += parser.feed(data[i : i + 1])
    assert got == payloads
    rng = random.Random(3)
    for _ in range(50):
        parser = FrameParser()
        got = []
        position = 0
        while position < len(data):
            size = rng.randint(0, 700)
            got += parser.feed(data[position : position + size])
            position += size
        assert got == payloads


def test_parser_returns_completed_frames_and_keeps_only_the_tail() -> None:
    parser = FrameParser()
    assert parser.feed(frame(b"one") + frame(b"two") + frame(b"three")[:5]) == [b"one", b"two"]
    assert parser.buffered == 5  # the incomplete frame only
    assert parser.feed(bytearray(b"hree")) == [b"three"]
    assert parser.buffered == 0
    assert parser.feed(b"") == []


def test_parser_zero_length_frames() -> None:
    parser = FrameParser()
    data = frame(b"") + frame(b"") + frame(b"x") + frame(b"")
    assert parser.feed(data) == [b"", b"", b"x", b""]
    assert parser.feed(b"\x00\x00") == []
    assert parser.feed(b"\x00\x00") == [b""]


def test_parser_refuses_an_oversize_header_before_its_payload() -> None:
    parser = FrameParser(max_frame=100, name="worker-2")
    assert parser.feed(frame(b"y" * 100)) == [b"y" * 100]  # exactly the limit is fine
    header = pack_header(101)
    assert parser.feed(header[:3]) == []
    with pytest.raises(FrameTooLarge) as caught:
        parser.feed(header[3:])  # no payload byte has arrived
    error = caught.value
    assert str(error) == (
        "the peer on link worker-2 announced a frame of 101 bytes, over the limit of 100 bytes"
    )
    assert error.received
    assert parser.buffered == 0
    with pytest.raises(FrameTooLarge):  # the stream stays broken
        parser.feed(frame(b"ok"))


def test_parser_refuses_a_header_of_the_default_limit_plus_one() -> None:
    parser = FrameParser()
    with pytest.raises(FrameTooLarge, match="frame of 67108865 bytes"):
        parser.feed(pack_header(MAX_FRAME + 1))


@pytest.mark.parametrize("bad", [-1, 2**32])
def test_parser_checks_max_frame(bad: int) -> None:
    with pytest.raises(ValueError, match="max_frame must be between 0 and 4294967295"):
        FrameParser(max_frame=bad)


def test_link_errors_are_actor_errors_and_pickle() -> None:
    cause = FrameTooLarge("w", 5, 4, received=True)
    closed = LinkClosed("w", "the peer broke the protocol", cause)
    assert str(closed) == (
        "link w closed: the peer broke the protocol (FrameTooLarge: the peer on link w "
        "announced a frame of 5 bytes, over the limit of 4 bytes)"
    )
    assert closed.__cause__ is cause
    full = LinkFull("w", 10, 5, 12)
    for error in (cause, closed, full, Unauthenticated("w", "timed out")):
        assert isinstance(error, WireError)
        assert isinstance(error, ActorError)
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert str(copy) == str(error)
        assert copy.link == "w"
    assert pickle.loads(pickle.dumps(closed)).reason == "the peer broke the protocol"


# -- handshake ------------------------------------------------------------------------


async def shake_both(
    initiator_key: bytes, acceptor_key: bytes
) -> tuple[BaseException | None, BaseException | None]:
    """Run a handshake on both ends of a socketpair; return each side's error."""
    left, right = stream_pair()
    errors: dict[str, BaseException | None] = {}

    async def side(stream: trio.SocketStream, key: bytes, initiator: bool, tag: str) -> None:
        try:
            await handshake(stream, key, initiator=initiator, name=tag)
        except Unauthenticated as error:
            errors[tag] = error
            await stream.aclose()  # (what a caller does with a failed stream)
        else:
            errors[tag] = None

    async with left, right, trio.open_nursery() as nursery:
        nursery.start_soon(side, left, initiator_key, True, "root")
        nursery.start_soon(side, right, acceptor_key, False, "worker")
    return errors["root"], errors["worker"]


async def test_handshake_with_the_same_key_succeeds_and_reads_nothing_more() -> None:
    left, right = stream_pair()
    async with left, right:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lambda: handshake(left, KEY, initiator=True))
            nursery.start_soon(lambda: handshake(right, KEY, initiator=False))
        # Both ends are positioned at the first byte after the handshake.
        await right.send_all(b"after")
        assert await left.receive_some(100) == b"after"
        await left.send_all(b"also after")
        assert await right.receive_some(100) == b"also after"


async def test_handshake_frames_right_behind_it_are_left_unread() -> None:
    left, right = stream_pair()
    async with left, right:

        async def acceptor() -> None:
            await handshake(right, KEY, initiator=False)
            await right.send_all(frame(b"first frame"))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(acceptor)
            nursery.start_soon(lambda: handshake(left, KEY, initiator=True))
        assert await left.receive_some(100) == frame(b"first frame")


async def test_handshake_with_a_wrong_key_fails_on_both_sides() -> None:
    root_error, worker_error = await shake_both(KEY, OTHER_KEY)
    assert str(worker_error) == (
        "handshake on link worker failed: the peer's response does not match: the peer "
        "does not hold this system's key"
    )
    assert str(root_error) == (
        "handshake on link root failed: the peer refused this side's response: the two "
        "sides do not hold the same key"
    )
    assert isinstance(root_error, Unauthenticated)
    assert "holding its key" in "".join(root_error.__notes__)


async def test_handshake_succeeds_for_many_fresh_keys() -> None:
    for _ in range(5):
        key = secrets.token_bytes(32)
        assert await shake_both(key, key) == (None, None)


async def fake_peer_then_handshake(
    peer: Callable[[trio.SocketStream], Awaitable[None]],
    *,
    initiator: bool = True,
    timeout: float = 10.0,
) -> Unauthenticated:
    """Run ``handshake`` against ``peer(stream)`` (an async function playing the other
    end); return the Unauthenticated it raised."""
    left, right = stream_pair()
    async with left, right, trio.open_nursery() as nursery:
        nursery.start_soon(peer, right)
        with pytest.raises(Unauthenticated) as caught:
            await handshake(left, KEY, initiator=initiator, name="w", timeout=timeout)
        nursery.cancel_scope.cancel()
    return caught.value


@pytest.mark.parametrize("initiator", [True, False])
async def test_handshake_refuses_a_peer_that_speaks_http(initiator: bool) -> None:
    async def http_client(stream: trio.SocketStream) -> None:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n")
        await trio.sleep_forever()

    error = await fake_peer_then_handshake(http_client, initiator=initiator)
    assert str(error) == ("handshake on link w failed: not a trio-actors peer (or another version)")


async def test_handshake_refuses_another_protocol_version() -> None:
    async def old_peer(stream: trio.SocketStream) -> None:
        await stream.send_all(b"TRACTR00" + bytes(32))
        await trio.sleep_forever()

    error = await fake_peer_then_handshake(old_peer)
    assert error.problem == "not a trio-actors peer (or another version)"


@pytest.mark.parametrize("initiator", [True, False])
async def test_handshake_peer_closes_in_the_middle(initiator: bool) -> None:
    async def quitter(stream: trio.SocketStream) -> None:
        await stream.send_all(MAGIC + b"0123456789")  # 18 of the 40 bytes
        await stream.aclose()

    error = await fake_peer_then_handshake(quitter, initiator=initiator)
    assert str(error) == (
        "handshake on link w failed: peer closed the connection during the handshake"
    )


async def test_handshake_peer_closes_after_its_hello() -> None:
    async def quitter(stream: trio.SocketStream) -> None:
        await stream.send_all(MAGIC + bytes(32))
        await stream.aclose()

    error = await fake_peer_then_handshake(quitter, initiator=False)
    assert error.problem == "peer closed the connection during the handshake"


async def test_handshake_times_out_on_a_silent_peer(autojump_clock: trio.abc.Clock) -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    start = trio.current_time()
    error = await fake_peer_then_handshake(silent, timeout=7.5)
    assert trio.current_time() - start == pytest.approx(7.5)
    assert str(error).startswith(
        "handshake on link w failed: timed out after 7.5 s: the peer did not complete the handshake"
    )


async def test_handshake_refuses_a_peer_that_echoes_everything() -> None:
    async def echo(stream: trio.SocketStream) -> None:
        while data := await stream.receive_some(1000):
            await stream.send_all(data)

    error = await fake_peer_then_handshake(echo, initiator=True)
    assert error.problem == (
        "the peer's response does not match: the peer does not hold this system's key"
    )


async def test_handshake_two_initiators_fail_though_they_share_the_key() -> None:
    """Responses are bound to the sender's role: an initiator's response never passes
    where an acceptor's is expected, so one cannot stand in for the other."""
    left, right = stream_pair()
    async with left, right, trio.open_nursery() as nursery:
        errors: list[Unauthenticated] = []

        async def side(stream: trio.SocketStream) -> None:
            try:
                await handshake(stream, KEY, initiator=True)
            except Unauthenticated as error:
                errors.append(error)

        nursery.start_soon(side, left)
        nursery.start_soon(side, right)
    assert [e.problem for e in errors] == [
        "the peer's response does not match: the peer does not hold this system's key"
    ] * 2


@pytest.mark.parametrize(
    ("key", "kind", "text"),
    [
        (b"short", ValueError, "the link key is 5 bytes long, too short"),
        (b"", ValueError, "the link key is 0 bytes long"),
        ("a str key of enough length", TypeError, "the link key must be bytes, not str"),
    ],
)
async def test_handshake_checks_the_key(key: bytes, kind: type[Exception], text: str) -> None:
    left, right = stream_pair()
    async with left, right:
        with pytest.raises(kind, match=text) as caught:
            await handshake(left, key, initiator=True)
        assert "secrets.token_bytes(32)" in str(caught.value)
        await left.aclose()
        assert await right.receive_some(10) == b""  # nothing was sent


async def test_handshake_checks_the_timeout() -> None:
    left, right = stream_pair()
    async with left, right:
        with pytest.raises(ValueError, match="timeout must be a positive number"):
            await handshake(left, KEY, initiator=True, timeout=0)
