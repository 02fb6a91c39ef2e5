"""What a journal stores: event records and snapshot records."""

from __future__ import annotations

import attrs


@attrs.frozen
class PersistentRecord:
    """One stored event of one persistent actor.

    ``seq`` numbers the events of ``persistence_id`` from 1, without gaps. ``serializer``
    names the serializer that wrote ``payload``, and ``manifest`` says what the payload
    holds (type and version), so that old events can be upcast on replay. ``tags`` mark
    events for ``events_by_tag`` queries. ``writer_id`` identifies the actor incarnation
    that wrote it; ``timestamp`` is wall-clock seconds since the epoch. ``offset`` is
    given by the journal when it stores the record: an increasing position in commit
    order over the whole journal (``0`` before it is stored).
    """

    persistence_id: str
    seq: int
    serializer: str
    manifest: str
    payload: bytes
    tags: frozenset[str] = frozenset()
    writer_id: str = ""
    timestamp: float = 0.0
    offset: int = 0


@attrs.frozen
class SnapshotRecord:
    """A snapshot of a persistent actor's state after event ``seq``."""

    persistence_id: str
    seq: int
    serializer: str
    manifest: str
    payload: bytes
    timestamp: float = 0.0
