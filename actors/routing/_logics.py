"""Routing logics: which routee(s) of a router get a message.

A routing logic is pure bookkeeping with no I/O and no clock: given a message and the
router's current routees, :meth:`RoutingLogic.select` returns the routees that get the
message. Routees are opaque hashable objects (for routers: ``ActorRef``). An empty
``routees`` gives an empty selection, which the router turns into a dead letter.

A logic may keep state (a rotation position, a hash ring), so each router owns its own
instance; instances are not thread-safe (a router runs on one trio thread). The router
calls :meth:`RoutingLogic.routees_changed` whenever its routees change, but ``select``
never trusts that: it always answers for the ``routees`` it is given. Passing the same
``tuple`` object to every ``select`` until the routees change is the fast path
(an identity check); any other sequence is compared with the last one seen (O(n)).
"""

from __future__ import annotations

import abc
import bisect
import enum
import hashlib
import math
import random
import struct
import uuid
from collections.abc import Callable, Hashable, Sequence
from itertools import chain
from typing import Any, Generic, TypeVar

RouteeT = TypeVar("RouteeT", bound=Hashable)


def _check_callable(value: object, what: str) -> None:
    if not callable(value):
        raise TypeError(f"{what} must be callable, got {type(value).__name__} {value!r}")


class RoutingLogic(abc.ABC, Generic[RouteeT]):
    """Chooses the routee(s) that get each message of a router.

    Subclasses implement :meth:`select`; those that keep state derived from the routees
    also override :meth:`routees_changed`.
    """

    __slots__ = ()

    @abc.abstractmethod
    def select(self, message: Any, routees: Sequence[RouteeT]) -> Sequence[RouteeT]:
        """The routees (in ``routees``) that get ``message``: empty if and only if
        ``routees`` is empty. The result is a tuple the caller may keep."""

    def routees_changed(self, routees: Sequence[RouteeT]) -> None:
        """Called by the router after its routees changed (added, removed, reordered),
        before the next :meth:`select`. Lets a logic update its state eagerly and report
        bad routees early; the default does nothing. Calling it is optional for
        correctness: ``select`` also notices a changed ``routees``."""


class SingleRoutingLogic(RoutingLogic[RouteeT]):
    """A logic that sends each message to exactly one routee (none only when there are
    no routees). Subclasses implement :meth:`select_one`; :meth:`select` is derived from
    it. A router calls ``select_one`` on its per-message path: no tuple per message.
    Routees must not be ``None``."""

    __slots__ = ()

    @abc.abstractmethod
    def select_one(self, message: Any, routees: Sequence[RouteeT]) -> RouteeT | None:
        """The routee that gets ``message``, or ``None`` if ``routees`` is empty. Has
        the same effect on the logic's state as :meth:`select`."""

    def select(self, message: Any, routees: Sequence[RouteeT]) -> Sequence[RouteeT]:
        """``(select_one(...),)``, or ``()`` without routees."""
        chosen = self.select_one(message, routees)
        return () if chosen is None else (chosen,)


class RoundRobinRouting(SingleRoutingLogic[RouteeT]):
    """Each message to the next routee in order, wrapping around.

    Between two changes of the routees the rotation is exact: ``n`` routees and ``k * n``
    messages give exactly ``k`` messages to each, in routee order.

    When the routees change, the rotation continues after the routee served last, at its
    place in the new order: a routee added after it is served before the rotation wraps
    around, one added before it waits for the next round. If the routee served last was
    removed, the rotation continues with the first routee that followed it (in the order
    it was served in) and is still present; if none is, it restarts at the first routee.
    The anchor is always the routee served last, even across several changes without a
    message in between, and an empty routee list does not lose it. So when routees are
    only added or removed (the others keep their relative order), no routee is served
    twice and none still present is skipped in the round the change happens in;
    reordering the routees gives no such guarantee.

    A routee listed twice is served twice per round. ``select`` is O(1) when it gets the
    same tuple as last time; a change costs O(n).
    """

    __slots__ = ("_anchor", "_anchor_index", "_next", "_routees", "_served")

    def __init__(self) -> None:
        self._routees: tuple[RouteeT, ...] = ()
        self._next = 0  # index into _routees of the next routee to serve
        self._served = False  # served a routee from _routees since it was set
        self._anchor: tuple[RouteeT, ...] = ()  # the routees when the last one was served
        self._anchor_index = 0  # ...and its index in them

    def select_one(self, message: Any, routees: Sequence[RouteeT]) -> RouteeT | None:
        """The next routee in the rotation (see the class docstring)."""
        if routees is not self._routees:
            self._sync(routees)
        current = self._routees
        if not current:
            return None
        i = self._next
        self._next = i + 1 if i + 1 < len(current) else 0
        self._served = True
        return current[i]

    def routees_changed(self, routees: Sequence[RouteeT]) -> None:
        """Move the rotation position onto the new routees (see the class docstring)."""
        self._sync(routees)

    def _sync(self, routees: Sequence[RouteeT]) -> None:
        new = tuple(routees)
        old = self._routees
        if new == old:
            self._routees = new
            return
        if self._served:
            self._anchor = old
            self._anchor_index = (self._next - 1) % len(old)
            self._served = False
        self._routees = new
        self._next = self._resume_at(new)

    def _resume_at(self, new: tuple[RouteeT, ...]) -> int:
        anchor = self._anchor
        if not new or not anchor:
            return 0
        position: dict[RouteeT, int] = {}
        for i, routee in enumerate(new):
            position.setdefault(routee, i)
        k = self._anchor_index
        last = position.get(anchor[k])
        if last is not None:
            return (last + 1) % len(new)
        m = len(anchor)
        for step in range(1, m):
            following = position.get(anchor[(k + step) % m])
            if following is not None:
                return following
        return 0

    def __repr__(self) -> str:
        return "RoundRobinRouting()"


