"""The actor's task: start, failure, restart in place, and the way out.

``_run`` is the whole life of one actor: create the instance (recovering it first if
its class has a recovery hook) and run ``pre_start``; handle messages (``_loop``, in
``_delivery.py``); on a failure, let the supervisor decide (``_recover``) and carry out
its verdict in this same task: resume, restart in place (the ref, the mailbox and the
watches stay; a fresh instance replaces the old one), or stop; on an order of the
supervisor's coordinator (a restart together with failed siblings), follow it
(``_follow_order``); at the end, stop the children, run ``post_stop`` and finalize.
"""

from __future__ import annotations

import inspect
import math
from typing import Any, Final

import trio

from supervision import Directive

from . import _registry
from ._actor import Actor, _constructing
from ._cell_state import BROKEN, DEAD, FAIL, RUNNING, STOPPING, Failure, not_started
from ._envelope import ASK, Envelope, Reply
from ._errors import ActorError, ActorInitializationError
from ._idle_and_started import notify_parked, park_watchers
from ._messages import ActorFailed, ActorRestarted, ActorStarted, DeadLetterReason
from ._reply_later import fail_reply_handles
from ._runtime_log import DEBUG, lifecycle_log, log_error, log_lifecycle
from ._sender import current_actor
from ._stopping import Stopping
from ._supervising import Order, child_failed, child_restarted, strategy_of

_current_task: Final = trio.lowlevel.current_task
_wait_task_rescheduled: Final = trio.lowlevel.wait_task_rescheduled

# Whether each ``receive`` method (the function in its class) is ``async def``.
_ASYNC_RECEIVE: dict[object, bool] = {}


