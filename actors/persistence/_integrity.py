"""Digests of stored records: a checksum, or a signature with a key, written with every
event and snapshot of the SQL journals (schema version 2) and checked on every read
before anything of the record is decoded.

What a digest covers
    Every stored field of the record that matters: for an event its persistence id,
    seq, serializer, manifest, tags (as the sorted JSON array that SQLite stores),
    writer id, timestamp and payload; for a snapshot its persistence id, seq,
    serializer, manifest, timestamp and payload. Not the offset, which the database
    assigns at insert. The fields are encoded unambiguously (:func:`event_message`,
    :func:`snapshot_message`): each text field is prefixed by its length, numbers are
    of fixed size (an event's seq and timestamp, 16 bytes) or end with a comma (a
    snapshot's), the payload comes last, and the message starts with the kind of
    record, so no two different records (nor an event and a snapshot) give the same
    message.

Schemes (the first byte of the stored digest)
    :data:`CHECKSUM` (``0x01``), without a key: CRC-32 of the message (4 bytes). It
    catches accidental damage (every burst of up to 32 flipped bits, any other change
    but once in 2**32), and costs one C call of a few hundred nanoseconds on an event
    row. It cannot stop a deliberate change: whoever can write the database can
    recompute it.

    :data:`SIGNED` (``0x02``), with a key: HMAC-SHA256 of the message (32 bytes), which
    only a holder of the key can compute. A journal opened with a key writes only these,
    and refuses every record that is not signed with that key (an unsigned record, one
    without a digest, one signed with another key), before unpickling anything: a record
    replaced by a crafted pickle never runs.

    ``NULL`` (no digest): a row written before version 2 (or by a tool inserting rows
    itself). Accepted without a key (there is nothing to check), refused with one.

A journal opened without a key refuses a :data:`SIGNED` record (``needs_key``): it
cannot verify it, and accepting it unverified would let anyone who can write the
database plant records in a journal that its owner signs.
"""

from __future__ import annotations

import hmac
import json
import struct
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs

from ._errors import RecordCorrupt
from ._records import PersistentRecord, SnapshotRecord

_crc32: Final = zlib.crc32

CHECKSUM: Final = b"\x01"
"""The scheme byte of a CRC-32 checksum (a journal opened without a key)."""
SIGNED: Final = b"\x02"
"""The scheme byte of an HMAC-SHA256 signature (a journal opened with a key)."""
MIN_KEY_BYTES: Final = 16
"""The shortest key accepted (32 random bytes are recommended: ``os.urandom(32)``)."""


def check_key(key: object) -> bytes | None:
    """``key`` as ``bytes`` (``None``: no key); :class:`TypeError` if it is not bytes,
    :class:`ValueError` if it is shorter than :data:`MIN_KEY_BYTES`."""
    if key is None:
        return None
    if not isinstance(key, bytes | bytearray):
        raise TypeError(
            f"key must be bytes (for instance Path('journal.key').read_bytes()), got "
            f"{type(key).__name__}"
        )
    if len(key) < MIN_KEY_BYTES:
        raise ValueError(
            f"key must be at least {MIN_KEY_BYTES} bytes, got {len(key)}: use 32 random "
            "bytes (os.urandom(32)) kept in a file readable only by the application"
        )
    return bytes(key)


def event_message(
    persistence_id: str,
    seq: int,
    serializer: str,
    manifest: str,
    payload: bytes,
    tags: str,
    writer_id: str,
    timestamp: float,
) -> bytes:
    """What the digest of an event covers (``tags``: the sorted JSON array of its tags,
    ``"[]"`` for none): :func:`event_prefix`, then the seq and the timestamp as 16 bytes
    (a signed 64-bit integer and an IEEE double, big-endian), then the payload.
    :class:`TypeError` or :class:`ValueError` if a field is not of its type (a text that
    is not a ``str``, a seq that is not a 64-bit int, ...)."""
    return (
        event_prefix(persistence_id, serializer, manifest, tags, writer_id)
        + _seq_and_time(seq, timestamp)
        + payload
    )


