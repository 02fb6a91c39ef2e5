"""Sealed frames between the nodes of a cluster: an HMAC checked before anything is
decoded, key rotation, and replays refused."""

from __future__ import annotations

import random

import pytest

from actors import ActorError
from actors.cluster._seal import Keyring, Opener, Sealed, SealRefused, seal

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
RING = Keyring({"k1": KEY}, "k1")


def refused(opener: Opener, data: bytes) -> SealRefused:
    with pytest.raises(SealRefused) as caught:
        opener.open(data)
    return caught.value


def test_open_gives_back_what_was_sealed() -> None:
    data = seal(RING, "n1", 17, 3, b"\x00the body")
    assert Opener(RING).open(data) == Sealed("n1", 17, 3, b"\x00the body")
    empty = seal(RING, "n\u00e9", 2**64 - 1, 0, b"")
    assert Opener(RING).open(empty) == Sealed("n\u00e9", 2**64 - 1, 0, b"")


def test_the_layout_is_as_documented() -> None:
    data = seal(RING, "n1", 1, 2, b"body", recipient="n2#5")
    assert data[:1] == b"\xa1"
    assert data[1:12] == b"\x02k1\x02n1\x04n2#5"
    assert data[12:28] == (1).to_bytes(8, "big") + (2).to_bytes(8, "big")
    assert data[28:-32] == b"body"
    assert len(data) == 28 + 4 + 32


def test_one_flipped_bit_anywhere_is_refused() -> None:
    data = seal(RING, "n1", 1, 1, b"some body bytes")
    body_at = len(data) - 32 - len(b"some body bytes")
    for index in range(len(data)):
        for bit in range(8):
            altered = bytearray(data)
            altered[index] ^= 1 << bit
            error = refused(Opener(RING), bytes(altered))
            assert error.reason in {"malformed", "unknown-key", "bad-tag"}
            if index >= 4:  # past the key id: the sender, numbers, body and tag
                assert error.reason in {"bad-tag", "malformed"}
            if index >= body_at:
                assert error.reason == "bad-tag"


def test_a_frame_sealed_with_other_bytes_under_the_same_id_is_refused() -> None:
    forged = seal(Keyring({"k1": OTHER_KEY}, "k1"), "n1", 1, 1, b"pay me")
    error = refused(Opener(RING), forged)
    assert error.reason == "bad-tag"
    assert error.sender == "n1"
    assert str(error) == (
        "refused a frame claiming to come from node 'n1': its tag does not match (a wrong "
        "key, a forged or an altered frame)"
    )
    assert isinstance(error, ActorError)


def test_an_unknown_key_id_is_refused() -> None:
    data = seal(Keyring({"k9": KEY}, "k9"), "n1", 1, 1, b"x")
    error = refused(Opener(RING), data)
    assert error.reason == "unknown-key"
    assert "key id this node does not have" in str(error)


def test_truncated_frames_and_garbage_are_refused() -> None:
    data = seal(RING, "n1", 1, 1, b"body")
    header = len(data) - 32 - len(b"body")
    for size in range(len(data)):
        error = refused(Opener(RING), data[:size])
        assert error.reason in {"malformed", "bad-tag"}
        if size < header + 32:
            assert error.reason == "malformed"
    generator = random.Random(16)
    for _ in range(500):
        garbage = generator.randbytes(generator.randint(0, 120))
        assert refused(Opener(RING), garbage).reason in {"malformed", "unknown-key"}
    assert refused(Opener(RING), b"").sender is None


def test_the_same_frame_twice_is_a_replay() -> None:
    opener = Opener(RING)
    data = seal(RING, "n1", 1, 5, b"transfer 100")
    opener.open(data)
    error = refused(opener, data)
    assert error.reason == "replayed"
    assert str(error) == (
        "refused a frame claiming to come from node 'n1': its counter is not above the "
        "last one accepted (a replay)"
    )


def test_counters_must_increase() -> None:
    opener = Opener(RING)
    first, second, third = (seal(RING, "n1", 1, counter, b"") for counter in (3, 7, 9))
    opener.open(second)
    assert refused(opener, first).reason == "replayed"
    assert opener.open(third).counter == 9  # gaps are fine (other receivers' frames)
    # counters are per sender
    assert opener.open(seal(RING, "n2", 1, 1, b"")).sender == "n2"


def test_a_refused_frame_changes_nothing() -> None:
    opener = Opener(RING)
    forged = seal(Keyring({"k1": OTHER_KEY}, "k1"), "n1", 9, 1000, b"")
    refused(opener, forged)
    assert opener.open(seal(RING, "n1", 1, 1, b"")).counter == 1


