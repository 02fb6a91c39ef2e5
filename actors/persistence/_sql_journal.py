"""The journal and snapshot store on a SQL database, written once for SQLite and
PostgreSQL over a :class:`~._sql_dialect.SqlDialect`.

Writes
    Every write (``write``, ``delete_to``, snapshot ``save``/``delete``, and the read done
    by ``highest_seq``) is queued to ONE writer task per journal (natural group commit,
    see :mod:`._group_commit`), which runs each group in one transaction in a thread,
    an operation that fails failing alone (see :mod:`._sql_writer`). Each caller is
    woken only after the ``COMMIT`` returned.

Failures
    Any error of the driver becomes :class:`JournalFailure` naming the operation and
    where the journal is (the dialect's ``where``), with the driver's error as
    ``__cause__``; a duplicate ``(persistence_id, seq)`` becomes
    :class:`SequenceConflict`. A read that found its pooled connection broken is
    retried once on a new one (reads are idempotent).

Reads
    Replays and queries run in threads on a small pool of read connections separate from
    the writer's, at most ``max_readers`` at a time. They read ``chunk_size`` rows per
    query with keyset pagination (:mod:`._paging`), so memory does not grow with the
    number of events, and no connection is held while the caller consumes a chunk.

Integrity
    Every event and snapshot is written with a digest (a checksum, or a signature with
    the journal's key: the dialect's :class:`~._integrity.Integrity`), and every read
    checks it before the record is given: :class:`RecordCorrupt` naming the record
    otherwise (see :mod:`._integrity`). An existing journal of an older schema version
    is upgraded when it is opened (:func:`install_schema`).

Bounds
    Every bound of a read or a delete goes through :func:`~._journal.read_after` or
    :func:`~._journal.upper_bound` (the rule of :class:`Journal`), so that no bound
    can overflow the database's 64-bit integers.

Cancellation
    Cancelling a caller does not cancel its operation: it stays queued and may commit,
    so the outcome of a cancelled write is unknown (recover by reading ``highest_seq``).
    The writer task is shielded from the scopes around :func:`serving`: leaving the
    block (normally, by an error or by a cancellation alike) stops accepting operations
    and commits every one already queued, so that an actor system opened inside the
    block shuts down in order with its journal still working. Only a drain that outlasts
    its deadline (30 s: a database that hangs) abandons the group in flight (its thread
    finishes on its own; its operations fail with :class:`JournalFailure`, outcome
    unknown) and fails what is still queued (nothing stored); none is silently dropped.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import trio

from .._interrupts import interrupt_in
from ._errors import JournalFailure, SequenceConflict
from ._group_commit import WriterOp, check_batch
from ._journal import Journal, SnapshotStore, TaggedRow, read_after, upper_bound
from ._paging import CheckedChunks, PageChunks, Pages, ReadPage, page_reader
from ._records import PersistentRecord, SnapshotRecord
from ._sql_dialect import SqlConnection, SqlDialect
from ._sql_writer import SqlGroupWriter
from ._sql_writes import EventWrite

_C = TypeVar("_C", bound=SqlConnection)
_T = TypeVar("_T")
_J = TypeVar("_J", bound="SqlJournal[Any]")


class SqlJournal(SqlGroupWriter[_C], Journal):
    """The :class:`Journal` on a SQL database, over ``dialect``; made (with its writer
    connection, already open on a created schema) by ``open_sqlite_journal`` or
    ``open_postgres_journal``, which run it in :func:`serving`.

    A batch whose seqs do not continue from the highest stored one (a seq already
    stored or deleted, a gap, seqs within the batch not consecutive or below 1) raises
    :class:`SequenceConflict` and stores nothing, also when another process wrote them;
    a batch with records of two persistence ids raises :class:`ValueError` (nothing
    queued). Bounds follow the rule of :class:`Journal`. Every operation is a trio
    checkpoint. The writer task, its queue and the counters :attr:`transactions` and
    :attr:`ops_acknowledged` come from :class:`GroupCommitWriter`.
    """

    def __init__(
        self, dialect: SqlDialect[_C], writer: _C, chunk_size: int, max_readers: int
    ) -> None:
        super().__init__(dialect, writer)
        self._chunk_size = chunk_size
        self._readers: list[_C] = []
        self._reader_limit = trio.CapacityLimiter(max_readers)
        self._shut = False

    # -- the read side ------------------------------------------------------------------

    async def _read(self, what: str, query: Callable[[_C], _T]) -> _T:
        async with self._reader_limit:
            if self._shut:
                raise JournalFailure(f"{what}: the {self._journal_name} is closed")
            return await trio.to_thread.run_sync(self._read_in_thread, what, query)

    def _read_in_thread(self, what: str, query: Callable[[_C], _T]) -> _T:
        """Run ``query`` on an idle read connection (or a new one). A pooled connection
        found broken is replaced and the query retried once (reads are idempotent)."""
        dialect = self._dialect
        while True:
            reused = bool(self._readers)
            try:
                conn = self._readers.pop() if reused else dialect.connect_reader()
            except dialect.error as error:
                raise self._failure(f"{what} (connect)", error) from error
            try:
                result = query(conn)
            except dialect.error as error:
                broken = dialect.is_broken(conn)
                dialect.close(conn)
                if reused and broken:
                    continue
                raise self._failure(what, error) from error
            except BaseException:
                dialect.close(conn)
                raise
            if self._shut:
                dialect.close(conn)
            else:
                self._readers.append(conn)
            return result

    def _close_connections(self) -> None:
        """In a thread, once the writer has ended: close every connection; later reads
        raise :class:`JournalFailure`."""
        self._shut = True
        while self._readers:
            self._dialect.close(self._readers.pop())
        self._dialect.close(self._writer)
        self._writer = None

    def _pages(self, what: str, statement: Any, key: Any, *bounds: Any) -> ReadPage:
        """Reads one page of a keyset-paginated query: ``statement`` with the parameters
        ``(key, after, *bounds, chunk_size)``, on a read connection."""
        limit = self._chunk_size
        fetch = self._dialect.fetch_all

        def query(conn: _C, after: int) -> list[Any]:
            return fetch(conn, statement, (key, after, *bounds, limit))

        return page_reader(self._read, what, query)

    def _record(self, row: Sequence[Any]) -> PersistentRecord:
        """The record of an event row (:data:`EVENT_COLUMNS`), its digest checked first:
        :class:`RecordCorrupt` naming it if it is refused (see :mod:`._integrity`)."""
        offset, pid, seq, serializer, manifest, payload, tags, writer_id, timestamp, digest = row
        dialect = self._dialect
        if digest is not None or dialect.integrity.key is not None:
            dialect.integrity.check_event(
                digest,
                pid,
                seq,
                serializer,
                manifest,
                payload,
                dialect.tags_text(tags),
                writer_id,
                timestamp,
                offset,
            )
        return PersistentRecord(
            persistence_id=pid,
            seq=seq,
            serializer=serializer,
            manifest=manifest,
            payload=bytes(payload),
            tags=self._dialect.decode_tags(tags),
            writer_id=writer_id,
            timestamp=timestamp,
            offset=offset,
        )

    # -- the Journal contract -----------------------------------------------------------

    async def write(self, batch: Sequence[PersistentRecord]) -> list[int]:
        """Store ``batch`` atomically and return its offsets once committed.

        On failure nothing of the batch is stored (:class:`SequenceConflict` for a seq
        already stored or a gap, :class:`JournalFailure` otherwise), except for a
        ``COMMIT`` whose :class:`JournalFailure` says the outcome is unknown. On
        cancellation the outcome is unknown: the batch may have been committed."""
        await trio.lowlevel.checkpoint_if_cancelled()
        if not batch:
            await trio.lowlevel.checkpoint()
            return []
        try:
            check_batch(batch)
        except (ValueError, SequenceConflict):
            await trio.lowlevel.checkpoint()
            raise
        op = self._queue(EventWrite.of_batch(self._dialect, batch))
        # What _wait does, inline: one coroutine object fewer per write in flight.
        if op.finished:
            await trio.lowlevel.checkpoint()
        else:
            op.waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(op)
        if op.error is not None:
            raise op.error
        return list(op.result)  # (a range, or a list, made in the writer's thread)

    def _group_committed(self, group: list[WriterOp[_C]]) -> None:
        """Wake the readers waiting for a commit (``wait_for_commit``) once a group
        stored events: once per group, not per write."""
        if any(op.draws_offsets and op.error is None for op in group):
            self._committed()

    def replay(
        self, persistence_id: str, from_seq: int = 1, to_seq: int | None = None
    ) -> AsyncIterator[PersistentRecord]:
        """Stored events in ``seq`` order, read ``chunk_size`` at a time (keyset
        pagination on ``seq``; no connection is held between chunks, so stopping early
        needs no clean-up). Raises :class:`JournalFailure` if a chunk cannot be read."""
        after = read_after("from_seq", from_seq, inclusive=True)
        upper = upper_bound("to_seq", to_seq, optional=True)
        pages = self._pages(
            f"replay of {persistence_id!r}", self._sql.replay, persistence_id, upper
        )
        return Pages(pages, after, 2, self._chunk_size, self._record)

    def replay_chunks(
        self, persistence_id: str, from_seq: int = 1
    ) -> AsyncIterator[list[tuple[int, str, str, bytes]]]:
        """The fast path of recovery: pages of ``(seq, serializer, manifest, payload)``
        rows in ``seq`` order, ``chunk_size`` rows per page, without building records.
        Every row of a page is checked before the page is given (:class:`RecordCorrupt`
        naming the first one refused; the rows before it in that page are not given)."""
        after = read_after("from_seq", from_seq, inclusive=True)
        pages = self._pages(f"replay of {persistence_id!r}", self._sql.replay_rows, persistence_id)
        chunk = self._dialect.integrity.event_chunk
        tags_text = self._dialect.tags_text

        def checked(rows: list[Any]) -> list[Any]:
            return chunk(persistence_id, rows, tags_text)

        return PageChunks(pages, after, 0, self._chunk_size, checked)

    async def highest_seq(self, persistence_id: str) -> int:
        """The highest seq ever stored (0 if none). Goes through the writer queue, so it
        answers after every write queued before it has finished."""
        statement = self._sql.highest

        def run(conn: _C) -> int:
            found = conn.execute(statement, (persistence_id, persistence_id)).fetchone()
            return int(found[0]) if found and found[0] is not None else 0

        await trio.lowlevel.checkpoint_if_cancelled()
        result: int = await self._wait(self._submit(f"highest_seq of {persistence_id!r}", run))
        return result

    async def delete_to(self, persistence_id: str, to_seq: int) -> None:
        """Delete events with ``seq <= to_seq`` (and their tag rows) in the writer queue;
        the highest seq is kept in ``journal_metadata`` first, in the same transaction.
        On cancellation the outcome is unknown."""
        bound = upper_bound("to_seq", to_seq)
        statements = self._sql

        def run(conn: _C) -> None:
            conn.execute(statements.keep_highest, (persistence_id,))
            conn.execute(statements.delete_tags, (persistence_id, bound))
            conn.execute(statements.delete_events, (persistence_id, bound))

        await trio.lowlevel.checkpoint_if_cancelled()
        await self._wait(self._submit(f"delete of {persistence_id!r} to seq {to_seq}", run))

    def events_by_tag(self, tag: str, from_offset: int = 0) -> AsyncIterator[PersistentRecord]:
        """Events tagged ``tag`` with ``offset > from_offset`` in offset (= commit)
        order, read ``chunk_size`` at a time (keyset pagination on the offset)."""
        after = read_after("from_offset", from_offset, inclusive=False)
        pages = self._pages(f"events_by_tag {tag!r}", self._sql.by_tag, tag)
        return Pages(pages, after, 0, self._chunk_size, self._record)

    def events_by_tag_chunks(
        self, tag: str, from_offset: int = 0
    ) -> AsyncIterator[list[TaggedRow]]:
        """The fast path of tag readers (projections): pages of rows (a record's fields
        in its order) in offset order, ``chunk_size`` rows per query, without building
        records. Every row is checked before it is given, in one loop per page
        (:meth:`Integrity.tagged_chunk`); at a row refused, the rows before it come
        first, then :class:`RecordCorrupt` naming it."""
        after = read_after("from_offset", from_offset, inclusive=False)
        pages = self._pages(f"events_by_tag {tag!r}", self._sql.by_tag_rows, tag)
        chunk = self._dialect.integrity.tagged_chunk
        tags_text, decode_tags = self._dialect.tags_text, self._dialect.decode_tags

        def checked(rows: list[Any], start: int) -> tuple[list[Any], int]:
            return chunk(rows, start, tags_text, decode_tags)

        return CheckedChunks(pages, after, 8, self._chunk_size, checked)

    async def persistence_ids(self) -> list[str]:
        """Every id with an event ever stored (deleted ones included), sorted (by code
        point)."""
        statement = self._sql.persistence_ids

        def query(conn: _C) -> list[str]:
            return [row[0] for row in conn.execute(statement).fetchall()]

        return await self._read("persistence_ids", query)

    async def highest_offset(self, tag: str | None = None) -> int:
        """The highest offset of a stored event tagged ``tag`` (any event: ``None``), 0
        if none; read on a read connection (what was committed when it ran)."""
        params: tuple[str, ...]
        if tag is None:
            statement, params = self._sql.highest_offset, ()
        else:
            statement, params = self._sql.highest_tag_offset, (tag,)

        def query(conn: _C) -> int:
            found = conn.execute(statement, params).fetchone()
            return int(found[0]) if found and found[0] is not None else 0

        what = "highest_offset" if tag is None else f"highest_offset of tag {tag!r}"
        return await self._read(what, query)

    async def close(self) -> None:
        """Stop accepting operations (they raise :class:`JournalFailure`) and wait until
        the writer has committed or failed everything already queued. The connections are
        closed when the journal's ``open_*`` block exits."""
        await self._close_writer()


