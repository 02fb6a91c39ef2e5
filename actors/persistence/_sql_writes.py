"""Event writes of the SQL journals: what a queued write carries, and how the writer
stores a run of them in its group transaction with a handful of statements.

A write is queued as data (an :class:`EventWrite`: the rows to insert, their tags, the
persistence id and its seq range), not as a function, so that the writer can store
every write of a group together:

1. the highest seq of every persistence id of the group, as the writer remembers it
   from its earlier groups while no other writer stored an event (:class:`KnownHighest`),
   else read when the transaction begins
   (:meth:`~._sql_dialect.SqlDialect.begin_group`: PostgreSQL sends the read with
   ``BEGIN`` in one round trip when the group writes few ids);
2. the fence, checked in Python against those highest seqs, write after write in queue
   order: a write whose first seq is not the id's highest + 1 fails alone with
   :class:`SequenceConflict` (already stored, or a gap), before anything of it is sent,
   and the writes after it see the highest the accepted ones leave;
3. one insert of the event rows of every accepted write, returning their offsets
   (:meth:`~._sql_dialect.SqlDialect.insert_events`);
4. one insert of their tag rows.

An id's highest seq is that of its highest stored event, or the one kept in
``journal_metadata`` when events are deleted if it is larger: nothing else is written
per write.

The highest seqs are read under the writer's lock (SQLite's write lock, PostgreSQL's
offset lock: see the backends), so no other writer can commit events of those ids
between the read and the commit, and the check in Python is exact; the ``UNIQUE``
constraint still stands behind it. Any error of the database during steps 3 and 4 is
left to the writer, which rolls the group back and runs it again one operation per
savepoint (:mod:`._sql_writer`), calling :func:`store_writes` with one write at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from ._errors import SequenceConflict
from ._group_commit import WriterOp
from ._records import PersistentRecord

if TYPE_CHECKING:
    from ._sql_dialect import SqlConnection, SqlDialect

_C = TypeVar("_C", bound="SqlConnection")


class EventWrite(WriterOp[Any]):
    """The queued write of one checked batch of events of one persistence id: a
    :class:`~._group_commit.WriterOp` whose :attr:`write` is itself, holding the rows
    ready to insert (the columns of :data:`~._sql_dialect.EVENT_COLUMNS` but the offset)
    instead of a function. ``tags`` holds the sorted tags of each row, or ``None`` when
    no row has any. One object per write, with the op's fields: with a thousand persists
    in flight, every object each one keeps alive lengthens the garbage collector's
    passes.

    Build it with :meth:`of_batch` or :meth:`of_event`; each raises :class:`TypeError`
    naming the fields' types if a field is not of its type (nothing is queued)."""

    __slots__ = ("first", "last", "persistence_id", "rows", "tags")

    persistence_id: str
    first: int
    last: int
    rows: tuple[tuple[Any, ...], ...]
    tags: list[list[str]] | None

    @classmethod
    def of_batch(cls, dialect: SqlDialect[Any], batch: Sequence[PersistentRecord]) -> EventWrite:
        """The write of ``batch`` (checked by ``check_batch``: one id, seqs in a run)."""
        encode_tags = dialect.encode_tags
        seal = dialect.integrity.seal_event  # the digest (see _integrity.py)
        blob = dialect.blob or _as_is
        rows = []
        tagged = False
        for r in batch:  # a loop, not a comprehension: no closure cells kept (Python 3.11)
            rows.append(
                (
                    r.persistence_id,
                    r.seq,
                    r.serializer,
                    r.manifest,
                    blob(r.payload),
                    encode_tags(r.tags),
                    r.writer_id,
                    r.timestamp,
                    blob(seal(r)),
                )
            )
            tagged = tagged or bool(r.tags)
        tags = [sorted(r.tags) for r in batch] if tagged else None
        return cls(batch[0].persistence_id, batch[0].seq, batch[-1].seq, tuple(rows), tags)

    @classmethod
    def of_event(
        cls,
        dialect: SqlDialect[Any],
        persistence_id: str,
        seq: int,
        serializer: str,
        manifest: str,
        payload: bytes,
        tags: frozenset[str],
        writer_id: str,
        timestamp: float,
    ) -> EventWrite:
        """The write of one event (seq 1 or more), without a record for it."""
        digest = dialect.integrity.seal_event_fields(
            persistence_id, seq, serializer, manifest, payload, tags, writer_id, timestamp
        )
        blob = dialect.blob
        if blob is not None:
            payload, digest = blob(payload), blob(digest)
        row = (
            persistence_id,
            seq,
            serializer,
            manifest,
            payload,
            dialect.encode_tags(tags),
            writer_id,
            timestamp,
            digest,
        )
        return cls(persistence_id, seq, seq, (row,), [sorted(tags)] if tags else None)

    def __init__(
        self,
        persistence_id: str,
        first: int,
        last: int,
        rows: tuple[tuple[Any, ...], ...],
        tags: list[list[str]] | None,
    ) -> None:
        # (WriterOp.__init__, inline: one call fewer per persist)
        self._what = None
        self.run = None
        self.draws_offsets = True
        self.result = None
        self.error = None
        self.finished = False
        self.waiter = None
        self.persistence_id = persistence_id
        self.first = first
        self.last = last
        self.rows = rows
        self.tags = tags

    @property
    def write(self) -> EventWrite:
        return self

    @property
    def what(self) -> str:
        """The write, for messages: ``write of 'pid' seq 1..3``."""
        return f"write of {self.persistence_id!r} seq {self.first}..{self.last}"


