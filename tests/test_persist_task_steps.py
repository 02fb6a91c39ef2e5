"""What one awaited ``persist`` costs the trio scheduler on a SQL journal: the actor
queues its event, the writer task starts the group's thread, and a callback in the trio
thread wakes the actor when the thread returns. Three task steps per event, as a plain
``await trio.to_thread.run_sync(commit)`` takes; the writer used to take two more (one
to start the thread through the thread limiter, one to wake the actor), and this fails
if it does again."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio
import trio.testing

import actors
from actors.persistence import Persistence, PersistentActor, open_sqlite_journal

EVENTS = 60


class Writer(PersistentActor):
    persistence_id = "steps"

    def __init__(self) -> None:
        self.count = 0

    def apply(self, event: Any) -> None:
        self.count += 1

    async def receive(self, message: Any) -> Any:
        if message == "run":
            for i in range(EVENTS):
                await self.persist(i)
        return self.count


class Steps(trio.abc.Instrument):
    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps += 1


async def steps_of(run: Any) -> int:
    steps = Steps()
    trio.lowlevel.add_instrument(steps)
    try:
        await run()
    finally:
        trio.lowlevel.remove_instrument(steps)
    return steps.steps


async def test_a_lone_persist_takes_the_steps_of_a_plain_thread_call(tmp_path: Path) -> None:
    async with (
        open_sqlite_journal(tmp_path / "j.db") as journal,
        actors.open_system(
            "steps",
            extensions=[Persistence(journal)],
            settings=actors.Settings(blocking_threshold=None),  # (no watchdog pings)
        ) as system,
    ):
        ref = system.spawn(Writer, name="w")
        assert await ref.ask("ready") == 0
        await trio.testing.wait_all_tasks_blocked()

        async def persist_all() -> None:
            assert await ref.ask("run") == EVENTS

        ours = await steps_of(persist_all)

    async def plain() -> None:
        for _ in range(EVENTS):
            await trio.to_thread.run_sync(lambda: None)

    baseline = await steps_of(plain)
    # The ask adds a few steps of its own (the question in, the answer out).
    assert baseline == 3 * EVENTS
    assert ours <= baseline + 10, (ours, baseline)
