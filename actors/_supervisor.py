"""``Supervisor``: an actor that runs a static set of children from child specs (OTP)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import attrs
import trio

from supervision import (
    AutoShutdown,
    ChildCounts,
    ChildSpec,
    Restart,
    RestartEngine,
    Strategy,
)

from ._actor import Actor
from ._cell_state import DEAD
from ._envelope import NEW_NOTE
from ._errors import ActorDead
from ._messages import SupervisorGaveUp
from ._ref import ActorRef
from ._spawn_checks import check_factory
from ._spawning import check_name
from ._supervising import escalate, stop_child, strategy_of

if TYPE_CHECKING:
    from ._cell import ActorCell


@attrs.frozen
class WhichChildren:
    """Ask a :class:`Supervisor` for its children: the reply is a list of
    :class:`SupervisedChild`, in start order."""


@attrs.frozen
class CountChildren:
    """Ask a :class:`Supervisor` how many children it knows and runs: the reply is a
    :class:`supervision.ChildCounts`."""


@attrs.frozen
class StartChild:
    """Ask a :class:`Supervisor` to add ``spec`` after its other children and start it.
    The reply is the new child's ref once it has started. Fails (the asker gets the
    error) with ``ValueError`` if a child with that id exists, or ``ActorDead`` if the
    child stopped before it could start (its ``error`` and ``__cause__``: why)."""

    spec: ChildSpec


@attrs.frozen
class RestartChild:
    """Ask a :class:`Supervisor` to start again a known child that is not running (after
    :class:`TerminateChild`, or one that ended for good). The reply is its new ref.
    Fails with ``KeyError`` for an unknown id and ``RuntimeError`` if it runs."""

    id: str


@attrs.frozen
class TerminateChild:
    """Ask a :class:`Supervisor` to stop a child per its ``shutdown`` spec; the reply
    (``None``) comes once it has stopped. It is not restarted and keeps its place
    (a temporary child is forgotten). Fails with ``KeyError`` for an unknown id."""

    id: str


@attrs.frozen
class DeleteChild:
    """Ask a :class:`Supervisor` to forget the spec of a child that is not running.
    Fails with ``KeyError`` for an unknown id and ``RuntimeError`` if it runs."""

    id: str


@attrs.frozen
class SupervisedChild:
    """One child of a :class:`Supervisor`: its id, its ref while it runs (else
    ``None``), its restart type and whether it is significant."""

    id: str
    ref: ActorRef | None
    restart: Restart
    significant: bool


@attrs.frozen
class _StartAgain:
    """Sent by a supervisor to itself when a child ended by itself and its restart type
    restarts it (with siblings, under one-for-all or rest-for-one): stop the children
    in ``stop`` one at a time (reverse start order), then after ``delay`` start those
    in ``start`` one at a time (start order)."""

    stop: tuple[str, ...]
    start: tuple[str, ...]
    delay: float = 0.0


class Supervisor(Actor):
    """An actor whose only job is to supervise children given as child specs: a static
    supervision tree in the style of OTP.

    Each :class:`supervision.ChildSpec` has an ``id`` that becomes the child's actor name,
    and a ``start`` that is the actor factory (an ``Actor`` subclass, or a callable such as
    ``functools.partial(Worker, 3)``). Children start in order, each after the previous
    one has finished ``pre_start``, and stop in reverse order, each with its spec's
    ``shutdown`` deadline (``BRUTAL``: its handler is cancelled at once; ``post_stop``
    still runs).

    A child that fails is handled by ``strategy`` like any actor's child: restarted in
    place (same ref and mailbox), resumed, stopped, or escalated. The spec's restart type
    adds OTP's rules: a transient child is never restarted after a normal stop, a
    temporary one never at all (and is forgotten when it ends), and a permanent child
    that stops by itself is started again as a new incarnation with the same name.
    ``auto_shutdown`` makes the exit of significant children stop the supervisor.
    A child that cannot start (``ActorInitializationError``, stopped by the default
    decider) fails the supervisor's own start while it starts its children, as in OTP:
    the children started before it stop, and the supervisor fails with an
    ``ActorInitializationError`` caused by the child's :class:`ActorDead`. Later, such a
    child stays down, whatever its restart type.

    Manage it at run time with the messages :class:`WhichChildren`,
    :class:`CountChildren`, :class:`StartChild`, :class:`RestartChild`,
    :class:`TerminateChild` and :class:`DeleteChild` (use ``ask``).
    """

    def __init__(
        self,
        children: Sequence[ChildSpec] = (),
        strategy: Strategy | None = None,
        auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
    ) -> None:
        cell = self._actor_cell
        assert cell is not None, "a Supervisor is made by spawn"
        if strategy is None:
            strategy = strategy_of(cell)
        engine = RestartEngine(strategy, AutoShutdown(auto_shutdown), cell.system._rng)
        for spec in children:
            _check_spec(spec)
            engine.add(spec)
        cell._strategy = strategy
        cell._engine = engine
        cell._on_child_exit = self._child_exited
        self._cell = cell
        self._engine = engine

    async def pre_start(self) -> None:
        # As OTP's supervisor start: a child that cannot start fails this start (the
        # children already started stop with the supervisor).
        for child_id in list(self._engine):
            cell = await self._start_cell(str(child_id))
            if cell._state != DEAD:
                continue
            if self._cell._stop_requested or self._cell._failing:
                break  # the supervisor is ending (it gave up, or is asked to stop)
            if cell._reason is not None:
                raise ActorDead(cell.ref.path, "stopped before it started", cell._reason)
            # It stopped by itself, normally: its restart type decides (_child_exited).

    async def receive(self, message: Any) -> Any:
        engine = self._engine
        if isinstance(message, WhichChildren):
            return [
                SupervisedChild(
                    str(cid),
                    self._live_ref(cid),
                    engine.state(cid).spec.restart,
                    engine.state(cid).spec.significant,
                )
                for cid in engine
            ]
        if isinstance(message, CountChildren):
            return ChildCounts(len(engine), sum(self._live_ref(c) is not None for c in engine))
        if isinstance(message, StartChild):
            _check_spec(message.spec)
            engine.add(message.spec)
            return await self._started_or_dead(message.spec.id)
        if isinstance(message, RestartChild):
            self._known(message.id)
            if self._live_ref(message.id) is not None:
                raise RuntimeError(f"child {message.id!r} is already running")
            return await self._started_or_dead(message.id)
        if isinstance(message, TerminateChild):
            self._known(message.id)
            cell = self._cell_of(message.id)
            if cell is not None:
                stop_child(self._cell, cell)
                await cell._wait_terminated()
            if message.id in engine:
                engine.stopped(message.id)
            return None
        if isinstance(message, DeleteChild):
            self._known(message.id)
            if self._cell_of(message.id) is not None:
                raise RuntimeError(
                    f"child {message.id!r} is running; terminate it before deleting it"
                )
            engine.delete(message.id)
            return None
        if isinstance(message, _StartAgain):
            for child_id in message.stop:
                cell = self._cell_of(child_id)
                if cell is not None:
                    stop_child(self._cell, cell)
                    await cell._wait_terminated()
            if message.delay > 0:
                again = _StartAgain((), message.start)
                self.context.timers.start_single(again, again, message.delay)
                return None
            for child_id in message.start:
                cell = self._cell_of(child_id)
                if cell is not None:
                    if not cell._stopped_by_parent:
                        continue  # started meanwhile (RestartChild)
                    await cell._wait_terminated()  # the old incarnation is still stopping
                if child_id in engine:
                    await self._start(child_id)
            return None
        self.unhandled(message)
        return None

    # -- helpers ---------------------------------------------------------------------------

    async def _start(self, child_id: str) -> ActorRef | None:
        """Spawn a child from its spec and wait until it has started; ``None`` if it
        stopped first (its start failed for good)."""
        cell = await self._start_cell(child_id)
        return None if cell._state == DEAD else cell.ref

    async def _start_cell(self, child_id: str) -> ActorCell:
        """Spawn a child from its spec and wait until it has started or has stopped;
        return its cell (dead if it stopped first: its ``_reason`` says why)."""
        spec = self._engine.state(child_id).spec
        cell = self._cell_of(child_id)
        if cell is not None and not cell._stopped_by_parent:
            # Kept through a restart of this supervisor (its strategy keeps children).
            self._engine.started(child_id, trio.current_time())
        else:
            if cell is not None:
                await cell._wait_terminated()
            self.context.spawn(spec.start, name=child_id)
            cell = self._cell_of(child_id)
            assert cell is not None
        await cell._wait_ready()
        return cell

    async def _started_or_dead(self, child_id: Hashable) -> ActorRef:
        cell = await self._start_cell(str(child_id))
        if cell._state == DEAD:
            raise ActorDead(cell.ref.path, "stopped before it started", cell._reason)
        return cell.ref

    def _known(self, child_id: str) -> None:
        if child_id not in self._engine:
            raise KeyError(f"{self.context.ref.path} has no child with id {child_id!r}")

    def _cell_of(self, child_id: Hashable) -> ActorCell | None:
        children = self._cell._children
        cell = None if children is None or not isinstance(child_id, str) else children.get(child_id)
        return cell

    def _live_ref(self, child_id: Hashable) -> ActorRef | None:
        cell = self._cell_of(child_id)
        return None if cell is None or cell._stop_requested else cell.ref

    def _child_exited(self, child: ActorCell) -> None:
        """A child has fully stopped (called from its task): apply its restart type."""
        cell = self._cell
        engine = self._engine
        name = child._name
        if cell._engine is not engine:
            return  # this instance has been replaced by a restart
        if child._stopped_by_parent or cell._stop_requested or cell.system._terminating:
            engine.stopped(name)  # (no restarts while the system shuts down)
            return
        if not engine.state(name).running:
            return  # a failure the strategy already settled (stopped or gave up)
        plan = engine.exited(name, None, trio.current_time())
        if plan.give_up is not None:
            events = cell.system.events
            if events._subscriptions:
                events._publish_runtime(SupervisorGaveUp(cell.ref, child.ref, plan.give_up.error))
            escalate(cell, child, plan.give_up, drop=True)
            return
        if plan.shutdown:
            cell.request_stop()
            return
        if plan.start or plan.stop:
            again = _StartAgain(
                tuple(str(cid) for cid in plan.stop),
                tuple(str(cid) for cid in plan.start),
                plan.delay,
            )
            # Outside the mailbox's capacity, like a timer tick: never dropped.
            cell._append_uncounted((again, None, NEW_NOTE))


def _check_spec(spec: object) -> None:
    if not isinstance(spec, ChildSpec):
        raise TypeError(f"children must be supervision.ChildSpec, got {spec!r}")
    if not isinstance(spec.id, str):
        raise TypeError(f"an actor child's id is its name, a str; got {spec.id!r}")
    check_name(spec.id)
    try:
        check_factory(spec.start, (), {})
    except TypeError as error:
        raise TypeError(
            f"child {spec.id!r}: its start is not a usable actor factory: {error}"
        ) from error