def store_writes(
    dialect: SqlDialect[_C],
    conn: _C,
    ops: Sequence[WriterOp[_C]],
    journal_name: str,
    highest: dict[str, int],
    mark: int | None = None,
) -> int | None:
    """In the writer's thread, inside the group's transaction: store the writes of
    ``ops`` (each has a :class:`EventWrite`) as the module describes, against
    ``highest``: the highest seq of (at least) every id they write, read when the
    transaction began and kept up to date by the runs of writes before these (this
    function updates it once its statements succeeded). Sets each op's ``result`` (its
    offsets) or ``error`` (a :class:`SequenceConflict` from the fence); raises the
    database's error if a statement fails (nothing is assigned or updated then).
    ``mark``: the offset mark as it stands in the transaction, if the caller knows it
    (see ``SqlDialect.insert_events``). Returns the mark after these writes (the last
    offset inserted, or ``mark`` if none was)."""
    accepted, rows, now, refused = check_fence(ops, highest)
    for write, stored in refused:
        write.result = None
        write.error = _conflict(write, stored, journal_name)
    for write in accepted:
        write.error = None
    if not rows:
        return mark
    offsets = consecutive(dialect.insert_events(conn, rows, mark))
    tag_rows: list[tuple[str, int]] = []
    at = 0
    results: list[Sequence[int]] = []
    for write in accepted:
        n = len(write.rows)
        mine = offsets[at : at + n]
        if write.tags is not None:
            tag_rows += [
                (tag, offset) for offset, tags in zip(mine, write.tags, strict=True) for tag in tags
            ]
        results.append(mine)
        at += n
    if tag_rows:
        dialect.executemany(conn, dialect.sql.insert_tag, tag_rows)
    for op, result in zip(accepted, results, strict=True):
        op.result = result
    highest.update(now)
    return offsets[-1]


def consecutive(offsets: Sequence[int]) -> Sequence[int]:
    """``offsets`` (increasing) as a ``range`` if they follow one another, as the
    offsets of a group usually do: the writes' results are then slices of it, which
    the garbage collector does not track. In the writer's thread, a list per write
    of a group of a thousand starts young collections that walk everything the trio
    thread's tasks keep in flight."""
    if offsets and offsets[-1] - offsets[0] == len(offsets) - 1:
        return range(offsets[0], offsets[-1] + 1)
    return offsets


def _as_is(data: bytes) -> bytes:
    return data


