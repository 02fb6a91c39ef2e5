"""The root's cell for an actor it placed on a worker process.

The actor itself runs in the worker (``_worker_host.py``). Its cell here is a full
:class:`ActorCell` in the root's tree, under the parent that spawned it: it has the
actor's ref, its watchers, its place in the parent's restart engine, and a mailbox in
which what is sent to the actor waits, in order, until it is passed on. Its instance is
a stand-in, :class:`Placed`, whose handler passes every message on to the worker and
whose lifecycle hooks drive the real instance's: so the parent supervises an actor in
another process with the code that supervises any actor (one-for-one, one-for-all,
intensity, backoff, ordered stops), and only the stand-in knows about the link.

What is told or asked is pickled at the call (the cell copies with ``Encoded.of``
instead of a round trip), so an unpicklable message raises there, and is passed on as
bytes. What the worker reports:

* ``started``: the stand-in's ``pre_start`` / ``post_restart`` return;
* ``failed``: the actor's handler (or start) raised; the cell fails with that error, as
  if its own handler had raised it, and its parent decides. The verdict goes back as an
  order: ``resume``, ``down`` then ``up`` (a restart: the old instance's
  ``pre_restart`` runs there, the new one starts there), or ``stop``;
* ``terminated``: the actor stopped (a ``PoisonPill``, ``context.stop``, a stop
  verdict): the cell stops with its reason, and its watchers get ``Terminated``;
* the worker process is lost: the cell fails with :class:`ProcessLost` as if killed
  (``_crash``: no hooks for the lost instance), askers waiting on it get
  :class:`ActorDead` at once, and a restart starts the actor afresh on the worker that
  replaces the lost one.
"""

from __future__ import annotations

import contextlib
import enum
import functools
import math
import threading
from typing import TYPE_CHECKING, Any, Final

import trio

from ._actor import Actor
from ._address import Address
from ._ask_deadlines import check_timeout
from ._cell import ActorCell
from ._cell_state import DEAD, FAIL, RUNNING
from ._delivery import take_answer
from ._envelope import ASK, Envelope, Reply
from ._errors import ActorDead, ActorError, ActorInitializationError, ProcessLost
from ._messages import DeadLetterReason
from ._node import Encoded
from ._ref import ActorRef
from ._reply_later import take_reply_handle

if TYPE_CHECKING:
    from ._mailbox import Mailbox
    from ._reply_later import ReplyHandle
    from ._system import ActorSystem
    from ._worker_pool import RootNode

_get_ident: Final = threading.get_ident
_current_task: Final = trio.lowlevel.current_task
_reschedule: Final = trio.lowlevel.reschedule
_wait_task_rescheduled: Final = trio.lowlevel.wait_task_rescheduled
_checkpoint_if_cancelled: Final = trio.lowlevel.checkpoint_if_cancelled


class Remote(enum.IntEnum):
    """The state of the real instance, as the root knows it."""

    NONE = 0  # no instance there (not spawned yet, or its process was lost)
    STARTING = 1  # spawned or told "up": waiting for "started"
    UP = 2  # running
    WAITING = 3  # it failed: waiting for the verdict
    DOWN = 4  # taken down for a restart: waiting for "up"
    GONE = 5  # terminated


_UP: Final = Remote.UP


class _Answer:
    """What a hook of the stand-in waits for: the worker's report that the real
    instance has ``started``, is ``down``, or is ``gone`` (stopped)."""

    __slots__ = ("error", "event", "kind")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.event = trio.Event()
        self.error: BaseException | None = None

    def settle(self, error: BaseException | None) -> None:
        if not self.event.is_set():
            self.error = error
            self.event.set()


class HandleAsk:
    """An ask passed on to the worker, answered through the reply handle the stand-in
    took (as ``PendingAsk`` for a task that waits)."""

    __slots__ = ("handle", "node", "path")

    def __init__(self, node: str, path: str, handle: ReplyHandle) -> None:
        self.node = node
        self.path = path
        self.handle = handle

    def settle(self, value: Any, error: BaseException | None) -> bool:
        handle = self.handle
        if not handle.pending:
            return False
        if error is None:
            handle.reply(value)
        else:
            handle.fail(error if isinstance(error, Exception) else ActorError(repr(error)))
        return True


