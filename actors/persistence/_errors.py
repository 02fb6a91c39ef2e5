"""Errors of the persistence layer."""

from __future__ import annotations

from .._errors import ActorError


class JournalFailure(ActorError):
    """A journal operation failed, or its outcome is unknown (I/O error, lost
    connection, ambiguous commit). A persistent actor stops on it, and its supervisor
    decides (typically a restart with backoff, which recovers from what was stored)."""


class SequenceConflict(JournalFailure):
    """A write collided with events already stored under the same sequence numbers:
    another writer is live for this persistence id (or was, and this one is stale).
    Nothing of the batch was stored."""


class EventRejected(ActorError):
    """An event was refused before anything was stored (it cannot be serialized, or the
    journal refused it): ``persist`` raises this in the handler and the actor's state is
    unchanged."""


class RecordUndecodable(JournalFailure):
    """A stored event or snapshot cannot be decoded: its serializer id is not registered,
    a class it refers to can no longer be imported, or its payload is garbled. The
    message names the serializer id and the manifest; the original error is the
    ``__cause__``. Nothing was changed in the journal. A persistent actor falls back to
    an older snapshot when a snapshot is undecodable; an undecodable event fails its
    recovery."""


for _cls in (JournalFailure, SequenceConflict, EventRejected, RecordUndecodable):
    _cls.__module__ = "actors.persistence"
