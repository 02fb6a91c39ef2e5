"""Getting ``KeyboardInterrupt`` and ``SystemExit`` out of exception groups, for the
context managers (``open_system``, the journals' ``open_*``) that run tasks of their own
and must let Ctrl-C and ``sys.exit()`` out as themselves."""

from __future__ import annotations

import trio


def interrupt_in(error: BaseException) -> BaseException | None:
    """The first ``KeyboardInterrupt`` or ``SystemExit`` in ``error`` (itself, or inside
    its nested exception groups), with a note naming the other exceptions of the group;
    ``None`` if there is none."""
    if isinstance(error, KeyboardInterrupt | SystemExit):
        return error
    if not isinstance(error, BaseExceptionGroup):
        return None
    leaves: list[BaseException] = []
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop()
        if isinstance(current, BaseExceptionGroup):
            pending.extend(reversed(current.exceptions))
        else:
            leaves.append(current)
    interrupts = [leaf for leaf in leaves if isinstance(leaf, KeyboardInterrupt | SystemExit)]
    if not interrupts:
        return None
    first = interrupts[0]
    others = [leaf for leaf in leaves if leaf is not first and not isinstance(leaf, trio.Cancelled)]
    if others:
        first.add_note("raised together with: " + ", ".join(repr(leaf) for leaf in others))
    return first
