"""Worker processes under faults, with real processes: a worker killed with SIGKILL (its
actors fail with ProcessLost and restart on a replacement, asks in flight fail at once,
nothing sent meanwhile is lost silently), a root killed with SIGKILL (no worker survives
it), and bad input: unpicklable messages and factories, bad placements, and a real
worker program fed a wrong key, garbage, or an oversized frame at a real socket.

Real processes run on real time: no virtual clock here. Every wait is bounded by
``trio.fail_after`` with a generous limit; nothing asserts on how long anything took.
The actor classes placed on workers live in ``worker_actors.py`` (importable there)."""

from __future__ import annotations

import os
import pickle
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import trio
from worker_actors import Get, Peer, Recorder, Sink

import actors
from actors._handshake import CHALLENGE_SIZE, MAGIC, RESPONSE_SIZE, handshake
from actors._wire import MAX_FRAME, pack_header

LIMIT = 30  # seconds: a bound on waits for other processes, never an expectation
REPO = Path(__file__).resolve().parents[1]
KEY_ENV = "TRIO_ACTORS_WORKER_KEY"


def pid_of(system: actors.ActorSystem, worker: str) -> int:
    [pid] = [info.pid for info in system.workers() if info.name == worker]
    assert pid is not None
    return pid


def info_of(system: actors.ActorSystem, worker: str) -> actors.WorkerInfo:
    [info] = [info for info in system.workers() if info.name == worker]
    return info


async def until_replaced(system: actors.ActorSystem, worker: str, old_pid: int) -> int:
    """Poll (a bounded wait for another process) until ``worker`` is up again in a new
    process; its PID."""
    while True:
        info = info_of(system, worker)
        if info.state == "up" and info.pid is not None and info.pid != old_pid:
            return info.pid
        await trio.sleep(0.01)


async def close_process(process: trio.Process) -> None:
    """Kill ``process`` if it still runs, reap it and close our ends of its pipes."""
    with trio.CancelScope(shield=True), trio.move_on_after(10):
        if process.returncode is None:
            process.kill()
        await process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                await pipe.aclose()


