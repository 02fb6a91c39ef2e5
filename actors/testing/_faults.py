"""Fault injection at delivery and in actors: ``FaultInjector``.

A :class:`FaultInjector` installed on a system sees every message on its way into a
mailbox (``tell``, ``send``, ``ask``, forwards, routed messages, bus events) and applies
the first of its rules that matches and fires:

* ``drop``: the message is not delivered; it is published as a ``DeadLetter`` with reason
  ``fault_dropped`` (an ``ask`` then times out in its caller, as with a lost message);
* ``delay(seconds)``: delivered after ``seconds`` of trio's clock (virtual time works);
* ``duplicate(copies)``: delivered, then delivered again ``copies`` times (copies of an
  ``ask`` are plain tells: a reply goes once);
* ``reorder``: held until the next message to the same recipient has been delivered,
  then delivered after it (or after ``within`` seconds if none comes);
* ``crash(error)``: delivered, and the recipient fails with ``error`` when it reaches
  the message, as if its handler had raised (an ``ask`` gets ``error``);
* ``hang(seconds)``: delivered, and the recipient's handler hangs on it for ``seconds``
  (default: until the actor is stopped, when its stop deadline cancels the hang), then
  handles it.

Rules match on the recipient (``to``), the sender (``sender``), the message type
(``type``) and a predicate (``where``); they fire on every match, on the ``nth`` match
only, on the first ``times`` matches, and/or with a ``probability`` drawn from the
injector's seeded random source, so that one seed always gives the same schedule. Every
rule that matches a message counts it (``drop(nth=2)`` and ``crash(nth=3)`` act on the
second and the third message); the first rule, in the order they were added, that fires
on a message applies its fault, and the later ones do not fire on it.
:meth:`FaultInjector.kill` kills an actor abruptly, and
:meth:`FaultInjector.crash_in_pre_start` wraps an actor factory whose ``pre_start``
fails. Everything injected is recorded in :attr:`FaultInjector.injected`.
"""

from __future__ import annotations

import fnmatch
import functools
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .._actor import Actor
from .._cell import ActorCell
from .._envelope import Detour, Envelope, Reply, Slot
from .._errors import ActorError
from .._messages import DeadLetterReason
from .._ref import ActorRef

if TYPE_CHECKING:
    from .._system import ActorSystem
    from ._trace import MessageTrace


class InjectedFault(ActorError):
    """The default error of an injected crash, kill or failing ``pre_start``: it says
    that the failure was injected on purpose, and by which rule."""


class ActorKilled(InjectedFault):
    """The error of an actor killed by :meth:`FaultInjector.kill`."""


Target = ActorRef | str | None
"""Who a rule is about: a ref, a name (no ``/``: any actor of that name), a path or a
path pattern with ``*`` (``"/user/workers/*"``), or ``None``: anyone."""


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


@attrs.frozen
class Injection:
    """One fault applied: ``kind`` (``drop``, ``delay``, ``duplicate``, ``reorder``,
    ``crash``, ``hang``, ``kill``, ``pre_start``), the recipient's path, the message
    (``None`` for a kill), the sender's path (or ``None``) and the time on trio's clock."""

    kind: str
    recipient: str
    message: Any
    sender: str | None
    time: float


