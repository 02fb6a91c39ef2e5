"""The command line of ``python -m actors.persistence``: its commands, options and help
(:func:`build_parser`), and which journal it names (:func:`target_of`). The commands
themselves are in :mod:`._cli`."""

from __future__ import annotations

import argparse
import importlib
import math
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs

from ._integrity import check_key
from ._serialization import Serialization

PROG = "python -m actors.persistence"

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_ERROR = 2
EXIT_NOT_DECODABLE_HERE = 3

KEY_FILE_VARIABLE = "ACTORS_JOURNAL_KEY_FILE"
"""The environment variable naming the key file when ``--key-file`` is not given."""

TRUST_NOTE = (
    "Decoding runs pickle, which executes code named by the payload: decode only journals "
    "you trust (--raw shows payloads without decoding them). Every record's digest is "
    "checked before it is decoded, but only a signed journal (--key-file) is safe from "
    "a record crafted by someone who can write the database."
)


#: Each command: its one-line help, its description, and whether it decodes payloads
#: (its help then ends with the trust note).
_COMMANDS = {
    "ids": (
        "list the persistence ids",
        "List every persistence id with at least one event ever stored, one per line, sorted.",
        False,
    ),
    "events": (
        "print the events of one persistence id",
        "Print the stored events of one persistence id in seq order, one line each: seq, "
        "time (ISO 8601, UTC), offset, serializer, manifest, tags, writer id, and the "
        "decoded event (its repr). An event that this process cannot decode (its module "
        "is not importable here, its serializer is not registered, its class was defined "
        "in __main__) is printed with NOT DECODABLE HERE and the reason, and the exit "
        "status is then 3; a corrupt one with UNDECODABLE and the error, and the exit "
        "status is then 1. The listing goes on either way.",
        True,
    ),
    "snapshot": (
        "print the newest snapshot of one persistence id",
        "Print the newest snapshot of one persistence id: seq, time, serializer, manifest "
        "and the decoded state (its repr); exit status 1 if there is none or it is "
        "corrupt, 3 if it cannot be decoded in this process.",
        True,
    ),
    "state": (
        "print the state of one persistence id at a point in time",
        "Replay one persistence id into its class, as a read-only replica (see Replica in "
        "docs/persistence.md): the newest snapshot at or before the point, then the events "
        "up to it (--to-seq N: seq <= N; --at TIME: stored at or before TIME, stopping at "
        "the first event after it; neither: every event). The class (--class MODULE:NAME, "
        "a PersistentActor subclass or a function returning an instance) is imported and "
        "called with no argument (with --pass-id: with the persistence id); an instance "
        "without a persistence_id gets PID, one with another id is refused. Its "
        "on_recovery_completed and pre_start run; it never writes. Prints "
        "persistence_id, seq and time of the last event applied, then the state: "
        "state=<repr of snapshot()> if the class implements snapshot(), else one "
        "name=<repr> line per public attribute of the instance. Exit status 1 if the id "
        "has no events or the recovery failed (events missing or corrupt, apply raised), "
        "2 if the class cannot be imported or made, 3 if an event cannot be decoded in "
        "this process.",
        True,
    ),
    "check": (
        "check a SQLite journal's integrity (read-only)",
        "Check a SQLite journal, opened read-only: SQLite's full integrity check, a "
        "supported schema version, and the journal's invariants (each persistence id's "
        "stored seqs contiguous from the lowest stored one, its highest_seq not below "
        "them, tag rows matching the events, offsets increasing with seq, snapshots not "
        "beyond the highest seq), and every record's digest (its checksum, or with "
        "--key-file its signature: a record changed since it was written, or not signed "
        "when a key is given, is a problem, and is not decoded); with --decode, every "
        "payload decodes. Prints one line per problem, one line per reason why records "
        "cannot be decoded or verified in this process (not a problem of the journal: the "
        "line says what to do), and a summary with how many records were verified; exit "
        "status 0 if clean, 1 if problems were found, 2 if the file cannot be opened, 3 if "
        "no problem was found but some records cannot be decoded here (or are signed, and "
        "no key was given).",
        True,
    ),
}


