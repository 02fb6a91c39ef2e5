"""A testkit for one persistent actor: send it commands, see the events each command
persisted, its reply and the state after it; restart it to check that it recovers.

::

    async with event_sourced_testkit(Account, "alice") as kit:
        result = await kit.run_command(("deposit", 10))
        assert result.events == [Deposited(10)]
        assert result.reply == 10
        await kit.restart()
        assert kit.state == {"balance": 10}
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, Final, Generic, TypeVar

import attrs

from .._errors import ActorDead
from .._ref import ActorRef
from .._spawning import class_default
from .._system import ActorSystem, open_system
from ..persistence._errors import EventRejected, RecordUndecodable
from ..persistence._extension import Persistence
from ..persistence._journal import Journal, SnapshotStore
from ..persistence._memory import InMemoryJournal
from ..persistence._persistent import PersistentActor
from ..persistence._persistent_cell import INSPECT, PersistentCell
from ..persistence._serialization import Serialization

_A = TypeVar("_A", bound=PersistentActor)


class SerializationCheckFailed(AssertionError):
    """A command, an event or a state did not survive the serialization round trip of
    an :class:`EventSourcedTestKit`: it cannot be serialized, its bytes cannot be
    decoded, or what is decoded is not equal to it. The message names the object, its
    type and the cause (also the ``__cause__``)."""


@attrs.frozen
class CommandResult:
    """What one command did (see :meth:`EventSourcedTestKit.run_command`)."""

    command: Any
    """The command sent."""
    events: list[Any]
    """The events stored while the command was handled, oldest first, as decoded from
    the journal (an event that was rejected, or whose write failed, is not here)."""
    state: Any
    """The actor's state after the command (see :class:`EventSourcedTestKit`); after a
    failure, the state the restarted actor recovered; ``None`` if the actor stopped."""
    reply: Any
    """The reply to the command, or the exception its handler raised."""
    stopped: bool = False
    """Whether the actor had stopped for good once the command was handled."""

    @property
    def error(self) -> BaseException | None:
        """The exception the ask raised (what the handler raised, or ``ActorDead`` /
        ``AskTimeout``), else ``None``."""
        return self.reply if isinstance(self.reply, BaseException) else None

    @property
    def rejected(self) -> bool:
        """Whether the command was answered with :class:`EventRejected`."""
        return isinstance(self.reply, EventRejected)

    @property
    def event(self) -> Any:
        """The only event of the command; ``AssertionError`` if there were not exactly
        one."""
        if len(self.events) != 1:
            raise AssertionError(
                f"command {self.command!r} persisted {len(self.events)} events, not one: "
                f"{self.events!r}"
            )
        return self.events[0]


_IDENTITY_EQ: Final[Any] = object.__eq__
_CLASS_DEFAULTS: Final = ("mailbox", "throughput", "stash_capacity", "supervisor_strategy")


class _Factory:
    """What the kit spawns: it makes the instance through the kit, and shows the runtime
    the class attributes of the actor class the factory makes (its mailbox, throughput,
    stash capacity, supervisor strategy and cell class), as spawning the class itself
    would. The cell is a :class:`PersistentCell`, which answers the kit's inspection
    before the actor's behaviour."""

    def __init__(self, make: Callable[[], PersistentActor], build: Callable[..., Any]) -> None:
        self._make = make
        for name in _CLASS_DEFAULTS:
            setattr(self, name, class_default(build, name, None))
        self._cell_class = class_default(build, "_cell_class", PersistentCell)
        if not issubclass(self._cell_class, PersistentCell):
            raise TypeError(
                f"EventSourcedTestKit needs the cell of a persistent actor; the factory's "
                f"_cell_class is {self._cell_class.__qualname__}"
            )

    def __call__(self) -> PersistentActor:
        return self._make()


