"""Fault rules: which deliveries (:class:`Match`), which of those (:class:`Schedule`), and
what happens to them (one action class per fault).

A :class:`Rule` puts the three together and counts what it saw and did. The actions are
plain frozen values that check their own arguments; the :class:`FaultInjector` applies
them by their type. :class:`Selectors` names the keyword arguments of the injector's
short forms (``faults.drop(to="w", nth=2)``): the fields of a match and a schedule.
"""

from __future__ import annotations

import fnmatch
import math
import random
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeAlias, TypedDict

import attrs

from .._ref import ActorRef

Target: TypeAlias = ActorRef | str | None
"""Who a rule is about: a ref, a name (no ``/``: any actor of that name), a path or a
path pattern with ``*`` (``"/user/workers/*"``), or ``None``: anyone."""

MessageType: TypeAlias = type | tuple[type, ...] | None
"""A class or a tuple of classes the message must be an instance of (``None``: any)."""


# -- argument checks ---------------------------------------------------------------------------


def _check_target(_: object, field: attrs.Attribute[Target], value: Target) -> None:
    if value is not None and not isinstance(value, ActorRef | str):
        raise TypeError(f"{field.name} must be a ref, a name or a path pattern, got {value!r}")


def _check_type(_: object, __: attrs.Attribute[MessageType], value: MessageType) -> None:
    classes = value if isinstance(value, tuple) else (value,)
    if value is not None and (not classes or not all(isinstance(c, type) for c in classes)):
        raise TypeError(f"type must be a class or a non-empty tuple of classes, got {value!r}")


def _check_where(_: object, __: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"where must be a predicate (a callable), got {value!r}")


def _count(
    minimum: int, *, optional: bool = True
) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    """A validator: an int of at least ``minimum`` (or ``None`` if ``optional``)."""

    def check(_: object, field: attrs.Attribute[Any], value: Any) -> None:
        if value is None and optional:
            return
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{field.name} must be an int >= {minimum}, got {value!r}")

    return check


def _seconds(*, zero: bool) -> Callable[[object, attrs.Attribute[Any], Any], None]:
    """A validator: a number of seconds, > 0 (or >= 0 if ``zero``); ``inf`` is allowed."""

    def check(instance: object, field: attrs.Attribute[Any], value: Any) -> None:
        number = isinstance(value, int | float) and not isinstance(value, bool)
        if not number or not (value >= 0 if zero else value > 0):  # NaN fails both
            bound = ">= 0" if zero else "> 0"
            what = f"{type(instance).__name__}({field.name}=...)"
            raise ValueError(f"{what} must be a number of seconds {bound}, got {value!r}")

    return check


def _check_probability(_: object, __: attrs.Attribute[Any], value: Any) -> None:
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if value is not None and not (number and 0.0 <= value <= 1.0):
        raise ValueError(f"probability must be within [0, 1], got {value!r}")


def _matches_target(target: Target, ref: ActorRef | None) -> bool:
    if target is None:
        return True
    if ref is None:
        return False
    if isinstance(target, ActorRef):
        return target == ref
    if "/" not in target:
        return ref.name == target
    return fnmatch.fnmatchcase(ref.path, target)


# -- which deliveries, which of them -----------------------------------------------------------


@attrs.frozen
class Match:
    """Which deliveries a rule is about: all the conditions given must hold (none given:
    every delivery). Wrong kinds of arguments raise ``TypeError``."""

    to: Target = attrs.field(default=None, validator=_check_target)
    """The recipient (see :data:`Target`)."""
    sender: Target = attrs.field(default=None, validator=_check_target)
    """The sender; a message without a sender matches only ``None``."""
    type: MessageType = attrs.field(default=None, validator=_check_type)
    """The message's class (an ``isinstance`` check)."""
    where: Callable[[Any], bool] | None = attrs.field(default=None, validator=_check_where)
    """A predicate on the message, called last (only for messages the rest matched)."""

    def matches(self, recipient: ActorRef, message: Any, sender: ActorRef | None) -> bool:
        """Whether the delivery of ``message`` from ``sender`` to ``recipient`` matches."""
        if not _matches_target(self.to, recipient):
            return False
        if self.sender is not None and not _matches_target(self.sender, sender):
            return False
        if self.type is not None and not isinstance(message, self.type):
            return False
        return self.where is None or bool(self.where(message))


