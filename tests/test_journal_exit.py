"""Leaving a journal's block together with the actor system that uses it (issue 14), in
the documented pattern ``async with open_*_journal(...) as journal,
open_system(..., extensions=[Persistence(journal)])``:

- an error raised in the block (``ValueError``, an exception of the user's, an actor
  failure escalated to the top as ``UnhandledFailure``, ``KeyboardInterrupt``) comes out
  as itself, not wrapped in an exception group;
- cancelling a scope around the block shuts down in order, with the journal outliving
  the system: persists in flight commit, actors still recovering do not fail, nothing is
  logged as an error;
- past the drain deadline (a database that hangs), what is left fails with a
  ``JournalFailure`` naming that deadline, and the exit does not hang.

On SQLite (in ``tmp_path``), PostgreSQL (the ``postgres_dsn`` fixture of ``conftest.py``:
skipped without a server) and the in-memory journal (which has no block of its own: the
block is ``open_system`` alone).

SQLite and PostgreSQL work in threads, and virtual time would jump while a thread runs,
so the tests on them run on the real clock and never wait for time: a gate in the
writer's thread holds a group in its transaction until the test releases it. Only the
drain-deadline test uses ``autojump_clock``: there the thread is held, so virtual time
jumps exactly to the deadlines.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
import supervision
from actors.persistence import (
    InMemoryJournal,
    Journal,
    JournalFailure,
    Persistence,
    PersistentActor,
    PersistentRecord,
    open_sqlite_journal,
)

# -- actors and events ----------------------------------------------------------------------


@attrs.frozen
class Added:
    amount: int


class Counter(PersistentActor):
    """Sums ``Added`` events; logs ``("recovered", pid, seq)``, ``("persisted", pid,
    seq)`` once a persist returned and ``("failed", pid, message)`` if one raised."""

    def __init__(self, pid: str, log: list[tuple[str, str, Any]]) -> None:
        self.persistence_id = pid
        self.total = 0
        self.log = log

    def apply(self, event: Any) -> None:
        if isinstance(event, Added):
            self.total += event.amount

    def on_recovery_completed(self) -> None:
        self.log.append(("recovered", self.persistence_id, self.last_seq))

    async def receive(self, message: Any) -> Any:
        match message:
            case ("add", amount):
                try:
                    await self.persist(Added(amount))
                except JournalFailure as error:
                    self.log.append(("failed", self.persistence_id, str(error)))
                    raise
                self.log.append(("persisted", self.persistence_id, self.last_seq))
                return self.last_seq
            case "total":
                return self.total
            case "fail":
                raise RuntimeError(f"{self.persistence_id} failed on purpose")
        self.unhandled(message)
        return None


class Custom(Exception):
    """An exception of the user's own."""


ESCALATE = supervision.OneForOne(decider=lambda error: supervision.Directive.ESCALATE)


def record(pid: str, seq: int) -> PersistentRecord:
    return PersistentRecord(
        persistence_id=pid,
        seq=seq,
        serializer="test",
        manifest="T/1",
        payload=f"{pid}:{seq}".encode(),
        tags=frozenset(),
        writer_id="w1",
        timestamp=1700000000.5,
    )


# -- gates: hold a group in its transaction until the test lets it go -----------------------


