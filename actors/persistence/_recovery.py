"""Recovery of a persistent actor: the state of one incarnation, and the runtime's
recovery hook, which rebuilds that state from the journal before ``pre_start``.

Recovery loads the newest snapshot that decodes (skipping one that does not for an older
one, then for a full replay), replays the later events through ``upcast`` and ``apply``,
checks that nothing is missing up to the journal's highest sequence number, then calls
``on_recovery_completed()``. A failure that retrying can help (the journal failed) is a
failure of the actor, for its supervisor; one it cannot (no persistence id, no journal,
an undecodable event, ``apply`` raising, missing events) stops the actor with
:class:`RecoveryFailed`. Meanwhile the mailbox is bounded by ``persist_stash``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

import trio

from ._errors import JournalFailure, RecordUndecodable, RecoveryFailed
from ._extension import Persistence, default_serialization
from ._persistent_cell import PersistentCell, checked, settle_after_error, unawaited

if TYPE_CHECKING:
    from .._cell import ActorCell
    from ._journal import Journal, SnapshotStore
    from ._persistent import PersistentActor
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
        "recovering",
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
        self.snapshots = snapshots
        self.serialization = serialization
        self.seq = 0
        self.recovering = True
        self.broken: BaseException | None = None
        self.lock = trio.Lock()
        # The persist calls made since the code that made them was last checked: see
        # _persistent_cell.py (coroutine, method name, argument).
        self.pending: list[tuple[Coroutine[Any, Any, Any], str, object]] = []
        self.writer_id = f"{cell.ref.path}#{uuid.uuid4().hex[:12]}"


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
                "to open_system (for example a journal opened with open_sqlite_journal)",
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
    actor._persistence = state
    saved = cell._limit_mailbox(actor.persist_stash)
    try:
        await _replay(actor, state)
    except RecoveryFailed as error:
        if error.retryable:
            raise
        cell._stop_failed(error)
        return
    finally:
        cell._lift_limit(saved)
        state.recovering = False
    try:
        result = actor.on_recovery_completed()
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
    serialization = state.serialization
    after = 0
    store = state.snapshots
    if store is not None:
        after = await _restore_snapshot(actor, state, store)
    expected = after + 1
    decoders: dict[str, Callable[[str, bytes], Any]] = {}
    from ._persistent import PersistentActor  # (it imports this module)

    upcast = None if type(actor).upcast is PersistentActor.upcast else actor.upcast
    apply = actor.apply
    try:
        async for chunk in state.journal.replay_chunks(pid, expected):
            for seq, serializer_id, manifest, payload in chunk:
                if seq != expected:
                    state.seq = expected - 1
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
                    state.seq = expected - 1
                    raise RecoveryFailed(
                        pid,
                        seq,
                        f"event {seq} ({manifest}) cannot be decoded: {error}",
                        retryable=False,
                    ) from error
                try:
                    apply(event if upcast is None else upcast(event, manifest))
                except Exception as error:
                    state.seq = expected - 1
                    raise RecoveryFailed(
                        pid,
                        seq,
                        f"applying event {seq} ({manifest}) raised {error!r}",
                        retryable=False,
                    ) from error
                expected = seq + 1
            state.seq = expected - 1
        highest = await state.journal.highest_seq(pid)
    except JournalFailure as error:
        raise RecoveryFailed(
            pid, expected, f"the journal failed: {error}", retryable=True
        ) from error
    if highest != state.seq:
        raise RecoveryFailed(
            pid,
            expected,
            f"events {expected}..{highest} are missing from the journal (deleted, and "
            "no snapshot that can be decoded covers them)",
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


async def _restore_snapshot(
    actor: PersistentActor, state: IncarnationState, store: SnapshotStore
) -> int:
    """Restore the newest snapshot that decodes; return its seq (0: none)."""
    pid = state.persistence_id
    max_seq: int | None = None
    while True:
        try:
            record = await store.load(pid, max_seq)
        except JournalFailure as error:
            raise RecoveryFailed(
                pid, 0, f"loading a snapshot failed: {error}", retryable=True
            ) from error
        if record is None:
            return 0
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
