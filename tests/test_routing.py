"""The routing logics of ``actors._routing``: pure selection, no actors and no clock.

Every test is deterministic: random routing uses fixed seeds, consistent hashing uses a
stable hash (so its placements are fixed numbers, checked here and in a subprocess with
other ``PYTHONHASHSEED`` values), and the hypothesis tests are derandomized.
"""

from __future__ import annotations

import enum
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.routing import (
    BroadcastRouting,
    ConsistentHashingRouting,
    RandomRouting,
    RoundRobinRouting,
    RoutingLogic,
    SmallestMailboxRouting,
)
from actors.routing import _hashing as routing
from actors.routing._hashing import _encode_key, _key_point

ABC = ("a", "b", "c")
NODES = tuple(f"node-{i}" for i in range(10))
KEYS = [f"key-{i}" for i in range(10_000)]

T = TypeVar("T")


def identity(message: Any) -> Any:
    return message


def picks(logic: RoutingLogic[str], routees: Sequence[str], count: int) -> list[str]:
    """The routee picked for each of ``count`` messages (single-routee logics)."""
    out = []
    for i in range(count):
        selected = logic.select(i, routees)
        assert len(selected) == 1
        out.append(selected[0])
    return out


def placement(logic: RoutingLogic[T], routees: Sequence[T], keys: list[str]) -> list[T]:
    return [logic.select(key, routees)[0] for key in keys]


def all_logics() -> list[RoutingLogic[str]]:
    return [
        RoundRobinRouting(),
        RandomRouting(seed=1),
        BroadcastRouting(),
        ConsistentHashingRouting(identity),
        SmallestMailboxRouting(str.__len__),
    ]


# -- every logic ---------------------------------------------------------------------


@pytest.mark.parametrize("logic", all_logics(), ids=repr)
def test_empty_routees_give_an_empty_selection(logic: RoutingLogic[str]) -> None:
    assert logic.select("m", ()) == ()
    assert logic.select("m", []) == ()
    logic.routees_changed(ABC)
    assert logic.select("m", ()) == ()
    logic.routees_changed(())
    assert logic.select("m", []) == ()


@pytest.mark.parametrize("logic", all_logics(), ids=repr)
def test_a_selection_is_a_tuple_of_routees(logic: RoutingLogic[str]) -> None:
    for routees in (ABC, list(ABC), ("only",)):
        for i in range(10):
            selected = logic.select(f"m{i}", routees)
            assert isinstance(selected, tuple)
            assert selected
            assert set(selected) <= set(routees)


def test_public_classes_live_in_actors_routing() -> None:
    for cls in (
        RoutingLogic,
        RoundRobinRouting,
        RandomRouting,
        BroadcastRouting,
        ConsistentHashingRouting,
        SmallestMailboxRouting,
    ):
        assert cls.__module__ == "actors.routing"


def test_routing_logic_is_abstract_and_routees_changed_is_optional() -> None:
    with pytest.raises(TypeError):
        RoutingLogic()  # type: ignore[abstract]

    class First(RoutingLogic[str]):
        def select(self, message: Any, routees: Sequence[str]) -> Sequence[str]:
            return tuple(routees[:1])

    first = First()
    first.routees_changed(ABC)  # the default does nothing
    assert first.select("m", ABC) == ("a",)


def test_reprs_name_the_configuration() -> None:
    assert repr(RoundRobinRouting()) == "RoundRobinRouting()"
    assert repr(RandomRouting(seed=7)) == "RandomRouting(seed=7)"
    assert repr(BroadcastRouting()) == "BroadcastRouting()"
    assert "virtual_nodes=5" in repr(ConsistentHashingRouting(identity, virtual_nodes=5))
    assert "SmallestMailboxRouting(size=" in repr(SmallestMailboxRouting(str.__len__))


# -- round robin -----------------------------------------------------------------------


def test_round_robin_is_an_exact_rotation() -> None:
    rr: RoundRobinRouting[str] = RoundRobinRouting()
    sequence = picks(rr, ABC, 300)
    assert sequence == list(ABC) * 100
    assert Counter(sequence) == {"a": 100, "b": 100, "c": 100}


