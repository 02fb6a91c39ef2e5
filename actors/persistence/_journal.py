"""The journal and snapshot-store contracts every backend implements."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Sequence

from ._records import PersistentRecord, SnapshotRecord


class Journal(abc.ABC):
    """Where persistent actors store their events: one async contract for every backend
    (in memory, SQLite, PostgreSQL), checked by one conformance suite.

    All methods run in the trio thread of the caller. A backend raises
    :class:`JournalFailure` when an operation failed or its outcome is unknown, and
    :class:`SequenceConflict` when a write collides with stored events.
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
        bounded chunks: memory does not grow with the number of events."""

    def replay_chunks(
        self, persistence_id: str, from_seq: int = 1
    ) -> AsyncIterator[list[tuple[int, str, str, bytes]]]:
        """The events of ``persistence_id`` from ``from_seq`` on, as lists of
        ``(seq, serializer, manifest, payload)`` tuples in ``seq`` order: what recovery
        needs, without building a :class:`PersistentRecord` per event. Optional: the
        default groups :meth:`replay`; a backend overrides it to read rows directly."""
        return _Grouped(self.replay(persistence_id, from_seq))

    @abc.abstractmethod
    async def highest_seq(self, persistence_id: str) -> int:
        """The highest ``seq`` ever stored for ``persistence_id`` (0 if none), after every
        write already started has finished. Deleting events never lowers it."""

    @abc.abstractmethod
    async def delete_to(self, persistence_id: str, to_seq: int) -> None:
        """Delete the events of ``persistence_id`` with ``seq <= to_seq``. The highest
        sequence number stays as it was, so the next write still continues from it."""

    @abc.abstractmethod
    def events_by_tag(self, tag: str, from_offset: int = 0) -> AsyncIterator[PersistentRecord]:
        """The stored events tagged ``tag`` with ``offset > from_offset``, in offset
        (commit) order: a reader that resumes from the last offset it saw never skips an
        event, even one whose commit finished late."""

    @abc.abstractmethod
    async def persistence_ids(self) -> list[str]:
        """Every persistence id with at least one event ever stored, sorted."""

    async def close(self) -> None:  # noqa: B027 - optional for backends
        """Release the backend's resources. The default does nothing."""


class SnapshotStore(abc.ABC):
    """Where persistent actors store snapshots of their state."""

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


class _Grouped:
    """Records of a replay, grouped into lists of up to 256 row tuples."""

    def __init__(self, records: AsyncIterator[PersistentRecord]) -> None:
        self._records = records
        self._done = False

    def __aiter__(self) -> _Grouped:
        return self

    async def __anext__(self) -> list[tuple[int, str, str, bytes]]:
        rows: list[tuple[int, str, str, bytes]] = []
        if not self._done:
            async for record in self._records:
                rows.append((record.seq, record.serializer, record.manifest, record.payload))
                if len(rows) == 256:
                    return rows
            self._done = True
        if not rows:
            raise StopAsyncIteration
        return rows


Journal.__module__ = "actors.persistence"
SnapshotStore.__module__ = "actors.persistence"
