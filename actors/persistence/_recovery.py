"""Recovery of a persistent actor: the state of one incarnation, and the runtime's
recovery hook, which rebuilds that state from the journal before ``pre_start``.

Recovery loads the newest snapshot that decodes (skipping one that does not for an older
one, then for a full replay), replays the later events through ``upcast`` and ``apply``,
checks that nothing is missing up to the journal's highest sequence number, then calls
``on_recovery_completed()``. A failure that retrying can help (the journal failed) is a
failure of the actor, for its supervisor; one it cannot (no persistence id, no journal,
an undecodable event, ``apply`` raising, missing events) stops the actor with
:class:`RecoveryFailed`. Meanwhile the mailbox is bounded by ``persist_stash``. A
read-only replica recovers to its point in time instead (``_point_in_time.replay_to``:
reads only) and skips ``on_recovery_completed()``.

Another writer of the same persistence id (another process, or another incarnation
that has not stopped yet) may commit events while recovery runs. The rule: the replay
reads to the end of the journal; then recovery reads the highest seq ``H`` (after every
write already started, on the SQL journals through the writer queue); if the state is
behind ``H``, the events up to ``H`` were committed after the replay passed their place,
and one more replay from the next seq reads them (a replay started after ``H`` was read
sees every event committed before). Recovery then ends: it has every event committed
before ``H`` was read, so it finishes even if the other writer never stops; events
committed later come after this recovery, and the actor's first persist collides with
them (:class:`SequenceConflict`, a failure: its supervisor restarts it and that recovery
reads them), which is the fencing of a second writer. Only when that second replay does
not reach ``H`` (it starts with a gap, or finds nothing) are events missing: deleted,
and not covered by a snapshot, which stops the actor (not retryable).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from ._errors import JournalFailure, RecordCorrupt, RecordUndecodable, RecoveryFailed
from ._extension import Persistence, default_serialization
from ._persistent_cell import PersistentCell, checked, settle_after_error, unawaited
from ._sql_journal import event_queue
from ._turns import Turns

if TYPE_CHECKING:
    from .._cell import ActorCell
    from ._journal import Journal, SnapshotStore
    from ._persistent import PersistentActor
    from ._point_in_time import Replica
    from ._serialization import Serialization

_log: Final = logging.getLogger("actors.persistence")


class IncarnationState:
    """The persistence state of one incarnation of a persistent actor."""

    __slots__ = (
        "broken",
        "cell",
        "journal",
        "lock",
        "pending",
        "persistence_id",
        "queue_event",
        "recovering",
        "replica",
        "seq",
        "serialization",
        "snapshots",
        "writer_id",
    )

    def __init__(
        self,
        cell: ActorCell,
        persistence_id: str,
        journal: Journal,
        snapshots: SnapshotStore | None,
        serialization: Serialization,
    ) -> None:
        self.cell = cell
        self.persistence_id = persistence_id
        self.journal = journal
        #: The journal's way to queue one event without a record (``None``: none; see
        #: ``_sql_journal.event_queue``), which ``persist`` takes when there is one.
        self.queue_event = event_queue(journal)
        self.snapshots = snapshots
        self.serialization = serialization
        self.seq = 0
        self.recovering = True
        self.broken: BaseException | None = None
        self.lock = Turns()
        # The persist calls made since the code that made them was last checked: see
        # _persistent_cell.py (coroutine, method name, argument).
        #: Calls to check (see ``_persistent_cell.track``): coroutine, method, argument.
        self.pending: list[Any] = []
        self.writer_id = f"{cell.ref.path}#{uuid.uuid4().hex[:12]}"
        #: The point in time of a read-only replica (``None``: the live actor); see
        #: ``_point_in_time.py``.
        self.replica: Replica | None = None


async def recover(actor: PersistentActor) -> None:
    """The recovery of ``actor`` (its class's recovery hook): see the module
    documentation."""
    cell = actor._actor_cell
    assert cell is not None, "a persistent actor is made by spawn"
    settings = cell.system.settings
    pid = getattr(actor, "persistence_id", None)
    if not isinstance(pid, str) or not pid:
        cell._stop_failed(
            RecoveryFailed(
                repr(pid),
                0,
                f"{type(actor).__qualname__} has no persistence_id (a non-empty str); "
                "set it as a class attribute or in __init__",
                retryable=False,
            )
        )
        return
    extension = settings.extension(Persistence)
    journal = None if extension is None else extension.journal
    if journal is None:
        cell._stop_failed(
            RecoveryFailed(
                pid,
                0,
                "no journal is configured: pass extensions=[Persistence(journal=...)] "
                "to open_system (for example a journal opened with open_sqlite_journal)"
                if cell.system.node == "local"
                else f"no journal is configured in worker process {cell.system.node}: give "
                "the root's Persistence a worker_journal= (for example "
                "functools.partial(open_sqlite_journal, path)) so that workers open the "
                "journal themselves",
                retryable=False,
            )
        )
        return
    assert extension is not None
    snapshots = extension.snapshot_store
    if snapshots is None:
        snapshots = getattr(journal, "snapshots", None)
    serialization = extension.serialization or default_serialization()
    state = IncarnationState(cell, pid, journal, snapshots, serialization)
    replica = state.replica = actor._as_replica
    actor._persistence = state
    saved = cell._limit_mailbox(actor.persist_stash)
    try:
        if replica is None:
            await _replay(actor, state)
        else:
            from ._point_in_time import replay_to  # (it imports this module)

            await replay_to(actor, state, replica)
    except RecoveryFailed as error:
        if error.retryable:
            raise
        cell._stop_failed(error)
        return
    finally:
        cell._lift_limit(saved)
        state.recovering = False
    try:
        # A replica does not act on what it recovered (see _point_in_time.py).
        result = actor.on_recovery_completed() if replica is None else None
        if result is not None:
            await result
    except BaseException as error:
        settle_after_error(state, error)
        raise
    if state.pending:
        missed = unawaited(state)
        if missed is not None:
            raise missed  # the start fails with it
    if not isinstance(cell, PersistentCell):
        # Spawned from a factory that hides the class (and its cell class hook): its
        # receive is still checked, not a behaviour it sets with become().
        cell._behavior = checked(cell, cell._behavior, cell._behavior_async)


async def _replay(actor: PersistentActor, state: IncarnationState) -> None:
    pid = state.persistence_id
    after = 0
    store = state.snapshots
    if store is not None:
        after = await _restore_snapshot(actor, state, store)
    from ._persistent import PersistentActor  # (it imports this module)

    events = _Events(
        actor, state, None if type(actor).upcast is PersistentActor.upcast else actor.upcast
    )
    try:
        await events.replay()
        highest = await state.journal.highest_seq(pid)
        if state.seq < highest:
            # Committed by another writer since the replay read past them: more events
            # to replay, not missing ones. One more replay reaches ``highest``; events
            # committed after it was read are later than this recovery.
            await events.replay()
    except RecordCorrupt as error:
        raise RecoveryFailed(pid, error.seq, str(error), retryable=False) from error
    except JournalFailure as error:
        raise RecoveryFailed(
            pid, state.seq + 1, f"the journal failed: {error}", retryable=True
        ) from error
    if state.seq < highest:
        raise RecoveryFailed(
            pid,
            state.seq + 1,
            f"events {state.seq + 1}..{highest} are missing from the journal (deleted, "
            "and no snapshot that can be decoded covers them)",
            retryable=False,
        )
    if after > highest:
        # A snapshot is saved after its events are stored and the highest seq never
        # goes down: this snapshot belongs to other events than this journal's.
        raise RecoveryFailed(
            pid,
            after,
            f"the snapshot at seq {after} is ahead of the journal, whose highest seq is "
            f"{highest}: the snapshot store holds snapshots of another journal, or the "
            "journal lost events; give the system the snapshot store of this journal",
            retryable=False,
        )
    if _log.isEnabledFor(logging.DEBUG):
        path = state.cell.ref.path
        _log.debug(
            "%s recovered persistence id %r at seq %d (snapshot at seq %d, %d events replayed)",
            path,
            pid,
            state.seq,
            after,
            state.seq - after,
            extra={"actor_path": path, "message_type": None, "persistence_id": pid},
        )


class _Events:
    """Replays the events after ``state.seq`` through ``upcast`` and ``apply`` of one
    actor, advancing ``state.seq``; recovery runs it once, and once more to read what
    another writer committed meanwhile. Decoders are looked up once per serializer id."""

    __slots__ = ("_apply", "_decoders", "_state", "_upcast")

    def __init__(
        self,
        actor: PersistentActor,
        state: IncarnationState,
        upcast: Callable[[Any, str], Any] | None,
    ) -> None:
        self._state = state
        self._apply = actor.apply
        self._upcast = upcast
        self._decoders: dict[str, Callable[[str, bytes], Any]] = {}

    async def replay(self) -> None:
        """Apply the stored events from ``state.seq + 1`` on, to the end of the journal.
        :class:`RecoveryFailed` (not retryable) if an event read is not the next seq
        (the events before it are missing) or one cannot be decoded or applied;
        :class:`JournalFailure` as the journal raises it. Either way, and on
        cancellation, ``state.seq`` is the last event applied."""
        state = self._state
        pid = state.persistence_id
        serialization = state.serialization
        decoders = self._decoders
        upcast = self._upcast
        apply = self._apply
        expected = state.seq + 1
        try:
            async for chunk in state.journal.replay_chunks(pid, expected):
                for seq, serializer_id, manifest, payload in chunk:
                    if seq != expected:
                        raise RecoveryFailed(
                            pid,
                            expected,
                            f"events {expected}..{seq - 1} are missing from the journal "
                            "(deleted, and no snapshot that can be decoded covers them)",
                            retryable=False,
                        )
                    decode = decoders.get(serializer_id)
                    try:
                        if decode is None:
                            decode = serialization.get(serializer_id).from_binary
                            decoders[serializer_id] = decode
                        event = decode(manifest, payload)
                    except (LookupError, RecordUndecodable) as error:
                        raise _undecodable(pid, seq, manifest, error) from error
                    try:
                        apply(event if upcast is None else upcast(event, manifest))
                    except Exception as error:
                        raise _not_applied(pid, seq, manifest, error) from error
                    expected = seq + 1
        finally:
            state.seq = expected - 1

    def apply_one(self, seq: int, serializer_id: str, manifest: str, payload: bytes) -> None:
        """Decode, upcast and apply the one event ``seq``, with the errors of
        :meth:`replay` (whose loop does the same inline, for speed); ``state.seq``
        becomes ``seq`` once it is applied."""
        state = self._state
        try:
            decode = self._decoders.get(serializer_id)
            if decode is None:
                decode = state.serialization.get(serializer_id).from_binary
                self._decoders[serializer_id] = decode
            event = decode(manifest, payload)
        except (LookupError, RecordUndecodable) as error:
            raise _undecodable(state.persistence_id, seq, manifest, error) from error
        upcast = self._upcast
        try:
            self._apply(event if upcast is None else upcast(event, manifest))
        except Exception as error:
            raise _not_applied(state.persistence_id, seq, manifest, error) from error
        state.seq = seq


def _undecodable(pid: str, seq: int, manifest: str, error: Exception) -> RecoveryFailed:
    return RecoveryFailed(
        pid, seq, f"event {seq} ({manifest}) cannot be decoded: {error}", retryable=False
    )


def _not_applied(pid: str, seq: int, manifest: str, error: Exception) -> RecoveryFailed:
    return RecoveryFailed(
        pid, seq, f"applying event {seq} ({manifest}) raised {error!r}", retryable=False
    )


async def _restore_snapshot(
    actor: PersistentActor,
    state: IncarnationState,
    store: SnapshotStore,
    max_seq: int | None = None,
    at: float | None = None,
) -> int:
    """Restore the newest snapshot that decodes (with ``seq <= max_seq``, and saved at
    or before the time ``at`` when it is given); return its seq (0: none)."""
    pid = state.persistence_id
    while True:
        try:
            record = await store.load(pid, max_seq)
        except RecordCorrupt as error:
            raise RecoveryFailed(pid, error.seq, str(error), retryable=False) from error
        except JournalFailure as error:
            raise RecoveryFailed(
                pid, 0, f"loading a snapshot failed: {error}", retryable=True
            ) from error
        if record is None:
            return 0
        if at is not None and record.timestamp > at:
            max_seq = record.seq - 1  # saved after the point in time: an older one
            continue
        try:
            snapshot = state.serialization.deserialize(
                record.serializer, record.manifest, record.payload
            )
        except RecordUndecodable as error:
            path = state.cell.ref.path
            _log.warning(
                "%s: the snapshot at seq %d cannot be decoded; trying an older one",
                pid,
                record.seq,
                exc_info=error,
                extra={"actor_path": path, "message_type": None, "persistence_id": pid},
            )
            max_seq = record.seq - 1
            continue
        try:
            actor.restore(snapshot)
        except Exception as error:
            raise RecoveryFailed(
                pid,
                record.seq,
                f"restore() raised {error!r} on the snapshot at seq {record.seq}",
                retryable=False,
            ) from error
        state.seq = record.seq
        return record.seq
