"""pytest plugin of trio-actors (entry point ``pytest11``): fixtures for trio tests.

The fixtures are async and need pytest-trio (``trio_mode = true``, or mark the test with
``@pytest.mark.trio``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

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


@pytest.fixture
async def actor_system(request: pytest.FixtureRequest) -> AsyncIterator[ActorSystem]:
    """A running actor system for one test, shut down (in order) after it.

    Messages are round-tripped through cloudpickle (ini option ``trio_actors_roundtrip``,
    default true) so the test proves they could cross a process boundary. An unhandled
    actor failure fails the test at teardown with ``UnhandledFailure``.
    """
    roundtrip = bool(request.config.getini("trio_actors_roundtrip"))
    async with open_system("test", roundtrip_messages=roundtrip) as system:
        yield system


@pytest.fixture
def probe(actor_system: ActorSystem) -> TestProbe:
    """A :class:`TestProbe` in the ``actor_system`` fixture's system."""
    return TestProbe(actor_system)
