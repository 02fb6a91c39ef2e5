"""The implicit sender: which actor the running code belongs to.

Each actor's task sets :data:`current_actor` to the actor's ref when it starts
(``Lifecycle._run``). trio gives every task its own copy of the context it was started
from, so the value is seen by the actor's handlers and hooks and by every task the actor
starts (a pipe, a nursery of its own), while a script's task, and the tasks it starts,
see ``None``. ``ActorRef.tell``, ``send`` and ``ask`` read it only when no ``sender=``
is given: one ``ContextVar.get`` per such call, nothing else.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from ._ref import ActorRef

current_actor: Final[ContextVar[ActorRef | None]] = ContextVar(
    "trio_actors_current_actor", default=None
)
"""The ref of the actor whose task (or a task it started) runs the current code."""


@contextmanager
def no_sender() -> Iterator[None]:
    """Inside the ``with`` block, messages sent without ``sender=`` carry no sender,
    even from inside an actor (the receiver's ``context.sender`` is ``None``).

    Use it when the receiver must not learn who sent a message, or must not answer it.
    An explicit ``sender=`` still wins. It changes only the current task (and tasks
    started inside the block): other actors are not affected. Outside any actor it
    changes nothing, since there is no implicit sender there anyway.
    """
    token = current_actor.set(None)
    try:
        yield
    finally:
        current_actor.reset(token)
