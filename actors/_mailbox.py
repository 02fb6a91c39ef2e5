"""Mailbox configuration: capacity and what happens when a bounded mailbox is full."""

from __future__ import annotations

import enum

import attrs


class Overflow(enum.StrEnum):
    """What ``tell`` does when a bounded mailbox is full.

    ``await send`` and ``await ask`` always wait for room instead, whatever the policy.
    """

    BACKPRESSURE = "backpressure"
    """``tell`` raises :class:`MailboxFull`; nothing is enqueued (the caller keeps it)."""
    DROP_NEWEST = "drop_newest"
    """The new message goes to dead letters; the mailbox is unchanged."""
    DROP_OLDEST = "drop_oldest"
    """The oldest queued message goes to dead letters and the new one is enqueued. If the
    evicted message is an ``ask`` whose caller still waits, the caller gets
    :class:`MailboxFull` instead (no dead letter: someone was told). Timer ticks and
    ``Terminated`` are never evicted."""
    FAIL = "fail"
    """The new message goes to dead letters and the actor fails with
    :class:`MailboxOverflow` once it finishes its current message."""


def _check_capacity(_: object, __: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"mailbox capacity must be at least 1 (or None), got {value}")


@attrs.frozen
class Mailbox:
    """How an actor's mailbox is sized. ``capacity=None`` (the default) is unbounded.

    Capacity counts user messages only: stop requests and other system messages use a
    separate lane that is never full, and ``Terminated`` notifications and messages
    returned by ``unstash_all`` are always accepted (they were accepted once already).
    """

    capacity: int | None = attrs.field(default=None, validator=_check_capacity)
    overflow: Overflow = attrs.field(default=Overflow.BACKPRESSURE, converter=Overflow)


Overflow.__module__ = "actors"
Mailbox.__module__ = "actors"
