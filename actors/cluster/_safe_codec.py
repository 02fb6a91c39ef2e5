"""Codecs: how the messages, replies and errors that travel between the nodes of a
cluster, and the node protocol's own frames, become bytes and back.

:class:`SafeCodec` (the default between machines) uses msgspec's msgpack and decodes only
plain data and the types registered with it: decoding cannot run code, import a module or
call anything but the constructors of registered classes (and of builtin exceptions).
:class:`PickleCodec` pickles (cloudpickle where plain pickle cannot): anything picklable
crosses, but unpickling runs whatever the bytes say, so it is for a trusted cluster only.
Either way the bytes are sealed (``_seal.py``) and checked before they reach a codec.

What :class:`SafeCodec` carries
    Plain data (``None``, ``bool``, ``int`` (64 bits), ``float``, ``str``, ``bytes``, and
    ``list``, ``tuple`` and ``dict`` of plain data, kept apart: a tuple comes back a
    tuple), :class:`ActorRef` (by its address: it resolves on arrival as an unpickled ref
    does), exceptions (see below), and instances of registered types: attrs classes,
    dataclasses, ``msgspec.Struct`` subclasses, enums and NamedTuples whose fields are
    typed with any of these. A field typed ``Any`` carries plain data: an attrs instance
    in it arrives as a dict, a tuple as a list. The runtime's own messages that can cross
    are built in (:data:`BUILT_IN`).

Wire shapes of :class:`SafeCodec`
    A message is one msgpack array ``[name, body]``: ``name`` is the registered name of
    its type (``""`` for plain data) and ``body`` its msgspec encoding. The name is read
    first and looked up; an unknown one is refused before the body is looked at. Inside a
    body, extension types carry a ref (``[system, path, uid, node]``), an error, a tuple,
    a dict whose keys are not plain, and a registered instance inside plain data.
    An error is ``[type name, text, args or None, traceback note or None, attributes or
    None]``; attributes are sent for the runtime's own errors only.

Cost (measured once with timeit, Python 3.11, on a busy 2-core machine; a frozen attrs
message of an int and a str): encoding 0.3 µs (pickle: 2.7 µs), decoding 0.4 µs (pickle:
2.2 µs), 38 bytes (pickle: 69); an ``int`` reply 0.2 µs each way (pickle: 0.5 and 0.2).
"""

from __future__ import annotations

import builtins
import contextlib
import dataclasses
import enum
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Final

import attrs
import msgspec
import msgspec.inspect

from supervision import ChildCounts, Restart, TooManyRestarts

from .. import _errors
from .._address import Address
from .._errors import ActorError, RemoteError, _restore_error
from .._messages import Kill, PoisonPill, ReceiveTimeout, Terminated
from .._ref import ActorRef
from .._supervisor import (
    CountChildren,
    DeleteChild,
    RestartChild,
    SupervisedChild,
    TerminateChild,
    WhichChildren,
)
from ..routing._router import AddRoutee, AdjustPoolSize, Broadcast, GetRoutees, RemoveRoutee
from . import _errors as _cluster_errors
from ._codec import (
    _REGISTER,
    Codec,
    UndecodableMessage,
    UnencodableMessage,
    _qualified,
    _text,
    _traceback_note,
)
from ._seal import SealRefused

# -- the safe codec -------------------------------------------------------------------------

_Ext: Final = msgspec.msgpack.Ext
_REF: Final = 1
_ERROR: Final = 2
_TUPLE: Final = 3
_PAIRS: Final = 4
_MESSAGE: Final = 5
_SCALARS: Final = frozenset({type(None), bool, int, float, str, bytes})
_CONTROL: Final = {PoisonPill: "actors.PoisonPill", Kill: "actors.Kill"}
_CONTROL_TYPE: Final = type(PoisonPill)

BUILT_IN: Final[Mapping[str, type]] = {
    "actors.Address": Address,
    "actors.Terminated": Terminated,
    "actors.ReceiveTimeout": ReceiveTimeout,
    "actors.routing.GetRoutees": GetRoutees,
    "actors.routing.AdjustPoolSize": AdjustPoolSize,
    "actors.WhichChildren": WhichChildren,
    "actors.CountChildren": CountChildren,
    "actors.RestartChild": RestartChild,
    "actors.TerminateChild": TerminateChild,
    "actors.DeleteChild": DeleteChild,
    "supervision.ChildCounts": ChildCounts,
    "supervision.Restart": Restart,
}
"""The runtime's messages (and replies) every :class:`SafeCodec` carries, by name. Also
built in, with encodings of their own: ``PoisonPill``, ``Kill``, and
``actors.routing.Broadcast`` (its message encoded as a message), ``AddRoutee``,
``RemoveRoutee`` and ``actors.SupervisedChild``."""

