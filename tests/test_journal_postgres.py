"""The PostgreSQL journal: the conformance suite, natural group commit, commit-ordered tag
offsets under concurrent writers (two journals, as two processes would be), fencing of a
second writer, durability across reopen, clear failures (server down, bad DSN, no
password in messages), lost connections (idle, mid-transaction, during COMMIT) and
draining on exit.

Every test runs in a fresh schema of the server given by the ``postgres_dsn`` fixture
(see ``postgres_server.py``: ``ACTORS_TEST_POSTGRES_DSN`` or a throwaway server; the tests
are skipped, or fail in CI, when there is none).
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import attrs
import pytest
import trio
import trio.lowlevel
import trio.testing
from journal_conformance import JournalConformance
from postgres_server import (
    free_port,
    server_required,
)

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo
except ImportError:  # pragma: no cover - depends on the environment
    if server_required():
        raise
    pytest.skip(
        "PostgreSQL tests skipped: psycopg is not installed (pip install -e '.[test]')",
        allow_module_level=True,
    )

from actors.persistence import (
    Journal,
    JournalFailure,
    PersistentRecord,
    SequenceConflict,
    SnapshotRecord,
    SnapshotStore,
)
from actors.persistence._postgres import PostgresJournal, open_postgres_journal
from actors.persistence._sql_writes import EventWrite, store_writes

# -- the server and a fresh schema per test -----------------------------------------------


@pytest.fixture
def schema(postgres_dsn: str) -> Iterator[str]:
    """A schema name unique to the test; the schema is dropped afterwards."""
    name = f"test_{uuid.uuid4().hex[:16]}"
    yield name
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


@pytest.fixture
async def journal(postgres_dsn: str, schema: str) -> AsyncIterator[PostgresJournal]:
    async with open_postgres_journal(postgres_dsn, schema=schema, chunk_size=3) as journal:
        yield journal


def admin(dsn: str, statement: Any, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run one statement on a connection of its own (for the test's side effects)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        cursor = conn.execute(statement, params)
        return cursor.fetchall() if cursor.description else []


def event(pid: str, seq: int, *tags: str, payload: bytes | None = None) -> PersistentRecord:
    return PersistentRecord(
        persistence_id=pid,
        seq=seq,
        serializer="test",
        manifest="T/1",
        payload=payload if payload is not None else f"{pid}:{seq}".encode(),
        tags=frozenset(tags),
        writer_id="w1",
        timestamp=1700000000.5,
    )


async def collect(iterator: AsyncIterator[PersistentRecord]) -> list[PersistentRecord]:
    return [record async for record in iterator]


def keys(records: list[PersistentRecord]) -> list[tuple[str, int]]:
    return [(record.persistence_id, record.seq) for record in records]


# -- the conformance suite ----------------------------------------------------------------


class TestPostgresConformance(JournalConformance):
    """The shared contract suite on PostgreSQL (small chunks, so replays and tag queries
    page)."""

    @pytest.fixture
    async def journal(self, postgres_dsn: str, schema: str) -> AsyncIterator[Journal]:
        async with open_postgres_journal(postgres_dsn, schema=schema, chunk_size=128) as journal:
            yield journal

    @pytest.fixture
    async def snapshot_store(self, postgres_dsn: str, schema: str) -> AsyncIterator[SnapshotStore]:
        async with open_postgres_journal(postgres_dsn, schema=schema) as journal:
            yield journal.snapshots


# -- basics -------------------------------------------------------------------------------


async def test_write_replay_tags_snapshots(journal: PostgresJournal) -> None:
    offsets = await journal.write([event("a", 1), event("a", 2, "t", "u", payload=b"\x00\xff")])
    more = await journal.write([event("a", s, "t") for s in range(3, 11)])
    assert offsets[0] < offsets[1] < more[0]
    replayed = await collect(journal.replay("a"))  # chunk_size=3: several chunks
    assert [r.seq for r in replayed] == list(range(1, 11))
    assert replayed[1] == PersistentRecord(
        persistence_id="a",
        seq=2,
        serializer="test",
        manifest="T/1",
        payload=b"\x00\xff",
        tags=frozenset({"t", "u"}),
        writer_id="w1",
        timestamp=1700000000.5,
        offset=offsets[1],
    )
    tagged = await collect(journal.events_by_tag("t"))
    assert [r.seq for r in tagged] == list(range(2, 11))
    assert [r.seq for r in await collect(journal.events_by_tag("t", tagged[3].offset))] == list(
        range(6, 11)
    )
    await journal.snapshots.save(SnapshotRecord("a", 5, "test", "S/1", b"s5", 1.0))
    assert await journal.snapshots.load("a") == SnapshotRecord("a", 5, "test", "S/1", b"s5", 1.0)
    assert journal.schema in str(admin_tables(journal))


def admin_tables(journal: PostgresJournal) -> list[tuple[Any, ...]]:
    return admin(
        journal._dsn,
        "SELECT table_schema, table_name FROM information_schema.tables "
        "WHERE table_schema = %s ORDER BY table_name",
        (journal.schema,),
    )


async def test_tables_in_the_given_schema(journal: PostgresJournal) -> None:
    assert [name for _, name in admin_tables(journal)] == [
        "event_tags",
        "events",
        "journal_metadata",
        "schema_version",
        "snapshots",
    ]


async def test_malformed_batches_are_refused_before_queueing(journal: PostgresJournal) -> None:
    with pytest.raises(ValueError, match="one persistence_id"):
        await journal.write([event("a", 1), event("b", 2)])
    with pytest.raises(SequenceConflict, match="without a gap"):
        await journal.write([event("a", 1), event("a", 3)])
    assert journal.ops_acknowledged == 0


# -- group commit -------------------------------------------------------------------------


async def test_concurrent_writes_share_transactions(journal: PostgresJournal) -> None:
    before = journal.transactions
    results: dict[str, list[int]] = {}

    async def write(pid: str) -> None:
        results[pid] = await journal.write([event(pid, 1, "t"), event(pid, 2)])

    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(write, f"id-{i:02}")
    used = journal.transactions - before
    assert 1 <= used < 50
    assert journal.ops_acknowledged - used >= 1
    assert len(results) == 50
    all_offsets = sorted(o for offsets in results.values() for o in offsets)
    assert len(set(all_offsets)) == 100
    for i in range(50):
        assert [r.seq for r in await collect(journal.replay(f"id-{i:02}"))] == [1, 2]
    assert len(await collect(journal.events_by_tag("t"))) == 50


async def test_a_conflict_fails_only_its_batch_in_a_group(journal: PostgresJournal) -> None:
    await journal.write([event("taken", 1)])
    before = journal.transactions
    outcomes: dict[str, object] = {}

    async def write(record: PersistentRecord) -> None:
        try:
            outcomes[record.persistence_id] = await journal.write([record])
        except SequenceConflict as error:
            outcomes[record.persistence_id] = error

    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, event("p0", 1))
        nursery.start_soon(write, event("taken", 1, payload=b"intruder"))
        for i in range(1, 10):
            nursery.start_soon(write, event(f"p{i}", 1))
    assert journal.transactions - before == 1  # all eleven in one group
    assert isinstance(outcomes.pop("taken"), SequenceConflict)
    assert all(isinstance(o, list) for o in outcomes.values())
    assert len(outcomes) == 10
    assert [r.payload for r in await collect(journal.replay("taken"))] == [b"taken:1"]
    for i in range(10):
        assert await journal.highest_seq(f"p{i}") == 1


async def test_an_sql_error_fails_only_its_operation(journal: PostgresJournal) -> None:
    outcomes: dict[str, object] = {}

    async def broken() -> None:
        # A private hook: an operation that makes PostgreSQL raise inside the group.
        op = journal._submit("broken op", lambda conn: conn.execute("SELECT * FROM nope"))
        try:
            await journal._wait(op)
        except JournalFailure as error:
            outcomes["broken"] = error

    async def write(pid: str) -> None:
        outcomes[pid] = await journal.write([event(pid, 1)])

    before = journal.transactions
    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, "a")
        nursery.start_soon(broken)
        nursery.start_soon(write, "b")
    assert journal.transactions - before == 1
    failure = outcomes.pop("broken")
    assert isinstance(failure, JournalFailure)
    assert not isinstance(failure, SequenceConflict)
    assert "broken op" in str(failure)
    assert journal.where in str(failure)
    assert isinstance(failure.__cause__, psycopg.errors.UndefinedTable)
    assert sorted(outcomes) == ["a", "b"]
    assert await journal.persistence_ids() == ["a", "b"]


async def test_highest_seq_waits_for_queued_writes(journal: PostgresJournal) -> None:
    seen: list[int] = []

    async def read() -> None:
        seen.append(await journal.highest_seq("a"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(journal.write, [event("a", 1), event("a", 2)])
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(read)
    assert seen == [2]


# -- offsets in commit order, across writers ----------------------------------------------


async def waits_for_a_lock(dsn: str, application_name: str) -> bool:
    """Whether a session of ``application_name`` waits for an advisory lock."""
    found = await trio.to_thread.run_sync(
        admin,
        dsn,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
        "AND wait_event_type = 'Lock' AND wait_event = 'advisory'",
        (application_name,),
    )
    return bool(found[0][0] > 0)


async def test_tag_offsets_follow_commit_order_across_writers(
    postgres_dsn: str, schema: str
) -> None:
    """Journal A draws offsets and holds its transaction open; journal B (as another
    process would) writes meanwhile. B must not commit a larger offset before A commits,
    or a tag reader that saw B's and resumed after it would skip A's event forever."""
    async with (
        open_postgres_journal(postgres_dsn, schema=schema, application_name="journal-a") as a,
        open_postgres_journal(postgres_dsn, schema=schema, application_name="journal-b") as b,
    ):
        assert a.offset_lock_key == b.offset_lock_key
        (first,) = await a.write([event("first", 1, "t")])
        reader_position = first
        entered = threading.Event()
        release = threading.Event()
        op = EventWrite.of_batch(a._dialect, [event("early", 1, "t")])

        def held_open(conn: psycopg.Connection[Any]) -> list[int]:
            highest = a._dialect.highest_many(conn, ["early"])
            store_writes(a._dialect, conn, [op], a._journal_name, highest)  # offsets drawn
            entered.set()
            release.wait(30)
            assert op.error is None
            offsets: list[int] = op.result
            return offsets

        results: dict[str, list[int]] = {}

        async def write_early() -> None:
            results["early"] = await a._wait(a._submit(op.what, held_open, draws_offsets=True))

        async def write_late() -> None:
            results["late"] = await b.write([event("late", 1, "t")])

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(write_early)
                assert await trio.to_thread.run_sync(entered.wait, 20)
                nursery.start_soon(write_late)
                # Until B has committed, or waits for the lock A holds (polls the server's
                # view of its sessions: a condition, not a timing).
                with trio.fail_after(20):
                    while "late" not in results:
                        if await waits_for_a_lock(postgres_dsn, "journal-b"):
                            break
                        await trio.sleep(0.01)
                # B did not commit: no later offset is visible before A's commits. (With
                # offsets from a bare sequence, B would have committed here, and a reader
                # resuming after its offset would skip A's event forever.)
                assert "late" not in results
                assert await collect(a.events_by_tag("t", reader_position)) == []
                assert await collect(b.events_by_tag("t", reader_position)) == []
                release.set()
        finally:
            release.set()
        assert results["early"][0] < results["late"][0]
        resumed = await collect(b.events_by_tag("t", reader_position))
        assert keys(resumed) == [("early", 1), ("late", 1)]
        assert [r.offset for r in resumed] == [results["early"][0], results["late"][0]]


async def test_many_concurrent_writers_commit_in_offset_order(
    postgres_dsn: str, schema: str
) -> None:
    """Three journals write concurrently while a reader follows the tag by resuming after
    the last offset it saw: it ends with every event exactly once, in offset order."""
    seen: list[PersistentRecord] = []
    writes_done = trio.Event()

    async def follow(journal: PostgresJournal) -> None:
        position = 0
        while True:
            finished = writes_done.is_set()
            for record in await collect(journal.events_by_tag("t", position)):
                seen.append(record)
                position = record.offset
            if finished:
                return
            await trio.lowlevel.checkpoint()

    async with (
        open_postgres_journal(postgres_dsn, schema=schema) as a,
        open_postgres_journal(postgres_dsn, schema=schema) as b,
        open_postgres_journal(postgres_dsn, schema=schema) as c,
    ):

        async def writer(journal: PostgresJournal, name: str) -> None:
            for seq in range(1, 31):
                await journal.write([event(name, seq, "t")])

        async with trio.open_nursery() as nursery:
            nursery.start_soon(follow, a)
            async with trio.open_nursery() as writers:
                for journal, name in ((a, "a"), (b, "b"), (c, "c")):
                    writers.start_soon(writer, journal, name)
            writes_done.set()
    assert sorted(keys(seen)) == sorted((n, s) for n in "abc" for s in range(1, 31))
    assert [r.offset for r in seen] == sorted(r.offset for r in seen)


# -- fencing, durability ------------------------------------------------------------------


async def test_second_writer_is_fenced(postgres_dsn: str, schema: str) -> None:
    async with (
        open_postgres_journal(postgres_dsn, schema=schema) as first,
        open_postgres_journal(postgres_dsn, schema=schema) as second,
    ):
        await first.write([event("a", 1)])
        with pytest.raises(SequenceConflict, match="already has events up to seq 1"):
            await second.write([event("a", 1, payload=b"intruder")])
        await second.write([event("a", 2)])  # a writer that caught up may continue
        assert [r.payload for r in await collect(first.replay("a"))] == [b"a:1", b"a:2"]
        # A row stored by another tool (say, an old writer) fences too: the highest seq
        # is read from the events themselves.
        admin(
            postgres_dsn,
            sql.SQL(
                "INSERT INTO {} (persistence_id, seq, serializer, manifest, payload, tags, "
                "writer_id, timestamp) VALUES ('a', 3, 'test', 'T/1', 'x', '{{}}', 'old', 0)"
            ).format(sql.Identifier(schema, "events")),
        )
        with pytest.raises(SequenceConflict, match="already has events up to seq 3"):
            await first.write([event("a", 3)])
        assert await first.highest_seq("a") == 3
        await first.write([event("a", 4)])
        assert [r.seq for r in await collect(first.replay("a"))] == [1, 2, 3, 4]


async def test_durable_across_reopen(postgres_dsn: str, schema: str) -> None:
    async with open_postgres_journal(postgres_dsn, schema=schema) as journal:
        await journal.write([event("a", 1, "t"), event("a", 2)])
        await journal.snapshots.save(SnapshotRecord("a", 2, "test", "S/1", b"snap"))
        await journal.delete_to("a", 1)
    async with open_postgres_journal(postgres_dsn, schema=schema) as journal:  # idempotent
        assert await journal.highest_seq("a") == 2
        assert [r.seq for r in await collect(journal.replay("a"))] == [2]
        assert await collect(journal.events_by_tag("t")) == []
        assert await journal.persistence_ids() == ["a"]
        snapshot = await journal.snapshots.load("a")
        assert snapshot is not None
        assert snapshot.payload == b"snap"
        await journal.write([event("a", 3)])
    version = sql.SQL("SELECT version FROM {}").format(sql.Identifier(schema, "schema_version"))
    assert admin(postgres_dsn, version) == [(2,)]


async def test_an_unsupported_schema_version_is_refused(postgres_dsn: str, schema: str) -> None:
    async with open_postgres_journal(postgres_dsn, schema=schema):
        pass
    table = sql.Identifier(schema, "schema_version")
    admin(postgres_dsn, sql.SQL("UPDATE {} SET version = 99").format(table))
    with pytest.raises(JournalFailure, match="unsupported schema version"):
        async with open_postgres_journal(postgres_dsn, schema=schema):
            pass  # pragma: no cover


async def test_the_current_schema_by_default(postgres_dsn: str, schema: str) -> None:
    admin(postgres_dsn, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    dsn = make_conninfo(postgres_dsn, options=f"-c search_path={schema}")
    async with open_postgres_journal(dsn) as journal:
        assert journal.schema == schema
        await journal.write([event("a", 1)])
    assert len(admin_tables(journal)) == 5


# -- failures -----------------------------------------------------------------------------


async def test_server_down_is_a_clear_failure() -> None:
    port = free_port()  # nothing listens there
    dsn = (
        f"host=127.0.0.1 port={port} dbname=nowhere user=someone password=s3cret-pw "
        "connect_timeout=2"
    )
    with pytest.raises(JournalFailure, match="cannot open the PostgreSQL journal") as info:
        async with open_postgres_journal(dsn):
            pass  # pragma: no cover
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message
    assert "nowhere" in message
    assert "s3cret-pw" not in message
    assert isinstance(info.value.__cause__, psycopg.OperationalError)


async def test_a_missing_database_is_a_clear_failure(postgres_dsn: str) -> None:
    dsn = make_conninfo(postgres_dsn, dbname="no_such_database", password="s3cret-pw")
    with pytest.raises(JournalFailure, match="no_such_database") as info:
        async with open_postgres_journal(dsn):
            pass  # pragma: no cover
    assert "s3cret-pw" not in str(info.value)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)


async def test_an_unparseable_dsn_is_refused_without_showing_it() -> None:
    for dsn in ("host=x password=s3cret-pw bogus", "host=x password='s3cret-pw"):
        with pytest.raises(JournalFailure, match="DSN cannot be parsed") as info:
            async with open_postgres_journal(dsn):
                pass  # pragma: no cover
        assert "s3cret-pw" not in str(info.value)
        assert info.value.__cause__ is None


def terminate(dsn: str, application_name: str) -> int:
    """Terminate every session of ``application_name`` and wait until they are gone."""
    rows = admin(
        dsn,
        "SELECT pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
        "WHERE application_name = %s AND pid <> pg_backend_pid()",
        (application_name,),
    )
    assert all(ok for (ok,) in rows)
    return len(rows)


async def test_connections_lost_while_idle_are_replaced(postgres_dsn: str, schema: str) -> None:
    name = f"lost-{schema}"
    async with open_postgres_journal(postgres_dsn, schema=schema, application_name=name) as j:
        await j.write([event("a", 1, "t")])
        assert [r.seq for r in await collect(j.replay("a"))] == [1]
        assert terminate(postgres_dsn, name) == 2  # the writer's and a reader's
        # Nothing had been sent on them: both are replaced without a failure.
        await j.write([event("a", 2, "t")])
        assert [r.seq for r in await collect(j.replay("a"))] == [1, 2]
        assert terminate(postgres_dsn, name) == 2
        assert await j.highest_seq("a") == 2
        assert await j.snapshots.load("a") is None


async def test_a_connection_lost_mid_transaction_fails_the_group_then_recovers(
    journal: PostgresJournal,
) -> None:
    outcomes: dict[str, object] = {}

    async def killer() -> None:
        # A private hook: an operation whose session is terminated inside the group.
        op = journal._submit(
            "suicide op", lambda conn: conn.execute("SELECT pg_terminate_backend(pg_backend_pid())")
        )
        try:
            await journal._wait(op)
        except JournalFailure as error:
            outcomes["killer"] = error

    async def write(pid: str) -> None:
        try:
            outcomes[pid] = await journal.write([event(pid, 1)])
        except JournalFailure as error:
            outcomes[pid] = error

    before = journal.transactions
    async with trio.open_nursery() as nursery:
        nursery.start_soon(write, "a")
        nursery.start_soon(killer)
        nursery.start_soon(write, "b")
    assert journal.transactions - before == 1
    assert all(isinstance(outcome, JournalFailure) for outcome in outcomes.values())
    assert not any(isinstance(outcome, SequenceConflict) for outcome in outcomes.values())
    assert "nothing of it was stored" in str(outcomes["a"])
    killed = outcomes["killer"]
    assert isinstance(killed, JournalFailure)
    assert "suicide op" in str(killed)
    assert journal.where in str(killed)
    assert isinstance(killed.__cause__, psycopg.OperationalError)
    # The next operation reconnects, and nothing of the failed group was stored.
    assert await journal.persistence_ids() == []
    await journal.write([event("a", 1)])
    assert await journal.persistence_ids() == ["a"]


async def test_a_connection_lost_during_commit_is_an_unknown_outcome(
    postgres_dsn: str, journal: PostgresJournal
) -> None:
    # A deferred constraint trigger runs during COMMIT: this one terminates the session.
    schema = journal.schema
    admin(
        postgres_dsn,
        sql.SQL(
            "CREATE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); RETURN NULL; END $$"
        ).format(sql.Identifier(schema, "die")),
    )
    admin(
        postgres_dsn,
        sql.SQL(
            "CREATE CONSTRAINT TRIGGER die_at_commit AFTER INSERT ON {} "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
            "WHEN (NEW.persistence_id = 'doomed') EXECUTE FUNCTION {}()"
        ).format(sql.Identifier(schema, "events"), sql.Identifier(schema, "die")),
    )
    await journal.write([event("a", 1)])
    with pytest.raises(JournalFailure, match="outcome unknown") as info:
        await journal.write([event("doomed", 1)])
    assert not isinstance(info.value, SequenceConflict)
    assert "COMMIT" in str(info.value)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    # The journal reconnects; here the server rolled back, which a reader can find out.
    assert await journal.highest_seq("doomed") == 0
    await journal.write([event("a", 2)])
    assert await journal.highest_seq("a") == 2


# -- lifecycle ----------------------------------------------------------------------------


async def test_close_drains_queued_writes(journal: PostgresJournal) -> None:
    results: list[list[int]] = []

    async def write(pid: str) -> None:
        results.append(await journal.write([event(pid, 1)]))

    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(write, f"p{i}")
        await trio.testing.wait_all_tasks_blocked()
        await journal.close()
    assert len(results) == 20
    with pytest.raises(JournalFailure, match="closed"):
        await journal.write([event("late", 1)])


async def test_cancelled_exit_commits_queued_writes_never_drops_them(
    postgres_dsn: str, schema: str
) -> None:
    outcomes: list[object] = []

    async def write(journal: PostgresJournal, pid: str) -> None:
        try:
            outcomes.append(await journal.write([event(pid, 1)]))
        except JournalFailure as error:
            outcomes.append(error)

    async with trio.open_nursery() as outer:
        with trio.CancelScope() as scope:
            async with open_postgres_journal(postgres_dsn, schema=schema) as journal:
                for i in range(10):
                    outer.start_soon(write, journal, f"p{i}")
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
                await trio.sleep_forever()
    # Every writer got an answer, and every queued write committed: the journal drains
    # its queue on a cancelled exit as on a normal one.
    assert len(outcomes) == 10
    committed = [o for o in outcomes if isinstance(o, list)]
    assert len(committed) == 10
    async with open_postgres_journal(postgres_dsn, schema=schema) as journal:
        assert len(await journal.persistence_ids()) == len(committed)


async def test_the_connections_are_closed_on_exit(postgres_dsn: str, schema: str) -> None:
    name = f"closing-{schema}"
    count = (
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
        (name,),
    )
    async with open_postgres_journal(postgres_dsn, schema=schema, application_name=name) as j:
        await j.write([event("a", 1)])
        await collect(j.replay("a"))
        assert admin(postgres_dsn, *count) == [(2,)]
    # The server ends a session soon after its client closed it: wait for that.
    with trio.fail_after(20):
        while True:
            if admin(postgres_dsn, *count) == [(0,)]:
                break
            await trio.sleep(0.01)


# -- a small group in one round trip before its COMMIT ----------------------------------------


class RoundTrips:
    """Counts the groups the dialect began and inserted in one round trip."""

    def __init__(self, journal: PostgresJournal, monkeypatch: pytest.MonkeyPatch) -> None:
        self.taken = 0
        dialect = journal._dialect
        original = dialect.begin_and_insert

        def counted(conn: Any, rows: Any) -> Any:
            done = original(conn, rows)
            if done is not None:
                self.taken += 1
            return done

        monkeypatch.setattr(dialect, "begin_and_insert", counted)


def awkward(pid: str, seq: int, **changes: Any) -> PersistentRecord:
    """A record whose fields need escaping as SQL literals."""
    fields: dict[str, Any] = {
        "persistence_id": pid,
        "seq": seq,
        "serializer": "pick'le\\",
        "manifest": "mod.Événement'); DROP TABLE events; --",
        "payload": bytes(range(256)) + b"'\\",
        "tags": frozenset(),
        "writer_id": "/user/a\\b#'x'",
        "timestamp": 1733461234.123456789,
    }
    fields.update(changes)
    return PersistentRecord(**fields)


async def test_a_lone_write_sends_its_rows_with_begin_and_loses_nothing(
    journal: PostgresJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the writer remembers an id's highest seq, a small group of its writes is
    begun and inserted in one round trip, the rows as literals escaped by libpq: every
    field comes back exactly (its digest, checked on every read, covers them all)."""
    trips = RoundTrips(journal, monkeypatch)
    pid = "it's a \\ pid ✓"
    written = [awkward(pid, 1)]
    await journal.write(written)  # (the first write of an id reads its highest seq)
    offsets = []
    for seq in range(2, 6):
        batch = [awkward(pid, seq)]
        offsets += await journal.write(batch)
        written += batch
    assert trips.taken == 4
    stored = await collect(journal.replay(pid))
    assert [attrs.evolve(r, offset=0) for r in stored] == written
    assert [r.offset for r in stored[1:]] == offsets
    with pytest.raises(SequenceConflict, match="already has events up to seq 5"):
        await journal.write([awkward(pid, 5)])  # the fence: the usual path says why


