"""The runtime's own logging (see ``docs/logging.md``): loggers under ``actors.*``, the
records the cells write, the delivery log of ``Settings.trace_deliveries``, and the
default output that makes failures visible when the application configured no logging.

Every record carries the extra fields ``actor_path`` and ``message_type`` (``None``
when they do not apply), so that a formatter may use them for any ``actors.*`` record.
"""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, Any, Final

import trio

from ._messages import DeadLetterReason

if TYPE_CHECKING:
    from ._cell import ActorCell
    from ._envelope import Slot
    from ._ref import ActorRef

package_log: Final = logging.getLogger("actors")
supervision_log: Final = logging.getLogger("actors.supervision")
lifecycle_log: Final = logging.getLogger("actors.lifecycle")
delivery_log: Final = logging.getLogger("actors.delivery")
dead_letter_log: Final = logging.getLogger("actors.deadletters")
watchdog_log: Final = logging.getLogger("actors.watchdog")
DEBUG: Final = logging.DEBUG
WARNING: Final = logging.WARNING


NOBODY: Final = 0
DEFAULT_OUTPUT: Final = 1
APPLICATION: Final = 2


def receiver(logger: logging.Logger, level: int) -> int:
    """Who would emit a record of ``level`` on ``logger``: :data:`NOBODY`, only the
    default output (:data:`DEFAULT_OUTPUT`: the application configured no logging), or
    a handler of the application (:data:`APPLICATION`, logging's last resort
    included). Building a record with its traceback costs several microseconds: a
    restart loop should not pay that when no handler would emit it (the application
    silenced ``actors`` with a ``NullHandler`` and configured nothing else)."""
    if not logger.isEnabledFor(level):
        return NOBODY
    found = False
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if handler is default_output:
                continue
            found = True
            if handler.__class__ is not logging.NullHandler and level >= handler.level:
                return APPLICATION
        if not current.propagate:
            break
        current = current.parent
    if found:  # only NullHandlers, or handlers above the level
        return NOBODY
    if default_output in package_log.handlers:
        return DEFAULT_OUTPUT if level >= default_output.level else NOBODY
    return APPLICATION  # no handler at all: logging's last resort prints it


def heard(logger: logging.Logger, level: int) -> bool:
    """Whether a record of ``level`` on ``logger`` would reach a handler that can emit
    it (see :func:`receiver`)."""
    return receiver(logger, level) != NOBODY


def log_failure(
    level: int,
    child: ActorCell,
    error: BaseException,
    message: Any,
    outcome: str,
    *args: Any,
    may_repeat: bool = False,
) -> None:
    """Log a failure of ``child`` on ``actors.supervision`` (with its traceback): the
    actor's path, the type of the message it was handling (if any), the error, and
    ``outcome``: what its supervisor does about it."""
    who = receiver(supervision_log, level)
    if who == NOBODY:
        return
    path = child.ref.path
    if may_repeat and who == DEFAULT_OUTPUT:  # (a restart or a resume: a storm can follow)
        not_shown = child.system._failure_lines.seen(path)
        if not_shown is None:
            return  # a storm: counted, and named in the next line shown for this actor
        if not_shown:
            outcome += f" ({not_shown} more failures of it not shown since the last line)"
    message_type = None if message is None else type(message).__qualname__
    supervision_log.log(
        level,
        "%s failed%s: %r; " + outcome,
        path,
        "" if message_type is None else " on " + message_type,
        error,
        *args,
        exc_info=error,
        extra={"actor_path": path, "message_type": message_type},
    )


def log_error(path: str, text: str, error: BaseException, *args: Any) -> None:
    """Log ``text`` (``%s`` is ``path``, then ``args``) at ERROR on
    ``actors.supervision``, with ``error``'s traceback."""
    supervision_log.error(
        text,
        path,
        *args,
        exc_info=error,
        extra={"actor_path": path, "message_type": None},
    )


def log_also_failed(path: str, error: BaseException) -> None:
    log_error(path, "%s also failed while a failure was handled", error)


def log_debug(path: str, text: str, *args: Any) -> None:
    """Log ``text`` (``%s`` is ``path``, then ``args``) at DEBUG on
    ``actors.supervision``."""
    supervision_log.debug(text, path, *args, extra={"actor_path": path, "message_type": None})


def log_lifecycle(path: str, text: str, detail: object) -> None:
    """Log a start, restart or stop on ``actors.lifecycle`` at DEBUG (callers check
    ``lifecycle_log.isEnabledFor(DEBUG)`` first: a start or restart pays no more)."""
    args = (path,) if detail is None else (path, detail)
    lifecycle_log.debug(text, *args, extra={"actor_path": path, "message_type": None})


class DeliveryLog:
    """The delivery hook of ``Settings.trace_deliveries``: logs every delivery on
    ``actors.delivery`` at DEBUG (kind, sender, recipient, message type); never takes
    a message over."""

    __slots__ = ()

    def on_delivery(
        self, cell: ActorCell, via: str, message: Any, sender: ActorRef | None, slot: Slot
    ) -> bool:
        if delivery_log.isEnabledFor(DEBUG):
            sender_path = None if sender is None else sender.path
            message_type = type(message).__qualname__
            delivery_log.debug(
                "%s %s -> %s: %s",
                via,
                sender_path or "(no sender)",
                cell.ref.path,
                message_type,
                extra={
                    "actor_path": cell.ref.path,
                    "message_type": message_type,
                    "sender_path": sender_path,
                    "delivery": via,
                },
            )
        return False


# -- visible by default -------------------------------------------------------------------