class SlotAsk:
    """An ask passed on to the worker straight from its caller: the caller's reply
    slot is answered when the reply comes back (through the cell, as its own answer)."""

    __slots__ = ("cell", "node", "path", "slot")

    def __init__(self, cell: RemoteChildCell, slot: Reply) -> None:
        self.cell = cell
        self.node = cell._host  # (if it is lost, the ask fails at once)
        self.path = cell.ref.address.path
        self.slot = slot

    def settle(self, value: Any, error: BaseException | None) -> bool:
        slot = self.slot
        task = slot.task
        if task is None:
            return False  # its caller gave up: a late answer
        if slot.parked and slot.__class__ is Reply:  # (_complete, inline: a waiting task)
            slot.task = None
            slot.value = value
            slot.error = error
            _reschedule(task)
        else:
            self.cell._complete(slot, value, error)
        return True


class Placed(Actor):
    """The stand-in instance (see the module documentation)."""

    def _remote(self) -> RemoteChildCell:
        cell = self._actor_cell
        assert isinstance(cell, RemoteChildCell)
        return cell

    def receive(self, message: Any) -> None:
        self._remote()._pass_on(message)

    async def pre_start(self) -> None:
        await self._remote()._remote_start(None)

    async def post_restart(self, error: BaseException) -> None:
        await self._remote()._remote_start(error)

    async def pre_restart(self, error: BaseException, message: Any) -> None:
        await self._remote()._remote_down(error)


_PLACED: Final = Placed

START_ATTEMPTS: Final = 3
"""How many processes a start is tried on when the process is lost during it."""