class CommitGate:
    """Installed on a SQL journal: the next groups wait in the writer's thread, inside
    ``_commit_group`` (as a database that is slow or hangs would), until :meth:`open`.
    :attr:`entered` is set once a group waits. The wait is bounded (30 s of real time)
    so that a failing test cannot hang the run."""

    def __init__(self, journal: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = trio.Event()
        self._release = threading.Event()
        token = trio.lowlevel.current_trio_token()
        original: Callable[[list[Any]], None] = journal._commit_group

        def held(group: list[Any]) -> None:
            if not self._release.is_set():
                token.run_sync_soon(self.entered.set)
                self._release.wait(30)
            original(group)

        monkeypatch.setattr(journal, "_commit_group", held)

    def open(self) -> None:
        self._release.set()


class GatedMemoryJournal(InMemoryJournal):
    """The in-memory journal, with a gate like :class:`CommitGate` on the operations
    that go through a SQL journal's writer (``write`` and ``highest_seq``)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = trio.Event()
        self._closed_gate = False
        self._release = trio.Event()

    def close_gate(self) -> GatedMemoryJournal:
        self._closed_gate = True
        return self

    def open(self) -> None:
        self._release.set()

    async def _pass(self) -> None:
        if self._closed_gate:
            self.entered.set()
            await self._release.wait()

    async def write(self, batch: Sequence[PersistentRecord]) -> list[int]:
        await self._pass()
        return await super().write(batch)

    async def highest_seq(self, persistence_id: str) -> int:
        await self._pass()
        return await super().highest_seq(persistence_id)


# -- the backends ---------------------------------------------------------------------------


@attrs.define
class Backend:
    """How a test opens the journal (again and again: the same one each time) and holds
    its writes."""

    name: str
    open: Callable[[], AbstractAsyncContextManager[Journal]]
    gate: Callable[[Journal, pytest.MonkeyPatch], CommitGate | GatedMemoryJournal]


def _sqlite(tmp_path: Path) -> Backend:
    path = tmp_path / "journal.db"
    return Backend("sqlite", lambda: open_sqlite_journal(path), CommitGate)


def _memory() -> Backend:
    journal = GatedMemoryJournal()

    @asynccontextmanager
    async def same() -> AsyncIterator[Journal]:
        yield journal

    def gate(opened: Journal, monkeypatch: pytest.MonkeyPatch) -> GatedMemoryJournal:
        assert opened is journal
        return journal.close_gate()

    return Backend("memory", same, gate)


@pytest.fixture
def postgres(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """A fresh schema on the server of ``postgres_dsn`` (skipped as it says), dropped
    afterwards."""
    dsn: str = request.getfixturevalue("postgres_dsn")
    import psycopg
    from psycopg import sql

    from actors.persistence._postgres import open_postgres_journal

    schema = f"test_exit_{uuid.uuid4().hex[:16]}"
    yield Backend("postgres", lambda: open_postgres_journal(dsn, schema=schema), CommitGate)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return _sqlite(tmp_path)
    if request.param == "postgres":
        chosen: Backend = request.getfixturevalue("postgres")
        return chosen
    return _memory()


@pytest.fixture(params=["sqlite", "postgres"])
def sql_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return _sqlite(tmp_path)
    chosen: Backend = request.getfixturevalue("postgres")
    return chosen


def error_records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# -- errors from the block come out as themselves -------------------------------------------


@pytest.mark.parametrize(
    "make_error",
    [lambda: ValueError("boom"), lambda: Custom("mine"), KeyboardInterrupt],
    ids=["ValueError", "custom", "KeyboardInterrupt"],
)
async def test_an_error_raised_in_the_block_comes_out_as_itself(
    backend: Backend, make_error: Callable[[], BaseException]
) -> None:
    error = make_error()
    log: list[tuple[str, str, Any]] = []

    async def run() -> None:
        async with (
            backend.open() as journal,
            actors.open_system("exit-error", extensions=[Persistence(journal)]) as system,
        ):
            ref = system.spawn(Counter, "c", log, name="c")
            assert await ref.ask(("add", 5)) == 1
            raise error

    with pytest.raises(type(error)) as info:
        await run()
    assert info.value is error  # itself, not a group holding it
    async with backend.open() as journal:
        assert await journal.highest_seq("c") == 1


async def test_an_actor_failure_escalated_to_the_top_comes_out_as_unhandled_failure(
    backend: Backend,
) -> None:
    log: list[tuple[str, str, Any]] = []

    async def run() -> None:
        async with (
            backend.open() as journal,
            actors.open_system(
                "exit-escalated", extensions=[Persistence(journal)], guardian_strategy=ESCALATE
            ) as system,
        ):
            ref = system.spawn(Counter, "c", log, name="c")
            assert await ref.ask(("add", 5)) == 1
            ref.tell("fail")
            await trio.sleep_forever()

    with pytest.raises(actors.UnhandledFailure) as info:
        await run()
    assert type(info.value) is actors.UnhandledFailure
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "c failed on purpose" in str(info.value.__cause__)
    assert "/user/c" in str(info.value)


async def test_ctrl_c_landing_in_the_writer_comes_out_as_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer task itself raising (here KeyboardInterrupt, as Ctrl-C may land in it):
    it wins over the block's error, comes out as itself, and names the block's error."""

    def interrupted(group: list[Any]) -> None:
        raise KeyboardInterrupt

    async def run() -> None:
        async with open_sqlite_journal(tmp_path / "j.db") as journal:
            monkeypatch.setattr(journal, "_commit_group", interrupted)
            await journal.write([record("a", 1)])

    with pytest.raises(KeyboardInterrupt) as info:
        await run()
    assert type(info.value) is KeyboardInterrupt
    notes = "\n".join(getattr(info.value, "__notes__", []))
    assert f"the block serving the SQLite journal {tmp_path / 'j.db'} had raised" in notes
    assert "stopped during its transaction (outcome unknown)" in notes


# -- a cancellation shuts down in order, the journal last -----------------------------------


async def test_cancelling_around_the_journal_and_the_system_shuts_down_in_order(
    backend: Backend, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Five actors mid-persist (the first one's write in its transaction, the others
    queued behind it) and three recovering (their reads done or not, their
    ``highest_seq`` behind the same transaction) when the scope around both blocks is
    cancelled: every persist commits and returns, as on a normal exit, the recovering
    actors do not fail, nothing is logged as an error."""
    caplog.set_level(logging.INFO)
    log: list[tuple[str, str, Any]] = []
    async with (
        backend.open() as journal,
        actors.open_system("seed", extensions=[Persistence(journal)]) as system,
    ):
        for i in range(3):
            ref = system.spawn(Counter, f"r{i}", log, name=f"r{i}")
            for amount in (1, 2, 3):
                await ref.ask(("add", amount))
    log.clear()

    with trio.CancelScope() as scope:
        async with (
            backend.open() as journal,
            actors.open_system("cancelled", extensions=[Persistence(journal)]) as system,
        ):
            writers = [system.spawn(Counter, f"w{i}", log, name=f"w{i}") for i in range(5)]
            for writer in writers:
                assert await writer.ask("total") == 0  # recovered (nothing to replay)
            gate = backend.gate(journal, monkeypatch)
            writers[0].tell(("add", 1))
            await gate.entered.wait()  # w0's write is in its transaction
            for writer in writers[1:]:
                writer.tell(("add", 1))
            for i in range(3):
                system.spawn(Counter, f"r{i}", log, name=f"r{i}")
            await trio.testing.wait_all_tasks_blocked()
            assert [entry for entry in log if entry[0] != "recovered"] == []
            assert not [entry for entry in log if entry[1].startswith("r")]  # recovering
            scope.cancel()
            gate.open()
            await trio.sleep_forever()
    assert scope.cancelled_caught

    assert error_records(caplog) == []
    assert [entry for entry in log if entry[0] == "failed"] == []
    persisted = sorted((pid, seq) for kind, pid, seq in log if kind == "persisted")
    assert persisted == [(f"w{i}", 1) for i in range(5)]  # committed, as on a normal exit
    recovered = [entry for entry in log if entry[0] == "recovered" and entry[1][0] == "r"]
    assert all(seq == 3 for _, _, seq in recovered)
    async with backend.open() as journal:
        for pid, seq in persisted:
            assert await journal.highest_seq(pid) == seq
            assert [r.seq async for r in journal.replay(pid)] == [seq]
        for i in range(3):
            assert await journal.highest_seq(f"r{i}") == 3


async def test_cancelling_around_the_journal_alone_commits_what_is_queued(
    sql_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Direct callers of the journal (no system): writes queued when the block is
    cancelled are committed before the block is left; none fails."""
    outcomes: dict[str, object] = {}

    async def write(journal: Journal, pid: str) -> None:
        try:
            outcomes[pid] = await journal.write([record(pid, 1)])
        except JournalFailure as error:  # pragma: no cover - what the test rules out
            outcomes[pid] = error

    async with trio.open_nursery() as outer:
        with trio.CancelScope() as scope:
            async with sql_backend.open() as journal:
                gate = sql_backend.gate(journal, monkeypatch)
                outer.start_soon(write, journal, "p0")
                await gate.entered.wait()
                for i in range(1, 6):
                    outer.start_soon(write, journal, f"p{i}")
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
                gate.open()
                await trio.sleep_forever()
        assert scope.cancelled_caught
        # Left only once everything queued had committed.
        assert sorted(outcomes) == [f"p{i}" for i in range(6)]
    assert all(isinstance(outcome, list) for outcome in outcomes.values()), outcomes
    async with sql_backend.open() as journal:
        assert await journal.persistence_ids() == [f"p{i}" for i in range(6)]


# -- a database that hangs: bounded exit ----------------------------------------------------


async def test_past_the_drain_deadline_what_is_left_fails_naming_it(
    sql_backend: Backend,
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The transaction in flight hangs: 30 s after the block is left, its write fails
    (outcome unknown) and the queued ones too (nothing stored), each naming the
    deadline; closing waits 30 s more for the hung thread, then the exit returns. The
    abandoned transaction finishes on its own once the database answers, and only then
    are the connections closed."""
    outcomes: dict[str, object] = {}
    closed = threading.Event()

    async def write(journal: Journal, pid: str) -> None:
        try:
            outcomes[pid] = await journal.write([record(pid, 1)])
        except JournalFailure as error:
            outcomes[pid] = error

    async with trio.open_nursery() as outer:
        async with sql_backend.open() as journal:
            close_connections = journal._close_connections  # type: ignore[attr-defined]

            def close_and_say() -> None:
                close_connections()
                closed.set()

            monkeypatch.setattr(journal, "_close_connections", close_and_say)
            gate = sql_backend.gate(journal, monkeypatch)
            outer.start_soon(write, journal, "hung")
            await gate.entered.wait()
            outer.start_soon(write, journal, "queued1")
            outer.start_soon(write, journal, "queued2")
            await trio.testing.wait_all_tasks_blocked()
            left_at = trio.current_time()
        elapsed = trio.current_time() - left_at
    assert elapsed == pytest.approx(60)  # 30 s to drain, 30 s to close, then given up
    where = str(journal.where)  # type: ignore[attr-defined]
    hung = outcomes["hung"]
    assert isinstance(hung, JournalFailure)
    assert str(hung) == (
        f"write of 'hung' seq 1..1: the writer of the {journal._journal_name} was still "  # type: ignore[attr-defined]
        "running at the drain deadline (30 s after it closed) during its transaction "
        "(outcome unknown)"
    )
    assert where in str(hung)
    for pid in ("queued1", "queued2"):
        queued = outcomes[pid]
        assert isinstance(queued, JournalFailure)
        assert str(queued) == (
            f"write of {pid!r} seq 1..1: the {journal._journal_name} reached the drain "  # type: ignore[attr-defined]
            "deadline (30 s after it closed) before this operation ran; nothing was stored"
        )

    assert not closed.is_set()  # the close waits for the hung transaction
    gate.open()
    assert await trio.to_thread.run_sync(closed.wait, 30)
    async with sql_backend.open() as journal:
        # The abandoned transaction committed once the database answered.
        assert await journal.persistence_ids() == ["hung"]
