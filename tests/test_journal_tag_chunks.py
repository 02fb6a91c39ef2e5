"""``Journal.events_by_tag_chunks``, the read path of projections, beyond the shared
contract (``journal_conformance.py``): the default (grouping ``events_by_tag``) gives the
rows before a failing record, then the error, then what follows; the SQL journals, which
read rows without building records, check every row before it is given, on SQLite and
on PostgreSQL (skipped like the other PostgreSQL tests when there is no server), with a
checksum or with a key, and a projection stops at a refused record after handling the
events before it."""

from __future__ import annotations

import json
import pickle
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, closing
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from projection_events import Sold, write_sales

import actors
import supervision as sv
from actors.persistence import (
    InMemoryJournal,
    JournalFailure,
    Persistence,
    PersistentRecord,
    RecordCorrupt,
    open_sqlite_journal,
)
from actors.persistence._sql_dialect import TABLES
from actors.projection import (
    AtLeastOnce,
    Envelope,
    GetStatus,
    JournalSource,
    Projection,
)

KEY = b"k" * 32
T0 = 1_700_000_000.5

# -- the default: events_by_tag, grouped ------------------------------------------------------


class _FailingAt:
    """The records of ``inner`` (an ``events_by_tag`` iterator), raising
    :class:`JournalFailure` instead of giving the one at ``offset`` (once); the
    iteration goes on after it."""

    def __init__(self, inner: AsyncIterator[PersistentRecord], offset: int) -> None:
        self._inner = inner
        self._offset = offset

    def __aiter__(self) -> _FailingAt:
        return self

    async def __anext__(self) -> PersistentRecord:
        record = await self._inner.__anext__()
        if record.offset == self._offset:
            raise JournalFailure(f"cannot read offset {record.offset}")
        return record


class FailingJournal(InMemoryJournal):
    """An in-memory journal whose ``events_by_tag`` fails at one offset; it inherits the
    default ``events_by_tag_chunks`` of :class:`Journal`."""

    failing_offset = 0

    def events_by_tag(self, tag: str, from_offset: int = 0) -> AsyncIterator[PersistentRecord]:
        return _FailingAt(super().events_by_tag(tag, from_offset), self.failing_offset)


def seqs_of(chunk: Sequence[Sequence[Any]]) -> list[tuple[str, int]]:
    return [(row[0], row[1]) for row in chunk]


async def test_the_default_gives_the_rows_before_an_error_then_the_error_then_the_rest() -> None:
    journal = FailingJournal()
    offsets = await write_sales(journal, "a", 1, 300)
    journal.failing_offset = offsets[9]  # a/10
    chunks = journal.events_by_tag_chunks("sale")
    assert seqs_of(await chunks.__anext__()) == [("a", seq) for seq in range(1, 10)]
    with pytest.raises(JournalFailure, match=f"cannot read offset {offsets[9]}"):
        await chunks.__anext__()
    rest = [row async for chunk in chunks for row in chunk]
    assert seqs_of(rest) == [("a", seq) for seq in range(11, 301)]
    # an error at the first record of a group: no empty chunk before it
    journal.failing_offset = offsets[0]
    chunks = journal.events_by_tag_chunks("sale")
    with pytest.raises(JournalFailure, match=f"cannot read offset {offsets[0]}"):
        await chunks.__anext__()
    assert (await chunks.__anext__())[0][:2] == ("a", 2)


async def test_the_default_checks_its_bound_when_called() -> None:
    journal = FailingJournal()
    with pytest.raises(TypeError, match=r"from_offset must be an int, got float 1\.0"):
        journal.events_by_tag_chunks("sale", 1.0)  # type: ignore[arg-type]


# -- the SQL journals: every row checked ----------------------------------------------------


