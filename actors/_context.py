"""``ActorContext``: what an actor can do to itself and to its children (``self.context``)."""

from __future__ import annotations

import functools
import re
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import trio

from supervision import Strategy

from ._cell import _NOTE, ASK, DEAD, NEW, ActorCell, Envelope, _child_spec, _Reply
from ._errors import (
    ActorDead,
    ActorNameTaken,
    InvalidActorName,
    StashOverflow,
    SystemClosed,
    WrongThread,
)
from ._mailbox import Mailbox
from ._messages import ReceiveTimeout, Terminated
from ._ref import ActorRef
from ._timers import Timers

if TYPE_CHECKING:
    from ._actor import Actor
    from ._describe import ActorTree
    from ._system import ActorSystem

_RECEIVE_TIMEOUT = ReceiveTimeout()
_VALID_NAME = re.compile(r"[A-Za-z0-9\-_.~:@+=,]+")


def check_name(name: str) -> None:
    """Raise :class:`InvalidActorName` unless ``name`` is usable as a path segment."""
    if not isinstance(name, str) or not _VALID_NAME.fullmatch(name):
        raise InvalidActorName(
            f"invalid actor name {name!r}: use 1 or more of A-Z a-z 0-9 - _ . ~ : @ + = , "
            "(no '/', and '$' is reserved for generated names)"
        )


def _class_default(factory: object, attribute: str, default: Any) -> Any:
    while isinstance(factory, functools.partial):  # spawn(partial(MyActor, name=...))
        factory = factory.func
    value = getattr(factory, attribute, None)
    return default if value is None else value


