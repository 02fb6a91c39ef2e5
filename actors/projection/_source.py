"""Where a projection reads its events: :class:`ProjectionSource`, the session a
projection actor opens on one, and :class:`JournalSource` (events by tag from a
journal, in commit order). :class:`StreamSource` is in :mod:`._stream_source`."""

from __future__ import annotations

import abc
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .._errors import _hint
from ..persistence import Journal, Persistence, Serialization
from ..persistence._extension import default_serialization
from ..persistence._journal import TaggedRow
from ._model import Envelope, ProjectionError, UndecodableEvent, describe

if TYPE_CHECKING:
    from .._system import ActorSystem


@attrs.frozen
class Undecodable:
    """An event of a batch that could not be decoded: its ``offset``, and the error
    that says which event and why."""

    offset: int
    error: UndecodableEvent


Item = Envelope | Undecodable


class SourceSession(abc.ABC):
    """A source opened for one projection actor. :meth:`start` (again after every
    failure) positions it after an offset; :meth:`read` then gives the events that
    follow, batch by batch."""

    @abc.abstractmethod
    async def start(self, offset: int) -> None:
        """Read from the first event after ``offset`` on."""

    @abc.abstractmethod
    async def read(self, limit: int) -> list[Item]:
        """Up to ``limit`` events after the last one read (or the start offset), in
        order; ``[]`` if there is none now. Does not wait for new ones."""

    @abc.abstractmethod
    async def wait(self) -> None:
        """Return when there may be new events (or never: the projection bounds the
        wait with its ``poll_interval``). Must not consume anything."""

    @abc.abstractmethod
    async def lag(self, offset: int) -> int | None:
        """How far the source's newest event is beyond ``offset`` (``None``: unknown)."""

    async def settle(self, offset: int) -> None:
        """The events up to ``offset`` are committed (a stream acknowledges them). The
        default does nothing."""
        await trio.lowlevel.checkpoint()

    async def stop(self) -> None:
        """Release what :meth:`start` took (never raises an ``Exception``). The default
        does nothing."""
        await trio.lowlevel.checkpoint()


class ProjectionSource(abc.ABC):
    """Where a projection reads its events: :class:`JournalSource` or
    :class:`StreamSource`."""

    @abc.abstractmethod
    def _default_key(self) -> str:
        """The projection's key when it is given none."""

    @abc.abstractmethod
    def _session(self, system: ActorSystem, name: str, key: str, batch_size: int) -> SourceSession:
        """A session for the projection ``name`` (``key``, reading ``batch_size`` events
        at most per read) in ``system``, not started yet; :class:`ProjectionError` if
        the source cannot be used there."""


class JournalSource(ProjectionSource):
    """The events tagged ``tag`` in ``journal``, in the journal's commit order
    (``journal.events_by_tag_chunks(tag, offset)``, the events of ``events_by_tag``
    read in chunks): a projection resuming after the last offset it stored never skips
    an event, even one whose commit finished late.

    ``journal``: any :class:`~actors.persistence.Journal` (in memory, SQLite,
    PostgreSQL); ``None`` (the default) takes the journal of the system's
    :class:`~actors.persistence.Persistence` extension. Events are decoded with
    ``serialization`` (default: the extension's, else pickle and cloudpickle), then
    passed through ``upcast(event, manifest)`` if given (as a persistent actor's
    ``upcast``). An event that cannot be decoded (or upcast) is an
    :class:`UndecodableEvent` naming it; the projection's ``on_undecodable`` decides.

    The projection tails the journal: when it has read everything, it waits until a
    write through the same journal object commits (writes of this process) or
    ``poll_interval`` passes (writes of other processes), then reads again.
    """

    def __init__(
        self,
        tag: str,
        journal: Journal | None = None,
        *,
        serialization: Serialization | None = None,
        upcast: Callable[[Any, str], Any] | None = None,
    ) -> None:
        if not isinstance(tag, str) or not tag:
            raise ValueError(f"tag must be a non-empty str, got {tag!r}")
        if journal is not None and not isinstance(journal, Journal):
            raise TypeError(
                f"journal must be a Journal (InMemoryJournal, or the journal of "
                f"open_sqlite_journal / open_postgres_journal) or None, got "
                f"{type(journal).__name__}"
            )
        if serialization is not None and not isinstance(serialization, Serialization):
            raise TypeError(
                f"serialization must be a Serialization, got {type(serialization).__name__}"
            )
        if upcast is not None and not callable(upcast):
            raise TypeError(f"upcast must be a callable (event, manifest), got {upcast!r}")
        self.tag = tag
        self.journal = journal
        self.serialization = serialization
        self.upcast = upcast

    def _default_key(self) -> str:
        return self.tag

    def _session(self, system: ActorSystem, name: str, key: str, batch_size: int) -> SourceSession:
        extension = system.settings.extension(Persistence)
        journal = self.journal
        if journal is None:
            journal = None if extension is None else extension.journal
        if journal is None:
            raise ProjectionError(
                f"projection {name!r} reads tag {self.tag!r} from no journal: give one "
                "(JournalSource(tag, journal)) or configure the system's "
                "(open_system(extensions=[Persistence(journal)]))"
            )
        serialization = self.serialization
        if serialization is None and extension is not None:
            serialization = extension.serialization
        if serialization is None:
            serialization = default_serialization()
        return _JournalSession(self, journal, serialization, name)


