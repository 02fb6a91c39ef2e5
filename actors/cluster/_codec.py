"""How messages, frames and errors cross between the nodes of a cluster: the
:class:`Codec` interface, its errors, and :class:`PickleCodec` (the trusted one). The
default, :class:`SafeCodec`, is in ``_safe_codec.py``, whose documentation says what it
carries and how.
"""

from __future__ import annotations

import abc
import traceback
from typing import Any, ClassVar, Final

from .._errors import ActorError, RemoteError, _hint
from .._node import _loads, dumps
from .._node import encode_error as _pickle_error

_REGISTER: Final = (
    "add it to Cluster(types=[...]) on every node, or use codec=PickleCodec() in a trusted cluster"
)


class UnencodableMessage(ActorError, TypeError):
    """A message, reply or error could not be encoded by the cluster's codec, so it could
    not be sent to another node: its type is not registered with :class:`SafeCodec`, a
    field holds a value the codec cannot carry, or (:class:`PickleCodec`) it does not
    pickle. Raised at the call (``tell``, ``ask``, a reply); nothing was sent. The cause,
    when there is one (msgspec's or pickle's refusal), is chained (``__cause__``)."""

    def __init__(self, type_name: str, problem: str, hint: str) -> None:
        super().__init__(f"message of type {type_name} {problem}")
        self.type_name = type_name
        _hint(self, hint)


class UndecodableMessage(ActorError):
    """Bytes that arrived from another node could not be turned back into a message,
    reply or frame: malformed data, a type name this node's :class:`SafeCodec` does not
    have registered (refused before anything else is decoded), a body that does not fit
    the registered type, or (:class:`PickleCodec`) a pickle that does not load here.
    ``type_name`` is the type the data claimed, when it got that far."""

    def __init__(self, text: str, type_name: str | None = None) -> None:
        super().__init__(text)
        self.type_name = type_name
        _hint(
            self,
            "Every node must register the same types under the same names (Cluster(types="
            "...)) and use the same codec; if they do, the data was damaged or did not "
            "come from a node of this cluster.",
        )


class Codec(abc.ABC):
    """Turns what crosses between nodes into bytes and back (see the module documentation).
    ``name`` travels in a node's hello, so that both ends can check they agree."""

    name: ClassVar[str]

    @abc.abstractmethod
    def encode_message(self, message: Any) -> bytes:
        """``message`` (a user message or a reply value) as bytes; raises
        :class:`UnencodableMessage`, naming its type and why, and nothing else."""

    @abc.abstractmethod
    def decode_message(self, data: bytes) -> Any:
        """The message in ``data``; raises :class:`UndecodableMessage` naming why."""

    @abc.abstractmethod
    def encode_frame(self, frame: tuple[Any, ...]) -> bytes:
        """A frame of the node protocol (a tuple of ``str``, ``int``, ``float``, ``bool``,
        ``None``, ``bytes`` and nested tuples of those) as bytes."""

    @abc.abstractmethod
    def decode_frame(self, data: bytes) -> tuple[Any, ...]:
        """The frame in ``data`` (nested tuples may come back as lists); raises
        :class:`UndecodableMessage` on anything else."""

    @abc.abstractmethod
    def encode_error(self, error: BaseException, where: str) -> bytes:
        """``error`` (raised by a handler) for the asker on another node, with its
        traceback as it was in ``where`` (a node) attached as a note. Never raises."""

    @abc.abstractmethod
    def decode_error(self, data: bytes) -> BaseException:
        """The error in ``data``; never raises: a :class:`RemoteError` stands in for one
        that cannot be rebuilt here."""


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _traceback_note(error: BaseException, where: str) -> str | None:
    try:
        lines = traceback.format_exception(type(error), error, error.__traceback__)
    except Exception:
        return None
    return f"Traceback in {where}:\n" + "".join(lines).rstrip()


def _text(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return f"<{type(error).__qualname__} whose str() raised>"


# -- the trusted codec ----------------------------------------------------------------------


class PickleCodec(Codec):
    """Pickle between nodes (cloudpickle for what plain pickle refuses, such as classes
    of ``__main__``): anything picklable crosses, errors come back as themselves. Decoding
    runs whatever the bytes say: use it only in a cluster whose every publisher is
    trusted. The size of what it encodes is not checked here (the node layer does)."""

    name: ClassVar[str] = "pickle"

    def encode_message(self, message: Any) -> bytes:
        try:
            return dumps(message)
        except Exception as error:
            raise UnencodableMessage(
                _qualified(type(message)),
                f"cannot be pickled: {error}",
                "With codec=PickleCodec() a message to another node, its reply and errors "
                "are pickled: they must be plain picklable values (for instance attrs "
                "frozen classes of picklable fields): no locks, sockets, tasks or open files.",
            ) from error

    def decode_message(self, data: bytes) -> Any:
        try:
            return _loads(data)
        except Exception as error:
            raise UndecodableMessage(f"a message could not be unpickled here: {error!r}") from error

    def encode_frame(self, frame: tuple[Any, ...]) -> bytes:
        return dumps(frame)

    def decode_frame(self, data: bytes) -> tuple[Any, ...]:
        try:
            frame = _loads(data)
        except Exception as error:
            raise UndecodableMessage(f"a frame could not be unpickled: {error!r}") from error
        if not isinstance(frame, tuple):
            raise UndecodableMessage(f"a frame is a tuple, not {type(frame).__qualname__}")
        return frame

    def encode_error(self, error: BaseException, where: str) -> bytes:
        return _pickle_error(error, where)

    def decode_error(self, data: bytes) -> BaseException:
        try:
            error = _loads(data)
        except Exception as exc:
            return RemoteError("<unknown>", f"an error arrived that cannot be unpickled: {exc!r}")
        if isinstance(error, BaseException):
            return error
        return RemoteError(_qualified(type(error)), f"not an exception: {error!r}")

    def __repr__(self) -> str:
        return "PickleCodec()"
