"""Where an actor runs: the worker processes of a system, and placement at spawn.

``open_system(workers=2)`` (or ``workers=Workers(count=2, ...)``) starts that many worker
processes with the system, each one node of it (``"w1"``, ``"w2"``, ...), and
``spawn(..., placement=...)`` chooses where a new actor runs:

``None`` (the default)
    In the process that spawns it (for a top-level actor, the root process; for a
    child spawned by an actor on a worker, that worker).
:class:`OnWorker` ``("w2")``
    On the named worker.
:class:`AnyWorker` ``()``
    On a worker chosen at spawn: round-robin over the workers (``"round_robin"``), or
    the one hosting the fewest actors placed from this process (``"least_loaded"``).
:class:`OwnProcess` ``()``
    In a process of its own (``"p1"``, ``"p2"``, ...), started for it and stopped once it
    has stopped: isolation for an actor that may crash its interpreter or leak; its
    children live there too. A lost process is started again for its restart.

The ref is the same kind of ref wherever the actor runs; see ``docs/workers.md``.
"""

from __future__ import annotations

import os
from typing import Literal, TypeAlias

import attrs


def _check_count(_: object, __: object, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"Workers.count must be an int >= 0, got {value!r}")


def _check_positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"Workers.{attribute.name} must be a number > 0, got {value!r}")


@attrs.frozen
class Workers:
    """The worker processes of a system (``open_system(workers=...)``).

    ``count`` processes are started when the system opens, each named ``"w1"``,
    ``"w2"``, ..., and linked to the root process by a socket pair with a key made for
    this system (``0``: none; actors placed with :class:`OwnProcess` still get theirs).
    ``start_timeout``: how long a worker may take to start and
    authenticate before the system gives up on it (:class:`WorkerError`). A worker that
    is lost is started again at once; one that is lost again within ``restart_window``
    seconds of its start waits ``restart_backoff`` seconds first, doubling each time up
    to ``max_restart_backoff``. ``stop_timeout``: how long a worker may take to exit
    once told to (it is killed after that) when the system shuts down."""

    count: int = attrs.field(factory=lambda: os.cpu_count() or 1, validator=_check_count)
    start_timeout: float = attrs.field(default=30.0, validator=_check_positive)
    restart_window: float = attrs.field(default=5.0, validator=_check_positive)
    restart_backoff: float = attrs.field(default=0.1, validator=_check_positive)
    max_restart_backoff: float = attrs.field(default=5.0, validator=_check_positive)
    stop_timeout: float = attrs.field(default=10.0, validator=_check_positive)

    def names(self) -> list[str]:
        return [f"w{index}" for index in range(1, self.count + 1)]


@attrs.frozen
class OnWorker:
    """Place the actor on the worker named ``name`` (``"w1"``, ...)."""

    name: str


@attrs.frozen
class AnyWorker:
    """Place the actor on a worker chosen at spawn: ``"round_robin"`` (the default) or
    ``"least_loaded"`` (the fewest actors placed there from this process)."""

    choose: Literal["round_robin", "least_loaded"] = "round_robin"

    def __attrs_post_init__(self) -> None:
        if self.choose not in ("round_robin", "least_loaded"):
            raise ValueError(
                f"AnyWorker(choose={self.choose!r}): use 'round_robin' or 'least_loaded'"
            )


@attrs.frozen
class OwnProcess:
    """Run the actor in a worker process of its own, started for it (named ``"p1"``,
    ``"p2"``, ...) and stopped once the actor has stopped."""


@attrs.frozen
class OnNode:
    """Place the actor on node ``name`` of the cluster, and restart it there only (for
    a system that is a node of a cluster: ``docs/cluster.md``)."""

    name: str


@attrs.frozen
class AnyNode:
    """Place the actor on another live node of the cluster that lists its class in
    ``Cluster(actors=...)``, in turn; a restart after its node is lost picks again among
    the live ones."""


Placement: TypeAlias = "OnWorker | AnyWorker | OwnProcess | OnNode | AnyNode | None"


def check_placement(placement: object) -> None:
    if placement is not None and not isinstance(placement, OnWorker | AnyWorker | OwnProcess):
        raise TypeError(
            f"placement must be None, actors.OnWorker(name), actors.AnyWorker() or "
            f"actors.OwnProcess() (or, on a node of a cluster, actors.cluster.OnNode(name) "
            f"or actors.cluster.AnyNode()), got {placement!r}"
        )
