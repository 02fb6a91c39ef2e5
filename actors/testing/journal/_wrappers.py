"""The journal wrappers: :class:`FaultyJournal` (fails or rejects operations by policy)
and :class:`SteppingJournal` (runs each operation when the test says so), both on one
gate that every journal and snapshot-store operation passes.
"""

from __future__ import annotations

import abc
import functools
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import trio

from ...persistence._errors import EventRejected, JournalFailure
from ...persistence._journal import Journal, SnapshotStore, TaggedRow
from ...persistence._records import PersistentRecord, SnapshotRecord
from ._policies import REJECTABLE, JournalCall, JournalInjection, Operation, Policy, Verdict, _names

_T = TypeVar("_T")
_P = TypeVar("_P", bound=Callable[[str | None, Operation], Verdict])


# -- the wrapping machinery --------------------------------------------------------------------


class _GatedIterator(Generic[_T]):
    """Iterates ``open()`` (created lazily) after passing the gate: before the first
    fetch only, or before every fetch (``each``)."""

    def __init__(
        self,
        gate: Callable[[str | None, Operation], Awaitable[None]],
        call: JournalCall,
        open_: Callable[[], AsyncIterator[_T]],
        *,
        each: bool,
    ) -> None:
        self._pass_gate = functools.partial(gate, *call)
        self._open = open_
        self._each = each
        self._inner: AsyncIterator[_T] | None = None

    def __aiter__(self) -> _GatedIterator[_T]:
        return self

    async def __anext__(self) -> _T:
        if self._inner is None or self._each:
            await self._pass_gate()
        if self._inner is None:
            self._inner = self._open()
        return await self._inner.__anext__()


class _Gated(Journal, abc.ABC):
    """A journal that passes every operation through :meth:`_gate` before handing it
    to ``inner``; its snapshot store (``snapshots``) does the same."""

    _gate_each_fetch: bool = False

    def __init__(self, inner: Journal, snapshots: SnapshotStore | None) -> None:
        if not isinstance(inner, Journal):
            raise TypeError(f"expected a Journal to wrap, got {type(inner).__qualname__}")
        self.inner = inner
        """The wrapped journal."""
        if snapshots is None:
            own = getattr(inner, "snapshots", None)
            snapshots = own if isinstance(own, SnapshotStore) else None
        self.snapshots: SnapshotStore | None = (
            None if snapshots is None else _GatedSnapshotStore(self, snapshots)
        )
        """The wrapped snapshot store (the one given, else the inner journal's own), its
        operations gated like the journal's; ``None`` if there is none."""

    @abc.abstractmethod
    async def _gate(self, persistence_id: str | None, operation: Operation) -> None:
        """Wait, raise, or return to let the operation run."""

    async def write(self, batch: Sequence[PersistentRecord]) -> list[int]:
        if batch:
            await self._gate(batch[0].persistence_id, Operation.WRITE)
        return await self.inner.write(batch)

    def replay(
        self, persistence_id: str, from_seq: int = 1, to_seq: int | None = None
    ) -> AsyncIterator[PersistentRecord]:
        return _GatedIterator(
            self._gate,
            JournalCall(persistence_id, Operation.REPLAY),
            lambda: self.inner.replay(persistence_id, from_seq, to_seq),
            each=self._gate_each_fetch,
        )

    def replay_chunks(
        self, persistence_id: str, from_seq: int = 1
    ) -> AsyncIterator[list[tuple[int, str, str, bytes]]]:
        return _GatedIterator(
            self._gate,
            JournalCall(persistence_id, Operation.REPLAY),
            lambda: self.inner.replay_chunks(persistence_id, from_seq),
            each=self._gate_each_fetch,
        )

    async def highest_seq(self, persistence_id: str) -> int:
        await self._gate(persistence_id, Operation.HIGHEST_SEQ)
        return await self.inner.highest_seq(persistence_id)

    async def delete_to(self, persistence_id: str, to_seq: int) -> None:
        await self._gate(persistence_id, Operation.DELETE)
        await self.inner.delete_to(persistence_id, to_seq)

    def events_by_tag(self, tag: str, from_offset: int = 0) -> AsyncIterator[PersistentRecord]:
        return _GatedIterator(
            self._gate,
            JournalCall(None, Operation.EVENTS_BY_TAG),
            lambda: self.inner.events_by_tag(tag, from_offset),
            each=self._gate_each_fetch,
        )

    def events_by_tag_chunks(
        self, tag: str, from_offset: int = 0
    ) -> AsyncIterator[list[TaggedRow]]:
        return _GatedIterator(
            self._gate,
            JournalCall(None, Operation.EVENTS_BY_TAG),
            lambda: self.inner.events_by_tag_chunks(tag, from_offset),
            each=self._gate_each_fetch,
        )

    async def persistence_ids(self) -> list[str]:
        await self._gate(None, Operation.PERSISTENCE_IDS)
        return await self.inner.persistence_ids()

    async def highest_offset(self, tag: str | None = None) -> int | None:
        """The wrapped journal's (not gated: no policy sees it)."""
        return await self.inner.highest_offset(tag)

    async def wait_for_commit(self) -> None:
        """The wrapped journal's: woken by its commits (not gated)."""
        await self.inner.wait_for_commit()

    async def close(self) -> None:
        """Does nothing: the wrapper does not own the journal it wraps; close that one
        where it was opened."""
        await trio.lowlevel.checkpoint()


