"""A projection: :class:`Projection` (what it reads, what it does, how it retries) and
:class:`ProjectionActor`, the actor that runs it.

The actor works one batch per message: a step reads up to ``batch_size`` events after
its offset, hands them to the handler, which commits them with the offset (meanwhile
the step reads the next batch, for the next step), then sends itself the next step (so
that questions such as :class:`GetStatus` are answered between batches). A step that
finds nothing starts a wait, in a task the actor owns, that ends at the source's next
commit or after ``poll_interval``, whichever comes first, and sends the next step. A
step that fails closes the source and the handler, and a timer sends the next step
after the backoff delay; that step opens them again from the stored offset. Each of
these triggers carries a token, and only the newest one counts: a stale wake-up or
timer does nothing.
"""

from __future__ import annotations

import itertools
import logging
import random
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs
import trio

from supervision import Backoff, BackoffState

from .._actor import Actor
from ._handlers import HandlerSession, ProjectionHandler
from ._model import (
    Envelope,
    GetStatus,
    ProjectionFailed,
    ProjectionState,
    ProjectionStatus,
    Rebuild,
    WaitCaughtUp,
    describe,
)
from ._source import Item, ProjectionSource, SourceSession, Undecodable

if TYPE_CHECKING:
    from .._context import ActorContext
    from .._ref import ActorRef
    from .._reply_later import ReplyHandle
    from .._system import ActorSystem

_log: Final = logging.getLogger("actors.projection")
_tokens = itertools.count(1)
_RETRY: Final = "projection-retry"

DEFAULT_BACKOFF: Final = Backoff(min_delay=0.5, max_delay=30.0, jitter=0.2)
"""A projection's backoff unless told otherwise: 0.5 s, doubling up to 30 s, +0-20 %."""


