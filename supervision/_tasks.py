"""The trio-task supervisor: the restart engine driving plain trio tasks."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from ._child import (
    ChildCounts,
    ChildInfo,
    _Incarnation,
    listen_for_stop_if_supervised,
    run_incarnation,
)
from ._engine import Plan, RestartEngine
from ._spec import AutoShutdown, ChildSpec
from ._strategy import OneForOne, Strategy


@attrs.define(eq=False)
class _Call:
    """An API call carried out by the supervisor loop, one at a time."""

    fn: Callable[[], Awaitable[Any]]
    done: trio.Event = attrs.field(factory=trio.Event)
    result: Any = None
    error: Exception | None = None


@attrs.frozen
class _End:
    """The supervisor ends: with ``error`` raised out of ``run()``, or normally."""

    error: BaseException | None = None


class _Wake:
    """Wakes the loop up (after a stop request)."""


_NOBODY = object()


_Message = _Incarnation | _Call | _Wake


class TaskSupervisor:
    """An OTP-style supervisor of plain trio tasks.

    Each child is a :class:`ChildSpec` whose ``start`` is an async function taking
    ``task_status`` (as for ``nursery.start``): ``async def child(task_status=
    trio.TASK_STATUS_IGNORED)``. Children start in order, each once the previous one
    has called ``task_status.started()``, and stop in reverse order. A child that
    returns has exited normally; one that raises an ``Exception`` has failed, with that
    error as the reason; one that raises before reporting started failed to start,
    which counts as a failure too (so restart intensity ends any start loop). What
    follows each exit is decided by the ``strategy`` (see :class:`RestartEngine`).

    Run it with ``await nursery.start(sup.run)`` or ``async with open_supervisor(...)``.
    Every child task lives in a nursery inside :meth:`run`: none outlives it.

    Stopping a child follows its spec's ``shutdown``: ``BRUTAL`` cancels it at once; a
    number N asks it to stop (the event from :func:`listen_for_stop` is set) and cancels
    it N seconds later if it is still running. A child that never called
    :func:`listen_for_stop` is cancelled at once, so plain tasks never make a shutdown
    wait.

    ``Directive.RESUME`` cannot keep a task that raised: for a task it means "restart
    that child alone, at once" (no backoff delay, whatever the strategy), counted
    towards restart intensity.

    The API (:meth:`start_child`, :meth:`restart_child`, :meth:`terminate_child`,
    :meth:`stop`) is for tasks in the same trio run. Calls and child exits are handled
    one at a time, in arrival order: a call made while a restart is carried out (for
    instance during a backoff delay) waits for it to finish. So a child must not call
    these before it has reported started: the supervisor is waiting for it (a deadlock,
    as in OTP). A caller cancelled while waiting only stops waiting: the call goes on.
    """

    def __init__(
        self,
        strategy: Strategy | None = None,
        children: Sequence[ChildSpec] = (),
        *,
        auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
        rng: random.Random | None = None,
    ) -> None:
        self.strategy = strategy if strategy is not None else OneForOne()
        self.auto_shutdown = AutoShutdown(auto_shutdown)
        self._rng = rng
        for spec in children:
            _check_spec(spec)
        self._specs = tuple(children)
        self._engine = self._new_engine()  # checks the strategy and unique ids
        self._alive: dict[Hashable, _Incarnation] = {}
        self._starting: set[Hashable] = set()
        self._spawning: Hashable = _NOBODY
        self._nursery: trio.Nursery | None = None
        self._send: trio.MemorySendChannel[_Message] | None = None
        self._stop_asked = trio.Event()
        self._ended = trio.Event()
        self._ended.set()

    def _new_engine(self) -> RestartEngine:
        engine = RestartEngine(self.strategy, self.auto_shutdown, self._rng, can_resume=False)
        for spec in self._specs:
            engine.add(spec)
        return engine

    # -- running ------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        """Whether :meth:`run` is going on (from its call until it has returned)."""
        return self._send is not None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the children in order, then supervise them until the supervisor ends.

        ``task_status.started()`` is called once every initial child has started, so
        ``await nursery.start(sup.run)`` returns with the children up. Each run starts
        from the initial children with fresh restart counts (OTP restarts a supervisor
        that way), so a supervisor's ``run`` can itself be a child of another one.

        Returns normally after :meth:`stop` or an automatic shutdown (significant
        children), once every child has stopped. Raises :class:`TooManyRestarts` when it
        gives up and the child's own error when the decider escalates, after stopping
        every child in reverse start order. A ``BaseException`` that is not an
        ``Exception`` raised by a child (``KeyboardInterrupt``, ``SystemExit``) is never
        handled as a failure: it cancels every child at once and propagates. Cancelled
        from outside, it cancels every child and propagates ``Cancelled``.

        Inside a task supervised by another supervisor, a stop request from that
        supervisor (:func:`listen_for_stop`) makes this one stop its children in order.
        """
        if self.running:
            raise RuntimeError(
                "this supervisor is already running; a TaskSupervisor runs once at a time "
                "(create another one to run a second tree)"
            )
        self._engine = self._new_engine()
        self._alive = {}
        self._starting = set()
        self._stop_asked = trio.Event()
        self._ended = trio.Event()
        send, receive = trio.open_memory_channel[_Message](math.inf)
        self._send = send
        outcome: _End | None = None
        lone: BaseException | None = None
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                relay = trio.CancelScope()
                parent_asks = listen_for_stop_if_supervised()
                if parent_asks is not None:  # run by (or inside) a supervised task
                    nursery.start_soon(self._relay_stop, parent_asks, relay)
                outcome = await self._supervise(receive, task_status)
                relay.cancel()
        except BaseExceptionGroup as group:
            lone = _lone_error(group)
            if lone is None:
                raise
        finally:
            self._nursery = None
            self._send = None
            self._alive = {}
            self._starting = set()
            self._fail_pending_calls(receive)
            send.close()
            receive.close()
            self._ended.set()
        if lone is not None:
            raise lone  # outside the handler, so that it keeps its own context
        if outcome is not None and outcome.error is not None:
            raise outcome.error

    async def stop(self) -> None:
        """Stop every child in reverse start order (each per its shutdown spec) and end
        :meth:`run` normally; returns once it has ended. A restart waiting for its
        backoff delay is abandoned. Does nothing if the supervisor is not running;
        cancelling the caller does not cancel the stop already requested."""
        send = self._send
        if send is not None:
            self._stop_asked.set()
            send.send_nowait(_Wake())
        await self._ended.wait()

    async def wait_stopped(self) -> None:
        """Wait until :meth:`run` has ended, however it ended (returns at once when it
        is not running). It does not raise the supervisor's error: ``run`` does."""
        await self._ended.wait()

    async def _relay_stop(self, asked: trio.Event, scope: trio.CancelScope) -> None:
        with scope:
            await asked.wait()
            self._stop_asked.set()
            if self._send is not None:
                self._send.send_nowait(_Wake())

    # -- the loop -----------------------------------------------------------------------------

    async def _supervise(
        self, receive: trio.MemoryReceiveChannel[_Message], task_status: trio.TaskStatus[None]
    ) -> _End:
        end = await self._start_pending(list(self._engine), 0.0)
        if end is not None:
            if end.error is None:
                task_status.started()  # an automatic shutdown while starting: still a start
            return end
        task_status.started()
        while True:
            if self._stop_asked.is_set():
                await self._stop_all()
                return _End()
            message = await receive.receive()
            if isinstance(message, _Incarnation):
                end = await self._on_exit(message)
                if end is not None:
                    return end
            elif isinstance(message, _Call):
                await self._on_call(message)

    async def _on_exit(self, incarnation: _Incarnation) -> _End | None:
        child_id = incarnation.spec.id
        if self._alive.get(child_id) is not incarnation or incarnation.stopping:
            return None  # stale: the supervisor stopped or replaced it meanwhile
        del self._alive[child_id]
        plan = self._engine.exited(child_id, incarnation.error, trio.current_time())
        return await self._carry_out(plan)

    async def _on_call(self, call: _Call) -> None:
        try:
            call.result = await call.fn()
        except Exception as exc:  # the caller gets it
            call.error = exc
        except BaseException:  # cancelled (from outside) or worse: the caller is told
            call.error = RuntimeError("the supervisor ended while handling this call")
            raise
        finally:
            call.done.set()

    async def _carry_out(self, plan: Plan) -> _End | None:
        """Apply a plan from the engine (see :class:`Plan` for the order)."""
        for child_id in plan.stop:
            await self._stop_child(child_id)
        if plan.give_up is not None or plan.escalate is not None or plan.shutdown:
            await self._stop_all()
            return _End(plan.give_up if plan.give_up is not None else plan.escalate)
        return await self._start_pending(list(plan.start), plan.delay)

    async def _start_pending(self, pending: list[Hashable], delay: float) -> _End | None:
        """Start the children in ``pending`` in start order after ``delay`` seconds. A
        failed start is a failure of that child: its plan is carried out on the spot and
        the children still to start are started with the plan's own."""
        todo = set(pending)
        self._starting = todo
        try:
            while todo:
                if delay > 0:
                    with trio.move_on_after(delay):
                        await self._stop_asked.wait()
                delay = 0.0
                for child_id in [cid for cid in self._engine if cid in todo]:
                    if self._stop_asked.is_set():
                        return None
                    todo.discard(child_id)
                    try:
                        await self._spawn(child_id)
                    except Exception as exc:
                        now = trio.current_time()
                        self._engine.started(child_id, now)
                        plan = self._engine.exited(child_id, exc, now)
                        for cid in plan.stop:
                            await self._stop_child(cid)
                        if plan.ends_supervisor:
                            return await self._carry_out(plan)
                        todo.update(plan.start)
                        todo.difference_update(plan.removed)
                        delay = plan.delay
                        break
            return None
        finally:
            self._starting = set()

    async def _spawn(self, child_id: Hashable) -> Any:
        """Start one child and wait until it reported started; returns the value it
        passed to ``task_status.started``. Raises what its start raised."""
        assert self._nursery is not None
        incarnation = _Incarnation(self._engine.state(child_id).spec)
        self._spawning = child_id
        try:
            value = await self._nursery.start(
                self._child_main, incarnation, name=f"supervised child {child_id!r}"
            )
        finally:
            self._spawning = _NOBODY
        self._alive[child_id] = incarnation
        self._engine.started(child_id, trio.current_time())
        return value

    async def _child_main(
        self, incarnation: _Incarnation, *, task_status: trio.TaskStatus[Any]
    ) -> None:
        started = await run_incarnation(incarnation, task_status=task_status)
        send = self._send
        if started and send is not None:
            send.send_nowait(incarnation)

    async def _stop_child(self, child_id: Hashable) -> None:
        """Stop one child's task (if it runs) per its shutdown spec and wait for its end."""
        incarnation = self._alive.get(child_id)
        if incarnation is None:
            return
        incarnation.request_stop(trio.current_time())
        await incarnation.done.wait()
        if self._alive.get(child_id) is incarnation:
            del self._alive[child_id]

    async def _stop_all(self) -> None:
        """Stop every running child in reverse start order."""
        order = [cid for cid in self._engine if cid in self._alive]
        strays = [cid for cid in self._alive if cid not in self._engine]
        for child_id in [*strays, *reversed(order)]:
            await self._stop_child(child_id)
            if child_id in self._engine:
                self._engine.stopped(child_id)

    def _fail_pending_calls(self, receive: trio.MemoryReceiveChannel[_Message]) -> None:
        while True:
            try:
                message = receive.receive_nowait()
            except trio.WouldBlock:
                return
            if isinstance(message, _Call):
                message.error = RuntimeError("the supervisor stopped before handling this call")
                message.done.set()

    # -- the API ------------------------------------------------------------------------------

    def which_children(self) -> list[ChildInfo]:
        """Every child the supervisor knows, in start order."""
        return [
            ChildInfo(
                cid,
                cid in self._alive,
                self._engine.state(cid).spec.restart,
                self._engine.state(cid).spec.significant,
            )
            for cid in self._engine
        ]

    def count_children(self) -> ChildCounts:
        """How many children the supervisor knows (``specs``) and how many run (``active``)."""
        return ChildCounts(
            specs=len(self._engine), active=sum(cid in self._alive for cid in self._engine)
        )

    async def start_child(self, spec: ChildSpec) -> Any:
        """Add a child after the existing ones and start it; returns the value it passed
        to ``task_status.started``. Raises ``ValueError`` if a child with its id exists.
        If its start fails, the spec is forgotten and the error is raised here (OTP: no
        restart, nothing counted)."""
        _check_spec(spec)

        async def call() -> Any:
            self._engine.add(spec)
            try:
                return await self._spawn(spec.id)
            except Exception:
                self._engine.delete(spec.id)
                raise

        return await self._call(call)

    async def restart_child(self, child_id: Hashable) -> Any:
        """Start a known child that is not running (after :meth:`terminate_child`, or
        one that ended for good). Returns the value it passed to ``task_status.started``.
        Raises ``KeyError`` for an unknown id, ``RuntimeError`` if it runs, and the
        start's own error if its start fails (the spec stays)."""

        async def call() -> Any:
            self._known(child_id)
            if child_id in self._alive:
                raise RuntimeError(f"child {child_id!r} is already running")
            return await self._spawn(child_id)

        return await self._call(call)

    async def terminate_child(self, child_id: Hashable) -> None:
        """Stop a child per its shutdown spec and wait for its end. It is not restarted
        and stays in the child list (a temporary child is forgotten); an auto-shutdown is
        not triggered. A child that is not running is left as it is. Raises ``KeyError``
        for an unknown id."""

        async def call() -> None:
            self._known(child_id)
            await self._stop_child(child_id)
            self._engine.stopped(child_id)

        await self._call(call)

    def delete_child(self, child_id: Hashable) -> None:
        """Forget the spec of a child that is not running. Raises ``KeyError`` for an
        unknown id and ``RuntimeError`` if it runs, is being stopped, or is about to be
        restarted (waiting for a backoff delay)."""
        self._check_running()
        self._known(child_id)
        if child_id in self._alive:
            raise RuntimeError(
                f"child {child_id!r} is running; terminate it before deleting it "
                "(await terminate_child(id))"
            )
        if child_id in self._starting or child_id == self._spawning:
            raise RuntimeError(
                f"child {child_id!r} is being restarted; it cannot be deleted now "
                "(terminate_child(id) first, then delete it)"
            )
        self._engine.delete(child_id)

    def _known(self, child_id: Hashable) -> None:
        if child_id not in self._engine:
            raise KeyError(f"unknown child id {child_id!r}")

    def _check_running(self) -> trio.MemorySendChannel[_Message]:
        send = self._send
        if send is None:
            raise RuntimeError(
                "the supervisor is not running; manage its children while run() is active "
                "(for example from a task started in the same nursery)"
            )
        if self._stop_asked.is_set():
            raise RuntimeError(
                "the supervisor is stopping; it starts, restarts or deletes no more children"
            )
        return send

    async def _call(self, fn: Callable[[], Awaitable[Any]]) -> Any:
        call = _Call(fn)
        self._check_running().send_nowait(call)
        await call.done.wait()
        if call.error is not None:
            raise call.error
        return call.result


