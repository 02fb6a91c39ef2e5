"""Journals for tests: one that fails or rejects operations by policy, one that runs
each operation only when the test says so.

Both wrap any :class:`~actors.persistence.Journal` (and its snapshot store) and are
journals themselves, so they go wherever a journal goes
(``open_system(extensions=[Persistence(FaultyJournal(journal))])``) and can be stacked:
``SteppingJournal(FaultyJournal(InMemoryJournal()))``.

:class:`FaultyJournal`
    Before each operation it asks its policies ``(persistence_id, operation)`` for a
    :class:`Verdict`: ``OK`` runs the operation, ``FAIL`` raises
    :class:`~actors.persistence.JournalFailure`, ``REJECT`` (writes and snapshot saves
    only) raises :class:`~actors.persistence.EventRejected`. Either way nothing reaches
    the wrapped journal, and the error message says that the fault was injected and by
    which policy. Ready-made policies: :func:`fail_next`, :func:`reject_next`,
    :func:`fail_when`, :func:`reject_when`, combined with :func:`any_of`.

:class:`SteppingJournal`
    Every operation (every chunk a replay or a tag query fetches, too) waits until the
    test lets it run with :meth:`SteppingJournal.step`; the test sees what waits
    (:attr:`SteppingJournal.pending`, :meth:`SteppingJournal.next_operation`) and what ran
    (:attr:`SteppingJournal.released`), so it can assert an interleaving exactly, without
    sleeping.

Import them from here: ``from actors.testing.journal import FaultyJournal, fail_next``.
"""

from ..._public import export as _export
from ._policies import (
    READS,
    REJECTABLE,
    Countdown,
    JournalCall,
    JournalInjection,
    Operation,
    Policy,
    Verdict,
    any_of,
    fail_next,
    fail_when,
    reject_next,
    reject_when,
)
from ._wrappers import FaultyJournal, SteppingJournal

__all__ = [
    "READS",
    "REJECTABLE",
    "Countdown",
    "FaultyJournal",
    "JournalCall",
    "JournalInjection",
    "Operation",
    "Policy",
    "SteppingJournal",
    "Verdict",
    "any_of",
    "fail_next",
    "fail_when",
    "reject_next",
    "reject_when",
]

_export(__name__, globals(), __all__)
