"""``TestProbe``: an actor a test can send from and assert on."""

from __future__ import annotations

from collections import deque
from typing import Any, TypeVar, overload

import trio
import trio.testing

from .._actor import Actor
from .._messages import Terminated
from .._ref import ActorRef
from .._system import ActorSystem

T = TypeVar("T")


class _ProbeActor(Actor):
    def __init__(self, probe: TestProbe) -> None:
        self._probe = probe

    def receive(self, message: Any) -> None:
        self._probe._arrived(message, self.context.sender)


class TestProbe:
    """An actor whose mailbox a test reads: send it messages, then assert on them.

    Every wait uses trio's clock, so tests run on virtual time (``autojump_clock``).
    ``expect_no_message`` decides by quiescence: it waits until every task of the run is
    blocked (``trio.testing.wait_all_tasks_blocked``), then checks that nothing arrived;
    it never sleeps on the wall clock.
    """

    __test__ = False  # not a pytest test class

    def __init__(
        self, system: ActorSystem, *, name: str | None = None, timeout: float = 3.0
    ) -> None:
        self.system = system
        self.timeout = timeout
        """Default timeout of the ``expect_*`` methods, in seconds of trio's clock."""
        self._queue: deque[tuple[Any, ActorRef | None]] = deque()
        self._arrival = trio.Event()
        self.last_sender: ActorRef | None = None
        """The sender of the message most recently taken from the probe."""
        self.ref: ActorRef = system.spawn(_ProbeActor, self, name=name)

    def __repr__(self) -> str:
        return f"<TestProbe {self.ref.path}>"

    # -- sending --------------------------------------------------------------------------

    def tell(self, target: ActorRef, message: Any) -> None:
        """Tell ``message`` to ``target`` with this probe as the sender."""
        target.tell(message, sender=self.ref)

    def reply(self, message: Any) -> None:
        """Tell ``message`` to the sender of the last message taken from the probe."""
        if self.last_sender is None:
            raise AssertionError("no sender to reply to: the last message had none")
        self.last_sender.tell(message, sender=self.ref)

    def watch(self, ref: ActorRef) -> ActorRef:
        """Make the probe watch ``ref``: it will receive ``Terminated`` for it."""
        return self.ref._resolve().watch(ref)  # type: ignore[attr-defined, no-any-return]

    # -- receiving ------------------------------------------------------------------------

    def _arrived(self, message: Any, sender: ActorRef | None) -> None:
        self._queue.append((message, sender))
        self._arrival.set()

    @property
    def pending(self) -> int:
        """How many messages have arrived and not been taken yet."""
        return len(self._queue)

    async def receive_message(self, timeout: float | None = None) -> Any:
        """Take the next message, waiting up to ``timeout`` (default: ``self.timeout``)
        for one; raises ``AssertionError`` if none arrives in time."""
        limit = self.timeout if timeout is None else timeout
        with trio.move_on_after(limit):
            while not self._queue:
                self._arrival = trio.Event()
                await self._arrival.wait()
        if not self._queue:
            raise AssertionError(f"{self}: no message within {limit:g} s")
        await trio.lowlevel.checkpoint()
        message, self.last_sender = self._queue.popleft()
        return message

    @overload
    async def expect_message(self, expected: type[T], *, timeout: float | None = ...) -> T: ...
    @overload
    async def expect_message(self, expected: Any, *, timeout: float | None = ...) -> Any: ...

    async def expect_message(self, expected: Any, *, timeout: float | None = None) -> Any:
        """Take the next message and assert it is ``expected``: an instance of it if it is
        a class, else equal to it. Returns the message."""
        message = await self.receive_message(timeout)
        if isinstance(expected, type):
            if not isinstance(message, expected):
                raise AssertionError(f"{self}: expected a {expected.__qualname__}, got {message!r}")
        elif message != expected:
            raise AssertionError(f"{self}: expected {expected!r}, got {message!r}")
        return message

    async def expect_messages(self, *expected: Any, timeout: float | None = None) -> list[Any]:
        """``expect_message`` for each of ``expected``, in order."""
        return [await self.expect_message(e, timeout=timeout) for e in expected]

    async def expect_no_message(self, within: float | None = None) -> None:
        """Assert that no message arrives: once the whole run is quiescent, or, with
        ``within``, also after ``within`` seconds of trio's clock have passed."""
        await trio.testing.wait_all_tasks_blocked()
        if within is not None:
            await trio.sleep(within)
            await trio.testing.wait_all_tasks_blocked()
        if self._queue:
            raise AssertionError(f"{self}: expected no message, got {self._queue[0][0]!r}")

    async def expect_terminated(self, ref: ActorRef, *, timeout: float | None = None) -> Terminated:
        """Take the next message and assert it is ``Terminated`` for ``ref`` (the probe
        must :meth:`watch` it first). Returns it."""
        message = await self.expect_message(Terminated, timeout=timeout)
        if message.ref != ref:
            raise AssertionError(f"{self}: expected Terminated for {ref}, got {message!r}")
        return message


TestProbe.__module__ = "actors.testing"
