"""Crash safety with real processes: ``kill -9`` loops on SQLite and PostgreSQL, a kill in
the middle of a large atomic batch, and torn or corrupt SQLite files.

The child process is ``crash_writer.py``: it persists events as fast as it can and
prints each acknowledged sequence number; after a kill the next child prints what it
recovered. Kill points are drawn from a seeded ``random.Random`` and counted in output
lines (never wall-clock sleeps); the seed is in every failure message, and
``ACTORS_CRASH_SEED`` replays one (``ACTORS_CRASH_ITERATIONS`` changes the length of the
kill loops, for a longer soak).
"""

from __future__ import annotations

import itertools
import os
import queue
import random
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pytest
import trio
from crash_writer import Appended, Writer, checksum_of, next_checksum

import actors
from actors import ActorFailed
from actors.persistence import (
    Journal,
    JournalFailure,
    Persistence,
    PersistentRecord,
    RecoveryFailed,
    Serialization,
    open_sqlite_journal,
)

pytestmark = pytest.mark.crash

WRITER_SCRIPT = Path(__file__).with_name("crash_writer.py")
LINE_TIMEOUT = 60.0  # a safety net only: a healthy child answers in well under a second
SEED = int(os.environ.get("ACTORS_CRASH_SEED", "0")) or random.SystemRandom().randrange(2**32)
ITERATIONS = int(os.environ.get("ACTORS_CRASH_ITERATIONS", "0"))


def iterations(default: int) -> int:
    return ITERATIONS or default


# -- the child process ------------------------------------------------------------------------


_PYCACHE: list[Path] = []


@pytest.fixture(scope="module", autouse=True)
def _children_pycache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    _PYCACHE.append(tmp_path_factory.mktemp("pycache"))
    yield
    _PYCACHE.clear()


def child_environment() -> dict[str, str]:
    """The environment of a child: the test's, but with bytecode caching on, in a
    directory of the test session (with ``PYTHONDONTWRITEBYTECODE`` set, each child
    would compile the library's modules from source again: about 0.1 s per kill)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    if _PYCACHE:
        env["PYTHONPYCACHEPREFIX"] = str(_PYCACHE[-1])
    return env


class Child:
    """A ``crash_writer.py --wait`` process; a thread reads its stdout lines into a
    queue. It imports its modules, then waits for :meth:`go` to open the journal."""

    def __init__(self, args: Sequence[str], stderr_path: Path, seed: int) -> None:
        self.seed = seed
        self.stderr_path = stderr_path
        self._stderr: IO[bytes] = stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER_SCRIPT), "--wait", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=child_environment(),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        for raw in stdout:
            if raw.endswith(b"\n"):  # a line cut by the kill is not a report
                self.lines.put(raw.decode().rstrip("\n"))
        self.lines.put(None)

    def go(self) -> None:
        """Let the child open the journal and start writing."""
        stdin = self.proc.stdin
        assert stdin is not None
        stdin.write(b"go\n")
        stdin.close()

    def problem(self, what: str) -> str:
        self._stderr.flush()
        stderr = self.stderr_path.read_text(errors="replace")[-3000:]
        return f"{what} (seed {self.seed}; stderr of pid {self.proc.pid}:\n{stderr})"

    def next_line(self) -> str | None:
        """The next line of output; ``None`` once the process has closed its stdout."""
        try:
            return self.lines.get(timeout=LINE_TIMEOUT)
        except queue.Empty:
            raise AssertionError(self.problem(f"no output for {LINE_TIMEOUT} s")) from None

    def kill(self) -> list[str]:
        """SIGKILL the process (if it still runs); return the lines it wrote before."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=LINE_TIMEOUT)
        self._reader.join(timeout=LINE_TIMEOUT)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()
        self._stderr.close()
        rest: list[str] = []
        while (line := self.lines.get_nowait()) is not None:
            rest.append(line)
        return rest


class Children:
    """Children started one after the other on the same journal, each with the same
    arguments; the next one is already started (importing) while the current one runs,
    so that a kill loop does not wait for the interpreter's start-up after each kill."""

    def __init__(self, args: Sequence[str], directory: Path, seed: int) -> None:
        self.args = list(args)
        self.directory = directory
        self.seed = seed
        self.started = 0
        self._next: Child | None = None

    def _spawn(self) -> Child:
        self.started += 1
        return Child(self.args, self.directory / f"child-{self.started}.stderr", self.seed)

    def next(self) -> Child:
        """The next child, told to go (the one after it starts importing)."""
        child = self._next if self._next is not None else self._spawn()
        self._next = None
        child.go()
        self._next = self._spawn()
        return child

    def close(self) -> None:
        """Kill the child still waiting (it never opened the journal)."""
        if self._next is not None:
            self._next.kill()
            self._next = None


