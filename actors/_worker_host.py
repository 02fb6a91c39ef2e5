"""A worker process's side: the actors the root placed here, and the link to the root.

The worker runs a system of the same name as the root's, as node ``"w1"`` (...). The
actors the root places here are children of this system's ``/user`` guardian, kept in
its children under their full path (``/user/a/b``: their parent lives in the root), and
the guardian's supervision is relayed to the root (``_relay``): a failure of one of them
is reported (``failed``), and the actor waits for the root's verdict, which comes back
as an order (``resume``; ``down`` then ``up``, a restart; ``stop``). Its starts
(``started``) and its end (``terminated``, with its reason) are reported too. The
children those actors spawn live here under them, supervised here as in one process.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import pickle
from typing import TYPE_CHECKING, Any, Final

import trio

from ._cell import ActorCell
from ._cell_state import DEAD
from ._errors import ActorError, ProcessLost
from ._messages import DeadLetterReason
from ._node import Node, encode_error, encode_message
from ._ref import ActorRef
from ._supervising import RelayedOrders

if TYPE_CHECKING:
    from ._address import Address
    from ._link import Link
    from ._system import ActorSystem

_log: Final = logging.getLogger("actors.workers")


class WorkerNode(Node):
    """A worker's node: one link, to the root (every other node is reached through it)."""

    def __init__(self, system: ActorSystem, link: Link) -> None:
        super().__init__(system)
        self.link = link
        self.shutdown = trio.Event()
        # Actors waiting for the root's verdict on their failure, and the restart orders
        # given (``down``) whose ``up`` has not come yet.
        self._relayed = RelayedOrders()

    # -- routing --------------------------------------------------------------------------------

    def send_bytes(self, node: str, data: bytes) -> None:
        self._link_up().send(data)

    def send_part(self, node: str, head: bytes, part: bytes) -> None:
        self._link_up().append(head, part)

    def _link_up(self) -> Link:
        """The link to the root; :class:`ProcessLost` if it has closed."""
        if self.link.closed:
            raise ProcessLost("local", None, "the link to the root process has closed")
        return self.link

    def report_dead_letter(
        self,
        message: Any,
        sender: ActorRef | None,
        recipient: ActorRef,
        reason: DeadLetterReason,
    ) -> bool:
        if self.link.closed or self.system._terminating:
            return False
        try:
            payload = encode_message(message)
        except ActorError:
            payload = encode_message(f"<unpicklable {type(message).__qualname__}: {message!r}>")
        frame = (
            "dead-letter",
            recipient.address,
            None if sender is None else sender.address,
            payload,
            reason.value,
        )
        try:
            self.send_frame("local", frame)
        except ActorError:
            return False
        return True

    def find_local(self, path: str) -> ActorCell | None:
        children = self.system._guardian._children
        if not children:
            return None
        cell = children.get(path)
        if cell is not None:
            return cell if cell._state != DEAD else None
        # A descendant of a placed actor: walk down from the longest placed prefix.
        head = path
        rest: list[str] = []
        while "/" in head.strip("/"):
            head, _, last = head.rpartition("/")
            rest.insert(0, last)
            found = children.get(head)
            if found is not None:
                for part in rest:
                    kids = found._children
                    found = None if not kids else kids.get(part)
                    if found is None:
                        return None
                return found if found._state != DEAD else None
        return None

    # -- frames from the root ---------------------------------------------------------------------

    def dispatch(self, payload: bytes) -> None:
        if self.on_binary_frame("local", payload):
            return
        try:
            frame = pickle.loads(payload)
        except Exception as error:
            _log.warning(
                "%s: a frame of %d bytes from the root could not be unpickled: %r",
                self.where,
                len(payload),
                error,
            )
            return
        if self.on_frame("local", frame):
            return
        kind = frame[0]
        if kind == "spawn":
            self._spawn(*frame[1:])
        elif kind == "order":
            _, address, what, cause = frame
            self._order(address, what, cause)
        elif kind == "shutdown":
            self.shutdown.set()
        else:
            _log.warning("%s: unknown frame %r from the root", self.where, kind)

    def _spawn(
        self,
        address: Address,
        factory_payload: bytes,
        mailbox: Any,
        throughput: int,
        stash_capacity: int,
        strategy: Any,
    ) -> None:
        system = self.system
        guardian = system._guardian
        try:
            factory = pickle.loads(factory_payload)
        except Exception as error:
            failure = ActorError(
                f"the factory of {address.path} could not be unpickled in {self.where}: "
                f"{error!r} (is its module importable here?)"
            )
            self._report(("failed", address, encode_error(failure, self.where)))
            return
        children = guardian._children
        if children is None:
            children = guardian._children = {}
        cell = ActorCell(
            system,
            guardian,
            address.path,
            address.path,
            address.uid,
            factory,
            mailbox,
            throughput,
            stash_capacity,
            strategy,
        )
        children[address.path] = cell
        system._nursery.start_soon(cell._run, name=address.path)

    def _order(self, address: Address, what: str, error: BaseException | None) -> None:
        cell = self.find_local(address.path)
        if cell is None or cell.ref.address.uid != address.uid:
            if what == "stop":  # already gone: say so, or the root waits for it
                self._report(("terminated", address, None))
            return
        report_down = functools.partial(self._report, ("down", address))
        self._relayed.obey(cell, what, error, self.system._nursery, report_down)

    def _report(self, frame: tuple[Any, ...]) -> None:
        with contextlib.suppress(ActorError):  # (else the root is gone: this worker stops)
            self.send_frame("local", frame)

    # -- the relay of the guardian's supervision (SupervisionRelay) --------------------------------

    def child_failed(
        self, child: ActorCell, error: BaseException, can_resume: bool, message: Any
    ) -> None:
        self._relayed.failed(child)
        self._report(("failed", child.ref.address, encode_error(error, self.where)))

    def child_started(self, child: ActorCell, restarted: bool) -> None:
        self._report(("started", child.ref.address, restarted))

    def child_gone(self, child: ActorCell) -> None:
        self._relayed.gone(child)
        reason = child._reason
        payload = None if reason is None else encode_error(reason, self.where)
        self._report(("terminated", child.ref.address, payload))
