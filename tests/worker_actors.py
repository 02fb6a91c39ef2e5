"""Actor classes and helpers for the worker-process tests (``tests/test_workers*.py``).

A module of its own, not a test module, so that worker processes import the classes placed
on them by reference: the root hands its ``sys.path`` (which under pytest has ``tests/`` on
it) to every worker, so ``worker_actors`` imports there as it does here.

:class:`Peer` is what the tests place on workers: it answers, raises, blocks, passes
messages and refs on, spawns children and reports its lifecycle, each on request.
:class:`Sink` and :class:`Recorder` live in the root only: they hold plain Python objects
shared with the test (nothing of theirs is pickled but their ref).
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import trio

import actors


@attrs.frozen
class Get:
    """Ask a :class:`Peer` for the values it recorded (in the order it got them)."""


class CustomError(Exception):
    """An exception class both processes can import."""


class NotRebuildable(Exception):
    """Pickles, but cannot be unpickled: its ``__init__`` does not take its ``args``."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{text} (code {code})")
        self.code = code


def _local_error(text: str) -> Exception:
    class LocalError(Exception):
        pass

    return LocalError(text)


def _worker_only_error(text: str) -> Exception:
    """An error whose class lives in a module that exists only in this process (so it
    pickles by reference here, and its module cannot be imported in the root)."""
    module = sys.modules.get("worker_only_errors")
    if module is None:
        module = types.ModuleType("worker_only_errors")
        cls = type("OnlyHere", (Exception,), {"__module__": "worker_only_errors"})
        module.OnlyHere = cls  # type: ignore[attr-defined]
        sys.modules["worker_only_errors"] = module
    error: Exception = module.OnlyHere(text)
    return error


_ERRORS: dict[str, Callable[[str], Exception]] = {
    "builtin": ValueError,
    "custom": CustomError,
    "not-rebuildable": lambda text: NotRebuildable(7, text),
    "local-class": _local_error,
    "worker-only": _worker_only_error,
}

# Gates that blocked handlers wait on, per name, in this process.
_GATES: dict[str, trio.Event] = {}


def _gate(name: str) -> trio.Event:
    gate = _GATES.get(name)
    if gate is None:
        gate = _GATES[name] = trio.Event()
    return gate


