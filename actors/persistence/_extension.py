"""The settings of persistence for one actor system: ``Persistence``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING

import attrs

from ._serialization import Serialization

if TYPE_CHECKING:
    from ._journal import Journal, SnapshotStore

JournalOpener = Callable[[], AbstractAsyncContextManager["Journal"]]

_DEFAULT_SERIALIZATION: Serialization | None = None


def default_serialization() -> Serialization:
    """The serializers used when none are configured (made once)."""
    global _DEFAULT_SERIALIZATION
    if _DEFAULT_SERIALIZATION is None:
        _DEFAULT_SERIALIZATION = Serialization()
    return _DEFAULT_SERIALIZATION


@attrs.frozen
class Persistence:
    """Where the persistent actors of a system store their events and snapshots, and how
    they serialize them: give it to ``open_system(extensions=[Persistence(journal)])``.

    The system does not own the journal: open and close it around ``open_system``.
    Without this extension (or with ``journal=None``) a persistent actor stops at start,
    saying that no journal is configured.
    """

    journal: Journal | None
    """Where events go (see :class:`Journal`)."""
    snapshot_store: SnapshotStore | None = None
    """Where snapshots go; ``None``: the journal's own store (its ``snapshots``
    attribute) if it has one, else snapshots are off."""
    serialization: Serialization | None = None
    """The serializers of events and snapshots; ``None``: pickle by reference (default)
    and cloudpickle (by id ``"cloudpickle"``)."""
    worker_journal: JournalOpener | None = None
    """How each worker process of the system (``open_system(workers=...)``) opens the
    same journal for the persistent actors placed there: a picklable function that
    returns the async context manager opening it, for example
    ``functools.partial(open_sqlite_journal, path)`` or
    ``functools.partial(open_postgres_journal, dsn)``. A worker opens it before its
    first actor starts and closes it after its last one stopped; snapshots go to that
    journal's own store, and ``serialization`` is the same as here. ``None``: persistent
    actors cannot run on workers (they stop at start, saying so). Two processes may
    write one persistence id only one after the other: the journal's single-writer fence
    refuses the second (see docs/persistence.md)."""

    def _for_workers(self) -> WorkerPersistence | None:
        """The hook of extensions for worker processes: what to send them (picklable),
        whose ``open()`` makes this extension there."""
        if self.worker_journal is None:
            return None
        return WorkerPersistence(self.worker_journal, self.serialization)


@attrs.frozen
class WorkerPersistence:
    """What a worker process gets of :class:`Persistence`: it opens the journal itself."""

    opener: JournalOpener
    serialization: Serialization | None

    @asynccontextmanager
    async def open(self) -> AsyncIterator[Persistence]:
        async with self.opener() as journal:
            yield Persistence(journal, serialization=self.serialization)