@attrs.define(eq=False)
class Rule:
    """A fault rule of a :class:`FaultInjector` (made by its methods). ``seen`` counts
    the messages it matched, ``fired`` the faults it injected. :meth:`cancel` retires it."""

    kind: str
    to: Target = None
    sender: Target = None
    type: type | tuple[type, ...] | None = None
    where: Callable[[Any], bool] | None = None
    nth: int | None = None
    times: int | None = None
    probability: float | None = None
    seconds: float = 0.0
    copies: int = 1
    error: Exception | None = None
    seen: int = 0
    fired: int = 0
    active: bool = True

    def cancel(self) -> None:
        """Stop applying this rule."""
        self.active = False

    def _matches(self, recipient: ActorRef, message: Any, sender: ActorRef | None) -> bool:
        if not self.active:
            return False
        if not _matches_target(self.to, recipient):
            return False
        if self.sender is not None and not _matches_target(self.sender, sender):
            return False
        if self.type is not None and not isinstance(message, self.type):
            return False
        return self.where is None or bool(self.where(message))

    def _fires(self, rng: random.Random) -> bool:
        """Count a matching message and decide whether the fault applies to it."""
        self.seen += 1
        if self.nth is not None and self.seen != self.nth:
            return False
        if self.times is not None and self.fired >= self.times:
            return False
        if self.probability is not None and rng.random() >= self.probability:
            return False
        self.fired += 1
        return True