def configured(logger: logging.Logger, ours: logging.Handler) -> bool:
    """Whether a record of ``logger`` reaches a handler other than ``ours``: one the
    application (or another library, or pytest) installed on ``logger`` or on one of
    the loggers it propagates to, the root included. Any handler counts, whatever its
    level, a ``NullHandler`` too: the rule of ``logging.lastResort``."""
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if handler is not ours:
                return True
        if not current.propagate:
            return False
        current = current.parent
    return False


class DefaultOutput(logging.Handler):
    """The handler of the ``actors`` logger: prints each WARNING or ERROR record of
    ``actors.*`` as one line (``LEVEL logger: message``, no traceback) to
    ``sys.stderr``, but only while no other handler would receive the record. As soon
    as the application configures logging (``logging.basicConfig``, a handler on the
    root or on an ``actors`` logger, pytest's capture), it steps aside and that
    configuration alone decides what is shown, tracebacks included.

    Silence it with ``logging.getLogger("actors").addHandler(logging.NullHandler())``
    (the application takes the records over; nothing shows until it configures
    logging), or ``logging.getLogger("actors").setLevel(logging.CRITICAL)`` (no
    warnings or errors of the runtime at all)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def handle(self, record: logging.LogRecord) -> bool:
        if configured(logging.getLogger(record.name), self):
            return False
        return bool(super().handle(record))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(record.levelname, record.name, record.getMessage())
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)

    def write(self, level: str, name: str, text: str) -> None:
        """Print one line to the current ``sys.stderr`` (not the one at import: a
        redirection, or pytest's ``capsys``, applies)."""
        stream = sys.stderr
        if stream is None:  # pythonw
            return
        line = f"{level} {name}: {text}"
        if "\n" in line or "\r" in line:
            line = " ".join(line.splitlines())
        stream.write(line + "\n")
        stream.flush()

    def speaks_for(self, logger: logging.Logger, level: int) -> bool:
        """Whether a record of ``level`` on ``logger`` would be printed by this handler
        (for output that is not a record: the dead-letter lines)."""
        return (
            logger.isEnabledFor(level)
            and level >= self.level
            and self in package_log.handlers
            and not configured(logger, self)
        )


default_output: Final = DefaultOutput()

# Dead letters that say a message was lost where nobody chose to lose it. Not those of a
# failure (its own line names the message), of an overflow policy (a choice), of a
# fault injector (on purpose), or of an ask that timed out (the asker got AskTimeout).
_NOTABLE: Final = frozenset(
    {
        DeadLetterReason.STOPPED,
        DeadLetterReason.NO_SUCH_ACTOR,
        DeadLetterReason.UNHANDLED,
        DeadLetterReason.UNPICKLABLE,
        DeadLetterReason.NO_ROUTEES,
        DeadLetterReason.RESTART_STASH_OVERFLOW,
    }
)
DEAD_LETTER_LINE_EVERY: Final = 10.0
"""At most one default dead-letter line per system per this many seconds (trio's
clock)."""


class DeadLetterLines:
    """The default output of dead letters of one system (when the application has not
    configured logging): the first notable dead letter is printed at once, then at
    most one per ``DEAD_LETTER_LINE_EVERY`` seconds, saying how many were not printed
    in between; none while the system shuts down."""

    __slots__ = ("next_at", "skipped")

    def __init__(self) -> None:
        self.next_at = -float("inf")
        self.skipped = 0

    def seen(
        self, reason: DeadLetterReason, message: Any, sender: ActorRef | None, recipient: ActorRef
    ) -> None:
        if reason not in _NOTABLE:
            return
        now = trio.current_time()
        if now < self.next_at:
            self.skipped += 1
            return
        if not default_output.speaks_for(dead_letter_log, WARNING):
            return
        self.next_at = now + DEAD_LETTER_LINE_EVERY
        sender_path = "(no sender)" if sender is None else sender.path
        text = (
            f"dead letter ({reason.value}) {sender_path} -> {recipient.path}: "
            f"{type(message).__qualname__}"
        )
        if self.skipped:
            text += f" (and {self.skipped} more since the last one shown)"
            self.skipped = 0
        with default_output.lock:  # type: ignore[union-attr]
            default_output.write("WARNING", dead_letter_log.name, text)


FAILURE_LINE_EVERY: Final = 10.0
"""In the default output, at most one failure line per actor per this many seconds
(trio's clock) after its first."""


class FailureLines:
    """The default output of the failures of one system's actors (when the application
    has not configured logging): an actor's first failure is printed at once; if it
    fails again within ``FAILURE_LINE_EVERY`` seconds (a restart storm), those failures
    are counted, and the next line shown for it says how many were not. A give-up, a
    stop or an escalation is logged on its own line whatever the count. With logging
    configured, every failure is a record (this class is not involved)."""

    __slots__ = ("_actors",)

    def __init__(self) -> None:
        self._actors: dict[str, list[float]] = {}  # path -> [next line at, not shown]

    def seen(self, path: str) -> int | None:
        """A failure of ``path`` to show: ``None`` if its line is held back (counted),
        else how many of its failures were not shown since its last line."""
        now = trio.current_time()
        actors = self._actors
        entry = actors.get(path)
        if entry is not None and now < entry[0]:
            entry[1] += 1
            return None
        if entry is None and len(actors) >= 1024:  # forget actors quiet for a window
            for quiet in [key for key, (until, _) in actors.items() if until <= now]:
                del actors[quiet]
        not_shown = 0 if entry is None else int(entry[1])
        actors[path] = [now + FAILURE_LINE_EVERY, 0]
        return not_shown
