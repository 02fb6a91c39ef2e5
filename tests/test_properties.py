"""Property tests: random operation sequences against a real actor system.

``test_random_traffic_keeps_the_global_invariants`` spawns a random tree of actors (random
mailbox, overflow policy, throughput, sync or async receive) that watch each other, and
lets several sender tasks ``tell`` / ``send`` / ``ask`` numbered messages to them while a
controller task stops them (``stop``, ``PoisonPill``, ``graceful_stop``) and makes them
watch and unwatch each other. A message may make its handler fail, be declared unhandled,
be stashed, unstash the stash, make the actor tell another actor a message, or be slow
enough to be cancelled by the stop deadline. Every supervisor has a ``STOP`` strategy, so a
failure stops the actor (as a stop with a reason; restarts are tested elsewhere), a
``TestProbe`` watches every actor, and ``open_system`` must not raise. On virtual time, it
checks:

1. conservation: every message accepted by ``tell`` / ``send`` is processed by exactly one
   handler invocation (after at most one stash) or reported by exactly one ``DeadLetter``
   with a reason that fits its fate and its mailbox; a refused one left no trace;
   ``dead_letter_count`` equals the ``DeadLetter`` events recorded;
2. every ``ask`` ends with exactly one outcome that fits what the handler did, and a late
   reply is exactly one ``ask_expired`` dead letter;
3. per (sender, receiver) FIFO of first processing (senders are tasks and actors);
4. death watch: ``Terminated`` at most once per watch, never after ``unwatch``, with the
   right ``existence_confirmed`` and ``reason``, after every message the dead actor sent
   to the watcher; exactly once for the probe, and for every watcher still alive once the
   system is quiescent;
5. the system shuts down without error and ``post_stop`` ran exactly once for every actor
   that started (after all its messages, and after its children's).

``test_failures_and_their_directives_match_a_model`` runs sequential operations (tell,
failing messages, PoisonPill, stop, graceful_stop, overflowing bounded mailboxes, watch /
unwatch by a guard actor that the test can keep busy) separated by settle points where
everything is quiescent, against an exact model of the documented semantics. Each
top-level actor gets its own directive from ``/user`` when it fails (a handler's error, or
an overflow under ``fail``): ``RESUME`` and ``RESTART`` keep it and its mailbox (a restart
runs ``post_stop`` and ``pre_start`` again), ``STOP`` stops it with the error as reason,
``ESCALATE`` stops it and ends the system; an actor already asked to stop just stops with
the error. At every settle point it checks the guard's ``Terminated`` messages (only for
real stops, with the right reason) and every dead letter; ``MailboxFull`` is raised
exactly when predicted; ``UnhandledFailure`` is raised exactly when a failure was
escalated, listing exactly those failures, and the body is cancelled at that point;
``pre_start`` and ``post_stop`` ran as often as the model says.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import actors
import supervision
from actors import (
    ActorDead,
    ActorRef,
    AskTimeout,
    DeadLetter,
    DeadLetterReason,
    Mailbox,
    MailboxFull,
    MailboxOverflow,
    Overflow,
    PoisonPill,
    StashOverflow,
    Terminated,
    UnhandledFailure,
    UnhandledMessage,
)
from actors.testing import TestProbe

R = DeadLetterReason

PROPERTY_SETTINGS = settings(
    max_examples=100,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

STOP_TIMEOUT = 1.0
SLOW = 3.0  # an async "slow" handler outlives the stop deadline
RELAY = 1000  # Msg.sender of the messages actors tell each other


class Boom(Exception):
    def __init__(self, message: object) -> None:
        super().__init__(repr(message))
        self.message = message


STOP_ON_FAILURE = supervision.OneForOne(
    decider=supervision.decider_from({Exception: supervision.Directive.STOP})
)
"""Every supervisor stops a child that fails (rather than restarting it, the default)."""


# == random traffic ==========================================================================


@attrs.frozen
class Spec:
    capacity: int | None
    overflow: Overflow
    throughput: int
    is_async: bool
    delay: float
    parent: int | None

    @property
    def mailbox(self) -> Mailbox:
        return Mailbox(self.capacity, self.overflow)


@attrs.frozen
class SendOp:
    via: str  # tell, send, ask
    target: int
    kind: str  # ok, fail, unhandled, stash, unstash, slow, relay
    timeout: float
    pause: float | None  # sleep before the operation (None: no checkpoint)
    dest: int  # where a "relay" message makes its target tell a message


@attrs.frozen
class CtlOp:
    kind: str  # stop, poison, graceful, watch, unwatch
    a: int
    b: int
    pause: float | None


@attrs.frozen
class Plan:
    actors: list[Spec]
    watches: list[tuple[int, int]]  # (watcher, watched) set up before the traffic
    senders: list[list[SendOp]]
    controls: list[CtlOp]


@attrs.frozen
class Msg:
    sender: int  # a sender task, or RELAY + the actor that told it
    seq: int
    target: int
    kind: str
    via: str
    dest: int = -1


@attrs.frozen
class Reply:
    message: Msg


@attrs.define(eq=False)
class Invocation:
    outcome: str | None = None  # done, unhandled, stash, raise, cancelled
    error: BaseException | None = None


@attrs.define(eq=False)
class World:
    specs: list[Spec]
    refs: list[ActorRef] = attrs.Factory(list)
    guard: TestProbe | None = None
    invocations: dict[Msg, list[Invocation]] = attrs.Factory(dict)
    first: dict[tuple[int, int], list[int]] = attrs.Factory(dict)
    told: list[Msg] = attrs.Factory(list)
    refused: list[Msg] = attrs.Factory(list)
    asks: dict[Msg, Any] = attrs.Factory(dict)
    dead_letters: list[DeadLetter] = attrs.Factory(list)
    lifecycle: list[tuple[str, int]] = attrs.Factory(list)
    watch_log: dict[int, list[tuple[Any, ...]]] = attrs.Factory(lambda: defaultdict(list))

    def index(self, ref: ActorRef) -> int:
        return self.refs.index(ref)


class Recorder(actors.Actor):
    def __init__(self, log: list[DeadLetter]) -> None:
        self.log = log

    def receive(self, message: DeadLetter) -> None:
        self.log.append(message)


class Target(actors.Actor):
    stash_capacity = 2

    def __init__(self, world: World, idx: int) -> None:
        self.world = world
        self.idx = idx
        self.stashed: set[Msg] = set()
        self.relayed = itertools.count()

    def pre_start(self) -> None:
        self.world.lifecycle.append(("start", self.idx))

    def post_stop(self) -> None:
        self.world.lifecycle.append(("post_stop", self.idx))

    def control(self, message: Any) -> tuple[bool, Any]:
        """Handle a control message or ``Terminated``; ``(False, None)`` for a ``Msg``."""
        ctx = self.context
        log = self.world.watch_log[self.idx]
        match message:
            case Msg():
                return False, None
            case Terminated(ref=ref, error=reason, existence_confirmed=confirmed):
                log.append(("term", self.world.index(ref), confirmed, reason))
            case ("watch", ActorRef() as ref):
                if ref != ctx.ref:
                    alive = ctx.system.find(ref.path) == ref
                    ctx.watch(ref)
                    log.append(("watch", self.world.index(ref), alive))
            case ("unwatch", ActorRef() as ref):
                ctx.unwatch(ref)
                log.append(("unwatch", self.world.index(ref)))
            case ("spawn", int(idx)):
                spec = self.world.specs[idx]
                child = ctx.spawn(
                    target_class(spec),
                    self.world,
                    idx,
                    name=f"a{idx}",
                    mailbox=spec.mailbox,
                    throughput=spec.throughput,
                )
                assert self.world.guard is not None
                self.world.guard.watch(child)
                return True, child
            case _:
                raise AssertionError(f"unexpected message {message!r}")
        return True, None

    def begin(self, m: Msg) -> Invocation:
        assert m.target == self.idx, m
        invocations = self.world.invocations.setdefault(m, [])
        if not invocations:
            self.world.first.setdefault((m.sender, m.target), []).append(m.seq)
            if m.sender >= RELAY:
                self.world.watch_log[self.idx].append(("from", m.sender - RELAY))
        invocation = Invocation()
        invocations.append(invocation)
        self.world.lifecycle.append(("handle", self.idx))
        return invocation

    def act(self, m: Msg, invocation: Invocation) -> Any:
        try:
            if m.kind == "fail":
                raise Boom(m)
            if m.kind == "unhandled":
                self.unhandled(m)
                invocation.outcome = "unhandled"
                return None
            if m.kind == "stash" and m not in self.stashed:
                self.context.stash()
                self.stashed.add(m)
                invocation.outcome = "stash"
                return None
            if m.kind == "unstash":
                self.context.unstash_all()
            if m.kind == "relay":
                self.relay(m.dest)
        except Exception as exc:
            invocation.outcome = "raise"
            invocation.error = exc
            raise
        invocation.outcome = "done"
        return Reply(m)

    def relay(self, dest: int) -> None:
        m = Msg(RELAY + self.idx, next(self.relayed), dest, "ok", "tell")
        try:
            self.world.refs[dest].tell(m)
        except MailboxFull:
            self.world.refused.append(m)
        else:
            self.world.told.append(m)


class SyncTarget(Target):
    def receive(self, message: Any) -> Any:
        handled, result = self.control(message)
        if handled:
            return result
        return self.act(message, self.begin(message))


class AsyncTarget(Target):
    def __init__(self, world: World, idx: int) -> None:
        super().__init__(world, idx)
        self.delay = world.specs[idx].delay

    async def receive(self, message: Any) -> Any:
        handled, result = self.control(message)
        if handled:
            return result
        invocation = self.begin(message)
        try:
            await trio.sleep(SLOW if message.kind == "slow" else self.delay)
        except BaseException:
            invocation.outcome = "cancelled"
            raise
        return self.act(message, invocation)


def target_class(spec: Spec) -> type[Target]:
    return AsyncTarget if spec.is_async else SyncTarget


KINDS = [*["ok"] * 4, "fail", "unhandled", *["stash", "unstash", "relay"] * 2, "slow"]


@st.composite
def traffic_plans(draw: st.DrawFn) -> Plan:
    n = draw(st.integers(2, 5))
    specs: list[Spec] = []
    for i in range(n):
        specs.append(
            draw(
                st.builds(
                    Spec,
                    capacity=st.sampled_from([None, 1, 2, 3]),
                    overflow=st.sampled_from(list(Overflow)),
                    throughput=st.integers(1, 3),
                    is_async=st.booleans(),
                    delay=st.sampled_from([0.0, 0.01, 0.1]),
                    parent=st.none() if i == 0 else st.none() | st.integers(0, i - 1),
                )
            )
        )
    target = st.integers(0, n - 1)
    send_op = st.builds(
        SendOp,
        via=st.sampled_from(["tell", "tell", "send", "ask"]),
        target=target,
        kind=st.sampled_from(KINDS),
        timeout=st.sampled_from([0.05, 0.5, 2.0]),
        pause=st.sampled_from([None, None, None, 0.0, 0.02, 0.3]),
        dest=target,
    )
    ctl_op = st.builds(
        CtlOp,
        kind=st.sampled_from(["watch", "watch", "unwatch", "stop", "poison", "graceful"]),
        a=target,
        b=target,
        pause=st.sampled_from([None, 0.0, 0.05, 0.5, 1.5]),
    )
    senders = draw(st.lists(st.lists(send_op, min_size=4, max_size=20), min_size=1, max_size=4))
    controls = draw(st.lists(ctl_op, max_size=10))
    watches = draw(st.lists(st.tuples(target, target), max_size=2 * n))
    return Plan(specs, watches, senders, controls)


async def sender(world: World, s: int, ops: list[SendOp]) -> None:
    for seq, op in enumerate(ops):
        if op.pause is not None:
            await trio.sleep(op.pause)
        ref = world.refs[op.target]
        m = Msg(s, seq, op.target, op.kind, op.via, op.dest)
        if op.via == "tell":
            try:
                ref.tell(m)
            except MailboxFull:
                world.refused.append(m)
            else:
                world.told.append(m)
        elif op.via == "send":
            await ref.send(m)
            world.told.append(m)
        else:
            outcome: Any
            try:
                outcome = ("value", await ref.ask(m, timeout=op.timeout))
            except (
                Boom,
                StashOverflow,
                UnhandledMessage,
                AskTimeout,
                ActorDead,
                MailboxFull,
            ) as exc:
                outcome = exc
            assert m not in world.asks
            world.asks[m] = outcome


async def controller(system: actors.ActorSystem, world: World, ops: list[CtlOp]) -> None:
    for op in ops:
        if op.pause is not None:
            await trio.sleep(op.pause)
        a, b = world.refs[op.a], world.refs[op.b]
        try:
            if op.kind == "stop":
                system.stop(a)
            elif op.kind == "poison":
                a.tell(PoisonPill)
            elif op.kind == "graceful":
                await system.graceful_stop(a)
            else:
                a.tell((op.kind, b))
        except MailboxFull:
            pass


def alive(system: actors.ActorSystem, ref: ActorRef) -> bool:
    return system.find(ref.path) == ref


def check_told(world: World, m: Msg, invs: list[Invocation], dls: list[R]) -> None:
    spec = world.specs[m.target]
    outcomes = [inv.outcome for inv in invs]
    where = f"{m} handled {outcomes}, dead letters {dls}"
    assert all(o == "stash" for o in outcomes[:-1]), where
    assert outcomes.count("stash") <= 1, where
    last = outcomes[-1] if outcomes else None
    if last == "done":
        assert dls == [], where
    elif last == "unhandled":
        assert dls == [R.UNHANDLED], where
    elif last == "raise":
        assert dls == [R.FAILED], where
    elif last == "cancelled":
        assert dls == [R.STOPPED], where
    else:
        assert len(dls) == 1, where
        reason = dls[0]
        possible = {R.STOPPED}
        if spec.capacity is not None and spec.overflow is Overflow.DROP_OLDEST:
            possible.add(R.DROPPED_OLDEST)
        if last is None and m.via == "tell" and spec.capacity is not None:
            # A tell overflowing a full mailbox (drop_oldest refuses the newest only when
            # every place is promised to a waiting sender).
            possible |= {
                Overflow.DROP_NEWEST: {R.DROPPED_NEWEST},
                Overflow.DROP_OLDEST: {R.DROPPED_NEWEST},
                Overflow.FAIL: {R.MAILBOX_OVERFLOW},
                Overflow.BACKPRESSURE: set(),
            }[spec.overflow]
        assert reason in possible, where


def check_ask(
    world: World,
    m: Msg,
    outcome: Any,
    invs: list[Invocation],
    dls: list[R],
    expired: Counter[tuple[str, Any]],
) -> None:
    outcomes = [inv.outcome for inv in invs]
    where = f"{m} -> {outcome!r}; handled {outcomes}, dead letters {dls}"
    assert all(o == "stash" for o in outcomes[:-1]), where
    assert outcomes.count("stash") <= 1, where
    last = outcomes[-1] if outcomes else None
    if isinstance(outcome, tuple):
        assert outcome == ("value", Reply(m)), where
        assert last == "done", where
        assert dls == [], where
    elif isinstance(outcome, AskTimeout):
        if last is None or last == "stash":
            # Queued (or stashed) and given up on: dropped once the actor stopped or, from
            # a drop_oldest mailbox, evicted.
            spec = world.specs[m.target]
            allowed = [[R.STOPPED]]
            if spec.capacity is not None:
                if spec.overflow is Overflow.DROP_OLDEST:
                    allowed.append([R.DROPPED_OLDEST])
                if last is None:
                    allowed.append([])  # timed out waiting for room: never enqueued
            assert dls in allowed, where
        elif last == "cancelled":
            assert dls == [R.STOPPED], where
        elif last == "done":
            assert dls == [], where
            expired["reply", m] += 1
        elif last == "raise":
            assert dls == [], where
            expired["error", id(invs[-1].error)] += 1
        else:
            assert last == "unhandled", where
            assert dls == [R.UNHANDLED], where
            expired["unhandled", m.target] += 1
    elif isinstance(outcome, ActorDead):
        assert last in (None, "stash", "cancelled"), where
        assert dls == [], where
    elif isinstance(outcome, MailboxFull):
        spec = world.specs[m.target]
        assert spec.capacity is not None, where
        assert spec.overflow is Overflow.DROP_OLDEST, where
        assert last in (None, "stash"), where
        assert dls == [], where
    elif isinstance(outcome, UnhandledMessage):
        assert last == "unhandled", where
        assert dls == [R.UNHANDLED], where
    else:
        assert isinstance(outcome, Boom | StashOverflow), where
        assert last == "raise", where
        assert invs[-1].error is outcome, where
        assert dls == [], where


def check_conservation(world: World) -> None:
    by_message: dict[Msg, list[R]] = defaultdict(list)
    expired: Counter[tuple[str, Any]] = Counter()
    for letter in world.dead_letters:
        message = letter.message
        if isinstance(message, Msg):
            assert letter.recipient == world.refs[message.target], letter
            # Told by a sender task: no sender; relayed by an actor: that actor (the
            # implicit sender).
            relayed_by = message.sender - RELAY
            expected = world.refs[relayed_by] if relayed_by >= 0 else None
            assert letter.sender == expected, letter
            by_message[message].append(letter.reason)
        elif letter.reason is R.ASK_EXPIRED:
            # The reply of an ask whose caller gave up: sent by the replying actor, to it
            # (the caller passed no sender=).
            assert letter.sender == letter.recipient, letter
            if isinstance(message, Reply):
                expired["reply", message.message] += 1
            elif isinstance(message, UnhandledMessage):
                expired["unhandled", world.index(letter.sender)] += 1
            else:
                assert isinstance(message, Boom | StashOverflow), letter
                expired["error", id(message)] += 1
        else:
            assert (
                isinstance(message, Terminated)
                or message is PoisonPill
                or (isinstance(message, tuple) and message[0] in ("watch", "unwatch"))
            ), letter
    expected_expired: Counter[tuple[str, Any]] = Counter()
    invocations = dict(world.invocations)
    for m in world.told:
        check_told(world, m, invocations.pop(m, []), by_message.pop(m, []))
    for m in world.refused:
        assert m not in invocations, m
        assert m not in by_message, m
    for m, outcome in world.asks.items():
        invs = invocations.pop(m, [])
        check_ask(world, m, outcome, invs, by_message.pop(m, []), expected_expired)
    assert not invocations, f"handled, never sent: {list(invocations)}"
    assert not by_message, f"dead letters of messages never sent: {dict(by_message)}"
    assert expired == expected_expired


def check_fifo(world: World) -> None:
    for (s, t), seqs in world.first.items():
        assert seqs == sorted(set(seqs)), f"sender {s} -> actor {t} processed {seqs}"


def replay_watches(world: World, system: actors.ActorSystem | None) -> None:
    """Check each watcher's log; with ``system`` (quiescent), also that a live watcher has
    been told about every watched actor that is gone."""
    for w, log in world.watch_log.items():
        active: dict[int, bool] = {}  # watched -> alive at the time of watch
        gone: set[int] = set()  # actors whose Terminated this one processed
        for event in log:
            where = f"actor {w}: {event} after {log}"
            if event[0] == "watch":
                active.setdefault(event[1], event[2])
            elif event[0] == "unwatch":
                active.pop(event[1], None)
            elif event[0] == "from":
                assert event[1] not in gone, f"a message after its sender's Terminated: {where}"
            else:
                _, t, confirmed, _ = event
                assert t in active, f"Terminated without a watch: {where}"
                assert confirmed == active.pop(t), f"wrong existence_confirmed: {where}"
                gone.add(t)  # (its reason is checked against the guard's: check_guard)
        if system is not None and alive(system, world.refs[w]):
            for t in active:
                assert alive(system, world.refs[t]), (
                    f"actor {w} is alive and still watches actor {t}, which is gone, "
                    f"without a Terminated: {log}"
                )


def check_guard(world: World, terminated: list[Any]) -> None:
    count: Counter[int] = Counter()
    reasons: dict[int, BaseException | None] = {}
    for message in terminated:
        assert isinstance(message, Terminated), message
        assert message.existence_confirmed, message
        i = world.index(message.ref)
        count[i] += 1
        reasons[i] = message.error
    assert count == Counter(range(len(world.refs))), f"Terminated per actor: {count}"
    told = set(world.told)
    for i in range(len(world.refs)):
        failed = [
            inv.error
            for m, invs in world.invocations.items()
            if m.target == i and m in told
            for inv in invs
            if inv.outcome == "raise"
        ]
        assert len(failed) <= 1, (i, failed)
        reason = reasons[i]
        if failed:
            assert reason is failed[0], (i, reason, failed)
        elif reason is not None:
            assert isinstance(reason, MailboxOverflow), (i, reason)
            assert any(
                letter.reason is R.MAILBOX_OVERFLOW and letter.recipient == world.refs[i]
                for letter in world.dead_letters
            ), (i, reason)
        for w, log in world.watch_log.items():
            for event in log:
                if event[0] == "term" and event[1] == i:
                    if event[2]:
                        assert event[3] is reason, (w, event, reason)
                    else:  # watched when already gone: the error when still known
                        assert event[3] is None or event[3] is reason, (w, event, reason)


def check_lifecycle(world: World) -> None:
    events = world.lifecycle
    for i, spec in enumerate(world.specs):
        starts = events.count(("start", i))
        stops = [k for k, e in enumerate(events) if e == ("post_stop", i)]
        assert starts <= 1, i
        assert len(stops) == starts, f"actor {i}: started {starts}, post_stop {len(stops)}"
        if not stops:
            assert ("handle", i) not in events, f"actor {i} handled without starting"
            continue
        assert ("handle", i) not in events[stops[0] :], f"actor {i} handled after post_stop"
        if spec.parent is not None and ("post_stop", spec.parent) in events:
            assert stops[0] < events.index(("post_stop", spec.parent)), (
                f"actor {i} stopped after its parent {spec.parent}"
            )


@PROPERTY_SETTINGS
@given(plan=traffic_plans())
async def test_random_traffic_keeps_the_global_invariants(
    autojump_clock: trio.testing.MockClock, plan: Plan
) -> None:
    world = World(plan.actors)
    async with actors.open_system(
        "p", stop_timeout=STOP_TIMEOUT, supervisor_strategy=STOP_ON_FAILURE
    ) as system:
        recorder = system.spawn(Recorder, world.dead_letters, name="recorder")
        system.events.subscribe(recorder, DeadLetter)
        guard = world.guard = TestProbe(system, name="guard")
        for i, spec in enumerate(plan.actors):
            if spec.parent is None:
                ref = system.spawn(
                    target_class(spec),
                    world,
                    i,
                    name=f"a{i}",
                    mailbox=spec.mailbox,
                    throughput=spec.throughput,
                )
                guard.watch(ref)
            else:
                ref = await world.refs[spec.parent].ask(("spawn", i), timeout=10)
            world.refs.append(ref)
        for w, t in plan.watches:
            await world.refs[w].ask(("watch", world.refs[t]), timeout=10)

        with trio.fail_after(120):  # virtual time: an ask or send that hangs fails here
            async with trio.open_nursery() as nursery:
                for s, ops in enumerate(plan.senders):
                    nursery.start_soon(sender, world, s, ops)
                nursery.start_soon(controller, system, world, plan.controls)
        asked = sum(op.via == "ask" for ops in plan.senders for op in ops)
        assert len(world.asks) == asked

        await trio.sleep(30)  # every timeout, handler and stop deadline is over
        replay_watches(world, system)

        for i in reversed(range(len(plan.actors))):
            if plan.actors[i].parent is None:
                await system.graceful_stop(world.refs[i])
        await trio.sleep(30)
        assert not any(alive(system, ref) for ref in world.refs)
        assert system.dead_letter_count == len(world.dead_letters)
        replay_watches(world, None)
        check_fifo(world)
        terminated = [await guard.receive_message() for _ in range(guard.pending)]
        check_guard(world, terminated)
        check_conservation(world)
    check_lifecycle(world)


# == failures, directives and unhandled failures against a model =============================


@attrs.frozen
class FSpec:
    capacity: int | None
    overflow: Overflow
    guarded: bool
    directive: supervision.Directive  # what /user does when this actor fails


@attrs.frozen
class FMsg:
    target: int
    n: int
    fail: bool


class FWorld:
    def __init__(self) -> None:
        self.guard_ctx: actors.ActorContext | None = None
        self.guard_got: list[Any] = []
        self.release = trio.Event()
        self.released_for_good = False
        self.dead_letters: list[DeadLetter] = []
        self.raised: dict[int, Boom] = {}
        self.started: Counter[int] = Counter()
        self.post_stopped: Counter[int] = Counter()

    def release_guard(self, *, for_good: bool = False) -> None:
        self.released_for_good |= for_good
        self.release.set()
        self.release = trio.Event()


class Guard(actors.Actor):
    """Watches on the test's behalf; on "hold" it stays busy until the test releases it,
    so that ``Terminated`` messages wait in its mailbox meanwhile."""

    def __init__(self, world: FWorld) -> None:
        self.world = world
        world.guard_ctx = self.context

    async def receive(self, message: Any) -> None:
        if message == "hold":
            if not self.world.released_for_good:
                await self.world.release.wait()
        else:
            self.world.guard_got.append(message)


class Fragile(actors.Actor):
    def __init__(self, world: FWorld, idx: int) -> None:
        self.world = world
        self.idx = idx

    def pre_start(self) -> None:
        self.world.started[self.idx] += 1

    def post_stop(self) -> None:
        self.world.post_stopped[self.idx] += 1

    def receive(self, message: FMsg) -> None:
        assert message.target == self.idx
        if message.fail:
            error = self.world.raised[self.idx] = Boom(message)
            raise error


@attrs.define
class MActor:
    spec: FSpec
    state: str = "new"  # new, running, dead
    starts: int = 0  # pre_start calls: the first start, then one per restart
    stop_requested: bool = False
    queue: list[Any] = attrs.Factory(list)  # FMsg or ("pill", i)
    system_lane: list[str] = attrs.Factory(list)  # "stop", "fail"


class Model:
    """What the documented semantics say the runtime does, operation by operation;
    ``settle`` runs every actor until the whole system is quiescent."""

    def __init__(self, specs: list[FSpec]) -> None:
        self.actors = [MActor(spec) for spec in specs]
        # The guard's watches, and its mailbox: ("term", actor, reason, confirmed) or
        # ("hold",).
        self.watching = {i for i, spec in enumerate(specs) if spec.guarded}
        self.guard_mail: list[tuple[Any, ...]] = []
        self.guard_busy = False
        self.released_for_good = False
        self.dead_letters: Counter[tuple[Any, R]] = Counter()
        self.unhandled: list[tuple[int, Any]] = []  # failures escalated to /user

    def tell(self, i: int, item: Any) -> bool:
        """Returns whether ``tell`` raises ``MailboxFull``."""
        actor = self.actors[i]
        if actor.state == "dead":
            self.dead_letters[item, R.STOPPED] += 1
            return False
        capacity = actor.spec.capacity
        if capacity is None or len(actor.queue) < capacity:
            actor.queue.append(item)
            return False
        policy = actor.spec.overflow
        if policy is Overflow.BACKPRESSURE:
            return True
        if policy is Overflow.DROP_NEWEST:
            self.dead_letters[item, R.DROPPED_NEWEST] += 1
        elif policy is Overflow.DROP_OLDEST:
            self.dead_letters[actor.queue.pop(0), R.DROPPED_OLDEST] += 1
            actor.queue.append(item)
        else:
            self.dead_letters[item, R.MAILBOX_OVERFLOW] += 1
            actor.system_lane.append("fail")
        return False

    def stop(self, i: int) -> None:
        actor = self.actors[i]
        if actor.state != "dead" and not actor.stop_requested:
            actor.stop_requested = True
            actor.system_lane.append("stop")

    def watch(self, i: int) -> None:
        """A watch that is still on changes nothing; a watch of an actor that is gone
        gets its own Terminated at once, with existence_confirmed=False."""
        if i in self.watching:
            return
        self.watching.add(i)
        if self.actors[i].state == "dead":
            self.guard_mail.append(("term", i, None, False))

    def unwatch(self, i: int) -> None:
        """Ends the watch and withdraws its Terminated if one is queued."""
        self.watching.discard(i)
        self.guard_mail = [item for item in self.guard_mail if item[:2] != ("term", i)]

    def hold(self) -> None:
        self.guard_mail.append(("hold",))

    def release(self, *, for_good: bool = False) -> None:
        self.released_for_good |= for_good
        self.guard_busy = False

    def settle(self) -> list[tuple[int, Any, bool]]:
        """Returns the ``Terminated`` the guard gets: ``(actor, reason, confirmed)``."""
        for i, actor in enumerate(self.actors):
            if actor.state == "dead":
                continue
            if actor.state == "new":
                if actor.stop_requested:
                    self.die(i, None)  # stopped before its task ran: never constructed
                    continue
                actor.state = "running"
                actor.starts += 1
            if actor.system_lane:
                # The actor takes every system request at once: the first one decides.
                first = actor.system_lane[0]
                actor.system_lane.clear()
                if first == "stop":
                    self.die(i, None)
                    continue
                if not self.fail(i, "overflow"):
                    continue
            while actor.queue:
                item = actor.queue.pop(0)
                if isinstance(item, tuple):  # PoisonPill
                    self.die(i, None)
                    break
                if item.fail:
                    self.dead_letters[item, R.FAILED] += 1
                    if not self.fail(i, ("boom", item.n)):
                        break
        got = []
        while self.guard_mail and not self.guard_busy:
            item = self.guard_mail.pop(0)
            if item[0] == "hold":
                self.guard_busy = not self.released_for_good
            else:
                _, i, reason, confirmed = item
                self.watching.remove(i)  # the watch ends with its Terminated
                got.append((i, reason, confirmed))
        return got

    def fail(self, i: int, reason: Any) -> bool:
        """Actor ``i`` failed; returns whether it goes on with its mailbox (resumed, or
        restarted in place). An actor already asked to stop just stops, with the error
        as its reason: its supervisor is not asked."""
        actor = self.actors[i]
        directive = actor.spec.directive
        if actor.stop_requested:
            self.die(i, reason)
            return False
        if directive is supervision.Directive.RESUME:
            return True
        if directive is supervision.Directive.RESTART:
            actor.starts += 1  # pre_restart runs post_stop, post_restart runs pre_start
            return True
        if directive is supervision.Directive.ESCALATE:
            self.unhandled.append((i, reason))
        self.die(i, reason)
        return False

    def die(self, i: int, reason: Any) -> None:
        actor = self.actors[i]
        for item in actor.queue:
            self.dead_letters[item, R.STOPPED] += 1
        actor.queue.clear()
        actor.system_lane.clear()
        actor.state = "dead"
        if i in self.watching:  # the guard never stops before the end of the body
            self.guard_mail.append(("term", i, reason, True))


@st.composite
def failure_plans(draw: st.DrawFn) -> tuple[list[FSpec], list[tuple[str, int]]]:
    n = draw(st.integers(1, 4))
    specs = draw(
        st.lists(
            st.builds(
                FSpec,
                capacity=st.sampled_from([None, 1, 2, 3]),
                overflow=st.sampled_from(list(Overflow)),
                guarded=st.booleans(),
                directive=st.sampled_from(list(supervision.Directive)),
            ),
            min_size=n,
            max_size=n,
        )
    )
    kinds = [
        *["ok"] * 6,
        "flood",  # four "ok" in a row: overflows any bounded mailbox
        *["fail"] * 3,
        "poison",
        *["stop", "watch", "unwatch", "settle"] * 2,
        "graceful",
        "hold",
        "release",
    ]
    op = st.tuples(st.sampled_from(kinds), st.integers(0, n - 1))
    ops = draw(st.lists(op, min_size=8, max_size=40))
    if draw(st.sampled_from([True, True, True, False])):
        ops.insert(0, ("settle", 0))  # let the actors start first (or maybe not)
    return specs, ops


class FRecorder(actors.Actor):
    def __init__(self, world: FWorld) -> None:
        self.world = world

    def receive(self, message: DeadLetter) -> None:
        self.world.dead_letters.append(message)


def reason_key(world: FWorld, i: int, reason: BaseException | None) -> Any:
    if reason is None:
        return None
    if isinstance(reason, MailboxOverflow):
        return "overflow"
    assert isinstance(reason, Boom), reason
    assert world.raised[i] is reason, (i, reason)
    assert isinstance(reason.message, FMsg), reason
    return ("boom", reason.message.n)


def directive_per_actor(specs: list[FSpec]) -> supervision.Strategy:
    """How /user supervises the ``Fragile`` actors: each one's failures get the directive
    of its spec. No restart intensity limit: the order in which two actors fail within
    one settle is up to the scheduler, so giving up could not be predicted."""

    def decide(error: BaseException) -> supervision.Directive:
        if isinstance(error, Boom):
            assert isinstance(error.message, FMsg), error
            return specs[error.message.target].directive
        assert isinstance(error, MailboxOverflow), error
        return specs[int(error.path.removeprefix("/user/f"))].directive

    return supervision.OneForOne(
        decider=decide, intensity=supervision.RestartIntensity(max_restarts=1_000_000)
    )


@PROPERTY_SETTINGS
@given(plan=failure_plans())
async def test_failures_and_their_directives_match_a_model(
    plan: tuple[list[FSpec], list[tuple[str, int]]],
) -> None:
    specs, ops = plan
    world = FWorld()
    model = Model(specs)
    refs: list[ActorRef] = []
    numbers = itertools.count()
    settles = 0

    def terminated_key(message: Any) -> tuple[int, Any, bool]:
        assert isinstance(message, Terminated), message
        i = refs.index(message.ref)
        return i, reason_key(world, i, message.error), message.existence_confirmed

    def letter_key(letter: DeadLetter) -> tuple[Any, R]:
        message = letter.message
        if message is PoisonPill:
            return ("pill", refs.index(letter.recipient)), letter.reason
        assert isinstance(message, FMsg), letter
        assert letter.recipient == refs[message.target], letter
        return message, letter.reason

    async def settle(system: actors.ActorSystem, graceful: ActorRef | None = None) -> None:
        nonlocal settles
        expected = Counter(model.settle())
        before = len(world.guard_got)
        with trio.CancelScope(shield=True):  # let every actor finish even after a failure
            if graceful is not None:
                await system.graceful_stop(graceful)
            await trio.testing.wait_all_tasks_blocked()
        settles += 1
        got = Counter(map(terminated_key, world.guard_got[before:]))
        assert got == expected, f"settle {settles}: the guard got {got}, expected {expected}"
        assert Counter(map(letter_key, world.dead_letters)) == model.dead_letters
        assert system.dead_letter_count == model.dead_letters.total()
        await trio.lowlevel.checkpoint()  # raises Cancelled after an unhandled failure
        assert not model.unhandled, "the body went on after an unhandled failure"

    def tell(i: int, item: Any, message: Any) -> None:
        if model.tell(i, item):
            with pytest.raises(MailboxFull):
                refs[i].tell(message)
        else:
            refs[i].tell(message)

    failure: UnhandledFailure | None = None
    try:
        async with actors.open_system("f", guardian_strategy=directive_per_actor(specs)) as system:
            system.events.subscribe(system.spawn(FRecorder, world), DeadLetter)
            guard_ref = system.spawn(Guard, world, name="guard")
            await trio.testing.wait_all_tasks_blocked()
            guard = world.guard_ctx
            assert guard is not None
            for i, spec in enumerate(specs):
                mailbox = Mailbox(spec.capacity, spec.overflow)
                refs.append(system.spawn(Fragile, world, i, name=f"f{i}", mailbox=mailbox))
                if spec.guarded:
                    guard.watch(refs[i])
            end = [("release-for-good", 0), *[("stop", i) for i in range(len(specs))]]
            try:
                for op in [*ops, *end, ("settle", 0)]:
                    match op:
                        case ("ok" | "fail" as kind, i):
                            item = FMsg(i, next(numbers), kind == "fail")
                            tell(i, item, item)
                        case ("flood", i):
                            for _ in range(4):
                                item = FMsg(i, next(numbers), False)
                                tell(i, item, item)
                        case ("poison", i):
                            tell(i, ("pill", i), PoisonPill)
                        case ("stop", i):
                            model.stop(i)
                            system.stop(refs[i])
                        case ("graceful", i):
                            model.stop(i)
                            await settle(system, refs[i])
                        case ("watch", i):
                            model.watch(i)
                            guard.watch(refs[i])
                        case ("unwatch", i):
                            model.unwatch(i)
                            guard.unwatch(refs[i])
                        case ("hold", _):
                            model.hold()
                            guard_ref.tell("hold")
                        case ("release", _):
                            model.release()
                            world.release_guard()
                        case ("release-for-good", _):
                            model.release(for_good=True)
                            world.release_guard(for_good=True)
                        case ("settle", _):
                            await settle(system)
            finally:
                world.release_guard(for_good=True)  # do not hold up the shutdown
    except UnhandledFailure as exc:
        failure = exc

    if model.unhandled:
        assert failure is not None, f"expected UnhandledFailure for {model.unhandled}"
        got = sorted(
            (refs.index(ref), reason_key(world, refs.index(ref), error))
            for ref, error in failure.failures
        )
        assert got == sorted(model.unhandled)
        assert failure.__cause__ is failure.failures[0][1]
    else:
        assert failure is None
    for i, actor in enumerate(model.actors):
        assert world.started[i] == actor.starts, (i, world.started, actor)
        assert world.post_stopped[i] == world.started[i], (i, world.post_stopped)
