"""Replying later: a handle on the answer to a message, which an actor can keep, hand
over to another actor, and answer once (``context.reply_later()``).

A handle for an ``ask`` holds the asker's reply slot (``Reply``). The actor that took it
keeps it in ``cell._reply_handles`` until it is answered, so that when that actor stops
or restarts the askers still waiting get :class:`ActorDead` instead of waiting until
their deadline (OTP: a caller learns that the server it called went down). Nothing here
runs per message: only ``reply_later()`` and the handle's own methods.

Handles pickle by number, resolved through a registry of this process (as refs resolve
through theirs), so a message that carries one survives ``roundtrip_messages``; another
process cannot use it yet.
"""

from __future__ import annotations

import itertools
import threading
import weakref
from typing import TYPE_CHECKING, Any, Final, final

from ._envelope import Reply
from ._errors import ActorDead, ActorError, WrongThread
from ._public import NoPublicConstructor

if TYPE_CHECKING:
    from ._cell import ActorCell
    from ._ref import ActorRef

_get_ident: Final = threading.get_ident

# Handles that have been pickled, by number, while they live (see ReplyHandle.__reduce__).
_pickled: weakref.WeakValueDictionary[int, ReplyHandle] = weakref.WeakValueDictionary()
_numbers = itertools.count(1)

# A cell's registry of unanswered handles is compacted (handles whose asker no longer
# waits are dropped) whenever its size reaches a power of two from this one on.
_MIN_COMPACT: Final = 64


def _restore_handle(number: int) -> ReplyHandle:
    handle = _pickled.get(number)
    if handle is None:
        raise ActorError(
            "a ReplyHandle can only be used in the process that made it (reply handles "
            "do not cross process boundaries yet): answer in that process, or let the "
            "actor that took it reply"
        )
    return handle