def _name(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{attribute.name} must be a non-empty str, got {value!r}")


def _instance(kind: type, names: str) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if not isinstance(value, kind):
            raise TypeError(f"{attribute.name} must be {names}, got {type(value).__name__}")

    return check


def _positive_int(_: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an int >= 1, got {value!r}")


def _positive(_: object, attribute: attrs.Attribute[float], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attribute.name} must be a number of seconds > 0, got {value!r}")


def _policy(_: object, attribute: attrs.Attribute[str], value: object) -> None:
    if value not in ("fail", "skip"):
        raise ValueError(f'on_undecodable must be "fail" or "skip", got {value!r}')


@attrs.frozen
class Projection:
    """A projection: it reads the events of ``source`` in order and feeds them to
    ``handler`` in batches, keeping its offset (the position of the last event whose
    effect is committed) under ``name`` and ``key`` (default: the source's, the tag
    of a :class:`JournalSource`). Start it with :meth:`spawn`, which runs it as a
    :class:`ProjectionActor`.

    ``batch_size``: at most this many events per call of the handler (a batch holds
    what the source has at the time, up to that). ``poll_interval``: seconds between
    reads once caught up (a journal source also reads as soon as a write through the
    same journal object commits). ``backoff``: after a failure (of the handler, the
    source or the offset store), the projection waits
    ``min(max_delay, min_delay * 2**n) * (1 + random() * jitter)`` seconds (n counts
    the consecutive failures, back to 0 after a batch succeeds; ``reset_after`` is not
    used), then starts again from the stored offset; past ``max_restarts``
    consecutive failures, if set, it gives up: the actor fails with
    :class:`ProjectionFailed` and its supervisor decides. ``seed`` makes the jitter
    reproducible (default: from the system's ``Settings.seed`` if set).
    ``on_undecodable``: ``"fail"`` (the default) stops the batch before an event that
    cannot be decoded and fails, backing off and retrying, until the event can be
    decoded; ``"skip"`` leaves it out (counted in the status, logged as a WARNING) and
    goes on.

    Bad arguments raise ``TypeError`` or ``ValueError`` here, naming the argument.
    """

    name: str = attrs.field(validator=_name)
    source: ProjectionSource = attrs.field(
        validator=_instance(ProjectionSource, "a ProjectionSource (JournalSource, StreamSource)")
    )
    handler: ProjectionHandler = attrs.field(
        validator=_instance(
            ProjectionHandler,
            "a ProjectionHandler (AtLeastOnce, SqliteExactlyOnce, PostgresExactlyOnce)",
        )
    )
    key: str | None = attrs.field(default=None, kw_only=True)
    batch_size: int = attrs.field(default=1000, kw_only=True, validator=_positive_int)
    poll_interval: float = attrs.field(default=1.0, kw_only=True, validator=_positive)
    backoff: Backoff = attrs.field(
        default=DEFAULT_BACKOFF, kw_only=True, validator=_instance(Backoff, "a supervision.Backoff")
    )
    on_undecodable: Literal["fail", "skip"] = attrs.field(
        default="fail", kw_only=True, validator=_policy
    )
    seed: int | None = attrs.field(default=None, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if self.key is not None and not isinstance(self.key, str):
            raise TypeError(f"key must be a str or None, got {type(self.key).__name__}")

    @property
    def resolved_key(self) -> str:
        """The key the offset is stored under: ``key``, or the source's."""
        return self.source._default_key() if self.key is None else self.key

    def spawn(self, parent: ActorSystem | ActorContext, *, name: str | None = None) -> ActorRef:
        """Run this projection as a :class:`ProjectionActor`, child of ``parent`` (an
        actor system: a top-level actor; an actor's context: its child, supervised by
        that actor's strategy), named ``name`` (default: the projection's name, which
        must then be a valid actor name). Returns its ref at once; the projection
        starts reading right away."""
        return parent.spawn(ProjectionActor, self, name=self.name if name is None else name)


@attrs.frozen
class _Step:
    token: int


class ProjectionActor(Actor):
    """The actor that runs a :class:`Projection` (see the module documentation of
    :mod:`actors.projection` and ``docs/projections.md``).

    It answers :class:`GetStatus` (a :class:`ProjectionStatus`), :class:`Rebuild` and
    :class:`WaitCaughtUp`. Failures of its handler or source are its own business: it
    backs off and retries, logging each failure on the ``actors.projection`` logger
    (WARNING; ERROR when it gives up), and stays responsive meanwhile. It fails, for
    its supervisor to decide, only when it gives up (:class:`ProjectionFailed`) or on a
    bug of its own. Stopping it waits for a batch in flight to commit or roll back; a
    restart (or a new actor for the same projection) starts from the stored offset.
    """

    def __init__(self, projection: Projection) -> None:
        if not isinstance(projection, Projection):
            raise TypeError(f"ProjectionActor takes a Projection, got {type(projection).__name__}")
        self._projection = projection
        self._key = projection.resolved_key
        system = self.context.system
        seed: Any = projection.seed
        if seed is None and system.settings.seed is not None:
            seed = f"{system.settings.seed}/{projection.name}/{self._key}"
        self._backoff = BackoffState(projection.backoff, random.Random(seed))
        self._source: SourceSession = projection.source._session(
            system, projection.name, self._key, projection.batch_size
        )
        self._handler: HandlerSession | None = None
        self._state: ProjectionState = "starting"
        self._offset = 0
        self._handled = 0
        self._skipped = 0
        self._failures = 0
        self._total_failures = 0
        self._last_error: str | None = None
        self._retry_at: float | None = None
        self._token = 0
        self._wait_scope: trio.CancelScope | None = None
        self._reads = 0
        self._waiters: list[tuple[ReplyHandle, int]] = []
        self._ahead: list[Item] = []
        """A batch read while the handler committed the one before (see :meth:`_commit`)."""

    # -- lifecycle -------------------------------------------------------------------------

    def pre_start(self) -> None:
        self._step_now()

    async def post_stop(self) -> None:
        self._cancel_wait()
        await self._close()

    def _describe_details(self) -> dict[str, object]:
        return {
            "projection": self._projection.name,
            "key": self._key,
            "state": self._state,
            "offset": self._offset,
        }

    # -- messages --------------------------------------------------------------------------

    async def receive(self, message: Any) -> Any:
        if type(message) is _Step:
            if message.token == self._token:
                await self._step()
            return None
        if isinstance(message, GetStatus):
            return await self._status()
        if isinstance(message, Rebuild):
            await self._rebuild()
            return None
        if isinstance(message, WaitCaughtUp):
            self._waiters.append((self.context.reply_later(), self._reads))
            if self._state == "idle":
                self._step_now()
            return None
        self.unhandled(message)
        return None

    # -- the steps -------------------------------------------------------------------------

    async def _step(self) -> None:
        self._cancel_wait()
        try:
            if self._handler is None:
                await self._open()
            items, self._ahead = self._ahead, []
            if not items:
                self._reads += 1
                read = self._reads
                items = await self._source.read(self._projection.batch_size)
                if not items:
                    self._state = "idle"
                    await self._caught_up(read)
                    self._wait_for_more()
                    return
            self._state = "running"
            envelopes, last, skipped, bad = self._batch(items)
            ahead: list[Item] = []
            ahead_error: Exception | None = None
            if envelopes or skipped:
                ahead, ahead_error = await self._commit(envelopes, last, read_ahead=bad is None)
                self._offset = last
                self._handled += len(envelopes)
                self._failures = 0
                self._backoff.consecutive = 0
                for undecodable in skipped:
                    self._skipped += 1
                    _log.warning("%s; skipped (on_undecodable='skip')", undecodable.error)
                await self._source.settle(last)
            if bad is not None:
                raise bad
            if ahead_error is not None:
                raise ahead_error
            self._ahead = ahead
        except Exception as error:
            await self._failed(error)
            return
        self._step_now()

    async def _commit(
        self, envelopes: list[Envelope], last: int, *, read_ahead: bool
    ) -> tuple[list[Item], Exception | None]:
        """Have the handler apply ``envelopes`` and store ``last``; meanwhile, if
        ``read_ahead``, read the next batch (the handler's transaction, in its thread,
        overlaps the reading and decoding). Returns what was read ahead and the error
        that reading raised; raises the handler's error (what was read ahead is then
        dropped: the source starts again from the stored offset)."""
        handler = self._handler
        assert handler is not None
        if not read_ahead:
            await handler.process(envelopes, last)
            return [], None
        failed: list[Exception] = []

        async def process() -> None:
            try:
                await handler.process(envelopes, last)
            except Exception as error:
                failed.append(error)

        ahead: list[Item] = []
        ahead_error: Exception | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(process)
            try:
                ahead = await self._source.read(self._projection.batch_size)
            except Exception as error:
                ahead_error = error
        if failed:
            raise failed[0]
        return ahead, ahead_error

    def _batch(
        self, items: list[Envelope | Undecodable]
    ) -> tuple[list[Envelope], int, list[Undecodable], Exception | None]:
        """The envelopes of ``items``, the offset of the last item they cover, the items
        skipped, and the error to fail with after committing them: with
        ``on_undecodable="fail"``, the batch ends before the first undecodable item,
        whose error fails the step once the events before it are committed."""
        envelopes: list[Envelope] = []
        skipped: list[Undecodable] = []
        last = self._offset
        skip = self._projection.on_undecodable == "skip"
        for item in items:
            if type(item) is Undecodable:
                if not skip:
                    return envelopes, last, skipped, item.error
                skipped.append(item)
            else:
                envelopes.append(item)  # type: ignore[arg-type]
            last = item.offset
        return envelopes, last, skipped, None

    async def _open(self) -> None:
        """Open the handler (reading the stored offset) and start the source after it."""
        handler = self._projection.handler._session(self._projection.name, self._key)
        try:
            offset = await handler.open()
            await self._source.start(offset)
        except BaseException:
            with trio.CancelScope(shield=True), trio.move_on_after(10):
                await handler.close()
            raise
        self._handler = handler
        self._offset = offset
        self._state = "running"

    async def _close(self) -> None:
        """Close the handler and stop the source (shielded, bounded: it may run while
        the actor is being cancelled)."""
        handler, self._handler = self._handler, None
        with trio.CancelScope(shield=True), trio.move_on_after(10):
            await self._source.stop()
            if handler is not None:
                await handler.close()

    async def _failed(self, error: Exception) -> None:
        """Count and report ``error``, close everything, and schedule the retry after
        the backoff delay; raise :class:`ProjectionFailed` if the backoff gives up."""
        self._failures += 1
        self._total_failures += 1
        self._last_error = describe(error)
        self._ahead = []
        await self._close()
        name, key = self._projection.name, self._key
        delay = self._backoff.next_delay(trio.current_time())
        if delay is None:
            self._state = "backing_off"
            self._retry_at = None
            _log.error(
                "projection %r (key %r) gives up after %d consecutive failures at offset %d; "
                "the last: %s",
                name,
                key,
                self._failures,
                self._offset,
                self._last_error,
                exc_info=error,
            )
            raise ProjectionFailed(
                f"projection {name!r} (key {key!r}) gave up after {self._failures} "
                f"consecutive failures at offset {self._offset} (backoff max_restarts="
                f"{self._projection.backoff.max_restarts}); the last: {self._last_error}"
            ) from error
        self._state = "backing_off"
        self._retry_at = trio.current_time() + delay
        _log.warning(
            "projection %r (key %r) failed after offset %d (failure %d in a row): %s; "
            "retrying in %.3g s",
            name,
            key,
            self._offset,
            self._failures,
            self._last_error,
            delay,
            exc_info=error if self._failures == 1 else None,
        )
        self._token = next(_tokens)
        self.context.timers.start_single(_RETRY, _Step(self._token), delay)

    async def _rebuild(self) -> None:
        self._cancel_wait()
        self.context.timers.cancel(_RETRY)
        self._token = next(_tokens)  # nothing scheduled before counts any more
        self._ahead = []
        try:
            if self._handler is None:
                await self._open()
            assert self._handler is not None
            await self._handler.reset()
            await self._source.start(0)
        except Exception as error:
            # The asker gets the error; the projection retries from the stored offset.
            try:
                await self._failed(error)
            except ProjectionFailed:
                # Given up: a step (told, not asked) fails the actor for its supervisor.
                self._step_now()
            raise
        _log.info(
            "projection %r (key %r) rebuilds from the first event", self._projection.name, self._key
        )
        self._offset = 0
        self._state = "running"
        self._step_now()

    # -- scheduling ------------------------------------------------------------------------

    def _step_now(self) -> None:
        self._cancel_wait()
        self.context.timers.cancel(_RETRY)
        self._retry_at = None
        self._token = next(_tokens)
        self.context.ref.tell(_Step(self._token))

    def _wait_for_more(self) -> None:
        self._token = token = next(_tokens)
        scope = self._wait_scope = trio.CancelScope()
        source = self._source
        interval = self._projection.poll_interval

        async def wait() -> _Step:
            with scope, trio.move_on_after(interval):
                await source.wait()
            return _Step(token)

        self.context.pipe_to_self(wait)

    def _cancel_wait(self) -> None:
        scope, self._wait_scope = self._wait_scope, None
        if scope is not None:
            scope.cancel()

    # -- status ----------------------------------------------------------------------------

    async def _status(self) -> ProjectionStatus:
        try:
            lag = await self._source.lag(self._offset)
        except Exception:
            lag = None  # the source is failing: its error is in last_error soon enough
        retry_in = None
        if self._state == "backing_off" and self._retry_at is not None:
            retry_in = max(0.0, self._retry_at - trio.current_time())
        return ProjectionStatus(
            name=self._projection.name,
            key=self._key,
            state=self._state,
            offset=self._offset,
            lag=lag,
            handled=self._handled,
            skipped=self._skipped,
            failures=self._failures,
            total_failures=self._total_failures,
            last_error=self._last_error,
            retry_in=retry_in,
        )

    async def _caught_up(self, read: int) -> None:
        """Answer the :class:`WaitCaughtUp` asks made before read number ``read``."""
        if not self._waiters:
            return
        ready = [handle for handle, asked in self._waiters if asked < read]
        if not ready:
            return
        self._waiters = [(handle, asked) for handle, asked in self._waiters if asked >= read]
        status = await self._status()
        for handle in ready:
            if handle.pending:
                handle.reply(status)
