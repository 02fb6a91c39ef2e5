"""The journal inspection tool: ``python -m actors.persistence``.

Commands (``--help`` on each tells more)::

    python -m actors.persistence --sqlite PATH ids [--counts]
    python -m actors.persistence --sqlite PATH events PID [--from N] [--to N] [--tag T] [--raw]
    python -m actors.persistence --sqlite PATH snapshot PID [--max-seq N] [--raw]
    python -m actors.persistence --sqlite PATH check [--decode]

``--postgres DSN`` reads a PostgreSQL journal instead of ``--sqlite PATH`` (all commands
but ``check``). The journal options (``--sqlite``, ``--postgres``, ``--serialization``)
may be given before or after the command name.

Semantics
    ``ids``, ``events`` and ``snapshot`` read through the :class:`Journal` and
    :class:`SnapshotStore` contracts, so they work the same on every backend. For SQLite,
    the file is first checked read-only: a missing file is never created, and a file that
    is not a journal of this library (not SQLite, or without its tables) is refused
    before the backend opens it, so the tool never adds a schema to a foreign database.
    Reads take no lock that stops a live application from writing. (PostgreSQL: the
    backend creates its tables in the database if they are missing.)

    ``check`` is SQLite-specific and opens the file read-only (a ``mode=ro`` URI): it
    never modifies the journal. (As any SQLite reader of a WAL database, it may leave
    the empty ``-wal`` and ``-shm`` files next to it, which SQLite itself manages.) It
    runs SQLite's full ``PRAGMA integrity_check`` and checks the journal's own
    invariants (see :func:`_check_sqlite`).

    Decoding uses the default :class:`Serialization` registry (pickle and cloudpickle),
    or the one named by ``--serialization module:name``. Both built-in serializers run
    :mod:`pickle`, which executes code named by the payload: decode only journals you
    trust (``--raw`` shows payloads without decoding them). Event classes are imported by
    name, so run the tool where the application's modules are importable (or set
    ``PYTHONPATH``).

Output and exit status
    Results go to stdout, errors and notes to stderr. Exit status: 0 success; 1 the
    command ran but found something wrong (an undecodable record, a problem found by
    ``check``, an unknown persistence id or a missing snapshot); 2 a usage error, or a
    journal that cannot be opened or read. No traceback is printed for any of these.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import attrs
import trio

from ._errors import JournalFailure
from ._journal import Journal, SnapshotStore
from ._serialization import Serialization
from ._sqlite import SCHEMA_VERSION, open_sqlite_journal

PROG = "python -m actors.persistence"

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_ERROR = 2

#: The tables every SQLite journal of this library has.
_SQLITE_TABLES = ("schema_version", "events", "event_tags", "journal_metadata", "snapshots")

_HEX_HEAD = 32  # payload bytes shown by --raw

_TRUST_NOTE = (
    "Decoding runs pickle, which executes code named by the payload: decode only journals "
    "you trust (--raw shows payloads without decoding them)."
)


class _Fatal(Exception):
    """The command cannot run or go on: printed as one error line, exit status 2."""


@attrs.frozen
class _Target:
    """Which journal the command reads: a backend name and where its data lives."""

    backend: str
    location: str


@attrs.frozen
class _Io:
    out: TextIO
    err: TextIO


# -- opening a journal ----------------------------------------------------------------------


def _sqlite_uri(path: str) -> str:
    return Path(path).absolute().as_uri() + "?mode=ro"


def _connect_sqlite_read_only(path: str) -> sqlite3.Connection:
    """A read-only connection to the existing SQLite file ``path`` whose header has been
    read; :class:`_Fatal` if the file is missing or not a SQLite database at all.
    (A file that is SQLite but corrupt is left to the caller to report.)"""
    if not os.path.exists(path):
        raise _Fatal(f"no such journal file: {path}")
    if not os.path.isfile(path):
        raise _Fatal(f"not a journal file (a directory or device): {path}")
    try:
        conn = sqlite3.connect(_sqlite_uri(path), uri=True, isolation_level=None)
    except sqlite3.Error as error:
        raise _Fatal(f"cannot open SQLite journal {path}: {error}") from error
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as error:
        if getattr(error, "sqlite_errorname", "") == "SQLITE_CORRUPT":
            return conn
        conn.close()
        raise _Fatal(f"cannot read SQLite journal {path}: {_describe_sqlite(error)}") from error
    return conn


def _describe_sqlite(error: sqlite3.Error, *, hint: bool = True) -> str:
    """The error, with what it means for the file (and, with ``hint``, what to do)."""
    name = getattr(error, "sqlite_errorname", "")
    if name == "SQLITE_NOTADB":
        return f"{error} (the file is not a SQLite database, or its header is garbled)"
    if name == "SQLITE_CORRUPT":
        advice = "; run the check command" if hint else ""
        return f"{error} (the file is corrupt or truncated{advice})"
    return str(error)


def _preflight_sqlite(path: str) -> None:
    """Refuse, read-only, anything that the backend should not open: a missing file (it
    would be created), a file that is not SQLite, or a SQLite database that is not a
    journal of a supported schema version (the backend would add its tables to it)."""
    conn = _connect_sqlite_read_only(path)
    try:
        try:
            names = {
                row[0]
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            missing = [table for table in _SQLITE_TABLES if table not in names]
            if missing:
                raise _Fatal(
                    f"{path} is not a journal of this library: table(s) "
                    f"{', '.join(missing)} missing"
                )
            versions = conn.execute("SELECT version FROM schema_version").fetchall()
        except sqlite3.DatabaseError as error:
            raise _Fatal(f"cannot read SQLite journal {path}: {_describe_sqlite(error)}") from error
        if versions != [(SCHEMA_VERSION,)]:
            found = ", ".join(str(v[0]) for v in versions) or "none"
            raise _Fatal(
                f"SQLite journal {path} has schema version {found}; this tool reads "
                f"version {SCHEMA_VERSION}"
            )
    finally:
        conn.close()


def _preflight(target: _Target) -> None:
    """Synchronous checks before the event loop starts (see :func:`_preflight_sqlite`)."""
    if target.backend == "sqlite":
        _preflight_sqlite(target.location)


@asynccontextmanager
async def _open(target: _Target) -> AsyncIterator[tuple[Journal, SnapshotStore]]:
    """The journal and snapshot store of ``target``, for the time of the block.

    Another backend is one more ``_Target`` kind in :func:`_target_of` and one more branch
    here. PostgreSQL is imported lazily, so that reading SQLite needs no PostgreSQL
    driver."""
    if target.backend == "sqlite":
        async with open_sqlite_journal(target.location) as journal:
            yield journal, journal.snapshots
        return
    if target.backend == "postgres":
        try:
            from ._postgres import open_postgres_journal
        except ImportError as error:
            raise _Fatal(
                f"--postgres needs the psycopg package (pip install 'psycopg[binary]'): {error}"
            ) from None
        async with open_postgres_journal(target.location) as pg_journal:
            yield pg_journal, pg_journal.snapshots
        return
    raise AssertionError(f"unknown backend {target.backend!r}")  # pragma: no cover


# -- formatting -------------------------------------------------------------------------------


def _iso(timestamp: float) -> str:
    """ISO 8601 in UTC with milliseconds; ``-`` for 0 (a record's "not set")."""
    if timestamp == 0:
        return "-"
    try:
        moment = datetime.fromtimestamp(timestamp, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return repr(timestamp)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _raw(payload: bytes) -> str:
    head = payload[:_HEX_HEAD].hex()
    more = "..." if len(payload) > _HEX_HEAD else ""
    return f"size={len(payload)}  hex={head}{more}"


def _decoded(serialization: Serialization, serializer: str, manifest: str, payload: bytes) -> str:
    """``event=<repr>``, or ``UNDECODABLE: <why>`` (raises nothing but BaseException)."""
    if manifest.startswith("__main__."):
        # Pickle would look the class up in this tool's own __main__ and say something
        # confusing (or, worse, find a class of the same name there).
        return (
            "UNDECODABLE: its class was defined in a script run as __main__, which this "
            "tool cannot import (keep event classes in an importable module; --raw shows "
            "the payload)"
        )
    try:
        value = serialization.deserialize(serializer, manifest, payload)
    except Exception as error:
        return f"UNDECODABLE: {type(error).__name__}: {error}"
    try:
        return f"value={value!r}"
    except Exception as error:
        return f"value=<repr failed: {type(error).__name__}: {error}>"


def _is_undecodable(text: str) -> bool:
    return text.startswith("UNDECODABLE:")


# -- ids, events, snapshot -------------------------------------------------------------------


async def _cmd_ids(
    journal: Journal, snapshots: SnapshotStore, args: argparse.Namespace, io: _Io
) -> int:
    for pid in await journal.persistence_ids():
        if not args.counts:
            print(pid, file=io.out)
            continue
        highest = await journal.highest_seq(pid)
        count = 0
        first = last = 0
        async for record in journal.replay(pid):
            count += 1
            first = first or record.seq
            last = record.seq
        stored = f"{first}..{last}" if count else "-"
        snapshot = await snapshots.load(pid)
        snap = str(snapshot.seq) if snapshot is not None else "-"
        print(
            f"{pid}\thighest_seq={highest}\tevents={count}\tstored_seqs={stored}"
            f"\tsnapshot_seq={snap}",
            file=io.out,
        )
    return EXIT_OK


async def _cmd_events(
    journal: Journal, snapshots: SnapshotStore, args: argparse.Namespace, io: _Io
) -> int:
    pid: str = args.persistence_id
    highest = await journal.highest_seq(pid)
    if highest == 0:
        print(f"{PROG}: no events were ever stored for persistence id {pid!r}", file=io.err)
        return EXIT_PROBLEMS
    serialization: Serialization = args.serialization
    shown = undecodable = 0
    async for record in journal.replay(pid, args.from_seq, args.to_seq):
        if args.tag is not None and args.tag not in record.tags:
            continue
        shown += 1
        if args.raw:
            body = _raw(record.payload)
        else:
            body = _decoded(serialization, record.serializer, record.manifest, record.payload)
            undecodable += _is_undecodable(body)
        tags = ",".join(sorted(record.tags)) or "-"
        print(
            f"seq={record.seq}  time={_iso(record.timestamp)}  offset={record.offset}  "
            f"serializer={record.serializer}  manifest={record.manifest}  tags={tags}  "
            f"writer={record.writer_id or '-'}  {body}",
            file=io.out,
        )
    if shown == 0:
        print(
            f"{PROG}: no stored events of {pid!r} match (highest seq {highest}; events "
            "up to a deletion are gone)",
            file=io.err,
        )
    if undecodable:
        print(f"{PROG}: {undecodable} of {shown} events could not be decoded", file=io.err)
        return EXIT_PROBLEMS
    return EXIT_OK


async def _cmd_snapshot(
    journal: Journal, snapshots: SnapshotStore, args: argparse.Namespace, io: _Io
) -> int:
    pid: str = args.persistence_id
    snapshot = await snapshots.load(pid, args.max_seq)
    if snapshot is None:
        bound = f" with seq <= {args.max_seq}" if args.max_seq is not None else ""
        print(f"{PROG}: no snapshot of {pid!r}{bound}", file=io.err)
        return EXIT_PROBLEMS
    if args.raw:
        body = _raw(snapshot.payload)
    else:
        serialization: Serialization = args.serialization
        body = _decoded(serialization, snapshot.serializer, snapshot.manifest, snapshot.payload)
    print(
        f"seq={snapshot.seq}  time={_iso(snapshot.timestamp)}  "
        f"serializer={snapshot.serializer}  manifest={snapshot.manifest}  {body}",
        file=io.out,
    )
    return EXIT_PROBLEMS if _is_undecodable(body) else EXIT_OK


_Command = Callable[[Journal, SnapshotStore, argparse.Namespace, _Io], Awaitable[int]]


def _run_on_journal(command: _Command, target: _Target, args: argparse.Namespace, io: _Io) -> int:
    """Run ``command`` on the opened journal in :func:`trio.run`. Failures are caught
    inside the journal's block, so they never leave it wrapped in an exception group."""
    _preflight(target)

    async def run() -> int:
        try:
            async with _open(target) as (journal, snapshots):
                try:
                    return await command(journal, snapshots, args, io)
                except JournalFailure as error:
                    print(f"{PROG}: error: {error}", file=io.err)
                    return EXIT_ERROR
                except BrokenPipeError:
                    return _broken_pipe(io)
        except JournalFailure as error:
            raise _Fatal(str(error)) from error

    return trio.run(run)


# -- check -----------------------------------------------------------------------------------


class _Report:
    """Problems found by ``check``: one stdout line each, and the count."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.problems = 0
        #: Checks that could not run (SQLite failed): the counts in the summary are then
        #: partial.
        self.incomplete = 0

    def problem(self, text: str) -> None:
        self.problems += 1
        print(text, file=self.out)


def _check_sqlite(path: str, decode: bool, serialization: Serialization, io: _Io) -> int:
    """Check the SQLite journal at ``path``, read-only. Problems, one line each:

    * ``integrity:`` what SQLite's full ``PRAGMA integrity_check`` reports;
    * ``schema:`` a missing table or an unsupported schema version (the remaining
      checks are skipped: they assume the schema);
    * ``seq:`` a persistence id's stored seqs are not contiguous from the lowest stored
      one (events below it were deleted) to the highest, or a seq is below 1;
    * ``metadata:`` a persistence id with events has no ``highest_seq``, or one below its
      highest stored seq (the next write would reuse stored numbers);
    * ``tags:`` a tag row points at no event, or an event's tags disagree with its tag
      rows (``events_by_tag`` would miss or invent it);
    * ``offset:`` offsets do not increase with seq within a persistence id;
    * ``snapshot:`` a snapshot is beyond the highest seq of its persistence id;
    * ``decode:`` (with ``decode``) an event or snapshot cannot be decoded.

    A check that SQLite cannot run (the file is corrupt) is itself a problem; the
    others still run. Exit status 0 when clean, 1 when problems were found.
    """
    conn = _connect_sqlite_read_only(path)
    report = _Report(io.out)
    counts = {"persistence ids": 0, "events": 0, "snapshots": 0}
    try:
        _run_checks(conn, report, counts, decode, serialization)
    finally:
        conn.close()
    checked = ", ".join(f"{n} {what}" for what, n in counts.items())
    if report.incomplete:
        checked = f"incomplete, {report.incomplete} check(s) could not run; {checked}"
    if report.problems:
        plural = "s" if report.problems != 1 else ""
        print(f"{path}: {report.problems} problem{plural} found ({checked})", file=io.out)
        return EXIT_PROBLEMS
    print(f"{path}: ok ({checked})", file=io.out)
    return EXIT_OK


def _run_checks(
    conn: sqlite3.Connection,
    report: _Report,
    counts: dict[str, int],
    decode: bool,
    serialization: Serialization,
) -> None:
    def guarded(what: str, check: Callable[[], None]) -> bool:
        try:
            check()
        except sqlite3.Error as error:
            report.problem(f"{what}: cannot check: {_describe_sqlite(error, hint=False)}")
            report.incomplete += 1
            return False
        return True

    def integrity() -> None:
        rows = conn.execute("PRAGMA integrity_check").fetchall()
        if rows != [("ok",)]:
            for (line,) in rows:
                report.problem(f"integrity: {line}")

    schema_ok = False

    def schema() -> None:
        nonlocal schema_ok
        names = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
        missing = [table for table in _SQLITE_TABLES if table not in names]
        for table in missing:
            report.problem(f"schema: table {table} is missing")
        if missing:
            report.incomplete += 1
            return
        versions = [row[0] for row in conn.execute("SELECT version FROM schema_version")]
        if versions != [SCHEMA_VERSION]:
            report.problem(
                f"schema: version {versions or 'none'} is not supported (this tool reads "
                f"[{SCHEMA_VERSION}]); the other checks are skipped"
            )
            report.incomplete += 1
            return
        schema_ok = True

    guarded("integrity", integrity)
    guarded("schema", schema)
    if not schema_ok:
        return

    def seqs() -> None:
        for pid, seq in conn.execute(
            "SELECT persistence_id, seq FROM events WHERE seq < 1 ORDER BY persistence_id, seq"
        ):
            report.problem(f"seq: {pid!r} has an event with seq {seq} (below 1)")
        for pid, before, after in conn.execute(
            "SELECT persistence_id, prev, seq FROM (SELECT persistence_id, seq, "
            "LAG(seq) OVER (PARTITION BY persistence_id ORDER BY seq) AS prev FROM events) "
            "WHERE prev IS NOT NULL AND seq != prev + 1 ORDER BY persistence_id, seq"
        ):
            missing = (
                f"seq {before + 1}" if after == before + 2 else f"seqs {before + 1}..{after - 1}"
            )
            report.problem(
                f"seq: {pid!r} has a gap: {missing} missing between stored seqs {before} "
                f"and {after}"
            )

    def metadata() -> None:
        counts["persistence ids"] = conn.execute(
            "SELECT COUNT(*) FROM journal_metadata"
        ).fetchone()[0]
        for pid, stored, highest in conn.execute(
            "SELECT e.persistence_id, MAX(e.seq), m.highest_seq FROM events e "
            "LEFT JOIN journal_metadata m ON m.persistence_id = e.persistence_id "
            "GROUP BY e.persistence_id ORDER BY e.persistence_id"
        ):
            if highest is None:
                report.problem(
                    f"metadata: {pid!r} has events up to seq {stored} but no highest_seq "
                    "(it is not listed by ids, and its next write would restart at 1)"
                )
            elif highest < stored:
                report.problem(
                    f"metadata: {pid!r} has highest_seq {highest}, below its highest stored "
                    f"seq {stored} (its next write would reuse stored seqs)"
                )

    def dangling_tags() -> None:
        for tag, offset in conn.execute(
            "SELECT tag, event_offset FROM event_tags t WHERE NOT EXISTS (SELECT 1 FROM "
            "events e WHERE e.event_offset = t.event_offset) ORDER BY event_offset, tag"
        ):
            report.problem(f"tags: tag row {tag!r} points at offset {offset}, which has no event")

    def each_event() -> None:
        payload = "e.payload" if decode else "NULL"
        rows = conn.execute(
            "SELECT e.persistence_id, e.seq, e.event_offset, e.serializer, e.manifest, "
            f"e.tags, {payload}, (SELECT json_group_array(t.tag) FROM event_tags t "
            "WHERE t.event_offset = e.event_offset) FROM events e "
            "ORDER BY e.persistence_id, e.seq"
        )
        previous: tuple[str, int, int] | None = None
        for pid, seq, offset, serializer, manifest, tags, data, tag_rows in rows:
            counts["events"] += 1
            where = f"{pid!r} seq {seq}"
            if previous is not None and previous[0] == pid and offset <= previous[2]:
                report.problem(
                    f"offset: {where} has offset {offset}, not above offset {previous[2]} "
                    f"of seq {previous[1]}"
                )
            previous = (pid, seq, offset)
            try:
                listed = json.loads(tags)
                valid = isinstance(listed, list) and all(isinstance(t, str) for t in listed)
            except ValueError:
                valid = False
            if not valid:
                report.problem(f"tags: {where} has a malformed tags column {tags!r}")
            elif set(listed) != set(json.loads(tag_rows)):
                report.problem(
                    f"tags: {where} is tagged {sorted(listed)} but has tag rows "
                    f"{sorted(json.loads(tag_rows))}"
                )
            if decode:
                body = _decoded(serialization, serializer, manifest, bytes(data))
                if _is_undecodable(body):
                    report.problem(f"decode: event {where}: {body}")

    def each_snapshot() -> None:
        payload = "s.payload" if decode else "NULL"
        rows = conn.execute(
            "SELECT s.persistence_id, s.seq, s.serializer, s.manifest, "
            f"{payload}, m.highest_seq FROM snapshots s LEFT JOIN journal_metadata m "
            "ON m.persistence_id = s.persistence_id ORDER BY s.persistence_id, s.seq"
        )
        for pid, seq, serializer, manifest, data, highest in rows:
            counts["snapshots"] += 1
            if seq > (highest or 0):
                report.problem(
                    f"snapshot: {pid!r} has a snapshot at seq {seq}, beyond its highest "
                    f"seq {highest or 0}"
                )
            if decode:
                body = _decoded(serialization, serializer, manifest, bytes(data))
                if _is_undecodable(body):
                    report.problem(f"decode: snapshot {pid!r} seq {seq}: {body}")

    guarded("seq", seqs)
    guarded("metadata", metadata)
    guarded("tags", dangling_tags)
    guarded("events", each_event)
    guarded("snapshots", each_snapshot)


# -- the command line ------------------------------------------------------------------------


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _serialization(spec: str) -> Serialization:
    """``module:name``: a :class:`Serialization`, or a callable returning one."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise argparse.ArgumentTypeError(f"expected module:name, got {spec!r}")
    try:
        found: Any = getattr(importlib.import_module(module_name), name)
        if not isinstance(found, Serialization) and callable(found):
            found = found()
    except Exception as error:
        raise argparse.ArgumentTypeError(
            f"cannot load {spec!r}: {type(error).__name__}: {error}"
        ) from None
    if not isinstance(found, Serialization):
        raise argparse.ArgumentTypeError(
            f"{spec!r} is a {type(found).__qualname__}, not a Serialization"
        )
    return found


def _add_journal_options(parser: argparse.ArgumentParser, *, on_command: bool) -> None:
    # On a command the options default to SUPPRESS, so that leaving them out there keeps
    # what was given before the command name.
    default: Any = argparse.SUPPRESS if on_command else None
    group = parser.add_argument_group("journal")
    backends = group.add_mutually_exclusive_group()
    backends.add_argument(
        "--sqlite",
        metavar="PATH",
        default=default,
        help="the SQLite journal file to read (it is never created)",
    )
    backends.add_argument(
        "--postgres",
        metavar="DSN",
        default=default,
        help="the PostgreSQL journal to read (a libpq connection string or URI; the "
        "tables are created if missing); not for check",
    )
    group.add_argument(
        "--serialization",
        metavar="MODULE:NAME",
        type=_serialization,
        default=default,
        help="decode with this Serialization registry (or a callable returning one) "
        "instead of the default one (pickle and cloudpickle); use it when events were "
        "written by a custom serializer",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect the journal of persistent actors: list persistence ids, print "
        "an actor's events and newest snapshot decoded, check a SQLite journal's "
        "integrity. The tool never writes events or snapshots, and never modifies a SQLite "
        "journal.",
        epilog=f"{_TRUST_NOTE} Event classes are imported by name: run the tool where the "
        "application's modules are importable (or set PYTHONPATH). Exit status: 0 ok; "
        "1 something wrong was found (undecodable record, check problem, unknown id, no "
        "snapshot); 2 usage error or journal that cannot be opened or read.",
    )
    _add_journal_options(parser, on_command=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    ids = commands.add_parser(
        "ids",
        help="list the persistence ids",
        description="List every persistence id with at least one event ever stored, one "
        "per line, sorted.",
    )
    ids.add_argument(
        "--counts",
        action="store_true",
        help="also show, tab-separated: highest_seq (never lowered by deletions), events "
        "(the number still stored), stored_seqs (lowest..highest stored) and snapshot_seq "
        "(the newest snapshot); reads every stored event",
    )
    _add_journal_options(ids, on_command=True)

    events = commands.add_parser(
        "events",
        help="print the events of one persistence id",
        description="Print the stored events of one persistence id in seq order, one line "
        "each: seq, time (ISO 8601, UTC), offset, serializer, manifest, tags, writer id, "
        "and the decoded event (its repr). An event that cannot be decoded (its class is "
        "no longer importable, its serializer is unknown, its payload is garbled) is "
        "printed with UNDECODABLE and the reason, and the listing goes on; the exit "
        "status is then 1.",
        epilog=_TRUST_NOTE,
    )
    events.add_argument("persistence_id", metavar="PID", help="the persistence id")
    events.add_argument(
        "--from", dest="from_seq", type=_positive, default=1, metavar="N", help="first seq"
    )
    events.add_argument(
        "--to", dest="to_seq", type=_positive, default=None, metavar="N", help="last seq"
    )
    events.add_argument("--tag", metavar="TAG", help="only the events tagged TAG")
    events.add_argument(
        "--raw",
        action="store_true",
        help="do not decode: show the payload size and its first bytes in hex",
    )
    _add_journal_options(events, on_command=True)

    snapshot = commands.add_parser(
        "snapshot",
        help="print the newest snapshot of one persistence id",
        description="Print the newest snapshot of one persistence id: seq, time, "
        "serializer, manifest and the decoded state (its repr); exit status 1 if there is "
        "none or it cannot be decoded.",
        epilog=_TRUST_NOTE,
    )
    snapshot.add_argument("persistence_id", metavar="PID", help="the persistence id")
    snapshot.add_argument("--max-seq", type=_positive, metavar="N", help="the newest with seq <= N")
    snapshot.add_argument(
        "--raw", action="store_true", help="do not decode: show size and hex head"
    )
    _add_journal_options(snapshot, on_command=True)

    check = commands.add_parser(
        "check",
        help="check a SQLite journal's integrity (read-only)",
        description="Check a SQLite journal, opened read-only: SQLite's full integrity "
        "check, a supported schema version, and the journal's invariants (each "
        "persistence id's stored seqs contiguous from the lowest stored one, its "
        "highest_seq not below them, tag rows matching the events, offsets increasing "
        "with seq, snapshots not beyond the highest seq). Prints one line per problem and "
        "a summary; exit status 0 if clean, 1 if problems were found, 2 if the file "
        "cannot be opened.",
        epilog=_TRUST_NOTE,
    )
    check.add_argument(
        "--decode",
        action="store_true",
        help="also decode every event and snapshot (reads every payload; runs pickle)",
    )
    _add_journal_options(check, on_command=True)
    return parser


def _target_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> _Target:
    if args.sqlite is not None and args.postgres is not None:
        parser.error("give one journal: --sqlite or --postgres, not both")
    if args.sqlite is not None:
        return _Target("sqlite", args.sqlite)
    if args.postgres is not None:
        if args.command == "check":
            parser.error("check reads SQLite journals only (--sqlite PATH)")
        return _Target("postgres", args.postgres)
    parser.error("which journal? give --sqlite PATH or --postgres DSN")


def _broken_pipe(io: _Io) -> int:
    """The reader of stdout went away (``| head``): stop quietly, as Unix tools do."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, io.out.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return 128 + 13


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    io = _Io(sys.stdout, sys.stderr)
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
        target = _target_of(parser, args)
        if args.command == "events" and args.to_seq is not None and args.to_seq < args.from_seq:
            parser.error(f"--to {args.to_seq} is below --from {args.from_seq}")
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_ERROR)
    if args.serialization is None:
        args.serialization = Serialization()
    try:
        if args.command == "check":
            return _check_sqlite(target.location, args.decode, args.serialization, io)
        command: _Command = {"ids": _cmd_ids, "events": _cmd_events, "snapshot": _cmd_snapshot}[
            args.command
        ]
        return _run_on_journal(command, target, args, io)
    except _Fatal as error:
        print(f"{PROG}: error: {error}", file=io.err)
        return EXIT_ERROR
    except BrokenPipeError:
        return _broken_pipe(io)
    except KeyboardInterrupt:
        return 128 + 2
