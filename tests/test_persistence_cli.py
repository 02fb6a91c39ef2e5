"""The journal inspection tool, ``python -m actors.persistence``: ids, events, snapshot and
check on real SQLite journals, including damaged ones.

``main()`` runs ``trio.run``, which cannot nest in a trio test: these tests are plain
functions that build their journal with ``trio.run`` in a helper.
"""

from __future__ import annotations

import pickle
import re
import shlex
import sqlite3
import subprocess
import sys
import types
import uuid
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
import trio

from actors.persistence import (
    PersistentRecord,
    PickleSerializer,
    Serialization,
    SnapshotRecord,
    open_sqlite_journal,
)
from actors.persistence._cli import main

T0 = 1700000000.5  # 2023-11-14T22:13:20.500Z


@attrs.frozen
class Deposited:
    amount: int


@attrs.frozen
class Balance:
    total: int


# A Serialization for --serialization: module-level, so that the tool can import it.
custom_serialization = Serialization([PickleSerializer()])


def _record(pid: str, seq: int, obj: object, *tags: str) -> PersistentRecord:
    serializer, manifest, payload = Serialization().serialize(obj)
    return PersistentRecord(
        persistence_id=pid,
        seq=seq,
        serializer=serializer,
        manifest=manifest,
        payload=payload,
        tags=frozenset(tags),
        writer_id="w1",
        timestamp=T0 + seq,
    )


def _gone_payload() -> bytes:
    """A pickle of an instance of ``gone_events.Gone``, a module that does not exist."""
    module = types.ModuleType("gone_events")

    class Gone:
        pass

    Gone.__module__ = "gone_events"
    Gone.__qualname__ = "Gone"
    module.Gone = Gone  # type: ignore[attr-defined]
    sys.modules["gone_events"] = module
    try:
        return pickle.dumps(Gone())
    finally:
        del sys.modules["gone_events"]


def build(path: Path, *, undecodable: bool = False, corrupt: bool = False) -> Path:
    """A journal: ``acct-1`` with events 1..5 (tags, 1..2 deleted) and a snapshot at 4;
    ``acct-2`` with events 1..2; with ``undecodable``, ``acct-3`` whose seq 2 names a
    missing module and seq 3 an unknown serializer (sound records that this process
    cannot decode); with ``corrupt``, ``acct-4`` whose seq 2 is a truncated pickle."""

    async def fill() -> None:
        async with open_sqlite_journal(path) as journal:
            await journal.write(
                [
                    _record("acct-1", s, Deposited(s * 10), *(("big",) if s % 2 else ()))
                    for s in range(1, 6)
                ]
            )
            await journal.write([_record("acct-2", s, Deposited(s), "small") for s in (1, 2)])
            await journal.delete_to("acct-1", 2)
            serializer, manifest, payload = Serialization().serialize(Balance(100))
            await journal.snapshots.save(
                SnapshotRecord("acct-1", 4, serializer, manifest, payload, T0)
            )
            if undecodable:
                good = _record("acct-3", 1, Deposited(7))
                gone = attrs.evolve(
                    good, seq=2, manifest="gone_events.Gone", payload=_gone_payload()
                )
                unknown = attrs.evolve(good, seq=3, serializer="json", payload=b"{}")
                await journal.write([good, gone, unknown, attrs.evolve(good, seq=4)])
            if corrupt:
                first = _record("acct-4", 1, Deposited(1))
                cut = attrs.evolve(first, seq=2, payload=first.payload[:-5])
                await journal.write([first, cut])

    trio.run(fill)
    return path


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return build(tmp_path / "journal.db")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def execute(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path)
    try:
        for statement in statements:
            conn.execute(statement)
        conn.commit()
    finally:
        conn.close()


# -- ids --------------------------------------------------------------------------------------