class Ledger:
    """What the kill loop knows: per id, the highest seq known to be committed (acked,
    or recovered by a child), and the checks every line of output must pass."""

    def __init__(self, pids: Sequence[str], seed: int) -> None:
        self.seed = seed
        self.durable = dict.fromkeys(pids, 0)
        self.acked = dict.fromkeys(pids, 0)
        self._current: dict[str, int] = {}
        self._checksums = [0]

    def checksum(self, count: int) -> int:
        while len(self._checksums) <= count:
            self._checksums.append(next_checksum(self._checksums[-1], len(self._checksums)))
        return self._checksums[count]

    def start(self) -> None:
        """A new child: its ids report ``recovered`` before any ``ack``."""
        self._current = {}

    def see(self, line: str, child: Child) -> str:
        """Check one line of output; return its kind."""
        kind, _, rest = line.partition(" ")
        if kind == "failed" or kind not in {"opened", "recovered", "ack", "writing"}:
            raise AssertionError(child.problem(f"the child reported: {line!r}"))
        if kind == "recovered":
            pid, seq_text, checksum_text = rest.split()
            seq = int(seq_text)
            assert seq >= self.durable[pid], child.problem(
                f"{pid} recovered {seq} events, but {self.durable[pid]} were committed "
                f"(acknowledged: {self.acked[pid]})"
            )
            assert int(checksum_text) == self.checksum(seq), child.problem(
                f"{pid}: wrong checksum of the {seq} recovered events"
            )
            self._current[pid] = self.durable[pid] = seq
        elif kind == "ack":
            pid, seq_text = rest.split()
            seq = int(seq_text)
            assert pid in self._current, child.problem(f"{pid} acked {seq} before recovering")
            assert seq > self._current[pid], child.problem(
                f"{pid} acked {seq} after {self._current[pid]}"
            )
            self._current[pid] = self.durable[pid] = self.acked[pid] = seq
        return kind


def run_kill_loop(
    tmp_path: Path,
    journal_args: Sequence[str],
    *,
    writers: int,
    count: int,
    max_acks: int,
) -> Ledger:
    """Start ``count`` children one after the other on the same journal and SIGKILL
    each at a random point: while starting (before any output), during the recoveries,
    or after a random number of acks. Every line is checked by the :class:`Ledger`."""
    rng = random.Random(SEED)
    pids = [f"pid-{i}" for i in range(writers)]
    ledger = Ledger(pids, SEED)
    args = [*journal_args, "--writers", str(writers)]
    stats = {"starting": 0, "recovering": 0, "writing": 0}
    children = Children(args, tmp_path, SEED)
    try:
        for iteration in range(count):
            kill_one(children, ledger, rng, stats, iteration, writers, max_acks)
    finally:
        children.close()
    print(f"kill loop (seed {SEED}): {count} kills {stats}; committed {ledger.durable}")
    assert all(stats.values()), f"seed {SEED}: not every kind of kill point was drawn: {stats}"
    return ledger


def kill_one(
    children: Children,
    ledger: Ledger,
    rng: random.Random,
    stats: dict[str, int],
    iteration: int,
    writers: int,
    max_acks: int,
) -> None:
    """One iteration of :func:`run_kill_loop`."""
    draw = rng.random()
    if draw < 0.05:
        stop_after, where = 0, "starting"
    elif draw < 0.25:
        stop_after, where = rng.randint(1, 1 + writers), "recovering"
    else:
        stop_after, where = 1 + writers + rng.randint(1, max_acks), "writing"
    ledger.start()
    child = children.next()
    try:
        for _ in range(stop_after):
            line = child.next_line()
            assert line is not None, child.problem(
                f"iteration {iteration}: the child exited with {child.proc.wait()}"
            )
            ledger.see(line, child)
    finally:
        rest = child.kill()
    for line in rest:
        ledger.see(line, child)
    assert child.proc.returncode == -signal.SIGKILL, child.problem(
        f"iteration {iteration}: exit status {child.proc.returncode}"
    )
    stats[where] += 1


