"""The pure restart engine of ``supervision``: plans for every exit, without any clock."""

from __future__ import annotations

import random
from collections.abc import Hashable, Sequence

import pytest

from supervision import (
    AutoShutdown,
    Backoff,
    ChildSpec,
    Directive,
    OneForAll,
    OneForOne,
    Plan,
    Restart,
    RestartEngine,
    RestartIntensity,
    RestForOne,
    Strategy,
    TooManyRestarts,
    decider_from,
)

# -- helpers ----------------------------------------------------------------------------------


def spec(
    child_id: str, restart: Restart = Restart.PERMANENT, significant: bool = False
) -> ChildSpec:
    return ChildSpec(child_id, start=object, restart=restart, significant=significant)


def engine_with(
    strategy: Strategy,
    children: Sequence[ChildSpec | str] = ("a", "b", "c", "d"),
    *,
    auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
    rng: random.Random | None = None,
    can_resume: bool = True,
) -> RestartEngine:
    """An engine whose children all started at time 0."""
    engine = RestartEngine(strategy, auto_shutdown, rng, can_resume=can_resume)
    for child in children:
        engine.add(spec(child) if isinstance(child, str) else child)
    for child_id in engine:
        engine.started(child_id, 0.0)
    return engine


def restart_all(engine: RestartEngine, plan: Plan, now: float) -> None:
    """What a driver does after a plan: report the children it started."""
    for child_id in plan.start:
        engine.started(child_id, now)


# -- strategies ---------------------------------------------------------------------------------


def test_one_for_one_restarts_the_failed_child_alone() -> None:
    engine = engine_with(OneForOne())
    error = ValueError("boom")
    plan = engine.exited("b", error, 1.0)
    assert plan == Plan("b", Directive.RESTART, start=("b",))
    assert not plan.ends_supervisor
    assert engine.running() == ["a", "c", "d"]
    engine.started("b", 1.0)
    assert engine.running() == ["a", "b", "c", "d"]
    assert engine.state("b").started_at == 1.0


def test_one_for_all_stops_the_others_in_reverse_order_and_restarts_all_in_order() -> None:
    engine = engine_with(OneForAll())
    plan = engine.exited("b", ValueError(), 1.0)
    assert plan.stop == ("d", "c", "a")
    assert plan.start == ("a", "b", "c", "d")
    assert engine.running() == []  # the engine already counts the stopped ones as stopped


def test_rest_for_one_restarts_the_failed_child_and_those_started_after_it() -> None:
    engine = engine_with(RestForOne())
    plan = engine.exited("b", ValueError(), 1.0)
    assert plan.stop == ("d", "c")
    assert plan.start == ("b", "c", "d")
    assert engine.running() == ["a"]
    last = engine.exited("a", ValueError(), 2.0)
    assert last.stop == ()  # b, c, d are not running (yet): nothing to stop
    assert last.start == ("a",)


def test_a_sibling_that_was_not_running_stays_down_when_the_group_restarts() -> None:
    engine = engine_with(OneForAll())
    engine.stopped("c")  # terminated on purpose
    plan = engine.exited("a", ValueError(), 1.0)
    assert plan.stop == ("d", "b")
    assert plan.start == ("a", "b", "d")
    assert "c" in engine


# -- restart types ------------------------------------------------------------------------------


def test_permanent_children_restart_even_after_a_normal_exit() -> None:
    engine = engine_with(OneForOne())
    plan = engine.exited("a", None, 1.0)
    assert plan.directive is Directive.RESTART
    assert plan.start == ("a",)


def test_transient_children_restart_only_after_a_failure() -> None:
    engine = engine_with(OneForOne(), [spec("t", Restart.TRANSIENT), "x"])
    assert engine.exited("t", KeyError(), 1.0).start == ("t",)
    engine.started("t", 1.0)
    plan = engine.exited("t", None, 2.0)
    assert plan == Plan("t", None)
    assert "t" in engine
    assert engine.running() == ["x"]


