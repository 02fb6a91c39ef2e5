"""What travels through a mailbox: envelopes, and the slots that ride with them.

An envelope is a tuple ``(message, sender, slot)``. The slot says what the message needs
besides being handled:

``None``
    a plain ``tell`` (the common case: nothing to allocate).
:class:`Reply` (kind ``ASK``)
    an ``ask``: the caller's task parks on it until the handler's value or error arrives.
``Timer`` (kind ``TIMER``, see ``_timers.py``)
    a tick of a timer, checked when it reaches the front of the mailbox (a cancelled or
    replaced timer's tick is skipped).
:class:`Note` (kind ``NOTE``)
    a notification of the runtime itself (``Terminated``, ``ReceiveTimeout``).
:class:`Detour` (kind ``DETOUR``)
    a message a delivery hook diverts when the actor reaches it (the testkit's injected
    crash or hang): ``run`` is awaited instead of the handler.

Plain tells, asks and detours count against a bounded mailbox's capacity; timer ticks and
notes come from the runtime on the actor's own behalf and never do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import cloudpickle
import trio

from ._errors import UnpicklableMessage

if TYPE_CHECKING:
    from ._cell import ActorCell
    from ._ref import ActorRef
    from ._timers import Timer

# Kinds of slot (``slot.kind``; None is a plain tell).
ASK: Final = 1
TIMER: Final = 2
NOTE: Final = 3
DETOUR: Final = 4

_Abort: Final = trio.lowlevel.Abort


class Reply:
    """The slot an ``ask`` waits on. ``task`` is ``None`` once the caller has its answer
    or gave up (timeout, cancellation); ``parked`` tells whether the caller waits for it
    yet (an answer given while the question is still being delivered, e.g. a delivery
    hook's refusal, must not wake a task that is running)."""

    __slots__ = (
        "error",
        "message",
        "parked",
        "path",
        "sender",
        "task",
        "timeout",
        "unhandled",
        "value",
    )
    kind: Final = ASK

    def __init__(
        self,
        task: trio.lowlevel.Task,
        path: str,
        message: Any,
        timeout: float,
        sender: ActorRef | None,
    ) -> None:
        self.task: trio.lowlevel.Task | None = task
        self.sender = sender
        self.path = path
        self.message = message
        self.timeout = timeout
        self.value: Any = None
        self.error: BaseException | None = None
        self.unhandled = False
        self.parked = False

    def abort(self, _: Any) -> trio.lowlevel.Abort:
        self.task = None
        return _Abort.SUCCEEDED


class RemoteReply(Reply):
    """The slot of an ask that came from another process (see ``_node.py``): nobody
    parks on it here; when it is answered (``MailboxOps._complete``), ``answered(self)``
    sends the answer back. ``task`` holds :data:`REMOTE_ASKER` until then."""

    __slots__ = ("answered",)

    def __init__(
        self,
        path: str,
        message: Any,
        timeout: float,
        sender: ActorRef | None,
        answered: Callable[[RemoteReply], None],
    ) -> None:
        # (Reply.__init__, inline: one call less for every ask from another process)
        self.task = REMOTE_ASKER  # type: ignore[assignment]
        self.sender = sender
        self.path = path
        self.message = message
        self.timeout = timeout
        self.value = None
        self.error = None
        self.unhandled = False
        self.parked = False
        self.answered = answered


REMOTE_ASKER: Final = object()
"""What stands for the task of an ask that came from another process (not answered yet)."""


class Note:
    """The slot of a runtime notification (``Terminated``, ``ReceiveTimeout``)."""

    __slots__ = ()
    kind: Final = NOTE


NEW_NOTE: Final = Note()
"""A notification not delivered yet (a ``Terminated`` is checked against the watch)."""
ACCEPTED: Final = Note()
"""A timer tick or notification delivered once already (then stashed or forwarded)."""


class Detour:
    """The slot of a message a delivery hook diverts when the actor reaches it.

    Instead of calling the handler, the actor's loop awaits ``run(cell, envelope)``,
    where ``envelope`` carries the message's own slot (``inner``: an ask's reply, or
    ``None``). ``run`` returns ``True`` when the actor must leave its loop (it failed or
    was stopped), ``False`` to go on. A detoured message counts against capacity like
    the message itself, and an evicted or undeliverable one is accounted for as
    ``inner`` would be.
    """

    __slots__ = ("inner", "run")
    kind: Final = DETOUR

    def __init__(
        self,
        inner: Reply | None,
        run: Callable[[ActorCell, Envelope], Awaitable[bool]],
    ) -> None:
        self.inner = inner
        self.run = run


Slot: TypeAlias = "Reply | Timer | Note | Detour | None"
Envelope: TypeAlias = "tuple[Any, ActorRef | None, Slot]"


def roundtrip(message: Any) -> Any:
    """Pickle and unpickle ``message`` with cloudpickle, as a process boundary would;
    :class:`UnpicklableMessage` if it cannot cross one."""
    try:
        return cloudpickle.loads(cloudpickle.dumps(message))
    except Exception as exc:  # pickling or unpickling failed: it cannot cross a process
        raise UnpicklableMessage(message, exc) from exc
