"""Actor addresses: where an actor lives, independent of any Python object."""

from __future__ import annotations

from typing import NamedTuple


class Address(NamedTuple):
    """The location of one incarnation of an actor (immutable, hashable, ordered).

    ``system`` and ``node`` name the actor system and the process it runs in (``"local"``
    until actors span processes), ``path`` is the hierarchical name (``/user/a/b``) and
    ``uid`` tells incarnations apart: an actor spawned again under the same path gets a new
    ``uid``, so a ref to the old one never reaches the new one.
    """

    system: str
    path: str
    uid: int
    node: str = "local"

    def __str__(self) -> str:
        return f"actor://{self.system}@{self.node}{self.path}#{self.uid}"