@attrs.frozen
class Schedule:
    """Which of the matching deliveries get the fault, counted per rule from the first
    match: every one by default; only the ``nth``; at most the first ``times`` that
    would fire; each with ``probability``, drawn from the injector's seeded random
    source. Given together, all must agree (``nth`` and ``times`` are checked before
    the draw, so a message they rule out draws nothing). Bad values raise
    ``ValueError``."""

    nth: int | None = attrs.field(default=None, validator=_count(1))
    """Only the ``nth`` matching delivery (from 1)."""
    times: int | None = attrs.field(default=None, validator=_count(0))
    """At most this many faults in all (``0``: none)."""
    probability: float | None = attrs.field(default=None, validator=_check_probability)
    """The chance that a delivery the other conditions allow gets the fault."""

    def fires(self, seen: int, fired: int, rng: random.Random) -> bool:
        """Whether the ``seen``-th matching delivery gets the fault, ``fired`` faults of
        the rule having been injected before it; draws from ``rng`` only when the
        probability is all that is left to decide."""
        if self.nth is not None and seen != self.nth:
            return False
        if self.times is not None and fired >= self.times:
            return False
        return self.probability is None or rng.random() < self.probability


class Selectors(TypedDict, total=False):
    """The keyword arguments of :class:`FaultInjector`'s short forms (``drop``,
    ``delay``, ``duplicate``, ``reorder``, ``crash``, ``hang``): the fields of a
    :class:`Match` (``to``, ``sender``, ``type``, ``where``) and of a :class:`Schedule`
    (``nth``, ``times``, ``probability``), all optional."""

    to: Target
    sender: Target
    type: MessageType
    where: Callable[[Any], bool] | None
    nth: int | None
    times: int | None
    probability: float | None


_MATCH_FIELDS = frozenset(attrs.fields_dict(Match))
_SCHEDULE_FIELDS = frozenset(attrs.fields_dict(Schedule))


def split_selectors(select: Mapping[str, Any]) -> tuple[Match, Schedule]:
    """The match and the schedule that the selector keywords ``select`` describe;
    ``TypeError`` for a keyword that is neither."""
    unknown = set(select) - _MATCH_FIELDS - _SCHEDULE_FIELDS
    if unknown:
        expected = ", ".join(Selectors.__annotations__)
        raise TypeError(f"unexpected selector(s) {', '.join(sorted(unknown))}; use {expected}")
    match = Match(**{key: value for key, value in select.items() if key in _MATCH_FIELDS})
    schedule = Schedule(**{key: value for key, value in select.items() if key in _SCHEDULE_FIELDS})
    return match, schedule


# -- what happens --------------------------------------------------------------------------


@attrs.frozen
class Drop:
    """The message is not delivered: it is published as a ``DeadLetter`` with reason
    ``fault_dropped``; an ``ask`` then times out in its caller, as a lost message would
    make it."""

    kind: ClassVar[str] = "drop"


@attrs.frozen
class Delay:
    """The message is delivered ``seconds`` of trio's clock later (``>= 0``; ``inf``
    holds it until the system stops), as if it had taken that long to arrive. When it is
    released the mailbox's capacity and overflow policy apply to it as to any delivery
    by the runtime (a full ``backpressure`` mailbox makes it a dead letter, an ``ask``
    that finds no room gets ``MailboxFull``)."""

    seconds: float = attrs.field(validator=_seconds(zero=True))
    kind: ClassVar[str] = "delay"