async def test_another_writer_in_between_is_noticed(
    postgres_dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a writer remembers is checked with the offset mark read in the same round
    trip: after another writer stored events, the round trip is rolled back and the
    group runs the usual way (a write the other writer got ahead of fails alone)."""
    async with (
        open_postgres_journal(postgres_dsn, schema=schema) as first,
        open_postgres_journal(postgres_dsn, schema=schema) as second,
    ):
        trips = RoundTrips(first, monkeypatch)
        await first.write([event("x", 1)])
        await first.write([event("x", 2)])
        assert trips.taken == 1
        await second.write([event("y", 1)])  # the mark moves
        await first.write([event("x", 3)])  # tried in one trip, rolled back, run again
        await second.write([event("x", 4, payload=b"second")])
        with pytest.raises(SequenceConflict, match="already has events up to seq 4"):
            # (its INSERT meets the other writer's row: rolled back, run again)
            await first.write([event("x", 4, payload=b"first")])
        assert trips.taken == 2  # x:2 kept, x:3 rolled back (the mark had moved)
        assert [r.payload for r in await collect(first.replay("x"))] == [
            b"x:1",
            b"x:2",
            b"x:3",
            b"second",
        ]
        assert [r.seq for r in await collect(first.replay("y"))] == [1]


async def test_what_has_no_plain_literal_takes_the_usual_round_trips(
    journal: PostgresJournal, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = RoundTrips(journal, monkeypatch)
    await journal.write([awkward("p", 1)])
    unusual = [
        awkward("p", 2, tags=frozenset({"t"})),
        awkward("p", 3, timestamp=math.inf),
        awkward("p", 4),
    ]
    for record in unusual:
        await journal.write([record])
    assert trips.taken == 1  # (only the last one)
    stored = await collect(journal.replay("p"))
    assert [attrs.evolve(r, offset=0) for r in stored][1:] == unusual
