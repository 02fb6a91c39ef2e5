"""Spawning: checking what ``spawn`` is given, then making the new actor's cell and task.

``system.spawn`` and ``context.spawn`` both end in :func:`spawn_child`: the new cell is
registered under its parent at once (so its name is taken and its ref works), and its
task is started in the system's nursery; the instance is created inside that task.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import trio

from supervision import Strategy

from ._cell import ActorCell
from ._cell_state import DEAD
from ._errors import ActorNameTaken, InvalidActorName, SystemClosed, UnpicklableMessage
from ._mailbox import Mailbox
from ._node import encode_message
from ._placement import AnyNode, OnNode, Placement, check_placement
from ._remote_child import RemoteChildCell
from ._spawn_checks import check_factory
from ._supervising import implicit_spec
from ._worker_pool import RootNode

if TYPE_CHECKING:
    from ._actor import Actor
    from ._ref import ActorRef

_VALID_NAME = re.compile(r"[A-Za-z0-9\-_.~:@+=,]+")
MAX_NAME_LENGTH: Final = 255
"""The longest actor name (in characters): a path segment, not a place for data."""


def check_name(name: str) -> None:
    """Raise :class:`InvalidActorName` unless ``name`` is usable as a path segment: 1 to
    :data:`MAX_NAME_LENGTH` characters among ``A-Z a-z 0-9 - _ . ~ : @ + = ,``, and
    neither ``.`` nor ``..`` (which mean "here" and "the parent" in a path)."""
    if not isinstance(name, str):
        raise InvalidActorName(
            f"invalid actor name {name!r}: a name is a str, got {type(name).__qualname__}"
        )
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidActorName(
            f"invalid actor name {name[:20]!r}... ({len(name)} characters): a name has at "
            f"most {MAX_NAME_LENGTH} characters; keep data in messages or in the actor's "
            "state, not in its name"
        )
    if not _VALID_NAME.fullmatch(name):
        raise InvalidActorName(
            f"invalid actor name {name!r}: use 1 or more of A-Z a-z 0-9 - _ . ~ : @ + = , "
            "(no '/', and '$' is reserved for generated names)"
        )
    if name in (".", ".."):
        raise InvalidActorName(
            f"invalid actor name {name!r}: '.' and '..' mean this actor and its parent in "
            "a path; choose another name"
        )


def class_default(factory: object, attribute: str, default: Any) -> Any:
    """The class attribute ``attribute`` of the actor class ``factory`` makes (seen
    through ``functools.partial``), or ``default`` if it has none (or ``None``)."""
    while isinstance(factory, functools.partial):  # spawn(partial(MyActor, name=...))
        factory = factory.func
    value = getattr(factory, attribute, None)
    return default if value is None else value


def _check_positive_int(what: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{what} must be an int >= 1, got {value!r}")


def spawn_child(
    parent: ActorCell,
    factory: Callable[..., Actor],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    name: str | None,
    mailbox: Mailbox | None,
    throughput: int | None,
    supervisor_strategy: Strategy | None,
    placement: Placement = None,
) -> ActorRef:
    """Start a child of ``parent``; see ``ActorContext.spawn`` for the semantics."""
    system = parent.system
    parent._check_thread()
    if parent._stop_requested or parent._state == DEAD:
        what = f"actor system {system.name!r}" if parent._parent is None else parent.ref.path
        raise SystemClosed(f"cannot spawn: {what} is stopping or stopped")
    check_factory(factory, args, kwargs)
    # (a node of a cluster places children on other nodes: actors/cluster/_placing.py)
    place_child = None if placement is None else getattr(system._router, "place_child", None)
    if placement is not None and place_child is None:
        check_placement(placement)
        if not isinstance(system._router, RootNode):
            raise ValueError(
                f"placement={placement!r} needs worker processes: open the system with "
                "open_system(workers=...), and place actors from its root process"
            )
    if name is None:
        parent._child_counter += 1
        name = f"${parent._child_counter}"
    else:
        check_name(name)
    children = parent._children
    if children is None:
        children = parent._children = {}
    path = f"{parent.ref.path}/{name}"
    if name in children:
        raise ActorNameTaken(path)
    settings = system.settings
    if mailbox is None:
        mailbox = class_default(factory, "mailbox", settings.mailbox)
    if not isinstance(mailbox, Mailbox):
        raise TypeError(f"mailbox must be an actors.Mailbox, got {mailbox!r}")
    if throughput is None:
        throughput = class_default(factory, "throughput", settings.throughput)
    _check_positive_int("throughput", throughput)
    stash_capacity = class_default(factory, "stash_capacity", settings.stash_capacity)
    _check_positive_int("stash_capacity", stash_capacity)
    if supervisor_strategy is None:
        supervisor_strategy = class_default(factory, "supervisor_strategy", None)
    if supervisor_strategy is not None and not isinstance(supervisor_strategy, Strategy):
        raise TypeError(
            f"supervisor_strategy must be a supervision.Strategy, got {supervisor_strategy!r}"
        )
    actor_class, actor_args, actor_kwargs = factory, args, kwargs
    if args or kwargs:
        factory = functools.partial(factory, *args, **kwargs)
    # (the arguments of every cell class)
    made = (system, parent, name, path, system._uids.getrandbits(63), factory, mailbox)
    limits = (throughput, stash_capacity, supervisor_strategy)
    if place_child is not None:
        child: ActorCell = place_child(
            made, limits, actor_class, actor_args, actor_kwargs, placement
        )
    elif placement is not None:
        root = system._router
        assert isinstance(root, RootNode)
        try:
            pickled = encode_message(factory)  # (before a process is chosen or started)
        except UnpicklableMessage as error:
            raise TypeError(
                f"cannot start {path} in another process: its factory {factory!r} (with "
                f"its arguments) cannot be pickled: {error.__cause__!r}. Define the actor "
                "class at module level and pass picklable arguments"
            ) from error.__cause__
        assert not isinstance(placement, OnNode | AnyNode)  # (checked above)
        node = root.choose(placement)
        child = RemoteChildCell(*made, *limits, root=root, node=node, pickled_factory=pickled)
    else:
        # The cell class hook: an actor class may name the cell class that runs it
        # (routers).
        cell_class: type[ActorCell] = class_default(factory, "_cell_class", ActorCell)
        child = cell_class(*made, *limits)
    system._nursery.start_soon(child._run, name=path)
    children[name] = child  # registered once its task exists
    engine = parent._engine
    if engine is not None:  # supervision has begun: it must know every child
        if name not in engine:
            engine.add(implicit_spec(name))
        engine.started(name, trio.current_time())
    return child.ref
