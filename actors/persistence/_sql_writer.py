"""The writer side of the SQL journals: one transaction per group of queued operations,
written once over a :class:`~._sql_dialect.SqlDialect`.

:class:`SqlGroupWriter` is the :class:`~._group_commit.GroupCommitWriter` of
:class:`~._sql_journal.SqlJournal`: the writer task hands it each group (whatever was
queued when the previous commit finished), and it runs the group in one transaction,
in the writer's thread, on the writer connection it owns.

Atomicity, per operation
    The operations first run one after the other without savepoints (the common case,
    where none fails: fewer statements per commit). If one fails (a sequence conflict,
    say), the transaction is rolled back and the group runs again with one
    ``SAVEPOINT`` per operation, so that the failing one is rolled back alone and fails
    alone (its error mapped by :meth:`SqlGroupWriter._op_error`: a duplicate seq is a
    :class:`SequenceConflict`, anything else a :class:`JournalFailure`), while the
    others commit. A group of one operation skips the second run: its transaction is
    its savepoint. An operation's ``run`` must therefore have no effect outside the
    transaction (it may run twice).

Failure of the whole group
    If ``BEGIN``, a savepoint or a rollback fails, or the connection is lost during the
    transaction, every operation of the group fails with a :class:`JournalFailure`
    saying that nothing of it was stored. If ``COMMIT`` raises, the dialect says whether
    the outcome is unknown (a lost connection; SQLite in some cases), and the message
    says so. A connection the dialect finds broken is dropped and replaced before the
    next group (once more if ``BEGIN`` finds an idle connection broken: nothing had been
    sent on it).
"""

from __future__ import annotations

from contextlib import suppress
from typing import TypeVar

from ._errors import JournalFailure, SequenceConflict
from ._group_commit import GroupCommitWriter, WriterOp
from ._sql_dialect import SqlConnection, SqlDialect, Statements
from ._sql_writes import EventWrite, KnownHighest, check_fence, consecutive, store_writes

_C = TypeVar("_C", bound=SqlConnection)


