"""The actor system: settings, the ``/user`` guardian, dead letters and ``open_system``."""

from __future__ import annotations

import logging
import os
import random
import re
import threading
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar, final

import attrs
import trio

from supervision import Strategy

from . import _registry, _watchdog
from ._actor import Actor
from ._address import Address
from ._ask_deadlines import AskDeadlines
from ._cell import ActorCell, DeadCell
from ._cell_state import DEAD
from ._errors import ActorDead, ActorError, ActorNotFound, UnhandledFailure, WrongThread
from ._events import EventBus
from ._idle_and_started import wait_idle, wait_started
from ._interrupts import interrupt_in
from ._mailbox import Mailbox
from ._messages import DeadLetter, DeadLetterReason
from ._node import Encoded
from ._placement import Placement, Workers
from ._public import NoPublicConstructor
from ._ref import ActorRef
from ._runtime_log import (
    DeadLetterLines,
    DeliveryLog,
    FailureLines,
    dead_letter_log,
    lifecycle_log,
    supervision_log,
)
from ._settings import Settings
from ._spawning import check_name, spawn_child
from ._worker_pool import RootNode

if TYPE_CHECKING:
    from ._cell import Cell
    from ._delivery import DeliveryHook
    from ._describe import ActorTree
    from ._node import Node
    from ._supervising import Coordinator
    from ._worker_pool import WorkerInfo
    from .cluster import Cluster, ClusterNode

_E = TypeVar("_E")
_CLUSTER_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_get_ident = threading.get_ident
# How many errors of actors that stopped because of one a system keeps for their
# tombstones (each holds its traceback, hence the bound).
_FAILED_REMEMBERED = 128
# Records about the whole system still carry the context fields of every actors.* record.
_NO_ACTOR: dict[str, Any] = {"actor_path": None, "message_type": None}


class _Guardian(Actor):
    """The ``/user`` actor: parent of every actor spawned with ``system.spawn``."""


