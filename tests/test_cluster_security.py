"""What arrives on a node's subject from anyone else is refused before it is decoded:
garbage, a forged or tampered frame, a frame under an unknown key, a replay, and (sealed
by a key holder) a message of a type the codec does not know, or a pickle. Each is
logged, and none runs any code of the receiver's.

The frames are published on node ``t``'s real inbox subject over its own NATS
connection; a genuine frame sent last marks the point where every earlier one has been
handled (NATS keeps one publisher's order).
"""

from __future__ import annotations

import logging
import pickle
from typing import Any

import msgspec
import pytest
import trio

pytest.importorskip("nats")
pytest.importorskip("trio_asyncio")

from cluster_actors import KEY, Add, cluster
from cluster_harness import Collector, own_node

import actors
from actors.cluster import ClusterError, Keyring
from actors.cluster._node import join_frames
from actors.cluster._seal import seal

pytestmark = [pytest.mark.nats]

RAN: list[str] = []


class Trap:
    """Records if anything ever builds or unpickles it."""

    def __init__(self) -> None:
        RAN.append("init")

    def __reduce__(self) -> tuple[Any, ...]:
        return (RAN.append, ("unpickled",))


async def test_frames_that_are_not_genuine_are_refused_before_decoding(
    nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "actors")
    with trio.fail_after(60):
        async with own_node(nats_url) as system:
            node = system.cluster
            send, receive = trio.open_memory_channel[Any](100)
            collector = system.spawn(Collector, send, name="collector")
            letters, dead_letters = trio.open_memory_channel[Any](100)
            system.events.subscribe(system.spawn(Collector, letters), actors.DeadLetter)
            await system.idle()
            subject = f"trio-actors.test.node.{node.name}"
            recipient = f"{node.name}#{node.incarnation}"
            right = Keyring({"k1": KEY}, "k1")
            wrong = Keyring({"k1": b"w" * 32}, "k1")
            other_id = Keyring({"k9": KEY}, "k9")
            incarnation = 1
            counter = iter(range(1, 1000))

            def tell(message: Any) -> bytes:
                frame = node.tell_frame(collector.address, None, node.encode(message))
                return join_frames([frame])

            def sealed(body: bytes, keyring: Keyring = right, number: int | None = None) -> bytes:
                return seal(
                    keyring,
                    "n9",
                    incarnation,
                    next(counter) if number is None else number,
                    body,
                    recipient=recipient,
                )

            trap = pickle.dumps(Trap())
            genuine = sealed(tell(Add(1)))
            tampered = bytearray(sealed(tell(Add(2))))
            tampered[-40] ^= 0x01  # (a byte of the message)
            unregistered = msgspec.msgpack.encode(("evil.Payload", {"x": 1}))
            frames = [
                b"garbage that is not a frame at all",
                sealed(tell(Add(3)), wrong),  # forged: a wrong key under the right id
                bytes(tampered),
                sealed(tell(Add(4)), other_id),  # a key id nobody has
                genuine,
                genuine,  # replayed
                sealed(join_frames([node.tell_frame(collector.address, None, unregistered)])),
                sealed(join_frames([node.tell_frame(collector.address, None, trap)])),
                sealed(join_frames([pickle.dumps(("tell", tuple(collector.address), None, b""))])),
                sealed(b"\x00\x00\x10\x00 lengths that do not add up"),
                sealed(tell(Add(5))),  # the last: everything before it was handled
            ]

            RAN.clear()  # (the Trap made above, to pickle it)

            async def publish_all() -> None:
                for frame in frames:
                    await node._nc.publish(subject, frame)
                await node._nc.flush()

            await node._aio(publish_all())
            assert await receive.receive() == Add(1)
            assert await receive.receive() == Add(5)  # (and nothing in between)
            assert RAN == []
            refusals = [r.getMessage() for r in caplog.records if "refused a frame" in r.message]
            for why in ("not a sealed frame", "does not match", "key id", "a replay"):
                assert sum(why in text for text in refusals) >= 1, (why, refusals)
            assert sum("does not match" in text for text in refusals) == 2  # forged, tampered
            # The message of an unregistered type and the pickle: undecodable dead letters.
            undecodable = [await dead_letters.receive() for _ in range(2)]
            assert {letter.reason for letter in undecodable} == {
                actors.DeadLetterReason.UNDECODABLE
            }
            assert "evil.Payload" in str(undecodable[0].message)
            frames_logged = [r.getMessage() for r in caplog.records if "could not be" in r.message]
            assert any("could not be handled" in t or "decoded" in t for t in frames_logged)
            # A sealed message whose frames do not add up is dropped whole, and said so.
            assert any("do not add up" in r.getMessage() for r in caplog.records)


async def test_a_node_with_a_wrong_password_cannot_join(nats_auth_server: Any) -> None:
    server = nats_auth_server
    good = cluster(server.url, "t", user=server.user, password=server.password)
    with trio.fail_after(60):
        async with actors.open_system("test", cluster=good) as system:
            assert system.cluster.live_members() == ["t"]
        bad = cluster(
            server.url, "t", user=server.user, password="not-the-password", connect_timeout=2
        )
        with pytest.raises(ClusterError, match="could not connect to NATS") as caught:
            async with actors.open_system("test", cluster=bad):
                pass
        assert caught.value.__cause__ is not None


async def test_nodes_talk_over_tls(nats_tls: Any) -> None:
    with trio.fail_after(60):
        async with own_node(nats_tls.url, tls=nats_tls.ssl_context) as system:
            assert system.cluster.live_members() == ["t"]
            ref = system.spawn(Collector, trio.open_memory_channel[Any](1)[0], name="c")
            await system.cluster.register("c", ref)
            assert await system.cluster.lookup("c") == ref
        without = cluster(nats_tls.url, "t", connect_timeout=1)
        with pytest.raises(ClusterError):
            async with actors.open_system("test", cluster=without):
                pass


async def test_a_node_asked_for_tls_refuses_a_server_without_it(
    nats_url: str, nats_tls: Any
) -> None:
    config = cluster(nats_url, "t", tls=nats_tls.ssl_context, connect_timeout=2)
    with pytest.raises(ClusterError, match="does not use TLS"):
        async with actors.open_system("test", cluster=config):
            pass
