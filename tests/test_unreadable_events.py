"""Events that pickle but cannot be unpickled are refused at persist (issue 14): stored,
they would fail every later recovery of their persistence id, so the built-in
serializers load each payload once and reject the event (``EventRejected``, nothing
stored, the actor goes on)."""

from __future__ import annotations

import copyreg
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest

import actors
from actors.persistence import (
    CloudpickleSerializer,
    EventRejected,
    Persistence,
    PersistentActor,
    PickleSerializer,
    Serialization,
    Serializer,
    open_sqlite_journal,
)

# -- events that pickle but do not unpickle --------------------------------------------------


def _refuse_to_load(*args: object) -> object:
    raise RuntimeError(f"refusing to rebuild from {args!r}")


class ReduceToRaisingCallable:
    """``__reduce__`` names a callable that raises when called on load."""

    def __reduce__(self) -> tuple[Callable[..., object], tuple[object, ...]]:
        return _refuse_to_load, ("state",)


class SetstateRaises:
    """Its ``__setstate__`` raises on load."""

    def __init__(self) -> None:
        self.value = 1

    def __setstate__(self, state: dict[str, Any]) -> None:
        raise ValueError("this state is not accepted")


class NeedsInitArgs:
    """``__reduce__`` calls the class on load without the arguments ``__init__`` needs."""

    def __init__(self, amount: int) -> None:
        self.amount = amount

    def __reduce__(self) -> tuple[type, tuple[()]]:
        return NeedsInitArgs, ()


class ByCopyreg:
    """Reduced by a copyreg reducer that rebuilds it with arguments it does not take."""

    def __init__(self, name: str) -> None:
        self.name = name


def _reduce_by_copyreg(obj: ByCopyreg) -> tuple[type, tuple[str, str]]:
    return ByCopyreg, (obj.name, "one argument too many")


copyreg.pickle(ByCopyreg, _reduce_by_copyreg)


class ReduceExToGarbage:
    """A custom ``__reduce_ex__`` whose pickle rebuilds it as ``int("a number?")``."""

    def __reduce_ex__(self, protocol: Any) -> tuple[type, tuple[str]]:
        return int, ("a number?",)


@attrs.frozen
class Wrapper:
    """An ordinary event that holds an unreadable object somewhere inside."""

    inner: object


@attrs.frozen
class Deposited:
    amount: int


UNREADABLE: dict[str, Callable[[], object]] = {
    "reduce-to-raising-callable": ReduceToRaisingCallable,
    "setstate-raises": SetstateRaises,
    "init-args-missing": lambda: NeedsInitArgs(3),
    "copyreg-reducer": lambda: ByCopyreg("x"),
    "reduce-ex-garbage": ReduceExToGarbage,
    "nested-in-an-event": lambda: Wrapper([1, SetstateRaises()]),
}

CAUSES = {
    "reduce-to-raising-callable": (RuntimeError, "refusing to rebuild from ('state',)"),
    "setstate-raises": (ValueError, "this state is not accepted"),
    "init-args-missing": (TypeError, "missing 1 required positional argument: 'amount'"),
    "copyreg-reducer": (TypeError, "takes 2 positional arguments but 3 were given"),
    "reduce-ex-garbage": (ValueError, "invalid literal for int() with base 10: 'a number?'"),
    "nested-in-an-event": (ValueError, "this state is not accepted"),
}


def _type_name(obj: object) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_each_kind_pickles_but_does_not_unpickle(kind: str) -> None:
    """The premise: plain pickle stores every one of them, and cannot load it back."""
    payload = pickle.dumps(UNREADABLE[kind](), protocol=5)
    error_type, text = CAUSES[kind]
    with pytest.raises(error_type) as caught:
        pickle.loads(payload)
    assert text in str(caught.value)


@pytest.mark.parametrize("serializer", [PickleSerializer(), CloudpickleSerializer()])
@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_the_serializers_refuse_what_they_cannot_read_back(
    kind: str, serializer: Serializer
) -> None:
    event = UNREADABLE[kind]()
    error_type, text = CAUSES[kind]
    with pytest.raises(EventRejected) as caught:
        serializer.to_binary(event)
    message = str(caught.value)
    assert message.startswith(
        f"cannot serialize an event of type {_type_name(event)} with serializer "
        f"{serializer.id!r}: its payload cannot be read back ({error_type.__name__}: "
    )
    assert text in message
    assert message.endswith("so every recovery of its persistence id would fail on it")
    # The load error travels as the cause.
    assert isinstance(caught.value.__cause__, error_type)
    assert text in str(caught.value.__cause__)


