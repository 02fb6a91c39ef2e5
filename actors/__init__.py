"""trio-actors: an actor runtime for trio.

Actors are objects with a mailbox that share no state and talk only through messages.
Open a system with :func:`open_system`, spawn actors with ``system.spawn``, and talk to
them through the :class:`ActorRef` that ``spawn`` returns.

Routers live in :mod:`actors.routing`, persistent actors in :mod:`actors.persistence`,
the testkit in :mod:`actors.testing`; supervision strategies come from the
``supervision`` package.
"""

import logging as _logging

from ._actor import Actor
from ._address import Address
from ._context import ActorContext
from ._describe import ActorNode, ActorState, ActorTree
from ._errors import (
    ActorDead,
    ActorError,
    ActorInitializationError,
    ActorNameError,
    ActorNameTaken,
    ActorNotFound,
    AskTimeout,
    HandlerReturnedCoroutine,
    InvalidActorName,
    MailboxFull,
    MailboxOverflow,
    StashOverflow,
    SystemClosed,
    UnhandledFailure,
    UnhandledMessage,
    UnpicklableMessage,
    WrongThread,
)
from ._events import EventBus
from ._mailbox import Mailbox, Overflow
from ._messages import (
    ActorFailed,
    ActorRestarted,
    ActorStarted,
    ActorStopped,
    DeadLetter,
    DeadLetterReason,
    PoisonPill,
    ReceiveTimeout,
    SupervisorGaveUp,
    Terminated,
)
from ._public import export as _export
from ._ref import ActorRef, ActorStats
from ._settings import Settings
from ._supervisor import (
    CountChildren,
    DeleteChild,
    RestartChild,
    StartChild,
    SupervisedChild,
    Supervisor,
    TerminateChild,
    WhichChildren,
)
from ._system import ActorSystem, open_system
from ._timers import Timers
from ._topics import InvalidTopic

__all__ = [
    "Actor",
    "ActorContext",
    "ActorDead",
    "ActorError",
    "ActorFailed",
    "ActorInitializationError",
    "ActorNameError",
    "ActorNameTaken",
    "ActorNode",
    "ActorNotFound",
    "ActorRef",
    "ActorRestarted",
    "ActorStarted",
    "ActorState",
    "ActorStats",
    "ActorStopped",
    "ActorSystem",
    "ActorTree",
    "Address",
    "AskTimeout",
    "CountChildren",
    "DeadLetter",
    "DeadLetterReason",
    "DeleteChild",
    "EventBus",
    "HandlerReturnedCoroutine",
    "InvalidActorName",
    "InvalidTopic",
    "Mailbox",
    "MailboxFull",
    "MailboxOverflow",
    "Overflow",
    "PoisonPill",
    "ReceiveTimeout",
    "RestartChild",
    "Settings",
    "StartChild",
    "StashOverflow",
    "SupervisedChild",
    "Supervisor",
    "SupervisorGaveUp",
    "SystemClosed",
    "TerminateChild",
    "Terminated",
    "Timers",
    "UnhandledFailure",
    "UnhandledMessage",
    "UnpicklableMessage",
    "WhichChildren",
    "WrongThread",
    "open_system",
]

_export(__name__, globals(), __all__)

# The runtime logs under "actors.*" (see docs/logging.md). Like any library it leaves
# output to the application: without logging configured, nothing is printed (not even
# by logging's last-resort handler). A failure nobody handles still ends open_system
# with UnhandledFailure.
_logging.getLogger("actors").addHandler(_logging.NullHandler())
