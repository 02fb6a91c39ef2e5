"""``ActorRef``: the only handle through which anyone talks to an actor."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, final

import attrs

from . import _registry
from ._address import Address
from ._ask_deadlines import check_timeout
from ._errors import ActorDead
from ._public import NoPublicConstructor
from ._sender import current_actor

if TYPE_CHECKING:
    from ._cell import Cell

# The implicit sender (see _sender.py): read only when no sender= is given.
_implicit_sender = current_actor.get


@attrs.frozen
class ActorStats:
    """An actor's figures at one moment (``ref.stats()``). For an actor that has stopped,
    ``alive`` is ``False``, its mailbox is empty and the counts are those of its end;
    for an address with no actor here (it never existed, or its system does not run in
    this process), everything is zero."""

    alive: bool
    """Whether the actor is running (or starting, restarting or stopping)."""
    mailbox: int = 0
    """How many messages wait in its mailbox (timer ticks and runtime notifications such
    as ``Terminated`` included; the message being handled and stashed ones are not)."""
    capacity: int | None = None
    """The bound of its mailbox in force now (``None``: unbounded). While it restarts,
    or a persistent actor persists or recovers, this is the temporary bound."""
    stashed: int = 0
    """How many messages it has stashed (``context.stash()``)."""
    processed: int = 0
    """How many messages it has taken out of its mailbox and handled (across restarts)."""
    restarts: int = 0
    """How many times its supervisor has restarted it in place."""


def _restore_ref(address: Address) -> ActorRef:
    return ActorRef._create(address)


@final
class ActorRef(metaclass=NoPublicConstructor):
    """A small, hashable, ordered and picklable handle to one incarnation of an actor.

    Two refs are equal when their :class:`Address` is equal (system, node, path and
    incarnation uid). A ref keeps working after pickling: in the same process it finds
    the live actor again; if that incarnation has stopped, messages go to dead letters.

    Refs are made by the runtime (``spawn`` returns one); they cannot be constructed or
    subclassed.
    """

    __slots__ = ("_cell", "address")

    address: Address
    _cell: Cell | None

    def __init__(self, address: Address, cell: Cell | None = None) -> None:
        self.address = address
        self._cell = cell

    # -- identity -------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The hierarchical path, e.g. ``/user/orders/worker-1``."""
        return self.address.path

    @property
    def name(self) -> str:
        """The last segment of the path."""
        return self.address.path.rpartition("/")[2]

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not ActorRef:
            return NotImplemented
        return self.address == other.address

    def __hash__(self) -> int:
        return hash(self.address)

    def __lt__(self, other: object) -> bool:
        if other.__class__ is not ActorRef:
            return NotImplemented
        return self.address < other.address

    def __le__(self, other: object) -> bool:
        if other.__class__ is not ActorRef:
            return NotImplemented
        return self.address <= other.address

    def __gt__(self, other: object) -> bool:
        if other.__class__ is not ActorRef:
            return NotImplemented
        return self.address > other.address

    def __ge__(self, other: object) -> bool:
        if other.__class__ is not ActorRef:
            return NotImplemented
        return self.address >= other.address

    def __repr__(self) -> str:
        return f"<ActorRef {self.address.path}#{self.address.uid}>"

    def __reduce__(self) -> tuple[Any, tuple[Address]]:
        return (_restore_ref, (self.address,))

    # -- delivery -------------------------------------------------------------------------

    def _resolve(self) -> Cell:
        """The cell behind this ref: the live one (kept once found), or a dead one."""
        cell = self._cell
        if cell is None:
            cell = _registry.resolve(self.address)
            if cell is None:
                system = _registry.system_named(self.address.system)
                if system is None:
                    raise ActorDead(
                        self.address.path,
                        f"belongs to system {self.address.system!r}, which is not running "
                        "in this process",
                    )
                router = system._router
                if router is None or self.address.node == system.node:
                    return system._tombstone(self)
                cell = router.cell_for(self.address)  # in another process of the system
            self._cell = cell
        return cell

    def tell(self, message: Any, sender: ActorRef | None = None) -> None:
        """Enqueue ``message`` and return at once; never blocks, never yields.

        If the actor is stopped, the message goes to dead letters (reason ``stopped``).
        On a full bounded mailbox the overflow policy decides: ``backpressure`` raises
        :class:`MailboxFull` (nothing enqueued), ``drop_newest`` / ``drop_oldest`` send
        the dropped message to dead letters, ``fail`` dead-letters it and fails the
        actor. Raises :class:`WrongThread` when called from a thread other than the
        system's, :class:`UnpicklableMessage` under ``roundtrip_messages`` for a
        message that cannot cross a process boundary.

        ``sender`` (here and in :meth:`send`, :meth:`ask` and :meth:`tell_threadsafe`)
        is what the receiver sees as ``context.sender``. Left out, it is the actor
        whose code is running (its handlers, hooks and the tasks it starts), or
        ``None`` outside any actor; inside :func:`actors.no_sender` it is ``None``.
        """
        cell = self._cell
        if cell is None:
            cell = self._resolve()
        if sender is None:
            sender = _implicit_sender()
        cell.tell(message, sender)

    def tell_threadsafe(self, message: Any, sender: ActorRef | None = None) -> None:
        """Like :meth:`tell`, callable from any thread; the message is enqueued by the
        system's trio thread soon after. Under ``roundtrip_messages`` the copy is made
        here, at the call (later changes to ``message`` do not reach the actor). Raises
        :class:`SystemClosed` if the system has ended. An overflow under
        ``backpressure`` cannot be reported to a foreign thread, so there it is sent to
        dead letters instead."""
        if sender is None:
            sender = _implicit_sender()
        self._resolve().tell_threadsafe(message, sender)

    async def send(self, message: Any, sender: ActorRef | None = None) -> None:
        """Enqueue ``message``, first waiting for room if the mailbox is bounded and full
        (whatever its overflow policy). A checkpoint: if cancelled, the message was not
        enqueued. To a stopped actor, the message goes to dead letters."""
        if sender is None:
            sender = _implicit_sender()
        await self._resolve().send(message, sender)

    async def ask(
        self, message: Any, *, timeout: float | None = None, sender: ActorRef | None = None
    ) -> Any:
        """Send ``message`` and wait for the value the handler returns.

        Raises what the handler raised (the actor itself keeps running),
        :class:`AskTimeout` after ``timeout`` seconds (default: the system's
        ``ask_timeout``), or :class:`ActorDead` if the actor is stopped or stops before
        replying. Waits for room in a full bounded mailbox (the wait counts towards the
        timeout). If the caller is cancelled, the question stays queued and a late reply
        goes to dead letters.

        ``timeout`` is a number of seconds > 0 (``math.inf``: wait forever); a ``bool``,
        a ``str`` or another non-number raises ``TypeError``, and 0, a negative number
        or NaN ``ValueError``, at the call. When the actor stopped because of an error,
        the :class:`ActorDead` carries it: as its ``error``, its ``__cause__`` and in
        its message.
        """
        if timeout is not None and (timeout.__class__ is not float or not timeout > 0):
            timeout = check_timeout(timeout)
        if sender is None:
            sender = _implicit_sender()
        return await self._resolve().ask(message, timeout, sender)

    def stats(self) -> ActorStats:
        """The actor's figures now: mailbox size and capacity, stash, counts (see
        :class:`ActorStats`). Cheap, and safe on a stopped actor."""
        try:
            return self._resolve().stats()
        except ActorDead:  # its system is not running here
            return ActorStats(alive=False)
