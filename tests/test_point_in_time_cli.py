"""``python -m actors.persistence state``: an entity's state at a point in time, replayed
into its class, on real SQLite and PostgreSQL journals; the errors (unknown class, a
bound that does not parse, no such persistence id, a recovery that fails) and the
journal left as it was.

``main()`` runs ``trio.run``, which cannot nest in a trio test: these tests are plain
functions that build their journal with ``trio.run`` in a helper (as
test_persistence_cli.py does, whose fresh PostgreSQL database fixture this reuses)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, closing
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
from test_persistence_cli import _gone_payload, postgres_database  # noqa: F401 - a fixture

from actors.persistence import (
    PersistentActor,
    PersistentRecord,
    Serialization,
    SnapshotRecord,
    open_sqlite_journal,
)
from actors.persistence._cli import main

T0 = 1_796_551_200.0  # 2026-12-06T10:00:00Z
MINUTE = 60.0
HERE = Path(__file__).resolve().parent
PROG = "python -m actors.persistence"


@attrs.frozen
class Deposited:
    amount: int


class Account(PersistentActor):
    """No snapshot(): the tool prints its public attributes."""

    def __init__(self) -> None:
        self.balance = 0
        self.deposits: list[int] = []
        self.snapshot_seq: int | None = None  # the snapshot it recovered from
        self._private = "not shown"

    def apply(self, event: Any) -> None:
        self.balance += event.amount
        self.deposits.append(event.amount)

    def restore(self, state: Any) -> None:
        self.snapshot_seq, self.balance, self.deposits = state


class Summed(Account):
    """With snapshot(): the tool prints what it returns."""

    def snapshot(self) -> Any:
        return self.snapshot_seq, self.balance, self.deposits


class Fixed(Account):
    persistence_id = "acct-2"


class Opening(Account):
    def on_recovery_completed(self) -> None:
        raise AssertionError("a replica does not act on what it recovered")

    def pre_start(self) -> None:
        raise RuntimeError("no ledger here")


def for_owner(pid: str) -> Account:
    """A factory for --pass-id."""
    account = Account()
    account.persistence_id = pid
    return account


def _record(pid: str, seq: int, obj: object, timestamp: float) -> PersistentRecord:
    serializer, manifest, payload = Serialization().serialize(obj)
    return PersistentRecord(
        pid, seq, serializer, manifest, payload, writer_id="w", timestamp=timestamp
    )


async def _fill(journal: Any) -> None:
    """``acct-1``: Deposited(10), (20), (30), (40), (50) at minutes 1..5, a snapshot of
    ``Summed`` after seq 3 saved at minute 3.5; ``gone``: three events, 1..2 deleted."""
    await journal.write(
        [_record("acct-1", s, Deposited(s * 10), T0 + s * MINUTE) for s in range(1, 6)]
    )
    serializer, manifest, payload = Serialization().serialize((3, 60, [10, 20, 30]))
    await journal.snapshots.save(
        SnapshotRecord("acct-1", 3, serializer, manifest, payload, T0 + 3.5 * MINUTE)
    )
    await journal.write([_record("gone", s, Deposited(s), T0 + s * MINUTE) for s in (1, 2, 3)])
    await journal.delete_to("gone", 2)


def _build(open_journal: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
    async def fill() -> None:
        async with open_journal() as journal:
            await _fill(journal)

    trio.run(fill)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "journal.db"
    _build(lambda: open_sqlite_journal(path))
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


CLASS = f"{__name__}:Account"


def _state(capsys: pytest.CaptureFixture[str], db: Path, *argv: str) -> tuple[int, str, str]:
    return run(capsys, "--sqlite", str(db), "state", "acct-1", *argv)


def test_state_at_a_seq_at_a_time_and_now(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _state(capsys, db, "--class", CLASS, "--to-seq", "2") == (
        0,
        "persistence_id=acct-1  seq=2  time=2026-12-06T10:02:00.000Z\n"
        "balance=30\n"
        "deposits=[10, 20]\n"
        "snapshot_seq=None\n",
        "",
    )
    # --at: ISO 8601 with a time zone, or seconds since the epoch; the events stored at
    # or before it (the snapshot at seq 3 was saved at 10:03:30, so it is used).
    for at in ("2026-12-06T10:04:30Z", "2026-12-06T11:04:30+01:00", str(T0 + 4.5 * MINUTE)):
        code, out, err = _state(capsys, db, "--class", CLASS, "--at", at)
        assert (code, err) == (0, "")
        assert out.splitlines() == [
            "persistence_id=acct-1  seq=4  time=2026-12-06T10:04:00.000Z",
            "balance=100",
            "deposits=[10, 20, 30, 40]",
            "snapshot_seq=3",
        ]
    code, out, _ = _state(capsys, db, "--class", CLASS)
    assert (code, out.splitlines()[0]) == (
        0,
        "persistence_id=acct-1  seq=5  time=2026-12-06T10:05:00.000Z",
    )
    code, out, _ = _state(capsys, db, "--class", CLASS, "--at", "2026-12-06T09:00:00Z")
    assert (code, out) == (
        0,
        "persistence_id=acct-1  seq=0  time=-\nbalance=0\ndeposits=[]\nsnapshot_seq=None\n",
    )


def test_a_class_with_snapshot_prints_it_and_recovers_from_snapshots_before_the_point(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summed = f"{__name__}:Summed"
    code, out, err = _state(capsys, db, "--class", summed, "--to-seq", "4")
    assert (code, err) == (0, "")
    # From the snapshot at seq 3, then event 4.
    assert out == (
        "persistence_id=acct-1  seq=4  time=2026-12-06T10:04:00.000Z\n"
        "state=(3, 100, [10, 20, 30, 40])\n"
    )
    # Before the snapshot was saved (10:03:30): from the first event.
    code, out, _ = _state(capsys, db, "--class", summed, "--at", "2026-12-06T10:03:10Z")
    assert (code, out.splitlines()[1]) == (0, "state=(None, 60, [10, 20, 30])")


def test_a_factory_given_the_persistence_id_and_a_class_of_another_id(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _state(
        capsys, db, "--class", f"{__name__}:for_owner", "--pass-id", "--to-seq", "1"
    )
    assert (code, out, err) == (
        0,
        "persistence_id=acct-1  seq=1  time=2026-12-06T10:01:00.000Z\nbalance=10\n"
        "deposits=[10]\nsnapshot_seq=None\n",
        "",
    )
    code, out, err = _state(capsys, db, "--class", f"{__name__}:for_owner")
    assert (code, out) == (2, "")
    assert err == (
        f"{PROG}: error: the actor did not start: TypeError: for_owner() missing 1 required "
        "positional argument: 'pid'\n"
    )
    code, out, err = _state(capsys, db, "--class", f"{__name__}:Fixed")
    assert (code, out) == (2, "")
    assert err == (
        f"{PROG}: error: the actor did not start: ValueError: {__name__}:Fixed made an actor "
        "of persistence id 'acct-2', not 'acct-1' (--pass-id gives it the id)\n"
    )
    code, out, err = _state(capsys, db, "--class", f"{__name__}:Opening")
    assert (code, out) == (2, "")
    assert err == f"{PROG}: error: the actor did not start: RuntimeError: no ledger here\n"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--class", "no_such_module_here:Account"],
            "argument --class: cannot import module 'no_such_module_here': "
            "ModuleNotFoundError: No module named 'no_such_module_here' (is the application "
            "on the import path? --import-path DIR, or PYTHONPATH=DIR)",
        ),
        (["--class", f"{__name__}:Nope"], f"argument --class: module '{__name__}' has no 'Nope'"),
        (
            ["--class", f"{__name__}:Deposited"],
            f"argument --class: {__name__}:Deposited is not a PersistentActor (a class of "
            "actors.persistence.PersistentActor, or a function returning an instance of one)",
        ),
        (["--class", "Account"], "argument --class: expected module:name, got 'Account'"),
        (
            ["--class", CLASS, "--at", "2026-12-06T10:00:00"],
            "argument --at: '2026-12-06T10:00:00' has no time zone, so it names no single "
            "moment: add one (2026-12-06T10:00:00Z for UTC, or an offset such as "
            "2026-12-06T10:00:00+01:00)",
        ),
        (
            ["--class", CLASS, "--at", "at ten"],
            "argument --at: not a time: 'at ten'; give ISO 8601 with a time zone "
            "(2026-12-06T10:00:00Z, 2026-12-06T11:00:00+01:00) or seconds since the epoch "
            "(1796551200)",
        ),
        (["--class", CLASS, "--at", "inf"], "argument --at: not a time: 'inf'"),
        (["--class", CLASS, "--to-seq", "-1"], "argument --to-seq: must be 0 or more, got -1"),
        ([], "the following arguments are required: --class"),
    ],
)
def test_usage_errors(
    db: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, out, err = _state(capsys, db, *argv)
    assert (code, out) == (2, "")
    assert err.splitlines()[-1].endswith(f"error: {message}")
    assert "Traceback" not in err


def test_no_such_persistence_id(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--sqlite", str(db), "state", "acct-9", "--class", CLASS)
    assert (code, out, err) == (
        1,
        "",
        f"{PROG}: no events were ever stored for persistence id 'acct-9'\n",
    )


def test_a_point_whose_events_were_deleted(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "--sqlite", str(db), "state", "gone", "--class", CLASS, "--to-seq", "1"
    )
    assert (code, out) == (1, "")
    assert err == (
        f"{PROG}: error: recovery of persistence id 'gone' failed at seq 1: events 1..2 are "
        "missing from the journal (deleted), and no snapshot that can be decoded, taken at "
        "or before seq 1, covers them: the state at that point cannot be rebuilt\n"
    )
    code, out, _ = run(
        capsys, "--sqlite", str(db), "state", "gone", "--class", CLASS, "--to-seq", "2"
    )
    assert code == 1


def test_events_not_decodable_here_or_corrupt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "j.db"
    good = _record("odd", 1, Deposited(1), T0)
    gone = attrs.evolve(good, seq=2, manifest="gone_events.Gone", payload=_gone_payload())

    async def fill() -> None:
        async with open_sqlite_journal(path) as journal:
            await journal.write([good, gone])
            json = attrs.evolve(good, persistence_id="json")
            await journal.write([json, attrs.evolve(json, seq=2, serializer="json")])
            cut = attrs.evolve(good, persistence_id="cut")
            await journal.write([cut, attrs.evolve(cut, seq=2, payload=good.payload[:-5])])

    trio.run(fill)
    code, out, err = run(capsys, "--sqlite", str(path), "state", "odd", "--class", CLASS)
    assert (code, out) == (3, "")
    assert err.splitlines() == [
        f"{PROG}: error: recovery of persistence id 'odd' failed at seq 2: event 2 "
        "(gone_events.Gone) cannot be decoded: cannot decode a record with manifest "
        "'gone_events.Gone' with serializer 'pickle': ModuleNotFoundError: No module named "
        "'gone_events'",
        f"{PROG}: event 2: module 'gone_events' is not importable in this process; run the "
        "tool with the application's modules on the import path (--import-path DIR, or "
        "PYTHONPATH=DIR)",
    ]
    code, out, err = run(capsys, "--sqlite", str(path), "state", "json", "--class", CLASS)
    assert (code, out) == (3, "")
    assert err.splitlines()[1] == (
        f"{PROG}: event 2: serializer 'json' is not registered in this process; give the "
        "tool the application's registry (--serialization MODULE:NAME)"
    )
    # Up to the event before it, all is well.
    code, out, _ = run(
        capsys, "--sqlite", str(path), "state", "odd", "--class", CLASS, "--to-seq", "1"
    )
    assert (code, out.splitlines()[1]) == (0, "balance=1")
    # A corrupt one is a problem of the journal: status 1.
    code, out, err = run(capsys, "--sqlite", str(path), "state", "cut", "--class", CLASS)
    assert (code, out) == (1, "")
    assert err.startswith(
        f"{PROG}: error: recovery of persistence id 'cut' failed at seq 2: event 2 "
        f"({__name__}.Deposited) cannot be decoded: "
    )
    assert err.endswith("UnpicklingError: pickle data was truncated\n")


def _dump(path: Path) -> list[Any]:
    with closing(sqlite3.connect(path)) as conn:
        return [
            conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2").fetchall()
            for table in ("events", "event_tags", "journal_metadata", "snapshots")
        ]


def test_the_journal_is_left_as_it_was(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _dump(db)
    for argv in (["--to-seq", "3"], ["--at", "2026-12-06T10:02:00Z"], []):
        code, _, _ = _state(capsys, db, "--class", f"{__name__}:Summed", *argv)
        assert code == 0
    code, _, _ = _state(capsys, db, "--class", f"{__name__}:Opening")
    assert code == 2
    assert _dump(db) == before


def test_as_a_subprocess_with_the_applications_modules(db: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "actors.persistence",
            "state",
            "acct-1",
            "--class",
            CLASS,
            "--to-seq",
            "3",
            "--sqlite",
            str(db),
            "--import-path",
            str(HERE),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == (
        "persistence_id=acct-1  seq=3  time=2026-12-06T10:03:00.000Z\n"
        "balance=60\n"
        "deposits=[10, 20, 30]\n"
        "snapshot_seq=3\n"
    )


def test_state_on_postgresql(
    postgres_database: str,  # noqa: F811 - the fixture imported above
    capsys: pytest.CaptureFixture[str],
) -> None:
    from actors.persistence._postgres import open_postgres_journal

    _build(lambda: open_postgres_journal(postgres_database))
    code, out, err = run(
        capsys,
        "--postgres",
        postgres_database,
        "state",
        "acct-1",
        "--class",
        f"{__name__}:Summed",
        "--at",
        "2026-12-06T10:04:59Z",
    )
    assert (code, err) == (0, "")
    assert out == (
        "persistence_id=acct-1  seq=4  time=2026-12-06T10:04:00.000Z\n"
        "state=(3, 100, [10, 20, 30, 40])\n"
    )
    code, out, err = run(
        capsys, "--postgres", postgres_database, "state", "nobody", "--class", CLASS
    )
    assert (code, out) == (1, "")
