"""The runtime side of one actor: its mailbox, its task's loop and its lifecycle.

One :class:`ActorCell` exists per actor incarnation. It owns the mailbox (a deque of
``(message, sender, slot)`` envelopes, where ``slot`` is ``None`` for a plain ``tell``, a
:class:`_Reply` for an ``ask`` or a timer), the system lane (stop and fail requests,
never bounded) and the trio task that runs the actor. The public face of a cell is
:class:`~actors.ActorContext`, a subclass that adds the API actors call.

Scheduling: the task processes up to ``throughput`` messages per turn without a
checkpoint, then yields; an empty mailbox parks the task with
``trio.lowlevel.wait_task_rescheduled`` and ``tell`` reschedules it directly, which is
cheaper than a memory channel.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
from collections import deque
from collections.abc import Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final

import cloudpickle
import trio

from supervision import BRUTAL, ChildSpec, Directive, Restart, RestartEngine, Strategy

from ._actor import Actor, _constructing
from ._address import Address
from ._ask_deadlines import deadline_after
from ._errors import (
    ActorDead,
    ActorError,
    ActorInitializationError,
    AskTimeout,
    HandlerReturnedCoroutine,
    MailboxFull,
    MailboxOverflow,
    SystemClosed,
    UnhandledMessage,
    UnpicklableMessage,
    WrongThread,
)
from ._mailbox import Mailbox, Overflow
from ._messages import (
    ActorFailed,
    ActorRestarted,
    ActorStarted,
    ActorStopped,
    DeadLetterReason,
    PoisonPill,
    SupervisorGaveUp,
    Terminated,
)
from ._ref import ActorRef

if TYPE_CHECKING:
    from ._context import ActorContext
    from ._system import ActorSystem
    from ._timers import Timers, _Timer

_log: Final = logging.getLogger("actors.supervision")
_lifecycle_log: Final = logging.getLogger("actors.lifecycle")
_delivery_log: Final = logging.getLogger("actors.delivery")
_DEBUG: Final = logging.DEBUG
_get_ident: Final = threading.get_ident
_reschedule: Final = trio.lowlevel.reschedule
_current_task: Final = trio.lowlevel.current_task
_wait_task_rescheduled: Final = trio.lowlevel.wait_task_rescheduled
_Abort: Final = trio.lowlevel.Abort

# Cell states.
NEW: Final = 0
RUNNING: Final = 1
STOPPING: Final = 2
DEAD: Final = 3

# Kinds of mailbox slot (the third item of an envelope; None is a plain tell).
ASK: Final = 1
TIMER: Final = 2
NOTE: Final = 3  # Terminated, ReceiveTimeout: from the runtime, not counted in capacity
FAULT: Final = 4  # a fault injected by the testkit on this message (see actors.testing)

# System-lane requests.
_STOP: Final = 1
_FAIL: Final = 2  # arg: (error, stop its children before reporting the failure)
_RESCOPE: Final = 3
_RESTART: Final = 4  # arg: (error, delay): a sibling failed, the strategy restarts this one
# arg: (error, False): a failure of the current incarnation (a persistent actor whose journal
# failed), reported once its handler returns; dropped when the incarnation is replaced.
_BROKEN: Final = 5

# Whether each ``receive`` method (the function in its class) is ``async def``.
_ASYNC_RECEIVE: dict[object, bool] = {}

Envelope = tuple[Any, "ActorRef | None", "_Reply | _Timer | _Note | _Fault | None"]
_Failure = tuple[BaseException, Any]  # (error, the message being handled or None)


def _child_spec(name: str) -> ChildSpec:
    """The implicit spec of a child spawned with ``spawn``: restarted on failure only
    (Akka semantics: a child that stops normally is gone)."""
    return ChildSpec(name, None, restart=Restart.TRANSIENT, shutdown=BRUTAL)


class _Reply:
    """The slot an ``ask`` waits on. ``task`` is ``None`` once the caller gave up."""

    __slots__ = ("error", "message", "path", "sender", "task", "timeout", "unhandled", "value")
    kind: Final = ASK

    def __init__(
        self,
        task: trio.lowlevel.Task,
        path: str,
        message: Any,
        timeout: float,
        sender: ActorRef | None,
    ) -> None:
        self.task: trio.lowlevel.Task | None = task
        self.sender = sender
        self.path = path
        self.message = message
        self.timeout = timeout
        self.value: Any = None
        self.error: BaseException | None = None
        self.unhandled = False

    def abort(self, _: Any) -> trio.lowlevel.Abort:
        self.task = None
        return _Abort.SUCCEEDED


class _Note:
    """The slot of a runtime notification (``Terminated``, ``ReceiveTimeout``)."""

    __slots__ = ()
    kind: Final = NOTE


class _Fault:
    """The slot of a message on which the testkit injects a fault: ``crash`` (the actor
    fails with ``error`` when it reaches the message) or ``hang`` (its handler hangs for
    ``seconds``, ``math.inf``: until the actor is stopped, then handles the message).
    ``inner`` is the slot the message had (an ask's reply, or ``None``)."""

    __slots__ = ("action", "error", "inner", "seconds")
    kind: Final = FAULT

    def __init__(
        self,
        action: str,
        inner: _Reply | None,
        error: BaseException | None = None,
        seconds: float = math.inf,
    ) -> None:
        self.action = action
        self.inner = inner
        self.error = error
        self.seconds = seconds


_NOTE: Final = _Note()  # a notification not yet delivered
_ACCEPTED: Final = _Note()  # a timer tick or notification delivered once (then stashed)


def roundtrip(message: Any) -> Any:
    """Pickle and unpickle ``message`` with cloudpickle, as a process boundary would."""
    try:
        return cloudpickle.loads(cloudpickle.dumps(message))
    except Exception as exc:  # pickling or unpickling failed: it cannot cross a process
        raise UnpicklableMessage(message, exc) from exc


class ActorCell:
    """Mailbox, task loop and lifecycle of one actor incarnation (internal)."""

    __slots__ = (
        "_behavior",
        "_behavior_async",
        "_behaviors",
        "_capacity",
        "_child_counter",
        "_children",
        "_current",
        "_current_stashed",
        "_drop_children",
        "_engine",
        "_factory",
        "_failing",
        "_failure",
        "_granted",
        "_instance",
        "_last_activity",
        "_mailbox",
        "_name",
        "_on_child_exit",
        "_overflow",
        "_parent",
        "_parked",
        "_ready",
        "_reason",
        "_recv_timeout",
        "_recv_timeout_msg",
        "_restart_order",
        "_roundtrip",
        "_scope",
        "_slow",
        "_space",
        "_started",
        "_stash",
        "_stash_capacity",
        "_state",
        "_stop_deadline",
        "_stop_requested",
        "_stopped_by_parent",
        "_strategy",
        "_suspended",
        "_sysq",
        "_task",
        "_terminated",
        "_thread",
        "_throughput",
        "_timers",
        "_uncounted",
        "_watchers",
        "_watching",
        "ref",
        "system",
    )

    def __init__(
        self,
        system: ActorSystem,
        parent: ActorContext | None,
        name: str,
        path: str,
        uid: int,
        factory: Callable[[], Actor],
        mailbox: Mailbox,
        throughput: int,
        stash_capacity: int,
        strategy: Strategy | None = None,
    ) -> None:
        self.system = system
        self._parent = parent
        self._name = name
        self.ref = ActorRef(Address(system.name, path, uid), self)
        self._factory = factory
        self._instance: Actor | None = None
        self._behavior: Callable[[Any], Any] = _not_started
        self._behavior_async = False
        self._behaviors: list[tuple[Callable[[Any], Any], bool]] | None = None
        self._mailbox: deque[Envelope] = deque()
        self._uncounted = 0  # timer ticks and notes in the mailbox: outside capacity
        self._capacity = mailbox.capacity
        self._overflow: Overflow | None = mailbox.overflow  # None: restart stash full
        self._sysq: list[tuple[int, Any]] | None = None
        self._parked: trio.lowlevel.Task | None = None
        self._task: trio.lowlevel.Task | None = None
        self._state = NEW
        self._started = False
        self._throughput = throughput
        self._thread = system._thread_id
        self._roundtrip = system.settings.roundtrip_messages
        # Deliveries take the slow path: round trips, a fault injector / tracer installed,
        # or deliveries logged (Settings.trace_deliveries).
        self._slow = self._roundtrip or system._faults is not None or system._trace_deliveries
        self._children: dict[str, ActorContext] | None = None
        self._child_counter = 0
        self._watchers: dict[ActorCell, None] | None = None
        # ref -> its cell; an entry stays until its Terminated has been processed.
        self._watching: dict[ActorRef, ActorCell] | None = None
        self._timers: Timers | None = None
        self._stash: deque[Envelope] | None = None
        self._stash_capacity = stash_capacity
        self._current: Envelope | None = None
        self._current_stashed = False
        self._recv_timeout: float | None = None
        self._recv_timeout_msg: Any = None
        self._last_activity = 0.0
        self._scope: trio.CancelScope | None = None
        self._stop_deadline = math.inf
        self._stop_requested = False
        self._reason: BaseException | None = None
        self._terminated: trio.Event | None = None
        self._space: trio.lowlevel.ParkingLot | None = None
        self._granted = 0  # waiting senders woken for a free place, not yet enqueued
        # Supervision: of its children (strategy, engine), and of itself by its parent.
        self._strategy = strategy
        self._engine: RestartEngine | None = None
        self._on_child_exit: Callable[[ActorCell], None] | None = None
        self._failure: _Failure | None = None
        self._restart_order: tuple[BaseException, float] | None = None
        self._suspended: tuple[int | None, Overflow | None] | None = None
        self._drop_children = False
        self._failing = False  # it gave up or escalated: no more decisions until handled
        self._stopped_by_parent = False
        self._ready: trio.Event | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.ref.path}>"

    # == delivery (called by ActorRef, from any task of the system's thread) ==============

    def _tell(self, message: Any, sender: ActorRef | None) -> None:
        if self._thread != _get_ident():
            raise WrongThread(
                f"tell to {self.ref.path} from a thread that does not run its actor system; "
                "use ref.tell_threadsafe() from other threads"
            )
        if self._slow:
            self._tell_slow(message, sender)
            return
        if self._state == DEAD:
            self.system._dead_letter(message, sender, self.ref, DeadLetterReason.STOPPED)
            return
        q = self._mailbox
        capacity = self._capacity
        if capacity is not None and len(q) - self._uncounted + self._granted >= capacity:
            self._overflowed(message, sender, raise_full=True)
            return
        q.append((message, sender, None))
        task = self._parked
        if task is not None:
            self._parked = None
            _reschedule(task)

    def _tell_slow(self, message: Any, sender: ActorRef | None) -> None:
        """``tell`` with round trips, delivery logging and fault injection (see ``_slow``)."""
        if self._roundtrip:
            message = roundtrip(message)
        if self._taken_over("tell", message, sender, None):
            return
        if self._state == DEAD:
            self.system._dead_letter(message, sender, self.ref, DeadLetterReason.STOPPED)
        elif self._is_full():
            self._overflowed(message, sender, raise_full=True)
        else:
            self._append((message, sender, None))

    def _offer(self, message: Any, sender: ActorRef | None, copy: bool = True) -> None:
        """Enqueue from inside the runtime (event bus, foreign threads): never raises; a
        refusal under ``backpressure`` becomes a dead letter (``dropped-newest``).
        ``copy=False`` skips the round trip (the runtime's own events, which may carry
        objects that were the very reason for a dead letter). Called from another thread
        (an event of a system running elsewhere), it hands over to this system's thread."""
        if self._thread != _get_ident():
            try:
                self.system._token.run_sync_soon(self._offer, message, sender, copy)
            except trio.RunFinishedError:  # that system has ended
                self.system._dead_letter(message, sender, self.ref, DeadLetterReason.STOPPED)
            return
        if copy and self._roundtrip:
            try:
                message = roundtrip(message)
            except UnpicklableMessage:
                self.system._dead_letter(message, sender, self.ref, DeadLetterReason.UNPICKLABLE)
                return
        if self._slow and self._taken_over("publish", message, sender, None):
            return
        if self._state == DEAD:
            self.system._dead_letter(message, sender, self.ref, DeadLetterReason.STOPPED)
            return
        if self._is_full():
            self._overflowed(message, sender, raise_full=False)
            return
        self._append((message, sender, None))

    def _accept_forwarded(self, envelope: Envelope) -> None:
        """Enqueue an envelope handed over by another actor (``context.forward``): its
        sender and, for an ask, the asker's reply slot come along. A stopped or full
        recipient fails the ask (``ActorDead`` / ``MailboxFull``) or dead-letters a
        tell, per its overflow policy."""
        message, sender, slot = envelope
        if self._roundtrip:
            message = roundtrip(message)
        if self._slow and self._taken_over("forward", message, sender, slot):
            return
        self._deliver((message, sender, slot))

    def _deliver(self, envelope: Envelope) -> None:
        """Enqueue an envelope that was accepted once already (forwarded, or released by
        a fault injector): a stopped or full recipient fails an ask or dead-letters a
        tell; no round trip, no interception."""
        message, sender, slot = envelope
        if isinstance(slot, _Fault):
            if self._state != DEAD:
                self._append(envelope)
                return
            slot = slot.inner  # never reached: the message is treated as it would be
        if isinstance(slot, _Reply):
            if self._state == DEAD:
                self._complete(slot, None, ActorDead(self.ref.path))
            elif self._is_full():
                assert self._capacity is not None
                self._complete(slot, None, MailboxFull(self.ref.path, self._capacity))
            else:
                self._append((message, sender, slot))
            return
        if self._state == DEAD:
            self.system._dead_letter(message, sender, self.ref, DeadLetterReason.STOPPED)
        elif self._is_full():
            self._overflowed(message, sender, raise_full=False)
        else:
            self._append((message, sender, None))

    def _tell_threadsafe(self, message: Any, sender: ActorRef | None) -> None:
        if self._roundtrip:
            roundtrip(message)  # raises UnpicklableMessage in the calling thread
        if self._thread == _get_ident():
            self._tell(message, sender)
            return
        try:
            self.system._token.run_sync_soon(self._offer, message, sender)
        except trio.RunFinishedError:
            raise SystemClosed(
                f"actor system {self.system.name!r} has ended; cannot deliver to {self.ref.path}"
            ) from None

    async def _send(self, message: Any, sender: ActorRef | None) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_thread()
        if self._roundtrip:
            message = roundtrip(message)
        await self._wait_for_room()
        if self._slow and self._taken_over("send", message, sender, None):
            pass
        elif self._state == DEAD:
            self.system._dead_letter(message, sender, self.ref, DeadLetterReason.STOPPED)
        else:
            self._append((message, sender, None))
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def _ask(self, message: Any, timeout: float | None, sender: ActorRef | None) -> Any:
        # No cancel scope per ask (they are costly): the wait below is the checkpoint and
        # the system's AskDeadlines task enforces the timeout.
        await trio.lowlevel.checkpoint_if_cancelled()  # cancelled: nothing is sent
        if self._thread != _get_ident():
            self._check_thread()
        system = self.system
        if timeout is None:
            timeout = system.settings.ask_timeout
        elif not timeout > 0:
            raise ValueError(f"ask timeout must be > 0 seconds, got {timeout!r}")
        task = _current_task()
        if task is self._task:
            raise ActorError(
                f"{self.ref.path} asked itself; that would wait forever on its own "
                "mailbox (reply directly, or tell yourself a message)"
            )
        if self._roundtrip:
            message = roundtrip(message)
        deadline = deadline_after(timeout)
        if self._is_full():
            with trio.move_on_at(deadline) as waiting:
                await self._wait_for_room()
            if waiting.cancelled_caught:
                raise AskTimeout(self.ref.path, timeout, message)
        if self._state == DEAD:
            await trio.lowlevel.checkpoint()
            raise ActorDead(self.ref.path)
        reply = _Reply(task, self.ref.path, message, timeout, sender)
        if deadline != math.inf:
            system._ask_deadlines.add(deadline, reply)
        # Nothing between enqueueing and parking may raise or yield: once queued, the
        # reply will reschedule this task.
        if not (self._slow and self._taken_over("ask", message, sender, reply)):
            self._append((message, sender, reply))
        await _wait_task_rescheduled(reply.abort)
        error, value = reply.error, reply.value
        # The deadline heap may hold the reply a while longer: keep nothing alive in it.
        reply.error = reply.value = reply.message = None
        if error is not None:
            raise error
        return value

    # -- delivery helpers -----------------------------------------------------------------

    def _taken_over(self, kind: str, message: Any, sender: ActorRef | None, slot: Any) -> bool:
        """The slow path's hooks on one delivery (called only when ``_slow``): log it when
        deliveries are traced, then offer it to the fault injector. ``True``: the
        injector took the message over (dropped, delayed, ...); nothing is enqueued."""
        system = self.system
        if system._trace_deliveries:
            self._log_delivery(kind, message, sender)
        faults = system._faults
        return faults is not None and faults._intercept(self, message, sender, slot)

    def _log_delivery(self, kind: str, message: Any, sender: ActorRef | None) -> None:
        """Log one delivery on ``actors.delivery`` (``Settings.trace_deliveries``)."""
        if _delivery_log.isEnabledFor(_DEBUG):
            sender_path = None if sender is None else sender.path
            message_type = type(message).__qualname__
            _delivery_log.debug(
                "%s %s -> %s: %s",
                kind,
                sender_path or "(no sender)",
                self.ref.path,
                message_type,
                extra={
                    "actor_path": self.ref.path,
                    "message_type": message_type,
                    "sender_path": sender_path,
                    "delivery": kind,
                },
            )

    def _check_thread(self) -> None:
        if self._thread != _get_ident():
            raise WrongThread(
                f"{self.ref.path} used from a thread that does not run its actor system; "
                "use trio.from_thread.run() to call into the system's thread"
            )

    def _append(self, envelope: Envelope) -> None:
        self._mailbox.append(envelope)
        self._wake()

    def _wake(self) -> None:
        """Reschedule the actor's task if it is parked on an empty mailbox (``_tell``
        inlines this: it is the per-message hot path)."""
        task = self._parked
        if task is not None:
            self._parked = None
            _reschedule(task)

    def _append_uncounted(self, envelope: Envelope) -> None:
        """Enqueue a timer tick or a note: outside capacity, never dropped by overflow."""
        if self._state != DEAD:
            self._uncounted += 1
            self._append(envelope)

    def _is_full(self) -> bool:
        """No free place: places promised to woken senders are not free for others."""
        capacity = self._capacity
        return (
            capacity is not None
            and len(self._mailbox) - self._uncounted + self._granted >= capacity
        )

    async def _wait_for_room(self) -> None:
        if self._capacity is None:
            return
        while self._state != DEAD and self._is_full():
            if self._task is not None and _current_task() is self._task:
                raise MailboxFull(
                    self.ref.path,
                    self._capacity,
                    "; the actor itself cannot wait for room in its own mailbox",
                )
            if self._space is None:
                self._space = trio.lowlevel.ParkingLot()
            await self._space.park()
            self._granted -= 1

    def _overflowed(self, message: Any, sender: ActorRef | None, *, raise_full: bool) -> None:
        policy = self._overflow
        capacity = self._capacity
        assert capacity is not None
        if policy is Overflow.BACKPRESSURE:
            if raise_full:
                raise MailboxFull(self.ref.path, capacity)
            self.system._dead_letter(message, sender, self.ref, DeadLetterReason.DROPPED_NEWEST)
        elif policy is Overflow.DROP_NEWEST:
            self.system._dead_letter(message, sender, self.ref, DeadLetterReason.DROPPED_NEWEST)
        elif policy is Overflow.DROP_OLDEST:
            oldest = self._pop_oldest_counted()
            if oldest is None:
                # Every place is promised to a waiting sender, whose message is older.
                self.system._dead_letter(message, sender, self.ref, DeadLetterReason.DROPPED_NEWEST)
                return
            self._append((message, sender, None))
            # After the append: the dead letter may re-enter this mailbox (a subscriber).
            self._discard(oldest, DeadLetterReason.DROPPED_OLDEST)
        elif policy is None:  # restarting: the restart stash is full
            reason = DeadLetterReason.RESTART_STASH_OVERFLOW
            self.system._dead_letter(message, sender, self.ref, reason)
        else:
            self.system._dead_letter(message, sender, self.ref, DeadLetterReason.OVERFLOW)
            self._system_request(_FAIL, (MailboxOverflow(self.ref.path, capacity), False))

    def _pop_oldest_counted(self) -> Envelope | None:
        """Remove and return the oldest envelope that counts against capacity (timer ticks
        and notes are never evicted), or ``None`` if there is none."""
        q = self._mailbox
        for index, envelope in enumerate(q):
            slot = envelope[2]
            if slot is None or slot.kind == ASK:
                del q[index]
                return envelope
        return None

    def _discard(self, envelope: Envelope, reason: DeadLetterReason) -> None:
        """Account for an envelope that will never be processed."""
        message, sender, slot = envelope
        if isinstance(slot, _Fault):
            slot = slot.inner
        if slot is None or slot.kind == NOTE:
            self.system._dead_letter(message, sender, self.ref, reason)
        elif slot.kind == ASK:
            assert isinstance(slot, _Reply)
            if reason is DeadLetterReason.DROPPED_OLDEST:
                assert self._capacity is not None
                error: ActorError = MailboxFull(self.ref.path, self._capacity)
            else:
                error = ActorDead(self.ref.path, "stopped before replying")
            if slot.task is None:
                self.system._dead_letter(message, sender, self.ref, reason)
            else:
                self._complete(slot, None, error)
        # A tick of a timer is dropped: timers are cancelled with the actor.

    def _complete(self, reply: _Reply, value: Any, error: BaseException | None) -> None:
        task = reply.task
        if task is None:
            # The caller gave up; the reply goes to its sender ref if it named one.
            late = error if error is not None else value
            recipient = reply.sender or self.ref
            self.system._dead_letter(late, self.ref, recipient, DeadLetterReason.ASK_EXPIRED)
            return
        if self._roundtrip:
            try:
                if error is None:
                    value = roundtrip(value)
                else:
                    error = roundtrip(error)
            except UnpicklableMessage as exc:
                error = exc
        reply.task = None
        reply.value = value
        reply.error = error
        _reschedule(task)

    def _system_request(self, kind: int, arg: Any) -> None:
        if self._state == DEAD:
            return
        if self._sysq is None:
            self._sysq = [(kind, arg)]
        else:
            self._sysq.append((kind, arg))
        self._wake()

    def _request_stop(self, deadline: float | None = None) -> None:
        """Ask the actor to stop after its current message. If it has not left its
        handler by ``deadline`` (default: now + ``stop_timeout``), it is cancelled."""
        if self._state == DEAD:
            return
        if deadline is None:
            deadline = trio.current_time() + self.system.settings.stop_timeout
        if deadline < self._stop_deadline:
            self._stop_deadline = deadline
            if self._scope is not None:
                self._scope.deadline = deadline
        if not self._stop_requested:
            self._stop_requested = True
            self._system_request(_STOP, None)

    # == the actor's task ==================================================================

    async def _run(self) -> None:
        self._task = _current_task()
        self._state = RUNNING
        try:
            if not self._stop_requested:
                failure = await self._start(None)
                while True:
                    if failure is not None:
                        # Supervision: the parent resumes, restarts or stops this actor.
                        if not await self._recover(*failure):
                            break
                    elif self._restart_order is not None:
                        # A sibling failed and the strategy restarts this actor too.
                        (error, delay), self._restart_order = self._restart_order, None
                        if not await self._recover(error, None, delay):
                            break
                    elif self._stop_requested:
                        break
                    # A stop deadline can only be missed while user code awaits, i.e.
                    # in an async handler: only then does the loop run in a cancel scope
                    # (entering one costs as much as starting a task). A parked actor
                    # wakes for a stop.
                    if self._behavior_async:
                        await self._serve_in_scope()
                    elif not await self._loop():
                        continue  # become() switched to an async behaviour
                    failure, self._failure = self._failure, None
                    if failure is None and self._restart_order is None:
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
        until it must stop, has failed or must restart."""
        try:
            with trio.CancelScope(deadline=self._stop_deadline) as scope:
                self._scope = scope
                await self._loop()
        except Exception as exc:
            # A handler's error group that also held the Cancelled of the stop deadline:
            # the scope took its Cancelled, the rest is an error of the message being
            # handled.
            current, self._current = self._current, None
            slot = None if current is None else current[2]
            if isinstance(slot, _Reply):
                self._complete(slot, None, exc)  # the asker gets it
            elif current is not None:
                self._failed_message(current, exc)
            else:
                self._fail(exc)
        finally:
            self._scope = None

    async def _start(self, restarted_after: BaseException | None) -> _Failure | None:
        """Create the instance and run ``pre_start`` (``post_restart(error)`` after a
        restart). Returns the failure, or ``None`` (also when asked to stop meanwhile)."""
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
        if self._behavior is _not_started:  # unless __init__ called become()
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
            self._behaviors = [bottom if b[0] is _not_started else b for b in self._behaviors]
        if instance._actor_recovers:
            # A persistent actor recovers its state before pre_start/post_restart runs.
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
        bus = self.system.events
        if bus._subscriptions:
            if restarted_after is None:
                bus._publish_runtime(ActorStarted(self.ref))
            else:
                bus._publish_runtime(ActorRestarted(self.ref, restarted_after))
        if _lifecycle_log.isEnabledFor(_DEBUG):
            self._log_lifecycle(
                "%s started" if restarted_after is None else "%s restarted after %r",
                restarted_after,
            )
        return None

    def _log_lifecycle(self, text: str, detail: object) -> None:
        """Log a start, restart or stop on ``actors.lifecycle`` at DEBUG."""
        path = self.ref.path
        args = (path,) if detail is None else (path, detail)
        _lifecycle_log.debug(text, *args, extra={"actor_path": path, "message_type": None})

    def _failed_start(self, error: ActorError) -> _Failure | None:
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

    # -- supervision (the child's side) ---------------------------------------------------

    async def _recover(
        self, error: BaseException, message: Any, delay: float | None = None
    ) -> bool:
        """This actor failed with ``error`` (on ``message``, if any): let its supervisor
        (the parent) decide, and carry out the verdict in this task. With ``delay``
        given, the supervisor has already decided to restart it (a sibling failed).

        Returns ``True`` to go on processing messages (resumed or restarted), ``False``
        to stop. A failure while restarting is reported again, so it counts towards the
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
                if delay is None:
                    parent = self._parent
                    if parent is None:  # /user itself failed: that ends the system
                        self._reason = error
                        self.system._unhandled_failure(self.ref, error)
                        return False
                    can_resume = self._started and self._instance is not None
                    directive, delay = parent._child_failed(self, error, can_resume, message)
                    if directive is Directive.RESUME:
                        return True
                    if directive is not Directive.RESTART:
                        self._reason = error
                        self._stop_requested = True
                        return False
                failure = await self._restart(error, message, delay)
                if failure is None:
                    return not self._stop_requested
                (error, message), delay = failure, None
        finally:
            self._unsuspend()
            self._failing = False
            if self._sysq:
                # A group restart ordered meanwhile is already done, and a failure of the
                # replaced incarnation is settled.
                self._sysq = [r for r in self._sysq if r[0] != _RESTART and r[0] != _BROKEN] or None

    def _settle_pending_failures(self) -> None:
        """The actor stops: a failure still queued for it (a give-up or an escalation
        from a child) is reported as a failure while stopping, never dropped."""
        requests = self._sysq
        if requests and any(kind in (_FAIL, _BROKEN) for kind, _ in requests):
            self._sysq = [r for r in requests if r[0] != _FAIL and r[0] != _BROKEN] or None
            for kind, arg in requests:
                if kind in (_FAIL, _BROKEN):
                    self._fail(arg[0])

    async def _restart(self, error: BaseException, message: Any, delay: float) -> _Failure | None:
        """Replace the instance in place: the ref, the mailbox and the watches stay;
        timers, receive timeout, behaviour stack and (unless the strategy keeps them)
        children go with the old instance. Stashed messages return to the mailbox."""
        self._restart_order = None
        self._current = None
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
        parent = self._parent
        if parent is None or parent._children_strategy().stop_children:
            await self._stop_children()
        if delay > 0:
            await self._wait_backoff(trio.current_time() + delay)
        if self._stop_requested:
            return None
        self._instance = None
        self._behavior = _not_started
        self._behavior_async = False
        self._behaviors = None
        failure = await self._start(error)
        if failure is None and self._started and parent is not None:
            parent._child_restarted(self)
        return failure

    async def _wait_backoff(self, until: float) -> None:
        """Wait until ``until`` (a restart backoff), or less if asked to stop. Messages
        that arrive meanwhile wait in the mailbox (bounded: see ``_suspend``)."""
        while not self._stop_requested and trio.current_time() < until:
            with trio.move_on_at(until):
                self._parked = _current_task()
                await _wait_task_rescheduled(self._abort_park)

    def _suspend(self) -> None:
        """While the supervisor decides and a restart (or its backoff) runs, the mailbox
        is the restart stash: it holds at most ``restart_stash_capacity`` messages, and
        more go to dead letters (``restart-stash-overflow``). A mailbox whose own bound
        is tighter keeps its own bound and policy."""
        limit = self.system.settings.restart_stash_capacity
        if self._capacity is None or self._capacity > limit:
            self._suspended = (self._capacity, self._overflow)
            self._capacity = limit
            self._overflow = None  # None: the restart stash is full

    def _unsuspend(self) -> None:
        saved, self._suspended = self._suspended, None
        if saved is not None:
            self._capacity, self._overflow = saved
            if self._space is not None:
                self._wake_senders()

    def _limit_mailbox(self, bound: Mailbox) -> tuple[int | None, Overflow | None] | None:
        """Bound the mailbox by ``bound`` (capacity and overflow policy) until
        :meth:`_lift_limit` is given the returned token; a mailbox whose own bound is as
        tight keeps its own (token ``None``). Used while a persistent actor persists or
        recovers: the messages that arrive meanwhile wait in the mailbox, bounded."""
        capacity = bound.capacity
        if capacity is None or (self._capacity is not None and self._capacity <= capacity):
            return None
        saved = (self._capacity, self._overflow)
        self._capacity = capacity
        self._overflow = bound.overflow
        return saved

    def _lift_limit(self, saved: tuple[int | None, Overflow | None] | None) -> None:
        if saved is not None:
            self._capacity, self._overflow = saved
            if self._space is not None:
                self._wake_senders()

    def _break(self, error: BaseException) -> None:
        """The current incarnation cannot go on (a persistent actor's journal failed): it
        fails with ``error`` as soon as its current handler returns, whatever the handler
        does with the error it was given. A restart drops the request."""
        self._system_request(_BROKEN, (error, False))

    def _stop_failed(self, error: BaseException) -> None:
        """Stop with ``error`` as the reason, without asking the supervisor (a persistent
        actor whose recovery cannot succeed by retrying): published as ``ActorFailed``,
        logged at ERROR, and the reason watchers and ``ActorStopped`` get."""
        bus = self.system.events
        if bus._subscriptions:
            bus._publish_runtime(ActorFailed(self.ref, error))
        if self._reason is None:
            self._reason = error
        self._stop_requested = True
        _log.error(
            "%s stopped: %s",
            self.ref.path,
            error,
            exc_info=error,
            extra={"actor_path": self.ref.path, "message_type": None},
        )

    # -- supervision (the parent's side) --------------------------------------------------

    def _children_strategy(self) -> Strategy:
        """The strategy this actor applies to its children."""
        strategy = self._strategy
        if strategy is None:
            settings = self.system.settings
            strategy = settings.supervisor_strategy
            if self._parent is None and settings.guardian_strategy is not None:
                strategy = settings.guardian_strategy
            self._strategy = strategy
        return strategy

    def _children_engine(self) -> RestartEngine:
        """The restart engine over this actor's children, made at the first failure of a
        child (spawning stays cheap until then)."""
        engine = self._engine
        if engine is None:
            engine = RestartEngine(self._children_strategy(), rng=self.system._rng)
            self._engine = engine
            now = trio.current_time()
            for name, child in (self._children or {}).items():
                if child._state != DEAD:
                    engine.add(_child_spec(name))
                    engine.started(name, now)
        return engine

    def _child_failed(
        self, child: ActorCell, error: BaseException, can_resume: bool, message: Any = None
    ) -> tuple[Directive, float]:
        """Decide about a failed child (called from the child's task). Returns the
        child's own verdict (``RESUME``, ``RESTART`` with a delay, or ``STOP``) and
        carries out the rest: siblings restarted or stopped by the strategy, or this
        actor giving up / escalating."""
        if self._stop_requested or self._state >= STOPPING or self._failing:
            # A stopping (or failing) parent stops its children anyway: report it.
            _log.error(
                "%s failed while its supervisor %s was stopping or failing",
                child.ref.path,
                self.ref.path,
                exc_info=error,
                extra={"actor_path": child.ref.path, "message_type": None},
            )
            return Directive.STOP, 0.0
        engine = self._children_engine()
        name = child._name
        path = self.ref.path
        if name not in engine:
            _log_failure(logging.WARNING, child, error, message, "stopped by %s", path)
            return Directive.STOP, 0.0
        plan = engine.exited(name, error, trio.current_time())
        directive = plan.directive
        if plan.give_up is not None:
            _log_failure(
                logging.ERROR,
                child,
                error,
                message,
                "its supervisor %s gives up (too many restarts) and fails in turn",
                path,
            )
            bus = self.system.events
            if bus._subscriptions:
                bus._publish_runtime(SupervisorGaveUp(self.ref, child.ref, error))
            self._escalate(child, plan.give_up, stop_children=True)
            return Directive.STOP, 0.0
        if plan.escalate is not None:
            _log_failure(
                logging.WARNING,
                child,
                error,
                message,
                "escalated by %s to its own supervisor",
                path,
            )
            self._escalate(child, plan.escalate, stop_children=False)
            return Directive.STOP, 0.0
        if plan.shutdown:
            _log_failure(
                logging.WARNING,
                child,
                error,
                message,
                "its supervisor %s shuts down (a significant child ended)",
                path,
            )
            self._request_stop()
            return Directive.STOP, 0.0
        if directive is Directive.RESUME:
            if can_resume:
                _log_failure(logging.WARNING, child, error, message, "resumed by %s", path)
                return Directive.RESUME, 0.0
            # Nothing to resume (the constructor or pre_start failed): stop it, rather
            # than retry without counting towards intensity.
            _log_failure(
                logging.WARNING,
                child,
                error,
                message,
                "stopped by %s (it never started, so it cannot resume)",
                path,
            )
            engine.stopped(name)
            return Directive.STOP, 0.0
        if name in plan.start:
            if plan.delay > 0:
                _log_failure(
                    logging.WARNING, child, error, message, "restarting it in %g s", plan.delay
                )
            else:
                _log_failure(logging.WARNING, child, error, message, "restarting it")
        else:
            _log_failure(logging.WARNING, child, error, message, "stopped by %s", path)
        children = self._children or {}
        for sibling_name in plan.stop:
            sibling = children.get(sibling_name)
            if sibling is None:
                continue
            if sibling_name in plan.start:
                _log.debug(
                    "%s restarts with its failed sibling %s",
                    sibling.ref.path,
                    child.ref.path,
                    extra={"actor_path": sibling.ref.path, "message_type": None},
                )
                sibling._system_request(_RESTART, (error, plan.delay))
            else:
                _log.debug(
                    "%s stops: its sibling %s failed",
                    sibling.ref.path,
                    child.ref.path,
                    extra={"actor_path": sibling.ref.path, "message_type": None},
                )
                self._stop_child(sibling)
        if name in plan.start:
            return Directive.RESTART, plan.delay
        return Directive.STOP, 0.0

    def _escalate(self, child: ActorCell, error: BaseException, *, stop_children: bool) -> None:
        """Fail this actor with ``error`` (from a child): its own supervisor decides.
        At the root (``/user``) the failure ends the system: ``open_system`` raises it."""
        if self._parent is None:
            self.system._unhandled_failure(child.ref, error)
            return
        self._failing = True
        self._system_request(_FAIL, (error, stop_children))

    def _child_restarted(self, child: ActorCell) -> None:
        engine = self._engine
        if engine is not None and child._name in engine:
            engine.started(child._name, trio.current_time())

    def _child_gone(self, child: ActorCell) -> None:
        """A child has fully stopped: a supervisor built from child specs decides what
        follows; other actors just forget it."""
        engine = self._engine
        name = child._name
        if engine is None or name not in engine:
            return
        if self._on_child_exit is not None:
            self._on_child_exit(child)
            return
        engine.stopped(name)
        if name in engine:
            engine.delete(name)

    def _set_behavior(self, handler: Callable[[Any], Any], is_async: bool | None = None) -> None:
        self._behavior = handler
        if is_async is None:
            is_async = inspect.iscoroutinefunction(handler)
        self._behavior_async = is_async
        if is_async and self._scope is None:
            self._system_request(_RESCOPE, None)

    async def _loop(self) -> bool:
        """Process messages until the actor must stop (``True``) or must re-enter the loop
        in a cancel scope (``False``)."""
        q = self._mailbox
        while True:
            if self._sysq is not None:
                action = self._take_system_requests()
                if action:
                    return action == _STOP
            if not q:
                await self._park()
                continue
            n = self._throughput
            while n and q:
                n -= 1
                envelope = q.popleft()
                message, _, slot = envelope
                if slot is not None:
                    kind = slot.kind
                    if kind == TIMER:
                        self._uncounted -= 1
                        timers = self._timers
                        if timers is None or not timers._accept(slot):  # type: ignore[arg-type]
                            continue
                        # Delivered: if stashed, it comes back as an accepted note.
                        slot = None
                        envelope = (message, None, _ACCEPTED)
                    elif kind == FAULT:
                        if await self._injected_fault(envelope):
                            return True
                        continue
                    elif kind == NOTE:
                        self._uncounted -= 1
                        if (
                            slot is _NOTE
                            and message.__class__ is Terminated
                            and not self._take_terminated(message.ref)
                        ):
                            continue
                        slot = None
                        envelope = (message, None, _ACCEPTED)
                    else:
                        slot.unhandled = False  # type: ignore[union-attr]
                if message is PoisonPill and self._parent is not None:
                    # Also from a timer or an ask (whose caller learns the actor stopped).
                    self._stop_requested = True
                    self._current = None
                    if slot is not None:
                        self._complete(
                            slot,  # type: ignore[arg-type]
                            None,
                            ActorDead(self.ref.path, "was stopped by the PoisonPill it was asked"),
                        )
                    return True
                self._current = envelope
                self._current_stashed = False
                try:
                    if self._behavior_async:
                        if self._space is not None:
                            self._wake_senders()  # the handler may wait: free room now
                        result = await self._behavior(message)
                    else:
                        result = self._behavior(message)
                        if result is not None and result.__class__ is CoroutineType:
                            result.close()
                            raise HandlerReturnedCoroutine(self.ref.path, self._behavior)
                except Exception as exc:
                    self._current = None
                    if self._current_stashed:
                        # Stashed, then failed: the failure settles it, it never returns.
                        self._current_stashed = False
                        self._unstash_last(envelope)
                    if slot is None:
                        self._failed_message(envelope, exc)
                        return True
                    self._complete(slot, None, exc)  # type: ignore[arg-type]
                else:
                    if slot is not None:
                        self._current = None
                        if self._current_stashed:
                            # Answered when it is processed again after unstash_all().
                            self._current_stashed = False
                        elif slot.unhandled:  # type: ignore[union-attr]
                            self._complete(
                                slot,  # type: ignore[arg-type]
                                None,
                                UnhandledMessage(self.ref.path, message),
                            )
                        else:
                            self._complete(slot, result, None)  # type: ignore[arg-type]
                if self._sysq is not None:
                    break
            self._current = None
            if self._space is not None:
                self._wake_senders()
            if self._recv_timeout is not None:
                self._last_activity = trio.current_time()
            if q and self._sysq is None:
                await trio.lowlevel.checkpoint()

    async def _injected_fault(self, envelope: Envelope) -> bool:
        """Carry out a fault the testkit injected on this message. ``True``: the actor
        leaves its loop (it failed, or a stop deadline ended a hang)."""
        message, sender, fault = envelope
        assert isinstance(fault, _Fault)
        inner = fault.inner
        if fault.action == "crash":
            error = fault.error
            assert isinstance(error, Exception)
            if inner is not None:
                self._complete(inner, None, error)  # the asker learns what happened
            self._failed_message((message, sender, None), error)
            return True
        # A hang: the handler "runs" for fault.seconds, within the stop deadline.
        self._current = (message, sender, inner)
        outer = self._scope
        until = min(self._stop_deadline, trio.current_time() + fault.seconds)
        with trio.CancelScope(deadline=until) as scope:
            self._scope = scope
            try:
                await trio.sleep_forever()
            finally:
                self._scope = outer
        if self._failure is not None:  # killed while hanging (its asker was told)
            self._current = None
            if inner is None:
                self.system._dead_letter(message, sender, self.ref, DeadLetterReason.FAILED)
            return True
        self._current = None
        if self._stop_requested and trio.current_time() >= self._stop_deadline:
            self._discard((message, sender, inner), DeadLetterReason.STOPPED)
            return True  # the stop deadline cut the hang short
        if scope.cancelled_caught:  # the hang is over: the message is handled now
            self._mailbox.appendleft((message, sender, inner))
        return False

    def _kill(self, error: BaseException) -> None:
        """Kill the actor abruptly (testkit): it fails with ``error`` at once, without
        ``pre_restart`` or ``post_stop`` for this incarnation; a handler in progress is
        cancelled, and an ask it was answering gets ``error``. Its supervisor decides
        what follows, as for any failure."""
        if self._state != RUNNING or self._stop_requested:
            return
        self._started = False  # no lifecycle hooks for the killed instance
        current = self._current
        if current is not None:
            slot = current[2]
            if isinstance(slot, _Reply):
                self._complete(slot, None, error)
            self._current = None
            if self._scope is not None:  # an async handler is awaiting: cancel it
                self._fail(error)
                self._scope.cancel()
                return
        self._system_request(_FAIL, (error, False))

    def _unstash_last(self, envelope: Envelope) -> None:
        stash = self._stash
        if stash and stash[-1] is envelope:
            stash.pop()

    def _wake_senders(self) -> None:
        """Let as many waiting ``send``/``ask`` callers go as there is room."""
        assert self._space is not None
        if self._capacity is None:  # unbounded again (a temporary bound was lifted)
            self._granted += len(self._space.unpark_all())
            return
        # Places already promised to woken senders that have not run yet do not count as
        # free: the waiting senders go in the order they started waiting.
        free = self._capacity - (len(self._mailbox) - self._uncounted) - self._granted
        if free > 0:
            self._granted += len(self._space.unpark(count=free))

    def _failed_message(self, envelope: Envelope, error: Exception) -> None:
        message, sender, _ = envelope
        self.system._dead_letter(message, sender, self.ref, DeadLetterReason.FAILED)
        self._fail(error, message)

    async def _park(self) -> None:
        timeout = self._recv_timeout
        self._parked = _current_task()
        if timeout is None:
            await _wait_task_rescheduled(self._abort_park)
            return
        with trio.move_on_at(self._last_activity + timeout) as scope:
            await _wait_task_rescheduled(self._abort_park)
        if scope.cancelled_caught and self._recv_timeout is not None:
            self._last_activity = trio.current_time()
            if not self._mailbox:
                self._append_uncounted((self._recv_timeout_msg, None, _NOTE))

    def _abort_park(self, _: Any) -> trio.lowlevel.Abort:
        self._parked = None
        return _Abort.SUCCEEDED

    def _take_system_requests(self) -> int:
        """0: go on; _STOP: leave the loop (to stop, to be supervised after a failure, or
        to restart with a sibling); _RESCOPE: leave the loop to re-enter it in a cancel
        scope (the behaviour became async)."""
        requests, self._sysq = self._sysq, None
        assert requests is not None
        action = 0
        for index, (kind, arg) in enumerate(requests):
            if kind in (_FAIL, _BROKEN):
                error, drop_children = arg
                self._drop_children = drop_children
                self._fail(error)
                for later_kind, later_arg in requests[index + 1 :]:
                    if later_kind in (_FAIL, _BROKEN):  # report the others
                        self._fail(later_arg[0])
                        _log.error(
                            "%s also failed while a failure was handled",
                            self.ref.path,
                            exc_info=later_arg[0],
                            extra={"actor_path": self.ref.path, "message_type": None},
                        )
                return _STOP
            if kind == _STOP:
                return _STOP
            if kind == _RESTART:
                if self._restart_order is None:
                    self._restart_order = arg
                action = _STOP
            elif kind == _RESCOPE and self._scope is None and action == 0:
                action = _RESCOPE
        return action

    def _fail(self, error: BaseException, message: Any = None) -> None:
        """Record a failure (``message``: the one being handled, if any). A running actor
        leaves its loop and its supervisor decides; one that is already stopping only
        reports it: the error becomes the reason of its stop."""
        bus = self.system.events
        if bus._subscriptions:
            bus._publish_runtime(ActorFailed(self.ref, error))
        if self._stop_requested or self._state != RUNNING:
            if self._reason is None:
                self._reason = error
            _log.error(
                "%s failed while stopping",
                self.ref.path,
                exc_info=error,
                extra={"actor_path": self.ref.path, "message_type": None},
            )
            return
        if self._failure is None:
            self._failure = (error, message)

    # == stopping ==========================================================================

    async def _stop_children(self) -> None:
        """Stop children one at a time, newest first, each with its own deadline."""
        children = self._children
        while children:
            name, child = next(reversed(children.items()))
            if child._state == DEAD:  # already gone (it leaves the dict when it ends)
                children.pop(name, None)
                continue
            self._stop_child(child)
            await child._wait_terminated()

    def _stop_child(self, child: ActorCell) -> None:
        """Ask a child to stop on this actor's behalf (not an exit of its own). A child
        with a spec (see :class:`Supervisor`) gets the deadline of its ``shutdown``:
        ``BRUTAL`` cancels its handler at once."""
        child._stopped_by_parent = True
        deadline = None
        engine = self._engine
        if engine is not None and self._on_child_exit is not None and child._name in engine:
            shutdown = engine.state(child._name).spec.shutdown
            deadline = trio.current_time()
            if shutdown != BRUTAL:
                assert isinstance(shutdown, int | float)
                deadline += shutdown
        child._request_stop(deadline)

    async def _run_post_stop(self) -> None:
        if self._timers is not None:
            self._timers.cancel_all()
        instance = self._instance
        if not self._started or instance is None:
            return
        self._started = False
        try:
            with trio.move_on_after(self.system.settings.stop_timeout):
                result = instance.post_stop()
                if result is not None:
                    await result
        except Exception as exc:
            self._fail(exc)

    def _in_subtree(self, task: trio.lowlevel.Task) -> bool:
        """Whether ``task`` runs this actor or one of its descendants."""
        pending: list[ActorCell] = [self]
        while pending:
            cell = pending.pop()
            if cell._task is task:
                return True
            if cell._children:
                pending.extend(cell._children.values())
        return False

    async def _wait_ready(self) -> bool:
        """Wait until the actor has started (``True``) or has stopped (``False``); a
        start that fails and is restarted counts once the restart succeeds."""
        if not self._started and self._state != DEAD:
            if self._ready is None:
                self._ready = trio.Event()
            await self._ready.wait()
        else:
            await trio.lowlevel.checkpoint()
        return self._state != DEAD

    async def _wait_terminated(self) -> None:
        if self._state == DEAD:
            await trio.lowlevel.checkpoint()
            return
        if self._terminated is None:
            self._terminated = trio.Event()
        await self._terminated.wait()

    def _finalize(self) -> None:
        """Synchronous end of life: nothing queued is lost, everyone who asked is told."""
        self._state = DEAD
        self._parked = None
        self._sysq = None
        if self._timers is not None:
            self._timers.cancel_all()
        system = self.system
        system.events._remove_subscriber(self.ref)  # before draining: no self-addressed mail
        try:
            self._drain()
        finally:
            try:
                self._say_goodbye()
            finally:
                # Refs may outlive the actor: keep nothing of it alive through them.
                self._instance = None
                self._factory = _gone
                self._behavior = _not_started
                self._behaviors = None
                self._children = None
                self._timers = None
                self._recv_timeout_msg = None
                if self._terminated is not None:
                    self._terminated.set()
                if self._ready is not None:
                    self._ready.set()

    def _drain(self) -> None:
        """Dead-letter everything that will never be processed; fail pending asks."""
        current, self._current = self._current, None
        if current is not None and not self._current_stashed:
            # A stop deadline or a cancellation interrupted a handler mid-message.
            self._discard(current, DeadLetterReason.STOPPED)
        stash, self._stash = self._stash, None
        for envelope in stash or ():
            self._discard(envelope, DeadLetterReason.STOPPED)
        q = self._mailbox
        while q:
            self._discard(q.popleft(), DeadLetterReason.STOPPED)
        self._uncounted = 0
        if self._space is not None:
            self._granted += len(self._space.unpark_all())

    def _say_goodbye(self) -> None:
        """Leave the parent and the watched; tell the watchers; never lose a failure."""
        if self._watching:
            for target in self._watching.values():
                if target._watchers:
                    target._watchers.pop(self, None)
            self._watching = None
        parent = self._parent
        siblings = None if parent is None else parent._children
        if siblings is not None and siblings.get(self._name) is self:
            del siblings[self._name]
        if parent is not None:
            parent._child_gone(self)
        reason = self._reason
        watchers, self._watchers = self._watchers, None
        for watcher in watchers or ():
            watcher._watched_terminated(self.ref, reason, True)
        system = self.system
        if system.events._subscriptions:
            system.events._publish_runtime(ActorStopped(self.ref, reason))
        if _lifecycle_log.isEnabledFor(_DEBUG):
            self._log_lifecycle("%s stopped" if reason is None else "%s stopped: %r", reason)

    def _watched_terminated(
        self, ref: ActorRef, reason: BaseException | None, confirmed: bool
    ) -> bool:
        """Queue ``Terminated`` for a watched ref. Returns whether this watcher will
        process it (it is watching and not stopping)."""
        watching = self._watching
        if self._state == DEAD or not watching or ref not in watching:
            return False
        self._append_uncounted((Terminated(ref, reason, confirmed), None, _NOTE))
        return not self._stop_requested

    def _take_terminated(self, ref: ActorRef) -> bool:
        """A queued ``Terminated`` reached the handler: deliver it only if the watch is
        still on (``unwatch`` withdraws one already queued), and end the watch."""
        watching = self._watching
        return watching is not None and watching.pop(ref, None) is not None


