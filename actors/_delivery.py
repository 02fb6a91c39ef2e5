"""How messages reach an actor and its handler: the hot path, the one seam, the loop.

The hot path is ``tell`` → mailbox → ``_loop`` → ``receive``, all in this module:

- ``tell`` appends an envelope to the mailbox and, if the actor's task is parked on an
  empty mailbox, reschedules it directly (cheaper than a memory channel);
- ``_loop`` (run by the actor's task) takes up to ``throughput`` messages per turn
  without a checkpoint, calls the behaviour on each, answers asks, and parks with
  ``trio.lowlevel.wait_task_rescheduled`` when the mailbox is empty.

Every other way into a mailbox (``tell`` on its slow path, ``send``, ``ask``, forwards,
events of the bus, tells from other threads) passes through one seam, ``_enter``: the
cloudpickle round trip (``Settings.roundtrip_messages``), then the system's delivery hooks
(delivery tracing, the testkit's fault injector; see :class:`DeliveryHook`), then
``_accept`` (``_mailbox.py``). A cell takes the slow path when its system has a round
trip or a hook; otherwise ``tell`` inlines ``_accept``.
"""

from __future__ import annotations

import inspect
import math
import threading
from collections.abc import Callable
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from ._ask_deadlines import check_timeout, deadline_after
from ._cell_state import BROKEN, DEAD, FAIL, ORDER, RESCOPE, STOP
from ._envelope import ACCEPTED, DETOUR, NEW_NOTE, NOTE, TIMER, Envelope, Reply, Slot
from ._envelope import roundtrip as _roundtrip
from ._errors import (
    ActorDead,
    ActorError,
    ActorKilled,
    AskTimeout,
    HandlerReturnedCoroutine,
    SystemClosed,
    UnhandledMessage,
    UnpicklableMessage,
    WrongThread,
)
from ._idle_and_started import notify_parked as _notify_parked
from ._idle_and_started import park_watchers as _park_watchers
from ._mailbox import ADMIT, POLICY_IF_FULL, RAISE_IF_FULL, MailboxOps
from ._messages import DeadLetterReason, Kill, PoisonPill, Terminated
from ._runtime_log import log_also_failed

if TYPE_CHECKING:
    from ._cell import ActorCell
    from ._ref import ActorRef

_get_ident: Final = threading.get_ident
_reschedule: Final = trio.lowlevel.reschedule
_current_task: Final = trio.lowlevel.current_task
_wait_task_rescheduled: Final = trio.lowlevel.wait_task_rescheduled
_Abort: Final = trio.lowlevel.Abort

# How a message came in, as delivery hooks see it.
TELL: Final = "tell"
SEND: Final = "send"
ASKED: Final = "ask"
FORWARD: Final = "forward"
PUBLISH: Final = "publish"


def take_answer(reply: Reply) -> Any:
    """The answer an ask's caller gets once its reply slot is settled: the value, or the
    error raised. The slot keeps neither (the deadline heap may hold it a while longer)."""
    error, value = reply.error, reply.value
    reply.error = reply.value = reply.message = None
    if error is not None:
        raise error
    return value


class DeliveryHook(Protocol):
    """Sees every message on its way into a mailbox through the seam (installed with
    ``ActorSystem._add_delivery_hook``): delivery tracing and the testkit's fault
    injector are hooks. Called in the system's thread, after the round trip and before
    the message is accepted; ``via`` is ``"tell"``, ``"send"``, ``"ask"``,
    ``"forward"`` or ``"publish"``, ``slot`` the ask's :class:`Reply` (or ``None``).

    Returning ``True`` takes the message over: it is not enqueued, and the hook answers
    for it (it may hand it back later with ``cell._release(envelope)``, which applies
    the mailbox's capacity and overflow policy, or dead-letter it). Runtime
    notifications (``Terminated``, timer ticks) do not pass hooks."""

    def on_delivery(
        self, cell: ActorCell, via: str, message: Any, sender: ActorRef | None, slot: Slot
    ) -> bool: ...


