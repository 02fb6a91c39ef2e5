"""``PersistentActor``: an actor whose state is the fold of the events it journals.

Writing
    ``await self.persist(event)`` serializes the event, writes it to the journal, waits
    for the commit, and only then applies it (``apply(event)``, the same code that
    recovery runs) and returns its sequence number. ``persist_all`` does the same for a
    batch, atomically. Persists of one actor are taken in call order (a fair lock), also
    when a handler starts several from tasks of its own; ``defer`` queues a function
    behind them without writing anything. Each of these returns a coroutine to
    ``await``: one left un-awaited stores nothing, and the actor fails with
    :class:`PersistNotAwaited` as soon as the code that called it returns (see
    ``_persistent_cell.py``).

Messages meanwhile
    Handlers of one actor never overlap, so commands that arrive while a persist (or the
    recovery) is in flight wait in the mailbox, in order, and are handled afterwards.
    During that time the mailbox is bounded by :attr:`PersistentActor.persist_stash`
    (capacity and overflow policy): nothing is dropped silently; what does not fit is
    refused to the sender (``backpressure``) or goes to dead letters, as the policy says.

Failure and rejection
    A *rejection* (the event cannot be serialized, or the journal refused it before
    storing anything) raises :class:`EventRejected` in the handler; the state and the
    sequence number are unchanged and the actor goes on. A *failure* (the journal raised
    :class:`JournalFailure`, the write was cancelled so its outcome is unknown, or
    ``apply`` raised after the event was stored) raises in the handler too, and the
    actor fails as soon as the handler returns, whatever the handler did with the error:
    its supervisor decides (typically a restart, with backoff), and the restart recovers
    from what the journal holds.

Recovery
    On start and after every restart, before ``pre_start``/``post_restart``: the newest
    snapshot that can be decoded (falling back to older ones, then to no snapshot),
    ``restore(state)``, then the later events through ``upcast`` and ``apply``, then
    ``on_recovery_completed()`` (always, also for a new persistence id). See
    :class:`RecoveryFailed` for what a failed recovery does. A read-only replica
    (:class:`Replica`, ``_point_in_time.py``) recovers up to a point in time instead,
    never writes, and skips ``on_recovery_completed()``.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, ClassVar, Final, TypeVar

import trio

from .._actor import Actor
from .._mailbox import Mailbox, Overflow
from ._errors import EventRejected, JournalFailure, ReadOnlyReplica
from ._persistent_cell import PersistentCell, track
from ._records import PersistentRecord, SnapshotRecord
from ._recovery import IncarnationState, recover

if TYPE_CHECKING:
    from ._journal import SnapshotStore
    from ._point_in_time import Replica

_log: Final = logging.getLogger("actors.persistence")
_time: Final = time.time
_current_task: Final = trio.lowlevel.current_task
_wait_task_rescheduled: Final = trio.lowlevel.wait_task_rescheduled
_checkpoint: Final = trio.lowlevel.checkpoint
_checkpoint_if_cancelled: Final = trio.lowlevel.checkpoint_if_cancelled
_NO_TAGS: Final[frozenset[str]] = frozenset()
_T = TypeVar("_T")


class PersistentActor(Actor):
    """An event-sourced actor: its state is rebuilt from the events it persisted.

    Subclasses set :attr:`persistence_id` (a class attribute, or in ``__init__``) and
    implement :meth:`apply`; they may implement :meth:`snapshot`/:meth:`restore`,
    :meth:`upcast`, :meth:`tags_for` and :meth:`on_recovery_completed`. The journal,
    snapshot store and serializers come from the system's :class:`Persistence` extension
    (``open_system(extensions=[Persistence(journal)])``).
    Spawned through :class:`Replica`, the same class runs as a read-only replica
    recovered to a point in time (see :attr:`replica`).

    Class attributes:

    ``snapshot_every``
        Save a snapshot each time the sequence number crosses a multiple of this many
        events (``None``: only when :meth:`save_snapshot` is called). Requires
        :meth:`snapshot` and :meth:`restore`. A snapshot that fails to save is logged (a
        WARNING on ``actors.persistence``) and the actor goes on: snapshots only make
        recovery faster.
    ``keep_snapshots``
        After a snapshot is saved, only the newest this many are kept.
    ``delete_events_on_snapshot``
        After a snapshot is saved, delete the events up to the oldest snapshot kept. The
        highest sequence number is never lowered. Recovery then needs a snapshot that can
        be decoded: if none can, it fails (it never starts from a partial history).
    ``serializer``
        The id of the serializer for events and snapshots (``None``: the default one).
    ``persist_stash``
        The bound of the mailbox while a persist or the recovery is in flight (default:
        10,000 messages, ``backpressure``: ``tell`` raises :class:`MailboxFull` and
        ``send``/``ask`` wait). A mailbox with a tighter bound of its own keeps it.
    """

    persistence_id: str
    snapshot_every: ClassVar[int | None] = None
    keep_snapshots: ClassVar[int] = 2
    delete_events_on_snapshot: ClassVar[bool] = False
    serializer: ClassVar[str | None] = None
    persist_stash: ClassVar[Mailbox] = Mailbox(capacity=10_000, overflow=Overflow.BACKPRESSURE)

    _actor_recovers: ClassVar[bool] = True
    _cell_class: ClassVar[type[PersistentCell]] = PersistentCell
    _persistence: IncarnationState | None = None
    _as_replica: Replica | None = None  # set by a Replica on the instances it makes

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        every = cls.snapshot_every
        if every is not None and (
            isinstance(every, bool) or not isinstance(every, int) or every < 1
        ):
            raise ValueError(f"{cls.__qualname__}.snapshot_every must be an int >= 1 or None")
        keep = cls.keep_snapshots
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"{cls.__qualname__}.keep_snapshots must be an int >= 1")
        if every is not None and (
            cls.snapshot is PersistentActor.snapshot or cls.restore is PersistentActor.restore
        ):
            raise TypeError(
                f"{cls.__qualname__} sets snapshot_every but does not implement both "
                "snapshot() and restore()"
            )

    # -- hooks for subclasses ----------------------------------------------------------

    def apply(self, event: Any) -> None:
        """Update the state with ``event``; called after each persist and for each event
        replayed in recovery. It must be synchronous and deterministic (no I/O, no
        messages): recovery runs it again on the same events. Raising after a persist is
        a failure of the actor; raising during recovery fails the recovery."""
        raise NotImplementedError(f"{type(self).__qualname__} must implement apply(event)")

    def snapshot(self) -> Any:
        """The state to store in a snapshot (serialized like events)."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement snapshot()")

    def restore(self, state: Any) -> None:
        """Set the state from a snapshot's ``state``; events after it are applied next."""
        raise NotImplementedError(f"{type(self).__qualname__} does not implement restore()")

    def upcast(self, event: Any, manifest: str) -> Any:
        """Transform an event read from the journal before it is applied. ``manifest``
        is the one stored with it (``"module.Class@version"``, see
        :func:`parse_manifest`), so old versions can be recognised and converted to the
        current one. The default returns ``event`` unchanged."""
        return event

    def tags_for(self, event: Any) -> Iterable[str]:
        """The tags stored with ``event`` (for ``Journal.events_by_tag``) when
        ``persist`` is given none. The default is no tags."""
        return ()

    def on_recovery_completed(self) -> Awaitable[None] | None:
        """Called (and awaited if ``async def``) once recovery has finished, before
        ``pre_start``/``post_restart``; also for a persistence id with no events. It may
        persist. Raising here fails the start like ``pre_start`` does. Not called in a
        read-only replica (:class:`Replica`), which only answers questions about the
        past: this is where the live actor acts on what it recovered."""
        return None

    # -- the API --------------------------------------------------------------------------

    @property
    def last_seq(self) -> int:
        """The sequence number of the last event persisted or recovered (0: none)."""
        state = self._persistence
        return 0 if state is None else state.seq

    @property
    def replica(self) -> Replica | None:
        """The :class:`Replica` this instance was made by, when it runs as a read-only
        replica recovered to a point in time (its ``to_seq`` and ``at`` say which);
        ``None`` for the live actor. A replica refuses to write: :meth:`persist`,
        :meth:`persist_all` and :meth:`save_snapshot` raise :class:`ReadOnlyReplica`."""
        return self._as_replica

    @property
    def recovering(self) -> bool:
        """Whether events are being replayed right now (``apply`` is called by recovery)."""
        state = self._persistence
        return state is None or state.recovering

    def persist(self, event: Any, *, tags: Iterable[str] | None = None) -> Coroutine[Any, Any, int]:
        """Store ``event``, then apply it; return its sequence number (``await`` it:
        ``seq = await self.persist(event)``). See the module documentation for rejection
        (:class:`EventRejected`, nothing changed) and failure (:class:`JournalFailure`,
        the actor fails after the handler).

        On cancellation while the write is in flight the outcome is unknown: the event
        may be stored, but it is not applied, and the actor fails (it recovers the truth
        from the journal when restarted).

        Called without ``await``, it stores nothing: when the handler returns, the actor
        fails with :class:`PersistNotAwaited` (which its asker gets), naming the call.
        The same holds for :meth:`persist_all`, :meth:`defer` and :meth:`save_snapshot`.
        ``RuntimeError`` (at the call) outside the actor's handlers and hooks."""
        state = self._require("persist")
        return track(state, self._persist_one(state, event, tags), "persist", event)

    def persist_all(
        self, events: Iterable[Any], *, tags: Iterable[str] | None = None
    ) -> Coroutine[Any, Any, int]:
        """Store ``events`` atomically (all or none), then apply them in order; return
        the sequence number of the last one (the current one if ``events`` is empty).
        ``tags`` applies to each event; ``None``: :meth:`tags_for` of each event.
        ``await`` it, as :meth:`persist`."""
        state = self._require("persist_all")
        return track(state, self._persist_all(state, events, tags), "persist_all", events)

    async def _persist_all(
        self, state: IncarnationState, events: Iterable[Any], tags: Iterable[str] | None
    ) -> int:
        batch = list(events)
        serialization = state.serialization
        encoded = []
        for event in batch:
            serializer_id, manifest, payload = serialization.serialize(event, self.serializer)
            event_tags = frozenset(self.tags_for(event) if tags is None else tags)
            encoded.append((serializer_id, manifest, payload, event_tags))
        async with state.lock:
            self._check_usable(state)
            if not batch:
                await trio.lowlevel.checkpoint()
                return state.seq
            first = state.seq + 1
            now = time.time()
            records = [
                PersistentRecord(
                    persistence_id=state.persistence_id,
                    seq=first + index,
                    serializer=serializer_id,
                    manifest=manifest,
                    payload=payload,
                    tags=event_tags,
                    writer_id=state.writer_id,
                    timestamp=now,
                )
                for index, (serializer_id, manifest, payload, event_tags) in enumerate(encoded)
            ]
            await self._write(state, records)
            state.seq = first + len(records) - 1
            try:
                for event in batch:
                    self.apply(event)
            except Exception as error:
                # The events are stored but the state did not take them: this incarnation
                # cannot go on. Its restart replays them (and fails its recovery if apply
                # keeps raising).
                self._break(state, error)
                raise
            every = self.snapshot_every
            if every is not None and state.seq // every > (first - 1) // every:
                await self._snapshot_after_persist(state)
            return state.seq

    async def _persist_one(
        self, state: IncarnationState, event: Any, tags: Iterable[str] | None
    ) -> int:
        # persist(event): what _persist_all does for a batch of one, with fewer objects
        # alive while the write is in flight (no lists, no comprehension closures, no
        # coroutines for the turn and the write). With a thousand persists in flight at
        # once, every object each one keeps makes the garbage collector's passes longer.
        serializer_id, manifest, payload = state.serialization.serialize(event, self.serializer)
        event_tags = self.tags_for(event) if tags is None else tags
        turns = state.lock
        if not turns.take():
            await turns.wait()
        try:
            self._check_usable(state)
            seq = state.seq + 1
            frozen_tags = frozenset(event_tags) if event_tags else _NO_TAGS
            cell = state.cell
            saved = cell._limit_mailbox(self.persist_stash)
            try:
                queue = state.queue_event
                if queue is None:
                    record = PersistentRecord(
                        persistence_id=state.persistence_id,
                        seq=seq,
                        serializer=serializer_id,
                        manifest=manifest,
                        payload=payload,
                        tags=frozen_tags,
                        writer_id=state.writer_id,
                        timestamp=time.time(),
                    )
                    await state.journal.write((record,))
                else:
                    # What SqlJournal.write does with a batch of one, inline: no record,
                    # and no coroutine for the write or its wait.
                    await _checkpoint_if_cancelled()
                    op = queue(
                        state.persistence_id,
                        seq,
                        serializer_id,
                        manifest,
                        payload,
                        frozen_tags,
                        state.writer_id,
                        _time(),
                    )
                    if op.finished:
                        await _checkpoint()
                    else:
                        op.waiter = _current_task()
                        await _wait_task_rescheduled(op)
                    if op.error is not None:
                        raise op.error
            except BaseException as error:
                failure = self._write_failed(state, seq, seq, error)
                if failure is error:
                    raise
                raise failure from error
            finally:
                cell._lift_limit(saved)
            state.seq = seq
            try:
                self.apply(event)
            except Exception as error:
                self._break(state, error)  # stored but not applied: see _persist_all
                raise
            every = self.snapshot_every
            if every is not None and seq % every == 0:
                await self._snapshot_after_persist(state)
            return seq
        finally:
            turns.release()

    async def _snapshot_after_persist(self, state: IncarnationState) -> None:
        try:
            await self._save_snapshot(state)
        except Exception as error:
            path = state.cell.ref.path
            _log.warning(
                "%s: saving the snapshot at seq %d failed; going on without it",
                state.persistence_id,
                state.seq,
                exc_info=error,
                extra={
                    "actor_path": path,
                    "message_type": None,
                    "persistence_id": state.persistence_id,
                },
            )

    def defer(self, function: Callable[[], _T | Awaitable[_T]]) -> Coroutine[Any, Any, _T]:
        """Run ``function`` (sync, or async and awaited) after every persist already
        started by this actor has finished, without writing anything; return its
        result. ``await`` it, as :meth:`persist`."""
        state = self._require("defer")
        return track(state, self._defer(state, function), "defer", function)

    async def _defer(
        self, state: IncarnationState, function: Callable[[], _T | Awaitable[_T]]
    ) -> _T:
        async with state.lock:
            self._check_usable(state)
            result = function()
            if inspect.isawaitable(result):
                return await result
            await trio.lowlevel.checkpoint()
            return result

    def save_snapshot(self) -> Coroutine[Any, Any, int]:
        """Save a snapshot of the current state (after the persists already started)
        and apply the retention (:attr:`keep_snapshots`,
        :attr:`delete_events_on_snapshot`); return its sequence number. ``await`` it, as
        :meth:`persist`. Raises :class:`EventRejected` if the state cannot be
        serialized, :class:`JournalFailure` if the store failed (the actor goes on either
        way), and ``RuntimeError`` if no snapshot store is configured."""
        state = self._require("save_snapshot")
        return track(state, self._save_snapshot_turn(state), "save_snapshot", None)

    async def _save_snapshot_turn(self, state: IncarnationState) -> int:
        async with state.lock:
            self._check_usable(state)
            return await self._save_snapshot(state)

    # -- internals ------------------------------------------------------------------------

    def _require(self, what: str) -> IncarnationState:
        state = self._persistence
        if state is None or state.recovering:
            raise RuntimeError(
                f"{what}() called before {type(self).__qualname__} has recovered; "
                "persist from handlers, on_recovery_completed() or later, never from "
                "__init__ or apply()"
            )
        replica = state.replica
        if replica is not None and what != "defer":
            raise ReadOnlyReplica(state.persistence_id, what, replica.point)
        cell = state.cell
        own = cell._task
        task: trio.lowlevel.Task | None = trio.lowlevel.current_task()
        while task is not None and task is not own:  # the actor's task, or one under it
            nursery = task.parent_nursery
            task = None if nursery is None else nursery.parent_task
        if task is None:
            raise RuntimeError(
                f"{what}() called from a task that is not the actor's own "
                f"({cell.ref.path}); send it a message instead"
            )
        return state

    @staticmethod
    def _check_usable(state: IncarnationState) -> None:
        if state.broken is not None:
            raise JournalFailure(
                f"{state.persistence_id}: an earlier persist of this incarnation failed "
                f"({state.broken!r}); the actor fails once its handler returns"
            ) from state.broken

    @staticmethod
    def _break(state: IncarnationState, error: BaseException) -> None:
        if state.broken is None:
            state.broken = error
            state.cell._break(error)

    async def _write(self, state: IncarnationState, records: list[PersistentRecord]) -> None:
        cell = state.cell
        saved = cell._limit_mailbox(self.persist_stash)
        try:
            await state.journal.write(records)
        except BaseException as error:
            failure = self._write_failed(state, records[0].seq, records[-1].seq, error)
            if failure is error:
                raise
            raise failure from error
        finally:
            cell._lift_limit(saved)

    def _write_failed(
        self, state: IncarnationState, first: int, last: int, error: BaseException
    ) -> BaseException:
        """What the write of seqs ``first``..``last`` raising ``error`` raises: ``error``
        itself (a rejection: nothing stored, the actor goes on; a failure; a
        cancellation, whose outcome is unknown), or a :class:`JournalFailure` naming an
        error the journal should not have raised. Every outcome but a rejection breaks
        the incarnation."""
        if isinstance(error, EventRejected):
            return error
        if isinstance(error, JournalFailure):
            self._break(state, error)
            return error
        if isinstance(error, trio.Cancelled):
            self._break(
                state,
                JournalFailure(
                    f"{state.persistence_id}: the write of seq {first}..{last} "
                    "was cancelled; its outcome is unknown"
                ),
            )
            return error
        if not isinstance(error, Exception):
            return error  # KeyboardInterrupt and the like go on as they are
        failure = JournalFailure(
            f"{state.persistence_id}: the journal raised {error!r} writing seq {first}..{last}"
        )
        self._break(state, failure)
        return failure

    async def _save_snapshot(self, state: IncarnationState) -> int:
        store = state.snapshots
        if store is None:
            raise RuntimeError(
                f"{state.persistence_id}: no snapshot store is configured (Persistence("
                "journal, snapshot_store=...) in open_system's extensions, or a journal "
                "with a snapshots attribute)"
            )
        seq = state.seq
        serializer_id, manifest, payload = state.serialization.serialize(
            self.snapshot(), self.serializer
        )
        await store.save(
            SnapshotRecord(
                persistence_id=state.persistence_id,
                seq=seq,
                serializer=serializer_id,
                manifest=manifest,
                payload=payload,
                timestamp=time.time(),
            )
        )
        await self._apply_retention(state, store)
        return seq

    async def _apply_retention(self, state: IncarnationState, store: SnapshotStore) -> None:
        pid = state.persistence_id
        kept: list[int] = []
        max_seq: int | None = None
        for _ in range(self.keep_snapshots):
            record = await store.load(pid, max_seq)
            if record is None:
                break
            kept.append(record.seq)
            max_seq = record.seq - 1
        if len(kept) == self.keep_snapshots and kept[-1] > 1:
            await store.delete(pid, kept[-1] - 1)
        if self.delete_events_on_snapshot and kept:
            await state.journal.delete_to(pid, kept[-1])

    async def _actor_recover(self) -> None:
        """The recovery hook of the runtime (see ``_recovery.py``)."""
        await recover(self)

    def _describe_details(self) -> dict[str, object]:
        pid = getattr(self, "persistence_id", None)  # a class attribute or set later
        if not isinstance(pid, str):
            return {}
        details: dict[str, object] = {"persistence_id": pid, "last_seq": self.last_seq}
        replica = self._as_replica
        if replica is not None:
            details["replica_to"] = replica.point  # a read-only replica: to what point
        return details
