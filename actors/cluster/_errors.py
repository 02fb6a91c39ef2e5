"""The errors of a cluster: a node lost, a name taken, a cluster that cannot be joined."""

from __future__ import annotations

from .._errors import ActorError, ProcessLost, _hint


class NodeLost(ProcessLost):
    """A node of the cluster is gone: its heartbeat lapsed (it crashed, was killed, or
    was cut off from NATS), it left, or it came back as a new incarnation. Every actor
    it hosted is gone with it: watchers elsewhere get ``Terminated`` with this error as
    the reason, asks waiting for its actors fail at once with :class:`ActorDead`
    carrying it, and messages for it are dead letters (``process_lost``)."""

    def __init__(self, node: str, how: str) -> None:
        ActorError.__init__(self, f"node {node} of the cluster was lost: {how}")
        self.node = node
        self.pid = None
        self.how = how
        _hint(
            self,
            "Messages on their way to that node are lost with it (delivery between nodes "
            "is at most once); acknowledged events of persistent actors are not (they are "
            "in the journal). Sharded entities it hosted are activated again on another "
            "node when next addressed.",
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (NodeLost, (self.node, self.how))


class ClusterError(ActorError):
    """The node could not join its cluster, or lost it: NATS could not be reached, or
    refused the credentials, or the cluster's buckets could not be made. The message
    names the servers and the cause (chained)."""


class NameTaken(ActorError):
    """A name is already registered in the cluster by a live actor."""

    def __init__(self, name: str, holder: str) -> None:
        super().__init__(f"the name {name!r} is already registered in the cluster, by {holder}")
        self.name = name
        self.holder = holder
        _hint(
            self,
            "A name belongs to one actor at a time; it is freed when that actor stops or "
            "its node is lost, or by unregister(name).",
        )
