"""The root process's side of worker processes: starting them, their links, placing
actors on them, losing them, and stopping them.

Each worker is a **slot** (``"w1"``, ...) filled by one process at a time. A process is
started with ``trio.lowlevel.open_process`` (never ``fork``) running
``python -m actors._worker_main FD``, where ``FD`` is its end of an AF_UNIX socket pair
passed with ``pass_fds``; the system's key goes in its environment (which the worker
removes from its own environment as it reads it), never in its arguments. Both ends
prove they hold the key (``_handshake.py``) before anything is unpickled; then the root
sends ``hello`` (the system's name, the node's name, the settings and ``sys.path``, so
that factories and messages pickled by reference import there).

When a slot's process is lost (its link ends without the root having asked it to stop),
every actor placed there fails with :class:`ProcessLost` (``_remote_child.py``), asks
waiting for them fail at once, and the slot starts a new process: at once, or after a
backoff that doubles while processes keep dying soon after their start
(``Workers.restart_window``). Restarted actors wait until the slot's new process is up.

Leaving ``open_system`` first stops every actor (those on workers too, children first),
then tells each worker to exit and waits for it, within ``Workers.stop_timeout``, after
which it is killed. A worker whose link closes without a word (the root was killed)
stops its actors and exits by itself.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import pickle
import secrets
import socket
import sys
from typing import TYPE_CHECKING, Any, Final

import attrs
import trio

from ._errors import ActorError, ProcessLost, WorkerError
from ._handshake import handshake
from ._link import Link
from ._node import MAX_MESSAGE, PICKLE_PROTOCOL, SHORTEST_MAIN, Node, dumps
from ._placement import AnyWorker, OnWorker, OwnProcess, Workers
from ._remote_child import RemoteChildCell, SlotAsk

if TYPE_CHECKING:
    from ._address import Address
    from ._envelope import Reply
    from ._ref import ActorRef
    from ._system import ActorSystem

_log: Final = logging.getLogger("actors.workers")
KEY_ENV: Final = "TRIO_ACTORS_WORKER_KEY"


@attrs.frozen
class WorkerInfo:
    """One worker of a system (``system.workers()``)."""

    name: str
    """The node's name: ``"w1"``, ``"w2"``, ..."""
    pid: int | None
    """The PID of its current process (``None`` while none runs)."""
    state: str
    """``"starting"``, ``"up"``, ``"restarting"`` (its process was lost), ``"stopping"``
    or ``"stopped"``."""
    actors: int
    """How many actors placed from the root run there now."""
    restarts: int
    """How many times its process was lost and started again."""


_pickle_dumps: Final = pickle.dumps


class WorkerSlot:
    """One worker: its current process, link and the actors placed on it."""

    def __init__(self, name: str, *, own: bool = False) -> None:
        self.name = name
        self.own = own  # a process of its own for one actor (OwnProcess)
        self.process: trio.Process | None = None
        self.link: Link | None = None
        self.state = "starting"
        self.ready = trio.Event()
        self.placed: dict[Address, RemoteChildCell] = {}
        self.restarts = 0
        self.stopping = False
        self.started_at = 0.0

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid


