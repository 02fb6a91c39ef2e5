"""Mailboxes: their configuration (capacity, overflow policy) and the cell's side of them:
room, overflow, eviction, waiting for room and temporary bounds.

A cell's mailbox is a deque of envelopes (see ``_envelope.py``). ``_accept`` is where
every delivery into it ends (``tell``'s fast path inlines it): a stopped actor turns the
envelope into a dead letter (an ``ask`` fails with :class:`ActorDead`), a full one
applies the overflow policy, anything else is appended and the parked task woken. The
runtime's own entries bypass it, outside capacity: timer ticks and notes
(``_append_uncounted``), and messages accepted once already that return to the front
(``unstash_all``, the stash of a restarted instance).
"""

from __future__ import annotations

import enum
from typing import Any, Final

import attrs
import trio

from ._cell_state import DEAD, FAIL, CellState
from ._envelope import ASK, DETOUR, NOTE, Envelope, RemoteReply, Reply, roundtrip
from ._errors import ActorDead, ActorError, MailboxFull, MailboxOverflow, UnpicklableMessage
from ._messages import DeadLetterReason
from ._ref import ActorStats

_reschedule: Final = trio.lowlevel.reschedule
_current_task: Final = trio.lowlevel.current_task


class Overflow(enum.StrEnum):
    """What ``tell`` does when a bounded mailbox is full.

    ``await send`` and ``await ask`` always wait for room instead, whatever the policy.
    """

    BACKPRESSURE = "backpressure"
    """``tell`` raises :class:`MailboxFull`; nothing is enqueued (the caller keeps it).
    Deliveries by the runtime (events published on the bus, forwarded or delayed
    messages) that find no room become dead letters (``dropped_newest``)."""
    DROP_NEWEST = "drop_newest"
    """The new message goes to dead letters; the mailbox is unchanged."""
    DROP_OLDEST = "drop_oldest"
    """The oldest queued message goes to dead letters and the new one is enqueued. If the
    evicted message is an ``ask`` whose caller still waits, the caller gets
    :class:`MailboxFull` instead (no dead letter: someone was told). Timer ticks and
    ``Terminated`` are never evicted."""
    FAIL = "fail"
    """The new message goes to dead letters and the actor fails with
    :class:`MailboxOverflow` once it finishes its current message: one failure however
    many messages overflow before its supervisor has handled it."""


def _check_capacity(_: object, __: attrs.Attribute[int | None], value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"mailbox capacity must be an int >= 1 (or None), got {value!r}")


#: The tokens of :meth:`MailboxOps._limit_mailbox` for an unbounded mailbox, made once
#: (a persist in flight then keeps no tuple of its own).
_UNBOUNDED: Final[dict[Overflow | None, tuple[None, Overflow | None]]] = {
    overflow: (None, overflow) for overflow in [*Overflow, None]
}


@attrs.frozen
class Mailbox:
    """How an actor's mailbox is sized. ``capacity=None`` (the default) is unbounded.

    Capacity counts user messages only: stop requests and other system messages use a
    separate lane that is never full, and ``Terminated`` notifications, timer ticks and
    messages returned by ``unstash_all`` are always accepted (they come from the runtime
    on the actor's behalf, or were accepted once already).
    """

    capacity: int | None = attrs.field(default=None, validator=_check_capacity)
    overflow: Overflow = attrs.field(default=Overflow.BACKPRESSURE, converter=Overflow)


# What _accept does when the mailbox is full.
RAISE_IF_FULL: Final = 0  # tell: the overflow policy; backpressure raises MailboxFull
POLICY_IF_FULL: Final = 1  # runtime deliveries: the policy; backpressure dead-letters
ADMIT: Final = 2  # a place was reserved for it (send and ask wait for room first)