class EventSourcedTestKit(Generic[_A]):
    """Runs one persistent actor in ``system`` (whose journal must be set) and reports
    what each command did.

    The actor is spawned at once from ``factory(*args, **kwargs)`` (a class or any
    callable returning a :class:`PersistentActor`), named ``name``; await :meth:`ready`
    before reading :attr:`state` (:func:`event_sourced_testkit` does). The kit wraps the
    ``apply`` of each instance the factory makes, to see the events as they were
    persisted. Its questions (the state after a command) are answered by the actor's
    cell before its behaviour, so they never reach ``receive``, nor a behaviour the
    actor set with ``become()``.

    ``state(actor)`` gives the state reported after each command; without it, the
    actor's ``snapshot()`` if it implements one, else ``None``. It runs inside the actor,
    after the messages sent before.

    With ``check_serialization`` (the default), every command, every event and every
    state goes through the system's serialization (pickle by default; events and state
    with the actor's ``serializer``) and back; the kit raises
    :class:`SerializationCheckFailed` naming the object when it cannot be serialized or
    decoded, or when its class defines equality and the decoded copy is not equal. The
    states reported are then the decoded copies, so later commands cannot change them.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        system: ActorSystem,
        factory: Callable[..., _A],
        *args: Any,
        state: Callable[[_A], Any] | None = None,
        check_serialization: bool = True,
        name: str = "tested",
        **kwargs: Any,
    ) -> None:
        persistence = system.settings.extension(Persistence)
        journal = None if persistence is None else persistence.journal
        if persistence is None or journal is None:
            raise ValueError(
                "EventSourcedTestKit needs a system with a journal (open_system(extensions="
                "[Persistence(journal)])), or use event_sourced_testkit(), which opens one"
            )
        self.system = system
        self.journal: Journal = journal
        """The journal the actor writes to."""
        self.serialization = persistence.serialization or Serialization()
        self.check_serialization = check_serialization
        self._build = functools.partial(factory, *args, **kwargs)
        self._state_of = state
        self._name = name
        self._instance: _A | None = None
        self._applied: list[Any] = []
        self._state: Any = None
        self._ready = False
        self._factory = _Factory(self._make, self._build)
        self.ref: ActorRef = system.spawn(self._factory, name=name)
        """The actor's ref (a new one after :meth:`restart`)."""

    # -- the API --------------------------------------------------------------------------

    @property
    def actor(self) -> _A:
        """The actor's current instance (to read what :attr:`state` does not show)."""
        if self._instance is None:
            raise RuntimeError("the actor has not been created yet: await kit.ready() first")
        return self._instance

    @property
    def persistence_id(self) -> str:
        """The actor's persistence id."""
        return self.actor.persistence_id

    @property
    def state(self) -> Any:
        """The state reported the last time the kit looked: after the last command, the
        last :meth:`restart` or :meth:`ready`."""
        if not self._ready:
            raise RuntimeError("the actor has not recovered yet: await kit.ready() first")
        return self._state

    async def ready(self) -> Any:
        """Wait until the actor has recovered (and handled every command sent before);
        return its state. Raises ``ActorDead`` if it stopped (its recovery failed for
        good)."""
        state = await self._inspect()
        self._ready = True
        return state

    async def run_command(self, command: Any, *, timeout: float | None = None) -> CommandResult:
        """Ask the actor ``command`` (``timeout``: the ask's, default the system's) and
        report the events stored meanwhile, the reply (or the error raised, which does
        not propagate) and the state after it (asked of the actor with the same
        ``timeout``; ``AskTimeout`` propagates if it does not answer in time).

        When the handler made the actor fail (a journal failure), the state reported is
        the one the restarted actor recovered, once it has (after its supervisor's
        backoff). Raises :class:`SerializationCheckFailed` (before sending, for the
        command). If cancelled, the command may have been handled all the same."""
        if self.check_serialization:
            self._roundtrip(command, "command", None)
        if not self._ready:
            await self.ready()
        before = self.actor.last_seq
        pid = self.persistence_id
        self._applied = []
        reply: Any
        try:
            reply = await self.ref.ask(command, timeout=timeout)
        except Exception as error:
            reply = error
        applied = self._applied
        stopped = False
        state: Any = None
        try:
            state = await self._inspect(timeout)
        except ActorDead:
            stopped = True
        events = await self._events(pid, before + 1)
        if self.check_serialization and len(applied) == len(events):
            for original, stored in zip(applied, events, strict=True):
                self._check_equal(original, stored, "event")
        return CommandResult(command, events, state, reply, stopped)

    async def restart(self) -> Any:
        """Stop the actor, wait until it has stopped, start it again under the same
        name, and wait until it has recovered from the journal; return its state (also
        :attr:`state` from now on). If cancelled, the actor may be left stopped (and
        :attr:`state` unavailable until :meth:`ready` succeeds on a new start)."""
        await self.system.graceful_stop(self.ref)
        self._ready = False
        self.ref = self.system.spawn(self._factory, name=self._name)
        return await self.ready()

    async def persisted_events(self) -> list[Any]:
        """Every event of the actor's persistence id in the journal (deleted ones
        excepted), decoded, oldest first."""
        return await self._events(self.persistence_id, 1)

    # -- internals ------------------------------------------------------------------------

    def _make(self) -> _A:
        instance = self._build()
        if not isinstance(instance, PersistentActor):
            raise TypeError(
                f"EventSourcedTestKit tests persistent actors; the factory returned a "
                f"{type(instance).__qualname__}"
            )
        apply = instance.apply
        kit = self

        def observed_apply(event: Any) -> None:
            apply(event)
            if not instance.recovering:
                kit._applied.append(event)

        instance.apply = observed_apply  # type: ignore[method-assign]
        cell = instance._actor_cell
        assert isinstance(cell, PersistentCell), "spawned with the kit's _Factory"
        cell._inspector = self._observe
        self._instance = instance
        return instance

    def _observe(self, instance: Any) -> Any:
        if self._state_of is not None:
            return self._state_of(instance)
        if type(instance).snapshot is not PersistentActor.snapshot:
            return instance.snapshot()
        return None

    async def _inspect(self, timeout: float | None = None) -> Any:
        state = await self.ref.ask(INSPECT, timeout=timeout)
        if self.check_serialization and state is not None:
            state = self._roundtrip(state, "state", self._serializer_id())
        self._state = state
        return state

    def _serializer_id(self) -> str | None:
        return None if self._instance is None else type(self._instance).serializer

    async def _events(self, persistence_id: str, from_seq: int) -> list[Any]:
        events: list[Any] = []
        async for record in self.journal.replay(persistence_id, from_seq):
            try:
                event = self.serialization.deserialize(
                    record.serializer, record.manifest, record.payload
                )
            except RecordUndecodable as error:
                if not self.check_serialization:
                    raise
                raise SerializationCheckFailed(
                    f"event {record.seq} of {persistence_id!r} ({record.manifest}) was stored "
                    f"but cannot be decoded: {error}"
                ) from error
            events.append(event)
        return events

    def _roundtrip(self, obj: Any, what: str, serializer_id: str | None) -> Any:
        serialization = self.serialization
        try:
            serializer, manifest, payload = serialization.serialize(obj, serializer_id)
        except EventRejected as error:
            raise SerializationCheckFailed(
                f"the {what} {obj!r} ({_type_name(obj)}) cannot be serialized: {error}"
            ) from error
        try:
            copy = serialization.deserialize(serializer, manifest, payload)
        except RecordUndecodable as error:
            raise SerializationCheckFailed(
                f"the {what} {obj!r} ({_type_name(obj)}) is serialized but cannot be "
                f"decoded: {error}"
            ) from error
        self._check_equal(obj, copy, what)
        return copy

    @staticmethod
    def _check_equal(original: Any, copy: Any, what: str) -> None:
        if type(original).__eq__ is _IDENTITY_EQ:
            return  # identity only: nothing to compare
        if type(copy) is not type(original) or copy != original:
            raise SerializationCheckFailed(
                f"the {what} {original!r} ({_type_name(original)}) does not survive the "
                f"serialization round trip: it comes back as {copy!r} ({_type_name(copy)})"
            )