def event_queue(journal: Journal) -> Callable[..., EventWrite] | None:
    """For a SQL journal whose ``write`` is the one defined here (a subclass that
    overrides ``write`` is written to through it; any other journal: ``None``): a
    function that queues the write of one event, given the fields of
    :meth:`EventWrite.of_event <._sql_writes.EventWrite.of_event>` but the dialect, and
    returns it without waiting. The path of ``PersistentActor.persist``, which builds
    no record for the event: the caller waits as :meth:`SqlJournal.write` does, then
    calls ``_committed`` if it succeeded. It raises :class:`JournalFailure` if the
    journal is closed and :class:`TypeError` for a field of the wrong type; nothing is
    queued then."""
    if not (isinstance(journal, SqlJournal) and type(journal).write is SqlJournal.write):
        return None
    dialect = journal._dialect
    queue = journal._queue
    of_event = EventWrite.of_event

    def queue_event(*fields: Any) -> EventWrite:
        return queue(of_event(dialect, *fields))

    return queue_event


class SqlSnapshotStore(SnapshotStore):
    """The :class:`SnapshotStore` on the database of a :class:`SqlJournal`; saves and
    deletes go through the journal's writer queue (durable when they return; on
    cancellation the outcome is unknown), loads run on the read connections. Errors are
    :class:`JournalFailure` naming where the journal is; ``max_seq`` follows the bounds
    rule of :class:`SnapshotStore`."""

    def __init__(self, journal: SqlJournal[Any]) -> None:
        self._journal = journal

    async def save(self, snapshot: SnapshotRecord) -> None:
        """Store ``snapshot`` durably, replacing one with the same id and seq."""
        row = (
            snapshot.persistence_id,
            snapshot.seq,
            snapshot.serializer,
            snapshot.manifest,
            snapshot.payload,
            snapshot.timestamp,
            self._journal._dialect.integrity.seal_snapshot(snapshot),
        )
        statement = self._journal._sql.save_snapshot

        def run(conn: SqlConnection) -> None:
            conn.execute(statement, row)

        what = f"snapshot save of {snapshot.persistence_id!r} at seq {snapshot.seq}"
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._journal._wait(self._journal._submit(what, run))

    async def load(self, persistence_id: str, max_seq: int | None = None) -> SnapshotRecord | None:
        """The newest snapshot with ``seq <= max_seq`` (``None``: any), or ``None``."""
        upper = upper_bound("max_seq", max_seq, optional=True)
        statement = self._journal._sql.load_snapshot

        def query(conn: SqlConnection) -> Any:
            return conn.execute(statement, (persistence_id, upper)).fetchone()

        row = await self._journal._read(f"snapshot load of {persistence_id!r}", query)
        if row is None:
            return None
        pid, seq, serializer, manifest, payload, timestamp, digest = row
        self._journal._dialect.integrity.check_snapshot(
            digest, pid, seq, serializer, manifest, payload, timestamp
        )
        return SnapshotRecord(pid, seq, serializer, manifest, bytes(payload), timestamp)

    async def delete(self, persistence_id: str, max_seq: int) -> None:
        """Delete the snapshots with ``seq <= max_seq`` (durable when it returns)."""
        bound = upper_bound("max_seq", max_seq)
        statement = self._journal._sql.delete_snapshots

        def run(conn: SqlConnection) -> None:
            conn.execute(statement, (persistence_id, bound))

        what = f"snapshot delete of {persistence_id!r} to seq {max_seq}"
        await trio.lowlevel.checkpoint_if_cancelled()
        await self._journal._wait(self._journal._submit(what, run))


