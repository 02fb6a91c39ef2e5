"""Projections: read models built from persisted events (Akka Projections).

A :class:`Projection` reads the events of a source in order, a :class:`JournalSource`
(events by tag from a journal, in commit order) or a :class:`StreamSource` (a durable
stream), and hands them in batches of :class:`Envelope` to a handler that keeps its
offset: :class:`SqliteExactlyOnce` or :class:`PostgresExactlyOnce` commit the
read-model update and the offset in one transaction (exactly-once effect),
:class:`AtLeastOnce` stores the offset in an :class:`OffsetStore` after any handler.
It runs as an actor (:class:`ProjectionActor`, started by :meth:`Projection.spawn`):
it tails its source, backs off after failures, restarts from its stored offset,
rebuilds on request (:class:`Rebuild`) and reports its status and lag
(:class:`GetStatus`). The user guide's page ``docs/projections.md`` explains it all.
"""

from .._public import export as _export
from ._handlers import AtLeastOnce, PostgresExactlyOnce, ProjectionHandler, SqliteExactlyOnce
from ._model import (
    Envelope,
    GetStatus,
    OffsetConflict,
    ProjectionError,
    ProjectionFailed,
    ProjectionState,
    ProjectionStatus,
    Rebuild,
    UndecodableEvent,
    WaitCaughtUp,
)
from ._offsets import InMemoryOffsetStore, OffsetStore, PostgresOffsetStore, SqliteOffsetStore
from ._projection import Projection, ProjectionActor
from ._source import JournalSource, ProjectionSource
from ._stream_source import StreamSource

__all__ = [
    "AtLeastOnce",
    "Envelope",
    "GetStatus",
    "InMemoryOffsetStore",
    "JournalSource",
    "OffsetConflict",
    "OffsetStore",
    "PostgresExactlyOnce",
    "PostgresOffsetStore",
    "Projection",
    "ProjectionActor",
    "ProjectionError",
    "ProjectionFailed",
    "ProjectionHandler",
    "ProjectionSource",
    "ProjectionState",
    "ProjectionStatus",
    "Rebuild",
    "SqliteExactlyOnce",
    "SqliteOffsetStore",
    "StreamSource",
    "UndecodableEvent",
    "WaitCaughtUp",
]

_export(__name__, globals(), __all__)
