"""The public surface: names, modules, spellings, runtime objects users cannot make or
subclass, and the statistics record of a ref."""

from __future__ import annotations

import enum
import importlib
import inspect
import pickle
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
import actors.routing
import supervision as sv
from actors import Actor, Mailbox

PACKAGES = (
    "actors",
    "actors.routing",
    "actors.persistence",
    "actors.projection",
    "actors.streams",
    "actors.testing",
    "actors.testing.journal",
    "supervision",
)


def _exports() -> list[tuple[str, str, Any]]:
    found = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            found.append((package, name, getattr(module, name)))
    return found


@pytest.mark.parametrize(("package", "name", "obj"), _exports())
def test_every_exported_class_and_function_shows_its_public_module(
    package: str, name: str, obj: Any
) -> None:
    if not (inspect.isclass(obj) or inspect.isfunction(obj)):
        return  # a constant or a type alias
    assert obj.__module__ == package, f"{package}.{name} says it lives in {obj.__module__}"
    assert obj.__qualname__ == name
    # ... so that pickles by reference and the docs find it there.
    assert getattr(importlib.import_module(obj.__module__), obj.__qualname__) is obj


def test_routers_and_journal_internals_are_not_at_the_top_level() -> None:
    for name in ("Router", "RoundRobin", "RoundRobinRouting", "Broadcast", "mailbox_size"):
        assert not hasattr(actors, name), name
    assert {"Router", "RoundRobinRouting", "GetRoutees"} <= set(actors.routing.__all__)


def test_enum_values_are_their_names_in_lower_case() -> None:
    enums = [obj for _, _, obj in _exports() if inspect.isclass(obj) and issubclass(obj, enum.Enum)]
    assert actors.DeadLetterReason in enums
    for kind in enums:
        for member in kind:
            assert member.value == member.name.lower(), member


def test_routing_logics_share_one_suffix() -> None:
    logics = [
        obj
        for obj in vars(actors.routing).values()
        if inspect.isclass(obj)
        and issubclass(obj, actors.routing.RoutingLogic)
        and obj is not actors.routing.RoutingLogic
    ]
    assert len(logics) == 7
    assert all(logic.__name__.endswith("Routing") for logic in logics)


def test_errors_use_error_for_exceptions_and_reason_only_for_enums() -> None:
    for event in (actors.Terminated, actors.ActorStopped, actors.ActorFailed):
        names = [field.name for field in attrs.fields(event)]
        assert "error" in names
        assert "reason" not in names
    assert [field.name for field in attrs.fields(actors.DeadLetter)][-1] == "reason"
    cause = ValueError("x")
    assert actors.ActorInitializationError("/user/a", cause).error is cause


def test_ask_timeout_is_a_timeout_error_and_name_errors_share_a_base() -> None:
    assert issubclass(actors.AskTimeout, TimeoutError)
    for error in (actors.InvalidActorName, actors.ActorNameTaken, actors.ActorNotFound):
        assert issubclass(error, actors.ActorNameError)
    assert "Not every exception" in (actors.ActorError.__doc__ or "")


def test_record_corrupt_is_a_journal_failure_of_its_own() -> None:
    from actors.persistence import (
        JournalFailure,
        RecordCorrupt,
        RecordUndecodable,
        RecoveryFailed,
    )

    assert "RecordCorrupt" in actors.persistence.__all__
    assert issubclass(RecordCorrupt, JournalFailure)
    assert not issubclass(RecordCorrupt, RecordUndecodable | RecoveryFailed)
    error = RecordCorrupt(
        "event 'a' seq 3 (offset 7)",
        "SQLite journal j.db",
        "corrupt: why",
        persistence_id="a",
        seq=3,
        offset=7,
    )
    assert str(error) == (
        "event 'a' seq 3 (offset 7) in the SQLite journal j.db is corrupt: why; nothing of "
        "it was decoded"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.persistence_id, copy.seq, copy.offset, copy.needs_key) == ("a", 3, 7, False)


def test_a_read_only_replica_is_named_by_replica_and_refused_by_its_own_error() -> None:
    from actors.persistence import PersistentActor, ReadOnlyReplica, Replica

    assert {"Replica", "ReadOnlyReplica"} <= set(actors.persistence.__all__)
    assert issubclass(ReadOnlyReplica, actors.ActorError)
    assert not issubclass(ReadOnlyReplica, actors.persistence.JournalFailure)
    assert ReadOnlyReplica.default_directive is sv.Directive.RESUME
    error = ReadOnlyReplica("a", "persist", "seq 3")
    assert str(error) == (
        "persist() refused: persistence id 'a' runs here as a read-only replica recovered "
        "to seq 3; nothing was stored"
    )
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.persistence_id, copy.call, copy.point) == ("a", "persist", "seq 3")
    assert isinstance(PersistentActor.replica, property)
    assert pickle.loads(pickle.dumps(Replica(PersistentActor, to_seq=2))) == Replica(
        PersistentActor, to_seq=2
    )


RUNTIME_CLASSES = (
    actors.ActorRef,
    actors.ActorContext,
    actors.ActorSystem,
    actors.EventBus,
    actors.Timers,
    actors.ReplyHandle,
    actors.streams.Streams,
    actors.streams.Subscription,
)