@attrs.frozen
class Backend:
    """A SQL journal under test: how to open it, and how to run SQL on its tables behind
    its back (``{events}`` and ``%s`` in the statement)."""

    name: str
    open: Callable[..., AbstractAsyncContextManager[Any]]
    run: Callable[..., list[tuple[Any, ...]]]
    where: str

    def tags_value(self, tags: list[str]) -> Any:
        return json.dumps(tags) if self.name == "sqlite" else tags


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "journal.db"

        def run(statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
            text = statement.format(**{name: name for name in TABLES}).replace("%s", "?")
            with closing(sqlite3.connect(path)) as conn, conn:
                return conn.execute(text, params).fetchall()

        def open_sqlite(key: bytes | None = None, chunk_size: int = 1000) -> Any:
            return open_sqlite_journal(path, key=key, chunk_size=chunk_size)

        yield Backend("sqlite", open_sqlite, run, f"SQLite journal {path}")
        return
    import psycopg

    from actors.persistence._postgres import describe_dsn, open_postgres_journal

    dsn: str = request.getfixturevalue("postgres_dsn")
    schema = f"chunks_{uuid.uuid4().hex[:12]}"

    def run_pg(statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        text = statement.format(**{name: f'"{schema}".{name}' for name in TABLES})
        with psycopg.connect(dsn, autocommit=True) as conn:
            cursor = conn.execute(text.encode(), params)
            return cursor.fetchall() if cursor.description else []

    def open_pg(key: bytes | None = None, chunk_size: int = 1000) -> Any:
        return open_postgres_journal(dsn, schema=schema, key=key, chunk_size=chunk_size)

    yield Backend("postgres", open_pg, run_pg, f"journal on {describe_dsn(dsn)}")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'.encode())


def event(pid: str, seq: int, writer: str = "w1") -> PersistentRecord:
    return PersistentRecord(
        persistence_id=pid,
        seq=seq,
        serializer="pickle",
        manifest="builtins.int",
        payload=pickle.dumps(seq),
        tags=frozenset({"t"}),
        writer_id=writer,
        timestamp=T0 + seq,
    )


async def fill(backend: Backend, key: bytes | None = None) -> None:
    """Offsets 1..9: a/1..3, b/1..3 (another writer), a/4..6, all tagged ``t``: runs of
    rows with the same text fields, and ids that come back after another's."""
    async with backend.open(key) as journal:
        await journal.write([event("a", seq) for seq in (1, 2, 3)])
        await journal.write([event("b", seq, "w2") for seq in (1, 2, 3)])
        await journal.write([event("a", seq) for seq in (4, 5, 6)])


def flip(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes([data[middle] ^ 0x10]) + data[middle + 1 :]


def change_event(backend: Backend, column: str, value: Any, pid: str, seq: int) -> None:
    backend.run(
        f"UPDATE {{events}} SET {column} = %s WHERE persistence_id = %s AND seq = %s",
        (value, pid, seq),
    )


async def read_to_refusal(chunks: AsyncIterator[list[Any]]) -> tuple[list[Any], RecordCorrupt]:
    """The rows that ``chunks`` gives before it raises :class:`RecordCorrupt`, and that."""
    rows: list[Any] = []
    try:
        async for chunk in chunks:
            rows.extend(chunk)
    except RecordCorrupt as error:
        return rows, error
    raise AssertionError(f"no record was refused, {len(rows)} rows read")


CHANGES: dict[str, Callable[[Backend], tuple[str, Any]]] = {
    "a flipped bit in the payload": lambda b: ("payload", flip(pickle.dumps(5))),
    "manifest": lambda b: ("manifest", "builtins.str"),
    "serializer": lambda b: ("serializer", "cloudpickle"),
    # the text fields of the rows before it (a run of a's), and of an earlier run (b's)
    "writer id": lambda b: ("writer_id", "w2"),
    "persistence id": lambda b: ("persistence_id", "b"),
    "timestamp": lambda b: ("timestamp", T0 + 100),
    "tags": lambda b: ("tags", b.tags_value(["t", "u"])),
}


@pytest.mark.parametrize("chunk_size", [1000, 2])
@pytest.mark.parametrize("change", sorted(CHANGES))
async def test_a_changed_event_is_refused_after_the_rows_before_it(
    backend: Backend, change: str, chunk_size: int
) -> None:
    await fill(backend)
    column, value = CHANGES[change](backend)
    change_event(backend, column, value, "a", 5)  # offset 8
    pid = "b" if change == "persistence id" else "a"
    async with backend.open(chunk_size=chunk_size) as journal:
        chunks = journal.events_by_tag_chunks("t")
        before, error = await read_to_refusal(chunks)
        # every row before it was given, checked
        assert seqs_of(before) == [
            ("a", 1),
            ("a", 2),
            ("a", 3),
            ("b", 1),
            ("b", 2),
            ("b", 3),
            ("a", 4),
        ]
        records = journal.events_by_tag("t")
        assert [PersistentRecord(*row) for row in before] == [
            await records.__anext__() for _ in range(7)
        ]
        assert str(error).startswith(f"event {pid!r} seq 5 (offset 8) in the {backend.where} is ")
        assert str(error).endswith("; nothing of it was decoded")
        assert (error.persistence_id, error.seq, error.offset) == (pid, 5, 8)
        assert not error.needs_key
        # the iteration goes on after it
        assert seqs_of([row async for chunk in chunks for row in chunk]) == [("a", 6)]
        # the same error as events_by_tag, record by record
        with pytest.raises(RecordCorrupt) as by_record:
            await records.__anext__()
        assert str(by_record.value) == str(error)


async def test_every_row_of_a_long_interleaved_tag_is_checked(backend: Backend) -> None:
    """Rows of many ids and writers, interleaved: each row's digest is checked against
    its own fields, whatever the rows before it held."""
    async with backend.open() as journal:
        for seq in range(1, 21):
            for pid in ("a", "b", "c", "d"):
                await journal.write([event(pid, seq, writer=f"w-{pid}")])
        good = [row async for chunk in journal.events_by_tag_chunks("t") for row in chunk]
    assert len(good) == 80
    # c/7 takes the writer id of the rows around it (b's, d's): refused all the same
    change_event(backend, "writer_id", "w-b", "c", 7)
    async with backend.open() as journal:
        rows, error = await read_to_refusal(journal.events_by_tag_chunks("t"))
    assert rows == good[:26]
    assert str(error).startswith("event 'c' seq 7 (offset 27) in the ")


async def test_a_journal_with_a_key_gives_only_rows_signed_with_it(backend: Backend) -> None:
    async with backend.open(KEY) as journal:
        await journal.write([event("a", seq) for seq in (1, 2)])
    async with backend.open() as journal:  # no key: a checksum only
        await journal.write([event("b", 1)])
    async with backend.open(KEY) as journal:
        await journal.write([event("a", 3)])
        chunks = journal.events_by_tag_chunks("t")
        assert seqs_of(await chunks.__anext__()) == [("a", 1), ("a", 2)]
        with pytest.raises(RecordCorrupt) as info:
            await chunks.__anext__()
        assert str(info.value) == (
            f"event 'b' seq 1 (offset 3) in the {backend.where} is not signed (it has a "
            "checksum only: it was written without a key) and the journal is opened with a "
            "key: refused; nothing of it was decoded"
        )
        assert seqs_of(await chunks.__anext__()) == [("a", 3)]
    async with backend.open() as journal:  # signed rows cannot be verified without the key
        chunks = journal.events_by_tag_chunks("t")
        with pytest.raises(RecordCorrupt) as info:
            await chunks.__anext__()
        assert info.value.needs_key
        assert (info.value.seq, info.value.offset) == (1, 1)
    change_event(backend, "payload", pickle.dumps(7), "a", 2)
    async with backend.open(KEY) as journal:
        chunks = journal.events_by_tag_chunks("t")
        assert seqs_of(await chunks.__anext__()) == [("a", 1)]
        with pytest.raises(RecordCorrupt, match=r"offset 2\) .* its signature does not match"):
            await chunks.__anext__()


async def test_rows_without_a_digest_are_read_without_a_key_and_refused_with_one(
    backend: Backend,
) -> None:
    """Rows written before schema version 2 have no digest."""
    await fill(backend)
    backend.run("UPDATE {events} SET digest = NULL WHERE persistence_id = 'b'")
    async with backend.open() as journal:
        rows = [row async for chunk in journal.events_by_tag_chunks("t") for row in chunk]
        assert [PersistentRecord(*row) for row in rows] == [
            r async for r in journal.events_by_tag("t")
        ]
        assert len(rows) == 9
    async with backend.open(KEY) as journal:
        with pytest.raises(RecordCorrupt, match=r"^event 'a' seq 1 \(offset 1\) .* not signed"):
            await journal.events_by_tag_chunks("t").__anext__()


# -- a projection stops at a refused record ---------------------------------------------------


async def test_a_projection_handles_the_events_before_a_refused_record_and_reports_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "journal.db"
    async with open_sqlite_journal(path) as journal:
        await write_sales(journal, "a", 1, 3)
        await write_sales(journal, "b", 1, 2)
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(
            "UPDATE events SET payload = ? WHERE persistence_id = 'a' AND seq = 3",
            (pickle.dumps(Sold("a", 300)),),
        )
    handled: list[Envelope] = []
    slow = sv.Backoff(min_delay=30.0, max_delay=30.0, jitter=0.0)
    projection = Projection(
        "sales", JournalSource("sale"), AtLeastOnce(handled.extend), backoff=slow
    )
    async with (
        open_sqlite_journal(path) as journal,
        actors.open_system("chunks", extensions=[Persistence(journal)]) as system,
    ):
        ref = projection.spawn(system)
        with trio.fail_after(30):  # (a projection that never fails would catch up)
            status = await ref.ask(GetStatus())
            while status.failures == 0:
                status = await ref.ask(GetStatus())
    # the events before it, committed; none after it
    assert [(e.persistence_id, e.seq, e.event) for e in handled] == [
        ("a", 1, Sold("a", 1)),
        ("a", 2, Sold("a", 2)),
    ]
    assert (status.state, status.offset, status.handled) == ("backing_off", 2, 2)
    assert status.last_error is not None
    assert status.last_error.startswith(
        f"RecordCorrupt: event 'a' seq 3 (offset 3) in the SQLite journal {path} is corrupt: "
        "its checksum does not match its contents"
    )
