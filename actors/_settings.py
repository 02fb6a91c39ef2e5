"""``Settings``: the settings of one actor system (see ``open_system``)."""

from __future__ import annotations

from typing import Any, TypeVar

import attrs

from supervision import OneForOne, Strategy

from ._mailbox import Mailbox

_E = TypeVar("_E")


def _positive(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ValueError(f"{attribute.name} must be a number > 0, got {value!r}")


def _positive_or_none(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None:
        try:
            _positive(instance, attribute, value)
        except ValueError:
            raise ValueError(
                f"{attribute.name} must be a number > 0 (seconds) or None (off), got {value!r}"
            ) from None


def _positive_int(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an int >= 1, got {value!r}")


@attrs.frozen
class Settings:
    """Settings of one actor system (see :func:`open_system`)."""

    throughput: int = attrs.field(default=100, validator=_positive_int)
    """Messages an actor processes per turn before it yields to other tasks."""
    mailbox: Mailbox = attrs.field(factory=Mailbox)
    """Default mailbox of actors whose class and ``spawn`` call set none."""
    stash_capacity: int = attrs.field(default=1_000, validator=_positive_int)
    """Default capacity of ``context.stash()``."""
    ask_timeout: float = attrs.field(default=5.0, validator=_positive)
    """Default timeout of ``ref.ask`` in seconds (``math.inf``: wait forever)."""
    stop_timeout: float = attrs.field(default=5.0, validator=_positive)
    """How long a stopping actor may take to finish its current message, and then how
    long ``post_stop`` may take; past either, it is cancelled."""
    shutdown_timeout: float = attrs.field(default=60.0, validator=_positive)
    """Upper bound on the ordered shutdown when leaving ``open_system``; actors still
    running after it are cancelled, then each gets ``stop_timeout`` to stop its children
    and ``stop_timeout`` for ``post_stop``: leaving takes at most ``shutdown_timeout + 2 *
    stop_timeout``."""
    supervisor_strategy: Strategy = attrs.field(factory=OneForOne)
    """How actors supervise their children when neither their class nor ``spawn`` sets
    a ``supervisor_strategy``: by default one-for-one, restart on ``Exception`` but stop
    an actor that could not start (``ActorInitializationError``), escalate anything
    else, at most 3 restarts within 5 seconds."""
    guardian_strategy: Strategy | None = None
    """How ``/user`` supervises top-level actors (``None``: ``supervisor_strategy``).
    When ``/user`` gives up or a failure is escalated to it, the system shuts down and
    ``open_system`` raises :class:`UnhandledFailure`."""
    restart_stash_capacity: int = attrs.field(default=10_000, validator=_positive_int)
    """While an actor is being restarted (or waits out a restart backoff), at most this
    many messages wait in its mailbox; more go to dead letters with reason
    ``restart_stash_overflow``. A bounded mailbox with a smaller capacity keeps its own
    capacity and overflow policy."""
    seed: int | None = None
    """Seed of the system's random source (the jitter of restart backoffs), for
    reproducible runs; ``None``: seeded from the operating system."""
    roundtrip_messages: bool = False
    """Pickle and unpickle (cloudpickle) every message and reply on send, proving it could
    cross a process boundary; an unpicklable one raises :class:`UnpicklableMessage`."""
    trace_deliveries: bool = False
    """Log every delivery (``tell``, ``send``, ``ask``, ``forward``, events published)
    on the ``actors.delivery`` logger at DEBUG: kind, sender, recipient and message type.
    Off by default: it moves every delivery to a slower path (see ``docs/logging.md``)."""
    blocking_threshold: float | None = attrs.field(default=0.1, validator=_positive_or_none)
    """Report, as a WARNING on the ``actors.watchdog`` logger, every handler, hook or
    other task that holds the trio thread longer than this many seconds without
    yielding (a sync call that blocks, a long computation): with the actor's path, the
    message type and how long it held the thread. Measured in real time by a watchdog
    thread, at no cost per message; ``None``: no watchdog (see ``docs/logging.md``)."""
    extensions: tuple[object, ...] = attrs.field(default=(), converter=tuple)
    """Settings of extensions, at most one per class, found with :meth:`extension`: for
    instance ``actors.persistence.Persistence(journal=...)``, which tells persistent
    actors where their events go."""

    def __attrs_post_init__(self) -> None:
        kinds = [type(extension) for extension in self.extensions]
        for kind in kinds:
            if kinds.count(kind) > 1:
                raise ValueError(
                    f"extensions holds more than one {kind.__qualname__}; give each kind once"
                )

    def extension(self, kind: type[_E]) -> _E | None:
        """The settings of the extension of class ``kind``, or ``None`` if not given."""
        for extension in self.extensions:
            if type(extension) is kind:
                return extension
        return None