async def check_journal(journal: Journal, durable: dict[str, int], seed: int) -> dict[str, int]:
    """Every id's events are exactly ``Appended(pid, 1..N)`` with seq == n, no gap,
    N >= what was committed; and a :class:`Writer` recovers them. Returns the N."""
    serialization = Serialization()
    found: dict[str, int] = {}
    for pid, committed in durable.items():
        expected = 1
        async for record in journal.replay(pid):
            assert record.seq == expected, f"seed {seed}: {pid}: seq {record.seq} after {expected}"
            event = serialization.deserialize(record.serializer, record.manifest, record.payload)
            assert event == Appended(pid, expected), f"seed {seed}: {pid}: {event!r}"
            expected += 1
        found[pid] = expected - 1
        assert found[pid] >= committed, f"seed {seed}: {pid}: {found[pid]} < {committed} committed"
        assert await journal.highest_seq(pid) == found[pid]
    async with actors.open_system("check", extensions=[Persistence(journal)]) as system:
        for index, pid in enumerate(durable):
            out: list[str] = []
            writer = system.spawn(Writer, pid, 1, out.append, name=f"w{index}")
            assert await writer.ask("state") == (found[pid], checksum_of(found[pid]))
            assert out == [f"recovered {pid} {found[pid]} {checksum_of(found[pid])}"]
    return found


# -- kill -9 loops ----------------------------------------------------------------------------


@pytest.mark.slow
def test_sqlite_kill_loop_loses_no_acknowledged_event(tmp_path: Path) -> None:
    path = tmp_path / "journal.db"
    ledger = run_kill_loop(
        tmp_path, ["--sqlite", str(path)], writers=4, count=iterations(160), max_acks=300
    )

    async def check() -> None:
        async with open_sqlite_journal(path, integrity_check=True) as journal:
            await check_journal(journal, ledger.durable, SEED)

    trio.run(check)


@pytest.mark.slow
def test_sqlite_kill_during_a_large_batch_keeps_it_all_or_nothing(tmp_path: Path) -> None:
    """Two writers persist 5,000 events per ``persist_all``; the child is killed as soon
    as it announces a batch going to the journal (while SQLite inserts and commits it).
    After recovery every id holds a whole number of batches: all of the batch or none."""
    rng = random.Random(SEED)
    path = tmp_path / "journal.db"
    batch = 5000
    pids = ["pid-0", "pid-1"]
    ledger = Ledger(pids, SEED)
    args = ["--sqlite", str(path), "--writers", "2", "--batch", str(batch), "--announce"]
    outcomes = {"committed": 0, "not committed": 0}
    children = Children(args, tmp_path, SEED)
    try:
        for _ in range(iterations(8)):
            kill_in_a_batch(children, ledger, rng, batch, outcomes)
    finally:
        children.close()

    async def check() -> None:
        async with open_sqlite_journal(path, integrity_check=True) as journal:
            found = await check_journal(journal, ledger.durable, SEED)
        assert all(n % batch == 0 for n in found.values()), found

    trio.run(check)
    print(f"batch kills (seed {SEED}): {outcomes}")


def kill_in_a_batch(
    children: Children, ledger: Ledger, rng: random.Random, batch: int, outcomes: dict[str, int]
) -> None:
    """Kill a child right after it announced its k-th batch (k random, 1..4), or (one
    time in four) one or two lines of output later; start the next one and check what it
    recovered: whole batches only."""
    ledger.start()
    child = children.next()
    announced: tuple[str, int, int] | None = None
    try:
        writes = rng.randint(1, 4)
        later = rng.choice([0, 0, 0, rng.randint(1, 2)])
        while writes or later:
            line = child.next_line()
            assert line is not None, child.problem("the child exited")
            kind = ledger.see(line, child)
            if not writes:
                later -= 1
            elif kind == "writing":
                _, who, first_text, last_text = line.split()
                announced = (who, int(first_text), int(last_text))
                writes -= 1
    finally:
        rest = child.kill()
    for line in rest:
        ledger.see(line, child)
    assert announced is not None
    pid, first, last = announced
    assert (first - 1) % batch == 0
    assert last == first + batch - 1
    # The next child (or the final check) tells whether the announced batch made it.
    ledger.start()
    child = children.next()
    try:
        recovered: dict[str, int] = {}
        while len(recovered) < len(ledger.durable):
            line = child.next_line()
            assert line is not None, child.problem("the child exited")
            if ledger.see(line, child) == "recovered":
                recovered[line.split()[1]] = int(line.split()[2])
    finally:
        rest = child.kill()
    for line in rest:
        ledger.see(line, child)
    for seq in recovered.values():
        assert seq % batch == 0, f"seed {SEED}: a partial batch was recovered: {recovered}"
    outcomes["committed" if recovered[pid] >= last else "not committed"] += 1