def test_ids(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--sqlite", str(db), "ids") == (0, "acct-1\nacct-2\n", "")


def test_ids_with_counts_and_options_after_the_command(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "ids", "--counts", "--sqlite", str(db))
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "acct-1\thighest_seq=5\tevents=3\tstored_seqs=3..5\tsnapshot_seq=4",
        "acct-2\thighest_seq=2\tevents=2\tstored_seqs=1..2\tsnapshot_seq=-",
    ]


# -- events and snapshot ----------------------------------------------------------------------

MANIFEST = f"{__name__}.Deposited"


def test_events_decoded_in_a_range(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "--sqlite", str(db), "events", "acct-1", "--from", "2", "--to", "4"
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 2  # 1..2 were deleted
    assert lines[0] == (
        "seq=3  time=2023-11-14T22:13:23.500Z  offset=3  serializer=pickle  "
        f"manifest={MANIFEST}  tags=big  writer=w1  value=Deposited(amount=30)"
    )
    assert lines[1].startswith("seq=4  time=2023-11-14T22:13:24.500Z  offset=4  ")
    assert lines[1].endswith("tags=-  writer=w1  value=Deposited(amount=40)")


def test_events_by_tag(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--sqlite", str(db), "events", "acct-1", "--tag", "big")
    assert code == 0
    assert [line.split()[0] for line in out.splitlines()] == ["seq=3", "seq=5"]


PATH_HINT = (
    "run the tool with the application's modules on the import path (--import-path DIR, "
    "or PYTHONPATH=DIR)"
)


def test_events_not_decodable_here_are_marked_and_listing_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = build(tmp_path / "j.db", undecodable=True)
    code, out, err = run(capsys, "--sqlite", str(path), "events", "acct-3")
    assert code == 3  # the journal is sound: this process lacks a module and a serializer
    lines = out.splitlines()
    assert len(lines) == 4
    assert lines[0].endswith("value=Deposited(amount=7)")
    assert "manifest=gone_events.Gone" in lines[1]
    assert lines[1].endswith(
        "NOT DECODABLE HERE: module 'gone_events' is not importable in this process"
    )
    assert "serializer=json" in lines[2]
    assert lines[2].endswith(
        "NOT DECODABLE HERE: serializer 'json' is not registered in this process"
    )
    assert lines[3].endswith("value=Deposited(amount=7)")
    assert err.splitlines() == [
        "python -m actors.persistence: 1 event not decodable here (first: seq 2): module "
        f"'gone_events' is not importable in this process; {PATH_HINT}",
        "python -m actors.persistence: 1 event not decodable here (first: seq 3): "
        "serializer 'json' is not registered in this process; give the tool the "
        "application's registry (--serialization MODULE:NAME)",
    ]
    assert "Traceback" not in out + err


def test_corrupt_events_are_marked_and_listing_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = build(tmp_path / "j.db", undecodable=True, corrupt=True)
    code, out, err = run(capsys, "--sqlite", str(path), "events", "acct-4")
    assert code == 1
    lines = out.splitlines()
    assert lines[0].endswith("value=Deposited(amount=1)")
    assert lines[1].endswith(
        "UNDECODABLE: RecordUndecodable: cannot decode a record with manifest "
        f"'{MANIFEST}' with serializer 'pickle': UnpicklingError: pickle data was truncated"
    )
    assert err == "python -m actors.persistence: 1 of 2 events are corrupt\n"


def test_import_path_makes_the_applications_modules_importable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = build(tmp_path / "j.db", undecodable=True)
    modules = tmp_path / "app"
    modules.mkdir()
    (modules / "gone_events.py").write_text(
        "class Gone:\n    def __repr__(self):\n        return 'Gone()'\n"
    )
    (modules / "registry.py").write_text(
        "from actors.persistence import PickleSerializer, Serialization\n"
        "from actors.persistence._serialization import _PickleFormat\n"
        "class Json(_PickleFormat):\n"
        "    id = 'json'\n"
        "    def from_binary(self, manifest, payload):\n"
        "        return payload.decode()\n"
        "registry = Serialization([PickleSerializer(), Json()])\n"
    )
    path_before = list(sys.path)
    try:
        # Before the command, after it, or both; --serialization is loaded once the
        # path is set, wherever it is given.
        code, out, err = run(
            capsys,
            "--import-path",
            str(modules),
            "--sqlite",
            str(path),
            "events",
            "acct-3",
            "--serialization",
            "registry:registry",
        )
        assert (code, err) == (0, "")
        assert [line.rsplit("  ", 1)[1] for line in out.splitlines()] == [
            "value=Deposited(amount=7)",
            "value=Gone()",
            "value='{}'",
            "value=Deposited(amount=7)",
        ]
        assert sys.path == path_before  # the path was set for the call only
    finally:
        for name in ("gone_events", "registry"):
            sys.modules.pop(name, None)


def test_events_raw(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--sqlite", str(db), "events", "acct-2", "--raw")
    assert code == 0
    payload = Serialization().serialize(Deposited(1))[2]
    first = out.splitlines()[0]
    assert first.endswith(f"size={len(payload)}  hex={payload[:32].hex()}...")
    assert "value=" not in out


def test_events_of_an_unknown_id_and_a_bad_range(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--sqlite", str(db), "events", "nobody")
    assert (code, out) == (1, "")
    assert "no events were ever stored for persistence id 'nobody'" in err
    code, out, err = run(
        capsys, "--sqlite", str(db), "events", "acct-1", "--from", "3", "--to", "2"
    )
    assert (code, out) == (2, "")
    assert "--to 2 is below --from 3" in err
    code, _, err = run(capsys, "--sqlite", str(db), "events", "acct-1", "--from", "0")
    assert code == 2
    assert "must be 1 or more" in err


def test_events_with_a_custom_serialization(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = f"{__name__}:custom_serialization"
    code, out, _ = run(capsys, "--sqlite", str(db), "events", "acct-2", "--serialization", spec)
    assert code == 0
    assert out.splitlines()[1].endswith("value=Deposited(amount=2)")
    code, _, err = run(capsys, "--sqlite", str(db), "--serialization", "nowhere:x", "ids")
    assert code == 2
    assert "cannot load 'nowhere:x': ModuleNotFoundError" in err


def test_snapshot(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--sqlite", str(db), "snapshot", "acct-1") == (
        0,
        "seq=4  time=2023-11-14T22:13:20.500Z  serializer=pickle  "
        f"manifest={__name__}.Balance  value=Balance(total=100)\n",
        "",
    )
    code, out, err = run(capsys, "--sqlite", str(db), "snapshot", "acct-1", "--max-seq", "3")
    assert (code, out) == (1, "")
    assert "no snapshot of 'acct-1' with seq <= 3" in err


# -- check ------------------------------------------------------------------------------------


def test_check_clean(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = db.read_bytes()
    assert run(capsys, "--sqlite", str(db), "check", "--decode") == (
        0,
        f"{db}: ok (2 persistence ids, 5 events, 1 snapshots; 6 records verified)\n",
        "",
    )
    assert db.read_bytes() == before  # read-only


def test_check_finds_a_gap(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    execute(db, "DELETE FROM events WHERE persistence_id = 'acct-1' AND seq = 4")
    code, out, err = run(capsys, "--sqlite", str(db), "check")
    assert (code, err) == (1, "")
    assert out.splitlines() == [
        "seq: 'acct-1' has a gap: seq 4 missing between stored seqs 3 and 5",
        f"{db}: 1 problem found (2 persistence ids, 4 events, 1 snapshots; 5 records verified)",
    ]


def test_check_finds_a_dangling_tag_row_and_a_lost_tail(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    execute(
        db,
        "INSERT INTO event_tags (tag, event_offset) VALUES ('ghost', 999)",
        "INSERT OR REPLACE INTO journal_metadata (persistence_id, highest_seq) "
        "VALUES ('acct-2', 4)",
    )
    code, out, _ = run(capsys, "--sqlite", str(db), "check")
    assert code == 1
    assert out.splitlines() == [
        "metadata: 'acct-2' kept highest_seq 4, above its highest stored seq 2: events "
        "3..4 are missing",
        "tags: tag row 'ghost' points at offset 999, which has no event",
        f"{db}: 2 problems found (2 persistence ids, 5 events, 1 snapshots; 6 records verified)",
    ]


def test_check_decode_tells_records_not_decodable_here_from_corrupt_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = build(tmp_path / "j.db", undecodable=True)
    assert run(capsys, "--sqlite", str(path), "check")[0] == 0
    code, out, err = run(capsys, "--sqlite", str(path), "check", "--decode")
    assert (code, err) == (3, "")  # healthy, but not every record decodes here
    assert out.splitlines() == [
        "1 record not decodable here (first: event 'acct-3' seq 2): module 'gone_events' is "
        f"not importable in this process; {PATH_HINT}",
        "1 record not decodable here (first: event 'acct-3' seq 3): serializer 'json' is not "
        "registered in this process; give the tool the application's registry "
        "(--serialization MODULE:NAME)",
        f"{path}: no problem found, but not every record decodes here (3 persistence ids, "
        "9 events, 1 snapshots; 10 records verified; 2 records not decodable here)",
    ]
    path = build(tmp_path / "k.db", undecodable=True, corrupt=True)
    code, out, _ = run(capsys, "--sqlite", str(path), "check", "--decode")
    assert code == 1  # a corrupt record is a problem
    lines = out.splitlines()
    assert lines[0] == (
        "decode: event 'acct-4' seq 2: UNDECODABLE: RecordUndecodable: cannot decode a "
        f"record with manifest '{MANIFEST}' with serializer 'pickle': UnpicklingError: "
        "pickle data was truncated"
    )
    assert lines[1].startswith("1 record not decodable here (first: event 'acct-3' seq 2)")
    assert lines[3] == (
        f"{path}: 1 problem found (4 persistence ids, 11 events, 1 snapshots; 12 records "
        "verified; 2 records not decodable here)"
    )


def test_events_of_a_class_of_main_are_not_decodable_here(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A journal written before such events were refused: the tool says why it cannot
    decode them (pickle would look in the tool's own __main__)."""

    async def fill() -> None:
        async with open_sqlite_journal(tmp_path / "old.db") as journal:
            record = _record("old", 1, Deposited(1))
            await journal.write([attrs.evolve(record, manifest="__main__.Deposited")])

    trio.run(fill)
    code, out, err = run(capsys, "--sqlite", str(tmp_path / "old.db"), "events", "old")
    assert code == 3
    assert out.rstrip().endswith(
        "NOT DECODABLE HERE: its class was defined in a script run as __main__, which no "
        "other program can import"
    )
    assert err == (
        "python -m actors.persistence: 1 event not decodable here (first: seq 1): its class "
        "was defined in a script run as __main__, which no other program can import; only "
        "that script can decode it (--raw shows the payload); keep event classes in a "
        "module the script imports\n"
    )


def test_a_snapshot_not_decodable_here_or_corrupt(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    execute(
        db,
        "INSERT INTO snapshots VALUES ('acct-1', 5, 'pickle', 'gone_events.Gone', "
        f"x'{_gone_payload().hex()}', 0, NULL)",
        "INSERT INTO snapshots VALUES ('acct-2', 2, 'pickle', 'x.Y', x'80', 0, NULL)",
    )
    code, out, err = run(capsys, "--sqlite", str(db), "snapshot", "acct-1")
    assert code == 3
    assert out.rstrip().endswith(
        "NOT DECODABLE HERE: module 'gone_events' is not importable in this process"
    )
    assert "1 snapshot not decodable here (first: seq 5)" in err
    code, out, err = run(capsys, "--sqlite", str(db), "snapshot", "acct-2")
    assert (code, err) == (1, "")
    assert "UNDECODABLE: RecordUndecodable: " in out


def test_garbled_header(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = bytearray(db.read_bytes())
    data[:100] = b"\xff" * 100
    db.write_bytes(bytes(data))
    for command in ("check", "ids"):
        code, out, err = run(capsys, "--sqlite", str(db), command)
        assert (code, out) == (2, "")
        assert err == (
            f"python -m actors.persistence: error: cannot read SQLite journal {db}: file "
            "is not a database (the file is not a SQLite database, or its header is garbled)\n"
        )


def test_truncated_file(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    async def grow() -> None:
        async with open_sqlite_journal(db) as journal:
            await journal.write([_record("big", s, b"x" * 3000) for s in range(1, 40)])

    trio.run(grow)
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])
    code, out, err = run(capsys, "--sqlite", str(db), "check")
    assert (code, err) == (1, "")
    *problems, summary = out.splitlines()
    assert problems
    assert all(
        line.endswith("database disk image is malformed (the file is corrupt or truncated)")
        for line in problems
    )
    assert summary.startswith(f"{db}: {len(problems)} problem")
    assert "incomplete" in summary
    code, out, err = run(capsys, "--sqlite", str(db), "events", "big")
    assert (code, out) == (2, "")
    assert "corrupt or truncated" in err
    assert "Traceback" not in err


def test_missing_file_is_not_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nope.db"
    for argv in (["check"], ["ids"], ["events", "x"], ["snapshot", "x"]):
        code, out, err = run(capsys, "--sqlite", str(path), *argv)
        assert (code, out) == (2, "")
        assert err == f"python -m actors.persistence: error: no such journal file: {path}\n"
    assert list(tmp_path.iterdir()) == []


_TABLES = ("schema_version", "events", "event_tags", "journal_metadata", "snapshots")


def test_a_foreign_database_is_refused_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "other.db"
    execute(path, "CREATE TABLE things (x)")
    before = path.read_bytes()
    code, _, err = run(capsys, "--sqlite", str(path), "ids")
    assert code == 2
    assert "not a journal of this library" in err
    code, out, _ = run(capsys, "--sqlite", str(path), "check")
    assert code == 1
    assert out.splitlines() == [
        *(f"schema: table {t} is missing" for t in _TABLES),
        f"{path}: 5 problems found (incomplete, 1 check(s) could not run; 0 persistence "
        "ids, 0 events, 0 snapshots)",
    ]
    assert path.read_bytes() == before


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "ids")
    assert code == 2
    assert "give --sqlite PATH" in err
    code, _, err = run(capsys, "--sqlite", "x.db")
    assert code == 2
    assert "COMMAND" in err


def test_module_entry_point_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "actors.persistence", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout.startswith("usage: python -m actors.persistence")
    for word in ("ids", "events", "snapshot", "check", "--sqlite", "trust", "--import-path"):
        assert word in result.stdout
    text = " ".join(result.stdout.split())  # as wrapped by argparse
    for status in (
        "0 ok;",
        "1 something wrong was found (a corrupt record,",
        "2 usage error, or a journal that cannot be opened or read;",
        "3 nothing wrong was found, but some records cannot be decoded in this process",
    ):
        assert status in text
    assert result.stderr == ""


def test_check_finds_tag_offset_and_snapshot_disagreements(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    execute(
        db,
        # acct-1 seq 3 (offset 3) loses its tag row; acct-2 seq 2 moves from offset 7 to
        # offset 1 (free since the deletion), below seq 1's, leaving its tag row behind.
        "DELETE FROM event_tags WHERE event_offset = 3",
        "UPDATE events SET event_offset = 1 WHERE persistence_id = 'acct-2' AND seq = 2",
        "INSERT INTO snapshots VALUES ('acct-2', 9, 'pickle', 'x', x'00', 0, NULL)",
    )
    code, out, _ = run(capsys, "--sqlite", str(db), "check")
    assert code == 1
    assert out.splitlines() == [
        "tags: tag row 'small' points at offset 7, which has no event",
        "tags: 'acct-1' seq 3 is tagged ['big'] but has tag rows []",
        "offset: 'acct-2' seq 2 has offset 1, not above offset 6 of seq 1",
        "tags: 'acct-2' seq 2 is tagged ['small'] but has tag rows []",
        "snapshot: 'acct-2' has a snapshot at seq 9, beyond its highest seq 2",
        "1 record without a digest (written before version 2)",
        f"{db}: 5 problems found (2 persistence ids, 5 events, 2 snapshots; 6 records "
        "verified, 1 without a digest)",
    ]


# -- PostgreSQL -------------------------------------------------------------------------------


def test_postgres_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--postgres", "host=x password=hunter2 ===", "ids")
    assert (code, out) == (2, "")
    assert "the DSN cannot be parsed" in err
    assert "hunter2" not in err
    code, _, err = run(capsys, "--postgres", "host=x", "check")
    assert code == 2
    assert "check reads SQLite journals only" in err
    code, _, err = run(capsys, "--postgres", "host=x", "ids", "--sqlite", "j.db")
    assert code == 2
    assert "not both" in err


@pytest.fixture
def postgres_database(postgres_dsn: str) -> Iterator[str]:
    """The DSN of a fresh database on the session's PostgreSQL server (see conftest.py),
    dropped afterwards."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    name = f"cli_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    drop = sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name))
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        conn.execute(create)
    try:
        yield make_conninfo(postgres_dsn, dbname=name)
    finally:
        with psycopg.connect(postgres_dsn, autocommit=True) as conn:
            conn.execute(drop)


def test_postgres_ids_and_events(
    postgres_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from actors.persistence._postgres import open_postgres_journal

    async def fill() -> None:
        async with open_postgres_journal(postgres_database) as journal:
            await journal.write([_record("acct-9", s, Deposited(s), "t") for s in (1, 2, 3)])
            await journal.delete_to("acct-9", 1)

    trio.run(fill)
    code, out, err = run(capsys, "--postgres", postgres_database, "ids", "--counts")
    assert (code, out, err) == (
        0,
        "acct-9\thighest_seq=3\tevents=2\tstored_seqs=2..3\tsnapshot_seq=-\n",
        "",
    )
    code, out, err = run(capsys, "events", "acct-9", "--to", "2", "--postgres", postgres_database)
    assert (code, err) == (0, "")
    assert out.startswith("seq=2  time=2023-11-14T22:13:22.500Z  offset=")
    assert out.endswith("  tags=t  writer=w1  value=Deposited(amount=2)\n")


# -- the session shown in docs/persistence.md -------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent
_VARYING = re.compile(r"\b(time|writer)=\S+")  # the clock, and a random id per incarnation


def _documented_session() -> str:
    page = (ROOT / "docs" / "persistence.md").read_text()
    section = page.split("## The command-line tool", 1)[1]
    return section.split("```console\n", 1)[1].split("```", 1)[0]


def test_the_documented_session_on_the_banks_journal_is_true(tmp_path: Path) -> None:
    """Two runs of the bank from the repository's root, as the page says, then every
    command of the page's session: the output is the page's, but for times and writer
    ids. The folder holds ``examples`` as a link, so the commands run as written."""
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    for argv in (["--reset"], []):
        subprocess.run(
            [sys.executable, "examples/bank.py", *argv],
            cwd=tmp_path,
            check=True,
            capture_output=True,
            timeout=120,
        )
    expected = _documented_session()
    lines: list[str] = []
    status = None
    for line in expected.splitlines():
        if not line.startswith("$ "):
            continue
        lines.append(line)
        if line == "$ echo $?":
            lines.append(str(status))
            continue
        command = shlex.split(line[2:])
        assert command[0] == "python"
        result = subprocess.run(
            [sys.executable, *command[1:]],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        status = result.returncode
        lines.extend((result.stdout + result.stderr).splitlines())
    assert len(lines) > 10
    assert _VARYING.sub(r"\1=...", "\n".join(lines) + "\n") == _VARYING.sub(r"\1=...", expected)