class FaultInjector:
    """Seeded fault injection for one actor system; see the module documentation.

    ``seed`` seeds the random source of probabilistic rules (``None``: a random seed,
    kept in :attr:`seed` so a failing run can be replayed). Install it with
    :meth:`install` (or ``with injector.installed(system):``); rules can be added before
    or after. Rules are tried in the order they were added; the first that matches and
    fires decides. The injector is not thread-safe: use it from the system's thread.

    On shutdown, messages still delayed or held are released into their (stopped)
    recipients, which turns them into dead letters (or ``ActorDead`` for asks): nothing
    is lost silently.
    """

    def __init__(self, seed: int | None = None) -> None:
        if seed is None:
            seed = random.SystemRandom().randrange(2**32)
        self.seed = seed
        self.random = random.Random(seed)
        self.rules: list[Rule] = []
        self.injected: list[Injection] = []
        self.system: ActorSystem | None = None
        # (when, recipient, envelope, held): delayed messages, and the deadlines of held ones.
        self._pending: list[tuple[float, ActorCell, Envelope, bool]] = []
        self._scope: trio.CancelScope | None = None
        self._held: dict[ActorCell, Envelope] = {}
        self._wake: trio.Event | None = None
        # Called for every delivery with the fault applied to it (None: delivered as is).
        self._observers: list[Callable[[ActorCell, Any, ActorRef | None, Any, str | None], None]]
        self._observers = []
        self.trace: MessageTrace | None = None
        """The trace attached by the ``faults`` fixture (``None`` otherwise)."""

    def __repr__(self) -> str:
        return f"<FaultInjector seed={self.seed} rules={len(self.rules)}>"

    # -- installing -----------------------------------------------------------------------

    def install(self, system: ActorSystem) -> FaultInjector:
        """Start seeing every delivery of ``system`` (from its thread, while it runs).
        One injector per system."""
        if self.system is system:
            return self  # already installed here
        if any(isinstance(hook, FaultInjector) for hook in system._delivery_hooks):
            raise RuntimeError(f"{system!r} already has a fault injector installed")
        if self.system is not None:
            raise RuntimeError(f"{self!r} is installed on another system")
        self.system = system
        system._add_delivery_hook(self)
        system._nursery.start_soon(self._deliver_later, system, name="fault injector")
        return self

    def uninstall(self) -> None:
        """Stop injecting; messages still delayed or held are delivered now."""
        system = self.system
        if system is None:
            return
        system._remove_delivery_hook(self)
        self._release_all()
        self.system = None
        if self._scope is not None:
            self._scope.cancel()

    def heal(self) -> None:
        """Retire every rule and deliver what is delayed or held now: from here on the
        system runs without faults (the "heal" phase of a chaos test)."""
        for rule in self.rules:
            rule.cancel()
        self._release_all()

    # -- rules ------------------------------------------------------------------------------

    def _add(self, kind: str, **options: Any) -> Rule:
        rule = Rule(kind, **options)
        if rule.nth is not None and rule.nth < 1:
            raise ValueError(f"nth counts from 1, got {rule.nth}")
        if rule.probability is not None and not 0.0 <= rule.probability <= 1.0:
            raise ValueError(f"probability must be within [0, 1], got {rule.probability}")
        self.rules.append(rule)
        return rule

    def drop(
        self,
        *,
        to: Target = None,
        sender: Target = None,
        type: type | tuple[type, ...] | None = None,
        where: Callable[[Any], bool] | None = None,
        nth: int | None = None,
        times: int | None = None,
        probability: float | None = None,
    ) -> Rule:
        """Drop matching messages (dead letters with reason ``fault_dropped``)."""
        return self._add(
            "drop", to=to, sender=sender, type=type, where=where, nth=nth, times=times,
            probability=probability,
        )  # fmt: skip

    def delay(
        self,
        seconds: float,
        *,
        to: Target = None,
        sender: Target = None,
        type: type | tuple[type, ...] | None = None,
        where: Callable[[Any], bool] | None = None,
        nth: int | None = None,
        times: int | None = None,
        probability: float | None = None,
    ) -> Rule:
        """Deliver matching messages ``seconds`` later (trio's clock)."""
        if not seconds >= 0:
            raise ValueError(f"a delay must be >= 0 seconds, got {seconds!r}")
        return self._add(
            "delay", seconds=seconds, to=to, sender=sender, type=type, where=where,
            nth=nth, times=times, probability=probability,
        )  # fmt: skip

    def duplicate(
        self,
        copies: int = 1,
        *,
        to: Target = None,
        sender: Target = None,
        type: type | tuple[type, ...] | None = None,
        where: Callable[[Any], bool] | None = None,
        nth: int | None = None,
        times: int | None = None,
        probability: float | None = None,
    ) -> Rule:
        """Deliver matching messages ``1 + copies`` times."""
        if copies < 1:
            raise ValueError(f"copies must be >= 1, got {copies}")
        return self._add(
            "duplicate", copies=copies, to=to, sender=sender, type=type, where=where,
            nth=nth, times=times, probability=probability,
        )  # fmt: skip

    def reorder(
        self,
        *,
        within: float = 1.0,
        to: Target = None,
        sender: Target = None,
        type: type | tuple[type, ...] | None = None,
        where: Callable[[Any], bool] | None = None,
        nth: int | None = None,
        times: int | None = None,
        probability: float | None = None,
    ) -> Rule:
        """Hold a matching message until the next message to the same recipient is
        delivered, then deliver it after that one; if none comes within ``within``
        seconds, deliver it then."""
        return self._add(
            "reorder", seconds=within, to=to, sender=sender, type=type, where=where,
            nth=nth, times=times, probability=probability,
        )  # fmt: skip

    def crash(
        self,
        error: Exception | None = None,
        *,
        to: Target = None,
        sender: Target = None,
        type: type | tuple[type, ...] | None = None,
        where: Callable[[Any], bool] | None = None,
        nth: int | None = None,
        times: int | None = None,
        probability: float | None = None,
    ) -> Rule:
        """Make the recipient fail with ``error`` (default: :class:`InjectedFault`) when
        it reaches a matching message, as if its handler had raised; its supervisor
        decides what follows. ``crash(to="worker-2", nth=3)``: on its third message."""
        return self._add(
            "crash", error=error, to=to, sender=sender, type=type, where=where, nth=nth,
            times=times, probability=probability,
        )  # fmt: skip

    def hang(
        self,
        seconds: float = math.inf,
        *,
        to: Target = None,
        sender: Target = None,
        type: type | tuple[type, ...] | None = None,
        where: Callable[[Any], bool] | None = None,
        nth: int | None = None,
        times: int | None = None,
        probability: float | None = None,
    ) -> Rule:
        """Make the recipient's handler hang on a matching message for ``seconds``
        (default: until the actor is stopped; its stop deadline ends the hang and the
        message becomes a dead letter), then handle it. Tests ask timeouts and shutdown
        deadlines."""
        if not seconds > 0:
            raise ValueError(f"a hang must last > 0 seconds, got {seconds!r}")
        return self._add(
            "hang", seconds=seconds, to=to, sender=sender, type=type, where=where, nth=nth,
            times=times, probability=probability,
        )  # fmt: skip

    def kill(self, ref: ActorRef, error: BaseException | None = None) -> None:
        """Kill the actor abruptly: it fails at once with ``error`` (default:
        :class:`ActorKilled`), without ``pre_restart`` or ``post_stop``; a handler in
        progress is cancelled. Its supervisor decides what follows (restart, stop...).
        A stopped actor is left alone."""
        system = self._require_system()
        cell = ref._resolve()
        if not isinstance(cell, ActorCell) or cell.system is not system:
            raise ValueError(f"{ref} is not an actor of the system this injector is on")
        if error is None:
            error = ActorKilled(f"{ref.path} was killed by a fault injector (seed {self.seed})")
        # A kill of an actor that is not running an incarnation now (starting,
        # restarting, stopping, or already failed) merges into what it is doing.
        self._record("kill" if cell._crash(error) else "kill_merged", cell, None, None)

    def crash_in_pre_start(
        self,
        factory: Callable[..., Actor],
        *args: Any,
        times: int = 1,
        error: Exception | None = None,
        **kwargs: Any,
    ) -> Callable[[], Actor]:
        """A factory for ``spawn`` that builds ``factory(*args, **kwargs)`` and makes its
        ``pre_start`` (or ``post_restart``) raise ``error`` (default:
        :class:`InjectedFault`) on the first ``times`` starts: ``system.spawn(
        faults.crash_in_pre_start(Worker, times=2), name="w")``."""
        left = [times]

        def build() -> Actor:
            actor = factory(*args, **kwargs)
            if left[0] > 0:
                left[0] -= 1
                failure = error or InjectedFault(
                    f"pre_start of {type(actor).__qualname__} failed on purpose "
                    f"(fault injector, seed {self.seed})"
                )

                def fail(*_: Any) -> None:
                    raise failure

                actor.pre_start = fail  # type: ignore[method-assign]
                actor.post_restart = fail  # type: ignore[method-assign, assignment]
                cell = actor._actor_cell
                if cell is not None:
                    self._record("pre_start", cell, None, None)
            return actor

        return build

    # -- the delivery hook -----------------------------------------------------------------

    def on_delivery(
        self, cell: ActorCell, via: str, message: Any, sender: ActorRef | None, slot: Slot
    ) -> bool:
        """The delivery hook (see ``actors._delivery.DeliveryHook``)."""
        recipient = cell.ref
        held = self._held.pop(cell, None)
        chosen: Rule | None = None
        for rule in self.rules:
            if rule._matches(recipient, message, sender):
                if chosen is None:
                    if rule._fires(self.random):
                        chosen = rule
                else:
                    rule.seen += 1  # every matching rule counts the message
        if chosen is not None:
            for observe in self._observers:
                observe(cell, message, sender, slot, chosen.kind)
            self._apply(chosen, cell, (message, sender, slot))
        else:
            for observe in self._observers:
                observe(cell, message, sender, slot, None)
            if held is None:
                return False
            cell._release((message, sender, slot))
        if held is not None:  # the message held back for reordering comes after this one
            cell._release(held)
        return True

    def _apply(self, rule: Rule, cell: ActorCell, envelope: Envelope) -> None:
        message, sender, slot = envelope
        inner = slot if isinstance(slot, Reply) else None
        self._record(rule.kind, cell, message, sender)
        kind = rule.kind
        if kind == "drop":
            system = self._require_system()
            system._dead_letter(message, sender, cell.ref, DeadLetterReason.FAULT_DROPPED)
        elif kind == "delay":
            self._schedule(trio.current_time() + rule.seconds, cell, envelope)
        elif kind == "duplicate":
            cell._release(envelope)
            for _ in range(rule.copies):
                cell._release((message, sender, None))
        elif kind == "reorder":
            previous = self._held.pop(cell, None)
            if previous is not None:
                cell._release(previous)
            self._held[cell] = envelope
            self._schedule(trio.current_time() + rule.seconds, cell, envelope, held=True)
        elif kind == "crash":
            error = rule.error or InjectedFault(
                f"{cell.ref.path} crashed on purpose on {message!r} "
                f"(fault injector, seed {self.seed})"
            )
            cell._release((message, sender, Detour(inner, functools.partial(_crash, error))))
        else:  # hang
            cell._release((message, sender, Detour(inner, functools.partial(_hang, rule.seconds))))

    def _record(self, kind: str, cell: ActorCell, message: Any, sender: ActorRef | None) -> None:
        self.injected.append(
            Injection(
                kind,
                cell.ref.path,
                message,
                None if sender is None else sender.path,
                trio.current_time(),
            )
        )

    # -- delayed and held messages ---------------------------------------------------------

    def _schedule(
        self, when: float, cell: ActorCell, envelope: Envelope, *, held: bool = False
    ) -> None:
        self._pending.append((when, cell, envelope, held))
        self._pending.sort(key=lambda item: item[0])
        if self._wake is not None:
            self._wake.set()

    def _due(self, now: float) -> None:
        while self._pending and self._pending[0][0] <= now:
            _, cell, envelope, held = self._pending.pop(0)
            self._release(cell, envelope, held)

    def _release(self, cell: ActorCell, envelope: Envelope, held: bool) -> None:
        if held:
            if self._held.get(cell) is envelope:  # not released by a later message yet
                del self._held[cell]
                cell._release(envelope)
            return
        cell._release(envelope)

    def _release_all(self) -> None:
        pending, self._pending = self._pending, []
        for _, cell, envelope, held in pending:
            self._release(cell, envelope, held)
        still_held, self._held = self._held, {}
        for cell, envelope in still_held.items():
            cell._release(envelope)

    async def _deliver_later(self, system: ActorSystem) -> None:
        """The injector's task in the system's nursery: releases delayed and held
        messages when due; ends with the system, releasing what is left."""
        with trio.CancelScope() as scope:
            self._scope = scope
            system._service_scopes.append(scope)
            try:
                while self.system is system:
                    self._wake = trio.Event()
                    if self._pending:
                        with trio.move_on_at(self._pending[0][0]):
                            await self._wake.wait()
                    else:
                        await self._wake.wait()
                    self._due(trio.current_time())
            finally:
                self._wake = None
                if self.system is system:
                    self._release_all()

    def _require_system(self) -> ActorSystem:
        if self.system is None:
            raise RuntimeError(f"{self!r} is not installed on a system")
        return self.system


