"""Restart intensity: how many restarts a supervisor tolerates in a sliding window."""

from __future__ import annotations

from collections import deque

import attrs


def _non_negative_int(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0, got {value!r}")


def _positive(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attribute.name} must be a number > 0, got {value!r}")


@attrs.frozen
class RestartIntensity:
    """At most ``max_restarts`` restarts within any ``within`` seconds (OTP's intensity
    and period; default 3 in 5 s). One more than that makes the supervisor give up."""

    max_restarts: int = attrs.field(default=3, validator=_non_negative_int)
    within: float = attrs.field(default=5.0, validator=_positive)


class IntensityTracker:
    """Counts restarts against a :class:`RestartIntensity`, on a clock the caller reads
    (``trio.current_time()`` in practice, so tests run on virtual time)."""

    __slots__ = ("_times", "intensity")

    def __init__(self, intensity: RestartIntensity) -> None:
        self.intensity = intensity
        self._times: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Record a restart at ``now``. Returns ``False`` when it would be one restart
        too many in the window: the supervisor must give up (the restart is not kept).

        A restart exactly ``within`` seconds after an earlier one no longer counts that
        earlier one (the window is half-open: ``(now - within, now]``)."""
        times = self._times
        horizon = now - self.intensity.within
        while times and times[0] <= horizon:
            times.popleft()
        if len(times) >= self.intensity.max_restarts:
            return False
        times.append(now)
        return True

    @property
    def recent(self) -> int:
        """Restarts recorded in the current window (as of the last ``allow``)."""
        return len(self._times)
