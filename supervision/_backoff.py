"""Exponential backoff with jitter between restarts."""

from __future__ import annotations

import random

import attrs


def _non_negative(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{attribute.name} must be a number >= 0, got {value!r}")


@attrs.frozen
class Backoff:
    """Delay before the n-th consecutive restart (n = 0, 1, ...):
    ``min(max_delay, min_delay * 2**n) * (1 + random() * jitter)``.

    The count ``n`` goes back to 0 once the child has run ``reset_after`` seconds without
    failing. ``max_restarts`` (optional) caps consecutive restarts: past it the child is
    given up on, as if the decider had said stop.
    """

    min_delay: float = attrs.field(default=0.1, validator=_non_negative)
    max_delay: float = attrs.field(default=10.0, validator=_non_negative)
    jitter: float = attrs.field(default=0.2, validator=_non_negative)
    reset_after: float = attrs.field(default=30.0, validator=_non_negative)
    max_restarts: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.max_delay < self.min_delay:
            raise ValueError(
                f"max_delay ({self.max_delay}) must not be below min_delay ({self.min_delay})"
            )
        if self.max_restarts is not None and (
            isinstance(self.max_restarts, bool)
            or not isinstance(self.max_restarts, int)
            or self.max_restarts < 0
        ):
            raise ValueError(f"max_restarts must be an int >= 0 or None, got {self.max_restarts!r}")


class BackoffState:
    """The backoff of one child: call :meth:`next_delay` at each failure.

    ``rng`` supplies the jitter; pass a seeded ``random.Random`` for reproducible delays.
    """

    __slots__ = ("_rng", "backoff", "consecutive")

    def __init__(self, backoff: Backoff, rng: random.Random | None = None) -> None:
        self.backoff = backoff
        self._rng = rng if rng is not None else random.Random()
        self.consecutive = 0
        """Restarts since the last reset."""

    def next_delay(self, now: float, started_at: float | None = None) -> float | None:
        """The delay before restarting after a failure at ``now``, or ``None`` when
        ``max_restarts`` consecutive restarts are used up.

        ``started_at`` is when the failed child last started; if it ran ``reset_after``
        seconds or more, the count starts again from 0.
        """
        b = self.backoff
        if started_at is not None and now - started_at >= b.reset_after:
            self.consecutive = 0
        if b.max_restarts is not None and self.consecutive >= b.max_restarts:
            return None
        base = min(b.max_delay, b.min_delay * 2.0**self.consecutive)
        self.consecutive += 1
        return base * (1.0 + self._rng.random() * b.jitter)