def _type_name(obj: object) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


@asynccontextmanager
async def event_sourced_testkit(
    factory: Callable[..., _A],
    *args: Any,
    journal: Journal | None = None,
    snapshot_store: SnapshotStore | None = None,
    serialization: Serialization | None = None,
    state: Callable[[_A], Any] | None = None,
    check_serialization: bool = True,
    system_options: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> AsyncIterator[EventSourcedTestKit[_A]]:
    """Open a system of its own (with ``journal``, default a new
    :class:`~actors.persistence.InMemoryJournal`, and ``system_options``: other keyword
    arguments of ``open_system``), start ``factory(*args, **kwargs)`` in it under an
    :class:`EventSourcedTestKit`, wait until it has recovered, and yield the kit. Leaving
    the block shuts the system down (a failure that reached the top of it is raised as
    ``UnhandledFailure``); the journal is left as it is, so a test can open another kit
    on it."""
    options = dict(system_options or {})
    extensions = [
        *options.pop("extensions", ()),
        Persistence(
            journal if journal is not None else InMemoryJournal(),
            snapshot_store=snapshot_store,
            serialization=serialization,
        ),
    ]
    async with open_system("es-testkit", extensions=extensions, **options) as system:
        kit = EventSourcedTestKit(
            system,
            factory,
            *args,
            state=state,
            check_serialization=check_serialization,
            **kwargs,
        )
        await kit.ready()
        yield kit