def test_round_robin_accepts_lists_and_fresh_equal_tuples() -> None:
    rr: RoundRobinRouting[str] = RoundRobinRouting()
    sequence = [rr.select(i, list(ABC))[0] for i in range(4)]
    sequence += [rr.select(i, tuple(list(ABC)))[0] for i in range(4)]
    assert sequence == ["a", "b", "c", "a", "b", "c", "a", "b"]


def test_round_robin_added_routee_after_the_last_served_joins_this_round() -> None:
    rr: RoundRobinRouting[str] = RoundRobinRouting()
    assert picks(rr, ABC, 2) == ["a", "b"]
    grown = (*ABC, "d")
    rr.routees_changed(grown)
    assert picks(rr, grown, 6) == ["c", "d", "a", "b", "c", "d"]
    assert Counter(picks(rr, grown, 400)) == dict.fromkeys(grown, 100)


def test_round_robin_added_routee_before_the_last_served_waits_a_round() -> None:
    rr: RoundRobinRouting[str] = RoundRobinRouting()
    assert picks(rr, ABC, 2) == ["a", "b"]
    grown = ("x", *ABC)
    assert picks(rr, grown, 5) == ["c", "x", "a", "b", "c"]


def test_round_robin_removing_the_last_served_continues_with_its_successor() -> None:
    rr: RoundRobinRouting[str] = RoundRobinRouting()
    routees = ("a", "b", "c", "d")
    assert picks(rr, routees, 2) == ["a", "b"]
    shrunk = ("a", "c", "d")
    rr.routees_changed(shrunk)
    assert picks(rr, shrunk, 4) == ["c", "d", "a", "c"]


def test_round_robin_removing_the_next_one_skips_only_it() -> None:
    rr: RoundRobinRouting[str] = RoundRobinRouting()
    routees = ("a", "b", "c", "d")
    assert picks(rr, routees, 2) == ["a", "b"]
    assert picks(rr, ("a", "b", "d"), 3) == ["d", "a", "b"]


def test_round_robin_removing_the_last_served_and_its_successors_wraps() -> None:
    rr: RoundRobinRouting[str] = RoundRobinRouting()
    routees = ("a", "b", "c", "d")
    assert picks(rr, routees, 3) == ["a", "b", "c"]
    assert picks(rr, ("a", "b"), 3) == ["a", "b", "a"]


def test_round_robin_replacing_every_routee_starts_at_the_first() -> None:
    rr: RoundRobinRouting[str] = RoundRobinRouting()
    assert picks(rr, ABC, 2) == ["a", "b"]
    assert picks(rr, ("x", "y"), 3) == ["x", "y", "x"]


def test_round_robin_keeps_the_anchor_across_changes_without_messages() -> None:
    rr: RoundRobinRouting[str] = RoundRobinRouting()
    assert picks(rr, ABC, 1) == ["a"]
    rr.routees_changed(("b", "c"))  # "a", served last, is gone
    rr.routees_changed(())  # no routees for a while
    rr.routees_changed(("b", "c", "d"))
    # still anchored on "a" as it was served in (a, b, c): its successor "b" is next
    assert picks(rr, ("b", "c", "d"), 4) == ["b", "c", "d", "b"]


def test_round_robin_anchors_on_the_last_served_after_a_whole_round() -> None:
    rr: RoundRobinRouting[str] = RoundRobinRouting()
    assert picks(rr, ABC, 1) == ["a"]
    rr.routees_changed(("b", "c"))  # "a" is gone: the rotation resumes at "b"
    assert picks(rr, ("b", "c"), 2) == ["b", "c"]  # exactly one round: "c" served last
    assert picks(rr, ("b", "c", "d"), 3) == ["d", "b", "c"]


def test_round_robin_routees_changed_is_only_a_hint() -> None:
    told: RoundRobinRouting[str] = RoundRobinRouting()
    untold: RoundRobinRouting[str] = RoundRobinRouting()
    changes = [ABC, ("a", "b"), ("a", "b", "c", "d"), ("d",), ("c", "d", "e"), ABC]
    seen_told: list[str] = []
    seen_untold: list[str] = []
    for i, routees in enumerate(changes):
        told.routees_changed(routees)
        seen_told += picks(told, routees, i + 2)
        seen_untold += picks(untold, list(routees), i + 2)
    assert seen_told == seen_untold


