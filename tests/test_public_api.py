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


RUNTIME_CLASSES = (
    actors.ActorRef,
    actors.ActorContext,
    actors.ActorSystem,
    actors.EventBus,
    actors.Timers,
    actors.ReplyHandle,
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
