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
import math
import threading
from collections import deque
from collections.abc import Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final

import cloudpickle
import trio

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
    ActorStarted,
    ActorStopped,
    DeadLetterReason,
    PoisonPill,
    Terminated,
)
from ._ref import ActorRef

if TYPE_CHECKING:
    from ._context import ActorContext
    from ._system import ActorSystem
    from ._timers import Timers, _Timer

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

# System-lane requests.
_STOP: Final = 1
_FAIL: Final = 2
_RESCOPE: Final = 3

# Whether each ``receive`` method (the function in its class) is ``async def``.
_ASYNC_RECEIVE: dict[object, bool] = {}

Envelope = tuple[Any, "ActorRef | None", "_Reply | _Timer | _Note | None"]


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
        "_factory",
        "_granted",
        "_instance",
        "_last_activity",
        "_mailbox",
        "_name",
        "_overflow",
        "_parent",
        "_parked",
        "_reason",
        "_recv_timeout",
        "_recv_timeout_msg",
        "_roundtrip",
        "_scope",
        "_space",
        "_started",
        "_stash",
        "_stash_capacity",
        "_state",
        "_stop_deadline",
        "_stop_requested",
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
        self._overflow = mailbox.overflow
        self._sysq: list[tuple[int, Any]] | None = None
        self._parked: trio.lowlevel.Task | None = None
        self._task: trio.lowlevel.Task | None = None
        self._state = NEW
        self._started = False
        self._throughput = throughput
        self._thread = system._thread_id
        self._roundtrip = system.settings.roundtrip_messages
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

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.ref.path}>"

    # == delivery (called by ActorRef, from any task of the system's thread) ==============

    def _tell(self, message: Any, sender: ActorRef | None) -> None:
        if self._thread != _get_ident():
            raise WrongThread(
                f"tell to {self.ref.path} from a thread that does not run its actor system; "
                "use ref.tell_threadsafe() from other threads"
            )
        if self._roundtrip:
            message = roundtrip(message)
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
        if self._state == DEAD:
            self.system._dead_letter(message, sender, self.ref, DeadLetterReason.STOPPED)
            return
        if self._is_full():
            self._overflowed(message, sender, raise_full=False)
            return
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
        if self._state == DEAD:
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
        self._append((message, sender, reply))
        await _wait_task_rescheduled(reply.abort)
        error, value = reply.error, reply.value
        # The deadline heap may hold the reply a while longer: keep nothing alive in it.
        reply.error = reply.value = reply.message = None
        if error is not None:
            raise error
        return value

    # -- delivery helpers -----------------------------------------------------------------

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
        else:
            self.system._dead_letter(message, sender, self.ref, DeadLetterReason.OVERFLOW)
            self._system_request(_FAIL, MailboxOverflow(self.ref.path, capacity))

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
            if not self._stop_requested and await self._start():
                # A stop deadline can only be missed while user code awaits, i.e. in an
                # async handler: only then does the loop run in a cancel scope (entering
                # one costs as much as starting a task). A parked actor wakes for a stop.
                while True:
                    if not self._behavior_async:
                        if await self._loop():
                            break
                        continue  # become() switched to an async behaviour
                    try:
                        with trio.CancelScope(deadline=self._stop_deadline) as scope:
                            self._scope = scope
                            await self._loop()
                    except Exception as exc:
                        # A handler's error group that also held the Cancelled of the stop
                        # deadline: the scope took its Cancelled, the rest is an error of
                        # the message being handled.
                        current, self._current = self._current, None
                        slot = None if current is None else current[2]
                        if isinstance(slot, _Reply):
                            self._complete(slot, None, exc)  # the asker gets it
                        elif current is not None:
                            self._failed_message(current, exc)
                        else:
                            self._fail(exc)
                    self._scope = None
                    break
            self._state = STOPPING
            self._stop_requested = True
            await self._stop_children()
            await self._run_post_stop()
        except BaseException:
            # Cancelled from outside (the system is being torn down) or interrupted:
            # clean up within a shielded, bounded scope, then let the exception go on.
            if self._state != DEAD:
                self._state = STOPPING
                self._stop_requested = True
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

    async def _start(self) -> bool:
        _constructing.cell = self
        try:
            instance = self._factory()
            if not isinstance(instance, Actor):
                raise TypeError(f"the factory returned {type(instance).__qualname__}, not an Actor")
        except Exception as exc:
            self._fail(ActorInitializationError(self.ref.path, exc))
            return False
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
        try:
            result = instance.pre_start()
            if result is not None:
                with trio.CancelScope(deadline=self._stop_deadline) as scope:
                    self._scope = scope
                    await result
                self._scope = None
                if scope.cancelled_caught:
                    return False  # asked to stop, and the deadline passed while starting
        except Exception as exc:
            self._scope = None
            self._fail(ActorInitializationError(self.ref.path, exc))
            return False
        self._started = True
        bus = self.system.events
        if bus._subscriptions:
            bus._publish_runtime(ActorStarted(self.ref))
        return True

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

    def _unstash_last(self, envelope: Envelope) -> None:
        stash = self._stash
        if stash and stash[-1] is envelope:
            stash.pop()

    def _wake_senders(self) -> None:
        """Let as many waiting ``send``/``ask`` callers go as there is room."""
        assert self._space is not None
        assert self._capacity is not None
        # Places already promised to woken senders that have not run yet do not count as
        # free: the waiting senders go in the order they started waiting.
        free = self._capacity - (len(self._mailbox) - self._uncounted) - self._granted
        if free > 0:
            self._granted += len(self._space.unpark(count=free))

    def _failed_message(self, envelope: Envelope, error: Exception) -> None:
        message, sender, _ = envelope
        self.system._dead_letter(message, sender, self.ref, DeadLetterReason.FAILED)
        self._fail(error)

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
        """0: go on; _STOP: stop now; _RESCOPE: leave the loop to re-enter it in a cancel
        scope (the behaviour became async)."""
        requests, self._sysq = self._sysq, None
        assert requests is not None
        action = 0
        for kind, arg in requests:
            if kind == _FAIL:
                self._fail(arg)
                return _STOP
            if kind == _STOP:
                return _STOP
            if kind == _RESCOPE and self._scope is None:
                action = _RESCOPE
        return action

    def _fail(self, error: BaseException) -> None:
        """Record a failure: the actor stops; watchers will see ``error``."""
        self._stop_requested = True
        if self._reason is None:
            self._reason = error
        bus = self.system.events
        if bus._subscriptions:
            bus._publish_runtime(ActorFailed(self.ref, error))

    # == stopping ==========================================================================

    async def _stop_children(self) -> None:
        """Stop children one at a time, newest first, each with its own deadline."""
        children = self._children
        while children:
            name, child = next(reversed(children.items()))
            if child._state == DEAD:  # already gone (it leaves the dict when it ends)
                children.pop(name, None)
                continue
            child._request_stop()
            await child._wait_terminated()

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
        reason = self._reason
        watchers, self._watchers = self._watchers, None
        handled = False
        for watcher in watchers or ():
            handled |= watcher._watched_terminated(self.ref, reason, True)
        system = self.system
        if reason is not None and not handled:
            # Nobody who will still process messages watched it: never swallow it.
            system._unhandled_failure(self.ref, reason)
        if system.events._subscriptions:
            system.events._publish_runtime(ActorStopped(self.ref, reason))

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