class MailboxOps(CellState):
    """The mailbox side of a cell (see the module documentation)."""

    __slots__ = ()

    # -- appending --------------------------------------------------------------------------

    def _accept(self, envelope: Envelope, on_full: int) -> None:
        """The end of every delivery into the mailbox but ``tell``'s fast path (which
        inlines it): dead, full (per ``on_full``) or appended."""
        if self._state == DEAD:
            self._discard(envelope, DeadLetterReason.STOPPED, "is not running")
            return
        q = self._mailbox
        capacity = self._capacity
        if (
            capacity is not None
            and on_full != ADMIT
            and len(q) - self._uncounted + self._granted >= capacity  # _is_full() inlined
        ):
            slot = envelope[2]
            if slot is not None and slot.kind == DETOUR:
                slot = slot.inner  # type: ignore[union-attr]
            if slot is not None and slot.kind == ASK:
                # An ask that was accepted once (forwarded, or released by a delivery
                # hook) and finds no room: its caller learns it, whatever the policy.
                assert self._capacity is not None
                self._complete(slot, None, MailboxFull(self.ref.path, self._capacity))  # type: ignore[arg-type]
            else:
                self._overflowed(envelope, raise_full=on_full == RAISE_IF_FULL)
            return
        q.append(envelope)
        task = self._parked
        if task is not None:
            self._parked = None
            _reschedule(task)

    def _accept_many(self, envelopes: list[Envelope], on_full: int) -> None:
        """:meth:`_accept` of each envelope, in order: all appended at once (one
        wake-up) when the mailbox is unbounded and the actor not dead."""
        if self._capacity is None and self._state != DEAD:
            self._mailbox.extend(envelopes)
            task = self._parked
            if task is not None:
                self._parked = None
                _reschedule(task)
            return
        for envelope in envelopes:
            self._accept(envelope, on_full)

    def _append_uncounted(self, envelope: Envelope) -> None:
        """Enqueue a timer tick or a note: outside capacity, never dropped by overflow."""
        if self._state != DEAD:
            self._uncounted += 1
            self._mailbox.append(envelope)
            self._wake()

    def _wake(self) -> None:
        """Reschedule the actor's task if it is parked (on an empty mailbox, or waiting
        for an order of its supervisor)."""
        task = self._parked
        if task is not None:
            self._parked = None
            _reschedule(task)

    def _system_request(self, kind: int, arg: Any) -> None:
        """Queue a request on the system lane (never bounded) and wake the actor."""
        if self._state == DEAD:
            return
        if self._sysq is None:
            self._sysq = [(kind, arg)]
        else:
            self._sysq.append((kind, arg))
        self._wake()

    # -- room and overflow ------------------------------------------------------------------

    def _is_full(self) -> bool:
        """No free place: places promised to woken senders are not free for others."""
        capacity = self._capacity
        return (
            capacity is not None
            and len(self._mailbox) - self._uncounted + self._granted >= capacity
        )

    def _overflowed(self, envelope: Envelope, *, raise_full: bool) -> None:
        """Apply the overflow policy to ``envelope`` (not an ask), which found no room."""
        policy = self._overflow
        capacity = self._capacity
        assert capacity is not None
        if policy is Overflow.BACKPRESSURE:
            if raise_full:
                raise MailboxFull(self.ref.path, capacity)
            self._discard(envelope, DeadLetterReason.DROPPED_NEWEST)
        elif policy is Overflow.DROP_NEWEST:
            self._discard(envelope, DeadLetterReason.DROPPED_NEWEST)
        elif policy is Overflow.DROP_OLDEST:
            oldest = self._pop_oldest_counted()
            if oldest is None:
                # Every place is promised to a waiting sender, whose message is older.
                self._discard(envelope, DeadLetterReason.DROPPED_NEWEST)
                return
            self._accept(envelope, ADMIT)
            # After the append: the dead letter may re-enter this mailbox (a subscriber).
            self._discard(oldest, DeadLetterReason.DROPPED_OLDEST)
        elif policy is None:  # restarting: the restart stash is full
            self._discard(envelope, DeadLetterReason.RESTART_STASH_OVERFLOW)
        else:
            self._discard(envelope, DeadLetterReason.MAILBOX_OVERFLOW)
            if not self._overflow_reported:  # one failure, however many overflow meanwhile
                self._overflow_reported = True
                self._system_request(FAIL, (MailboxOverflow(self.ref.path, capacity), False))

    def _pop_oldest_counted(self) -> Envelope | None:
        """Remove and return the oldest envelope that counts against capacity (timer ticks
        and notes are never evicted), or ``None`` if there is none."""
        q = self._mailbox
        for index, envelope in enumerate(q):
            slot = envelope[2]
            if slot is None or slot.kind == ASK or slot.kind == DETOUR:
                del q[index]
                return envelope
        return None

    def _discard(
        self,
        envelope: Envelope,
        reason: DeadLetterReason,
        detail: str = "stopped before replying",
    ) -> None:
        """Account for an envelope that will never be handled: a dead letter, or for an
        ask whose caller still waits, an error raised in the caller (:class:`MailboxFull`
        for an eviction, else :class:`ActorDead` with ``detail`` and, if the actor
        stopped because of an error, that error as its cause). Timer ticks vanish:
        timers end with their actor."""
        message, sender, slot = envelope
        if slot is not None and slot.kind == DETOUR:
            slot = slot.inner  # type: ignore[union-attr]
        if slot is None or slot.kind == NOTE:
            self.system._dead_letter(message, sender, self.ref, reason)
        elif slot.kind == ASK:
            assert isinstance(slot, Reply)
            if slot.task is None:
                self.system._dead_letter(message, sender, self.ref, reason)
                return
            error: ActorError
            if reason is DeadLetterReason.DROPPED_OLDEST:
                assert self._capacity is not None
                error = MailboxFull(self.ref.path, self._capacity)
            else:
                error = ActorDead(self.ref.path, detail, self._reason)
            self._complete(slot, None, error)

    def _complete(self, reply: Reply, value: Any, error: BaseException | None) -> None:
        """Answer an ask: wake its caller with ``value`` or ``error``. A caller that gave
        up gets nothing; the late answer goes to its sender ref (if it named one) as a
        dead letter (``ask_expired``)."""
        task = reply.task
        if task is None:
            late = error if error is not None else value
            recipient = reply.sender or self.ref
            self.system._dead_letter(late, self.ref, recipient, DeadLetterReason.ASK_EXPIRED)
            return
        if self._roundtrip:
            value, error = self._copy_answer(value, error)
        reply.task = None
        reply.value = value
        reply.error = error
        if reply.parked:
            _reschedule(task)
        elif reply.__class__ is RemoteReply:  # asked from another process: send it back
            reply.answered(reply)

    def _copy_answer(
        self, value: Any, error: BaseException | None
    ) -> tuple[Any, BaseException | None]:
        """The answer to an ask under ``roundtrip_messages``: copied through cloudpickle
        (an answer that cannot be pickled becomes :class:`UnpicklableMessage`). A cell
        for an actor in another process keeps the answer as it came off the wire."""
        try:
            if error is None:
                return roundtrip(value), None
            return None, roundtrip(error)
        except UnpicklableMessage as exc:
            return None, exc

    async def _wait_for_room(self) -> None:
        """Wait until a place is free (and reserved for this caller) or the actor has
        stopped. A checkpoint only if it has to wait."""
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

    # -- temporary bounds -------------------------------------------------------------------

    def _suspend(self) -> None:
        """While the supervisor decides and a restart (or its backoff) runs, the mailbox
        is the restart stash: it holds at most ``restart_stash_capacity`` messages, and
        more go to dead letters (``restart_stash_overflow``). A mailbox whose own bound
        is tighter keeps its own bound and policy."""
        if self._suspended is not None:
            return
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
        tight keeps its own (token ``None``). A hook for extensions: a persistent actor
        bounds its mailbox this way while it persists or recovers."""
        capacity = bound.capacity
        if capacity is None or (self._capacity is not None and self._capacity <= capacity):
            return None
        own = self._capacity
        saved = _UNBOUNDED[self._overflow] if own is None else (own, self._overflow)
        self._capacity = capacity
        self._overflow = bound.overflow
        return saved

    def _lift_limit(self, saved: tuple[int | None, Overflow | None] | None) -> None:
        """Undo :meth:`_limit_mailbox` (``saved``: its token)."""
        if saved is not None:
            self._capacity, self._overflow = saved
            if self._space is not None:
                self._wake_senders()

    # -- statistics -------------------------------------------------------------------------

    def queued(self) -> int:
        """How many messages wait in the mailbox (``stats().mailbox``, cheaper)."""
        return len(self._mailbox)

    def stats(self) -> ActorStats:
        """This actor's figures now (see :class:`ActorStats`)."""
        return ActorStats(
            alive=self._state != DEAD,
            mailbox=len(self._mailbox),
            capacity=self._capacity,
            stashed=len(self._stash) if self._stash else 0,
            processed=self._processed,
            restarts=self._restarts,
        )