def install_schema(
    dialect: SqlDialect[_C],
    conn: _C,
    schema: Sequence[Any],
    version: int,
    *,
    create: bool,
    where: str,
) -> None:
    """In a thread, on a new writer connection: in one transaction (begun as a group
    that draws offsets, so that processes opening at once take turns), run the
    ``schema`` statements (``CREATE ... IF NOT EXISTS``), then record ``version`` in a
    new journal or check that an existing one has it; an existing journal of an older
    version (1 and up) is upgraded to ``version`` in the same transaction, one version
    at a time (:meth:`SqlDialect.upgrade`). :class:`JournalFailure` naming
    ``where`` for an unsupported version, or for a database without a journal when
    ``create`` is false (nothing is committed then); the driver's error if the database
    fails. The caller closes ``conn`` on failure, which rolls the transaction back."""
    dialect.begin(conn, True)
    for statement in schema:
        conn.execute(statement)
    found = [row[0] for row in conn.execute(dialect.sql.schema_version).fetchall()]
    if not found and not create:
        raise JournalFailure(f"{where} holds no journal (create=False)")
    if not found:
        conn.execute(dialect.sql.insert_version, (version,))
    elif len(found) == 1 and 1 <= found[0] < version:
        for old in range(found[0], version):
            dialect.upgrade(conn, old)
        conn.execute(dialect.sql.set_version, (version,))
    elif found != [version]:
        raise JournalFailure(
            f"unsupported schema version {found} in {where} (this code reads {version}, "
            "and upgrades older versions from 1)"
        )
    conn.execute("COMMIT")


