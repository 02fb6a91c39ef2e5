"""The journal inspection tool: ``python -m actors.persistence``.

Commands (``--help`` on each tells more)::

    python -m actors.persistence --sqlite PATH ids [--counts]
    python -m actors.persistence --sqlite PATH events PID [--from N] [--to N] [--tag T] [--raw]
    python -m actors.persistence --sqlite PATH snapshot PID [--max-seq N] [--raw]
    python -m actors.persistence --sqlite PATH state PID --class MODULE:NAME [--pass-id]
        [--to-seq N] [--at TIME]
    python -m actors.persistence --sqlite PATH check [--decode]

``--postgres DSN`` reads a PostgreSQL journal instead of ``--sqlite PATH`` (all commands
but ``check``). ``--key-file PATH`` (or ``$ACTORS_JOURNAL_KEY_FILE``) gives the key of a
signed journal. The journal options (``--sqlite``, ``--postgres``, ``--serialization``,
``--import-path``, ``--key-file``) may be given before or after the command name.

Integrity
    Every record's digest is checked before it is decoded (see :mod:`._integrity`): a
    record that fails is shown ``REFUSED`` by ``events`` and ``snapshot`` (exit status
    1), and is a ``digest:`` problem of ``check``; a signed record read without the key
    is ``NOT VERIFIED`` (exit status 3, like a record not decodable here). ``check``
    reads a journal of schema version 1 as it is; the other commands refuse it rather
    than upgrade it (the backends upgrade a journal when they open it).

Semantics
    ``ids``, ``events``, ``snapshot`` and ``state`` read through the :class:`Journal` and
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
    invariants (see :func:`._sqlite_check.check_journal`, beside the schema it checks).

    A SQLite journal that cannot be read where it is (a WAL journal in a read-only
    directory, where SQLite cannot create the ``-shm`` file even to read; for ``ids``,
    ``events`` and ``snapshot``, also a journal this process cannot write, which the
    backend refuses) is read from a private copy of the file and its ``-wal`` file,
    taken when the command starts and removed when it ends; a note on stderr says so
    (see :mod:`._sqlite_access`).

    Decoding uses the default :class:`Serialization` registry (pickle and cloudpickle),
    or the one named by ``--serialization module:name``. Both built-in serializers run
    :mod:`pickle`, which executes code named by the payload: decode only journals you
    trust (``--raw`` shows payloads without decoding them). Event classes are imported by
    name, so the application's modules must be importable: ``--import-path DIR``
    (repeatable) puts DIR first on the import path, as ``PYTHONPATH=DIR`` does. A record
    that cannot be decoded *here* (its module is not importable, its serializer not
    registered, its class was defined in ``__main__``) is told apart from a corrupt one
    (see :mod:`._cli_decode`).

Output and exit status
    Results go to stdout, errors and notes to stderr. Exit status: 0 success; 1 the
    command ran but found something wrong (a corrupt record, a problem found by
    ``check``, an unknown persistence id or a missing snapshot); 2 a usage error, or a
    journal that cannot be opened or read; 3 nothing wrong was found, but some records
    cannot be decoded in this process (the output says why, and what to do). No
    traceback is printed for any of these.

``state`` replays one persistence id into its class, as a read-only replica (see
:mod:`._cli_state`): the only command that runs the application's code beyond decoding.

Layout
    This module runs the commands; :mod:`._cli_parser` defines the command line (options
    and help); :mod:`._cli_state` runs ``state``; :mod:`._cli_decode` decodes payloads
    and says why one does not decode;
    :mod:`._sqlite_check`, beside the SQLite schema, checks SQLite files.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Sequence

import trio

from ._cli_decode import (
    CORRUPT,
    HERE,
    KEY_HINT,
    Tally,
    decode,
    digest_counts,
    digest_lines,
    refused,
)
from ._cli_decode import iso_time as _iso
from ._cli_open import Fatal, Io, open_target, preflight, readable
from ._cli_parser import (
    EXIT_ERROR,
    EXIT_NOT_DECODABLE_HERE,
    EXIT_OK,
    EXIT_PROBLEMS,
    PROG,
    Target,
    build_parser,
    load_factory,
    load_key,
    load_serialization,
    target_of,
)
from ._cli_state import cmd_state
from ._errors import JournalFailure, RecordCorrupt
from ._journal import Journal, SnapshotStore
from ._serialization import Serialization
from ._sqlite_check import Report, UnreadableJournal, check_journal

_HEX_HEAD = 32  # payload bytes shown by --raw


# -- formatting -------------------------------------------------------------------------------


def _raw(payload: bytes) -> str:
    head = payload[:_HEX_HEAD].hex()
    more = "..." if len(payload) > _HEX_HEAD else ""
    return f"size={len(payload)}  hex={head}{more}"


def _status(corrupt: int, here: Tally, what: str, io: Io) -> int:
    """Say on stderr how many of the records listed could not be decoded, and return
    the exit status: 1 if some are corrupt, else 3 if some cannot be decoded here."""
    for line in here.lines(what):
        print(f"{PROG}: {line}", file=io.err)
    if corrupt:
        return EXIT_PROBLEMS
    return EXIT_NOT_DECODABLE_HERE if here.count else EXIT_OK


# -- ids, events, snapshot -------------------------------------------------------------------


async def _cmd_ids(
    journal: Journal, snapshots: SnapshotStore, args: argparse.Namespace, io: Io
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
    journal: Journal, snapshots: SnapshotStore, args: argparse.Namespace, io: Io
) -> int:
    pid: str = args.persistence_id
    highest = await journal.highest_seq(pid)
    if highest == 0:
        print(f"{PROG}: no events were ever stored for persistence id {pid!r}", file=io.err)
        return EXIT_PROBLEMS
    serialization: Serialization = args.serialization
    shown = corrupt = 0
    here = Tally()
    records = journal.replay(pid, args.from_seq, args.to_seq).__aiter__()
    while True:
        try:
            record = await records.__anext__()
        except StopAsyncIteration:
            break
        except RecordCorrupt as error:
            # Refused before decoding (its digest): shown, and the listing goes on after it.
            shown += 1
            judged = refused(error)
            corrupt += judged.kind == CORRUPT
            if judged.kind == HERE:
                here.add(f"seq {error.seq}", judged)
            print(f"seq={error.seq}  offset={error.offset}  {judged.text}", file=io.out)
            if args.to_seq is not None and error.seq >= args.to_seq:
                break
            records = journal.replay(pid, error.seq + 1, args.to_seq).__aiter__()
            continue
        if args.tag is not None and args.tag not in record.tags:
            continue
        shown += 1
        if args.raw:
            body = _raw(record.payload)
        else:
            decoded = decode(serialization, record.serializer, record.manifest, record.payload)
            body = decoded.text
            corrupt += decoded.kind == CORRUPT
            if decoded.kind == HERE:
                here.add(f"seq {record.seq}", decoded)
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
    if corrupt:
        print(f"{PROG}: {corrupt} of {shown} events are corrupt", file=io.err)
    return _status(corrupt, here, "event", io)


async def _cmd_snapshot(
    journal: Journal, snapshots: SnapshotStore, args: argparse.Namespace, io: Io
) -> int:
    pid: str = args.persistence_id
    try:
        snapshot = await snapshots.load(pid, args.max_seq)
    except RecordCorrupt as error:
        judged = refused(error)
        print(f"seq={error.seq}  {judged.text}", file=io.out)
        if judged.kind == HERE:
            print(f"{PROG}: the snapshot is signed: {KEY_HINT}", file=io.err)
            return EXIT_NOT_DECODABLE_HERE
        return EXIT_PROBLEMS
    if snapshot is None:
        bound = f" with seq <= {args.max_seq}" if args.max_seq is not None else ""
        print(f"{PROG}: no snapshot of {pid!r}{bound}", file=io.err)
        return EXIT_PROBLEMS
    here = Tally()
    corrupt = False
    if args.raw:
        body = _raw(snapshot.payload)
    else:
        serialization: Serialization = args.serialization
        decoded = decode(serialization, snapshot.serializer, snapshot.manifest, snapshot.payload)
        body = decoded.text
        corrupt = decoded.kind == CORRUPT
        if decoded.kind == HERE:
            here.add(f"seq {snapshot.seq}", decoded)
    print(
        f"seq={snapshot.seq}  time={_iso(snapshot.timestamp)}  "
        f"serializer={snapshot.serializer}  manifest={snapshot.manifest}  {body}",
        file=io.out,
    )
    return _status(corrupt, here, "snapshot", io)


_Command = Callable[[Journal, SnapshotStore, argparse.Namespace, Io], Awaitable[int]]


def _run_on_journal(command: _Command, target: Target, args: argparse.Namespace, io: Io) -> int:
    """Run ``command`` on the opened journal in :func:`trio.run`. Failures are caught
    inside the journal's block, so they never leave it wrapped in an exception group."""
    preflight(target)

    async def run() -> int:
        try:
            async with open_target(target, args.key) as (journal, snapshots):
                try:
                    return await command(journal, snapshots, args, io)
                except RecordCorrupt as error:
                    # (from ids --counts: events and snapshot handle their own)
                    print(f"{PROG}: error: {error}", file=io.err)
                    return EXIT_NOT_DECODABLE_HERE if error.needs_key else EXIT_PROBLEMS
                except JournalFailure as error:
                    print(f"{PROG}: error: {error}", file=io.err)
                    return EXIT_ERROR
                except BrokenPipeError:
                    return _broken_pipe(io)
        except JournalFailure as error:
            raise Fatal(str(error)) from error

    return trio.run(run)


