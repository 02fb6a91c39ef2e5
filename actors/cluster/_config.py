"""What a node needs to join its cluster: :class:`Cluster`."""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from .._actor import Actor
    from ._codec import Codec

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _servers(value: str | Sequence[str]) -> tuple[str, ...]:
    return (value,) if isinstance(value, str) else tuple(value)


def _check_name(what: str) -> Any:
    def check(_: object, attribute: attrs.Attribute[Any], value: str) -> None:
        if not isinstance(value, str) or not _NAME.fullmatch(value) or value == "local":
            raise ValueError(
                f"Cluster({attribute.name}={value!r}): {what} must be 1 to 64 letters, digits, "
                "'_' or '-' (and not 'local', the name of a process that is in no cluster)"
            )

    return check


def _check_key(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bytes | bytearray):
        if len(value) < 32:
            raise ValueError(
                f"Cluster(key=...): the key is {len(value)} bytes; it must be at least 32 "
                "(make one with secrets.token_bytes(32) and give the same to every node)"
            )
    elif isinstance(value, Mapping):
        if not value:
            raise ValueError("Cluster(key={}): give at least one key")
    elif type(value).__name__ != "Keyring":
        raise TypeError(
            f"Cluster(key=...) must be bytes (32 or more) or a Keyring, got {type(value).__name__}"
        )


def _positive(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not value > 0:
        raise ValueError(f"Cluster({attribute.name}={value!r}) must be positive")


@attrs.frozen(kw_only=True)
class Cluster:
    """How a node joins its cluster: give it to ``open_system(cluster=...)``.

    Every node of one system opens the system under the same name with the same
    ``servers`` (NATS), ``key`` and codec, and a ``node`` name of its own. The nodes find
    each other through NATS alone: each has an inbox subject
    ``{prefix}.{system}.node.{node}``, and the members are the keys of a JetStream
    key-value bucket that each node renews every ``heartbeat`` seconds. A member not
    renewed for ``down_after`` seconds is declared lost by each node that sees it lapse
    (see :class:`NodeLost`).

    ``servers``: NATS URLs (``nats://host:4222``, ``tls://host:4222``); the client
    reconnects to any of them. ``user`` and ``password``, or ``token``: NATS
    authentication. ``tls``: an :class:`ssl.SSLContext` for TLS to the servers (with the
    CA that signed their certificates).

    ``key``: the secret (32 bytes or more, the same on every node) with which every
    message between nodes is sealed (HMAC-SHA256) and checked before it is decoded; a
    mapping of key ids to keys (every one opens, the last one seals), or a ``Keyring``,
    to rotate keys.

    ``types``: the message classes that may cross (attrs classes, dataclasses,
    ``msgspec.Struct``, enums), for the default codec, which decodes nothing else and
    cannot run code (``SafeCodec``). ``codec``: another codec instead; ``PickleCodec()``
    lets any picklable value cross, for a cluster whose every node is trusted.

    ``actors``: the actor classes other nodes may start on this one
    (``system.cluster.spawn``), by ``module.QualName`` or by the names of a mapping.
    """

    servers: tuple[str, ...] = attrs.field(converter=_servers)
    node: str = attrs.field(validator=_check_name("a node's name"))
    key: bytes | Mapping[str, bytes] | Any = attrs.field(validator=_check_key, repr=False)
    types: tuple[type, ...] | Mapping[str, type] = attrs.field(default=())
    codec: Codec | None = None
    actors: tuple[type[Actor], ...] | Mapping[str, type[Actor]] = attrs.field(default=())
    user: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    token: str | None = attrs.field(default=None, repr=False)
    tls: ssl.SSLContext | None = None
    heartbeat: float = attrs.field(default=0.5, validator=_positive)
    down_after: float = attrs.field(default=3.0, validator=_positive)
    prefix: str = attrs.field(default="trio-actors", validator=_check_name("the prefix"))
    connect_timeout: float = attrs.field(default=5.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if not self.servers:
            raise ValueError("Cluster(servers=...): give at least one NATS server URL")
        if self.down_after <= self.heartbeat:
            raise ValueError(
                f"Cluster(down_after={self.down_after}) must be longer than "
                f"heartbeat={self.heartbeat} (several heartbeats: 3 or more is usual)"
            )
