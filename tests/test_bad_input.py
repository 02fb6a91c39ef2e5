"""Bad input is refused early, with an error that names what went wrong."""

from __future__ import annotations

import gc
import pickle
import threading
import warnings
from typing import Any

import attrs
import pytest
import trio
import trio.testing

import actors
import supervision
from actors import ActorStarted, DeadLetter, DeadLetterReason, Mailbox
from actors.testing import TestProbe

# Top-level actors that fail stop (watchers get ``Terminated`` with the error) instead of
# being restarted by ``/user``.
STOP_ON_FAILURE = supervision.OneForOne(
    decider=supervision.decider_from({Exception: supervision.Directive.STOP})
)
stop_on_failure = pytest.mark.actor_system(guardian_strategy=STOP_ON_FAILURE)

# -- helpers ------------------------------------------------------------------------------


class Recorder(actors.Actor):
    """Records every message; replies with it."""

    def __init__(self, log: list[Any] | None = None) -> None:
        self.log = [] if log is None else log

    def receive(self, message: Any) -> Any:
        self.log.append(message)
        return message


@attrs.frozen
class HoldsLock:
    """A message that cannot cross a process boundary."""

    lock: Any = attrs.field(factory=threading.Lock)


def dead_letter_probe(system: actors.ActorSystem) -> TestProbe:
    probe = TestProbe(system, name="dead-letters")
    system.events.subscribe(probe.ref, DeadLetter)
    return probe


# -- names --------------------------------------------------------------------------------

BAD_NAMES = ["", "/", "a/b", "/user", "$x", "$1", "a b", " ", "tab\t", "line\n", "é", "a#b", "a?"]


@pytest.mark.parametrize("name", BAD_NAMES)
async def test_invalid_actor_names_are_refused(
    actor_system: actors.ActorSystem,
    autojump_clock: trio.testing.MockClock,
    name: str,
) -> None:
    started = TestProbe(actor_system, name="started")
    actor_system.events.subscribe(started.ref, ActorStarted)
    await trio.testing.wait_all_tasks_blocked()
    while started.pending:  # the start of the probe itself (and maybe of /user)
        await started.expect_message(ActorStarted)
    with pytest.raises(actors.InvalidActorName) as info:
        actor_system.spawn(Recorder, name=name)
    assert repr(name) in str(info.value)
    assert isinstance(info.value, ValueError)
    await started.expect_no_message()  # nothing was spawned


async def test_non_string_name_is_refused(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(actors.InvalidActorName):
        actor_system.spawn(Recorder, name=42)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["a", "A-z_0.9~:@+=,", "x" * 200])
async def test_valid_actor_names_are_accepted(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock, name: str
) -> None:
    ref = actor_system.spawn(Recorder, name=name)
    assert ref.path == f"/user/{name}"
    assert ref.name == name
    assert await ref.ask("hi") == "hi"
    assert actor_system.lookup(f"/user/{name}") == ref


class Parent(actors.Actor):
    """Spawns children on request and reports what happened."""

    def receive(self, message: Any) -> Any:
        match message:
            case ("spawn", name):
                try:
                    return ("ok", self.context.spawn(Recorder, name=name))
                except actors.ActorError as err:
                    return (type(err).__name__, str(err))
        return None


@pytest.mark.parametrize("name", ["", "$x", "a b", "a/b"])
async def test_invalid_child_names_are_refused(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock, name: str
) -> None:
    parent = actor_system.spawn(Parent, name="parent")
    kind, _ = await parent.ask(("spawn", name))
    assert kind == "InvalidActorName"


async def test_invalid_system_name_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    with pytest.raises(actors.InvalidActorName):
        async with actors.open_system("bad name"):
            pytest.fail("the system must not open")  # pragma: no cover