def check_fence(
    ops: Sequence[WriterOp[Any]], highest: dict[str, int]
) -> tuple[list[EventWrite], list[tuple[Any, ...]], dict[str, int], list[tuple[EventWrite, int]]]:
    """The fence, write after write in queue order (each op is an event write):
    ``(accepted, their rows, the highest seqs once they are stored, refused)``, where a
    refused write comes with the highest seq it does not continue. ``highest`` holds
    the highest seq of every id (0 if absent); nothing is changed."""
    accepted: list[EventWrite] = []
    rows: list[tuple[Any, ...]] = []
    now: dict[str, int] = {}
    refused: list[tuple[EventWrite, int]] = []
    for write in ops:
        assert isinstance(write, EventWrite)  # (each op is one: no property call per op)
        pid = write.persistence_id
        stored = now.get(pid)
        if stored is None:
            stored = highest.get(pid, 0)
        if write.first != stored + 1:
            refused.append((write, stored))
            continue
        now[pid] = write.last
        accepted.append(write)
        rows.extend(write.rows)
    return accepted, rows, now, refused


def _conflict(write: EventWrite, stored: int, journal_name: str) -> SequenceConflict:
    what = write.what
    pid = write.persistence_id
    if write.first <= stored:
        return SequenceConflict(
            f"{what}: {pid!r} already has events up to seq {stored} in the {journal_name} "
            "(another writer?); nothing was stored"
        )
    return SequenceConflict(
        f"{what}: would leave a gap after seq {stored} of {pid!r} in the {journal_name}; "
        "nothing was stored"
    )


class KnownHighest:
    """What the writer knows of the highest seqs between its groups, to spare a group
    reading them again.

    After each commit it remembers the highest seq of every id the group wrote, and the
    journal's *offset mark* then: the largest offset ever handed out (SQLite's
    AUTOINCREMENT counter, PostgreSQL's identity sequence), which every event insert by
    any writer moves. The next group reads the mark with its ``BEGIN``, under the
    writer's lock: if it has not moved, no other writer (in this process or another)
    has stored an event since, and what the writer remembers is exact; if it has moved,
    everything remembered is dropped and read again. A group that does not commit as
    planned (a failure, a retry with savepoints) drops it too. At most :attr:`LIMIT`
    ids are remembered.
    """

    LIMIT = 65_536

    __slots__ = ("_highest", "_mark")

    def __init__(self) -> None:
        self._highest: dict[str, int] = {}
        self._mark: int | None = None

    def unknown(self, ids: set[str]) -> set[str]:
        """The ids of ``ids`` whose highest seq is not remembered."""
        highest = self._highest
        return ids - highest.keys() if highest else ids

    def recall(self, ids: set[str]) -> tuple[int, dict[str, int]] | None:
        """The offset mark remembered and the highest seq of every id of ``ids``, if
        the writer remembers all of them (else ``None``): valid as long as the mark has
        not moved, which the caller checks under the writer's lock."""
        mark = self._mark
        known = self._highest
        if mark is None or not ids <= known.keys():
            return None
        return mark, {pid: known[pid] for pid in ids}

    def fill(self, mark: int | None, ids: set[str], highest: dict[str, int]) -> set[str]:
        """Given the offset ``mark`` read with ``BEGIN`` and ``highest`` read for the
        unknown ids, add what is remembered of the other ids of ``ids`` to ``highest``
        if the mark has not moved; else forget everything and return the ids still to
        read."""
        known = self._highest
        rest = ids & known.keys() if known else set()
        if mark is None or mark != self._mark:
            self.forget()
            return rest
        for pid in rest:
            highest[pid] = known[pid]
        return set()

    def committed(
        self, mark: int | None, highest: dict[str, int], ops: Sequence[WriterOp[Any]]
    ) -> None:
        """After the group's ``COMMIT``: remember ``highest`` (the highest seqs of the
        ids the group wrote, as its writes left them) and the offset mark now
        (``mark``: the one read with ``BEGIN``, moved by the offsets the group drew;
        ``None`` for a group that drew none: what is remembered stays as it was)."""
        if mark is None:
            return
        known = self._highest
        if len(known) + len(highest) > self.LIMIT:
            known.clear()
        known.update(highest)
        # The group's writes drew their offsets in queue order: the last one stored
        # drew the largest.
        for op in reversed(ops):
            if isinstance(op, EventWrite) and op.error is None and op.result:
                last = op.result[-1]
                if last > mark:
                    mark = last
                break
        self._mark = mark

    def forget(self) -> None:
        self._highest.clear()
        self._mark = None
