"""Supervisor strategies: which children a failure touches, and how to decide."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import TypeVar

import attrs

from ._backoff import Backoff
from ._directive import Decider, default_decider
from ._intensity import RestartIntensity

K = TypeVar("K")


@attrs.frozen
class Strategy(abc.ABC):
    """What a supervisor does when a child fails: ``decider`` picks the directive,
    ``intensity`` bounds restarts (then the supervisor gives up and fails itself), and
    an optional ``backoff`` delays each restart. Subclasses say which children a
    restart or stop applies to.

    ``stop_children`` matters for children that have children of their own (actors):
    by default a restarted child's own children are stopped with its old instance
    (Akka's default); ``False`` keeps them running under the fresh instance.
    """

    decider: Decider = default_decider
    intensity: RestartIntensity = attrs.field(factory=RestartIntensity)
    backoff: Backoff | None = None
    stop_children: bool = True

    @abc.abstractmethod
    def affected(self, children: Sequence[K], failed: K) -> list[K]:
        """The children (in start order) that the directive for ``failed`` applies to."""


@attrs.frozen
class OneForOne(Strategy):
    """Only the failed child is restarted or stopped."""

    def affected(self, children: Sequence[K], failed: K) -> list[K]:
        return [failed] if failed in children else []


@attrs.frozen
class OneForAll(Strategy):
    """Every child is restarted (or stopped) when one fails: for children that cannot
    work without each other."""

    def affected(self, children: Sequence[K], failed: K) -> list[K]:
        return list(children) if failed in children else []


@attrs.frozen
class RestForOne(Strategy):
    """The failed child and every child started after it: for a chain where later
    children depend on earlier ones."""

    def affected(self, children: Sequence[K], failed: K) -> list[K]:
        if failed not in children:
            return []
        return list(children[list(children).index(failed) :])