def test_round_robin_serves_a_routee_listed_twice_twice_per_round() -> None:
    rr: RoundRobinRouting[str] = RoundRobinRouting()
    assert Counter(picks(rr, ("a", "b", "a"), 30)) == {"a": 20, "b": 10}


def test_round_robin_empty_routees_keep_the_position() -> None:
    rr: RoundRobinRouting[str] = RoundRobinRouting()
    assert picks(rr, ABC, 2) == ["a", "b"]
    assert rr.select("m", ()) == ()
    assert picks(rr, ABC, 2) == ["c", "a"]


@settings(derandomize=True, max_examples=300, deadline=None)
@given(
    size=st.integers(1, 8),
    served=st.integers(0, 30),
    data=st.data(),
)
def test_round_robin_add_remove_neither_repeats_nor_skips_within_the_round(
    size: int, served: int, data: st.DataObject
) -> None:
    """Served k messages, then some routees are removed and some inserted (the others
    keep their order): every surviving routee not yet served in this round is served
    before any routee already served in it comes round again."""
    old = [f"r{i}" for i in range(size)]
    keep = data.draw(st.lists(st.booleans(), min_size=size, max_size=size))
    new: list[str] = []
    for i, (name, kept) in enumerate(zip(old, keep, strict=True)):
        new += [f"new{i}-{j}" for j in range(data.draw(st.integers(0, 2)))]
        if kept:
            new.append(name)
    new += [f"new-end-{j}" for j in range(data.draw(st.integers(0, 2)))]
    if not new:
        new = ["only"]
    rr: RoundRobinRouting[str] = RoundRobinRouting()
    assert picks(rr, tuple(old), served) == [old[i % size] for i in range(served)]
    this_round = old[: served % size]
    pending = [r for r in old[served % size :] if r in new]
    after = picks(rr, tuple(new), len(new))
    assert sorted(after) == sorted(new)  # a full rotation of the new routees
    again = [after.index(r) for r in this_round if r in new]
    first_repeat = min(again, default=len(after))
    assert all(after.index(r) < first_repeat for r in pending)
    assert [r for r in after if r in pending] == pending  # in their order


# -- random ----------------------------------------------------------------------------


def test_random_routing_is_uniform_within_bounds() -> None:
    routees = ("a", "b", "c", "d", "e")
    counts = Counter(picks(RandomRouting(seed=20240601), routees, 10_000))
    expected = 10_000 / len(routees)
    assert set(counts) == set(routees)
    for routee in routees:
        assert abs(counts[routee] - expected) <= 0.05 * expected
    chi_square = sum((counts[r] - expected) ** 2 / expected for r in routees)
    assert chi_square < 18.47  # 4 degrees of freedom, p = 0.001


def test_random_routing_same_seed_same_sequence() -> None:
    first = picks(RandomRouting(seed=42), NODES, 1_000)
    second = picks(RandomRouting(seed=42), list(NODES), 1_000)
    other = picks(RandomRouting(seed=43), NODES, 1_000)
    assert first == second
    assert first != other


def test_random_routing_without_seed_still_picks_routees() -> None:
    assert set(picks(RandomRouting(), ABC, 100)) <= set(ABC)


@pytest.mark.parametrize("seed", [1.5, "7", True, b"x"])
def test_random_routing_rejects_a_bad_seed(seed: Any) -> None:
    with pytest.raises(TypeError, match="seed must be an int or None"):
        RandomRouting(seed=seed)


# -- broadcast -------------------------------------------------------------------------


def test_broadcast_routing_selects_every_routee_in_order() -> None:
    broadcast: BroadcastRouting[str] = BroadcastRouting()
    assert broadcast.select("m", ABC) is ABC  # a tuple is returned as is
    assert broadcast.select("m", ["b", "a", "b"]) == ("b", "a", "b")
    assert broadcast.select("m", ("x",)) == ("x",)


# -- consistent hashing ----------------------------------------------------------------


def test_consistent_hashing_same_key_same_routee() -> None:
    ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(
        lambda message: message["customer"]
    )
    for customer in range(50):
        owners = {
            ch.select({"customer": customer, "order": order}, NODES)[0] for order in range(10)
        }
        assert len(owners) == 1


