"""How ``python -m actors.persistence`` reaches a journal: the checks before opening
it, a private copy of a SQLite journal it cannot read where it is, and opening it on
its backend."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from typing import TextIO

import attrs

from ._cli_parser import PROG, Target
from ._journal import Journal, SnapshotStore
from ._sqlite import open_sqlite_journal
from ._sqlite_access import in_place_problem, private_copy
from ._sqlite_check import UnreadableJournal, refuse_non_journal


class Fatal(Exception):
    """The command cannot run or go on: printed as one error line, exit status 2."""


@attrs.frozen
class Io:
    out: TextIO
    err: TextIO


# -- opening a journal ----------------------------------------------------------------------


def preflight(target: Target) -> None:
    """Synchronous checks before the event loop starts: for SQLite, refuse (read-only) a
    file that is not a journal (see :func:`._sqlite_check.refuse_non_journal`); for
    PostgreSQL, refuse a journal of schema version 1, which the backend would upgrade."""
    if target.backend == "sqlite":
        try:
            refuse_non_journal(target.location)
        except UnreadableJournal as error:
            raise Fatal(str(error)) from error
    elif target.backend == "postgres" and _postgres_versions(target.location) == [1]:
        raise Fatal(
            "the PostgreSQL journal has schema version 1; this tool reads version 2 and does "
            "not upgrade a journal (opening it from the application, with "
            "open_postgres_journal, upgrades it, keeping every record)"
        )


@contextmanager
def readable(target: Target, writes: bool, io: Io) -> Iterator[Target]:
    """``target``, or a private copy of a SQLite journal that this process cannot read
    where it is (see :func:`._sqlite_access.in_place_problem`: a WAL journal in a
    read-only directory, where SQLite cannot create the ``-shm`` file even to read; with
    ``writes``, for the commands that open the journal through its backend, also a
    journal this process cannot write). The copy holds what was committed when it was
    taken (the database and its ``-wal`` file); a note on stderr says so, and it is
    removed when the block exits."""
    problem = None
    if target.backend == "sqlite":
        problem = in_place_problem(target.location, writes=writes)
    if problem is None:
        yield target
        return
    with ExitStack() as stack:
        try:
            copy, copied = stack.enter_context(private_copy(target.location))
        except OSError as error:
            raise Fatal(
                f"cannot read {target.location} where it is ({problem}), nor copy it: {error}"
            ) from error
        print(
            f"{PROG}: note: cannot read {target.location} where it is: {problem}; reading "
            f"a private copy of {' and '.join(copied)} instead, taken now (what was "
            "committed then), removed on exit",
            file=io.err,
        )
        yield Target("sqlite", copy)


@asynccontextmanager
async def open_target(
    target: Target, key: bytes | None = None
) -> AsyncIterator[tuple[Journal, SnapshotStore]]:
    """The journal and snapshot store of ``target`` (opened with the journal's ``key``,
    if given), for the time of the block.

    Another backend is one more ``Target`` kind in :func:`._cli_parser.target_of` and one
    more branch here. PostgreSQL is imported lazily, so that reading SQLite needs no
    PostgreSQL driver."""
    if target.backend == "sqlite":
        async with open_sqlite_journal(target.location, key=key) as journal:
            yield journal, journal.snapshots
        return
    if target.backend == "postgres":
        try:
            from ._postgres import open_postgres_journal
        except ImportError as error:
            raise Fatal(
                f"--postgres needs the psycopg package (pip install 'psycopg[binary]'): {error}"
            ) from None
        async with open_postgres_journal(target.location, key=key) as pg_journal:
            yield pg_journal, pg_journal.snapshots
        return
    raise AssertionError(f"unknown backend {target.backend!r}")  # pragma: no cover


def _postgres_versions(dsn: str) -> list[int] | None:
    """:func:`._postgres.schema_versions`, or ``None`` without psycopg (which opening
    the journal then reports)."""
    try:
        from ._postgres import schema_versions
    except ImportError:
        return None
    return schema_versions(dsn)
