"""A snapshot of the live actor tree (``system.describe()``), rendered as text or Mermaid.

The snapshot is taken synchronously, in the system's thread, without yielding: every
node reflects the same instant. It holds plain frozen data (no refs, no cells), so it may
be kept, compared, printed or handed to another thread.
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from ._actor import Actor
from ._cell_state import DEAD, NEW, STOPPING
from ._supervising import strategy_of

if TYPE_CHECKING:
    from ._cell import ActorCell

ActorState = Literal["starting", "running", "restarting", "stopping"]
"""What a live actor is doing (see :attr:`ActorNode.state`)."""


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(value))


@attrs.frozen
class ActorNode:
    """One live actor at the moment of the snapshot, with its live children."""

    path: str
    """Its path, e.g. ``"/user/bank/alice"``."""
    name: str
    """Its name: the last segment of the path."""
    actor_class: str | None
    """The ``__qualname__`` of its current instance's class. Before the first instance
    exists, the class its factory will create if the factory is a class (or a
    ``functools.partial`` of one); otherwise ``None``. ``None`` for ``/user``, which
    belongs to the runtime."""
    state: ActorState
    """``"starting"``: its first instance is being created or runs ``pre_start`` (for a
    persistent actor: recovers). ``"running"``: it processes messages.
    ``"restarting"``: it failed and its supervisor is handling it: deciding,
    ``pre_restart``, waiting out a restart backoff, or starting the fresh instance
    (also a sibling that a one-for-all or rest-for-one strategy restarts with it).
    ``"stopping"``: it was asked to stop, or stops its children and runs ``post_stop``."""
    mailbox: int
    """How many messages wait in its mailbox (timer ticks and runtime notifications such
    as ``Terminated`` included; the message being processed and stashed ones are not)."""
    capacity: int | None
    """The bound of its mailbox in force now (``None``: unbounded). While an actor
    restarts, or a persistent actor persists or recovers, this is the temporary bound
    (see ``Settings.restart_stash_capacity`` and ``PersistentActor.persist_stash``)."""
    stash: int
    """How many messages it has stashed (``context.stash()``)."""
    details: Mapping[str, Any] = attrs.field(converter=_frozen_mapping, hash=False)
    """What its class adds through the describe hook (``Actor._describe_details``): a
    router its ``routing`` logic and ``routees``, a persistent actor its
    ``persistence_id`` and ``last_seq``; empty for plain actors and while it has no
    instance. Read-only."""
    strategy: str | None
    """The class name of the strategy it supervises its children with (``"OneForOne"``,
    ``"OneForAll"``, ``"RestForOne"`` or a custom one); ``None`` when it has no live
    children."""
    children: tuple[ActorNode, ...]
    """Its live children, in the order they were spawned (a restarted child keeps its
    place)."""
    node: str = "local"
    """The process it runs in: ``"local"`` for the process that took the snapshot, else
    the worker (``"w1"``, ...; see ``system.workers()`` for its PID). For an actor on a
    worker, ``mailbox`` counts what still waits in this process to be passed on, and
    its children there are not in the snapshot."""

    def walk(self) -> Iterator[ActorNode]:
        """This node and all its descendants, depth first, parents before children."""
        pending = [self]
        while pending:
            node = pending.pop()
            yield node
            pending.extend(reversed(node.children))


@attrs.frozen
class ActorTree:
    """A snapshot of a live actor tree: ``root`` is ``/user`` (``system.describe()``)
    or the actor a subtree was asked for.

    ``str(tree)`` is :meth:`to_text`. Both renderings are deterministic: children in
    spawn order, nothing that depends on time or on identity.
    """

    system: str
    """The name of the actor system."""
    root: ActorNode

    def walk(self) -> Iterator[ActorNode]:
        """Every node, depth first, parents before children, siblings in spawn order."""
        return self.root.walk()

    def find(self, path: str) -> ActorNode | None:
        """The node at ``path`` (e.g. ``"/user/bank"``), or ``None`` if the snapshot has
        none."""
        path = "/" + path.strip("/")
        for node in self.walk():
            if node.path == path:
                return node
        return None

    def __len__(self) -> int:
        """How many actors the snapshot holds (the root included)."""
        return sum(1 for _ in self.walk())

    def __str__(self) -> str:
        return self.to_text()

    def to_text(self) -> str:
        """The tree as the ``tree`` command draws it, one actor a line, ending with a
        newline. The root line shows the root's path, the other lines their names,
        followed by ``(class, state, mailbox n)`` (``mailbox n/capacity`` when bounded,
        then ``stash n`` when it is not empty, then ``on w1`` for an actor that runs in
        worker process ``w1``) and, if any, ``[...]`` with its details
        as ``key=value`` and the supervisor strategy (``one-for-one``, ``one-for-all``,
        ``rest-for-one``)::

            /user (running, mailbox 0) [one-for-one]
            └── bank (Bank, running, mailbox 0) [one-for-one]
                ├── alice (Account, running, mailbox 0) [persistence_id=alice, last_seq=3]
                └── bob (Account, running, mailbox 2/10) [persistence_id=bob, last_seq=0]
        """
        lines = [f"{self.root.path}{_annotations(self.root)}"]
        # (node, prefix of its line, prefix of its children's lines), in output order.
        pending: list[tuple[ActorNode, str, str]] = []

        def push_children(node: ActorNode, indent: str) -> None:
            last = len(node.children) - 1
            for index in range(last, -1, -1):  # reversed: the stack pops the first first
                child = node.children[index]
                if index == last:
                    pending.append((child, indent + "└── ", indent + "    "))
                else:
                    pending.append((child, indent + "├── ", indent + "│   "))

        push_children(self.root, "")
        while pending:
            node, prefix, indent = pending.pop()
            lines.append(f"{prefix}{node.name}{_annotations(node)}")
            push_children(node, indent)
        return "\n".join(lines) + "\n"

    def to_mermaid(self) -> str:
        """The tree as a Mermaid flowchart (``graph TD``), ending with a newline: one
        node per actor, labelled with its name (the root: its path) and class, an edge
        from each parent to each child, and a style per state (``classDef starting``,
        ``running``, ``restarting``, ``stopping``). Node ids are ``a0``, ``a1``, ... in
        depth-first order; every character of a label outside ``A-Z a-z 0-9`` and
        ``-_.~:@+=,$/`` and space is written as a Mermaid entity code (``#60;`` for
        ``<``), so any name or class is safe."""
        lines = ["graph TD"]
        lines.extend(f"    classDef {state} {style}" for state, style in _STYLES.items())
        nodes = list(self.walk())
        ids = {id(node): f"a{index}" for index, node in enumerate(nodes)}
        for node in nodes:
            title = node.path if node is self.root else node.name
            label = _mermaid_label(title)
            if node.actor_class is not None:
                label += "<br/>" + _mermaid_label(node.actor_class)
            lines.append(f'    {ids[id(node)]}["{label}"]:::{node.state}')
        for node in nodes:
            lines.extend(f"    {ids[id(node)]} --> {ids[id(child)]}" for child in node.children)
        return "\n".join(lines) + "\n"


_STYLES: Final = {
    "starting": "fill:#fff4cc,stroke:#b38f00",
    "running": "fill:#dff5e1,stroke:#2e7d32",
    "restarting": "fill:#ffe0b2,stroke:#e65100",
    "stopping": "fill:#eeeeee,stroke:#616161,stroke-dasharray:4 2",
}

_STRATEGY_LABELS: Final = {
    "OneForOne": "one-for-one",
    "OneForAll": "one-for-all",
    "RestForOne": "rest-for-one",
}

_MERMAID_UNSAFE: Final = re.compile(r"[^A-Za-z0-9 \-_.~:@+=,$/]")


def _mermaid_label(text: str) -> str:
    return _MERMAID_UNSAFE.sub(lambda match: f"#{ord(match.group())};", text)


def _printable(text: str) -> str:
    """``text`` as is if it reads well on one line, else its ``repr``."""
    if text and text.isprintable() and not any(char.isspace() for char in text):
        return text
    return repr(text)


def _annotations(node: ActorNode) -> str:
    details = [] if node.actor_class is None else [_printable(node.actor_class)]
    details.append(node.state)
    if node.capacity is None:
        details.append(f"mailbox {node.mailbox}")
    else:
        details.append(f"mailbox {node.mailbox}/{node.capacity}")
    if node.stash:
        details.append(f"stash {node.stash}")
    if node.node != "local":
        details.append(f"on {node.node}")
    extras = [f"{key}={_printable(str(value))}" for key, value in node.details.items()]
    if node.strategy is not None:
        extras.append(_STRATEGY_LABELS.get(node.strategy, node.strategy))
    text = f" ({', '.join(details)})"
    if extras:
        text += f" [{', '.join(extras)}]"
    return text


# -- taking the snapshot (in the system's thread, synchronously) -----------------------------


def describe_cell(cell: ActorCell) -> ActorTree:
    """Snapshot the live subtree rooted at ``cell`` (which must be live). It only reads
    the cells (and calls the describe hook of each instance): no awaits."""

    def node(cell: ActorCell) -> ActorNode:
        children = tuple(
            node(child) for child in (cell._children or {}).values() if child._state != DEAD
        )
        instance = cell._instance
        details = {} if instance is None else instance._describe_details()
        return ActorNode(
            path=cell.ref.path,
            name=cell.ref.name,
            actor_class=_actor_class(cell),
            state=_state(cell),
            mailbox=len(cell._mailbox),
            capacity=cell._capacity,
            stash=len(cell._stash) if cell._stash else 0,
            details=details,
            strategy=type(strategy_of(cell)).__qualname__ if children else None,
            children=children,
            node=cell.ref.address.node,
        )

    return ActorTree(cell.system.name, node(cell))


def _actor_class(cell: ActorCell) -> str | None:
    if cell._parent is None:
        return None  # /user: the runtime's guardian
    placed = getattr(cell, "_placed_class", None)  # on a worker: the class it runs there
    if placed is not None:
        return placed  # type: ignore[no-any-return]
    if cell._instance is not None:
        return type(cell._instance).__qualname__
    factory: object = cell._factory
    while isinstance(factory, functools.partial):
        factory = factory.func
    if isinstance(factory, type) and issubclass(factory, Actor):
        return factory.__qualname__
    return None


def _state(cell: ActorCell) -> ActorState:
    if cell._stop_requested or cell._state >= STOPPING:
        return "stopping"
    if cell._state == NEW:
        return "starting"
    if cell._failure is not None or cell._order is not None or _restarting(cell):
        return "restarting"
    return "running" if cell._started else "starting"


def _restarting(cell: ActorCell) -> bool:
    """Whether the parent's restart engine has this child down: between its failure (or
    a sibling's, under one-for-all / rest-for-one) and its successful restart."""
    parent = cell._parent
    engine = None if parent is None else parent._engine
    if engine is None or cell._name not in engine:
        return False
    return not engine.state(cell._name).running
