"""Hello, actor: the smallest trio-actors program.

Shows: an actor class with a ``receive`` method, an actor system opened with
``async with``, ``spawn`` giving a ref, ``tell`` to send without waiting, and ``ask`` to
wait for an answer. Messages from one sender are handled in the order they were sent,
so when the ``ask`` returns, the greeting told before it has been printed. Leaving the
block stops the actors after the message each one is handling: wait (as the ``ask``
does here) for what must be done before that.

Run it: ``python examples/hello.py``
"""

from __future__ import annotations

import trio

import actors


class Greeter(actors.Actor):
    def __init__(self) -> None:
        self.greeted = 0

    def receive(self, message: object) -> int:
        self.greeted += 1
        print(f"hello, {message}!")
        return self.greeted  # the reply, for an ask


async def main() -> None:
    async with actors.open_system("hello") as system:
        greeter = system.spawn(Greeter, name="greeter")
        greeter.tell("world")  # returns at once
        count = await greeter.ask("trio")  # waits for the reply
        print(f"{greeter.path} greeted {count} times")


if __name__ == "__main__":
    trio.run(main)
