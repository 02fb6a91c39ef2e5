"""A SQLite journal that this process cannot write (issue 14): ``open_sqlite_journal``
refuses it when it opens (``JournalNotWritable``, a ``JournalFailure``) instead of
failing at the first write, and ``python -m actors.persistence`` still reads it, from a
private copy when SQLite cannot even read it in place (a WAL journal in a read-only
directory).

Honesty as root: root ignores file modes, so a ``chmod 0444`` alone would test nothing.
The tests that need a read-only file or directory run their journal code in a child
process that obeys the modes: as root, ``setpriv`` starts it with ``CAP_DAC_OVERRIDE``
and ``CAP_DAC_READ_SEARCH`` dropped (same uid, no override of the modes), and each child
first shows that it really cannot write the file or directory (the test asserts that);
without ``setpriv`` they are skipped with the reason. Two more tests need no such
child: a connection that SQLite itself opens read-only (a ``mode=ro`` URI), and the
CLI's fallback driven by the exact error SQLite gives in a read-only directory.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from actors.persistence import (
    JournalFailure,
    JournalNotWritable,
    PersistentRecord,
    Serialization,
    _sqlite,
    open_sqlite_journal,
)
from actors.persistence._cli import main as cli_main

PROG = "python -m actors.persistence"


# -- helpers -------------------------------------------------------------------------------


def _records(pid: str, seqs: range) -> list[PersistentRecord]:
    serialization = Serialization()
    records = []
    for seq in seqs:
        serializer, manifest, payload = serialization.serialize({"n": seq})
        records.append(
            PersistentRecord(
                persistence_id=pid,
                seq=seq,
                serializer=serializer,
                manifest=manifest,
                payload=payload,
                tags=frozenset(),
                writer_id="w1",
                timestamp=1700000000.5,
            )
        )
    return records


def _make_journal(path: Path, events: int = 3) -> None:
    """A journal at ``path`` with ``events`` events of id ``acct``, closed cleanly (its
    events are in the database file, no -wal file is left)."""

    async def build() -> None:
        async with open_sqlite_journal(path) as journal:
            await journal.write(_records("acct", range(1, events + 1)))

    trio.run(build)
    assert not Path(f"{path}-wal").exists()


def _make_crashed_journal(path: Path, events: int = 3) -> None:
    """A journal at ``path`` as a crash leaves it: its committed events still in the
    ``-wal`` file beside it (a copy of both files taken while the writer had them open,
    as ``kill -9`` would leave them)."""

    async def build() -> None:
        origin = path.parent / "origin"
        origin.mkdir()
        async with open_sqlite_journal(origin / path.name) as journal:
            await journal.write(_records("acct", range(1, events + 1)))
            for suffix in ("", "-wal"):
                shutil.copyfile(f"{origin / path.name}{suffix}", f"{path}{suffix}")
        shutil.rmtree(origin)

    trio.run(build)


def _count_in_database_file_alone(path: Path) -> int:
    """The events that a reader ignoring the -wal file sees (``immutable=1``)."""
    conn = sqlite3.connect(f"{path.absolute().as_uri()}?immutable=1", uri=True)
    try:
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        return conn.execute("SELECT count(*) FROM events").fetchone()[0] if "events" in names else 0
    finally:
        conn.close()


def _events_stored(path: Path) -> list[int]:
    conn = sqlite3.connect(path)
    try:
        return [row[0] for row in conn.execute("SELECT seq FROM events ORDER BY seq")]
    finally:
        conn.close()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def restore_modes(tmp_path: Path) -> Iterator[None]:
    """Give every file and directory under ``tmp_path`` its write bits back afterwards,
    so that pytest can remove them (as a user other than root)."""
    yield
    for root, dirs, files in os.walk(tmp_path):
        os.chmod(root, 0o755)
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            os.chmod(os.path.join(root, name), 0o644)


@pytest.fixture(scope="module")
def obeying_modes() -> list[str]:
    """The command prefix of a process whose file access obeys the file modes: none for
    a user other than root; for root, ``setpriv`` dropping the capabilities that
    override them (checked to work here), or a skip saying why not."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip(
            "running as root, which writes read-only files anyway, and setpriv "
            "(util-linux) is not installed to drop that override for a child process"
        )
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    trial = subprocess.run([*prefix, "true"], capture_output=True, text=True, check=False)
    if trial.returncode != 0:
        pytest.skip(
            "running as root, which writes read-only files anyway, and setpriv cannot drop "
            f"that override here: {trial.stderr.strip()}"
        )
    return prefix


