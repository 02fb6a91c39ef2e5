"""Whether SQLite can write a journal file, and a private copy to read one it cannot.

:func:`probe_writable` and :func:`raise_if_not_writable` let
:func:`~._sqlite.open_sqlite_journal` refuse, when it opens, a journal that this process
cannot write (a read-only file, a read-only directory where SQLite cannot create the
``-wal`` and ``-shm`` files of a WAL database, a read-only file system): SQLite opens
such a file read-only without a word, and only the first write would fail.

:func:`in_place_problem` and :func:`private_copy` let ``python -m actors.persistence``
read such a journal all the same: even a read-only connection to a WAL database needs
to create the ``-shm`` file beside it, so in a read-only directory the tool reads a
private copy of the database and its ``-wal`` file (which holds the committed events
not yet copied into the database) instead.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ._errors import JournalNotWritable

_PROBE = "CREATE TABLE main.actors_write_probe (x)"
_SIDE_FILES = ("-wal", "-journal")  # what a reader needs besides the database (not -shm)
_COPY_ATTEMPTS = 3


def probe_writable(conn: sqlite3.Connection) -> None:
    """Raise the error SQLite gives if it cannot write the main database of ``conn``
    (opened with ``isolation_level=None``): a write (a new table) in a ``BEGIN
    IMMEDIATE`` transaction that is rolled back, so the file is left as it was. It takes
    the write lock for that moment (waiting up to the connection's busy timeout)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_PROBE)
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def _unwritable_part(path: str) -> tuple[str, str] | None:
    """What of the journal at ``path`` this process cannot write, as the file system
    tells (``(what, what to do)``), or ``None`` if every part looks writable."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        return None  # missing: a cause of its own, reported as SQLite's error
    try:
        read_only_mount = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
    except OSError:
        read_only_mount = False
    if read_only_mount:
        return (
            f"the file system holding {directory} is mounted read-only",
            "remount it read-write, or move the journal to a writable file system",
        )
    if os.path.exists(path) and not os.access(path, os.W_OK):
        mode = stat.S_IMODE(os.stat(path).st_mode)
        return (
            f"the file is read-only for this process: its mode is {mode:04o}",
            "make it writable by the user this process runs as (chmod u+w, or chown)",
        )
    if not os.access(directory, os.W_OK):
        needs = (
            "in it the -wal and -shm files that a WAL journal needs beside it (even to be read)"
            if os.path.exists(path)
            else "the journal in it"
        )
        return (
            f"its directory {directory} is not writable by this process, so SQLite "
            f"cannot create {needs}",
            "make the directory writable by the user this process runs as, or move the "
            "journal (with its -wal file, if any) to a directory that is",
        )
    for suffix in ("-wal", "-shm"):
        side = path + suffix
        if os.path.exists(side) and not os.access(side, os.W_OK):
            return (
                f"its {suffix} file {side} is not writable by this process",
                "make it writable by the user this process runs as (never delete a -wal "
                "file: it holds committed events)",
            )
    return None


def _diagnosis(path: str, error: sqlite3.Error) -> tuple[str, str] | None:
    """``(what is not writable, what to do)`` if ``error`` means that SQLite cannot
    write (or create) the journal at ``path``; ``None`` if it has another cause."""
    name = getattr(error, "sqlite_errorname", "")
    if not name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN")):
        return None
    part = _unwritable_part(path)
    if part is None and name.startswith("SQLITE_READONLY"):
        part = (
            "SQLite opened it read-only",
            "check the permissions of the file, of its -wal and -shm files and of its "
            "directory, and how its file system is mounted",
        )
    return part  # None: cannot open, and nothing is read-only: another cause


def raise_if_not_writable(path: str, error: sqlite3.Error) -> None:
    """Raise :class:`JournalNotWritable` (from ``error``) if ``error``, met while opening
    the journal at ``path`` for writing, means that it cannot be written; return
    otherwise (the caller reports ``error`` as it is)."""
    part = _diagnosis(path, error)
    if part is None:
        return
    what, todo = part
    raise JournalNotWritable(
        f"the SQLite journal {path} is not writable: {what} (SQLite: {error}). A journal "
        f"must be writable by the process that opens it: {todo}. To read it without "
        f"writing, use `python -m actors.persistence --sqlite {path}`"
    ) from error


def in_place_problem(path: str, *, writes: bool) -> str | None:
    """Why this process cannot read the SQLite journal at ``path`` where it is, or
    ``None`` if it can (or fails for another reason, which the caller reports as usual):
    reading it read-only fails because SQLite cannot create the ``-shm`` file a WAL
    database needs (a read-only directory); with ``writes`` (the reader opens the
    journal's writer connection), also because the journal cannot be written. Nothing
    is changed: the write probe is rolled back."""
    if not os.path.isfile(path):
        return None
    try:
        conn = sqlite3.connect(
            Path(path).absolute().as_uri() + "?mode=ro", uri=True, isolation_level=None
        )
        try:
            conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        finally:
            conn.close()
        if writes:
            conn = sqlite3.connect(path, isolation_level=None)
            try:
                probe_writable(conn)
            finally:
                conn.close()
    except sqlite3.Error as error:
        part = _diagnosis(path, error) if os.access(path, os.R_OK) else None
        return None if part is None else f"{part[0]} (SQLite: {error})"
    return None


def _signature(paths: list[str]) -> list[tuple[int, int, int] | None]:
    signature: list[tuple[int, int, int] | None] = []
    for name in paths:
        try:
            info = os.stat(name)
        except FileNotFoundError:
            signature.append(None)
        else:
            signature.append((info.st_ino, info.st_size, info.st_mtime_ns))
    return signature


def _holds_data(name: str) -> bool:
    try:
        return os.path.getsize(name) > 0
    except FileNotFoundError:
        return False


@contextmanager
def private_copy(path: str) -> Iterator[tuple[str, list[str]]]:
    """Copy the SQLite database at ``path`` and its ``-wal`` (or ``-journal``) file, if
    there is one that is not empty, into a new private temporary directory, and yield
    ``(the copy's path, the names of the files copied)``; the directory is removed when
    the block exits. The ``-shm`` file is
    not copied: SQLite rebuilds it from the ``-wal`` file. If the files change while
    they are copied (an application is writing the journal), the copy is taken again (a
    few times, then :class:`OSError`). :class:`OSError` if a file cannot be read."""
    with tempfile.TemporaryDirectory(prefix="actors-journal-copy-") as directory:
        copy = os.path.join(directory, os.path.basename(path))
        watched = [path, *(path + suffix for suffix in _SIDE_FILES)]
        for _ in range(_COPY_ATTEMPTS):
            before = _signature(watched)
            copied: list[str] = []
            for name, suffix in zip(watched, ("", *_SIDE_FILES), strict=True):
                if os.path.exists(copy + suffix):
                    os.remove(copy + suffix)
                if suffix and not _holds_data(name):
                    continue  # missing or empty: nothing to read in it
                shutil.copyfile(name, copy + suffix)
                copied.append(os.path.basename(name))
            if _signature(watched) == before:
                break
        else:
            raise OSError(
                f"{path} kept changing while it was copied (an application is writing the "
                "journal): run the command again"
            )
        yield copy, copied
