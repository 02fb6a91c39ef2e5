"""``TestProbe``: an actor a test can send from and assert on."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar, overload

import trio
import trio.testing

from .._actor import Actor
from .._cell import ActorCell
from .._context import ActorContext, context_of
from .._messages import ActorStarted, Terminated
from .._ref import ActorRef
from .._system import ActorSystem

T = TypeVar("T")

SHOWN: Final = 10
"""How many messages a failure message lists before it only counts the rest."""
_REPR_LIMIT: Final = 200


class _ProbeActor(Actor):
    def __init__(self, probe: TestProbe) -> None:
        self._probe = probe

    def receive(self, message: Any) -> None:
        if message.__class__ is ActorStarted and message.ref == self.context.ref:
            return  # its own start, published after a subscribe() made right after spawn
        self._probe._arrived(message, self.context.sender)


# -- matchers and how failures describe things ------------------------------------------------


def matches(expected: Any, message: Any) -> bool:
    """Whether ``message`` matches ``expected``, as every ``expect_*`` method decides it:
    a class matches its instances, any other callable is a predicate called with the
    message (truthy: a match), anything else matches what is equal to it."""
    if isinstance(expected, type):
        return isinstance(message, expected)
    if callable(expected):
        return bool(expected(message))
    return bool(message == expected)


def _short(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as error:  # a broken __repr__ must not hide the real failure
        text = f"<{type(value).__qualname__} (repr raised {type(error).__name__})>"
    if len(text) > _REPR_LIMIT:
        text = text[: _REPR_LIMIT - 3] + "..."
    return text


def _callable_name(function: Callable[..., Any]) -> str:
    name = getattr(function, "__qualname__", None)
    if not isinstance(name, str):
        return _short(function)
    code = getattr(function, "__code__", None)
    if name.endswith("<lambda>") and code is not None:
        filename = code.co_filename.replace("\\", "/").rpartition("/")[2]
        return f"<lambda> at {filename}:{code.co_firstlineno}"
    return name


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


def describe(expected: Any) -> str:
    """How failure messages name an expectation: ``a Pong``, ``a message matching f``,
    or the repr of the expected value."""
    if isinstance(expected, type):
        return _article(expected.__qualname__)
    if callable(expected):
        return f"a message matching {_callable_name(expected)}"
    return _short(expected)


def summarize(messages: Sequence[Any], limit: int = SHOWN) -> str:
    """The messages as a comma-separated list of reprs, cut after ``limit`` of them with
    a count of the rest; ``nothing`` if there are none."""
    if not messages:
        return "nothing"
    shown = ", ".join(_short(m) for m in messages[:limit])
    if len(messages) > limit:
        shown += f", ... and {len(messages) - limit} more ({len(messages)} in all)"
    return shown


def _seconds(value: float) -> str:
    return f"{value:g} s"


def _perfect_fit(
    expected: Sequence[Any], taken: Sequence[Any], owner: list[int | None], new: int
) -> bool:
    """Extend the assignment ``owner`` (expectation index -> message index) so that the
    message ``new`` gets an expectation of its own, moving earlier messages to other
    expectations they match if needed (an augmenting path). Returns whether it could."""

    def place(index: int, seen: set[int]) -> bool:
        for slot, matcher in enumerate(expected):
            if slot in seen or not matches(matcher, taken[index]):
                continue
            seen.add(slot)
            holder = owner[slot]
            if holder is None or place(holder, seen):
                owner[slot] = index
                return True
        return False

    return place(new, set())


class TestProbe:
    """An actor whose mailbox a test reads: send it messages, then assert on them.

    Every wait uses trio's clock, so tests run on virtual time (``autojump_clock``).
    ``expect_no_message`` decides by quiescence: it waits until every task of the run is
    blocked (``trio.testing.wait_all_tasks_blocked``), then checks that nothing arrived;
    it never sleeps on the wall clock.

    An expectation (``expected``, ``predicate``) is one of: a class, matched by its
    instances; any other callable, a predicate called with the message (a truthy result
    is a match); or a value, matched by equality. So a message that is itself a
    callable can only be matched by a class or a predicate.

    Every failure raises ``AssertionError`` whose text says what was expected and what
    arrived instead: the message that did not match and those queued after it, the
    messages taken or skipped while waiting, or that nothing arrived in time. Long lists
    show their first :data:`SHOWN` items and a count.
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
        self._subscriptions: list[str | type] = []
        self.last_sender: ActorRef | None = None
        """The sender of the message most recently taken from the probe."""
        self.ref: ActorRef = system.spawn(_ProbeActor, self, name=name)

    def __repr__(self) -> str:
        return f"<TestProbe {self.ref.path}>"

    def _context(self) -> ActorContext:
        """The context of the probe's actor (its watches are the probe's)."""
        cell = self.ref._resolve()
        assert isinstance(cell, ActorCell), "the probe's actor lives in this process"
        return context_of(cell)

    # -- sending --------------------------------------------------------------------------

    def tell(self, target: ActorRef, message: Any) -> None:
        """Tell ``message`` to ``target`` with this probe as the sender."""
        target.tell(message, sender=self.ref)

    def reply(self, message: Any) -> None:
        """Tell ``message`` to the sender of the last message taken from the probe."""
        if self.last_sender is None:
            raise AssertionError("no sender to reply to: the last message had none")
        self.last_sender.tell(message, sender=self.ref)

    # -- death watch and the event bus ------------------------------------------------------

    def watch(self, ref: ActorRef) -> ActorRef:
        """Make the probe watch ``ref``: it will receive ``Terminated`` for it."""
        return self._context().watch(ref)

    def unwatch(self, ref: ActorRef) -> ActorRef:
        """Stop watching ``ref``: no ``Terminated`` for it is taken from the probe
        afterwards, not even one that had already arrived. Returns ``ref``."""
        self._context().unwatch(ref)
        for index, (message, _) in enumerate(self._queue):
            if isinstance(message, Terminated) and message.ref == ref:
                del self._queue[index]
                break
        return ref

    def subscribe(self, *patterns: str | type) -> TestProbe:
        """Subscribe the probe to events of ``system.events``: each pattern is a topic
        pattern (``"system.lifecycle.>"``, ``"orders.*"``) or an event class
        (``ActorRestarted``, ``DeadLetter``). Matching events then arrive like messages,
        without a sender, from the moment of this call (except the probe's own
        ``ActorStarted``, which it drops). Returns the probe, so that
        ``TestProbe(system).subscribe(ActorFailed)`` reads as one step."""
        for pattern in patterns:
            self.system.events.subscribe(self.ref, pattern)
            if pattern not in self._subscriptions:
                self._subscriptions.append(pattern)
        return self

    def unsubscribe(self, *patterns: str | type) -> None:
        """End the probe's subscriptions to ``patterns``, or all of them if none is
        given. Events that have already arrived stay queued."""
        if not patterns:
            self.system.events.unsubscribe(self.ref)
            self._subscriptions.clear()
            return
        for pattern in patterns:
            self.system.events.unsubscribe(self.ref, pattern)
            if pattern in self._subscriptions:
                self._subscriptions.remove(pattern)

    # -- receiving ------------------------------------------------------------------------

    def _arrived(self, message: Any, sender: ActorRef | None) -> None:
        self._queue.append((message, sender))
        self._arrival.set()

    @property
    def pending(self) -> int:
        """How many messages have arrived and not been taken yet."""
        return len(self._queue)

    def _deadline(self, timeout: float | None) -> tuple[float, float]:
        limit = self.timeout if timeout is None else timeout
        return limit, trio.current_time() + limit

    async def _wait(self, deadline: float) -> bool:
        """Wait until a message is queued or trio's clock reaches ``deadline``; then
        checkpoint. Returns whether a message is queued."""
        with trio.move_on_at(deadline):
            while not self._queue:
                self._arrival = trio.Event()
                await self._arrival.wait()
        await trio.lowlevel.checkpoint()
        return bool(self._queue)

    def _take(self) -> Any:
        message, self.last_sender = self._queue.popleft()
        return message

    def _queued(self) -> list[Any]:
        return [message for message, _ in self._queue]

    def _fail(self, text: str, **lines: Sequence[Any] | None) -> AssertionError:
        """An ``AssertionError`` with the probe, ``text``, and one indented line per
        keyword (its name with ``_`` as spaces: a summary of the messages); ``None``
        omits a line, an empty list says ``nothing``."""
        parts = [f"{self}: {text}"]
        for label, messages in lines.items():
            if messages is not None:
                parts.append(f"  {label.replace('_', ' ')}: {summarize(messages)}")
        return AssertionError("\n".join(parts))

    def _got(self, message: Any) -> str:
        sender = self.last_sender
        return _short(message) + ("" if sender is None else f" (from {sender.path})")

    async def receive_message(self, timeout: float | None = None) -> Any:
        """Take the next message, waiting up to ``timeout`` (default: ``self.timeout``)
        for one; raises ``AssertionError`` if none arrives in time."""
        limit, deadline = self._deadline(timeout)
        if not await self._wait(deadline):
            raise self._fail(f"expected a message, but nothing arrived within {_seconds(limit)}")
        return self._take()

    @overload
    async def expect_message(self, expected: type[T], *, timeout: float | None = ...) -> T: ...
    @overload
    async def expect_message(self, expected: Any, *, timeout: float | None = ...) -> Any: ...

    async def expect_message(self, expected: Any, *, timeout: float | None = None) -> Any:
        """Take the next message, waiting up to ``timeout`` (default: ``self.timeout``)
        for it, and assert that it matches ``expected`` (a class, a predicate or a value).
        Returns the message. A message that does not match is consumed all the same: the
        probe does not search ahead (see :meth:`fish_for` for that)."""
        limit, deadline = self._deadline(timeout)
        if not await self._wait(deadline):
            raise self._fail(
                f"expected {describe(expected)}, but nothing arrived within {_seconds(limit)}"
            )
        message = self._take()
        if not matches(expected, message):
            raise self._fail(
                f"expected {describe(expected)}, got {self._got(message)}",
                queued_after_it=self._queued() or None,
            )
        return message

    async def expect_messages(
        self, *expected: Any, any_order: bool = False, timeout: float | None = None
    ) -> list[Any]:
        """Take ``len(expected)`` messages and assert that they match ``expected``; returns
        them in arrival order. ``timeout`` (default: ``self.timeout``) bounds the wait
        for each message.

        In order (the default), message *i* must match ``expected[i]``. With
        ``any_order=True`` each message must match a different expectation, in whatever
        order they arrive; a message that leaves no way to give every message its own
        expectation fails at once (overlapping expectations such as ``Pong`` and
        ``Pong(1)`` are assigned so that a fit is found if one exists)."""
        limit = self.timeout if timeout is None else timeout
        taken: list[Any] = []
        owner: list[int | None] = [None] * len(expected)
        count = len(expected)
        for index in range(count):
            if any_order:
                wanted = f"{count} messages in any order: [{_descriptions(expected)}]"
            else:
                wanted = f"message {index + 1} of {count} to be {describe(expected[index])}"
            if not await self._wait(trio.current_time() + limit):
                raise self._fail(
                    f"expected {wanted}, but nothing arrived within {_seconds(limit)}",
                    taken_before=taken,
                )
            message = self._take()
            taken.append(message)
            if any_order:
                fits = _perfect_fit(expected, taken, owner, index)
            else:
                fits = matches(expected[index], message)
            if not fits:
                left = [e for slot, e in enumerate(expected) if owner[slot] is None]
                raise self._fail(
                    f"expected {wanted}, got {self._got(message)}"
                    + (f", which fits none of [{_descriptions(left)}]" if any_order else ""),
                    taken_before=taken[:-1],
                    queued_after_it=self._queued() or None,
                )
        if not count:
            await trio.lowlevel.checkpoint()
        return taken

    async def expect_no_message(self, within: float | None = None) -> None:
        """Assert that no message arrives: once the whole run is quiescent, or, with
        ``within``, also after ``within`` seconds of trio's clock have passed. A message
        that did arrive stays queued."""
        await trio.testing.wait_all_tasks_blocked()
        if within is not None:
            await trio.sleep(within)
            await trio.testing.wait_all_tasks_blocked()
        if self._queue:
            message, sender = self._queue[0]
            when = "" if within is None else f" within {_seconds(within)}"
            origin = "" if sender is None else f" (from {sender.path})"
            raise self._fail(
                f"expected no message{when}, got {_short(message)}{origin}",
                queued_after_it=self._queued()[1:] or None,
            )

    async def fish_for(self, predicate: Any, *, timeout: float | None = None) -> Any:
        """Take messages until one matches ``predicate`` (a predicate, a class or a
        value) and return it; those before it are skipped (consumed). ``timeout``
        (default: ``self.timeout``) bounds the whole search; the failure lists the
        messages skipped."""
        return await self._fish(predicate, describe(predicate), timeout, "fish_for")

    async def _fish(
        self, predicate: Any, description: str, timeout: float | None, what: str
    ) -> Any:
        limit, deadline = self._deadline(timeout)
        skipped: list[Any] = []
        while await self._wait(deadline):
            message = self._take()
            if matches(predicate, message):
                return message
            skipped.append(message)
        arrived = f"{len(skipped)} arrived and none matched" if skipped else "nothing arrived"
        raise self._fail(
            f"{what}: expected {description} within {_seconds(limit)}, but {arrived}",
            skipped=skipped or None,
        )

    async def receive_while(
        self,
        predicate: Any,
        *,
        max: int | None = None,
        idle: float | None = None,
        timeout: float | None = None,
    ) -> list[Any]:
        """Take messages for as long as they match ``predicate`` (a predicate, a class
        or a value) and return them in order. It never fails; it stops

        * at the first message that does not match, which stays queued;
        * after ``max`` messages;
        * when no message is queued and none is coming: with ``idle=None`` (the default)
          once the whole run is quiescent (``wait_all_tasks_blocked``), which does not see
          messages that only a future timer would send; with ``idle=seconds`` once that
          much of trio's clock passes without a message;
        * when ``timeout`` (default: ``self.timeout``) seconds of trio's clock have passed
          since the call.
        """
        _, deadline = self._deadline(timeout)
        taken: list[Any] = []
        with trio.move_on_at(deadline):
            while max is None or len(taken) < max:
                if not self._queue:
                    if idle is None:
                        await trio.testing.wait_all_tasks_blocked()
                    else:
                        await self._wait(min(deadline, trio.current_time() + idle))
                    if not self._queue:
                        break
                if not matches(predicate, self._queue[0][0]):
                    break
                taken.append(self._take())
        await trio.lowlevel.checkpoint()
        return taken

    async def expect_terminated(self, ref: ActorRef, *, timeout: float | None = None) -> Terminated:
        """Take the next message and assert it is ``Terminated`` for ``ref`` (the probe
        must :meth:`watch` it first). Returns it."""
        limit, deadline = self._deadline(timeout)
        wanted = f"Terminated for {ref.path}"
        if not await self._wait(deadline):
            raise self._fail(f"expected {wanted}, but nothing arrived within {_seconds(limit)}")
        message = self._take()
        if not isinstance(message, Terminated) or message.ref != ref:
            raise self._fail(
                f"expected {wanted}, got {self._got(message)}",
                queued_after_it=self._queued() or None,
            )
        return message

    @overload
    async def expect_event(
        self,
        expected: type[T],
        *,
        where: Callable[[T], object] | None = ...,
        timeout: float | None = ...,
    ) -> T: ...
    @overload
    async def expect_event(
        self,
        expected: Any,
        *,
        where: Callable[[Any], object] | None = ...,
        timeout: float | None = ...,
    ) -> Any: ...

    async def expect_event(
        self,
        expected: Any,
        *,
        where: Callable[[Any], object] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """Wait for an event that matches ``expected`` (a class, a predicate or a value)
        and, if given, the predicate ``where``; return it. The probe must have
        :meth:`subscribe`\\ d to the events first (before the action that publishes them).

        Events on the bus are many (every actor's start and stop, every dead letter), so
        unlike :meth:`expect_message` this skips what does not match, like
        :meth:`fish_for`; ``timeout`` (default: ``self.timeout``) bounds the whole
        search, and the failure lists what was skipped."""

        def wanted(message: Any) -> bool:
            return matches(expected, message) and (where is None or bool(where(message)))

        description = describe(expected) + (
            "" if where is None else f" where {_callable_name(where)}"
        )
        try:
            return await self._fish(wanted, description, timeout, "expect_event")
        except AssertionError as error:
            if not self._subscriptions:
                raise AssertionError(
                    f"{error}\n  (the probe subscribes to no events: call "
                    "probe.subscribe(pattern or class) before the action)"
                ) from None
            raise


def _descriptions(expected: Sequence[Any]) -> str:
    return ", ".join(describe(e) for e in expected)
