"""The actor failures of one test, and which of them the test expected.

A supervised actor that fails is restarted (by default), so a test can pass without
noticing that an actor crashed. The pytest plugin records every actor failure of the
process while a test runs (in any actor system: the ``actor_system`` fixture's and any
the test opens itself) into an :class:`ActorFailures`, and fails the test when one of
them was not expected (see ``docs/testing.md``, "Unexpected actor failures").
"""

from __future__ import annotations

import fnmatch
import threading
import traceback
from typing import Any, Final

import attrs

from .._actor import Actor
from .._cell import ActorCell
from .._cell_state import CellState
from ._faults import InjectedFault

INI_OPTION: Final = "trio_actors_fail_on_actor_failures"
MARKER: Final = "expect_actor_failures"

_REPR_LIMIT = 200
_TRACEBACKS_SHOWN = 3
_LISTED = 20


@attrs.frozen
class ActorFailure:
    """One failure of an actor during a test: the actor at ``path`` in the system named
    ``system`` (its class ``actor``, ``None`` when unknown) failed with ``error`` while
    handling ``message`` (``None``: it failed outside a message, in its constructor, a
    lifecycle hook, a kill, or a child's failure escalated to it)."""

    path: str
    system: str
    actor: type[Actor] | None
    message: Any
    error: BaseException

    def __str__(self) -> str:
        who = self.path if self.actor is None else f"{self.path} ({self.actor.__qualname__})"
        if self.message is None:
            what = "failed outside a message (constructor, lifecycle hook, kill or escalation)"
        else:
            what = f"failed on message {_cut(repr(self.message))}"
        return f"{who} in system {self.system!r} {what}: {_cut(repr(self.error))}"


def _error_types(value: Any) -> tuple[type[BaseException], ...]:
    errors = () if value is None else value if isinstance(value, tuple) else (value,)
    for error in errors:
        if not (isinstance(error, type) and issubclass(error, BaseException)):
            raise TypeError(
                "error= is an exception class or a tuple of them (e.g. RuntimeError), "
                f"got {error!r}; use path= and actor= to say which actors may fail"
            )
    return errors


