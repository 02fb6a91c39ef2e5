"""Who is in the cluster: the members bucket, heartbeats, and lapses.

Each node keeps one key in the JetStream key-value bucket ``{prefix}_{system}_members``:
its name, holding a :class:`MemberRecord` (its incarnation, codec, process and start
time), written again every ``heartbeat`` seconds. Every node watches the bucket: a key
written is a member seen (a new incarnation of a known name means the old one is lost);
a key deleted is a member that left; a member not written again for ``down_after``
seconds (by this node's own clock, since it last saw it) is lost. Each node decides
for itself, from what it sees; nothing else is agreed on, so two nodes may declare a
member lost a moment apart. What must be decided once (who hosts a sharded entity) is
decided by compare-and-set in a bucket (``_sharding.py``).

The bucket's keys also expire (its ``ttl``), so the key of a node that was killed
does not stay forever; a node that starts and finds a key older than ``down_after``
does not count it as a member.
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from collections.abc import Callable
from typing import Final

import attrs
import msgspec

_log: Final = logging.getLogger("actors.cluster")


class MemberRecord(msgspec.Struct, frozen=True):
    """What a node writes under its name in the members bucket."""

    incarnation: int
    codec: str
    pid: int
    host: str
    entity_types: tuple[str, ...] = ()
    spawnable: tuple[str, ...] = ()


@attrs.define
class Member:
    """A live member as this node sees it."""

    name: str
    incarnation: int
    codec: str
    pid: int
    host: str
    last_seen: float  # trio.current_time() when its key was last written (as seen here)
    entity_types: tuple[str, ...] = ()
    spawnable: tuple[str, ...] = ()


_decode_record: Final = msgspec.msgpack.Decoder(MemberRecord).decode
_encode: Final = msgspec.msgpack.Encoder().encode


def record_of(
    incarnation: int, codec: str, entity_types: tuple[str, ...], spawnable: tuple[str, ...]
) -> bytes:
    host = socket.gethostname()
    record = MemberRecord(incarnation, codec, os.getpid(), host, entity_types, spawnable)
    return _encode(record)


class Members:
    """The live members as this node sees them, kept from the bucket's updates (the
    node feeds them in: :meth:`seen`, :meth:`left`, :meth:`check_lapses`). ``on_lost``
    is called (name, incarnation, how) once per member lost."""

    def __init__(
        self,
        me: str,
        incarnation: int,
        down_after: float,
        on_lost: Callable[[str, int, str], None],
        on_joined: Callable[[str], None],
        on_changed: Callable[[str], None],
    ) -> None:
        self.me = me
        self.incarnation = incarnation
        self.down_after = down_after
        self.live: dict[str, Member] = {}
        self._on_lost = on_lost
        self._on_joined = on_joined
        self._on_changed = on_changed
        self.retired: dict[str, int] = {}  # the latest incarnation lost, per name
        self._warned: dict[str, int] = {}

    def seen(self, name: str, value: bytes, now: float, age: float = 0.0) -> None:
        """The key ``name`` was written (``age`` seconds ago by the server's clock, for
        the values read when joining)."""
        try:
            record = _decode_record(value)
        except msgspec.DecodeError as error:
            _log.warning("the members bucket holds an unreadable value for %r: %s", name, error)
            return
        if name == self.me:
            if record.incarnation != self.incarnation:
                # (an older incarnation of this node, read when joining, or another
                # process using this node's name: the newer write wins in the bucket)
                _log.warning(
                    "another process (pid %d on %s) wrote this node's name %r in the members "
                    "bucket; is a node started twice under one name?",
                    record.pid,
                    record.host,
                    name,
                )
            return
        if age > self.down_after:
            return  # a stale key of a node that is gone (it will expire)
        if record.incarnation <= self.retired.get(name, -1):
            # An incarnation this node has counted as lost (it was frozen or cut off,
            # and writes again): it stays lost; it must restart to rejoin.
            if self._warned.get(name) != record.incarnation:
                self._warned[name] = record.incarnation
                _log.warning(
                    "node %s writes its member key again after it was counted as lost; "
                    "it is ignored until it restarts as a new incarnation",
                    name,
                )
            return
        known = self.live.get(name)
        if known is not None and known.incarnation != record.incarnation:
            self.lost(name, "it came back as a new incarnation (it restarted)")
            known = None
        if known is None:
            self.live[name] = Member(
                name,
                record.incarnation,
                record.codec,
                record.pid,
                record.host,
                now - age,
                record.entity_types,
                record.spawnable,
            )
            _log.info(
                "node %s (pid %d on %s) is a member of the cluster", name, record.pid, record.host
            )
            self._on_joined(name)
        else:
            known.last_seen = now - age
            known.spawnable = record.spawnable
            if known.entity_types != record.entity_types:
                known.entity_types = record.entity_types
                self._on_changed(name)

    def left(self, name: str) -> None:
        if name in self.live:
            self.lost(name, "it left the cluster", graceful=True)

    def check_lapses(self, now: float) -> None:
        for member in [m for m in self.live.values() if now - m.last_seen > self.down_after]:
            self.lost(
                member.name,
                f"its heartbeat lapsed (not seen for {now - member.last_seen:.1f} s, "
                f"down_after={self.down_after:g} s)",
            )

    def lost(self, name: str, how: str, graceful: bool = False) -> None:
        member = self.live.pop(name, None)
        if member is None:
            return
        self.retired[name] = max(self.retired.get(name, -1), member.incarnation)
        _log.log(
            logging.INFO if graceful else logging.WARNING,
            "node %s of the cluster %s: %s",
            name,
            "is gone" if graceful else "was lost",
            how,
        )
        self._on_lost(name, member.incarnation, how)


def age_of(created: datetime.datetime | None) -> float:
    """Seconds since ``created`` (a key's time, by the server's clock), for the values
    read when joining; 0 if unknown."""
    if created is None:
        return 0.0
    now = datetime.datetime.now(datetime.UTC)
    return max(0.0, (now - created).total_seconds())
