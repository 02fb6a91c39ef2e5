"""Actors in worker processes, with real processes: what a ref does across a process
boundary (tell, ask, errors, timeouts, sender refs, refs inside messages, children of
remote actors), per sender-receiver FIFO, stopping, supervision across processes, and an
ordered shutdown that leaves no worker process behind.

Real processes run on real time: no virtual clock here. Every wait is bounded by
``trio.fail_after`` with a generous limit; nothing asserts on how long anything took.
The actor classes placed on workers live in ``worker_actors.py`` (importable there)."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
from worker_actors import Boss, CustomError, Get, Peer, Recorder, Sink, Watcher

import actors
import supervision as sv
from actors._remote_child import RemoteChildCell
from actors.testing import FaultInjector, MessageTrace

LIMIT = 30  # seconds: a bound on waits for other processes, never an expectation


def assert_gone(pid: int) -> None:
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def pid_of(system: actors.ActorSystem, worker: str) -> int:
    [pid] = [info.pid for info in system.workers() if info.name == worker]
    assert pid is not None
    return pid


# -- 1. tell and ask: replies, errors, timeouts ----------------------------------------------


@pytest.mark.workers
async def test_ask_replies_and_reraises_the_handlers_errors() -> None:
    with trio.fail_after(LIMIT):
        async with actors.open_system("ask-errors", workers=1) as system:
            ref = system.spawn(Peer, tag="p", name="p", placement=actors.OnWorker("w1"))
            assert ref.address.node == "w1"
            worker_pid = pid_of(system, "w1")
            assert worker_pid != os.getpid()
            assert await ref.ask("pid") == worker_pid
            assert await ref.ask(("a value", [1, 2.5, {"k": None}])) == (
                "a value",
                [1, 2.5, {"k": None}],
            )

            with pytest.raises(ValueError, match=r"^bad value") as builtin:
                await ref.ask(("raise", "builtin", "bad value"))
            assert type(builtin.value) is ValueError
            assert str(builtin.value) == "bad value"
            assert any(
                f"Traceback in node w1 (pid {worker_pid})" in note
                for note in builtin.value.__notes__
            )

            with pytest.raises(CustomError) as custom:
                await ref.ask(("raise", "custom", "custom text"))
            assert type(custom.value) is CustomError
            assert str(custom.value) == "custom text"

            # Classes that cannot be rebuilt here travel as RemoteError naming the type.
            with pytest.raises(actors.RemoteError) as rebuilt:
                await ref.ask(("raise", "not-rebuildable", "no way back"))
            assert rebuilt.value.type_name == "worker_actors.NotRebuildable"
            assert str(rebuilt.value) == "worker_actors.NotRebuildable: no way back (code 7)"

            # A class made in a function travels by value (cloudpickle): the caller gets
            # an instance of a copy of it, with its name and message.
            with pytest.raises(Exception) as local:  # noqa: PT011 - its class is a copy
                await ref.ask(("raise", "local-class", "made in a function"))
            assert type(local.value).__name__ == "LocalError"
            assert str(local.value) == "made in a function"

            # An error raised while answering an ask is the caller's: the actor goes on,
            # same instance, same process.
            assert await ref.ask("inc") == 1
            assert await ref.ask("pid") == worker_pid
            assert await ref.ask(Get()) == [("a value", [1, 2.5, {"k": None}])]


@pytest.mark.workers
async def test_error_whose_class_only_the_worker_has_becomes_remote_error() -> None:
    with trio.fail_after(LIMIT):
        async with actors.open_system("worker-only-error", workers=1) as system:
            ref = system.spawn(Peer, name="p", placement=actors.OnWorker("w1"))
            with pytest.raises(actors.RemoteError) as caught:
                await ref.ask(("raise", "worker-only", "only there"))
            assert caught.value.type_name == "worker_only_errors.OnlyHere"
            assert "only there" in str(caught.value)


@pytest.mark.workers
async def test_ask_times_out_on_a_remote_handler_that_never_answers() -> None:
    recorder = Recorder()
    with trio.fail_after(LIMIT):
        async with actors.open_system("ask-timeout", workers=1) as system:
            sink = system.spawn(Sink, recorder, name="sink")
            slow = system.spawn(Peer, tag="slow", name="slow", placement=actors.OnWorker("w1"))
            opener = system.spawn(Peer, name="opener", placement=actors.OnWorker("w1"))
            with pytest.raises(actors.AskTimeout) as caught:
                await slow.ask(("block", "gate", sink), timeout=0.5)
            assert (caught.value.path, caught.value.timeout) == ("/user/slow", 0.5)
            assert str(caught.value).startswith("no reply from /user/slow within 0.5 s to ")
            # The handler did run (and still waits) in the worker.
            assert await recorder.wait_for(bool) == [("blocked", "slow")]
            # Open its gate (from another actor of that process): it goes on.
            await opener.ask(("open", "gate"))
            assert await slow.ask("pid") == pid_of(system, "w1")


@pytest.mark.workers
async def test_ask_timeout_names_the_type_of_the_message() -> None:
    with trio.fail_after(LIMIT):
        async with actors.open_system("ask-timeout-text", workers=1) as system:
            sink = system.spawn(Sink, Recorder(), name="sink")
            slow = system.spawn(Peer, name="slow", placement=actors.OnWorker("w1"))
            opener = system.spawn(Peer, name="opener", placement=actors.OnWorker("w1"))
            with pytest.raises(actors.AskTimeout) as caught:
                await slow.ask(("block", "gate", sink), timeout=0.5)
            await opener.ask(("open", "gate"))
        assert str(caught.value) == "no reply from /user/slow within 0.5 s to tuple"


@pytest.mark.workers
async def test_an_ask_from_the_root_goes_straight_to_the_worker_with_the_same_semantics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # With nothing queued ahead and no delivery hook, an ask skips the delivery seam
    # (RemoteChildCell.ask): checked by recording what reaches the cell's _accept, where
    # the seam ends. Order with tells, argument checks, errors at the call, a cancelled
    # caller, and a delivery hook (which then sees the ask) behave as for any ask.
    accepted: list[Any] = []
    accept = RemoteChildCell._accept

    def recording(cell: RemoteChildCell, envelope: Any, on_full: int) -> None:
        accepted.append(envelope[0])
        accept(cell, envelope, on_full)

    monkeypatch.setattr(RemoteChildCell, "_accept", recording)
    recorder = Recorder()
    with trio.fail_after(LIMIT):
        async with actors.open_system("ask-straight", workers=1) as system:
            sink = system.spawn(Sink, recorder, name="sink")
            system.events.subscribe(sink, actors.DeadLetter)
            ref = system.spawn(Peer, tag="p", name="p", placement=actors.OnWorker("w1"))
            opener = system.spawn(Peer, name="opener", placement=actors.OnWorker("w1"))
            assert await ref.ask("n") == 0
            accepted.clear()  # (what the cell took while its instance started)
            answers = []
            for tells in (1, 0, 2, 3):
                for _ in range(tells):
                    ref.tell("inc")
                answers.append(await ref.ask("inc"))
            assert answers == [2, 3, 6, 10]  # every tell before it was counted first
            assert await ref.ask("n", timeout=5) == 10  # (an int timeout)
            with pytest.raises(ValueError, match="ask timeout must be > 0 seconds"):
                await ref.ask("n", timeout=0)
            with pytest.raises(TypeError, match="ask timeout must be a number of seconds"):
                await ref.ask("n", timeout="1")  # type: ignore[arg-type]
            with pytest.raises(actors.UnpicklableMessage, match=r"_thread\.lock"):
                await ref.ask(("a lock", threading.Lock()))
            with pytest.raises(RuntimeError, match="p told to fail"):
                await ref.ask("fail")
            assert accepted == []

            # A caller cancelled while it waits: the late answer is a dead letter.
            with trio.move_on_after(0.5) as waiting:
                await ref.ask(("block", "gate", sink))
            assert waiting.cancelled_caught
            await opener.ask(("open", "gate"))
            expired = await recorder.wait_for(
                lambda got: any(isinstance(m, actors.DeadLetter) for m in got)
            )
            [letter] = [m for m in expired if isinstance(m, actors.DeadLetter)]
            assert letter.reason is actors.DeadLetterReason.ASK_EXPIRED
            assert accepted == []

            # A delivery hook sees every delivery: the ask goes through the seam.
            faults = FaultInjector(seed=1)
            faults.install(system)
            trace = MessageTrace.attach(faults)
            assert await ref.ask("n") == 10
            assert [(e.kind, e.recipient) for e in trace.entries] == [("ask", "/user/p@w1")]
            assert len(accepted) == 1


# -- 2. refs: senders, refs inside messages, children of remote actors -----------------------


@pytest.mark.workers
async def test_refs_resolve_to_the_right_actor_in_every_process() -> None:
    recorder = Recorder()
    with trio.fail_after(LIMIT):
        async with actors.open_system("refs", workers=2) as system:
            sink = system.spawn(Sink, recorder, name="sink")
            a = system.spawn(Peer, tag="a", name="a", placement=actors.OnWorker("w1"))
            b = system.spawn(Peer, tag="b", name="b", placement=actors.OnWorker("w2"))
            pid1, pid2 = pid_of(system, "w1"), pid_of(system, "w2")

            # The sender a worker actor sees is the root actor that told it; it replies
            # through that ref, and the reply's sender is the worker actor.
            sink.tell(("tell", a, ("reply", 1)))
            await recorder.wait_for(lambda got: len(got) == 1)
            [(reply, replier)] = recorder.items
            assert reply == ("reply", 1, "a", pid1, "/user/sink")
            assert replier == a
            assert replier is not None
            assert replier.address.node == "w1"

            # The sender of an ask from a worker actor to another worker's actor is the
            # asking actor (a ref to it, unpickled in w2, equal to a).
            assert await a.ask(("ask", b, ("sender",))) == a

            # worker -> worker: tell and ask (through the root).
            await a.ask(("tell", b, "from a"))
            assert await b.ask(Get()) == ["from a"]
            assert await a.ask(("ask", b, "pid")) == pid2

            # A ref pickled in the root, carried by a (w1) to b (w2), used by b (a third
            # actor) to tell the root's sink: it reaches the sink, from b.
            a.tell(("tell", b, ("tell", sink, "via b")))
            await recorder.wait_for(lambda got: "via b" in got)
            assert ("via b", b) in recorder.items
            # ... and to ask: a asks b to ask c (w1 -> w2 -> w1).
            c = system.spawn(Peer, tag="c", name="c", placement=actors.OnWorker("w1"))
            assert await a.ask(("ask", b, ("ask", c, ("sender",)))) == b

            # Children spawned by a remote actor: in its process, reachable from anywhere.
            kid = await a.ask(("spawn", "kid"))
            assert isinstance(kid, actors.ActorRef)
            assert kid.path == "/user/a/kid"
            assert kid.address.node == "w1"
            assert await kid.ask("pid") == pid1
            kid.tell("to kid")
            assert await kid.ask(Get()) == ["to kid"]
            assert await b.ask(("ask", kid, "pid")) == pid1  # w2 -> child on w1
            await b.ask(("tell", kid, "from b"))
            assert await b.ask(("ask", kid, Get())) == ["to kid", "from b"]


# -- 3. per sender-receiver FIFO ---------------------------------------------------------------


@pytest.mark.workers
async def test_fifo_per_sender_and_receiver_across_processes() -> None:
    count = 2_000
    with trio.fail_after(LIMIT):
        async with actors.open_system("fifo", workers=2) as system:
            a = system.spawn(Peer, name="a", placement=actors.OnWorker("w1"))
            b = system.spawn(Peer, name="b", placement=actors.OnWorker("w2"))
            for value in range(count):  # root -> w1
                a.tell(value)
            assert await a.ask(Get()) == list(range(count))
            # w1 -> w2: a tells b 0..count-1, then asks b what it got.
            assert await a.ask(("seq", b, count)) == list(range(count))


# -- 4. stopping: PoisonPill, system.stop, post_stop in the worker ---------------------------


@pytest.mark.workers
async def test_poison_pill_and_stop_of_remote_actors() -> None:
    recorder = Recorder()
    dead_letters = Recorder()
    watched = Recorder()
    with trio.fail_after(LIMIT):
        async with actors.open_system("stopping", workers=1) as system:
            sink = system.spawn(Sink, recorder, name="sink")
            dead = system.spawn(Sink, dead_letters, name="dead")
            system.events.subscribe(dead, actors.DeadLetter)
            p = system.spawn(Peer, sink, "p", name="p", placement=actors.OnWorker("w1"))
            q = system.spawn(Peer, sink, "q", name="q", placement=actors.OnWorker("w1"))
            await system.started(p)
            await system.started(q)
            system.spawn(Watcher, p, watched, name="watch-p")
            system.spawn(Watcher, q, watched, name="watch-q")
            pid = pid_of(system, "w1")

            p.tell(1)
            p.tell(2)
            p.tell(actors.PoisonPill)
            p.tell(3)  # after the pill: never handled
            await watched.wait_for(lambda got: len(got) == 1)
            got = await recorder.wait_for(lambda got: ("post_stop", "p", pid) in got)
            of_p = [m for m in got if m[1] == "p"]
            assert of_p == [
                ("started", "p", pid),
                ("got", "p", 1),
                ("got", "p", 2),
                ("post_stop", "p", pid),
            ]
            await dead_letters.wait_for(lambda got: len(got) == 1)
            [letter] = dead_letters.messages
            assert (letter.message, letter.recipient) == (3, p)
            assert letter.reason == actors.DeadLetterReason.STOPPED
            with pytest.raises(actors.ActorDead):
                await p.ask("pid")

            system.stop(q)
            await watched.wait_for(lambda got: len(got) == 2)
            await recorder.wait_for(lambda got: ("post_stop", "q", pid) in got)
            with pytest.raises(actors.ActorDead):
                await q.ask("pid")
    # Exactly one Terminated per watch, with no error: checked once everything is over.
    assert [(type(m), m.ref, m.error) for m in watched.messages] == [
        (actors.Terminated, p, None),
        (actors.Terminated, q, None),
    ]


# -- 5. supervision across processes -------------------------------------------------------------


@pytest.mark.workers
async def test_restart_resume_and_stop_of_remote_actors() -> None:
    recorder = Recorder()
    watched = Recorder()
    resume = sv.OneForOne(decider=sv.decider_from({RuntimeError: sv.Directive.RESUME}))
    stop = sv.OneForOne(decider=sv.decider_from({RuntimeError: sv.Directive.STOP}))
    w1 = actors.OnWorker("w1")
    with trio.fail_after(LIMIT):
        async with actors.open_system("supervision", workers=1) as system:
            sink = system.spawn(Sink, recorder, name="sink")
            pid = pid_of(system, "w1")

            # Restart (the default): a fresh instance in the worker, post_restart there;
            # what was queued behind the failing message is handled by the new instance.
            r = system.spawn(Peer, sink, "r", name="r", placement=w1)
            for message in ["inc", "inc", "fail", "inc", "inc", "inc"]:
                r.tell(message)
            assert await r.ask("n") == 3
            assert await r.ask("pid") == pid
            got = await recorder.wait_for(lambda got: any(m[0] == "restarted" for m in got))
            restarted = [m for m in got if m[0] == "restarted"]
            assert restarted == [("restarted", "r", "RuntimeError('r told to fail')", pid)]

            # Resume: the same instance goes on, its state intact.
            resuming = system.spawn(Boss, name="resuming", supervisor_strategy=resume)
            s = await resuming.ask(("spawn", Peer, (sink, "s"), "s", w1))
            for message in ["inc", "inc", "fail", "inc"]:
                s.tell(message)
            assert await s.ask("n") == 3  # (a restart would have reset it)

            # Stop: the actor stops for good; its watcher gets Terminated with the error.
            stopping = system.spawn(Boss, name="stopping", supervisor_strategy=stop)
            t = await stopping.ask(("spawn", Peer, (sink, "t"), "t", w1))
            await system.started(t)
            system.spawn(Watcher, t, watched, name="watch-t")
            t.tell("inc")
            t.tell("fail")
            t.tell("inc")
            [terminated] = await watched.wait_for(lambda got: len(got) == 1)
            assert isinstance(terminated, actors.Terminated)
            assert terminated.ref == t
            assert type(terminated.error) is RuntimeError
            assert str(terminated.error) == "t told to fail"
            await recorder.wait_for(lambda got: ("post_stop", "t", pid) in got)
            with pytest.raises(actors.ActorDead) as dead:
                await t.ask("n")
            assert type(dead.value.error) is RuntimeError


async def give_up(workers: int | None, placement: actors.OnWorker | None) -> list[Any]:
    """A top-level actor that fails twice under a guardian that allows one restart: what
    ``open_system`` raises, summed up for comparison."""
    guardian = sv.OneForOne(intensity=sv.RestartIntensity(max_restarts=1, within=600))

    async def fail_twice() -> None:
        async with actors.open_system(
            "give-up", workers=workers, guardian_strategy=guardian
        ) as system:
            flaky = system.spawn(Peer, tag="flaky", name="flaky", placement=placement)
            flaky.tell("fail")
            assert await flaky.ask("n") == 0  # (answered by the restarted instance)
            flaky.tell("fail")
            await trio.sleep_forever()  # (cancelled when the failure reaches the top)

    with trio.fail_after(LIMIT), pytest.raises(actors.UnhandledFailure) as caught:
        await fail_twice()
    summary: list[Any] = []
    for ref, error in caught.value.failures:
        assert isinstance(error, sv.TooManyRestarts)
        last = error.error
        summary.append((ref.path, type(error), error.max_restarts, type(last), str(last)))
    return summary


@pytest.mark.workers
async def test_restart_intensity_exceeded_gives_up_as_for_a_local_actor() -> None:
    local = await give_up(None, None)
    remote = await give_up(1, actors.OnWorker("w1"))
    assert local == [("/user/flaky", sv.TooManyRestarts, 1, RuntimeError, "flaky told to fail")]
    assert remote == local


@pytest.mark.workers
async def test_a_failure_right_after_a_restart_is_supervised_too() -> None:
    with trio.fail_after(LIMIT):
        async with actors.open_system("fail-twice", workers=1) as system:
            flaky = system.spawn(Peer, tag="flaky", name="flaky", placement=actors.OnWorker("w1"))
            for message in ["fail", "fail", "inc"]:
                flaky.tell(message)
            # Two restarts, then "inc" on the third instance: each failure is decided,
            # also the one the worker reports in the same read as the restart before it.
            assert await flaky.ask("n", timeout=LIMIT) == 1


# -- 7. ordered shutdown, no orphans -----------------------------------------------------------


@pytest.mark.workers
async def test_leaving_open_system_stops_remote_actors_then_reaps_the_workers(
    tmp_path: Path,
) -> None:
    log = tmp_path / "post_stop.log"
    with trio.fail_after(LIMIT):
        async with actors.open_system("shutdown", workers=2) as system:
            one = system.spawn(
                Peer, None, "one", str(log), name="one", placement=actors.OnWorker("w1")
            )
            two = system.spawn(
                Peer, None, "two", str(log), name="two", placement=actors.OnWorker("w2")
            )
            kid = await one.ask(("spawn", "kid"))
            assert await kid.ask("pid") == pid_of(system, "w1")
            await two.ask("pid")
            pids = {info.name: info.pid for info in system.workers()}
    # The root waited for (and reaped) every worker: their PIDs are gone already.
    for pid in pids.values():
        assert pid is not None
        assert_gone(pid)
    lines = log.read_text().splitlines()
    assert sorted(lines) == sorted([f"one {pids['w1']}", f"kid {pids['w1']}", f"two {pids['w2']}"])
    assert lines.index(f"kid {pids['w1']}") < lines.index(f"one {pids['w1']}")  # children first