class Delivery(MailboxOps):
    """The ways into the mailbox, and the loop that empties it."""

    __slots__ = ()

    # == into the mailbox ===================================================================

    def tell(self, message: Any, sender: ActorRef | None) -> None:
        """``ActorRef.tell``: never blocks; see its documentation."""
        if self._thread != _get_ident():
            raise WrongThread(
                f"tell to {self.ref.path} from a thread that does not run its actor system; "
                "use ref.tell_threadsafe() from other threads"
            )
        if self._slow:
            self._enter(TELL, message, sender, None, RAISE_IF_FULL)
            return
        # The fast path: _accept inlined.
        if self._state == DEAD:
            self.system._dead_letter(message, sender, self.ref, DeadLetterReason.STOPPED)
            return
        q = self._mailbox
        capacity = self._capacity
        if capacity is not None and len(q) - self._uncounted + self._granted >= capacity:
            self._overflowed((message, sender, None), raise_full=True)
            return
        q.append((message, sender, None))
        task = self._parked
        if task is not None:
            self._parked = None
            _reschedule(task)

    def _enter(
        self,
        via: str,
        message: Any,
        sender: ActorRef | None,
        slot: Slot,
        on_full: int,
        copy: bool = True,
    ) -> None:
        """The seam: round trip (if ``copy``), delivery hooks, then ``_accept``."""
        if copy and self._roundtrip:
            message = self._copy_message(message)
        if self._slow:
            for hook in self.system._delivery_hooks:
                if hook.on_delivery(self, via, message, sender, slot):  # type: ignore[arg-type]
                    return
        self._accept((message, sender, slot), on_full)

    def offer(
        self, message: Any, sender: ActorRef | None, copy: bool = True, via: str = PUBLISH
    ) -> None:
        """Enqueue for the runtime (events of the bus, tells handed over from another
        thread): never raises; a full mailbox applies its overflow policy, under which
        ``backpressure`` turns the message into a dead letter (``dropped_newest``).
        ``copy=False`` skips the round trip (already made, or the runtime's own events,
        which may carry what could not be delivered). Called from another thread, it
        hands the message over to this system's thread."""
        if self._thread != _get_ident():
            try:
                self.system._token.run_sync_soon(self.offer, message, sender, copy, via)
            except trio.RunFinishedError:  # that system has ended
                self.system._dead_letter(message, sender, self.ref, DeadLetterReason.STOPPED)
            return
        try:
            self._enter(via, message, sender, None, POLICY_IF_FULL, copy)
        except UnpicklableMessage:
            self.system._dead_letter(message, sender, self.ref, DeadLetterReason.UNPICKLABLE)

    def forward(self, message: Any, sender: ActorRef | None, slot: Reply | None) -> None:
        """Enqueue a message another actor hands over (``context.forward``), with its
        sender and, for an ask, the asker's reply slot: a stopped or full recipient fails
        the ask (``ActorDead`` / ``MailboxFull``) or treats a tell per its overflow
        policy, without raising."""
        self._enter(FORWARD, message, sender, slot, POLICY_IF_FULL)

    def _release(self, envelope: Envelope) -> None:
        """Enqueue an envelope a delivery hook took over and now hands back (delayed,
        duplicated, reordered, or detoured): no round trip and no hooks again, but the
        mailbox's capacity and overflow policy apply as to any delivery."""
        self._accept(envelope, POLICY_IF_FULL)

    def tell_threadsafe(self, message: Any, sender: ActorRef | None) -> None:
        """``ActorRef.tell_threadsafe``. Under ``roundtrip_messages`` the copy is made in
        the calling thread, at the call: later changes to ``message`` do not reach the
        actor, and an unpicklable one raises there."""
        copied = self._roundtrip
        if copied:
            message = self._copy_message(message)
        if self._thread == _get_ident():
            self._enter(TELL, message, sender, None, RAISE_IF_FULL, copy=not copied)
            return
        try:
            self.system._token.run_sync_soon(self.offer, message, sender, not copied, TELL)
        except trio.RunFinishedError:
            raise SystemClosed(
                f"actor system {self.system.name!r} has ended; cannot deliver to {self.ref.path}"
            ) from None

    async def send(self, message: Any, sender: ActorRef | None) -> None:
        """``ActorRef.send``: waits for room; see its documentation."""
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_thread()
        if self._roundtrip:
            message = self._copy_message(message)
        await self._wait_for_room()
        self._enter(SEND, message, sender, None, ADMIT, copy=False)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def ask(self, message: Any, timeout: float | None, sender: ActorRef | None) -> Any:
        """``ActorRef.ask``; see its documentation."""
        # No cancel scope per ask (they are costly): the wait below is the checkpoint and
        # the system's AskDeadlines task enforces the timeout.
        await trio.lowlevel.checkpoint_if_cancelled()  # cancelled: nothing is sent
        if self._thread != _get_ident():
            self._check_thread()
        system = self.system
        if timeout is None:
            timeout = system.settings.ask_timeout
        elif timeout.__class__ is not float or not timeout > 0:
            timeout = check_timeout(timeout)  # (an int, or an error to raise)
        task = _current_task()
        if task is self._task:
            raise ActorError(
                f"{self.ref.path} asked itself; that would wait forever on its own "
                "mailbox (reply directly, or tell yourself a message)"
            )
        # What is enqueued: a copy under roundtrip_messages; the message itself names
        # the question in errors (AskTimeout).
        sent = self._copy_message(message) if self._roundtrip else message
        deadline = deadline_after(timeout)
        if self._is_full():
            with trio.move_on_at(deadline) as waiting:
                await self._wait_for_room()
            if waiting.cancelled_caught:
                raise AskTimeout(self.ref.path, timeout, message)
        if self._state == DEAD:
            await trio.lowlevel.checkpoint()
            raise ActorDead(self.ref.path, "is not running", self._reason)
        reply = Reply(task, self.ref.path, message, timeout, sender)
        if deadline != math.inf:
            system._ask_deadlines.add(deadline, reply)
        # Nothing between enqueueing and parking may raise or yield: once queued and
        # parked, the reply reschedules this task.
        self._enter(ASKED, sent, sender, reply, ADMIT, copy=False)
        if reply.task is not None:
            reply.parked = True
            await _wait_task_rescheduled(reply.abort)
        else:  # answered while it was delivered (a delivery hook refused it at once)
            await trio.lowlevel.cancel_shielded_checkpoint()
        error, value = reply.error, reply.value  # (take_answer, inline: W2's hot path)
        reply.error = reply.value = reply.message = None
        if error is not None:
            raise error
        return value

    def _copy_message(self, message: Any) -> Any:
        """What a delivery under ``roundtrip_messages`` enqueues: a copy of ``message``
        made through cloudpickle, as a process boundary would
        (:class:`UnpicklableMessage` if it cannot cross one). A cell for an actor in
        another process enqueues the pickled bytes instead (see ``_remote_child.py``)."""
        return _roundtrip(message)

    def _check_thread(self) -> None:
        if self._thread != _get_ident():
            raise WrongThread(
                f"{self.ref.path} used from a thread that does not run its actor system; "
                "use trio.from_thread.run() to call into the system's thread"
            )

    # == out of the mailbox: the actor's loop ===============================================

    async def _loop(self) -> bool:
        """Handle messages until the actor must leave its loop (``True``: to stop, to be
        supervised after a failure, or to follow an order of its supervisor) or must
        re-enter it in a cancel scope (``False``: the behaviour became async)."""
        q = self._mailbox
        throughput = self._throughput
        while True:
            if self._sysq is not None:
                action = self._take_system_requests()
                if action:
                    return action == STOP
            if not q:
                if self._recv_timeout is None and not _park_watchers:
                    # _park's common case, inlined: one coroutine less per park.
                    self._parked = _current_task()
                    await _wait_task_rescheduled(self._abort_park)
                else:
                    await self._park()
                continue
            n = start = throughput
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
                        envelope = (message, None, ACCEPTED)
                    elif kind == DETOUR:
                        self._processed += start - n
                        start = n
                        if await slot.run(self, (message, envelope[1], slot.inner)):  # type: ignore[union-attr, arg-type]
                            return True
                        continue
                    elif kind == NOTE:
                        self._uncounted -= 1
                        if (
                            slot is NEW_NOTE
                            and message.__class__ is Terminated
                            and not self._take_terminated(message.ref)
                        ):
                            continue
                        slot = None
                        envelope = (message, None, ACCEPTED)
                    else:
                        slot.unhandled = False  # type: ignore[union-attr]
                if (message is PoisonPill or message is Kill) and self._parent is not None:
                    # PoisonPill or Kill; also from a timer or an ask.
                    self._processed += start - n
                    self._take_control(message, slot)  # type: ignore[arg-type]
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
                        self._processed += start - n
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
            self._processed += start - n
            self._current = None
            if self._space is not None:
                self._wake_senders()
            if self._recv_timeout is not None:
                self._last_activity = trio.current_time()
            if q and self._sysq is None:
                await trio.lowlevel.checkpoint()

    def _take_control(self, message: Any, slot: Reply | None) -> None:
        """The loop reached ``PoisonPill`` (stop now) or ``Kill`` (fail now with
        :class:`ActorKilled`; the supervisor decides). An asker learns what happened:
        :class:`ActorDead` for the pill, the :class:`ActorKilled` for a kill."""
        self._current = None
        if message is PoisonPill:
            self._stop_requested = True
            if slot is not None:
                self._complete(
                    slot,
                    None,
                    ActorDead(self.ref.path, "was stopped by the PoisonPill it was asked"),
                )
            return
        error = ActorKilled(self.ref.path)
        if slot is not None:
            self._complete(slot, None, error)
        self._fail(error)

    async def _park(self) -> None:
        """Wait for a message or a system request (and deliver the receive timeout)."""
        timeout = self._recv_timeout
        self._parked = _current_task()
        if _park_watchers:  # the one check per park: a system.idle() waits (see _idle_and_started)
            _notify_parked(self)
        if timeout is None:
            await _wait_task_rescheduled(self._abort_park)
            return
        with trio.move_on_at(self._last_activity + timeout) as scope:
            await _wait_task_rescheduled(self._abort_park)
        if scope.cancelled_caught and self._recv_timeout is not None:
            self._last_activity = trio.current_time()
            if not self._mailbox:
                self._append_uncounted((self._recv_timeout_msg, None, NEW_NOTE))

    def _abort_park(self, _: Any) -> trio.lowlevel.Abort:
        self._parked = None
        return _Abort.SUCCEEDED

    def _take_system_requests(self) -> int:
        """0: go on; STOP: leave the loop (to stop, to be supervised after a failure, or
        to follow an order of its supervisor); RESCOPE: leave the loop to re-enter it in
        a cancel scope (the behaviour became async)."""
        requests, self._sysq = self._sysq, None
        assert requests is not None
        action = 0
        for index, (kind, arg) in enumerate(requests):
            if kind in (FAIL, BROKEN):
                error, drop_children = arg
                self._drop_children = drop_children
                self._fail(error)
                for later_kind, later_arg in requests[index + 1 :]:
                    if later_kind in (FAIL, BROKEN):  # report the others
                        self._fail(later_arg[0])
                        log_also_failed(self.ref.path, later_arg[0])
                return STOP
            if kind == STOP:
                return STOP
            if kind == ORDER:
                # A wake-up: the order itself is in _order (already followed if None).
                if self._order is not None:
                    action = STOP
            elif kind == RESCOPE and self._scope is None and action == 0:
                action = RESCOPE
        return action

    def _set_behavior(self, handler: Callable[[Any], Any], is_async: bool | None = None) -> None:
        """Handle the next messages with ``handler`` (``become``)."""
        self._behavior = handler
        if is_async is None:
            is_async = inspect.iscoroutinefunction(handler)
        self._behavior_async = is_async
        if is_async and self._scope is None:
            self._system_request(RESCOPE, None)

    def _unstash_last(self, envelope: Envelope) -> None:
        stash = self._stash
        if stash and stash[-1] is envelope:
            stash.pop()