def test_temporary_children_are_never_restarted_and_are_forgotten() -> None:
    engine = engine_with(OneForOne(), [spec("tmp", Restart.TEMPORARY), "x"])
    plan = engine.exited("tmp", ValueError(), 1.0)
    assert plan == Plan("tmp", Directive.RESTART, removed=("tmp",))
    assert "tmp" not in engine
    assert list(engine) == ["x"]


def test_a_temporary_sibling_is_stopped_with_the_group_but_not_restarted() -> None:
    children: list[ChildSpec | str] = ["a", spec("tmp", Restart.TEMPORARY), "c"]
    engine = engine_with(OneForAll(), children)
    plan = engine.exited("c", ValueError(), 1.0)
    assert plan.stop == ("tmp", "a")
    assert plan.start == ("a", "c")
    assert plan.removed == ("tmp",)
    assert list(engine) == ["a", "c"]


# -- intensity ----------------------------------------------------------------------------------


def test_intensity_allows_max_restarts_and_gives_up_at_the_next_one() -> None:
    engine = engine_with(OneForOne(intensity=RestartIntensity(max_restarts=2, within=5.0)))
    for now in (1.0, 2.0):
        plan = engine.exited("c", ValueError(f"at {now}"), now)
        assert plan.start == ("c",)
        restart_all(engine, plan, now)
    error = ValueError("third")
    plan = engine.exited("c", error, 3.0)
    assert plan.ends_supervisor
    assert plan.start == ()
    assert plan.stop == ("d", "b", "a")
    gave_up = plan.give_up
    assert isinstance(gave_up, TooManyRestarts)
    assert (gave_up.child, gave_up.error, gave_up.max_restarts, gave_up.within) == (
        "c",
        error,
        2,
        5.0,
    )
    assert gave_up.__cause__ is error
    assert str(gave_up) == (
        "supervisor gave up: child 'c' failed with ValueError('third') after 2 restart(s) "
        "within 5 s"
    )


def test_intensity_counts_restarts_of_every_child_in_a_sliding_window() -> None:
    engine = engine_with(OneForOne(intensity=RestartIntensity(max_restarts=2, within=5.0)))
    restart_all(engine, engine.exited("a", ValueError(), 0.0), 0.0)
    restart_all(engine, engine.exited("b", ValueError(), 1.0), 1.0)
    # The restart at 0.0 leaves the window exactly at 5.0.
    plan = engine.exited("c", ValueError(), 5.0)
    assert plan.start == ("c",)
    restart_all(engine, plan, 5.0)
    assert engine.exited("d", ValueError(), 5.5).give_up is not None


def test_a_permanent_child_that_keeps_ending_normally_also_exhausts_intensity() -> None:
    engine = engine_with(OneForOne(intensity=RestartIntensity(max_restarts=1, within=5.0)))
    restart_all(engine, engine.exited("a", None, 0.0), 0.0)
    plan = engine.exited("a", None, 1.0)
    assert plan.give_up is not None
    assert "ended normally" in str(plan.give_up.error)


def test_zero_max_restarts_gives_up_at_the_first_failure() -> None:
    engine = engine_with(OneForOne(intensity=RestartIntensity(max_restarts=0)))
    assert engine.exited("a", ValueError(), 0.0).give_up is not None


# -- backoff ------------------------------------------------------------------------------------


def test_backoff_delays_each_restart_with_seeded_jitter() -> None:
    backoff = Backoff(min_delay=1.0, max_delay=4.0, jitter=0.5, reset_after=100.0)
    strategy = OneForOne(backoff=backoff, intensity=RestartIntensity(10, 1000.0))
    engine = engine_with(strategy, ["a", "b"], rng=random.Random(11))
    reference = random.Random(11)
    delays = []
    now = 0.0
    # a and b fail in turns: each has its own count, both draw from the one rng.
    for child_id in ("a", "b", "a", "a", "b", "a"):
        plan = engine.exited(child_id, ValueError(), now)
        delays.append(plan.delay)
        now += plan.delay
        restart_all(engine, plan, now)
    bases = [1.0, 1.0, 2.0, 4.0, 2.0, 4.0]
    assert delays == [base * (1.0 + reference.random() * 0.5) for base in bases]


