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


for _cls in (JournalFailure, SequenceConflict, EventRejected):
    _cls.__module__ = "actors.persistence"
