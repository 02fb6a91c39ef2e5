"""Checks of a SQLite journal file against its schema (defined in :mod:`._sqlite`), for
the ``check`` command of ``python -m actors.persistence`` and for the other commands'
refusal of files that are not journals.

Everything here opens the file read-only (a ``mode=ro`` URI): it never creates nor
modifies a journal. (As any SQLite reader of a WAL database, it may leave the empty
``-wal`` and ``-shm`` files next to it, which SQLite itself manages.)
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._integrity import Integrity, event_message, snapshot_message
from ._sql_dialect import TABLES
from ._sqlite import SCHEMA_VERSION

Decode = Callable[[str, str, str, bytes], str | None]
"""``decode(where, serializer, manifest, payload)``: why the payload of the record
``where`` (``"event 'acct-1' seq 3"``) is corrupt (a problem line for the report), or
``None`` if it decodes (or cannot be decoded for a reason that is not the journal's:
the callback keeps those itself)."""


_EVENTS = (
    "SELECT e.persistence_id, e.seq, e.event_offset, e.serializer, e.manifest, e.tags, "
    "e.writer_id, e.timestamp, {payload}, {digest}, (SELECT json_group_array(t.tag) FROM "
    "event_tags t WHERE t.event_offset = e.event_offset) FROM events e "
    "ORDER BY e.persistence_id, e.seq"
)
_SNAPSHOTS = (
    "SELECT s.persistence_id, s.seq, s.serializer, s.manifest, s.timestamp, {payload}, "
    "{digest}, max(coalesce(m.highest_seq, 0), coalesce((SELECT max(e.seq) FROM events e "
    "WHERE e.persistence_id = s.persistence_id), 0)) FROM snapshots s "
    "LEFT JOIN journal_metadata m ON m.persistence_id = s.persistence_id "
    "ORDER BY s.persistence_id, s.seq"
)

VERSIONS = (1, SCHEMA_VERSION)
"""The schema versions :func:`check_journal` reads: the current one, and version 1 (a
journal not yet upgraded, read as it is: without digests)."""


class UnreadableJournal(Exception):
    """The file cannot be read as a journal at all (missing, not SQLite, not a journal
    of a supported schema version); the message says which, naming the path."""


def describe(error: sqlite3.Error, *, hint: bool = True) -> str:
    """``error``, with what it means for the file (and, with ``hint``, what to do)."""
    name = getattr(error, "sqlite_errorname", "")
    if name == "SQLITE_NOTADB":
        return f"{error} (the file is not a SQLite database, or its header is garbled)"
    if name == "SQLITE_CORRUPT":
        advice = "; run the check command" if hint else ""
        return f"{error} (the file is corrupt or truncated{advice})"
    return str(error)


def connect_read_only(path: str) -> sqlite3.Connection:
    """A read-only connection to the existing SQLite file ``path`` whose header has been
    read; :class:`UnreadableJournal` if the file is missing or not a SQLite database at
    all. (A file that is SQLite but corrupt is left to the caller to report.)"""
    if not os.path.exists(path):
        raise UnreadableJournal(f"no such journal file: {path}")
    if not os.path.isfile(path):
        raise UnreadableJournal(f"not a journal file (a directory or device): {path}")
    uri = Path(path).absolute().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None)
    except sqlite3.Error as error:
        raise UnreadableJournal(f"cannot open SQLite journal {path}: {error}") from error
    try:
        conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as error:
        if getattr(error, "sqlite_errorname", "") == "SQLITE_CORRUPT":
            return conn
        conn.close()
        raise UnreadableJournal(f"cannot read SQLite journal {path}: {describe(error)}") from error
    return conn


def _missing_tables(conn: sqlite3.Connection) -> list[str]:
    names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return [table for table in TABLES if table not in names]


def _versions(conn: sqlite3.Connection) -> list[int]:
    return [row[0] for row in conn.execute("SELECT version FROM schema_version")]


def refuse_non_journal(path: str) -> None:
    """Refuse, read-only, a file that the backend should not open: a missing file (it
    would be created), a file that is not SQLite, or a SQLite database that is not a
    journal of a supported schema version (the backend would add its tables to it).
    Raises :class:`UnreadableJournal`."""
    conn = connect_read_only(path)
    try:
        try:
            missing = _missing_tables(conn)
            if missing:
                raise UnreadableJournal(
                    f"{path} is not a journal of this library: table(s) "
                    f"{', '.join(missing)} missing"
                )
            versions = _versions(conn)
        except sqlite3.DatabaseError as error:
            raise UnreadableJournal(
                f"cannot read SQLite journal {path}: {describe(error)}"
            ) from error
        if versions == [1]:
            raise UnreadableJournal(
                f"SQLite journal {path} has schema version 1; this tool reads version "
                f"{SCHEMA_VERSION} (the check command reads version 1 as it is; opening the "
                "journal from the application, with open_sqlite_journal, upgrades it to "
                f"version {SCHEMA_VERSION}, keeping every record)"
            )
        if versions != [SCHEMA_VERSION]:
            found = ", ".join(str(v) for v in versions) or "none"
            raise UnreadableJournal(
                f"SQLite journal {path} has schema version {found}; this tool reads "
                f"version {SCHEMA_VERSION}"
            )
    finally:
        conn.close()


class Report:
    """What :func:`check_journal` found: ``problem(line)`` is called for each problem
    as it is found; :attr:`problems` counts them, :attr:`incomplete` counts the checks
    that could not run (the :attr:`counts` are then partial), :attr:`counts` says how
    many persistence ids, events and snapshots were checked.

    The digests: :attr:`verified` counts the records whose digest matched (``None`` if
    the digests were not checked: a journal of schema version 1, or a check that could
    not run); :attr:`legacy` the records without a digest (written before version 2),
    accepted without a key; :attr:`unverified` the signed records that could not be
    verified for want of the key, and :attr:`first_unverified` names the first of them
    (a corrupt record, or an unsigned one when a key is given, is a problem)."""

    def __init__(self, problem: Callable[[str], None]) -> None:
        self._problem = problem
        self.problems = 0
        self.incomplete = 0
        self.counts = {"persistence ids": 0, "events": 0, "snapshots": 0}
        self.verified: int | None = None
        self.legacy = 0
        self.unverified = 0
        self.first_unverified = ""

    def problem(self, text: str) -> None:
        self.problems += 1
        self._problem(text)


def check_journal(
    path: str, report: Report, decode: Decode | None = None, key: bytes | None = None
) -> None:
    """Check the SQLite journal at ``path``, read-only, reporting to ``report``, with
    the journal's ``key`` if it is signed. Problems, one line each:

    * ``integrity:`` what SQLite's full ``PRAGMA integrity_check`` reports;
    * ``schema:`` a missing table or an unsupported schema version (the remaining
      checks are skipped: they assume the schema);
    * ``seq:`` a persistence id's stored seqs are not contiguous from the lowest stored
      one (events below it were deleted) to the highest, or a seq is below 1;
    * ``metadata:`` a persistence id with events has a ``highest_seq`` kept (by a
      deletion) above its highest stored seq: the events between were lost (a deletion
      only ever removes the oldest events);
    * ``tags:`` a tag row points at no event, or an event's tags disagree with its tag
      rows (``events_by_tag`` would miss or invent it);
    * ``offset:`` offsets do not increase with seq within a persistence id;
    * ``snapshot:`` a snapshot is beyond the highest seq of its persistence id;
    * ``digest:`` an event or snapshot does not match its digest (it was changed, or
      signed with another key), or, with ``key``, is not signed (see
      :mod:`._integrity`); its payload is not decoded;
    * ``decode:`` (with ``decode``) an event or snapshot is corrupt (``decode`` says
      which records count). Only the records whose digest matched, or that have none
      while no key is given, are decoded.

    A check that SQLite cannot run (the file is corrupt) is itself a problem; the
    others still run. :class:`UnreadableJournal` if the file is missing or not SQLite.
    """
    conn = connect_read_only(path)
    try:
        checks = _Checks(conn, report, decode, Integrity(key, f"SQLite journal {path}"))
        checks.guarded("integrity", checks.integrity)
        if checks.guarded("schema", checks.schema):
            for what, check in (
                ("seq", checks.seqs),
                ("metadata", checks.metadata),
                ("tags", checks.dangling_tags),
                ("events", checks.each_event),
                ("snapshots", checks.each_snapshot),
            ):
                checks.guarded(what, check)
    finally:
        conn.close()


class _Checks:
    """The checks of :func:`check_journal`, one method each, on one connection."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        report: Report,
        decode: Decode | None,
        integrity: Integrity,
    ) -> None:
        self.conn = conn
        self.report = report
        self.decode = decode
        self.verifier = integrity
        self.digests = False  # whether the journal has digests (version 2)

    def guarded(self, what: str, check: Callable[[], bool | None]) -> bool:
        """Run ``check``; ``False`` if SQLite failed it (a problem) or it says so."""
        try:
            return check() is not False
        except sqlite3.Error as error:
            self.report.problem(f"{what}: cannot check: {describe(error, hint=False)}")
            self.report.incomplete += 1
            return False

    def integrity(self) -> None:
        rows = self.conn.execute("PRAGMA integrity_check").fetchall()
        if rows != [("ok",)]:
            for (line,) in rows:
                self.report.problem(f"integrity: {line}")

    def schema(self) -> bool:
        """Whether the schema is there, in the supported version."""
        missing = _missing_tables(self.conn)
        for table in missing:
            self.report.problem(f"schema: table {table} is missing")
        if missing:
            self.report.incomplete += 1
            return False
        versions = _versions(self.conn)
        if len(versions) != 1 or versions[0] not in VERSIONS:
            self.report.problem(
                f"schema: version {versions or 'none'} is not supported (this tool reads "
                f"{' and '.join(map(str, VERSIONS))}); the other checks are skipped"
            )
            self.report.incomplete += 1
            return False
        self.digests = versions[0] >= 2
        return True

    def seqs(self) -> None:
        for pid, seq in self.conn.execute(
            "SELECT persistence_id, seq FROM events WHERE seq < 1 ORDER BY persistence_id, seq"
        ):
            self.report.problem(f"seq: {pid!r} has an event with seq {seq} (below 1)")
        for pid, before, after in self.conn.execute(
            "SELECT persistence_id, prev, seq FROM (SELECT persistence_id, seq, "
            "LAG(seq) OVER (PARTITION BY persistence_id ORDER BY seq) AS prev FROM events) "
            "WHERE prev IS NOT NULL AND seq != prev + 1 ORDER BY persistence_id, seq"
        ):
            missing = (
                f"seq {before + 1}" if after == before + 2 else f"seqs {before + 1}..{after - 1}"
            )
            self.report.problem(
                f"seq: {pid!r} has a gap: {missing} missing between stored seqs {before} "
                f"and {after}"
            )

    def metadata(self) -> None:
        self.report.counts["persistence ids"] = self.conn.execute(
            "SELECT COUNT(*) FROM (SELECT persistence_id FROM journal_metadata UNION "
            "SELECT persistence_id FROM events)"
        ).fetchone()[0]
        for pid, stored, kept in self.conn.execute(
            "SELECT e.persistence_id, MAX(e.seq), m.highest_seq FROM events e "
            "JOIN journal_metadata m ON m.persistence_id = e.persistence_id "
            "GROUP BY e.persistence_id ORDER BY e.persistence_id"
        ):
            if kept > stored:
                self.report.problem(
                    f"metadata: {pid!r} kept highest_seq {kept}, above its highest stored "
                    f"seq {stored}: events {stored + 1}..{kept} are missing"
                )

    def dangling_tags(self) -> None:
        for tag, offset in self.conn.execute(
            "SELECT tag, event_offset FROM event_tags t WHERE NOT EXISTS (SELECT 1 FROM "
            "events e WHERE e.event_offset = t.event_offset) ORDER BY event_offset, tag"
        ):
            self.report.problem(
                f"tags: tag row {tag!r} points at offset {offset}, which has no event"
            )

    def _with_payloads(self, query: str, table: str) -> sqlite3.Cursor:
        """The rows of ``query`` on ``table`` (aliased by its initial): its ``{payload}``
        column is the payload when digests are checked or payloads decoded (else
        ``NULL``: payloads are not read), its ``{digest}`` column the digest (``NULL``
        in a journal of version 1)."""
        alias = table[0]
        payload = f"{alias}.payload" if self.decode or self.digests else "NULL"
        digest = f"{alias}.digest" if self.digests else "NULL"
        if self.digests and self.report.verified is None:
            self.report.verified = 0
        return self.conn.execute(query.format(payload=payload, digest=digest))

    def _verified(
        self, what: str, digest: object, message: Callable[..., bytes], fields: tuple[Any, ...]
    ) -> bool:
        """Check the digest of the record ``what``, whose digest covers
        ``message(*fields)``: whether it is accepted (and may be decoded). A refused one
        is a problem, or counted apart if it is signed and no key was given."""
        report = self.report
        text: bytes | None = None
        if digest is None:
            if self.verifier.key is None:
                report.legacy += 1
                return True
        else:
            try:
                text = message(*fields)
            except (TypeError, ValueError):
                text = None
        refusal = self.verifier.refusal(digest, text)
        if refusal is None:
            report.verified = (report.verified or 0) + 1
            return True
        if refusal.kind == "needs-key":
            report.unverified += 1
            report.first_unverified = report.first_unverified or what
        else:
            report.problem(f"digest: {what} is {refusal.text}")
        return False

    def _decoded(self, what: str, serializer: str, manifest: str, data: bytes | None) -> None:
        if self.decode is not None and data is not None:
            why = self.decode(what, serializer, manifest, bytes(data))
            if why is not None:
                self.report.problem(f"decode: {what}: {why}")

    def each_event(self) -> None:
        rows = self._with_payloads(_EVENTS, "events")
        previous: tuple[str, int, int] | None = None
        for row in rows:
            pid, seq, offset, serializer, manifest, tags, writer, ts, data, digest, tag_rows = row
            self.report.counts["events"] += 1
            where = f"{pid!r} seq {seq}"
            if previous is not None and previous[0] == pid and offset <= previous[2]:
                self.report.problem(
                    f"offset: {where} has offset {offset}, not above offset {previous[2]} "
                    f"of seq {previous[1]}"
                )
            previous = (pid, seq, offset)
            self._tags_agree(where, tags, tag_rows)
            fields = (pid, seq, serializer, manifest, data, tags, writer, ts)
            what = f"event {where} (offset {offset})"
            if not self._verified(what, digest, event_message, fields):
                continue
            self._decoded(f"event {where}", serializer, manifest, data)

    def _tags_agree(self, where: str, tags: str, tag_rows: str) -> None:
        try:
            listed = json.loads(tags)
            valid = isinstance(listed, list) and all(isinstance(t, str) for t in listed)
        except ValueError:
            valid = False
        if not valid:
            self.report.problem(f"tags: {where} has a malformed tags column {tags!r}")
        elif set(listed) != set(json.loads(tag_rows)):
            self.report.problem(
                f"tags: {where} is tagged {sorted(listed)} but has tag rows "
                f"{sorted(json.loads(tag_rows))}"
            )

    def each_snapshot(self) -> None:
        rows = self._with_payloads(_SNAPSHOTS, "snapshots")
        for pid, seq, serializer, manifest, ts, data, digest, highest in rows:
            self.report.counts["snapshots"] += 1
            if seq > (highest or 0):
                self.report.problem(
                    f"snapshot: {pid!r} has a snapshot at seq {seq}, beyond its highest "
                    f"seq {highest or 0}"
                )
            what = f"snapshot {pid!r} seq {seq}"
            fields = (pid, seq, serializer, manifest, data, ts)
            if not self._verified(what, digest, snapshot_message, fields):
                continue
            self._decoded(what, serializer, manifest, data)