@asynccontextmanager
async def serving(journal: _J) -> AsyncIterator[_J]:
    """Run ``journal``'s writer task for the time of the block (which gets the journal).

    The writer is shielded from the cancellation of the scopes around the block, so the
    journal outlives what uses it inside the block: an actor system opened there shuts
    down in order (shielded, also when the block is cancelled) with a working journal.
    On exit, normal, by an exception or by a cancellation alike, the journal stops
    accepting operations (later ones raise :class:`JournalFailure`) and everything
    already queued is committed before this returns. If that takes more than 30 s (a
    database that hangs), the group in flight is failed with :class:`JournalFailure`
    (outcome unknown) and what is still queued too (nothing stored), each naming that
    deadline. Then the connections are closed, in a thread, shielded and bounded (30 s
    more), so that no exit hangs (an abandoned close still finishes in its thread, once
    an abandoned commit has).

    An exception from the block, ``Cancelled``, ``KeyboardInterrupt`` and
    :class:`~actors.UnhandledFailure` included, comes out as itself, not in an exception
    group. Only if the writer task itself crashed does its error win (with a note naming
    the block's); a ``KeyboardInterrupt`` or ``SystemExit`` in it comes out as itself."""
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(journal._run_writer)
                yield journal
            except BaseException as error:
                # Re-raised below, outside the nursery, so that it is not wrapped in an
                # exception group.
                body_error = error
            finally:
                # Synchronous: the writer commits what is queued and ends, by its deadline.
                journal._stop_accepting()
    except BaseException as crash:
        # The writer task raised (a bug, or Ctrl-C landing in it): that wins, a
        # KeyboardInterrupt or SystemExit in it out as itself, but the block's own error
        # must not vanish with it.
        interrupt = interrupt_in(crash)
        raised = crash if interrupt is None else interrupt
        if body_error is not None and body_error is not crash:
            raised.add_note(
                f"the block serving the {journal._journal_name} had raised {body_error!r}"
            )
        if raised is not crash:
            raise raised from None
        raise
    finally:
        lock = journal._writer_lock

        def close() -> None:
            with lock:  # a commit abandoned past the deadline still uses the writer connection
                journal._close_connections()

        with trio.move_on_after(30) as scope:
            scope.shield = True
            await trio.to_thread.run_sync(close, abandon_on_cancel=True)
    if body_error is not None:
        raise body_error
