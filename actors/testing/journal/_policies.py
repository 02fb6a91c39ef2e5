"""Journal fault policies: the operations a test journal sees, the verdicts a
:class:`FaultyJournal` applies, and ready-made policies that decide them.

A policy is any callable ``policy(persistence_id, operation) -> Verdict``; the ones here
count down (:func:`fail_next`, :func:`reject_next`), follow a predicate
(:func:`fail_when`, :func:`reject_when`) or combine others (:func:`any_of`).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple, TypeAlias


class Operation(enum.Enum):
    """A kind of journal or snapshot-store operation, as policies and steps see it."""

    WRITE = "write"
    """``Journal.write`` of a non-empty batch (an empty one stores nothing and is passed
    through unseen)."""
    REPLAY = "replay"
    """``Journal.replay`` or ``Journal.replay_chunks`` (what recovery reads)."""
    HIGHEST_SEQ = "highest_seq"
    """``Journal.highest_seq`` (recovery asks it after the replay)."""
    DELETE = "delete"
    """``Journal.delete_to``."""
    EVENTS_BY_TAG = "events_by_tag"
    """``Journal.events_by_tag`` or ``Journal.events_by_tag_chunks`` (what projections
    read; no persistence id: policies get ``None``)."""
    PERSISTENCE_IDS = "persistence_ids"
    """``Journal.persistence_ids`` (no persistence id: policies get ``None``)."""
    SNAPSHOT_SAVE = "snapshot_save"
    """``SnapshotStore.save``."""
    SNAPSHOT_LOAD = "snapshot_load"
    """``SnapshotStore.load`` (recovery, and the retention after a snapshot is saved)."""
    SNAPSHOT_DELETE = "snapshot_delete"
    """``SnapshotStore.delete``."""


READS: frozenset[Operation] = frozenset(
    {
        Operation.REPLAY,
        Operation.HIGHEST_SEQ,
        Operation.EVENTS_BY_TAG,
        Operation.PERSISTENCE_IDS,
        Operation.SNAPSHOT_LOAD,
    }
)
"""The operations that only read."""

REJECTABLE: frozenset[Operation] = frozenset({Operation.WRITE, Operation.SNAPSHOT_SAVE})
"""The operations a policy may answer with :attr:`Verdict.REJECT`."""


class Verdict(enum.Enum):
    """What a :class:`FaultyJournal` does with one operation."""

    OK = "ok"
    """Run it on the wrapped journal."""
    FAIL = "fail"
    """Raise :class:`~actors.persistence.JournalFailure` without running it: a
    persistent actor fails (a failed write) or its recovery fails retryably (a failed
    read), and its supervisor restarts it."""
    REJECT = "reject"
    """Raise :class:`~actors.persistence.EventRejected` without running it (nothing
    stored): ``persist`` raises it in the handler and the actor goes on. Only for
    :data:`REJECTABLE` operations."""


class JournalCall(NamedTuple):
    """One operation on a test journal: the persistence id it concerns (``None`` for
    ``events_by_tag`` and ``persistence_ids``) and its kind."""

    persistence_id: str | None
    operation: Operation


class JournalInjection(NamedTuple):
    """A fault a :class:`FaultyJournal` injected: on which id, which operation, which
    verdict (never ``OK``)."""

    persistence_id: str | None
    operation: Operation
    verdict: Verdict


Policy: TypeAlias = Callable[[str | None, Operation], Verdict]
"""Decides the fate of one operation: ``policy(persistence_id, operation) -> Verdict``.
Called once per operation (once per replay, at its first fetch), synchronously, in the
trio thread; it may keep state (the ready-made ones count down)."""


# -- ready-made policies ---------------------------------------------------------------------


def _operations(operations: Operation | Iterable[Operation]) -> frozenset[Operation]:
    if isinstance(operations, Operation):
        return frozenset({operations})
    result = frozenset(operations)
    if not result or not all(isinstance(op, Operation) for op in result):
        raise TypeError("operations must be an Operation or a non-empty iterable of them")
    return result


def _names(operations: frozenset[Operation]) -> str:
    return "|".join(sorted(op.name for op in operations))


class Countdown:
    """A policy (made by :func:`fail_next` or :func:`reject_next`): the next
    :attr:`remaining` matching operations get its verdict, then every one is ``OK``."""

    def __init__(
        self,
        n: int,
        verdict: Verdict,
        operations: frozenset[Operation],
        persistence_id: str | None,
        name: str,
    ) -> None:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"{name}(n) needs an int n >= 0, got {n!r}")
        self.n = n
        """How many matching operations it was made to fail (or reject)."""
        self.remaining = n
        """How many matching operations are still to fail (or be rejected)."""
        self._verdict, self._name = verdict, name
        self._operations, self._persistence_id = operations, persistence_id

    def __call__(self, persistence_id: str | None, operation: Operation) -> Verdict:
        if (
            self.remaining > 0
            and operation in self._operations
            and (self._persistence_id is None or self._persistence_id == persistence_id)
        ):
            self.remaining -= 1
            return self._verdict
        return Verdict.OK

    def __repr__(self) -> str:
        where = "" if self._persistence_id is None else f", persistence_id={self._persistence_id!r}"
        return f"{self._name}({self.n}, operations={_names(self._operations)}{where})"


def fail_next(
    n: int = 1,
    operations: Operation | Iterable[Operation] = Operation.WRITE,
    *,
    persistence_id: str | None = None,
) -> Countdown:
    """A policy failing the next ``n`` operations of the kinds ``operations`` (default:
    writes) on ``persistence_id`` (``None``: any id), then letting everything through.
    Its ``remaining`` attribute counts down."""
    return Countdown(n, Verdict.FAIL, _operations(operations), persistence_id, "fail_next")


def reject_next(
    n: int = 1,
    operations: Operation | Iterable[Operation] = Operation.WRITE,
    *,
    persistence_id: str | None = None,
) -> Countdown:
    """A policy rejecting the next ``n`` operations of the kinds ``operations`` (default:
    writes; only :data:`REJECTABLE` ones) on ``persistence_id`` (``None``: any id)."""
    ops = _operations(operations)
    if not ops <= REJECTABLE:
        raise ValueError(
            f"only {_names(REJECTABLE)} can be rejected, not {_names(ops - REJECTABLE)}"
        )
    return Countdown(n, Verdict.REJECT, ops, persistence_id, "reject_next")


class _When:
    def __init__(
        self, predicate: Callable[[str | None, Operation], bool], verdict: Verdict, name: str
    ) -> None:
        self._predicate = predicate
        self._verdict = verdict
        self._name = name

    def __call__(self, persistence_id: str | None, operation: Operation) -> Verdict:
        return self._verdict if self._predicate(persistence_id, operation) else Verdict.OK

    def __repr__(self) -> str:
        inner = getattr(self._predicate, "__qualname__", None) or repr(self._predicate)
        return f"{self._name}({inner})"


def fail_when(predicate: Callable[[str | None, Operation], bool]) -> Policy:
    """A policy failing every operation for which ``predicate(persistence_id,
    operation)`` is true (for as long as it is)."""
    return _When(predicate, Verdict.FAIL, "fail_when")


def reject_when(predicate: Callable[[str | None, Operation], bool]) -> Policy:
    """A policy rejecting every operation for which ``predicate(persistence_id,
    operation)`` is true; the predicate must only be true for :data:`REJECTABLE`
    operations (:class:`FaultyJournal` raises ``ValueError`` otherwise)."""
    return _When(predicate, Verdict.REJECT, "reject_when")


class _AnyOf:
    def __init__(self, policies: Sequence[Policy]) -> None:
        self.policies = list(policies)

    def __call__(self, persistence_id: str | None, operation: Operation) -> Verdict:
        for policy in self.policies:
            verdict = policy(persistence_id, operation)
            if verdict is not Verdict.OK:
                return verdict
        return Verdict.OK

    def __repr__(self) -> str:
        return f"any_of({', '.join(map(repr, self.policies))})"


def any_of(*policies: Policy) -> Policy:
    """A policy asking ``policies`` in order and returning the first verdict that is not
    ``OK``; the policies after it are not asked (so their counters do not move)."""
    return _AnyOf(policies)
