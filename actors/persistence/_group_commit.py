"""The single writer task with natural group commit, shared by the SQLite and PostgreSQL
journals.

A journal queues every write as a :class:`WriterOp` on a memory channel to ONE writer
task. Whenever the previous commit has finished, the writer takes everything queued (no
timer ever waits for more work) and hands the group to the backend's ``_commit_group``,
run in a thread that is never abandoned: the backend (:mod:`._sql_writer`) runs one
transaction for the group, in which an operation that fails fails alone, and sets each
op's ``result`` or ``error``. Callers are woken once the group's thread has returned,
i.e. after the ``COMMIT``.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import trio

from ._errors import JournalFailure, SequenceConflict
from ._records import PersistentRecord

_C = TypeVar("_C")


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
    """One queued writer operation: ``run`` executes in the writer's thread, inside the
    group transaction (and, if an operation of the group failed, in a savepoint of its
    own: it may run twice, so it has no effect outside the transaction), given the
    backend's connection; the caller waits on ``done``. ``draws_offsets`` says that it
    inserts events (a backend may need to prepare the transaction for that)."""

    __slots__ = ("done", "draws_offsets", "error", "result", "run", "what")

    def __init__(self, what: str, run: Callable[[_C], Any], draws_offsets: bool = False) -> None:
        self.what = what
        self.run = run
        self.draws_offsets = draws_offsets
        self.done = trio.Event()
        self.result: Any = None
        self.error: BaseException | None = None


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

    def _init_writer(self, send: trio.MemorySendChannel[WriterOp[_C]]) -> None:
        self._send = send
        self._closed = False
        self._writer_done = trio.Event()
        self.transactions = 0
        self.ops_acknowledged = 0

    @abc.abstractmethod
    def _commit_group(self, group: list[WriterOp[_C]]) -> None:
        """In the writer's thread: one transaction for ``group``, in which an operation
        that fails fails alone; set ``result`` or ``error`` on every op. Never raises."""

    def _submit(
        self, what: str, run: Callable[[_C], Any], *, draws_offsets: bool = False
    ) -> WriterOp[_C]:
        """Queue an operation (raises :class:`JournalFailure` if the journal is closed)."""
        if self._closed:
            raise JournalFailure(f"{what}: the {self._journal_name} is closed")
        op = WriterOp(what, run, draws_offsets)
        try:
            self._send.send_nowait(op)
        except (trio.ClosedResourceError, trio.BrokenResourceError) as error:
            raise JournalFailure(f"{what}: the {self._journal_name} is closed") from error
        return op

    async def _wait(self, op: WriterOp[_C]) -> Any:
        """Wait until ``op`` was acknowledged; return its result or raise its error. If
        cancelled, the op stays queued: its outcome is unknown to the caller."""
        await op.done.wait()
        if op.error is not None:
            raise op.error
        return op.result

    async def _run_writer(self, receive: trio.MemoryReceiveChannel[WriterOp[_C]]) -> None:
        """The one writer task: commit whatever is queued, group by group, until the
        send side is closed and the queue is empty. On cancellation the group in flight
        still completes (its thread is never abandoned) and every op still queued is
        failed with :class:`JournalFailure`."""
        group: list[WriterOp[_C]] = []
        try:
            async for first in receive:
                group = [first]
                while True:
                    try:
                        group.append(receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                await trio.to_thread.run_sync(self._commit_group, group, abandon_on_cancel=False)
                self.transactions += 1
                self.ops_acknowledged += len(group)
                for op in group:
                    op.done.set()
                group = []
        finally:
            for op in group:
                # Only if the writer itself broke mid-group: the transaction's fate is
                # not known here.
                if not op.done.is_set():
                    if op.error is None:
                        op.error = JournalFailure(
                            f"{op.what}: the writer of the {self._journal_name} stopped "
                            "during its transaction (outcome unknown)"
                        )
                    op.done.set()
            while True:
                try:
                    op = receive.receive_nowait()
                except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                    break
                op.error = JournalFailure(
                    f"{op.what}: the {self._journal_name} closed before this operation "
                    "ran; nothing was stored"
                )
                op.done.set()
            receive.close()
            self._writer_done.set()

    def _stop_accepting(self) -> None:
        """No more operations: later ones raise :class:`JournalFailure`; the writer drains
        the queue and ends."""
        self._closed = True
        self._send.close()

    async def _close_writer(self) -> None:
        """Stop accepting operations and wait until the writer has committed or failed
        everything already queued."""
        self._stop_accepting()
        await self._writer_done.wait()
