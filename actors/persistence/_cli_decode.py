"""How ``python -m actors.persistence`` decodes a stored payload, and says why it cannot.

A record that does not decode is one of two things, and the tool tells them apart:

*not decodable here* (:data:`HERE`)
    the record is sound, but this process lacks what it names: the module of its class
    is not importable (``--import-path DIR`` or ``PYTHONPATH=DIR`` gives the tool the
    application's modules), the class is no longer in its module, the serializer id is
    not registered (``--serialization MODULE:NAME``), or the class was defined in a
    script run as ``__main__``, which no other program can import. A warning, with its
    own count and exit status 3.
*corrupt* (:data:`CORRUPT`)
    anything else: the payload is garbled or truncated. A problem, exit status 1.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final

import attrs

from ._errors import RecordCorrupt, RecordUndecodable
from ._serialization import CloudpickleSerializer, Serialization
from ._sqlite_check import Report

OK: Final = 0
HERE: Final = 1
CORRUPT: Final = 2

_PATH_HINT: Final = (
    "run the tool with the application's modules on the import path (--import-path DIR, "
    "or PYTHONPATH=DIR)"
)


def iso_time(timestamp: float) -> str:
    """A record's time as the tool shows it: ISO 8601 in UTC with milliseconds; ``-``
    for 0 (a record's "not set")."""
    if timestamp == 0:
        return "-"
    try:
        moment = datetime.fromtimestamp(timestamp, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return repr(timestamp)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@attrs.frozen
class Decoded:
    """What decoding one payload gave: ``text`` for the listing (``value=<repr>``,
    ``NOT DECODABLE HERE: <reason>`` or ``UNDECODABLE: <error>``), its ``kind``
    (:data:`OK`, :data:`HERE` or :data:`CORRUPT`), and for :data:`HERE` the ``reason``
    (the same for every record it applies to) and the ``hint`` (what to do)."""

    text: str
    kind: int
    reason: str = ""
    hint: str = ""


def _here(reason: str, hint: str) -> Decoded:
    return Decoded(f"NOT DECODABLE HERE: {reason}", HERE, reason, hint)


def _by_value(serialization: Serialization, serializer: str) -> bool:
    try:
        return isinstance(serialization.get(serializer), CloudpickleSerializer)
    except LookupError:
        return False


def decode(serialization: Serialization, serializer: str, manifest: str, payload: bytes) -> Decoded:
    """Decode ``payload`` (raises nothing but ``BaseException``): see the module
    documentation for the kinds."""
    if serializer not in serialization.ids:
        return _here(
            f"serializer {serializer!r} is not registered in this process",
            "give the tool the application's registry (--serialization MODULE:NAME)",
        )
    if manifest.startswith("__main__.") and not _by_value(serialization, serializer):
        # Pickle would look the class up in this tool's own __main__ and say something
        # confusing (or, worse, find a class of the same name there).
        return _here(
            "its class was defined in a script run as __main__, which no other program can import",
            "only that script can decode it (--raw shows the payload); keep event classes "
            "in a module the script imports",
        )
    try:
        value = serialization.deserialize(serializer, manifest, payload)
    except RecordUndecodable as error:
        cause = error.__cause__
        if isinstance(cause, ModuleNotFoundError):
            return _here(f"module {cause.name!r} is not importable in this process", _PATH_HINT)
        if isinstance(cause, ImportError):
            return _here(f"an import failed in this process: {cause}", _PATH_HINT)
        if isinstance(cause, AttributeError) and str(cause).startswith("Can't get attribute"):
            return _here(
                f"{cause} in this process (renamed or removed?)",
                "run the tool with the version of the application that wrote it, or leave "
                "an alias at the old name",
            )
        return Decoded(f"UNDECODABLE: {type(error).__name__}: {error}", CORRUPT)
    except Exception as error:  # a custom serializer that breaks its contract
        return Decoded(f"UNDECODABLE: {type(error).__name__}: {error}", CORRUPT)
    try:
        return Decoded(f"value={value!r}", OK)
    except Exception as error:
        return Decoded(f"value=<repr failed: {type(error).__name__}: {error}>", OK)


class Tally:
    """The records not decodable here, grouped by reason: for each, how many, the first
    one (``where``) and the hint."""

    def __init__(self) -> None:
        self.groups: dict[str, tuple[int, str, str]] = {}

    @property
    def count(self) -> int:
        return sum(n for n, _, _ in self.groups.values())

    def add(self, where: str, decoded: Decoded) -> None:
        n, first, hint = self.groups.get(decoded.reason, (0, where, decoded.hint))
        self.groups[decoded.reason] = (n + 1, first, hint)

    def lines(self, what: str) -> list[str]:
        """One line per reason: ``<n> <what>(s) not decodable here (first: <where>):
        <reason>; <hint>``."""
        return [
            f"{n} {what}{'s' if n != 1 else ''} not decodable here (first: {first}): "
            f"{reason}; {hint}"
            for reason, (n, first, hint) in self.groups.items()
        ]


KEY_HINT: Final = (
    "give the tool the journal's key (--key-file PATH, or ACTORS_JOURNAL_KEY_FILE=PATH)"
)


def refused(error: RecordCorrupt) -> Decoded:
    """What the tool shows of a record that its journal refused before decoding it: a
    signed one that this process has no key to verify is :data:`HERE` (its hint says
    to give the key), anything else :data:`CORRUPT`."""
    if error.needs_key:
        return Decoded(
            f"NOT VERIFIED: {error}",
            HERE,
            "it is signed, and no key was given to verify it",
            KEY_HINT,
        )
    return Decoded(f"REFUSED: {error}", CORRUPT)


def _records(n: int) -> str:
    return f"{n} record{'s' if n != 1 else ''}"


def digest_lines(report: Report) -> list[str]:
    """The lines of ``check`` about the records whose digest could not be checked: those
    without one (written before version 2), and the signed ones not verified (no key)."""
    lines = []
    if report.legacy:
        lines.append(f"{_records(report.legacy)} without a digest (written before version 2)")
    if report.unverified:
        lines.append(
            f"{_records(report.unverified)} signed with a key, not verified (first: "
            f"{report.first_unverified}): {KEY_HINT}"
        )
    return lines


def digest_counts(report: Report) -> str:
    """The summary's part about digests: ``; 6 records verified, 2 without a digest``
    (empty when no digest was checked)."""
    parts = []
    if report.verified is not None:
        parts.append(f"{_records(report.verified)} verified")
    if report.legacy:
        parts.append(f"{report.legacy} without a digest")
    if report.unverified:
        parts.append(f"{report.unverified} signed, not verified (no key)")
    return f"; {', '.join(parts)}" if parts else ""
