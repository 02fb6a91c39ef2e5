"""Bad input caught at the call: what ``spawn`` is given (the factory and its
arguments), actor names, and the ``timeout`` of ``ask``. Each error says what is wrong
and how to fix it."""

from __future__ import annotations

import functools
import math
from typing import Any

import pytest
import trio
import trio.testing

import actors
import supervision as sv
from actors import Actor
from actors._spawn_checks import _shapes, check_factory
from actors._spawning import MAX_NAME_LENGTH


class Echo(Actor):
    def __init__(self, greeting: str, *, loud: bool = False) -> None:
        self.greeting = greeting
        self.loud = loud

    def receive(self, message: Any) -> Any:
        return (self.greeting, message)


class NoInit(Actor):
    def receive(self, message: Any) -> Any:
        return message


class Spawner(Actor):
    """Spawns what it is asked to, in its handler (``context.spawn``)."""

    def receive(self, message: Any) -> Any:
        factory, args = message
        return self.context.spawn(factory, *args)


# -- the factory -----------------------------------------------------------------------------


async def test_an_instance_instead_of_its_class_is_refused_at_the_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("instance") as system:
        with pytest.raises(TypeError) as info:
            system.spawn(Echo("hi"))  # type: ignore[arg-type]
        assert await system.spawn(NoInit).ask("alive") == "alive"  # nothing else broke
    assert str(info.value) == (
        "spawn takes the actor class (or a factory), not an instance: spawn(Echo, ...) "
        "rather than spawn(Echo(...)); the runtime creates the instance in the new "
        "actor's task"
    )


async def test_something_not_callable_or_not_an_actor_class_is_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with actors.open_system("not-callable") as system:
        with pytest.raises(TypeError) as info:
            system.spawn("Echo")  # type: ignore[arg-type]
        assert str(info.value) == (
            "spawn takes an actor class (or a factory that returns an actor instance), "
            "got 'Echo' of type str"
        )
        with pytest.raises(TypeError) as info:
            system.spawn(dict)  # type: ignore[arg-type]
        assert str(info.value) == (
            "spawn takes an actor class, a subclass of actors.Actor; dict is not one (or "
            "pass a factory function that returns an actor instance)"
        )
        assert system.describe().root.children == ()  # nothing was spawned


@pytest.mark.parametrize(
    ("args", "kwargs", "shown", "why"),
    [
        ((), {}, "()", "missing a required argument: 'greeting'"),
        (("hi", "extra"), {}, "('hi', 'extra')", "too many positional arguments"),
        (("hi",), {"lowd": True}, "('hi', lowd=True)", "got an unexpected keyword argument 'lowd'"),
        (
            ("hi",),
            {"greeting": "hey"},
            "('hi', greeting='hey')",
            "multiple values for argument 'greeting'",
        ),
    ],
    ids=["missing", "too-many", "unknown-keyword", "twice"],
)
async def test_arguments_that_do_not_fit_are_refused_naming_the_class(
    autojump_clock: trio.testing.MockClock,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    shown: str,
    why: str,
) -> None:
    async with actors.open_system("bad-args") as system:
        with pytest.raises(TypeError) as info:
            system.spawn(Echo, *args, **kwargs)
    assert str(info.value) == (
        f"cannot spawn Echo: its arguments {shown} do not fit Echo(greeting, *, "
        f"loud=False): {why}. spawn(factory, *args, **kwargs) passes the "
        "arguments after the factory (and every keyword but name, mailbox, throughput "
        "and supervisor_strategy) to it"
    )
    assert isinstance(info.value.__cause__, TypeError)
    assert str(info.value.__cause__) == why


