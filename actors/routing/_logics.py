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
import random
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

    # Two states. Serving: _routees is the tuple served from last, _at the index of the
    # routee served last and _end its last index (the per-message path reads only
    # these; the router's tell inlines that step, so keep the two in step). Pending (no
    # routee served since the routees last changed): _routees is None, _pending holds
    # the new routees and _start the index to serve first, while _anchor[_anchor_index]
    # remembers the routee served last, in the list it was in.
    __slots__ = ("_anchor", "_anchor_index", "_at", "_end", "_pending", "_routees", "_start")

    def __init__(self) -> None:
        self._routees: tuple[RouteeT, ...] | None = None
        self._at = 0
        self._end = -1
        self._pending: tuple[RouteeT, ...] = ()
        self._start = 0
        self._anchor: tuple[RouteeT, ...] = ()
        self._anchor_index = 0

    def select_one(self, message: Any, routees: Sequence[RouteeT]) -> RouteeT | None:
        """The next routee in the rotation (see the class docstring)."""
        current = self._routees
        if routees is not current:
            return self._select_after_change(message, routees)
        i = self._at
        i = i + 1 if i < self._end else 0
        self._at = i
        return current[i]

    def routees_changed(self, routees: Sequence[RouteeT]) -> None:
        """Move the rotation position onto the new routees (see the class docstring)."""
        self._sync(routees)

    def _select_after_change(self, message: Any, routees: Sequence[RouteeT]) -> RouteeT | None:
        """``select_one`` for other routees than those served from last, or with none
        served since they changed."""
        self._sync(routees)
        serving = self._routees
        if serving is not None:  # the same routees, in another sequence object
            return self.select_one(message, serving)
        new = self._pending
        if not new:
            return None
        i = self._start
        self._routees, self._at, self._end = new, i, len(new) - 1
        return new[i]

    def _sync(self, routees: Sequence[RouteeT]) -> None:
        new = tuple(routees)
        serving = self._routees
        if serving is not None:
            if new == serving:
                self._routees = new
                return
            self._anchor, self._anchor_index = serving, self._at
            self._routees = None
        elif new == self._pending:
            self._pending = new
            return
        self._pending = new
        self._start = self._resume_at(new)

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