@final
class ReplyHandle(metaclass=NoPublicConstructor):
    """The answer to one message, to be given later (``self.context.reply_later()``).

    For a message that came with ``ask`` (directly, through a router or a forward), the
    handle answers the asker: :meth:`reply` gives it a value, :meth:`fail` raises an
    error in it. For a message that came with ``tell`` and a sender, the handle tells
    that sender the reply (an error given to :meth:`fail` is told as the message
    itself). The answer's sender is the actor that took the handle.

    A handle is answered exactly once: a second :meth:`reply` or :meth:`fail` raises
    ``RuntimeError``. It may be kept in the actor's state and answered after other
    messages, or passed inside a message to another actor of the same process, which
    answers it. It must be used in the thread of its actor system.

    The asker's timeout still runs: if it gave up (:class:`AskTimeout`, or it was
    cancelled) before the answer, the late answer goes to dead letters (reason
    ``ask_expired``). If the actor that took the handle stops or restarts while the
    asker still waits, the asker gets :class:`ActorDead` at once (with the error that
    made it stop or restart, if any), and a later answer is a dead letter too.

    The runtime makes handles; they cannot be constructed or subclassed.
    """

    __slots__ = ("__weakref__", "_answered", "_cell", "_number", "_reply", "_to")

    def __init__(self, cell: ActorCell, reply: Reply | None, to: ActorRef | None) -> None:
        self._cell = cell
        self._reply = reply
        self._to = to
        self._answered = False
        self._number = 0  # set when first pickled

    def __repr__(self) -> str:
        state = "answered" if self._answered else "pending" if self.pending else "expired"
        to = "the asker" if self._to is None else self._to.path
        return f"<ReplyHandle {self._cell.ref.path} -> {to} ({state})>"

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        if not self._number:
            self._number = next(_numbers)
            _pickled[self._number] = self
        return (_restore_handle, (self._number,))

    @property
    def pending(self) -> bool:
        """Whether an answer is still awaited: not answered yet and, for an ask, the
        asker still waits (it has not timed out or been cancelled, and the actor has
        not stopped or restarted meanwhile)."""
        if self._answered:
            return False
        reply = self._reply
        return reply is None or reply.task is not None

    @property
    def asked(self) -> bool:
        """``True`` if it answers an ``ask``, ``False`` if it tells a sender."""
        return self._to is None

    def reply(self, value: Any) -> None:
        """Answer with ``value``: the asker's ``ask`` returns it (or the sender is told
        it). Under ``roundtrip_messages`` the asker gets a pickled copy, and a value
        that cannot be pickled raises :class:`UnpicklableMessage` in the asker. Telling
        a sender may raise what ``tell`` raises (:class:`MailboxFull` under
        ``backpressure``); the handle then stays unanswered."""
        self._answer(value, None)

    def fail(self, error: BaseException) -> None:
        """Answer with an error: the asker's ``ask`` raises ``error`` (the actor goes on,
        as when a handler raises during an ask). For a handle that tells a sender,
        ``error`` itself is told."""
        if not isinstance(error, Exception):
            raise TypeError(
                f"fail() needs an Exception instance to raise in the asker, got {error!r}"
            )
        self._answer(None, error)

    def tell(self, message: Any, sender: ActorRef | None = None) -> None:
        """The same as :meth:`reply` (``sender`` is ignored): a handle can stand where
        a protocol expects a ref to tell the answer to (``reply_to.tell(result)``)."""
        self._answer(message, None)

    def _answer(self, value: Any, error: BaseException | None) -> None:
        cell = self._cell
        if cell._thread != _get_ident():
            raise WrongThread(
                f"a reply handle of {cell.ref.path} was answered from a thread that does not "
                "run its actor system; use trio.from_thread.run_sync() to answer in that thread"
            )
        if self._answered:
            raise RuntimeError(
                f"this reply handle of {cell.ref.path} has already been answered; a message "
                "is answered exactly once (check handle.pending before answering)"
            )
        reply = self._reply
        if reply is None:
            assert self._to is not None
            # (MailboxFull under backpressure leaves the handle unanswered: retry later.)
            self._to.tell(value if error is None else error, sender=cell.ref)
            self._answered = True
            return
        self._answered = True
        self._reply = None
        handles = cell._reply_handles
        if handles:
            handles.pop(self, None)
        cell._complete(reply, value, error)  # an asker that gave up: an ask_expired letter


def take_reply_handle(cell: ActorCell, envelope: Any) -> ReplyHandle:
    """``context.reply_later()`` for the message ``envelope`` being handled: the handle,
    registered with the cell if it answers an ask."""
    _, sender, slot = envelope
    if not isinstance(slot, Reply) and sender is None:
        raise RuntimeError(
            f"{cell.ref.path}: reply_later() needs a message that came with ask, or with a "
            "sender to tell the reply to; this one has neither (tell it with sender=, or "
            "ask it)"
        )
    # The message is taken: the loop must not answer an ask with the handler's return
    # value, and it cannot be stashed or forwarded any more.
    cell._current_stashed = True
    if isinstance(slot, Reply):
        handle = ReplyHandle._create(cell, slot, None)
        handles = cell._reply_handles
        if handles is None:
            handles = cell._reply_handles = {}
        else:
            size = len(handles)
            if size >= _MIN_COMPACT and not size & (size - 1):  # at 64, 128, 256, ...
                for stale in [h for h in handles if not h.pending]:
                    del handles[stale]
        handles[handle] = None
        return handle
    return ReplyHandle._create(cell, None, sender)


def fail_reply_handles(cell: ActorCell, detail: str, error: BaseException | None) -> None:
    """The actor stops or restarts: every asker still waiting on a handle it took gets
    :class:`ActorDead` (with ``error``, the cause, if any)."""
    handles, cell._reply_handles = cell._reply_handles, None
    for handle in handles or ():
        reply = handle._reply
        if reply is not None and reply.task is not None:
            cell._complete(reply, None, ActorDead(cell.ref.path, detail, error))
