"""``Link.append``: parts with one head share a frame while the writer has not taken it,
within ``FLUSH_AT`` and the outbox bound, in order with whatever else is sent; and a
sender that never yields writes from its own task once ``FLUSH_AT`` bytes are queued,
leaving to the writer what the socket does not take. At real AF_UNIX sockets."""

from __future__ import annotations

import socket

import pytest
import trio
import trio.testing
from test_link import never_called, read_to_eof, stream_pair

from actors._link import FLUSH_AT, Link
from actors._wire import LinkClosed, LinkFull, unpack_header

HEAD = b"T-head"


def split(frame: bytes, head: bytes = HEAD) -> list[bytes]:
    """The parts of a frame that ``append`` made with ``head``."""
    assert frame.startswith(head), frame[:20]
    parts, position = [], len(head)
    while position < len(frame):
        (size,) = unpack_header(frame, position)
        parts.append(frame[position + 4 : position + 4 + size])
        position += 4 + size
    assert position == len(frame)
    return parts


async def flushed(link: Link, right: trio.SocketStream) -> list[bytes]:
    """Close ``link``, run it, and return every frame the peer got."""
    link.close()
    async with right, trio.open_nursery() as nursery:
        nursery.start_soon(link.run, never_called)
        return await read_to_eof(right)


async def test_parts_with_one_head_share_a_frame_in_order_with_other_frames() -> None:
    left, right = stream_pair()
    link = Link(left, name="w")
    other = HEAD[:1] + HEAD[1:]  # (equal, but another object: another frame)
    assert other is not HEAD
    for i in range(1000):
        link.append(HEAD, b"%d" % i)
    link.send(b"plain")
    link.append(HEAD, b"after plain")
    link.append(other, b"other head")
    link.append(HEAD, b"last")
    assert link.queued_bytes == (
        sum(len(HEAD) + 4 + len(p) for p in (b"after plain", b"other head", b"last"))
        + len(HEAD)
        + sum(4 + len(b"%d" % i) for i in range(1000))
        + len(b"plain")
    )
    frames = await flushed(link, right)
    assert len(frames) == 5
    assert split(frames[0]) == [b"%d" % i for i in range(1000)]
    assert frames[1] == b"plain"
    assert [split(f) for f in frames[2:]] == [[b"after plain"], [b"other head"], [b"last"]]
    assert (link.writes, link.frames_sent, link.queued_bytes) == (1, 5, 0)


async def test_a_frame_takes_parts_up_to_flush_at_bytes() -> None:
    left, right = stream_pair()
    link = Link(left, name="w")
    part = b"p" * 1000
    count = 3 * FLUSH_AT // len(part)
    for i in range(count):
        link.append(HEAD, i.to_bytes(4, "big") + part)
    frames = await flushed(link, right)
    assert len(frames) in (3, 4)
    assert all(len(frame) <= FLUSH_AT for frame in frames)
    assert all(len(frame) > FLUSH_AT - 1008 for frame in frames[:-1])  # (each one full)
    parts = [p for frame in frames for p in split(frame)]
    assert parts == [i.to_bytes(4, "big") + part for i in range(count)]


