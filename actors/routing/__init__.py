"""Routers: actors that pass each message on to routees chosen by a routing logic.

A :class:`Router` is a pool (it spawns and supervises its routees) or a group (it routes
to existing refs). Its :class:`RoutingLogic` picks the routee(s) of each message: every
logic's name ends in ``Routing``. See ``docs/routers.md``.
"""

from .._public import export as _export
from ._first_reply import ScatterGatherFirstCompletedRouting, TailChoppingRouting
from ._hashing import ConsistentHashingRouting
from ._logics import (
    BroadcastRouting,
    RandomRouting,
    RoundRobinRouting,
    RoutingLogic,
    SmallestMailboxRouting,
)
from ._resizer import Resizer
from ._router import (
    AddRoutee,
    AdjustPoolSize,
    Broadcast,
    GetRoutees,
    RemoveRoutee,
    Router,
)

__all__ = [
    "AddRoutee",
    "AdjustPoolSize",
    "Broadcast",
    "BroadcastRouting",
    "ConsistentHashingRouting",
    "GetRoutees",
    "RandomRouting",
    "RemoveRoutee",
    "Resizer",
    "RoundRobinRouting",
    "Router",
    "RoutingLogic",
    "ScatterGatherFirstCompletedRouting",
    "SmallestMailboxRouting",
    "TailChoppingRouting",
]

_export(__name__, globals(), __all__)