async def _crash(error: Exception, cell: ActorCell, envelope: Envelope) -> bool:
    """An injected crash, when the actor reaches the message: its ask gets ``error`` and
    the actor fails with it, as if its handler had raised."""
    message, sender, inner = envelope
    if isinstance(inner, Reply):
        cell._complete(inner, None, error)  # the asker learns what happened
    cell._failed_message((message, sender, None), error)
    return True


async def _hang(seconds: float, cell: ActorCell, envelope: Envelope) -> bool:
    """An injected hang: the handler "runs" for ``seconds`` within the actor's deadline
    (a stop, or a restart with a failed sibling, cuts it short), then handles the
    message, unless the actor was killed meanwhile."""
    cell._current = envelope
    outer = cell._scope
    until = min(cell._stop_deadline, trio.current_time() + seconds)
    with trio.CancelScope(deadline=until) as scope:
        cell._scope = scope
        try:
            await trio.sleep_forever()
        finally:
            cell._scope = outer
    if cell._failure is not None:  # killed while hanging: the kill settled the message
        return True
    if trio.current_time() >= cell._stop_deadline:
        return True  # a deadline cut the hang short: the stop or restart settles it
    cell._current = None
    if scope.cancelled_caught:  # the hang is over: the message is handled now
        cell._mailbox.appendleft(envelope)
    return False
