"""``Resizer``: how a pool router grows and shrinks with the pressure on its routees."""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs


def _check_number(what: str, value: object, *, low: float, integer: bool = False) -> None:
    ok = not isinstance(value, bool) and isinstance(value, int if integer else int | float)
    if not ok or not value >= low:  # type: ignore[operator]
        kind = "an int" if integer else "a number"
        raise ValueError(f"{what} must be {kind} >= {low}, got {value!r}")


@attrs.frozen
class Resizer:
    """Grows and shrinks a pool router with the pressure on its routees, checked every
    ``interval`` seconds (a timer of the router, so on trio's clock).

    A routee is *busy* when at least ``pressure_threshold`` messages wait in its
    mailbox. When every routee is busy, the pool grows by ``ceil(rampup_rate * size)``
    (at least 1); when fewer than ``backoff_threshold`` of them are busy, it shrinks by
    ``floor(backoff_rate * size)`` (at least 1 once it is above ``lower``). The size
    always stays within ``[lower, upper]``. Shrinking stops the newest routees first
    (each finishes its current message; what is left in its mailbox goes to dead
    letters, as for any stop)."""

    lower: int = 1
    upper: int = 10
    pressure_threshold: int = 1
    rampup_rate: float = 0.2
    backoff_threshold: float = 0.3
    backoff_rate: float = 0.1
    interval: float = 1.0

    def __attrs_post_init__(self) -> None:
        _check_number("lower", self.lower, low=0, integer=True)
        _check_number("upper", self.upper, low=1, integer=True)
        if self.upper < self.lower:
            raise ValueError(f"upper ({self.upper}) must not be below lower ({self.lower})")
        _check_number("pressure_threshold", self.pressure_threshold, low=1, integer=True)
        for what in ("rampup_rate", "backoff_threshold", "backoff_rate"):
            _check_number(what, getattr(self, what), low=0)
        if not self.interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {self.interval!r}")

    def change(self, mailbox_sizes: Sequence[int]) -> int:
        """How many routees to add (> 0) or remove (< 0), given each routee's mailbox
        size."""
        size = len(mailbox_sizes)
        if size < self.lower:
            return self.lower - size
        if size > self.upper:
            return self.upper - size
        if not size:
            return 0
        busy = sum(1 for n in mailbox_sizes if n >= self.pressure_threshold)
        delta = 0
        if busy == size:
            delta = max(1, math.ceil(self.rampup_rate * size))
        elif busy / size < self.backoff_threshold:
            delta = -max(1, math.floor(self.backoff_rate * size))
        return max(self.lower, min(self.upper, size + delta)) - size


@attrs.frozen
class _Resize:
    """The resizer's timer tick (sent by a pool router to itself)."""
