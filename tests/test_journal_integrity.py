"""Integrity of the SQL journals (issue 14): every event and snapshot is stored with a
digest (a CRC-32 checksum, or an HMAC-SHA256 signature with a key) that every read checks
before anything is decoded, on SQLite and on PostgreSQL.

A changed record is refused by name (``RecordCorrupt``) by ``replay``, ``replay_chunks``,
``events_by_tag`` and a snapshot ``load``; a persistent actor's recovery stops on it; a
row replaced by a crafted pickle never runs, neither in recovery nor in the tool; a
journal opened with a key refuses what is not signed with it; a journal of schema
version 1 is upgraded on open and its rows read without a key. The PostgreSQL cases use
the server of ``postgres_server.py`` and are skipped like the other PostgreSQL tests when
there is none.
"""

from __future__ import annotations

import json
import os
import pathlib
import pickle
import sqlite3
import subprocess
import sys
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

import actors
from actors.persistence import (
    JournalFailure,
    Persistence,
    PersistentActor,
    PersistentRecord,
    RecordCorrupt,
    RecoveryFailed,
    Serialization,
    SnapshotRecord,
    open_sqlite_journal,
)
from actors.persistence._cli import main
from actors.persistence._integrity import Integrity, event_message
from actors.persistence._sql_dialect import TABLES
from actors.testing import TestProbe

KEY = b"k" * 32
OTHER_KEY = b"o" * 32
T0 = 1700000000.5

# -- the two backends -------------------------------------------------------------------------


@attrs.frozen
class Backend:
    """One SQL journal under test: how to open it, how to run SQL on its tables behind
    its back (``{events}``/``{snapshots}`` and ``%s`` parameters), how it is named in
    messages, and how the tool names it."""

    name: str
    open: Callable[..., AbstractAsyncContextManager[Any]]
    run: Callable[..., list[tuple[Any, ...]]]
    where: str
    cli: list[str]
    schema: str = ""

    def tags_value(self, tags: list[str]) -> Any:
        return json.dumps(tags) if self.name == "sqlite" else tags