def event_prefix(
    persistence_id: str, serializer: str, manifest: str, tags: str, writer_id: str
) -> bytes:
    """The start of :func:`event_message`: its text fields, each after its length (the
    same for all the events of one writer with the same type and tags, so a reader
    computes it once for a run of them)."""
    head = (
        f"event {len(persistence_id)}:{persistence_id}{len(serializer)}:{serializer}"
        f"{len(manifest)}:{manifest}{len(tags)}:{tags}{len(writer_id)}:{writer_id}"
    )
    return head.encode("utf-8", "surrogatepass")


def _seq_and_time(seq: int, timestamp: float) -> bytes:
    try:
        return _pack_seq_and_time(seq, timestamp)
    except struct.error as error:
        raise ValueError(f"seq {seq!r} or timestamp {timestamp!r}: {error}") from None


_NONE: Final = object()  # equal to no column's value


def _all_str(*values: object) -> bool:
    return all(type(value) is str for value in values)


_PREFIXES_KEPT: Final = 4096
"""How many prefix CRCs :meth:`Integrity.seal_event_fields` remembers (then it starts
again): one per persistent actor and event type is the common case."""

_pack_seq_and_time: Final = struct.Struct(">qd").pack
_unpack_checksum: Final = struct.Struct(">xI").unpack  # the CRC of a CHECKSUM digest


def snapshot_message(
    persistence_id: str, seq: int, serializer: str, manifest: str, payload: bytes, timestamp: float
) -> bytes:
    """What the digest of a snapshot covers (errors as :func:`event_message`)."""
    head = (
        f"snapshot {len(persistence_id)}:{persistence_id}{seq:d},{len(serializer)}:"
        f"{serializer}{len(manifest)}:{manifest}{float(timestamp)!r},"
    )
    return head.encode("utf-8", "surrogatepass") + payload


def tags_text(tags: frozenset[str]) -> str:
    """The tags as the digest covers them: the sorted JSON array (SQLite's column)."""
    return json.dumps(sorted(tags)) if tags else "[]"


@attrs.frozen
class Refusal:
    """Why a record is refused: ``kind`` is ``"corrupt"`` (changed, or signed with
    another key), ``"unsigned"`` (a journal opened with a key found a record without a
    signature) or ``"needs-key"`` (a signed record, no key to verify it); ``text`` says
    it for a message (``"event ... is <text>"``)."""

    kind: str
    text: str


BAD_CHECKSUM: Final = Refusal(
    "corrupt",
    "corrupt: its checksum does not match its contents (it was changed after it was written)",
)
BAD_SIGNATURE: Final = Refusal(
    "corrupt",
    "corrupt: its signature does not match its contents (it was changed after it was "
    "written, or signed with another key)",
)
MALFORMED: Final = Refusal(
    "corrupt", "corrupt: a column holds a value of the wrong type (the row was edited)"
)
UNSIGNED: Final = Refusal(
    "unsigned",
    "not signed (it has a checksum only: it was written without a key) and the journal "
    "is opened with a key: refused",
)
LEGACY_UNSIGNED: Final = Refusal(
    "unsigned",
    "not signed (it has no digest: it was written before schema version 2) and the "
    "journal is opened with a key: refused",
)
NEEDS_KEY: Final = Refusal(
    "needs-key",
    "signed, and the journal is opened without a key, so it cannot be verified: open it "
    "with its key",
)


def _unknown(digest: object) -> Refusal:
    if isinstance(digest, bytes):
        what = f"scheme byte 0x{digest[0]:02x}" if digest else "an empty value"
    else:
        what = f"a {type(digest).__name__}"
    return Refusal("corrupt", f"corrupt: its digest column holds no known digest ({what})")


