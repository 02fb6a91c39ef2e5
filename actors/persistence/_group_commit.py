"""The single writer task with natural group commit, shared by the SQLite and PostgreSQL
journals.

A journal queues every write as a :class:`WriterOp` on a :class:`WriterQueue` to ONE
writer task. Whenever the previous commit has finished, the writer takes everything
queued (no timer ever waits for more work) and hands the group to the backend's
``_commit_group``, run in a thread: the backend (:mod:`._sql_writer`) runs one
transaction for the group, in which an operation that fails fails alone, and sets each
op's ``result`` or ``error``. Callers are woken once the group's thread has returned, i.e. after the
``COMMIT``, by a callback in the trio thread rather than by a step of the writer task
(see :class:`_Flight`). The writer task is shielded from the cancellation of the scopes
around it: it ends once the journal stops accepting and its queue is drained, within a
drain deadline (see :meth:`GroupCommitWriter._run_writer`).
"""

from __future__ import annotations

import abc
import collections
import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import trio

from ._errors import JournalFailure, SequenceConflict
from ._records import PersistentRecord

if TYPE_CHECKING:
    from outcome import Outcome

    from ._sql_writes import EventWrite

_C = TypeVar("_C")
_O = TypeVar("_O", bound="WriterOp[Any]")


def check_batch(batch: Sequence[PersistentRecord]) -> None:
    """Check a non-empty batch before it is queued: one persistence id (else
    :class:`ValueError`), and seqs from 1 up that run on without a gap (else
    :class:`SequenceConflict`); nothing is stored either way."""
    pid = batch[0].persistence_id
    first = batch[0].seq
    for record in batch:
        if record.persistence_id != pid:
            raise ValueError(
                f"a batch holds the events of one persistence_id, got {pid!r} and "
                f"{record.persistence_id!r}; nothing was stored"
            )
    for index, record in enumerate(batch):
        if record.seq != first + index or record.seq < 1:
            raise SequenceConflict(
                f"write of {pid!r}: the sequence numbers of a batch start at 1 or more "
                f"and run on without a gap, got {[r.seq for r in batch]}; nothing was "
                "stored"
            )


class WriterOp(Generic[_C]):
    """One queued writer operation: ``run``, a function that executes in the writer's
    thread, inside the group transaction (and, if an operation of the group failed, in
    a savepoint of its own: it may run twice, so it has no effect outside the
    transaction), given the backend's connection. An event write is the subclass
    :class:`~._sql_writes.EventWrite`, which carries its rows instead of a function, so
    that the backend stores every write of a group together; :attr:`write` is that
    object itself (``None`` for a plain operation). ``draws_offsets`` says that it
    inserts events (a backend may need to prepare the transaction for that).

    The backend sets ``result`` or ``error`` in the group's thread; when the thread
    has returned, :meth:`finish` is called in the trio thread and wakes the task waiting
    for the op (rescheduled directly: no event object per operation). The op is its own
    abort function for that wait (calling it with trio's ``raise_cancel`` forgets the
    waiter), so a wait allocates nothing."""

    __slots__ = ("_what", "draws_offsets", "error", "finished", "result", "run", "waiter")

    def __init__(
        self, what: str | None, run: Callable[[_C], Any] | None, draws_offsets: bool = False
    ) -> None:
        self._what = what
        self.run = run
        self.draws_offsets = draws_offsets
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False
        self.waiter: trio.lowlevel.Task | None = None

    @property
    def write(self) -> EventWrite | None:
        """The event write this op is (see :class:`~._sql_writes.EventWrite`), or
        ``None``."""
        return None

    @property
    def what(self) -> str:
        """The operation, for messages."""
        return self._what or "operation"

    def finish(self) -> None:
        """Acknowledge the operation (its ``result`` or ``error`` is set) and wake its
        waiter, if one still waits. In the trio thread; idempotent."""
        self.finished = True
        task = self.waiter
        if task is not None:
            self.waiter = None
            trio.lowlevel.reschedule(task)

    def __call__(self, raise_cancel: Any) -> trio.lowlevel.Abort:
        self.waiter = None  # cancelled: the operation stays queued, its outcome unknown
        return trio.lowlevel.Abort.SUCCEEDED


class WriterQueue(Generic[_O]):
    """The writer's queue: operations in the order they were queued, and the one task
    that takes them (the writer) parked while it is empty. A plain deque, not a memory
    channel: a queued persist costs an append and, when the writer waits, one
    reschedule. Closing it ends :meth:`first` once it is empty; nothing checks
    :meth:`put` against a closed queue (the journal refuses first)."""

    __slots__ = ("_closed", "_items", "_waiter")

    def __init__(self) -> None:
        self._items: collections.deque[_O] = collections.deque()
        self._closed = False
        self._waiter: trio.lowlevel.Task | None = None

    def put(self, op: _O) -> None:
        self._items.append(op)
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)

    async def first(self) -> _O | None:
        """The first operation queued, waiting for one; ``None`` once the queue is
        closed and empty. A checkpoint for cancellation (raises ``Cancelled`` when the
        scope around it is cancelled, even with operations queued: they stay queued)."""
        await trio.lowlevel.checkpoint_if_cancelled()
        items = self._items
        while not items:
            if self._closed:
                return None
            self._waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(self._abort)
        return items.popleft()

    def take_all(self) -> list[_O]:
        """Every operation queued now, in order (the queue is then empty)."""
        items = list(self._items)
        self._items.clear()
        return items

    def _abort(self, _: object) -> trio.lowlevel.Abort:
        self._waiter = None
        return trio.lowlevel.Abort.SUCCEEDED


