"""Children placed on other nodes, supervised by their parent's node.

``context.spawn(Class, *args, placement=OnNode("n2") | AnyNode())`` on a node of a
cluster starts the child on another node, as ``placement`` does with worker processes
(``_remote_child.py``): the parent's node keeps a full cell for the child (its mailbox,
its supervision, its death watch), whose stand-in passes each message on to the real
instance, which runs on the chosen node (the *host*) under that node's ``/remote`` cell.
The host reports the real instance's starts, failures and end to the parent's node and
waits for its orders, so the parent's supervisor decides as for any child: resume,
restart, stop, with its intensity and backoff.

The difference from worker processes is where a restart goes. The child's address names
the *parent's* node, so its ref stays valid wherever it runs (messages from other nodes
reach it through the parent's node, one hop more). When its host is lost, the child fails
with :class:`NodeLost`; if its supervisor restarts it, it starts again on a live node
that its placement allows (``AnyNode``: the live nodes that list its class, in turn;
``OnNode``: that node only, so the restart fails while that node is down).

No code travels: the host starts the class it finds under the class's name in its own
``Cluster(actors=...)``, with the arguments encoded by the cluster's codec.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
from typing import TYPE_CHECKING, Any, Final

import trio

from .._address import Address
from .._cell import ActorCell
from .._cell_state import DEAD
from .._errors import ActorError
from .._mailbox import Mailbox
from .._placement import AnyNode, OnNode
from .._ref import ActorRef
from .._remote_child import RemoteChildCell, SlotAsk
from .._supervising import RelayedOrders

if TYPE_CHECKING:
    from .._envelope import Reply
    from ._node import ClusterNode

_log: Final = logging.getLogger("actors.cluster")


class Hosting:
    """This node's side of actors that other nodes placed here: started under the
    ``/remote`` cell, whose supervision is relayed to each actor's parent node (a
    ``SupervisionRelay``): failures, starts and ends are reported there, and orders
    come back from there."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.cell: ActorCell | None = None
        self.hosted: dict[str, ActorCell] = {}  # by path
        self.origins: dict[Address, str] = {}  # the parent's node of each
        self._relayed = RelayedOrders()

    def start(self) -> None:
        from .._system import _Guardian

        system = self.node.system
        cell = ActorCell(
            system,
            None,
            "remote",
            "/remote",
            system._uids.getrandbits(63),
            _Guardian,
            Mailbox(),
            system.settings.throughput,
            system.settings.stash_capacity,
        )
        cell._relay = self
        cell._children = {}
        self.cell = cell
        system._nursery.start_soon(cell._run, name="/remote")

    async def stop(self) -> None:
        """Stop what is hosted here (this node leaves): each one's end is reported."""
        cell = self.cell
        if cell is None or cell._state == DEAD:
            return
        cell.request_stop()
        with trio.move_on_after(self.node.system.settings.stop_timeout * 2 + 1):
            await cell._wait_terminated()

    def find(self, path: str) -> ActorCell | None:
        cell = self.hosted.get(path)
        return cell if cell is not None and cell._state != DEAD else None

    # -- frames from the parent's node --------------------------------------------------------

    def place(self, origin: str, address: Address, class_name: str, payload: bytes) -> None:
        node = self.node
        parent = self.cell
        cls = node._spawner.classes.get(class_name)
        try:
            if parent is None or cls is None:
                raise ActorError(
                    f"node {node.name} does not let other nodes start {class_name} (it is "
                    "not in its Cluster(actors=...))"
                )
            known = self.find(address.path)
            if known is not None:
                raise ActorError(
                    f"{address.path} is already hosted on node {node.name} (for node "
                    f"{self.origins.get(known.ref.address, '?')})"
                )
            args = tuple(node.decode(payload))
        except Exception as error:
            self._report(origin, ("failed", tuple(address), node.encode_error(error)))
            return
        cell = ActorCell(
            node.system,
            parent,
            address.path,
            address.path,
            address.uid,
            (lambda: cls(*args)) if args else cls,
            Mailbox(),
            node.system.settings.throughput,
            node.system.settings.stash_capacity,
        )
        cell.ref = ActorRef._create(address, cell)  # (the address its parent gave it)
        assert parent._children is not None
        parent._children[address.path] = cell
        self.hosted[address.path] = cell
        self.origins[address] = origin
        node.system._nursery.start_soon(cell._run, name=address.path)

    def order(self, address: Address, what: str, error: BaseException | None) -> None:
        cell = self.find(address.path)
        origin = self.origins.get(address)
        if cell is None or cell.ref.address.uid != address.uid or origin is None:
            if what == "stop" and origin is not None:  # already gone: say so
                self._report(origin, ("terminated", tuple(address), None))
            return
        report_down = functools.partial(self._report, origin, ("down", tuple(address)))
        self._relayed.obey(cell, what, error, self.node.system._nursery, report_down)

    def _report(self, origin: str, frame: tuple[Any, ...]) -> None:
        with contextlib.suppress(ActorError):  # (else its parent's node is gone)
            self.node.send_frame(origin, frame)

    # -- the relay of the /remote cell's supervision (SupervisionRelay) ------------------------

    def child_failed(
        self, child: ActorCell, error: BaseException, can_resume: bool, message: Any
    ) -> None:
        origin = self.origins.get(child.ref.address)
        if origin is None:
            return
        self._relayed.failed(child)
        self._report(origin, ("failed", tuple(child.ref.address), self.node.encode_error(error)))

    def child_started(self, child: ActorCell, restarted: bool) -> None:
        origin = self.origins.get(child.ref.address)
        if origin is not None:
            self._report(origin, ("started", tuple(child.ref.address), restarted))

    def child_gone(self, child: ActorCell) -> None:
        address = child.ref.address
        self._relayed.gone(child)
        if self.hosted.get(address.path) is child:
            del self.hosted[address.path]
        origin = self.origins.pop(address, None)
        if origin is None:
            return
        reason = child._reason
        payload = None if reason is None else self.node.encode_error(reason)
        self._report(origin, ("terminated", tuple(address), payload))

    def node_lost(self, name: str) -> None:
        """The parent's node of some actors here is lost: they are orphans; they stop
        (their parent, if it restarts them, does so elsewhere)."""
        for address, origin in list(self.origins.items()):
            if origin == name:
                cell = self.find(address.path)
                if cell is not None:
                    self._relayed.waiting.discard(cell)
                    cell.request_stop()


