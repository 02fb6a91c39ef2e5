"""pytest plugin of trio-actors (entry point ``pytest11``): fixtures for trio tests.

The fixtures are async and need pytest-trio (``trio_mode = true``, or mark the test with
``@pytest.mark.trio``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from .._system import ActorSystem, open_system
from ._probe import TestProbe


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "trio_actors_roundtrip",
        "round-trip every message through cloudpickle in the actor_system fixture",
        type="bool",
        default=True,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "actor_system(**kwargs): keyword arguments of actors.open_system for the "
        "actor_system fixture, e.g. supervisor_strategy=... or guardian_strategy=...",
    )


@pytest.fixture
async def actor_system(request: pytest.FixtureRequest) -> AsyncIterator[ActorSystem]:
    """A running actor system for one test, shut down (in order) after it.

    Messages are round-tripped through cloudpickle (ini option ``trio_actors_roundtrip``,
    default true) so the test proves they could cross a process boundary. A failure that
    reaches the top of the supervision tree fails the test at teardown with
    ``UnhandledFailure``.

    The marker ``@pytest.mark.actor_system(**kwargs)`` passes keyword arguments to
    ``open_system`` (the name stays ``"test"``), for instance a stop strategy to keep
    failing actors stopped instead of restarted::

        @pytest.mark.actor_system(
            guardian_strategy=supervision.OneForOne(lambda e: supervision.Directive.STOP)
        )
    """
    roundtrip = bool(request.config.getini("trio_actors_roundtrip"))
    options: dict[str, Any] = {"roundtrip_messages": roundtrip}
    marker = request.node.get_closest_marker("actor_system")
    if marker is not None:
        if marker.args:
            raise TypeError("@pytest.mark.actor_system takes keyword arguments only")
        options.update(marker.kwargs)
    async with open_system("test", **options) as system:
        yield system


@pytest.fixture
def probe(actor_system: ActorSystem) -> TestProbe:
    """A :class:`TestProbe` in the ``actor_system`` fixture's system."""
    return TestProbe(actor_system)