class Peer(actors.Actor):
    """An actor for the worker tests. ``sink`` (optional) is told its lifecycle:
    ``("started", tag, pid)``, ``("restarted", tag, repr(error), pid)`` and
    ``("post_stop", tag, pid)``; ``stop_log`` (optional): a file to which ``post_stop``
    appends ``"tag pid"``.

    Messages (``ask`` returns the value shown; ``tell`` records plain values):

    * ``"pid"``: this process's PID; ``"n"``: how many ``"inc"`` this instance got;
      ``"inc"``: count one; ``"fail"``: raise ``RuntimeError("<tag> told to fail")``;
    * ``("raise", kind, text)``: raise an error of that kind (see ``_ERRORS``);
    * ``("block", gate, notify)``: tell ``notify`` ``("blocked", tag)``, then wait for
      the gate ``gate`` of this process to open; ``("open", gate)``: open it;
    * ``("tell", ref, message)``: tell ``ref`` the message; ``("ask", ref, message)``:
      ask it and return its answer;
    * ``("seq", ref, n)``: tell ``ref`` the ints ``0 .. n-1``, then return its
      :class:`Get`;
    * ``("spawn", name)``: spawn a child :class:`Peer` here and return its ref;
    * ``("call", function)``: return ``function()``;
    * ``("sender",)``: return the sender's ref (``None`` if none);
    * ``("reply",  value)``: tell the sender ``("reply", value, tag, pid, sender path)``;
    * :class:`Get`: what it recorded; anything else: record it (and tell the sink
      ``("got", tag, value)`` when it has one)."""

    def __init__(
        self, sink: actors.ActorRef | None = None, tag: str = "", stop_log: str | None = None
    ) -> None:
        self.sink = sink
        self.tag = tag
        self.stop_log = stop_log
        self.count = 0
        self.seen: list[Any] = []

    def _report(self, *what: Any) -> None:
        if self.sink is not None:
            self.sink.tell(what)

    def pre_start(self) -> None:
        self._report("started", self.tag, os.getpid())

    def post_restart(self, error: BaseException) -> None:
        self._report("restarted", self.tag, repr(error), os.getpid())

    def post_stop(self) -> None:
        self._report("post_stop", self.tag, os.getpid())
        if self.stop_log is not None:
            with Path(self.stop_log).open("a") as log:
                log.write(f"{self.tag} {os.getpid()}\n")

    async def receive(self, message: Any) -> Any:
        match message:
            case "pid":
                return os.getpid()
            case "n":
                return self.count
            case "inc":
                self.count += 1
                return self.count
            case "fail":
                raise RuntimeError(f"{self.tag} told to fail")
            case ("raise", str(kind), str(text)):
                raise _ERRORS[kind](text)
            case ("block", str(gate), actors.ActorRef() as notify):
                notify.tell(("blocked", self.tag))
                await _gate(gate).wait()
                return "unblocked"
            case ("open", str(gate)):
                _gate(gate).set()
                return None
            case ("tell", actors.ActorRef() as ref, inner):
                ref.tell(inner)
                return None
            case ("ask", actors.ActorRef() as ref, inner):
                return await ref.ask(inner, timeout=20)
            case ("seq", actors.ActorRef() as ref, int(n)):
                for value in range(n):
                    ref.tell(value)
                return await ref.ask(Get(), timeout=20)
            case ("spawn", str(name)):
                return self.context.spawn(Peer, self.sink, name, self.stop_log, name=name)
            case ("call", function):
                return function()
            case ("sender",):
                return self.context.sender
            case ("reply", value):
                sender = self.context.sender
                assert sender is not None
                sender.tell(("reply", value, self.tag, os.getpid(), sender.path))
                return None
            case Get():
                return list(self.seen)
        self.seen.append(message)
        self._report("got", self.tag, message)
        return message


class Recorder:
    """What a :class:`Sink` got, shared with the test: ``(message, sender)`` pairs, and a
    way to wait until they satisfy a condition."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, actors.ActorRef | None]] = []
        self._changed = trio.Event()

    def add(self, message: Any, sender: actors.ActorRef | None) -> None:
        self.items.append((message, sender))
        self._changed.set()
        self._changed = trio.Event()

    @property
    def messages(self) -> list[Any]:
        return [message for message, _ in self.items]

    async def wait_for(self, condition: Callable[[list[Any]], bool]) -> list[Any]:
        """Wait until ``condition(messages)`` holds; return the messages then. Bound it
        with ``trio.fail_after``."""
        while not condition(self.messages):
            await self._changed.wait()
        return self.messages


class Sink(actors.Actor):
    """Lives in the root: records every message (with its sender) in a :class:`Recorder`.
    ``("tell", ref, message)`` tells ``ref`` the message from this actor instead (so its
    sender is this actor)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def receive(self, message: Any) -> None:
        match message:
            case ("tell", actors.ActorRef() as ref, inner):
                ref.tell(inner)
            case _:
                self.recorder.add(message, self.context.sender)


class Watcher(actors.Actor):
    """Lives in the root: watches ``target`` and records what it is told (the
    ``Terminated``) in ``recorder``."""

    def __init__(self, target: actors.ActorRef, recorder: Recorder) -> None:
        self.recorder = recorder
        self.context.watch(target)

    def receive(self, message: Any) -> None:
        self.recorder.add(message, self.context.sender)


class Boss(actors.Actor):
    """Lives in the root: ``("spawn", factory, args, name, placement)`` spawns a child
    and returns its ref. Its supervisor strategy is given at spawn."""

    def receive(self, message: Any) -> Any:
        _, factory, args, name, placement = message
        return self.context.spawn(factory, *args, name=name, placement=placement)
