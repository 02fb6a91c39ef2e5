"""Routing logics that answer an ask with the first reply of several routees:
scatter-gather and tail-chopping, and the asking they share."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import trio

from .._errors import AskTimeout
from .._ref import ActorRef
from ._logics import BroadcastRouting, RoundRobinRouting


class ScatterGatherFirstCompletedRouting(BroadcastRouting[ActorRef]):
    """Ask every routee at once; the first reply answers the asker, later replies are
    discarded (they go to dead letters as ``ask_expired``, like any late reply). If no
    routee replies within ``within`` seconds (or the asker's own, shorter timeout), the
    asker gets :class:`AskTimeout`; if every routee fails, the asker gets the first
    error. A plain ``tell`` goes to every routee (there is no reply to wait for)."""

    __slots__ = ("within",)

    def __init__(self, within: float) -> None:
        if isinstance(within, bool) or not isinstance(within, int | float) or not within > 0:
            raise ValueError(f"within must be a number of seconds > 0, got {within!r}")
        self.within = float(within)

    def __repr__(self) -> str:
        return f"ScatterGatherFirstCompletedRouting(within={self.within!r})"


class TailChoppingRouting(RoundRobinRouting[ActorRef]):
    """Ask one routee; if it has not replied after ``interval`` seconds, ask the next one
    too, and so on (in round-robin order); the first reply answers the asker and the
    others are discarded. Past ``within`` seconds the asker gets :class:`AskTimeout`;
    once every routee has failed, the first error. A plain ``tell`` goes to one routee,
    round-robin."""

    __slots__ = ("interval", "within")

    def __init__(self, interval: float, within: float) -> None:
        super().__init__()
        for what, value in (("interval", interval), ("within", within)):
            if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
                raise ValueError(f"{what} must be a number of seconds > 0, got {value!r}")
        self.interval = float(interval)
        self.within = float(within)

    def __repr__(self) -> str:
        return f"TailChoppingRouting(interval={self.interval!r}, within={self.within!r})"


def ask_order(
    logic: ScatterGatherFirstCompletedRouting | TailChoppingRouting,
    message: Any,
    routees: tuple[ActorRef, ...],
) -> tuple[tuple[ActorRef, ...], float]:
    """The routees in the order to ask them, and the interval between two asks:
    scatter-gather asks all at once; tail-chopping starts at the next routee in its
    rotation (advanced now, in the caller's turn)."""
    if isinstance(logic, TailChoppingRouting):
        start = routees.index(logic.select(message, routees)[0])
        return routees[start:] + routees[:start], logic.interval
    return routees, 0.0


async def first_reply(
    message: Any,
    order: Sequence[ActorRef],
    *,
    interval: float,
    within: float,
    timeout: float | None,
    sender: ActorRef | None,
    path: str,
) -> Any:
    """Ask ``order[0]``, then each next routee every ``interval`` seconds (0: all at
    once), and return the first reply. Losers are cancelled (their late replies are
    dead letters). All failed: the first error; nothing by the deadline: AskTimeout."""
    limit = within if timeout is None else min(within, timeout)
    result: list[Any] = []
    errors: list[BaseException] = []
    pending = len(order)

    async with trio.open_nursery() as nursery:

        async def one(ref: ActorRef, delay: float) -> None:
            nonlocal pending
            if delay:
                await trio.sleep(delay)
            try:
                # Through the cell: the asker's sender stays, even if None (this may
                # run in a task of the router, whose implicit sender is the router).
                value = await ref._resolve().ask(message, math.inf, sender)
            except Exception as exc:
                errors.append(exc)
                pending -= 1
                if not pending:
                    nursery.cancel_scope.cancel()
                return
            if not result:
                result.append(value)
                nursery.cancel_scope.cancel()

        nursery.cancel_scope.deadline = trio.current_time() + limit
        for index, ref in enumerate(order):
            nursery.start_soon(one, ref, index * interval)
    if result:
        return result[0]
    if errors and not pending:
        raise errors[0]
    raise AskTimeout(path, limit, message)
