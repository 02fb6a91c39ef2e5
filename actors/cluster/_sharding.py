"""Sharded entities: actors named by a type and an id, activated on demand on one node.

An :class:`EntityType` names a kind of entity (``"account"``) and how to make one
(``factory(entity_id)``). Each node that calls ``system.cluster.start_entities(kind)``
hosts entities of that type (or only routes to them, with ``host=False``); an
:class:`EntityRef` (``system.cluster.entity("account", "alice")``) reaches entity
``alice`` from any of them, wherever it runs.

Shards
    An entity belongs to shard ``crc32(id) % shards``. A shard has one owner node at a
    time, written in the key-value bucket ``{prefix}_{system}_shards`` under
    ``{type}.{shard}``. The first message for a shard with no live owner chooses one
    among the live nodes that host the type (rendezvous hashing: each shard prefers
    the node with the highest hash of the pair, so shards spread evenly and a node
    that joins takes only its own share) and writes it by compare-and-set: when two
    nodes choose at once, one write wins and the other reads it.
Activation
    The owner activates an entity (a child of this node's region actor
    ``/user/entities-{type}``, named by its id) when a message for it arrives, once it
    has read in the bucket that it owns the shard. It passivates (stops) an entity idle
    for ``passivate_after`` seconds; messages that arrive while it stops wait and start
    it again.
Failover
    When an owner node is lost, its shards' next messages find no live owner and the
    shard is written to another node, where the entity is activated again (a
    persistent entity recovers from its journal, whose fence keeps a late writer of the
    old node out). A node that cannot renew its own membership for ``down_after / 2``
    stops its entities (before the others may declare it lost at ``down_after``), so
    that an entity is not active on two nodes while a partition lasts.
Rebalance
    When a node that hosts the type joins, each owner hands over the shards that now
    prefer it: it stops their entities, writes the new owner, and passes on the
    messages that arrived meanwhile.

Delivery is at most once between nodes, and in order per sender and entity while the
entity stays where it is. Messages for a shard wait (in order) while its owner is being
found or handed over. An ask to an entity on a node that is lost fails at once with
:class:`ActorDead` carrying :class:`NodeLost`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import attrs
import msgspec
import trio

from .._actor import Actor
from .._errors import ActorDead, ActorError, AskTimeout, MailboxFull
from .._messages import DeadLetterReason, PoisonPill
from .._node import PendingAsk, address_of
from .._ref import ActorRef
from .._spawning import check_name, spawn_child
from ._config import _NAME

if TYPE_CHECKING:
    from supervision import Strategy

    from .._cell import ActorCell
    from ._node import ClusterNode

_log: Final = logging.getLogger("actors.cluster")
MAX_HOPS: Final = 4
"""How many times a message for an entity may be passed on between nodes that each
thought another one owned its shard, before it is a dead letter."""


def _check_type_name(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(
            f"EntityType(name={value!r}): 1 to 64 letters, digits, '_' or '-', the same on "
            "every node"
        )


def _check_shards(_: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not isinstance(value, int) or not 1 <= value <= 4096:
        raise ValueError(f"EntityType(shards={value!r}) must be an int from 1 to 4096")


@attrs.frozen(kw_only=True)
class EntityType:
    """A kind of sharded entity: ``name`` (the same on every node), ``factory``
    (called with the entity's id, a str, to make its actor), ``shards`` (how many
    groups ids are hashed into: the unit of ownership and of rebalancing; the same on
    every node), ``passivate_after`` (seconds without a message after which an entity
    is stopped; ``None``: never), ``supervisor_strategy`` (how the region supervises
    its entities; the system's default if ``None``)."""

    name: str = attrs.field(validator=_check_type_name)
    factory: Callable[[str], Actor]
    shards: int = attrs.field(default=64, validator=_check_shards)
    passivate_after: float | None = 120.0
    supervisor_strategy: Strategy | None = None


def shard_of(entity_id: str, shards: int) -> int:
    """The shard of ``entity_id`` (stable across processes and machines)."""
    return zlib.crc32(entity_id.encode()) % shards


def preferred_node(key: str, nodes: list[str]) -> str:
    """The node a shard prefers among ``nodes`` (rendezvous hashing)."""
    return max(nodes, key=lambda node: hashlib.blake2b(f"{key}|{node}".encode()).digest())


class _Owner(msgspec.Struct, frozen=True):
    node: str
    incarnation: int


_encode: Final = msgspec.msgpack.Encoder().encode
_decode_owner: Final = msgspec.msgpack.Decoder(_Owner).decode


@attrs.define
class _Delivery:
    """A message for an entity, waiting or on its way: a tell (``ask_id`` None) or an
    ask of node ``origin``."""

    entity_id: str
    payload: bytes
    sender: ActorRef | None
    origin: str | None = None
    ask_id: int | None = None
    timeout: float = 0.0
    hops: int = 0


class _RegionActor(Actor):
    """The parent of this node's entities of one type (it handles no messages)."""

    def receive(self, message: Any) -> None:
        return None


class _EntityWatcher:
    __slots__ = ("entity_id", "region")

    def __init__(self, region: Region, entity_id: str) -> None:
        self.region = region
        self.entity_id = entity_id

    def _watched_terminated(
        self, ref: ActorRef, reason: BaseException | None, confirmed: bool
    ) -> bool:
        self.region._entity_gone(self.entity_id, ref)
        return True


class Region:
    """This node's part of one entity type (see the module documentation)."""

    def __init__(self, node: ClusterNode, kind: EntityType, host: bool) -> None:
        self.node = node
        self.kind = kind
        self.host = host
        self.cell: ActorCell | None = None
        self.owners: dict[int, _Owner] = {}
        self.pending: dict[int, list[_Delivery]] = {}
        self.resolving: set[int] = set()
        self.entities: dict[str, ActorCell] = {}
        self.stopping: dict[str, list[_Delivery]] = {}
        self.gone: dict[str, trio.Event] = {}
        self.last_used: dict[str, float] = {}

    # -- starting -------------------------------------------------------------------------

    def start(self) -> None:
        if self.host:
            system = self.node.system
            ref = spawn_child(
                system._guardian,
                _RegionActor,
                (),
                {},
                f"entities-{self.kind.name}",
                None,
                None,
                self.kind.supervisor_strategy,
            )
            cell = ref._resolve()
            self.cell = cell  # type: ignore[assignment]
            if self.kind.passivate_after is not None and self.node._nursery is not None:
                self.node._nursery.start_soon(self._passivate_idle, name=f"{self.kind.name}: idle")

    # -- routing --------------------------------------------------------------------------

    def key(self, shard: int) -> str:
        return f"{self.kind.name}.{shard}"

    def owner_if_known(self, shard: int) -> str | None:
        owner = self.owners.get(shard)
        if owner is None:
            return None
        if owner.node == self.node.name:
            return owner.node if owner.incarnation == self.node.incarnation else None
        member = self.node.members.live.get(owner.node)
        if member is None or member.incarnation != owner.incarnation:
            del self.owners[shard]
            return None
        return owner.node

    def route(self, delivery: _Delivery) -> None:
        """Deliver here, pass on to the shard's owner, or wait for it to be known."""
        shard = shard_of(delivery.entity_id, self.kind.shards)
        owner = None if shard in self.resolving else self.owner_if_known(shard)
        if owner is None:
            self.pending.setdefault(shard, []).append(delivery)
            if shard not in self.resolving and self.node._nursery is not None:
                self.resolving.add(shard)
                self.node._nursery.start_soon(self._resolve, shard)
        elif owner == self.node.name:
            self.deliver_here(delivery)
        else:
            self._pass_on(owner, delivery)

    def _pass_on(self, owner: str, delivery: _Delivery) -> None:
        if delivery.hops >= MAX_HOPS:
            self._undeliverable(delivery, "it was passed between nodes too many times")
            return
        sender = address_of(delivery.sender)
        name, entity_id = self.kind.name, delivery.entity_id
        try:
            if delivery.ask_id is None:
                frame: tuple[Any, ...] = (
                    "entity",
                    name,
                    entity_id,
                    sender,
                    delivery.payload,
                    delivery.hops + 1,
                )
            else:
                frame = (
                    "entity-ask",
                    delivery.origin,
                    delivery.ask_id,
                    name,
                    entity_id,
                    sender,
                    delivery.payload,
                    delivery.timeout,
                    delivery.hops + 1,
                )
            self.node.send_frame(owner, frame)
            if delivery.origin == self.node.name and delivery.ask_id is not None:
                pending = self.node._asks.get(delivery.ask_id)
                if pending is not None:  # (it fails at once if that node is lost)
                    pending.node = owner
        except ActorError as error:
            self._undeliverable(delivery, str(error))

    def _undeliverable(self, delivery: _Delivery, why: str) -> None:
        path = f"entity {self.kind.name}/{delivery.entity_id}"
        if delivery.ask_id is not None and delivery.origin is not None:
            self.node.answer(
                delivery.origin, delivery.ask_id, None, ActorDead(path, f"is unreachable: {why}")
            )
            return
        _log.warning("%s: a message for %s was not delivered: %s", self.node.where, path, why)
        try:
            message = self.node.decode(delivery.payload)
        except Exception:
            message = f"<undecodable message of {len(delivery.payload)} bytes>"
        system = self.node.system
        system._dead_letter(
            message, delivery.sender, system._guardian.ref, DeadLetterReason.NO_ROUTEES
        )

    async def _resolve(self, shard: int) -> None:
        """Find the shard's owner (or choose and write one), then send what waits."""
        import nats.js.errors

        node = self.node
        key = self.key(shard)
        owner: _Owner | None = None
        try:
            while owner is None:
                revision: int | None = None
                try:
                    entry = await node._aio(node._shards_kv.get(key))
                    revision = entry.revision
                    if entry.value:
                        known = _decode_owner(entry.value)
                        if node.is_live(known.node, known.incarnation):
                            owner = known
                            break
                except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                    revision = None  # (create() takes a deleted key over)
                hosts = node.hosts_of(self.kind.name)
                if not hosts:
                    break
                chosen = preferred_node(key, hosts)
                claim = _Owner(chosen, node.incarnation_of(chosen))
                try:
                    if revision is None:
                        await node._aio(node._shards_kv.create(key, _encode(claim)))
                    else:
                        await node._aio(node._shards_kv.update(key, _encode(claim), last=revision))
                    owner = claim
                except nats.js.errors.KeyWrongLastSequenceError:
                    continue  # another node wrote first: read what it wrote
        except Exception as error:
            _log.warning("%s: finding the owner of %s: %r", node.where, key, error)
        finally:
            self.resolving.discard(shard)
            waiting = self.pending.pop(shard, [])
            if owner is None:
                for delivery in waiting:
                    self._undeliverable(
                        delivery, f"no live node hosts entity type {self.kind.name!r}"
                    )
            else:
                self.owners[shard] = owner
                for delivery in waiting:
                    self.route(delivery)

    # -- entities here --------------------------------------------------------------------

    def deliver_here(self, delivery: _Delivery) -> None:
        entity_id = delivery.entity_id
        waiting = self.stopping.get(entity_id)
        if waiting is not None:
            waiting.append(delivery)
            return
        cell = self.entities.get(entity_id) or self._activate(entity_id, delivery)
        if cell is None:
            return
        self.last_used[entity_id] = trio.current_time()
        node = self.node
        if delivery.ask_id is None:
            try:
                message = node.decode(delivery.payload)
            except Exception as error:
                node._refused(cell.ref.address, delivery.sender, delivery.payload, error)
                return
            cell.ref.tell(message, delivery.sender)
        else:
            assert delivery.origin is not None
            node.deliver_ask(
                delivery.origin,
                delivery.ask_id,
                cell.ref.address,
                delivery.sender,
                delivery.payload,
                delivery.timeout,
            )

    def _activate(self, entity_id: str, delivery: _Delivery) -> ActorCell | None:
        if self.cell is None:
            self._undeliverable(delivery, f"node {self.node.name} does not host this type")
            return None
        try:
            ref = spawn_child(
                self.cell, self.kind.factory, (entity_id,), {}, entity_id, None, None, None
            )
        except ActorError as error:
            self._undeliverable(delivery, f"it could not be started: {error}")
            return None
        cell: ActorCell = ref._resolve()  # type: ignore[assignment]
        cell.watched_by(_EntityWatcher(self, entity_id))  # type: ignore[arg-type]
        self.entities[entity_id] = cell
        self.gone[entity_id] = trio.Event()
        return cell

    def _entity_gone(self, entity_id: str, ref: ActorRef) -> None:
        cell = self.entities.get(entity_id)
        if cell is None or cell.ref != ref:
            return
        del self.entities[entity_id]
        self.last_used.pop(entity_id, None)
        event = self.gone.pop(entity_id, None)
        if event is not None:
            event.set()
        waiting = self.stopping.pop(entity_id, None)
        for delivery in waiting or ():
            self.route(delivery)  # (activates it again here, or where its shard went)

    def passivate(self, entity_id: str, *, drain: bool = True) -> None:
        """Stop the entity; what comes for it meanwhile waits, and is routed again once
        it is gone. ``drain``: it first handles what its mailbox already holds (a
        ``PoisonPill`` queued behind it), so that a hand-over or an idle passivation
        fails no ask already delivered; otherwise it stops after its current message
        (a node that fences itself)."""
        cell = self.entities.get(entity_id)
        if cell is not None and entity_id not in self.stopping:
            self.stopping[entity_id] = []
            if drain:
                try:
                    cell.tell(PoisonPill, None)
                    return
                except MailboxFull:  # (a full bounded mailbox: stop it after its message)
                    pass
            cell.request_stop()

    async def _passivate_idle(self) -> None:
        after = self.kind.passivate_after
        assert after is not None
        while True:
            await trio.sleep(max(after / 4, 0.05))
            now = trio.current_time()
            for entity_id, used in list(self.last_used.items()):
                if now - used > after:
                    self.passivate(entity_id)

    def stop_all(self, why: str) -> None:
        """Stop every entity here and forget which shards this node owns (it reads
        them again from the bucket before it activates an entity)."""
        if self.entities:
            _log.error(
                "%s: stops its %d %s entities: %s",
                self.node.where,
                len(self.entities),
                self.kind.name,
                why,
            )
        for entity_id in list(self.entities):
            self.passivate(entity_id, drain=False)
        for shard in [s for s, o in self.owners.items() if o.node == self.node.name]:
            del self.owners[shard]

    def node_lost(self, name: str) -> None:
        for shard in [s for s, o in self.owners.items() if o.node == name]:
            del self.owners[shard]

    # -- rebalancing ------------------------------------------------------------------------

    def rebalance(self) -> None:
        """Hand over the shards owned here that now prefer another live host."""
        node = self.node
        hosts = node.hosts_of(self.kind.name)
        if not hosts or node._nursery is None:
            return
        for shard, owner in list(self.owners.items()):
            if owner.node != node.name or shard in self.resolving:
                continue
            chosen = preferred_node(self.key(shard), hosts)
            if chosen != node.name:
                self.resolving.add(shard)  # (messages for it wait meanwhile)
                del self.owners[shard]
                node._nursery.start_soon(self._hand_over, shard, chosen)

    async def _hand_over(self, shard: int, to: str) -> None:
        node = self.node
        key = self.key(shard)
        try:
            ids = [i for i in self.entities if shard_of(i, self.kind.shards) == shard]
            for entity_id in ids:
                self.passivate(entity_id)
            with trio.move_on_after(node.system.settings.stop_timeout * 2 + 1):
                for entity_id in ids:
                    event = self.gone.get(entity_id)
                    if event is not None:
                        await event.wait()
            entry = await node._aio(node._shards_kv.get(key))
            claim = _Owner(to, node.incarnation_of(to))
            await node._aio(node._shards_kv.update(key, _encode(claim), last=entry.revision))
            self.owners[shard] = claim
            _log.info("%s: handed shard %s over to node %s", node.where, key, to)
        except Exception as error:
            _log.warning("%s: handing shard %s over to %s: %r", node.where, key, to, error)
        finally:
            self.resolving.discard(shard)
            for delivery in self.pending.pop(shard, []):
                self.route(delivery)


class EntityRef:
    """A sharded entity, from any node: ``tell`` and ``ask`` reach it wherever it is
    active (activating it if it is not). Messages are encoded at the call, so one that
    cannot cross raises there, whether the entity is here or on another node."""

    __slots__ = ("entity_id", "region")

    def __init__(self, region: Region, entity_id: str) -> None:
        check_name(entity_id)
        self.region = region
        self.entity_id = entity_id

    def __repr__(self) -> str:
        return f"<EntityRef {self.region.kind.name}/{self.entity_id}>"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, EntityRef)
            and other.region.kind.name == self.region.kind.name
            and other.entity_id == self.entity_id
        )

    def __hash__(self) -> int:
        return hash((self.region.kind.name, self.entity_id))

    def tell(self, message: Any, sender: ActorRef | None = None) -> None:
        """Send ``message`` to the entity; returns at once (see the module
        documentation for where it waits and what is lost with a node)."""
        region = self.region
        region.node.system._check_thread()
        region.route(_Delivery(self.entity_id, region.node.encode(message), sender))

    async def ask(
        self, message: Any, timeout: float | None = None, sender: ActorRef | None = None
    ) -> Any:
        """Ask the entity and wait for its answer: its reply, or its handler's error
        re-raised, :class:`AskTimeout` after ``timeout`` (``Settings.ask_timeout`` by
        default), :class:`ActorDead` at once if its node is lost."""
        region = self.region
        node = region.node
        node.system._check_thread()
        if timeout is None:
            timeout = node.system.settings.ask_timeout
        payload = node.encode(message)
        ask_id = next(node._ask_ids)
        path = f"entity {region.kind.name}/{self.entity_id}"
        pending = PendingAsk("", path, trio.lowlevel.current_task())
        delivery = _Delivery(self.entity_id, payload, sender, node.name, ask_id, timeout)
        node._asks[ask_id] = pending
        try:
            with trio.move_on_after(timeout if timeout > 0 else math.inf) as waiting:
                shard = shard_of(self.entity_id, region.kind.shards)
                pending.node = region.owner_if_known(shard) or ""
                region.route(delivery)
                await trio.lowlevel.wait_task_rescheduled(pending.abort)
        finally:
            node._asks.pop(ask_id, None)
        if waiting.cancelled_caught:
            raise AskTimeout(path, timeout, message)
        if pending.error is not None:
            raise pending.error
        return pending.value
