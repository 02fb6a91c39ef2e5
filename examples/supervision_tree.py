"""A supervision tree: a flaky worker restarted in place, then a supervisor that gives up.

Shows: an ``actors.Supervisor`` built from child specs (started in order, stopped in
reverse order), a rest-for-one strategy with a backoff, the failing message reported as
a dead letter while the messages queued behind it survive the restart, lifecycle events
on the event bus, and what happens when failures exceed the restart intensity: the
supervisor gives up, and at the top ``open_system`` raises ``UnhandledFailure``.

Run it with ``python examples/supervision_tree.py``.
"""

from __future__ import annotations

from typing import Any

import trio

import actors
import supervision


class Store(actors.Actor):
    """Keeps the fetched pages (state lost on restart: fine for a cache)."""

    def __init__(self) -> None:
        self.pages: list[str] = []

    def pre_start(self) -> None:
        print("store: up")

    def post_stop(self) -> None:
        print("store: down")

    def receive(self, message: Any) -> Any:
        if message == "count":
            return len(self.pages)
        self.pages.append(message)
        return None


class Fetcher(actors.Actor):
    """Fetches URLs; a URL it cannot parse makes it crash."""

    def pre_start(self) -> None:
        print("fetcher: up")

    def post_restart(self, error: BaseException) -> None:
        print(f"fetcher: restarted after {error!r}")

    def post_stop(self) -> None:
        print("fetcher: down")

    def receive(self, message: Any) -> None:
        if not message.startswith("https://"):
            raise ValueError(f"cannot fetch {message!r}")
        self.context.system.lookup("/user/services/store").tell(f"page of {message}")


class Monitor(actors.Actor):
    """Prints the lifecycle events and dead letters it is subscribed to."""

    def receive(self, message: Any) -> None:
        if isinstance(message, actors.DeadLetter):
            print(f"monitor: dead letter {message.message!r} ({message.reason})")
        elif isinstance(message, actors.ActorRestarted):
            print(f"monitor: {message.ref.path} restarted")
        elif isinstance(message, actors.SupervisorGaveUp):
            print(f"monitor: {message.supervisor.path} gave up on {message.child.path}")


async def main() -> None:
    strategy = supervision.RestForOne(
        intensity=supervision.RestartIntensity(max_restarts=2, within=10.0),
        backoff=supervision.Backoff(min_delay=0.01, max_delay=0.05, jitter=0.0),
    )
    # /user escalates whatever reaches it, so the give-up below ends the system.
    escalate = supervision.OneForOne(decider=lambda error: supervision.Directive.ESCALATE)
    try:
        async with actors.open_system("tree", guardian_strategy=escalate) as system:
            monitor = system.spawn(Monitor, name="monitor")
            for event in (actors.DeadLetter, actors.ActorRestarted, actors.SupervisorGaveUp):
                system.events.subscribe(monitor, event)
            services = system.spawn(
                actors.Supervisor,
                [supervision.ChildSpec("store", Store), supervision.ChildSpec("fetcher", Fetcher)],
                strategy,
                name="services",
            )
            children = {c.id: c.ref for c in await services.ask(actors.WhichChildren())}
            fetcher, store = children["fetcher"], children["store"]
            assert fetcher is not None
            assert store is not None

            fetcher.tell("https://example.org/a")
            fetcher.tell("ftp://old.example.org")  # crashes the fetcher
            fetcher.tell("https://example.org/b")  # waits in the mailbox, then runs
            await trio.sleep(0.2)
            print("pages stored:", await store.ask("count"))
            print("same fetcher ref:", system.lookup("/user/services/fetcher") == fetcher)

            for url in ("gopher://1", "gopher://2"):  # two more crashes: too many
                fetcher.tell(url)
                await trio.sleep(0.2)
            await trio.sleep_forever()  # the give-up ends the system
    except actors.UnhandledFailure as failure:
        [(ref, error)] = failure.failures
        print(f"system ended: {ref.path}: {error}")


if __name__ == "__main__":
    trio.run(main)
