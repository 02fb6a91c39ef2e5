"""Messages and events the runtime itself sends: death watch, dead letters, lifecycle."""

from __future__ import annotations

import enum
from typing import Any, Final

import attrs

from ._ref import ActorRef


@attrs.frozen
class Terminated:
    """Delivered to a watcher, exactly once per ``watch``, when the watched actor stops.

    ``error`` is ``None`` for a normal stop and the error that stopped it otherwise.
    ``existence_confirmed`` is ``False`` when the actor was already gone (or never existed)
    at the time of ``watch``; ``error`` is then ``None`` because it is not known.
    It arrives after every message the dead actor sent to the watcher.
    """

    ref: ActorRef
    error: BaseException | None = None
    existence_confirmed: bool = True

    @property
    def failed(self) -> bool:
        """Whether the actor stopped because of an error."""
        return self.error is not None


class DeadLetterReason(enum.StrEnum):
    """Why a message was not delivered. Values are the member names in lower case."""

    STOPPED = "stopped"
    """The recipient had stopped (or stopped, or was restarted with a failed sibling,
    before it finished handling the message)."""
    NO_SUCH_ACTOR = "no_such_actor"
    """The address resolves to no live actor (never existed, or another incarnation)."""
    DROPPED_NEWEST = "dropped_newest"
    """The mailbox was full under ``drop_newest`` (or ``backpressure``, for a delivery
    of the runtime that cannot wait: an event of the bus, a forward): the new message
    was dropped."""
    DROPPED_OLDEST = "dropped_oldest"
    """The mailbox was full under ``drop_oldest``: this oldest message made room."""
    MAILBOX_OVERFLOW = "mailbox_overflow"
    """The mailbox was full under ``fail``: the message was refused, the actor fails."""
    FAILED = "failed"
    """Processing the message raised outside an ``ask``: the actor failed on it."""
    UNHANDLED = "unhandled"
    """The recipient called ``unhandled(message)`` (the default ``receive`` does)."""
    UNPICKLABLE = "unpicklable"
    """``roundtrip_messages`` is on and an event published on the bus could not be
    pickled (``tell`` and ``ask`` raise :class:`UnpicklableMessage` instead)."""
    ASK_EXPIRED = "ask_expired"
    """The reply to an ``ask`` whose caller had already given up (timeout or cancel)."""
    NO_ROUTEES = "no_routees"
    """The recipient is a router that had no routee to pass the message to."""
    RESTART_STASH_OVERFLOW = "restart_stash_overflow"
    """The recipient was restarting (or waiting out a restart backoff) and already held
    ``Settings.restart_stash_capacity`` messages."""
    FAULT_DROPPED = "fault_dropped"
    """A fault injector of ``actors.testing`` dropped the message on purpose."""
    PROCESS_LOST = "process_lost"
    """The recipient's worker process was lost (or its link broke) before the message
    could be handed to it."""
    LINK_FULL = "link_full"
    """The link to the recipient's process held more queued bytes than its bound."""
    UNDECODABLE = "undecodable"
    """The message arrived from another process but could not be unpickled here (a
    class that cannot be imported in this process, for instance)."""


@attrs.frozen
class DeadLetter:
    """Published on the event bus for every message that could not be delivered."""

    message: Any
    sender: ActorRef | None
    recipient: ActorRef
    reason: DeadLetterReason


@attrs.frozen
class ActorStarted:
    """Published when an actor has been created and its ``pre_start`` has returned."""

    ref: ActorRef


@attrs.frozen
class ActorStopped:
    """Published when an actor has fully stopped (children stopped, ``post_stop`` run).

    ``error`` is ``None`` for a normal stop, else the failure that stopped it."""

    ref: ActorRef
    error: BaseException | None


@attrs.frozen
class ActorFailed:
    """Published when an actor fails: its handler (outside an ``ask``), its constructor or
    a lifecycle hook raised, or its mailbox overflowed under ``fail``. Its supervisor
    (the parent) then resumes, restarts or stops it, or escalates the error. A failure
    while the actor is already stopping (e.g. in ``post_stop``) is only reported: it
    becomes the ``error`` of its ``ActorStopped`` and ``Terminated``."""

    ref: ActorRef
    error: BaseException


@attrs.frozen
class ActorRestarted:
    """Published when a supervisor has restarted an actor in place after ``error``: the
    fresh instance is running (``post_restart`` has returned), with the same ref and
    mailbox."""

    ref: ActorRef
    error: BaseException


@attrs.frozen
class SupervisorGaveUp:
    """Published when ``supervisor`` gives up because ``child`` failed (with ``error``)
    once more than its restart intensity allows: the supervisor stops its children and
    fails with :class:`supervision.TooManyRestarts`, which escalates to its own parent."""

    supervisor: ActorRef
    child: ActorRef
    error: BaseException


@attrs.frozen
class ReceiveTimeout:
    """The default message delivered when ``context.set_receive_timeout`` elapses."""


@attrs.frozen
class _ControlMessage:
    """The class of :data:`PoisonPill` and :data:`Kill`, singletons that the actor's loop
    acts on itself when it reaches them in the mailbox (its ``receive`` never sees
    them). They pickle by name, so a copy is the same object."""

    name: str

    def __repr__(self) -> str:
        return self.name

    def __reduce__(self) -> str:
        return self.name


PoisonPill: Final = _ControlMessage("PoisonPill")
"""Tell this to an actor to stop it once it reaches this point of its mailbox: messages
enqueued before it are processed, messages after it go to dead letters. Asked, the
caller gets :class:`ActorDead`."""

Kill: Final = _ControlMessage("Kill")
"""Tell this to an actor to make it fail once it reaches this point of its mailbox:
messages enqueued before it are processed, then the actor fails with
:class:`ActorKilled` and its supervisor decides, as for any failure (by default it
restarts the actor: the messages after ``Kill`` wait for the fresh instance). Asked,
the caller gets that :class:`ActorKilled`. ``PoisonPill`` stops an actor instead."""
