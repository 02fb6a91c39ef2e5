"""The trio-task supervisor: plain trio tasks started, stopped and restarted OTP-style.

Every test runs on trio's virtual clock (``autojump_clock``): times in the logs are exact.
"""

from __future__ import annotations

import random
from collections.abc import Hashable
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from supervision import (
    BRUTAL,
    AutoShutdown,
    Backoff,
    ChildCounts,
    ChildInfo,
    ChildSpec,
    Directive,
    OneForAll,
    OneForOne,
    Restart,
    RestartIntensity,
    RestForOne,
    Strategy,
    TaskSupervisor,
    TooManyRestarts,
    decider_from,
    listen_for_stop,
    open_supervisor,
)

# -- helpers ----------------------------------------------------------------------------------

Log = list[tuple[str, Hashable, float]]


@attrs.define
class Kid:
    """A child task that logs ``(event, name, time)``: ``start`` when called, ``end`` when
    its task ends. It takes ``boot`` seconds to report started; its first ``fails`` runs
    raise ``error`` ``after`` seconds after starting; ``start_fails`` first runs raise
    before reporting started. Then it returns after ``lifetime`` seconds if that is
    set, else runs until stopped: a ``listen``ing kid calls :func:`stop_requested`, logs
    ``asked`` and takes ``cleanup`` seconds to end (``cleanup=None``: it ignores the
    request)."""

    log: Log
    name: str
    boot: float = 0.0
    fails: int = 0
    after: float = 1.0
    error: type[BaseException] = ValueError
    start_fails: int = 0
    listen: bool = False
    cleanup: float | None = 0.0
    lifetime: float | None = None
    runs: int = 0
    raised: list[BaseException] = attrs.field(factory=list)

    async def __call__(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        self.runs += 1
        run = self.runs
        self.log.append(("start", self.name, trio.current_time()))
        try:
            if self.boot:
                await trio.sleep(self.boot)
            if run <= self.start_fails:
                raise OSError(f"{self.name} cannot start")
            task_status.started(run)
            if run - self.start_fails <= self.fails:
                await trio.sleep(self.after)
                error = self.error(f"{self.name} run {run}")
                self.raised.append(error)
                raise error
            if self.lifetime is not None:
                await trio.sleep(self.lifetime)
                return
            if not self.listen:
                await trio.sleep_forever()
            await listen_for_stop().wait()
            self.log.append(("asked", self.name, trio.current_time()))
            if self.cleanup is None:
                await trio.sleep_forever()
            await trio.sleep(self.cleanup)
        finally:
            self.log.append(("end", self.name, trio.current_time()))

    def spec(self, **kwargs: Any) -> ChildSpec:
        return ChildSpec(self.name, self, **kwargs)


def kids(log: Log, *names: str, **kwargs: Any) -> list[Kid]:
    return [Kid(log, name, **kwargs) for name in names]


def specs(*children: Kid) -> list[ChildSpec]:
    return [kid.spec() for kid in children]


def events(log: Log, since: float = 0.0) -> list[tuple[str, Hashable]]:
    return [(event, name) for event, name, at in log if at >= since]


def supervised_tasks() -> list[str]:
    """Names of the supervised child tasks still alive anywhere in this run."""
    found: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        if task.name.startswith("supervised child"):
            found.append(task.name)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    root = trio.lowlevel.current_root_task()
    assert root is not None
    walk(root)
    return found


# -- starting and stopping ---------------------------------------------------------------------


async def test_children_start_in_order_and_stop_in_reverse(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    a, b, c = kids(log, "a", "b", "c", boot=1.0)
    async with open_supervisor(children=specs(a, b, c)) as sup:
        # Each starts once the previous one reported started; entering waits for all.
        assert log == [("start", "a", 0.0), ("start", "b", 1.0), ("start", "c", 2.0)]
        assert trio.current_time() == 3.0
        assert supervised_tasks() != []
        assert sup.running
        await trio.sleep(1)
    assert events(log, since=4.0) == [("end", "c"), ("end", "b"), ("end", "a")]
    assert not sup.running
    assert supervised_tasks() == []


async def test_run_in_the_users_nursery(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    a, b = kids(log, "a", "b", boot=0.5)
    sup = TaskSupervisor(OneForOne(), specs(a, b))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        assert trio.current_time() == 1.0
        assert sup.count_children() == ChildCounts(specs=2, active=2)
        await sup.stop()
        assert events(log, since=1.0) == [("end", "b"), ("end", "a")]
    await sup.stop()  # not running any more: nothing to do


@pytest.mark.parametrize(
    ("strategy", "after_failure"),
    [
        (OneForOne(), [("end", "b"), ("start", "b")]),
        (
            OneForAll(),
            [*[("end", n) for n in "bdca"], *[("start", n) for n in "abcd"]],
        ),
        (
            RestForOne(),
            [*[("end", n) for n in "bdc"], *[("start", n) for n in "bcd"]],
        ),
    ],
    ids=["one_for_one", "one_for_all", "rest_for_one"],
)
async def test_each_strategy_restarts_the_right_tasks(
    autojump_clock: trio.abc.Clock, strategy: Strategy, after_failure: list[tuple[str, str]]
) -> None:
    log: Log = []
    a, b, c, d = kids(log, "a", "b", "c", "d")
    b.fails = 1
    async with open_supervisor(strategy, specs(a, b, c, d)):
        await trio.sleep(5)
        assert events(log, since=1.0) == after_failure
        assert b.runs == 2
    assert events(log, since=5.0) == [("end", "d"), ("end", "c"), ("end", "b"), ("end", "a")]


async def test_backoff_delays_restarts_on_trios_clock(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    (a,) = kids(log, "a", fails=3, after=0.0)
    strategy = OneForOne(
        intensity=RestartIntensity(10, 100.0),
        backoff=Backoff(min_delay=1.0, max_delay=10.0, jitter=0.0),
    )
    async with open_supervisor(strategy, [a.spec()]):
        await trio.sleep(20)
    assert [at for event, _, at in log if event == "start"] == [0.0, 1.0, 3.0, 7.0]


async def test_backoff_jitter_comes_from_the_seeded_rng(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    (a,) = kids(log, "a", fails=4, after=0.5)
    backoff = Backoff(min_delay=1.0, max_delay=3.0, jitter=0.5)
    strategy = OneForOne(intensity=RestartIntensity(10, 100.0), backoff=backoff)
    async with open_supervisor(strategy, [a.spec()], rng=random.Random(2024)):
        await trio.sleep(30)
    reference = random.Random(2024)
    expected = [0.0]
    for base in (1.0, 2.0, 3.0, 3.0):
        expected.append(expected[-1] + 0.5 + base * (1.0 + reference.random() * 0.5))
    starts = [at for event, _, at in log if event == "start"]
    assert starts == pytest.approx(expected)


async def test_exits_during_a_plan_wait_and_stale_ones_are_ignored(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: Log = []
    a, b, c = kids(log, "a", "b", "c")
    b.fails = c.fails = 1  # both fail at t=1: one group restart, not two
    strategy = OneForAll(
        intensity=RestartIntensity(max_restarts=1, within=100.0),
        backoff=Backoff(min_delay=2.0, jitter=0.0),
    )
    async with open_supervisor(strategy, specs(a, b, c)) as sup:
        await trio.sleep(10)
        assert (a.runs, b.runs, c.runs) == (2, 2, 2)
        assert [at for event, _, at in log if event == "start"][3:] == [3.0, 3.0, 3.0]
        assert sup.count_children().active == 3


async def test_an_exit_during_a_backoff_delay_waits_its_turn(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: Log = []
    a, b = kids(log, "a", "b", fails=1)
    b.after = 2.0  # a fails at 1 and waits until 3; b fails at 2, handled at 3, back at 5
    strategy = OneForOne(backoff=Backoff(min_delay=2.0, jitter=0.0))
    async with open_supervisor(strategy, specs(a, b)):
        await trio.sleep(10)
    assert [(n, at) for event, n, at in log if event == "start"] == [
        ("a", 0.0),
        ("b", 0.0),
        ("a", 3.0),
        ("b", 5.0),
    ]


# -- giving up and escalating ------------------------------------------------------------------


async def test_giving_up_stops_the_others_in_reverse_order_and_fails_run(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: Log = []
    a, b, c = kids(log, "a", "b", "c")
    c.fails = 100
    sup = TaskSupervisor(OneForOne(intensity=RestartIntensity(2, 10.0)), specs(a, b, c))
    with pytest.raises(TooManyRestarts) as info:
        await sup.run()
    gave_up = info.value
    assert gave_up.child == "c"
    assert gave_up.error is c.raised[-1]
    assert gave_up.__cause__ is c.raised[-1]
    assert c.runs == 3
    assert trio.current_time() == 3.0
    assert events(log, since=3.0) == [("end", "c"), ("end", "b"), ("end", "a")]
    assert [info.running for info in sup.which_children()] == [False, False, False]


async def test_escalate_fails_run_with_the_childs_own_error(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    a, b = kids(log, "a", "b")
    b.fails, b.error = 1, KeyError
    strategy = OneForOne(decider=decider_from({KeyError: Directive.ESCALATE}))
    with pytest.raises(KeyError) as info:
        await TaskSupervisor(strategy, specs(a, b)).run()
    assert info.value is b.raised[0]
    assert events(log, since=1.0) == [("end", "b"), ("end", "a")]


async def test_open_supervisor_raises_the_error_itself_and_cancels_the_block(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: Log = []
    (a,) = kids(log, "a", fails=100)
    reached: list[float] = []

    async def block() -> None:
        async with open_supervisor(OneForOne(intensity=RestartIntensity(1, 10.0)), [a.spec()]):
            await trio.sleep_forever()
        reached.append(trio.current_time())

    with pytest.raises(TooManyRestarts):  # as it is, not in an exception group
        await block()
    assert reached == []
    assert trio.current_time() == 2.0


async def test_resume_restarts_the_task_alone_at_once_and_counts(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: Log = []
    a, b, c = kids(log, "a", "b", "c")
    b.fails, b.error = 100, KeyError
    strategy = OneForAll(
        decider=decider_from({KeyError: Directive.RESUME}),
        intensity=RestartIntensity(2, 10.0),
        backoff=Backoff(min_delay=5.0),
    )
    with pytest.raises(TooManyRestarts):
        await TaskSupervisor(strategy, specs(a, b, c)).run()
    # b ran at 0, 1 and 2 (no backoff delay, no sibling touched); its third failure at 3
    # is one restart too many.
    assert [(n, at) for event, n, at in log if event == "start"] == [
        ("a", 0.0),
        ("b", 0.0),
        ("c", 0.0),
        ("b", 1.0),
        ("b", 2.0),
    ]
    assert (a.runs, c.runs) == (1, 1)


@pytest.mark.parametrize("fatal", [KeyboardInterrupt, SystemExit])
async def test_a_base_exception_from_a_child_is_never_absorbed(
    autojump_clock: trio.abc.Clock, fatal: type[BaseException]
) -> None:
    log: Log = []
    a, b, c = kids(log, "a", "b", "c", listen=True, cleanup=5.0)
    b.fails, b.error = 1, fatal
    # Even a decider that says "restart" to anything cannot absorb it.
    strategy = OneForOne(decider=lambda _: Directive.RESTART)
    sup = TaskSupervisor(strategy, specs(a, b, c))
    with pytest.raises(fatal) as info:
        await sup.run()
    assert info.value is b.raised[0]
    assert b.runs == 1
    # The others are cancelled at once, not asked to stop.
    assert sorted(events(log, since=1.0)) == [("end", "a"), ("end", "b"), ("end", "c")]
    assert trio.current_time() == 1.0
    assert supervised_tasks() == []


# -- stop protocol ------------------------------------------------------------------------------


async def test_shutdown_brutal_deadline_and_plain_tasks(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    polite = Kid(log, "polite", listen=True, cleanup=0.5)
    deaf = Kid(log, "deaf", listen=True, cleanup=None)
    plain = Kid(log, "plain")
    rough = Kid(log, "rough", listen=True, cleanup=0.5)
    children = [
        polite.spec(shutdown=2.0),
        deaf.spec(shutdown=2.0),
        plain.spec(shutdown=5.0),
        rough.spec(shutdown=BRUTAL),
    ]
    async with open_supervisor(children=children):
        await trio.sleep(1)
    assert [entry for entry in log if entry[0] != "start"] == [
        ("end", "rough", 1.0),  # BRUTAL: cancelled at once although it listens
        ("end", "plain", 1.0),  # never called listen_for_stop(): cancelled at once
        ("asked", "deaf", 1.0),
        ("end", "deaf", 3.0),  # ignored the request: cancelled at the deadline, exactly
        ("asked", "polite", 3.0),
        ("end", "polite", 3.5),  # cleaned up and ended by itself
    ]


async def test_stop_requested_works_in_the_childs_own_tasks(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: Log = []

    async def helper() -> None:
        await listen_for_stop().wait()
        await trio.sleep(0.5)
        log.append(("end", "helper", trio.current_time()))

    async def child(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(helper)
            task_status.started()

    async with open_supervisor(children=[ChildSpec("c", child, shutdown=2.0)]):
        await trio.sleep(1)
    assert log == [("end", "helper", 1.5)]


async def test_an_exception_group_of_exceptions_is_a_failure(
    autojump_clock: trio.abc.Clock,
) -> None:
    runs: list[float] = []

    async def child(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        runs.append(trio.current_time())
        task_status.started()
        async with trio.open_nursery():
            await trio.sleep(1)
            raise ValueError("inside")

    sup = TaskSupervisor(OneForOne(intensity=RestartIntensity(1, 10.0)), [ChildSpec("c", child)])
    with pytest.raises(TooManyRestarts) as info:
        await sup.run()
    assert runs == [0.0, 1.0]
    assert isinstance(info.value.error, ExceptionGroup)


async def test_stop_requested_outside_a_supervised_task() -> None:
    with pytest.raises(RuntimeError, match="only available inside a task run by a supervisor"):
        listen_for_stop()


async def test_leaving_the_block_with_an_error_stops_children_gracefully_first(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: Log = []
    a, b = kids(log, "a", "b", listen=True, cleanup=1.0)

    async def block() -> None:
        async with open_supervisor(children=specs(a, b)):
            await trio.sleep(1)
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):  # as it is, not in an exception group
        await block()
    assert events(log, since=1.0) == [("asked", "b"), ("end", "b"), ("asked", "a"), ("end", "a")]
    assert trio.current_time() == 3.0


async def test_cancelled_from_outside_cancels_every_child(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    a, b = kids(log, "a", "b", listen=True, cleanup=1.0)
    c = Kid(log, "c", fails=100, after=0.0)  # restarting after a backoff delay when cancelled
    strategy = OneForOne(intensity=RestartIntensity(10, 100.0), backoff=Backoff(jitter=0.0))
    with trio.move_on_after(2) as scope:
        async with open_supervisor(strategy, specs(a, b, c)):
            await trio.sleep_forever()
    assert scope.cancelled_caught
    assert sorted(entry for entry in log if entry[2] == 2.0) == [
        ("end", "a", 2.0),
        ("end", "b", 2.0),
    ]
    assert supervised_tasks() == []


async def test_cancelled_from_outside_around_run(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    sup = TaskSupervisor(children=specs(*kids(log, "a", "b")))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    assert sorted(events(log, since=1.0)) == [("end", "a"), ("end", "b")]
    assert not sup.running
    assert supervised_tasks() == []


async def test_auto_shutdown_ends_run_normally(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    a = Kid(log, "a")
    job = Kid(log, "job", fails=2, after=1.0, lifetime=2.0)
    sup = TaskSupervisor(
        children=[a.spec(), job.spec(restart=Restart.TRANSIENT, significant=True)],
        auto_shutdown=AutoShutdown.ANY_SIGNIFICANT,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(0.5)
        await sup.terminate_child("job")  # stopped on purpose: no shutdown
        await sup.restart_child("job")
        await sup.wait_stopped()
        assert not sup.running
    # Run 2 failed at 1.5 and was restarted (a failure: no shutdown); run 3 ended
    # normally at 3.5, which ended the supervisor.
    assert job.runs == 3
    assert [entry for entry in log if entry[0] == "end"] == [
        ("end", "job", 0.5),
        ("end", "job", 1.5),
        ("end", "job", 3.5),
        ("end", "a", 3.5),
    ]


async def test_all_significant_waits_for_the_last_one(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    a, b = kids(log, "a", "b")
    children = [
        a.spec(),
        Kid(log, "job1", lifetime=1.0).spec(restart=Restart.TEMPORARY, significant=True),
        Kid(log, "job2", lifetime=2.0).spec(restart=Restart.TRANSIENT, significant=True),
        b.spec(),
    ]
    async with open_supervisor(
        children=children, auto_shutdown=AutoShutdown.ALL_SIGNIFICANT
    ) as sup:
        await trio.sleep(1.5)
        assert sup.running
        assert [info.id for info in sup.which_children()] == ["a", "job2", "b"]
        await sup.wait_stopped()
        assert trio.current_time() == 2.0
    assert events(log, since=2.0) == [("end", "job2"), ("end", "b"), ("end", "a")]


# -- failed starts ------------------------------------------------------------------------------


async def test_failed_starts_count_towards_intensity(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    (a,) = kids(log, "a", start_fails=100)
    sup = TaskSupervisor(OneForOne(intensity=RestartIntensity(3, 5.0)), [a.spec()])
    async with trio.open_nursery() as nursery:
        with pytest.raises(TooManyRestarts) as info:
            await nursery.start(sup.run)
    assert a.runs == 4
    assert isinstance(info.value.error, OSError)


async def test_a_child_that_never_reports_started_is_a_failed_start() -> None:
    calls = []

    async def forgetful(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        calls.append(1)

    sup = TaskSupervisor(OneForOne(intensity=RestartIntensity(1, 5.0)), [ChildSpec("f", forgetful)])
    with pytest.raises(TooManyRestarts) as info:
        await sup.run()
    assert len(calls) == 2
    assert isinstance(info.value.error, RuntimeError)


async def test_a_failed_start_in_the_middle_still_starts_the_rest(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: Log = []
    a, b, c = kids(log, "a", "b", "c")
    b.start_fails = 1
    async with open_supervisor(OneForAll(), specs(a, b, c)) as sup:
        assert events(log) == [
            ("start", "a"),
            ("start", "b"),
            ("end", "b"),
            ("end", "a"),
            ("start", "a"),
            ("start", "b"),
            ("start", "c"),
        ]
        assert sup.count_children() == ChildCounts(specs=3, active=3)


async def test_a_restart_that_fails_to_start_is_retried_with_backoff(
    autojump_clock: trio.abc.Clock,
) -> None:
    attempts: list[float] = []

    async def flaky(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        attempts.append(trio.current_time())
        if len(attempts) == 1:
            task_status.started()
            await trio.sleep(1)
            raise ValueError("crash")
        if len(attempts) < 4:
            raise OSError("port busy")
        task_status.started()
        await trio.sleep_forever()

    strategy = OneForOne(intensity=RestartIntensity(5, 100.0), backoff=Backoff(jitter=0.0))
    async with open_supervisor(strategy, [ChildSpec("flaky", flaky)]) as sup:
        await trio.sleep(10)
        assert [info.running for info in sup.which_children()] == [True]
    assert attempts == pytest.approx([0.0, 1.1, 1.3, 1.7])


# -- the API ------------------------------------------------------------------------------------


async def test_which_and_count_children(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    a, t = kids(log, "a", "t")
    sup = TaskSupervisor(children=[a.spec(), t.spec(restart="transient", significant=True)])
    before = sup.which_children()
    assert before == [
        ChildInfo("a", False, Restart.PERMANENT, False),
        ChildInfo("t", False, Restart.TRANSIENT, True),
    ]
    assert sup.count_children() == ChildCounts(specs=2, active=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        assert [info.running for info in sup.which_children()] == [True, True]
        assert sup.count_children() == ChildCounts(2, 2)
        await sup.terminate_child("t")
        assert sup.which_children()[1] == ChildInfo("t", False, Restart.TRANSIENT, True)
        assert sup.count_children() == ChildCounts(2, 1)
        await sup.stop()


async def test_start_child(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    a, b = kids(log, "a", "b")
    async with open_supervisor(children=[a.spec()]) as sup:
        assert await sup.start_child(b.spec()) == 1  # what it passed to task_status.started
        assert [info.id for info in sup.which_children()] == ["a", "b"]
        with pytest.raises(ValueError, match="a child with id 'b' already exists"):
            await sup.start_child(Kid(log, "b").spec())
        with pytest.raises(TypeError, match="ChildSpec"):
            await sup.start_child("c")  # type: ignore[arg-type]
        broken = Kid(log, "broken", start_fails=1)
        with pytest.raises(OSError, match="broken cannot start"):
            await sup.start_child(broken.spec())
        assert [info.id for info in sup.which_children()] == ["a", "b"]  # forgotten
        # The child added last is stopped first.
        await trio.sleep(1)
    assert events(log, since=1.0) == [("end", "b"), ("end", "a")]


async def test_terminate_child(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    a, b = kids(log, "a", "b", listen=True, cleanup=0.5)
    tmp = Kid(log, "tmp")
    children = [a.spec(), b.spec(), tmp.spec(restart=Restart.TEMPORARY)]
    async with open_supervisor(children=children) as sup:
        await sup.terminate_child("b")  # per its shutdown spec: asked, then ended
        assert trio.current_time() == 0.5
        assert events(log)[-2:] == [("asked", "b"), ("end", "b")]
        await trio.sleep(10)
        assert b.runs == 1  # not restarted, although permanent
        assert [(i.id, i.running) for i in sup.which_children()] == [
            ("a", True),
            ("b", False),
            ("tmp", True),
        ]
        await sup.terminate_child("b")  # not running: nothing to do
        await sup.terminate_child("tmp")
        assert [info.id for info in sup.which_children()] == ["a", "b"]  # temporary: forgotten
        with pytest.raises(KeyError, match="unknown child id 'tmp'"):
            await sup.terminate_child("tmp")


async def test_restart_child(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    a, b = kids(log, "a", "b")
    async with open_supervisor(children=[a.spec(), b.spec()]) as sup:
        with pytest.raises(RuntimeError, match="child 'a' is already running"):
            await sup.restart_child("a")
        with pytest.raises(KeyError, match="unknown child id 'x'"):
            await sup.restart_child("x")
        await sup.terminate_child("b")
        b.start_fails = 2  # its next start fails: the caller gets the error, the spec stays
        with pytest.raises(OSError, match="b cannot start"):
            await sup.restart_child("b")
        assert [(i.id, i.running) for i in sup.which_children()] == [("a", True), ("b", False)]
        assert await sup.restart_child("b") == 3  # what it passed to task_status.started
        await sup.terminate_child("a")
        assert await sup.restart_child("a") == 2
        assert sup.count_children().active == 2
        await trio.sleep(1)
    # a was started last, yet stops last: the stop order is the reverse of the spec order.
    assert events(log, since=1.0) == [("end", "b"), ("end", "a")]


async def test_delete_child(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    a, b = kids(log, "a", "b")
    async with open_supervisor(children=[a.spec(), b.spec()]) as sup:
        with pytest.raises(RuntimeError, match="child 'a' is running; terminate it"):
            sup.delete_child("a")
        with pytest.raises(KeyError, match="unknown child id 'zz'"):
            sup.delete_child("zz")
        await sup.terminate_child("a")
        sup.delete_child("a")
        assert [info.id for info in sup.which_children()] == ["b"]
        with pytest.raises(KeyError):
            await sup.restart_child("a")
        await sup.start_child(Kid(log, "a").spec())  # the id is free again
        assert [info.id for info in sup.which_children()] == ["b", "a"]


async def test_calls_wait_for_a_restart_in_progress(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    a, b = kids(log, "a", "b")
    b.fails = 1
    strategy = OneForOne(backoff=Backoff(min_delay=4.0, jitter=0.0))
    async with open_supervisor(strategy, specs(a, b)) as sup:
        await trio.sleep(2)  # b failed at 1 and waits until 5 to restart
        with pytest.raises(RuntimeError, match="child 'b' is being restarted"):
            sup.delete_child("b")
        assert sup.which_children()[1].running is False
        await sup.terminate_child("a")  # handled once the restart is done
        assert trio.current_time() == 5.0
        assert sup.which_children()[1].running is True


async def test_calls_need_a_running_supervisor(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    (a,) = kids(log, "a")
    sup = TaskSupervisor(children=[a.spec()])
    with pytest.raises(RuntimeError, match="not running"):
        await sup.start_child(Kid(log, "b").spec())
    with pytest.raises(RuntimeError, match="not running"):
        await sup.terminate_child("a")
    with pytest.raises(RuntimeError, match="not running"):
        sup.delete_child("a")
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        with pytest.raises(RuntimeError, match="already running"):
            await sup.run()
        await sup.stop()
    with pytest.raises(RuntimeError, match="not running"):
        await sup.restart_child("a")


async def test_a_call_still_queued_when_the_supervisor_ends_fails(
    autojump_clock: trio.abc.Clock,
) -> None:
    log: Log = []
    a, b = kids(log, "a", "b")
    b.fails = 1
    sup = TaskSupervisor(OneForOne(backoff=Backoff(min_delay=8.0, jitter=0.0)), specs(a, b))
    errors: list[str] = []

    async def terminate_a() -> None:
        try:
            await sup.terminate_child("a")
        except RuntimeError as error:
            errors.append(str(error))

    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(2)  # b waits for its restart until 9
        nursery.start_soon(terminate_a)
        await trio.testing.wait_all_tasks_blocked()
        await sup.stop()
    assert errors == ["the supervisor stopped before handling this call"]
    assert trio.current_time() == 2.0


async def test_stop_abandons_a_pending_restart(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    a, b = kids(log, "a", "b")
    b.fails = 1
    sup = TaskSupervisor(OneForOne(backoff=Backoff(min_delay=100.0, max_delay=100.0)), specs(a, b))
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)
        await trio.sleep(2)
        await sup.stop()
        assert trio.current_time() == 2.0
    assert b.runs == 1
    assert events(log, since=1.0) == [("end", "b"), ("end", "a")]


async def test_each_run_starts_afresh(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    (a,) = kids(log, "a")
    sup = TaskSupervisor(OneForOne(intensity=RestartIntensity(1, 100.0)), [a.spec()])
    for _ in range(2):
        async with trio.open_nursery() as nursery:
            await nursery.start(sup.run)
            await sup.start_child(Kid(log, "extra").spec())
            assert sup.count_children() == ChildCounts(2, 2)
            await sup.stop()
    assert a.runs == 2


async def test_bad_children_are_refused() -> None:
    with pytest.raises(TypeError, match="ChildSpec"):
        TaskSupervisor(children=["a"])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="start must be an async function"):
        TaskSupervisor(children=[ChildSpec("a", start=42)])
    with pytest.raises(ValueError, match="already exists"):
        TaskSupervisor(children=[ChildSpec("a", start=print), ChildSpec("a", start=print)])
    with pytest.raises(TypeError, match="Strategy"):
        TaskSupervisor("one_for_one")  # type: ignore[arg-type]


# -- nesting ------------------------------------------------------------------------------------


async def test_a_supervisor_can_supervise_another(autojump_clock: trio.abc.Clock) -> None:
    log: Log = []
    x, y = kids(log, "x", "y", listen=True, cleanup=1.0)
    inner = TaskSupervisor(OneForOne(intensity=RestartIntensity(1, 100.0)), specs(x, y))
    z = Kid(log, "z")
    children = [ChildSpec("inner", inner.run, shutdown=10.0), z.spec()]
    async with open_supervisor(children=children) as outer:
        assert inner.running
        y.fails = 3  # its runs 2 and 3 fail: the inner supervisor gives up at 3
        await inner.terminate_child("y")
        await inner.restart_child("y")
        await trio.sleep(4)
        # The outer supervisor restarted the inner one at 4, with x and y afresh.
        assert [(n, at) for event, n, at in log if event == "start"][-2:] == [
            ("x", 4.0),
            ("y", 4.0),
        ]
        assert (x.runs, y.runs) == (2, 4)
        assert outer.count_children() == ChildCounts(2, 2)
        assert inner.count_children() == ChildCounts(2, 2)
    # Leaving: z is cancelled, then the inner supervisor is asked to stop and stops its
    # own children in reverse order, each asked in turn.
    assert log[-5:] == [
        ("end", "z", 5.0),
        ("asked", "y", 5.0),
        ("end", "y", 6.0),
        ("asked", "x", 6.0),
        ("end", "x", 7.0),
    ]
    assert not inner.running
