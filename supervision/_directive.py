"""What a supervisor does about a failure: directives and deciders."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping

Decider = Callable[[BaseException], "Directive"]
"""Maps the error a child failed with to the :class:`Directive` to apply."""


class Directive(enum.Enum):
    """The supervisor's answer to one failure of a child."""

    RESUME = "resume"
    """Keep the child (and its state) and go on with its next message or step."""
    RESTART = "restart"
    """Replace the child with a fresh one (counts towards restart intensity)."""
    STOP = "stop"
    """Stop the child for good."""
    ESCALATE = "escalate"
    """Fail the supervisor itself with this error: its own supervisor decides."""


def default_decider(error: BaseException) -> Directive:
    """Restart on any ``Exception``; escalate anything else (``BaseException`` that is
    not an ``Exception``, e.g. ``KeyboardInterrupt``, is never absorbed).

    An ``Exception`` class may name its own default: a class attribute
    ``default_directive`` holding a :class:`Directive` is the answer for its instances
    (an error that knows that a restart cannot help says ``STOP``; the actor runtime's
    ``ActorInitializationError`` does). A decider of your own, or a table given to
    :func:`decider_from`, overrides it."""
    if not isinstance(error, Exception):
        return Directive.ESCALATE
    directive = getattr(type(error), "default_directive", None)
    if isinstance(directive, Directive):
        return directive
    return Directive.RESTART


def decider_from(
    mapping: Mapping[type[BaseException], Directive],
    otherwise: Decider = default_decider,
) -> Decider:
    """A decider from a table of exception types: the most specific matching type (the
    first one in the error's MRO) wins; an error matching none goes to ``otherwise``.

    A non-``Exception`` error is always escalated, whatever the table says, so that
    ``KeyboardInterrupt`` and ``SystemExit`` can never be resumed or restarted away.
    """
    table = dict(mapping)
    for key, directive in table.items():
        if not (isinstance(key, type) and issubclass(key, BaseException)):
            raise TypeError(f"decider keys must be exception classes, got {key!r}")
        if not isinstance(directive, Directive):
            raise TypeError(f"decider values must be Directive members, got {directive!r}")

    def decide(error: BaseException) -> Directive:
        if not isinstance(error, Exception):
            return Directive.ESCALATE
        for cls in type(error).__mro__:
            directive = table.get(cls)
            if directive is not None:
                return directive
        return otherwise(error)

    return decide
