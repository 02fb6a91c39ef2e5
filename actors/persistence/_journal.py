"""The journal and snapshot-store contracts every backend implements."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Generic, TypeVar

import trio

from ._records import PersistentRecord, SnapshotRecord

SEQ_MIN = -(2**63)
"""The smallest seq or offset a journal can store (the signed 64-bit range of SQL)."""
SEQ_MAX = 2**63 - 1
"""The largest seq or offset a journal can store."""


def _checked(name: str, value: object) -> int:
    if type(value) is int:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")


def read_after(name: str, value: object, *, inclusive: bool) -> int:
    """The key a read resumes after, for its lower bound ``value`` (the parameter
    ``name``): ``value - 1`` for an ``inclusive`` bound (``from_seq``), ``value`` for an
    exclusive one (``from_offset``), clamped to ``0..SEQ_MAX``. Keys start at 1, so a
    bound at or below the start reads from the start, and one beyond :data:`SEQ_MAX`
    reads nothing. :class:`TypeError` naming ``name`` if ``value`` is not an int (a bool
    is not one). The helper behind the bounds rule of :class:`Journal`."""
    after = _checked(name, value) - (1 if inclusive else 0)
    return 0 if after < 0 else min(after, SEQ_MAX)


def upper_bound(name: str, value: object, *, optional: bool = False) -> int:
    """The inclusive upper bound ``value`` (the parameter ``name``) clamped to
    ``SEQ_MIN..SEQ_MAX``, the range a journal stores: a bound above it is no bound.
    ``None`` means no bound if ``optional`` (:data:`SEQ_MAX`). :class:`TypeError` naming
    ``name`` for anything else that is not an int (a bool is not one)."""
    if value is None and optional:
        return SEQ_MAX
    bound = _checked(name, value)
    return SEQ_MIN if bound < SEQ_MIN else min(bound, SEQ_MAX)


class Journal(abc.ABC):
    """Where persistent actors store their events: one async contract for every backend
    (in memory, SQLite, PostgreSQL), checked by one conformance suite.

    All methods run in the trio thread of the caller. A backend raises
    :class:`JournalFailure` when an operation failed or its outcome is unknown, and
    :class:`SequenceConflict` when a write collides with stored events. A backend that
    checks its records' integrity (the SQL journals) raises :class:`RecordCorrupt` from
    the read that meets one failing its check.

    Bounds, the same on every backend (``from_seq`` and ``to_seq`` of :meth:`replay`,
    ``from_seq`` of :meth:`replay_chunks`, ``from_offset`` of :meth:`events_by_tag` and
    :meth:`events_by_tag_chunks`, ``to_seq`` of :meth:`delete_to`; ``max_seq`` of
    :class:`SnapshotStore` too):

    * Any Python int is a valid bound. Seqs and offsets are stored as signed 64-bit
      integers (:data:`SEQ_MIN` .. :data:`SEQ_MAX`) and a bound outside that range is
      clamped to it: an upper bound above the range means no bound (``to_seq=2**64``
      replays or deletes everything; :meth:`delete_to` still never lowers
      :meth:`highest_seq`), a lower bound above it selects nothing.
    * A lower bound below the start means from the start (``from_seq`` below 1,
      ``from_offset`` below 0); an upper bound below 1 selects no event.
    * A bound that is not an int (a float, a string, a bool, ``None`` where ``None`` is
      not "no bound") raises :class:`TypeError` naming the parameter, before anything is
      read or deleted: when :meth:`replay`, :meth:`replay_chunks`,
      :meth:`events_by_tag` or :meth:`events_by_tag_chunks` is called (a wrapper that
      defers the call raises it on the first ``__anext__``), when :meth:`delete_to` is
      awaited.

    Backends apply this rule with :func:`read_after` and :func:`upper_bound`. The seqs
    of written records are checked by :meth:`write` instead (from 1, without a gap).
    """

    @abc.abstractmethod
    async def write(self, batch: Sequence[PersistentRecord]) -> list[int]:
        """Store ``batch`` atomically (all of it or none of it, never a partial batch in
        a replay) and return the offsets given to its records, once the batch is durable
        (committed). Every record of a batch has the same ``persistence_id`` and their
        ``seq`` run on from the highest stored one without a gap; a ``seq`` that is
        already stored raises :class:`SequenceConflict` and stores nothing. An empty
        batch stores nothing and returns ``[]``."""

    @abc.abstractmethod
    def replay(
        self, persistence_id: str, from_seq: int = 1, to_seq: int | None = None
    ) -> AsyncIterator[PersistentRecord]:
        """The stored events of ``persistence_id`` with ``from_seq <= seq <= to_seq``
        (``None``: no upper bound), in ``seq`` order, skipping deleted ones. Reads in
        bounded chunks: memory does not grow with the number of events. Bounds follow
        the rule of the class (clamped; :class:`TypeError` if not an int)."""

    def replay_chunks(
        self, persistence_id: str, from_seq: int = 1
    ) -> AsyncIterator[list[tuple[int, str, str, bytes]]]:
        """The events of ``persistence_id`` from ``from_seq`` on, as lists of
        ``(seq, serializer, manifest, payload)`` tuples in ``seq`` order: what recovery
        needs, without building a :class:`PersistentRecord` per event. ``from_seq``
        follows the bounds rule of the class. Optional: the default groups
        :meth:`replay`; a backend overrides it to read rows directly."""
        return _Grouped(self.replay(persistence_id, from_seq), _replay_row)

    @abc.abstractmethod
    async def highest_seq(self, persistence_id: str) -> int:
        """The highest ``seq`` ever stored for ``persistence_id`` (0 if none), after every
        write already started has finished. Deleting events never lowers it."""

    @abc.abstractmethod
    async def delete_to(self, persistence_id: str, to_seq: int) -> None:
        """Delete the events of ``persistence_id`` with ``seq <= to_seq`` (clamped as the
        class says: ``2**64`` deletes them all, ``0`` or below none). The highest
        sequence number stays as it was, so the next write still continues from it."""

    @abc.abstractmethod
    def events_by_tag(self, tag: str, from_offset: int = 0) -> AsyncIterator[PersistentRecord]:
        """The stored events tagged ``tag`` with ``offset > from_offset``, in offset
        (commit) order: a reader that resumes from the last offset it saw never skips an
        event, even one whose commit finished late. ``from_offset`` follows the bounds
        rule of the class: below 0 is from the start, beyond :data:`SEQ_MAX` gives
        nothing."""

    def events_by_tag_chunks(
        self, tag: str, from_offset: int = 0
    ) -> AsyncIterator[list[TaggedRow]]:
        """The events of :meth:`events_by_tag` (tagged ``tag``, ``offset >
        from_offset``, in offset order), as lists of row tuples holding the fields of a
        :class:`PersistentRecord` in its order, ``(persistence_id, seq, serializer,
        manifest, payload, tags, writer_id, timestamp, offset)`` (so
        ``PersistentRecord(*row)`` is the record): what a tag reader that decodes events
        in bulk needs (a projection), without building a record per event. No list is
        empty. ``from_offset`` follows the bounds rule of the class. A backend that
        checks integrity checks every row before its list is given; at a row refused,
        the rows before it come as one list, the next ``__anext__`` raises
        :class:`RecordCorrupt`, and iterating further goes on after that row (as
        :meth:`events_by_tag` does). Optional: the default groups :meth:`events_by_tag`
        into lists of up to 256 rows; a backend overrides it to read rows directly."""
        records = self.events_by_tag(tag, from_offset)
        return _Grouped(records, _tagged_row, rows_before_error=True)

    @abc.abstractmethod
    async def persistence_ids(self) -> list[str]:
        """Every persistence id with at least one event ever stored, sorted."""

    async def highest_offset(self, tag: str | None = None) -> int | None:
        """The highest offset of a stored event tagged ``tag`` (of any stored event if
        ``tag`` is ``None``), 0 if there is none: where a reader of :meth:`events_by_tag`
        that has seen everything stands, hence how far behind one is (its lag). Deleted
        events do not count. Optional: the default returns ``None`` ("this journal
        cannot tell"); the in-memory, SQLite and PostgreSQL journals implement it."""
        await trio.lowlevel.checkpoint()
        return None

    _commit_waiters: trio.lowlevel.ParkingLot | None = None

    async def wait_for_commit(self) -> None:
        """Return once a write of events through this journal object, in this process,
        has committed after the call; for readers of :meth:`events_by_tag` that tail
        the journal, to read as soon as there may be something new. Writes by other
        processes (or other journal objects on the same database) are not seen: wait
        with a timeout and read anyway when it passes (``with
        trio.move_on_after(interval): await journal.wait_for_commit()``). Cancelling
        the wait has no other effect. The in-memory, SQLite and PostgreSQL journals
        wake it; a backend that does not (it does not call :meth:`_committed`) leaves
        its readers to the timeout."""
        lot = self._commit_waiters
        if lot is None:
            lot = self._commit_waiters = trio.lowlevel.ParkingLot()
        await lot.park()

    def _committed(self) -> None:
        """Wake the tasks in :meth:`wait_for_commit`: a backend calls it in the trio
        thread once a write of events has committed (one attribute check when nobody
        waits)."""
        lot = self._commit_waiters
        if lot is not None and lot:
            lot.unpark_all()

    async def close(self) -> None:  # noqa: B027 - optional for backends
        """Release the backend's resources. The default does nothing."""


class SnapshotStore(abc.ABC):
    """Where persistent actors store snapshots of their state.

    ``max_seq`` of :meth:`load` and :meth:`delete` follows the bounds rule of
    :class:`Journal` (applied with :func:`upper_bound`): any Python int is valid and is
    clamped to the stored range (:data:`SEQ_MIN` .. :data:`SEQ_MAX`), so
    ``max_seq=2**64`` means no bound; a ``max_seq`` that is not an int (a float, a
    bool; ``None`` for :meth:`delete`) raises :class:`TypeError` naming it when the call
    is awaited, before anything is read or deleted.
    """

    @abc.abstractmethod
    async def save(self, snapshot: SnapshotRecord) -> None:
        """Store ``snapshot`` durably (replacing one with the same id and ``seq``)."""

    @abc.abstractmethod
    async def load(self, persistence_id: str, max_seq: int | None = None) -> SnapshotRecord | None:
        """The newest snapshot of ``persistence_id`` with ``seq <= max_seq`` (``None``:
        any), or ``None``. To fall back from a snapshot that cannot be decoded, load
        again with ``max_seq = that.seq - 1``."""

    @abc.abstractmethod
    async def delete(self, persistence_id: str, max_seq: int) -> None:
        """Delete the snapshots of ``persistence_id`` with ``seq <= max_seq``."""

    async def close(self) -> None:  # noqa: B027 - optional for backends
        """Release the backend's resources. The default does nothing."""


TaggedRow = tuple[str, int, str, str, bytes, frozenset[str], str, float, int]
"""A row of :meth:`Journal.events_by_tag_chunks`: the fields of a
:class:`PersistentRecord`, in its order."""

_Row = TypeVar("_Row")


def _replay_row(record: PersistentRecord) -> tuple[int, str, str, bytes]:
    return (record.seq, record.serializer, record.manifest, record.payload)


def _tagged_row(r: PersistentRecord) -> TaggedRow:
    return (
        r.persistence_id,
        r.seq,
        r.serializer,
        r.manifest,
        r.payload,
        r.tags,
        r.writer_id,
        r.timestamp,
        r.offset,
    )


class _Grouped(Generic[_Row]):
    """Records of a replay or a tag query, grouped into lists of up to 256 rows
    (``row(record)`` each). An ``Exception`` of the records' iterator comes out of the
    ``__anext__`` that meets it, dropping the rows before it in that group, or, if
    ``rows_before_error``, out of the next one, after those rows. Either way a reader
    that goes on reads what the records' iterator gives after it."""

    def __init__(
        self,
        records: AsyncIterator[PersistentRecord],
        row: Callable[[PersistentRecord], _Row],
        *,
        rows_before_error: bool = False,
    ) -> None:
        self._records = records
        self._row = row
        self._keep = rows_before_error
        self._error: Exception | None = None
        self._done = False

    def __aiter__(self) -> _Grouped[_Row]:
        return self

    async def __anext__(self) -> list[_Row]:
        error, self._error = self._error, None
        if error is not None:
            raise error
        rows: list[_Row] = []
        convert = self._row
        if not self._done:
            try:
                async for record in self._records:
                    rows.append(convert(record))
                    if len(rows) == 256:
                        return rows
            except Exception as failure:
                if not (self._keep and rows):
                    raise
                self._error = failure
                return rows
            self._done = True
        if not rows:
            raise StopAsyncIteration
        return rows