# -- PostgreSQL -------------------------------------------------------------------------------


@pytest.mark.slow
def test_postgres_kill_loop_loses_no_acknowledged_event(tmp_path: Path, postgres_dsn: str) -> None:
    import psycopg
    from psycopg import sql

    from actors.persistence._postgres import open_postgres_journal

    schema = f"crash_{uuid.uuid4().hex[:16]}"
    try:
        ledger = run_kill_loop(
            tmp_path,
            ["--postgres", postgres_dsn, "--schema", schema],
            writers=4,
            count=iterations(100),
            max_acks=300,
        )

        async def check() -> None:
            async with open_postgres_journal(postgres_dsn, schema=schema) as journal:
                await check_journal(journal, ledger.durable, SEED)

        trio.run(check)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


# -- torn and corrupt SQLite files ------------------------------------------------------------

EVENTS_PER_ID = 3000
CORRUPT_PIDS = ("pid-0", "pid-1")


@pytest.fixture(scope="module")
def intact_journal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpointed SQLite journal (no -wal file) with 3,000 events for each of two
    ids, written through the journal API: about 220 pages of 4 KiB."""
    path = tmp_path_factory.mktemp("intact") / "journal.db"
    serialization = Serialization()

    async def make() -> None:
        async with open_sqlite_journal(path) as journal:
            for pid in CORRUPT_PIDS:
                for start in range(1, EVENTS_PER_ID + 1, 500):
                    records = []
                    for seq in range(start, start + 500):
                        serializer, manifest, payload = serialization.serialize(Appended(pid, seq))
                        records.append(PersistentRecord(pid, seq, serializer, manifest, payload))
                    await journal.write(records)

    trio.run(make)
    assert not Path(f"{path}-wal").exists()
    return path


def damaged_copy(intact: Path, directory: Path) -> Path:
    directory.mkdir()
    path = directory / "journal.db"
    shutil.copyfile(intact, path)
    return path


def run_check_tool(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "actors.persistence", "--sqlite", str(path), "check"],
        capture_output=True,
        text=True,
        timeout=LINE_TIMEOUT,
        check=False,
    )


def assert_names_the_file(error: BaseException, path: Path) -> None:
    """``error`` is a JournalFailure naming ``path``, caused by SQLite's own error."""
    assert isinstance(error, JournalFailure), repr(error)
    assert str(path) in str(error), str(error)
    assert isinstance(error.__cause__, sqlite3.DatabaseError), repr(error.__cause__)


async def recover_or_fail(path: Path) -> dict[str, int | BaseException]:
    """Open the journal at ``path`` and recover a :class:`Writer` for each id: its
    number of events (all checked: 1..N, each ``Appended(pid, seq)``), or the error
    that stopped it: the JournalFailure of opening the file (the same for every id), or
    the RecoveryFailed its actor failed with (which its supervisor retries, then gives
    up: the system ends with UnhandledFailure)."""
    try:
        async with open_sqlite_journal(path) as journal:
            failed: list[Any] = []
            results: dict[str, int | BaseException] = {}
            try:
                async with actors.open_system("probe", extensions=[Persistence(journal)]) as system:
                    system.events.subscribe(system.spawn(Collect, failed), ActorFailed)
                    for index, pid in enumerate(CORRUPT_PIDS):
                        writer = system.spawn(Writer, pid, 1, list[str]().append, name=f"w{index}")
                        with trio.fail_after(LINE_TIMEOUT):
                            seq, checksum = await writer.ask("state")
                        assert checksum == checksum_of(seq)
                        results[pid] = seq
            except actors.UnhandledFailure:
                assert failed, "the system failed, but no actor did"
            for event in failed:
                pid = CORRUPT_PIDS[int(event.ref.path.rsplit("w", 1)[1])]
                results[pid] = event.error
            return results
    except JournalFailure as error:
        return dict.fromkeys(CORRUPT_PIDS, error)


