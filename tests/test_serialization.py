"""Serializers of the persistence layer: pickle by reference (default), cloudpickle
(opt-in), manifests with versions, rejections and undecodable records."""

from __future__ import annotations

import json
import pickle
import sys
import threading
import types
from dataclasses import dataclass

import pytest

from actors.persistence import (
    CloudpickleSerializer,
    EventRejected,
    JournalFailure,
    PickleSerializer,
    RecordUndecodable,
    Serialization,
    Serializer,
    manifest_of,
    parse_manifest,
)


@dataclass(frozen=True)
class Placed:
    order: str
    amount: int

    __event_version__ = 2


@dataclass(frozen=True)
class Cancelled:
    order: str


class PlacedSubtype(Placed):
    pass


@dataclass(frozen=True)
class HoldsALock:
    lock: object


class JsonSerializer(Serializer):
    """A serializer of dicts, to show the hook for other formats."""

    id = "json"

    def to_binary(self, obj: object) -> tuple[str, bytes]:
        if not isinstance(obj, dict):
            raise EventRejected(f"json serializer takes dicts, not {type(obj).__qualname__}")
        return "dict", json.dumps(obj, sort_keys=True).encode()

    def from_binary(self, manifest: str, payload: bytes) -> object:
        try:
            return json.loads(payload)
        except ValueError as error:
            raise RecordUndecodable(f"bad json for {manifest!r}: {error}") from error


def test_pickle_round_trip_and_manifest_with_version() -> None:
    serializer = PickleSerializer()
    assert serializer.id == "pickle"
    manifest, payload = serializer.to_binary(Placed("o-1", 30))
    assert manifest == f"{__name__}.Placed@2"
    assert payload[:2] == b"\x80\x05"  # pickle protocol 5
    assert serializer.from_binary(manifest, payload) == Placed("o-1", 30)


def test_manifest_without_version_and_inherited_version() -> None:
    assert manifest_of(Cancelled("o-1")) == f"{__name__}.Cancelled"
    assert manifest_of(PlacedSubtype("o-1", 1)) == f"{__name__}.PlacedSubtype@2"
    assert manifest_of(3) == "builtins.int"


def test_parse_manifest() -> None:
    assert parse_manifest("orders.Placed@2") == ("orders.Placed", "2")
    assert parse_manifest("orders.Placed") == ("orders.Placed", None)
    assert parse_manifest(manifest_of(Placed("o", 1))) == (f"{__name__}.Placed", "2")


def test_pickle_is_by_reference() -> None:
    _, payload = PickleSerializer().to_binary(Placed("o-1", 30))
    assert b"Placed" in payload
    assert b"order" in payload  # the state, not the class body
    assert b"__event_version__" not in payload


def test_pickle_rejects_a_local_class_with_a_clear_message() -> None:
    @dataclass
    class Local:
        x: int

    with pytest.raises(EventRejected) as info:
        PickleSerializer().to_binary(Local(1))
    message = str(info.value)
    assert "test_pickle_rejects_a_local_class_with_a_clear_message.<locals>.Local" in message
    assert "'pickle'" in message
    assert "local object" in message
    assert info.value.__cause__ is not None


def test_pickle_rejects_an_unpicklable_field() -> None:
    with pytest.raises(EventRejected, match=r"HoldsALock with serializer 'pickle'.*lock"):
        PickleSerializer().to_binary(HoldsALock(threading.Lock()))


def test_pickle_rejects_a_lambda() -> None:
    with pytest.raises(EventRejected, match=r"function.*'pickle'"):
        PickleSerializer().to_binary(lambda: 1)


def test_cloudpickle_round_trips_lambdas_and_local_classes() -> None:
    @dataclass(frozen=True)
    class Local:
        x: int
        __event_version__ = "3b"

    serializer = CloudpickleSerializer()
    assert serializer.id == "cloudpickle"
    manifest, payload = serializer.to_binary(Local(5))
    assert manifest == (
        f"{__name__}.test_cloudpickle_round_trips_lambdas_and_local_classes.<locals>.Local@3b"
    )
    assert payload[:2] == b"\x80\x05"
    restored = serializer.from_binary(manifest, payload)
    assert type(restored).__qualname__ == Local.__qualname__
    assert restored.x == 5  # type: ignore[attr-defined]

    offset = 10
    manifest, payload = serializer.to_binary(lambda n: n + offset)
    function = serializer.from_binary(manifest, payload)
    assert callable(function)
    assert function(1) == 11