def _check_positive_int(what: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be an int >= 1, got {value!r}")


class ActorContext(ActorCell):
    """The actor's view of itself in the system, available as ``self.context``.

    Every method must be called from the actor's own handlers or hooks (its own task):
    the context is not shared with other actors. Use refs to talk to other actors.
    """

    __slots__ = ()

    # -- identity and family --------------------------------------------------------------

    @property
    def self(self) -> ActorRef:
        """This actor's own ref."""
        return self.ref

    @property
    def parent(self) -> ActorRef | None:
        """The parent's ref (``/user`` for actors spawned by the system), or ``None``
        for the ``/user`` guardian itself."""
        parent = self._parent
        return None if parent is None else parent.ref

    @property
    def children(self) -> list[ActorRef]:
        """Refs of the live children, oldest first (a child leaves this list once it has
        fully stopped)."""
        return [child.ref for child in (self._children or {}).values()]

    def child(self, name: str) -> ActorRef | None:
        """The live child called ``name``, or ``None``."""
        child = (self._children or {}).get(name)
        return None if child is None else child.ref

    @property
    def sender(self) -> ActorRef | None:
        """The ``sender`` given with the message being processed, if any."""
        current = self._current
        return None if current is None else current[1]

    def describe(self) -> ActorTree:
        """A snapshot of this actor and its live descendants (see
        :meth:`ActorSystem.describe`); taken at once, without yielding."""
        self._check_thread()
        from ._describe import describe_cell

        return describe_cell(self)

    @property
    def actor_system(self) -> ActorSystem:
        """The system this actor runs in (same as ``system``)."""
        return self.system

    # -- spawning and stopping ------------------------------------------------------------

    def spawn(
        self,
        factory: Callable[..., Actor],
        *args: Any,
        name: str | None = None,
        mailbox: Mailbox | None = None,
        throughput: int | None = None,
        supervisor_strategy: Strategy | None = None,
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

        Raises :class:`InvalidActorName`, :class:`ActorNameTaken`, or
        :class:`SystemClosed` if this actor has been asked to stop (for ``system.spawn``:
        once the system is shutting down). Children spawned by an actor that is still
        running during shutdown are stopped with it.
        """
        system = self.system
        self._check_thread()
        if self._stop_requested or self._state == DEAD:
            what = f"actor system {system.name!r}" if self._parent is None else self.ref.path
            raise SystemClosed(f"cannot spawn: {what} is stopping or stopped")
        if name is None:
            self._child_counter += 1
            name = f"${self._child_counter}"
        else:
            check_name(name)
        children = self._children
        if children is None:
            children = self._children = {}
        path = f"{self.ref.path}/{name}"
        if name in children:
            raise ActorNameTaken(path)
        settings = system.settings
        if mailbox is None:
            mailbox = _class_default(factory, "mailbox", settings.mailbox)
        if not isinstance(mailbox, Mailbox):
            raise TypeError(f"mailbox must be an actors.Mailbox, got {mailbox!r}")
        if throughput is None:
            throughput = _class_default(factory, "throughput", settings.throughput)
        _check_positive_int("throughput", throughput)
        stash_capacity = _class_default(factory, "stash_capacity", settings.stash_capacity)
        _check_positive_int("stash_capacity", stash_capacity)
        if supervisor_strategy is None:
            supervisor_strategy = _class_default(factory, "supervisor_strategy", None)
        if supervisor_strategy is not None and not isinstance(supervisor_strategy, Strategy):
            raise TypeError(
                f"supervisor_strategy must be a supervision.Strategy, got {supervisor_strategy!r}"
            )
        if args or kwargs:
            factory = functools.partial(factory, *args, **kwargs)
        cell_class: type[ActorContext] = _class_default(factory, "_cell_class", ActorContext)
        child = cell_class(
            system,
            self,
            name,
            path,
            system._uids.getrandbits(63),
            factory,
            mailbox,
            throughput,
            stash_capacity,
            supervisor_strategy,
        )
        system._nursery.start_soon(child._run, name=path)
        children[name] = child  # registered once its task exists
        engine = self._engine
        if engine is not None:  # supervision has begun: it must know every child
            if name not in engine:
                engine.add(_child_spec(name))
            engine.started(name, trio.current_time())
        return child.ref

    def stop(self, ref: ActorRef | None = None) -> None:
        """Stop this actor (``ref`` omitted or ``self``) or one of its children.

        The actor finishes the message it is processing (within ``stop_timeout``, after
        which the handler is cancelled), stops its own children newest first, runs
        ``post_stop``, and sends everything left in its mailbox to dead letters. Returns
        at once; watch the ref to learn when it is done. A no-op on a stopped child.
        """
        if ref is None or ref == self.ref:
            self._request_stop()
            return
        child = (self._children or {}).get(ref.name)
        if child is not None and child.ref == ref:
            child._request_stop()
            return
        if ref.path.rpartition("/")[0] == self.ref.path:
            return  # a child that has already stopped
        raise ValueError(
            f"{self.ref.path} can only stop itself or its children, not {ref.path}; "
            "use system.stop() or send it a message"
        )

    # -- death watch ----------------------------------------------------------------------

    def watch(self, ref: ActorRef) -> ActorRef:
        """Receive ``Terminated(ref, reason)`` when ``ref`` stops: exactly once per watch,
        after every message ``ref`` sent to this actor, and at once (with
        ``existence_confirmed=False``) if it is already gone. Watching a ref that is
        already watched changes nothing. Returns ``ref``."""
        self._check_thread()
        if ref == self.ref:
            return ref
        watching = self._watching
        if watching is None:
            watching = self._watching = {}
        if ref in watching:
            return ref
        try:
            target = ref._resolve()
        except ActorDead:  # its system is not running here: it is as good as gone
            target = self.system._tombstone(ref)
        if target._thread != self._thread:
            raise WrongThread(
                f"{self.ref.path} cannot watch {ref.path}: its system runs in another thread"
            )
        watching[ref] = target
        if target._state == DEAD:
            self._watched_terminated(ref, None, False)
        else:
            if target._watchers is None:
                target._watchers = {}
            target._watchers[self] = None
        return ref

    def unwatch(self, ref: ActorRef) -> ActorRef:
        """Stop watching ``ref``. No ``Terminated`` for it is delivered afterwards, not
        even one that was already queued. Returns ``ref``."""
        target = None if self._watching is None else self._watching.pop(ref, None)
        if target is None:
            return ref
        if target._watchers is not None:
            target._watchers.pop(self, None)
        # Withdraw its Terminated if already queued, so that a later watch of the same
        # ref gets its own notification, not this one.
        q = self._mailbox
        for index, (message, _, slot) in enumerate(q):
            if slot is _NOTE and message.__class__ is Terminated and message.ref == ref:
                del q[index]
                self._uncounted -= 1
                break
        return ref

    # -- timers and receive timeout -------------------------------------------------------

    @property
    def timers(self) -> Timers:
        """This actor's keyed :class:`Timers` (all cancelled when it stops)."""
        if self._timers is None:
            self._timers = Timers(self)
        return self._timers

    def set_receive_timeout(self, timeout: float | None, message: Any = _RECEIVE_TIMEOUT) -> None:
        """Deliver ``message`` after ``timeout`` seconds in which no message arrived;
        it repeats after each further idle period. ``None`` turns it off."""
        if timeout is not None and not timeout > 0:
            raise ValueError(f"receive timeout must be > 0 seconds or None, got {timeout!r}")
        self._recv_timeout = timeout
        self._recv_timeout_msg = message
        if self._state != NEW:
            self._last_activity = trio.current_time()

    # -- behaviour ------------------------------------------------------------------------

    def become(self, behavior: Callable[[Any], Any], *, discard_old: bool = True) -> None:
        """Handle the next messages with ``behavior`` (``def`` or ``async def``) instead
        of the current handler. With ``discard_old=True`` (the default) the current one
        is replaced; with ``False`` it is kept on a stack so that :meth:`unbecome`
        returns to it. Survives nothing: a new incarnation starts with ``receive``."""
        if not callable(behavior):
            raise TypeError(f"become() needs a callable, got {behavior!r}")
        if not discard_old:
            if self._behaviors is None:
                self._behaviors = []
            self._behaviors.append((self._behavior, self._behavior_async))
        self._set_behavior(behavior)

    def unbecome(self) -> None:
        """Return to the behaviour before the latest :meth:`become` (at the bottom of the
        stack, that is ``receive``)."""
        if self._behaviors:
            self._set_behavior(*self._behaviors.pop())
        elif self._instance is not None:
            self._set_behavior(self._instance.receive)

    # -- stash ----------------------------------------------------------------------------

    def stash(self) -> None:
        """Put the message being processed aside; :meth:`unstash_all` puts it back.

        A stashed ``ask`` is not answered by the handler that stashed it: the caller keeps
        waiting (within its timeout) until the message is processed again after
        ``unstash_all``.

        Raises :class:`StashOverflow` (a failure of the handler) when the stash already
        holds ``stash_capacity`` messages. Stashed messages still in the stash when the
        actor stops go to dead letters (asks among them fail with ``ActorDead``)."""
        current = self._current
        if current is None:
            raise RuntimeError("stash() can only be called while processing a message")
        if self._current_stashed:
            raise RuntimeError("this message is already stashed; stash() it only once")
        if self._stash is None:
            self._stash = deque()
        if len(self._stash) >= self._stash_capacity:
            raise StashOverflow(self.ref.path, self._stash_capacity)
        self._stash.append(current)
        self._current_stashed = True

    def unstash_all(self) -> int:
        """Put every stashed message back at the front of the mailbox, in the order they
        were stashed (ahead of newer messages, ignoring capacity: they were accepted
        already). Returns how many."""
        stash = self._stash
        if not stash:
            return 0
        count = len(stash)
        self._uncounted += sum(1 for _, _, slot in stash if slot is not None and slot.kind != ASK)
        self._mailbox.extendleft(reversed(stash))
        stash.clear()
        return count

    def forward(self, ref: ActorRef) -> None:
        """Hand the message being processed to ``ref``, keeping its original sender. If
        it came with an ``ask``, the asker now waits for ``ref``'s answer instead of
        this actor's (whatever this handler returns is ignored). Forward a message at
        most once, and not after stashing it.

        If ``ref`` has stopped or its bounded mailbox is full, the asker gets
        ``ActorDead`` / ``MailboxFull``; a plain message goes to dead letters or
        follows ``ref``'s overflow policy (a full ``backpressure`` mailbox turns it into
        a ``dropped-newest`` dead letter). Must be called from ``ref``'s own system
        thread."""
        current = self._current
        if current is None:
            raise RuntimeError("forward() can only be called while processing a message")
        if self._current_stashed:
            raise RuntimeError("this message was already stashed or forwarded")
        target = ref._resolve()
        if target._thread != self._thread:
            raise WrongThread(f"{self.ref.path} cannot forward to {ref.path}: another thread")
        message, sender, slot = current
        if slot is not None and slot.kind != ASK:
            slot = None  # a timer tick or a note travels on as a plain message
        self._current_stashed = True  # the loop must not answer or account for it here
        target._accept_forwarded((message, sender, slot))

    @property
    def stash_size(self) -> int:
        """How many messages are stashed."""
        return len(self._stash) if self._stash else 0

    # -- runtime hooks used by Actor --------------------------------------------------------

    def _unhandled(self, message: Any) -> None:
        from ._messages import DeadLetterReason

        current: Envelope | None = self._current
        sender = None
        if current is not None and current[0] is message:
            sender = current[1]
            slot = current[2]
            if isinstance(slot, _Reply):
                slot.unhandled = True
        self.system._dead_letter(message, sender, self.ref, DeadLetterReason.UNHANDLED)


ActorContext.__module__ = "actors"