_BY_STATE: Final[dict[str, type[ActorError]]] = {}
for _package, _module in (("actors", _errors), ("actors.cluster", _cluster_errors)):
    for _cls in vars(_module).values():
        if (
            isinstance(_cls, type)
            and issubclass(_cls, ActorError)
            and _cls not in _BY_STATE.values()
        ):
            _BY_STATE[f"{_package}.{_cls.__name__}"] = _cls
_BY_STATE.update(
    {
        "actors.cluster.UnencodableMessage": UnencodableMessage,
        "actors.cluster.UndecodableMessage": UndecodableMessage,
        "actors.cluster.SealRefused": SealRefused,
    }
)
"""The runtime's own errors: rebuilt from their text and attributes (not their
constructor), as they unpickle."""


class _NotPlain(Exception):
    def __init__(self, cls: type) -> None:
        super().__init__(cls)
        self.cls = cls


def _native_key(key: Any) -> bool:
    cls = key.__class__
    if cls in _SCALARS or cls is ActorRef:
        return True
    return cls is tuple and all(_native_key(item) for item in key)


def _constant(value: Any) -> Callable[[Any], Any]:
    return lambda _: value


def _dec_hook(expected: type, value: Any) -> Any:
    if expected is ActorRef:
        if value.__class__ is ActorRef:
            return value
    elif isinstance(value, BaseException) and issubclass(expected, BaseException):
        return value  # (possibly a RemoteError standing in for the expected class)
    raise TypeError(f"expected {expected.__qualname__}, got {type(value).__qualname__}")


def _unsupported(node: Any, seen: set[int]) -> type | None:
    """A field type in msgspec's description ``node`` that the safe codec cannot carry."""
    if isinstance(node, msgspec.inspect.CustomType):
        cls = node.cls
        carried = cls is ActorRef or (isinstance(cls, type) and issubclass(cls, BaseException))
        return None if carried else cls
    if id(node) in seen:
        return None
    seen.add(id(node))
    for field in node.__struct_fields__:
        value = getattr(node, field)
        for child in value if isinstance(value, tuple) else (value,):
            if isinstance(child, msgspec.inspect.Field):
                child = child.type
            if isinstance(child, msgspec.inspect.Type):
                found = _unsupported(child, seen)
                if found is not None:
                    return found
    return None


def _check_registrable(cls: Any, name: str) -> None:
    if not isinstance(cls, type):
        raise TypeError(f"SafeCodec types must be classes, not {cls!r} (registered as {name!r})")
    kind_ok = (
        attrs.has(cls)
        or dataclasses.is_dataclass(cls)
        or issubclass(cls, msgspec.Struct | enum.Enum)
        or (issubclass(cls, tuple) and hasattr(cls, "_fields"))
    )
    what = _qualified(cls)
    if not kind_ok:
        raise TypeError(
            f"{what} cannot be registered with the safe codec: it carries attrs classes, "
            "dataclasses, msgspec.Struct subclasses, enums, NamedTuples and Exception "
            "subclasses; make it one of those, or use codec=PickleCodec() in a trusted cluster"
        )
    try:
        info = msgspec.inspect.type_info(cls)
    except Exception as error:
        raise TypeError(
            f"{what} cannot be registered with the safe codec: msgspec cannot read its field "
            f"types ({error}): an annotation is not a type it can carry, or names something "
            "that is not importable from its module at run time (only under TYPE_CHECKING)"
        ) from error
    bad = _unsupported(info, set())
    if bad is not None:
        raise TypeError(
            f"{what} cannot be registered with the safe codec: one of its fields has type "
            f"{_qualified(bad)}, which it cannot carry; type fields with plain data, "
            "ActorRef, Address, exceptions, or attrs classes, dataclasses, msgspec.Struct "
            "subclasses and enums of those"
        )


