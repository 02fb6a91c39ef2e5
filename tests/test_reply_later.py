"""Replying later: ``context.reply_later()`` and ``ReplyHandle`` (keep a question, answer
it after other messages or from another actor, exactly once, within the asker's
deadline; askers learn of a stop or restart at once)."""

from __future__ import annotations

import gc
import math
import pickle
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
import supervision as sv
from actors import (
    Actor,
    ActorDead,
    ActorRef,
    ActorSystem,
    AskTimeout,
    DeadLetter,
    DeadLetterReason,
    ReplyHandle,
)
from actors.routing import RoundRobinRouting, Router
from actors.testing import TestProbe


class Boom(Exception):
    pass


@attrs.frozen
class Job:
    n: int
    reply_to: ReplyHandle


class Doubler(Actor):
    """Answers jobs through the handle they carry (a protocol written for refs: it
    calls ``reply_to.tell``)."""

    def receive(self, message: Any) -> None:
        if isinstance(message, Job):
            message.reply_to.tell(message.n * 2)


@attrs.frozen
class TakeFirst:
    """Asks a Keeper for its first kept handle (answered as a plain return value)."""


class Keeper(Actor):
    """Keeps every ``"get"`` unanswered until ``"release"``; hands ints to a worker."""

    def __init__(self, worker: ActorRef | None = None) -> None:
        self.worker = worker
        self.kept: list[ReplyHandle] = []

    def receive(self, message: Any) -> Any:
        match message:
            case "get":
                self.kept.append(self.context.reply_later())
                return "ignored: the handle answers"
            case "release":
                for n, handle in enumerate(self.kept):
                    handle.reply(f"answer {n}")
                self.kept.clear()
                return "released"
            case "fail-all":
                for handle in self.kept:
                    handle.fail(Boom("no answer for you"))
                self.kept.clear()
                return None
            case "crash":
                raise Boom("crashed")
            case "pending":
                return [handle.pending for handle in self.kept]
            case TakeFirst():
                return self.kept.pop(0)
            case int(n):
                assert self.worker is not None
                self.worker.tell(Job(n, self.context.reply_later()))
                return None
        return None


