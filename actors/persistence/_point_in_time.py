"""A persistent actor recovered to a point in time, as a read-only replica: ``Replica``.

``system.spawn(Replica(Account, at=ten_oclock), "alice")`` starts ``Account("alice")``
as any actor, but its recovery stops at the point in time, and it never writes. Ask it
questions like any actor; the class is the one the live actor runs.

The point
    ``to_seq``: the events with ``seq <= to_seq``. ``at`` (a timezone-aware
    ``datetime``, or seconds since the epoch like ``time.time()``): the events stored at
    or before that time, by their ``timestamp`` (the writer's wall clock when it
    persisted them). Both: the events that meet both. Neither: every event stored when
    the replica recovers (a read-only copy of the current state, which does not follow
    later events). A point beyond the journal's end recovers everything stored.

Time, and clocks that go back
    The replay goes in ``seq`` order and stops at the first event past the point: the
    replica's state is always a prefix of the history, a state the live actor really
    had. If a writer's clock went back (another machine, a clock step), an event stamped
    at or before ``at`` that comes after one stamped later is not applied.

Snapshots
    The newest snapshot that decodes with ``seq <= to_seq`` and, with ``at``, saved at
    or before ``at`` (its own ``timestamp``) is restored first; then the events after it
    up to the point. A snapshot saved after the point is never used (an older one, or a
    replay from the first event). A snapshot is trusted: the events it covers are not
    read again, so with a clock that went back it may hold an event stamped after
    ``at``.

Missing events
    Recovery never builds a state from a history with a hole: if events the point needs
    are deleted (and no snapshot at or before the point covers them), it fails with a
    :class:`RecoveryFailed` that is not retryable, and the replica stops, as the live
    actor would. With ``at``, deleted events whose time is not known count as needed.

The journal
    A replica only reads: the snapshot store's ``load``, the journal's ``replay`` (and
    ``persistence_ids`` when it found nothing at all, to tell a new persistence id from
    one whose every event was deleted). It never calls ``highest_seq``, which the SQL
    journals run in their writer's queue (SQLite takes its write lock for it), never
    writes, and so never meets the single-writer fence (a write whose seq does not
    follow the journal's highest one is refused: the fence is at the write, not at the
    recovery). A replica next to the live actor, in the same system or another process,
    changes nothing in the journal and holds up none of its writes.

Writes refused, and no acting on the past
    ``persist``, ``persist_all`` and ``save_snapshot`` raise :class:`ReadOnlyReplica`
    at the call (``defer``, which writes nothing, works), so ``snapshot_every`` never
    saves one either. ``on_recovery_completed`` is not called: it is where the live
    actor acts on what it recovered (finishes pending work, persists, sends commands to
    other actors), which a replica must not do again. ``pre_start`` and the handlers run
    as for the live actor; one that persists raises there (``self.replica`` tells them
    apart).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import attrs

from .._mailbox import Mailbox
from .._spawn_checks import _signature
from .._spawning import class_default
from ._errors import JournalFailure, RecordCorrupt, RecoveryFailed
from ._journal import SEQ_MAX
from ._persistent import PersistentActor
from ._persistent_cell import PersistentCell
from ._recovery import _Events, _restore_snapshot

if TYPE_CHECKING:
    from supervision import Strategy

    from .._cell import ActorCell
    from ._journal import SnapshotStore
    from ._recovery import IncarnationState

_log: Final = logging.getLogger("actors.persistence")


def _iso_moment(timestamp: float) -> str:
    """``timestamp`` (seconds since the epoch) in ISO 8601, UTC, ``Z`` (its ``repr``
    beyond the years datetime knows)."""
    try:
        moment = datetime.fromtimestamp(timestamp, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return repr(timestamp)
    return moment.isoformat().replace("+00:00", "Z")


def _check_factory(_: object, __: object, factory: Any) -> None:
    if isinstance(factory, Replica):
        raise TypeError("Replica(Replica(...)): give the actor class (or factory) itself")
    if not callable(factory):
        raise TypeError(
            "Replica takes a persistent actor class (or a factory returning an instance), "
            f"got {factory!r} of type {type(factory).__qualname__}"
        )
    if isinstance(factory, type) and not issubclass(factory, PersistentActor):
        raise TypeError(
            f"Replica recovers persistent actors; {factory.__qualname__} is not a "
            "subclass of actors.persistence.PersistentActor"
        )


def _check_to_seq(_: object, __: object, to_seq: Any) -> None:
    if to_seq is not None and (
        isinstance(to_seq, bool) or not isinstance(to_seq, int) or to_seq < 0
    ):
        raise ValueError(f"Replica(to_seq=...) must be an int >= 0 or None, got {to_seq!r}")


def _timestamp(at: datetime | float | None) -> float | None:
    """``at`` as seconds since the epoch: a ``datetime`` must carry its time zone."""
    if at is None:
        return None
    if isinstance(at, datetime):
        if at.tzinfo is None or at.utcoffset() is None:
            raise ValueError(
                f"Replica(at={at!r}): a datetime without a time zone is ambiguous; give "
                "one (datetime(..., tzinfo=datetime.UTC), or .astimezone() for local time)"
            )
        return at.timestamp()
    if isinstance(at, bool) or not isinstance(at, int | float) or not math.isfinite(at):
        raise TypeError(
            "Replica(at=...) must be a timezone-aware datetime or seconds since the epoch "
            f"(a finite int or float, as time.time() gives), got {at!r}"
        )
    return float(at)


@attrs.frozen(repr=False)
class Replica:
    """What to spawn to run a persistent actor as a read-only replica recovered to a
    point in time: ``system.spawn(Replica(Account, to_seq=5), "alice", name=...)``.

    ``factory`` is the actor class (or a callable returning an instance of a
    :class:`PersistentActor`); the arguments given to ``spawn`` after it go to
    ``factory``, which is checked against them at the call as for the class itself. The
    runtime sees the class's own attributes (mailbox, throughput, supervisor
    strategy...). ``to_seq`` and ``at`` say the point (see the module documentation, or
    docs/persistence.md, "Recovering to a point in time"): ``to_seq`` an int >= 0,
    ``at`` a timezone-aware ``datetime`` or seconds since the epoch (kept as such).
    Bad values raise ``ValueError``/``TypeError`` at once.

    The instance's :attr:`PersistentActor.replica` is this object; its writes raise
    :class:`ReadOnlyReplica`. A restart recovers it again to the same point. It can be
    placed on a worker process when ``factory`` pickles.
    """

    factory: Callable[..., Any] = attrs.field(validator=_check_factory)
    to_seq: int | None = attrs.field(default=None, kw_only=True, validator=_check_to_seq)
    at: float | None = attrs.field(default=None, kw_only=True, converter=_timestamp)

    def __repr__(self) -> str:
        factory = getattr(self.factory, "__qualname__", None) or repr(self.factory)
        bounds = "".join(
            f", {name}={value}"
            for name, value in (
                ("to_seq", self.to_seq),
                ("at", None if self.at is None else _iso_moment(self.at)),
            )
            if value is not None
        )
        return f"Replica({factory}{bounds})"

    @property
    def point(self) -> str:
        """The point in words: ``seq 5``, ``2026-12-06T10:00:00Z``, both joined by
        ``and``, or ``the end of its journal``."""
        parts = []
        if self.to_seq is not None:
            parts.append(f"seq {self.to_seq}")
        if self.at is not None:
            parts.append(_iso_moment(self.at))
        return " and ".join(parts) or "the end of its journal"

    def __call__(self, *args: Any, **kwargs: Any) -> PersistentActor:
        """Make the instance (in the new actor's task, as ``spawn`` does) and mark it a
        replica of this point; ``TypeError`` if ``factory`` returned no persistent
        actor (the actor's start fails with it)."""
        instance = self.factory(*args, **kwargs)
        if not isinstance(instance, PersistentActor):
            raise TypeError(
                f"Replica recovers persistent actors; {self.factory!r} returned a "
                f"{type(instance).__qualname__}"
            )
        instance._as_replica = self
        return instance

    # What spawn reads of a factory: those of the actor class ``factory`` makes.

    @property
    def mailbox(self) -> Mailbox | None:
        value: Mailbox | None = class_default(self.factory, "mailbox", None)
        return value

    @property
    def throughput(self) -> int | None:
        value: int | None = class_default(self.factory, "throughput", None)
        return value

    @property
    def stash_capacity(self) -> int | None:
        value: int | None = class_default(self.factory, "stash_capacity", None)
        return value

    @property
    def supervisor_strategy(self) -> Strategy | None:
        value: Strategy | None = class_default(self.factory, "supervisor_strategy", None)
        return value

    @property
    def _cell_class(self) -> type[ActorCell]:
        # A factory that hides its class still makes a persistent actor.
        value: type[ActorCell] = class_default(self.factory, "_cell_class", PersistentCell)
        return value

    @property
    def __signature__(self) -> inspect.Signature | None:
        # spawn checks its arguments against the factory's signature at the call.
        return _signature(self.factory)


async def replay_to(actor: PersistentActor, state: IncarnationState, replica: Replica) -> None:
    """The recovery of a replica (called by ``_recovery.recover`` in place of its full
    replay): restore the newest snapshot at or before the point, apply the events after
    it up to the point; see the module documentation. Raises :class:`RecoveryFailed`
    (retryable for a journal failure)."""
    pid = state.persistence_id
    to_seq = SEQ_MAX if replica.to_seq is None else replica.to_seq
    at = replica.at
    store = state.snapshots
    after = 0
    if store is not None:
        after = await _restore_snapshot(actor, state, store, to_seq, at)
    upcast = None if type(actor).upcast is PersistentActor.upcast else actor.upcast
    events = _Events(actor, state, upcast)
    try:
        past = False
        async for record in state.journal.replay(pid, after + 1):
            seq = record.seq
            expected = state.seq + 1
            if seq != expected and expected <= to_seq:
                raise _missing(pid, expected, f"{expected}..{seq - 1}", replica)
            if seq > to_seq or (at is not None and record.timestamp > at):
                past = True
                break
            events.apply_one(seq, record.serializer, record.manifest, record.payload)
        if not past and state.seq == after and after < to_seq:
            await _check_not_deleted(state, store, after, to_seq, replica)
    except RecordCorrupt as error:
        raise RecoveryFailed(pid, error.seq, str(error), retryable=False) from error
    except JournalFailure as error:
        raise RecoveryFailed(
            pid, state.seq + 1, f"the journal failed: {error}", retryable=True
        ) from error
    if _log.isEnabledFor(logging.DEBUG):
        path = state.cell.ref.path
        _log.debug(
            "%s recovered persistence id %r as a read-only replica to %s: at seq %d "
            "(snapshot at seq %d, %d events replayed)",
            path,
            pid,
            replica.point,
            state.seq,
            after,
            state.seq - after,
            extra={"actor_path": path, "message_type": None, "persistence_id": pid},
        )


async def _check_not_deleted(
    state: IncarnationState,
    store: SnapshotStore | None,
    after: int,
    to_seq: int,
    replica: Replica,
) -> None:
    """The replay found no event after ``after`` (the snapshot restored, or 0): either
    there is none, or they were deleted. A newer snapshot, or (with none at all) the
    persistence id being known to the journal, says they existed: they are missing."""
    pid = state.persistence_id
    newest = None
    if store is not None:
        try:
            snapshot = await store.load(pid)
            newest = None if snapshot is None else snapshot.seq
        except RecordCorrupt as error:  # it exists, which is all this needs to know
            newest = error.seq
    if newest is not None and newest > after:
        last = min(newest, to_seq)
        raise _missing(pid, after + 1, f"{after + 1}..{last}", replica)
    if after == 0 and newest is None and pid in await state.journal.persistence_ids():
        raise _missing(pid, 1, "from 1 on", replica)


def _missing(pid: str, seq: int, events: str, replica: Replica) -> RecoveryFailed:
    return RecoveryFailed(
        pid,
        seq,
        f"events {events} are missing from the journal (deleted), and no snapshot that "
        f"can be decoded, taken at or before {replica.point}, covers them: the state at "
        "that point cannot be rebuilt",
        retryable=False,
    )
