"""Exceptions raised by the actor runtime.

Every error names what went wrong and, where there is one, the actor path involved, so a
message in a log or a test failure can be acted on without a debugger.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._ref import ActorRef


def _restore_error(cls: type[ActorError], text: str, state: dict[str, Any]) -> ActorError:
    error = cls.__new__(cls)
    Exception.__init__(error, text)
    error.__dict__.update(state)
    cause = state.get("error")
    if isinstance(cause, BaseException):
        error.__cause__ = cause
    return error


class ActorError(Exception):
    """Base class of the errors trio-actors defines: those of the runtime (``actors``)
    and of its extensions (``actors.persistence``, ``actors.testing``). Catch it to
    handle any of them.

    Not every exception the runtime raises is one: misused arguments raise plain
    ``TypeError`` or ``ValueError`` (some errors are both, e.g. :class:`InvalidActorName`
    is a ``ValueError``), an ``ask`` re-raises whatever the handler raised, and
    :class:`supervision.TooManyRestarts` belongs to ``supervision``, which knows nothing
    of actors. Errors pickle with their message and attributes, so they can cross a
    process boundary (for instance as the error an ``ask`` re-raises)."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_error, (type(self), str(self), dict(self.__dict__)))


def _hint(error: BaseException, text: str) -> None:
    """Attach what to do about ``error`` as a note: tracebacks and logged errors show it
    under the message, while ``str(error)`` stays the one-line account of what went wrong
    (which pages of the guide print verbatim)."""
    error.add_note(text)


class ActorDead(ActorError):
    """The target of an ``ask`` is stopped, never existed, or stopped before it replied."""

    def __init__(self, path: str, detail: str = "is not running") -> None:
        super().__init__(f"actor {path} {detail}")
        self.path = path
        _hint(
            self,
            "Nothing answers at this address any more. To learn when an actor stops, watch "
            "it (context.watch); to reach a live one, look it up again (system.find) or "
            "spawn a new one.",
        )


class AskTimeout(ActorError, TimeoutError):
    """No reply to an ``ask`` arrived within its timeout (a ``TimeoutError``).

    The question stays in the target's mailbox; if it is answered later, the reply goes to
    dead letters with reason ``ask_expired``.
    """

    def __init__(self, path: str, timeout: float, message: object) -> None:
        super().__init__(
            f"no reply from {path} within {timeout:g} s to {type(message).__qualname__}"
        )
        self.path = path
        self.timeout = timeout
        _hint(
            self,
            "The question stays in the actor's mailbox; a late reply goes to dead letters "
            "('ask_expired'). If the actor is just slow or busy, pass a longer timeout= to "
            "ask (or raise Settings.ask_timeout); otherwise check that its receive handles "
            "this message and returns.",
        )


class MailboxFull(ActorError):
    """A bounded mailbox had no room and its overflow policy refused the message.

    Raised by ``tell`` under ``backpressure``: the message was **not** accepted, nothing
    was enqueued and nothing was lost (``await ref.send(message)`` waits for room
    instead). Also raised in the caller of an ``ask`` whose question was accepted and
    then evicted under ``drop_oldest``, and to an actor sending to its own full mailbox.
    """

    def __init__(self, path: str, capacity: int, detail: str = "") -> None:
        super().__init__(
            f"mailbox of {path} is full ({capacity} messages)"
            + (
                detail
                or "; wait for room with `await ref.send(message)` (ask waits too), or give "
                "the actor a larger Mailbox(capacity=...) or another overflow policy"
            )
        )
        self.path = path
        self.capacity = capacity


class MailboxOverflow(ActorError):
    """The failure given to an actor whose mailbox policy is ``fail`` when it overflows."""

    def __init__(self, path: str, capacity: int) -> None:
        super().__init__(
            f"mailbox of {path} overflowed its capacity of {capacity} (overflow policy "
            "'fail'), so the actor failed; its supervisor decides what follows. Let senders "
            "wait for room (`await ref.send(message)`), raise the capacity, or pick a "
            "dropping overflow policy"
        )
        self.path = path
        self.capacity = capacity


class StashOverflow(ActorError):
    """``context.stash()`` was called with the stash already at its capacity."""

    def __init__(self, path: str, capacity: int) -> None:
        super().__init__(
            f"stash of {path} is full ({capacity} messages); unstash (context.unstash_all()) "
            "before stashing more, or raise the actor's stash_capacity (class attribute, "
            "spawn(stash_capacity=...) or Settings.stash_capacity)"
        )
        self.path = path
        self.capacity = capacity