class GroupCommitWriter(abc.ABC, Generic[_C]):
    """The writer side of a journal, as a base class: the queue, the writer task's loop
    and the draining on exit. The backend implements :meth:`_commit_group` and names
    itself in :attr:`_journal_name` (for messages: ``"SQLite journal /path"``), calls
    :meth:`_init_writer` in its constructor, and runs :meth:`_run_writer` in a nursery.

    :attr:`transactions` counts the transactions run by the writer (including empty ones)
    and :attr:`ops_acknowledged` the operations acknowledged (committed or failed); with
    group commit the first grows more slowly than the second. For tests and monitoring.
    """

    _journal_name: str
    transactions: int
    ops_acknowledged: int

    def _init_writer(self) -> None:
        self._ops: WriterQueue[WriterOp[_C]] = WriterQueue()
        self._closed = False
        self._writer_done = trio.Event()
        self.transactions = 0
        self.ops_acknowledged = 0

    @abc.abstractmethod
    def _commit_group(self, group: list[WriterOp[_C]]) -> None:
        """In the writer's thread: one transaction for ``group``, in which an operation
        that fails fails alone; set ``result`` or ``error`` on every op. Never raises."""

    def _group_committed(self, group: list[WriterOp[_C]]) -> None:
        """In the trio thread, once a group's thread has returned and its operations are
        acknowledged: a hook for the journal (wake its readers). The default does
        nothing. Must not raise."""

    def _submit(
        self, what: str, run: Callable[[_C], Any], *, draws_offsets: bool = False
    ) -> WriterOp[_C]:
        """Queue the operation ``run`` (described as ``what``); see :meth:`_queue`."""
        return self._queue(WriterOp(what, run, draws_offsets))

    def _queue(self, op: _O) -> _O:
        """Queue ``op`` and return it. Raises :class:`JournalFailure` if the journal is
        closed (nothing is queued then)."""
        if self._closed:
            raise JournalFailure(f"{op.what}: the {self._journal_name} is closed")
        self._ops.put(op)
        return op

    async def _wait(self, op: WriterOp[_C]) -> Any:
        """Wait until ``op`` was acknowledged; return its result or raise its error. If
        cancelled, the op stays queued: its outcome is unknown to the caller."""
        if op.finished:
            await trio.lowlevel.checkpoint()
        else:
            op.waiter = trio.lowlevel.current_task()
            await trio.lowlevel.wait_task_rescheduled(op)
        if op.error is not None:
            raise op.error
        return op.result

    async def _run_writer(
        self,
        *,
        drain_timeout: float = 30.0,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The one writer task (start it with ``nursery.start``): commit whatever is
        queued, group by group, until the journal stops accepting
        (:meth:`_stop_accepting`) and the queue is empty.

        One group is in flight at a time, in a thread of trio's thread cache. When its
        thread returns, a callback in the trio thread acknowledges its operations at
        once (their waiters are woken there, not by a step of this task), and the task,
        which went back to wait for the queue meanwhile, starts the next group as soon
        as an operation is queued: a lone writer's commit costs as many task steps as a
        plain ``trio.to_thread.run_sync`` of it.

        It runs shielded: cancelling the scopes around it does not stop it, so that the
        journal outlives whatever still uses it while it shuts down (an actor system's
        ordered shutdown), and every operation queued before the journal stopped
        accepting is committed, whether the owner leaves by a normal exit, an error or a
        cancellation. Its only deadline is ``drain_timeout`` seconds after the journal
        stops accepting: past it (a database that hangs), the group in flight is failed
        with :class:`JournalFailure` saying that its outcome is unknown (its thread is
        abandoned, and finishes on its own), every op still queued is failed with
        :class:`JournalFailure` saying that nothing of it was stored, and the task ends.
        Each group's thread holds :attr:`_writer_lock` while it runs, so that closing the
        connections can wait for an abandoned one. If a group's thread raises (a
        ``BaseException``: ``_commit_group`` handles the rest), the group fails, the
        journal stops accepting and the task raises it."""
        self._drain_timeout = drain_timeout
        self._writer_lock = threading.Lock()
        flight: _Flight[_C] | None = None
        group: list[WriterOp[_C]] = []
        with trio.CancelScope(shield=True) as scope:
            self._writer_scope = scope
            if self._closed:  # it stopped accepting before the writer started
                scope.deadline = trio.current_time() + drain_timeout
            task_status.started()
            ops = self._ops
            try:
                while (first := await ops.first()) is not None:
                    group = [first]
                    if flight is not None and not flight.done:
                        # (only the drain deadline can cancel this: the scope is shielded)
                        await flight.wait()
                    if flight is not None and flight.broken is not None:
                        break
                    group += ops.take_all()
                    flight = _Flight(self, group)
                    group = []
                if flight is not None and not flight.done:
                    await flight.wait()
                if flight is not None and flight.broken is not None:
                    raise flight.broken
            finally:
                late = scope.cancel_called
                deadline = f"the drain deadline ({drain_timeout:g} s after it closed)"
                in_flight: list[WriterOp[_C]] = []
                if flight is not None:
                    flight.abandoned = True  # (if it has not landed yet: ignored when it does)
                    in_flight = flight.group
                for op in group:
                    if not op.finished:  # taken from the queue, never sent to the database
                        when = f"reached {deadline}" if late else "stopped"
                        op.error = JournalFailure(
                            f"{op.what}: the {self._journal_name} {when} before this "
                            "operation ran; nothing was stored"
                        )
                        op.finish()
                for op in in_flight:
                    # The drain deadline passed during the group's transaction, or the
                    # writer itself broke mid-group: its fate is not known here.
                    if not op.finished:
                        if op.error is None:
                            why = f"was still running at {deadline}" if late else "stopped"
                            op.error = JournalFailure(
                                f"{op.what}: the writer of the {self._journal_name} {why} "
                                "during its transaction (outcome unknown)"
                            )
                        op.finish()
                self._closed = True  # (nothing more is queued)
                ops.close()
                for op in ops.take_all():
                    when = f"reached {deadline}" if late else "closed"
                    op.error = JournalFailure(
                        f"{op.what}: the {self._journal_name} {when} before this operation "
                        "ran; nothing was stored"
                    )
                    op.finish()
                self._writer_done.set()

    def _stop_accepting(self) -> None:
        """No more operations: later ones raise :class:`JournalFailure`; the writer
        commits what is queued and ends, within its drain timeout from the first call
        (see :meth:`_run_writer`). Synchronous, so that it can run in a ``finally``."""
        self._closed = True
        self._ops.close()
        scope: trio.CancelScope | None = getattr(self, "_writer_scope", None)
        if scope is not None:  # else the writer, once started, sets its deadline itself
            scope.deadline = min(scope.deadline, trio.current_time() + self._drain_timeout)

    async def _close_writer(self) -> None:
        """Stop accepting operations and wait until the writer has committed everything
        already queued (or failed it, past its drain timeout). If cancelled, the writer
        goes on draining."""
        self._stop_accepting()
        await self._writer_done.wait()


class _Flight(Generic[_C]):
    """The group of operations whose transaction runs now, in a thread of trio's thread
    cache (``trio.lowlevel.start_thread_soon``, started by the constructor). When the
    thread returns, :meth:`_landed` runs in the trio thread (``run_sync_soon``): it
    counts and acknowledges the group's operations, and wakes the writer task if it
    waits for this flight (:meth:`wait`). An abandoned flight (the writer gave up on it
    at its drain deadline, and failed its operations) is ignored when it lands."""

    __slots__ = ("_waiter", "_writer", "abandoned", "broken", "done", "group")

    def __init__(self, writer: GroupCommitWriter[_C], group: list[WriterOp[_C]]) -> None:
        self._writer = writer
        self.group = group
        self.done = False
        self.abandoned = False
        self.broken: BaseException | None = None
        self._waiter: trio.lowlevel.Task | None = None
        token = trio.lowlevel.current_trio_token()
        lock = writer._writer_lock
        commit = writer._commit_group

        def run() -> None:
            with lock:
                commit(group)

        def deliver(result: Outcome[None]) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(self._landed, result)

        trio.lowlevel.start_thread_soon(run, deliver)

    def _landed(self, result: Outcome[None]) -> None:
        # In trio's own task for run_sync_soon callbacks: nothing here may raise.
        self.done = True
        if self.abandoned:
            return
        error = getattr(result, "error", None)
        writer = self._writer
        if error is None:
            writer.transactions += 1
            writer.ops_acknowledged += len(self.group)
            for op in self.group:
                op.finish()
            writer._group_committed(self.group)
        else:
            self.broken = error
            writer._stop_accepting()  # (wakes the writer waiting for the queue)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            trio.lowlevel.reschedule(waiter)

    async def wait(self) -> None:
        """Wait until the flight has landed. Cancellable (only the drain deadline can
        cancel the writer): the flight is then abandoned by the caller."""
        self._waiter = trio.lowlevel.current_task()

        def abort(raise_cancel: object) -> trio.lowlevel.Abort:
            self._waiter = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
