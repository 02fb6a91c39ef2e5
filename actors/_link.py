"""One authenticated connection to another process: frames out through an outbox, frames
in to a callback.

A :class:`Link` wraps a stream on which the handshake (``_handshake.handshake``) has
already succeeded. :meth:`Link.send` queues a frame and never blocks; one writer task
takes everything queued and writes it with a single ``send_all``, so a burst of small
messages costs one system call rather than one each. One reader task splits what
arrives into frames and hands each payload to the callback given to :meth:`Link.run`.
Payloads are opaque bytes: nothing here decodes them.

Bursts of small parts: :meth:`Link.append` adds a part to the last frame queued when that
frame was made by ``append`` with the same head and the writer has not taken it yet, so a
thousand tells to one actor cost one frame (one header, one head, one split on arrival)
rather than a thousand.

A sender that never yields: once :data:`FLUSH_AT` bytes are queued, the sender's own
task writes what the socket takes (one non-blocking ``writev``), so the peer starts on
them while the sender goes on; what the socket does not take waits for the writer, and
the sender tries again after :data:`FLUSH_AT` more bytes.

Latency, reading: after handing over the frames of what it read, the reader lets the
tasks they woke run (:data:`READER_YIELDS` checkpoints) before it reads again, so an
actor asked a question answers (and writes its answer) before the reader pays for
waiting on the socket again (a ``recv`` that finds nothing, a registration with the
I/O poller); in a request and its reply, that cost is off the path of both. On a socket,
the reader reads with ``os.read`` and, after a read that did not fill its buffer (the peer
had nothing more to say), waits for the socket to be readable before it reads again,
rather than first trying a read that finds nothing (:meth:`Link._receive_fd`).

Latency, writing: a frame sent when the link is quiet (nothing queued or being written,
and the last frame written directly has been answered since: a frame came in, or the
writer has written) is written at once by :meth:`Link.send` itself, with one
non-blocking system call, rather than handed to the writer task: a request and its
reply cost no task switch to the writer on either side. Frames sent right after it are
queued and coalesced as usual, so a burst still costs one write (and what the socket
does not take at once is left to the writer).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Final

import trio

from ._wire import (
    MAX_FRAME,
    FrameParser,
    FrameTooLarge,
    LinkClosed,
    LinkFull,
    check_max_frame,
    closed_by_peer,
    pack_header,
)

link_log: Final = logging.getLogger("actors.link")

_wait_readable: Final = trio.lowlevel.wait_readable
_checkpoint: Final = trio.lowlevel.checkpoint

RECEIVE_SIZE: Final = 64 * 1024
"""Bytes asked of the stream per read."""

FLUSH_AT: Final = 64 * 1024
"""Payload bytes queued at which the sender's task writes them itself (see the module
documentation); also the most that :meth:`Link.append` puts in one frame."""

IOV_MAX: Final = 1024
"""The most chunks handed to one ``writev`` (the POSIX minimum of the system's limit)."""

READER_YIELDS: Final = 2
"""Checkpoints the reader makes after handing over what it read (see the module
documentation): two, because trio runs each batch of ready tasks in a random order (a
task woken by ``on_frame`` runs in the batch after, before or after the reader's first
checkpoint)."""

CLOSE_TIMEOUT: Final = 1.0
"""Seconds a closing stream may take before it is closed hard."""

CLOSED_BY_THIS_SIDE: Final = "closed by this side"
PEER_CLOSED: Final = "peer closed the link"
PEER_BROKE_PROTOCOL: Final = "the peer broke the protocol"
CONNECTION_BROKE: Final = "the connection broke"
CALLBACK_FAILED: Final = "on_frame raised"
RUN_CANCELLED: Final = "run() was cancelled"
RUN_INTERRUPTED: Final = "run() was interrupted"


def _interruption(error: BaseException) -> BaseException | None:
    """What other than cancellation ``error`` carries (the first such exception inside
    a group), or ``None`` if it is only cancellation."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _interruption(inner)
            if found is not None:
                return found
        return None
    return None if isinstance(error, trio.Cancelled) else error


class Link:
    """Frames in and out over one authenticated stream.

    ``send`` queues; :meth:`run` does all the I/O until the link ends, and returns a
    :class:`LinkClosed` that says why. The link owns the stream: it closes it when
    ``run`` ends, however it ends.

    How a link ends (the ``reason`` of the :class:`LinkClosed` that ``run`` returns):

    - ``"closed by this side"`` (or the reason given to :meth:`close`): everything
      queued before the close was written first. Frames keep arriving (and reach
      ``on_frame``) while it flushes: a peer blocked on writing to us is not deadlocked.
    - ``"peer closed the link"``: end of stream, or the peer's socket was closed under a
      write (then the OS error is the ``__cause__``). Frames still queued are dropped.
    - ``"the peer broke the protocol"``: it announced a frame over ``max_frame``
      (:class:`FrameTooLarge` is the ``__cause__``). Logged as a WARNING on
      ``actors.link``.
    - ``"the connection broke"``: any other error of the stream (the ``__cause__``).
      Logged as a WARNING on ``actors.link``.
    - ``"on_frame raised"``: the callback raised an ``Exception`` (the ``__cause__``).
      Logged as an ERROR on ``actors.link``, with its traceback.

    In all but the first case, the link stops at once: what is still queued is not
    written. If the scope around ``run`` is cancelled, ``run`` stops promptly,
    closes the stream and lets ``Cancelled`` propagate; the link is then closed with
    reason ``"run() was cancelled"``. Any other ``BaseException`` (``on_frame`` raising
    ``KeyboardInterrupt``, say) propagates the same way, with reason ``"run() was
    interrupted"`` and itself as the cause.

    Counters, for tests and benchmarks: ``frames_sent`` and ``bytes_sent`` (frames and
    bytes, headers included, that ``send_all`` has taken), ``writes`` (calls of
    ``send_all``) and ``frames_received``."""

    __slots__ = (
        "_closing",
        "_direct_pending",
        "_ending",
        "_fd",
        "_finished",
        "_flush_at",
        "_in_flight",
        "_max_frame",
        "_max_outbox_bytes",
        "_open_head",
        "_open_limit",
        "_outbox",
        "_outbox_bytes",
        "_outbox_frames",
        "_parts",
        "_room",
        "_scope",
        "_started",
        "_stream",
        "_stream_closed",
        "_wait_first",
        "_wakeup",
        "bytes_sent",
        "frames_received",
        "frames_sent",
        "name",
        "writes",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        name: str,
        max_frame: int = MAX_FRAME,
        max_outbox_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        if not isinstance(max_outbox_bytes, int) or max_outbox_bytes < 1:
            raise ValueError(
                f"max_outbox_bytes must be a positive int (bytes), got {max_outbox_bytes!r}"
            )
        self._stream = stream
        self.name = name
        self._max_frame = check_max_frame(max_frame)
        self._max_outbox_bytes = max_outbox_bytes
        # Headers and payloads, in pairs, in order, waiting for the writer. A frame
        # written in part by send() or _write_now() is left as b"" and the rest of it.
        self._outbox: list[bytes | memoryview] = []
        # The frame append() is filling (see _seal), if _open_head is not None: its
        # pieces, and the bytes it may still take (_room, of _open_limit at the start).
        # It is the last pair of _outbox, as placeholders until sealed.
        self._open_head: bytes | None = None
        self._parts: list[bytes] = []
        self._room = self._open_limit = 0
        self._outbox_frames = 0
        # Payload bytes queued or being written: what max_outbox_bytes bounds (for a
        # frame written in part, what is left of it; for the frame being filled, what
        # it had when it was started).
        self._outbox_bytes = 0
        self._flush_at = FLUSH_AT  # (queued bytes at which send() writes: _write_now)
        self._in_flight = 0  # frames of the write in progress
        self._wakeup = trio.Event()
        self._closing: str | None = None
        self._ending: LinkClosed | None = None
        self._scope: trio.CancelScope | None = None
        self._started = False
        self._stream_closed = False
        self._finished = trio.Event()
        self.frames_sent = 0
        self.bytes_sent = 0
        self.writes = 0
        self.frames_received = 0
        # Written directly by send() when the link is quiet (see the module docs): the
        # socket's descriptor, and whether a direct write waits for an answer.
        self._fd = stream.socket.fileno() if isinstance(stream, trio.SocketStream) else -1
        self._direct_pending = False
        self._wait_first = False  # (see _receive_fd)

    def __repr__(self) -> str:
        state = (
            "open"
            if self._closing is None and self._ending is None
            else "closing"
            if self._ending is None
            else "closed"
        )
        return f"<Link {self.name} {state}, {self._outbox_frames} frames queued>"

    @property
    def closed(self) -> bool:
        """Whether the link refuses sends: :meth:`close` was called, or it has ended."""
        return self._closing is not None or self._ending is not None

    @property
    def queued_bytes(self) -> int:
        """Payload bytes queued or being written (what ``max_outbox_bytes`` bounds)."""
        if self._open_head is not None:
            return self._outbox_bytes + self._open_limit - self._room
        return self._outbox_bytes

    def send(self, payload: bytes) -> None:
        """Queue ``payload`` as one frame. Never blocks and never yields.

        Raises :class:`LinkClosed` if the link is closed or closing,
        :class:`FrameTooLarge` if the payload is over ``max_frame``, :class:`LinkFull`
        if the payload bytes queued (or being written) would pass ``max_outbox_bytes``,
        and ``TypeError`` if it is not ``bytes``; nothing is queued when it raises.
        A queued frame is written unless the link ends other than by :meth:`close`."""
        if self._closing is not None or self._ending is not None:
            raise self._refusal()
        if self._open_head is not None:
            self._seal()
        if type(payload) is not bytes:
            raise TypeError(
                f"a link sends bytes, not {type(payload).__qualname__} (encode the message first)"
            )
        size = len(payload)
        if size > self._max_frame:
            raise FrameTooLarge(self.name, size, self._max_frame, received=False)
        queued = self._outbox_bytes
        if queued + size > self._max_outbox_bytes:
            raise LinkFull(self.name, queued, size, self._max_outbox_bytes)
        if (
            self._fd >= 0
            and not self._direct_pending
            and not self._outbox
            and not self._in_flight
            and self._scope is not None
        ):
            data = pack_header(size) + payload
            try:
                written = os.write(self._fd, data)
            except OSError:  # (full, or broken: the writer meets it and says so)
                written = 0
            self._direct_pending = True
            if written:
                self.writes += 1
                self.bytes_sent += written
            if written == len(data):
                self.frames_sent += 1
                return
            rest = data[written:]  # the rest of the frame, for the writer
            self._outbox_bytes = queued + len(rest)
            self._outbox += (b"", rest)
            self._outbox_frames += 1
            self._wakeup.set()
            return
        self._outbox_bytes = queued + size
        self._outbox += (pack_header(size), payload)
        self._outbox_frames += 1
        self._wakeup.set()
        if queued + size >= self._flush_at:
            self._write_now()

    def append(self, head: bytes, part: bytes) -> None:
        """Queue ``part`` in a frame whose payload is ``head`` then parts, each one its
        length (4 bytes, as a frame's header) and itself. Never blocks and never yields.

        The part goes into the last frame queued if ``append`` made that frame with this
        very ``head`` (the same object: callers keep their heads), the writer has not
        taken it yet, and it stays within :data:`FLUSH_AT` bytes; else it starts a new
        frame. Frames in between (:meth:`send`) end the frame being filled, so the order
        of everything sent on the link is kept. Raises as :meth:`send` (for the frame the
        part would make), with nothing queued when it raises."""
        if self._open_head is head:
            room = self._room - len(part) - 4
            if room >= 0:  # (within FLUSH_AT and max_outbox_bytes: see _append_new)
                self._room = room
                parts = self._parts
                parts.append(pack_header(len(part)))
                parts.append(part)
                return
        self._append_new(head, part)

    def _append_new(self, head: bytes, part: bytes) -> None:
        """:meth:`append` of a part that starts a frame of its own: sent as a frame (all
        of :meth:`send`'s checks, and its write at once on a quiet link), then, if it
        waits whole in the outbox, left open for the parts that follow."""
        if type(head) is not bytes or type(part) is not bytes:
            raise TypeError("a link appends bytes (the head and the part)")
        if self._open_head is head:  # (full: its room is what max_outbox_bytes left)
            queued = self.queued_bytes
            if queued + 4 + len(part) > self._max_outbox_bytes:
                raise LinkFull(self.name, queued, 4 + len(part), self._max_outbox_bytes)
        payload = head + pack_header(len(part)) + part
        self.send(payload)
        outbox = self._outbox
        if outbox and outbox[-1] is payload:
            outbox[-2] = b""  # (a placeholder: see _seal)
            self._parts = [payload]
            self._open_head = head
            self._room = self._open_limit = min(
                FLUSH_AT - len(payload), self._max_outbox_bytes - self._outbox_bytes
            )

    def _seal(self) -> None:
        """End the frame that :meth:`append` is filling: its payload joined, its header
        made and its bytes counted, now that its size is known."""
        self._open_head = None
        body = b"".join(self._parts)
        self._parts = []
        self._outbox_bytes += self._open_limit - self._room
        outbox = self._outbox
        outbox[-2] = pack_header(len(body))
        outbox[-1] = body

    def _write_now(self) -> None:
        """Write from the sender's task what the socket takes now of the queue (one
        non-blocking ``writev``), if the writer is not writing; see the module docs."""
        if self._in_flight or self._fd < 0 or self._scope is None:
            return
        if self._open_head is not None:
            self._seal()
        outbox = self._outbox
        try:
            written = os.writev(self._fd, outbox[:IOV_MAX])
        except OSError:  # (full, or broken: the writer meets it and says so)
            written = 0
        if written:
            self.writes += 1
            self.bytes_sent += written
        left = written
        frames = 0
        done = 0  # (chunks fully written)
        gone = 0  # (payload bytes fully written)
        count = len(outbox)
        while done < count:
            header, body = len(outbox[done]), len(outbox[done + 1])
            if header + body > left:
                break
            left -= header + body
            gone += body
            done += 2
            frames += 1
        if done < count and left:  # a frame written in part: what is left of it
            header_chunk, body_chunk = outbox[done], outbox[done + 1]
            if left < len(header_chunk):
                rest = memoryview(bytes(header_chunk[left:]) + body_chunk)
            else:
                rest = memoryview(body_chunk)[left - len(header_chunk) :]
            gone += len(body_chunk) - len(rest)
            outbox[done] = b""
            outbox[done + 1] = rest
        del outbox[:done]
        self.frames_sent += frames
        self._outbox_frames -= frames
        self._outbox_bytes -= gone
        self._flush_at = self._outbox_bytes + FLUSH_AT

    def close(self, reason: str = CLOSED_BY_THIS_SIDE) -> None:
        """Stop accepting sends; :meth:`run` writes what is queued, closes the stream
        and returns a :class:`LinkClosed` with ``reason``. Idempotent (a later reason is
        ignored), never blocks. To wait for the end, use :meth:`aclose`."""
        if self._closing is None and self._ending is None:
            self._closing = reason
            if self._open_head is not None:
                self._seal()
            self._wakeup.set()

    async def aclose(self, flush_timeout: float = 5.0) -> None:
        """:meth:`close`, then wait until :meth:`run` has flushed what is queued and
        ended. If it has not ended after ``flush_timeout`` seconds (the peer does not
        read), the link is stopped hard: what is still queued is dropped, the stream is
        closed, and the reason says so.

        If ``run`` is not running, ``aclose`` waits ``flush_timeout`` for it to start
        and flush (a task that is about to call it may not have started yet), then
        closes the stream itself; a later ``run`` returns at once. So close a link
        whose ``run`` will never be called with ``aclose(flush_timeout=0)``.

        Cancelling ``aclose`` only stops the waiting: the link still closes."""
        self.close()
        if self._stream_closed and not self._started:
            return  # (closed by an earlier aclose)
        with trio.move_on_after(flush_timeout):
            await self._finished.wait()
            return
        unwritten = self._outbox_frames + self._in_flight
        reason = self._closing or CLOSED_BY_THIS_SIDE
        if not self._started:
            self._end(
                LinkClosed(
                    self.name,
                    f"{reason}; run() was not called within {flush_timeout:g} s, so "
                    f"{unwritten} queued frame(s) were not written",
                )
            )
            await self._close_stream(hard=True)
            return
        self._end(
            LinkClosed(
                self.name,
                f"{reason}; the flush timed out after {flush_timeout:g} s with "
                f"{unwritten} frame(s) not (or not fully) written",
            )
        )
        await self._finished.wait()  # prompt: run's tasks are cancelled

    async def run(self, on_frame: Callable[[bytes], None]) -> LinkClosed:
        """Read and write until the link ends; return why it ended (a
        :class:`LinkClosed`: see the class for the reasons).

        ``on_frame(payload)`` is called for every frame received, in order, in the
        reader task: it must not block (hand the payload over and return). If it raises
        an ``Exception``, the link ends with it as the cause. The stream is closed when
        ``run`` ends, however it ends. May be called once (``RuntimeError`` after)."""
        if self._started:
            raise RuntimeError(f"Link.run was already called on link {self.name}")
        self._started = True
        hard = True
        try:
            if self._ending is None:  # (else aclose ended it before it ran)
                async with trio.open_nursery() as nursery:
                    self._scope = nursery.cancel_scope
                    nursery.start_soon(self._read, on_frame)
                    nursery.start_soon(self._write)
            hard = False
        except BaseException as error:
            if self._ending is None:
                interruption = _interruption(error)
                self._ending = (
                    LinkClosed(self.name, RUN_CANCELLED)
                    if interruption is None
                    else LinkClosed(self.name, RUN_INTERRUPTED, interruption)
                )
            raise
        finally:
            self._scope = None
            await self._close_stream(hard=hard)
            self._finished.set()
        ending = self._ending
        assert ending is not None  # (set by whichever task ended the link)
        return ending

    # -- the tasks ----------------------------------------------------------------------

    async def _read(self, on_frame: Callable[[bytes], None]) -> None:
        parser = FrameParser(self._max_frame, self.name)
        receive_some = self._receive_fd if self._fd >= 0 else self._stream.receive_some
        while True:
            try:
                data = await receive_some(RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                if closed_by_peer(error):
                    self._end(LinkClosed(self.name, PEER_CLOSED, error))
                else:
                    self._fail(CONNECTION_BROKE, error)
                return
            if not data:
                self._end(LinkClosed(self.name, PEER_CLOSED))
                return
            try:
                payloads = parser.feed(data)
            except FrameTooLarge as error:
                self._fail(PEER_BROKE_PROTOCOL, error)
                return
            if payloads:
                self._direct_pending = False  # answered: the next quiet send goes direct
            for payload in payloads:
                self.frames_received += 1
                try:
                    on_frame(payload)
                except Exception as error:
                    ending = LinkClosed(self.name, CALLBACK_FAILED, error)
                    link_log.error(
                        "%s",
                        ending,
                        exc_info=error,
                        extra={"actor_path": None, "message_type": None, "link": self.name},
                    )
                    self._end(ending)
                    return
            if payloads:  # (let the tasks they woke run first: see the module docs)
                for _ in range(READER_YIELDS):
                    await _checkpoint()

    async def _receive_fd(self, size: int) -> bytes:
        """The stream's ``receive_some`` for a socket, read with ``os.read``: after a
        read that did not fill ``size`` (the peer had nothing more to say), wait until
        the socket is readable before reading, rather than first trying a read that
        finds nothing; after a full read, read at once (there is likely more). Errors as
        ``receive_some``'s: ``BrokenResourceError`` with the OS error as its cause, or
        ``ClosedResourceError``."""
        fd = self._fd
        if self._wait_first:
            await _wait_readable(fd)
        else:
            await _checkpoint()
        while True:
            try:
                data = os.read(fd, size)
            except BlockingIOError:
                await _wait_readable(fd)
                continue
            except OSError as error:
                raise trio.BrokenResourceError(f"reading link {self.name}") from error
            self._wait_first = len(data) < size
            return data

    async def _write(self) -> None:
        send_all = self._stream.send_all
        while True:
            if not self._outbox:
                if self._closing is not None:
                    self._end(LinkClosed(self.name, self._closing))
                    return
                self._wakeup = trio.Event()
                await self._wakeup.wait()
                continue
            if self._open_head is not None:
                self._seal()
            chunks = self._outbox
            frames = self._outbox_frames
            payload_bytes = self._outbox_bytes
            self._outbox = []
            self._outbox_frames = 0
            data = b"".join(chunks)
            del chunks
            self._in_flight = frames
            try:
                await send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError) as error:
                if closed_by_peer(error):
                    self._end(LinkClosed(self.name, PEER_CLOSED, error))
                else:
                    self._fail(CONNECTION_BROKE, error)
                return
            # (sends made during the write added to _outbox_bytes; these are gone now)
            self._outbox_bytes -= payload_bytes
            self._flush_at = self._outbox_bytes + FLUSH_AT
            self._in_flight = 0
            self._direct_pending = False
            self.writes += 1
            self.frames_sent += frames
            self.bytes_sent += len(data)

    # -- ending -------------------------------------------------------------------------

    def _end(self, ending: LinkClosed) -> None:
        """End the link with ``ending`` (unless it has ended already): stop both tasks."""
        if self._ending is None:
            self._ending = ending
        self._open_head = None  # (nothing more is added to what is queued)
        if self._scope is not None:
            self._scope.cancel()

    def _fail(self, reason: str, error: BaseException) -> None:
        """End the link because of an error on the peer's side or of the stream: logged
        as a WARNING, since the link did not end by anyone's choice."""
        ending = LinkClosed(self.name, reason, error)
        if self._ending is None:
            link_log.warning(
                "%s; the stream is closed",
                ending,
                extra={"actor_path": None, "message_type": None, "link": self.name},
            )
        self._end(ending)

    def _refusal(self) -> LinkClosed:
        if self._ending is not None:
            refusal = LinkClosed(self.name, self._ending.reason, self._ending.__cause__)
        else:
            refusal = LinkClosed(self.name, self._closing or CLOSED_BY_THIS_SIDE)
        refusal.add_note("Nothing was queued: a closed link sends nothing more.")
        return refusal

    async def _close_stream(self, *, hard: bool) -> None:
        """Close the stream (once), shielded from cancellation and within
        :data:`CLOSE_TIMEOUT` seconds; ``hard`` closes it without waiting for anything."""
        if self._stream_closed:
            return
        self._stream_closed = True
        with trio.CancelScope(shield=True):
            if not hard:
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await self._stream.aclose()
                    return
            await trio.aclose_forcefully(self._stream)