class SqlGroupWriter(GroupCommitWriter[_C]):
    """The writer side of a SQL journal over ``dialect``, owning the ``writer``
    connection (already open; replaced when it breaks) and the queue of operations
    (:class:`~._group_commit.WriterQueue`, taken by the writer task)."""

    def __init__(self, dialect: SqlDialect[_C], writer: _C) -> None:
        self._dialect = dialect
        self._sql: Statements = dialect.sql
        #: Where the journal is, for messages (never a password).
        self.where = dialect.where
        self._journal_name = dialect.journal_name
        self._init_writer()
        self._writer: _C | None = writer
        self._known = KnownHighest()
        self._mark: int | None = None  # the offset mark read when the group began

    def _begin(self, draws_offsets: bool, ids: set[str]) -> tuple[_C, dict[str, int]]:
        """In the writer's thread: begin the group's transaction on the writer connection
        (connecting first if there is none or it is broken, and once more if ``BEGIN``
        finds the idle connection broken: nothing was sent on it yet), and get the
        highest seq of the persistence ids ``ids`` the group writes: remembered from
        the previous groups if no other writer stored events since, else read
        (:class:`~._sql_writes.KnownHighest`). Sets :attr:`_mark`."""
        dialect = self._dialect
        known = self._known
        for attempt in (1, 2):
            conn = self._writer
            if conn is None or dialect.is_broken(conn):
                dialect.close(conn)
                self._writer = None
                conn = self._writer = dialect.connect_writer()
            try:
                mark, highest = dialect.begin_group(conn, draws_offsets, known.unknown(ids))
                rest = known.fill(mark, ids, highest)
                if rest:
                    highest.update(dialect.highest_many(conn, rest))
            except dialect.error:
                known.forget()
                if attempt == 2 or not dialect.is_broken(conn):
                    raise
                continue
            self._mark = mark
            return conn, highest
        raise AssertionError("unreachable")  # pragma: no cover

    def _commit_group(self, group: list[WriterOp[_C]]) -> None:
        """In the writer's thread: one transaction for the group, in which an op that
        fails fails alone (see the module's *Atomicity, per operation*). Sets ``result``
        or ``error`` on every op of the group; never raises but for a BaseException."""
        dialect = self._dialect
        draws_offsets = any(op.draws_offsets for op in group)
        ids = {op.persistence_id for op in group if isinstance(op, EventWrite)}
        if len(group) <= dialect.rows_with_begin and self._in_one_round_trip(group, ids):
            return
        try:
            conn, highest = self._begin(draws_offsets, ids)
        except dialect.error as error:
            self._abort_group(group, "begin transaction", error)
            return
        try:
            self._run_ops(conn, group, highest, self._mark)
        except Exception as error:
            if dialect.is_broken(conn):
                # The transaction died with the connection: nothing of it committed.
                self._abort_group(group, "transaction (connection lost)", error)
                return
            if len(group) == 1:
                # The transaction is the op's savepoint: roll it back, the op fails.
                group[0].result = None
                group[0].error = self._op_error(group[0], error)
                self._rollback(conn, group)
                return
            try:
                conn.execute("ROLLBACK")
                conn, highest = self._begin(draws_offsets, ids)
            except dialect.error as retry_error:
                self._abort_group(group, "retry of the group", retry_error)
                return
            self._known.forget()  # (what this retry commits is not remembered)
            self._mark = None
            if not self._run_one_savepoint_each(conn, group, highest):
                return
        if self._commit(conn, group):
            self._known.committed(self._mark, highest, group)
        else:
            self._known.forget()

    def _in_one_round_trip(self, group: list[WriterOp[_C]], ids: set[str]) -> bool:
        """A group of a few event writes without tags, whose ids' highest seqs the
        writer remembers: checked against the fence here, then begun, its offset mark
        read and its rows inserted in one round trip
        (:meth:`~._sql_dialect.SqlDialect.begin_and_insert`), then committed. If the
        mark read is not the one remembered (another writer stored events since), the
        transaction is rolled back and what is remembered forgotten. ``True`` if the
        group was run (its ops have their outcome, as after :meth:`_commit`);
        ``False`` if nothing of it was kept: the usual path runs it then (and gives a
        write that fails the fence its error)."""
        known = self._known
        conn = self._writer
        dialect = self._dialect
        recalled = known.recall(ids)
        if conn is None or recalled is None:
            return False
        mark, highest = recalled
        if any(not isinstance(op, EventWrite) or op.tags is not None for op in group):
            return False
        _, rows, now, refused = check_fence(group, highest)
        if refused or len(rows) > dialect.rows_with_begin or dialect.is_broken(conn):
            return False
        try:
            done = dialect.begin_and_insert(conn, rows)
            if done is not None and done[0] != mark:
                conn.execute("ROLLBACK")  # (another writer stored events since)
                known.forget()
                return False
        except dialect.error:
            known.forget()
            if not dialect.is_broken(conn):
                with suppress(dialect.error):
                    conn.execute("ROLLBACK")  # (what the round trip began, if anything)
            return False
        if done is None:
            return False
        offsets = consecutive(done[1])
        at = 0
        for op in group:
            count = len(op.write.rows)  # type: ignore[union-attr]
            op.result = offsets[at : at + count]
            op.error = None
            at += count
        highest.update(now)
        self._mark = mark
        if self._commit(conn, group):
            known.committed(mark, highest, group)
        else:
            known.forget()
        return True

    def _run_ops(
        self,
        conn: _C,
        ops: list[WriterOp[_C]],
        highest: dict[str, int],
        mark: int | None = None,
    ) -> None:
        """Run ``ops`` in queue order in the open transaction: each run of consecutive
        event writes together (:func:`~._sql_writes.store_writes`, given and updating
        ``highest``, the highest seqs read when the transaction began), any other op
        alone. ``mark``: the offset mark read when the transaction began, if nothing
        has run in it since (the runs of writes pass it on; any other op may move it).
        Raises the first error of the database (or of an op's ``run``)."""
        start = 0
        count = len(ops)
        while start < count:
            op = ops[start]
            if not isinstance(op, EventWrite):
                assert op.run is not None
                op.result = op.run(conn)
                mark = None
                start += 1
                continue
            end = start + 1
            while end < count and isinstance(ops[end], EventWrite):
                end += 1
            mark = store_writes(
                self._dialect, conn, ops[start:end], self._journal_name, highest, mark
            )
            start = end

    def _run_one_savepoint_each(
        self, conn: _C, group: list[WriterOp[_C]], highest: dict[str, int]
    ) -> bool:
        """Run every op of the group in a savepoint of its own; ``False`` if the
        transaction itself broke (every op then has its error)."""
        dialect = self._dialect
        for op in group:
            op.result = None
            try:
                conn.execute("SAVEPOINT op")
            except dialect.error as error:
                self._abort_group(group, "savepoint", error)
                return False
            try:
                self._run_ops(conn, [op], highest)
                conn.execute("RELEASE SAVEPOINT op")
            except Exception as error:
                op.result = None
                op.error = self._op_error(op, error)
                if dialect.is_broken(conn):
                    self._abort_group(group, "transaction (connection lost)", error)
                    return False
                try:
                    conn.execute("ROLLBACK TO SAVEPOINT op")
                    conn.execute("RELEASE SAVEPOINT op")
                except dialect.error as rollback_error:
                    self._abort_group(group, "rollback to savepoint", rollback_error)
                    return False
        return True

    def _commit(self, conn: _C, group: list[WriterOp[_C]]) -> bool:
        """Commit the group (or roll it back if every op failed); whether it committed."""
        if all(op.error is not None for op in group):
            self._rollback(conn, group)  # every op failed: nothing to commit
            return False
        try:
            conn.execute("COMMIT")
        except self._dialect.error as error:
            unknown = self._dialect.commit_unknown(conn)
            self._abort_group(group, "commit", error, unknown=unknown)
            return False
        return True

    def _rollback(self, conn: _C, group: list[WriterOp[_C]]) -> None:
        try:
            conn.execute("ROLLBACK")
        except self._dialect.error as error:
            self._abort_group(group, "rollback", error)

    def _op_error(self, op: WriterOp[_C], error: Exception) -> Exception:
        if isinstance(error, JournalFailure):
            return error
        if self._dialect.is_conflict(error):
            conflict = SequenceConflict(
                f"{op.what}: sequence number already stored in the {self._journal_name}; "
                "nothing of the batch was stored"
            )
            conflict.__cause__ = error
            return conflict
        return self._failure(op.what, error)

    def _abort_group(
        self,
        group: list[WriterOp[_C]],
        what: str,
        error: BaseException,
        *,
        unknown: str | None = None,
    ) -> None:
        """Fail every op of the group that has no error yet (``unknown``: why the
        outcome is unknown); roll back if the connection is alive, else drop it (the
        next group reconnects). What the writer remembered of the highest seqs is
        dropped."""
        self._known.forget()
        dialect = self._dialect
        conn = self._writer
        if conn is not None:
            if dialect.is_broken(conn):
                dialect.close(conn)
                self._writer = None
            elif dialect.in_transaction(conn):
                try:
                    conn.execute("ROLLBACK")
                except dialect.error:
                    dialect.close(conn)
                    self._writer = None
        if unknown is not None:
            detail = f"{unknown}, outcome unknown"
        else:
            detail = f"{what}; nothing of it was stored"
        for op in group:
            if op.error is None:
                op.result = None
                op.error = self._failure(f"{op.what} ({detail})", error)

    def _failure(self, what: str, error: BaseException) -> JournalFailure:
        failure = JournalFailure(f"{what} failed on {self.where}: {error}")
        failure.__cause__ = error
        return failure