def process_gone(pid: int) -> bool:
    """Whether ``pid`` no longer runs: no such process, or a zombie (exited, waiting for
    its new parent, init, to reap it)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] == "Z"


# -- 6. SIGKILL of a worker --------------------------------------------------------------------


@pytest.mark.workers
@pytest.mark.crash
async def test_sigkill_fails_hosted_actors_with_process_lost_and_restarts_them() -> None:
    events = Recorder()
    with trio.fail_after(LIMIT):
        async with actors.open_system("sigkill", workers=2) as system:
            sink = system.spawn(Sink, events, name="events")
            system.events.subscribe(sink, actors.ActorFailed)
            system.events.subscribe(sink, actors.ActorRestarted)
            x = system.spawn(Peer, tag="x", name="x", placement=actors.OnWorker("w1"))
            y = system.spawn(Peer, tag="y", name="y", placement=actors.OnWorker("w1"))
            z = system.spawn(Peer, tag="z", name="z", placement=actors.OnWorker("w2"))
            old1, pid2 = pid_of(system, "w1"), pid_of(system, "w2")
            for ref in (x, y):
                assert await ref.ask("inc") == 1
            assert await z.ask("pid") == pid2

            os.kill(old1, signal.SIGKILL)
            got = await events.wait_for(
                lambda got: {e.ref for e in got if isinstance(e, actors.ActorRestarted)} == {x, y}
            )
            failed = [e for e in got if isinstance(e, actors.ActorFailed)]
            assert sorted(e.ref.path for e in failed) == ["/user/x", "/user/y"]
            for event in failed:
                assert type(event.error) is actors.ProcessLost
                assert (event.error.node, event.error.pid) == ("w1", old1)
                assert str(event.error) == (
                    f"worker process w1 (pid {old1}) was lost: killed by SIGKILL"
                )
            new1 = await until_replaced(system, "w1", old1)
            assert info_of(system, "w1") == actors.WorkerInfo("w1", new1, "up", 2, 1)
            assert info_of(system, "w2") == actors.WorkerInfo("w2", pid2, "up", 1, 0)
            # Restarted on the replacement, afresh; the other worker's actor untouched.
            for ref in (x, y):
                assert await ref.ask("pid") == new1
                assert await ref.ask("n") == 0
            assert await z.ask("pid") == pid2


@pytest.mark.workers
@pytest.mark.crash
async def test_ask_in_flight_fails_with_actor_dead_when_its_worker_is_killed() -> None:
    recorder = Recorder()
    outcome: list[BaseException] = []
    with trio.fail_after(LIMIT):
        async with actors.open_system("in-flight", workers=1) as system:
            sink = system.spawn(Sink, recorder, name="sink")
            slow = system.spawn(Peer, tag="slow", name="slow", placement=actors.OnWorker("w1"))
            pid = pid_of(system, "w1")

            async def ask_slow() -> None:
                try:
                    await slow.ask(("block", "never", sink), timeout=60)
                except actors.ActorError as error:
                    outcome.append(error)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ask_slow)
                await recorder.wait_for(lambda got: ("blocked", "slow") in got)
                os.kill(pid, signal.SIGKILL)
            [error] = outcome
            assert type(error) is actors.ActorDead
            assert str(error) == (
                "actor /user/slow is in a process that was lost: it failed with ProcessLost: "
                f"worker process w1 (pid {pid}) was lost: killed by SIGKILL"
            )
            assert type(error.__cause__) is actors.ProcessLost
            assert error.__cause__.pid == pid
            # Restarted on the replacement, it answers again.
            assert await slow.ask("pid") == await until_replaced(system, "w1", pid)


@pytest.mark.workers
@pytest.mark.crash
async def test_tells_while_a_worker_is_replaced_arrive_or_become_dead_letters() -> None:
    events = Recorder()
    count = 300
    with trio.fail_after(LIMIT):
        async with actors.open_system("replaced", workers=1) as system:
            sink = system.spawn(Sink, events, name="events")
            system.events.subscribe(sink, actors.ActorFailed)
            system.events.subscribe(sink, actors.DeadLetter)
            t = system.spawn(Peer, tag="t", name="t", placement=actors.OnWorker("w1"))
            old = pid_of(system, "w1")
            assert await t.ask("pid") == old

            os.kill(old, signal.SIGKILL)
            await events.wait_for(lambda got: any(isinstance(e, actors.ActorFailed) for e in got))
            for value in range(count // 2):  # at once, while the replacement starts
                t.tell(value)
            new = await until_replaced(system, "w1", old)  # (polled)
            for value in range(count // 2, count):  # as it comes up
                t.tell(value)
            handled = await t.ask(Get())
            assert await t.ask("pid") == new
            await sink.ask("flush")  # (every event published before is recorded now)
            letters = [
                e for e in events.messages if isinstance(e, actors.DeadLetter) and e.recipient == t
            ]
    assert {letter.reason for letter in letters} <= {actors.DeadLetterReason.PROCESS_LOST}
    lost = [letter.message for letter in letters]
    # Nothing lost silently: each message was handled (in order) or is a dead letter.
    assert handled == sorted(handled)
    assert sorted(handled + lost) == list(range(count))


# -- 7. a root killed with SIGKILL leaves no worker behind -------------------------------------

ROOT_SCRIPT = """
import sys
import trio
import actors


async def main():
    async with actors.open_system("orphans", workers=2) as system:
        pids = [info.pid for info in system.workers()]
        print("PIDS", *pids, flush=True)
        await trio.sleep_forever()