def _sqlite_backend(path: Path) -> Backend:
    def open_(key: bytes | None = None, **options: Any) -> Any:
        return open_sqlite_journal(path, key=key, chunk_size=2, **options)

    def run(statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        text = statement.format(**{name: name for name in TABLES}).replace("%s", "?")
        conn = sqlite3.connect(path)
        try:
            with conn:
                return conn.execute(text, params).fetchall()
        finally:
            conn.close()

    return Backend("sqlite", open_, run, f"SQLite journal {path}", ["--sqlite", str(path)])


def _postgres_backend(dsn: str, schema: str) -> Backend:
    import psycopg
    from psycopg.conninfo import make_conninfo

    from actors.persistence._postgres import describe_dsn, open_postgres_journal

    def open_(key: bytes | None = None, **options: Any) -> Any:
        return open_postgres_journal(dsn, schema=schema, key=key, chunk_size=2, **options)

    def run(statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        text = statement.format(**{name: f'"{schema}".{name}' for name in TABLES})
        with psycopg.connect(dsn, autocommit=True) as conn:
            cursor = conn.execute(text.encode(), params)
            return cursor.fetchall() if cursor.description else []

    cli = ["--postgres", make_conninfo(dsn, options=f"-c search_path={schema}")]
    return Backend("postgres", open_, run, f"journal on {describe_dsn(dsn)}", cli, schema)


def _fresh_postgres(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A journal in a schema of its own (dropped afterwards) on the test server; skipped
    (or failed, where a server is required) by ``postgres_dsn`` when there is none."""
    dsn: str = request.getfixturevalue("postgres_dsn")
    schema = f"integrity_{uuid.uuid4().hex[:12]}"
    found = _postgres_backend(dsn, schema)
    yield found
    found.run(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.replace("{", "{{").replace("}", "}}"))


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        yield _sqlite_backend(tmp_path / "journal.db")
    else:
        yield from _fresh_postgres(request)


@pytest.fixture
def postgres(request: pytest.FixtureRequest) -> Iterator[Backend]:
    yield from _fresh_postgres(request)


# -- records ----------------------------------------------------------------------------------


def event(pid: str, seq: int, *tags: str, payload: bytes | None = None) -> PersistentRecord:
    return PersistentRecord(
        persistence_id=pid,
        seq=seq,
        serializer="pickle",
        manifest="builtins.int",
        payload=pickle.dumps(seq) if payload is None else payload,
        tags=frozenset(tags),
        writer_id="w1",
        timestamp=T0 + seq,
    )


def snapshot(pid: str, seq: int, state: object = 0) -> SnapshotRecord:
    return SnapshotRecord(pid, seq, "pickle", "builtins.int", pickle.dumps(state), T0)


async def fill(backend: Backend, key: bytes | None = None, pid: str = "a") -> None:
    """Events 1..3 of ``pid`` (2 tagged ``t``) and snapshots at 1 and 2."""
    async with backend.open(key) as journal:
        await journal.write([event(pid, 1), event(pid, 2, "t"), event(pid, 3)])
        await journal.snapshots.save(snapshot(pid, 1))
        await journal.snapshots.save(snapshot(pid, 2))


def flip(data: bytes) -> bytes:
    """``data`` with one bit flipped in its middle."""
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1 :]


def payload_of(backend: Backend, table: str, pid: str, seq: int) -> bytes:
    rows = backend.run(
        f"SELECT payload FROM {{{table}}} WHERE persistence_id = %s AND seq = %s", (pid, seq)
    )
    return bytes(rows[0][0])


def set_column(backend: Backend, table: str, column: str, value: Any, pid: str, seq: int) -> None:
    backend.run(
        f"UPDATE {{{table}}} SET {column} = %s WHERE persistence_id = %s AND seq = %s",
        (value, pid, seq),
    )


async def collect(iterator: AsyncIterator[Any]) -> list[Any]:
    return [item async for item in iterator]


CHECKSUM_MISMATCH = (
    "corrupt: its checksum does not match its contents (it was changed after it was "
    "written); nothing of it was decoded"
)

# -- digests are written ----------------------------------------------------------------------


async def test_every_record_is_stored_with_a_checksum_or_with_a_signature(
    backend: Backend,
) -> None:
    await fill(backend)
    await fill(backend, KEY, pid="b")
    digests = backend.run(
        "SELECT persistence_id, digest FROM {events} UNION ALL "
        "SELECT persistence_id, digest FROM {snapshots}"
    )
    assert len(digests) == 10
    for pid, digest in digests:
        digest = bytes(digest)
        if pid == "a":  # no key: CRC-32
            assert (digest[:1], len(digest)) == (b"\x01", 5)
        else:  # signed: HMAC-SHA256
            assert (digest[:1], len(digest)) == (b"\x02", 33)
    # The digest of event a/2 is the CRC-32 of its fields, length-prefixed.
    message = event_message(
        "a", 2, "pickle", "builtins.int", pickle.dumps(2), '["t"]', "w1", T0 + 2
    )
    stored = backend.run("SELECT digest FROM {events} WHERE persistence_id = 'a' AND seq = 2")
    assert bytes(stored[0][0]) == b"\x01" + zlib.crc32(message).to_bytes(4, "big")
    async with backend.open(KEY) as journal:
        assert [r.seq for r in await collect(journal.replay("b"))] == [1, 2, 3]
        loaded = await journal.snapshots.load("b")
        assert loaded is not None
        assert loaded.seq == 2


def test_the_checksum_of_events_of_one_actor_and_type_is_the_same_when_its_prefix_is_kept() -> None:
    # seal_event_fields remembers the CRC of the fields every event of one actor and
    # type share (no key, no tags): each digest is still the CRC-32 of the whole message.
    integrity = Integrity(None, "test journal")
    cases: list[tuple[str, int, str, str, bytes, frozenset[str], str, float]] = [
        ("a", seq, "pickle", "builtins.int", pickle.dumps(seq), frozenset(), "w1", T0 + seq)
        for seq in range(1, 4)
    ] + [
        ("b", 1, "pickle", "builtins.int", b"other", frozenset(), "w1", T0),
        ("a", 4, "pickle", "builtins.str", b"another type", frozenset(), "w1", T0),
        ("a", 5, "pickle", "builtins.int", b"tagged", frozenset({"t"}), "w1", T0),
        ("a", 6, "pickle", "builtins.int", b"another writer", frozenset(), "w2", T0),
    ]
    for _ in range(2):  # (the second time, every untagged prefix is known)
        for pid, seq, serializer, manifest, payload, tags, writer, ts in cases:
            tags_text = json.dumps(sorted(tags))
            message = event_message(pid, seq, serializer, manifest, payload, tags_text, writer, ts)
            assert integrity.seal_event_fields(
                pid, seq, serializer, manifest, payload, tags, writer, ts
            ) == b"\x01" + zlib.crc32(message).to_bytes(4, "big")
    with pytest.raises(TypeError, match="nothing was stored"):
        integrity.seal_event_fields(
            "a", 2**64, "pickle", "builtins.int", b"", frozenset(), "w1", T0
        )
    with pytest.raises(TypeError, match="nothing was stored"):
        integrity.seal_event_fields(
            "a",
            1,
            "pickle",
            "builtins.int",
            "text",  # type: ignore[arg-type]
            frozenset(),
            "w1",
            T0,
        )


@pytest.mark.parametrize("key", [None, KEY])
async def test_a_large_batch_is_stored_with_digests_that_verify(
    backend: Backend, key: bytes | None
) -> None:
    """Large batches take the bulk path of a backend (PostgreSQL: COPY)."""
    batch = [event("bulk", s, *(("even",) if s % 2 == 0 else ())) for s in range(1, 41)]
    async with backend.open(key) as journal:
        await journal.write(batch)
    scheme = b"\x01" if key is None else b"\x02"
    digests = backend.run("SELECT digest FROM {events}")
    assert len(digests) == 40
    assert all(bytes(digest)[:1] == scheme for (digest,) in digests)
    async with backend.open(key) as journal:
        assert [r.seq for r in await collect(journal.replay("bulk"))] == list(range(1, 41))
        chunks = await collect(journal.replay_chunks("bulk"))
        assert [row[0] for chunk in chunks for row in chunk] == list(range(1, 41))
        assert len(await collect(journal.events_by_tag("even"))) == 20


# -- a changed record is refused on every read path -------------------------------------------

CHANGES: dict[str, Callable[[Backend], tuple[str, Any]]] = {
    "a flipped bit in the payload": lambda b: ("payload", flip(payload_of(b, "events", "a", 2))),
    "manifest": lambda b: ("manifest", "builtins.str"),
    "serializer": lambda b: ("serializer", "cloudpickle"),
    "writer id": lambda b: ("writer_id", "w2"),
    "timestamp": lambda b: ("timestamp", T0 + 100),
    "tags": lambda b: ("tags", b.tags_value(["t", "u"])),
}


@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_a_changed_event_is_refused_by_every_read_naming_it(
    backend: Backend, change: str
) -> None:
    await fill(backend)
    column, value = CHANGES[change](backend)
    set_column(backend, "events", column, value, "a", 2)
    expected = f"event 'a' seq 2 (offset 2) in the {backend.where} is "
    async with backend.open() as journal:
        records = journal.replay("a")
        first = await records.__anext__()
        assert first.seq == 1  # the events before it are given
        with pytest.raises(RecordCorrupt) as info:
            await records.__anext__()
        error = info.value
        assert str(error).startswith(expected)
        assert (error.persistence_id, error.seq, error.offset) == ("a", 2, 2)
        assert isinstance(error, JournalFailure)
        assert error.where == backend.where
        assert not error.needs_key
        if change == "a flipped bit in the payload":
            assert str(error) == expected + CHECKSUM_MISMATCH
        with pytest.raises(RecordCorrupt, match=r"^event 'a' seq 2 \(offset 2\)"):
            await collect(journal.replay_chunks("a"))
        with pytest.raises(RecordCorrupt, match=r"^event 'a' seq 2 \(offset 2\)"):
            await collect(journal.events_by_tag("t"))
        # The records around it still read.
        assert [r.seq for r in await collect(journal.replay("a", 3))] == [3]
        assert [r.seq for r in await collect(journal.replay("a", 1, 1))] == [1]


async def test_a_changed_snapshot_is_refused_by_load_naming_it(backend: Backend) -> None:
    await fill(backend)
    set_column(
        backend, "snapshots", "payload", flip(payload_of(backend, "snapshots", "a", 2)), "a", 2
    )
    async with backend.open() as journal:
        with pytest.raises(RecordCorrupt) as info:
            await journal.snapshots.load("a")
        assert str(info.value) == (
            f"snapshot 'a' seq 2 in the {backend.where} is {CHECKSUM_MISMATCH}"
        )
        assert (info.value.seq, info.value.offset) == (2, None)
        older = await journal.snapshots.load("a", 1)
        assert older is not None
        assert older.seq == 1


async def test_the_offset_is_not_covered(tmp_path: Path) -> None:
    """The database assigns offsets at insert; moving a row keeps its digest valid."""
    backend = _sqlite_backend(tmp_path / "j.db")
    await fill(backend)
    backend.run("UPDATE events SET event_offset = 10 WHERE seq = 3")
    async with backend.open() as journal:
        assert [r.offset for r in await collect(journal.replay("a"))] == [1, 2, 10]


async def test_an_edited_digest_column_is_refused(tmp_path: Path) -> None:
    backend = _sqlite_backend(tmp_path / "j.db")
    await fill(backend)
    backend.run("UPDATE events SET digest = x'07' WHERE seq = 1")
    backend.run("UPDATE events SET digest = 'text' WHERE seq = 2")
    backend.run("UPDATE events SET writer_id = 5 WHERE seq = 3")
    async with backend.open() as journal:
        with pytest.raises(RecordCorrupt) as info:
            await collect(journal.replay("a", 1, 1))
        assert str(info.value).endswith(
            "is corrupt: its digest column holds no known digest (scheme byte 0x07); nothing "
            "of it was decoded"
        )
        with pytest.raises(RecordCorrupt, match=r"no known digest \(a str\)"):
            await collect(journal.replay("a", 2, 2))
        with pytest.raises(RecordCorrupt, match="checksum does not match"):
            await collect(journal.replay("a", 3, 3))


# -- recovery ---------------------------------------------------------------------------------


class Account(PersistentActor):
    persistence_id = "acct"

    def __init__(self) -> None:
        self.total = 0

    def apply(self, event: Any) -> None:
        self.total += event

    def snapshot(self) -> Any:
        return self.total

    def restore(self, state: Any) -> None:
        self.total = state

    async def receive(self, message: Any) -> Any:
        if message != "total":
            await self.persist(message)
        return self.total


async def _stopped_by(journal: Any) -> BaseException | None:
    """Spawn the account on ``journal`` and return the error it stopped with."""
    async with actors.open_system("integrity", extensions=[Persistence(journal)]) as system:
        probe = TestProbe(system)
        ref = probe.watch(system.spawn(Account, name="acct"))
        terminated = await probe.expect_terminated(ref, timeout=10)
        return terminated.error


@pytest.mark.parametrize("record", ["event", "snapshot"])
async def test_recovery_stops_the_actor_with_a_recovery_failed_naming_the_record(
    backend: Backend, record: str
) -> None:
    async with backend.open() as journal:
        await journal.write([event("acct", s) for s in (1, 2, 3)])
        if record == "snapshot":  # (else recovery would start after event 2)
            await journal.snapshots.save(snapshot("acct", 2, 3))
    table = "events" if record == "event" else "snapshots"
    set_column(backend, table, "payload", flip(payload_of(backend, table, "acct", 2)), "acct", 2)
    async with backend.open() as journal:
        error = await _stopped_by(journal)
    assert isinstance(error, RecoveryFailed)
    assert not error.retryable  # stopped, not restarted: reading again cannot help
    assert isinstance(error.__cause__, RecordCorrupt)
    named = "event 'acct' seq 2 (offset 2)" if record == "event" else "snapshot 'acct' seq 2"
    assert str(error.__cause__) == f"{named} in the {backend.where} is {CHECKSUM_MISMATCH}"
    assert str(error) == (f"recovery of persistence id 'acct' failed at seq 2: {error.__cause__}")


# -- crafted pickles never run ----------------------------------------------------------------


@attrs.frozen
class Crafted:
    """Unpickled, it creates the file ``marker`` (as a payload planted by someone who
    can write the database would run anything)."""

    marker: str

    def __reduce__(self) -> tuple[Any, ...]:
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def crafted(marker: Path) -> bytes:
    return pickle.dumps(Crafted(str(marker)))


def test_the_crafted_pickle_runs_when_unpickled(tmp_path: Path) -> None:
    """The control: the payload of the tests below does run code when unpickled."""
    marker = tmp_path / "control"
    Serialization().deserialize("pickle", "builtins.int", crafted(marker))
    assert marker.exists()


def _plant(backend: Backend, marker: Path, attack: str) -> None:
    """Replace event acct/2 by the crafted pickle: ``payload``, keeping the old digest;
    ``checksum``, with a checksum recomputed over it (what anyone can do); ``other-key``,
    signed with another key."""
    payload = crafted(marker)
    set_column(backend, "events", "payload", payload, "acct", 2)
    if attack == "payload":
        return
    message = event_message("acct", 2, "pickle", "builtins.int", payload, "[]", "w1", T0 + 2)
    if attack == "checksum":
        digest = b"\x01" + zlib.crc32(message).to_bytes(4, "big")
    else:
        import hmac

        digest = b"\x02" + hmac.digest(OTHER_KEY, message, "sha256")
    set_column(backend, "events", "digest", digest, "acct", 2)


ATTACKS = {
    # attack: (the journal's key, what the error says)
    "payload": (None, "is corrupt: its checksum does not match"),
    "checksum": (KEY, "is not signed (it has a checksum only: it was written without a key)"),
    "other-key": (KEY, "is corrupt: its signature does not match its contents"),
}


@pytest.mark.parametrize("attack", sorted(ATTACKS))
async def test_a_crafted_pickle_never_runs_in_recovery(
    backend: Backend, tmp_path: Path, attack: str
) -> None:
    key, says = ATTACKS[attack]
    async with backend.open(key) as journal:
        await journal.write([event("acct", s) for s in (1, 2, 3)])
    marker = tmp_path / "pwned"
    _plant(backend, marker, attack)
    async with backend.open(key) as journal:
        stopped = await _stopped_by(journal)
        assert isinstance(stopped, RecoveryFailed)
        error = stopped.__cause__
        assert isinstance(error, RecordCorrupt)
        assert str(error).startswith(f"event 'acct' seq 2 (offset 2) in the {backend.where} {says}")
        with pytest.raises(RecordCorrupt):
            await collect(journal.replay_chunks("acct"))
    assert not marker.exists()


def _tool(backend: Backend, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    result = subprocess.run(
        [sys.executable, "-m", "actors.persistence", *backend.cli, *argv],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, **(env or {})},
    )
    return result.returncode, result.stdout + result.stderr


def test_a_crafted_pickle_never_runs_in_the_tool(backend: Backend, tmp_path: Path) -> None:
    async def write() -> None:
        async with backend.open() as journal:
            await journal.write([event("acct", s) for s in (1, 2, 3)])

    trio.run(write)
    marker = tmp_path / "pwned"
    _plant(backend, marker, "payload")
    code, out = _tool(backend, "events", "acct")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].endswith("value=1")
    assert lines[1] == (
        f"seq=2  offset=2  REFUSED: event 'acct' seq 2 (offset 2) in the {backend.where} is "
        f"{CHECKSUM_MISMATCH}"
    )
    assert lines[2].endswith("value=3")  # the listing goes on after it
    assert lines[3] == "python -m actors.persistence: 1 of 3 events are corrupt"
    if backend.name == "sqlite":
        code, out = _tool(backend, "check", "--decode")
        assert code == 1
        db = backend.cli[1]
        assert out.splitlines() == [
            "digest: event 'acct' seq 2 (offset 2) is corrupt: its checksum does not match "
            "its contents (it was changed after it was written)",
            f"{db}: 1 problem found (1 persistence ids, 3 events, 0 snapshots; 2 records verified)",
        ]
    assert not marker.exists()


# -- keys -------------------------------------------------------------------------------------


async def test_a_journal_with_a_key_refuses_what_is_not_signed_with_it(backend: Backend) -> None:
    await fill(backend, pid="plain")
    await fill(backend, OTHER_KEY, pid="other")
    await fill(backend, KEY, pid="mine")
    async with backend.open(KEY) as journal:
        assert [r.seq for r in await collect(journal.replay("mine"))] == [1, 2, 3]
        with pytest.raises(RecordCorrupt) as info:
            await collect(journal.replay("plain"))
        assert str(info.value) == (
            f"event 'plain' seq 1 (offset 1) in the {backend.where} is not signed (it has a "
            "checksum only: it was written without a key) and the journal is opened with a "
            "key: refused; nothing of it was decoded"
        )
        with pytest.raises(RecordCorrupt) as info:
            await collect(journal.replay_chunks("other"))
        assert "is corrupt: its signature does not match its contents (it was changed after " in (
            str(info.value)
        )
        with pytest.raises(RecordCorrupt, match=r"^snapshot 'plain' seq 2 .* is not signed"):
            await journal.snapshots.load("plain")
        with pytest.raises(RecordCorrupt, match=r"^event 'plain' seq 2 \(offset 2\) .* not signed"):
            await collect(journal.events_by_tag("t"))
        with pytest.raises(RecordCorrupt, match=r"^event 'other' seq 2 \(offset 5\) .* signature"):
            await collect(journal.events_by_tag("t", 2))
        assert [r.offset for r in await collect(journal.events_by_tag("t", 5))] == [8]
    async with backend.open() as journal:  # no key: a signed record cannot be verified
        assert [r.seq for r in await collect(journal.replay("plain"))] == [1, 2, 3]
        with pytest.raises(RecordCorrupt) as info:
            await collect(journal.replay("mine"))
        assert info.value.needs_key
        assert str(info.value) == (
            f"event 'mine' seq 1 (offset 7) in the {backend.where} is signed, and the journal "
            "is opened without a key, so it cannot be verified: open it with its key; nothing "
            "of it was decoded"
        )
        assert "Open the journal with the key it was signed with" in info.value.__notes__[0]


async def test_a_key_that_is_not_bytes_or_too_short_is_refused(tmp_path: Path) -> None:
    from actors.persistence._postgres import open_postgres_journal

    bad: list[tuple[Any, type[Exception], str]] = [
        ("secret" * 6, TypeError, "key must be bytes (for instance Path('journal.key')"),
        (b"short", ValueError, "key must be at least 16 bytes, got 5: use 32 random bytes"),
    ]
    for key, kind, message in bad:
        with pytest.raises(kind, match=message.replace("(", r"\(").replace(")", r"\)")):
            async with open_sqlite_journal(tmp_path / "j.db", key=key):
                pass  # pragma: no cover
        with pytest.raises(kind, match="key must"):  # before it connects anywhere
            async with open_postgres_journal("host=nowhere.invalid", key=key):
                pass  # pragma: no cover
    assert not (tmp_path / "j.db").exists()


async def test_a_record_that_cannot_be_sealed_is_refused_before_it_is_queued(
    tmp_path: Path,
) -> None:
    async with open_sqlite_journal(tmp_path / "j.db") as journal:
        with pytest.raises(TypeError, match="a PersistentRecord holds str persistence_id"):
            await journal.write([attrs.evolve(event("a", 1), writer_id=None)])  # type: ignore[arg-type]
        assert await journal.highest_seq("a") == 0


# -- schema version 1 -------------------------------------------------------------------------

V1_SQLITE = (
    "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE events (event_offset INTEGER PRIMARY KEY AUTOINCREMENT, persistence_id "
    "TEXT NOT NULL, seq INTEGER NOT NULL, serializer TEXT NOT NULL, manifest TEXT NOT NULL, "
    "payload BLOB NOT NULL, tags TEXT NOT NULL, writer_id TEXT NOT NULL, timestamp REAL NOT "
    "NULL, UNIQUE (persistence_id, seq))",
    "CREATE TABLE event_tags (tag TEXT NOT NULL, event_offset INTEGER NOT NULL, PRIMARY KEY "
    "(tag, event_offset)) WITHOUT ROWID",
    "CREATE INDEX event_tags_by_offset ON event_tags (event_offset)",
    "CREATE TABLE journal_metadata (persistence_id TEXT PRIMARY KEY, highest_seq INTEGER NOT "
    "NULL) WITHOUT ROWID",
    "CREATE TABLE snapshots (persistence_id TEXT NOT NULL, seq INTEGER NOT NULL, serializer "
    "TEXT NOT NULL, manifest TEXT NOT NULL, payload BLOB NOT NULL, timestamp REAL NOT NULL, "
    "PRIMARY KEY (persistence_id, seq)) WITHOUT ROWID",
)
"""The schema of version 1 (trio-actors before issue 14), as its ``_sqlite.py`` made it."""

V1_POSTGRES = (
    "CREATE SCHEMA {schema}",
    "CREATE TABLE {schema}.schema_version (version INTEGER NOT NULL)",
    "CREATE TABLE {schema}.events (event_offset BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY "
    'KEY, persistence_id TEXT COLLATE "C" NOT NULL, seq BIGINT NOT NULL, serializer TEXT NOT '
    "NULL, manifest TEXT NOT NULL, payload BYTEA NOT NULL, tags TEXT[] NOT NULL, writer_id "
    "TEXT NOT NULL, timestamp DOUBLE PRECISION NOT NULL, UNIQUE (persistence_id, seq))",
    'CREATE TABLE {schema}.event_tags (tag TEXT COLLATE "C" NOT NULL, event_offset BIGINT NOT '
    "NULL, PRIMARY KEY (tag, event_offset))",
    "CREATE INDEX event_tags_by_offset ON {schema}.event_tags (event_offset)",
    'CREATE TABLE {schema}.journal_metadata (persistence_id TEXT COLLATE "C" PRIMARY KEY, '
    "highest_seq BIGINT NOT NULL)",
    'CREATE TABLE {schema}.snapshots (persistence_id TEXT COLLATE "C" NOT NULL, seq BIGINT NOT '
    "NULL, serializer TEXT NOT NULL, manifest TEXT NOT NULL, payload BYTEA NOT NULL, "
    "timestamp DOUBLE PRECISION NOT NULL, PRIMARY KEY (persistence_id, seq))",
)
"""The schema of version 1 on PostgreSQL, as its ``_postgres.py`` made it."""


def make_v1(backend: Backend) -> None:
    """A journal of schema version 1 holding events 1..2 of ``old`` (2 tagged ``t``) and a
    snapshot at 2, as version 1 wrote them (no digest)."""
    if backend.name == "sqlite":
        for statement in V1_SQLITE:
            backend.run(statement)
    else:
        for statement in V1_POSTGRES:
            backend.run(statement.replace("{schema}", f'"{backend.schema}"'))
    run = backend.run
    run("INSERT INTO {schema_version} (version) VALUES (1)")
    for seq in (1, 2):
        run(
            "INSERT INTO {events} (persistence_id, seq, serializer, manifest, payload, tags, "
            "writer_id, timestamp) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
            (
                "old",
                seq,
                "pickle",
                "builtins.int",
                pickle.dumps(seq),
                backend.tags_value([] if seq == 1 else ["t"]),
                "w0",
                T0,
            ),
        )
    offset = run("SELECT event_offset FROM {events} WHERE seq = 2")[0][0]
    run("INSERT INTO {event_tags} (tag, event_offset) VALUES (%s, %s)", ("t", offset))
    run("INSERT INTO {journal_metadata} (persistence_id, highest_seq) VALUES ('old', 2)")
    run(
        "INSERT INTO {snapshots} (persistence_id, seq, serializer, manifest, payload, "
        "timestamp) VALUES (%s, %s, %s, %s, %s, %s)",
        ("old", 2, "pickle", "builtins.int", pickle.dumps(3), T0),
    )


async def test_a_version_1_journal_is_upgraded_on_open_and_its_rows_read_without_a_key(
    backend: Backend,
) -> None:
    make_v1(backend)
    async with backend.open() as journal:
        assert [(r.seq, r.tags) for r in await collect(journal.replay("old"))] == [
            (1, frozenset()),
            (2, frozenset({"t"})),
        ]
        assert [
            row[0] for chunk in await collect(journal.replay_chunks("old")) for row in chunk
        ] == [
            1,
            2,
        ]
        assert [r.seq for r in await collect(journal.events_by_tag("t"))] == [2]
        loaded = await journal.snapshots.load("old")
        assert loaded is not None
        assert pickle.loads(loaded.payload) == 3
        await journal.write([event("old", 3)])  # written with a digest
    assert backend.run("SELECT version FROM {schema_version}") == [(2,)]
    digests = backend.run("SELECT seq, digest FROM {events} ORDER BY seq")
    assert [(seq, digest is None) for seq, digest in digests] == [(1, True), (2, True), (3, False)]
    async with backend.open() as journal:  # upgrading is done once
        assert [r.seq for r in await collect(journal.replay("old"))] == [1, 2, 3]
    async with backend.open(KEY) as journal:  # with a key, rows without a digest are refused
        with pytest.raises(RecordCorrupt) as info:
            await collect(journal.replay("old"))
        assert str(info.value) == (
            f"event 'old' seq 1 (offset 1) in the {backend.where} is not signed (it has no "
            "digest: it was written before schema version 2) and the journal is opened with a "
            "key: refused; nothing of it was decoded"
        )
        with pytest.raises(RecordCorrupt, match=r"^snapshot 'old' seq 2 .* no digest"):
            await journal.snapshots.load("old")


def run_tool(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_check_reads_a_version_1_journal_as_it_is_and_the_other_commands_refuse_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    backend = _sqlite_backend(tmp_path / "old.db")
    make_v1(backend)
    before = (tmp_path / "old.db").read_bytes()
    db = backend.cli[1]
    assert run_tool(capsys, "--sqlite", db, "check", "--decode") == (
        0,
        "3 records without a digest (written before version 2)\n"
        f"{db}: ok (1 persistence ids, 2 events, 1 snapshots; 3 without a digest)\n",
        "",
    )
    code, out, err = run_tool(capsys, "--sqlite", db, "events", "old")
    assert (code, out) == (2, "")
    assert err == (
        f"python -m actors.persistence: error: SQLite journal {db} has schema version 1; this "
        "tool reads version 2 (the check command reads version 1 as it is; opening the "
        "journal from the application, with open_sqlite_journal, upgrades it to version 2, "
        "keeping every record)\n"
    )
    assert (tmp_path / "old.db").read_bytes() == before  # not upgraded
    # With a key, the records without a digest are problems (the journal would refuse them).
    key_file = tmp_path / "journal.key"
    key_file.write_bytes(KEY)
    code, out, _ = run_tool(capsys, "--sqlite", db, "--key-file", str(key_file), "check")
    assert code == 1
    assert out.splitlines()[0] == (
        "digest: event 'old' seq 1 (offset 1) is not signed (it has no digest: it was written "
        "before schema version 2) and the journal is opened with a key: refused"
    )


def test_the_tool_refuses_a_postgres_journal_of_version_1(
    postgres: Backend, capsys: pytest.CaptureFixture[str]
) -> None:
    make_v1(postgres)
    code, out, err = run_tool(capsys, *postgres.cli, "events", "old")
    assert (code, out) == (2, "")
    assert err == (
        "python -m actors.persistence: error: the PostgreSQL journal has schema version 1; "
        "this tool reads version 2 and does not upgrade a journal (opening it from the "
        "application, with open_postgres_journal, upgrades it, keeping every record)\n"
    )
    assert postgres.run("SELECT version FROM {schema_version}") == [(1,)]  # not upgraded


def test_check_and_events_with_a_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = _sqlite_backend(tmp_path / "signed.db")
    trio.run(fill, backend, KEY)
    db = backend.cli[1]
    key_file = tmp_path / "journal.key"
    key_file.write_bytes(KEY)
    other_file = tmp_path / "other.key"
    other_file.write_bytes(OTHER_KEY)
    hint = "give the tool the journal's key (--key-file PATH, or ACTORS_JOURNAL_KEY_FILE=PATH)"
    # Without the key: nothing can be verified (nor decoded), which is no problem found.
    assert run_tool(capsys, "--sqlite", db, "check", "--decode") == (
        3,
        "5 records signed with a key, not verified (first: event 'a' seq 1 (offset 1)): "
        f"{hint}\n"
        f"{db}: no problem found, but not every record can be verified here (1 persistence "
        "ids, 3 events, 2 snapshots; 0 records verified, 5 signed, not verified (no key))\n",
        "",
    )
    ok = f"{db}: ok (1 persistence ids, 3 events, 2 snapshots; 5 records verified)\n"
    assert run_tool(capsys, "--sqlite", db, "check", "--key-file", str(key_file)) == (0, ok, "")
    monkeypatch.setenv("ACTORS_JOURNAL_KEY_FILE", str(key_file))
    assert run_tool(capsys, "--sqlite", db, "check", "--decode") == (0, ok, "")
    code, out, err = run_tool(capsys, "--sqlite", db, "events", "a")
    assert (code, err) == (0, "")
    assert [line.rsplit("  ", 1)[1] for line in out.splitlines()] == [
        "value=1",
        "value=2",
        "value=3",
    ]
    # --key-file wins over the variable.
    code, out, _ = run_tool(capsys, "--sqlite", db, "check", "--key-file", str(other_file))
    assert code == 1
    assert out.splitlines()[0] == (
        "digest: event 'a' seq 1 (offset 1) is corrupt: its signature does not match its "
        "contents (it was changed after it was written, or signed with another key)"
    )
    monkeypatch.delenv("ACTORS_JOURNAL_KEY_FILE")
    code, out, err = run_tool(capsys, "--sqlite", db, "events", "a")
    assert code == 3
    assert out.splitlines()[0] == (
        f"seq=1  offset=1  NOT VERIFIED: event 'a' seq 1 (offset 1) in the {backend.where} is "
        "signed, and the journal is opened without a key, so it cannot be verified: open it "
        "with its key; nothing of it was decoded"
    )
    assert err == (
        "python -m actors.persistence: 3 events not decodable here (first: seq 1): it is "
        f"signed, and no key was given to verify it; {hint}\n"
    )
    code, out, err = run_tool(capsys, "--sqlite", db, "snapshot", "a")
    assert code == 3
    assert out.startswith("seq=2  NOT VERIFIED: snapshot 'a' seq 2 in the ")
    assert err == f"python -m actors.persistence: the snapshot is signed: {hint}\n"


def test_a_key_file_that_cannot_be_used_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = _sqlite_backend(tmp_path / "j.db")
    trio.run(fill, backend)
    db = backend.cli[1]
    missing = tmp_path / "missing.key"
    code, out, err = run_tool(capsys, "--sqlite", db, "check", "--key-file", str(missing))
    assert (code, out) == (2, "")
    assert err.endswith(
        f"error: argument --key-file: cannot read the key file {missing}: No such file or "
        "directory\n"
    )
    short = tmp_path / "short.key"
    short.write_bytes(b"12345")
    monkeypatch.setenv("ACTORS_JOURNAL_KEY_FILE", str(short))
    code, out, err = run_tool(capsys, "--sqlite", db, "ids")
    assert (code, out) == (2, "")
    assert err.endswith(
        f"error: $ACTORS_JOURNAL_KEY_FILE: the key file {short} holds no usable key: key must "
        "be at least 16 bytes, got 5: use 32 random bytes (os.urandom(32)) kept in a file "
        "readable only by the application\n"
    )
