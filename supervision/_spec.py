"""Child specifications: how a supervisor starts, restarts and stops one child."""

from __future__ import annotations

import enum
from collections.abc import Hashable
from typing import Any

import attrs


class Restart(enum.Enum):
    """When a child that exited is started again (OTP restart types)."""

    PERMANENT = "permanent"
    """Always, whatever the reason it exited."""
    TRANSIENT = "transient"
    """Only after an abnormal exit (a failure); a normal exit ends it."""
    TEMPORARY = "temporary"
    """Never, not even when a sibling's failure restarts the group."""

    def restarts_after(self, *, abnormal: bool) -> bool:
        """Whether a child of this type is restarted after an exit of that kind."""
        if self is Restart.PERMANENT:
            return True
        return self is Restart.TRANSIENT and abnormal


class AutoShutdown(enum.Enum):
    """When the exit of ``significant`` children ends the supervisor itself (OTP)."""

    NEVER = "never"
    ANY_SIGNIFICANT = "any_significant"
    ALL_SIGNIFICANT = "all_significant"


BRUTAL = "brutal"
"""``ChildSpec.shutdown`` value: cancel the child at once, without asking it to stop."""


def _check_shutdown(_: object, __: attrs.Attribute[Any], value: object) -> None:
    if value == BRUTAL:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"shutdown must be 'brutal' or a deadline in seconds > 0, got {value!r}")


@attrs.frozen
class ChildSpec:
    """One child of a supervisor.

    ``id`` names it among its siblings; ``start`` is what the supervisor calls to start
    it (its meaning depends on the supervisor: an actor factory, or an async function
    for a trio task); ``restart`` says when it is restarted; ``shutdown`` is ``BRUTAL``
    (cancel at once) or the seconds it gets to stop after being asked, before it is
    cancelled; a ``significant`` child's exit can end the supervisor, depending on the
    supervisor's :class:`AutoShutdown`. Children start in the order given and stop in
    reverse order.
    """

    id: Hashable
    start: Any
    restart: Restart = attrs.field(default=Restart.PERMANENT, converter=Restart)
    shutdown: float | str = attrs.field(default=5.0, validator=_check_shutdown)
    significant: bool = False

    def __attrs_post_init__(self) -> None:
        if self.significant and self.restart is Restart.PERMANENT:
            # OTP refuses this too: a permanent child never exits for good, so it
            # could never trigger an automatic shutdown.
            raise ValueError(f"child {self.id!r}: a significant child cannot be permanent")
