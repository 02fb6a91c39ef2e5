"""Fault injection at delivery and in actors: ``FaultInjector``.

A :class:`FaultInjector` installed on a system sees every message on its way into a
mailbox (``tell``, ``send``, ``ask``, forwards, routed messages, bus events) and applies
the first of its rules that matches and fires. A rule (``_rules.py``) is a
:class:`Match` (which deliveries), a :class:`Schedule` (which of them) and an action,
one class per fault: :class:`Drop`, :class:`Delay`, :class:`Duplicate`,
:class:`Reorder`, :class:`Crash`, :class:`Hang`. ``faults.add(action, match,
schedule)`` adds one; the short forms (``faults.drop(to="w", nth=2)``,
``faults.delay(1.0, type=Job)``...) take the match and schedule fields as keywords.

Every rule that matches a message counts it (``drop(nth=2)`` and ``crash(nth=3)`` act on
the second and the third message); the first rule, in the order they were added, that
fires on a message applies its fault, and the later ones do not fire on it. The
probabilities are drawn from the injector's seeded random source, in delivery order, so
that one seed always gives the same schedule.

Messages the injector hands back later (delayed, duplicated, reordered, or carrying a
crash or a hang) go through the recipient's mailbox like any delivery by the runtime:
they count against a bounded mailbox's capacity and overflow by its policy.

:meth:`FaultInjector.kill` kills an actor abruptly, and
:meth:`FaultInjector.crash_in_pre_start` wraps an actor factory whose ``pre_start``
fails. Everything injected is recorded in :attr:`FaultInjector.injected`.
"""

from __future__ import annotations

import contextlib
import functools
import heapq
import itertools
import math
import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Unpack, assert_never

import attrs
import trio

from .._actor import Actor
from .._cell import ActorCell
from .._envelope import Detour, Envelope, Reply, Slot
from .._errors import ActorError, WorkerError
from .._errors import ActorKilled as _RuntimeActorKilled
from .._messages import DeadLetterReason
from .._node import Encoded
from .._ref import ActorRef
from .._spawn_checks import check_factory
from .._worker_pool import RootNode
from . import _rules
from ._rules import ACTIONS, Action, Match, Rule, Schedule, Selectors, split_selectors

if TYPE_CHECKING:
    from .._system import ActorSystem
    from ._trace import MessageTrace


class InjectedFault(ActorError):
    """The default error of an injected crash, kill or failing ``pre_start``: it says
    that the failure was injected on purpose, and by which rule."""


class ActorKilled(InjectedFault, _RuntimeActorKilled):
    """The error of an actor killed by :meth:`FaultInjector.kill`: both an
    :class:`InjectedFault` and an :class:`actors.ActorKilled` (the error of an actor
    told :data:`actors.Kill`), so ``except actors.ActorKilled`` catches either kill."""

    _what_to_do = (
        "A FaultInjector killed it on purpose (see faults.injected); its supervisor "
        "decides what follows, as for any failure."
    )


def where(ref: ActorRef) -> str:
    """An actor as the injector and the trace name it: its path, with ``@w1`` after it
    for an actor that runs in worker process ``w1``."""
    node = ref.address.node
    return ref.path if node == "local" else f"{ref.path}@{node}"


@attrs.frozen
class Injection:
    """One fault the injector applied, or one kill it was asked for.

    ``kind`` is the action's kind (``drop``, ``delay``, ``duplicate``, ``reorder``,
    ``crash``, ``hang``), ``pre_start`` for a failing start, ``kill`` for a kill that
    failed the actor, or ``kill_merged`` for a kill that changed nothing because the
    actor was not running an incarnation that could fail then (starting, restarting,
    stopping, or already failing: the kill merged into that), ``kill_worker`` for a
    worker process killed (its ``recipient`` is the worker's name). ``recipient`` and
    ``sender`` are paths (``sender`` may be ``None``), with ``@w1`` after the path of an
    actor that runs in worker process ``w1``; ``message`` is ``None`` for kills
    and starts, and ``time`` counts seconds of trio's clock since the injector was
    installed (:attr:`FaultInjector.origin`), so that a run replays with the same times
    whatever ran before it."""

    kind: str
    recipient: str
    message: Any
    sender: str | None
    time: float