def test_consistent_hashing_spreads_keys_within_bounds() -> None:
    ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(identity)
    counts = Counter(placement(ch, NODES, KEYS))
    assert set(counts) == set(NODES)
    for node in NODES:  # 100 virtual nodes: each share within 30% of 1/n
        assert abs(counts[node] - 1_000) <= 300, counts


def test_consistent_hashing_adding_a_routee_moves_only_its_share_to_it() -> None:
    ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(identity)
    before = placement(ch, NODES, KEYS)
    grown = (*NODES, "node-10")
    ch.routees_changed(grown)
    after = placement(ch, grown, KEYS)
    moved = [(b, a) for b, a in zip(before, after, strict=True) if b != a]
    assert 0 < len(moved) <= (1 / 11 + 0.05) * len(KEYS)
    assert {a for _, a in moved} == {"node-10"}


def test_consistent_hashing_removing_a_routee_moves_only_its_keys() -> None:
    ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(identity)
    before = placement(ch, NODES, KEYS)
    shrunk = tuple(node for node in NODES if node != "node-3")
    after = placement(ch, shrunk, KEYS)
    for b, a in zip(before, after, strict=True):
        assert a == b if b != "node-3" else a != "node-3"
    assert "node-3" in before


def test_consistent_hashing_does_not_depend_on_routee_order_or_instance() -> None:
    reference = placement(ConsistentHashingRouting(identity), NODES, KEYS[:2_000])
    assert placement(ConsistentHashingRouting(identity), NODES[::-1], KEYS[:2_000]) == reference
    assert placement(ConsistentHashingRouting(identity), list(NODES), KEYS[:2_000]) == reference
    shuffled = NODES[3:] + NODES[:3]
    assert placement(ConsistentHashingRouting(identity), shuffled, KEYS[:2_000]) == reference


def test_consistent_hashing_placement_is_pinned() -> None:
    """Known answers: the hash scheme (BLAKE2b over canonical encodings) is part of the
    contract, since routers on different processes or nodes must agree."""
    nodes = tuple(f"node-{i}" for i in range(5))
    ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(identity)
    owners = [nodes.index(ch.select(f"customer-{i}", nodes)[0]) for i in range(20)]
    assert owners == [1, 4, 3, 3, 4, 2, 4, 0, 3, 3, 1, 3, 4, 2, 2, 4, 2, 3, 0, 0]
    assert _key_point("customer-42") == 15322730490671559516
    assert _key_point(42) == 9471131391110514215
    assert _key_point(("a", 1)) == 16248810782124677634


def test_consistent_hashing_placement_is_the_same_under_other_hash_seeds() -> None:
    code = (
        "from actors.routing import ConsistentHashingRouting\n"
        "nodes = tuple(f'node-{i}' for i in range(10))\n"
        "ch = ConsistentHashingRouting(lambda m: m)\n"
        "keys = [f'key-{i}' for i in range(500)] + [(i, str(i).encode()) for i in range(500)]\n"
        "print(','.join(ch.select(k, nodes)[0][5:] for k in keys))\n"
    )
    ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(identity)
    keys: list[Any] = [f"key-{i}" for i in range(500)] + [(i, str(i).encode()) for i in range(500)]
    expected = ",".join(ch.select(k, NODES)[0][5:] for k in keys)
    for seed in ("0", "1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
        )
        assert out.stdout.strip() == expected


def test_consistent_hashing_incremental_ring_equals_a_fresh_one() -> None:
    """Small changes insert or delete points in place, big ones sort the ring again:
    either way the ring is the one a fresh instance builds."""
    many = tuple(f"w{i}" for i in range(60))
    history = [
        NODES,  # first build (sorted)
        NODES[:9],  # one removed (in place)
        (*NODES, "x"),  # two added (in place)
        NODES[2:],  # three removed (in place)
        many,  # big change (sorted)
        (*many, "y"),  # one added to a big ring (in place)
        many[1:],  # one added and one removed (in place)
        ("x",),  # almost all removed (sorted)
        NODES[::2],
        (),
        NODES,
    ]
    ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(identity, virtual_nodes=20)
    for routees in history:
        ch.routees_changed(routees)
        fresh: ConsistentHashingRouting[str] = ConsistentHashingRouting(identity, virtual_nodes=20)
        fresh.routees_changed(tuple(sorted(routees)))
        assert ch._points == fresh._points
        assert ch._owners == fresh._owners
        if routees:
            assert placement(ch, routees, KEYS[:500]) == placement(fresh, routees, KEYS[:500])