def _check_path(_: object, __: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not (isinstance(value, str) and value.startswith("/")):
        raise TypeError(
            f"path= is an actor path or a glob pattern such as '/user/worker-*', got {value!r}"
        )


def _check_actor(_: object, __: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and not (isinstance(value, type) and issubclass(value, Actor)):
        raise TypeError(f"actor= is an Actor class, got {value!r}")


@attrs.frozen
class _Expectation:
    errors: tuple[type[BaseException], ...] = attrs.field(converter=_error_types)
    path: str | None = attrs.field(default=None, validator=_check_path)
    actor: type[Actor] | None = attrs.field(default=None, validator=_check_actor)

    def matches(self, failure: ActorFailure) -> bool:
        if self.path is not None and not fnmatch.fnmatchcase(failure.path, self.path):
            return False
        if self.actor is not None and not (
            failure.actor is not None and issubclass(failure.actor, self.actor)
        ):
            return False
        return not self.errors or any(isinstance(e, self.errors) for e in _causes(failure.error))


def _causes(error: BaseException) -> list[BaseException]:
    """``error`` and the chain of its explicit causes (``raise ... from``), which is how
    ``ActorInitializationError`` and ``supervision.TooManyRestarts`` carry the error
    behind them."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and not any(current is seen for seen in chain):
        chain.append(current)
        current = current.__cause__
    return chain


class ActorFailures:
    """The actor failures of one test: the ``actor_failures`` fixture (the pytest
    plugin makes one per test).

    Every failure of an actor (``ActorFailed`` on its system's bus) in any actor system
    of the process while the test runs is recorded in :attr:`failures`; a failure that
    an ancestor then fails with too (an escalation) is recorded once, for the actor
    where it happened. Unless ``trio_actors_fail_on_actor_failures = false`` is set in
    the pytest configuration, the test fails if any of them is :attr:`unexpected`."""

    def __init__(self) -> None:
        self.failures: list[ActorFailure] = []
        """Every failure seen so far, expected or not, in the order they happened."""
        self._expectations: list[_Expectation] = []
        # The failures recorded per error object (kept alive by ``failures``), to find
        # escalations of one error up the tree without scanning every failure.
        self._by_error: dict[int, list[ActorFailure]] = {}
        self._reported = 0
        self._lock = threading.Lock()  # systems in other threads report from there

    def __repr__(self) -> str:
        return f"<ActorFailures {len(self.failures)} failure(s), {len(self.unexpected)} unexpected>"

    def expect(
        self,
        error: type[BaseException] | tuple[type[BaseException], ...] | None = None,
        *,
        path: str | None = None,
        actor: type[Actor] | None = None,
    ) -> None:
        """Declare failures the test expects, so that they do not fail it: those whose
        error is an instance of ``error`` (a class or a tuple of classes; any error when
        ``None``), of the actor at ``path`` (an actor path, or a glob pattern such as
        ``/user/worker-*``; any actor when ``None``) and of an instance of ``actor`` (an
        Actor class; any when ``None``). An error also matches through its explicit
        causes, so ``RuntimeError`` covers an ``ActorInitializationError`` or a
        supervisor's ``TooManyRestarts`` caused by one. It covers failures before and
        after the call alike; expecting a failure does not require it to happen (assert
        on :attr:`failures` for that)."""
        self._expectations.append(_Expectation(error, path, actor))

    def is_expected(self, failure: ActorFailure) -> bool:
        """Whether a declaration covers ``failure``, or a fault injector caused it (an
        :class:`~actors.testing.InjectedFault` in its error or causes)."""
        if any(isinstance(error, InjectedFault) for error in _causes(failure.error)):
            return True
        return any(expectation.matches(failure) for expectation in self._expectations)

    @property
    def unexpected(self) -> list[ActorFailure]:
        """The failures no declaration covers."""
        with self._lock:
            failures = list(self.failures)
        return [failure for failure in failures if not self.is_expected(failure)]

    # -- for the plugin ---------------------------------------------------------------------

    def _observe(self, cell: CellState, error: BaseException, message: Any) -> None:
        """The runtime's failure observer (see ``actors._registry``)."""
        if not isinstance(cell, ActorCell):
            return
        path = cell.ref.path
        system = cell.system.name
        with self._lock:
            same_error = self._by_error.setdefault(id(error), [])
            for seen in same_error:
                if seen.system == system and seen.path.startswith(path + "/"):
                    return  # escalated from a descendant: already recorded there
            failure = ActorFailure(path, system, _actor_class(cell), message, error)
            same_error.append(failure)
            self.failures.append(failure)

    def _release(self) -> None:
        """Forget every failure (the test is over): their errors hold tracebacks, whose
        frames hold whatever the test built."""
        with self._lock:
            self.failures = []
            self._by_error.clear()
            self._reported = 0

    def _take_unexpected(self) -> list[ActorFailure]:
        """The unexpected failures recorded since the last call."""
        with self._lock:
            fresh = self.failures[self._reported :]
            self._reported = len(self.failures)
        return [failure for failure in fresh if not self.is_expected(failure)]


def _actor_class(cell: ActorCell) -> type[Actor] | None:
    instance = cell._instance
    if instance is not None:
        return type(instance)
    factory = cell._factory
    if isinstance(factory, type) and issubclass(factory, Actor):
        return factory
    return None


def _cut(text: str) -> str:
    return text if len(text) <= _REPR_LIMIT else text[: _REPR_LIMIT - 3] + "..."


def _indent(text: str, prefix: str) -> str:
    return "\n".join(prefix + line if line else line for line in text.splitlines())


def describe(failures: list[ActorFailure]) -> str:
    """The report of unexpected failures: each failure (path, message, error), the
    traceback of the first few, and how to declare them expected or turn the check
    off."""
    count = len(failures)
    lines = [
        f"{count} unexpected actor failure{'' if count == 1 else 's'}: {failures[0]}",
        "(an actor that fails is restarted by its supervisor, so a test can pass without "
        "noticing; the test did not declare this failure expected)",
    ]
    for index, failure in enumerate(failures[:_LISTED]):
        lines.append(f"  {failure}")
        if index < _TRACEBACKS_SHOWN:
            text = "".join(traceback.format_exception(failure.error)).rstrip()
            lines.append(_indent(text, "      "))
    if count > _LISTED:
        lines.append(f"  ... and {count - _LISTED} more")
    names = list(dict.fromkeys(type(failure.error).__qualname__ for failure in failures))
    errors = names[0] if len(names) == 1 else f"({', '.join(names)})"
    lines += [
        "If the test expects them, declare them: mark the test with",
        f"    @pytest.mark.{MARKER}(error={errors})",
        "(path= and actor= narrow it down), or call actor_failures.expect(...) with the "
        "actor_failures fixture.",
        f"To turn this check off for the whole project, set {INI_OPTION} = false in the "
        "pytest configuration ([pytest] in pytest.ini, [tool.pytest.ini_options] in "
        "pyproject.toml).",
    ]
    return "\n".join(lines)