def _heard(logger: logging.Logger, level: int) -> bool:
    """Whether a record of ``level`` on ``logger`` would reach a handler that can emit
    it. Building a record with its traceback costs several microseconds: a restart loop
    should not pay that when the application has configured no logging (only the
    ``NullHandler`` of ``actors`` would get it)."""
    if not logger.isEnabledFor(level):
        return False
    found = False
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            found = True
            if handler.__class__ is not logging.NullHandler and level >= handler.level:
                return True
        if not current.propagate:
            break
        current = current.parent
    return not found  # no handler at all: logging's last resort prints it


def _log_failure(
    level: int, child: ActorCell, error: BaseException, message: Any, outcome: str, *args: Any
) -> None:
    """Log a failure of ``child`` on ``actors.supervision`` (with its traceback): the
    actor's path, the type of the message it was handling (if any), the error, and
    ``outcome``: what its supervisor does about it."""
    if _heard(_log, level):
        path = child.ref.path
        message_type = None if message is None else type(message).__qualname__
        _log.log(
            level,
            "%s failed%s: %r; " + outcome,
            path,
            "" if message_type is None else " on " + message_type,
            error,
            *args,
            exc_info=error,
            extra={"actor_path": path, "message_type": message_type},
        )


def _gone() -> Actor:
    raise ActorError("this actor has stopped")  # pragma: no cover - never called


def _not_started(message: Any) -> Any:
    raise ActorError("this actor is not running")  # pragma: no cover - never reached


class DeadCell(ActorCell):
    """Stands in for an address that resolves to no live actor: every message goes to
    dead letters (``no-such-actor``) and every ``ask`` raises :class:`ActorDead`."""

    __slots__ = ()

    def _tell(self, message: Any, sender: ActorRef | None) -> None:
        self._check_thread()
        if self._roundtrip:
            message = roundtrip(message)
        self.system._dead_letter(message, sender, self.ref, DeadLetterReason.NO_SUCH_ACTOR)

    def _offer(self, message: Any, sender: ActorRef | None, copy: bool = True) -> None:
        self.system._dead_letter(message, sender, self.ref, DeadLetterReason.NO_SUCH_ACTOR)

    async def _send(self, message: Any, sender: ActorRef | None) -> None:
        await trio.lowlevel.checkpoint()
        self._tell(message, sender)

    async def _ask(self, message: Any, timeout: float | None, sender: ActorRef | None) -> Any:
        await trio.lowlevel.checkpoint()
        if self._roundtrip:
            roundtrip(message)
        raise ActorDead(self.ref.path, "does not exist (no live actor at this address)")
