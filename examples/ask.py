"""Ask: a counter actor answers questions, and an error in its handler reaches the caller.

Shows: ``tell`` (fire and forget) and ``ask`` (await the reply), the reply being the
handler's return value, and an exception raised while handling an ``ask`` re-raised in
the caller while the actor goes on. (The README's first example is the same counter.)

Run it: ``python examples/ask.py``
"""

import attrs
import trio

import actors


@attrs.frozen
class Add:
    amount: int


@attrs.frozen
class Get:
    pass


class Counter(actors.Actor):
    def __init__(self) -> None:
        self.total = 0

    def receive(self, message: object) -> int | None:
        match message:
            case Add(amount) if amount < 0:
                raise ValueError(f"cannot add a negative amount ({amount})")
            case Add(amount):
                self.total += amount
            case Get():
                return self.total
            case _:
                self.unhandled(message)
        return None


async def main() -> None:
    async with actors.open_system("ask") as system:
        counter = system.spawn(Counter, name="counter")
        for n in range(1, 11):
            counter.tell(Add(n))  # never blocks
        print("total:", await counter.ask(Get()))  # 55
        try:
            await counter.ask(Add(-1))
        except ValueError as error:  # the handler's error, re-raised here
            print("refused:", error)
        print("still running, total:", await counter.ask(Get()))


if __name__ == "__main__":
    trio.run(main)
