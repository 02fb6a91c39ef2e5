"""Exceptions raised by the actor runtime.

Every error names what went wrong and, where there is one, the actor path involved, so a
message in a log or a test failure can be acted on without a debugger.
"""

from __future__ import annotations

import pickle
from typing import TYPE_CHECKING, Any, ClassVar

from supervision import Directive

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


def describe_error(error: BaseException) -> str:
    """``Type: text``, as the last line of a traceback shows an error (the type alone if
    its text is empty)."""
    text = str(error)
    name = type(error).__qualname__
    return f"{name}: {text}" if text else name


def _pickles(error: BaseException) -> bool:
    """Whether ``error`` survives a pickle round trip (many exception classes with their
    own ``__init__`` cannot be rebuilt from their ``args``)."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return False
    return True


class ActorDead(ActorError):
    """The target of an ``ask`` is stopped, never existed, or stopped before it replied.

    ``error`` is the error that stopped the actor, when it stopped because of one (a
    failure its supervisor answered with a stop, a give-up, a failed start or recovery):
    the message names it (``actor /user/x stopped before replying: it failed with
    RecoveryFailed: ...``) and it is also ``__cause__``, so a traceback shows it first.
    ``error`` is ``None`` for a normal stop and for an address where no failure is known.
    Pickled, ``error`` goes along if it can be pickled itself; otherwise it is left out
    (``None``) and only the message names it."""

    def __init__(
        self, path: str, detail: str = "is not running", error: BaseException | None = None
    ) -> None:
        text = f"actor {path} {detail}"
        if error is not None:
            text += f": it failed with {describe_error(error)}"
        super().__init__(text)
        self.path = path
        self.error = error
        if error is not None:
            self.__cause__ = error  # (as `raise ... from error` would)
        _hint(
            self,
            "Nothing answers at this address any more. To learn when an actor stops, watch "
            "it (context.watch); to reach a live one, look it up again (system.find) or "
            "spawn a new one."
            if error is None
            else "It stopped because of the error above (its __cause__, also .error); fix "
            "that, or give its parent a supervisor_strategy that restarts it.",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        state = dict(self.__dict__)
        if self.error is not None and not _pickles(self.error):
            state["error"] = None
        return (_restore_error, (type(self), str(self), state))


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
    """An actor name is empty, longer than 255 characters, ``.`` or ``..``, contains
    ``/``, starts with the reserved ``$`` or uses characters outside
    ``[A-Za-z0-9-_.~:@+=,]``. The message names the rule it broke."""


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
    """A message (or reply) could not be pickled, so it could never cross a process
    boundary: sent to an actor in another process (a worker), or under
    ``roundtrip_messages=True``. Nothing was enqueued or sent."""

    def __init__(self, message: object, cause: BaseException, *, crossing: bool = False) -> None:
        super().__init__(
            f"message of type {type(message).__module__}.{type(message).__qualname__} "
            f"cannot be pickled: {cause}"
        )
        self.message_type = type(message)
        _hint(
            self,
            "A message to an actor in another process (a worker), and its reply or error, "
            "is pickled to cross: it must be a plain picklable value (for instance an attrs "
            "frozen class of picklable fields): no locks, sockets, tasks or open files "
            "inside."
            if crossing
            else "With roundtrip_messages=True every message, reply and error must be a "
            "plain picklable value (for instance an attrs frozen class of picklable "
            "fields): no locks, sockets, tasks, open files or lambdas inside.",
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # It travels (as the error of an ask), even when the type it names cannot:
        # ``message_type`` is then left out (``None``); the message names it.
        state = dict(self.__dict__)
        try:
            pickle.dumps(self.message_type)
        except Exception:
            state["message_type"] = None
        return (_restore_error, (type(self), str(self), state))


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
    """Creating the actor instance, its recovery (a persistent actor) or ``pre_start``
    raised, so the actor never ran; or, in a restart, creating the fresh instance or
    its ``post_restart`` raised.

    The original error is ``error`` (and ``__cause__``). Its supervisor decides what
    follows, and the default decider (``supervision.default_decider``, which reads
    ``default_directive`` below) **stops** the actor, on its first start and on a
    restart alike: retrying a constructor at once rarely helps, and a restart loop
    would only end the system. A decider that says ``RESTART`` for it (for instance
    ``decider_from({ActorInitializationError: Directive.RESTART})``, best with a
    backoff) restarts it instead."""

    default_directive: ClassVar[Directive] = Directive.STOP
    """What ``supervision.default_decider`` answers to this error: stop the actor."""

    def __init__(self, path: str, error: BaseException) -> None:
        super().__init__(f"actor {path} failed to start: {error!r}")
        self.path = path
        self.error = error
        self.__cause__ = error
        _hint(
            self,
            "Its __init__, recovery, pre_start or post_restart raised: the traceback of "
            "the cause shows where. By default its supervisor stops it; to retry instead, "
            "give the parent a supervisor_strategy whose decider restarts on "
            "ActorInitializationError (with a backoff), e.g. decider_from("
            "{ActorInitializationError: Directive.RESTART}).",
        )


class ActorKilled(ActorError):
    """The failure of an actor that reached :data:`actors.Kill` in its mailbox: its
    supervisor decides what follows, as for any failure (by default a restart). The
    test kit's ``FaultInjector.kill`` fails actors with a subclass of it,
    ``actors.testing.ActorKilled``."""

    _what_to_do: ClassVar[str] = (
        "Kill makes an actor fail on purpose, so that its supervisor decides (by default "
        "it restarts it). To stop an actor, tell it PoisonPill or use context.stop / "
        "system.stop instead."
    )

    def __init__(
        self, path: str, detail: str = "was killed: it reached a Kill message in its mailbox"
    ) -> None:
        super().__init__(f"actor {path} {detail}")
        self.path = path
        _hint(self, self._what_to_do)


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


class ProcessLost(ActorError):
    """The worker process that hosted an actor ended without being asked to (killed by
    a signal, crashed, ran out of memory, exited on its own), or its link to this
    process broke. Every actor it hosted fails with this error; their supervisors decide
    as for any failure (a restart re-creates the actor in a new worker process). Asks in
    flight to those actors fail at once with :class:`ActorDead` carrying it."""

    def __init__(self, node: str, pid: int | None, how: str) -> None:
        super().__init__(f"worker process {node} (pid {pid}) was lost: {how}")
        self.node = node
        self.pid = pid
        self.how = how
        _hint(
            self,
            "Messages queued in that process are lost with it (delivery across processes "
            "is at most once); acknowledged events of persistent actors are not (they are "
            "in the journal). The supervisor's strategy decides whether its actors restart.",
        )


class RemoteError(ActorError):
    """Stands for an exception raised in another process that could not be pickled back
    (its class cannot be rebuilt here, or it holds something that does not pickle):
    ``type_name`` is the original class (``module.QualName``) and the message its text;
    the remote traceback is attached as a note."""

    def __init__(self, type_name: str, text: str) -> None:
        super().__init__(f"{type_name}: {text}" if text else type_name)
        self.type_name = type_name


class WorkerError(ActorError):
    """A worker process could not be started, authenticated or used: the message says
    which worker, what failed and why."""
