"""``ConsistentHashingRouting``: each key to the routee that owns it on a hash ring."""

from __future__ import annotations

import bisect
import enum
import hashlib
import math
import struct
import uuid
from collections.abc import Callable, Hashable, Sequence
from typing import Any

from ._logics import RouteeT, SingleRoutingLogic, _check_callable

# Keys and virtual nodes are hashed with 64-bit BLAKE2b, personalised per use; hashing
# starts from a copy of these (never updated) templates, which is faster than a new object.
_KEY_HASH = hashlib.blake2b(digest_size=8, person=b"trio-actors/key")
_NODE_HASH = hashlib.blake2b(digest_size=8, person=b"trio-actors/node")


def _encode_int(value: int) -> bytes:
    return b"i" + value.to_bytes((value.bit_length() + 8) // 8, "big", signed=True)


def _encode_key(value: object) -> bytes:
    """A canonical byte encoding of a routing key, the same in every process.

    Keys that compare equal encode equally where it matters (``1``, ``1.0`` and ``True``;
    a ``StrEnum`` member and its string); different types of unequal keys never collide
    (each encoding starts with a type tag, and parts of a tuple are length-prefixed).
    """
    if type(value) is str:  # the common cases first, without isinstance walks
        return b"s" + value.encode("utf-8", "surrogatepass")
    if type(value) is int:
        return _encode_int(value)
    if type(value) is bytes:
        return b"b" + value
    if isinstance(value, str):
        return b"s" + value.encode("utf-8", "surrogatepass")
    if isinstance(value, int):  # bool and IntEnum too: True routes like 1
        return _encode_int(int(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return b"b" + bytes(value)
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return _encode_int(int(value))
        return b"f" + struct.pack(">d", value)
    if value is None:
        return b"n"
    if isinstance(value, tuple):
        parts = [_encode_key(item) for item in value]
        return b"t" + b"".join(len(part).to_bytes(8, "big") + part for part in parts)
    if isinstance(value, frozenset):
        parts = sorted(_encode_key(item) for item in value)
        return b"z" + b"".join(len(part).to_bytes(8, "big") + part for part in parts)
    if isinstance(value, uuid.UUID):
        return b"u" + value.bytes
    if isinstance(value, enum.Enum):
        owner = type(value)
        return b"e" + f"{owner.__module__}.{owner.__qualname__}.{value.name}".encode()
    cls = type(value)
    raise TypeError(
        f"ConsistentHashingRouting cannot hash a key of type "
        f"{cls.__module__}.{cls.__qualname__} "
        f"({value!r}) stably: the key function must return a str, bytes, int, float, "
        "bool, None, UUID, Enum member, or a tuple or frozenset of these "
        "(for example a str that identifies the object)"
    )


def _key_point(key: object) -> int:
    """Where a routing key falls on the ring: the 64-bit BLAKE2b hash of its canonical
    encoding, the same in every process."""
    h = _KEY_HASH.copy()
    h.update(_encode_key(key))
    return int.from_bytes(h.digest(), "big")


def _node_points(node_key: str, virtual_nodes: int) -> list[int]:
    """The ring points of a routee: hashes of its node key followed by the virtual node's
    number as 4 big-endian bytes (a fixed-width suffix, so no two pairs collide)."""
    named = _NODE_HASH.copy()
    named.update(node_key.encode("utf-8", "surrogatepass"))
    points = []
    for i in range(virtual_nodes):
        h = named.copy()
        h.update(i.to_bytes(4, "big"))
        points.append(int.from_bytes(h.digest(), "big"))
    return points


_MAX_VIRTUAL_NODES = 65_536  # far more than useful; a bigger one is a typo that eats RAM


class ConsistentHashingRouting(SingleRoutingLogic[RouteeT]):
    """Each message to the routee that owns its key on a hash ring.

    ``key(message)`` gives the message's routing key: a str, bytes, int, float, bool,
    None, UUID, Enum member, or a tuple or frozenset of these (keys that compare equal,
    such as ``1`` and ``1.0``, route alike; other types raise ``TypeError``). Messages
    with equal keys go to the same routee while the routees stay the same.

    Each routee is placed on a 64-bit ring at ``virtual_nodes`` points (1 to 65,536;
    more points spread keys more evenly but cost memory and time), hashes of
    ``node_key(routee)`` (default ``str(routee)``, which for an ``ActorRef`` shows its
    path and uid); a key belongs to the routee of the first point at or after the key's
    own hash, wrapping around. All hashing is BLAKE2b over canonical encodings, never
    Python's salted ``hash()``, so placement depends only on the keys and the node keys:
    it is the same in every process and whatever the order of the routees. Adding a
    routee moves only the keys it takes over (about 1/(n+1) of all keys, taken from
    the others), and all of them to it; removing one moves only its own keys.

    ``node_key`` must be a pure function of the routee (it is cached per routee), and
    distinct routees need distinct node keys (``ValueError`` otherwise). A routee listed
    twice counts once. Exceptions from ``key`` (and the ``TypeError`` for a key of an
    unsupported type) propagate to the caller of ``select``.

    Cost: ``select`` is one BLAKE2b hash of the key and a bisection over the ``v * n``
    points of the ring (``v = virtual_nodes``). A change of the routees hashes only the
    added routees (``v`` hashes each; the points of the others are cached). Then, if
    the change is small next to the ring (at most ``256 + v * n / 128`` points added or
    removed), each point is inserted or deleted in place (a bisection and a list insert
    or delete: O(v n) per point, but a fast memory move); a bigger change (such as the
    first) sorts the whole ring again, O(v n log(v n)).
    """

    __slots__ = (
        "_key",
        "_members",
        "_names",
        "_node_key",
        "_owners",
        "_points",
        "_routees",
        "_virtual_nodes",
        "_vnodes",
    )

    def __init__(
        self,
        key: Callable[[Any], Hashable | str | bytes],
        virtual_nodes: int = 100,
        node_key: Callable[[RouteeT], str] = str,
    ) -> None:
        _check_callable(key, "ConsistentHashingRouting key")
        _check_callable(node_key, "ConsistentHashingRouting node_key")
        if isinstance(virtual_nodes, bool) or not isinstance(virtual_nodes, int):
            raise TypeError(
                f"virtual_nodes must be an int, got {type(virtual_nodes).__name__} "
                f"{virtual_nodes!r}"
            )
        if not 1 <= virtual_nodes <= _MAX_VIRTUAL_NODES:
            raise ValueError(
                f"virtual_nodes must be at least 1 and at most {_MAX_VIRTUAL_NODES}, "
                f"got {virtual_nodes}"
            )
        self._key = key
        self._node_key = node_key
        self._virtual_nodes = virtual_nodes
        self._routees: tuple[RouteeT, ...] | None = ()  # last tuple synced; None: a list
        self._members: dict[RouteeT, str] = {}  # routee -> node key
        self._vnodes: dict[str, list[int]] = {}  # node key -> its points
        # The ring: three parallel lists sorted by (point, node key), the node key
        # breaking (astronomically rare) ties the same way whatever the routees' order.
        self._points: list[int] = []
        self._names: list[str] = []
        self._owners: list[RouteeT] = []

    def select_one(self, message: Any, routees: Sequence[RouteeT]) -> RouteeT | None:
        """The routee that owns ``key(message)`` on the ring of ``routees``."""
        if routees is not self._routees:
            self._sync(routees)
        points = self._points
        if not points:
            return None
        i = bisect.bisect_left(points, _key_point(self._key(message)))
        return self._owners[i if i < len(points) else 0]

    def routees_changed(self, routees: Sequence[RouteeT]) -> None:
        """Update the ring (see the class docstring for the cost). Raises ``ValueError``
        if two routees have the same node key, ``TypeError`` if a node key is not a
        str; the ring is then unchanged."""
        self._sync(routees)

    def _sync(self, routees: Sequence[RouteeT]) -> None:
        old = self._members
        new: dict[RouteeT, str] = {}
        for routee in routees:
            if routee in new:
                continue
            name = old.get(routee)
            if name is None:
                name = self._node_key(routee)
                if not isinstance(name, str):
                    raise TypeError(
                        f"node_key must return a str, got {type(name).__name__} {name!r} "
                        f"for routee {routee!r}"
                    )
            new[routee] = name
        if new.keys() != old.keys():
            self._update(old, new)
        self._routees = routees if isinstance(routees, tuple) else None

    def _update(self, old: dict[RouteeT, str], new: dict[RouteeT, str]) -> None:
        owner_of: dict[str, RouteeT] = {}
        for routee, name in new.items():
            other = owner_of.setdefault(name, routee)
            if other is not routee:
                raise ValueError(
                    f"routees {other!r} and {routee!r} have the same node key {name!r}; "
                    "ConsistentHashingRouting needs a distinct node_key(routee) per routee"
                )
        # From here on nothing can fail: the ring changes only after the checks.
        removed = [name for routee, name in old.items() if routee not in new]
        added = [(name, routee) for routee, name in new.items() if routee not in old]
        v = self._virtual_nodes
        vnodes = self._vnodes
        if (len(removed) + len(added)) * v <= 256 + len(self._points) // 128:
            for name in removed:
                self._delete_points(name, vnodes.pop(name))
            for name, routee in added:
                vnodes[name] = points = _node_points(name, v)
                self._insert_points(name, routee, points)
        else:
            for name in removed:
                del vnodes[name]
            for name, _ in added:
                vnodes[name] = _node_points(name, v)
            ring = sorted((point, name) for name in owner_of for point in vnodes[name])
            self._points = [point for point, _ in ring]
            self._names = [name for _, name in ring]
            self._owners = [owner_of[name] for _, name in ring]
        self._members = new

    def _insert_points(self, name: str, routee: RouteeT, points: list[int]) -> None:
        ring_points, names, owners = self._points, self._names, self._owners
        for point in points:
            i = bisect.bisect_left(ring_points, point)
            while i < len(ring_points) and ring_points[i] == point and names[i] < name:
                i += 1
            ring_points.insert(i, point)
            names.insert(i, name)
            owners.insert(i, routee)

    def _delete_points(self, name: str, points: list[int]) -> None:
        ring_points, names, owners = self._points, self._names, self._owners
        for point in points:
            i = bisect.bisect_left(ring_points, point)
            while names[i] != name:  # another node's point equal to this one
                i += 1
            del ring_points[i], names[i], owners[i]

    def __repr__(self) -> str:
        return (
            f"ConsistentHashingRouting(key={self._key!r}, virtual_nodes={self._virtual_nodes}, "
            f"node_key={self._node_key!r})"
        )