class _GatedSnapshotStore(SnapshotStore):
    """A snapshot store whose operations pass the gate of the journal wrapper it
    belongs to."""

    def __init__(self, owner: _Gated, inner: SnapshotStore) -> None:
        self._owner = owner
        self.inner = inner
        """The wrapped snapshot store."""

    async def save(self, snapshot: SnapshotRecord) -> None:
        await self._owner._gate(snapshot.persistence_id, Operation.SNAPSHOT_SAVE)
        await self.inner.save(snapshot)

    async def load(self, persistence_id: str, max_seq: int | None = None) -> SnapshotRecord | None:
        await self._owner._gate(persistence_id, Operation.SNAPSHOT_LOAD)
        return await self.inner.load(persistence_id, max_seq)

    async def delete(self, persistence_id: str, max_seq: int) -> None:
        await self._owner._gate(persistence_id, Operation.SNAPSHOT_DELETE)
        await self.inner.delete(persistence_id, max_seq)

    async def close(self) -> None:
        """Does nothing: the wrapper does not own the store it wraps."""
        await trio.lowlevel.checkpoint()


# -- FaultyJournal -----------------------------------------------------------------------------


class FaultyJournal(_Gated):
    """A journal wrapping ``inner`` that fails or rejects operations by policy.

    Before each operation (a replay or a tag query: before its first fetch) the
    policies are asked in the order they were added; the first verdict that is not
    ``OK`` is applied and the policies after it are not asked. ``FAIL`` raises
    :class:`~actors.persistence.JournalFailure` (from the replay iterator for reads),
    ``REJECT`` raises :class:`~actors.persistence.EventRejected`; the wrapped journal is
    not touched, so nothing is stored. Each injected fault is appended to
    :attr:`injected`. A policy answering ``REJECT`` to an operation that cannot be
    rejected is a bug of the test: ``ValueError``.

    ``snapshots`` (default: ``inner.snapshots``) is wrapped as :attr:`snapshots` with the
    same policies, so that a system using this journal sees faults in its snapshot
    operations too. Cancellation passes through unchanged: the wrapper adds at
    most one checkpoint (before raising a fault).
    """

    def __init__(
        self,
        inner: Journal,
        policy: Policy | None = None,
        *,
        snapshots: SnapshotStore | None = None,
    ) -> None:
        super().__init__(inner, snapshots)
        self.policies: list[Policy] = [] if policy is None else [policy]
        """The policies, asked in order."""
        self.injected: list[JournalInjection] = []
        """Every fault injected so far, oldest first."""

    def add(self, policy: _P) -> _P:
        """Ask ``policy`` too (after the policies already there); returns it, so its
        counter can be checked later."""
        self.policies.append(policy)
        return policy

    def clear(self) -> None:
        """Remove every policy: from now on every operation runs."""
        self.policies.clear()

    async def _gate(self, persistence_id: str | None, operation: Operation) -> None:
        for policy in self.policies:
            verdict = policy(persistence_id, operation)
            if verdict is Verdict.OK:
                continue
            if not isinstance(verdict, Verdict):
                raise TypeError(f"policy {policy!r} returned {verdict!r}, not a Verdict")
            if verdict is Verdict.REJECT and operation not in REJECTABLE:
                raise ValueError(
                    f"policy {policy!r} rejected a {operation.value} of {persistence_id!r}, "
                    f"but only {_names(REJECTABLE)} can be rejected; return FAIL instead"
                )
            self.injected.append(JournalInjection(persistence_id, operation, verdict))
            await trio.lowlevel.checkpoint()
            what = f"{operation.value} of {persistence_id!r}"
            if verdict is Verdict.REJECT:
                raise EventRejected(
                    f"{what} rejected (nothing stored): injected by FaultyJournal policy {policy!r}"
                )
            raise JournalFailure(f"{what} failed: injected by FaultyJournal policy {policy!r}")