def test_backoff_starts_again_after_a_quiet_run_and_caps_restarts() -> None:
    backoff = Backoff(min_delay=1.0, jitter=0.0, reset_after=10.0, max_restarts=3)
    engine = engine_with(OneForOne(backoff=backoff, intensity=RestartIntensity(10, 5.0)), ["a"])
    assert engine.exited("a", ValueError(), 0.0).delay == 1.0
    engine.started("a", 1.0)
    assert engine.exited("a", ValueError(), 2.0).delay == 2.0
    engine.started("a", 4.0)
    assert engine.exited("a", ValueError(), 14.0).delay == 1.0  # it ran 10 s: reset
    engine.started("a", 15.0)
    assert engine.exited("a", ValueError(), 15.5).delay == 2.0
    engine.started("a", 17.5)
    assert engine.exited("a", ValueError(), 18.0).delay == 4.0
    engine.started("a", 22.0)
    plan = engine.exited("a", ValueError(), 23.0)  # a 4th consecutive restart: no
    assert plan == Plan("a", Directive.STOP)
    assert engine.running() == []
    assert "a" in engine


# -- directives ---------------------------------------------------------------------------------


def test_resume_keeps_the_child_running_and_counts_nothing() -> None:
    strategy = OneForAll(
        decider=decider_from({KeyError: Directive.RESUME}),
        intensity=RestartIntensity(max_restarts=0),
    )
    engine = engine_with(strategy)
    for now in (1.0, 2.0, 3.0):
        assert engine.exited("b", KeyError(), now) == Plan("b", Directive.RESUME)
    assert engine.running() == ["a", "b", "c", "d"]


def test_resume_without_resumable_children_restarts_the_child_alone_and_counts() -> None:
    strategy = OneForAll(
        decider=decider_from({KeyError: Directive.RESUME}),
        intensity=RestartIntensity(max_restarts=1, within=5.0),
        backoff=Backoff(min_delay=3.0, jitter=0.0),
    )
    engine = engine_with(strategy, can_resume=False)
    plan = engine.exited("b", KeyError(), 1.0)
    assert plan == Plan("b", Directive.RESUME, start=("b",))  # no siblings, no delay
    restart_all(engine, plan, 1.0)
    assert engine.exited("b", KeyError(), 2.0).give_up is not None


def test_resume_of_a_temporary_task_does_not_restart_it() -> None:
    strategy = OneForOne(decider=lambda _: Directive.RESUME)
    engine = engine_with(strategy, [spec("tmp", Restart.TEMPORARY)], can_resume=False)
    assert engine.exited("tmp", KeyError(), 1.0) == Plan("tmp", Directive.RESUME, removed=("tmp",))


def test_stop_ends_the_child_for_good_without_touching_siblings() -> None:
    engine = engine_with(OneForAll(decider=decider_from({KeyError: Directive.STOP})))
    plan = engine.exited("b", KeyError(), 1.0)
    assert plan == Plan("b", Directive.STOP)
    assert engine.running() == ["a", "c", "d"]
    assert "b" in engine


def test_escalate_stops_everyone_and_fails_with_the_childs_error() -> None:
    engine = engine_with(OneForOne(decider=decider_from({KeyError: Directive.ESCALATE})))
    error = KeyError("k")
    plan = engine.exited("b", error, 1.0)
    assert plan.escalate is error
    assert plan.give_up is None
    assert plan.stop == ("d", "c", "a")
    assert plan.ends_supervisor


def test_a_base_exception_is_escalated_by_the_default_decider() -> None:
    engine = engine_with(OneForOne())
    error = KeyboardInterrupt()
    assert engine.exited("a", error, 0.0).escalate is error


def test_a_decider_that_raises_fails_the_supervisor_with_its_own_error() -> None:
    bug = ZeroDivisionError("decider bug")

    def decider(_: BaseException) -> Directive:
        raise bug

    engine = engine_with(OneForOne(decider=decider))
    error = ValueError("child")
    plan = engine.exited("b", error, 1.0)
    assert plan.escalate is bug
    assert bug.__context__ is error
    assert plan.directive is None
    assert plan.stop == ("d", "c", "a")


