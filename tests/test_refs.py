"""Refs and ask: tell, send, ask, timeouts, dead actors, identity, pickling, incarnations,
senders and threads."""

from __future__ import annotations

import math
import pickle
import threading
from collections.abc import Callable
from typing import Any

import cloudpickle
import pytest
import trio
import trio.testing

import actors
from actors import DeadLetter, DeadLetterReason
from actors.testing import TestProbe

# -- helpers ------------------------------------------------------------------------------


class Counter(actors.Actor):
    """Sync handler: ("add", n) adds, "get" replies with the total, "boom" raises."""

    def __init__(self) -> None:
        self.total = 0

    def receive(self, message: Any) -> Any:
        match message:
            case ("add", int(n)):
                self.total += n
                return self.total
            case "get":
                return self.total
            case "boom":
                raise ValueError(f"boom at total {self.total}")
            case _:
                self.unhandled(message)
        return None


class AsyncCounter(actors.Actor):
    """Async handler with the same protocol as ``Counter``; it yields before replying."""

    def __init__(self) -> None:
        self.total = 0

    async def receive(self, message: Any) -> Any:
        await trio.lowlevel.checkpoint()
        match message:
            case ("add", int(n)):
                self.total += n
                return self.total
            case "get":
                return self.total
            case "boom":
                raise KeyError("async boom")
        return None


class Gated(actors.Actor):
    """Records every message; ``"hold"`` blocks until ``release`` is set. Replies with
    ``("re", message)``."""

    def __init__(self, log: list[Any], release: trio.Event) -> None:
        self.log = log
        self.release = release

    async def receive(self, message: Any) -> Any:
        if message == "hold":
            await self.release.wait()
        self.log.append(message)
        return ("re", message)


class Recorder(actors.Actor):
    """Records every message with ``context.sender``; replies with the sender."""

    def __init__(self, log: list[tuple[Any, actors.ActorRef | None]]) -> None:
        self.log = log

    def receive(self, message: Any) -> Any:
        sender = self.context.sender
        self.log.append((message, sender))
        if message == "echo" and sender is not None:
            sender.tell(("echoed", message), sender=self.context.ref)
        return sender


def dead_letter_probe(system: actors.ActorSystem) -> TestProbe:
    probe = TestProbe(system, name="dead-letters")
    system.events.subscribe(probe.ref, DeadLetter)
    return probe


async def held(
    system: actors.ActorSystem, name: str = "held"
) -> tuple[actors.ActorRef, list[Any], trio.Event]:
    log: list[Any] = []
    release = trio.Event()
    ref = system.spawn(Gated, log, release, name=name)
    ref.tell("hold")
    await trio.testing.wait_all_tasks_blocked()
    assert log == []
    return ref, log, release


# -- tell, send, ask ----------------------------------------------------------------------