class Renamed:
    """A module-level class whose name no longer leads to it (renamed in its module)."""


Renamed.__qualname__ = Renamed.__name__ = "RenamedAway"


def test_a_class_its_module_no_longer_holds_is_refused_when_pickled() -> None:
    """pickle itself checks, when it writes, that the class is found under its name."""
    with pytest.raises(EventRejected) as caught:
        PickleSerializer().to_binary(Renamed())
    assert str(caught.value).startswith(
        f"cannot serialize an event of type {__name__}.RenamedAway with serializer "
        "'pickle': PicklingError: Can't pickle "
    )


def test_a_custom_serializer_decides_for_itself() -> None:
    """The check lives in the built-in serializers: a custom one that does not check
    (its format cannot hold such objects, say) is not second-guessed."""

    class Unchecked(Serializer):
        id = "unchecked"

        def to_binary(self, obj: object) -> tuple[str, bytes]:
            return "any", pickle.dumps(obj)

        def from_binary(self, manifest: str, payload: bytes) -> object:
            return pickle.loads(payload)

    registry = Serialization([Unchecked()], default="unchecked")
    assert registry.serialize(SetstateRaises())[0] == "unchecked"


def test_readable_events_still_round_trip() -> None:
    registry = Serialization()
    for event in (Deposited(5), Wrapper({"a": [1, 2.5, None]}), "text", 42):
        stored = registry.serialize(event)
        assert registry.deserialize(*stored) == event


# -- at persist: refused, nothing stored, the actor goes on, recovery works ---------------


class Account(PersistentActor):
    persistence_id = "acct"

    def __init__(self, incarnations: list[object]) -> None:
        self.deposits: list[int] = []
        incarnations.append(self)

    def apply(self, event: Any) -> None:
        self.deposits.append(event.amount)

    async def receive(self, message: Any) -> Any:
        match message:
            case ("persist", event):
                try:
                    await self.persist(event)
                except EventRejected as error:
                    return ("rejected", error)
                return ("stored", self.last_seq)
            case ("persist-all", events):
                try:
                    await self.persist_all(events)
                except EventRejected as error:
                    return ("rejected", error)
                return ("stored", self.last_seq)
            case "state":
                return (list(self.deposits), self.last_seq)
        self.unhandled(message)
        return None


class CloudpickleAccount(Account):
    serializer = "cloudpickle"


@pytest.mark.parametrize("actor", [Account, CloudpickleAccount])
async def test_persist_refuses_unreadable_events_and_recovery_still_works(
    tmp_path: Path, actor: type[Account]
) -> None:
    serializer = actor.serializer
    path = tmp_path / "journal.db"
    incarnations: list[object] = []
    async with (
        open_sqlite_journal(path) as journal,
        actors.open_system(extensions=[Persistence(journal)]) as system,
    ):
        account = system.spawn(actor, incarnations, name="account")
        assert await account.ask(("persist", Deposited(5))) == ("stored", 1)
        for kind in sorted(UNREADABLE):
            event = UNREADABLE[kind]()
            outcome, error = await account.ask(("persist", event))
            assert outcome == "rejected", kind
            assert isinstance(error, EventRejected)
            assert str(error).startswith(
                f"cannot serialize an event of type {_type_name(event)} with serializer "
                f"{serializer or 'pickle'!r}: its payload cannot be read back"
            ), kind
            assert CAUSES[kind][1] in str(error), kind
            assert await journal.highest_seq("acct") == 1, kind
        # A batch with one unreadable event is refused whole.
        outcome, _ = await account.ask(("persist-all", [Deposited(1), SetstateRaises()]))
        assert outcome == "rejected"
        assert await journal.highest_seq("acct") == 1
        # The same incarnation goes on (no restart), and a normal event still persists.
        assert await account.ask("state") == ([5], 1)
        assert await account.ask(("persist", Deposited(7))) == ("stored", 2)
        assert len(incarnations) == 1
    async with (
        open_sqlite_journal(path) as journal,
        actors.open_system(extensions=[Persistence(journal)]) as system,
    ):
        account = system.spawn(actor, incarnations, name="account")
        assert await account.ask("state") == ([5, 7], 2)
        assert await journal.highest_seq("acct") == 2