class Collect(actors.Actor):
    def __init__(self, into: list[Any]) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.append(message)


def assert_all_or_a_clear_error(results: dict[str, int | BaseException], path: Path) -> None:
    """Each id recovered all its events, or failed with an error naming the file."""
    for pid, result in results.items():
        if isinstance(result, int):
            assert result == EVENTS_PER_ID, f"{pid}: silently recovered only {result} events"
        elif isinstance(result, RecoveryFailed):
            assert result.retryable, repr(result)
            assert result.persistence_id == pid
            assert_names_the_file(result.__cause__ or result, path)
        else:
            assert_names_the_file(result, path)


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda size, page: 50, id="inside-the-header"),
        pytest.param(lambda size, page: page, id="after-the-first-page"),
        pytest.param(lambda size, page: size // page // 2 * page, id="half-page-aligned"),
        pytest.param(lambda size, page: size // 2 + 100, id="half-not-page-aligned"),
        pytest.param(lambda size, page: size - page, id="one-page-short"),
        pytest.param(lambda size, page: size - 1000, id="inside-the-last-page"),
    ],
)
def test_a_truncated_sqlite_file_is_a_clear_error_not_a_shorter_history(
    intact_journal: Path, tmp_path: Path, cut: Any
) -> None:
    path = damaged_copy(intact_journal, tmp_path / "cut")
    size = path.stat().st_size
    with sqlite3.connect(intact_journal) as conn:
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    conn.close()
    os.truncate(path, cut(size, page))
    results = trio.run(recover_or_fail, path)
    assert_all_or_a_clear_error(results, path)
    assert any(not isinstance(r, int) for r in results.values()), results
    check = run_check_tool(path)
    assert check.returncode in (1, 2), (check.stdout, check.stderr)  # problems / unreadable
    assert "Traceback" not in check.stderr, check.stderr


def test_garbage_over_a_page_is_a_clear_error_or_harmless(
    intact_journal: Path, tmp_path: Path
) -> None:
    """Random bytes over one page (the root of the events table, the root of its
    (persistence_id, seq) index, and random others): recovery either fails with an error
    naming the file, or every event is intact (the page was not one replay reads, such
    as the tags index); the check tool reports the damage either way."""
    rng = random.Random(SEED)
    with sqlite3.connect(intact_journal) as conn:
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
        roots = dict(conn.execute("SELECT name, rootpage FROM sqlite_master").fetchall())
    conn.close()
    chosen = [roots["events"], roots["sqlite_autoindex_events_1"]]
    chosen += rng.sample(range(2, pages + 1), 6)
    outcomes = []
    for index, number in enumerate(chosen):
        path = damaged_copy(intact_journal, tmp_path / f"page-{index}")
        with path.open("r+b") as file:
            file.seek((number - 1) * page_size)
            file.write(rng.randbytes(page_size))
        results = trio.run(recover_or_fail, path)
        assert_all_or_a_clear_error(results, path)
        outcomes.append((number, sorted(type(r).__name__ for r in results.values())))
        check = run_check_tool(path)
        assert check.returncode in (1, 2), (SEED, number, check.stdout, check.stderr)
        assert "Traceback" not in check.stderr, check.stderr
    # Damage to the table or its index is never harmless.
    for number, kinds in outcomes[:2]:
        assert "int" not in kinds, (SEED, number, kinds)


# -- a torn write-ahead log -------------------------------------------------------------------

WAL_HEADER = 32
WAL_FRAME_HEADER = 24


