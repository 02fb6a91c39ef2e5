"""The policy building blocks of ``supervision``: deciders, intensity, backoff, strategies."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from supervision import (
    BRUTAL,
    AutoShutdown,
    Backoff,
    BackoffState,
    ChildSpec,
    Directive,
    IntensityTracker,
    OneForAll,
    OneForOne,
    Restart,
    RestartIntensity,
    RestForOne,
    Strategy,
    decider_from,
    default_decider,
)


def test_supervision_never_imports_actors() -> None:
    code = "import sys, supervision; print('actors' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_default_decider_restarts_exceptions_and_escalates_the_rest() -> None:
    assert default_decider(ValueError()) is Directive.RESTART
    assert default_decider(KeyboardInterrupt()) is Directive.ESCALATE
    assert default_decider(SystemExit()) is Directive.ESCALATE


class Transient(Exception):
    pass


class VeryTransient(Transient):
    pass


def test_decider_from_picks_the_most_specific_type() -> None:
    decide = decider_from(
        {Exception: Directive.STOP, Transient: Directive.RESUME, VeryTransient: Directive.RESTART}
    )
    assert decide(VeryTransient()) is Directive.RESTART
    assert decide(Transient()) is Directive.RESUME
    assert decide(KeyError()) is Directive.STOP
    # Never absorbs what is not an Exception, whatever the table says.
    assert decider_from({BaseException: Directive.RESUME})(KeyboardInterrupt()) is (
        Directive.ESCALATE
    )


def test_decider_from_falls_back_and_rejects_bad_tables() -> None:
    decide = decider_from({KeyError: Directive.RESUME}, otherwise=lambda _: Directive.STOP)
    assert decide(KeyError()) is Directive.RESUME
    assert decide(ValueError()) is Directive.STOP
    with pytest.raises(TypeError, match="exception classes"):
        decider_from({"KeyError": Directive.RESUME})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="Directive"):
        decider_from({KeyError: "resume"})  # type: ignore[dict-item]


def test_intensity_allows_exactly_max_restarts_in_the_window() -> None:
    tracker = IntensityTracker(RestartIntensity(max_restarts=3, within=5.0))
    assert [tracker.allow(t) for t in (0.0, 1.0, 2.0)] == [True, True, True]
    assert tracker.allow(4.9) is False  # the 4th within 5 s: give up
    assert tracker.recent == 3


def test_intensity_window_is_half_open() -> None:
    tracker = IntensityTracker(RestartIntensity(max_restarts=2, within=5.0))
    assert tracker.allow(0.0)
    assert tracker.allow(1.0)
    assert tracker.allow(5.0)  # the restart at 0.0 left the window exactly now
    assert not tracker.allow(5.5)
    assert tracker.allow(6.0)  # 1.0 has left: 5.0 and 6.0 remain


def test_zero_restarts_gives_up_at_the_first_failure() -> None:
    assert IntensityTracker(RestartIntensity(max_restarts=0)).allow(0.0) is False


@pytest.mark.parametrize(
    "kwargs", [{"max_restarts": -1}, {"max_restarts": 1.5}, {"within": 0}, {"within": -2}]
)
def test_intensity_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RestartIntensity(**kwargs)  # type: ignore[arg-type]


def test_backoff_doubles_up_to_the_cap_with_seeded_jitter() -> None:
    backoff = Backoff(min_delay=1.0, max_delay=8.0, jitter=0.5, reset_after=100.0)
    state = BackoffState(backoff, random.Random(42))
    reference = random.Random(42)
    delays = [state.next_delay(now=float(i)) for i in range(6)]
    bases = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert delays == [base * (1.0 + reference.random() * 0.5) for base in bases]
    assert all(
        d is not None and base <= d <= base * 1.5 for d, base in zip(delays, bases, strict=True)
    )


def test_backoff_without_jitter_is_exact_and_resets_after_a_quiet_period() -> None:
    state = BackoffState(Backoff(min_delay=0.5, max_delay=60.0, jitter=0.0, reset_after=10.0))
    assert [state.next_delay(now=t, started_at=t - 1) for t in (1, 2, 3)] == [0.5, 1.0, 2.0]
    # The child then ran 10 s without failing: back to the minimum.
    assert state.next_delay(now=20.0, started_at=10.0) == 0.5
    assert state.consecutive == 1


def test_backoff_max_restarts_caps_consecutive_restarts() -> None:
    state = BackoffState(Backoff(jitter=0.0, max_restarts=2))
    assert state.next_delay(0.0) is not None
    assert state.next_delay(1.0) is not None
    assert state.next_delay(2.0) is None
    assert state.next_delay(100.0, started_at=50.0) is not None  # reset by a quiet run


@pytest.mark.parametrize(
    "kwargs",
    [{"min_delay": -1}, {"min_delay": 5, "max_delay": 1}, {"jitter": -0.1}, {"max_restarts": -1}],
)
def test_backoff_rejects_bad_values(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_strategies_say_which_children_a_failure_touches() -> None:
    children = ["db", "cache", "api", "web"]
    assert OneForOne().affected(children, "api") == ["api"]
    assert OneForAll().affected(children, "api") == children
    assert RestForOne().affected(children, "cache") == ["cache", "api", "web"]
    assert RestForOne().affected(children, "web") == ["web"]
    for strategy in (OneForOne(), OneForAll(), RestForOne()):
        assert strategy.affected(children, "gone") == []


def test_strategies_carry_their_policy_and_are_abstract_at_the_root() -> None:
    strategy = OneForAll(intensity=RestartIntensity(1, 2.0), backoff=Backoff(jitter=0.0))
    assert strategy.decider is default_decider
    assert strategy.intensity == RestartIntensity(1, 2.0)
    assert strategy.backoff == Backoff(jitter=0.0)
    with pytest.raises(TypeError, match="abstract"):
        Strategy()  # type: ignore[abstract]


def test_restart_types_follow_otp() -> None:
    assert Restart.PERMANENT.restarts_after(abnormal=False)
    assert Restart.PERMANENT.restarts_after(abnormal=True)
    assert not Restart.TRANSIENT.restarts_after(abnormal=False)
    assert Restart.TRANSIENT.restarts_after(abnormal=True)
    assert not Restart.TEMPORARY.restarts_after(abnormal=True)


def test_child_spec_defaults_and_validation() -> None:
    spec = ChildSpec("worker", start=object)
    assert (spec.restart, spec.shutdown, spec.significant) == (Restart.PERMANENT, 5.0, False)
    assert ChildSpec("w", start=object, restart="transient").restart is Restart.TRANSIENT
    assert ChildSpec("w", start=object, shutdown=BRUTAL).shutdown == BRUTAL
    assert ChildSpec("w", start=object, restart=Restart.TEMPORARY, significant=True).significant
    for bad in (0, -1, "soon", True):
        with pytest.raises(ValueError, match="shutdown"):
            ChildSpec("w", start=object, shutdown=bad)
    with pytest.raises(ValueError, match="cannot be permanent"):
        ChildSpec("w", start=object, significant=True)
    assert {a.value for a in AutoShutdown} == {"never", "any_significant", "all_significant"}
