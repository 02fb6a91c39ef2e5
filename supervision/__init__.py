"""Supervision: OTP-style restart policy for actors and for plain trio tasks.

This package imports only trio and attrs, never ``actors`` (the dependency runs one way:
``actors`` -> ``supervision``). It holds the policy building blocks (directives and
deciders, restart intensity, backoff with jitter, the one-for-one, one-for-all and
rest-for-one strategies, child specifications), the pure :class:`RestartEngine` that
turns them into decisions, and :class:`TaskSupervisor`, which applies those decisions to
plain trio tasks.
"""

from types import FunctionType as _FunctionType

from ._backoff import Backoff, BackoffState
from ._child import ChildCounts, ChildInfo, listen_for_stop
from ._directive import Decider, Directive, decider_from, default_decider
from ._engine import ChildState, Plan, RestartEngine, TooManyRestarts
from ._intensity import IntensityTracker, RestartIntensity
from ._spec import BRUTAL, AutoShutdown, ChildSpec, Restart
from ._strategy import OneForAll, OneForOne, RestForOne, Strategy
from ._tasks import TaskSupervisor, open_supervisor

__all__ = [
    "BRUTAL",
    "AutoShutdown",
    "Backoff",
    "BackoffState",
    "ChildCounts",
    "ChildInfo",
    "ChildSpec",
    "ChildState",
    "Decider",
    "Directive",
    "IntensityTracker",
    "OneForAll",
    "OneForOne",
    "Plan",
    "RestForOne",
    "RestartEngine",
    "Restart",
    "RestartIntensity",
    "Strategy",
    "TaskSupervisor",
    "TooManyRestarts",
    "decider_from",
    "default_decider",
    "listen_for_stop",
    "open_supervisor",
]

# Exported objects show their public name (``supervision.ChildSpec``) in reprs,
# tracebacks, pickles and the documentation, not the private module they live in.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type | _FunctionType):
        _obj.__module__ = __name__
del _name, _obj
