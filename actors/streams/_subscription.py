"""One actor's durable subscription: the task that fetches events from its consumer
and asks the actor to handle them, one :class:`Subscription` per member of a consumer
group.

How a subscription runs (``docs/streams.md`` tells it for users):

- **Fetch.** It fetches at most ``max_in_flight`` minus the events it holds, so that
  no more than ``max_in_flight`` events of it are ever unsettled (queued in the actor's
  mailbox or being handled): flow control. It fetches again once it holds no more than
  half of ``max_in_flight``, so that a fetch brings several events.
- **Order.** Each event is asked of the actor by a task of its own (so that several
  can be in flight), started with ``nursery.start``: the task enqueues its question
  before the next one starts (``ask`` enqueues without yielding once the mailbox has
  room, and the task waits for that room *before* it reports itself started), so the
  questions enter the mailbox in fetch order even though trio does not run new tasks
  in the order they were spawned.
- **Settle.** The handler returning acknowledges the event; raising (or not answering
  within ``ack_wait``: :class:`~actors.AskTimeout`) naks it with the backoff delay of
  its attempt, or parks it in the dead-letter stream after ``max_deliver`` attempts.
  An undecodable event, or one that comes back after its last attempt was never
  settled, is parked at once. While the subscription holds an event it tells the
  engine every ``ack_wait / 2`` that the event is in progress, so the engine redelivers
  it only if this process goes away.
- **End.** The actor stopping ends the subscription (the event it was asked about is
  nakked, for the group's other members). A failing engine is retried for
  ``retry_for`` seconds, then the subscription fails and ``open_streams`` raises
  :class:`SubscriptionFailed`.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any, Final, Protocol, final

import attrs
import trio

from .._errors import ActorDead
from .._public import NoPublicConstructor
from .._sender import no_sender
from ._dead_letters import StreamDeadLetterReason
from ._engine import Consumer, Received, StreamError, StreamNotFound

if TYPE_CHECKING:
    from .._ref import ActorRef

log: Final = logging.getLogger("actors.streams")

FETCH_WAIT: Final = 5.0
"""Seconds one fetch waits for a first event (then the loop looks again)."""
RETRY_FIRST: Final = 0.1
RETRY_MAX: Final = 5.0


class SubscriptionFailed(StreamError):
    """A durable subscription could not go on (its engine kept failing for
    ``retry_for`` seconds, its stream was deleted, or the runtime hit a bug): raised
    from the ``async with open_streams(...)`` block, whose body was cancelled, with the
    cause chained. Events it held and had not settled are delivered again later."""


@attrs.frozen
class StreamEvent:
    """What a subscribed actor is asked to handle: one ``event`` of a durable stream.

    ``subject`` is the topic it was published on, ``stream`` and ``seq`` where it is
    stored (``seq`` does not change when it is delivered again), ``delivered`` which
    attempt this is (1 the first time), ``timestamp`` when the stream stored it
    (``time.time()`` seconds) and ``durable`` the consumer group it was delivered to.
    ``msg_id`` is the message id it was published with (``None``: none): the outbox
    publishes with ``"<persistence_id>/<seq>"``, a key for an idempotent handler.

    Returning from the handler acknowledges the event; raising refuses it (it comes
    back after the backoff delay, or goes to the dead-letter stream after
    ``max_deliver`` attempts). ``self.context.reply_later()`` defers the verdict to the
    handle's ``reply`` (acknowledge) or ``fail`` (refuse)."""

    event: Any
    subject: str
    stream: str
    seq: int
    delivered: int
    timestamp: float
    durable: str
    msg_id: str | None = None


@attrs.frozen
class SubscriptionStats:
    """A subscription's figures: ``delivered`` events asked of the actor (again after
    a redelivery), ``acked`` handled, ``retried`` refused and to come again,
    ``parked`` moved to the dead-letter stream, ``in_flight`` held now (fetched and not
    settled: at most ``max_in_flight``)."""

    delivered: int = 0
    acked: int = 0
    retried: int = 0
    parked: int = 0
    in_flight: int = 0