async def test_a_sender_that_never_yields_writes_from_its_own_task() -> None:
    left, right = stream_pair()
    link = Link(left, name="w")
    # (room in the socket for all the loop writes, whatever the system's default)
    left.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1024 * 1024)
    async with right, trio.open_nursery() as nursery:
        nursery.start_soon(link.run, never_called)
        await trio.testing.wait_all_tasks_blocked()  # (the writer waits for work)
        parts = [i.to_bytes(4, "big") * 25 for i in range(5 * FLUSH_AT // 200)]
        for part in parts:  # (no checkpoint: the writer task cannot run)
            link.append(HEAD, part)
        # The first part went at once (the link was quiet); then every FLUSH_AT bytes
        # were written by the loop itself, so the peer has them already.
        assert link.writes >= 3
        assert link.frames_sent >= 3
        assert link.queued_bytes < FLUSH_AT
        nursery.start_soon(link.aclose)
        frames = await read_to_eof(right)
    assert [p for frame in frames for p in split(frame)] == parts
    assert link.queued_bytes == 0


async def test_what_the_socket_does_not_take_is_left_to_the_writer_intact() -> None:
    left, right = stream_pair()
    link = Link(left, name="w")
    async with right, trio.open_nursery() as nursery:
        nursery.start_soon(link.run, never_called)
        await trio.testing.wait_all_tasks_blocked()
        # Far more than the socket buffers hold, and nobody reads yet: writes from the
        # loop stop part-way through a frame; the rest waits in the outbox.
        parts = [i.to_bytes(4, "big") * 250 for i in range(8 * 1024 * 1024 // 1000)]
        link.send(b"first")
        for part in parts:
            link.append(HEAD, part)
        link.send(b"between")
        link.append(HEAD, b"last")
        sent = link.bytes_sent
        assert 0 < sent < 8 * 1024 * 1024
        assert link.queued_bytes > 0
        nursery.start_soon(link.aclose)
        frames = await read_to_eof(right)
    assert frames[0] == b"first"
    assert frames[-2:] == [b"between", HEAD + b"\x00\x00\x00\x04last"]
    assert [p for frame in frames[1:-2] for p in split(frame)] == parts
    assert link.frames_sent == len(frames)
    assert link.bytes_sent == sum(4 + len(frame) for frame in frames)
    assert link.queued_bytes == 0


async def test_append_over_the_outbox_bound_raises_link_full_and_queues_nothing() -> None:
    left, right = stream_pair()
    link = Link(left, name="w", max_outbox_bytes=100)
    link.append(HEAD, b"a" * 40)  # 6 + 4 + 40 = 50 bytes
    link.append(HEAD, b"b" * 36)  # 40 more: 90
    with pytest.raises(LinkFull) as caught:
        link.append(HEAD, b"c" * 7)  # 11 more: 101
    assert (caught.value.queued, caught.value.limit) == (90, 100)
    assert link.queued_bytes == 90
    link.append(HEAD, b"d" * 6)  # exactly the bound
    assert link.queued_bytes == 100
    with pytest.raises(LinkFull):
        link.append(other := HEAD[:1] + HEAD[1:], b"")  # (a new frame of 10 bytes: no room)
    assert other is not HEAD
    frames = await flushed(link, right)
    assert [split(f) for f in frames] == [[b"a" * 40, b"b" * 36, b"d" * 6]]


async def test_append_to_a_closed_link_is_refused() -> None:
    left, right = stream_pair()
    link = Link(left, name="w")
    link.append(HEAD, b"kept")
    link.close()
    with pytest.raises(LinkClosed, match="link w closed: closed by this side"):
        link.append(HEAD, b"refused")
    async with right, trio.open_nursery() as nursery:
        nursery.start_soon(link.run, never_called)
        assert [split(f) for f in await read_to_eof(right)] == [[b"kept"]]


async def test_append_checks_its_arguments() -> None:
    left, right = stream_pair()
    async with left, right:
        link = Link(left, name="w")
        with pytest.raises(TypeError, match="a link appends bytes"):
            link.append(HEAD, "text")  # type: ignore[arg-type]
        assert link.queued_bytes == 0


class RecordingStream(trio.abc.HalfCloseableStream):
    """A stream that notes each ``receive_some`` in ``log`` (and passes it on)."""

    def __init__(self, inner: trio.SocketStream, log: list[str]) -> None:
        self.inner = inner
        self.log = log

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        self.log.append("read")
        return await self.inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self.inner.send_eof()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def test_the_tasks_a_frame_wakes_run_before_the_reader_reads_again() -> None:
    left, right = stream_pair()
    log: list[str] = []
    link = Link(RecordingStream(left, log), name="w")
    wake = trio.Event()

    async def answerer() -> None:
        nonlocal wake
        for _ in range(20):
            await wake.wait()
            wake = trio.Event()
            log.append("answered")

    def on_frame(payload: bytes) -> None:
        log.append("frame")
        wake.set()

    async with right, trio.open_nursery() as nursery:
        nursery.start_soon(answerer)
        nursery.start_soon(link.run, on_frame)
        for i in range(20):
            await trio.testing.wait_all_tasks_blocked()
            await right.send_all(b"\x00\x00\x00\x01%c" % i)
        await trio.testing.wait_all_tasks_blocked()
        link.close()
    assert log[:1] == ["read"]
    assert log[1:61] == ["frame", "answered", "read"] * 20
