"""Testing helpers for trio-actors: probes, fault injection, chaos runs, message traces
and pytest fixtures.

The pytest plugin (loaded automatically once trio-actors is installed) provides the
fixtures ``actor_system``, ``probe``, ``journal``, ``actors_seed``, ``actors_random``,
``faults`` and ``actor_failures``, and fails a test when an actor failed that the test
did not expect; see ``docs/testing.md`` and ``docs/fault-injection.md``. Journals that fail
or step on command are in :mod:`actors.testing.journal`.
"""

from .._public import export as _export
from ._chaos import ChaosFailure, ChaosRun, FaultModel, run_chaos
from ._event_sourced import (
    CommandResult,
    EventSourcedTestKit,
    SerializationCheckFailed,
    event_sourced_testkit,
)
from ._failures import ActorFailure, ActorFailures
from ._faults import ActorKilled, FaultInjector, InjectedFault, Injection
from ._probe import TestProbe
from ._rules import (
    Action,
    Crash,
    Delay,
    Drop,
    Duplicate,
    Hang,
    KillWorker,
    Match,
    MessageType,
    Reorder,
    Rule,
    Schedule,
    Selectors,
    Target,
)
from ._trace import MessageTrace, TraceEntry

__all__ = [
    "Action",
    "ActorFailure",
    "ActorFailures",
    "ActorKilled",
    "ChaosFailure",
    "ChaosRun",
    "CommandResult",
    "Crash",
    "Delay",
    "Drop",
    "Duplicate",
    "EventSourcedTestKit",
    "FaultInjector",
    "FaultModel",
    "Hang",
    "InjectedFault",
    "Injection",
    "KillWorker",
    "Match",
    "MessageTrace",
    "MessageType",
    "Reorder",
    "Rule",
    "Schedule",
    "Selectors",
    "SerializationCheckFailed",
    "Target",
    "TestProbe",
    "TraceEntry",
    "event_sourced_testkit",
    "run_chaos",
]

_export(__name__, globals(), __all__)