class Integrity:
    """How one journal seals what it writes and checks what it reads: with ``key``
    (``None``: checksums only; else checked by :func:`check_key`), ``where`` naming the
    journal in errors (the dialect's ``journal_name``)."""

    __slots__ = ("_mac", "_prefix_crcs", "key", "where")

    def __init__(self, key: bytes | None, where: str) -> None:
        self.key = check_key(key)
        # HMAC-SHA256 keyed once: each signature copies it (cheaper than keying again).
        self._mac = None if self.key is None else hmac.new(self.key, digestmod="sha256")
        self.where = where
        # The CRC of the prefix of an event without tags, by (persistence_id, serializer,
        # manifest, writer_id): the same for every event an actor persists of one type.
        self._prefix_crcs: dict[tuple[str, str, str, str], int] = {}

    # -- sealing (the write path: a checksum or a signature per record) --------------------

    def seal(self, message: bytes) -> bytes:
        """The digest to store with a record whose :func:`event_message` or
        :func:`snapshot_message` is ``message``."""
        key = self.key
        if key is None:
            return CHECKSUM + zlib.crc32(message).to_bytes(4, "big")
        return SIGNED + self._sign(message)

    def seal_event(self, r: PersistentRecord) -> bytes:
        """The digest of event ``r``. :class:`TypeError` naming the fields' types if a
        field is not of its type (nothing is queued then)."""
        return self.seal_event_fields(
            r.persistence_id,
            r.seq,
            r.serializer,
            r.manifest,
            r.payload,
            r.tags,
            r.writer_id,
            r.timestamp,
        )

    def seal_event_fields(
        self,
        persistence_id: str,
        seq: int,
        serializer: str,
        manifest: str,
        payload: bytes,
        tags: frozenset[str],
        writer_id: str,
        timestamp: float,
    ) -> bytes:
        """:meth:`seal_event` of the event with these fields, without its record (the
        path of one persist builds none)."""
        if (  # the common case: the CRC of the prefix, remembered for these fields
            self.key is None
            and not tags
            and type(seq) is int
            and type(timestamp) is float
            and type(payload) is bytes
            and type(persistence_id) is str
            and type(writer_id) is str
            and type(serializer) is str
            and type(manifest) is str
        ):
            start = self._prefix_crcs.get((persistence_id, serializer, manifest, writer_id))
            if start is not None:
                try:
                    middle = _pack_seq_and_time(seq, timestamp)
                except struct.error:
                    pass  # (named below)
                else:
                    crc = _crc32(payload, _crc32(middle, start))
                    return CHECKSUM + crc.to_bytes(4, "big")
        try:
            prefix = event_prefix(
                persistence_id,
                serializer,
                manifest,
                tags_text(tags) if tags else "[]",
                writer_id,
            )
            middle = _seq_and_time(seq, timestamp)
            if self.key is None:  # the CRC of the message, without joining its parts
                start = _crc32(prefix)
                if not tags and _all_str(persistence_id, serializer, manifest, writer_id):
                    crcs = self._prefix_crcs
                    if len(crcs) >= _PREFIXES_KEPT:
                        crcs.clear()
                    crcs[persistence_id, serializer, manifest, writer_id] = start
                crc = _crc32(payload, _crc32(middle, start))
                return CHECKSUM + crc.to_bytes(4, "big")
            return self.seal(prefix + middle + payload)
        except (TypeError, ValueError) as error:
            raise TypeError(
                "a PersistentRecord holds str persistence_id, serializer, manifest and "
                f"writer_id, an int seq, bytes payload, str tags and a float timestamp: "
                f"{error}; nothing was stored"
            ) from error

    def seal_snapshot(self, s: SnapshotRecord) -> bytes:
        """The digest of snapshot ``s`` (:class:`TypeError` as :meth:`seal_event`)."""
        try:
            message = snapshot_message(
                s.persistence_id, s.seq, s.serializer, s.manifest, s.payload, s.timestamp
            )
        except (TypeError, ValueError) as error:
            raise TypeError(
                "a SnapshotRecord holds str persistence_id, serializer and manifest, an int "
                f"seq, bytes payload and a float timestamp: {error}; nothing was stored"
            ) from error
        return self.seal(message)

    def _sign(self, message: bytes) -> bytes:
        """The HMAC-SHA256 of ``message`` with the key (only called with one)."""
        assert self._mac is not None
        mac = self._mac.copy()
        mac.update(message)
        return mac.digest()

    # -- checking (every read path, before anything is decoded) ----------------------------

    def refusal(self, digest: object, message: bytes | None) -> Refusal | None:
        """Why a record whose stored digest is ``digest`` and whose message is
        ``message`` (``None``: its columns could not be encoded) is refused; ``None``
        if it is accepted. See the module documentation for the rules."""
        key = self.key
        if digest is None:
            return None if key is None else LEGACY_UNSIGNED
        if type(digest) is not bytes:
            if not isinstance(digest, bytearray | memoryview):
                return _unknown(digest)
            digest = bytes(digest)
        scheme = digest[:1]
        if key is None:
            if scheme == CHECKSUM:
                if message is None:
                    return MALFORMED
                expected = CHECKSUM + zlib.crc32(message).to_bytes(4, "big")
                return None if digest == expected else BAD_CHECKSUM
            if scheme == SIGNED:
                return NEEDS_KEY
        else:
            if scheme == SIGNED:
                if message is None:
                    return MALFORMED
                expected = SIGNED + self._sign(message)
                return None if hmac.compare_digest(digest, expected) else BAD_SIGNATURE
            if scheme == CHECKSUM:
                return UNSIGNED
        return _unknown(digest)

    def refused(
        self, refusal: Refusal, record: str, persistence_id: str, seq: int, offset: int | None
    ) -> RecordCorrupt:
        """The :class:`RecordCorrupt` for ``record`` (``"event 'a' seq 3 (offset 7)"``)."""
        return RecordCorrupt(
            record,
            self.where,
            refusal.text,
            persistence_id=persistence_id,
            seq=seq,
            offset=offset,
            needs_key=refusal.kind == "needs-key",
        )

    def check_event(
        self,
        digest: object,
        persistence_id: str,
        seq: int,
        serializer: str,
        manifest: str,
        payload: bytes,
        tags: str,
        writer_id: str,
        timestamp: float,
        offset: int,
    ) -> None:
        """Check an event row read from the journal (``tags`` as :func:`tags_text`
        gives them); :class:`RecordCorrupt` naming it if it is refused."""
        if digest is None and self.key is None:
            return  # a row written before version 2: nothing to check
        try:
            message: bytes | None = event_message(
                persistence_id, seq, serializer, manifest, payload, tags, writer_id, timestamp
            )
        except (TypeError, ValueError):
            message = None
        refusal = self.refusal(digest, message)
        if refusal is not None:
            record = f"event {persistence_id!r} seq {seq} (offset {offset})"
            raise self.refused(refusal, record, persistence_id, seq, offset)

    def check_snapshot(
        self,
        digest: object,
        persistence_id: str,
        seq: int,
        serializer: str,
        manifest: str,
        payload: bytes,
        timestamp: float,
    ) -> None:
        """Check a snapshot row read from the store; :class:`RecordCorrupt` naming it if
        it is refused."""
        if digest is None and self.key is None:
            return
        try:
            message: bytes | None = snapshot_message(
                persistence_id, seq, serializer, manifest, payload, timestamp
            )
        except (TypeError, ValueError):
            message = None
        refusal = self.refusal(digest, message)
        if refusal is not None:
            record = f"snapshot {persistence_id!r} seq {seq}"
            raise self.refused(refusal, record, persistence_id, seq, None)

    def event_chunk(
        self, persistence_id: str, rows: Sequence[Sequence[Any]], tags: Callable[[Any], str]
    ) -> list[tuple[int, str, str, bytes]]:
        """The recovery rows ``(seq, serializer, manifest, payload)`` of a page of
        ``(seq, serializer, manifest, payload, tags, writer_id, timestamp, digest,
        offset)`` rows of ``persistence_id``, each checked first (``tags`` turns the
        stored tags column into :func:`tags_text`'s form)."""
        check = self.check_event
        key = self.key
        unchecked = key is None
        # The inlined common case: a checksum without a key, a signature with one.
        scheme, size = (1, 5) if key is None else (2, 33)
        crc32 = _crc32
        pack = _pack_seq_and_time
        stored_crc = _unpack_checksum
        sign = self._sign
        same = hmac.compare_digest
        # The text fields of the events before, their prefix and its CRC.
        last_serializer = last_manifest = last_tags = last_writer = None
        prefix = b""
        start = 0
        chunk: list[tuple[int, str, str, bytes]] = []
        for seq, serializer, manifest, payload, stored_tags, writer, ts, digest, offset in rows:
            if type(digest) is bytes and len(digest) == size and digest[0] == scheme:
                # (Anything else, and any mismatch, goes through check_event, which
                # names the refusal.)
                try:
                    if (
                        serializer != last_serializer
                        or manifest != last_manifest
                        or stored_tags != last_tags
                        or writer != last_writer
                    ):
                        prefix = event_prefix(
                            persistence_id, serializer, manifest, tags(stored_tags), writer
                        )
                        start = crc32(prefix)
                        last_serializer, last_manifest = serializer, manifest
                        last_tags, last_writer = stored_tags, writer
                    if key is None:
                        valid = crc32(payload, crc32(pack(seq, ts), start)) == stored_crc(digest)[0]
                    else:
                        signed = sign(prefix + pack(seq, ts) + payload)
                        valid = same(signed, digest[1:])
                    if valid:
                        chunk.append((seq, serializer, manifest, bytes(payload)))
                        continue
                except (TypeError, ValueError, struct.error):
                    last_serializer = None
            if digest is not None or not unchecked:
                check(
                    digest,
                    persistence_id,
                    seq,
                    serializer,
                    manifest,
                    payload,
                    tags(stored_tags),
                    writer,
                    ts,
                    offset,
                )
            chunk.append((seq, serializer, manifest, bytes(payload)))
        return chunk

    def tagged_chunk(
        self,
        rows: Sequence[Sequence[Any]],
        start: int,
        tags: Callable[[Any], str],
        decode_tags: Callable[[Any], frozenset[str]],
    ) -> tuple[list[Any], int]:
        """The rows of ``Journal.events_by_tag_chunks`` (``(persistence_id, seq,
        serializer, manifest, payload, tags, writer_id, timestamp, offset)``, the tags
        decoded by ``decode_tags``) of a page of such rows with the digest after them,
        from ``rows[start]`` on, each checked first (``tags`` turns the stored tags
        column into :func:`tags_text`'s form). Stops before the first row refused: the
        checked rows and that row's index (``len(rows)`` if none is refused);
        :class:`RecordCorrupt` naming it if it is ``rows[start]`` itself.

        The text fields that start a digest's message, their CRC and the decoded tags
        are computed once per page for each persistence id, serializer, manifest, tags
        and writer id (a page of a tag interleaves many ids)."""
        check = self.check_event
        key = self.key
        unchecked = key is None
        scheme, size = (1, 5) if key is None else (2, 33)
        crc32 = _crc32
        pack = _pack_seq_and_time
        stored_crc = _unpack_checksum
        sign = self._sign
        same = hmac.compare_digest
        known: dict[tuple[Any, ...], tuple[bytes, int, frozenset[str]]] = {}
        found = (b"", 0, frozenset[str]())  # (replaced at the first row: no field is _NONE)
        # The text fields of the row before (most rows of an id come in runs).
        last_pid = last_serializer = last_manifest = last_tags = last_writer = _NONE
        chunk: list[Any] = []
        append = chunk.append
        for row in rows[start:] if start else rows:
            pid, seq, serializer, manifest, payload, stored, writer, ts, offset, digest = row
            decoded: frozenset[str] | None = None
            if type(digest) is bytes and len(digest) == size and digest[0] == scheme:
                # (Anything else, and any mismatch, goes through check_event, which
                # names the refusal.)
                try:
                    if (
                        pid != last_pid
                        or serializer != last_serializer
                        or manifest != last_manifest
                        or stored != last_tags
                        or writer != last_writer
                    ):
                        text = stored if type(stored) is str else tuple(stored)
                        head = (pid, serializer, manifest, text, writer)
                        cached = known.get(head)
                        if cached is None:
                            prefix = event_prefix(pid, serializer, manifest, tags(stored), writer)
                            cached = known[head] = (prefix, crc32(prefix), decode_tags(stored))
                        found = cached
                        last_pid, last_serializer, last_manifest = pid, serializer, manifest
                        last_tags, last_writer = stored, writer
                    if key is None:
                        crc = crc32(payload, crc32(pack(seq, ts), found[1]))
                        valid = crc == stored_crc(digest)[0]
                    else:
                        valid = same(sign(found[0] + pack(seq, ts) + payload), digest[1:])
                    if valid:
                        decoded = found[2]
                except (TypeError, ValueError, struct.error):
                    pass
            if decoded is None:
                if digest is not None or not unchecked:
                    try:
                        check(
                            digest,
                            pid,
                            seq,
                            serializer,
                            manifest,
                            payload,
                            tags(stored),
                            writer,
                            ts,
                            offset,
                        )
                    except RecordCorrupt:
                        if not chunk:
                            raise
                        return chunk, start + len(chunk)  # the index of the row refused
                decoded = decode_tags(stored)
            append((pid, seq, serializer, manifest, bytes(payload), decoded, writer, ts, offset))
        return chunk, len(rows)
