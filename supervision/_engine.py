"""The restart engine: the decisions of a supervisor, without any I/O.

:class:`RestartEngine` holds a supervisor's children (their specs, in start order) and
its restart bookkeeping (intensity, per-child backoff). It is told when children start
and exit, and answers each unrequested exit with a :class:`Plan`: what to stop, what to
start again and after which delay, or that the supervisor must give up, escalate or shut
down. Drivers carry the plan out: the trio-task supervisor in this package, and the
actor runtime, which restarts actors in place. Keeping the decisions pure lets both share
one implementation of the OTP rules and lets tests check those rules without a clock.
"""

from __future__ import annotations

import random
from collections.abc import Hashable, Iterator
from typing import Any

import attrs

from ._backoff import BackoffState
from ._directive import Directive
from ._intensity import IntensityTracker
from ._spec import AutoShutdown, ChildSpec, Restart
from ._strategy import Strategy


class TooManyRestarts(Exception):
    """A supervisor gave up: ``child`` failed once more after ``max_restarts`` restarts
    within ``within`` seconds. ``error`` is the child's last error (also ``__cause__``).

    Raised by (or failing) the supervisor itself, so that its own supervisor decides.
    """

    def __init__(self, child: Hashable, error: BaseException, max_restarts: int, within: float):
        super().__init__(child, error, max_restarts, within)
        self.child = child
        self.error = error
        self.max_restarts = max_restarts
        self.within = within
        self.add_note(
            "Fix the child's recurring error (see error / __cause__), or let the supervisor "
            "tolerate more: raise max_restarts or within in its strategy, or add a backoff "
            "so that restarts are spread out."
        )

    def __str__(self) -> str:
        return (
            f"supervisor gave up: child {self.child!r} failed with {self.error!r} after "
            f"{self.max_restarts} restart(s) within {self.within:g} s"
        )


@attrs.frozen
class Plan:
    """What a supervisor does about one exit of a child (see :meth:`RestartEngine.exited`).

    Carry it out in this order: stop the running children in ``stop`` (already in reverse
    start order), forget ``removed``, then, unless ``give_up``/``escalate``/``shutdown``
    is set, wait ``delay`` seconds and start the children in ``start`` (in start order).

    ``directive`` is the decider's answer (``None`` for a normal exit). With ``RESUME``
    the failed child keeps running as it is, for a driver that can resume (the actor
    runtime). An engine built with ``can_resume=False`` (for trio tasks, which cannot
    go on after raising) answers ``RESUME`` with a restart of the failed child alone,
    in ``start``, without a backoff delay but counted towards restart intensity.

    ``give_up`` (a :class:`TooManyRestarts`) and ``escalate`` (the child's error) both
    mean: stop every child in reverse start order, then fail the supervisor with that
    error. ``shutdown`` means: stop every child, then end the supervisor normally (a
    significant child ended and ``auto_shutdown`` says so).
    """

    child: Any
    directive: Directive | None = None
    stop: tuple[Any, ...] = ()
    start: tuple[Any, ...] = ()
    removed: tuple[Any, ...] = ()
    delay: float = 0.0
    give_up: TooManyRestarts | None = None
    escalate: BaseException | None = None
    shutdown: bool = False

    @property
    def ends_supervisor(self) -> bool:
        """Whether the supervisor itself must stop (give up, escalate or shut down)."""
        return self.give_up is not None or self.escalate is not None or self.shutdown


@attrs.define
class ChildState:
    """One child as the engine sees it (read-only for drivers)."""

    spec: ChildSpec
    running: bool = False
    started_at: float | None = None
    backoff: BackoffState | None = None