async def _ask_in_background(
    nursery: trio.Nursery, ref: ActorRef, message: Any, results: list[Any], **kwargs: Any
) -> None:
    """Start an ask in ``nursery``; returns once the question is in the mailbox (an ask
    enqueues before it first waits), so that ``idle()`` then sees it."""

    async def ask(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            results.append(await ref.ask(message, **kwargs))
        except Exception as exc:
            results.append(exc)

    await nursery.start(ask)


async def test_a_kept_question_is_answered_after_other_messages(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    keeper = actor_system.spawn(Keeper)
    results: list[Any] = []
    async with trio.open_nursery() as nursery:
        for _ in range(2):
            await _ask_in_background(nursery, keeper, "get", results)
        await actor_system.idle()
        assert results == []  # kept: the handler's return value did not answer them
        assert await keeper.ask("pending") == [True, True]
        assert await keeper.ask("release") == "released"
    assert sorted(results) == ["answer 0", "answer 1"]


async def test_another_actor_answers_through_a_handle_passed_in_a_message(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    # actor_system round-trips every message through cloudpickle: the handle survives it.
    assert actor_system.settings.roundtrip_messages
    keeper = actor_system.spawn(Keeper, actor_system.spawn(Doubler))
    assert await keeper.ask(21) == 42
    assert [await keeper.ask(n) for n in range(3)] == [0, 2, 4]


async def test_a_handle_is_answered_exactly_once(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    errors: list[str] = []

    class Twice(Actor):
        def receive(self, message: Any) -> None:
            handle = self.context.reply_later()
            handle.reply("first")
            seconds: list[Callable[[], None]] = [
                lambda: handle.reply("second"),
                lambda: handle.fail(Boom()),
            ]
            for second in seconds:
                try:
                    second()
                except RuntimeError as exc:
                    errors.append(str(exc))
            assert not handle.pending

    ref = actor_system.spawn(Twice, name="twice")
    assert await ref.ask("q") == "first"
    assert (
        errors
        == [
            "this reply handle of /user/twice has already been answered; a message is "
            "answered exactly once (check handle.pending before answering)"
        ]
        * 2
    )


async def test_fail_raises_the_error_in_the_asker_and_the_actor_goes_on(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    keeper = actor_system.spawn(Keeper)
    results: list[Any] = []
    async with trio.open_nursery() as nursery:
        await _ask_in_background(nursery, keeper, "get", results)
        await actor_system.idle()
        keeper.tell("fail-all")
    [error] = results
    assert isinstance(error, Boom)
    assert str(error) == "no answer for you"
    assert await keeper.ask("pending") == []  # still running, not restarted
    assert keeper.stats().restarts == 0


async def test_fail_needs_an_exception(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    class Fails(Actor):
        def receive(self, message: Any) -> Any:
            handle = self.context.reply_later()
            try:
                handle.fail("not an error")  # type: ignore[arg-type]
            except TypeError as exc:
                handle.reply(str(exc))
            return None

    ref = actor_system.spawn(Fails)
    assert await ref.ask("q") == (
        "fail() needs an Exception instance to raise in the asker, got 'not an error'"
    )


async def test_the_askers_timeout_runs_and_a_late_answer_is_a_dead_letter(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    probe.subscribe(DeadLetter)
    keeper = actor_system.spawn(Keeper, name="keeper")
    with pytest.raises(AskTimeout, match="no reply from /user/keeper within 2 s to str"):
        await keeper.ask("get", timeout=2)
    assert trio.current_time() == pytest.approx(2)
    assert await keeper.ask("pending") == [False]  # the asker gave up
    await keeper.ask("release")
    letter = await probe.expect_message(DeadLetter)
    assert (letter.message, letter.reason) == ("answer 0", DeadLetterReason.ASK_EXPIRED)
    assert letter.sender == keeper


@pytest.mark.actor_system(guardian_strategy=sv.OneForOne(lambda e: sv.Directive.STOP))
async def test_askers_get_actor_dead_with_the_cause_when_the_actor_stops(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    keeper = actor_system.spawn(Keeper, name="keeper")
    results: list[Any] = []
    async with trio.open_nursery() as nursery:
        await _ask_in_background(nursery, keeper, "get", results, timeout=math.inf)
        await actor_system.idle()
        keeper.tell("crash")  # a failure its supervisor answers with a stop
    [error] = results
    assert isinstance(error, ActorDead)
    assert str(error).startswith("actor /user/keeper stopped before replying: it failed with")
    assert isinstance(error.error, Boom)
    assert error.__cause__ is error.error
    assert trio.current_time() == 0  # at once, not at a deadline


async def test_askers_get_actor_dead_when_the_actor_stops_normally(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    keeper = actor_system.spawn(Keeper, name="keeper")
    results: list[Any] = []
    async with trio.open_nursery() as nursery:
        await _ask_in_background(nursery, keeper, "get", results)
        await actor_system.idle()
        await actor_system.graceful_stop(keeper)
    [error] = results
    assert isinstance(error, ActorDead)
    assert str(error) == "actor /user/keeper stopped before replying"
    assert error.error is None


async def test_askers_get_actor_dead_when_the_actor_restarts(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    keeper = actor_system.spawn(Keeper, name="keeper")
    results: list[Any] = []
    async with trio.open_nursery() as nursery:
        await _ask_in_background(nursery, keeper, "get", results)
        await actor_system.idle()
        keeper.tell("crash")  # restarted by default: the new instance kept nothing
    [error] = results
    assert isinstance(error, ActorDead)
    assert str(error).startswith(
        "actor /user/keeper was restarted before it replied: it failed with"
    )
    assert isinstance(error.error, Boom)
    assert keeper.stats().restarts == 1
    assert await keeper.ask("pending") == []


class Sender(Actor):
    """Tells ``target`` ``message`` with itself as sender and reports what comes back."""

    def __init__(self, target: ActorRef, message: Any, report: ActorRef) -> None:
        self.report = report
        target.tell(message, sender=self.context.ref)

    def receive(self, message: Any) -> None:
        self.report.tell(("got", message, self.context.sender))


async def test_a_told_message_with_a_sender_is_answered_by_a_tell(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    keeper = actor_system.spawn(Keeper)
    actor_system.spawn(Sender, keeper, "get", probe.ref)
    await actor_system.idle()
    assert await keeper.ask("pending") == [True]
    keeper.tell("release")
    assert await probe.expect_message(tuple) == ("got", "answer 0", keeper)
    # fail() tells the error itself.
    actor_system.spawn(Sender, keeper, "get", probe.ref)
    await actor_system.idle()
    keeper.tell("fail-all")
    _, error, sender = await probe.expect_message(tuple)
    assert isinstance(error, Boom)
    assert sender == keeper


async def test_nobody_to_reply_to_raises_a_clear_error(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    class Tries(Actor):
        def receive(self, message: Any) -> None:
            try:
                self.context.reply_later()
            except RuntimeError as exc:
                probe.ref.tell(str(exc))

        def post_stop(self) -> None:
            try:
                self.context.reply_later()
            except RuntimeError as exc:
                probe.ref.tell(str(exc))

    ref = actor_system.spawn(Tries, name="tries")
    ref.tell("from a script, no sender")
    assert await probe.expect_message(str) == (
        "/user/tries: reply_later() needs a message that came with ask, or with a sender "
        "to tell the reply to; this one has neither (tell it with sender=, or ask it)"
    )
    await actor_system.graceful_stop(ref)
    assert await probe.expect_message(str) == (
        "reply_later() can only be called while handling a message"
    )


async def test_a_message_is_taken_once(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    class Greedy(Actor):
        def receive(self, message: Any) -> Any:
            handle = self.context.reply_later()
            errors = []
            for again in (self.context.reply_later, self.context.stash):
                try:
                    again()
                except RuntimeError as exc:
                    errors.append(str(exc))
            handle.reply(errors)
            return None

    ref = actor_system.spawn(Greedy)
    assert await ref.ask("q") == [
        "this message was already stashed, forwarded or taken by reply_later(); "
        "reply_later() takes a message once",
        "this message was already stashed, forwarded or taken by reply_later(); "
        "stash() takes a message once",
    ]


async def test_a_handler_that_raises_after_taking_the_handle_answers_with_its_error(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    probe.subscribe(DeadLetter)
    kept: list[ReplyHandle] = []

    class Raises(Actor):
        def receive(self, message: Any) -> Any:
            if message == "late":
                kept[0].reply("too late")
                return None
            kept.append(self.context.reply_later())
            raise Boom("after taking the handle")

    ref = actor_system.spawn(Raises)
    with pytest.raises(Boom, match="after taking the handle"):
        await ref.ask("q")
    assert not kept[0].pending
    ref.tell("late")
    letter = await probe.expect_message(DeadLetter)
    assert (letter.message, letter.reason) == ("too late", DeadLetterReason.ASK_EXPIRED)
    assert ref.stats().restarts == 0  # an error in an asked handler is the asker's


class Slow(Actor):
    """A routee that keeps each question until told ``"release"``."""

    def __init__(self) -> None:
        self.kept: list[ReplyHandle] = []

    def receive(self, message: Any) -> None:
        if message == "release":
            for handle in self.kept:
                handle.reply(f"{self.context.ref.name} answers")
            self.kept.clear()
        else:
            self.kept.append(self.context.reply_later())


async def test_a_handle_answers_an_ask_that_came_through_a_router(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    router = actor_system.spawn(Router, RoundRobinRouting(), pool=Slow, size=2, name="pool")
    results: list[Any] = []
    async with trio.open_nursery() as nursery:
        for _ in range(2):
            await _ask_in_background(nursery, router, "question", results)
        await actor_system.idle()
        assert results == []
        router.tell(actors.routing.Broadcast("release"))
    assert sorted(results) == ["$1 answers", "$2 answers"]


async def test_a_handle_answers_an_ask_that_was_forwarded(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    class Forwarder(Actor):
        def __init__(self, target: ActorRef) -> None:
            self.target = target

        def receive(self, message: Any) -> None:
            self.context.forward(self.target)

    slow = actor_system.spawn(Slow, name="slow")
    front = actor_system.spawn(Forwarder, slow)
    results: list[Any] = []
    async with trio.open_nursery() as nursery:
        await _ask_in_background(nursery, front, "question", results)
        await actor_system.idle()
        assert results == []
        slow.tell("release")
    assert results == ["slow answers"]


async def test_a_handle_pickles_to_itself_in_this_process_only(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    outcome: list[Any] = []

    class Pickles(Actor):
        def receive(self, message: Any) -> None:
            handle = self.context.reply_later()
            data = pickle.dumps(handle)
            copy = pickle.loads(data)
            outcome.append(copy is handle)
            outcome.append(repr(copy))
            copy.reply("through the copy")
            del handle, copy
            gc.collect()
            try:
                pickle.loads(data)  # nothing in this process answers to it any more
            except actors.ActorError as exc:
                outcome.append(str(exc))

    ref = actor_system.spawn(Pickles, name="pickles")
    assert await ref.ask("q") == "through the copy"
    assert outcome == [
        True,
        "<ReplyHandle /user/pickles -> the asker (pending)>",
        "a ReplyHandle can only be used in the process that made it (reply handles do "
        "not cross process boundaries yet): answer in that process, or let the actor "
        "that took it reply",
    ]


async def test_a_handle_belongs_to_the_systems_thread(actor_system: ActorSystem) -> None:
    # (No autojump clock: it would jump to the ask's deadline while the thread runs.)
    keeper = actor_system.spawn(Keeper, name="keeper")
    results: list[Any] = []
    async with trio.open_nursery() as nursery:
        await _ask_in_background(nursery, keeper, "get", results, timeout=math.inf)
        await actor_system.idle()
        handle = await keeper.ask(TakeFirst())
        assert handle.asked
        with pytest.raises(actors.WrongThread, match="answered from a thread"):
            await trio.to_thread.run_sync(handle.reply, "from a thread")
        handle.reply("from the system's thread")
    assert results == ["from the system's thread"]


async def test_the_registry_of_unanswered_handles_drops_expired_ones(
    autojump_clock: trio.testing.MockClock, actor_system: ActorSystem
) -> None:
    keeper = actor_system.spawn(Keeper)
    cell = keeper._resolve()
    assert isinstance(cell, actors._cell.ActorCell)
    async with trio.open_nursery() as nursery:
        for _ in range(64):
            await _ask_in_background(nursery, keeper, "get", [], timeout=1)
    assert cell._reply_handles is not None
    assert len(cell._reply_handles) == 64  # kept until it grows: no work per answer
    results: list[Any] = []
    async with trio.open_nursery() as nursery:
        await _ask_in_background(nursery, keeper, "get", results)
        await actor_system.idle()
        assert len(cell._reply_handles) == 1  # the 64 expired ones were dropped
        keeper.tell("release")
    assert results == ["answer 64"]
