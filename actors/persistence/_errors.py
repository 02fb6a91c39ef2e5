"""Errors of the persistence layer."""

from __future__ import annotations

from typing import ClassVar

from supervision import Directive

from .._errors import ActorError, _hint


class JournalFailure(ActorError):
    """A journal operation failed, or its outcome is unknown (I/O error, lost
    connection, ambiguous commit). A persistent actor stops on it, and its supervisor
    decides (typically a restart with backoff, which recovers from what was stored)."""

    _what_to_do = (
        "The actor fails once its handler returns, and its supervisor decides: a restart "
        "with a backoff recovers it from what the journal stored. Check that the journal "
        "(its file, server or connection) is available."
    )

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        _hint(self, self._what_to_do)


class SequenceConflict(JournalFailure):
    """A write collided with events already stored under the same sequence numbers:
    another writer is live for this persistence id (or was, and this one is stale).
    Nothing of the batch was stored."""

    _what_to_do = (
        "Run one writer per persistence id: make sure a single actor (in one process) "
        "persists under this id, for instance by giving it a fixed name under one parent."
    )


class JournalNotWritable(JournalFailure):
    """The SQLite journal cannot be written by this process (raised when it is opened,
    before any actor uses it); the message names the path, what is not writable and what
    to do. Nothing was written."""

    _what_to_do = (
        "The journal was not opened and nothing was written: give this process write "
        "access to the journal file and its directory (or open another file). "
        "`python -m actors.persistence` reads a journal without writing it."
    )


class EventRejected(ActorError):
    """An event was refused before anything was stored (it cannot be serialized, or the
    journal refused it): ``persist`` raises this in the handler and the actor's state is
    unchanged."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        _hint(
            self,
            "Nothing was stored and the actor goes on: make the event serializable by its "
            "serializer (or register one for its type), or catch EventRejected in the "
            "handler.",
        )


class PersistNotAwaited(ActorError):
    """A persistent actor called ``persist`` (or ``persist_all``, ``defer``,
    ``save_snapshot``) without ``await``: the call only made a coroutine, so nothing was
    stored (or deferred, or saved). The runtime finds such a call when the handler (or
    ``on_recovery_completed``, ``pre_start``, ``post_restart``) that made it returns,
    closes the coroutine and fails the actor with this error: a handler's asker gets it
    as the handler's error, a ``tell`` becomes a dead letter, and the supervisor decides
    (a restart recovers from what was really stored). The message names the actor, the
    call and its argument."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        _hint(
            self,
            "Write `await self.persist(...)` (or await the other call) in an `async def` "
            "handler; a synchronous handler cannot persist.",
        )


class ReadOnlyReplica(ActorError):
    """A persistent actor running as a read-only replica (spawned through
    :class:`~actors.persistence.Replica`: recovered up to a sequence number or a time)
    was asked to write: ``persist``, ``persist_all`` and ``save_snapshot`` raise this at
    the call, before anything is serialized or sent to the journal. Nothing was stored,
    the replica's state and ``last_seq`` are unchanged, and it goes on answering: an
    ``ask`` gets this error, and a failure in a ``tell`` is resumed by default
    (``default_directive``), the replica keeping its state. The message names the
    persistence id, the call and the point in time (also the attributes
    :attr:`persistence_id`, :attr:`call` and :attr:`point`)."""

    default_directive: ClassVar[Directive] = Directive.RESUME

    def __init__(self, persistence_id: str, call: str, point: str) -> None:
        super().__init__(
            f"{call}() refused: persistence id {persistence_id!r} runs here as a read-only "
            f"replica recovered to {point}; nothing was stored"
        )
        self.persistence_id = persistence_id
        self.call = call
        self.point = point
        _hint(
            self,
            "A replica answers questions about the past and never writes: persist through "
            "the live actor of this persistence id (spawned from the class itself, not "
            "through Replica). In code that runs in both, test `self.replica is None` "
            "before persisting.",
        )