class RestartEngine:
    """The supervisor's bookkeeping and decisions for children identified by spec ids.

    All methods are synchronous and take the time (``now``, on trio's clock in practice)
    from the caller. The engine never starts or stops anything itself.
    """

    __slots__ = ("_children", "_intensity", "_rng", "auto_shutdown", "can_resume", "strategy")

    def __init__(
        self,
        strategy: Strategy,
        auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
        rng: random.Random | None = None,
        *,
        can_resume: bool = True,
    ) -> None:
        if not isinstance(strategy, Strategy):
            raise TypeError(f"strategy must be a supervision.Strategy, got {strategy!r}")
        self.strategy = strategy
        self.can_resume = can_resume
        self.auto_shutdown = AutoShutdown(auto_shutdown)
        self._rng = rng if rng is not None else random.Random()
        self._intensity = IntensityTracker(strategy.intensity)
        self._children: dict[Hashable, ChildState] = {}

    # -- the set of children ---------------------------------------------------------------

    def add(self, spec: ChildSpec) -> None:
        """Append a child (not running yet) after the existing ones in start order.
        Raises ``ValueError`` if a child with this id exists."""
        if spec.id in self._children:
            raise ValueError(
                f"a child with id {spec.id!r} already exists; child ids are unique within "
                "a supervisor: pick another id, or delete the old child first"
            )
        backoff = self.strategy.backoff
        state = ChildState(spec)
        if backoff is not None:
            state.backoff = BackoffState(backoff, self._rng)
        self._children[spec.id] = state

    def delete(self, child_id: Hashable) -> None:
        """Forget a child that is not running. Raises ``KeyError`` for an unknown id and
        ``RuntimeError`` for a running child (stop it first)."""
        state = self._children[child_id]
        if state.running:
            raise RuntimeError(
                f"child {child_id!r} is running; stop it and report that with "
                "stopped(id) before deleting it"
            )
        del self._children[child_id]

    def __contains__(self, child_id: object) -> bool:
        return child_id in self._children

    def __len__(self) -> int:
        return len(self._children)

    def __iter__(self) -> Iterator[Hashable]:
        """Child ids in start order."""
        return iter(list(self._children))

    def state(self, child_id: Hashable) -> ChildState:
        """The engine's record of one child (``KeyError`` if unknown)."""
        return self._children[child_id]

    def running(self) -> list[Hashable]:
        """Ids of running children, in start order."""
        return [cid for cid, state in self._children.items() if state.running]

    def stop_order(self) -> list[Hashable]:
        """Ids of running children in the order to stop them: reverse start order."""
        return self.running()[::-1]

    # -- events from the driver ----------------------------------------------------------------

    def started(self, child_id: Hashable, now: float) -> None:
        """The driver started (or restarted) this child at ``now``."""
        state = self._children[child_id]
        state.running = True
        state.started_at = now

    def stopped(self, child_id: Hashable) -> None:
        """The driver stopped this child on purpose (a plan, ``terminate_child`` or
        shutdown): no restart, no auto-shutdown. A temporary child is forgotten."""
        state = self._children.get(child_id)
        if state is None:
            return
        state.running = False
        if state.spec.restart is Restart.TEMPORARY:
            del self._children[child_id]

    def exited(self, child_id: Hashable, error: BaseException | None, now: float) -> Plan:
        """A running child ended by itself at ``now``: normally (``error is None``) or with
        ``error``. Returns the :class:`Plan`; the engine's records already reflect it
        (children in ``stop`` are marked stopped, those in ``start`` are expected to be
        reported with :meth:`started`)."""
        state = self._children[child_id]
        state.running = False
        spec = state.spec
        strategy = self.strategy
        directive: Directive | None = None
        if error is not None:
            try:
                directive = strategy.decider(error)
                if not isinstance(directive, Directive):
                    raise TypeError(f"the decider returned {directive!r}, not a Directive")
            except Exception as exc:  # a broken decider fails the supervisor, loudly
                exc.__context__ = error
                return self._end(child_id, None, escalate=exc)
            if directive is Directive.ESCALATE:
                return self._end(child_id, directive, escalate=error)
            if directive is Directive.RESUME and self.can_resume:
                # The child goes on as it is: no restart, nothing counted.
                state.running = True
                return Plan(child_id, directive)
        # Past this point RESUME means the driver cannot resume: restart the child alone.
        resume = directive is Directive.RESUME
        if directive is Directive.STOP or not spec.restart.restarts_after(
            abnormal=error is not None
        ):
            return self._gone_for_good(child_id, directive)
        # A restart (a failure with RESTART, or a permanent child that ended normally).
        delay = 0.0
        if state.backoff is not None and not resume:
            next_delay = state.backoff.next_delay(now, state.started_at)
            if next_delay is None:  # the backoff's max_restarts is used up: stop it
                return self._gone_for_good(child_id, Directive.STOP)
            delay = next_delay
        if not self._intensity.allow(now):
            intensity = strategy.intensity
            cause = error if error is not None else _NormalExit(child_id)
            gave_up = TooManyRestarts(child_id, cause, intensity.max_restarts, intensity.within)
            gave_up.__cause__ = cause
            return self._end(child_id, directive, give_up=gave_up)
        order = list(self._children)
        affected = [child_id] if resume else strategy.affected(order, child_id)
        stop = [cid for cid in reversed(affected) if cid != child_id and self._is_running(cid)]
        for cid in stop:
            self._children[cid].running = False
        start: list[Hashable] = []
        removed: list[Hashable] = []
        for cid in affected:
            if cid != child_id and cid not in stop:
                continue  # a sibling that was not running stays as it is
            if self._children[cid].spec.restart is Restart.TEMPORARY:
                removed.append(cid)
                del self._children[cid]
            else:
                start.append(cid)
        return Plan(
            child_id,
            directive if directive is not None else Directive.RESTART,
            stop=tuple(stop),
            start=tuple(start),
            removed=tuple(removed),
            delay=delay,
        )

    # -- helpers ---------------------------------------------------------------------------

    def _is_running(self, child_id: Hashable) -> bool:
        state = self._children.get(child_id)
        return state is not None and state.running

    def _gone_for_good(self, child_id: Hashable, directive: Directive | None) -> Plan:
        """The child stays down: forget it if temporary, then check auto-shutdown."""
        state = self._children[child_id]
        removed: tuple[Hashable, ...] = ()
        if state.spec.restart is Restart.TEMPORARY:
            del self._children[child_id]
            removed = (child_id,)
        if state.spec.significant and self._auto_shutdown_due():
            return Plan(
                child_id, directive, stop=tuple(self._stop_all()), removed=removed, shutdown=True
            )
        return Plan(child_id, directive, removed=removed)

    def _auto_shutdown_due(self) -> bool:
        mode = self.auto_shutdown
        if mode is AutoShutdown.ANY_SIGNIFICANT:
            return True
        if mode is AutoShutdown.ALL_SIGNIFICANT:
            return not any(s.running for s in self._children.values() if s.spec.significant)
        return False

    def _stop_all(self) -> list[Hashable]:
        stop = self.stop_order()
        for cid in stop:
            self._children[cid].running = False
        return stop

    def _end(
        self,
        child_id: Hashable,
        directive: Directive | None,
        *,
        escalate: BaseException | None = None,
        give_up: TooManyRestarts | None = None,
    ) -> Plan:
        return Plan(
            child_id,
            directive,
            stop=tuple(self._stop_all()),
            escalate=escalate,
            give_up=give_up,
        )


class _NormalExit(Exception):
    """Stands in for the error of a permanent child that keeps ending normally."""

    def __init__(self, child: Hashable) -> None:
        super().__init__(f"permanent child {child!r} ended normally")
