"""``ActorContext``: what an actor can do to itself and to its children (``self.context``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, final

import trio

from supervision import Strategy

from ._cell_state import NEW
from ._envelope import ASK, NEW_NOTE, Envelope, Reply
from ._errors import ActorDead, StashOverflow, WrongThread
from ._mailbox import Mailbox
from ._messages import DeadLetterReason, ReceiveTimeout, Terminated
from ._pipes import ask_all_via_mailbox, ask_via_mailbox, pipe_to_self
from ._public import NoPublicConstructor
from ._reply_later import ReplyHandle, take_reply_handle
from ._spawning import spawn_child
from ._timers import Timers

if TYPE_CHECKING:
    from ._actor import Actor
    from ._cell import ActorCell
    from ._describe import ActorTree
    from ._placement import Placement
    from ._ref import ActorRef
    from ._system import ActorSystem

_RECEIVE_TIMEOUT = ReceiveTimeout()


@final
class ActorContext(metaclass=NoPublicConstructor):
    """The actor's view of itself in the system, available as ``self.context``.

    Every method must be called from the actor's own handlers or hooks (its own task):
    the context is not shared with other actors. Use refs to talk to other actors. The
    runtime makes it; it cannot be constructed or subclassed.
    """

    __slots__ = ("_cell",)

    def __init__(self, cell: ActorCell) -> None:
        self._cell = cell

    def __repr__(self) -> str:
        return f"<ActorContext {self._cell.ref.path}>"

    # -- identity and family --------------------------------------------------------------

    @property
    def ref(self) -> ActorRef:
        """This actor's own ref."""
        return self._cell.ref

    @property
    def system(self) -> ActorSystem:
        """The system this actor runs in."""
        return self._cell.system

    @property
    def parent(self) -> ActorRef | None:
        """The parent's ref (``/user`` for actors spawned by the system), or ``None``
        for the ``/user`` guardian itself."""
        parent = self._cell._parent
        return None if parent is None else parent.ref

    @property
    def children(self) -> list[ActorRef]:
        """Refs of the live children, oldest first (a child leaves this list once it has
        fully stopped)."""
        return [child.ref for child in (self._cell._children or {}).values()]

    def child(self, name: str) -> ActorRef | None:
        """The live child called ``name``, or ``None``."""
        child = (self._cell._children or {}).get(name)
        return None if child is None else child.ref

    @property
    def sender(self) -> ActorRef | None:
        """The sender of the message being handled, if any: the ``sender=`` it was sent
        with, or else the actor that sent it (the implicit sender); ``None`` for a
        message from outside any actor, a timer tick or a runtime notification."""
        current = self._cell._current
        return None if current is None else current[1]

    def describe(self) -> ActorTree:
        """A snapshot of this actor and its live descendants (see
        :meth:`ActorSystem.describe`); taken at once, without yielding."""
        self._cell._check_thread()
        from ._describe import describe_cell

        return describe_cell(self._cell)

    # -- spawning and stopping ------------------------------------------------------------

    def spawn(
        self,
        factory: Callable[..., Actor],
        *args: Any,
        name: str | None = None,
        mailbox: Mailbox | None = None,
        throughput: int | None = None,
        supervisor_strategy: Strategy | None = None,
        placement: Placement = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Start a child actor and return its ref at once.

        ``factory(*args, **kwargs)`` (usually the actor class) is called inside the new
        actor's task; messages sent before it has started wait in its mailbox. ``name``
        must be unique among live siblings (default: a generated ``$n`` name).
        ``mailbox``, ``throughput`` and ``supervisor_strategy`` (how the new actor will
        supervise its own children) default to the class attributes of the same name,
        then to the system settings. (Arguments for the factory that are themselves
        called ``name``, ``mailbox``, ``throughput`` or ``supervisor_strategy`` need a
        ``functools.partial``.) The new actor is supervised by this one, with this
        actor's ``supervisor_strategy``.

        ``placement`` (a system with worker processes only): where the new actor runs,
        :class:`OnWorker` or :class:`AnyWorker`; ``None`` (the default): in this process.
        The factory, its arguments and every message to the actor must then be
        picklable (``UnpicklableMessage`` or ``TypeError`` at the call, naming the
        type). See ``docs/workers.md``. On a node of a cluster:
        ``actors.cluster.OnNode(name)`` or ``actors.cluster.AnyNode()``, another node,
        which starts the class of that name from its ``Cluster(actors=...)``; this actor
        supervises it from here, and restarts it on another node if its node is lost
        (see ``docs/cluster.md``).

        Raises :class:`InvalidActorName`, :class:`ActorNameTaken`, or
        :class:`SystemClosed` if this actor has been asked to stop (for ``system.spawn``:
        once the system is shutting down). Children spawned by an actor that is still
        running during shutdown are stopped with it.
        """
        options = (name, mailbox, throughput, supervisor_strategy, placement)
        return spawn_child(self._cell, factory, args, kwargs, *options)

    def stop(self, ref: ActorRef | None = None) -> None:
        """Stop this actor (``ref`` omitted or its own ref) or one of its children.

        The actor finishes the message it is handling (within ``stop_timeout``, after
        which the handler is cancelled), stops its own children newest first, runs
        ``post_stop``, and sends everything left in its mailbox to dead letters. Returns
        at once; watch the ref to learn when it is done. A no-op on a stopped child.
        """
        cell = self._cell
        if ref is None or ref == cell.ref:
            cell.request_stop()
            return
        child = (cell._children or {}).get(ref.name)
        if child is not None and child.ref == ref:
            child.request_stop()
            return
        if ref.path.rpartition("/")[0] == cell.ref.path:
            return  # a child that has already stopped
        raise ValueError(
            f"{cell.ref.path} can only stop itself or its children, not {ref.path}; "
            "use system.stop() or send it a message"
        )

    # -- death watch ----------------------------------------------------------------------

    def watch(self, ref: ActorRef) -> ActorRef:
        """Receive ``Terminated(ref, error)`` when ``ref`` stops: exactly once per watch,
        after every message ``ref`` sent to this actor, and at once (with
        ``existence_confirmed=False``, and the error it stopped with if it failed and
        the system still remembers it) if it is already gone. Watching a ref that is
        already watched changes nothing. Returns ``ref``."""
        cell = self._cell
        cell._check_thread()
        if ref == cell.ref:
            return ref
        watching = cell._watching
        if watching is None:
            watching = cell._watching = {}
        if ref in watching:
            return ref
        try:
            target = ref._resolve()
        except ActorDead:  # its system is not running here: it is as good as gone
            target = cell.system._tombstone(ref)
        if target._thread != cell._thread:
            raise WrongThread(
                f"{cell.ref.path} cannot watch {ref.path}: its system runs in another thread"
            )
        watching[ref] = target
        if not target.watched_by(cell):
            # Gone already: its Terminated names the error it stopped with, when known
            # (a tombstone remembers the last failures; a dead cell its own).
            error = getattr(target, "error", None) or getattr(target, "_reason", None)
            cell._watched_terminated(ref, error, False)
        return ref

    def unwatch(self, ref: ActorRef) -> ActorRef:
        """Stop watching ``ref``. No ``Terminated`` for it is delivered afterwards, not
        even one that was already queued. Returns ``ref``."""
        cell = self._cell
        target = None if cell._watching is None else cell._watching.pop(ref, None)
        if target is None:
            return ref
        target.unwatched_by(cell)
        # Withdraw its Terminated if already queued, so that a later watch of the same
        # ref gets its own notification, not this one.
        q = cell._mailbox
        for index, (message, _, slot) in enumerate(q):
            if slot is NEW_NOTE and message.__class__ is Terminated and message.ref == ref:
                del q[index]
                cell._uncounted -= 1
                break
        return ref

    # -- timers and receive timeout -------------------------------------------------------

    @property
    def timers(self) -> Timers:
        """This actor's keyed :class:`Timers` (all cancelled when it stops or restarts)."""
        cell = self._cell
        if cell._timers is None:
            cell._timers = Timers._create(cell)
        return cell._timers

    def set_receive_timeout(self, timeout: float | None, message: Any = _RECEIVE_TIMEOUT) -> None:
        """Deliver ``message`` after ``timeout`` seconds in which no message arrived;
        it repeats after each further idle period. ``None`` turns it off."""
        if timeout is not None and not timeout > 0:
            raise ValueError(f"receive timeout must be > 0 seconds or None, got {timeout!r}")
        cell = self._cell
        cell._recv_timeout = timeout
        cell._recv_timeout_msg = message
        if cell._state != NEW:
            cell._last_activity = trio.current_time()

    # -- behaviour ------------------------------------------------------------------------

    def become(self, behavior: Callable[[Any], Any], *, discard_old: bool = True) -> None:
        """Handle the next messages with ``behavior`` (``def`` or ``async def``) instead
        of the current handler. With ``discard_old=True`` (the default) the current one
        is replaced; with ``False`` it is kept on a stack so that :meth:`unbecome`
        returns to it. Survives nothing: a new incarnation starts with ``receive``."""
        if not callable(behavior):
            raise TypeError(f"become() needs a callable, got {behavior!r}")
        cell = self._cell
        if not discard_old:
            if cell._behaviors is None:
                cell._behaviors = []
            cell._behaviors.append((cell._behavior, cell._behavior_async))
        cell._set_behavior(behavior)

    def unbecome(self) -> None:
        """Return to the behaviour before the latest :meth:`become` (at the bottom of the
        stack, that is ``receive``)."""
        cell = self._cell
        if cell._behaviors:
            cell._set_behavior(*cell._behaviors.pop())
        elif cell._instance is not None:
            cell._set_behavior(cell._instance.receive)

    # -- stash and forward ----------------------------------------------------------------

    def stash(self) -> None:
        """Put the message being handled aside; :meth:`unstash_all` puts it back.

        A stashed ``ask`` is not answered by the handler that stashed it: the caller keeps
        waiting (within its timeout) until the message is handled again after
        ``unstash_all``.

        Raises :class:`StashOverflow` (a failure of the handler) when the stash already
        holds ``stash_capacity`` messages. Stashed messages still in the stash when the
        actor stops go to dead letters (asks among them fail with ``ActorDead``)."""
        cell = self._cell
        current = self._message_in_hand("stash")
        if cell._stash is None:
            cell._stash = deque()
        if len(cell._stash) >= cell._stash_capacity:
            raise StashOverflow(cell.ref.path, cell._stash_capacity)
        cell._stash.append(current)
        cell._current_stashed = True

    def unstash_all(self) -> int:
        """Put every stashed message back at the front of the mailbox, in the order they
        were stashed (ahead of newer messages, ignoring capacity: they were accepted
        already). Returns how many."""
        cell = self._cell
        stash = cell._stash
        if not stash:
            return 0
        count = len(stash)
        cell._uncounted += sum(1 for _, _, slot in stash if slot is not None and slot.kind != ASK)
        cell._mailbox.extendleft(reversed(stash))
        stash.clear()
        return count

    @property
    def stash_size(self) -> int:
        """How many messages are stashed."""
        stash = self._cell._stash
        return len(stash) if stash else 0

    def forward(self, ref: ActorRef) -> None:
        """Hand the message being handled to ``ref``, keeping its original sender. If
        it came with an ``ask``, the asker now waits for ``ref``'s answer instead of
        this actor's (whatever this handler returns is ignored). Forward a message at
        most once, and not after stashing it.

        If ``ref`` has stopped or its bounded mailbox is full, the asker gets
        ``ActorDead`` / ``MailboxFull``; a plain message goes to dead letters or
        follows ``ref``'s overflow policy (a full ``backpressure`` mailbox turns it into
        a ``dropped_newest`` dead letter). Must be called from ``ref``'s own system
        thread."""
        cell = self._cell
        current = self._message_in_hand("forward")
        target = ref._resolve()
        if target._thread != cell._thread:
            raise WrongThread(f"{cell.ref.path} cannot forward to {ref.path}: another thread")
        message, sender, slot = current
        reply = slot if isinstance(slot, Reply) else None  # a tick or a note goes on plain
        cell._current_stashed = True  # the loop must not answer or account for it here
        target.forward(message, sender, reply)

    def _message_in_hand(self, what: str) -> Envelope:
        """The envelope being handled, which ``what`` (stash, forward or reply_later) may
        take once; ``RuntimeError`` outside a handler, or if it was taken already."""
        cell = self._cell
        current = cell._current
        if current is None:
            raise RuntimeError(f"{what}() can only be called while handling a message")
        if cell._current_stashed:
            raise RuntimeError(
                "this message was already stashed, forwarded or taken by reply_later(); "
                f"{what}() takes a message once"
            )
        return current

    # -- replying later and asking without blocking ------------------------------------------

    def reply_later(self) -> ReplyHandle:
        """Take the answer to the message being handled out of the handler's hands: the
        handler's return value no longer answers it; the returned :class:`ReplyHandle`
        does, once, whenever :meth:`ReplyHandle.reply` or :meth:`ReplyHandle.fail` is
        called (by this actor after other messages, or by another actor the handle was
        passed to in a message).

        For a message that came with ``ask`` (also through a router or a forward), the
        handle answers the asker, within the asker's timeout; if this actor stops or
        restarts first, the asker gets :class:`ActorDead`. For a message told with a
        sender, the handle tells that sender the reply. Any other message (no asker, no
        sender: a script's ``tell``, a timer tick, a notification) has nobody to reply
        to: ``RuntimeError``. Also ``RuntimeError`` outside a handler, and for a message
        already stashed, forwarded or taken. If the handler raises after taking the
        handle of an ask, the asker gets that error at once (as for any asked message),
        and a later answer through the handle goes to dead letters (``ask_expired``).
        """
        return take_reply_handle(self._cell, self._message_in_hand("reply_later"))

    def ask(
        self,
        target: ActorRef,
        message: Any,
        *,
        timeout: float | None = None,
        adapt: Callable[[Any], Any] | None = None,
    ) -> None:
        """Ask ``target`` without waiting: returns at once, and the outcome arrives later
        in this actor's mailbox, as a message handled in turn with the others.

        The reply arrives as ``adapt(reply)`` (the reply itself without ``adapt``). No
        reply (:class:`AskTimeout` after ``timeout`` seconds, default
        ``Settings.ask_timeout``; :class:`ActorDead`; the error the target's handler
        raised), or an ``adapt`` that raised, arrives as :class:`AskFailed`. ``adapt``
        runs when the reply comes in, outside the handlers: keep it a pure function of
        the reply (build a message; do not touch the actor's state).

        The question's sender is this actor. The outcome arrives outside the mailbox's
        capacity (like a timer tick). Pending asks survive a restart (the new instance
        gets their outcome) and are cancelled when this actor stops: nothing arrives
        after that, and a reply that comes later is an ``ask_expired`` dead letter. An
        actor may ask itself this way (its handler must not wait for the reply).
        ``TypeError`` / ``ValueError`` for a bad ``target`` or ``timeout``.
        """
        ask_via_mailbox(self._cell, target, message, timeout, adapt)

    def ask_all(
        self,
        requests: Iterable[tuple[ActorRef, Any]],
        *,
        timeout: float | None = None,
        adapt: Callable[[tuple[Any, ...]], Any] | None = None,
    ) -> None:
        """Ask several actors at once without waiting, and get one message: the tuple of
        their replies in the order of ``requests`` (``(ref, message)`` pairs), passed
        through ``adapt`` if given, once all have replied within one deadline
        (``timeout`` seconds from now, default ``Settings.ask_timeout``).

        The first ask that fails (or the deadline) cancels the others and arrives as
        :class:`AskFailed` naming that request and its target (a reply that comes after
        the cancel is an ``ask_expired`` dead letter). Otherwise as :meth:`ask`.
        """
        ask_all_via_mailbox(self._cell, requests, timeout, adapt)

    def pipe_to_self(
        self,
        function: Callable[..., Awaitable[Any]],
        *args: Any,
        adapt: Callable[[Any], Any] | None = None,
    ) -> None:
        """Run ``await function(*args)`` in a task this actor owns, without waiting, and
        receive its result as a message: ``adapt(result)``, or the result itself. If it
        raises an ``Exception`` (or ``adapt`` does), the actor receives
        :class:`PipeFailed` with the error. For any async work (I/O, a computation in
        a thread) whose result the actor must handle in turn with its messages.

        The work must not touch the actor's state (it runs while the actor handles
        other messages). It outlives a restart and is cancelled when the actor stops;
        nothing arrives after that. To wait for it with a deadline, put the deadline in
        ``function`` (``trio.fail_after``).
        """
        pipe_to_self(self._cell, function, args, adapt)

    # -- the runtime's side of Actor.unhandled -----------------------------------------------

    def _unhandled(self, message: Any) -> None:
        cell = self._cell
        current = cell._current
        sender = None
        if current is not None and current[0] is message:
            sender = current[1]
            slot = current[2]
            if isinstance(slot, Reply):
                slot.unhandled = True
        cell.system._dead_letter(message, sender, cell.ref, DeadLetterReason.UNHANDLED)


def context_of(cell: ActorCell) -> ActorContext:
    """The context of ``cell``'s actor: its instance's, or (before it has one) a
    context of the cell's own (a context holds nothing but the cell)."""
    instance = cell._instance
    return ActorContext._create(cell) if instance is None else instance.context
