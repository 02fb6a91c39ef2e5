"""The binary frames of a node (``actors._node``), driven on a node of a single-process
system, without a link.

Tells: a burst of tells from one sender to one actor crosses as one frame (its
addresses once, then each message as its length and its pickle), and the receiving node
delivers every message of it, in order; an undecodable message is a dead letter while
the others arrive; a frame whose messages do not add up is refused whole. Asks and
answers: an ask frame reaches the actor and its answer goes back as a reply frame (an
error as a pickled frame); a reply frame settles the ask that waits for it."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import trio
import trio.testing

import actors
from actors._node import ASK, REPLY, Node
from actors._wire import pack_header


class Collector(actors.Actor):
    """Puts every message it gets, with its sender, into a memory channel of the test's."""

    def __init__(self, into: trio.MemorySendChannel[Any]) -> None:
        self.into = into

    def receive(self, message: Any) -> None:
        self.into.send_nowait((message, self.context.sender))


class LoopbackNode(Node):
    """A node with no link: what it would send is kept in ``sent``."""

    def __init__(self, system: actors.ActorSystem) -> None:
        super().__init__(system)
        self.sent: list[tuple[str, bytes]] = []

    def send_bytes(self, node: str, data: bytes) -> None:
        self.sent.append((node, data))


def tells(head: bytes, *payloads: bytes) -> bytes:
    return head + b"".join(pack_header(len(p)) + p for p in payloads)


def pickled(message: Any) -> bytes:
    return pickle.dumps(message, pickle.HIGHEST_PROTOCOL)


async def test_every_message_of_a_frame_arrives_in_order_with_its_sender() -> None:
    into, out = trio.open_memory_channel[Any](2000)
    async with actors.open_system("frames") as system:
        collector = system.spawn(Collector, into)
        sender = system.spawn(Collector, into)
        node = LoopbackNode(system)
        head = node.tell_head(collector.address, sender)
        assert head is not None
        assert head is node.tell_head(collector.address, sender)  # (kept: one object)
        node.on_tell_frame(tells(head, *(pickled(i) for i in range(1000))))
        got = [await out.receive() for _ in range(1000)]
    assert [message for message, _ in got] == list(range(1000))
    assert {who for _, who in got} == {sender}


async def test_an_undecodable_message_is_a_dead_letter_and_the_rest_arrive() -> None:
    into, out = trio.open_memory_channel[Any](10)
    letters, dead = trio.open_memory_channel[Any](10)
    async with actors.open_system("frames") as system:
        collector = system.spawn(Collector, into)
        system.events.subscribe(system.spawn(Collector, letters), actors.DeadLetter)
        await system.idle()
        node = LoopbackNode(system)
        head = node.tell_head(collector.address, None)
        assert head is not None
        bad = b"\x80\x05 not a pickle"
        node.on_tell_frame(tells(head, pickled("one"), bad, pickled("two")))
        assert [await out.receive() for _ in range(2)] == [("one", None), ("two", None)]
        letter, _ = await dead.receive()
    assert letter.reason == actors.DeadLetterReason.UNDECODABLE
    assert f"undecodable message of {len(bad)} bytes" in str(letter.message)
    assert letter.recipient == collector


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda frame, head: frame[:-1], id="the last message cut short"),
        pytest.param(lambda frame, head: frame + b"\x00\x00", id="a length cut short"),
        pytest.param(lambda frame, head: frame + pack_header(9) + b"x", id="a length past the end"),
        pytest.param(lambda frame, head: frame[: len(head)], id="no message"),
    ],
)
async def test_a_frame_whose_messages_do_not_add_up_is_refused_whole(damage: Any) -> None:
    into, out = trio.open_memory_channel[Any](10)
    async with actors.open_system("frames") as system:
        collector = system.spawn(Collector, into)
        node = LoopbackNode(system)
        head = node.tell_head(collector.address, None)
        assert head is not None
        frame = tells(head, pickled("first"), pickled("second"))
        bad = damage(frame[: len(frame) - len(pickled("second")) - 4], head)  # ("first")
        with pytest.raises(ValueError, match="does not split into messages"):
            node.on_tell_frame(bad)
        node.on_tell_frame(tells(head, pickled("after")))
        assert await out.receive() == ("after", None)  # (and nothing of the bad frame)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.WouldBlock):
            out.receive_nowait()


async def test_a_tell_to_another_node_goes_as_a_frame_of_its_own_messages() -> None:
    async with actors.open_system("frames") as system:
        node = LoopbackNode(system)
        target = actors.Address("frames", "/user/far", 7, "w9")
        node.tell_remote(target, pickled("hello"), None)
        [(to, frame)] = node.sent
        assert to == "w9"
        head = node.tell_head(target, None)
        assert head is not None
        assert frame == tells(head, pickled("hello"))
        assert frame == node.tell_frame(target, None, pickled("hello"))


class Answerer(actors.Actor):
    def receive(self, message: Any) -> Any:
        if message == "fail":
            raise KeyError("no such thing")
        return ("answer to", message)


async def test_an_ask_frame_reaches_the_actor_and_its_answer_goes_back_in_a_reply_frame() -> None:
    async with actors.open_system("frames") as system:
        answerer = system.spawn(Answerer)
        asker = system.spawn(Answerer)
        node = LoopbackNode(system)
        frame = node.ask_frame(7, answerer.address, asker, pickled("question"), 5.0)
        assert frame[:1] == ASK
        assert node.on_binary_frame("w9", frame)
        node.on_binary_frame("w9", node.ask_frame(8, answerer.address, None, pickled("fail"), 5.0))
        await system.idle()
        [(to, answer), (to_too, failure)] = node.sent
    assert (to, to_too) == ("w9", "w9")
    assert answer[:1] == REPLY
    assert answer == node.reply_frame(7, answer[9:])
    assert pickle.loads(answer[9:]) == ("answer to", "question")
    # An error: a pickled frame, that says what it was.
    kind, ask_id, ok, payload, described = pickle.loads(failure)
    assert (kind, ask_id, ok) == ("reply", 8, False)
    assert described == ("builtins.KeyError", "'no such thing'")
    assert isinstance(pickle.loads(payload), KeyError)


async def test_a_reply_frame_settles_the_ask_that_waits_for_it() -> None:
    async with actors.open_system("frames") as system:
        node = LoopbackNode(system)
        target = actors.Address("frames", "/user/far", 7, "w9")
        answers: list[Any] = []

        async def ask() -> None:
            answers.append(await node.ask_remote(target, pickled("question"), 5.0, None))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask)
            await trio.testing.wait_all_tasks_blocked()
            [(to, frame)] = node.sent
            assert to == "w9"
            assert frame[:1] == ASK
            # It reads back as it was made: to the same target, with its id and timeout.
            ask_id = max(node._asks)
            assert frame == node.ask_frame(ask_id, target, None, pickled("question"), 5.0)
            assert node.on_binary_frame("w9", node.reply_frame(ask_id, pickled(42)))
        assert answers == [42]
        # A pickled frame is not a binary one.
        assert not node.on_binary_frame("w9", pickle.dumps(("reply", ask_id, True, b"", None)))