def test_cloudpickle_still_rejects_what_cannot_be_pickled() -> None:
    with pytest.raises(EventRejected, match=r"HoldsALock with serializer 'cloudpickle'"):
        CloudpickleSerializer().to_binary(HoldsALock(threading.Lock()))


def test_garbled_payload_is_undecodable() -> None:
    with pytest.raises(RecordUndecodable) as info:
        PickleSerializer().from_binary("orders.Placed@2", b"\x80\x05 not a pickle")
    assert "'orders.Placed@2'" in str(info.value)
    assert "'pickle'" in str(info.value)
    assert isinstance(info.value, JournalFailure)
    with pytest.raises(RecordUndecodable):
        CloudpickleSerializer().from_binary("x", b"")


def test_a_class_that_cannot_be_imported_any_more_is_undecodable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = types.ModuleType("vanishing_events_module")
    exec("class Gone:\n    pass\n", module.__dict__)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    manifest, payload = PickleSerializer().to_binary(module.Gone())
    assert manifest == "vanishing_events_module.Gone"
    monkeypatch.delitem(sys.modules, module.__name__)
    with pytest.raises(RecordUndecodable, match=r"vanishing_events_module.Gone.*No module named"):
        PickleSerializer().from_binary(manifest, payload)


def test_registry_defaults() -> None:
    serialization = Serialization()
    assert serialization.ids == ["cloudpickle", "pickle"]
    assert serialization.default.id == "pickle"
    assert isinstance(serialization.get("pickle"), PickleSerializer)
    assert isinstance(serialization.get("cloudpickle"), CloudpickleSerializer)
    serializer_id, manifest, payload = serialization.serialize(Placed("o", 1))
    assert (serializer_id, manifest) == ("pickle", f"{__name__}.Placed@2")
    assert serialization.deserialize(serializer_id, manifest, payload) == Placed("o", 1)


def test_registry_cloudpickle_only_where_asked() -> None:
    serialization = Serialization()

    @dataclass(frozen=True)
    class Local:
        x: int

    with pytest.raises(EventRejected):
        serialization.serialize(Local(1))
    serializer_id, manifest, payload = serialization.serialize(Local(1), "cloudpickle")
    assert serializer_id == "cloudpickle"
    restored = serialization.deserialize(serializer_id, manifest, payload)
    assert restored.x == 1


def test_registry_unknown_ids() -> None:
    serialization = Serialization()
    with pytest.raises(LookupError, match=r"'protobuf'.*registered: cloudpickle, pickle"):
        serialization.get("protobuf")
    with pytest.raises(EventRejected, match=r"Placed.*no serializer with id 'protobuf'"):
        serialization.serialize(Placed("o", 1), "protobuf")
    _, manifest, payload = serialization.serialize(Placed("o", 1))
    with pytest.raises(RecordUndecodable, match=r"Placed@2.*no serializer with id 'protobuf'"):
        serialization.deserialize("protobuf", manifest, payload)
    with pytest.raises(LookupError, match="'nope'"):
        Serialization(default="nope")


def test_registry_with_another_serializer() -> None:
    json_serializer = JsonSerializer()
    serialization = Serialization([PickleSerializer()])
    serialization.register(json_serializer, default=True)
    assert serialization.ids == ["json", "pickle"]
    assert serialization.default is json_serializer
    stored = serialization.serialize({"b": 1, "a": [2]})
    assert stored == ("json", "dict", b'{"a": [2], "b": 1}')
    assert serialization.deserialize(*stored) == {"a": [2], "b": 1}
    # records of the other serializers are still read by their own
    pickled = serialization.serialize(Cancelled("o"), "pickle")
    assert serialization.deserialize(*pickled) == Cancelled("o")
    with pytest.raises(LookupError):
        serialization.get("cloudpickle")


def test_register_refuses_a_second_serializer_with_a_taken_id() -> None:
    serialization = Serialization()
    pickle_serializer = serialization.get("pickle")
    serialization.register(pickle_serializer)  # the same one again: fine
    with pytest.raises(ValueError, match=r"'pickle' is already registered"):
        serialization.register(PickleSerializer())
    with pytest.raises(TypeError, match="Serializer"):
        serialization.register(pickle)  # type: ignore[arg-type]

    class Nameless(PickleSerializer):
        id = ""

    with pytest.raises(ValueError, match="no id"):
        serialization.register(Nameless())


def test_public_names() -> None:
    for cls in (Serializer, PickleSerializer, CloudpickleSerializer, Serialization):
        assert cls.__module__ == "actors.persistence"
    assert RecordUndecodable.__module__ == "actors.persistence"
    assert pickle.loads(pickle.dumps(RecordUndecodable("x"))).args == ("x",)