class RecordUndecodable(JournalFailure):
    """A stored event or snapshot cannot be decoded: its serializer id is not registered,
    a class it refers to can no longer be imported, or its payload is garbled. The
    message names the serializer id and the manifest; the original error is the
    ``__cause__``. Nothing was changed in the journal. A persistent actor falls back to
    an older snapshot when a snapshot is undecodable; an undecodable event fails its
    recovery."""

    _what_to_do = (
        "Register the serializer id in Settings.serialization and keep the classes that "
        "stored records refer to importable; `python -m actors.persistence events ID` "
        "shows what is stored."
    )


class RecoveryFailed(ActorError):
    """A persistent actor could not recover its state. The message names the persistence
    id and the sequence number where recovery stopped (``seq``: the event that could not
    be read, decoded or applied; 0 before any event); the cause is ``__cause__``.

    ``retryable`` tells what happens next. ``True``: the journal failed (an I/O error, an
    unknown outcome): the actor fails and its supervisor decides, typically a restart with
    backoff, which tries the recovery again. ``False``: retrying cannot help (an event
    that cannot be decoded, ``apply`` or ``restore`` raised, events missing from the
    journal, no journal configured): the actor stops with this error as its reason, and
    nothing is written.
    """

    def __init__(self, persistence_id: str, seq: int, detail: str, *, retryable: bool) -> None:
        super().__init__(
            f"recovery of persistence id {persistence_id!r} failed at seq {seq}: {detail}"
        )
        self.persistence_id = persistence_id
        self.seq = seq
        self.retryable = retryable
        _hint(
            self,
            "The journal failed: the actor's supervisor decides, and a restart (with a "
            "backoff) tries the recovery again."
            if retryable
            else "Retrying cannot help, so the actor stopped without writing anything: fix "
            "the cause (the stored data, apply/restore/upcast, or the configuration), then "
            "start it again.",
        )


class RecordCorrupt(JournalFailure):
    """A stored event or snapshot failed its integrity check, so nothing of it was
    decoded (no payload was unpickled). Every read of a SQL journal checks each record's
    digest first (``replay``, ``replay_chunks``, ``events_by_tag``,
    ``events_by_tag_chunks``, a snapshot ``load``, and the ``python -m
    actors.persistence`` tool), and raises this for a record that:

    * does not match its checksum or signature: it was changed after it was written
      (damage on disk, a faulty copy, someone editing the database), or signed with
      another key;
    * is not signed, or signed with no key this version knows, while the journal is
      opened with a key (``key=`` of ``open_sqlite_journal``/``open_postgres_journal``);
    * is signed while the journal is opened without a key (:attr:`needs_key`): it cannot
      be verified.

    The message names the record (``event 'acct-1' seq 3 (offset 7)`` or ``snapshot
    'acct-1' seq 5``), where the journal is, and why. Attributes: :attr:`persistence_id`,
    :attr:`seq`, :attr:`offset` (``None`` for a snapshot), :attr:`where` (the journal)
    and :attr:`needs_key`.

    Reading the same bytes again cannot help, so a persistent actor whose recovery meets
    one (an event, or its newest snapshot) stops with a :class:`RecoveryFailed` that is
    not ``retryable``, this error as its ``__cause__`` and named in its message; it
    writes nothing. Whoever else reads the journal gets it from the read that met the
    record.
    """

    def __init__(
        self,
        record: str,
        where: str,
        reason: str,
        *,
        persistence_id: str,
        seq: int,
        offset: int | None = None,
        needs_key: bool = False,
    ) -> None:
        # Its own hint, not JournalFailure's (retrying cannot help here).
        ActorError.__init__(self, f"{record} in the {where} is {reason}; nothing of it was decoded")
        self.persistence_id = persistence_id
        self.seq = seq
        self.offset = offset
        self.where = where
        self.needs_key = needs_key
        _hint(
            self,
            "Open the journal with the key it was signed with (key= of the open_*_journal "
            "function; --key-file PATH or ACTORS_JOURNAL_KEY_FILE for python -m "
            "actors.persistence)."
            if needs_key
            else "Nothing of the record was decoded and retrying cannot help: restore the "
            "journal from a backup, or open it with the key it was written with; "
            "`python -m actors.persistence --sqlite PATH check` lists every such record.",
        )
