"""What a projection hands its handler and answers its askers: :class:`Envelope`, the
messages it understands (:class:`GetStatus`, :class:`Rebuild`, :class:`WaitCaughtUp`),
its :class:`ProjectionStatus`, and its errors."""

from __future__ import annotations

from typing import Any, Literal

import attrs

from .._errors import ActorError


@attrs.frozen
class Envelope:
    """One event as a projection's handler gets it.

    From a journal (:class:`JournalSource`): the ``persistence_id`` and ``seq`` of the
    event, its ``offset`` in the journal (the position the projection stores), the
    wall-clock ``timestamp`` it was written at (seconds since the epoch), its ``tags``,
    and the decoded ``event``. From a durable stream (:class:`StreamSource`):
    ``offset`` and ``seq`` are the stream sequence, ``subject`` the subject it was
    published on, ``persistence_id`` is ``""`` and ``tags`` empty.
    """

    persistence_id: str
    seq: int
    offset: int
    timestamp: float
    tags: frozenset[str]
    event: Any
    subject: str = ""


ProjectionState = Literal["starting", "running", "idle", "backing_off"]
"""What a projection is doing: opening its source and handler (``starting``), handling
batches (``running``), caught up and waiting for new events (``idle``), or waiting out
the backoff delay after a failure (``backing_off``)."""


@attrs.frozen
class ProjectionStatus:
    """A projection's answer to :class:`GetStatus`.

    ``offset`` is the stored offset: the position of the last event whose effect is
    committed (0: none yet). ``lag`` is how far the source's newest event is beyond it:
    for a journal, in offsets (the newest offset of the tag minus ``offset``; offsets
    count the events of every tag, so it is not a number of events), for a stream, the
    events its consumer has not yet delivered or settled; 0 means caught up, ``None``
    that the source cannot tell. ``handled`` counts the events given to the handler and
    committed since the projection actor started (a batch that failed and is retried
    counts once, when it succeeds), ``skipped`` those left out because they could not
    be decoded (with ``on_undecodable="skip"``). ``failures`` counts consecutive
    failures (back to 0 after a batch succeeds), ``total_failures`` every failure since
    the actor started, ``last_error`` is the last one (``"Type: message"``; kept after
    a success), ``retry_in`` the seconds left before the next attempt while
    ``backing_off``.
    """

    name: str
    key: str
    state: ProjectionState
    offset: int
    lag: int | None
    handled: int
    skipped: int
    failures: int
    total_failures: int
    last_error: str | None
    retry_in: float | None


@attrs.frozen
class GetStatus:
    """Ask a projection for its :class:`ProjectionStatus`."""


@attrs.frozen
class Rebuild:
    """Ask a projection to start again from the first event: its handler's ``reset``
    hook runs (to clear the read model; with an exactly-once handler in the same
    transaction that deletes the stored offset), then the projection reads its source
    from the start. The reply (``None``) comes once the reset is committed; a reset
    that fails raises in the asker (and the projection backs off and retries reading
    from the offset still stored)."""


@attrs.frozen
class WaitCaughtUp:
    """Ask a projection to reply once it has caught up: once a read that started after
    this request found nothing new in its source (every event committed before that
    read is handled). The reply is the :class:`ProjectionStatus` then. A projection that
    is failing does not catch up: the ask's timeout bounds the wait."""


class ProjectionError(ActorError):
    """A projection could not go on: the base of the projection errors. The error
    behind it, when there is one, is its ``__cause__``."""


class UndecodableEvent(ProjectionError):
    """An event of a projection's source could not be decoded (its class is gone, its
    serializer not registered, its payload damaged). With ``on_undecodable="fail"``
    (the default) the batch fails and is retried with backoff until the cause is fixed
    (deploy the event's class, register its serializer); with ``"skip"`` the event is
    left out, counted in :attr:`ProjectionStatus.skipped` and logged. Its message names
    the event: persistence id, seq and offset (journal), or subject and sequence
    (stream)."""


class OffsetConflict(ProjectionError):
    """The stored offset of a projection was not where this instance left it: another
    instance of the same projection (same name and key) is running and committed a
    batch, or the offset was changed by hand. Nothing of the batch was committed; the
    projection backs off, then reads the stored offset again and goes on from there, so
    no event is applied twice."""


class ProjectionFailed(ProjectionError):
    """A projection gave up: its handler (or its source) failed more times in a row
    than its backoff's ``max_restarts`` allows. The projection actor fails with it (the
    last failure is the ``__cause__``), and its supervisor decides: a restart starts
    again from the stored offset."""


def describe(error: BaseException) -> str:
    """``Type: message`` (the type alone for an empty message)."""
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