class _JournalSession(SourceSession):
    """Reads through one ``events_by_tag_chunks`` iterator for as long as it gives
    events (so that a SQL journal reads a page per query, whatever the batch size), and
    a new one from the last offset read once it has ended (caught up) or failed. The
    rows of a chunk not taken by a read wait for the next read. A read that fails after
    it has decoded events returns them, and the next read raises the error (so a
    projection handles the events before a record that cannot be read, such as one
    refused by the journal's integrity check)."""

    def __init__(
        self, source: JournalSource, journal: Journal, serialization: Serialization, name: str
    ) -> None:
        self._tag = source.tag
        self._upcast = source.upcast
        self._journal = journal
        self._serialization = serialization
        self._decoders: dict[str, Callable[[str, bytes], Any]] = {}
        self._name = name
        self._position = 0
        self._chunks: AsyncIterator[list[TaggedRow]] | None = None
        self._rows: list[TaggedRow] = []
        self._index = 0
        self._error: Exception | None = None

    async def start(self, offset: int) -> None:
        self._position = offset
        self._drop()
        self._error = None
        await trio.lowlevel.checkpoint()

    def _drop(self) -> None:
        self._chunks = None
        self._rows = []
        self._index = 0

    async def read(self, limit: int) -> list[Item]:
        error, self._error = self._error, None
        if error is not None:
            await trio.lowlevel.checkpoint()
            raise error
        items: list[Item] = []
        try:
            while len(items) < limit:
                rows, index = self._rows, self._index
                if index >= len(rows):
                    chunks = self._chunks
                    if chunks is None:
                        chunks = self._chunks = self._journal.events_by_tag_chunks(
                            self._tag, self._position
                        )
                    try:
                        rows = self._rows = await chunks.__anext__()
                    except StopAsyncIteration:
                        self._drop()
                        break
                    index = 0
                end = index + limit - len(items)
                if index or end < len(rows):
                    taken = rows[index:end]
                    self._index = index + len(taken)
                else:
                    taken, self._index = rows, len(rows)
                self._decode(taken, items)
                self._position = taken[-1][8]
        except Exception as failure:
            self._drop()
            if not items:
                raise
            self._error = failure  # for the next read, once these are handled
        except BaseException:
            self._drop()
            raise
        return items

    def _decode(self, rows: list[TaggedRow], items: list[Item]) -> None:
        """Append the envelope of each row to ``items`` (an :class:`Undecodable` for a
        row that cannot be decoded or upcast). Decoders are looked up once per
        serializer id."""
        append = items.append
        decoders = self._decoders
        upcast = self._upcast
        for row in rows:
            pid, seq, serializer, manifest, payload, tags, _, timestamp, offset = row
            try:
                decode = decoders.get(serializer)
                if decode is None:
                    # The registry's own path the first time: its error for an id that
                    # is not registered.
                    event = self._serialization.deserialize(serializer, manifest, payload)
                    decoders[serializer] = self._serialization.get(serializer).from_binary
                else:
                    event = decode(manifest, payload)
                if upcast is not None:
                    event = upcast(event, manifest)
            except Exception as error:
                append(self._undecodable(row, error))
                continue
            append(Envelope(pid, seq, offset, timestamp, tags, event))

    def _undecodable(self, row: TaggedRow, error: Exception) -> Undecodable:
        pid, seq, offset = row[0], row[1], row[8]
        undecodable = UndecodableEvent(
            f"projection {self._name!r} cannot decode event {pid!r} seq {seq} (offset "
            f"{offset}) of tag {self._tag!r}: {describe(error)}"
        )
        undecodable.__cause__ = error
        _hint(
            undecodable,
            "Make the event's class importable here (its module on the path, an alias "
            "at its old name), register its serializer (JournalSource(serialization=...)),"
            " or fix the upcast; or let the projection skip such events "
            '(on_undecodable="skip").',
        )
        return Undecodable(offset, undecodable)

    async def wait(self) -> None:
        await self._journal.wait_for_commit()

    async def lag(self, offset: int) -> int | None:
        highest = await self._journal.highest_offset(self._tag)
        return None if highest is None else max(0, highest - offset)

    async def stop(self) -> None:
        self._drop()
        self._error = None
        await trio.lowlevel.checkpoint()
