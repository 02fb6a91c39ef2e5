"""The in-memory journal and snapshot store: for tests, and the reference behaviour of
the journal contract (the conformance suite runs against it like against every other
backend). Nothing survives the process."""

from __future__ import annotations

import bisect
from collections.abc import AsyncIterator, Callable, Sequence

import attrs
import trio

from ._errors import SequenceConflict
from ._journal import Journal, SnapshotStore, read_after, upper_bound
from ._records import PersistentRecord, SnapshotRecord

CHUNK = 256
"""How many records a replay or tag query takes per step; each step is a checkpoint."""


class _Chunked:
    """An async iterator over records fetched ``CHUNK`` at a time by ``fetch(cursor)``,
    which returns the next records after ``cursor`` and the cursor after them. Every
    fetch is a checkpoint (also the last, empty one), so a long replay lets other tasks
    run and cancellation reaches it, and only one chunk is held at a time."""

    def __init__(
        self,
        fetch: Callable[[int], tuple[list[PersistentRecord], int]],
        cursor: int,
    ) -> None:
        self._fetch = fetch
        self._cursor = cursor
        self._buffer: list[PersistentRecord] = []
        self._index = 0
        self._done = False

    def __aiter__(self) -> _Chunked:
        return self

    async def __anext__(self) -> PersistentRecord:
        if self._index >= len(self._buffer):
            if self._done:
                raise StopAsyncIteration
            await trio.lowlevel.checkpoint()
            self._buffer, self._cursor = self._fetch(self._cursor)
            self._index = 0
            if not self._buffer:
                self._done = True
                raise StopAsyncIteration
        record = self._buffer[self._index]
        self._index += 1
        return record


@attrs.define
class _Stream:
    """The events of one persistence id: ``records[i]`` has ``seq == first + i``.
    ``delete_to`` drops a prefix and moves ``first``; ``highest`` never goes down."""

    records: list[PersistentRecord] = attrs.Factory(list)
    first: int = 1
    highest: int = 0


