"""The runtime's own logging (see ``docs/logging.md``): loggers under ``actors.*``, the
records the cells write, and the delivery log of ``Settings.trace_deliveries``.

Every record carries the extra fields ``actor_path`` and ``message_type`` (``None``
when they do not apply), so that a formatter may use them for any ``actors.*`` record.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ._cell import ActorCell
    from ._envelope import Slot
    from ._ref import ActorRef

supervision_log: Final = logging.getLogger("actors.supervision")
lifecycle_log: Final = logging.getLogger("actors.lifecycle")
delivery_log: Final = logging.getLogger("actors.delivery")
dead_letter_log: Final = logging.getLogger("actors.deadletters")
DEBUG: Final = logging.DEBUG


def heard(logger: logging.Logger, level: int) -> bool:
    """Whether a record of ``level`` on ``logger`` would reach a handler that can emit
    it. Building a record with its traceback costs several microseconds: a restart loop
    should not pay that when the application has configured no logging (only the
    ``NullHandler`` of ``actors`` would get it)."""
    if not logger.isEnabledFor(level):
        return False
    found = False
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            found = True
            if handler.__class__ is not logging.NullHandler and level >= handler.level:
                return True
        if not current.propagate:
            break
        current = current.parent
    return not found  # no handler at all: logging's last resort prints it


def log_failure(
    level: int, child: ActorCell, error: BaseException, message: Any, outcome: str, *args: Any
) -> None:
    """Log a failure of ``child`` on ``actors.supervision`` (with its traceback): the
    actor's path, the type of the message it was handling (if any), the error, and
    ``outcome``: what its supervisor does about it."""
    if heard(supervision_log, level):
        path = child.ref.path
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