# -- check -----------------------------------------------------------------------------------


def _check_sqlite(
    path: str,
    decoding: bool,
    serialization: Serialization,
    io: Io,
    shown: str | None = None,
    key: bytes | None = None,
) -> int:
    """Check the SQLite journal at ``path``, read-only (see
    :func:`._sqlite_check.check_journal` for the problems it finds), printing one line
    per problem, one line per reason why records cannot be decoded here, a line for the
    records without a digest and one for the signed records not verified (no ``key``),
    and a summary with how many records were verified (naming the journal ``shown``,
    default ``path``: the original of a private copy). Exit status 0 when clean, 1 when
    problems were found (a corrupt record, or an unsigned one with a ``key``), 3 when
    there were none but some records cannot be decoded, or verified, in this process."""
    here = Tally()

    def corrupt(where: str, serializer: str, manifest: str, payload: bytes) -> str | None:
        decoded = decode(serialization, serializer, manifest, payload)
        if decoded.kind == HERE:
            here.add(where, decoded)
        return decoded.text if decoded.kind == CORRUPT else None

    report = Report(lambda line: print(line, file=io.out))
    try:
        check_journal(path, report, corrupt if decoding else None, key)
    except UnreadableJournal as error:
        raise Fatal(str(error)) from error
    for line in here.lines("record"):
        print(line, file=io.out)
    for line in digest_lines(report):
        print(line, file=io.out)
    checked = ", ".join(f"{n} {what}" for what, n in report.counts.items())
    if report.incomplete:
        checked = f"incomplete, {report.incomplete} check(s) could not run; {checked}"
    checked += digest_counts(report)
    if here.count:
        plural = "s" if here.count != 1 else ""
        checked = f"{checked}; {here.count} record{plural} not decodable here"
    if report.problems:
        plural = "s" if report.problems != 1 else ""
        print(f"{shown or path}: {report.problems} problem{plural} found ({checked})", file=io.out)
        return EXIT_PROBLEMS
    if report.unverified:
        print(
            f"{shown or path}: no problem found, but not every record can be verified here "
            f"({checked})",
            file=io.out,
        )
        return EXIT_NOT_DECODABLE_HERE
    if here.count:
        print(
            f"{shown or path}: no problem found, but not every record decodes here ({checked})",
            file=io.out,
        )
        return EXIT_NOT_DECODABLE_HERE
    print(f"{shown or path}: ok ({checked})", file=io.out)
    return EXIT_OK


