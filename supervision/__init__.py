"""Supervision: OTP-style restart policy for actors and for plain trio tasks.

This package imports only trio and attrs, never ``actors`` (the dependency runs one way:
``actors`` -> ``supervision``). So far it holds the policy building blocks: directives
and deciders, restart intensity, backoff with jitter, the one-for-one, one-for-all and
rest-for-one strategies, and child specifications. The supervisor that applies them comes next.
"""

from ._backoff import Backoff, BackoffState
from ._directive import Decider, Directive, decider_from, default_decider
from ._engine import ChildState, Plan, RestartEngine, TooManyRestarts
from ._intensity import IntensityTracker, RestartIntensity
from ._spec import BRUTAL, AutoShutdown, ChildSpec, Restart
from ._strategy import OneForAll, OneForOne, RestForOne, Strategy

__all__ = [
    "BRUTAL",
    "AutoShutdown",
    "Backoff",
    "BackoffState",
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
    "TooManyRestarts",
    "decider_from",
    "default_decider",
]
