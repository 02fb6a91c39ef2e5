"""Event classes and helpers shared by the projection tests (importable, so that the
events pickle by reference, also in the child process of the kill test)."""

from __future__ import annotations

import time
from collections.abc import Iterable

import attrs

from actors.persistence import Journal, PersistentRecord, Serialization

SERIALIZATION = Serialization()


@attrs.frozen
class Sold:
    """An event: ``amount`` of ``item`` sold."""

    item: str
    amount: int


def record(pid: str, seq: int, event: object, tags: Iterable[str] = ("sale",)) -> PersistentRecord:
    """The record a persistent actor would write for ``event``."""
    serializer, manifest, payload = SERIALIZATION.serialize(event)
    return PersistentRecord(
        pid, seq, serializer, manifest, payload, tags=frozenset(tags), timestamp=time.time()
    )


async def write_sales(
    journal: Journal, pid: str, first: int, last: int, *, tags: Iterable[str] = ("sale",)
) -> list[int]:
    """Events ``first..last`` of ``pid`` (``Sold(pid, seq)``), one batch; their offsets."""
    batch = [record(pid, seq, Sold(pid, seq), tags) for seq in range(first, last + 1)]
    return await journal.write(batch)
