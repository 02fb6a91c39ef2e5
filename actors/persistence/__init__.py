"""Persistence: event-sourced actors and the journals that store their events.

A :class:`PersistentActor` persists events (``await self.persist(event)``), applies them
to its state, and recovers by replaying them (from the newest snapshot) whenever it
starts. Its journal is given to ``open_system(extensions=[Persistence(journal)])``:
:class:`InMemoryJournal` for tests, :func:`open_sqlite_journal` (the embedded default)
or :func:`open_postgres_journal`. A :class:`Replica` runs a persistent actor recovered to
a point in time (a sequence number or a time), read-only. ``python -m actors.persistence``
inspects and checks a journal, and prints an actor's state at a point in time. The user
guide's page ``docs/persistence.md`` explains it all.
"""

from typing import TYPE_CHECKING, Any

from .._public import export as _export
from ._errors import (
    EventRejected,
    JournalFailure,
    JournalNotWritable,
    PersistNotAwaited,
    ReadOnlyReplica,
    RecordCorrupt,
    RecordUndecodable,
    RecoveryFailed,
    SequenceConflict,
)
from ._extension import Persistence
from ._journal import Journal, SnapshotStore
from ._memory import InMemoryJournal, InMemorySnapshotStore
from ._persistent import PersistentActor
from ._point_in_time import Replica
from ._records import PersistentRecord, SnapshotRecord
from ._serialization import (
    CloudpickleSerializer,
    PickleSerializer,
    Serialization,
    Serializer,
    manifest_of,
    parse_manifest,
)
from ._sqlite import SqliteJournal, SqliteSnapshotStore, open_sqlite_journal

if TYPE_CHECKING:
    from ._postgres import PostgresJournal, PostgresSnapshotStore, open_postgres_journal

_POSTGRES_NAMES = ("PostgresJournal", "PostgresSnapshotStore", "open_postgres_journal")


def __getattr__(name: str) -> Any:
    # The PostgreSQL backend needs psycopg (the ``postgres`` extra): imported on first use,
    # so that ``actors.persistence`` works without it.
    if name in _POSTGRES_NAMES:
        try:
            from . import _postgres
        except ImportError as error:
            raise ImportError(
                f"actors.persistence.{name} needs psycopg: pip install 'trio-actors[postgres]'"
                f" ({error})"
            ) from error
        _export(__name__, vars(_postgres), _POSTGRES_NAMES)
        return getattr(_postgres, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CloudpickleSerializer",
    "EventRejected",
    "InMemoryJournal",
    "InMemorySnapshotStore",
    "Journal",
    "JournalFailure",
    "JournalNotWritable",
    "PersistNotAwaited",
    "Persistence",
    "PersistentActor",
    "PersistentRecord",
    "PickleSerializer",
    "PostgresJournal",
    "PostgresSnapshotStore",
    "ReadOnlyReplica",
    "RecordCorrupt",
    "RecordUndecodable",
    "RecoveryFailed",
    "Replica",
    "SequenceConflict",
    "Serialization",
    "Serializer",
    "SnapshotRecord",
    "SnapshotStore",
    "SqliteJournal",
    "SqliteSnapshotStore",
    "manifest_of",
    "open_postgres_journal",
    "open_sqlite_journal",
    "parse_manifest",
]

_export(__name__, globals(), [name for name in __all__ if name not in _POSTGRES_NAMES])