async def test_duplicate_sibling_name_is_taken_until_the_holder_stopped(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    first = actor_system.spawn(Recorder, name="unique")
    with pytest.raises(actors.ActorNameTaken) as info:
        actor_system.spawn(Recorder, name="unique")
    assert info.value.path == "/user/unique"
    assert "/user/unique" in str(info.value)
    assert await first.ask("still mine") == "still mine"
    await actor_system.graceful_stop(first)
    second = actor_system.spawn(Recorder, name="unique")
    assert second != first
    assert await second.ask("hello") == "hello"


class SlowToStop(actors.Actor):
    def __init__(self, release: trio.Event) -> None:
        self.release = release

    async def post_stop(self) -> None:
        await self.release.wait()

    def receive(self, message: Any) -> None:
        return None


async def test_name_stays_taken_while_the_holder_is_stopping(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    release = trio.Event()
    ref = actor_system.spawn(SlowToStop, release, name="slow")
    await trio.testing.wait_all_tasks_blocked()
    actor_system.stop(ref)
    await trio.testing.wait_all_tasks_blocked()  # now inside post_stop
    with pytest.raises(actors.ActorNameTaken):
        actor_system.spawn(Recorder, name="slow")
    release.set()
    await trio.testing.wait_all_tasks_blocked()
    again = actor_system.spawn(Recorder, name="slow")
    assert await again.ask("ok") == "ok"


async def test_duplicate_child_name_and_same_name_under_other_parents(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    p1 = actor_system.spawn(Parent, name="p1")
    p2 = actor_system.spawn(Parent, name="p2")
    kind, child = await p1.ask(("spawn", "kid"))
    assert kind == "ok"
    assert child.path == "/user/p1/kid"
    kind, text = await p1.ask(("spawn", "kid"))
    assert kind == "ActorNameTaken"
    assert "/user/p1/kid" in text
    kind, other = await p2.ask(("spawn", "kid"))
    assert kind == "ok"
    assert other.path == "/user/p2/kid"
    # A top-level actor may share a child's name: different parent.
    top = actor_system.spawn(Recorder, name="kid")
    assert top.path == "/user/kid"


# -- closed systems -----------------------------------------------------------------------


async def test_spawn_after_the_system_closed_raises_system_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("closing") as system:
        system.spawn(Recorder, name="a")
    with pytest.raises(actors.SystemClosed, match="closing"):
        system.spawn(Recorder, name="b")
    with pytest.raises(actors.SystemClosed):
        system.spawn(Recorder)


class SpawnsInPostStop(actors.Actor):
    def __init__(self, outcome: list[BaseException]) -> None:
        self.outcome = outcome

    def receive(self, message: Any) -> None:
        return None

    def post_stop(self) -> None:
        try:
            self.context.spawn(Recorder, name="too-late")
        except actors.SystemClosed as err:
            self.outcome.append(err)


async def test_a_stopping_actor_cannot_spawn(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    outcome: list[BaseException] = []
    ref = actor_system.spawn(SpawnsInPostStop, outcome, name="stopping")
    await trio.testing.wait_all_tasks_blocked()  # started
    await actor_system.graceful_stop(ref)
    [err] = outcome
    assert isinstance(err, actors.SystemClosed)
    assert "/user/stopping" in str(err)
    assert actor_system.find("/user/stopping/too-late") is None


# -- lookup -------------------------------------------------------------------------------


async def test_lookup_of_unknown_paths(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    parent = actor_system.spawn(Parent, name="parent")
    _, child = await parent.ask(("spawn", "child"))
    assert actor_system.lookup("/user/parent") == parent
    assert actor_system.lookup("/user/parent/child") == child
    assert actor_system.lookup("/user") == actor_system.user_guardian
    for path in ["/user/nobody", "/user/parent/nobody", "/user/parent/child/deeper", "/x/y", ""]:
        with pytest.raises(actors.ActorNotFound) as info:
            actor_system.lookup(path)
        assert info.value.path == path
        assert isinstance(info.value, LookupError)
        assert actor_system.find(path) is None
    await actor_system.graceful_stop(parent)
    assert actor_system.find("/user/parent") is None
    assert actor_system.find("/user/parent/child") is None
    with pytest.raises(actors.ActorNotFound, match="/user/parent/child"):
        actor_system.lookup("/user/parent/child")


# -- unpicklable messages and replies -----------------------------------------------------


async def test_unpicklable_message_is_refused_and_nothing_enqueued(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    dead = dead_letter_probe(actor_system)
    log: list[Any] = []
    ref = actor_system.spawn(Recorder, log)
    message = HoldsLock()
    with pytest.raises(actors.UnpicklableMessage) as info:
        ref.tell(message)
    err = info.value
    assert err.message_type is HoldsLock
    assert "HoldsLock" in str(err)
    assert isinstance(err, TypeError)
    with pytest.raises(actors.UnpicklableMessage, match="HoldsLock"):
        await ref.send(message)
    with pytest.raises(actors.UnpicklableMessage, match="HoldsLock"):
        await ref.ask(message)
    with pytest.raises(actors.UnpicklableMessage, match="HoldsLock"):
        await trio.to_thread.run_sync(ref.tell_threadsafe, message)
    await trio.testing.wait_all_tasks_blocked()
    assert log == []
    await dead.expect_no_message()
    assert actor_system.dead_letter_count == 0
    assert await ref.ask("fine") == "fine"
    assert log == ["fine"]


async def test_unpicklable_message_to_a_stopped_actor_is_still_refused(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    # roundtrip_messages checks "every message ... on send": whether the recipient is
    # still alive must not decide whether an unpicklable message is caught.
    ref = actor_system.spawn(Recorder, name="gone")
    await actor_system.graceful_stop(ref)
    restored = pickle.loads(pickle.dumps(ref))  # resolves to no live actor
    for target in (ref, restored):
        with pytest.raises(actors.UnpicklableMessage, match="HoldsLock"):
            target.tell(HoldsLock())
        with pytest.raises(actors.UnpicklableMessage, match="HoldsLock"):
            await target.send(HoldsLock())
    assert actor_system.dead_letter_count == 0


async def test_unpicklable_message_is_delivered_without_roundtrip(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("no-roundtrip", roundtrip_messages=False) as system:
        log: list[Any] = []
        ref = system.spawn(Recorder, log)
        message = HoldsLock()
        assert await ref.ask(message) is message
        assert log == [message]


class LockGiver(actors.Actor):
    def receive(self, message: Any) -> Any:
        if message == "lock":
            return threading.Lock()
        return message


async def test_unpicklable_reply_to_ask(
    actor_system: actors.ActorSystem,
    probe: TestProbe,
    autojump_clock: trio.testing.MockClock,
) -> None:
    ref = actor_system.spawn(LockGiver)
    probe.watch(ref)
    with pytest.raises(actors.UnpicklableMessage) as info:
        await ref.ask("lock")
    assert info.value.message_type is type(threading.Lock())
    assert "lock" in str(info.value)
    # The actor is fine: its reply could not be delivered, it did not fail.
    assert await ref.ask("again") == "again"
    await probe.expect_no_message()


# -- handlers returning coroutines --------------------------------------------------------


class ForgotAsync(actors.Actor):
    """``receive`` is sync but returns a coroutine (forgot ``async``/``await``)."""

    def __init__(self) -> None:
        self.handled: list[Any] = []

    async def work(self, message: Any) -> Any:
        self.handled.append(message)  # never runs
        return message

    def receive(self, message: Any) -> Any:
        if message == "count":
            return len(self.handled)
        return self.work(message)


def collect_runtime_warnings() -> list[warnings.WarningMessage]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        gc.collect()
    return [w for w in caught if issubclass(w.category, RuntimeWarning)]


async def test_sync_handler_returning_coroutine_raises_to_the_asker(
    actor_system: actors.ActorSystem,
    probe: TestProbe,
    autojump_clock: trio.testing.MockClock,
) -> None:
    ref = actor_system.spawn(ForgotAsync, name="forgot")
    probe.watch(ref)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(actors.HandlerReturnedCoroutine) as info:
            await ref.ask("q")
        gc.collect()
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []
    text = str(info.value)
    assert "/user/forgot" in text
    assert "ForgotAsync.receive" in text
    assert "async def" in text
    assert isinstance(info.value, TypeError)
    # The coroutine never ran, and the actor keeps going.
    assert await ref.ask("count") == 0
    await probe.expect_no_message()
    assert collect_runtime_warnings() == []


@stop_on_failure
async def test_sync_handler_returning_coroutine_fails_the_actor_on_tell(
    actor_system: actors.ActorSystem,
    probe: TestProbe,
    autojump_clock: trio.testing.MockClock,
) -> None:
    dead = dead_letter_probe(actor_system)
    ref = actor_system.spawn(ForgotAsync, name="forgot")
    probe.watch(ref)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ref.tell("t")
        terminated = await probe.expect_terminated(ref)
        gc.collect()
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []
    assert isinstance(terminated.error, actors.HandlerReturnedCoroutine)
    assert "/user/forgot" in str(terminated.error)
    letter = await dead.expect_message(DeadLetter)
    assert (letter.message, letter.reason) == ("t", DeadLetterReason.FAILED)
    assert letter.recipient == ref


class BecomesForgetful(actors.Actor):
    async def later(self, message: Any) -> Any:
        return message  # pragma: no cover - never runs

    def receive(self, message: Any) -> Any:
        self.context.become(lambda m: self.later(m))
        return "switched"


async def test_sync_become_behaviour_returning_coroutine(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    ref = actor_system.spawn(BecomesForgetful)
    assert await ref.ask("first") == "switched"
    with pytest.raises(actors.HandlerReturnedCoroutine):
        await ref.ask("second")
    assert collect_runtime_warnings() == []


# -- factories ----------------------------------------------------------------------------


def not_an_actor() -> Any:
    return 42


class RaisesInInit(actors.Actor):
    def __init__(self) -> None:
        raise RuntimeError("cannot construct")


class RaisesInPreStart(actors.Actor):
    async def pre_start(self) -> None:
        raise OSError("no resource")


@pytest.mark.parametrize(
    ("factory", "detail"),
    [
        (not_an_actor, "int"),
        (RaisesInInit, "cannot construct"),
        (RaisesInPreStart, "no resource"),
    ],
    ids=["non-actor", "init-raises", "pre-start-raises"],
)
@stop_on_failure
async def test_failing_factory_is_an_initialization_error(
    actor_system: actors.ActorSystem,
    probe: TestProbe,
    autojump_clock: trio.testing.MockClock,
    factory: Any,
    detail: str,
) -> None:
    dead = dead_letter_probe(actor_system)
    ref = actor_system.spawn(factory, name="broken")
    probe.watch(ref)
    ref.tell("early")  # queued before the actor started

    with pytest.raises(actors.ActorDead):
        await ref.ask("question")
    terminated = await probe.expect_terminated(ref)
    err = terminated.error
    assert isinstance(err, actors.ActorInitializationError)
    assert err.path == "/user/broken"
    assert "/user/broken" in str(err)
    assert detail in str(err)
    letter = await dead.expect_message(DeadLetter)
    assert (letter.message, letter.reason) == ("early", DeadLetterReason.STOPPED)
    assert actor_system.find("/user/broken") is None


async def test_a_factory_that_always_fails_is_called_once_by_default(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Under the default strategy a failed start stops the actor: the factory is not
    called again, and the system goes on."""
    calls: list[float] = []

    def counted_not_an_actor() -> Any:
        calls.append(trio.current_time())
        return not_an_actor()

    async with actors.open_system("init-failure") as system:
        probe = TestProbe(system)
        ref = probe.watch(system.spawn(counted_not_an_actor, name="broken"))
        terminated = await probe.expect_terminated(ref)
        assert isinstance(terminated.error, actors.ActorInitializationError)
        await trio.sleep(10)
    assert calls == [0]


async def test_a_factory_that_always_fails_ends_the_system_when_user_gives_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Under a strategy that restarts on ActorInitializationError the failing start is
    retried (the factory is called again) until ``/user`` gives up: ``open_system``
    raises ``UnhandledFailure`` naming the child, with the initialization error as the
    last error."""
    calls: list[float] = []

    def counted_not_an_actor() -> Any:
        calls.append(trio.current_time())
        return not_an_actor()

    retry = supervision.OneForOne(
        decider=supervision.decider_from(
            {actors.ActorInitializationError: supervision.Directive.RESTART}
        )
    )

    async def run_system() -> None:
        async with actors.open_system("init-failure", guardian_strategy=retry) as system:
            system.spawn(counted_not_an_actor, name="broken")
            await trio.sleep_forever()

    with pytest.raises(actors.UnhandledFailure) as info:
        await run_system()
    [(ref, err)] = info.value.failures
    assert ref.path == "/user/broken"
    assert isinstance(err, supervision.TooManyRestarts)
    assert (err.child, err.max_restarts, err.within) == ("broken", 3, 5.0)
    assert isinstance(err.error, actors.ActorInitializationError)
    assert err.error.path == "/user/broken"
    assert "int" in str(err.error)
    assert info.value.__cause__ is err
    # The first start and three restarts, all at once (no backoff by default).
    assert calls == [0, 0, 0, 0]


# -- invalid configuration ----------------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, -1])
def test_mailbox_capacity_must_be_positive(capacity: int) -> None:
    with pytest.raises(ValueError, match="capacity"):
        Mailbox(capacity=capacity)


def test_mailbox_overflow_must_be_a_policy() -> None:
    with pytest.raises(ValueError, match="bogus"):
        Mailbox(capacity=1, overflow="bogus")


@pytest.mark.parametrize("throughput", [0, -1, 1.5, "2"])
async def test_spawn_throughput_must_be_a_positive_int(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock, throughput: Any
) -> None:
    with pytest.raises(ValueError, match="throughput"):
        actor_system.spawn(Recorder, name="fast", throughput=throughput)
    # Nothing was registered under the name.
    assert actor_system.find("/user/fast") is None
    ref = actor_system.spawn(Recorder, name="fast", throughput=1)
    assert await ref.ask("ok") == "ok"


class ZeroThroughput(Recorder):
    throughput = 0


async def test_class_attribute_throughput_zero_is_refused(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock
) -> None:
    with pytest.raises(ValueError, match="throughput"):
        actor_system.spawn(ZeroThroughput)


@pytest.mark.parametrize(
    "field",
    [
        "throughput",
        "stash_capacity",
        "ask_timeout",
        "stop_timeout",
        "shutdown_timeout",
        "restart_stash_capacity",
    ],
)
def test_settings_must_be_positive(field: str) -> None:
    zero: dict[str, Any] = {field: 0}
    with pytest.raises(ValueError, match=field):
        actors.Settings(**zero)


async def test_open_system_with_zero_throughput(autojump_clock: trio.testing.MockClock) -> None:
    with pytest.raises(ValueError, match="throughput"):
        async with actors.open_system("zero", throughput=0):
            pytest.fail("the system must not open")  # pragma: no cover


@pytest.mark.parametrize("timeout", [-1.0, float("nan")])
async def test_ask_with_invalid_timeout_enqueues_nothing(
    actor_system: actors.ActorSystem, autojump_clock: trio.testing.MockClock, timeout: float
) -> None:
    log: list[Any] = []
    ref = actor_system.spawn(Recorder, log)
    with pytest.raises(ValueError, match="seconds"):
        await ref.ask("q", timeout=timeout)
    await trio.testing.wait_all_tasks_blocked()
    assert log == []
    assert actor_system.dead_letter_count == 0


# -- misuse of the actor API --------------------------------------------------------------


class Misuser(actors.Actor):
    """Runs one misuse of its context per message and replies with the error type."""

    def __init__(self, stranger: actors.ActorRef) -> None:
        self.stranger = stranger

    def receive(self, message: Any) -> Any:
        context = self.context
        actions = {
            "stop-stranger": lambda: context.stop(self.stranger),
            "receive-timeout-zero": lambda: context.set_receive_timeout(0),
            "negative-timer": lambda: context.timers.start_single("k", "m", -1),
            "zero-interval": lambda: context.timers.start_at_fixed_rate("k", "m", 0),
            "become-non-callable": lambda: context.become(42),  # type: ignore[arg-type]
        }
        try:
            actions[message]()
        except Exception as err:
            return (type(err).__name__, str(err))
        return "no error"


@pytest.mark.parametrize(
    ("misuse", "error", "text"),
    [
        ("stop-stranger", "ValueError", "/user/stranger"),
        ("receive-timeout-zero", "ValueError", "0"),
        ("negative-timer", "ValueError", "-1"),
        ("zero-interval", "ValueError", "0"),
        ("become-non-callable", "TypeError", "42"),
    ],
)
async def test_context_misuse_is_refused(
    actor_system: actors.ActorSystem,
    autojump_clock: trio.testing.MockClock,
    misuse: str,
    error: str,
    text: str,
) -> None:
    stranger = actor_system.spawn(Recorder, name="stranger")
    ref = actor_system.spawn(Misuser, stranger)
    kind, detail = await ref.ask(misuse)
    assert kind == error
    assert text in detail
    # Refused, not applied: the stranger is alive and the misuser still answers.
    assert await stranger.ask("alive") == "alive"
    assert actor_system.find(ref.path) == ref


async def test_subscribe_needs_a_topic_pattern_or_an_event_class(
    actor_system: actors.ActorSystem, probe: TestProbe
) -> None:
    with pytest.raises(TypeError, match=r"topic pattern .* or an event class"):
        actor_system.events.subscribe(probe.ref, DeadLetter(1, None, probe.ref, "x"))  # type: ignore[arg-type]
    with pytest.raises(actors.InvalidTopic, match=r"orders\.>\.eu"):
        actor_system.events.subscribe(probe.ref, "orders.>.eu")
    assert actor_system.events.subscribers(DeadLetter) == []
    assert actor_system.events._subscriptions == 0


def test_context_of_an_actor_not_created_by_spawn() -> None:
    with pytest.raises(RuntimeError, match="spawn"):
        _ = Recorder().context
