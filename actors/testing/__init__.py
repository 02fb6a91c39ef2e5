"""Testing helpers for trio-actors: probes and pytest fixtures.

The pytest plugin (loaded automatically once trio-actors is installed) provides the
fixtures ``actor_system`` and ``probe``; see ``docs/testing.md``.
"""

from ._probe import TestProbe

__all__ = ["TestProbe"]