def _run(prefix: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


OPEN_SCRIPT = textwrap.dedent(
    """
    import os, sys, tempfile
    import trio
    from actors.persistence import JournalFailure, open_sqlite_journal

    path, target = sys.argv[1], sys.argv[2]
    try:  # show that this process really cannot write the file or the directory
        if os.path.isdir(target):
            tempfile.TemporaryFile(dir=target).close()
        else:
            os.close(os.open(target, os.O_WRONLY))
        print("writable")
    except PermissionError:
        print("read-only")

    async def main():
        try:
            async with open_sqlite_journal(path):
                print("opened")
        except JournalFailure as error:
            print(type(error).__name__)
            print(error)

    trio.run(main)
    """
)


def _open_in_child(prefix: list[str], path: Path, target: Path) -> list[str]:
    result = _run(prefix, "-c", OPEN_SCRIPT, str(path), str(target))
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


# -- open_sqlite_journal refuses a journal it cannot write -----------------------------------


def test_a_read_only_journal_file_is_refused_at_open(
    tmp_path: Path, obeying_modes: list[str], restore_modes: None
) -> None:
    path = tmp_path / "j.db"
    _make_journal(path)
    path.chmod(0o444)
    before = _digest(path)
    honest, kind, message = _open_in_child(obeying_modes, path, path)
    assert honest == "read-only"
    assert kind == "JournalNotWritable"
    assert message == (
        f"the SQLite journal {path} is not writable: the file is read-only for this "
        "process: its mode is 0444 (SQLite: attempt to write a readonly database). A "
        "journal must be writable by the process that opens it: make it writable by the "
        "user this process runs as (chmod u+w, or chown). To read it without writing, "
        f"use `python -m actors.persistence --sqlite {path}`"
    )
    assert _digest(path) == before
    assert _events_stored(path) == [1, 2, 3]


def test_a_journal_in_a_read_only_directory_is_refused_at_open(
    tmp_path: Path, obeying_modes: list[str], restore_modes: None
) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    path = directory / "j.db"
    _make_journal(path)
    directory.chmod(0o555)
    honest, kind, message = _open_in_child(obeying_modes, path, directory)
    assert honest == "read-only"
    assert kind == "JournalNotWritable"
    assert message.startswith(
        f"the SQLite journal {path} is not writable: its directory {directory} is not "
        "writable by this process, so SQLite cannot create in it the -wal and -shm files "
        "that a WAL journal needs beside it (even to be read) (SQLite: "
    )
    assert message.endswith(
        "A journal must be writable by the process that opens it: make the directory "
        "writable by the user this process runs as, or move the journal (with its -wal "
        "file, if any) to a directory that is. To read it without writing, use "
        f"`python -m actors.persistence --sqlite {path}`"
    )
    assert sorted(os.listdir(directory)) == ["j.db"]


def test_a_new_journal_in_a_read_only_directory_is_refused_at_open(
    tmp_path: Path, obeying_modes: list[str], restore_modes: None
) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(0o555)
    path = directory / "j.db"
    honest, kind, message = _open_in_child(obeying_modes, path, directory)
    assert honest == "read-only"
    assert kind == "JournalNotWritable"
    assert message.startswith(
        f"the SQLite journal {path} is not writable: its directory {directory} is not "
        "writable by this process, so SQLite cannot create the journal in it (SQLite: "
        "unable to open database file)."
    )
    assert os.listdir(directory) == []


async def test_a_journal_that_sqlite_opens_read_only_is_refused_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Root can write any file, but not through a connection that SQLite itself opened
    read-only (a ``mode=ro`` URI): the probe meets SQLite's own refusal, whoever runs
    the test."""
    path = tmp_path / "j.db"
    await trio.to_thread.run_sync(_make_journal, path)
    before = _digest(path)

    def read_only(self: _sqlite.SqliteDialect) -> sqlite3.Connection:
        uri = Path(self.path).absolute().as_uri() + "?mode=ro"
        return sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)

    monkeypatch.setattr(_sqlite.SqliteDialect, "_connect", read_only)
    with pytest.raises(JournalFailure) as caught:
        async with open_sqlite_journal(path):
            pytest.fail("opened a journal it cannot write")  # pragma: no cover
    assert isinstance(caught.value, JournalNotWritable)
    assert str(caught.value) == (
        f"the SQLite journal {path} is not writable: SQLite opened it read-only (SQLite: "
        "attempt to write a readonly database). A journal must be writable by the "
        "process that opens it: check the permissions of the file, of its -wal and -shm "
        "files and of its directory, and how its file system is mounted. To read it "
        f"without writing, use `python -m actors.persistence --sqlite {path}`"
    )
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
    assert caught.value.__cause__.sqlite_errorname == "SQLITE_READONLY"
    # What to do travels as a note, under the message.
    assert "nothing was written" in "".join(caught.value.__notes__)
    assert _digest(path) == before


async def test_a_writable_journal_opens_and_the_probe_leaves_nothing(tmp_path: Path) -> None:
    path = tmp_path / "j.db"
    for round_ in range(2):  # a new journal, then an existing one
        async with open_sqlite_journal(path) as journal:
            await journal.write(_records("acct", range(round_ + 1, round_ + 2)))
            assert await journal.highest_seq("acct") == round_ + 1
    conn = sqlite3.connect(path)
    try:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()
    assert not any("probe" in name for name in tables)
    assert _events_stored(path) == [1, 2]


# -- the CLI reads what it cannot write ----------------------------------------------------


def _cli(prefix: list[str], path: Path, *command: str) -> subprocess.CompletedProcess[str]:
    return _run(prefix, "-m", "actors.persistence", "--sqlite", str(path), *command)


EVENT_LINES = [
    f"seq={n}  time=2023-11-14T22:13:20.500Z  offset={n}  serializer=pickle  "
    f"manifest=builtins.dict  tags=-  writer=w1  value={{'n': {n}}}"
    for n in (1, 2, 3)
]


def _note(path: Path, problem_start: str, copied: str) -> tuple[str, str]:
    return (
        f"{PROG}: note: cannot read {path} where it is: {problem_start}",
        f"; reading a private copy of {copied} instead, taken now (what was committed "
        "then), removed on exit",
    )


def test_the_cli_reads_a_wal_journal_in_a_read_only_directory(
    tmp_path: Path, obeying_modes: list[str], restore_modes: None
) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    path = directory / "j.db"
    _make_crashed_journal(path)
    # The events are in the -wal file only: a reader that ignores it (immutable=1)
    # would show none of them.
    assert _count_in_database_file_alone(path) == 0
    directory.chmod(0o555)
    listing = sorted(os.listdir(directory))
    digests = {name: _digest(directory / name) for name in listing}
    start, end = _note(
        path,
        f"its directory {directory} is not writable by this process, so SQLite cannot "
        "create in it the -wal and -shm files that a WAL journal needs beside it (even to "
        "be read) (SQLite: ",
        "j.db and j.db-wal",
    )

    events = _cli(obeying_modes, path, "events", "acct")
    assert (events.returncode, events.stdout.splitlines()) == (0, EVENT_LINES)
    assert events.stderr.startswith(start)
    assert events.stderr.rstrip().endswith(end)

    ids = _cli(obeying_modes, path, "ids", "--counts")
    assert ids.returncode == 0, ids.stderr
    assert ids.stdout == "acct\thighest_seq=3\tevents=3\tstored_seqs=1..3\tsnapshot_seq=-\n"

    check = _cli(obeying_modes, path, "check", "--decode")
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith(f"{path}: ok (1 persistence ids, 3 events, 0 snapshots")
    assert check.stderr.startswith(start)

    # Nothing was created or changed beside the journal.
    assert sorted(os.listdir(directory)) == listing
    assert {name: _digest(directory / name) for name in listing} == digests


def test_the_cli_reads_a_read_only_journal_file(
    tmp_path: Path, obeying_modes: list[str], restore_modes: None
) -> None:
    path = tmp_path / "j.db"
    _make_journal(path)
    path.chmod(0o444)
    before = _digest(path)
    # events opens the journal through its backend, which refuses a journal it cannot
    # write: the tool reads a copy.
    events = _cli(obeying_modes, path, "events", "acct")
    assert (events.returncode, events.stdout.splitlines()) == (0, EVENT_LINES)
    start, end = _note(
        path,
        "the file is read-only for this process: its mode is 0444 (SQLite: attempt to "
        "write a readonly database)",
        "j.db",
    )
    assert events.stderr.rstrip() == start + end
    # check reads read-only, which works in place: no copy, no note.
    check = _cli(obeying_modes, path, "check")
    assert (check.returncode, check.stderr) == (0, "")
    assert check.stdout.startswith(f"{path}: ok (1 persistence ids, 3 events, 0 snapshots")
    assert _digest(path) == before


# -- the CLI's fallback, driven by SQLite's exact error (any user) ----------------------------


def _readonly_directory_error() -> sqlite3.OperationalError:
    """The error SQLite gives for a WAL journal in a read-only directory, even read-only
    (``SQLITE_READONLY_DIRECTORY``), as ``sqlite3`` raises it."""
    error = sqlite3.OperationalError("attempt to write a readonly database")
    error.sqlite_errorcode = 8 | (6 << 8)
    error.sqlite_errorname = "SQLITE_READONLY_DIRECTORY"
    return error


@pytest.fixture
def unreadable_in_place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A crashed journal (events in its -wal file) whose connections, where it is, fail
    as in a read-only directory; its private copies open normally. Temporary
    directories go under ``tmp_path / "tmp"``, to be looked at."""
    directory = tmp_path / "journal"
    directory.mkdir()
    path = directory / "j.db"
    _make_crashed_journal(path)
    real_connect = sqlite3.connect

    def connect(database: str, *args: Any, **kwargs: Any) -> sqlite3.Connection:
        if str(directory) in str(database):
            raise _readonly_directory_error()
        conn: sqlite3.Connection = real_connect(database, *args, **kwargs)
        return conn

    monkeypatch.setattr(sqlite3, "connect", connect)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    return path


def test_the_cli_falls_back_to_a_copy_on_sqlites_read_only_error(
    unreadable_in_place: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = unreadable_in_place
    assert cli_main(["--sqlite", str(path), "events", "acct"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == EVENT_LINES
    start, end = _note(
        path,
        "SQLite opened it read-only (SQLite: attempt to write a readonly database)",
        "j.db and j.db-wal",
    )
    assert err.rstrip() == start + end
    assert cli_main(["--sqlite", str(path), "check"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith(f"{path}: ok (1 persistence ids, 3 events, 0 snapshots")
    assert err.startswith(start)
    # The private copies were removed.
    assert os.listdir(path.parent.parent / "tmp") == []


def test_the_cli_says_when_it_can_neither_read_nor_copy(
    unreadable_in_place: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(source: str, destination: str) -> str:
        raise PermissionError(13, "Permission denied", source)

    monkeypatch.setattr(shutil, "copyfile", refuse)
    path = unreadable_in_place
    assert cli_main(["--sqlite", str(path), "events", "acct"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == (
        f"{PROG}: error: cannot read {path} where it is (SQLite opened it read-only "
        "(SQLite: attempt to write a readonly database)), nor copy it: "
        f"[Errno 13] Permission denied: '{path}'\n"
    )
