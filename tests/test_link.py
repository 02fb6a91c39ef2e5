"""``actors._link.Link``: frames in and out over one stream, at real AF_UNIX sockets.

Order and completeness, coalesced writes, the outbox bound, how a link ends (closed by
this side with a flush, by the peer, by a peer that breaks the protocol, by a failing
callback, by cancellation) and what it logs."""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable

import pytest
import trio
import trio.testing

from actors._handshake import handshake
from actors._link import Link
from actors._wire import (
    FrameParser,
    FrameTooLarge,
    LinkClosed,
    LinkFull,
    frame,
    pack_header,
)

KEY = bytes(range(32))


def stream_pair() -> tuple[trio.SocketStream, trio.SocketStream]:
    a, b = trio.socket.socketpair()
    return trio.SocketStream(a), trio.SocketStream(b)


def never_called(payload: bytes) -> None:
    raise AssertionError(f"unexpected frame {payload!r}")


async def read_to_eof(stream: trio.SocketStream) -> list[bytes]:
    """Every frame the peer receives until end of stream."""
    parser = FrameParser()
    payloads: list[bytes] = []
    while data := await stream.receive_some(65536):
        payloads += parser.feed(data)
    assert parser.buffered == 0
    return payloads


def count_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(t) for n in task.child_nurseries for t in n.child_tasks)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    return walk(root)


class Runner:
    """Runs ``link.run(on_frame)`` in a task and keeps what it returned."""

    def __init__(self) -> None:
        self.result: LinkClosed | None = None

    async def __call__(self, link: Link, on_frame: Callable[[bytes], None]) -> None:
        self.result = await link.run(on_frame)


async def test_ten_thousand_frames_arrive_in_order_and_complete() -> None:
    left, right = stream_pair()
    sender = Link(left, name="out")
    receiver = Link(right, name="in")
    rng = random.Random(7)
    payloads = [i.to_bytes(4, "big") + rng.randbytes(rng.randint(0, 60)) for i in range(10_000)]
    received: list[bytes] = []
    sent, got = Runner(), Runner()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(sent, sender, never_called)
        nursery.start_soon(got, receiver, received.append)
        for i, payload in enumerate(payloads):
            sender.send(payload)
            if i % 7 == 0:
                await trio.lowlevel.checkpoint()  # (let the writer take some)
        sender.close()
    assert received == payloads
    assert sent.result is not None
    assert sent.result.reason == "closed by this side"
    assert got.result is not None
    assert got.result.reason == "peer closed the link"
    assert got.result.__cause__ is None
    assert sender.frames_sent == receiver.frames_received == 10_000
    assert sender.bytes_sent == sum(4 + len(p) for p in payloads)
    assert 1 < sender.writes < 10_000
    assert sender.closed
    assert receiver.closed


async def test_frames_sent_before_the_writer_runs_go_out_in_one_write() -> None:
    left, right = stream_pair()
    link = Link(left, name="w")
    for i in range(1000):
        link.send(b"%d" % i)
    link.close()
    async with right, trio.open_nursery() as nursery:
        nursery.start_soon(link.run, never_called)
        received = await read_to_eof(right)
    assert received == [b"%d" % i for i in range(1000)]
    assert (link.writes, link.frames_sent) == (1, 1000)


async def test_frames_sent_during_a_write_go_out_together_in_the_next() -> None:
    left, right = stream_pair()
    link = Link(left, name="w")
    big = b"B" * (4 * 1024 * 1024)  # more than the socket buffers: the write blocks
    async with right, trio.open_nursery() as nursery:
        nursery.start_soon(link.run, never_called)
        link.send(big)
        await trio.testing.wait_all_tasks_blocked()
        assert link.writes == 0  # (the first write is still in progress)
        for i in range(100):
            link.send(b"small %d" % i)
        assert link.queued_bytes == len(big) + sum(len(b"small %d" % i) for i in range(100))
        link.close()
        received = await read_to_eof(right)
    assert received == [big] + [b"small %d" % i for i in range(100)]
    assert (link.writes, link.frames_sent) == (2, 101)
    assert link.queued_bytes == 0