class InMemoryJournal(Journal):
    """A :class:`Journal` held in memory.

    Semantics (those of the contract, made precise):

    * :meth:`write` validates the whole batch before storing any of it: all records
      must share one ``persistence_id`` (else :class:`ValueError`) and their ``seq``
      must be exactly ``highest + 1, highest + 2, ...``. A ``seq`` already stored (or
      stored and deleted: ``seq <= highest``) raises :class:`SequenceConflict`; so does
      a gap (a ``seq`` above the next one, also inside the batch). Nothing is stored
      then. Each stored record gets the next offset of the journal (1, 2, 3... in write
      order over all ids); the ``offset`` the caller put in the record is ignored.
    * A write either happens completely before it returns or, if cancelled at its
      checkpoint on entry, not at all.
    * :meth:`replay` and :meth:`events_by_tag` read ``CHUNK`` records per step, each
      step a checkpoint; they see events written while they run when those come after
      their position, and skip events deleted before their position reaches them.
    * Deleted events are gone from :meth:`replay` and :meth:`events_by_tag`, but their
      id stays in :meth:`persistence_ids` and :meth:`highest_seq` stays where it was.
    * Bounds are checked and clamped like in every backend (see :class:`Journal`), so
      that a test on this journal sees what SQLite and PostgreSQL do.
    """

    def __init__(self) -> None:
        self._streams: dict[str, _Stream] = {}
        self._tagged: dict[str, list[PersistentRecord]] = {}
        self._offset = 0
        #: An :class:`InMemorySnapshotStore` that goes with this journal (persistent
        #: actors use it when the system configures no other snapshot store).
        self.snapshots = InMemorySnapshotStore()

    async def write(self, batch: Sequence[PersistentRecord]) -> list[int]:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            offsets = self._store(batch)
        except (ValueError, SequenceConflict):
            await trio.lowlevel.cancel_shielded_checkpoint()
            raise
        if offsets:
            self._committed()
        await trio.lowlevel.cancel_shielded_checkpoint()
        return offsets

    def _store(self, batch: Sequence[PersistentRecord]) -> list[int]:
        if not batch:
            return []
        persistence_id = batch[0].persistence_id
        for record in batch:
            if record.persistence_id != persistence_id:
                raise ValueError(
                    "every record of a batch must have the same persistence_id, got "
                    f"{persistence_id!r} and {record.persistence_id!r}"
                )
        stream = self._streams.get(persistence_id)
        highest = 0 if stream is None else stream.highest
        for expected, record in enumerate(batch, start=highest + 1):
            if record.seq != expected:
                kind = "is already stored" if record.seq <= highest else "leaves a gap"
                raise SequenceConflict(
                    f"cannot write seq {record.seq} of {persistence_id!r}: it {kind} "
                    f"(highest stored seq is {highest}, the batch must continue with "
                    f"{expected}); nothing of the batch was stored"
                )
        if stream is None:
            stream = self._streams[persistence_id] = _Stream()
        offsets: list[int] = []
        for record in batch:
            self._offset += 1
            stored = attrs.evolve(record, offset=self._offset)
            stream.records.append(stored)
            for tag in stored.tags:
                self._tagged.setdefault(tag, []).append(stored)
            offsets.append(self._offset)
        stream.highest = batch[-1].seq
        return offsets

    def replay(
        self, persistence_id: str, from_seq: int = 1, to_seq: int | None = None
    ) -> AsyncIterator[PersistentRecord]:
        after = read_after("from_seq", from_seq, inclusive=True)
        upper = upper_bound("to_seq", to_seq, optional=True)

        def fetch(cursor: int) -> tuple[list[PersistentRecord], int]:
            # cursor: the next seq to return
            stream = self._streams.get(persistence_id)
            if stream is None:
                return [], cursor
            start = max(cursor, stream.first)
            end = min(upper, stream.highest)
            stop = min(end, start + CHUNK - 1)
            if stop < start:
                return [], cursor
            chunk = stream.records[start - stream.first : stop - stream.first + 1]
            return chunk, stop + 1

        return _Chunked(fetch, after + 1)

    async def highest_seq(self, persistence_id: str) -> int:
        await trio.lowlevel.checkpoint()
        stream = self._streams.get(persistence_id)
        return 0 if stream is None else stream.highest

    async def delete_to(self, persistence_id: str, to_seq: int) -> None:
        bound = upper_bound("to_seq", to_seq)
        await trio.lowlevel.checkpoint_if_cancelled()
        stream = self._streams.get(persistence_id)
        if stream is not None:
            last = min(bound, stream.highest)
            if last >= stream.first:
                deleted = stream.records[: last - stream.first + 1]
                del stream.records[: last - stream.first + 1]
                stream.first = last + 1
                gone = {id(record) for record in deleted}
                for tag in {tag for record in deleted for tag in record.tags}:
                    self._tagged[tag] = [r for r in self._tagged[tag] if id(r) not in gone]
        await trio.lowlevel.cancel_shielded_checkpoint()

    def events_by_tag(self, tag: str, from_offset: int = 0) -> AsyncIterator[PersistentRecord]:
        after = read_after("from_offset", from_offset, inclusive=False)

        def fetch(cursor: int) -> tuple[list[PersistentRecord], int]:
            # cursor: the last offset returned
            records = self._tagged.get(tag, [])
            start = bisect.bisect_right(records, cursor, key=_offset_of)
            chunk = records[start : start + CHUNK]
            return chunk, (chunk[-1].offset if chunk else cursor)

        return _Chunked(fetch, after)

    async def persistence_ids(self) -> list[str]:
        await trio.lowlevel.checkpoint()
        return sorted(self._streams)

    async def highest_offset(self, tag: str | None = None) -> int:
        await trio.lowlevel.checkpoint()
        if tag is not None:
            records = self._tagged.get(tag)
            return records[-1].offset if records else 0
        return max(
            (stream.records[-1].offset for stream in self._streams.values() if stream.records),
            default=0,
        )


def _offset_of(record: PersistentRecord) -> int:
    return record.offset


class InMemorySnapshotStore(SnapshotStore):
    """A :class:`SnapshotStore` held in memory. Saving a snapshot with the id and
    ``seq`` of a stored one replaces it; :meth:`load` returns the one with the highest
    ``seq <= max_seq``."""

    def __init__(self) -> None:
        self._snapshots: dict[str, dict[int, SnapshotRecord]] = {}

    async def save(self, snapshot: SnapshotRecord) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._snapshots.setdefault(snapshot.persistence_id, {})[snapshot.seq] = snapshot
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def load(self, persistence_id: str, max_seq: int | None = None) -> SnapshotRecord | None:
        bound = upper_bound("max_seq", max_seq, optional=True)
        await trio.lowlevel.checkpoint()
        snapshots = self._snapshots.get(persistence_id, {})
        seqs = [seq for seq in snapshots if seq <= bound]
        return snapshots[max(seqs)] if seqs else None

    async def delete(self, persistence_id: str, max_seq: int) -> None:
        bound = upper_bound("max_seq", max_seq)
        await trio.lowlevel.checkpoint_if_cancelled()
        snapshots = self._snapshots.get(persistence_id)
        if snapshots is not None:
            for seq in [seq for seq in snapshots if seq <= bound]:
                del snapshots[seq]
            if not snapshots:
                del self._snapshots[persistence_id]
        await trio.lowlevel.cancel_shielded_checkpoint()