class Lifecycle(Stopping):
    """The actor's task and what happens in it between messages."""

    __slots__ = ()

    async def _run(self) -> None:
        self._task = _current_task()
        self._state = RUNNING
        # The implicit sender of this task and of every task it starts (see _sender.py).
        current_actor.set(self.ref)
        try:
            if not self._stop_requested:
                failure = await self._start(None)
                while True:
                    if failure is not None:
                        # Supervision: the parent resumes, restarts or stops this actor.
                        go_on = await self._recover(*failure)
                        failure = None
                        if not go_on:
                            break
                        continue
                    if self._order is not None:
                        # The supervisor restarts this actor with a failed sibling.
                        go_on, failure = await self._follow_order(self._order, None)
                        if not go_on and failure is None:
                            break
                        continue
                    if self._stop_requested:
                        break
                    # A deadline can only be missed while user code awaits, i.e. in an
                    # async handler: only then does the loop run in a cancel scope
                    # (entering one costs as much as starting a task). A parked actor
                    # wakes for a stop.
                    if self._behavior_async:
                        await self._serve_in_scope()
                    elif not await self._loop():
                        continue  # become() switched to an async behaviour
                    failure, self._failure = self._failure, None
                    if failure is None and self._order is None:
                        break  # asked to stop
            self._state = STOPPING
            self._stop_requested = True
            self._settle_pending_failures()
            await self._stop_children()
            await self._run_post_stop()
        except BaseException:
            # Cancelled from outside (the system is being torn down) or interrupted:
            # clean up within a shielded, bounded scope, then let the exception go on.
            if self._state != DEAD:
                self._state = STOPPING
                self._stop_requested = True
                self._settle_pending_failures()
                stop_timeout = self.system.settings.stop_timeout
                with trio.CancelScope(shield=True) as shield:
                    shield.deadline = trio.current_time() + stop_timeout
                    await self._stop_children()
                with trio.CancelScope(shield=True) as shield:  # post_stop gets its own time
                    shield.deadline = trio.current_time() + stop_timeout
                    await self._run_post_stop()
                self._finalize()
            raise
        self._finalize()

    async def _serve_in_scope(self) -> None:
        """Run the loop of an async behaviour in a cancel scope with the stop deadline,
        until it must stop, has failed or must follow an order."""
        try:
            with trio.CancelScope(deadline=self._stop_deadline) as scope:
                self._scope = scope
                await self._loop()
        except Exception as exc:
            # A handler's error group that also held the Cancelled of the deadline: the
            # scope took its Cancelled, the rest is an error of the message being handled.
            current, self._current = self._current, None
            slot = None if current is None else current[2]
            if isinstance(slot, Reply):
                self._complete(slot, None, exc)  # the asker gets it
            elif current is not None:
                self._failed_message(current, exc)
            else:
                self._fail(exc)
        finally:
            self._scope = None

    # -- starting ---------------------------------------------------------------------------

    async def _start(self, restarted_after: BaseException | None) -> Failure | None:
        """Create the instance and run ``pre_start``; after a restart (``restarted_after``
        is the error), replace the old instance's behaviour and run
        ``post_restart(error)``, then tell the supervisor it runs again. Returns the
        failure, or ``None`` (also when asked to stop meanwhile)."""
        if restarted_after is not None:
            self._instance = None
            self._behavior = not_started
            self._behavior_async = False
            self._behaviors = None
        _constructing.cell = self
        try:
            instance = self._factory()
            if not isinstance(instance, Actor):
                raise TypeError(f"the factory returned {type(instance).__qualname__}, not an Actor")
        except Exception as exc:
            return self._failed_start(ActorInitializationError(self.ref.path, exc))
        finally:
            _constructing.cell = None
        self._instance = instance
        if self._behavior is not_started:  # unless __init__ called become()
            receive = instance.receive
            function = getattr(receive, "__func__", None)  # a method defined by a class
            is_async = _ASYNC_RECEIVE.get(function)
            if is_async is None:
                is_async = inspect.iscoroutinefunction(receive)
                if function is not None:
                    _ASYNC_RECEIVE[function] = is_async
            self._behavior = receive
            self._behavior_async = is_async
        if self._behaviors:
            bottom = (instance.receive, inspect.iscoroutinefunction(instance.receive))
            self._behaviors = [bottom if b[0] is not_started else b for b in self._behaviors]
        if instance._actor_recovers:
            # The recovery hook (persistent actors) runs before pre_start/post_restart.
            try:
                if not await self._await_hook(instance._actor_recover()):
                    return None  # asked to stop, and the deadline passed while recovering
            except ActorError as exc:  # already names the actor and what failed
                return self._failed_start(exc)
            except Exception as exc:
                return self._failed_start(ActorInitializationError(self.ref.path, exc))
            if self._stop_requested:
                return None  # recovery failed for good: the actor stops
        try:
            if restarted_after is None:
                result = instance.pre_start()
            else:
                result = instance.post_restart(restarted_after)
            if result is not None and not await self._await_hook(result):
                return None  # asked to stop, and the deadline passed while starting
        except Exception as exc:
            return self._failed_start(ActorInitializationError(self.ref.path, exc))
        self._started = True
        if self._ready is not None:
            self._ready.set()
        if restarted_after is not None:
            self._restarts += 1
            parent = self._parent
            if parent is not None:
                child_restarted(parent, self)  # type: ignore[arg-type]
        elif self._parent is not None and self._parent._relay is not None:
            self._parent._relay.child_started(self, False)  # type: ignore[arg-type]
        events = self.system.events
        if events._subscriptions:
            if restarted_after is None:
                events._publish_runtime(ActorStarted(self.ref))
            else:
                events._publish_runtime(ActorRestarted(self.ref, restarted_after))
        if lifecycle_log.isEnabledFor(DEBUG):
            log_lifecycle(
                self.ref.path,
                "%s started" if restarted_after is None else "%s restarted after %r",
                restarted_after,
            )
        return None

    def _failed_start(self, error: ActorError) -> Failure | None:
        self._fail(error)
        failure, self._failure = self._failure, None
        return failure

    async def _await_hook(self, result: Any) -> bool:
        """Await an ``async`` lifecycle hook within the stop deadline. ``False`` if the
        deadline cancelled it."""
        with trio.CancelScope(deadline=self._stop_deadline) as scope:
            self._scope = scope
            try:
                await result
            finally:
                self._scope = None
        return not scope.cancelled_caught

    # -- failing ----------------------------------------------------------------------------

    def _fail(self, error: BaseException, message: Any = None) -> None:
        """Record a failure (``message``: the one being handled, if any). A running actor
        leaves its loop and its supervisor decides; one that is already stopping only
        reports it: the error becomes the reason of its stop."""
        events = self.system.events
        if events._subscriptions:
            events._publish_runtime(ActorFailed(self.ref, error))
        if _registry.failure_observers:
            _registry.report_failure(self, error, message)
        if self._stop_requested or self._state != RUNNING:
            if self._reason is None:
                self._reason = error
            log_error(self.ref.path, "%s failed while stopping", error)
            return
        if self._failure is None:
            self._failure = (error, message)

    def _failed_message(self, envelope: Envelope, error: Exception) -> None:
        message, sender, _ = envelope
        self.system._dead_letter(message, sender, self.ref, DeadLetterReason.FAILED)
        self._fail(error, message)

    def _settle_pending_failures(self) -> None:
        """The actor stops: a failure still queued for it (a give-up or an escalation
        from a child) is reported as a failure while stopping, never dropped."""
        requests = self._sysq
        if requests and any(kind in (FAIL, BROKEN) for kind, _ in requests):
            self._sysq = [r for r in requests if r[0] != FAIL and r[0] != BROKEN] or None
            for kind, arg in requests:
                if kind in (FAIL, BROKEN):
                    self._fail(arg[0])

    def _crash(self, error: BaseException) -> bool:
        """Fail the actor abruptly with ``error`` (the testkit's kill; a lost worker
        process, next): no ``pre_restart`` or ``post_stop`` for this incarnation; a
        handler in progress is cancelled, its ask gets ``error`` and its tell becomes a
        dead letter (``failed``). Its supervisor decides what follows, as for any
        failure. Returns ``False``, changing nothing, when the actor is not running an
        incarnation that could fail now (starting, restarting, stopping, or a failure is
        already pending: this one merges into it)."""
        requests = self._sysq or ()
        if (
            self._state != RUNNING
            or self._stop_requested
            or not self._started
            or self._failure is not None
            or self._order is not None
            or any(kind in (FAIL, BROKEN) for kind, _ in requests)
        ):
            return False
        self._started = False  # no lifecycle hooks for the killed instance
        current, self._current = self._current, None
        if current is not None and not self._current_stashed:
            message, sender, slot = current
            if isinstance(slot, Reply):
                self._complete(slot, None, error)
            else:
                self.system._dead_letter(message, sender, self.ref, DeadLetterReason.FAILED)
        if current is not None and self._scope is not None:
            # The handler (or an injected hang) is awaiting: cancel it.
            self._fail(error, current[0])
            self._scope.cancel()
            return True
        self._system_request(FAIL, (error, False))
        return True

    def _break(self, error: BaseException) -> None:
        """A hook for extensions: the current incarnation cannot go on (a persistent
        actor's journal failed). It fails with ``error`` as soon as its current handler
        returns, whatever the handler does with the error it was given; a restart drops
        the request."""
        self._system_request(BROKEN, (error, False))

    def _stop_failed(self, error: BaseException) -> None:
        """A hook for extensions: stop with ``error`` as the reason, without asking the
        supervisor (a persistent actor whose recovery cannot succeed by retrying):
        published as ``ActorFailed``, logged at ERROR, and the reason watchers and
        ``ActorStopped`` get."""
        events = self.system.events
        if events._subscriptions:
            events._publish_runtime(ActorFailed(self.ref, error))
        if _registry.failure_observers:
            _registry.report_failure(self, error, None)
        if self._reason is None:
            self._reason = error
        self._stop_requested = True
        log_error(self.ref.path, "%s stopped: %s", error, error)

    # -- supervision: the child's side ------------------------------------------------------

    async def _recover(self, error: BaseException, message: Any) -> bool:
        """This actor failed with ``error`` (on ``message``, if any): let its supervisor
        (the parent) decide, and carry out the verdict in this task.

        Returns ``True`` to go on handling messages (resumed or restarted), ``False`` to
        stop. A failure while restarting is reported again, so it counts towards the
        supervisor's restart intensity: no endless restart loop is possible."""
        self._suspend()
        try:
            if self._drop_children:  # it gives up: its children stop before it reports
                self._drop_children = False
                await self._stop_children()
            while True:
                if self._stop_requested:
                    if self._reason is None:
                        self._reason = error
                    return False
                parent = self._parent
                if parent is None:  # /user itself failed: that ends the system
                    self._reason = error
                    self.system._unhandled_failure(self.ref, error)
                    return False
                can_resume = self._started and self._instance is not None
                decided = child_failed(parent, self, error, can_resume, message)  # type: ignore[arg-type]
                verdict = None if decided is None else decided[0]
                order = None
                if verdict is None:  # the parent's coordinator will give an order
                    while self._order is None and not self._stop_requested:
                        await self._wait_for_wake()
                    order = self._order
                    if order is None:
                        continue  # asked to stop
                    if not order.grouped:  # its verdict, decided in turn
                        verdict = order.directive, order.delay
                try:
                    if verdict is None:
                        assert order is not None
                        go_on, failure = await self._follow_order(order, message)
                    else:
                        directive, delay = verdict
                        if directive is Directive.RESUME:
                            return True
                        if directive is not Directive.RESTART:
                            self._reason = error
                            self._stop_requested = True
                            return False
                        # A restart alone: the old instance goes, a backoff of ``delay``
                        # passes (messages wait, bounded), a new instance starts.
                        failure = await self._take_down(error, message)
                        if failure is None:
                            if delay > 0:
                                await self._wait_backoff(trio.current_time() + delay)
                            if not self._stop_requested and self._order is None:
                                failure = await self._start(error)
                        go_on = not self._stop_requested
                finally:
                    if order is not None:  # done with it: the coordinator goes on
                        if self._order is order:
                            self._order = None
                        order.release()
                if failure is None:
                    if not go_on and self._reason is None:
                        self._reason = error
                    return go_on
                error, message = failure
        finally:
            self._unsuspend()
            self._failing = False
            self._overflow_reported = False
            if self._sysq:  # a failure of the replaced incarnation is settled
                self._sysq = [r for r in self._sysq if r[0] != BROKEN] or None

    async def _follow_order(self, order: Order, message: Any) -> tuple[bool, Failure | None]:
        """Carry out an order of the supervisor's coordinator to stop, or to restart
        with its siblings: take the old instance down, wait until the coordinator says
        ``up``, start the new one. Returns whether to go on handling messages, and a
        failure of the restart itself (if any)."""
        bounded_here = self._suspended is None  # (not when called inside _recover)
        self._suspend()
        try:
            if order.directive is Directive.STOP:
                if self._reason is None:
                    self._reason = order.error
                self._stop_requested = True
                return False, None
            if self._stop_requested:
                return False, None
            failure = await self._take_down(order.error, message)
            if failure is not None:
                return True, failure
            order.down.set()
            while not order.up and not self._stop_requested:
                await self._wait_for_wake()
            if self._stop_requested:
                return False, None
            failure = await self._start(order.error)
            return not self._stop_requested, failure
        finally:
            if self._order is order:
                self._order = None
            order.release()
            if bounded_here:
                self._unsuspend()

    async def _take_down(self, error: BaseException, message: Any) -> Failure | None:
        """The old instance goes: a message it was interrupted in is accounted for, its
        timers, receive timeout and behaviour stack go, its stash returns to the mailbox,
        ``pre_restart`` runs, askers still waiting on reply handles it took get
        ``ActorDead``, and (unless the supervisor's strategy keeps them) its children
        stop. Returns a failure of ``pre_restart``, else ``None``."""
        current, self._current = self._current, None
        if current is not None and not self._current_stashed:
            # A sibling's restart deadline cancelled its handler mid-message.
            self._discard(current, DeadLetterReason.STOPPED, "was restarted before it replied")
        self._current_stashed = False
        if not self._stop_requested:
            self._stop_deadline = math.inf
        if self._timers is not None:
            self._timers.cancel_all()
        self._recv_timeout = None
        self._recv_timeout_msg = None
        stash = self._stash
        if stash:
            self._uncounted += sum(1 for _, _, s in stash if s is not None and s.kind != ASK)
            self._mailbox.extendleft(reversed(stash))
            stash.clear()
        old = self._instance
        if old is not None and self._started:
            self._started = False
            try:
                result = old.pre_restart(error, message)
                if result is not None:
                    await self._await_hook(result)
            except Exception as exc:
                self._fail(exc)
                failure, self._failure = self._failure, None
                return failure
        if self._reply_handles:  # askers waiting on handles the old instance took
            fail_reply_handles(self, "was restarted before it replied", error)  # type: ignore[arg-type]
        parent = self._parent
        if parent is not None:
            engine = parent._engine  # made when this child's failure was decided
            strategy = strategy_of(parent) if engine is None else engine.strategy
        if self._children and (parent is None or strategy.stop_children):
            await self._stop_children()
        return None

    async def _wait_backoff(self, until: float) -> None:
        """Wait until ``until`` (a restart backoff), or less if asked to stop or ordered
        to restart with its siblings. Messages that arrive meanwhile wait in the mailbox
        (bounded: see ``_suspend``)."""
        while not self._stop_requested and self._order is None and trio.current_time() < until:
            with trio.move_on_at(until):
                await self._wait_for_wake()

    async def _wait_for_wake(self) -> None:
        """Park until woken (by a message, a system request or an order): the caller
        checks what it waits for and parks again if need be."""
        self._parked = _current_task()
        if park_watchers:  # a system.idle() waits (see _idle_and_started)
            notify_parked(self)
        await _wait_task_rescheduled(self._abort_park)
