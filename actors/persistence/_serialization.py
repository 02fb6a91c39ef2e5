"""Serializers: how events and snapshots become the bytes a journal stores.

A :class:`Serializer` turns an object into ``(manifest, payload)`` and back. The
manifest names what the payload holds, ``"module.qualname"``, followed by
``"@version"`` when the object's class sets ``__event_version__`` (e.g.
``"orders.Placed@2"``), so that an upcaster can recognise and transform old events on
replay. Every stored record also carries the serializer's ``id``, and a
:class:`Serialization` registry maps the id back to the serializer when reading.

Two serializers are built in: :class:`PickleSerializer` (``"pickle"``, the default:
classes are stored by reference, so they must be importable when the events are read)
and :class:`CloudpickleSerializer` (``"cloudpickle"``, opt-in: it also stores lambdas and
locally defined classes by value, at the price of payloads tied to the code that wrote
them). Both decode with :mod:`pickle`, which runs code named by the payload: read only
journals you trust.
"""

from __future__ import annotations

import abc
import io
import pickle
import types
from collections.abc import Callable, Iterable
from typing import Any

import cloudpickle

from ._errors import EventRejected, RecordUndecodable

PICKLE_PROTOCOL = 5
"""The pickle protocol of the built-in serializers (out-of-band buffers, Python 3.8+)."""


def manifest_of(obj: object) -> str:
    """The manifest of ``obj``: ``"module.qualname"`` of its class, followed by
    ``"@version"`` when the class (or a base class) sets ``__event_version__``.
    Remembered per class (for the 4,096 classes seen last; set ``__event_version__``
    when the class is defined, not later)."""
    cls = type(obj)
    manifest = _manifests.get(cls)
    if manifest is None:
        name = f"{cls.__module__}.{cls.__qualname__}"
        version = getattr(cls, "__event_version__", None)
        manifest = name if version is None else f"{name}@{version}"
        if len(_manifests) >= 4096:
            _manifests.clear()
        _manifests[cls] = manifest
    return manifest


_manifests: dict[type, str] = {}


def parse_manifest(manifest: str) -> tuple[str, str | None]:
    """Split a manifest into the type name and the version (``None`` when the manifest
    has no ``"@version"``): ``"orders.Placed@2"`` gives ``("orders.Placed", "2")``."""
    name, sep, version = manifest.rpartition("@")
    if not sep:
        return manifest, None
    return name, version


class Serializer(abc.ABC):
    """Turns objects into ``(manifest, payload)`` and back.

    ``id`` names the serializer in every record it writes; it must stay the same for as
    long as such records are stored. :meth:`to_binary` raises :class:`EventRejected`
    (naming the object's type and the cause) when the object cannot be serialized;
    :meth:`from_binary` raises :class:`RecordUndecodable` when the payload cannot be
    decoded. Implement both for another format (JSON, protobuf...) and register the
    serializer with :meth:`Serialization.register`.

    A serializer should also refuse (with :class:`EventRejected`) what it could not read
    back: a rejected event is not stored and the actor goes on, whereas a stored event
    that does not decode fails every later recovery of its persistence id. The built-in
    serializers check this by decoding each payload once, right after writing it (an
    object whose ``__reduce__`` names a callable that raises, whose ``__setstate__``
    raises, ...); a custom serializer decides whether its format needs such a check
    (calling its own :meth:`from_binary` on the payload in :meth:`to_binary` is one).
    """

    id: str

    @abc.abstractmethod
    def to_binary(self, obj: object) -> tuple[str, bytes]:
        """``(manifest, payload)`` for ``obj``; :class:`EventRejected` if it cannot be
        serialized."""

    @abc.abstractmethod
    def from_binary(self, manifest: str, payload: bytes) -> object:
        """The object that :meth:`to_binary` turned into ``(manifest, payload)``;
        :class:`RecordUndecodable` if it cannot be decoded."""

    def _rejected(self, obj: object, cause: BaseException) -> EventRejected:
        cls = type(obj)
        return EventRejected(
            f"cannot serialize an event of type {cls.__module__}.{cls.__qualname__} "
            f"with serializer {self.id!r}: {type(cause).__name__}: {cause}"
        )

    def _unreadable(self, obj: object, cause: BaseException) -> EventRejected:
        """The rejection of an object that serialized but whose payload does not decode:
        stored, it would fail every recovery of its persistence id."""
        cls = type(obj)
        return EventRejected(
            f"cannot serialize an event of type {cls.__module__}.{cls.__qualname__} "
            f"with serializer {self.id!r}: its payload cannot be read back "
            f"({type(cause).__name__}: {cause}), so every recovery of its persistence id "
            "would fail on it"
        )

    def _undecodable(self, manifest: str, cause: BaseException) -> RecordUndecodable:
        return RecordUndecodable(
            f"cannot decode a record with manifest {manifest!r} with serializer "
            f"{self.id!r}: {type(cause).__name__}: {cause}"
        )


