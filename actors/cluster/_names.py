"""Cluster-wide names: an actor registered under a name on one node is found by
:meth:`Names.lookup` from any node.

The names are the keys of the key-value bucket ``{prefix}_{system}_names``; each holds
the actor's address and the incarnation of its node. A name is created by
compare-and-set, so two actors cannot take it at once; it is freed by the node of its
actor when the actor stops, and a name whose node is lost (or is a later incarnation)
counts as free: :meth:`Names.lookup` does not return it and :meth:`Names.register` takes
it over.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

import msgspec

from .._address import Address
from .._ref import ActorRef
from ._errors import NameTaken

if TYPE_CHECKING:
    from ._node import ClusterNode

_log: Final = logging.getLogger("actors.cluster")


class _NameRecord(msgspec.Struct, frozen=True):
    address: tuple[str, str, int, str]
    incarnation: int


_encode_name: Final = msgspec.msgpack.Encoder().encode
_decode_name: Final = msgspec.msgpack.Decoder(_NameRecord).decode


class Names:
    """The names of one node (see the module documentation)."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.kv: Any = None  # (the bucket, once the node has joined)
        self.held: dict[str, Address] = {}

    async def register(self, name: str, ref: ActorRef) -> None:
        """Register ``ref`` under ``name`` cluster-wide, so that :meth:`lookup` finds it
        from any node. Raises :class:`NameTaken` if a live actor holds the name. The
        name is freed when the actor stops (this node deletes it), when its node is
        lost (the next :meth:`register` may take it over), or by :meth:`unregister`."""
        import nats.js.errors

        address = ref.address
        if address.node != self.node.name:
            raise ValueError(
                f"register {name!r}: {ref} is on node {address.node}; names are registered "
                "by the node that hosts the actor"
            )
        record = _encode_name(_NameRecord(tuple(address), self.node.incarnation))  # type: ignore[arg-type]
        try:
            await self.node._aio(self.kv.create(name, record))
        except nats.js.errors.KeyWrongLastSequenceError:
            entry = await self.node._aio(self.kv.get(name))
            holder = self._live_holder(entry.value)
            if holder is not None:
                raise NameTaken(name, str(holder)) from None
            await self.node._aio(self.kv.update(name, record, last=entry.revision))
        self.held[name] = address
        self._free_when_stopped(name, ref)

    def _live_holder(self, value: bytes | None) -> Address | None:
        """The address a name record holds, if its actor may be alive."""
        if not value:
            return None
        try:
            record = _decode_name(value)
        except msgspec.DecodeError:
            return None
        address = Address(*record.address)
        if address.node == self.node.name:
            cell = self.node.resolve(address)
            return address if cell is not None and not cell.is_dead() else None
        member = self.node.members.live.get(address.node)
        if member is None or member.incarnation != record.incarnation:
            return None
        return address

    def _free_when_stopped(self, name: str, ref: ActorRef) -> None:
        names = self

        class _Freer:
            def _watched_terminated(
                self, ref: ActorRef, reason: BaseException | None, confirmed: bool
            ) -> bool:
                if names.held.get(name) == ref.address and names.node._nursery is not None:
                    names.node._nursery.start_soon(names._delete_name, name, ref.address)
                return True

        cell = ref._resolve()
        if not cell.watched_by(_Freer()):
            _Freer()._watched_terminated(ref, None, False)

    async def _delete_name(self, name: str, address: Address) -> None:
        if self.held.get(name) != address:
            return
        del self.held[name]
        try:
            entry = await self.node._aio(self.kv.get(name))
            if entry.value and Address(*_decode_name(entry.value).address) == address:
                await self.node._aio(self.kv.delete(name, last=entry.revision))
        except Exception as error:
            _log.debug("%s: freeing the name %r: %r", self.node.where, name, error)

    async def unregister(self, name: str) -> None:
        """Free ``name`` if this node registered it (nothing otherwise)."""
        address = self.held.get(name)
        if address is not None:
            await self._delete_name(name, address)

    async def lookup(self, name: str) -> ActorRef | None:
        """The actor registered under ``name`` anywhere in the cluster, or ``None`` (no
        such name, or its actor's node is lost)."""
        import nats.js.errors

        try:
            entry = await self.node._aio(self.kv.get(name))
        except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
            return None
        address = self._live_holder(entry.value)
        return None if address is None else ActorRef._create(address)

    async def free_all(self) -> None:
        """Free every name this node holds (it is leaving the cluster)."""
        for name, address in list(self.held.items()):
            await self._delete_name(name, address)
