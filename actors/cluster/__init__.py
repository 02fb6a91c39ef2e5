"""trio-actors across machines: a cluster of nodes on NATS (``pip install
'trio-actors[cluster]'``).

Each node opens the system with ``open_system(name, cluster=Cluster(...))``: the same
system name, NATS servers, key and message types on every node, and a node name of its
own. Refs work between nodes as within one process; ``system.cluster``
(:class:`ClusterNode`) lists the members and keeps cluster-wide names. Every message
between nodes is sealed with an HMAC and checked before it is decoded, by a codec that
decodes only registered types (:class:`SafeCodec`, the default) unless the cluster is
trusted (:class:`PickleCodec`). The user guide's page ``docs/cluster.md`` explains it.

This package imports nothing of NATS until a node starts; the cluster's dependencies
(nats-py, trio-asyncio, msgspec) come with the ``cluster`` extra.
"""

from .._placement import AnyNode, OnNode
from .._public import export as _export
from ._codec import Codec, PickleCodec, UndecodableMessage, UnencodableMessage
from ._config import Cluster
from ._errors import ClusterError, NameTaken, NodeLost
from ._node import ClusterNode
from ._safe_codec import SafeCodec
from ._seal import Keyring, SealRefused
from ._sharding import EntityRef, EntityType

__all__ = [
    "AnyNode",
    "Cluster",
    "ClusterError",
    "ClusterNode",
    "Codec",
    "EntityRef",
    "EntityType",
    "Keyring",
    "NameTaken",
    "NodeLost",
    "OnNode",
    "PickleCodec",
    "SafeCodec",
    "SealRefused",
    "UndecodableMessage",
    "UnencodableMessage",
]

_export(__name__, globals(), __all__)