@settings(derandomize=True, max_examples=100, deadline=None)
@given(
    history=st.lists(st.sets(st.integers(0, 30).map(lambda i: f"r{i}")), max_size=8),
    virtual_nodes=st.integers(1, 30),
)
def test_consistent_hashing_any_history_gives_the_fresh_ring(
    history: list[set[str]], virtual_nodes: int
) -> None:
    ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(
        identity, virtual_nodes=virtual_nodes
    )
    for members in history:
        ch.routees_changed(tuple(members))
        fresh: ConsistentHashingRouting[str] = ConsistentHashingRouting(
            identity, virtual_nodes=virtual_nodes
        )
        fresh.routees_changed(tuple(sorted(members)))
        assert ch._points == fresh._points
        assert ch._names == fresh._names
        assert ch._owners == fresh._owners


def test_consistent_hashing_breaks_point_collisions_by_node_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """64-bit points practically never collide, but if they do, the owner must still not
    depend on the order in which routees arrived."""
    monkeypatch.setattr(routing, "_node_points", lambda name, virtual_nodes: [2**63])
    for routees in (ABC, ABC[::-1], ("b", "c", "a")):
        ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(identity)
        assert set(placement(ch, routees, KEYS[:200])) == {"a"}
    grown: ConsistentHashingRouting[str] = ConsistentHashingRouting(identity)
    grown.routees_changed(("c",))
    grown.routees_changed(("c", "b"))
    grown.routees_changed(("c", "b", "a"))
    assert set(placement(grown, ("c", "b", "a"), KEYS[:200])) == {"a"}


def test_consistent_hashing_equal_keys_route_alike() -> None:
    ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(identity)

    class Color(enum.StrEnum):
        RED = "red"

    class Size(enum.IntEnum):
        BIG = 7

    def owner(key: Any) -> str:
        return ch.select(key, NODES)[0]

    assert owner(1) == owner(1.0) == owner(True)
    assert owner(Color.RED) == owner("red")
    assert owner(Size.BIG) == owner(7)
    assert owner(frozenset({"a", "b", 3})) == owner(frozenset({3, "b", "a"}))
    assert owner(bytearray(b"xy")) == owner(b"xy")
    assert owner(-0.0) == owner(0)


def test_consistent_hashing_key_encoding_is_unambiguous() -> None:
    distinct = [
        "a",
        b"a",
        1,
        "1",
        1.5,
        None,
        (),
        ("a",),
        ("a", "b"),
        ("ab",),
        (("a",), "b"),
        ("a", ("b",)),
        frozenset(),
        frozenset({"a"}),
        uuid.UUID(int=1),
        -1,
        255,
        -256,
        2**100,
        float("inf"),
    ]
    encodings = [_encode_key(key) for key in distinct]
    assert len(set(encodings)) == len(distinct)


def test_consistent_hashing_accepts_uuid_enum_and_huge_int_keys() -> None:
    class Plain(enum.Enum):
        A = object()

    ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(identity)
    for key in (uuid.UUID(int=5), Plain.A, 10**5000, float("nan"), ("nested", (1, None))):
        assert ch.select(key, NODES)[0] in NODES


def test_consistent_hashing_rejects_a_key_without_a_stable_encoding() -> None:
    class Customer:
        pass

    ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(identity)
    with pytest.raises(TypeError, match=r"cannot hash a key of type .*Customer"):
        ch.select(Customer(), NODES)
    with pytest.raises(TypeError, match=r"cannot hash a key of type builtins\.complex"):
        ch.select(("ok", 1j), NODES)


def test_consistent_hashing_key_function_errors_propagate() -> None:
    ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(lambda message: message["id"])
    with pytest.raises(KeyError):
        ch.select({}, NODES)