trio.run(main)
"""


@pytest.mark.workers
@pytest.mark.crash
async def test_root_killed_with_sigkill_leaves_no_worker_behind(tmp_path: Path) -> None:
    script = tmp_path / "root.py"
    script.write_text(ROOT_SCRIPT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    root = await trio.lowlevel.open_process(
        [sys.executable, str(script)], stdout=subprocess.PIPE, env=env
    )
    try:
        with trio.fail_after(LIMIT):
            assert root.stdout is not None
            output = b""
            while b"\n" not in output:
                chunk = await root.stdout.receive_some()
                assert chunk, f"the root exited early ({root.returncode}): {output!r}"
                output += chunk
            words = output.decode().split()
            assert words[0] == "PIDS"
            pids = [int(word) for word in words[1:3]]
            assert len(pids) == 2
            assert all(not process_gone(pid) for pid in pids)
            root.send_signal(signal.SIGKILL)
            await root.wait()
            assert root.returncode == -signal.SIGKILL
            # Their link closed: each worker stops its actors and exits by itself.
            # (Polling: nothing here can tell us when another process's child exits.)
            while not all(process_gone(pid) for pid in pids):  # noqa: ASYNC110
                await trio.sleep(0.05)
    finally:
        await close_process(root)


# -- 8. bad input at the call ------------------------------------------------------------------


@pytest.mark.workers
async def test_unpicklable_messages_factories_and_bad_placements_are_refused() -> None:
    with trio.fail_after(LIMIT):
        async with actors.open_system("bad-input", workers=1) as system:
            p = system.spawn(Peer, name="p", placement=actors.OnWorker("w1"))
            pid = await p.ask("pid")

            with pytest.raises(actors.UnpicklableMessage) as told:
                p.tell(threading.Lock())
            assert str(told.value).startswith(
                "message of type _thread.lock cannot be pickled: cannot pickle '_thread.lock'"
            )
            with pytest.raises(actors.UnpicklableMessage) as asked:
                await p.ask(("nested", (n for n in range(0))))
            assert str(asked.value).startswith(
                "message of type builtins.tuple cannot be pickled: cannot pickle 'generator'"
            )
            with pytest.raises(actors.UnpicklableMessage):
                await p.send(threading.Lock())
            # Nothing of them was sent: the actor recorded nothing.
            assert await p.ask(Get()) == []

            # Closures and lambdas do cross (cloudpickle copies them by value) and run
            # in the worker.
            assert await p.ask(("call", lambda: os.getpid())) == pid

            # A factory argument that cannot be pickled: a TypeError at spawn, naming it;
            # nothing was placed, and the name is still free.
            with pytest.raises(TypeError) as spawned:
                system.spawn(Peer, threading.Lock(), name="q", placement=actors.OnWorker("w1"))
            text = str(spawned.value)
            assert text.startswith("cannot start /user/q in another process: its factory ")
            assert "cannot be pickled: TypeError(\"cannot pickle '_thread.lock' object\")" in text
            assert info_of(system, "w1").actors == 1
            q = system.spawn(Peer, name="q", placement=actors.OnWorker("w1"))
            assert await q.ask("pid") == pid

            with pytest.raises(ValueError, match=r"^no worker named 'w9': this system has w1$"):
                system.spawn(Peer, name="r", placement=actors.OnWorker("w9"))
            with pytest.raises(TypeError, match=r"^placement must be None, actors.OnWorker"):
                system.spawn(Peer, name="r", placement="w1")  # type: ignore[arg-type]
            assert system.find("/user/r") is None

        async with actors.open_system("no-workers") as system:
            for placement in (actors.OnWorker("w1"), actors.AnyWorker()):
                expected = (
                    f"placement={placement!r} needs worker processes: open the system with "
                    "open_system(workers=...), and place actors from its root process"
                )
                with pytest.raises(ValueError, match=f"^{re.escape(expected)}$"):
                    system.spawn(Peer, name="p", placement=placement)
            assert system.workers() == []


# -- 8. bad input at a real socket, against the real worker program ---------------------------


class RawWorker:
    """``python -m actors._worker_main FD`` started by hand, on our own socket pair, with
    ``key`` in its environment; ``stream`` is our end."""

    def __init__(self, process: trio.Process, stream: trio.SocketStream, key: bytes) -> None:
        self.process = process
        self.stream = stream
        self.key = key

    @classmethod
    async def start(cls) -> RawWorker:
        key = secrets.token_bytes(32)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        env[KEY_ENV] = key.hex()
        try:
            process = await trio.lowlevel.open_process(
                [sys.executable, "-m", "actors._worker_main", str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                env=env,
                cwd=REPO,
                stderr=subprocess.PIPE,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return cls(process, trio.SocketStream(trio.socket.from_stdlib_socket(ours)), key)

    async def exit_status(self, within: float = LIMIT) -> int | None:
        """Its exit status once it exits (``None`` if it is still running after
        ``within`` seconds)."""
        with trio.move_on_after(within):
            await self.process.wait()
        return self.process.returncode

    async def stderr(self) -> str:
        """Everything it wrote on stderr (once it has exited)."""
        assert self.process.stderr is not None
        data = b""
        while chunk := await self.process.stderr.receive_some():
            data += chunk
        return data.decode()

    async def close(self) -> None:
        with trio.CancelScope(shield=True):
            await self.stream.aclose()
        await close_process(self.process)


class Planted:
    """Unpickling it creates the directory ``path``: the proof that a frame was
    unpickled."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.path),))


