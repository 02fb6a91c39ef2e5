"""A node of a cluster: the process's part of a system whose nodes talk through NATS.

The node layer of the worker processes (``actors/_node.py``: routing by address, asks,
death watch, dead letters, the frames) is reused as it is; what differs is how a frame
reaches another node and how a node learns who else is there:

- **Transport.** Frames for node ``n2`` wait in the outbox, in the order they were
  sent, until a task of this node in the NATS client's asyncio loop (the publisher,
  woken by an ``asyncio.Event`` set from trio: no hop from trio per batch) takes them:
  as many as fit go in one NATS message (:func:`join_frames`), sealed once
  (``_seal.py``: HMAC-SHA256 over the sender, its incarnation, a counter and the
  recipient's incarnation) and published on ``n2``'s inbox subject
  ``{prefix}.{system}.node.n2``. Each sender-receiver pair is FIFO. A message that
  arrives is opened (refused, logged and dropped if its seal is forged, tampered,
  replayed, misdirected, from a retired incarnation or under an unknown key) before any
  byte of it is decoded; then each of its frames is decoded by the cluster's codec
  (``_codec.py``, ``_safe_codec.py``) and dispatched.
- **Two connections**: the frames go on one, the buckets (members, names, shard
  owners) on the other, so that a flood of frames does not hold up the heartbeats.
- **Membership** (``_membership.py``): the members bucket and heartbeats. A member lost
  fails what waits on it at once (:meth:`Node.node_lost`).
- **Names** (:meth:`ClusterNode.register`, :meth:`ClusterNode.lookup`): a cluster-wide
  registry in a key-value bucket.

Cancellation: the node runs in the system's nursery; leaving ``open_system`` stops the
actors first, then :meth:`ClusterNode.leave` frees this node's names, sends what is still
in the outbox (its actors' last words, such as their ends for watchers elsewhere), then
deletes its member key (so that the others see it leave at once rather than after
``down_after``), and the connections are closed, within a deadline.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import ssl
import time
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final, TypeVar

import trio

from .._address import Address
from .._aio_interrupts import protect_aio_loops
from .._errors import ActorDead, ActorError
from .._node import Encoded, Node, _address, _ref_at
from .._placement import AnyNode, OnNode
from .._ref import ActorRef
from .._wire import FrameTooLarge, LinkFull
from ._codec import Codec
from ._config import Cluster
from ._errors import ClusterError, NodeLost
from ._heartbeats import keep_membership
from ._membership import Member, Members, age_of, record_of
from ._names import Names
from ._placing import ClusterChildCell, Hosting, Placing, try_ask
from ._remote_spawn import RemoteSpawner
from ._safe_codec import SafeCodec
from ._seal import Keyring, Opener, SealRefused, seal
from ._sharding import EntityRef, EntityType, Region, _Delivery

if TYPE_CHECKING:
    from .._actor import Actor
    from .._system import ActorSystem

_log: Final = logging.getLogger("actors.cluster")
_T = TypeVar("_T")

OUTBOX_LIMIT: Final = 64 * 1024 * 1024
"""Bytes that may wait in a node's outbox (NATS unreachable); beyond, a message is a
dead letter (``link_full``) rather than memory without bound."""
_FRAME_ROOM: Final = 4096  # (a frame's seal, addresses and kind, beside its message)


def join_frames(frames: list[bytes]) -> bytes:
    """Frames as the body of one NATS message: each after its length (4 bytes)."""
    return b"".join([len(frame).to_bytes(4, "big") + frame for frame in frames])


def split_frames(body: bytes) -> list[bytes]:
    """The frames of :func:`join_frames` (``ValueError`` if the lengths do not add up)."""
    frames = []
    at, end = 0, len(body)
    while at < end:
        size = int.from_bytes(body[at : at + 4], "big")
        at += 4
        if at + size > end:
            raise ValueError(f"its frames do not add up to its {end} bytes")
        frames.append(body[at : at + size])
        at += size
    return frames


def _keyring(key: Any) -> Keyring:
    if isinstance(key, Keyring):
        return key
    if isinstance(key, bytes | bytearray):
        return Keyring({"k1": bytes(key)}, "k1")
    ids = list(key)
    return Keyring(dict(key), ids[-1])


class ClusterNode(Node):
    """This process's node of a cluster (``system.cluster``); see the module
    documentation. Its public methods are the cluster's user-facing API."""

    def __init__(self, system: ActorSystem, config: Cluster) -> None:
        super().__init__(system)
        self.config = config
        self.name = config.node
        # Later incarnations of a node name are greater (frames of an older one are
        # refused: _seal.Opener); the time it started, in nanoseconds, is one.
        self.incarnation = time.time_ns()
        self.codec: Codec = config.codec if config.codec is not None else SafeCodec(config.types)
        self._keyring = _keyring(config.key)
        self._opener = Opener(self._keyring, f"{self.name}#{self.incarnation}")
        self._counter = itertools.count(1)
        base = f"{config.prefix}.{system.name}"
        self._inbox_prefix = f"{base}.node."
        self._bucket_prefix = f"{config.prefix}_{system.name}"
        self._outbox: dict[str, list[bytes]] = {}  # frames queued, per node
        self._outbox_bytes = 0
        self._wake: Any = None  # (the publisher's asyncio.Event, once it runs)
        self._outbox_empty = trio.Event()  # (set when the publisher has sent everything)
        self._left = trio.Event()
        self._max_message = 1024 * 1024 - _FRAME_ROOM
        self.members = Members(
            self.name,
            self.incarnation,
            config.down_after,
            self._member_lost,
            self._member_joined,
            self._member_changed,
        )
        self.regions: dict[str, Region] = {}
        self._spawner = RemoteSpawner(self)
        self.hosting = Hosting(self)
        self.placing = Placing(self)
        self._loop: Any = None
        self._control: Any = None  # (the second connection: see run)
        self._on_connected: dict[str, Any] = {}
        self._refused_by_server: Exception | None = None
        self._last_client_error: Exception | None = None
        self._members_changed = trio.Event()  # (set, and made anew, at each change)
        self._rewatch = False  # (set when the members' watch must be made again)
        self._nc: Any = None
        self._members_kv: Any = None
        self._shards_kv: Any = None
        self.names = Names(self)
        self._heard: dict[str, int] = {}  # (see send_bytes)

    @property
    def where(self) -> str:
        return f"node {self.name} of the cluster"

    # -- the codec --------------------------------------------------------------------------

    def encode(self, message: Any) -> bytes:
        if message.__class__ is Encoded:  # (encoded at the call already: a placed child's)
            encoded: bytes = message.payload
            return encoded
        payload = self.codec.encode_message(message)
        if len(payload) > self._max_message:
            cls = type(message)
            raise FrameTooLarge(
                f"to another node ({cls.__module__}.{cls.__qualname__}; NATS max_payload)",
                len(payload),
                self._max_message,
                received=False,
            )
        return payload

    def decode(self, payload: bytes) -> Any:
        return self.codec.decode_message(payload)

    def pack(self, frame: tuple[Any, ...]) -> bytes:
        if frame[0] == "order" and frame[3] is not None:  # (its reason: an exception)
            frame = (*frame[:3], self.encode_error(frame[3]))
        return self.codec.encode_frame(frame)

    def unpack(self, data: bytes) -> Any:
        return self.codec.decode_frame(data)

    def encode_error(self, error: BaseException) -> bytes:
        return self.codec.encode_error(error, self.where)

    def decode_error(self, payload: bytes) -> BaseException:
        return self.codec.decode_error(payload)

    def error_of(self, payload: bytes, target: Address) -> BaseException:
        return self.codec.decode_error(payload)

    def report_dead_letter(
        self, message: Any, sender: ActorRef | None, recipient: ActorRef, reason: Any
    ) -> bool:
        """A message from an actor of another node that could not be delivered here is
        a dead letter on the sender's node (where its sender can see it); one without a
        sender, or whose sender's node is gone, is one here."""
        if sender is None or self.system._terminating:
            return False
        origin = sender.address.node
        if origin == self.name or origin not in self.members.live:
            return False
        try:
            payload = self.encode(message)
        except ActorError:
            payload = self.encode(f"<{type(message).__qualname__} that cannot cross: {message!r}>")
        frame = (
            "dead-letter",
            tuple(recipient.address),
            tuple(sender.address),
            payload,
            reason.value,
        )
        try:
            self.send_frame(origin, frame)
        except ActorError:
            return False
        return True

    def described(self, message: Encoded) -> Any:
        """A message encoded at the call (a placed child's), for a dead letter here."""
        try:
            return self.codec.decode_message(message.payload)
        except Exception as error:
            return f"<{message.type_name}, encoded, that cannot be decoded here: {error!r}>"

    # -- NATS, from trio --------------------------------------------------------------------

    @trio.lowlevel.enable_ki_protection  # (Ctrl-C comes out of the wait, not halfway in)
    async def _aio(self, awaitable: Awaitable[_T]) -> _T:
        """Run a coroutine of the NATS client in the asyncio loop (one hop, ~0.2 ms)."""
        result: _T = await self._loop.run_aio_coroutine(awaitable)
        return result

    def _connect_options(self, role: str, client: Any) -> dict[str, Any]:
        config = self.config
        joined = False

        async def on_error(error: Exception) -> None:
            if not joined and (
                isinstance(error, ssl.SSLError) or "authorization" in str(error).lower()
            ):
                # Refused credentials or certificate, while connecting: give up after
                # this attempt, not at the deadline (the client would try forever).
                self._refused_by_server = error
                client.options["max_reconnect_attempts"] = 1
                return
            if not joined:
                self._last_client_error = error  # (named if connecting fails)
            _log.warning("%s: NATS (%s): %s", self.where, role, error)

        async def on_connected() -> None:
            nonlocal joined
            joined = True

        async def on_disconnected() -> None:
            if not self._left.is_set():
                _log.warning("%s: disconnected from NATS (%s); reconnecting", self.where, role)

        async def on_reconnected() -> None:
            _log.warning("%s: reconnected to NATS (%s)", self.where, role)
            if role == "control":
                self._rewatch = True

        options: dict[str, Any] = {
            "servers": list(config.servers),
            "name": f"{self.system.name}/{self.name}/{role}",
            "connect_timeout": config.connect_timeout,
            "max_reconnect_attempts": -1,
            "reconnect_time_wait": min(config.heartbeat, 2.0),
            "error_cb": on_error,
            "disconnected_cb": on_disconnected,
            "reconnected_cb": on_reconnected,
        }
        self._on_connected[role] = on_connected
        if config.user is not None:
            options["user"] = config.user
            options["password"] = config.password
        if config.token is not None:
            options["token"] = config.token
        if config.tls is not None:
            options["tls"] = config.tls
        return options

    async def _open_client(self, role: str) -> Any:
        """A connection to NATS (``ClusterError`` if there is none to be had)."""
        from nats.aio.client import Client as NatsClient

        config = self.config
        client = NatsClient()
        connected = False
        try:
            try:
                with trio.fail_after(config.connect_timeout * 2 + 1):
                    await self._aio(client.connect(**self._connect_options(role, client)))
                    connected = True
                    await self._on_connected[role]()
            finally:
                if not connected:  # (close what the attempt left open)
                    with trio.CancelScope(shield=True) as shield:
                        shield.deadline = trio.current_time() + 2
                        with contextlib.suppress(Exception):
                            await self._aio(client.close())
            if config.tls is not None and not client._server_info.get("tls_required"):
                # (the client falls back to plain text when the server does not ask for
                # TLS: refuse rather than send in clear what was meant to be secret)
                with contextlib.suppress(Exception):
                    await self._aio(client.close())
                raise ConnectionRefusedError(
                    "Cluster(tls=...) is given but the server does not use TLS"
                )
        except (Exception, trio.TooSlowError) as error:
            cause = self._refused_by_server or self._last_client_error or error
            failure = ClusterError(
                f"node {self.name} could not connect to NATS at "
                f"{', '.join(config.servers)}: {cause!r}"
            )
            raise failure from cause
        return client

    async def _close_clients(self) -> None:
        with trio.CancelScope(shield=True) as shield:
            shield.deadline = trio.current_time() + 2
            for client in (self._nc, self._control):
                if client is None:
                    continue
                try:
                    await self._aio(client.close())
                except Exception as error:  # (it is going anyway)
                    _log.debug("%s: closing a NATS connection: %r", self.where, error)

    @trio.lowlevel.enable_ki_protection
    async def run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Join the cluster and serve it until :meth:`leave`. Returns from
        ``nursery.start`` once this node is a member and knows the others; raises
        :class:`ClusterError` (the cause chained) if it cannot join.

        A node has two connections to NATS: one for the frames between nodes, one for
        the buckets (membership, names, shard owners), so that a flood of frames does
        not hold up the heartbeats behind it.

        Protected from ``KeyboardInterrupt`` (as the asyncio loop is: see
        ``actors/_aio_interrupts.py``): Ctrl-C goes to the main task, which cancels this
        one; raised in here it would stop the loop halfway (a hang, or an exception
        group)."""
        import trio_asyncio

        protect_aio_loops()
        failure: ClusterError | None = None
        # (Raised after the asyncio loop is closed, so that it comes out as itself, not
        # in the exception group of the loop's own nursery.)
        async with trio_asyncio.open_loop() as loop:
            self._loop = loop
            try:
                self._nc = await self._open_client("frames")
                self._control = await self._open_client("control")
                await self._join()
                self.hosting.start()
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    nursery.start_soon(self._send_loop, name=f"{self.where}: outbox")
                    nursery.start_soon(keep_membership, self, name=f"{self.where}: heartbeats")
                    task_status.started()
                    await self._left.wait()
                    nursery.cancel_scope.cancel()
            except ClusterError as error:
                failure = error
            finally:
                await self._close_clients()
        if failure is not None:
            raise failure

    async def _bucket(self, name: str, ttl: float | None) -> Any:
        from nats.js.api import KeyValueConfig

        js = self._control.jetstream()
        bucket = f"{self._bucket_prefix}_{name}"
        try:
            return await self._aio(js.key_value(bucket))
        except Exception:
            config = KeyValueConfig(bucket=bucket, history=1, ttl=ttl)
            return await self._aio(js.create_key_value(config=config))

    async def _join(self) -> None:
        config = self.config
        try:
            self._max_message = self._nc.max_payload - _FRAME_ROOM
            self._members_kv = await self._bucket("members", ttl=max(10 * config.down_after, 30.0))
            self.names.kv = await self._bucket("names", ttl=None)
            self._shards_kv = await self._bucket("shards", ttl=None)
            await self._aio(self._nc.subscribe(self._inbox_prefix + self.name, cb=self._on_message))
            await self._aio(self._nc.flush())
            await self._put_record()
            watcher = await self._aio(self._members_kv.watchall())
            now = trio.current_time()
            while True:  # the members there are: up to the marker after the last one
                entry = await self._aio(watcher.updates(timeout=config.connect_timeout))
                if entry is None:
                    break
                self._on_member_entry(entry, now, age_of(entry.created))
        except ClusterError:
            raise
        except Exception as error:
            raise ClusterError(
                f"node {self.name} could not join the cluster through NATS at "
                f"{', '.join(config.servers)} (is JetStream enabled on the server: "
                f"nats-server -js?): {error!r}"
            ) from error
        self._watcher = watcher

    async def _put_record(self) -> None:
        await self._aio(
            self._members_kv.put(
                self.name,
                record_of(
                    self.incarnation,
                    self.codec.name,
                    tuple(name for name, region in self.regions.items() if region.host),
                    tuple(self._spawner.classes),
                ),
            )
        )

    def _on_member_entry(self, entry: Any, now: float, age: float = 0.0) -> None:
        operation = getattr(entry, "operation", None)
        if operation in ("DEL", "PURGE"):
            self.members.left(entry.key)
        elif entry.value is not None:
            self.members.seen(entry.key, entry.value, now, age)

    def _pulse(self) -> None:
        self._members_changed.set()
        self._members_changed = trio.Event()

    def _member_joined(self, name: str) -> None:
        self._pulse()
        self._heard.pop(name, None)
        for region in self.regions.values():
            region.rebalance()
        member = self.members.live[name]
        if member.codec != self.codec.name:
            _log.error(
                "%s: node %s uses the %r codec, this node the %r one: messages between "
                "them will be undecodable (give every node the same Cluster(codec=...))",
                self.where,
                name,
                member.codec,
                self.codec.name,
            )

    def _member_lost(self, name: str, incarnation: int, how: str) -> None:
        self._pulse()
        self._opener.retire(name, incarnation)
        self._heard.pop(name, None)
        for region in self.regions.values():
            region.node_lost(name)
        lost = NodeLost(name, how)
        self.node_lost(name, lost)
        self.placing.lost(name, lost)
        self.hosting.node_lost(name)

    def _member_changed(self, name: str) -> None:
        self._pulse()
        for region in self.regions.values():
            region.rebalance()

    # -- frames out ---------------------------------------------------------------------------

    def send_bytes(self, node: str, data: bytes) -> None:
        if node not in self.members.live and node not in self._heard:
            raise NodeLost(node, "it is not a live member of the cluster")
        if self._left.is_set():
            raise NodeLost(self.name, "this node has left the cluster")
        if self._outbox_bytes + len(data) > OUTBOX_LIMIT:
            raise LinkFull(f"to node {node}", self._outbox_bytes, len(data), OUTBOX_LIMIT)
        frames = self._outbox.get(node)
        if frames is None:
            self._outbox[node] = [data]
        else:
            frames.append(data)
        self._outbox_bytes += len(data)
        self._wake_publisher()

    def _incarnation_of_peer(self, node: str) -> int | None:
        member = self.members.live.get(node)
        if member is not None:
            return member.incarnation
        # (a node this one has heard from before its member key was seen here: it has
        # just joined; its answer must not wait for the watch)
        return self._heard.get(node)

    async def _send_loop(self) -> None:
        """Run the publisher in the asyncio loop (for as long as the node runs)."""
        await self._aio(self._publisher())

    async def _publisher(self) -> None:
        """The asyncio side of the outbox: woken (:meth:`_wake_publisher`) when frames
        are queued, it seals and publishes what the outbox holds. Being an asyncio task
        already, it costs no hop from trio per batch (a hop is ~0.2 ms: an ask would pay
        it for its answer)."""
        import asyncio

        wake = self._wake = asyncio.Event()
        nc = self._nc
        while True:
            while self._outbox:  # (also what was queued before this task started)
                outbox, self._outbox = self._outbox, {}
                self._outbox_bytes = 0
                for subject, data in self._sealed_batches(outbox):
                    try:
                        await nc.publish(subject, data)
                    except Exception as error:  # (the frames in it are lost: at most once)
                        _log.warning(
                            "%s: a message of %d bytes to %s could not be published: %r",
                            self.where,
                            len(data),
                            subject,
                            error,
                        )
            self._outbox_empty.set()
            await wake.wait()
            wake.clear()

    def _wake_publisher(self) -> None:
        wake = self._wake
        if wake is not None and not wake.is_set():
            self._outbox_empty = trio.Event()
            wake.set()

    def _sealed_batches(self, outbox: dict[str, list[bytes]]) -> list[tuple[str, bytes]]:
        """The frames queued for each node, as NATS messages: as many frames in each as
        fit (:func:`join_frames`), each message sealed once."""
        messages: list[tuple[str, bytes]] = []
        limit = self._max_message
        for node, frames in outbox.items():
            incarnation = self._incarnation_of_peer(node)
            if incarnation is None:  # (lost since they were queued: lost with it)
                _log.warning(
                    "%s: %d frames for node %s not sent: it was lost", self.where, len(frames), node
                )
                continue
            subject = self._inbox_prefix + node
            recipient = f"{node}#{incarnation}"
            start = size = 0
            for at, frame in enumerate(frames):
                if size and size + len(frame) + 4 > limit:
                    body = join_frames(frames[start:at])
                    messages.append((subject, self._seal(body, recipient)))
                    start, size = at, 0
                size += len(frame) + 4
            body = join_frames(frames[start:])
            messages.append((subject, self._seal(body, recipient)))
        return messages

    def _seal(self, body: bytes, recipient: str) -> bytes:
        counter = next(self._counter)
        return seal(self._keyring, self.name, self.incarnation, counter, body, recipient=recipient)

    # -- frames in ------------------------------------------------------------------------------

    async def _on_message(self, msg: Any) -> None:
        # (Runs in the asyncio loop, in the trio thread: it hands the frames over at once.)
        self.on_sealed(msg.data)

    def on_sealed(self, data: bytes) -> None:
        """A message from the inbox: opened (or refused), then each of its frames
        decoded and dispatched."""
        try:
            sealed = self._opener.open(data)
        except SealRefused as refused:
            _log.warning("%s: %s (%d bytes, not decoded)", self.where, refused, len(data))
            return
        origin = sealed.sender
        if origin not in self.members.live:
            self._heard[origin] = sealed.incarnation
        try:
            frames = split_frames(sealed.body)
        except ValueError as error:
            _log.warning("%s: a message from node %s: %s", self.where, origin, error)
            return
        for body in frames:
            try:
                if self.on_binary_frame(origin, body):
                    continue
                frame = self.unpack(body)
                if not self.on_frame(origin, tuple(frame)):
                    _log.warning("%s: unknown frame %r from node %s", self.where, frame[0], origin)
            except Exception as error:
                _log.warning(
                    "%s: a frame of %d bytes from node %s could not be handled: %r",
                    self.where,
                    len(body),
                    origin,
                    error,
                )

    def answer(self, origin: str, ask_id: int, value: Any, error: BaseException | None) -> None:
        """Answer an ask of node ``origin`` (this node's own asks directly)."""
        if origin == self.name:
            pending = self._asks.pop(ask_id, None)
            if pending is not None:
                pending.settle(value, error)
            return
        self._send_answer(origin, ask_id, value, error)

    def _send_answer(
        self, origin: str, ask_id: int, value: Any, error: BaseException | None
    ) -> None:
        if origin == self.name:  # (an ask of this node's own, for an entity here)
            self.answer(origin, ask_id, value, error)
            return
        super()._send_answer(origin, ask_id, value, error)

    def on_frame(self, origin: str, frame: tuple[Any, ...]) -> bool:
        if super().on_frame(origin, frame):
            return True
        kind = frame[0]
        if kind == "entity":
            _, type_name, entity_id, sender, payload, hops = frame
            region = self.regions.get(type_name)
            delivery = _Delivery(entity_id, payload, _ref_at(sender), None, None, 0.0, hops)
            if region is None:
                self._no_region(type_name, delivery)
            else:
                region.route(delivery)
        elif kind == "spawn":
            _, asker, ask_id, class_name, payload, name = frame
            self._spawner.on_spawn(asker, ask_id, class_name, payload, name)
        elif kind == "place":
            _, parent_node, address, class_name, payload = frame
            self.hosting.place(parent_node, _address(address), class_name, payload)
        elif kind == "order":
            _, address, what, error = frame
            cause = None if error is None else self.decode_error(error)
            self.hosting.order(_address(address), what, cause)
        elif self.placing.on_report(kind, frame):
            pass
        elif kind == "entity-ask":
            _, asker, ask_id, type_name, entity_id, sender, payload, timeout, hops = frame
            region = self.regions.get(type_name)
            delivery = _Delivery(entity_id, payload, _ref_at(sender), asker, ask_id, timeout, hops)
            if region is None:
                self._no_region(type_name, delivery)
            else:
                region.route(delivery)
        else:
            return False
        return True

    def _no_region(self, type_name: str, delivery: _Delivery) -> None:
        why = f"node {self.name} does not know entity type {type_name!r}"
        if delivery.ask_id is not None and delivery.origin is not None:
            path = f"entity {type_name}/{delivery.entity_id}"
            self.answer(delivery.origin, delivery.ask_id, None, ActorDead(path, why))
        else:
            _log.warning(
                "%s: a message for entity %s/%s: %s", self.where, type_name, delivery.entity_id, why
            )

    # -- children placed on other nodes (_placing.py) -------------------------------------------

    def find_local(self, path: str) -> Any:
        return self.hosting.find(path)

    def place_child(
        self,
        made: tuple[Any, ...],
        limits: tuple[Any, ...],
        actor_class: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        placement: Any,
    ) -> ClusterChildCell:
        """The cell of a child placed on another node (see ``_placing.py``); called by
        ``spawn_child`` with what it made of the spawn's arguments."""
        if not isinstance(placement, OnNode | AnyNode):
            raise TypeError(
                "placement on a node of a cluster must be actors.cluster.OnNode(name) or "
                f"actors.cluster.AnyNode(), got {placement!r}"
            )
        if not isinstance(actor_class, type) or kwargs:
            raise TypeError(
                f"cannot place {actor_class!r} on another node: give an actor class (the "
                "node starts the class of that name in its Cluster(actors=...)) and "
                "positional arguments"
            )
        class_name = self._spawner.name_of(actor_class)
        payload = self.encode(args)
        host = self.placing.choose(class_name, placement, None)
        cell = ClusterChildCell(
            *made,
            *limits,
            root=self,  # type: ignore[arg-type]
            node=host,
            pickled_factory=b"",
            address_node=self.name,
        )
        cell._setup(class_name, payload, placement)
        cell._spawn_frame = cell._make_spawn_frame(self.name)
        return cell

    def adopt(self, node: str, cell: Any) -> None:
        self.placing.placed[cell.ref.address] = cell

    def release(self, node: str, address: Address) -> None:
        self.placing.placed.pop(address, None)

    async def host_for(self, cell: Any) -> str:
        """Where a placed child (re)starts: its host if still live, else one chosen
        again by its placement (:class:`ActorError` if none can take it)."""
        await trio.lowlevel.checkpoint()
        host: str = cell._host
        if host != self.name and host not in self.members.live:
            host = self.placing.choose(cell._class_name, cell._placement, host)
        cell._host = host
        return host

    def tell_now(self, target: Address, message: Any, sender: ActorRef | None) -> bool:
        return self.try_tell(target, self.encode(message), sender)

    def try_tell(self, target: Address, payload: bytes, sender: ActorRef | None) -> bool:
        cell = self.placing.placed.get(target)
        if cell is None:
            return False
        try:
            self.send_tell(cell._host, target, sender, payload)
        except ActorError:
            return False
        return True

    def try_ask(self, cell: Any, payload: bytes, sender: ActorRef | None, reply: Any) -> bool:
        return try_ask(self, cell, payload, sender, reply)

    # -- spawning on other nodes -------------------------------------------------------------

    async def spawn(
        self,
        actor: type[Actor] | str,
        *args: Any,
        node: str | None = None,
        name: str | None = None,
        timeout: float | None = None,
    ) -> ActorRef:
        """Start an actor of class ``actor`` (or of that name) with ``args`` on node
        ``node`` (``None``: the live nodes that list the class take turns), as a child
        of that node's ``/user``, and return its ref. The class must be in that node's
        ``Cluster(actors=...)``; ``args`` cross as messages do (the codec's types).
        Raises what the start raised there (``ActorNameTaken``, an unknown class...),
        :class:`ActorDead` if the node is not live or is lost meanwhile,
        :class:`AskTimeout` after ``timeout`` (``Settings.ask_timeout``). See
        ``_remote_spawn.py`` for supervision."""
        return await self._spawner.spawn(actor, args, node, name, timeout)

    # -- sharding -------------------------------------------------------------------------------

    def is_live(self, node: str, incarnation: int) -> bool:
        """Whether ``node``'s incarnation ``incarnation`` is live as seen here."""
        if node == self.name:
            return incarnation == self.incarnation
        member = self.members.live.get(node)
        return member is not None and member.incarnation == incarnation

    def incarnation_of(self, node: str) -> int:
        if node == self.name:
            return self.incarnation
        return self.members.live[node].incarnation

    def hosts_of(self, type_name: str) -> list[str]:
        """The live nodes that host entities of ``type_name``, sorted."""
        hosts = [m.name for m in self.members.live.values() if type_name in m.entity_types]
        region = self.regions.get(type_name)
        if region is not None and region.host:
            hosts.append(self.name)
        return sorted(hosts)

    async def start_entities(self, kind: EntityType, *, host: bool = True) -> None:
        """Take part in the entity type ``kind`` (see ``_sharding.py``): host its
        entities here (``host=False``: only reach them, from a node that never runs
        them). Every node that hosts it must give the same ``name`` and ``shards``.
        The other nodes learn it with this node's next heartbeat."""
        if not isinstance(kind, EntityType):
            raise TypeError(f"start_entities takes an actors.cluster.EntityType, got {kind!r}")
        if kind.name in self.regions:
            raise ValueError(f"entity type {kind.name!r} is already started on this node")
        region = Region(self, kind, host)
        self.regions[kind.name] = region
        region.start()
        if host:
            await self._put_record()  # (at once: the others may choose this node)

    def entity(self, type_name: str, entity_id: str) -> EntityRef:
        """The entity ``entity_id`` of the type ``type_name`` started on this node
        with :meth:`start_entities` (:class:`KeyError` otherwise; ``InvalidActorName``
        if the id cannot name an actor)."""
        region = self.regions.get(type_name)
        if region is None:
            raise KeyError(
                f"entity type {type_name!r} is not started on node {self.name}: call "
                "await system.cluster.start_entities(EntityType(...)) first (host=False "
                "to reach its entities without hosting any)"
            )
        return EntityRef(region, entity_id)

    # -- the user's API ---------------------------------------------------------------------------

    def live_members(self) -> list[str]:
        """The names of the nodes this node counts as live, itself included, sorted."""
        return sorted([self.name, *self.members.live])

    def member(self, name: str) -> Member | None:
        """What this node knows of the live member ``name`` (``None`` if not live)."""
        return self.members.live.get(name)

    async def wait_for_members(
        self,
        names: set[str] | list[str],
        timeout: float = 30.0,
        *,
        hosting: str | None = None,
    ) -> None:
        """Wait until every node in ``names`` is a live member as seen here (and, with
        ``hosting``, hosts entities of that type: it called ``start_entities``).
        :class:`TimeoutError` naming the missing ones after ``timeout`` seconds."""
        wanted = set(names) - {self.name}

        def missing() -> list[str]:
            live = self.members.live
            return sorted(
                name
                for name in wanted
                if name not in live
                or (hosting is not None and hosting not in live[name].entity_types)
            )

        with trio.move_on_after(timeout):
            while missing():
                await self._members_changed.wait()
            return
        raise TimeoutError(
            f"nodes {missing()} did not join{'' if hosting is None else ' hosting ' + hosting}"
            f" within {timeout:g} s"
        )

    async def register(self, name: str, ref: ActorRef) -> None:
        """Register ``ref`` (an actor of this node) under ``name`` cluster-wide, so
        that :meth:`lookup` finds it from any node. Raises :class:`NameTaken` if a live
        actor holds the name. The name is freed when the actor stops (this node deletes
        it), when its node is lost (the next :meth:`register` may take it over), or by
        :meth:`unregister`."""
        await self.names.register(name, ref)

    async def unregister(self, name: str) -> None:
        """Free ``name`` if this node registered it (nothing otherwise)."""
        await self.names.unregister(name)

    async def lookup(self, name: str) -> ActorRef | None:
        """The actor registered under ``name`` anywhere in the cluster, or ``None`` (no
        such name, or its actor's node is lost)."""
        return await self.names.lookup(name)

    # -- leaving ----------------------------------------------------------------------------------

    async def leave(self) -> None:
        """Leave the cluster: free this node's names, delete its member key, send what
        the outbox holds. Called once the actors are down."""
        if self._nc is None or self._members_kv is None or self._left.is_set():
            self._left.set()
            return
        try:
            await self.hosting.stop()  # (their ends are reported to their parents' nodes)
            await self.names.free_all()
            # What its actors said last (their ends, for watchers elsewhere) goes first,
            # then the member key: the others see the node leave after that.
            if self._outbox:
                self._wake_publisher()
                await self._outbox_empty.wait()
            await self._aio(self._nc.flush())
            await self._aio(self._members_kv.delete(self.name))
        except Exception as error:
            _log.warning("%s: leaving the cluster: %r", self.where, error)
        finally:
            self._left.set()