class SafeCodec(Codec):
    """msgspec msgpack between nodes: plain data, refs, exceptions, the runtime's own
    messages (:data:`BUILT_IN`) and the ``types`` registered here (see the module
    documentation). Decoding cannot run code: a type name that is not registered is
    refused before anything else is decoded.

    ``types`` lists the registered classes (named ``module.QualName``), or maps names to
    them (names that stay the same when a class moves). Every node must register the
    same names. A class msgspec cannot encode and decode is refused here with a
    ``TypeError`` naming it. Exception classes (subclasses of ``Exception``) may be
    registered too: they then come back as themselves, rebuilt with ``cls(*args)``;
    builtin exceptions and the runtime's own errors need no registration; any other
    error arrives as a :class:`RemoteError` naming its type. Either way the remote
    traceback is attached as a note."""

    name: ClassVar[str] = "safe"

    def __init__(self, types: Iterable[type] | Mapping[str, type] = ()) -> None:
        named = types.items() if isinstance(types, Mapping) else ((None, cls) for cls in types)
        self._encoder = msgspec.msgpack.Encoder(enc_hook=self._enc_hook)
        self._shallow = msgspec.msgpack.Encoder(enc_hook=self._shallow_hook)
        self._frame_encoder = msgspec.msgpack.Encoder()
        self._frame_decoder = msgspec.msgpack.Decoder(tuple[Any, ...])
        self._head = msgspec.msgpack.Decoder(tuple[str, msgspec.Raw]).decode
        self._address = msgspec.msgpack.Decoder(tuple[str, str, int, str]).decode
        self._any = self._decoder(Any)
        self._list = self._decoder(list[Any])
        self._pairs = self._decoder(list[tuple[Any, Any]])
        self._error = self._decoder(
            tuple[str, str, list[Any] | None, str | None, dict[str, Any] | None]
        )
        self._by_class: dict[type, tuple[str, Callable[[Any], Any] | None]] = {}
        self._decoders: dict[str, Callable[[Any], Any]] = {"": self._any}
        self._error_names: dict[type, str] = {cls: name for name, cls in _BY_STATE.items()}
        self._by_args: dict[str, type[BaseException]] = {}
        self._built_ins()
        for name, cls in named:
            self._register(_qualified(cls) if name is None else name, cls)

    def _decoder(self, of: Any) -> Callable[[Any], Any]:
        decoder = msgspec.msgpack.Decoder(of, dec_hook=_dec_hook, ext_hook=self._ext_hook)
        return decoder.decode

    def _add(
        self,
        name: str,
        cls: type,
        to_body: Callable[[Any], Any] | None,
        decode: Callable[[Any], Any],
    ) -> None:
        self._by_class[cls] = (name, to_body)
        self._decoders[name] = decode

    def _built_ins(self) -> None:
        for name, cls in BUILT_IN.items():
            self._add(name, cls, None, self._decoder(cls))
        for control, name in _CONTROL.items():
            self._decoders[name] = _constant(control)
        self._add(
            "actors.routing.Broadcast",
            Broadcast,
            lambda message: msgspec.Raw(self.encode_message(message.message)),
            lambda raw: Broadcast(self.decode_message(raw)),
        )
        ref = self._decoder(tuple[ActorRef])
        self._add(
            "actors.routing.AddRoutee",
            AddRoutee,
            lambda m: (m.ref,),
            lambda raw: AddRoutee(*ref(raw)),
        )
        self._add(
            "actors.routing.RemoveRoutee",
            RemoveRoutee,
            lambda m: (m.ref,),
            lambda raw: RemoveRoutee(*ref(raw)),
        )
        child = self._decoder(tuple[str, ActorRef | None, Restart, bool])
        self._add(
            "actors.SupervisedChild",
            SupervisedChild,
            lambda c: (c.id, c.ref, c.restart, c.significant),
            lambda raw: SupervisedChild(*child(raw)),
        )
        self._error_names[TooManyRestarts] = "supervision.TooManyRestarts"
        self._by_args["supervision.TooManyRestarts"] = TooManyRestarts

    def _register(self, name: str, cls: type) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a SafeCodec type name must be a non-empty str, not {name!r}")
        if isinstance(cls, type) and issubclass(cls, BaseException):
            if not issubclass(cls, Exception):
                raise TypeError(
                    f"only Exception subclasses can be registered, not {_qualified(cls)}"
                )
            taken = self._by_args.get(name) or _BY_STATE.get(name)
            if taken is not None and taken is not cls:
                raise ValueError(f"SafeCodec name {name!r} is taken by {_qualified(taken)}")
            self._error_names[cls] = name
            self._by_args[name] = cls
            return
        existing = self._by_class.get(cls) if isinstance(cls, type) else None
        if existing is not None:
            if existing[0] != name:
                raise ValueError(
                    f"{_qualified(cls)} is registered twice, as {existing[0]!r} and {name!r}"
                )
            return
        if name in self._decoders:
            raise ValueError(f"SafeCodec name {name!r} is taken by another type")
        _check_registrable(cls, name)
        self._add(name, cls, None, self._decoder(cls))

    @property
    def names(self) -> frozenset[str]:
        """The names of every type this codec decodes (built-in and registered, message
        and exception types): what two nodes must agree on."""
        return frozenset(self._decoders).union(self._by_args) - {""}

    def __repr__(self) -> str:
        return f"SafeCodec(<{len(self.names)} types>)"

    # -- messages --

    def encode_message(self, message: Any) -> bytes:
        entry = self._by_class.get(message.__class__)
        try:
            if entry is not None:
                name, to_body = entry
                return self._encoder.encode(
                    (name, message if to_body is None else to_body(message))
                )
            control = _CONTROL.get(message) if message.__class__ is _CONTROL_TYPE else None
            if control is not None:
                return self._encoder.encode((control, None))
            return self._encoder.encode(("", self._plain(message, False)))
        except UnencodableMessage:
            raise
        except _NotPlain as refused:
            where = (
                ""
                if refused.cls is message.__class__
                else f"holds a value of type {_qualified(refused.cls)} that "
            )
            fix = (
                # (a builtin such as set, Decimal or datetime cannot be registered)
                "carry it as plain data instead (a list, a str, a number), or use "
                "codec=PickleCodec() in a trusted cluster"
                if refused.cls.__module__ in ("builtins", "decimal", "datetime", "uuid")
                else _REGISTER
            )
            raise UnencodableMessage(
                _qualified(message.__class__),
                f"{where}is not registered with the cluster's codec: {fix}",
                "The safe codec carries plain data (None, bool, int, float, str, bytes, and "
                "lists, tuples and dicts of those), ActorRef, exceptions and registered "
                "types only.",
            ) from None
        except Exception as error:
            raise UnencodableMessage(
                _qualified(message.__class__),
                f"cannot be encoded by the cluster's safe codec: {error}",
                "Type every field with plain data, ActorRef, Address, exceptions, or "
                "registered types; ints must fit in 64 bits.",
            ) from error

    def _plain(self, value: Any, shallow: bool) -> Any:
        """``value``, plain data, in a form msgspec encodes so that it comes back the same:
        tuples, dicts with keys that are not plain and registered instances become
        extension types. ``shallow`` (inside an error): no registered instances."""
        cls = value.__class__
        if cls in _SCALARS or cls is ActorRef:
            return value
        encode = self._shallow.encode if shallow else self._encoder.encode
        if cls is list:
            return [self._plain(item, shallow) for item in value]
        if cls is tuple:
            return _Ext(_TUPLE, encode([self._plain(item, shallow) for item in value]))
        if cls is dict:
            if all(_native_key(key) for key in value):
                return {key: self._plain(item, shallow) for key, item in value.items()}
            pairs = [(self._plain(k, shallow), self._plain(v, shallow)) for k, v in value.items()]
            return _Ext(_PAIRS, encode(pairs))
        if isinstance(value, BaseException):
            return value
        if not shallow and (cls in self._by_class or (cls is _CONTROL_TYPE and value in _CONTROL)):
            return _Ext(_MESSAGE, self.encode_message(value))
        raise _NotPlain(cls)

    def _enc_hook(self, obj: Any) -> Any:
        if obj.__class__ is ActorRef:
            return _Ext(_REF, self._frame_encoder.encode(obj.address))
        if isinstance(obj, BaseException):
            return _Ext(_ERROR, self._error_bytes(obj, None, deep=True))
        raise _NotPlain(obj.__class__)

    def _shallow_hook(self, obj: Any) -> Any:
        if isinstance(obj, BaseException):
            return _Ext(_ERROR, self._error_bytes(obj, None, deep=False))
        return self._enc_hook(obj)

    def decode_message(self, data: bytes) -> Any:
        try:
            name, body = self._head(data)
        except Exception as error:
            raise UndecodableMessage(
                f"the data is not a message of the safe codec: {error}"
            ) from error
        decode = self._decoders.get(name)
        if decode is None:
            raise UndecodableMessage(
                f"a message of type {name[:200]!r} arrived that is not registered with this "
                "node's codec (unregistered type); it was not decoded",
                name,
            )
        try:
            return decode(body)
        except UndecodableMessage:
            raise
        except Exception as error:
            what = name or "plain data"
            raise UndecodableMessage(
                f"a message of type {what} could not be decoded: {error}", name
            ) from error

    def _ext_hook(self, code: int, data: memoryview) -> Any:
        if code == _REF:
            return ActorRef._create(Address._make(self._address(data)))
        if code == _TUPLE:
            return tuple(self._list(data))
        if code == _MESSAGE:
            return self.decode_message(data)  # type: ignore[arg-type]
        if code == _ERROR:
            return self._rebuild(self._error(data))
        if code == _PAIRS:
            return dict(self._pairs(data))
        raise ValueError(f"unknown extension type {code}")

    # -- frames --

    def encode_frame(self, frame: tuple[Any, ...]) -> bytes:
        try:
            return self._frame_encoder.encode(frame)
        except Exception as error:
            raise UnencodableMessage(
                "tuple",
                f"(a frame) cannot be encoded: {error}",
                "A frame holds str, int, float, bool, None, bytes and tuples of those.",
            ) from error

    def decode_frame(self, data: bytes) -> tuple[Any, ...]:
        try:
            frame: tuple[Any, ...] = self._frame_decoder.decode(data)
        except Exception as error:
            raise UndecodableMessage(f"the data is not a frame: {error}") from error
        return frame

    # -- errors --

    def encode_error(self, error: BaseException, where: str) -> bytes:
        note = _traceback_note(error, where)
        try:
            return self._error_bytes(error, note, deep=True)
        except Exception:  # what it holds did not encode after all: its type and text only
            name = self._error_names.get(type(error)) or _qualified(type(error))
            return self._frame_encoder.encode((name, _text(error), None, note, None))

    def _error_bytes(self, error: BaseException, note: str | None, deep: bool) -> bytes:
        cls = type(error)
        name = self._error_names.get(cls) or _qualified(cls)
        if not deep:
            args = list(error.args) if all(a.__class__ in _SCALARS for a in error.args) else None
            return self._frame_encoder.encode((name, _text(error), args, None, None))
        state = None
        if name in _BY_STATE:
            state = {
                key: self._plain_or_none(value)
                for key, value in vars(error).items()
                if not key.startswith("__")
            }
        args = self._plain_or_none(list(error.args))
        return self._shallow.encode((name, _text(error), args, note, state))

    def _plain_or_none(self, value: Any) -> Any:
        try:
            return self._plain(value, True)
        except Exception:
            return None

    def decode_error(self, data: bytes) -> BaseException:
        try:
            return self._rebuild(self._error(data))
        except Exception as error:
            return RemoteError("<unknown>", f"an error arrived that cannot be decoded: {error}")

    def _rebuild(
        self, fields: tuple[str, str, list[Any] | None, str | None, dict[str, Any] | None]
    ) -> BaseException:
        """The error ``fields`` describe (never raises: a :class:`RemoteError` when it
        cannot be rebuilt). Only registered classes, the runtime's errors and builtin
        ``Exception`` subclasses are rebuilt; no module is imported."""
        name, text, args, note, state = fields
        error: BaseException | None = None
        try:
            if (cls := self._by_args.get(name)) is not None:
                if args is not None:
                    error = cls(*args)
            elif (kind := _BY_STATE.get(name)) is not None:
                kept = {k: v for k, v in (state or {}).items() if not k.startswith("__")}
                error = _restore_error(kind, text, kept)
            elif name.startswith("builtins."):
                found = getattr(builtins, name[len("builtins.") :], None)
                if isinstance(found, type) and issubclass(found, Exception) and args is not None:
                    error = found(*args)
        except Exception:
            error = None
        if not isinstance(error, BaseException):
            error = RemoteError(name, text)
        if note:
            with contextlib.suppress(Exception):  # (a class whose __notes__ is odd)
                error.add_note(note)
        return error
