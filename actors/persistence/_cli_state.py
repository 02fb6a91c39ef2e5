"""The ``state`` command of ``python -m actors.persistence``: an entity's state at a
point in time, by replaying its events into its class.

The class (``--class MODULE:NAME``, loaded by :func:`._cli_parser.load_factory`) runs as
a read-only :class:`Replica` in an actor system of the tool's own, on the journal the
tool opened: the same recovery as the live actor's, up to the point (``--to-seq``,
``--at``), then ``pre_start`` (a replica skips ``on_recovery_completed``); it never
writes (see :mod:`._point_in_time`). The persistence id is checked first with
``persistence_ids`` (a read), so an id with no events is an error, not an empty state.
Opening the journal is the other commands' (:func:`._cli_open.open_target`).

What is printed
    One line ``persistence_id=PID  seq=N  time=T``: the last event applied and the time
    it was stored (``-`` when it is no longer stored: the state came from a snapshot,
    or ``N`` is 0). Then the state, read inside the actor once it has started:
    ``state=<repr>`` of ``snapshot()`` if the class implements it (the state it chose
    to store), else one ``name=<repr>`` line per public attribute of the instance (those
    of ``vars()`` whose name does not start with ``_``, in the order they were set;
    ``persistence_id`` is on the first line already).

Failures
    The actor's failure comes back as its error (``ActorDead.error``): a recovery that
    cannot succeed (events missing, a corrupt record, ``apply`` raising) is reported as
    the :class:`RecoveryFailed` says, exit status 1; an event that cannot be decoded
    *in this process* (a module not importable here, a serializer not registered, a
    signed record and no key) is told apart with the reason and what to do, exit status
    3; a journal that fails, 2; the class that cannot be made or started (its
    constructor or ``pre_start`` raised, it made no persistent actor, or one of another
    persistence id), 2. The tool's system stops a failed actor at once (no restarts),
    and the runtime's own report of that failure (``actors.supervision``) gives way to
    the command's one error line.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import supervision

from .._errors import ActorDead, ActorInitializationError, describe_error
from .._system import open_system
from ._cli_decode import CORRUPT, HERE, Decoded, decode, iso_time, refused
from ._cli_open import Io
from ._cli_parser import EXIT_ERROR, EXIT_NOT_DECODABLE_HERE, EXIT_OK, EXIT_PROBLEMS, PROG
from ._errors import RecordCorrupt, RecordUndecodable, RecoveryFailed
from ._extension import Persistence
from ._journal import Journal, SnapshotStore
from ._persistent import PersistentActor
from ._persistent_cell import INSPECT, PersistentCell
from ._point_in_time import Replica
from ._serialization import Serialization

_STOP = supervision.OneForOne(decider=lambda error: supervision.Directive.STOP)


class _Made:
    """The factory the replica wraps: the user's class or function, called as the
    command says, its instance checked and given the persistence id, and its cell set
    to answer the command's question (:data:`INSPECT`) with what to print."""

    def __init__(self, factory: Callable[..., Any], spec: str, pid: str, pass_id: bool) -> None:
        self._factory = factory
        self._spec = spec
        self._pid = pid
        self._pass_id = pass_id

    def __call__(self) -> PersistentActor:
        pid = self._pid
        instance = self._factory(pid) if self._pass_id else self._factory()
        if not isinstance(instance, PersistentActor):
            raise TypeError(
                f"{self._spec} made a {type(instance).__qualname__}, not a PersistentActor"
            )
        own = getattr(instance, "persistence_id", None)
        if own is None:
            instance.persistence_id = pid
        elif own != pid:
            raise ValueError(
                f"{self._spec} made an actor of persistence id {own!r}, not {pid!r}"
                + ("" if self._pass_id else " (--pass-id gives it the id)")
            )
        cell = instance._actor_cell
        assert isinstance(cell, PersistentCell), "spawned through a Replica"
        cell._inspector = _shown
        return instance