@attrs.frozen
class Target:
    """Which journal the command reads: a backend name and where its data lives."""

    backend: str
    location: str


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _natural(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _moment(text: str) -> float:
    """``--at``: ISO 8601 with a time zone, or seconds since the epoch."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if not math.isfinite(seconds):
            raise argparse.ArgumentTypeError(f"not a time: {text!r}")
        return seconds
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a time: {text!r}; give ISO 8601 with a time zone (2026-12-06T10:00:00Z, "
            "2026-12-06T11:00:00+01:00) or seconds since the epoch (1796551200)"
        ) from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no time zone, so it names no single moment: add one "
            f"({text}Z for UTC, or an offset such as {text}+01:00)"
        )
    return moment.timestamp()


def _serialization_spec(spec: str) -> str:
    """``module:name``, checked for its form; loaded by :func:`load_serialization` once
    the ``--import-path`` directories are on the path."""
    module_name, sep, name = spec.partition(":")
    if not sep or not module_name or not name:
        raise argparse.ArgumentTypeError(f"expected module:name, got {spec!r}")
    return spec


def load_serialization(parser: argparse.ArgumentParser, spec: str) -> Serialization:
    """The :class:`Serialization` that ``module:name`` names (or that the callable it
    names returns); ``parser.error`` (exit status 2) if it cannot be loaded."""
    module_name, _, name = spec.partition(":")
    try:
        found: Any = getattr(importlib.import_module(module_name), name)
        if not isinstance(found, Serialization) and callable(found):
            found = found()
    except Exception as error:
        parser.error(
            f"argument --serialization: cannot load {spec!r}: {type(error).__name__}: {error}"
        )
    if not isinstance(found, Serialization):
        parser.error(
            f"argument --serialization: {spec!r} is a {type(found).__qualname__}, not a "
            "Serialization"
        )
    return found


def load_factory(parser: argparse.ArgumentParser, spec: str) -> Callable[..., Any]:
    """The class (or function) that ``--class module:name`` names (``name`` may be
    dotted: ``Outer.Inner``); ``parser.error`` (exit status 2) if it cannot be imported,
    is not callable, or is a class that is not a :class:`PersistentActor`."""
    from ._persistent import PersistentActor

    module_name, _, name = spec.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except Exception as error:
        parser.error(
            f"argument --class: cannot import module {module_name!r}: "
            f"{type(error).__name__}: {error} (is the application on the import path? "
            "--import-path DIR, or PYTHONPATH=DIR)"
        )
    for part in name.split("."):
        try:
            found = getattr(found, part)
        except AttributeError:
            parser.error(f"argument --class: module {module_name!r} has no {name!r}")
    if isinstance(found, type) and not issubclass(found, PersistentActor):
        parser.error(
            f"argument --class: {spec} is not a PersistentActor (a class of "
            "actors.persistence.PersistentActor, or a function returning an instance of one)"
        )
    if not callable(found):
        parser.error(
            f"argument --class: {spec} is a {type(found).__qualname__}, not a class or a function"
        )
    return found  # type: ignore[no-any-return]


def load_key(parser: argparse.ArgumentParser, args: argparse.Namespace) -> bytes | None:
    """The journal's key: the bytes of the file named by ``--key-file`` (or by
    :data:`KEY_FILE_VARIABLE`), ``None`` if neither is given; ``parser.error`` (exit
    status 2) if the file cannot be read or does not hold a key. (The key itself never
    appears on the command line, where other users could see it.)"""
    path = getattr(args, "key_file", None)
    source = "argument --key-file"
    if path is None:
        path = os.environ.get(KEY_FILE_VARIABLE) or None
        source = f"${KEY_FILE_VARIABLE}"
    if path is None:
        return None
    try:
        key = Path(path).read_bytes()
    except OSError as error:
        parser.error(f"{source}: cannot read the key file {path}: {error.strerror or error}")
    try:
        return check_key(key)
    except ValueError as error:
        parser.error(f"{source}: the key file {path} holds no usable key: {error}")


def _journal_options(parser: argparse.ArgumentParser, *, on_command: bool) -> None:
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
        type=_serialization_spec,
        default=default,
        help="decode with this Serialization registry (or a callable returning one) "
        "instead of the default one (pickle and cloudpickle); use it when events were "
        "written by a custom serializer",
    )
    group.add_argument(
        "--key-file",
        metavar="PATH",
        default=default,
        help="the key of a signed journal: the file's bytes, exactly as the application "
        "passes them as key= to open_sqlite_journal or open_postgres_journal (default: "
        f"the file named by ${KEY_FILE_VARIABLE}, if set); every record is then verified "
        "against it, and one not signed with it is refused",
    )
    group.add_argument(
        "--import-path",
        metavar="DIR",
        action="append",
        dest="command_import_path" if on_command else "import_path",
        default=default,
        help="put DIR first on the import path (as PYTHONPATH=DIR does) before decoding, "
        "so that the modules of the application's event classes can be imported; may be "
        "repeated",
    )


def build_parser() -> argparse.ArgumentParser:
    """The parser of the tool's command line: the journal options (before or after the
    command name) and one subcommand per command, with their help."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Inspect the journal of persistent actors: list persistence ids, print "
        "an actor's events and newest snapshot decoded, or its state at a point in time "
        "(replayed into its class), check a SQLite journal's integrity. The tool never "
        "writes events or snapshots, and never modifies a SQLite journal.",
        epilog=f"{TRUST_NOTE} Event classes are imported by name: give the tool the "
        "application's modules with --import-path DIR (or PYTHONPATH=DIR). Exit status: "
        "0 ok; 1 something wrong was found (a corrupt record, a check problem, an unknown "
        "id, no snapshot); 2 usage error, or a journal that cannot be opened or read; 3 "
        "nothing wrong was found, but some records cannot be decoded in this process (a "
        "module not importable here, a serializer not registered, a class defined in "
        "__main__, a signed record and no key): the output says which and what to do.",
    )
    _journal_options(parser, on_command=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    sub = {
        name: commands.add_parser(
            name, help=summary, description=description, epilog=TRUST_NOTE if decodes else None
        )
        for name, (summary, description, decodes) in _COMMANDS.items()
    }
    sub["ids"].add_argument(
        "--counts",
        action="store_true",
        help="also show, tab-separated: highest_seq (never lowered by deletions), events "
        "(the number still stored), stored_seqs (lowest..highest stored) and snapshot_seq "
        "(the newest snapshot); reads every stored event",
    )
    events = sub["events"]
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
    snapshot = sub["snapshot"]
    snapshot.add_argument("persistence_id", metavar="PID", help="the persistence id")
    snapshot.add_argument("--max-seq", type=_positive, metavar="N", help="the newest with seq <= N")
    snapshot.add_argument(
        "--raw", action="store_true", help="do not decode: show size and hex head"
    )
    state = sub["state"]
    state.add_argument("persistence_id", metavar="PID", help="the persistence id")
    state.add_argument(
        "--class",
        dest="class_spec",
        required=True,
        type=_serialization_spec,
        metavar="MODULE:NAME",
        help="the actor's class (a PersistentActor subclass), or a function returning an "
        "instance; imported (runs the module) and called with no argument",
    )
    state.add_argument(
        "--pass-id",
        action="store_true",
        help="call the class (or function) with the persistence id as its one argument",
    )
    state.add_argument(
        "--to-seq",
        type=_natural,
        metavar="N",
        help="only the events with seq <= N",
    )
    state.add_argument(
        "--at",
        type=_moment,
        metavar="TIME",
        help="only the events stored at or before TIME (ISO 8601 with a time zone, such as "
        "2026-12-06T10:00:00Z, or seconds since the epoch); the replay stops at the first "
        "event stored after it",
    )
    sub["check"].add_argument(
        "--decode",
        action="store_true",
        help="also decode every event and snapshot (reads every payload; runs pickle): a "
        "corrupt one is a problem, one that cannot be decoded in this process is counted "
        "apart",
    )
    for command in sub.values():
        _journal_options(command, on_command=True)
    return parser


def target_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> Target:
    """The journal that the parsed ``args`` name; ``parser.error`` (exit status 2) if
    they name none or two, or ask ``check`` of a PostgreSQL journal."""
    if args.sqlite is not None and args.postgres is not None:
        parser.error("give one journal: --sqlite or --postgres, not both")
    if args.sqlite is not None:
        return Target("sqlite", args.sqlite)
    if args.postgres is not None:
        if args.command == "check":
            parser.error("check reads SQLite journals only (--sqlite PATH)")
        return Target("postgres", args.postgres)
    parser.error("which journal? give --sqlite PATH or --postgres DSN")
