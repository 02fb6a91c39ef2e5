"""What stands behind an ``ActorRef``: the :class:`Cell` protocol, the live
:class:`ActorCell` and the :class:`DeadCell` of an address with no live actor.

A ref resolves its address to a cell once and then talks to it through the protocol
below, whatever the cell is: today a live cell of this process or a dead one; next, a
proxy for an actor in another process, which would send what it is given over a link.
Everything the runtime itself does to a cell it does not own (death watch, stopping,
events of the bus, forwards) also goes through the protocol.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, Protocol, final

import trio

from ._ask_deadlines import check_timeout
from ._envelope import RemoteReply, Reply, roundtrip
from ._errors import ActorDead
from ._lifecycle import Lifecycle
from ._messages import DeadLetterReason
from ._ref import ActorStats

if TYPE_CHECKING:
    from ._ref import ActorRef
    from ._system import ActorSystem


class Cell(Protocol):
    """What a ref (and the runtime) needs from whatever stands behind an address.

    Every method is called in the thread that runs ``system`` unless it says otherwise,
    and none blocks: a cell that cannot deliver now turns the message into a dead letter
    in ``system`` (or fails the ask), never loses it silently.
    """

    ref: ActorRef
    """The ref of the actor this cell stands for."""
    system: ActorSystem
    """The system of this process the cell belongs to (where its dead letters go)."""
    _thread: int
    """The ident of the thread that runs ``system``: what may call it directly."""

    def tell(self, message: Any, sender: ActorRef | None) -> None:
        """``ActorRef.tell``: enqueue without waiting; :class:`MailboxFull` under
        backpressure; a dead letter if the actor is gone."""

    def tell_threadsafe(self, message: Any, sender: ActorRef | None) -> None:
        """``ActorRef.tell_threadsafe``: callable from any thread."""

    async def send(self, message: Any, sender: ActorRef | None) -> None:
        """``ActorRef.send``: enqueue, waiting for room first."""

    async def ask(self, message: Any, timeout: float | None, sender: ActorRef | None) -> Any:
        """``ActorRef.ask``: the handler's value, or its exception, :class:`AskTimeout`
        or :class:`ActorDead`."""

    def offer(
        self, message: Any, sender: ActorRef | None, copy: bool = True, via: str = "publish"
    ) -> None:
        """Enqueue for the runtime (events of the bus, tells from other threads): never
        raises, applies the overflow policy; callable from any thread."""

    def forward(self, message: Any, sender: ActorRef | None, slot: Reply | None) -> None:
        """Enqueue a message handed over by another actor, with its ask's reply slot."""

    def is_dead(self) -> bool:
        """Whether the actor has stopped for good (or never existed)."""

    def watched_by(self, watcher: Any) -> bool:
        """Register a watching cell; ``False`` if the actor is already dead."""

    def unwatched_by(self, watcher: Any) -> None:
        """Forget a watching cell."""

    def request_stop(self, deadline: float | None = None) -> None:
        """Ask the actor to stop after its current message (a no-op once dead)."""

    def stats(self) -> ActorStats:
        """The actor's figures now (``ActorRef.stats``)."""

    def queued(self) -> int:
        """How many messages wait in its mailbox (``stats().mailbox``, cheaper)."""


class ActorCell(Lifecycle):
    """The runtime side of one live actor incarnation: see ``_cell_state.py`` for its
    fields and the layers its behaviour is split into. Extensions may subclass it (the
    router's cell does) through the ``_cell_class`` hook of an actor class; nothing
    else constructs it but the runtime."""

    __slots__ = ()


@final
class DeadCell:
    """Stands in for an address that resolves to no live actor: every message goes to
    dead letters (``no_such_actor``) and every ``ask`` raises :class:`ActorDead`, whose
    ``error`` (and cause) is ``error``: the error the actor stopped with, when the
    system still remembers it (``None`` otherwise)."""

    __slots__ = ("_roundtrip", "_thread", "error", "ref", "system")

    def __init__(
        self, system: ActorSystem, ref: ActorRef, error: BaseException | None = None
    ) -> None:
        self.system = system
        self.ref = ref
        self.error = error
        self._thread = system._thread_id
        self._roundtrip = system.settings.roundtrip_messages

    def _dead(self) -> ActorDead:
        if self.error is None:
            return ActorDead(self.ref.path, "does not exist (no live actor at this address)")
        return ActorDead(self.ref.path, "has stopped", self.error)

    def __repr__(self) -> str:
        return f"<DeadCell {self.ref.path}>"

    def _gone(self, message: Any, sender: ActorRef | None) -> None:
        self.system._dead_letter(message, sender, self.ref, DeadLetterReason.NO_SUCH_ACTOR)

    def tell(self, message: Any, sender: ActorRef | None) -> None:
        if self._thread != threading.get_ident():
            self.system._check_thread()
        if self._roundtrip:
            message = roundtrip(message)
        self._gone(message, sender)

    def tell_threadsafe(self, message: Any, sender: ActorRef | None) -> None:
        if self._roundtrip:
            message = roundtrip(message)  # raises in the calling thread
        self._gone(message, sender)

    async def send(self, message: Any, sender: ActorRef | None) -> None:
        await trio.lowlevel.checkpoint()
        self.tell(message, sender)

    async def ask(self, message: Any, timeout: float | None, sender: ActorRef | None) -> Any:
        if timeout is not None:
            check_timeout(timeout)
        await trio.lowlevel.checkpoint()
        if self._roundtrip:
            roundtrip(message)
        raise self._dead()

    def offer(
        self, message: Any, sender: ActorRef | None, copy: bool = True, via: str = "publish"
    ) -> None:
        self._gone(message, sender)

    def forward(self, message: Any, sender: ActorRef | None, slot: Reply | None) -> None:
        if slot is not None and slot.task is not None:
            task, slot.task, slot.error = slot.task, None, self._dead()
            if slot.parked:
                trio.lowlevel.reschedule(task)
            elif isinstance(slot, RemoteReply):
                slot.answered(slot)
            return
        self._gone(message, sender)

    def is_dead(self) -> bool:
        return True

    def watched_by(self, watcher: Any) -> bool:
        return False

    def unwatched_by(self, watcher: Any) -> None:
        return None

    def request_stop(self, deadline: float | None = None) -> None:
        return None

    def stats(self) -> ActorStats:
        return ActorStats(alive=False)

    def queued(self) -> int:
        return 0