async def test_tell_send_and_ask(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref = actor_system.spawn(Counter, name="counter")
    tell: Callable[[Any], object] = ref.tell
    assert tell(("add", 1)) is None
    await ref.send(("add", 2))
    assert await ref.ask(("add", 3)) == 6
    assert await ref.ask("get") == 6
    assert actor_system.dead_letter_count == 0


@pytest.mark.parametrize("actor_class", [Counter, AsyncCounter])
async def test_ask_returns_the_handler_value(
    actor_system: actors.ActorSystem,
    autojump_clock: trio.testing.MockClock,
    actor_class: type[actors.Actor],
) -> None:
    ref = actor_system.spawn(actor_class)
    assert await ref.ask(("add", 40)) == 40
    assert await ref.ask(("add", 2)) == 42
    assert await ref.ask("get") == 42


@pytest.mark.parametrize(
    ("actor_class", "error_type", "text"),
    [(Counter, ValueError, "boom at total 5"), (AsyncCounter, KeyError, "async boom")],
)
async def test_handler_exception_reaches_the_asker_and_actor_keeps_running(
    actor_system: actors.ActorSystem,
    probe: TestProbe,
    autojump_clock: trio.testing.MockClock,
    actor_class: type[actors.Actor],
    error_type: type[Exception],
    text: str,
) -> None:
    ref = actor_system.spawn(actor_class)
    probe.watch(ref)
    await ref.ask(("add", 5))
    with pytest.raises(error_type, match=text):
        await ref.ask("boom")
    # Same instance, state intact, still processing.
    assert await ref.ask("get") == 5
    assert await ref.ask(("add", 1)) == 6
    await probe.expect_no_message()  # no Terminated: it did not fail (nor restart: same state)
    assert actor_system.find(ref.path) == ref
    assert actor_system.dead_letter_count == 0


async def test_unhandled_question_raises_unhandled_message(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    dead = dead_letter_probe(actor_system)
    ref = actor_system.spawn(Counter, name="counter")
    with pytest.raises(actors.UnhandledMessage, match="/user/counter"):
        await ref.ask("what?")
    letter = await dead.expect_message(DeadLetter)
    assert (letter.message, letter.reason) == ("what?", DeadLetterReason.UNHANDLED)
    assert await ref.ask("get") == 0


async def test_ask_timeout_on_virtual_time_keeps_the_question_queued(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    dead = dead_letter_probe(actor_system)
    ref, log, release = await held(actor_system)
    start = trio.current_time()
    with pytest.raises(actors.AskTimeout) as info:
        await ref.ask("question", timeout=2.5)
    assert trio.current_time() - start == pytest.approx(2.5)
    err = info.value
    assert err.path == ref.path
    assert err.timeout == 2.5
    assert "/user/held" in str(err)
    assert "2.5" in str(err)
    assert actor_system.dead_letter_count == 0
    # The question is still queued: once the actor gets to it, it is processed and the
    # late reply goes to dead letters.
    release.set()
    letter = await dead.expect_message(DeadLetter)
    assert log == ["hold", "question"]
    assert letter.message == ("re", "question")
    assert letter.reason is DeadLetterReason.ASK_EXPIRED
    await dead.expect_no_message()
    assert actor_system.dead_letter_count == 1


async def test_concurrent_asks_time_out_each_at_its_own_deadline(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref, _, release = await held(actor_system)
    start = trio.current_time()
    timed_out: dict[str, float] = {}

    async def asker(label: str, timeout: float) -> None:
        with pytest.raises(actors.AskTimeout) as info:
            await ref.ask(label, timeout=timeout)
        assert info.value.timeout == timeout
        timed_out[label] = trio.current_time() - start

    async with trio.open_nursery() as nursery:
        nursery.start_soon(asker, "late", 10.0)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(asker, "early", 2.0)  # registered later, due earlier
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(asker, "middle", 5.0)
    assert timed_out == pytest.approx({"early": 2.0, "middle": 5.0, "late": 10.0})
    release.set()


async def test_answered_ask_does_not_time_out_later(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    dead = dead_letter_probe(actor_system)
    ref = actor_system.spawn(Counter)
    assert await ref.ask(("add", 1), timeout=1.0) == 1
    await trio.sleep(5)  # well past the deadline of the answered ask
    assert await ref.ask("get", timeout=1.0) == 1
    await dead.expect_no_message()
    assert actor_system.dead_letter_count == 0


async def test_ask_uses_the_system_default_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("ask-default", ask_timeout=7.0) as system:
        ref, _, release = await held(system)
        start = trio.current_time()
        with pytest.raises(actors.AskTimeout):
            await ref.ask("q")
        assert trio.current_time() - start == pytest.approx(7.0)
        release.set()


async def test_cancelled_ask_reply_goes_to_dead_letters(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    dead = dead_letter_probe(actor_system)
    ref, log, release = await held(actor_system)
    with trio.CancelScope() as scope:
        scope.deadline = trio.current_time() + 1
        await ref.ask("question", timeout=math.inf)
    assert scope.cancelled_caught
    release.set()
    letter = await dead.expect_message(DeadLetter)
    assert (letter.message, letter.reason) == (("re", "question"), DeadLetterReason.ASK_EXPIRED)
    assert log == ["hold", "question"]


async def test_ask_a_stopped_actor_raises_actor_dead(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref = actor_system.spawn(Counter, name="gone")
    await actor_system.graceful_stop(ref)
    with pytest.raises(actors.ActorDead) as info:
        await ref.ask("get")
    assert info.value.path == "/user/gone"
    assert "/user/gone" in str(info.value)
    # A pickled copy (which must re-resolve the address) fails the same way.
    copy = pickle.loads(pickle.dumps(ref))
    with pytest.raises(actors.ActorDead):
        await copy.ask("get")


async def test_actor_stopping_before_replying_raises_actor_dead(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    dead = dead_letter_probe(actor_system)
    ref, log, release = await held(actor_system)
    outcome: list[BaseException] = []

    async def asker() -> None:
        with pytest.raises(actors.ActorDead) as info:
            await ref.ask("queued", timeout=math.inf)
        outcome.append(info.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(asker)
        await trio.testing.wait_all_tasks_blocked()
        actor_system.stop(ref)
        release.set()
    [err] = outcome
    assert isinstance(err, actors.ActorDead)
    assert err.path == ref.path
    assert log == ["hold"]  # the question was never processed
    # The asker was told directly: no dead letter and no late reply.
    await dead.expect_no_message()
    assert actor_system.dead_letter_count == 0


async def test_ask_interrupted_by_stop_timeout_raises_actor_dead(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[Any] = []
    ref = actor_system.spawn(Gated, log, trio.Event())  # "hold" never returns by itself
    outcome: list[BaseException] = []

    async def asker() -> None:
        with pytest.raises(actors.ActorDead) as info:
            await ref.ask("hold", timeout=math.inf)
        outcome.append(info.value)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(asker)
        await trio.testing.wait_all_tasks_blocked()
        start = trio.current_time()
        actor_system.stop(ref)
    assert trio.current_time() - start == pytest.approx(actor_system.settings.stop_timeout)
    assert len(outcome) == 1
    assert log == []


# -- identity -----------------------------------------------------------------------------


async def test_ref_equality_hash_ordering_and_repr(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    a = actor_system.spawn(Counter, name="a")
    b = actor_system.spawn(Counter, name="b")
    again = actor_system.lookup("/user/a")
    assert again == a
    assert hash(again) == hash(a)
    assert a != b
    assert len({a, again, b}) == 2
    assert a != "/user/a"
    assert a != a.address  # a ref is not its address
    assert (a == 1) is False
    assert a.path == "/user/a"
    assert a.name == "a"
    assert a.address.system == "test"
    assert a.address.node == "local"
    assert isinstance(a.address.uid, int)
    assert repr(a) == f"<ActorRef /user/a#{a.address.uid}>"
    assert str(a.address) == f"actor://test@local/user/a#{a.address.uid}"
    # Ordered by address: same system, so by path here.
    assert a < b
    assert a <= again
    assert b > a
    assert b >= a
    assert sorted([b, a]) == [a, b]
    assert max(a, b) == b


async def test_ref_ordering_against_non_refs_raises_type_error(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    a = actor_system.spawn(Counter, name="a")
    with pytest.raises(TypeError):
        _ = a < 1
    with pytest.raises(TypeError):
        _ = a >= "x"


async def test_same_path_new_incarnation_is_a_different_ref(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    first = actor_system.spawn(Counter, name="again")
    await actor_system.graceful_stop(first)
    second = actor_system.spawn(Counter, name="again")
    assert first.path == second.path
    assert first.address.uid != second.address.uid
    assert first != second
    assert actor_system.lookup("/user/again") == second


@pytest.mark.parametrize("module", [pickle, cloudpickle], ids=["pickle", "cloudpickle"])
async def test_pickled_ref_round_trip_is_equal_and_still_delivers(
    actor_system: actors.ActorSystem,
    autojump_clock: trio.testing.MockClock,
    module: Any,
) -> None:
    ref = actor_system.spawn(Counter, name="counter")
    copy = module.loads(module.dumps(ref))
    assert isinstance(copy, actors.ActorRef)
    assert copy == ref
    assert hash(copy) == hash(ref)
    assert copy.address == ref.address
    assert repr(copy) == repr(ref)
    copy.tell(("add", 2))
    await copy.send(("add", 3))
    assert await copy.ask(("add", 4)) == 9
    assert await ref.ask("get") == 9
    # A ref inside a message survives the roundtrip that the fixture applies.
    log: list[tuple[Any, actors.ActorRef | None]] = []
    recorder = actor_system.spawn(Recorder, log)
    recorder.tell(("ref", ref))
    await trio.testing.wait_all_tasks_blocked()
    [((_, carried), _)] = log
    assert carried == ref
    assert await carried.ask("get") == 9


async def test_stale_ref_does_not_reach_a_new_incarnation(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    dead = dead_letter_probe(actor_system)
    old_log: list[tuple[Any, actors.ActorRef | None]] = []
    new_log: list[tuple[Any, actors.ActorRef | None]] = []
    old = actor_system.spawn(Recorder, old_log, name="worker")
    pickled_old = pickle.dumps(old)
    await actor_system.graceful_stop(old)
    new = actor_system.spawn(Recorder, new_log, name="worker")

    old.tell("via-old-ref")
    letter = await dead.expect_message(DeadLetter)
    assert letter.message == "via-old-ref"
    assert letter.recipient == old
    assert letter.reason in (DeadLetterReason.STOPPED, DeadLetterReason.NO_SUCH_ACTOR)

    restored = pickle.loads(pickled_old)
    restored.tell("via-restored-ref")
    letter = await dead.expect_message(DeadLetter)
    assert letter.message == "via-restored-ref"
    assert letter.recipient == old
    assert letter.reason in (DeadLetterReason.STOPPED, DeadLetterReason.NO_SUCH_ACTOR)

    await restored.send("sent-via-restored")
    letter = await dead.expect_message(DeadLetter)
    assert letter.message == "sent-via-restored"
    with pytest.raises(actors.ActorDead):
        await restored.ask("asked-via-restored")
    with pytest.raises(actors.ActorDead):
        await old.ask("asked-via-old")

    await trio.testing.wait_all_tasks_blocked()
    assert new_log == []
    assert actor_system.dead_letter_count == 3
    new.tell("direct")
    await trio.testing.wait_all_tasks_blocked()
    assert new_log == [("direct", None)]


# -- senders ------------------------------------------------------------------------------


async def test_sender_is_visible_as_context_sender(
    actor_system: actors.ActorSystem,
    probe: TestProbe,
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, actors.ActorRef | None]] = []
    ref = actor_system.spawn(Recorder, log, name="recorder")
    ref.tell("anonymous")
    ref.tell("with-sender", sender=probe.ref)
    await ref.send("sent-with-sender", sender=probe.ref)
    assert await ref.ask("asked-with-sender", sender=probe.ref) == probe.ref
    assert await ref.ask("asked-anonymous") is None
    probe.tell(ref, "echo")
    assert await probe.expect_message(("echoed", "echo")) == ("echoed", "echo")
    assert probe.last_sender == ref
    assert log == [
        ("anonymous", None),
        ("with-sender", probe.ref),
        ("sent-with-sender", probe.ref),
        ("asked-with-sender", probe.ref),
        ("asked-anonymous", None),
        ("echo", probe.ref),
    ]


# -- threads ------------------------------------------------------------------------------


async def test_tell_threadsafe_from_a_worker_thread_delivers(
    actor_system: actors.ActorSystem,
    probe: TestProbe,
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, actors.ActorRef | None]] = []
    ref = actor_system.spawn(Recorder, log)

    def worker() -> None:
        for i in range(200):
            ref.tell_threadsafe(("from-thread", i), sender=probe.ref)

    await trio.to_thread.run_sync(worker)
    await trio.testing.wait_all_tasks_blocked()
    assert log == [(("from-thread", i), probe.ref) for i in range(200)]
    # Called on the system's own thread, it is a plain tell.
    ref.tell_threadsafe("same-thread")
    await trio.testing.wait_all_tasks_blocked()
    assert log[-1] == ("same-thread", None)


async def test_ask_from_a_worker_thread_through_from_thread(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref = actor_system.spawn(Counter)

    def worker() -> Any:
        return trio.from_thread.run(ref.ask, ("add", 11))

    assert await trio.to_thread.run_sync(worker) == 11


async def test_tell_from_another_thread_raises_wrong_thread(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    log: list[tuple[Any, actors.ActorRef | None]] = []
    ref = actor_system.spawn(Recorder, log, name="recorder")
    with pytest.raises(actors.WrongThread, match="tell_threadsafe"):
        await trio.to_thread.run_sync(ref.tell, "wrong")
    # A pickled copy (not yet resolved) is refused the same way.
    copy = pickle.loads(pickle.dumps(ref))
    with pytest.raises(actors.WrongThread):
        await trio.to_thread.run_sync(copy.tell, "wrong")
    await trio.testing.wait_all_tasks_blocked()
    assert log == []
    assert actor_system.dead_letter_count == 0
    assert issubclass(actors.WrongThread, RuntimeError)


async def test_tell_threadsafe_to_a_closed_system_in_a_live_run_is_a_dead_letter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("closed") as system:
        ref = system.spawn(Counter)
    before = system.dead_letter_count
    await trio.to_thread.run_sync(ref.tell_threadsafe, ("add", 1))
    await trio.testing.wait_all_tasks_blocked()
    assert system.dead_letter_count == before + 1


def test_tell_threadsafe_after_the_trio_run_ended_raises_system_closed() -> None:
    refs: list[actors.ActorRef] = []

    async def main() -> None:
        async with actors.open_system("ended") as system:
            refs.append(system.spawn(Counter))

    trio.run(main)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            refs[0].tell_threadsafe(("add", 1))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    [err] = errors
    assert isinstance(err, actors.SystemClosed)
    assert "ended" in str(err)


# -- asking yourself ----------------------------------------------------------------------


class SelfAsker(actors.Actor):
    async def receive(self, message: Any) -> Any:
        if message == "ask-yourself":
            try:
                await self.context.ref.ask("anything", timeout=1)
            except actors.ActorError as err:
                return (type(err).__name__, str(err))
            return "no error"
        return "answered"


async def test_an_actor_asking_itself_gets_a_clear_error(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref = actor_system.spawn(SelfAsker, name="narcissus")
    start = trio.current_time()
    kind, text = await ref.ask("ask-yourself")
    assert trio.current_time() == start  # refused at once, not after a timeout
    assert kind == "ActorError"
    assert "/user/narcissus" in text
    assert "itself" in text
    # Nothing was enqueued: the next answer is to the next question.
    assert await ref.ask("ping") == "answered"
    assert actor_system.dead_letter_count == 0


async def test_tell_threadsafe_under_round_trips_delivers_the_copy_made_at_the_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, actors.ActorRef | None]] = []
    async with actors.open_system("copy", roundtrip_messages=True) as system:
        ref = system.spawn(Recorder, log)
        await trio.testing.wait_all_tasks_blocked()
        message = ["as sent"]

        def caller() -> None:
            ref.tell_threadsafe(message)
            message[0] = "changed after the call"

        # The trio thread is held while the other thread calls and then changes the
        # message: the hand-over runs only once it is released, after the change.
        thread = threading.Thread(target=caller)
        thread.start()
        thread.join()
        await trio.testing.wait_all_tasks_blocked()
    assert log == [(["as sent"], None)]


async def test_a_dead_letter_raised_for_another_thread_is_published_on_the_systems_thread(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="actors.deadletters")
    letters: list[Any] = []
    async with actors.open_system("threads") as system:
        ref = system.spawn(Recorder, letters)
        system.events.subscribe(ref, DeadLetter)
        ghost = system.spawn(Recorder, [])
        await system.graceful_stop(ghost)
        unknown = pickle.loads(pickle.dumps(ghost))  # no live actor at this address
        await trio.to_thread.run_sync(unknown.tell_threadsafe, "lost")
        await trio.testing.wait_all_tasks_blocked()
    [(letter, sender)] = letters
    assert sender is None
    assert (letter.message, letter.reason) == ("lost", DeadLetterReason.NO_SUCH_ACTOR)
    [record] = [r for r in caplog.records if r.name == "actors.deadletters"]
    assert record.thread == threading.get_ident()  # counted and published here
    assert system.dead_letter_count == 1


class _AnswersAsks:
    """A delivery hook that answers every ask itself, at once, while it is delivered."""

    def on_delivery(self, cell: Any, via: str, message: Any, sender: Any, slot: Any) -> bool:
        if via != "ask":
            return False
        cell._complete(slot, ("answered by the hook", message), None)
        return True


async def test_an_ask_answered_while_it_is_delivered_returns_without_parking(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log: list[tuple[Any, actors.ActorRef | None]] = []
    async with actors.open_system("hooked") as system:
        ref = system.spawn(Recorder, log)
        system._add_delivery_hook(_AnswersAsks())
        assert await ref.ask("question") == ("answered by the hook", "question")
        ref.tell("told")  # tells still reach the actor
        assert await ref.ask("again") == ("answered by the hook", "again")
        await trio.testing.wait_all_tasks_blocked()
    assert log == [("told", None)]
