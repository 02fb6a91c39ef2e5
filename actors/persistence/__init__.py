"""Persistence: event-sourced actors and the journals that store their events.

This package is being built (issue 5). So far it holds the journal and snapshot-store
contracts, the stored record types and the errors; backends and persistent actors
follow.
"""

from ._errors import EventRejected, JournalFailure, SequenceConflict
from ._journal import Journal, SnapshotStore
from ._records import PersistentRecord, SnapshotRecord

__all__ = [
    "EventRejected",
    "Journal",
    "JournalFailure",
    "PersistentRecord",
    "SequenceConflict",
    "SnapshotRecord",
    "SnapshotStore",
]