class _Owner(Protocol):
    """What a subscription needs of its :class:`Streams`."""

    def _decode(self, data: bytes, headers: Any) -> Any: ...

    async def _park(
        self,
        received: Received,
        durable: str,
        reason: StreamDeadLetterReason,
        error: BaseException | None,
        detail: str | None,
    ) -> None: ...

    def _subscription_failed(self, sub: Subscription, error: BaseException) -> None: ...

    def _subscription_ended(self, sub: Subscription) -> None: ...


async def _wait_for_room(ref: ActorRef) -> None:
    """Wait until the actor's bounded mailbox has a place for this task (which keeps
    it if nothing yields before the ask). Nothing to wait for in an unbounded mailbox,
    or for an actor in another process (its ask sends without waiting)."""
    try:
        cell = ref._resolve()
    except ActorDead:
        return  # (the ask says so)
    wait = getattr(cell, "_wait_for_room", None)
    if wait is not None:
        await wait()


def _target_is_dead(ref: ActorRef, error: ActorDead) -> bool:
    """Whether ``error`` (raised by an ask of ``ref``) says that ``ref`` itself is gone,
    rather than being an ``ActorDead`` its handler raised about another actor."""
    return error.path == ref.path


@final
class Subscription(metaclass=NoPublicConstructor):
    """One actor's durable subscription, made by :meth:`Streams.subscribe
    <actors.streams.Streams.subscribe>`: a member of the consumer group ``durable`` of
    ``stream``, delivering the events whose subjects match ``pattern`` to ``ref``.

    It runs until :meth:`Streams.unsubscribe <actors.streams.Streams.unsubscribe>`,
    until the actor stops, or until its ``open_streams`` block ends; then ``active``
    is ``False`` and ``ended`` says why."""

    def __init__(
        self,
        owner: _Owner,
        consumer: Consumer,
        ref: ActorRef,
        pattern: str,
        *,
        max_in_flight: int,
        ack_wait: float,
        max_deliver: int | None,
        backoff: tuple[float, ...],
        retry_for: float,
    ) -> None:
        self._owner = owner
        self._consumer = consumer
        self.ref = ref
        self.pattern = pattern
        self.stream = consumer.stream
        self.durable = consumer.config.durable
        self.max_in_flight = max_in_flight
        self.ack_wait = ack_wait
        self.max_deliver = max_deliver
        self.backoff = backoff
        self._retry_for = retry_for
        self._held: dict[int, Received] = {}
        self._settled = trio.lowlevel.ParkingLot()
        self._scope = trio.CancelScope()
        self._waiting: trio.CancelScope | None = None
        self._done = trio.Event()
        self._ended: str | None = None
        self._delivered = self._acked = self._retried = self._parked = 0

    def __repr__(self) -> str:
        state = "active" if self.active else f"ended: {self._ended}"
        return (
            f"<Subscription of {self.ref.path} to {self.pattern!r} "
            f"(durable {self.durable!r} on {self.stream}), {state}>"
        )

    @property
    def consumer(self) -> Consumer:
        """The engine's handle on the group's durable consumer: ``await
        sub.consumer.info()`` says how many events wait (the group's lag) and how many
        are unacknowledged."""
        return self._consumer

    @property
    def active(self) -> bool:
        """Whether it still fetches and delivers events."""
        return self._ended is None and not self._done.is_set()

    @property
    def ended(self) -> str | None:
        """``None`` while it runs; then why it ended: ``"unsubscribed"``, ``"the actor
        stopped"``, ``"open_streams ended"`` or ``"failed: ..."``."""
        if self._ended is None and self._done.is_set():
            return "open_streams ended"
        return self._ended

    def stats(self) -> SubscriptionStats:
        """Its figures now (see :class:`SubscriptionStats`)."""
        return SubscriptionStats(
            self._delivered, self._acked, self._retried, self._parked, len(self._held)
        )

    async def wait_ended(self) -> None:
        """Wait until it has ended and settled what it could (see :attr:`ended`)."""
        await self._done.wait()

    # -- the runtime's side --------------------------------------------------------------

    def _end(self, why: str) -> None:
        """Stop fetching; the events held are still settled as their asks finish."""
        if self._ended is None:
            self._ended = why
        if self._waiting is not None:
            self._waiting.cancel()

    def _interruptible(self) -> trio.CancelScope:
        """A scope for one wait of the fetch loop, cancelled by :meth:`_end`."""
        scope = self._waiting = trio.CancelScope()
        if self._ended is not None:
            scope.cancel()
        return scope

    async def _stop(self) -> None:
        """Unsubscribe: stop fetching and wait for the events held to be settled; if
        cancelled meanwhile, stop at once (those left are delivered again later)."""
        self._end("unsubscribed")
        try:
            await self._done.wait()
        except BaseException:
            self._scope.cancel()
            raise

    async def _run(self, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            with no_sender(), self._scope:
                async with trio.open_nursery() as keepalive:
                    keepalive.start_soon(self._heartbeats, name=f"{self!r} heartbeats")
                    task_status.started()
                    async with trio.open_nursery() as deliveries:
                        await self._fetch_loop(deliveries)
                    keepalive.cancel_scope.cancel()
        finally:
            self._done.set()
            self._owner._subscription_ended(self)

    def _fail(self, error: SubscriptionFailed) -> None:
        """Give up: stop everything (the events held come back later) and have
        ``open_streams`` raise ``error``."""
        if self._ended is None or not self._ended.startswith("failed"):
            self._ended = f"failed: {error}"
            self._scope.cancel()
            self._owner._subscription_failed(self, error)

    def _actor_gone(self) -> bool:
        try:
            return self.ref._resolve().is_dead()
        except ActorDead:
            return True

    def _describe(self) -> str:
        return (
            f"the durable subscription of {self.ref.path} to {self.pattern!r} (group "
            f"{self.durable!r} of stream {self.stream})"
        )

    async def _fetch_loop(self, deliveries: trio.Nursery) -> None:
        try:
            while self._ended is None:
                with self._interruptible():
                    # Fetch again once half the window is free (one fetch per event
                    # would cost an engine round trip per event).
                    while len(self._held) > self.max_in_flight // 2:
                        await self._settled.park()
                if self._ended is not None:
                    return
                if self._actor_gone():
                    self._end("the actor stopped")
                    return
                batch = await self._fetch()
                for received in batch:
                    await self._dispatch(received, deliveries)
        except StreamNotFound as error:
            failed = SubscriptionFailed(f"{self._describe()} cannot go on: {error}")
            failed.__cause__ = error
            self._fail(failed)
        except SubscriptionFailed as error:
            self._fail(error)
        except Exception as error:
            failed = SubscriptionFailed(f"{self._describe()} failed: {error!r}")
            failed.__cause__ = error
            self._fail(failed)

    async def _fetch(self) -> list[Received]:
        """The next events (``[]`` if none came, or :meth:`_end` interrupted the wait),
        retrying a failing engine for ``retry_for`` seconds."""
        failing_since: float | None = None
        pause = RETRY_FIRST
        while True:
            try:
                with self._interruptible():
                    return await self._consumer.fetch(
                        self.max_in_flight - len(self._held), FETCH_WAIT
                    )
                return []
            except StreamNotFound:
                raise
            except StreamError as error:
                now = trio.current_time()
                if failing_since is None:
                    failing_since = now
                    log.warning(
                        "%s: the engine failed (%s); retrying for up to %g s",
                        self._describe(),
                        error,
                        self._retry_for,
                        extra={"actor_path": self.ref.path, "message_type": None},
                    )
                elif now - failing_since >= self._retry_for:
                    raise SubscriptionFailed(
                        f"{self._describe()} gave up: its engine kept failing for "
                        f"{now - failing_since:g} s (retry_for={self._retry_for:g}); last "
                        f"error: {error}"
                    ) from error
                with self._interruptible():
                    await trio.sleep(pause)
                if self._ended is not None:
                    return []
                pause = min(pause * 2, RETRY_MAX)

    async def _dispatch(self, received: Received, deliveries: trio.Nursery) -> None:
        """Hand ``received`` to a delivery task (or park it), in fetch order."""
        if self.max_deliver is not None and received.delivered > self.max_deliver:
            await self._park(
                received,
                StreamDeadLetterReason.UNACKNOWLEDGED,
                None,
                f"delivered {received.delivered} times, its last allowed attempt "
                f"(max_deliver={self.max_deliver}) never settled: the subscriber stopped "
                "or lost the engine while it held the event",
            )
            return
        try:
            event = self._owner._decode(received.data, received.headers)
        except Exception as error:
            await self._park(received, StreamDeadLetterReason.UNDECODABLE, error, None)
            return
        if self._ended is not None:  # (unsubscribed, or the actor stopped, meanwhile)
            await self._settle(received.nak, None)  # at once, for the others
            return
        message = StreamEvent(
            event,
            received.subject,
            received.stream,
            received.seq,
            received.delivered,
            received.timestamp,
            self.durable,
            received.headers.get("Nats-Msg-Id"),
        )
        key = id(received)
        self._held[key] = received
        try:
            await deliveries.start(self._deliver, key, received, message)
        except BaseException:
            self._held.pop(key, None)
            raise

    async def _deliver(
        self,
        key: int,
        received: Received,
        message: StreamEvent,
        *,
        task_status: trio.TaskStatus[None],
    ) -> None:
        try:
            await _wait_for_room(self.ref)
            # Nothing may yield from here until the ask has enqueued its question.
            task_status.started()
            self._delivered += 1
            try:
                await self.ref.ask(message, timeout=self.ack_wait)
            except ActorDead as error:
                if not _target_is_dead(self.ref, error):
                    await self._refused(received, error)
                else:
                    self._end("the actor stopped")
                    await self._settle(received.nak, None)  # at once, for the others
            except Exception as error:
                await self._refused(received, error)
            else:
                if await self._settle(received.ack):
                    self._acked += 1
        except Exception as error:  # (a bug of the runtime: say so, do not hide it)
            failed = SubscriptionFailed(f"{self._describe()} failed: {error!r}")
            failed.__cause__ = error
            self._fail(failed)
        finally:
            self._held.pop(key, None)
            self._settled.unpark_all()

    async def _refused(self, received: Received, error: BaseException) -> None:
        if self.max_deliver is not None and received.delivered >= self.max_deliver:
            await self._park(received, StreamDeadLetterReason.FAILED, error, None)
        elif await self._settle(received.nak, self._delay(received.delivered)):
            self._retried += 1

    def _delay(self, attempt: int) -> float | None:
        if not self.backoff:
            return None
        return self.backoff[min(attempt, len(self.backoff)) - 1]

    async def _park(
        self,
        received: Received,
        reason: StreamDeadLetterReason,
        error: BaseException | None,
        detail: str | None,
    ) -> None:
        try:
            await self._owner._park(received, self.durable, reason, error, detail)
        except StreamError as failure:
            log.warning(
                "%s could not park event %s of %s in the dead-letter stream (%s); it will "
                "be delivered again and parked then",
                self._describe(),
                received.seq,
                received.stream,
                failure,
                extra={"actor_path": self.ref.path, "message_type": None},
            )
            await self._settle(received.nak, self._delay(received.delivered))
            return
        if await self._settle(received.term):
            self._parked += 1

    async def _settle(self, how: Any, *args: Any) -> bool:
        """Ack, nak or term; ``False`` if the engine failed (then the event comes back
        after ``ack_wait``: at least once)."""
        try:
            await how(*args)
        except StreamError as error:
            log.warning(
                "%s could not %s an event (%s); it will be delivered again",
                self._describe(),
                how.__name__,
                error,
                extra={"actor_path": self.ref.path, "message_type": None},
            )
            return False
        return True

    async def _heartbeats(self) -> None:
        """Keep the events held from being redelivered while the actor has them."""
        interval = self.ack_wait / 2
        if not math.isfinite(interval):
            return
        while True:
            await trio.sleep(interval)
            for received in list(self._held.values()):
                try:
                    await received.in_progress()
                except StreamError as error:
                    log.debug(
                        "%s: in_progress failed (%s)",
                        self._describe(),
                        error,
                        extra={"actor_path": self.ref.path, "message_type": None},
                    )