@attrs.frozen
class Duplicate:
    """The message is delivered, then delivered ``copies`` times again (``>= 1``). The
    copies of an ``ask`` are plain tells (its reply goes once). Each copy needs room of
    its own in a bounded mailbox, and overflows by the mailbox's policy."""

    copies: int = attrs.field(default=1, validator=_count(1, optional=False))
    kind: ClassVar[str] = "duplicate"


@attrs.frozen
class Reorder:
    """The message is held until the next message to the same recipient has been
    accepted into its mailbox, then delivered after it; if none comes within ``within``
    seconds (``>= 0``), it is delivered then. A held message takes no room in the
    mailbox; released, it needs room like any delivery."""

    within: float = attrs.field(default=1.0, validator=_seconds(zero=True))
    kind: ClassVar[str] = "reorder"


def _check_error(_: object, __: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not isinstance(value, Exception):
        raise TypeError(f"error must be an exception instance (or None), got {value!r}")


@attrs.frozen
class Crash:
    """The message is delivered (it takes its place in the mailbox), and when the
    recipient reaches it the recipient fails with ``error`` (default:
    :class:`InjectedFault`), as if its handler had raised; an ``ask`` gets the error,
    and the supervisor decides what follows. A crash message evicted from a full
    ``drop_oldest`` mailbox is a dead letter and crashes nothing."""

    error: Exception | None = attrs.field(default=None, validator=_check_error)
    kind: ClassVar[str] = "crash"


@attrs.frozen
class Hang:
    """The message is delivered, and the recipient's handler hangs on it for
    ``seconds`` (``> 0``; the default ``inf`` hangs until the actor is stopped, when its
    stop deadline cuts the hang short and the message becomes a dead letter), then
    handles it. A kill during the hang settles the message as for any handler."""

    seconds: float = attrs.field(default=math.inf, validator=_seconds(zero=False))
    kind: ClassVar[str] = "hang"


@attrs.frozen
class KillWorker:
    """The worker process that runs the recipient is killed (``SIGKILL``) before the
    message is delivered, as a crash of that process would: every actor it ran fails
    with :class:`actors.ProcessLost` and its supervisor decides (a restart starts it on
    a new process). The message then waits, with whatever else is sent meanwhile, for
    the restarted actor (or becomes a dead letter if it is not restarted). Does nothing
    but deliver for a recipient in the process of the injector, or a worker that is not
    up (already restarting)."""

    kind: ClassVar[str] = "kill_worker"


Action: TypeAlias = Drop | Delay | Duplicate | Reorder | Crash | Hang | KillWorker
"""What a rule does to a message it fires on."""

ACTIONS: tuple[type, ...] = (Drop, Delay, Duplicate, Reorder, Crash, Hang, KillWorker)


@attrs.define(eq=False)
class Rule:
    """One rule of a :class:`FaultInjector` (made by :meth:`FaultInjector.add` or a
    short form): the ``action`` applied to the deliveries that ``match`` selects and
    ``schedule`` lets through. ``seen`` counts the deliveries it matched (every rule
    that matches counts one, even when an earlier rule fired on it), ``fired`` the
    faults it injected; :meth:`cancel` retires it (``active`` becomes ``False``)."""

    action: Action = attrs.field(validator=attrs.validators.instance_of(ACTIONS))
    match: Match = attrs.field(factory=Match, validator=attrs.validators.instance_of(Match))
    schedule: Schedule = attrs.field(
        factory=Schedule, validator=attrs.validators.instance_of(Schedule)
    )
    seen: int = attrs.field(default=0, init=False)
    fired: int = attrs.field(default=0, init=False)
    active: bool = attrs.field(default=True, init=False)

    @property
    def kind(self) -> str:
        """The action's name, as in :attr:`Injection.kind` (``"drop"``, ``"delay"``...)."""
        return self.action.kind

    def cancel(self) -> None:
        """Stop applying this rule (messages it delayed or held stay scheduled)."""
        self.active = False
