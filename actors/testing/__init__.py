"""Testing helpers for trio-actors: probes, fault injection, chaos runs, message traces
and pytest fixtures.

The pytest plugin (loaded automatically once trio-actors is installed) provides the
fixtures ``actor_system`` and ``probe``; see ``docs/testing.md`` and
``docs/fault-injection.md``.
"""

from ._chaos import ChaosFailure, ChaosRun, FaultModel, run_chaos
from ._event_sourced import (
    CommandResult,
    EventSourcedTestKit,
    SerializationCheckFailed,
    event_sourced_testkit,
)
from ._faults import ActorKilled, FaultInjector, InjectedFault, Injection, Rule
from ._journal_faults import (
    READS,
    REJECTABLE,
    Countdown,
    FaultyJournal,
    JournalCall,
    JournalInjection,
    Operation,
    Policy,
    SteppingJournal,
    Verdict,
    any_of,
    fail_next,
    fail_when,
    reject_next,
    reject_when,
)
from ._probe import TestProbe
from ._trace import MessageTrace, TraceEntry

__all__ = [
    "READS",
    "REJECTABLE",
    "ActorKilled",
    "ChaosFailure",
    "ChaosRun",
    "CommandResult",
    "Countdown",
    "EventSourcedTestKit",
    "FaultInjector",
    "FaultModel",
    "FaultyJournal",
    "InjectedFault",
    "Injection",
    "JournalCall",
    "JournalInjection",
    "MessageTrace",
    "Operation",
    "Policy",
    "Rule",
    "SerializationCheckFailed",
    "SteppingJournal",
    "TestProbe",
    "TraceEntry",
    "Verdict",
    "any_of",
    "event_sourced_testkit",
    "fail_next",
    "fail_when",
    "reject_next",
    "reject_when",
    "run_chaos",
]
