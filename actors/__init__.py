"""trio-actors: an actor runtime for trio.

Actors are objects with a mailbox that share no state and talk only through messages.
Open a system with :func:`open_system`, spawn actors with ``system.spawn``, and talk to
them through the :class:`ActorRef` that ``spawn`` returns.
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
from ._ref import ActorRef
from ._router import (
    AddRoutee,
    AdjustPoolSize,
    Broadcast,
    GetRoutees,
    RemoveRoutee,
    Resizer,
    Router,
    ScatterGatherFirstCompleted,
    TailChopping,
    mailbox_size,
)
from ._routing import (
    BroadcastRouting,
    ConsistentHashing,
    RandomRouting,
    RoundRobin,
    RoutingLogic,
    SmallestMailbox,
)
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
from ._system import ActorSystem, Settings, open_system
from ._timers import Timers
from ._topics import InvalidTopic

__all__ = [
    "Actor",
    "ActorContext",
    "ActorDead",
    "ActorError",
    "ActorFailed",
    "ActorInitializationError",
    "ActorNameTaken",
    "ActorNode",
    "ActorNotFound",
    "ActorRef",
    "ActorRestarted",
    "ActorStarted",
    "ActorState",
    "ActorStopped",
    "ActorSystem",
    "ActorTree",
    "AddRoutee",
    "Address",
    "AdjustPoolSize",
    "AskTimeout",
    "Broadcast",
    "BroadcastRouting",
    "ConsistentHashing",
    "CountChildren",
    "DeadLetter",
    "DeadLetterReason",
    "DeleteChild",
    "EventBus",
    "GetRoutees",
    "HandlerReturnedCoroutine",
    "InvalidActorName",
    "InvalidTopic",
    "Mailbox",
    "MailboxFull",
    "MailboxOverflow",
    "Overflow",
    "PoisonPill",
    "RandomRouting",
    "ReceiveTimeout",
    "RemoveRoutee",
    "Resizer",
    "RestartChild",
    "RoundRobin",
    "Router",
    "RoutingLogic",
    "ScatterGatherFirstCompleted",
    "Settings",
    "SmallestMailbox",
    "StartChild",
    "StashOverflow",
    "SupervisedChild",
    "Supervisor",
    "SupervisorGaveUp",
    "SystemClosed",
    "TailChopping",
    "TerminateChild",
    "Terminated",
    "Timers",
    "UnhandledFailure",
    "UnhandledMessage",
    "UnpicklableMessage",
    "WhichChildren",
    "WrongThread",
    "mailbox_size",
    "open_system",
]

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type) and _obj.__module__.startswith("actors._"):
        _obj.__module__ = "actors"
del _name, _obj

# The runtime logs under "actors.*" (see docs/logging.md). Like any library it leaves
# output to the application: without logging configured, nothing is printed (not even
# by logging's last-resort handler). A failure nobody handles still ends open_system
# with UnhandledFailure.
_logging.getLogger("actors").addHandler(_logging.NullHandler())