async def test_arguments_for_a_class_without_init_are_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Actor.__new__ takes anything, so without this check the argument would be
    silently ignored."""
    async with actors.open_system("no-init") as system:
        with pytest.raises(TypeError) as info:
            system.spawn(NoInit, 42)
    assert str(info.value).startswith(
        "cannot spawn NoInit: its arguments (42) do not fit NoInit(): too many positional "
        "arguments."
    )


async def test_context_spawn_checks_too(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system("context-spawn") as system:
        spawner = system.spawn(Spawner)
        with pytest.raises(TypeError, match=r"^cannot spawn Echo: its arguments \(\) do not"):
            await spawner.ask((Echo, ()))
        with pytest.raises(TypeError, match=r"not an instance: spawn\(NoInit, \.\.\.\)"):
            await spawner.ask((NoInit(), ()))
        child = await spawner.ask((Echo, ("hi",)))
        assert await child.ask("x") == ("hi", "x")


async def test_good_factories_pass(autojump_clock: trio.testing.MockClock) -> None:
    def make_echo(greeting: str) -> Echo:
        return Echo(greeting, loud=True)

    made_outside = NoInit()
    async with actors.open_system("good") as system:
        assert await system.spawn(Echo, "a", loud=True).ask(1) == ("a", 1)
        assert await system.spawn(functools.partial(Echo, "b")).ask(2) == ("b", 2)
        assert await system.spawn(functools.partial(Echo), greeting="c").ask(3) == ("c", 3)
        assert await system.spawn(make_echo, "d").ask(4) == ("d", 4)
        # A factory without a signature (a builtin) is not checked: it just runs.
        odd = functools.partial(next, iter([made_outside]))
        assert await system.spawn(odd).ask(5) == 5
        with pytest.raises(TypeError, match=r"cannot spawn Echo: its arguments \('e', 'f'\)"):
            system.spawn(functools.partial(Echo, "e"), "f")
        with pytest.raises(TypeError, match=r"cannot spawn .*make_echo: its arguments"):
            system.spawn(make_echo)


def test_the_shape_of_a_class_is_worked_out_once() -> None:
    class Fresh(Actor):
        def __init__(self, a: int, b: int = 2) -> None:
            pass

    check_factory(Fresh, (1,), {})
    shape = _shapes[Fresh]
    check_factory(Fresh, (1, 3), {})
    check_factory(functools.partial(Fresh, 1), (), {"b": 4})
    assert _shapes[Fresh] is shape  # cached, also for partials of it
    with pytest.raises(TypeError):
        check_factory(Fresh, (), {"b": 1})


def test_the_testkit_pre_start_crash_checks_its_arguments() -> None:
    from actors.testing import FaultInjector

    with pytest.raises(TypeError, match="cannot spawn Echo"):
        FaultInjector(seed=1).crash_in_pre_start(Echo, "a", "b")


async def test_a_child_spec_with_an_instance_names_the_child(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stop = sv.OneForOne(decider=lambda error: sv.Directive.STOP)
    async with actors.open_system("bad-spec", guardian_strategy=stop) as system:
        probe = actors.testing.TestProbe(system)
        sup = probe.watch(system.spawn(actors.Supervisor, [sv.ChildSpec("w", Echo("x"))]))
        terminated = await probe.expect_terminated(sup)
    assert "child 'w': its start is not a usable actor factory: spawn takes the actor " in str(
        terminated.error
    )


# -- names -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [".", ".."])
async def test_dot_names_are_refused(autojump_clock: trio.testing.MockClock, name: str) -> None:
    async with actors.open_system("dots") as system:
        with pytest.raises(actors.InvalidActorName) as info:
            system.spawn(NoInit, name=name)
    assert str(info.value) == (
        f"invalid actor name {name!r}: '.' and '..' mean this actor and its parent in a "
        "path; choose another name"
    )


async def test_names_have_a_maximum_length(autojump_clock: trio.testing.MockClock) -> None:
    assert MAX_NAME_LENGTH == 255
    async with actors.open_system("long") as system:
        longest = "n" * MAX_NAME_LENGTH
        assert system.spawn(NoInit, name=longest).name == longest
        with pytest.raises(actors.InvalidActorName) as info:
            system.spawn(NoInit, name="n" * 1_000_000)
    assert str(info.value) == (
        "invalid actor name 'nnnnnnnnnnnnnnnnnnnn'... (1000000 characters): a name has at "
        "most 255 characters; keep data in messages or in the actor's state, not in its name"
    )


async def test_names_with_dots_inside_are_fine(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system("dotted") as system:
        for name in ("...", ".hidden", "a..b", "v1.2"):
            assert system.spawn(NoInit, name=name).path == f"/user/{name}"


# -- ask timeouts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("timeout", "error", "text"),
    [
        (True, TypeError, "ask timeout must be a number of seconds > 0, got True (a bool)"),
        ("5", TypeError, "ask timeout must be a number of seconds > 0, got '5' (a str)"),
        (0, ValueError, "ask timeout must be > 0 seconds, got 0"),
        (-1.5, ValueError, "ask timeout must be > 0 seconds, got -1.5"),
        (math.nan, ValueError, "ask timeout must be > 0 seconds, got nan"),
    ],
    ids=["bool", "str", "zero", "negative", "nan"],
)
async def test_bad_ask_timeouts_are_refused_at_the_call(
    autojump_clock: trio.testing.MockClock, timeout: Any, error: type[Exception], text: str
) -> None:
    async with actors.open_system("timeouts") as system:
        ref = system.spawn(NoInit)
        for target in (ref, system.user_guardian):
            with pytest.raises(error) as info:
                await target.ask("q", timeout=timeout)
            assert str(info.value).startswith(text)
        # The cell checks too, and so does a ref of an actor that is gone.
        with pytest.raises(error, match=r"^ask timeout must"):
            await ref._resolve().ask("q", timeout, None)
        await system.graceful_stop(ref)
        with pytest.raises(error, match=r"^ask timeout must"):
            await ref.ask("q", timeout=timeout)
        assert ref.stats().processed == 0  # nothing was ever enqueued


async def test_good_ask_timeouts_work(autojump_clock: trio.testing.MockClock) -> None:
    async with actors.open_system("good-timeouts") as system:
        ref = system.spawn(NoInit)
        assert await ref.ask(1, timeout=1) == 1  # an int
        assert await ref.ask(2, timeout=0.5) == 2
        assert await ref.ask(3, timeout=math.inf) == 3
        assert await ref.ask(4, timeout=None) == 4