class RandomRouting(SingleRoutingLogic[RouteeT]):
    """Each message to one routee chosen uniformly at random.

    The choices come from a private ``random.Random(seed)``: the same seed and the same
    sequence of routee counts give the same choices, in any process (``hash()`` salting
    plays no part); ``seed=None`` seeds from the operating system. ``select`` is O(1).
    """

    __slots__ = ("_rng", "_seed")

    def __init__(self, seed: int | None = None) -> None:
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise TypeError(f"seed must be an int or None, got {type(seed).__name__} {seed!r}")
        self._seed = seed
        self._rng = random.Random(seed)

    def select_one(self, message: Any, routees: Sequence[RouteeT]) -> RouteeT | None:
        """One routee, uniformly at random."""
        if not routees:
            return None
        return self._rng.choice(routees)

    def __repr__(self) -> str:
        return f"RandomRouting(seed={self._seed!r})"


class BroadcastRouting(RoutingLogic[RouteeT]):
    """Each message to every routee, in routee order (a routee listed twice gets it
    twice). Stateless; returns ``routees`` itself when it is a tuple, else a copy.

    Not to be confused with the ``Broadcast(message)`` wrapper, which makes any router
    send one message to all its routees whatever its logic.
    """

    __slots__ = ()

    def select(self, message: Any, routees: Sequence[RouteeT]) -> Sequence[RouteeT]:
        """All the routees."""
        return tuple(routees)

    def __repr__(self) -> str:
        return "BroadcastRouting()"


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


def _mailbox_size(routee: Any) -> int:
    """How many messages wait in the mailbox of an actor ref (0 once it has stopped),
    as ``routee.stats().mailbox`` says, without building the record."""
    cell = routee._cell
    if cell is None:
        cell = routee._resolve()
    queued: int = cell.queued()
    return queued


def _bad_size(size: object, routee: object) -> Exception:
    message = (
        f"SmallestMailboxRouting size must return an int >= 0, got {type(size).__name__} "
        f"{size!r} for routee {routee!r}"
    )
    return ValueError(message) if isinstance(size, int) else TypeError(message)


class SmallestMailboxRouting(SingleRoutingLogic[RouteeT]):
    """Each message to the routee with the fewest queued messages, as ``size(routee)``
    reports them (default: ``routee.stats().mailbox``, for routees that are
    :class:`~actors.ActorRef`).

    Ties go round-robin: the scan starts at the routee after the one picked last, and
    the first routee with the smallest size from there (wrapping around) wins. So idle
    routees (size 0) are used in turn rather than always the first one, and a routee
    busy with a message but with an empty queue does not keep getting all the work.
    The scan stops early at a routee of size 0, so ``select`` costs one ``size`` call
    per routee at most, often fewer. ``size`` must return an int >= 0 (else
    ``TypeError`` / ``ValueError``); its exceptions propagate.
    """

    __slots__ = ("_size", "_start")

    def __init__(self, size: Callable[[RouteeT], int] | None = None) -> None:
        if size is None:
            size = _mailbox_size
        _check_callable(size, "SmallestMailboxRouting size")
        self._size = size
        self._start = 0  # where the next scan starts (taken modulo the routee count)

    def select_one(self, message: Any, routees: Sequence[RouteeT]) -> RouteeT | None:
        """The least loaded routee, ties broken round-robin."""
        n = len(routees)
        if n == 0:
            return None
        size = self._size
        start = self._start
        if start >= n:
            start %= n
        best_index = start
        best = size(routees[start])
        if not isinstance(best, int) or best < 0:
            raise _bad_size(best, routees[start])
        if best:  # else nothing can be smaller: skip the scan
            for i in chain(range(start + 1, n), range(start)):
                routee = routees[i]
                s = size(routee)
                if not isinstance(s, int) or s < 0:
                    raise _bad_size(s, routee)
                if s < best:
                    best = s
                    best_index = i
                    if s == 0:
                        break
        self._start = best_index + 1
        return routees[best_index]

    def __repr__(self) -> str:
        return f"SmallestMailboxRouting(size={self._size!r})"