def test_a_new_incarnation_makes_the_old_ones_frames_stale() -> None:
    opener = Opener(RING)
    old = [seal(RING, "n1", 1, counter, b"") for counter in (1, 2)]
    opener.open(old[0])
    opener.open(seal(RING, "n1", 2, 0, b"restarted"))  # its count starts afresh
    error = refused(opener, old[1])
    assert error.reason == "stale-incarnation"
    assert "older incarnation of that node" in str(error)
    assert opener.open(seal(RING, "n1", 2, 1, b"")).incarnation == 2


def test_a_retired_incarnation_is_refused() -> None:
    opener = Opener(RING)
    opener.open(seal(RING, "n1", 4, 1, b""))
    opener.retire("n1", 4)
    assert refused(opener, seal(RING, "n1", 4, 2, b"")).reason == "stale-incarnation"
    opener.retire("n3", 1)  # a node never heard from
    assert refused(opener, seal(RING, "n3", 1, 1, b"")).reason == "stale-incarnation"
    assert opener.open(seal(RING, "n1", 5, 0, b"")).incarnation == 5
    opener.retire("n1", 2)  # older than what is known: nothing changes
    assert opener.open(seal(RING, "n1", 5, 1, b"")).counter == 1


def test_a_frame_for_another_recipient_is_refused() -> None:
    to_n2 = seal(RING, "n1", 1, 1, b"", recipient="n2#1")
    assert refused(Opener(RING, "n3#1"), to_n2).reason == "misdirected"
    assert refused(Opener(RING, "n2#0"), to_n2).reason == "misdirected"  # an older n2
    assert Opener(RING, "n2#1").open(to_n2).sender == "n1"
    assert Opener(RING, "n3#1").open(seal(RING, "n1", 1, 1, b"")).sender == "n1"


def test_rotation_add_then_switch_then_remove() -> None:
    new_key = bytes(range(100, 132))
    both_old_current = Keyring({"k1": KEY, "k2": new_key}, "k1")
    both_new_current = Keyring({"k1": KEY, "k2": new_key}, "k2")
    only_new = Keyring({"k2": new_key}, "k2")
    old_node = Opener(RING)
    upgraded = Opener(both_old_current)
    # step 1: everyone can open k2 before anyone seals with it
    assert old_node.open(seal(both_old_current, "a", 1, 1, b"")).counter == 1
    # step 2: k2 seals; nodes holding both open it
    assert upgraded.open(seal(both_new_current, "a", 1, 2, b"")).counter == 2
    # an opener's keyring can be replaced: what it accepted is kept
    upgraded.keyring = only_new
    assert refused(upgraded, seal(both_new_current, "a", 1, 2, b"")).reason == "replayed"
    # step 3: k1 is gone
    assert refused(upgraded, seal(RING, "a", 1, 3, b"")).reason == "unknown-key"
    assert refused(old_node, seal(only_new, "a", 1, 4, b"")).reason == "unknown-key"


def test_bad_keyrings_are_refused_naming_the_problem() -> None:
    with pytest.raises(ValueError, match="key 'k1' is 16 bytes long; keys must be at least 32"):
        Keyring({"k1": bytes(16)}, "k1")
    with pytest.raises(ValueError, match="the current key id 'k2' is not among"):
        Keyring({"k1": KEY}, "k2")
    with pytest.raises(TypeError, match="key 'k1' must be bytes, not str"):
        Keyring({"k1": "x" * 40}, "k1")  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="a key id must be a str of 1 to 255 bytes"):
        Keyring({"": KEY}, "")
    with pytest.raises(ValueError, match="sender name must be 1 to 255 bytes"):
        seal(RING, "", 1, 1, b"")
    with pytest.raises(ValueError, match="incarnation and counter must be in"):
        seal(RING, "n1", 1, 2**64, b"")


def test_keys_never_appear_in_reprs() -> None:
    ring = Keyring({"k1": KEY, "k2": OTHER_KEY}, "k2")
    opener = Opener(ring, "n1#1")
    for text in (repr(ring), str(ring), repr(opener)):
        assert KEY.hex() not in text
        assert repr(KEY) not in text
        assert repr(OTHER_KEY) not in text
    assert repr(ring) == "Keyring(ids=['k1', 'k2'], current='k2')"
    generated = Keyring.generate("fresh")
    assert generated.ids == ("fresh",)
    assert generated.current == "fresh"