class Ref:
    """A routee with a stable identity, like an ActorRef (path and uid)."""

    def __init__(self, path: str, uid: int) -> None:
        self.path = path
        self.uid = uid

    def __repr__(self) -> str:
        return f"<Ref {self.path}#{self.uid} at {id(self):#x}>"  # not stable: has an id


def test_consistent_hashing_uses_node_key_for_routee_identity() -> None:
    def node_key(ref: Ref) -> str:
        return f"{ref.path}#{ref.uid}"

    refs = [Ref(f"/user/w{i}", 7) for i in range(10)]
    twins = [Ref(f"/user/w{i}", 7) for i in range(10)]  # other objects, same identity
    ch: ConsistentHashingRouting[Ref] = ConsistentHashingRouting(identity, node_key=node_key)
    other: ConsistentHashingRouting[Ref] = ConsistentHashingRouting(identity, node_key=node_key)
    first = [refs.index(ch.select(key, refs)[0]) for key in KEYS[:1_000]]
    second = [twins.index(other.select(key, twins[::-1])[0]) for key in KEYS[:1_000]]
    assert first == second


def test_consistent_hashing_rejects_routees_sharing_a_node_key() -> None:
    ch: ConsistentHashingRouting[Ref] = ConsistentHashingRouting(
        identity, node_key=lambda ref: ref.path
    )
    good = (Ref("/user/a", 1), Ref("/user/b", 1))
    assert ch.select("k", good)[0] in good
    clash = (*good, Ref("/user/a", 2))
    with pytest.raises(ValueError, match="same node key '/user/a'"):
        ch.routees_changed(clash)
    with pytest.raises(ValueError, match="same node key"):
        ch.select("k", clash)
    fresh: ConsistentHashingRouting[Ref] = ConsistentHashingRouting(
        identity, node_key=lambda ref: ref.path
    )
    assert placement(ch, good, KEYS[:100]) == placement(fresh, good, KEYS[:100])


def test_consistent_hashing_counts_a_routee_listed_twice_once() -> None:
    ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(identity)
    doubled = (*NODES, *NODES[:3])
    assert placement(ch, doubled, KEYS[:1_000]) == placement(
        ConsistentHashingRouting(identity), NODES, KEYS[:1_000]
    )


def test_consistent_hashing_node_key_must_return_a_str() -> None:
    ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(identity, node_key=len)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="node_key must return a str, got int 6"):
        ch.select("k", NODES)


def test_consistent_hashing_with_one_virtual_node_and_one_routee() -> None:
    ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(identity, virtual_nodes=1)
    assert set(placement(ch, ("solo",), KEYS[:100])) == {"solo"}
    assert set(placement(ch, NODES, KEYS[:1_000])) <= set(NODES)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"key": identity, "virtual_nodes": 0}, ValueError, "virtual_nodes must be at least 1"),
        ({"key": identity, "virtual_nodes": -5}, ValueError, "at most 65536, got -5"),
        ({"key": identity, "virtual_nodes": 65_537}, ValueError, "at most 65536, got 65537"),
        ({"key": identity, "virtual_nodes": 2.5}, TypeError, "virtual_nodes must be an int"),
        ({"key": identity, "virtual_nodes": True}, TypeError, "virtual_nodes must be an int"),
        ({"key": identity, "virtual_nodes": "100"}, TypeError, "virtual_nodes must be an int"),
        ({"key": "customer"}, TypeError, "ConsistentHashingRouting key must be callable"),
        ({"key": None}, TypeError, "key must be callable, got NoneType"),
        ({"key": identity, "node_key": "path"}, TypeError, "node_key must be callable"),
    ],
)
def test_consistent_hashing_validates_its_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ConsistentHashingRouting(**kwargs)


@settings(derandomize=True, max_examples=60, deadline=None)
@given(
    nodes=st.sets(st.text(min_size=1, max_size=8), min_size=1, max_size=12),
    newcomer=st.text(min_size=1, max_size=8),
    keys=st.lists(st.integers() | st.text(max_size=10) | st.binary(max_size=10), max_size=200),
    virtual_nodes=st.integers(1, 40),
)
def test_consistent_hashing_keys_move_only_to_an_added_routee(
    nodes: set[str], newcomer: str, keys: list[Any], virtual_nodes: int
) -> None:
    if newcomer in nodes:
        return
    before_routees = tuple(sorted(nodes))
    after_routees = (*before_routees, newcomer)
    ch: ConsistentHashingRouting[str] = ConsistentHashingRouting(
        identity, virtual_nodes=virtual_nodes
    )
    before = [ch.select(key, before_routees)[0] for key in keys]
    after = [ch.select(key, after_routees)[0] for key in keys]
    for b, a in zip(before, after, strict=True):
        assert a in (b, newcomer)
    # and removing it again puts every key back
    assert [ch.select(key, before_routees)[0] for key in keys] == before