# -- SteppingJournal ---------------------------------------------------------------------------


class _Waiting:
    __slots__ = ("call", "go")

    def __init__(self, call: JournalCall) -> None:
        self.call = call
        self.go = trio.Event()


class SteppingJournal(_Gated):
    """A journal wrapping ``inner`` whose every operation waits until the test lets it
    run: a write, a ``highest_seq``, a delete, each chunk fetch of a replay or a tag
    query (the last, which finds the end, too), and each operation of :attr:`snapshots`
    (default: ``inner.snapshots``, wrapped).

    Waiting operations are let through in arrival order by :meth:`step`; the test sees
    them in :attr:`pending` and waits for one with :meth:`next_operation`. Everything
    happens on trio's scheduling, never on a clock: pair it with
    ``trio.testing.wait_all_tasks_blocked`` to let a released operation run to its next
    wait. :meth:`run_freely` ends the stepping (for the end of a test, when the system
    shuts down). An operation cancelled while it waits leaves :attr:`pending` and never
    runs.
    """

    _gate_each_fetch = True

    def __init__(self, inner: Journal, *, snapshots: SnapshotStore | None = None) -> None:
        super().__init__(inner, snapshots)
        self._waiting: deque[_Waiting] = deque()
        self._arrived = trio.Event()
        self._stepping = True
        self.released: list[JournalCall] = []
        """Every operation let through so far, in the order it was (also those that ran
        freely after :meth:`run_freely`)."""

    @property
    def pending(self) -> list[JournalCall]:
        """The operations waiting now, oldest first."""
        return [waiting.call for waiting in self._waiting]

    async def next_operation(self) -> JournalCall:
        """The oldest waiting operation (without letting it run), once there is one."""
        while not self._waiting:
            await self._arrived.wait()
        await trio.lowlevel.checkpoint()
        if not self._waiting:  # cancelled meanwhile: wait for another
            return await self.next_operation()
        return self._waiting[0].call

    async def step(self, n: int = 1) -> list[JournalCall]:
        """Let the ``n`` oldest waiting operations run, waiting for them to arrive if
        fewer are waiting; returns them in order. The released operations continue when
        the test next yields to the scheduler. If cancelled, the operations released
        before the cancellation stay released."""
        if n < 1:
            raise ValueError(f"step(n) needs n >= 1, got {n!r}")
        released: list[JournalCall] = []
        for _ in range(n):
            while not self._waiting:
                await self._arrived.wait()
            waiting = self._waiting.popleft()
            self.released.append(waiting.call)
            waiting.go.set()
            released.append(waiting.call)
        await trio.lowlevel.checkpoint()
        return released

    def run_freely(self) -> None:
        """Stop stepping: every waiting operation runs, and later ones do not wait."""
        self._stepping = False
        while self._waiting:
            waiting = self._waiting.popleft()
            self.released.append(waiting.call)
            waiting.go.set()

    async def _gate(self, persistence_id: str | None, operation: Operation) -> None:
        call = JournalCall(persistence_id, operation)
        if not self._stepping:
            self.released.append(call)
            return
        waiting = _Waiting(call)
        self._waiting.append(waiting)
        self._arrived.set()
        self._arrived = trio.Event()
        try:
            await waiting.go.wait()
        finally:
            if not waiting.go.is_set():  # cancelled while waiting
                self._waiting.remove(waiting)
