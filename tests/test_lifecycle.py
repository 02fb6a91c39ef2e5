"""Lifecycle of actors: hooks, spawning, the hierarchy, stopping and shutdown order."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from actors import (
    Actor,
    ActorNotFound,
    ActorSystem,
    DeadLetter,
    DeadLetterReason,
    PoisonPill,
    Terminated,
    open_system,
)
from actors.testing import TestProbe

# -- helpers ----------------------------------------------------------------------------------


class Recorder(Actor):
    """Records hooks and messages (with trio's time) in a shared list, sync hooks."""

    def __init__(self, log: list[Any]) -> None:
        self.log = log
        log.append(("init", trio.current_time()))

    def pre_start(self) -> None:
        self.log.append(("pre_start", trio.current_time()))

    def receive(self, message: Any) -> None:
        self.log.append(("receive", message, trio.current_time()))

    def post_stop(self) -> None:
        self.log.append(("post_stop", trio.current_time()))


class AsyncRecorder(Recorder):
    """Same, with ``async def`` hooks that take one second each."""

    async def pre_start(self) -> None:  # type: ignore[override]
        await trio.sleep(1)
        self.log.append(("pre_start", trio.current_time()))

    async def receive(self, message: Any) -> None:  # type: ignore[override]
        self.log.append(("receive", message, trio.current_time()))

    async def post_stop(self) -> None:  # type: ignore[override]
        await trio.sleep(1)
        self.log.append(("post_stop", trio.current_time()))


class Node(Actor):
    """Spawns the children described by ``spec`` ({name: spec}) in order in pre_start;
    records its path in ``stops`` from post_stop. Answers "children" and "parent"."""

    def __init__(self, stops: list[str], spec: dict[str, Any] | None = None) -> None:
        self.stops = stops
        self.spec = spec or {}

    def pre_start(self) -> None:
        for name, sub in self.spec.items():
            self.context.spawn(Node, self.stops, sub, name=name)

    def receive(self, message: Any) -> Any:
        if message == "children":
            return self.context.children
        if message == "parent":
            return self.context.parent
        if message == "self":
            return self.context.ref
        self.unhandled(message)
        return None

    def post_stop(self) -> None:
        self.stops.append(self.context.ref.path)


class Forwarder(Actor):
    """Forwards every message to ``target``."""

    def __init__(self, target: Any) -> None:
        self.target = target

    def receive(self, message: Any) -> None:
        self.target.tell(message)


async def collect_dead_letters(system: ActorSystem) -> TestProbe:
    probe = TestProbe(system, name="dead-letters")
    await trio.testing.wait_all_tasks_blocked()
    system.events.subscribe(probe.ref, DeadLetter)
    return probe


TREE = {
    "a": {"a1": {"a1x": {}, "a1y": {}}, "a2": {}},
    "b": {"b1": {}},
    "c": {},
}


def spawn_tree(system: ActorSystem, stops: list[str]) -> None:
    for name, spec in TREE.items():
        system.spawn(Node, stops, spec, name=name)


# -- hooks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Recorder, AsyncRecorder])
async def test_pre_start_runs_before_first_message_and_post_stop_after_stop(
    actor_system: ActorSystem, autojump_clock: MockClock, cls: type[Recorder]
) -> None:
    log: list[Any] = []
    t0 = trio.current_time()
    ref = actor_system.spawn(cls, log)
    ref.tell("first")
    ref.tell("second")
    await trio.testing.wait_all_tasks_blocked()
    await trio.sleep(5)
    assert [entry[0] for entry in log] == ["init", "pre_start", "receive", "receive"]
    assert [entry[1] for entry in log[2:]] == ["first", "second"]
    hook_delay = 1 if cls is AsyncRecorder else 0
    assert log[1][1] == t0 + hook_delay  # pre_start finished
    assert log[2][2] == t0 + hook_delay  # first message only after pre_start finished

    t1 = trio.current_time()
    await actor_system.graceful_stop(ref)
    assert log[-1] == ("post_stop", t1 + hook_delay)
    assert trio.current_time() == t1 + hook_delay  # graceful_stop waited for post_stop
    assert len(log) == 5


async def test_messages_sent_before_the_actor_started_are_processed(
    actor_system: ActorSystem, probe: TestProbe, autojump_clock: MockClock
) -> None:
    class SlowStart(Forwarder):
        async def pre_start(self) -> None:
            await trio.sleep(10)

    ref = actor_system.spawn(SlowStart, probe.ref)
    for i in range(5):
        ref.tell(i)
    t0 = trio.current_time()
    await probe.expect_messages(0, 1, 2, 3, 4, timeout=20)
    assert trio.current_time() == t0 + 10
    await probe.expect_no_message()


async def test_spawn_returns_at_once_without_running_the_actor(
    autojump_clock: MockClock, actor_system: ActorSystem
) -> None:
    log: list[Any] = []
    ref = actor_system.spawn(Recorder, log, name="lazy")
    # spawn is synchronous and does not even construct the actor yet.
    assert log == []
    assert ref.path == "/user/lazy"
    assert ref.name == "lazy"
    # ...but the actor is already registered under its path.
    assert actor_system.lookup("/user/lazy") == ref
    await trio.testing.wait_all_tasks_blocked()
    assert [entry[0] for entry in log] == ["init", "pre_start"]


async def test_spawn_generates_distinct_names(
    autojump_clock: MockClock, actor_system: ActorSystem
) -> None:
    log: list[Any] = []
    refs = [actor_system.spawn(Recorder, log) for _ in range(3)]
    assert len({ref.path for ref in refs}) == 3
    for ref in refs:
        assert ref.path.startswith("/user/$")
        assert actor_system.lookup(ref.path) == ref


# -- hierarchy --------------------------------------------------------------------------------


async def test_hierarchical_paths_children_parent_and_lookup(
    autojump_clock: MockClock, actor_system: ActorSystem
) -> None:
    stops: list[str] = []
    # Start order b, a, c (not alphabetical).
    spec: dict[str, Any] = {"b": {"x": {}}, "a": {}, "c": {}}
    top = actor_system.spawn(Node, stops, spec, name="top")

    children = await top.ask("children")
    assert [child.path for child in children] == ["/user/top/b", "/user/top/a", "/user/top/c"]
    assert await top.ask("parent") == actor_system.user_guardian
    assert actor_system.user_guardian.path == "/user"

    b = actor_system.lookup("/user/top/b")
    assert b == children[0]
    assert await b.ask("parent") == top
    x = actor_system.lookup("/user/top/b/x")
    assert x.path == "/user/top/b/x"
    assert await x.ask("parent") == b
    assert await x.ask("self") == x
    assert [c.path for c in await b.ask("children")] == ["/user/top/b/x"]
    assert await x.ask("children") == []
    assert actor_system.find("/user/top/b/x") == x

    assert actor_system.find("/user/top/zzz") is None
    assert actor_system.find("/system/top") is None
    with pytest.raises(ActorNotFound) as excinfo:
        actor_system.lookup("/user/top/b/y")
    assert excinfo.value.path == "/user/top/b/y"

    # A child leaves context.children once it has fully stopped; order is kept.
    await actor_system.graceful_stop(children[1])
    assert [c.path for c in await top.ask("children")] == ["/user/top/b", "/user/top/c"]
    assert actor_system.find("/user/top/a") is None
    assert stops == ["/user/top/a"]


# -- stopping ---------------------------------------------------------------------------------


async def test_leaving_open_system_stops_children_first_and_siblings_newest_first(
    autojump_clock: MockClock,
) -> None:
    stops: list[str] = []
    async with open_system("order") as system:
        spawn_tree(system, stops)
        await trio.testing.wait_all_tasks_blocked()
        assert system.find("/user/a/a1/a1y") is not None
        assert stops == []
    assert stops == [
        "/user/c",
        "/user/b/b1",
        "/user/b",
        "/user/a/a2",
        "/user/a/a1/a1y",
        "/user/a/a1/a1x",
        "/user/a/a1",
        "/user/a",
    ]


async def test_stopping_an_actor_stops_its_children_first(
    autojump_clock: MockClock, actor_system: ActorSystem
) -> None:
    stops: list[str] = []
    spawn_tree(actor_system, stops)
    await trio.testing.wait_all_tasks_blocked()
    await actor_system.graceful_stop(actor_system.lookup("/user/a"))
    assert stops == ["/user/a/a2", "/user/a/a1/a1y", "/user/a/a1/a1x", "/user/a/a1", "/user/a"]
    for path in ("/user/a", "/user/a/a1", "/user/a/a1/a1x", "/user/a/a2"):
        assert actor_system.find(path) is None
    # Unrelated actors are untouched.
    assert actor_system.find("/user/b/b1") is not None
    assert actor_system.find("/user/c") is not None


async def test_context_stop_self_finishes_current_message_then_dead_letters_the_rest(
    actor_system: ActorSystem, probe: TestProbe, autojump_clock: MockClock
) -> None:
    class StopsItself(Actor):
        def __init__(self, report: Any) -> None:
            self.report = report

        async def receive(self, message: Any) -> None:
            if message == "stop":
                self.context.stop()
                await trio.sleep(1)  # still allowed to finish this message
                self.report.tell(("finished", trio.current_time()))
            else:
                self.report.tell(("processed", message))

        def post_stop(self) -> None:
            self.report.tell("post_stop")

    dead = await collect_dead_letters(actor_system)
    ref = actor_system.spawn(StopsItself, probe.ref)
    probe.watch(ref)
    t0 = trio.current_time()
    ref.tell("before")
    ref.tell("stop")
    ref.tell("after-1", sender=probe.ref)
    ref.tell("after-2")

    await probe.expect_message(("processed", "before"))
    await probe.expect_message(("finished", t0 + 1))
    await probe.expect_message("post_stop")
    terminated = await probe.expect_terminated(ref)
    assert terminated.error is None
    assert terminated.existence_confirmed

    assert await dead.expect_message(DeadLetter) == DeadLetter(
        "after-1", probe.ref, ref, DeadLetterReason.STOPPED
    )
    assert await dead.expect_message(DeadLetter) == DeadLetter(
        "after-2", None, ref, DeadLetterReason.STOPPED
    )
    await dead.expect_no_message()


async def test_poison_pill_processes_earlier_messages_first(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    dead = await collect_dead_letters(actor_system)
    ref = actor_system.spawn(Forwarder, probe.ref)
    probe.watch(ref)
    before = actor_system.dead_letter_count
    ref.tell(1)
    ref.tell(2)
    ref.tell(PoisonPill)
    ref.tell(3)
    await probe.expect_messages(1, 2)
    await probe.expect_terminated(ref)
    await probe.expect_no_message()
    # Only the message after the pill is a dead letter, not the pill itself.
    assert await dead.expect_message(DeadLetter) == DeadLetter(
        3, None, ref, DeadLetterReason.STOPPED
    )
    await dead.expect_no_message()
    assert actor_system.dead_letter_count == before + 1


async def test_graceful_stop_waits_until_fully_stopped(
    actor_system: ActorSystem, autojump_clock: MockClock
) -> None:
    log: list[Any] = []
    stops: list[str] = []
    ref = actor_system.spawn(AsyncRecorder, log, name="slow")
    await trio.sleep(5)  # past the one-second pre_start
    assert [entry[0] for entry in log] == ["init", "pre_start"]
    t0 = trio.current_time()
    await actor_system.graceful_stop(ref)
    assert trio.current_time() == t0 + 1
    assert log[-1] == ("post_stop", t0 + 1)
    assert actor_system.find("/user/slow") is None
    # The name is free again once the actor has fully stopped.
    again = actor_system.spawn(Node, stops, name="slow")
    assert again != ref
    assert again.path == ref.path
    # graceful_stop on a stopped actor returns at once.
    await actor_system.graceful_stop(ref)
    assert trio.current_time() == t0 + 1


async def test_stop_deadline_cancels_a_stuck_handler_and_post_stop_still_runs(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []

    class Stuck(Actor):
        async def receive(self, message: Any) -> None:
            log.append(("receive", message, trio.current_time()))
            try:
                await trio.sleep_forever()
            finally:
                log.append(("handler-cancelled", trio.current_time()))

        def post_stop(self) -> None:
            log.append(("post_stop", trio.current_time()))

    async with open_system("deadline", stop_timeout=3) as system:
        dead = await collect_dead_letters(system)
        watcher = TestProbe(system)
        ref = system.spawn(Stuck)
        watcher.watch(ref)
        ref.tell("stuck")
        ref.tell("queued")
        await trio.testing.wait_all_tasks_blocked()
        t0 = trio.current_time()
        system.stop(ref)
        terminated = await watcher.expect_terminated(ref, timeout=10)
        assert trio.current_time() == t0 + 3
        assert terminated.error is None
        assert log == [
            ("receive", "stuck", t0),
            ("handler-cancelled", t0 + 3),
            ("post_stop", t0 + 3),
        ]
        # The interrupted message and the queued one are dead letters.
        letters = [await dead.expect_message(DeadLetter) for _ in range(2)]
        assert {(d.message, d.reason) for d in letters} == {
            ("stuck", DeadLetterReason.STOPPED),
            ("queued", DeadLetterReason.STOPPED),
        }
        await dead.expect_no_message()


async def test_hanging_post_stop_is_cancelled_after_stop_timeout(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []

    class HangingPostStop(Actor):
        async def post_stop(self) -> None:
            log.append(("post_stop", trio.current_time()))
            try:
                await trio.sleep_forever()
            finally:
                log.append(("post_stop-cancelled", trio.current_time()))

    async with open_system("hang", stop_timeout=4) as system:
        ref = system.spawn(HangingPostStop)
        await trio.testing.wait_all_tasks_blocked()
        t0 = trio.current_time()
        await system.graceful_stop(ref)
        assert trio.current_time() == t0 + 4
        assert log == [("post_stop", t0), ("post_stop-cancelled", t0 + 4)]
        assert system.find(ref.path) is None


async def test_stuck_handler_and_hanging_post_stop_each_get_stop_timeout(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []

    class Hopeless(Actor):
        async def receive(self, message: Any) -> None:
            await trio.sleep_forever()

        async def post_stop(self) -> None:
            log.append(("post_stop", trio.current_time()))
            await trio.sleep_forever()

    async with open_system("hopeless", stop_timeout=2) as system:
        ref = system.spawn(Hopeless)
        ref.tell("x")
        await trio.testing.wait_all_tasks_blocked()
        t0 = trio.current_time()
        await system.graceful_stop(ref)
        assert trio.current_time() == t0 + 4
        assert log == [("post_stop", t0 + 2)]


async def test_shutdown_timeout_bounds_leaving_open_system(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []

    class Stuck(Actor):
        async def receive(self, message: Any) -> None:
            try:
                await trio.sleep_forever()
            finally:
                log.append(("handler-cancelled", trio.current_time()))

        def post_stop(self) -> None:
            log.append(("post_stop", trio.current_time()))

    async with open_system("bounded", stop_timeout=100, shutdown_timeout=2) as system:
        ref = system.spawn(Stuck)
        ref.tell("x")
        await trio.testing.wait_all_tasks_blocked()
        t0 = trio.current_time()
    assert trio.current_time() == t0 + 2
    assert log == [("handler-cancelled", t0 + 2), ("post_stop", t0 + 2)]
    # The interrupted message is accounted for as a dead letter.
    assert system.dead_letter_count == 1


async def test_shutdown_timeout_cancels_hanging_post_stop(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []

    class HangingPostStop(Actor):
        async def post_stop(self) -> None:
            try:
                await trio.sleep_forever()
            finally:
                log.append(("post_stop-cancelled", trio.current_time()))

    async with open_system("bounded2", stop_timeout=50, shutdown_timeout=3) as system:
        system.spawn(HangingPostStop)
        await trio.testing.wait_all_tasks_blocked()
        t0 = trio.current_time()
    assert trio.current_time() == t0 + 3
    assert log == [("post_stop-cancelled", t0 + 3)]


async def test_stop_is_idempotent_and_tell_after_stop_is_a_dead_letter(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    ref = actor_system.spawn(Forwarder, probe.ref)
    probe.watch(ref)
    actor_system.stop(ref)
    actor_system.stop(ref)
    await probe.expect_terminated(ref)
    actor_system.stop(ref)  # no-op on a stopped actor
    await probe.expect_no_message()
    before = actor_system.dead_letter_count
    ref.tell("late")
    assert actor_system.dead_letter_count == before + 1


async def test_terminated_is_a_value(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    # A Terminated is a frozen value: equality by ref, reason and existence_confirmed.
    ref = actor_system.spawn(Forwarder, probe.ref)
    probe.watch(ref)
    await actor_system.graceful_stop(ref)
    assert await probe.expect_message(Terminated) == Terminated(ref, None, True)


async def test_shutdown_takes_at_most_shutdown_timeout_plus_stop_timeout(
    autojump_clock: MockClock,
) -> None:
    log: list[Any] = []

    class Hopeless(Actor):
        async def receive(self, message: Any) -> None:
            try:
                await trio.sleep_forever()
            finally:
                log.append(("handler-cancelled", trio.current_time()))

        async def post_stop(self) -> None:
            try:
                await trio.sleep_forever()
            finally:
                log.append(("post_stop-cancelled", trio.current_time()))

    async with open_system("worst-case", stop_timeout=3, shutdown_timeout=2) as system:
        system.spawn(Hopeless).tell("x")
        await trio.testing.wait_all_tasks_blocked()
        t0 = trio.current_time()
    assert trio.current_time() == t0 + 5
    assert log == [("handler-cancelled", t0 + 2), ("post_stop-cancelled", t0 + 5)]


async def test_context_stop_in_pre_start(
    autojump_clock: MockClock, actor_system: ActorSystem, probe: TestProbe
) -> None:
    class StopsAtOnce(Forwarder):
        def pre_start(self) -> None:
            self.context.stop()

        def post_stop(self) -> None:
            self.target.tell("post_stop")

    dead = await collect_dead_letters(actor_system)
    ref = actor_system.spawn(StopsAtOnce, probe.ref)
    probe.watch(ref)
    ref.tell("never processed")
    await probe.expect_message("post_stop")
    await probe.expect_terminated(ref)
    letter = await dead.expect_message(DeadLetter)
    assert letter == DeadLetter("never processed", None, ref, DeadLetterReason.STOPPED)


# -- KeyboardInterrupt and SystemExit ------------------------------------------------------


class Exits(Actor):
    def receive(self, message: Any) -> None:
        if message == "exit":
            sys.exit(3)
        raise KeyboardInterrupt


@pytest.mark.parametrize(("message", "kind"), [("exit", SystemExit), ("ctrl-c", KeyboardInterrupt)])
async def test_interrupts_in_an_actor_leave_open_system_as_themselves(
    autojump_clock: MockClock, message: str, kind: type[BaseException]
) -> None:
    async def run() -> None:
        async with open_system("exits") as system:
            system.spawn(Exits, name="x").tell(message)
            await trio.sleep_forever()

    with pytest.raises(kind) as info:  # a group of it would not match
        await run()
    assert type(info.value) is kind
    if kind is SystemExit:
        assert info.value.code == 3  # type: ignore[attr-defined]


def test_sys_exit_in_a_handler_is_the_exit_code_of_the_program(tmp_path: Path) -> None:
    script = tmp_path / "exits.py"
    script.write_text(
        textwrap.dedent(
            """
            import sys
            import trio
            import actors

            class Exits(actors.Actor):
                def receive(self, message):
                    sys.exit(3)

            async def main():
                async with actors.open_system("exits") as system:
                    system.spawn(Exits).tell("bye")
                    await trio.sleep_forever()

            trio.run(main)
            """
        )
    )
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert done.returncode == 3, done.stderr
    assert "ExceptionGroup" not in done.stderr