_Observer = Callable[[ActorCell, Any, ActorRef | None, Slot, str | None], None]


class FaultInjector:
    """Seeded fault injection for one actor system; see the module documentation.

    ``seed`` seeds the random source of probabilistic rules (``None``: a random seed,
    kept in :attr:`seed` so a failing run can be replayed). Install it with
    :meth:`install`; rules can be added before or after. Rules are tried in the order
    they were added; the first that matches and fires decides. The injector is not
    thread-safe: use it from the system's thread.

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
        self.origin: float | None = None
        """Trio's clock when the injector was first installed (or, never installed, when
        it first recorded something): :attr:`Injection.time` counts from it."""
        # Delayed messages and the deadlines of held ones, a heap of
        # (when, sequence, recipient, envelope, held): equal times go in insertion order.
        self._pending: list[tuple[float, int, ActorCell, Envelope, bool]] = []
        self._sequence = itertools.count()
        self._scope: trio.CancelScope | None = None
        self._held: dict[ActorCell, Envelope] = {}
        # Actors no rule applies to (the listeners of traces).
        self._spared: set[ActorCell] = set()
        self._wake: trio.Event | None = None
        # Called for every delivery with the kind of fault applied to it (None: none).
        self._observers: list[_Observer] = []
        self.trace: MessageTrace | None = None
        """The trace attached by the ``faults`` fixture or ``run_chaos`` (else ``None``)."""

    def __repr__(self) -> str:
        return f"<FaultInjector seed={self.seed} rules={len(self.rules)}>"

    # -- installing -----------------------------------------------------------------------

    def install(self, system: ActorSystem) -> FaultInjector:
        """Start seeing every delivery of ``system`` (from its thread, while it runs).
        One injector per system; returns the injector."""
        if self.system is system:
            return self  # already installed here
        if any(isinstance(hook, FaultInjector) for hook in system._delivery_hooks):
            raise RuntimeError(f"{system!r} already has a fault injector installed")
        if self.system is not None:
            raise RuntimeError(f"{self!r} is installed on another system")
        if self.origin is None:
            self.origin = trio.current_time()
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

    def add(
        self, action: Action, match: Match | None = None, schedule: Schedule | None = None
    ) -> Rule:
        """Add a rule applying ``action`` to the deliveries ``match`` selects (default:
        every one) when ``schedule`` lets them through (default: every time); returns
        it, to read its counters or :meth:`Rule.cancel` it. ``faults.add(Delay(2.0),
        Match(to="w"), Schedule(times=3))`` delays the first three messages to ``w``."""
        if not isinstance(action, ACTIONS):
            names = ", ".join(kind.__name__ for kind in ACTIONS)
            raise TypeError(f"a rule's action is one of {names}, got {action!r}")
        rule = Rule(action, match or Match(), schedule or Schedule())
        self.rules.append(rule)
        return rule

    def _add(self, action: Action, select: Selectors) -> Rule:
        return self.add(action, *split_selectors(select))

    def drop(self, **select: Unpack[Selectors]) -> Rule:
        """Drop the matching messages (:class:`Drop`): dead letters with reason
        ``fault_dropped``. ``faults.drop(to="w", nth=2)`` drops the second message
        to ``w``."""
        return self._add(_rules.Drop(), select)

    def delay(self, seconds: float, **select: Unpack[Selectors]) -> Rule:
        """Deliver the matching messages ``seconds`` of trio's clock later
        (:class:`Delay`)."""
        return self._add(_rules.Delay(seconds), select)

    def duplicate(self, copies: int = 1, **select: Unpack[Selectors]) -> Rule:
        """Deliver the matching messages ``1 + copies`` times (:class:`Duplicate`)."""
        return self._add(_rules.Duplicate(copies), select)

    def reorder(self, *, within: float = 1.0, **select: Unpack[Selectors]) -> Rule:
        """Hold a matching message until the next message to the same recipient is
        accepted, then deliver it after that one; if none comes within ``within``
        seconds, deliver it then (:class:`Reorder`)."""
        return self._add(_rules.Reorder(within), select)

    def crash(self, error: Exception | None = None, **select: Unpack[Selectors]) -> Rule:
        """Make the recipient fail with ``error`` (default: :class:`InjectedFault`) when
        it reaches a matching message, as if its handler had raised (:class:`Crash`);
        its supervisor decides what follows. ``crash(to="worker-2", nth=3)``: on its
        third message."""
        return self._add(_rules.Crash(error), select)

    def hang(self, seconds: float = math.inf, **select: Unpack[Selectors]) -> Rule:
        """Make the recipient's handler hang on a matching message for ``seconds``
        (default: until the actor is stopped; its stop deadline ends the hang and the
        message becomes a dead letter), then handle it (:class:`Hang`). Tests ask
        timeouts and shutdown deadlines."""
        return self._add(_rules.Hang(seconds), select)

    # -- faults in actors --------------------------------------------------------------------

    def kill(self, ref: ActorRef, error: BaseException | None = None) -> bool:
        """Kill the actor abruptly: it fails at once with ``error`` (default:
        :class:`ActorKilled`), without ``pre_restart`` or ``post_stop``; a handler in
        progress is cancelled, and its message is settled (a tell becomes a dead letter
        with reason ``failed``, an ask gets the error). Its supervisor decides what
        follows (restart, stop...).

        Recorded as ``kill``; or, when the actor is not running an incarnation that
        could fail now (starting, restarting, stopping, or a failure is already
        pending), as ``kill_merged``: nothing changes, the kill merges into what the
        actor is going through. A stopped actor is left alone (``kill_merged`` too).
        Returns whether the kill failed the actor (``False``: merged)."""
        system = self._require_system()
        cell = ref._resolve()
        if not isinstance(cell, ActorCell) or cell.system is not system:
            raise ValueError(f"{ref} is not an actor of the system this injector is on")
        if error is None:
            error = ActorKilled(ref.path, f"was killed by a fault injector (seed {self.seed})")
        failed = cell._crash(error)
        self._record("kill" if failed else "kill_merged", cell, None, None)
        return failed

    def kill_worker(self, name: str) -> int:
        """Kill the worker process ``name`` (``"w1"``, ...) of the system with
        ``SIGKILL``, as a crash of that process would, and return its PID. Every actor
        it ran fails at once with :class:`actors.ProcessLost` (its supervisor decides:
        a restart starts it on the worker's new process, which starts at once). Recorded
        as ``kill_worker``. :class:`actors.WorkerError` if that worker is not up (it is
        starting, restarting or stopping), ``ValueError`` if the system has no worker of
        that name."""
        system = self._require_system()
        root = system._router
        if not isinstance(root, RootNode) or name not in root.slots:
            workers = ", ".join(root.slots) if isinstance(root, RootNode) else "none"
            raise ValueError(f"no worker named {name!r} (this system's workers: {workers})")
        pid = root.kill(name, f"killed by a fault injector (seed {self.seed})")
        now = trio.current_time()
        if self.origin is None:
            self.origin = now
        self.injected.append(Injection("kill_worker", name, None, None, now - self.origin))
        return pid

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
        faults.crash_in_pre_start(Worker, times=2), name="w")``. A failed start stops the
        actor under the default decider; to see it retried, give its parent a decider
        that restarts on ``ActorInitializationError``. ``TypeError`` at once if
        ``factory`` cannot take the arguments (as ``spawn`` checks)."""
        check_factory(factory, args, kwargs)
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
        """The delivery hook (see ``actors._delivery.DeliveryHook``).

        A message no rule fires on goes on into the mailbox unchanged, unless a message
        is held back for reordering: then, if it finds room, it is accepted and the held
        one after it; if it finds none, the mailbox's policy applies to it as without
        the injector (a ``tell`` to a full ``backpressure`` mailbox raises
        ``MailboxFull``) and the held message waits on."""
        if cell in self._spared:
            return False
        recipient = cell.ref
        # To an actor on a worker, the message travels pickled: rules see what it is.
        seen = message.decode() if message.__class__ is Encoded else message
        chosen: Rule | None = None
        for rule in self.rules:
            if rule.active and rule.match.matches(recipient, seen, sender):
                rule.seen += 1  # every matching rule counts the message
                if chosen is None and rule.schedule.fires(rule.seen, rule.fired, self.random):
                    rule.fired += 1
                    chosen = rule
        for observe in self._observers:
            observe(cell, message, sender, slot, None if chosen is None else chosen.kind)
        held = self._held.get(cell)
        if chosen is None:
            if held is None or cell._is_full():
                return False
            del self._held[cell]
            cell._release((message, sender, slot))
        else:
            if held is not None:
                del self._held[cell]
            self._record(chosen.kind, cell, seen, sender)
            self._apply(chosen.action, cell, (message, sender, slot))
        if held is not None:  # the message held back for reordering comes after this one
            cell._release(held)
        return True

    def _apply(self, action: Action, cell: ActorCell, envelope: Envelope) -> None:
        message, sender, slot = envelope
        match action:
            case _rules.Drop():
                system = self._require_system()
                system._dead_letter(message, sender, cell.ref, DeadLetterReason.FAULT_DROPPED)
            case _rules.Delay(seconds=seconds):
                self._schedule(seconds, cell, envelope, held=False)
            case _rules.Duplicate(copies=copies):
                cell._release(envelope)
                for _ in range(copies):
                    cell._release((message, sender, None))
            case _rules.Reorder(within=within):
                self._held[cell] = envelope
                self._schedule(within, cell, envelope, held=True)
            case _rules.Crash(error=error):
                if error is None:
                    error = InjectedFault(
                        f"{cell.ref.path} crashed on purpose on {message!r} "
                        f"(fault injector, seed {self.seed})"
                    )
                run = functools.partial(_crash, error)
                cell._release((message, sender, Detour(_reply_of(slot), run)))
            case _rules.Hang(seconds=seconds):
                run = functools.partial(_hang, seconds)
                cell._release((message, sender, Detour(_reply_of(slot), run)))
            case _rules.KillWorker():
                node = cell.ref.address.node
                root = self._require_system()._router
                if isinstance(root, RootNode) and node in root.slots:
                    with contextlib.suppress(WorkerError):  # (not up: nothing to kill)
                        root.kill(node, f"killed by a fault injector (seed {self.seed})")
                cell._release(envelope)
            case _:
                assert_never(action)

    def _record(self, kind: str, cell: ActorCell, message: Any, sender: ActorRef | None) -> None:
        now = trio.current_time()
        if self.origin is None:
            self.origin = now
        source = None if sender is None else where(sender)
        self.injected.append(Injection(kind, where(cell.ref), message, source, now - self.origin))

    # -- delayed and held messages ---------------------------------------------------------

    def _schedule(self, seconds: float, cell: ActorCell, envelope: Envelope, *, held: bool) -> None:
        """Release ``envelope`` into ``cell`` ``seconds`` from now (the same arithmetic as
        ``trio.sleep(seconds)``: a delay and a sleep of equal length end together)."""
        when = trio.current_time() + seconds
        heapq.heappush(self._pending, (when, next(self._sequence), cell, envelope, held))
        if self._wake is not None:
            self._wake.set()

    def _due(self, now: float) -> None:
        pending = self._pending
        while pending and pending[0][0] <= now:
            _, _, cell, envelope, held = heapq.heappop(pending)
            self._release(cell, envelope, held)

    def _release(self, cell: ActorCell, envelope: Envelope, held: bool) -> None:
        if held:
            if self._held.get(cell) is envelope:  # not released by a later message yet
                del self._held[cell]
                cell._release(envelope)
            return
        cell._release(envelope)

    def _release_all(self) -> None:
        """Release every delayed message (in the order they were due) and every held one."""
        pending, self._pending = sorted(self._pending), []
        for _, _, cell, envelope, held in pending:
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
                    deadline = self._pending[0][0] if self._pending else math.inf
                    with trio.move_on_at(deadline):
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


def _reply_of(slot: Slot) -> Reply | None:
    return slot if isinstance(slot, Reply) else None


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