def wal_commit_ends(wal: bytes) -> list[int]:
    """The byte offsets where the valid commit frames of a SQLite WAL file end, read as
    SQLite reads it (https://sqlite.org/fileformat2.html#walformat): frames count while
    their salts match the header's and their cumulative checksums are right; a commit
    frame is one whose "database size" field is not 0."""
    if len(wal) < WAL_HEADER:
        return []
    magic, _, page_size, _, salt1, salt2, check1, check2 = struct.unpack(">8I", wal[:32])
    assert magic in (0x377F0682, 0x377F0683), hex(magic)
    order = ">" if magic & 1 else "<"

    def checksum(data: bytes, s1: int, s2: int) -> tuple[int, int]:
        words = struct.unpack(f"{order}{len(data) // 4}I", data)
        for index in range(0, len(words), 2):
            s1 = (s1 + words[index] + s2) & 0xFFFFFFFF
            s2 = (s2 + words[index + 1] + s1) & 0xFFFFFFFF
        return s1, s2

    s1, s2 = checksum(wal[:24], 0, 0)
    assert (s1, s2) == (check1, check2), "the WAL header's checksum is wrong"
    ends: list[int] = []
    offset = WAL_HEADER
    frame_size = WAL_FRAME_HEADER + page_size
    while offset + frame_size <= len(wal):
        header = wal[offset : offset + WAL_FRAME_HEADER]
        _, commit_size, frame_salt1, frame_salt2, frame_check1, frame_check2 = struct.unpack(
            ">6I", header
        )
        if (frame_salt1, frame_salt2) != (salt1, salt2):
            break
        s1, s2 = checksum(header[:8], s1, s2)
        s1, s2 = checksum(wal[offset + WAL_FRAME_HEADER : offset + frame_size], s1, s2)
        if (s1, s2) != (frame_check1, frame_check2):
            break
        offset += frame_size
        if commit_size:
            ends.append(offset)
    return ends


async def stored_counts(path: Path, pids: Sequence[str]) -> tuple[int, ...]:
    """Open the journal (SQLite recovers its WAL) and check every id's events are
    ``Appended(pid, 1..N)`` without a gap; the N of each id."""
    async with open_sqlite_journal(path) as journal:
        found = await check_journal(journal, dict.fromkeys(pids, 0), SEED)
    return tuple(found[pid] for pid in pids)


def test_a_torn_wal_rolls_back_to_its_last_complete_commit(tmp_path: Path) -> None:
    """Kill a writer (three times), take its database and its -wal file as the kill
    left them, cut a copy of the -wal at random offsets and at commit-frame boundaries,
    and reopen each copy: the journal holds a gapless prefix of every id's events,
    exactly the state of the last commit frame left whole (a torn commit frame is rolled
    back entirely), never fails to open or to recover, and with the whole -wal it holds
    every acknowledged event."""
    rng = random.Random(SEED)
    path = tmp_path / "journal.db"
    pids = [f"pid-{i}" for i in range(4)]
    ledger = Ledger(pids, SEED)
    children = Children(["--sqlite", str(path), "--writers", "4"], tmp_path, SEED)
    try:
        for kill in range(3):
            ledger.start()
            child = children.next()
            try:
                acks = 0
                goal = rng.randint(20, 400)
                while acks < goal:
                    line = child.next_line()
                    assert line is not None, child.problem("the child exited")
                    acks += ledger.see(line, child) == "ack"
            finally:
                rest = child.kill()
            for line in rest:
                ledger.see(line, child)
            wal = Path(f"{path}-wal").read_bytes()
            ends = wal_commit_ends(wal)
            assert ends, f"seed {SEED}: no commit in the WAL of the killed writer"
            cuts = {len(wal), *rng.sample(range(len(wal) + 1), 6)}
            for end in rng.sample(ends, min(4, len(ends))):
                cuts |= {end, end - 1}
            states: dict[int, tuple[int, ...]] = {}
            for cut in sorted(cuts):
                copy = tmp_path / f"torn-{kill}-{cut}"
                copy.mkdir()
                shutil.copyfile(path, copy / "journal.db")
                (copy / "journal.db-wal").write_bytes(wal[:cut])
                state = trio.run(stored_counts, copy / "journal.db", pids)
                whole = sum(1 for end in ends if end <= cut)  # commit frames left whole
                assert states.setdefault(whole, state) == state, (
                    f"seed {SEED}: WAL cut at {cut}: {state}, but {states[whole]} with the "
                    f"same {whole} whole commits"
                )
            # Every commit after the first (which may be the schema's) adds events.
            by_commits = [states[whole] for whole in sorted(states) if whole >= 1]
            for before, after in itertools.pairwise(by_commits):
                assert all(a <= b for a, b in zip(before, after, strict=True)), (
                    f"seed {SEED}: a later commit holds fewer events: {by_commits}"
                )
                assert sum(before) < sum(after), f"seed {SEED}: {by_commits}"
            everything = states[len(ends)]
            assert all(n >= ledger.durable[pid] for n, pid in zip(everything, pids, strict=True)), (
                f"seed {SEED}: {everything} lacks acknowledged events {ledger.durable}"
            )
    finally:
        children.close()
