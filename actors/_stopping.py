"""How an actor stops, ends its life, and is watched.

Stopping is ordered: the actor finishes its current message (within its stop deadline,
then the handler is cancelled), stops its children one at a time, newest first, runs
``post_stop``, and only then is dead. At the end of its life (``_finalize``) nothing
queued is lost: every message left becomes a dead letter, every waiting asker is told,
its watchers get ``Terminated`` and its parent forgets it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import trio

from ._cell_state import DEAD, STOP, not_started
from ._delivery import Delivery
from ._envelope import NEW_NOTE
from ._errors import ActorError
from ._idle_and_started import notify_parked, park_watchers
from ._messages import ActorStopped, DeadLetterReason, Terminated
from ._pipes import cancel_pipes
from ._reply_later import fail_reply_handles
from ._runtime_log import DEBUG, lifecycle_log, log_lifecycle
from ._supervising import child_gone, stop_child

if TYPE_CHECKING:
    from ._actor import Actor
    from ._cell import ActorCell
    from ._ref import ActorRef


class Stopping(Delivery):
    """Stopping, the end of life and death watch."""

    __slots__ = ()

    # -- stopping ---------------------------------------------------------------------------

    def request_stop(self, deadline: float | None = None) -> None:
        """Ask the actor to stop after its current message. If it has not left its
        handler by ``deadline`` (default: now + ``stop_timeout``), it is cancelled.
        Returns at once; a no-op on a dead actor."""
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
            self._system_request(STOP, None)

    def is_dead(self) -> bool:
        return self._state == DEAD

    async def _stop_children(self) -> None:
        """Stop children one at a time, newest first, each with its own deadline."""
        children = self._children
        while children:
            name, child = next(reversed(children.items()))
            if child._state == DEAD:  # already gone (it leaves the dict when it ends)
                children.pop(name, None)
                continue
            stop_child(self, child)  # type: ignore[arg-type]
            await child._wait_terminated()

    async def _run_post_stop(self) -> None:
        if self._timers is not None:
            self._timers.cancel_all()
        if self._pipes:
            cancel_pipes(self)  # type: ignore[arg-type]
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

    async def _wait_ready(self) -> bool:
        """Wait until the actor has started (``True``) or has stopped (``False``); a
        start that fails and is restarted counts once the restart succeeds."""
        if not self._started and self._state != DEAD:
            if self._ready is None or self._ready.is_set():  # (set by an earlier start)
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

    def _in_subtree(self, task: trio.lowlevel.Task) -> bool:
        """Whether ``task`` runs this actor or one of its descendants."""
        pending: list[Stopping] = [self]
        while pending:
            cell = pending.pop()
            if cell._task is task:
                return True
            if cell._children:
                pending.extend(cell._children.values())
        return False

    # -- the end of life --------------------------------------------------------------------

    def _finalize(self) -> None:
        """Synchronous end of life: nothing queued is lost, everyone who asked is told."""
        self._state = DEAD
        self._parked = None
        self._sysq = None
        if self._timers is not None:
            self._timers.cancel_all()
        if self._pipes:
            cancel_pipes(self)  # type: ignore[arg-type]
        self.system.events._remove_subscriber(self.ref)  # first: no self-addressed mail
        try:
            self._drain()
        finally:
            try:
                self._say_goodbye()
            finally:
                # Refs may outlive the actor: keep nothing of it alive through them.
                self._instance = None
                self._factory = _gone
                self._behavior = not_started
                self._behaviors = None
                self._children = None
                self._timers = None
                self._recv_timeout_msg = None
                self._order = None
                if self._terminated is not None:
                    self._terminated.set()
                if self._ready is not None:
                    self._ready.set()
                if park_watchers:  # a system.idle() waits (see _idle_and_started)
                    notify_parked(self)

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
        if self._reply_handles:  # askers waiting on handles it took (reply_later)
            fail_reply_handles(self, "stopped before replying", self._reason)  # type: ignore[arg-type]

    def _say_goodbye(self) -> None:
        """Leave the parent and the watched; tell the watchers; never lose a failure."""
        if self._watching:
            for target in self._watching.values():
                target.unwatched_by(self)
            self._watching = None
        parent = self._parent
        siblings = None if parent is None else parent._children
        if siblings is not None and siblings.get(self._name) is self:
            del siblings[self._name]
        if parent is not None:
            child_gone(parent, self)  # type: ignore[arg-type]
        reason = self._reason
        if reason is not None:
            self.system._remember_failure(self.ref.address, reason)
        watchers, self._watchers = self._watchers, None
        for watcher in watchers or ():
            watcher._watched_terminated(self.ref, reason, True)
        events = self.system.events
        if events._subscriptions:
            events._publish_runtime(ActorStopped(self.ref, reason))
        if lifecycle_log.isEnabledFor(DEBUG):
            text = "%s stopped" if reason is None else "%s stopped: %r"
            log_lifecycle(self.ref.path, text, reason)

    # -- death watch ------------------------------------------------------------------------

    def watched_by(self, watcher: ActorCell) -> bool:
        """Register ``watcher``: it gets ``Terminated`` when this actor stops. ``False``
        (and nothing registered) if this actor is already dead."""
        if self._state == DEAD:
            return False
        if self._watchers is None:
            self._watchers = {}
        self._watchers[watcher] = None
        return True

    def unwatched_by(self, watcher: ActorCell) -> None:
        if self._watchers:
            self._watchers.pop(watcher, None)

    def _watched_terminated(
        self, ref: ActorRef, reason: BaseException | None, confirmed: bool
    ) -> bool:
        """Queue ``Terminated`` for a watched ref. Returns whether this watcher will
        process it (it is watching and not stopping)."""
        watching = self._watching
        if self._state == DEAD or not watching or ref not in watching:
            return False
        self._append_uncounted((Terminated(ref, reason, confirmed), None, NEW_NOTE))
        return not self._stop_requested

    def _take_terminated(self, ref: ActorRef) -> bool:
        """A queued ``Terminated`` reached the handler: deliver it only if the watch is
        still on (``unwatch`` withdraws one already queued), and end the watch."""
        watching = self._watching
        return watching is not None and watching.pop(ref, None) is not None


def _gone() -> Actor:
    raise ActorError("this actor has stopped")  # pragma: no cover - never called