async def test_send_over_the_outbox_bound_raises_link_full_and_queues_nothing() -> None:
    left, right = stream_pair()
    link = Link(left, name="w", max_outbox_bytes=100)
    link.send(b"a" * 60)
    with pytest.raises(LinkFull) as caught:
        link.send(b"b" * 41)
    error = caught.value
    assert str(error) == (
        "outbox of link w is full: 60 bytes are queued, and a frame of 41 bytes would "
        "pass its limit of 100 bytes (max_outbox_bytes)"
    )
    assert (error.queued, error.size, error.limit) == (60, 41, 100)
    assert "Nothing was queued" in "".join(error.__notes__)
    assert link.queued_bytes == 60
    link.send(b"c" * 40)  # exactly the bound
    link.send(b"")  # (an empty frame still fits)
    with pytest.raises(LinkFull):
        link.send(b"d")
    link.close()
    async with right, trio.open_nursery() as nursery:
        nursery.start_soon(link.run, never_called)
        received = await read_to_eof(right)
    assert received == [b"a" * 60, b"c" * 40, b""]


async def test_send_of_a_frame_over_max_frame_raises_and_queues_nothing() -> None:
    left, right = stream_pair()
    link = Link(left, name="w", max_frame=10)
    with pytest.raises(FrameTooLarge) as caught:
        link.send(b"x" * 11)
    assert str(caught.value) == "a frame of 11 bytes is over the limit of 10 bytes on link w"
    assert link.queued_bytes == 0
    link.send(b"x" * 10)
    async with right, trio.open_nursery() as nursery:
        nursery.start_soon(link.run, never_called)
        link.close()
        assert await read_to_eof(right) == [b"x" * 10]


async def test_send_checks_the_payload_type() -> None:
    left, right = stream_pair()
    async with left, right:
        link = Link(left, name="w")
        with pytest.raises(TypeError, match="a link sends bytes, not str"):
            link.send("text")  # type: ignore[arg-type]
        assert link.queued_bytes == 0