class RootNode(Node):
    """The root process's node: its worker slots and their links."""

    def __init__(self, system: ActorSystem, config: Workers) -> None:
        super().__init__(system)
        self.config = config
        self.key = secrets.token_bytes(32)
        self.slots = {name: WorkerSlot(name) for name in config.names()}
        self.slots_of_pool = list(self.slots)
        self._round_robin = itertools.cycle(self.slots_of_pool)
        self._own_count = 0
        # The target, sender and head of the last tell_now (a burst reuses the head).
        self._last_target: Address | None = None
        self._last_sender: ActorRef | None = None
        self._last_head = b""

    # -- placement -----------------------------------------------------------------------------

    def choose(self, placement: OnWorker | AnyWorker | OwnProcess) -> str:
        if isinstance(placement, OwnProcess):
            return self._own_process()
        if not self.slots_of_pool:
            raise ValueError(
                f"placement={placement!r} needs workers: this system has none "
                "(open_system(workers=n) with n >= 1), only processes of their own"
            )
        if isinstance(placement, OnWorker):
            if placement.name not in self.slots_of_pool:
                raise ValueError(
                    f"no worker named {placement.name!r}: this system has "
                    f"{', '.join(self.slots_of_pool)}"
                )
            return placement.name
        if placement.choose == "least_loaded":
            pool = [self.slots[name] for name in self.slots_of_pool]
            return min(pool, key=lambda slot: len(slot.placed)).name
        return next(self._round_robin)

    def _own_process(self) -> str:
        """A new slot for one actor (see :class:`OwnProcess`), its process starting."""
        nursery = self._nursery
        if nursery is None:  # pragma: no cover - the pool runs before any spawn
            raise WorkerError("the worker processes of this system are not running")
        self._own_count += 1
        name = f"p{self._own_count}"
        slot = self.slots[name] = WorkerSlot(name, own=True)
        nursery.start_soon(self._run_own_slot, slot)
        return name

    async def _run_own_slot(self, slot: WorkerSlot) -> None:
        try:
            await self._run_slot(slot)
        except WorkerError as error:
            # Its actor waits for it: that start fails, for its supervisor to decide.
            slot.stopping = True
            slot.ready.set()
            _log.error("%s", error)
        finally:
            self.slots.pop(slot.name, None)

    def release(self, node: str, address: Address) -> None:
        """The actor at ``address``, placed on ``node``, has stopped: a process of its
        own stops too."""
        slot = self.slots.get(node)
        if slot is None:
            return
        slot.placed.pop(address, None)
        if not slot.own or slot.placed:
            return
        slot.stopping = True
        slot.ready.set()
        link = slot.link
        if link is not None and not link.closed:
            with contextlib.suppress(ActorError):
                link.send(dumps(("shutdown",)))
            link.close("its actor has stopped")

    def adopt(self, node: str, cell: RemoteChildCell) -> None:
        self.slots[node].placed[cell.ref.address] = cell

    async def host_for(self, cell: RemoteChildCell) -> str:
        """Where ``cell``'s real instance starts: its worker, once that has a process up
        (:meth:`wait_ready`)."""
        await self.wait_ready(cell._host)
        return cell._host

    async def wait_ready(self, node: str) -> None:
        """Wait until the slot ``node`` has a process up (a restart after a loss may have
        to wait for one). :class:`WorkerError` if the system is shutting down."""
        slot = self.slots.get(node)
        while slot is not None and not slot.ready.is_set() and not slot.stopping:
            await slot.ready.wait()
        if slot is None or slot.stopping:
            raise WorkerError(f"worker {node} is stopping; nothing more starts there")

    def infos(self) -> list[WorkerInfo]:
        return [
            WorkerInfo(slot.name, slot.pid, slot.state, len(slot.placed), slot.restarts)
            for slot in self.slots.values()
        ]

    # -- frames -----------------------------------------------------------------------------------

    def tell_now(self, target: Address, message: Any, sender: ActorRef | None) -> bool:
        """:meth:`try_tell` of ``message``, pickled here (:meth:`encode`: raises at the
        call if it cannot be) if the link to its worker is up; ``False`` (nothing
        pickled or sent) if it is not. The fast path of ``tell`` to an actor placed on a
        worker: a burst of tells to one actor from one sender checks its worker, finds
        its head and adds to one frame (``Link.append``) per message."""
        slot = self.slots.get(target.node)
        if slot is None or slot.state != "up" or (link := slot.link) is None:
            return False
        try:  # (encode, inline for the common case, as dumps does: plain pickle will do)
            payload = _pickle_dumps(message, PICKLE_PROTOCOL)
        except Exception:
            payload = self.encode(message)
        else:
            size = len(payload)
            if size > SHORTEST_MAIN and (size > MAX_MESSAGE or payload.find(b"__main__") >= 0):
                payload = self.encode(message)
        if sender is self._last_sender and target is self._last_target:
            head = self._last_head
        else:
            known = self.tell_head(target, sender)
            if known is None:
                return self.try_tell(target, payload, sender)
            head = self._last_head = known
            self._last_target = target
            self._last_sender = sender
        try:
            link.append(head, payload)  # (LinkClosed if it has closed)
        except ActorError:
            return False
        return True

    def try_tell(self, target: Address, payload: bytes, sender: ActorRef | None) -> bool:
        """Send a tell now if the link to its worker is up (``True``); ``False`` to
        leave it to the mailbox of its cell (nothing sent)."""
        slot = self.slots.get(target.node)
        if slot is None or slot.state != "up" or (link := slot.link) is None:
            return False
        head = self.tell_head(target, sender)
        try:
            if head is None:
                self.send_tell(target.node, target, sender, payload)
            else:
                link.append(head, payload)  # (LinkClosed if it has closed)
        except ActorError:
            return False
        return True

    def try_ask(
        self, cell: RemoteChildCell, payload: bytes, sender: ActorRef | None, reply: Reply
    ) -> bool:
        """Send an ask now for its caller (``reply``: the caller's slot, answered when the
        reply comes back), as :meth:`try_tell`."""
        target = cell._target
        slot = self.slots.get(target.node)
        if slot is None or slot.state != "up" or (link := slot.link) is None:
            return False
        ask_id = next(self._ask_ids)
        try:
            link.send(self.ask_frame(ask_id, target, sender, payload, reply.timeout))
        except ActorError:  # (LinkClosed if it has closed)
            return False
        self._asks[ask_id] = SlotAsk(cell, reply)  # type: ignore[assignment]
        return True

    def send_bytes(self, node: str, data: bytes) -> None:
        self._link_to(node).send(data)

    def send_part(self, node: str, head: bytes, part: bytes) -> None:
        self._link_to(node).append(head, part)

    def _link_to(self, node: str) -> Link:
        """The link to worker ``node``; :class:`ProcessLost` if it has none up."""
        slot = self.slots.get(node)
        if slot is None:
            raise ProcessLost(node, None, "this system has no worker of that name")
        link = slot.link
        if link is None or link.closed or slot.state != "up":
            raise ProcessLost(node, slot.pid, f"it is {slot.state}")
        return link

    def _on_frame(self, slot: WorkerSlot, payload: bytes) -> None:
        if self.on_binary_frame(slot.name, payload):
            return
        try:
            frame = pickle.loads(payload)
        except Exception as error:
            _log.warning(
                "a frame of %d bytes from worker %s could not be unpickled: %r",
                len(payload),
                slot.name,
                error,
            )
            return
        if self.on_frame(slot.name, frame):
            return
        kind = frame[0]
        cell = slot.placed.get(frame[1]) if len(frame) > 1 else None
        if kind == "started":
            if cell is not None:
                cell._reported_started()
        elif kind == "down":
            if cell is not None:
                cell._reported_down()
        elif kind == "failed":
            _, address, error_payload = frame
            if cell is not None:
                cell._reported_failure(_error_from(error_payload, address))
        elif kind == "terminated":
            _, address, reason_payload = frame
            reason = None if reason_payload is None else _error_from(reason_payload, address)
            slot.placed.pop(address, None)
            if cell is not None:
                cell._reported_terminated(reason)
        else:
            _log.warning("worker %s sent an unknown frame %r", slot.name, kind)

    # -- the processes ------------------------------------------------------------------------

    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run every slot until the system shuts the workers down (:meth:`shut_down`).
        Returns from ``nursery.start`` once every worker is up (or raises
        :class:`WorkerError` naming the one that could not start)."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for slot in self.slots.values():
                await nursery.start(self._run_slot, slot)
            task_status.started()
            await trio.sleep_forever()  # (processes of their own start later, here)

    async def _run_slot(
        self, slot: WorkerSlot, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        backoff = self.config.restart_backoff
        first = True
        while not slot.stopping:
            try:
                link = await self._start_process(slot)
            except WorkerError:
                if first:
                    raise
                _log.exception("worker %s could not be started again", slot.name)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self.config.max_restart_backoff)
                continue
            if first:
                task_status.started()
                first = False
            closed = await link.run(lambda payload: self._on_frame(slot, payload))
            slot.link = None
            killed = slot.state == "restarting"  # (by kill(): its actors failed already)
            if slot.ready.is_set():
                slot.ready = trio.Event()
            process = slot.process
            assert process is not None
            if slot.stopping:
                await self._reap(process)
                break
            slot.state = "restarting"
            # Reap it (it may still be exiting: a link can break before its process dies).
            await self._reap(process)
            how = _how_it_ended(process.returncode, closed)
            _log.error("worker %s (pid %d) was lost: %s", slot.name, process.pid, how)
            if not killed:
                self._lost(slot, ProcessLost(slot.name, process.pid, how))
            slot.restarts += 1
            if trio.current_time() - slot.started_at < self.config.restart_window:
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self.config.max_restart_backoff)
            else:
                backoff = self.config.restart_backoff
        slot.state = "stopped"

    def kill(self, node: str, how: str) -> int:
        """Kill the process of worker ``node`` with ``SIGKILL`` (the test kit's fault)
        and fail its actors now with :class:`ProcessLost` saying ``how``, rather than
        when its link reports the end: so nothing more is sent to it, and restarts wait
        for its new process. Returns its PID; :class:`WorkerError` if it is not up."""
        slot = self.slots[node]
        process = slot.process
        if process is None or slot.state != "up":
            raise WorkerError(f"worker {node} is {slot.state}: there is no process to kill")
        process.kill()
        slot.state = "restarting"
        if slot.ready.is_set():
            slot.ready = trio.Event()
        self._lost(slot, ProcessLost(node, process.pid, how))
        return process.pid

    async def _reap(self, process: trio.Process) -> None:
        """Wait for ``process`` to exit (killing it after ``Workers.stop_timeout``)."""
        with trio.move_on_after(self.config.stop_timeout):
            await process.wait()
        if process.returncode is None:
            _log.warning(
                "worker process %d did not exit within %g s; killing it",
                process.pid,
                self.config.stop_timeout,
            )
            process.kill()
            with trio.CancelScope(shield=True):
                await process.wait()

    def _lost(self, slot: WorkerSlot, error: ProcessLost) -> None:
        self.node_lost(slot.name, error)
        placed, slot.placed = slot.placed, {}
        for cell in placed.values():
            cell._process_lost(error)

    async def _start_process(self, slot: WorkerSlot) -> Link:
        slot.state = "starting"
        slot.started_at = trio.current_time()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        env[KEY_ENV] = self.key.hex()
        try:
            try:
                process = await trio.lowlevel.open_process(
                    [sys.executable, "-m", "actors._worker_main", str(theirs.fileno())],
                    pass_fds=(theirs.fileno(),),
                    env=env,
                    # Its own session: a Ctrl-C in the terminal reaches the root alone,
                    # which stops the workers in order.
                    start_new_session=True,
                )
            finally:
                theirs.close()
        except OSError as error:
            ours.close()
            raise WorkerError(f"worker {slot.name} could not be started: {error}") from error
        slot.process = process
        stream = trio.SocketStream(trio.socket.from_stdlib_socket(ours))
        try:
            with trio.fail_after(self.config.start_timeout):
                await handshake(stream, self.key, initiator=True, name=f"worker {slot.name}")
        except (trio.TooSlowError, ActorError) as error:
            process.kill()
            await stream.aclose()
            with trio.CancelScope(shield=True):
                await process.wait()
            raise WorkerError(
                f"worker {slot.name} (pid {process.pid}) did not start: {error}"
            ) from error
        link = Link(stream, name=f"worker {slot.name} (pid {process.pid})")
        link.send(self._hello(slot.name))
        slot.link = link
        slot.state = "up"
        slot.ready.set()
        _log.info("worker %s started (pid %d)", slot.name, process.pid)
        return link

    def _hello(self, node: str) -> bytes:
        """The first frame to a worker: the system's name, the node's, the settings
        (without the extensions, live objects of this process), what the extensions
        give workers to open their own (``_for_workers()``, e.g. a journal opener), and
        ``sys.path``."""
        system = self.system
        settings = attrs.evolve(system.settings, extensions=())
        for_workers = []
        for extension in system.settings.extensions:
            hook = getattr(extension, "_for_workers", None)
            made = None if hook is None else hook()
            if made is not None:
                for_workers.append(made)
        frame = ("hello", system.name, node, settings, for_workers, list(sys.path))
        try:
            return dumps(frame)
        except Exception as error:
            raise WorkerError(
                f"the settings or extensions of system {system.name!r} cannot be pickled "
                f"for its workers: {error!r}"
            ) from error

    async def shut_down(self) -> None:
        """Tell every worker to exit and wait for them (killing those past
        ``Workers.stop_timeout``). Called once every actor has stopped."""
        for slot in self.slots.values():
            slot.stopping = True
            slot.ready.set()  # (a restart waiting for a process gives up)
            link = slot.link
            if link is not None and not link.closed:
                with contextlib.suppress(ActorError):
                    link.send(dumps(("shutdown",)))
                link.close("the system is shutting down")
            slot.state = "stopping"
        with trio.move_on_after(self.config.stop_timeout):
            for slot in self.slots.values():
                if slot.process is not None:
                    await slot.process.wait()
        for slot in self.slots.values():
            process = slot.process
            if process is not None and process.returncode is None:
                _log.warning(
                    "worker %s (pid %d) did not exit within %g s; killing it",
                    slot.name,
                    process.pid,
                    self.config.stop_timeout,
                )
                process.kill()
                await process.wait()
            slot.state = "stopped"
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()


def _error_from(payload: bytes, address: Address) -> BaseException:
    try:
        error = pickle.loads(payload)
    except Exception as exc:
        return ActorError(
            f"{address.path} failed in its worker with an error that could not be "
            f"unpickled here: {exc!r}"
        )
    if not isinstance(error, BaseException):
        return ActorError(f"{address.path} failed in its worker: {error!r}")
    return error


def _how_it_ended(returncode: int | None, closed: BaseException) -> str:
    if returncode is None:
        return f"its link broke ({closed})"
    if returncode < 0:
        import signal

        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by {name}"
    return f"it exited with status {returncode}"
