"""The settings of persistence for one actor system: ``Persistence``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from ._serialization import Serialization

if TYPE_CHECKING:
    from ._journal import Journal, SnapshotStore

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