async def test_a_peer_announcing_too_large_a_frame_ends_the_link(
    caplog: pytest.LogCaptureFixture,
) -> None:
    left, right = stream_pair()
    link = Link(left, name="worker-3", max_frame=1000)
    calls: list[bytes] = []
    runner = Runner()
    async with right, trio.open_nursery() as nursery:
        nursery.start_soon(runner, link, calls.append)
        await right.send_all(frame(b"fine"))
        await trio.testing.wait_all_tasks_blocked()
        assert calls == [b"fine"]
        await right.send_all(pack_header(1001))  # no payload follows
        assert await right.receive_some(100) == b""  # the peer sees end of stream
    assert calls == [b"fine"]
    result = runner.result
    assert result is not None
    assert result.reason == "the peer broke the protocol"
    assert isinstance(result.__cause__, FrameTooLarge)
    assert str(result) == (
        "link worker-3 closed: the peer broke the protocol (FrameTooLarge: the peer on link "
        "worker-3 announced a frame of 1001 bytes, over the limit of 1000 bytes)"
    )
    [record] = [r for r in caplog.records if r.name == "actors.link"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == str(result) + "; the stream is closed"
    assert record.link == "worker-3"  # type: ignore[attr-defined]
    assert link.closed
    with pytest.raises(LinkClosed, match="link worker-3 closed: the peer broke the protocol"):
        link.send(b"late")


@pytest.mark.parametrize("unread", [False, True], ids=["end-of-stream", "reset"])
async def test_end_of_stream_from_the_peer(caplog: pytest.LogCaptureFixture, unread: bool) -> None:
    # unread: the peer closes its socket without reading what we sent, so the OS resets
    # the connection and the read after the data it did send fails with ECONNRESET: the
    # peer closed the link all the same, with the OS error as the cause.
    left, right = stream_pair()
    link = Link(left, name="w")
    calls: list[bytes] = []
    runner = Runner()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(runner, link, calls.append)
        if unread:
            link.send(b"never read")
            await trio.testing.wait_all_tasks_blocked()
        await right.send_all(frame(b"last words"))
        await right.aclose()
    assert calls == [b"last words"]
    assert runner.result is not None
    assert runner.result.reason == "peer closed the link"
    if unread:
        assert isinstance(runner.result.__cause__, trio.BrokenResourceError)
        assert isinstance(runner.result.__cause__.__cause__, ConnectionResetError)
    else:
        assert str(runner.result) == "link w closed: peer closed the link"
    assert not [r for r in caplog.records if r.name == "actors.link"]
    with pytest.raises(LinkClosed, match="link w closed: peer closed the link") as caught:
        link.send(b"after")
    assert "Nothing was queued" in "".join(caught.value.__notes__)


async def test_close_flushes_what_is_queued_then_the_peer_sees_the_end() -> None:
    left, right = stream_pair()
    link = Link(left, name="w")
    runner = Runner()
    async with right, trio.open_nursery() as nursery:
        nursery.start_soon(runner, link, never_called)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(50):
            link.send(b"frame %d" % i)
        link.close()
        assert link.closed
        with pytest.raises(LinkClosed, match="link w closed: closed by this side"):
            link.send(b"refused")
        link.close("another reason")  # (idempotent: the first reason stays)
        assert await read_to_eof(right) == [b"frame %d" % i for i in range(50)]
    assert runner.result is not None
    assert runner.result.reason == "closed by this side"
    assert link.frames_sent == 50


async def test_aclose_waits_for_the_flush_and_the_end_of_run() -> None:
    left, right = stream_pair()
    link = Link(left, name="w")
    runner = Runner()
    async with right, trio.open_nursery() as nursery:
        nursery.start_soon(runner, link, never_called)
        link.send(b"one")
        link.send(b"two")
        await link.aclose()
        assert runner.result is not None  # run() has returned
        assert runner.result.reason == "closed by this side"
        assert await read_to_eof(right) == [b"one", b"two"]


async def test_aclose_gives_up_on_a_peer_that_does_not_read(
    autojump_clock: trio.abc.Clock,
) -> None:
    left, right = stream_pair()
    link = Link(left, name="w")
    runner = Runner()
    async with right, trio.open_nursery() as nursery:
        nursery.start_soon(runner, link, never_called)
        link.send(b"B" * (4 * 1024 * 1024))  # more than the socket buffers hold
        link.send(b"queued behind it")
        start = trio.current_time()
        await link.aclose(flush_timeout=3)
        assert trio.current_time() - start == pytest.approx(3)
        assert runner.result is not None
        assert runner.result.reason == (
            "closed by this side; the flush timed out after 3 s with 2 frame(s) not (or "
            "not fully) written"
        )
        assert link.frames_sent == 0
        # The stream is closed: the peer reads what the buffers held, then the end.
        total = 0
        while data := await right.receive_some(65536):
            total += len(data)
        assert 0 < total < 4 * 1024 * 1024


async def test_aclose_without_run_closes_the_stream_after_the_flush_timeout(
    autojump_clock: trio.abc.Clock,
) -> None:
    left, right = stream_pair()
    link = Link(left, name="w")
    link.send(b"never written")
    async with right:
        await link.aclose(flush_timeout=2)
        assert trio.current_time() == pytest.approx(2)
        assert await right.receive_some(100) == b""
        await link.aclose()  # (at once: it is closed)
        assert trio.current_time() == pytest.approx(2)
    result = await link.run(never_called)
    assert result.reason == (
        "closed by this side; run() was not called within 2 s, so 1 queued frame(s) were "
        "not written"
    )


async def test_aclose_with_no_flush_timeout_closes_an_idle_link_at_once() -> None:
    left, right = stream_pair()
    link = Link(left, name="w")
    async with right:
        await link.aclose(flush_timeout=0)
        assert await right.receive_some(100) == b""


async def test_run_may_be_called_once() -> None:
    left, right = stream_pair()
    link = Link(left, name="w")
    async with right:
        await link.aclose(flush_timeout=0)
        await link.run(never_called)
        with pytest.raises(RuntimeError, match=r"Link\.run was already called on link w"):
            await link.run(never_called)


async def test_on_frame_raising_ends_the_link_with_it_as_the_cause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    left, right = stream_pair()
    link = Link(left, name="w")
    calls: list[bytes] = []
    problem = ValueError("cannot decode this")

    def on_frame(payload: bytes) -> None:
        calls.append(payload)
        raise problem

    runner = Runner()
    async with right, trio.open_nursery() as nursery:
        nursery.start_soon(runner, link, on_frame)
        await right.send_all(frame(b"first") + frame(b"second"))  # one piece
        assert await right.receive_some(100) == b""
    assert calls == [b"first"]  # nothing after the failure
    result = runner.result
    assert result is not None
    assert result.reason == "on_frame raised"
    assert result.__cause__ is problem
    assert str(result) == "link w closed: on_frame raised (ValueError: cannot decode this)"
    [record] = [r for r in caplog.records if r.name == "actors.link"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert record.exc_info[1] is problem


async def test_cancelling_run_closes_the_stream_and_leaves_no_task() -> None:
    left, right = stream_pair()
    link = Link(left, name="w")
    before = count_tasks()
    async with right:
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(link.run, never_called)
                link.send(b"B" * (4 * 1024 * 1024))  # the writer blocks in send_all
                await trio.testing.wait_all_tasks_blocked()
                assert count_tasks() == before + 3  # run, its reader and its writer
                scope.cancel()
        assert scope.cancelled_caught
        assert count_tasks() == before
        assert link.closed
        with pytest.raises(LinkClosed, match=r"link w closed: run\(\) was cancelled"):
            link.send(b"after")
        while await right.receive_some(65536):  # what the buffers held, then the end
            pass
        assert left.socket.fileno() == -1


async def test_links_after_a_handshake_talk_both_ways() -> None:
    left, right = stream_pair()

    async def open_link(
        stream: trio.SocketStream, initiator: bool, name: str, into: list[bytes]
    ) -> None:
        await handshake(stream, KEY, initiator=initiator, name=name)
        link = Link(stream, name=name)
        links[name] = link
        link.send(b"hello from " + name.encode())
        await link.run(into.append)

    links: dict[str, Link] = {}
    root_got: list[bytes] = []
    worker_got: list[bytes] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(open_link, left, True, "root", root_got)
        nursery.start_soon(open_link, right, False, "worker", worker_got)
        await trio.testing.wait_all_tasks_blocked()
        for i in range(100):
            links["root"].send(b"r%d" % i)
            links["worker"].send(b"w%d" % i)
        await trio.testing.wait_all_tasks_blocked()
        links["root"].close()
    assert root_got == [b"hello from worker"] + [b"w%d" % i for i in range(100)]
    assert worker_got == [b"hello from root"] + [b"r%d" % i for i in range(100)]


class Interrupt(BaseException):
    """Not an Exception: like KeyboardInterrupt, it must not be swallowed."""


async def test_a_base_exception_from_on_frame_propagates_out_of_run() -> None:
    left, right = stream_pair()
    link = Link(left, name="w")

    def on_frame(payload: bytes) -> None:
        raise Interrupt(payload.decode())

    caught: list[BaseException] = []
    async with right:
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(link.run, on_frame)
                await right.send_all(frame(b"stop"))
        except* Interrupt as group:
            caught.extend(group.exceptions)
        assert await right.receive_some(100) == b""  # the stream was closed
    assert len(caught) == 1
    with pytest.raises(LinkClosed) as refused:
        link.send(b"after")
    assert str(refused.value) == "link w closed: run() was interrupted (Interrupt: stop)"


async def test_the_reader_waits_for_a_socket_after_a_short_read_rather_than_reading_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Requests and replies: after a read that did not fill its buffer, the reader waits
    # until the socket is readable, so no read of the link's socket finds nothing; a
    # frame larger than one read still arrives whole, read at once piece after piece.
    left, right = stream_pair()
    link = Link(left, name="w")
    fd = left.socket.fileno()
    reads: list[int] = []
    empty: list[int] = []
    real_read = os.read

    def read(descriptor: int, size: int) -> bytes:
        if descriptor != fd:
            return real_read(descriptor, size)
        try:
            data = real_read(descriptor, size)
        except BlockingIOError:
            empty.append(descriptor)
            raise
        reads.append(len(data))
        return data

    monkeypatch.setattr(os, "read", read)
    got: list[bytes] = []
    big = bytes(range(256)) * 1024  # 256 KiB: several reads
    async with right, trio.open_nursery() as nursery:
        nursery.start_soon(link.run, got.append)
        for i in range(50):
            await right.send_all(frame(b"request %d" % i))
            await trio.testing.wait_all_tasks_blocked()
            assert got[-1] == b"request %d" % i
        await right.send_all(frame(big))
        await trio.testing.wait_all_tasks_blocked()
        link.close()
    assert got[-1] == big
    assert len(got) == 51
    assert empty == []
    assert reads[:50] == [len(frame(b"request %d" % i)) for i in range(50)]
    assert sum(reads) == sum(len(frame(p)) for p in got)
