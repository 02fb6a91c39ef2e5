"""``MessageTrace``: the message flow of a test, for humans.

A trace records, in order and with trio's (virtual) timestamps, every message delivered
into a mailbox (who sent what to whom), every fault a :class:`FaultInjector` applied
(drops, delays, crashes...) and every kill it was asked for (``kill``, or
``kill_merged`` for one that merged into a failure, start, restart or stop already under
way), and the lifecycle of actors (failed, restarted, stopped) and dead letters. Times
count from the moment the injector was installed, like :attr:`Injection.time`. It
renders as plain text or as a Mermaid sequence diagram; runs of the same message between
the same actors are folded into one line (``x N``), and a trace longer than ``limit``
lines keeps its first and last lines with a count of what was left out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs
import trio

from .._actor import Actor
from .._cell import ActorCell
from .._messages import ActorFailed, ActorRestarted, ActorStopped, DeadLetter
from .._node import Encoded
from .._ref import ActorRef
from ._faults import where

if TYPE_CHECKING:
    from ._faults import FaultInjector

_SUMMARY = 60
# Faults the injector records that do not travel with a message.
_ACTOR_FAULTS = ("kill", "kill_merged", "pre_start", "kill_worker")


def _summary(message: Any) -> str:
    text = repr(message)
    return text if len(text) <= _SUMMARY else text[: _SUMMARY - 3] + "..."


@attrs.frozen
class TraceEntry:
    """One line of a trace, ``time`` seconds of trio's clock after the injector was
    installed (:attr:`MessageTrace.start`): ``kind`` is ``send`` (or ``ask``), a fault
    kind (``drop``, ``delay``, ``duplicate``, ``reorder``, ``crash``, ``hang``, ``kill``,
    ``kill_merged``, ``pre_start``, ``kill_worker``), or ``failed``, ``restarted``, ``stopped``,
    ``dead-letter``. ``count`` says how many identical entries in a row it stands for."""

    time: float
    kind: str
    sender: str | None
    recipient: str
    text: str
    count: int = 1


class _Listener(Actor):
    def __init__(self, trace: MessageTrace) -> None:
        self.trace = trace

    def receive(self, message: Any) -> None:
        self.trace._runtime_event(message)


class MessageTrace:
    """Records what happens in one actor system; made by :meth:`attach`."""

    def __init__(self, injector: FaultInjector) -> None:
        self.entries: list[TraceEntry] = []
        self._injector = injector
        self._seen_injections = 0
        self._listener: ActorCell | None = None
        origin = injector.origin
        self.start = trio.current_time() if origin is None else origin
        """Trio's clock when the injector was installed: entry times are relative to it
        (as the injector's own :attr:`Injection.time`)."""

    @classmethod
    def attach(cls, injector: FaultInjector) -> MessageTrace:
        """Start tracing the system ``injector`` is installed on (install it first)."""
        system = injector._require_system()
        trace = cls(injector)
        injector._observers.append(trace._observe)
        # Named by its rank among this injector's traces, not by anything of the process,
        # so that a replayed run spawns the same actors.
        name = f"message-trace-{len(injector._observers)}"
        listener = system.spawn(_Listener, trace, name=name)
        cell = listener._resolve()
        assert isinstance(cell, ActorCell)
        trace._listener = cell
        injector._spared.add(cell)  # no faults in what the trace hears
        for kind in (ActorFailed, ActorRestarted, ActorStopped, DeadLetter):
            system.events.subscribe(listener, kind)
        return trace

    # -- recording ------------------------------------------------------------------------

    def _observe(
        self,
        cell: ActorCell,
        message: Any,
        sender: ActorRef | None,
        slot: Any,
        fault: str | None,
    ) -> None:
        if cell is self._listener:
            return
        self._take_injections()
        kind = fault or ("send" if slot is None else "ask")
        self._add(
            TraceEntry(
                trio.current_time() - self.start,
                kind,
                None if sender is None else where(sender),
                where(cell.ref),
                _summary(message.decode() if isinstance(message, Encoded) else message),
            )
        )

    def _take_injections(self) -> None:
        injected = self._injector.injected
        for injection in injected[self._seen_injections :]:
            if injection.kind not in _ACTOR_FAULTS:
                continue  # seen on its way into the mailbox
            self._add(
                TraceEntry(
                    injection.time,
                    injection.kind,
                    injection.sender,
                    injection.recipient,
                    "" if injection.message is None else _summary(injection.message),
                )
            )
        self._seen_injections = len(injected)

    def _runtime_event(self, event: Any) -> None:
        self._take_injections()
        now = trio.current_time() - self.start
        if isinstance(event, ActorFailed):
            entry = TraceEntry(now, "failed", None, where(event.ref), _summary(event.error))
        elif isinstance(event, ActorRestarted):
            entry = TraceEntry(now, "restarted", None, where(event.ref), _summary(event.error))
        elif isinstance(event, ActorStopped):
            if self._listener is not None and event.ref == self._listener.ref:
                return
            reason = "" if event.error is None else _summary(event.error)
            entry = TraceEntry(now, "stopped", None, where(event.ref), reason)
        elif isinstance(event, DeadLetter):
            sender = None if event.sender is None else where(event.sender)
            text = f"{_summary(event.message)} ({event.reason})"
            entry = TraceEntry(now, "dead-letter", sender, where(event.recipient), text)
        else:
            return
        self._add(entry)

    def _add(self, entry: TraceEntry) -> None:
        entries = self.entries
        if entries:
            last = entries[-1]
            if (last.kind, last.sender, last.recipient, last.text) == (
                entry.kind,
                entry.sender,
                entry.recipient,
                entry.text,
            ):
                entries[-1] = attrs.evolve(last, count=last.count + 1)
                return
        entries.append(entry)

    # -- rendering --------------------------------------------------------------------------

    def _lines(self, limit: int) -> Iterable[TraceEntry | int]:
        """The entries, or the first and last ``limit // 2`` with the number left out."""
        self._take_injections()
        entries = self.entries
        if len(entries) <= limit:
            yield from entries
            return
        head = limit // 2
        tail = limit - head
        yield from entries[:head]
        yield len(entries) - head - tail
        yield from entries[-tail:]

    def to_text(self, limit: int = 200) -> str:
        """One line per entry: time, kind, ``sender -> recipient`` and the message."""
        lines = []
        for item in self._lines(limit):
            if isinstance(item, int):
                lines.append(f"... {item} more entries ...")
                continue
            who = item.recipient if item.sender is None else f"{item.sender} -> {item.recipient}"
            times = f" x{item.count}" if item.count > 1 else ""
            lines.append(f"{item.time:10.3f}  {item.kind:<11} {who}  {item.text}{times}".rstrip())
        return "\n".join(lines) + "\n"

    def to_mermaid(self, limit: int = 100) -> str:
        """A Mermaid ``sequenceDiagram``: messages as arrows (drops crossed out), faults
        and lifecycle events as notes over the actor."""
        names: dict[str, str] = {}

        def alias(path: str) -> str:
            if path not in names:
                names[path] = f"A{len(names)}"
            return names[path]

        body: list[str] = []
        for item in self._lines(limit):
            if isinstance(item, int):
                body.append(f"    Note over {alias('/')}: ... {item} more entries ...")
                continue
            text = _mermaid_text(item.text) + (f" x{item.count}" if item.count > 1 else "")
            target = alias(item.recipient)
            if item.kind in _ARROW_KINDS and item.sender is not None:
                arrow = "-x" if item.kind == "drop" else "->>"
                label = text if item.kind == "send" else f"{item.kind}: {text}"
                body.append(f"    {alias(item.sender)}{arrow}{target}: {label}")
            else:
                body.append(f"    Note over {target}: {item.kind} {text}".rstrip())
        head = ["sequenceDiagram"]
        for path, name in names.items():
            head.append(f"    participant {name} as {_mermaid_text(path)}")
        return "\n".join(head + body) + "\n"


_ARROW_KINDS = ("send", "ask", "drop", "delay", "duplicate", "reorder", "crash", "hang")


def _mermaid_text(text: str) -> str:
    """Text safe inside a Mermaid line (no ``;``, ``#`` or line breaks)."""
    return re.sub(r"[;#\n\r]", " ", text)
