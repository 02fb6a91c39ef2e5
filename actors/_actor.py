"""The ``Actor`` base class that user actors subclass."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from supervision import Strategy

    from ._cell import ActorCell
    from ._context import ActorContext
    from ._mailbox import Mailbox

# ``cell``: the cell whose instance is being constructed right now in this thread (set by
# the runtime around the synchronous factory call), so that ``self.context`` works inside
# ``__init__`` without a super() call.
_constructing = threading.local()


class Actor:
    """Base class of actors: state lives in the instance, behaviour in :meth:`receive`.

    The runtime creates the instance (from the factory given to ``spawn``) inside the
    actor's own task, so a failing constructor is an actor failure like any other. All
    handlers of one actor run one at a time, never concurrently: the state needs no locks.

    Class attributes ``mailbox``, ``throughput``, ``stash_capacity`` and
    ``supervisor_strategy`` set defaults for every spawn of the class (``None``: the
    system's setting); the ``spawn`` arguments of the same names (but
    ``stash_capacity``) override them.

    ``supervisor_strategy`` (a :class:`supervision.Strategy`) is how this actor
    supervises the children it spawns: what happens to a child that fails.
    """

    mailbox: ClassVar[Mailbox | None] = None
    throughput: ClassVar[int | None] = None
    stash_capacity: ClassVar[int | None] = None
    supervisor_strategy: ClassVar[Strategy | None] = None

    _actor_cell: ActorCell | None
    _actor_context: ActorContext | None = None

    # -- hooks for extensions (see docs/internals.md) ---------------------------------------
    # The recovery hook: when ``_actor_recovers`` is true, the runtime awaits
    # ``_actor_recover()`` before ``pre_start``/``post_restart`` (persistent actors recover
    # their state from a journal there). ``_cell_class`` (the cell class hook): the cell
    # class that runs instances of this class (routers route in the sender's task).
    _actor_recovers: ClassVar[bool] = False

    def _actor_recover(self) -> Awaitable[None]:
        raise NotImplementedError

    def _describe_details(self) -> Mapping[str, object]:
        """The describe hook: details of this actor for ``system.describe()`` (shown in
        :attr:`ActorNode.details`). The default has none; routers and persistent actors
        add theirs. Called in the system's thread; must not block or raise."""
        return {}

    def __new__(cls, *args: Any, **kwargs: Any) -> Actor:
        self = super().__new__(cls)
        self._actor_cell = getattr(_constructing, "cell", None)
        return self

    @property
    def context(self) -> ActorContext:
        """This actor's :class:`ActorContext`: its ref, parent, children, timers, ...

        Available from ``__init__`` on. Raises ``RuntimeError`` on an instance that was
        not created by ``spawn`` (e.g. one built by hand in a unit test).
        """
        cell = self._actor_cell
        if cell is None:
            raise RuntimeError(
                f"{type(self).__qualname__} instance was not created by spawn(), so it has "
                "no context; spawn it with system.spawn() or context.spawn()"
            )
        context = self._actor_context
        if context is None:  # made on first use: most actors never need one
            from ._context import ActorContext

            context = self._actor_context = ActorContext._create(cell)
        return context

    def receive(self, message: Any) -> Any:
        """Handle one message; may be ``def`` or ``async def``.

        The returned value is the reply when the message came through ``ask`` (ignored
        for ``tell``, and when the handler took a handle to answer later with
        ``self.context.reply_later()``). An exception raised here during an ``ask`` is
        re-raised in the caller and the actor goes on; outside an ``ask`` it is a
        failure of the actor. The default implementation declares every message
        unhandled.
        """
        self.unhandled(message)

    def unhandled(self, message: Any) -> None:
        """Declare ``message`` unhandled: it is published as a ``DeadLetter`` (reason
        ``"unhandled"``), and a caller waiting in ``ask`` gets :class:`UnhandledMessage`."""
        self.context._unhandled(message)

    def pre_start(self) -> Awaitable[None] | None:
        """Called (and awaited if ``async def``) once before the first message.

        Raising here fails the actor with :class:`ActorInitializationError`."""
        return None

    def post_stop(self) -> Awaitable[None] | None:
        """Called after the actor and all its children have stopped, with at most the
        system's ``stop_timeout`` to finish (then it is cancelled). Timers are already
        cancelled. An exception here is reported as a failure of the actor."""
        return None

    def pre_restart(self, error: BaseException, message: Any) -> Awaitable[None] | None:
        """Called on the failed instance before its supervisor replaces it.

        ``message`` is the message whose handling failed (``None`` if the failure was
        elsewhere, or if the actor restarts because a sibling failed). Its timers are
        already cancelled; its children are stopped right after this returns, unless the
        supervisor's strategy keeps them. The default calls :meth:`post_stop`. Raising
        here is a new failure, reported to the supervisor (it counts towards restart
        intensity)."""
        return self.post_stop()

    def post_restart(self, error: BaseException) -> Awaitable[None] | None:
        """Called on the fresh instance after a restart, instead of :meth:`pre_start`,
        before it processes the waiting messages. The default calls :meth:`pre_start`.
        Raising here is a new failure, reported to the supervisor."""
        return self.pre_start()