@pytest.mark.parametrize("cls", RUNTIME_CLASSES)
def test_runtime_objects_cannot_be_constructed_or_subclassed(cls: type) -> None:
    with pytest.raises(TypeError, match="no public constructor"):
        cls()
    with pytest.raises(TypeError, match="does not support subclassing"):
        type("Mine", (cls,), {})
    assert getattr(cls, "__final__", False)  # typing.final, for type checkers


async def test_the_context_is_its_own_object_not_the_cell(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[Any] = []

    class Looks(Actor):
        def receive(self, message: Any) -> None:
            seen.append(self.context)

    async with actors.open_system("context") as system:
        ref = system.spawn(Looks)
        ref.tell(1)
        ref.tell(2)
        await trio.testing.wait_all_tasks_blocked()
    context = seen[0]
    assert seen[1] is context  # one per instance, made once
    assert type(context) is actors.ActorContext
    assert context.ref == ref
    private = [name for name in dir(context) if name[0] == "_" and not name.startswith("__")]
    assert private == ["_cell", "_message_in_hand", "_unhandled"]  # not the cell's fields


class Sleeper(Actor):
    mailbox = Mailbox(capacity=5)

    async def receive(self, message: Any) -> Any:
        if message == "crash":
            raise RuntimeError("crash")
        if message == "nap":
            await trio.sleep(1)
        return message


async def test_stats_report_the_mailbox_and_the_counts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("stats") as system:
        ref = system.spawn(Sleeper)
        await trio.testing.wait_all_tasks_blocked()
        assert ref.stats() == actors.ActorStats(alive=True, capacity=5)
        ref.tell("nap")
        await trio.testing.wait_all_tasks_blocked()  # napping on the first message
        for n in range(3):
            ref.tell(n)
        stats = ref.stats()
        assert (stats.mailbox, stats.capacity, stats.processed) == (3, 5, 0)
        ref.tell("crash")
        assert await ref.ask("done") == "done"
        stats = ref.stats()
        assert (stats.mailbox, stats.processed, stats.restarts) == (0, 6, 1)
        await system.graceful_stop(ref)
        assert ref.stats() == actors.ActorStats(alive=False, capacity=5, processed=6, restarts=1)
    # A ref of a system that is not running here, or of an address with no actor.
    assert pickle.loads(pickle.dumps(ref)).stats() == actors.ActorStats(alive=False)


async def test_smallest_mailbox_routing_reads_the_stats_by_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("smallest") as system:
        busy = system.spawn(Sleeper, name="busy")
        idle = system.spawn(Sleeper, name="idle")
        busy.tell("nap")
        await trio.testing.wait_all_tasks_blocked()
        busy.tell("queued")
        logic: actors.routing.SmallestMailboxRouting[actors.ActorRef]
        logic = actors.routing.SmallestMailboxRouting()
        assert logic.select("m", (busy, idle)) == (idle,)


def test_listen_for_stop_replaces_stop_requested() -> None:
    assert "listen_for_stop" in sv.__all__
    assert not hasattr(sv, "stop_requested")
    with pytest.raises(RuntimeError, match="inside a task run by a supervisor"):
        sv.listen_for_stop()


def test_the_in_memory_stream_engine_is_public_and_follows_the_contract() -> None:
    import actors.streams

    assert "InMemoryStreams" in actors.streams.__all__
    assert issubclass(actors.streams.InMemoryStreams, actors.streams.StreamEngine)
    assert actors.streams.InMemoryStreams.__module__ == "actors.streams"


def test_the_jetstream_engine_is_public_and_imports_nats_only_when_opened() -> None:
    import subprocess
    import sys

    import actors.streams

    assert {"JetStreamEngine", "open_jetstream"} <= set(actors.streams.__all__)
    assert issubclass(actors.streams.JetStreamEngine, actors.streams.StreamEngine)
    assert actors.streams.open_jetstream.__module__ == "actors.streams"
    code = "import sys, actors.streams; print(sorted(m for m in sys.modules if 'nats' in m))"
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"


def test_projections_are_public_and_import_no_stream_engine_until_asked() -> None:
    import subprocess
    import sys

    import actors.projection

    assert {
        "Projection",
        "ProjectionActor",
        "JournalSource",
        "StreamSource",
        "AtLeastOnce",
        "SqliteExactlyOnce",
        "PostgresExactlyOnce",
        "InMemoryOffsetStore",
        "SqliteOffsetStore",
        "PostgresOffsetStore",
        "GetStatus",
        "Rebuild",
        "WaitCaughtUp",
        "ProjectionStatus",
        "Envelope",
    } <= set(actors.projection.__all__)
    assert issubclass(actors.projection.ProjectionActor, actors.Actor)
    assert issubclass(actors.projection.ProjectionError, actors.ActorError)
    prefixes = ("actors.streams", "nats", "psycopg")
    code = (
        "import sys, actors.projection; "
        f"print(sorted(m for m in sys.modules if m.startswith({prefixes!r})))"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert found.strip() == "[]"


def test_the_outbox_is_public_in_actors_streams_and_is_a_projection_handler() -> None:
    import actors.projection
    import actors.streams

    assert {"Outbox", "OutboxError", "UnpublishableEvent", "spawn_outbox"} <= set(
        actors.streams.__all__
    )
    assert issubclass(actors.streams.Outbox, actors.projection.ProjectionHandler)
    assert issubclass(actors.streams.UnpublishableEvent, actors.streams.OutboxError)
    assert issubclass(actors.streams.OutboxError, actors.projection.ProjectionError)
    assert actors.streams.spawn_outbox.__module__ == "actors.streams"