class ActorNameError(ActorError):
    """Base class of the errors about actor names and paths: :class:`InvalidActorName`,
    :class:`ActorNameTaken` and :class:`ActorNotFound`."""


class InvalidActorName(ActorNameError, ValueError):
    """An actor name is empty, contains ``/``, starts with the reserved ``$`` or uses
    characters outside ``[A-Za-z0-9-_.~:@+=,]``."""


class ActorNameTaken(ActorNameError):
    """A live sibling already uses this name (a name is free again once its holder has
    fully stopped)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"an actor named {path} already exists")
        self.path = path
        _hint(
            self,
            "Names are unique among live siblings: choose another name, leave name= out "
            "for a generated one, or wait until the old actor has stopped "
            "(system.graceful_stop).",
        )


class ActorNotFound(ActorNameError, LookupError):
    """``system.lookup(path)`` found no live actor at that path."""

    def __init__(self, path: str) -> None:
        super().__init__(f"no live actor at {path}")
        self.path = path
        _hint(
            self,
            "Check the path (top-level actors live under /user); an actor that has stopped "
            "is no longer found. system.find(path) returns None instead of raising.",
        )


class SystemClosed(ActorError):
    """The actor system (or the spawning actor) is stopping or stopped: nothing new can be
    spawned."""


class WrongThread(ActorError, RuntimeError):
    """An actor ref was used from a thread other than the one running its system.

    Use ``ref.tell_threadsafe(message)`` from other threads, or
    ``trio.from_thread.run(ref.ask, message)`` for a reply.
    """


class UnpicklableMessage(ActorError, TypeError):
    """Under ``roundtrip_messages=True`` a message (or reply) could not be pickled, so it
    could never cross a process boundary. Nothing was enqueued."""

    def __init__(self, message: object, cause: BaseException) -> None:
        super().__init__(
            f"message of type {type(message).__module__}.{type(message).__qualname__} "
            f"cannot be pickled: {cause}"
        )
        self.message_type = type(message)
        _hint(
            self,
            "With roundtrip_messages=True every message, reply and error must be a plain "
            "picklable value (for instance an attrs frozen class of picklable fields): no "
            "locks, sockets, tasks, open files or lambdas inside.",
        )


class UnhandledMessage(ActorError):
    """Raised in the caller of ``ask`` when the target declared the question unhandled."""

    def __init__(self, path: str, message: object) -> None:
        super().__init__(f"{path} did not handle {type(message).__qualname__}")
        self.path = path
        _hint(
            self,
            "The actor called unhandled() for this question (it went to dead letters): "
            "ask it something it understands, or add a case for this type to its receive.",
        )


class HandlerReturnedCoroutine(ActorError, TypeError):
    """A synchronous ``receive`` (or ``become`` behaviour) returned a coroutine.

    It was almost certainly meant to be ``async def`` or to ``await`` something; the
    coroutine is closed (never run) and the message counts as failed.
    """

    def __init__(self, path: str, handler: object) -> None:
        name = getattr(handler, "__qualname__", repr(handler))
        super().__init__(
            f"{path}: synchronous handler {name} returned a coroutine; declare it "
            "`async def` or await the coroutine inside it"
        )


class ActorInitializationError(ActorError):
    """Creating the actor instance or running ``pre_start`` raised; the actor never ran.

    The original error is ``error`` (and ``__cause__``)."""

    def __init__(self, path: str, error: BaseException) -> None:
        super().__init__(f"actor {path} failed to start: {error!r}")
        self.path = path
        self.error = error
        self.__cause__ = error
        _hint(
            self,
            "Its __init__, recovery, pre_start or post_restart raised: the traceback of "
            "the cause shows where. Its supervisor decides what follows, as for any "
            "failure (by default a restart, counted towards the restart intensity).",
        )


class UnhandledFailure(ActorError):
    """Raised out of ``open_system`` when a failure reached the top of the supervision
    tree: ``/user`` gave up on a top-level actor (``supervision.TooManyRestarts``) or a
    failure was escalated to it.

    ``failures`` lists every such ``(ref of the top-level actor, error)`` in the order
    they happened; ``__cause__`` is the first error.
    """

    def __init__(self, failures: list[tuple[ActorRef, BaseException]]) -> None:
        lines = [f"{ref.path}: {err!r}" for ref, err in failures]
        super().__init__(f"{len(failures)} unhandled actor failure(s):\n  " + "\n  ".join(lines))
        self.failures = failures
        _hint(
            self,
            "A failure that reaches /user ends the system. Handle it lower in the tree: "
            "give the parent a supervisor_strategy that restarts, resumes or stops on this "
            "error, raise its restart intensity or add a backoff, or set "
            "Settings.guardian_strategy.",
        )