def _shown(instance: Any) -> tuple[int, list[str]]:
    """What the command prints of ``instance`` (run inside the actor): its seq, and the
    state's lines (see the module documentation)."""
    if type(instance).snapshot is not PersistentActor.snapshot:
        return instance.last_seq, [f"state={_repr(instance.snapshot())}"]
    lines = [
        f"{name}={_repr(value)}"
        for name, value in vars(instance).items()
        if not name.startswith("_") and name != "persistence_id"
    ]
    return instance.last_seq, lines


def _repr(value: object) -> str:
    try:
        return repr(value)
    except Exception as error:
        return f"<repr failed: {type(error).__name__}: {error}>"


async def cmd_state(
    journal: Journal, snapshots: SnapshotStore, args: argparse.Namespace, io: Io
) -> int:
    pid: str = args.persistence_id
    if pid not in await journal.persistence_ids():
        print(f"{PROG}: no events were ever stored for persistence id {pid!r}", file=io.err)
        return EXIT_PROBLEMS
    serialization: Serialization = args.serialization
    replica = Replica(
        _Made(args.factory, args.class_spec, pid, args.pass_id), to_seq=args.to_seq, at=args.at
    )
    persistence = Persistence(journal, snapshot_store=snapshots, serialization=serialization)
    with _failures_reported_here():
        async with open_system(
            "journal-tool", extensions=[persistence], guardian_strategy=_STOP
        ) as system:
            ref = system.spawn(replica, name="state")
            try:
                seq, lines = await ref.ask(INSPECT)
            except ActorDead as dead:
                return await _failed(journal, serialization, pid, dead.error or dead, io)
    time = "-"
    async for record in journal.replay(pid, seq, seq):
        time = iso_time(record.timestamp)
    print(f"persistence_id={pid}  seq={seq}  time={time}", file=io.out)
    for line in lines:
        print(line, file=io.out)
    if not lines:
        print(
            f"{PROG}: note: {args.class_spec} has no snapshot() and no public attribute: "
            "nothing to show of its state",
            file=io.err,
        )
    return EXIT_OK


@contextmanager
def _failures_reported_here() -> Iterator[None]:
    """The replica's failure is reported by the command (one error line, its exit
    status), not again by the runtime's own output of ``actors.supervision`` (a
    ``NullHandler`` there, for the time of the command, makes that output step aside;
    the application's handlers up the hierarchy, if any, still get the records). The
    warnings of ``actors.persistence`` (a snapshot that does not decode) still show."""
    logger = logging.getLogger("actors.supervision")
    handler = logging.NullHandler()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


async def _failed(
    journal: Journal, serialization: Serialization, pid: str, error: BaseException, io: Io
) -> int:
    """Report why the replica did not start; return the exit status."""
    if isinstance(error, ActorInitializationError):
        print(f"{PROG}: error: the actor did not start: {describe_error(error.error)}", file=io.err)
        return EXIT_ERROR
    if not isinstance(error, RecoveryFailed):
        print(f"{PROG}: error: {describe_error(error)}", file=io.err)
        return EXIT_ERROR
    cause = error.__cause__
    judged: Decoded | None = None
    if isinstance(cause, RecordCorrupt):
        judged = refused(cause)
    elif isinstance(cause, LookupError | RecordUndecodable):
        # Decode it again to tell "not decodable here" from corrupt (see _cli_decode).
        async for record in journal.replay(pid, error.seq, error.seq):
            judged = decode(serialization, record.serializer, record.manifest, record.payload)
    print(f"{PROG}: error: {error}", file=io.err)
    if judged is not None and judged.kind == HERE:
        print(f"{PROG}: event {error.seq}: {judged.reason}; {judged.hint}", file=io.err)
        return EXIT_NOT_DECODABLE_HERE
    if error.retryable and (judged is None or judged.kind != CORRUPT):
        return EXIT_ERROR  # the journal failed
    return EXIT_PROBLEMS