class Placing:
    """This node's side of children it placed on other nodes: the ``RootNode``-like
    calls that :class:`RemoteChildCell` makes, and the reports that come back."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.placed: dict[Address, RemoteChildCell] = {}
        self._turns = itertools.count()

    def choose(self, class_name: str, placement: OnNode | AnyNode, but: str | None) -> str:
        node = self.node
        if isinstance(placement, OnNode):
            if placement.name == node.name:
                raise ActorError(
                    f"OnNode({placement.name!r}) is this node: spawn the child without "
                    "placement to run it here"
                )
            if placement.name not in node.members.live:
                raise ActorError(f"node {placement.name} is not a live member of the cluster")
            return placement.name
        others = [h for h in node._spawner.hosts(class_name) if h != node.name]
        hosts = [h for h in others if h != but] or others
        if not hosts:
            raise ActorError(
                f"no live node of the cluster lets others start {class_name} (list the "
                "class in Cluster(actors=[...]) on the nodes that may run it)"
            )
        return hosts[next(self._turns) % len(hosts)]

    def lost(self, name: str, error: BaseException) -> None:
        for cell in [c for c in self.placed.values() if c._host == name]:
            cell._process_lost(error)  # type: ignore[arg-type]

    def on_report(self, kind: str, frame: tuple[Any, ...]) -> bool:
        from .._node import _address

        if kind not in ("started", "down", "failed", "terminated"):
            return False
        cell = self.placed.get(_address(frame[1]))
        if kind == "started":
            if cell is not None:
                cell._reported_started()
        elif kind == "down":
            if cell is not None:
                cell._reported_down()
        elif kind == "failed":
            if cell is not None:
                cell._reported_failure(self.node.decode_error(frame[2]))
        elif kind == "terminated":
            reason = None if frame[2] is None else self.node.decode_error(frame[2])
            if cell is not None:
                self.placed.pop(cell.ref.address, None)
                cell._reported_terminated(reason)
        else:
            return False
        return True


class ClusterChildCell(RemoteChildCell):
    """A child placed on another node of the cluster (see the module documentation)."""

    __slots__ = ("_class_name", "_payload", "_placement")

    def _setup(self, class_name: str, payload: bytes, placement: OnNode | AnyNode) -> None:
        self._class_name = class_name
        self._payload = payload
        self._placement = placement

    def _make_spawn_frame(self, origin: str) -> tuple[Any, ...]:
        return ("place", origin, tuple(self.ref.address), self._class_name, self._payload)


def try_ask(
    node: ClusterNode, cell: RemoteChildCell, payload: bytes, sender: ActorRef | None, reply: Reply
) -> bool:
    """Send an ask to a placed child's host now, for its caller's reply slot."""
    ask_id = next(node._ask_ids)
    target = cell.ref.address
    try:
        node.send_bytes(cell._host, node.ask_frame(ask_id, target, sender, payload, reply.timeout))
    except ActorError:
        return False
    node._asks[ask_id] = SlotAsk(cell, reply)  # type: ignore[assignment]
    return True