@asynccontextmanager
async def open_supervisor(
    strategy: Strategy | None = None,
    children: Sequence[ChildSpec] = (),
    *,
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
    rng: random.Random | None = None,
) -> AsyncIterator[TaskSupervisor]:
    """Run a :class:`TaskSupervisor` for the duration of the block.

    Entering starts the children in order; leaving the block (normally or with an
    ``Exception``) stops them in reverse start order, each per its shutdown spec, then
    the block's exception propagates as it is. If the supervisor gives up or escalates
    while the block runs, the block is cancelled and that error (:class:`TooManyRestarts`
    or the child's) is raised from the ``async with``. If it ends normally (automatic
    shutdown), the block goes on; :meth:`TaskSupervisor.wait_stopped` waits for that.
    Cancelled from outside, or on a ``BaseException`` that is not an ``Exception``, the
    children are cancelled at once.
    """
    supervisor = TaskSupervisor(strategy, children, auto_shutdown=auto_shutdown, rng=rng)
    lone: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(supervisor.run)
            try:
                yield supervisor
            except Exception:
                if supervisor.running:  # else it failed: its error goes with this one
                    await supervisor.stop()
                raise
            await supervisor.stop()
    except BaseExceptionGroup as group:
        lone = _lone_error(group)
        if lone is None:
            raise
    if lone is not None:
        raise lone


def _lone_error(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The one error in a nursery's group that is not ``Cancelled``, if there is exactly
    one (the ``Cancelled`` beside it are what that error caused); else ``None``."""
    errors = [e for e in group.exceptions if not isinstance(e, trio.Cancelled)]
    return errors[0] if len(errors) == 1 else None


def _check_spec(spec: object) -> None:
    if not isinstance(spec, ChildSpec):
        raise TypeError(f"children must be supervision.ChildSpec, got {spec!r}")
    if not callable(spec.start):
        raise TypeError(
            f"child {spec.id!r}: start must be an async function taking task_status, "
            f"got {spec.start!r}"
        )
