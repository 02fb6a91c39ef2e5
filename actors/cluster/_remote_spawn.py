"""Spawning an actor on another node of the cluster.

A node lists the actor classes that others may start on it (``Cluster(actors=...)``);
the names of those classes travel in its member record, so that every node knows who
can start what. :meth:`ClusterNode.spawn` sends the class's *name* and the arguments
(encoded by the cluster's codec: plain data and registered types) to the chosen node,
which starts the actor under its own ``/user`` guardian and answers with its ref. No
code travels: a node only starts classes it listed itself.

The actor is supervised where it runs, by that node's guardian (with the system's
``guardian_strategy``); the node that asked for it watches it if it wants to know when
it ends (``context.watch(ref)``: ``Terminated``, with :class:`NodeLost` if its node is
lost).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import trio

from .._actor import Actor
from .._errors import ActorDead, ActorError, AskTimeout, ProcessLost
from .._node import PendingAsk
from .._ref import ActorRef

if TYPE_CHECKING:
    from ._node import ClusterNode

_WHERE: Final = "/user (spawn)"


def spawnable_names(actors: tuple[type[Actor], ...] | Mapping[str, type[Actor]]) -> dict[str, type]:
    """The classes a node lets others start, by the name they are asked for with."""
    if isinstance(actors, Mapping):
        named = dict(actors)
    else:
        named = {f"{cls.__module__}.{cls.__qualname__}": cls for cls in actors}
    for name, cls in named.items():
        if not (isinstance(cls, type) and issubclass(cls, Actor)):
            raise TypeError(
                f"Cluster(actors=...): {name!r} is {cls!r}, not an actors.Actor subclass"
            )
    return named


class RemoteSpawner:
    """:meth:`ClusterNode.spawn` and its frame (``spawn``), for one node."""

    def __init__(self, node: ClusterNode) -> None:
        self.node = node
        self.classes = spawnable_names(node.config.actors)
        self._turns = itertools.count()

    def name_of(self, actor: type[Actor] | str) -> str:
        if isinstance(actor, str):
            return actor
        for name, cls in self.classes.items():
            if cls is actor:
                return name
        return f"{actor.__module__}.{actor.__qualname__}"

    def hosts(self, class_name: str) -> list[str]:
        node = self.node
        hosts = [m.name for m in node.members.live.values() if class_name in m.spawnable]
        if class_name in self.classes:
            hosts.append(node.name)
        return sorted(hosts)

    async def spawn(
        self,
        actor: type[Actor] | str,
        args: tuple[Any, ...],
        on: str | None,
        name: str | None,
        timeout: float | None,
    ) -> ActorRef:
        node = self.node
        class_name = self.name_of(actor)
        if on is None:
            hosts = self.hosts(class_name)
            if not hosts:
                raise ActorError(
                    f"no live node of the cluster lets others start {class_name} (list the "
                    "class in Cluster(actors=[...]) on the nodes that may run it)"
                )
            on = hosts[next(self._turns) % len(hosts)]
        if on == node.name:
            cls = self.classes.get(class_name)
            if cls is None:
                raise ActorError(f"node {on} does not list {class_name} in Cluster(actors=...)")
            return node.system.spawn(cls, *args, name=name)
        if timeout is None:
            timeout = node.system.settings.ask_timeout
        payload = node.encode(args)
        ask_id = next(node._ask_ids)
        path = f"/user/{name or '(new)'} on {on}"
        pending = PendingAsk(on, path, trio.lowlevel.current_task())
        try:
            node.send_frame(on, ("spawn", node.name, ask_id, class_name, payload, name))
        except ProcessLost as error:
            await trio.lowlevel.checkpoint()
            raise ActorDead(path, "cannot be started: its node is not live", error) from error
        node._asks[ask_id] = pending
        try:
            with trio.move_on_after(timeout if timeout > 0 else math.inf) as waiting:
                await trio.lowlevel.wait_task_rescheduled(pending.abort)
        finally:
            node._asks.pop(ask_id, None)
        if waiting.cancelled_caught:
            raise AskTimeout(path, timeout, f"spawn {class_name}")
        if pending.error is not None:
            raise pending.error
        ref: ActorRef = pending.value
        return ref

    def on_spawn(
        self, origin: str, ask_id: int, class_name: str, payload: bytes, name: str | None
    ) -> None:
        """Another node asks this one to start ``class_name``."""
        node = self.node
        value: Any = None
        error: BaseException | None = None
        cls = self.classes.get(class_name)
        try:
            if cls is None:
                raise ActorError(
                    f"node {node.name} does not let other nodes start {class_name} (it is not "
                    "in its Cluster(actors=...))"
                )
            args = node.decode(payload)
            value = node.system.spawn(cls, *tuple(args), name=name)
        except Exception as exc:
            error = exc
        node.answer(origin, ask_id, value, error)