def test_a_decider_that_returns_no_directive_fails_the_supervisor() -> None:
    engine = engine_with(OneForOne(decider=lambda _: "restart"))  # type: ignore[arg-type,return-value]
    plan = engine.exited("a", ValueError(), 1.0)
    assert isinstance(plan.escalate, TypeError)
    assert "not a Directive" in str(plan.escalate)


# -- significant children and auto-shutdown ----------------------------------------------------


def significant_children() -> list[ChildSpec | str]:
    return ["a", spec("s1", Restart.TRANSIENT, True), spec("s2", Restart.TEMPORARY, True), "z"]


def test_any_significant_shuts_down_when_one_ends_for_good() -> None:
    engine = engine_with(
        OneForOne(), significant_children(), auto_shutdown=AutoShutdown.ANY_SIGNIFICANT
    )
    restart_all(engine, engine.exited("s1", ValueError(), 1.0), 1.0)  # restarted: no shutdown
    plan = engine.exited("s1", None, 2.0)
    assert plan.shutdown
    assert plan.ends_supervisor
    assert plan.stop == ("z", "s2", "a")
    assert (plan.give_up, plan.escalate) == (None, None)


def test_all_significant_waits_for_the_last_significant_child() -> None:
    engine = engine_with(
        OneForOne(), significant_children(), auto_shutdown=AutoShutdown.ALL_SIGNIFICANT
    )
    first = engine.exited("s2", ValueError(), 1.0)
    assert first == Plan("s2", Directive.RESTART, removed=("s2",))
    last = engine.exited("s1", None, 2.0)
    assert last.shutdown
    assert last.stop == ("z", "a")


def test_never_ignores_significant_children() -> None:
    engine = engine_with(OneForOne(), significant_children())
    assert not engine.exited("s1", None, 1.0).shutdown
    assert not engine.exited("s2", None, 1.0).shutdown


def test_stopped_significant_children_do_not_trigger_an_auto_shutdown() -> None:
    engine = engine_with(
        OneForOne(), significant_children(), auto_shutdown=AutoShutdown.ANY_SIGNIFICANT
    )
    engine.stopped("s1")  # terminated on purpose: no plan, no shutdown
    engine.stopped("s2")
    assert "s2" not in engine  # temporary: forgotten
    assert engine.running() == ["a", "z"]
    assert not engine.exited("z", ValueError(), 1.0).shutdown  # not significant either


# -- the set of children -----------------------------------------------------------------------


def test_children_keep_their_start_order_and_stop_in_reverse() -> None:
    engine = engine_with(OneForOne())
    assert list(engine) == ["a", "b", "c", "d"]
    assert len(engine) == 4
    assert engine.stop_order() == ["d", "c", "b", "a"]
    engine.add(spec("e"))
    assert list(engine)[-1] == "e"
    assert "e" not in engine.running()
    assert engine.state("e").started_at is None


def test_add_refuses_a_duplicate_id() -> None:
    engine = engine_with(OneForOne())
    with pytest.raises(ValueError, match="already exists"):
        engine.add(spec("a"))


def test_delete_refuses_a_running_child_and_forgets_a_stopped_one() -> None:
    engine = engine_with(OneForOne())
    with pytest.raises(RuntimeError, match="running"):
        engine.delete("a")
    with pytest.raises(KeyError):
        engine.delete("nope")
    engine.stopped("a")
    engine.delete("a")
    assert "a" not in engine
    engine.stopped("unknown")  # a no-op


def test_the_engine_wants_a_strategy() -> None:
    with pytest.raises(TypeError, match="Strategy"):
        RestartEngine("one_for_one")  # type: ignore[arg-type]


def test_ids_can_be_any_hashable() -> None:
    ids: list[Hashable] = [("db", 1), 2, frozenset({"x"})]
    engine = engine_with(OneForAll(), [ChildSpec(i, start=object) for i in ids])
    assert engine.exited(2, ValueError(), 0.0).stop == (frozenset({"x"}), ("db", 1))
