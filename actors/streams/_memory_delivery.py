"""How :class:`~actors.streams.InMemoryStreams` hands events out and takes settlements:
its consumer handles, its received events, the order of a fetch, and the registry of
armed faults that deliveries and settlements consume."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import trio

from ._config import ConsumerConfig
from ._engine import Consumer, Received, StreamError, check_fetch
from ._memory_state import ConsumerState, Delivery, Event, StreamData

if TYPE_CHECKING:
    from ._memory import InMemoryStreams

FaultKind = Literal["fail_publish", "fail_ack", "lose_ack", "duplicate"]
_Settlement = Literal["ack", "nak", "term", "in_progress"]

_FAULT_METHODS: dict[FaultKind, str] = {
    "fail_publish": "fail_publishes",
    "fail_ack": "fail_acks",
    "lose_ack": "lose_acks",
    "duplicate": "duplicate_deliveries",
}


class Faults:
    """Armed faults, in the order they were armed: each has a count left and a scope
    (a subject pattern for publishes, a durable name for the others; ``None``: any)."""

    def __init__(self) -> None:
        self._armed: list[tuple[FaultKind, list[int], str | None]] = []

    def arm(self, kind: FaultKind, count: int, scope: str | None) -> None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be an int >= 1, got {count!r}")
        if scope is not None and not isinstance(scope, str):
            raise TypeError(f"the scope of a fault must be a str or None, got {scope!r}")
        self._armed.append((kind, [count], scope))

    def take(self, kind: FaultKind, applies: Callable[[str], bool]) -> bool:
        """Consume one fault of ``kind`` whose scope ``applies``; whether there was one."""
        for index, (armed, left, scope) in enumerate(self._armed):
            if armed == kind and (scope is None or applies(scope)):
                left[0] -= 1
                if not left[0]:
                    del self._armed[index]
                return True
        return False

    def counts(self) -> dict[str, int]:
        armed: dict[str, int] = {}
        for kind, left, _ in self._armed:
            name = _FAULT_METHODS[kind]
            armed[name] = armed.get(name, 0) + left[0]
        return armed

    def clear(self) -> None:
        self._armed.clear()


class MemoryConsumer(Consumer):
    """A handle on a durable consumer of an :class:`InMemoryStreams` (by name: it
    follows the consumer if it is deleted and created again, as a JetStream handle
    does). ``fetch`` and ``info`` raise :class:`StreamNotFound` while it does not
    exist."""

    def __init__(self, engine: InMemoryStreams, stream: str, config: ConsumerConfig) -> None:
        self._engine = engine
        self.stream = stream
        self.config = config

    def __repr__(self) -> str:
        return f"<InMemoryStreams consumer {self.config.durable!r} of {self.stream!r}>"

    async def fetch(self, batch: int, timeout: float) -> list[Received]:
        """See :meth:`Consumer.fetch`. Cancelled while it waits, it took nothing."""
        timeout = check_fetch(batch, timeout)
        await trio.lowlevel.checkpoint_if_cancelled()
        deadline = trio.current_time() + timeout
        while True:
            data, state = self._engine._consumer_state(self.stream, self.config.durable)
            now = trio.current_time()
            taken = self._take(data, state, batch, now)
            if taken or now >= deadline:
                await trio.lowlevel.cancel_shielded_checkpoint()
                return taken
            changed = data.changed
            with trio.move_on_at(min(deadline, state.next_due())):
                await changed.wait()

    async def info(self) -> tuple[int, int]:
        """See :meth:`Consumer.info`."""
        await trio.lowlevel.checkpoint()
        _, state = self._engine._consumer_state(self.stream, self.config.durable)
        return state.undelivered, len(state.pending)

    def _take(
        self, data: StreamData, state: ConsumerState, batch: int, now: float
    ) -> list[Received]:
        """Hand out up to ``batch`` events: the due redeliveries first (earliest due
        first, then by sequence), then new events, within ``max_ack_pending``."""
        taken: list[Received] = []
        max_deliver = state.config.max_deliver
        for _, seq in sorted((d.due, seq) for seq, d in state.pending.items() if d.due <= now):
            if len(taken) >= batch:
                break
            delivery = state.pending[seq]
            if max_deliver is not None and delivery.delivered >= max_deliver:
                del state.pending[seq]  # delivered enough: never again
                continue
            delivery.delivered += 1
            delivery.due = now + state.ack_wait(delivery.delivered)
            taken.append(self._hand_out(data, state, data.events[seq], delivery, now))
        seq = max(state.next_seq, data.first_seq())
        while (
            len(taken) < batch
            and state.undelivered > 0
            and len(state.pending) < state.config.max_ack_pending
        ):
            event = data.events.get(seq)
            while event is None or not state.matches(event.subject):
                seq += 1
                assert seq <= data.last_seq, "the count of undelivered events is out of step"
                event = data.events.get(seq)
            state.next_seq = seq + 1
            state.undelivered -= 1
            delivery = state.pending[seq] = Delivery(1, now + state.ack_wait(1))
            taken.append(self._hand_out(data, state, event, delivery, now))
            seq += 1
        return taken

    def _hand_out(
        self, data: StreamData, state: ConsumerState, event: Event, delivery: Delivery, now: float
    ) -> Received:
        if self._engine._faults.take("duplicate", lambda durable: durable == state.name):
            delivery.due = now  # due again at once: the next fetch hands it out again
        return MemoryReceived(self._engine, data.name, state, event, delivery.delivered)


class MemoryReceived(Received):
    """One delivery by an :class:`InMemoryStreams` consumer. Its settlement applies to
    the event (by sequence) while the consumer that delivered it exists."""

    def __init__(
        self,
        engine: InMemoryStreams,
        stream: str,
        state: ConsumerState,
        event: Event,
        delivered: int,
    ) -> None:
        self._engine = engine
        self._state = state
        self._settled = False
        self.subject = event.subject
        self.data = event.data
        self.headers = event.headers
        self.stream = stream
        self.seq = event.seq
        self.delivered = delivered
        self.timestamp = event.timestamp
        self.pending = state.undelivered

    def __repr__(self) -> str:
        return (
            f"<Received {self.stream} seq {self.seq} {self.subject!r} "
            f"delivered {self.delivered} to {self._state.name!r}>"
        )

    async def ack(self) -> None:
        """See :meth:`Received.ack`; raises :class:`StreamError` when a fault is armed
        (:meth:`InMemoryStreams.fail_acks`)."""
        await self._settle("ack")

    async def nak(self, delay: float | None = None) -> None:
        """See :meth:`Received.nak`."""
        if delay is not None and (
            isinstance(delay, bool)
            or not isinstance(delay, int | float)
            or math.isnan(delay)
            or delay < 0
        ):
            raise ValueError(f"nak needs a delay of seconds >= 0 or None, got {delay!r}")
        await self._settle("nak", delay)

    async def term(self) -> None:
        """See :meth:`Received.term`."""
        await self._settle("term")

    async def in_progress(self) -> None:
        """See :meth:`Received.in_progress`."""
        await self._settle("in_progress")

    async def _settle(self, how: _Settlement, delay: float | None = None) -> None:
        await trio.lowlevel.checkpoint()
        if self._settled:
            return
        engine = self._engine
        engine._require_open()
        durable = self._state.name
        if how == "ack":
            if engine._faults.take("fail_ack", lambda name: name == durable):
                raise StreamError(
                    f"ack of {self.stream} seq {self.seq} (consumer {durable!r}) failed: a "
                    "fault injected by InMemoryStreams.fail_acks; the event stays "
                    "unacknowledged and will be delivered again"
                )
            if engine._faults.take("lose_ack", lambda name: name == durable):
                self._settled = True
                return
        if how != "in_progress":
            self._settled = True
        data = engine._streams.get(self.stream)
        if data is None or data.consumers.get(durable) is not self._state:
            return  # the consumer is gone: JetStream ignores it too
        now = trio.current_time()
        data.refresh(now)
        delivery = self._state.pending.get(self.seq)
        if delivery is None:
            return
        if how in ("ack", "term"):
            data.settled_by(self._state, self.seq)
        elif how == "nak":
            delivery.due = now + (delay or 0.0)
        elif delivery.due > now:
            delivery.due = now + self._state.ack_wait(delivery.delivered)
        data.notify()
