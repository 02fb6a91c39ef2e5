"""The events of the bank (``bank.py``): what its journal stores.

They live in a module of their own, not in ``bank.py``: a script run as
``python examples/bank.py`` is the module ``__main__``, and the journal stores event
classes by reference (module and name), so classes of ``__main__`` could be read by no
other program. This module is importable everywhere ``bank.py`` is: beside it, by the
next run, by the chaos test (``chaos_bank.py``), and by the journal tool::

    python -m actors.persistence --sqlite bank-journal.db --import-path examples events bank

(``--import-path examples``, or ``PYTHONPATH=examples``, from the repository's root).
The snapshots of the accounts are plain tuples, which need no module.
"""

from __future__ import annotations

import attrs

# -- an account's events --------------------------------------------------------------------


@attrs.frozen
class Deposited:
    """Money paid into an account (``transfer``: the transfer it belongs to, if any)."""

    amount: int
    transfer: str | None


@attrs.frozen
class Withdrawn:
    """Money taken out of an account by ``transfer``."""

    amount: int
    transfer: str


# -- the bank's events ----------------------------------------------------------------------


@attrs.frozen
class AccountOpened:
    name: str


@attrs.frozen
class TransferStarted:
    """A transfer the bank took on: journalled before any money moves."""

    transfer: str
    source: str
    target: str
    amount: int


@attrs.frozen
class TransferEnded:
    """A transfer finished: the money moved (``completed``), or it was refused."""

    transfer: str
    completed: bool