# -- smallest mailbox ------------------------------------------------------------------


def sizes_of(sizes: dict[str, int]) -> Callable[[str], int]:
    return sizes.__getitem__


def test_smallest_mailbox_picks_the_least_loaded() -> None:
    sizes = {"a": 3, "b": 1, "c": 2}
    sm: SmallestMailboxRouting[str] = SmallestMailboxRouting(sizes_of(sizes))
    assert picks(sm, ABC, 3) == ["b", "b", "b"]
    sizes["c"] = 0
    assert picks(sm, ABC, 1) == ["c"]


def test_smallest_mailbox_breaks_ties_round_robin() -> None:
    sizes = dict.fromkeys(ABC, 0)
    sm: SmallestMailboxRouting[str] = SmallestMailboxRouting(sizes_of(sizes))
    assert picks(sm, ABC, 6) == ["a", "b", "c", "a", "b", "c"]
    sizes.update(a=1, b=0, c=0)
    assert picks(sm, ABC, 4) == ["b", "c", "b", "c"]
    sizes.update(a=2, b=2, c=2)
    assert picks(sm, ABC, 4) == ["a", "b", "c", "a"]


def test_smallest_mailbox_spreads_a_burst_evenly() -> None:
    sizes = {"a": 0, "b": 0, "c": 0, "d": 5}
    sm: SmallestMailboxRouting[str] = SmallestMailboxRouting(sizes_of(sizes))
    for i in range(15):  # a burst: nothing is processed meanwhile
        sizes[sm.select(i, ("a", "b", "c", "d"))[0]] += 1
    assert sizes == {"a": 5, "b": 5, "c": 5, "d": 5}
    for i in range(4):
        sizes[sm.select(i, ("a", "b", "c", "d"))[0]] += 1
    assert sizes == {"a": 6, "b": 6, "c": 6, "d": 6}


def test_smallest_mailbox_stops_scanning_at_an_empty_mailbox() -> None:
    asked: list[str] = []
    sizes = {"a": 2, "b": 0, "c": 0, "d": 1}

    def size(routee: str) -> int:
        asked.append(routee)
        return sizes[routee]

    sm: SmallestMailboxRouting[str] = SmallestMailboxRouting(size)
    assert sm.select("m", tuple(sizes)) == ("b",)
    assert asked == ["a", "b"]
    asked.clear()
    assert sm.select("m", tuple(sizes)) == ("c",)  # the scan starts after "b"
    assert asked == ["c"]


def test_smallest_mailbox_copes_with_fewer_routees_than_its_position() -> None:
    sm: SmallestMailboxRouting[str] = SmallestMailboxRouting(lambda _: 0)
    assert picks(sm, ("a", "b", "c", "d"), 3) == ["a", "b", "c"]
    assert picks(sm, ("a", "b"), 3) == ["b", "a", "b"]


@pytest.mark.parametrize(
    ("size", "error", "match"),
    [
        (-1, ValueError, "must return an int >= 0, got int -1 for routee 'a'"),
        (1.0, TypeError, "must return an int >= 0, got float 1.0"),
        (None, TypeError, "got NoneType None"),
    ],
)
def test_smallest_mailbox_validates_sizes(size: Any, error: type[Exception], match: str) -> None:
    sm: SmallestMailboxRouting[str] = SmallestMailboxRouting(lambda _: size)
    with pytest.raises(error, match=match):
        sm.select("m", ABC)


def test_smallest_mailbox_needs_a_callable() -> None:
    with pytest.raises(TypeError, match="SmallestMailboxRouting size must be callable, got int 3"):
        SmallestMailboxRouting(3)  # type: ignore[arg-type]