def planted_frame(marker: Path) -> bytes:
    payload = pickle.dumps(Planted(marker))
    return pack_header(len(payload)) + payload


@pytest.mark.workers
async def test_worker_refuses_a_peer_with_the_wrong_key_before_reading_a_frame(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "unpickled"
    worker = await RawWorker.start()
    try:
        with trio.fail_after(LIMIT):
            # Magic and challenge, a response made with another key, and at once a frame
            # that would leave a mark if it were ever unpickled.
            wrong = secrets.token_bytes(32)
            await worker.stream.send_all(MAGIC + secrets.token_bytes(CHALLENGE_SIZE))
            hello = await receive_exactly(worker.stream, len(MAGIC) + CHALLENGE_SIZE)
            assert hello.startswith(MAGIC)
            await worker.stream.send_all(wrong[:RESPONSE_SIZE] + planted_frame(marker))
            # It refuses (32 zero bytes), then exits with a failure status.
            assert await receive_exactly(worker.stream, RESPONSE_SIZE) == bytes(RESPONSE_SIZE)
            status = await worker.exit_status()
            assert status is not None
            assert status != 0
            errors = await worker.stderr()
        assert (
            "handshake on link root failed: the peer's response does not match: the peer "
            "does not hold this system's key" in errors
        )
        assert not marker.exists()
    finally:
        await worker.close()


@pytest.mark.workers
async def test_worker_refuses_garbage_instead_of_a_handshake(tmp_path: Path) -> None:
    marker = tmp_path / "unpickled"
    worker = await RawWorker.start()
    try:
        with trio.fail_after(LIMIT):
            garbage = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".ljust(len(MAGIC) + CHALLENGE_SIZE)
            await worker.stream.send_all(garbage + planted_frame(marker))
            status = await worker.exit_status()
            assert status is not None
            assert status != 0
            errors = await worker.stderr()
        assert (
            "handshake on link root failed: not a trio-actors peer (or another version)" in errors
        )
        assert not marker.exists()
    finally:
        await worker.close()


@pytest.mark.workers
async def test_refused_worker_says_why_in_one_line_not_a_traceback() -> None:
    worker = await RawWorker.start()
    try:
        with trio.fail_after(LIMIT), pytest.raises(actors.ActorError):
            await handshake(worker.stream, secrets.token_bytes(32), initiator=True)
        with trio.fail_after(LIMIT):
            assert await worker.exit_status() not in (None, 0)
            errors = await worker.stderr()
        assert "Traceback" not in errors
        assert "does not hold this system's key" in errors
    finally:
        await worker.close()


@pytest.mark.workers
async def test_worker_closes_the_link_on_an_oversized_frame_and_exits() -> None:
    worker = await RawWorker.start()
    try:
        with trio.fail_after(LIMIT):
            await handshake(worker.stream, worker.key, initiator=True)
            await worker.stream.send_all(pack_header(MAX_FRAME + 1) + b"x" * 64)
            # It closes its end: we read end of stream.
            assert await worker.stream.receive_some() == b""
        # It exits at once, without waiting out its timeout for a hello.
        status = await worker.exit_status(within=LIMIT)
        assert status is not None
        assert status != 0
        with trio.fail_after(LIMIT):
            errors = await worker.stderr()
        assert (
            f"announced a frame of {MAX_FRAME + 1} bytes, over the limit of {MAX_FRAME} bytes"
            in errors
        )
    finally:
        await worker.close()


async def receive_exactly(stream: trio.SocketStream, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = await stream.receive_some(size - len(data))
        assert chunk, f"end of stream after {len(data)} of {size} bytes"
        data += chunk
    return data
