"""The stream engine on NATS JetStream: :class:`JetStreamEngine`, opened by
:func:`open_jetstream` (``_jetstream_open.py``; ``pip install 'trio-actors[cluster]'``:
nats-py and trio-asyncio).

nats-py is an asyncio client; it runs here in an asyncio loop of trio-asyncio opened
by :func:`open_jetstream` (its own, also when a node of a cluster runs another in the
same process). A call from trio into that loop (a hop) costs ~0.2 ms, so the engine
makes one hop per call and never one per event: :meth:`JetStreamEngine.publish_many`
has every event of the batch in flight at once and waits for their acknowledgements
together, and settling an event (``ack``, ``nak``, ``term``, ``in_progress``) costs no
hop at all (see ``_jetstream_pull.py``).

What the engine's settings become in JetStream: a :class:`StreamConfig` is a stream of
the same name (its ``subjects``, ``retention``, limits (``None``: unlimited),
``duplicate_window`` (no longer than ``max_age``), ``storage``; old events discarded
first, one replica). A :class:`ConsumerConfig` is a durable pull consumer with explicit
acknowledgements (its ``filter``, ``start`` as the deliver policy ``all``, ``new``,
``by_start_sequence`` or ``by_start_time``, ``ack_wait``, ``max_deliver`` (``None``:
unlimited), ``backoff``, ``max_ack_pending``). A message id is JetStream's
``Nats-Msg-Id`` header, kept among the event's headers.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, Final, TypeVar

import trio

from ._config import ConsumerConfig, StreamConfig
from ._engine import (
    PubAck,
    StoredEvent,
    StreamEngine,
    StreamError,
    StreamNotFound,
    StreamState,
)
from ._jetstream_pull import JetStreamConsumer, Puller, Replies, Settler, Waiter, headers_of
from ._jetstream_settings import (
    MSG_ID,
    checked,
    consumer_config,
    describe,
    pub_ack,
    stream_config,
)

_log: Final = logging.getLogger("actors.streams")
_T = TypeVar("_T")

_STREAM_NOT_FOUND: Final = 10059
_CONSUMER_NOT_FOUND: Final = 10014
_MESSAGE_NOT_FOUND: Final = 10037
_STREAM_NAME_IN_USE: Final = 10058
_CLOSE_TIMEOUT: Final = 5.0

Event = tuple[str, bytes, Mapping[str, str] | None, str | None]


class JetStreamEngine(StreamEngine):
    """Durable streams on NATS JetStream (see :class:`StreamEngine` for what each method
    promises, and the module documentation for how the settings map). Made by
    :func:`open_jetstream`, usable until its block ends; every method runs in the trio
    thread of its caller. After the block, a call raises :class:`StreamError`.

    Errors: :class:`NoStreamForSubject` when no stream stores a published subject,
    :class:`StreamNotFound` for a stream or consumer that does not exist, otherwise
    :class:`StreamError` naming what failed, with nats-py's error chained. An operation
    not answered within ``timeout`` seconds (NATS unreachable, reconnecting) raises
    :class:`StreamError` (its outcome unknown) rather than waiting for NATS to return.
    """

    def __init__(self, loop: Any, nc: Any, timeout: float) -> None:
        self._loop = loop
        self._nc = nc
        self._timeout = timeout
        self._jsm = nc.jsm(timeout=timeout)
        self._replies = Replies(nc.new_inbox() + ".")
        self._settler = Settler(nc, self._replies, timeout)
        self._pullers: dict[tuple[str, str], Puller] = {}
        self._flusher: Any = None
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        url = self._nc.connected_url
        return f"<JetStreamEngine {state}, NATS at {url.netloc if url else None}>"

    # -- hops ---------------------------------------------------------------------------

    @trio.lowlevel.enable_ki_protection
    async def _aio(self, awaitable: Awaitable[_T], what: str) -> _T:
        """Run ``awaitable`` (a coroutine of the asyncio side) in the loop: one hop. A
        failure that is not a :class:`StreamError` already becomes one, chained.
        (Protected from a ``KeyboardInterrupt`` raised halfway through handing the
        coroutine to the loop: it comes out of the wait instead, which cancels the
        coroutine's asyncio task.)"""
        if self._closed:
            if hasattr(awaitable, "close"):
                awaitable.close()
            raise StreamError(f"{what}: the JetStream engine is closed (its block has ended)")
        try:
            result: _T = await self._loop.run_aio_coroutine(awaitable)
        except StreamError:
            raise
        except TimeoutError as error:
            raise StreamError(
                f"{what}: JetStream did not answer within {self._timeout:g} s (is NATS "
                f"reachable? the client reconnects by itself); the outcome is unknown"
            ) from error
        except Exception as error:
            raise StreamError(f"{what} failed: {describe(error)}") from error
        return result

    @trio.lowlevel.enable_ki_protection  # (not halfway through waking the settler)
    def _settle(self, reply: str, payload: bytes, puller: Puller) -> None:
        if self._closed:
            raise StreamError(
                "the JetStream engine is closed (its block has ended): the event was not "
                "settled, so it is delivered again after its ack_wait"
            )
        flusher = self._flusher
        if flusher is not None and flusher.done():  # (a bug: say so where it is seen)
            crash = None if flusher.cancelled() else flusher.exception()
            raise StreamError(
                f"the JetStream engine's settling task ended ({crash!r}): the event was "
                "not settled, so it is delivered again after its ack_wait"
            ) from crash
        self._settler.put(reply, payload, puller)

    async def _puller(self, stream: str, durable: str) -> Puller:
        """(asyncio side) The inbox of consumer ``durable`` of ``stream``, made (and
        subscribed) at its first use."""
        puller = self._pullers.get((stream, durable))
        if puller is None:
            puller = Puller(self._nc, stream, durable)
            self._pullers[stream, durable] = puller
            await puller.subscribe()
        return puller

    async def _start(self) -> None:
        """(asyncio side) Subscribe to the replies' inbox, start the settler."""
        import asyncio

        await self._nc.subscribe(self._replies.prefix + "*", cb=self._replies.on_reply)
        self._flusher = asyncio.get_running_loop().create_task(self._settler.run())

    async def _stop(self) -> None:
        """(asyncio side) Send the settlements still queued, then stop the settler and
        close the connection (what nats-py still buffers is flushed first)."""
        import asyncio

        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            await asyncio.wait([flusher])
        try:
            await self._settler.send()
        finally:
            await self._nc.close()

    @trio.lowlevel.enable_ki_protection
    async def close(self) -> None:
        """Close the connection, after sending the settlements still queued (shielded,
        at most 5 s). Idempotent; :func:`open_jetstream` calls it when its block ends.
        Events fetched and not settled are delivered again after their ``ack_wait``.
        Called in the main task, a ``KeyboardInterrupt`` cuts the close short and comes
        out of it (what was not sent yet is not sent)."""
        if self._closed:
            return
        self._closed = True
        with trio.CancelScope(shield=True) as shield:
            shield.deadline = trio.current_time() + _CLOSE_TIMEOUT
            try:
                await self._loop.run_aio_coroutine(self._stop())
            except Exception as error:  # (it is going anyway)
                _log.debug("JetStream: closing the connection: %r", error)

    async def _consumer_info(self, stream: str, durable: str) -> Any:
        """(asyncio side) The server's consumer info, or :class:`StreamNotFound`."""
        from nats.js.errors import NotFoundError

        try:
            return await self._jsm.consumer_info(stream, durable)
        except NotFoundError as error:
            raise self._not_found(error, stream, durable) from error

    @staticmethod
    def _not_found(error: Exception, stream: str, durable: str | None = None) -> StreamError:
        code = getattr(error, "err_code", None)
        if code == _STREAM_NOT_FOUND or durable is None:
            return StreamNotFound(f"no stream named {stream!r}; add it with add_stream")
        if code == _CONSUMER_NOT_FOUND:
            return StreamNotFound(
                f"stream {stream!r} has no durable consumer {durable!r} (never created, or "
                "deleted); engine.consumer(stream, config) creates it"
            )
        return StreamError(f"stream {stream!r}: {describe(error)}")

    # -- streams ----------------------------------------------------------------------------

    async def add_stream(self, config: StreamConfig) -> None:
        if not isinstance(config, StreamConfig):
            raise TypeError(f"add_stream takes an actors.streams.StreamConfig, got {config!r}")
        wanted = stream_config(config)

        async def add() -> None:
            from nats.js.errors import APIError

            await self._settler.send()
            try:
                await self._jsm.add_stream(wanted)
            except APIError as error:
                if error.err_code != _STREAM_NAME_IN_USE:
                    raise
                await self._jsm.update_stream(wanted)

        try:
            await self._aio(add(), f"add_stream({config.name!r})")
        except StreamError as error:
            cause = error.__cause__
            if cause is None or getattr(cause, "err_code", None) is None:
                raise
            raise StreamError(
                f"JetStream refused stream {config.name!r} (subjects "
                f"{', '.join(config.subjects)}): {describe(cause)}"
            ) from cause

    async def delete_stream(self, name: str) -> None:
        async def delete() -> None:
            from nats.js.errors import NotFoundError

            try:
                await self._jsm.delete_stream(name)
            except NotFoundError as error:
                raise self._not_found(error, name) from error
            for key in [key for key in self._pullers if key[0] == name]:
                await self._pullers.pop(key).unsubscribe()

        await self._aio(delete(), f"delete_stream({name!r})")

    async def stream_state(self, name: str) -> StreamState:
        async def state() -> StreamState:
            from nats.js.errors import NotFoundError

            try:
                info = await self._jsm.stream_info(name)
                names: list[str] = []
                while len(names) < (info.state.consumer_count or 0):  # (pages of 256)
                    page = await self._jsm.consumers_info(name, offset=len(names))
                    if not page:
                        break
                    names.extend(consumer.name for consumer in page)
            except NotFoundError as error:
                raise self._not_found(error, name) from error
            state = info.state
            last = int(state.last_seq or 0)
            messages = int(state.messages or 0)
            first = int(state.first_seq or 0) if messages else last + 1
            return StreamState(name, messages, first, last, tuple(sorted(names)))

        return await self._aio(state(), f"stream_state({name!r})")

    async def get(self, stream: str, seq: int) -> StoredEvent | None:
        if isinstance(seq, bool) or not isinstance(seq, int):
            raise TypeError(f"get takes an int stream sequence, got {seq!r}")

        async def get() -> Any:
            from nats.js.errors import NotFoundError

            try:
                return await self._jsm.get_msg(stream, seq)
            except NotFoundError as error:
                if error.err_code == _MESSAGE_NOT_FOUND:
                    return None
                raise self._not_found(error, stream) from error

        msg = await self._aio(get(), f"get({stream!r}, {seq!r})")
        if msg is None:
            return None
        when = msg.time.timestamp() if msg.time is not None else 0.0
        headers = headers_of(msg)
        return StoredEvent(
            msg.subject, msg.data or b"", headers, int(msg.seq), when, headers.get(MSG_ID)
        )

    # -- publishing --------------------------------------------------------------------------

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: Mapping[str, str] | None = None,
        msg_id: str | None = None,
    ) -> PubAck:
        """See :meth:`StreamEngine.publish`. One hop. :class:`StreamError` (outcome
        unknown) if JetStream does not acknowledge it within the engine's ``timeout``
        (during an outage nats-py keeps the event and may still send it when it
        reconnects: publish it again with the same ``msg_id`` to be sure)."""
        return (await self.publish_many([(subject, data, headers, msg_id)]))[0]

    async def publish_many(self, events: Sequence[Event]) -> list[PubAck]:
        """See :meth:`StreamEngine.publish_many`: every event in flight at once, their
        acknowledgements awaited together (one hop for the batch), at most the engine's
        ``timeout``. Raises for the first event (in order) refused or not acknowledged."""
        batch = [checked(*event) for event in events]
        if not batch:
            return []
        waiter = await self._aio(self._publish(batch), "publish")
        acks: list[PubAck] = []
        for index, msg in enumerate(waiter.answers):
            subject = batch[index][0]
            if msg is None:
                raise StreamError(
                    f"publish to {subject!r}: JetStream did not acknowledge it within "
                    f"{self._timeout:g} s (event {index + 1} of {len(batch)}; is NATS "
                    "reachable?): its outcome is unknown; publish it again with the same "
                    "msg_id to be sure (a duplicate is dropped)"
                )
            acks.append(pub_ack(subject, msg))
        return acks

    async def _publish(self, batch: list[tuple[str, bytes, dict[str, str] | None]]) -> Waiter:
        """(asyncio side) Publish every event with a reply subject of its own, then
        wait (at most ``timeout``) for all the acknowledgements."""
        await self._settler.send()
        replies = self._replies
        publish = self._nc.publish
        waiter = Waiter(len(batch))
        try:
            for index, (subject, data, headers) in enumerate(batch):
                try:
                    await publish(
                        subject, data, reply=replies.subject(waiter, index), headers=headers
                    )
                except Exception as error:
                    raise StreamError(
                        f"publish to {subject!r} ({len(data)} bytes; event {index + 1} of "
                        f"{len(batch)}, those before it may be stored) failed: {error!r}"
                    ) from error
            await waiter.wait(self._timeout)
        finally:
            replies.forget(waiter)
        return waiter

    # -- consumers ---------------------------------------------------------------------------

    async def consumer(self, stream: str, config: ConsumerConfig) -> JetStreamConsumer:
        """See :meth:`StreamEngine.consumer`. An existing durable consumer keeps its
        position and deliver policy; its ``filter``, ``ack_wait``, ``max_deliver``,
        ``backoff`` and ``max_ack_pending`` are updated to ``config``'s
        (:class:`StreamError` if JetStream refuses the change)."""
        if not isinstance(config, ConsumerConfig):
            raise TypeError(f"consumer takes an actors.streams.ConsumerConfig, got {config!r}")
        wanted = consumer_config(config)
        durable = config.durable

        async def bind() -> None:
            import dataclasses

            from nats.js.errors import BadRequestError, NotFoundError

            await self._settler.send()
            try:
                info = await self._jsm.consumer_info(stream, durable)
            except NotFoundError as error:
                if error.err_code != _CONSUMER_NOT_FOUND:
                    raise self._not_found(error, stream, durable) from error
                try:
                    await self._jsm.add_consumer(stream, wanted)
                    info = None
                except BadRequestError as refused:  # (or made meanwhile by another member)
                    try:
                        info = await self._jsm.consumer_info(stream, durable)
                    except NotFoundError:
                        raise refused from None
            if info is not None:
                update = dataclasses.replace(
                    info.config,
                    filter_subject=wanted.filter_subject,
                    ack_wait=wanted.ack_wait,
                    max_deliver=wanted.max_deliver,
                    backoff=wanted.backoff,
                    max_ack_pending=wanted.max_ack_pending,
                )
                await self._jsm.add_consumer(stream, update)
            await self._puller(stream, durable)

        await self._aio(bind(), f"creating or updating consumer {durable!r} of stream {stream!r}")
        return JetStreamConsumer(self, stream, config)

    async def delete_consumer(self, stream: str, durable: str) -> None:
        """See :meth:`StreamEngine.delete_consumer` (:class:`StreamNotFound` if there
        is no such stream or consumer)."""

        async def delete() -> None:
            from nats.js.errors import NotFoundError

            await self._settler.send()
            try:
                await self._jsm.delete_consumer(stream, durable)
            except NotFoundError as error:
                raise self._not_found(error, stream, durable) from error
            finally:
                puller = self._pullers.pop((stream, durable), None)
                if puller is not None:
                    await puller.unsubscribe()

        await self._aio(delete(), f"delete_consumer({stream!r}, {durable!r})")