class _PickleFormat(Serializer):
    """Payloads in pickle format, written by ``_dumps`` and read back with plain
    :mod:`pickle`. :meth:`to_binary` loads each payload once before returning it, and
    rejects the object if that fails: a payload that pickles but does not unpickle would
    otherwise be stored and fail every recovery of its persistence id."""

    _dumps: Callable[..., bytes]

    def to_binary(self, obj: object) -> tuple[str, bytes]:
        try:
            payload = self._dumps(obj, protocol=PICKLE_PROTOCOL)
        except Exception as error:
            raise self._rejected(obj, error) from error
        try:
            pickle.loads(payload)
        except Exception as error:
            raise self._unreadable(obj, error) from error
        manifest = _manifests.get(type(obj))  # (manifest_of's common case, inline)
        return manifest_of(obj) if manifest is None else manifest, payload

    def from_binary(self, manifest: str, payload: bytes) -> object:
        try:
            return pickle.loads(payload)
        except Exception as error:
            raise self._undecodable(manifest, error) from error


class _MainFinder(pickle.Pickler):
    """Pickles into nothing, noting the classes and functions of ``__main__`` that the
    object refers to (``reducer_override`` sees every class and function on the way)."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), protocol=PICKLE_PROTOCOL)
        self.found: list[str] = []

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type | types.FunctionType) and obj.__module__ == "__main__":
            self.found.append(f"__main__.{obj.__qualname__}")
        return NotImplemented


def _main_references(obj: object) -> list[str]:
    finder = _MainFinder()
    try:
        finder.dump(obj)
    except Exception:  # it pickled once already; nothing to add then
        return []
    return finder.found


class PickleSerializer(_PickleFormat):
    """The default serializer (id ``"pickle"``): standard :mod:`pickle`, protocol 5.

    Classes and functions are stored by reference (module and qualified name), so an
    event's class must be importable under the same name when the event is read: a
    locally defined class or a lambda is rejected with :class:`EventRejected`, and so
    is an object that refers to a class or function of ``__main__`` (the script that was
    run): pickle would store it, but no other program (the next run started another way,
    ``python -m actors.persistence``) could read it. Keep event classes in a module the
    script imports, or choose :class:`CloudpickleSerializer` knowingly for them (it
    stores such classes by value). The check costs a substring search of the payload;
    only a payload that holds ``__main__`` is looked at more closely.

    Renaming or moving an event class needs an alias left at the old name (or an
    upcaster). The manifest is informational for decoding: the payload names its own
    classes.
    """

    id = "pickle"
    _dumps = staticmethod(pickle.dumps)

    def to_binary(self, obj: object) -> tuple[str, bytes]:
        manifest, payload = super().to_binary(obj)
        if b"__main__" in payload:
            found = _main_references(obj)
            if found:
                raise self._main_rejected(obj, found)
        return manifest, payload

    def _main_rejected(self, obj: object, found: list[str]) -> EventRejected:
        cls = type(obj)
        name = f"{cls.__module__}.{cls.__qualname__}"
        refers = (
            "its class is defined"
            if found[0] == name
            else f"it refers to {', '.join(dict.fromkeys(found))}, defined"
        )
        return EventRejected(
            f"cannot serialize an event of type {name} with serializer {self.id!r}: "
            f"{refers} in the script run as __main__, which no other program can import "
            "(`python -m actors.persistence`, another script), so they could not decode it. "
            "Move the class into a module that the script imports, or choose the "
            'cloudpickle serializer knowingly (`serializer = "cloudpickle"` on the actor): '
            "it stores such classes by value"
        )


class CloudpickleSerializer(_PickleFormat):
    """An opt-in serializer (id ``"cloudpickle"``): :mod:`cloudpickle`, protocol 5.

    Importable classes are still stored by reference, but lambdas, locally defined
    classes and classes of ``__main__`` are stored by value. Such payloads are tied to
    the Python version and the code that wrote them: use it only where it is asked for.
    Payloads decode with plain :mod:`pickle` (cloudpickle must be installed).
    """

    id = "cloudpickle"
    _dumps = staticmethod(cloudpickle.dumps)


class Serialization:
    """A registry of serializers by id, with a default one for writing.

    Built with ``serializers`` (default: :class:`PickleSerializer` and
    :class:`CloudpickleSerializer`) and ``default`` (the id used when
    :meth:`serialize` is given none, default ``"pickle"``). Reading looks the
    serializer up by the id stored in the record, so records written by any registered
    serializer can be read whatever the default is.
    """

    def __init__(
        self, serializers: Iterable[Serializer] | None = None, *, default: str = "pickle"
    ) -> None:
        self._serializers: dict[str, Serializer] = {}
        if serializers is None:
            serializers = (PickleSerializer(), CloudpickleSerializer())
        for serializer in serializers:
            self.register(serializer)
        self._default = self.get(default)

    def register(self, serializer: Serializer, *, default: bool = False) -> None:
        """Add ``serializer`` under its ``id`` (and make it the default if ``default``).
        Registering another serializer under an id already taken raises
        :class:`ValueError`: records already stored would be read by the wrong one.
        Registering the same serializer again does nothing."""
        if not isinstance(serializer, Serializer):
            raise TypeError(f"expected a Serializer, got {type(serializer).__qualname__}")
        ident = getattr(serializer, "id", None)
        if not isinstance(ident, str) or not ident:
            raise ValueError(
                f"serializer {type(serializer).__qualname__} has no id (a non-empty str)"
            )
        existing = self._serializers.get(ident)
        if existing is not None and existing is not serializer:
            raise ValueError(
                f"a serializer with id {ident!r} is already registered "
                f"({type(existing).__qualname__})"
            )
        self._serializers[ident] = serializer
        if default:
            self._default = serializer

    def get(self, serializer_id: str) -> Serializer:
        """The serializer registered under ``serializer_id``; :class:`LookupError` (naming
        the registered ids) if there is none."""
        try:
            return self._serializers[serializer_id]
        except KeyError:
            raise LookupError(
                f"no serializer with id {serializer_id!r} is registered "
                f"(registered: {', '.join(sorted(self._serializers)) or 'none'})"
            ) from None

    @property
    def default(self) -> Serializer:
        """The serializer :meth:`serialize` uses when given no id."""
        return self._default

    @property
    def ids(self) -> list[str]:
        """The registered serializer ids, sorted."""
        return sorted(self._serializers)

    def serialize(self, obj: object, serializer_id: str | None = None) -> tuple[str, str, bytes]:
        """``(serializer id, manifest, payload)`` for ``obj``, written by the serializer
        ``serializer_id`` (``None``: the default). Raises :class:`EventRejected` if the
        object cannot be serialized or the serializer id is not registered."""
        if serializer_id is None:
            serializer = self._default
        else:
            try:
                serializer = self.get(serializer_id)
            except LookupError as error:
                cls = type(obj)
                raise EventRejected(
                    f"cannot serialize an event of type {cls.__module__}.{cls.__qualname__}: "
                    f"{error}"
                ) from error
        manifest, payload = serializer.to_binary(obj)
        return serializer.id, manifest, payload

    def deserialize(self, serializer_id: str, manifest: str, payload: bytes) -> Any:
        """The object stored as ``payload`` by the serializer ``serializer_id``. Raises
        :class:`RecordUndecodable` if that serializer is not registered or cannot decode
        the payload."""
        try:
            serializer = self.get(serializer_id)
        except LookupError as error:
            raise RecordUndecodable(
                f"cannot decode a record with manifest {manifest!r}: {error}"
            ) from error
        return serializer.from_binary(manifest, payload)