# -- the command line ------------------------------------------------------------------------


def _broken_pipe(io: Io) -> int:
    """The reader of stdout went away (``| head``): stop quietly, as Unix tools do."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, io.out.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return 128 + 13


def main(argv: Sequence[str] | None = None) -> int:
    """Run the tool with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    io = Io(sys.stdout, sys.stderr)
    parser = build_parser()
    saved_path = list(sys.path)
    try:
        return _main(parser, argv, io)
    finally:
        sys.path[:] = saved_path  # --import-path lasts for this call only


def _main(parser: argparse.ArgumentParser, argv: Sequence[str] | None, io: Io) -> int:
    try:
        args = parser.parse_args(argv)
        target = target_of(parser, args)
        if args.command == "events" and args.to_seq is not None and args.to_seq < args.from_seq:
            parser.error(f"--to {args.to_seq} is below --from {args.from_seq}")
        # Given before or after the command name (or both): all of them, in order.
        paths = [*(args.import_path or ()), *(getattr(args, "command_import_path", None) or ())]
        sys.path[:0] = [os.path.abspath(path) for path in paths]
        spec = args.serialization
        args.serialization = Serialization() if spec is None else load_serialization(parser, spec)
        args.key = load_key(parser, args)
        if args.command == "state":
            args.factory = load_factory(parser, args.class_spec)
    except SystemExit as exit_:
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else EXIT_ERROR)
    try:
        with readable(target, args.command != "check", io) as reachable:
            if args.command == "check":
                return _check_sqlite(
                    reachable.location,
                    args.decode,
                    args.serialization,
                    io,
                    target.location,
                    key=args.key,
                )
            command: _Command = {
                "ids": _cmd_ids,
                "events": _cmd_events,
                "snapshot": _cmd_snapshot,
                "state": cmd_state,
            }[args.command]
            return _run_on_journal(command, reachable, args, io)
    except Fatal as error:
        print(f"{PROG}: error: {error}", file=io.err)
        return EXIT_ERROR
    except BrokenPipeError:
        return _broken_pipe(io)
    except KeyboardInterrupt:
        return 128 + 2