class RemoteChildCell(ActorCell):
    """See the module documentation."""

    __slots__ = (
        "_answer",
        "_host",
        "_placed_class",
        "_remote_state",
        "_root",
        "_spawn_frame",
        "_target",
    )

    def __init__(
        self,
        system: ActorSystem,
        parent: ActorCell,
        name: str,
        path: str,
        uid: int,
        factory: Any,
        mailbox: Mailbox,
        throughput: int,
        stash_capacity: int,
        strategy: Any,
        *,
        root: RootNode,
        node: str,
        pickled_factory: bytes,
        address_node: str | None = None,
    ) -> None:
        super().__init__(
            system, parent, name, path, uid, _PLACED, mailbox, throughput, stash_capacity
        )
        # Its address names the node it runs on (a worker's name stays when its process is
        # replaced), or (``address_node``, a cluster) the parent's node, so that the ref
        # stays valid when a restart places it on another node.
        address = Address(system.name, path, uid, address_node or node)
        self.ref = ActorRef._create(address, self)
        self._target = self.ref.address
        self._host = node  # where the real instance runs now
        self._root = root
        made: object = factory
        while isinstance(made, functools.partial):
            made = made.func
        # The class it runs there, for describe() (None if the factory is no class).
        self._placed_class = made.__qualname__ if isinstance(made, type) else None
        self._remote_state = Remote.NONE
        self._answer: _Answer | None = None
        # What the worker needs to make the real instance (the factory pickled at spawn).
        self._spawn_frame = (
            "spawn",
            self.ref.address,
            pickled_factory,
            mailbox,
            throughput,
            stash_capacity,
            strategy,
        )
        # Every delivery copies (pickles) at the call: see _copy_message.
        self._roundtrip = True
        self._slow = True
        root.adopt(node, self)  # (counted there from now on: AnyWorker("least_loaded"))

    # -- delivery: pickled at the call, passed on in order --------------------------------------

    def _copy_message(self, message: Any) -> Any:
        if message.__class__ is Encoded:
            return message
        return Encoded(self._root.encode(message), type(message))

    def _copy_answer(
        self, value: Any, error: BaseException | None
    ) -> tuple[Any, BaseException | None]:
        return value, error  # it came off the wire: already a copy

    def _nothing_ahead(self) -> bool:  # (inline in tell: keep both the same)
        """Whether a message may go to the worker at once, from the sender's task: the
        real instance is up, and this cell's mailbox is empty and it handles nothing (so
        the order of messages is kept)."""
        return (
            self._remote_state is _UP
            and not self._mailbox
            and self._current is None
            and self._sysq is None
            and self._state == RUNNING
            and not self._stop_requested
        )

    def tell(self, message: Any, sender: ActorRef | None) -> None:
        """``ActorRef.tell``. The fast path, with no delivery hook installed and nothing
        ahead of it: pickled and sent at once. Else through the delivery seam, as any
        tell (and :meth:`_accept` below)."""
        if (  # (_nothing_ahead, inline: the fast path of a stream of tells)
            self._remote_state is _UP
            and not self._mailbox
            and self._current is None
            and self._sysq is None
            and self._state == RUNNING
            and not self._stop_requested
            and not self.system._delivery_hooks
            and self._thread == _get_ident()
            and self._root.tell_now(self._target, message, sender)
        ):
            return
        super().tell(message, sender)

    async def ask(self, message: Any, timeout: float | None, sender: ActorRef | None) -> Any:
        """``ActorRef.ask``. The fast path, as :meth:`tell`'s (no delivery hook, nothing
        ahead, the link to the worker up): the question is pickled and sent from the
        caller's task, with no copy wrapper and no delivery seam, and the caller waits
        for the answer as any asker does (cancelled: a late answer is a dead letter).
        Else ``ActorCell.ask``, which ends in :meth:`_accept` below."""
        if self.system._delivery_hooks or self._thread != _get_ident() or not self._nothing_ahead():
            return await super().ask(message, timeout, sender)
        await _checkpoint_if_cancelled()  # cancelled: nothing is sent
        system = self.system
        if timeout is None:
            timeout = system.settings.ask_timeout
        elif timeout.__class__ is not float or not timeout > 0:
            timeout = check_timeout(timeout)  # (an int, or an error to raise)
        root = self._root
        reply = Reply(_current_task(), self.ref.path, message, timeout, sender)
        if not root.try_ask(self, root.encode(message), sender, reply):
            return await super().ask(message, timeout, sender)  # (the link is down)
        if timeout != math.inf:
            system._ask_deadlines.add(trio.current_time() + timeout, reply)
        reply.parked = True
        await _wait_task_rescheduled(reply.abort)
        return take_answer(reply)

    def _accept(self, envelope: Envelope, on_full: int) -> None:
        """Where a delivery ends (after the delivery hooks): passed on to the worker at
        once when nothing is ahead of it (:meth:`_nothing_ahead`); else into the
        mailbox, to be passed on in turn by the stand-in (or to wait for a restart)."""
        if self._nothing_ahead():
            message, sender, slot = envelope
            if slot is None:
                if self._root.try_tell(self._target, self._root.encode(message), sender):
                    return
            elif slot.kind == ASK:
                assert isinstance(slot, Reply)
                if self._root.try_ask(self, self._root.encode(message), sender, slot):
                    return
        super()._accept(envelope, on_full)

    def _pass_on(self, message: Any) -> None:
        """The stand-in's handler: send the message in hand to the real instance."""
        envelope = self._current
        assert envelope is not None
        _, sender, slot = envelope
        target = self.ref.address
        root = self._root
        asked = isinstance(slot, Reply)
        try:
            payload = root.encode(message)
        except ActorError:  # (a runtime delivery that was not copied)
            if asked:
                raise
            self.system._dead_letter(message, sender, self.ref, DeadLetterReason.UNPICKLABLE)
            return
        if isinstance(slot, Reply):
            handle = take_reply_handle(self, envelope)
            # The question waits in the real instance's mailbox now, where a restart
            # keeps it: a restart of this cell must not fail it (as it would fail the
            # handles its own instance took). A lost process or a stop fails it.
            if self._reply_handles is not None:
                self._reply_handles.pop(handle, None)
            ask_id = next(root._ask_ids)
            timeout = slot.timeout
            root._asks[ask_id] = HandleAsk(self._host, target.path, handle)  # type: ignore[assignment]
            try:
                root.send_bytes(
                    self._host, root.ask_frame(ask_id, target, sender, payload, timeout)
                )
            except ActorError as error:
                root._asks.pop(ask_id, None)
                handle.fail(ActorDead(target.path, "could not be reached", error))
            return
        root.tell_remote(target, payload, sender, via=self._host)

    # -- the real instance's lifecycle ----------------------------------------------------------

    async def _await_report(self, kind: str) -> None:
        answer = self._answer = _Answer(kind)
        try:
            await answer.event.wait()
        finally:
            self._answer = None
        if answer.error is not None:
            raise answer.error

    async def _remote_start(self, restarted: BaseException | None) -> None:
        """Start the real instance (``up`` after a take-down, else ``spawn``, on the
        worker's current process) and wait until it has started. A process lost during
        the start is waited out: the start is tried again on the next process, up to
        :data:`START_ATTEMPTS` times (a constructor that kills its process every time
        fails the start then)."""
        root = self._root
        node = self._host
        for attempt in range(1, START_ATTEMPTS + 1):
            try:
                if self._remote_state == Remote.DOWN:
                    self._remote_state = Remote.STARTING
                    root.send_frame(node, ("order", self.ref.address, "up", None))
                else:
                    node = self._host = await root.host_for(self)
                    self._remote_state = Remote.STARTING
                    root.adopt(node, self)
                    root.send_frame(node, self._spawn_frame)
                await self._await_report("started")
            except ProcessLost:
                self._remote_state = Remote.NONE
                if attempt == START_ATTEMPTS:
                    raise
                continue
            except ActorInitializationError as error:
                # Raised there by the real instance's start: report its cause, which
                # this start wraps again (one ActorInitializationError, same path).
                cause = error.__cause__
                raise (cause if isinstance(cause, Exception) else error) from None
            return

    async def _remote_down(self, error: BaseException) -> None:
        if self._remote_state not in (Remote.UP, Remote.WAITING):
            return
        try:
            self._root.send_frame(self._host, ("order", self.ref.address, "down", error))
            await self._await_report("down")
        except ProcessLost:
            self._remote_state = Remote.NONE  # nothing left to take down: spawn afresh
            return
        self._remote_state = Remote.DOWN

    async def _recover(self, error: BaseException, message: Any) -> bool:
        go_on = await super()._recover(error, message)
        if go_on and self._remote_state == Remote.WAITING:  # resumed
            self._remote_state = Remote.UP
            self._send_order("resume", None)
        return go_on

    async def _run_post_stop(self) -> None:
        await super()._run_post_stop()
        if self._remote_state not in (Remote.NONE, Remote.GONE):
            # The real instance stops (its children first, then its post_stop), there.
            with trio.move_on_after(self.system.settings.stop_timeout):
                if self._send_order("stop", None):
                    with contextlib.suppress(Exception):
                        await self._await_report("gone")
        self._remote_state = Remote.GONE
        self._root.fail_asks_to(
            self.ref.address, ActorDead(self.ref.path, "stopped before replying", self._reason)
        )
        self._root.release(self._host, self.ref.address)

    def _send_order(self, what: str, error: BaseException | None) -> bool:
        try:
            self._root.send_frame(self._host, ("order", self.ref.address, what, error))
        except ActorError:
            return False
        return True

    # -- reports from the worker -----------------------------------------------------------------

    def _settle(self, kind: str, error: BaseException | None) -> bool:
        """Settle the answer a hook waits for, if it is of ``kind``: at once, so that
        the next report read with it (say, a failure right after a start) is handled
        as the state it leaves."""
        answer = self._answer
        if answer is None or answer.kind != kind or answer.event.is_set():
            return False
        self._answer = None
        answer.settle(error)
        return True

    def _reported_started(self) -> None:
        if self._settle("started", None):
            self._remote_state = Remote.UP

    def _reported_down(self) -> None:
        if self._settle("down", None):
            self._remote_state = Remote.DOWN

    def _reported_failure(self, error: BaseException) -> None:
        self._remote_state = Remote.WAITING
        if self._settle("started", error):
            return  # the start waiting for it fails (its supervisor decides)
        answer = self._answer
        if answer is not None and not answer.event.is_set():
            return  # a take-down or a stop is under way: it follows the order given
        if self._state != DEAD and not self._stop_requested:
            self._system_request(FAIL, (error, False))

    def _reported_terminated(self, reason: BaseException | None) -> None:
        self._remote_state = Remote.GONE
        answer = self._answer
        if answer is not None and not answer.event.is_set():
            self._answer = None
            answer.settle(
                None
                if answer.kind == "gone"
                else ActorDead(self.ref.path, "stopped in its worker process", reason)
            )
        if self._state != DEAD and not self._stop_requested:
            if self._reason is None:
                self._reason = reason
            self.request_stop()

    def _process_lost(self, error: ProcessLost) -> None:
        """Its worker process is gone (see the module documentation)."""
        was = self._remote_state
        self._remote_state = Remote.NONE
        answer = self._answer
        if answer is not None and not answer.event.is_set():
            self._answer = None
            answer.settle(error)  # (a start tries again on the next process)
            return
        if was == Remote.GONE or self._state == DEAD or self._stop_requested:
            return
        if not self._crash(error):
            # Starting, restarting or already failing: the failure it reports is this.
            self._system_request(FAIL, (error, False))
