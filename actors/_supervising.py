"""The parent's side of supervision: deciding about a failed child, and carrying out a
restart that involves several children, the way OTP does.

A child that fails reports to its parent from its own task (``child_failed``). The
parent's :class:`supervision.RestartEngine` decides. When the decision concerns the
failed child alone (one-for-one, a resume, a stop, an escalation), the child carries it
out at once in its own task: a restart in place costs no extra task. When it involves
siblings (one-for-all, rest-for-one), a :class:`Coordinator` task carries it out in
OTP's order: the failed child's old instance goes first, then the affected siblings are
taken down one at a time in reverse start order, each within its shutdown deadline (a
handler still running past it is cancelled), then every affected child starts again in
start order, each once the previous one has started. Failures of its children reported
while a coordinator runs wait their turn and are decided in the order they came. So no
new instance ever runs beside an old instance of a sibling, and the order is the same on
every run.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from supervision import BRUTAL, ChildSpec, Directive, Plan, Restart, RestartEngine, Strategy

from ._cell_state import DEAD, FAIL, ORDER, STOPPING
from ._errors import ActorError, ActorInitializationError
from ._messages import SupervisorGaveUp
from ._runtime_log import log_debug, log_error, log_failure

if TYPE_CHECKING:
    from ._cell import ActorCell

_WARNING: Final = logging.WARNING
_ERROR: Final = logging.ERROR


class SupervisionRelay(Protocol):
    """A parent whose decisions are made in another process: a worker's host of the
    actors the root placed there (``_worker_host.py``). ``child_failed`` hands it the
    failure (the child then waits for an order), ``child_gone`` the end of a child, and
    a child that has started (or restarted) tells it with ``child_started``."""

    def child_failed(
        self, child: ActorCell, error: BaseException, can_resume: bool, message: Any
    ) -> None: ...

    def child_started(self, child: ActorCell, restarted: bool) -> None: ...

    def child_gone(self, child: ActorCell) -> None: ...


def implicit_spec(name: str) -> ChildSpec:
    """The spec of a child spawned with ``spawn``: restarted after a failure only (a
    child that stops normally is gone, as in Akka)."""
    return ChildSpec(name, None, restart=Restart.TRANSIENT, shutdown=BRUTAL)


def strategy_of(cell: ActorCell) -> Strategy:
    """The strategy ``cell`` supervises its children with."""
    if cell._strategy is not None:
        return cell._strategy
    settings = cell.system.settings
    if cell._parent is None and settings.guardian_strategy is not None:
        return settings.guardian_strategy
    return settings.supervisor_strategy


def engine_of(parent: ActorCell) -> RestartEngine:
    """The restart engine over ``parent``'s children, made at the first failure of a
    child (spawning stays cheap until then)."""
    engine = parent._engine
    if engine is None:
        engine = RestartEngine(strategy_of(parent), rng=parent.system._rng)
        parent._engine = engine
        now = trio.current_time()
        for name, child in (parent._children or {}).items():
            if child._state != DEAD:
                engine.add(implicit_spec(name))
                engine.started(name, now)
    return engine


def shutdown_deadline(parent: ActorCell, child: ActorCell) -> float | None:
    """When ``child`` must have left its handler once asked to stop: its spec's
    ``shutdown`` under a :class:`Supervisor` (``BRUTAL``: now), else ``None`` (the
    system's ``stop_timeout``)."""
    engine = parent._engine
    if engine is None or parent._on_child_exit is None or child._name not in engine:
        return None
    shutdown = engine.state(child._name).spec.shutdown
    now = trio.current_time()
    if shutdown == BRUTAL:
        return now
    assert isinstance(shutdown, int | float)
    return now + shutdown


def stop_child(parent: ActorCell, child: ActorCell) -> None:
    """Ask ``child`` to stop on ``parent``'s behalf (not an exit of its own), within its
    shutdown deadline."""
    child._stopped_by_parent = True
    child.request_stop(shutdown_deadline(parent, child))


def child_restarted(parent: ActorCell, child: ActorCell) -> None:
    relay = parent._relay
    if relay is not None:
        relay.child_started(child, True)
        return
    engine = parent._engine
    if engine is not None and child._name in engine:
        engine.started(child._name, trio.current_time())


def child_gone(parent: ActorCell, child: ActorCell) -> None:
    """``child`` has fully stopped: a supervisor built from child specs decides what
    follows; other actors just forget it."""
    relay = parent._relay
    if relay is not None:
        relay.child_gone(child)
        return
    engine = parent._engine
    name = child._name
    if engine is None or name not in engine:
        return
    if parent._on_child_exit is not None:
        parent._on_child_exit(child)
        return
    engine.stopped(name)
    if name in engine:
        engine.delete(name)


def escalate(parent: ActorCell, child: ActorCell, error: BaseException, *, drop: bool) -> None:
    """Fail ``parent`` with ``error`` (from ``child``): its own supervisor decides, after
    it has stopped its children if ``drop``. At the root (``/user``) the failure ends
    the system: ``open_system`` raises it."""
    if parent._parent is None:
        parent.system._unhandled_failure(child.ref, error)
        return
    parent._failing = True
    parent._system_request(FAIL, (error, drop))


# -- deciding ---------------------------------------------------------------------------------

Verdict = tuple[Directive, float]
"""The failed child's own verdict: ``RESUME``, ``RESTART`` after a delay, or ``STOP``."""


def child_failed(
    parent: ActorCell,
    child: ActorCell,
    error: BaseException,
    can_resume: bool,
    message: Any,
    queued: bool = False,
) -> tuple[Verdict, Plan | None] | None:
    """``child`` failed with ``error`` (while handling ``message``, if any): decide, and
    carry out what concerns others. Returns the child's verdict, with the engine's plan
    when it involves siblings (else ``None``); gives up, escalates or shuts the parent
    down as the plan says.

    Returns ``None`` instead when a :class:`Coordinator` will give the child an
    :class:`Order`: one is at work for this parent (the failure waits its turn), or the
    plan involves siblings (one starts). The coordinator decides the failures it takes
    from its queue with ``queued=True``, which always returns the decision.

    A parent that relays its decisions to another process (``parent._relay``) returns
    ``None`` too: the decision comes back as an order."""
    relay = parent._relay
    if relay is not None:
        relay.child_failed(child, error, can_resume, message)
        return None
    if not queued:
        if parent._stop_requested or parent._state >= STOPPING or parent._failing:
            # A stopping (or failing) parent stops its children anyway: report it.
            log_error(
                child.ref.path,
                "%s failed while its supervisor %s was stopping or failing",
                error,
                parent.ref.path,
            )
            return (Directive.STOP, 0.0), None
        coordinators = parent.system._coordinators
        if coordinators and parent in coordinators:  # a group restart is under way
            coordinators[parent].queue.append((child, error, message, can_resume, None))
            return None
    engine = parent._engine  # (not `or`: an engine's truth is its number of children)
    if engine is None:
        engine = engine_of(parent)
    name = child._name
    path = parent.ref.path
    stop: Verdict = (Directive.STOP, 0.0)
    if name not in engine:
        log_failure(_WARNING, child, error, message, "stopped by %s", path)
        return stop, None
    plan = engine.exited(name, error, trio.current_time())
    if plan.give_up is not None:
        log_failure(
            _ERROR,
            child,
            error,
            message,
            "its supervisor %s gives up (too many restarts) and fails in turn",
            path,
        )
        events = parent.system.events
        if events._subscriptions:
            events._publish_runtime(SupervisorGaveUp(parent.ref, child.ref, error))
        escalate(parent, child, plan.give_up, drop=True)
        return stop, None
    if plan.escalate is not None:
        log_failure(_WARNING, child, error, message, "escalated by %s to its own supervisor", path)
        escalate(parent, child, plan.escalate, drop=False)
        return stop, None
    if plan.shutdown:
        log_failure(
            _WARNING,
            child,
            error,
            message,
            "its supervisor %s shuts down (a significant child ended)",
            path,
        )
        parent.request_stop()
        return stop, None
    if plan.directive is Directive.RESUME:
        if can_resume:
            log_failure(_WARNING, child, error, message, "resumed by %s", path, may_repeat=True)
            return (Directive.RESUME, 0.0), None
        # Nothing to resume (the constructor or pre_start failed): stop it, rather
        # than retry without counting towards intensity.
        log_failure(
            _WARNING,
            child,
            error,
            message,
            "stopped by %s (it never started, so it cannot resume)",
            path,
        )
        engine.stopped(name)
        return stop, None
    if name in plan.start:
        if plan.delay > 0:
            log_failure(
                _WARNING,
                child,
                error,
                message,
                "restarting it in %g s",
                round(plan.delay, 3),
            )
        else:
            log_failure(_WARNING, child, error, message, "restarting it", may_repeat=True)
        verdict: Verdict = (Directive.RESTART, plan.delay)
    else:
        # An actor that cannot start and stops (the default decider's answer) is gone
        # for good, never having run: an error (the traceback shows the error's note on
        # how to retry instead), not a warning.
        level = _ERROR if isinstance(error, ActorInitializationError) else _WARNING
        log_failure(level, child, error, message, "stopped by %s", path)
        verdict = stop
    start = plan.start
    if not (plan.stop or len(start) > 1 or (start and start[0] != name)):
        return verdict, None
    if queued:
        return verdict, plan
    coordinator = parent.system._coordinators[parent] = Coordinator(parent)
    coordinator.queue.append((child, error, message, can_resume, (verdict, plan)))
    parent.system._nursery.start_soon(coordinator.run, name=f"{parent.ref.path} restarts")
    return None


# -- restarts of several children -------------------------------------------------------------


class Order:
    """What a supervisor's :class:`Coordinator` orders one child: ``directive`` with
    ``error`` (and ``delay`` for a restart of the child alone). In a restart with its
    siblings (``grouped``), the child takes its old instance down and sets ``down``,
    waits until the coordinator sets ``up`` (and wakes it), starts its new instance and
    sets ``done``. A child that stops or dies meanwhile sets both events."""

    __slots__ = ("delay", "directive", "done", "down", "error", "grouped", "up")

    def __init__(
        self, directive: Directive, error: BaseException, delay: float = 0.0, grouped: bool = False
    ) -> None:
        self.directive = directive
        self.error = error
        self.delay = delay
        self.grouped = grouped
        self.down = trio.Event()
        self.up = False
        self.done = trio.Event()

    def release(self) -> None:
        """The child will not follow the order any further (it is stopping or dead)."""
        self.down.set()
        self.done.set()


class RelayedOrders:
    """The host's side of children whose supervisor is in another process (a worker's
    actors, or actors placed on a node of a cluster): the children that failed and
    wait for a verdict, and the restarts under way. :meth:`obey` carries out the
    orders that come back (``resume``; ``down`` then ``up``, a restart; ``stop``)."""

    def __init__(self) -> None:
        self.waiting: set[ActorCell] = set()
        self.restarts: dict[Any, Order] = {}  # by address: ``down`` given, ``up`` to come

    def failed(self, child: ActorCell) -> None:
        """``child`` failed: it waits for the verdict."""
        self.waiting.add(child)

    def gone(self, child: ActorCell) -> None:
        self.waiting.discard(child)
        self.restarts.pop(child.ref.address, None)

    def obey(
        self,
        cell: ActorCell,
        what: str,
        error: BaseException | None,
        nursery: trio.Nursery,
        report_down: Callable[[], None],
    ) -> None:
        """Carry out the order ``what`` for ``cell``; ``report_down`` is called once its
        old instance is down after a ``down`` (the supervisor then orders ``up``)."""
        address = cell.ref.address
        if what == "up":
            order = self.restarts.pop(address, None)
            if order is not None:
                order.up = True
                cell._wake()
            return
        reason = error if error is not None else ActorError("ordered by its supervisor")
        if what == "resume":
            if cell in self.waiting:
                self.waiting.discard(cell)
                give_order(cell, Order(Directive.RESUME, reason))
        elif what == "down":
            self.waiting.discard(cell)
            order = Order(Directive.RESTART, reason, grouped=True)
            self.restarts[address] = order
            give_order(cell, order)
            nursery.start_soon(_report_down, order, report_down)
        elif what == "stop":
            if cell in self.waiting:
                self.waiting.discard(cell)
                give_order(cell, Order(Directive.STOP, reason))
            else:
                cell.request_stop()


async def _report_down(order: Order, report: Callable[[], None]) -> None:
    await order.down.wait()
    if not order.done.is_set():
        report()


def give_order(child: ActorCell, order: Order, deadline: float | None = None) -> None:
    """Hand ``order`` to ``child`` and wake it. A running child leaves its loop after its
    current message; with ``deadline``, a handler still running then is cancelled (as
    a stop would)."""
    if child._state == DEAD:
        order.release()
        return
    child._order = order
    if deadline is not None and child._started and deadline < child._stop_deadline:
        child._stop_deadline = deadline
        if child._scope is not None:
            child._scope.deadline = deadline
    child._system_request(ORDER, order)


_Queued = tuple["ActorCell", BaseException, Any, bool, "tuple[Verdict, Plan | None] | None"]


class Coordinator:
    """Carries out, one at a time and in its own task, a parent's decisions that involve
    several children, and every failure of its children reported meanwhile."""

    __slots__ = ("parent", "queue")

    def __init__(self, parent: ActorCell) -> None:
        self.parent = parent
        # (child, error, message, can_resume, decision already made or None)
        self.queue: deque[_Queued] = deque()

    def _parent_ending(self) -> bool:
        # (Not when it merely fails: its supervisor may resume it, and a restart of it
        # stops these children anyway if its strategy says so.)
        parent = self.parent
        return parent._stop_requested or parent._state >= STOPPING

    async def run(self) -> None:
        """Work through the queue; ends when it is empty, or when the parent stops (the
        children still waiting for an order are then told to stop)."""
        parent = self.parent
        try:
            while self.queue and not self._parent_ending():
                child, error, message, can_resume, decided = self.queue.popleft()
                if child._state == DEAD or child._parent is not parent:
                    continue
                if decided is None:
                    decided = child_failed(parent, child, error, can_resume, message, queued=True)
                    assert decided is not None
                (directive, delay), plan = decided
                if plan is None:
                    order = Order(directive, error, delay)
                    give_order(child, order)
                    if directive is Directive.RESTART:
                        await order.done.wait()  # in turn: the next decision waits for it
                else:
                    await self._restart_group(child, error, plan)
        finally:
            del parent.system._coordinators[parent]
            queue, self.queue = self.queue, deque()
            for child, error, *_ in queue:  # the parent ends: so do they
                give_order(child, Order(Directive.STOP, error))

    async def _restart_group(self, failed: ActorCell, error: BaseException, plan: Plan) -> None:
        parent = self.parent
        children = parent._children or {}
        orders = {name: Order(Directive.RESTART, error, grouped=True) for name in plan.start}
        # A failure of an affected sibling that waits its turn is superseded: the group
        # restart replaces the incarnation that failed (as OTP ignores the exit of a
        # child it is restarting anyway).
        superseded = [item for item in self.queue if item[0]._name in orders]
        for item in superseded:
            self.queue.remove(item)
            log_debug(item[0].ref.path, "%s: its failure %r is superseded by a restart", item[1])
        # The failed child's old instance goes first (it has failed already)...
        own = orders.get(failed._name)
        give_order(failed, own or Order(Directive.STOP, error))
        if own is not None:
            await own.down.wait()
        # ... then the affected siblings, one at a time, in reverse start order.
        for name in plan.stop:
            sibling = children.get(name)
            if sibling is None or sibling is failed or sibling._state == DEAD:
                continue
            order = orders.get(name)
            if order is None:
                log_debug(sibling.ref.path, "%s stops: its sibling %s failed", failed.ref.path)
                stop_child(parent, sibling)
                await sibling._wait_terminated()
            else:
                log_debug(
                    sibling.ref.path, "%s restarts with its failed sibling %s", failed.ref.path
                )
                give_order(sibling, order, _sibling_deadline(parent, sibling))
                await order.down.wait()
            if self._parent_ending():
                return
        if plan.delay > 0:  # the backoff; cut short if the parent ends
            with trio.move_on_at(trio.current_time() + plan.delay):
                await parent._wait_terminated()
        # Then every affected child starts again, in start order, one after the other.
        for name in plan.start:
            if self._parent_ending():
                return
            child = children.get(name)
            order = orders[name]
            if child is None or child._state == DEAD or order.done.is_set():
                continue
            order.up = True
            child._wake()
            await order.done.wait()


def _sibling_deadline(parent: ActorCell, sibling: ActorCell) -> float:
    """When a sibling taken down for a group restart must have left its handler: its
    shutdown deadline, as for a stop."""
    deadline = shutdown_deadline(parent, sibling)
    if deadline is None:
        deadline = trio.current_time() + parent.system.settings.stop_timeout
    return deadline
