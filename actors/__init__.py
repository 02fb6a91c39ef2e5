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
    ActorKilled,
    ActorNameError,
    ActorNameTaken,
    ActorNotFound,
    AskTimeout,
    HandlerReturnedCoroutine,
    InvalidActorName,
    MailboxFull,
    MailboxOverflow,
    ProcessLost,
    RemoteError,
    StashOverflow,
    SystemClosed,
    UnhandledFailure,
    UnhandledMessage,
    UnpicklableMessage,
    WorkerError,
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
    Kill,
    PoisonPill,
    ReceiveTimeout,
    SupervisorGaveUp,
    Terminated,
)
from ._pipes import AskFailed, PipeFailed
from ._placement import AnyWorker, OnWorker, OwnProcess, Workers
from ._public import export as _export
from ._ref import ActorRef, ActorStats
from ._reply_later import ReplyHandle
from ._runtime_log import default_output as _default_output
from ._sender import no_sender
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
from ._wire import FrameTooLarge
from ._worker_pool import WorkerInfo

__all__ = [
    "Actor",
    "ActorContext",
    "ActorDead",
    "ActorError",
    "ActorFailed",
    "ActorInitializationError",
    "ActorKilled",
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
    "AnyWorker",
    "AskFailed",
    "AskTimeout",
    "CountChildren",
    "DeadLetter",
    "DeadLetterReason",
    "DeleteChild",
    "EventBus",
    "FrameTooLarge",
    "HandlerReturnedCoroutine",
    "InvalidActorName",
    "InvalidTopic",
    "Kill",
    "Mailbox",
    "MailboxFull",
    "MailboxOverflow",
    "OnWorker",
    "OwnProcess",
    "Overflow",
    "PipeFailed",
    "PoisonPill",
    "ProcessLost",
    "ReceiveTimeout",
    "RemoteError",
    "ReplyHandle",
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
    "WorkerError",
    "WorkerInfo",
    "Workers",
    "WrongThread",
    "no_sender",
    "open_system",
]

_export(__name__, globals(), __all__)

# The runtime logs under "actors.*" (see docs/logging.md). Its warnings and errors (a
# failure, a give-up, a blocked trio thread) print as one line each to stderr while the
# application has configured no logging; once it does, its configuration alone rules.
_logging.getLogger("actors").addHandler(_default_output)