@final
class ActorSystem(metaclass=NoPublicConstructor):
    """A running actor system: spawns top-level actors and owns every actor's task.

    Open one with :func:`open_system` (it cannot be constructed or subclassed). All
    methods must be called from the trio thread that runs the system (use
    ``ref.tell_threadsafe`` or ``trio.from_thread`` from others).
    """

    name: str
    settings: Settings
    events: EventBus
    dead_letter_count: int

    def __init__(self, name: str, settings: Settings) -> None:
        check_name(name)
        self.name = name
        self.settings = settings
        # The delivery hooks every message passes on its way into a mailbox (see
        # _delivery.DeliveryHook); with any, cells take their slow path.
        self._delivery_hooks: tuple[DeliveryHook, ...] = ()
        # The parents restarting several children at once (see _supervising.py).
        self._coordinators: dict[ActorCell, Coordinator] = {}
        if settings.trace_deliveries:
            self._delivery_hooks = (DeliveryLog(),)
        self.events = EventBus._create(self)
        self.dead_letter_count = 0
        """How many messages went to dead letters so far."""
        self._dead_letter_lines = DeadLetterLines()  # their default output (logging.md)
        self._failure_lines = FailureLines()  # failures' default output (logging.md)
        self._uids = random.Random(int.from_bytes(os.urandom(8), "little"))
        self._rng = random.Random(settings.seed)  # restart jitter (Settings.seed)
        self._thread_id = threading.get_ident()
        self._token = trio.lowlevel.current_trio_token()
        self._failures: list[tuple[ActorRef, BaseException]] = []
        # Why the most recent actors that stopped because of an error stopped (oldest
        # first, at most _FAILED_REMEMBERED), so that a ref which must resolve again
        # (unpickled) can still say why its actor died (see _tombstone).
        self._failed: dict[Address, BaseException] = {}
        self._body_scope = trio.CancelScope()
        self._ask_deadlines = AskDeadlines()
        self._ask_deadlines_scope = trio.CancelScope()
        # Cancel scopes of helper tasks (the testkit's delayed deliveries) that end when
        # the system has shut down, with the ask deadlines.
        self._service_scopes: list[trio.CancelScope] = []
        self._host_scope = trio.CancelScope(shield=True)
        self._host_done = trio.Event()
        self._terminating = False
        self._nursery: trio.Nursery
        self._guardian: ActorCell
        # The node this process is of the system (``"local"``: the root; ``"w1"``...: a
        # worker), and the routing to the others when the system has worker processes.
        self.node = "local"
        self._router: Node | None = None

    def __repr__(self) -> str:
        return f"<ActorSystem {self.name!r}>"

    # -- public API -------------------------------------------------------------------------

    def spawn(
        self,
        factory: Callable[..., Actor],
        *args: Any,
        name: str | None = None,
        mailbox: Mailbox | None = None,
        throughput: int | None = None,
        supervisor_strategy: Strategy | None = None,
        placement: Placement = None,
        **kwargs: Any,
    ) -> ActorRef:
        """Start a top-level actor (child of ``/user``) and return its ref at once.

        Same arguments and errors as :meth:`ActorContext.spawn` (``placement``: where it
        runs, for a system with worker processes); raises :class:`SystemClosed` once
        the system is shutting down."""
        self._check_thread()
        options = (name, mailbox, throughput, supervisor_strategy, placement)
        return spawn_child(self._guardian, factory, args, kwargs, *options)

    def workers(self) -> list[WorkerInfo]:
        """The worker processes of this system (empty without any): name, PID, state,
        how many actors placed from this process run there, and how many times its
        process was lost and started again. From the root process."""
        router = self._router
        return router.infos() if isinstance(router, RootNode) else []

    @property
    def cluster(self) -> ClusterNode:
        """This process's node of its cluster (``open_system(cluster=...)``): its
        members, the cluster-wide names (``register``, ``lookup``). See
        ``docs/cluster.md``. :class:`ActorError` if the system is in no cluster."""
        from .cluster._node import ClusterNode

        router = self._router
        if not isinstance(router, ClusterNode):
            raise ActorError(
                f"actor system {self.name!r} is in no cluster (open it with "
                "open_system(cluster=actors.cluster.Cluster(...)))"
            )
        return router

    def stop(self, ref: ActorRef) -> None:
        """Ask any actor of this system to stop (see :meth:`ActorContext.stop`); returns
        at once. A no-op if it has already stopped."""
        try:
            cell = self._own_cell(ref)
        except ActorDead:
            return  # its system is not running here: it has stopped
        cell.request_stop()

    async def graceful_stop(self, ref: ActorRef) -> None:
        """Stop ``ref`` and wait until it (and its children) have fully stopped."""
        try:
            cell = self._own_cell(ref)
        except ActorDead:
            await trio.lowlevel.checkpoint()
            return
        if not isinstance(cell, ActorCell):
            await trio.lowlevel.checkpoint()
            return  # nothing lives there
        if cell._in_subtree(trio.lowlevel.current_task()):
            raise ActorError(
                f"graceful_stop({ref.path}) called by that actor or one of its descendants, "
                "which would wait for its own end; use context.stop() instead"
            )
        cell.request_stop()
        await cell._wait_terminated()

    async def started(self, ref: ActorRef) -> ActorRef:
        """Wait until the actor ``ref`` has started: its ``__init__`` and ``pre_start``
        have returned (for a :class:`Supervisor`, that includes starting every child of
        its specs, so they can be looked up). Returns ``ref``, at once (after a
        checkpoint) if it has started already: ``ref = await
        system.started(system.spawn(...))``.

        A start that fails and is restarted by the supervisor counts once a restart
        succeeds. Raises :class:`ActorDead` if the actor has stopped, or stops before
        it has started; when a failure stopped it (for a failed start, the
        :class:`ActorInitializationError`) that error is its ``error`` and
        ``__cause__``. ``ActorError`` if the actor would wait for its own start. There
        is no timeout: wrap the call in ``trio.fail_after`` for one.
        """
        return await wait_started(self, ref)

    async def idle(self) -> None:
        """Wait until every actor of this system is idle: no message waits in any
        mailbox, no handler or lifecycle hook runs, no actor is starting or stopping,
        and no ``context.ask`` / ``pipe_to_self`` of any actor is pending. Returns at
        once (after a checkpoint) if that is the case already.

        What has not happened yet does not count: a timer or a receive timeout that has
        not fired, a message a delivery hook holds back (the testkit's delays), or a
        script task that has not sent yet. Messages keep arriving meanwhile; ``idle()``
        returns at the first moment it sees everything idle, so with a source that never
        pauses it may never return (bound it with ``trio.fail_after``). It never polls:
        it wakes when a busy actor parks. Call it from outside the actors: from inside
        one (or a task it started) it raises ``ActorError``, since that actor is busy.
        """
        await wait_idle(self)

    def lookup(self, path: str) -> ActorRef:
        """The ref of the live actor at ``path`` (e.g. ``"/user/a/b"``); raises
        :class:`ActorNotFound` if there is none."""
        self._check_thread()
        cell = self._find_cell(path)
        if cell is None:
            raise ActorNotFound(path)
        return cell.ref

    def find(self, path: str) -> ActorRef | None:
        """Like :meth:`lookup`, but returns ``None`` when no actor lives at ``path``."""
        self._check_thread()
        cell = self._find_cell(path)
        return None if cell is None else cell.ref

    def describe(self, under: ActorRef | str | None = None) -> ActorTree:
        """A snapshot of the live actor tree: ``/user`` and every actor below it, or
        only the subtree of ``under`` (a ref or a path of a live actor of this system;
        :class:`ActorNotFound` otherwise). Taken at once, without yielding; see
        :class:`ActorTree` for what it holds and how it prints."""
        self._check_thread()
        from ._describe import describe_cell

        if under is None:
            return describe_cell(self._guardian)
        if isinstance(under, str):
            cell: ActorCell | None = self._find_cell(under)
        else:
            try:
                found = under._resolve()
            except ActorDead:  # its system is not running here
                found = None
            cell = found if isinstance(found, ActorCell) and found.system is self else None
        if cell is None or cell._state == DEAD:
            raise ActorNotFound(under if isinstance(under, str) else under.path)
        return describe_cell(cell)

    @property
    def terminating(self) -> bool:
        """Whether the system has begun to shut down (``system.spawn`` now refuses)."""
        return self._terminating

    @property
    def user_guardian(self) -> ActorRef:
        """The ref of ``/user``, the parent of top-level actors."""
        return self._guardian.ref

    # -- runtime ---------------------------------------------------------------------------

    def _check_thread(self) -> None:
        if threading.get_ident() != self._thread_id:
            raise WrongThread(
                f"actor system {self.name!r} used from a thread that does not run it; use "
                "trio.from_thread.run_sync() / run() to call into the system's thread"
            )

    def _own_cell(self, ref: ActorRef) -> Cell:
        self._check_thread()
        cell = ref._resolve()
        if cell is self._guardian:
            raise ValueError("/user cannot be stopped by itself: leave open_system instead")
        if cell.system is not self:
            raise ValueError(
                f"{ref.path} belongs to system {cell.system.name!r}, not {self.name!r}"
            )
        return cell

    def _find_cell(self, path: str) -> ActorCell | None:
        router = self._router
        if router is not None:
            found = router.find_local(path)
            if found is not None:
                return found
        parts = path.strip("/").split("/")
        if parts[0] != "user":
            return None
        cell: ActorCell | None = self._guardian
        for part in parts[1:]:
            if cell is None or not cell._children:
                return None
            cell = cell._children.get(part)
        if cell is None or cell._state == DEAD:
            return None
        return cell

    def _tombstone(self, ref: ActorRef) -> DeadCell:
        """The cell of an address with no live actor here: it knows the error its actor
        stopped with, if that is one of the last ``_FAILED_REMEMBERED`` failures."""
        return DeadCell(self, ref, self._failed.get(ref.address))

    def _remember_failure(self, address: Address, error: BaseException) -> None:
        """An actor stopped because of ``error``: keep it for its tombstone (bounded)."""
        failed = self._failed
        failed[address] = error
        if len(failed) > _FAILED_REMEMBERED:
            del failed[next(iter(failed))]

    def _add_delivery_hook(self, hook: DeliveryHook) -> None:
        """Install ``hook`` on every delivery of this system (see
        ``_delivery.DeliveryHook``), after the hooks already installed."""
        self._check_thread()
        self._delivery_hooks = (*self._delivery_hooks, hook)
        self._update_slow_paths()

    def _remove_delivery_hook(self, hook: DeliveryHook) -> None:
        self._check_thread()
        self._delivery_hooks = tuple(h for h in self._delivery_hooks if h is not hook)
        self._update_slow_paths()

    def _update_slow_paths(self) -> None:
        slow = self.settings.roundtrip_messages or bool(self._delivery_hooks)
        pending: list[ActorCell] = [self._guardian]
        while pending:
            cell = pending.pop()
            cell._slow = slow or cell._roundtrip  # (an actor on a worker always copies)
            if cell._children:
                pending.extend(cell._children.values())

    def _dead_letter(
        self,
        message: Any,
        sender: ActorRef | None,
        recipient: ActorRef,
        reason: DeadLetterReason,
    ) -> None:
        """Count a message that could not be delivered and publish it as a
        :class:`DeadLetter`, always in this system's own thread: called from another
        thread, it hands over (a system that has ended only counts it)."""
        if _get_ident() != self._thread_id:
            try:
                self._token.run_sync_soon(self._dead_letter, message, sender, recipient, reason)
            except trio.RunFinishedError:
                self.dead_letter_count += 1
            return
        router = self._router
        if router is not None:
            if message.__class__ is Encoded:  # (on its way to another node: encoded already)
                message = router.described(message)
            if router.report_dead_letter(message, sender, recipient, reason):
                return  # a worker's: counted and published by the root, as one system's
        self.dead_letter_count += 1
        if dead_letter_log.isEnabledFor(logging.DEBUG):
            message_type = type(message).__qualname__
            sender_path = None if sender is None else sender.path
            dead_letter_log.debug(
                "dead letter (%s) %s -> %s: %s",
                reason.value,
                sender_path or "(no sender)",
                recipient.path,
                message_type,
                extra={
                    "actor_path": recipient.path,
                    "message_type": message_type,
                    "sender_path": sender_path,
                    "reason": reason.value,
                },
            )
        if not self._terminating:  # (dead letters of a shutdown are expected)
            self._dead_letter_lines.seen(reason, message, sender, recipient)
        # A dead letter about a dead letter is counted, never published again.
        if self.events._subscriptions and message.__class__ is not DeadLetter:
            self.events._publish_runtime(DeadLetter(message, sender, recipient, reason))

    def _unhandled_failure(self, ref: ActorRef, error: BaseException) -> None:
        """A failure that reached ``/user`` (a give-up or an escalation): it ends the
        system and leaves ``open_system``."""
        supervision_log.error(
            "failure of %s reached /user: %r; actor system %r shuts down and open_system "
            "raises UnhandledFailure",
            ref.path,
            error,
            self.name,
            extra={"actor_path": ref.path, "message_type": None},
        )
        self._failures.append((ref, error))
        self._body_scope.cancel()

    async def _host(self, *, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        """Owns the nursery of every actor task, inside a shielded scope that gets a
        deadline once shutdown begins."""
        with self._host_scope:
            async with trio.open_nursery() as nursery:
                task_status.started(nursery)
                await self._host_done.wait()

    async def _run_ask_deadlines(self) -> None:
        with self._ask_deadlines_scope:
            await self._ask_deadlines.run()

    async def _shutdown(self) -> None:
        self._guardian.request_stop()
        await self._guardian._wait_terminated()


@asynccontextmanager
async def open_system(
    name: str = "actors",
    *,
    settings: Settings | None = None,
    throughput: int | None = None,
    mailbox: Mailbox | None = None,
    stash_capacity: int | None = None,
    ask_timeout: float | None = None,
    stop_timeout: float | None = None,
    shutdown_timeout: float | None = None,
    roundtrip_messages: bool | None = None,
    supervisor_strategy: Strategy | None = None,
    guardian_strategy: Strategy | None = None,
    restart_stash_capacity: int | None = None,
    seed: int | None = None,
    trace_deliveries: bool | None = None,
    extensions: Iterable[object] | None = None,
    workers: int | Workers | None = None,
    cluster: Cluster | None = None,
) -> AsyncIterator[ActorSystem]:
    """Run an actor system for the duration of the ``async with`` block.

    Keyword arguments override the fields of ``settings`` (see :class:`Settings`).

    ``workers``: start that many worker processes with the system (or as a
    :class:`Workers` says), on which actors can be placed (``spawn(...,
    placement=...)``); the block starts once every worker is up (:class:`WorkerError`
    if one cannot start). See ``docs/workers.md``.

    ``cluster``: join a cluster of nodes on NATS as :class:`actors.cluster.Cluster`
    says (``pip install 'trio-actors[cluster]'``); the block starts once this node is
    a member (:class:`actors.cluster.ClusterError` if it cannot join). Leaving the
    block stops the actors, then leaves the cluster. See ``docs/cluster.md``.

    Leaving the block stops every actor in order: children before their parents,
    siblings newest first, each with ``stop_timeout`` to finish its current message and
    again for ``post_stop``; the whole shutdown is bounded by ``shutdown_timeout``.

    Top-level actors are supervised by ``/user`` (see ``Settings.guardian_strategy``).
    A failure that reaches it (escalated, or ``/user`` gave up after too many restarts)
    cancels the body, shuts the system down in that order, and is raised from the
    ``async with`` as :class:`UnhandledFailure`. If the body itself raised,
    that exception propagates and unhandled failures are attached to it as a note.
    Cancellation of the surrounding scope also shuts the system down (within bounded
    time) and propagates.
    """
    overrides: dict[str, Any] = {
        key: value
        for key, value in (
            ("throughput", throughput),
            ("mailbox", mailbox),
            ("stash_capacity", stash_capacity),
            ("ask_timeout", ask_timeout),
            ("stop_timeout", stop_timeout),
            ("shutdown_timeout", shutdown_timeout),
            ("roundtrip_messages", roundtrip_messages),
            ("supervisor_strategy", supervisor_strategy),
            ("guardian_strategy", guardian_strategy),
            ("restart_stash_capacity", restart_stash_capacity),
            ("seed", seed),
            ("trace_deliveries", trace_deliveries),
            ("extensions", None if extensions is None else tuple(extensions)),
        )
        if value is not None
    }
    if isinstance(workers, int) and not isinstance(workers, bool):
        workers = Workers(count=workers)
    if workers is not None and not isinstance(workers, Workers):
        raise TypeError(f"workers must be an int or actors.Workers, got {workers!r}")
    if cluster is not None:
        from .cluster._config import Cluster

        if not isinstance(cluster, Cluster):
            raise TypeError(f"cluster must be an actors.cluster.Cluster, got {cluster!r}")
        if workers is not None:
            raise ValueError(
                "open_system(workers=..., cluster=...): a node of a cluster cannot have "
                "worker processes yet; start more nodes instead"
            )
        if not _CLUSTER_NAME.fullmatch(name):
            raise ValueError(
                f"open_system({name!r}, cluster=...): the name of a system in a cluster "
                "names its NATS subjects and buckets: use 1 to 64 letters, digits, '_' "
                "or '-'"
            )
        # Imported here, before the system runs (importing them takes a while, which
        # the watchdog would report as a blocked trio thread).
        try:
            import nats  # noqa: F401
            import trio_asyncio  # noqa: F401
        except ImportError as error:
            raise ImportError(
                f"open_system(cluster=...) needs the cluster extra ({error.name} is "
                "missing): pip install 'trio-actors[cluster]'"
            ) from error
    async with running_system(
        name, attrs.evolve(settings or Settings(), **overrides), workers=workers, cluster=cluster
    ) as system:
        yield system


@asynccontextmanager
async def running_system(
    name: str,
    settings: Settings,
    *,
    node: str = "local",
    workers: Workers | None = None,
    cluster: Cluster | None = None,
) -> AsyncIterator[ActorSystem]:
    """What :func:`open_system` runs, given the settings: also what a worker process
    runs as node ``node`` of the system ``name`` (``_worker_main.py``)."""
    system = ActorSystem._create(name, settings)
    system.node = node if cluster is None else cluster.node
    _registry.register(system)
    body_error: BaseException | None = None
    try:
        _watchdog.attach(system)  # (Settings.blocking_threshold)
        async with trio.open_nursery() as outer:
            # The actors live in a nursery of their own, shielded from the caller's cancel
            # scopes: cancelling the block cancels the body, then the shutdown below runs
            # in order, as on a normal exit (bounded by the host's deadline).
            nursery: trio.Nursery = await outer.start(system._host, name=f"system {name}")
            system._nursery = nursery
            guardian = ActorCell(
                system,
                None,
                "user",
                "/user",
                system._uids.getrandbits(63),
                _Guardian,
                Mailbox(),
                system.settings.throughput,
                system.settings.stash_capacity,
            )
            system._guardian = guardian
            nursery.start_soon(guardian._run, name="/user")
            nursery.start_soon(system._run_ask_deadlines, name="ask deadlines")
            lifecycle_log.info("actor system %r started", name, extra=_NO_ACTOR)
            try:
                with system._body_scope:
                    if workers is not None:
                        root = RootNode(system, workers)
                        system._router = root
                        await nursery.start(root.run, name=f"system {name} workers")
                    if cluster is not None:
                        from .cluster._node import ClusterNode

                        member = ClusterNode(system, cluster)
                        system._router = member
                        await nursery.start(member.run, name=f"system {name} cluster")
                    yield system
            except BaseException as exc:
                # Re-raised below, outside the nursery, so that it is not wrapped in an
                # exception group.
                body_error = exc
            try:
                settings = system.settings
                system._terminating = True
                system._host_scope.deadline = (
                    trio.current_time() + settings.shutdown_timeout + 2 * settings.stop_timeout
                )
                with trio.CancelScope(shield=True) as shield:
                    shield.deadline = trio.current_time() + settings.shutdown_timeout
                    await system._shutdown()
                router = system._router
                if isinstance(router, RootNode):  # the actors are down: now the workers
                    with trio.CancelScope(shield=True) as shield:
                        shield.deadline = trio.current_time() + router.config.stop_timeout + 5
                        await router.shut_down()
                elif router is not None:  # (a node of a cluster leaves it)
                    with trio.CancelScope(shield=True) as shield:
                        shield.deadline = trio.current_time() + 5
                        await router.leave()
                system._ask_deadlines_scope.cancel()
                for scope in system._service_scopes:
                    scope.cancel()
                if guardian._state != DEAD:
                    lifecycle_log.warning(
                        "actor system %r did not shut down within shutdown_timeout (%g s); "
                        "cancelling the actors still running (raise shutdown_timeout, or make "
                        "handlers and post_stop return sooner)",
                        name,
                        settings.shutdown_timeout,
                        extra=_NO_ACTOR,
                    )
                    nursery.cancel_scope.cancel()  # past shutdown_timeout: cancel the rest
            except BaseException:
                # Ctrl-C during the shutdown (trio hands it to this task even in the
                # shielded scopes above): stop waiting, cancel what still runs.
                nursery.cancel_scope.cancel()
                system._ask_deadlines_scope.cancel()
                for scope in system._service_scopes:
                    scope.cancel()
                raise
            finally:
                system._host_done.set()
            lifecycle_log.info("actor system %r shut down", name, extra=_NO_ACTOR)
    except BaseException as crash:
        # A task of the system itself raised (a bug, or KeyboardInterrupt or SystemExit
        # in an actor): that wins, but the body's own error must not vanish with it.
        if body_error is not None and body_error is not crash:
            crash.add_note(f"the body of open_system({name!r}) had raised {body_error!r}")
        interrupt = interrupt_in(crash)
        if interrupt is not None and interrupt is not crash:
            # Ctrl-C on a busy system, sys.exit() in a handler: out as itself, not in
            # exception groups, so that `except KeyboardInterrupt` and exit codes work.
            raise interrupt from None
        raise
    finally:
        _watchdog.detach(system)  # stops and joins its thread with the last system
        _registry.unregister(system)
    if body_error is not None:
        if system._failures:
            if isinstance(body_error, trio.Cancelled):
                # The caller's scope would swallow the failures with the Cancelled.
                raise UnhandledFailure(system._failures) from system._failures[0][1]
            body_error.add_note(str(UnhandledFailure(system._failures)))
        raise body_error
    if system._failures:
        raise UnhandledFailure(system._failures) from system._failures[0][1]
