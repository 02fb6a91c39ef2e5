"""Persistence: event-sourced actors and the journals that store their events.

This package is being built (issue 5). So far it holds the journal and snapshot-store
contracts, the stored record types and errors, the serializers, and two backends: in
memory (for tests) and SQLite (the embedded default). Persistent actors come next.
"""

from ._errors import (
    EventRejected,
    JournalFailure,
    RecordUndecodable,
    RecoveryFailed,
    SequenceConflict,
)
from ._journal import Journal, SnapshotStore
from ._memory import InMemoryJournal, InMemorySnapshotStore
from ._persistent import PersistentActor
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

__all__ = [
    "CloudpickleSerializer",
    "EventRejected",
    "InMemoryJournal",
    "InMemorySnapshotStore",
    "Journal",
    "JournalFailure",
    "PersistentActor",
    "PersistentRecord",
    "PickleSerializer",
    "RecordUndecodable",
    "RecoveryFailed",
    "SequenceConflict",
    "Serialization",
    "Serializer",
    "SnapshotRecord",
    "SnapshotStore",
    "SqliteJournal",
    "SqliteSnapshotStore",
    "manifest_of",
    "open_sqlite_journal",
    "parse_manifest",
]
