"""Topics, patterns and the topic trie of the event bus (``actors._topics``).

Validation (good and bad names, with the text of the errors), the semantics of ``*`` and
``>``, deduplication and order of ``match``, the return values of ``add`` / ``remove`` /
``clear_value``, pruning of empty branches, a structural check that ``match`` only visits
the branches a topic selects, and a property test against a reference matcher.
"""

from __future__ import annotations

import pickle
import random
from dataclasses import dataclass
from itertools import product
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from actors._topics import (
    _PATTERN_RE,
    _SPLIT_CACHE_SIZE,
    _TOPIC_RE,
    InvalidTopic,
    TopicTrie,
    _Node,
    _problem,
    check_pattern,
    check_topic,
)


def reference_match(pattern: str, topic: str) -> bool:
    """The NATS rule, segment by segment, written independently of the trie."""
    wanted = pattern.split(".")
    given_ = topic.split(".")
    for i, segment in enumerate(wanted):
        if segment == ">":
            return len(given_) > i  # one or more segments left
        if i >= len(given_):
            return False
        if segment != "*" and segment != given_[i]:
            return False
    return len(wanted) == len(given_)


def walk_nodes(trie: TopicTrie[Any]) -> list[tuple[str, _Node[Any]]]:
    """Every node of the trie with the pattern prefix that leads to it."""
    out: list[tuple[str, _Node[Any]]] = []
    stack: list[tuple[str, _Node[Any]]] = [("", trie._root)]
    while stack:
        label, node = stack.pop()
        out.append((label, node))
        prefix = label + "." if label else ""
        for segment, child in node.children.items():
            stack.append((prefix + segment, child))
        if node.star is not None:
            stack.append((prefix + "*", node.star))
    return out


def check_structure(trie: TopicTrie[Any]) -> int:
    """Check the bookkeeping of the trie and return its number of nodes: the counter is
    right, no node but the root is empty (pruning is complete), no empty dicts are kept,
    and the entries in the nodes are exactly those of the per-value index, in order."""
    nodes = walk_nodes(trie)
    assert trie._nodes == len(nodes)
    stored: set[tuple[str, Any]] = set()
    for label, node in nodes:
        if label:
            assert not node.is_empty(), f"node {label!r} should have been pruned"
        for entries, pattern in ((node.values, label), (node.rest, f"{label}.>".lstrip("."))):
            if entries is None:
                continue
            assert entries, f"empty dict kept at {label!r}"
            numbers = list(entries.values())
            assert numbers == sorted(numbers), f"values at {label!r} out of order"
            for value, number in entries.items():
                assert trie._subscribers[value].number == number
                stored.add((pattern, value))
    indexed = {(p, v) for v in trie.values() for p in trie.patterns_of(v)}
    assert stored == indexed
    assert len(trie) == len(indexed)
    return len(nodes)


# -- validation -------------------------------------------------------------------------

GOOD_TOPICS = ["a", "orders.eu.created", "$SYS.ACCOUNT", "a-b_c.d:e/f", "ünï.cødé", "1.2.3"]


@pytest.mark.parametrize("topic", GOOD_TOPICS)
def test_good_topics_are_returned_as_is(topic: str) -> None:
    assert check_topic(topic) is topic
    assert check_pattern(topic) is topic  # every topic is also a (literal) pattern


@pytest.mark.parametrize(
    ("topic", "problem"),
    [
        ("", "a topic must not be empty"),
        (".", "it starts with a dot"),
        (".a", "it starts with a dot"),
        ("a.", "it ends with a dot"),
        ("a..b", "segment 2 is empty (two dots in a row)"),
        ("a b", "segment 1 ('a b') contains whitespace"),
        ("a.b\tc", "segment 2 ('b\\tc') contains whitespace"),
        ("a.b\n", "segment 2 ('b\\n') contains whitespace"),
        ("a.\u00a0", "segment 2 ('\\xa0') contains whitespace"),
        ("a.*", "segment 2 is the wildcard '*', but a published topic must be concrete"),
        (">", "segment 1 is the wildcard '>', but a published topic must be concrete"),
        ("ord*", "segment 1 ('ord*') contains '*' or '>', which are reserved for wildcards"),
        ("a.b>c", "segment 2 ('b>c') contains '*' or '>'"),
    ],
)
def test_bad_topics_are_refused_with_a_clear_message(topic: str, problem: str) -> None:
    with pytest.raises(InvalidTopic) as caught:
        check_topic(topic)
    error = caught.value
    assert isinstance(error, ValueError)
    assert str(error) == f"invalid topic {topic!r}: {error.problem}"
    assert problem in error.problem
    assert (error.kind, error.name) == ("topic", topic)


GOOD_PATTERNS = [">", "*", "a.*", "*.b", "a.>", "*.>", "*.*.>", "a.*.c", "$SYS.>", *GOOD_TOPICS]


@pytest.mark.parametrize("pattern", GOOD_PATTERNS)
def test_good_patterns_are_returned_as_is(pattern: str) -> None:
    assert check_pattern(pattern) is pattern


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("", "a pattern must not be empty"),
        ("a..*", "segment 2 is empty (two dots in a row)"),
        (".>", "it starts with a dot"),
        ("a.*.", "it ends with a dot"),
        ("a.>.b", "'>' (the rest of the topic) is only allowed as the last segment"),
        ("a.>.b", "but it is segment 2 of 3"),
        (">.>", "only allowed as the last segment, but it is segment 1 of 2"),
        ("ord*", "segment 1 ('ord*') mixes a wildcard character with other characters"),
        ("a.*b", "'*' and '>' are wildcards only as a whole segment (there is no prefix"),
        ("a.>b", "segment 2 ('>b') mixes a wildcard"),
        ("**", "segment 1 ('**') mixes a wildcard"),
        ("* .a", "segment 1 ('* ') contains whitespace"),
    ],
)
def test_bad_patterns_are_refused_with_a_clear_message(pattern: str, problem: str) -> None:
    with pytest.raises(InvalidTopic, match=r"^invalid pattern ") as caught:
        check_pattern(pattern)
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"invalid pattern {pattern!r}: ")
    assert (caught.value.kind, caught.value.name) == ("pattern", pattern)


def test_a_long_name_is_shortened_in_the_message_but_kept_whole_on_the_error() -> None:
    name = "a." * 200 + "*"
    with pytest.raises(InvalidTopic) as caught:
        check_topic(name)
    assert len(str(caught.value)) < 400
    assert "..." in str(caught.value)
    assert "segment 201 is the wildcard '*'" in str(caught.value)
    assert caught.value.name == name


def test_the_error_survives_pickling() -> None:
    with pytest.raises(InvalidTopic) as caught:
        check_pattern("a.>.b")
    copy = pickle.loads(pickle.dumps(caught.value))
    assert type(copy) is InvalidTopic
    assert str(copy) == str(caught.value)
    assert (copy.kind, copy.name, copy.problem) == ("pattern", "a.>.b", caught.value.problem)


@pytest.mark.parametrize("bad", [None, b"a.b", 3, ["a"]])
def test_a_name_that_is_not_a_str_is_a_type_error(bad: Any) -> None:
    with pytest.raises(TypeError, match="a topic must be a str, got"):
        check_topic(bad)
    with pytest.raises(TypeError, match="a pattern must be a str, got"):
        check_pattern(bad)
    trie: TopicTrie[int] = TopicTrie()
    with pytest.raises(TypeError, match="a topic must be a str"):
        trie.match(bad)
    with pytest.raises(TypeError, match="a pattern must be a str"):
        trie.add(bad, 1)


_CHARS = ["a", "b", ".", "*", ">", " ", "\t", "\n", "\u00a0", "\u2003", "\x1c", "\x85", "$"]


@settings(derandomize=True, max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(_CHARS), max_size=8).map("".join))
def test_the_fast_check_and_the_explanation_agree(name: str) -> None:
    """The regular expressions that accept names and ``_problem`` that explains a
    refusal implement the same rules: a refusal never falls back to a vague message."""
    assert (_TOPIC_RE.fullmatch(name) is not None) == (_problem("topic", name) is None)
    assert (_PATTERN_RE.fullmatch(name) is not None) == (_problem("pattern", name) is None)


# -- matching ---------------------------------------------------------------------------

MATCH_CASES = [
    ("a", "a", True),
    ("a", "b", False),
    ("a", "a.b", False),
    ("a.b", "a", False),
    ("orders.eu.created", "orders.eu.created", True),
    ("orders.eu.created", "orders.eu.deleted", False),
    (">", "a", True),
    (">", "a.b.c.d", True),
    ("*", "a", True),
    ("*", "a.b", False),
    ("*.*", "a.b", True),
    ("*.*", "a", False),
    ("*.*", "a.b.c", False),
    ("a.*", "a.b", True),
    ("a.*", "a", False),
    ("a.*", "a.b.c", False),
    ("a.*", "b.a", False),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.c", False),
    ("a.*.c", "a.b.b.c", False),
    ("a.*.c", "a.b.d", False),
    ("a.>", "a", False),
    ("a.>", "a.b", True),
    ("a.>", "a.b.c", True),
    ("a.>", "b.a", False),
    ("a.>", "ab.c", False),
    ("*.>", "a", False),
    ("*.>", "a.b", True),
    ("a.*.>", "a.b", False),
    ("a.*.>", "a.b.c", True),
    ("a.*.>", "a.b.c.d", True),
    ("*.b.>", "a.b.c", True),
    ("*.b.>", "a.c.c", False),
]


@pytest.mark.parametrize(("pattern", "topic", "expected"), MATCH_CASES)
def test_wildcard_semantics(pattern: str, topic: str, expected: bool) -> None:
    assert reference_match(pattern, topic) is expected  # the reference agrees with NATS
    trie: TopicTrie[str] = TopicTrie()
    trie.add(pattern, "v")
    trie.add("unrelated.topic", "w")
    assert trie.match(topic) == (["v"] if expected else [])


def test_all_match_cases_in_one_trie() -> None:
    trie: TopicTrie[str] = TopicTrie()
    patterns = sorted({pattern for pattern, _, _ in MATCH_CASES})
    for pattern in patterns:
        trie.add(pattern, pattern)
    for topic in sorted({topic for _, topic, _ in MATCH_CASES}):
        assert trie.match(topic) == [p for p in patterns if reference_match(p, topic)]


def test_a_value_is_listed_once_however_many_of_its_patterns_match() -> None:
    trie: TopicTrie[str] = TopicTrie()
    for pattern in [">", "a.>", "a.*", "a.b", "*.b", "*.*", "a.b.>"]:
        assert trie.add(pattern, "v")
    trie.add("a.b", "w")
    assert trie.match("a.b") == ["v", "w"]
    assert trie.match("a.b.c") == ["v"]
    assert trie.match("z") == ["v"]
    assert trie.match("q.r.s.t") == ["v"]


def test_no_subscription_matches_nothing() -> None:
    trie: TopicTrie[str] = TopicTrie()
    assert trie.match("a") == []
    trie.add("a.b", "v")
    assert trie.match("a") == []
    assert trie.match("a.b.c") == []
    assert trie.match("b") == []


def test_match_refuses_an_invalid_topic() -> None:
    trie: TopicTrie[str] = TopicTrie()
    trie.add(">", "v")
    trie.add("*.*", "w")
    for topic in ["a.*", "a..b", "a.>", "", "a b.c"]:
        with pytest.raises(InvalidTopic, match=f"^invalid topic {topic!r}"):
            trie.match(topic)


# -- order ------------------------------------------------------------------------------


def test_values_come_in_the_order_they_subscribed_whatever_their_patterns() -> None:
    trie: TopicTrie[str] = TopicTrie()
    trie.add("a.b.c", "first")
    trie.add(">", "second")
    trie.add("a.*.c", "third")
    trie.add("a.>", "fourth")
    trie.add("a.b.c", "fifth")
    trie.add("*.b.*", "sixth")
    trie.add("a.b.c", "seventh")
    order = ["first", "second", "third", "fourth", "fifth", "sixth", "seventh"]
    assert trie.match("a.b.c") == order
    assert trie.values() == order
    assert trie.match("a.b.c.d") == ["second", "fourth"]


def test_a_value_keeps_its_place_while_it_has_a_pattern() -> None:
    trie: TopicTrie[str] = TopicTrie()
    trie.add("z", "old")
    trie.add("a.b", "old")
    trie.add("a.b", "new")
    trie.add("a.b", "newer")
    assert trie.remove("a.b", "old")
    assert trie.match("a.b") == ["new", "newer"]
    assert trie.add("a.b", "old")  # "old" still has "z": it comes back in first place
    assert trie.match("a.b") == ["old", "new", "newer"]
    trie.add("a.*", "old")  # another pattern of a value does not move it either
    trie.add("a.>", "newer")
    assert trie.match("a.b") == ["old", "new", "newer"]
    check_structure(trie)


def test_a_value_that_lost_all_its_patterns_comes_back_last() -> None:
    trie: TopicTrie[str] = TopicTrie()
    trie.add("a.b", "x")
    trie.add("a.*", "y")
    assert trie.remove("a.b", "x")
    trie.add("a.b", "x")
    assert trie.match("a.b") == ["y", "x"]
    assert trie.clear_value("y") == 1
    trie.add(">", "y")
    assert trie.match("a.b") == ["x", "y"]
    assert trie.values() == ["x", "y"]


# -- add, remove, clear_value -----------------------------------------------------------


def test_add_and_remove_report_whether_they_changed_anything() -> None:
    trie: TopicTrie[int] = TopicTrie()
    assert trie.add("a.*", 1)
    assert not trie.add("a.*", 1)  # already subscribed with that exact pattern
    assert trie.add("a.>", 1)  # another pattern of the same value
    assert trie.add("a.*", 2)  # the same pattern for another value
    assert len(trie) == 3
    assert trie.patterns_of(1) == ["a.*", "a.>"]
    assert not trie.remove("a.b", 1)  # a pattern it does not have (even if it matches)
    assert not trie.remove("a.*", 3)  # a value the trie does not know
    assert trie.remove("a.*", 1)
    assert not trie.remove("a.*", 1)
    assert len(trie) == 2
    assert trie.patterns_of(1) == ["a.>"]
    assert trie.match("a.b") == [1, 2]
    assert trie.remove("a.>", 1)
    assert trie.patterns_of(1) == []
    assert trie.values() == [2]
    assert trie.match("a.b") == [2]
    check_structure(trie)


def test_a_refused_pattern_changes_nothing() -> None:
    trie: TopicTrie[int] = TopicTrie()
    trie.add("a.b", 1)
    nodes = check_structure(trie)
    for bad in ["a.b.", "a.*b", "a.>.c", ""]:
        with pytest.raises(InvalidTopic):
            trie.add(bad, 2)
        with pytest.raises(InvalidTopic):
            trie.remove(bad, 1)
    assert check_structure(trie) == nodes
    assert trie.values() == [1]
    assert len(trie) == 1


def test_an_unhashable_value_is_a_type_error() -> None:
    trie: TopicTrie[Any] = TopicTrie()
    with pytest.raises(TypeError, match="unhashable"):
        trie.add("a", [])
    assert len(trie) == 0
    assert trie._nodes == 1


def test_clear_value_ends_every_subscription_of_one_value() -> None:
    trie: TopicTrie[str] = TopicTrie()
    for pattern in ["a", "a.*", "a.>", ">", "b.c.d"]:
        trie.add(pattern, "gone")
    trie.add("a.*", "stays")
    trie.add("b.c.d", "stays")
    assert trie.clear_value("gone") == 5
    assert trie.clear_value("gone") == 0
    assert trie.clear_value("never") == 0
    assert len(trie) == 2
    assert trie.patterns_of("gone") == []
    assert trie.match("a.x") == ["stays"]
    assert trie.match("b.c.d") == ["stays"]
    assert trie.match("a") == []
    assert trie.match("q") == []
    check_structure(trie)


def test_match_returns_a_new_list() -> None:
    trie: TopicTrie[int] = TopicTrie()
    for value in range(3):
        trie.add("a", value)
    result = trie.match("a")
    result.append(99)
    for value in trie.match("a"):  # changing the trie while going through a result
        trie.clear_value(value)
    assert trie.match("a") == []
    assert len(trie) == 0


def test_repr() -> None:
    trie: TopicTrie[int] = TopicTrie()
    trie.add("a", 1)
    trie.add("b", 1)
    trie.add("b", 2)
    assert repr(trie) == "<TopicTrie: 3 subscriptions of 2 values>"


# -- pruning ----------------------------------------------------------------------------


def test_removing_a_pattern_prunes_only_the_branch_it_alone_used() -> None:
    trie: TopicTrie[str] = TopicTrie()
    trie.add("a.b", "v")
    before = check_structure(trie)
    trie.add("a.b.c.d", "v")
    trie.add("a.b.*.>", "w")
    assert check_structure(trie) == before + 3  # a.b.c, a.b.c.d, a.b.*
    trie.remove("a.b.c.d", "v")
    trie.remove("a.b.*.>", "w")
    assert check_structure(trie) == before
    trie.add("a.b.c", "v")
    trie.remove("a.b", "v")  # a.b has no values left but still leads to a.b.c
    assert trie.match("a.b.c") == ["v"]
    assert trie.match("a.b") == []
    assert check_structure(trie) == 4
    trie.remove("a.b.c", "v")
    assert check_structure(trie) == 1


def test_many_subscribe_unsubscribe_cycles_leave_no_nodes_behind() -> None:
    rng = random.Random(7)
    trie: TopicTrie[int] = TopicTrie()
    trie.add("keep.this", 0)
    start = check_structure(trie)
    for cycle in range(200):
        trie.add(f"s{cycle}.x", 1)
        added: list[tuple[str, int]] = [(f"s{cycle}.x", 1)]
        for _ in range(rng.randrange(20)):
            segments = [rng.choice(["a", "b", "*", f"s{cycle}"]) for _ in range(rng.randrange(4))]
            if not segments or rng.random() < 0.3:
                segments.append(">")
            pattern, value = ".".join(segments), rng.randrange(1, 6)
            if trie.add(pattern, value):
                added.append((pattern, value))
        assert trie._nodes > start
        if cycle % 2:
            for pattern, value in reversed(added):
                assert trie.remove(pattern, value)
        else:
            for value in range(1, 6):
                trie.clear_value(value)
        assert trie._nodes == start
        assert len(trie) == 1
    assert check_structure(trie) == start
    trie.clear_value(0)
    assert check_structure(trie) == 1
    assert trie._root.is_empty()
    assert trie.values() == []


# -- cost: match visits only the branches the topic selects ------------------------------


class _CountingChildren(dict[str, Any]):
    """A node's ``children`` dict that records each lookup made by ``match``."""

    def __init__(self, items: dict[str, Any], label: str, log: list[str]) -> None:
        super().__init__(items)
        self.label = label
        self.log = log

    def get(self, key: str, default: Any = None, /) -> Any:
        self.log.append(self.label)
        return super().get(key, default)


def visited(trie: TopicTrie[Any], topic: str) -> tuple[list[str], list[str]]:
    """The labels of the nodes whose children ``match(topic)`` looked up, and the
    result of the match."""
    log: list[str] = []
    for label, node in walk_nodes(trie):
        node.children = _CountingChildren(node.children, label or "<root>", log)
    result = trie.match(topic)
    return sorted(log), result


def test_match_does_not_visit_branches_of_other_topics() -> None:
    relevant = ["orders.eu.created", "orders.*.created", "orders.>", "*.eu.*", ">", "x.eu.*"]
    trie: TopicTrie[str] = TopicTrie()
    for pattern in relevant:
        trie.add(pattern, pattern)
    small_visits, small_result = visited(trie, "orders.eu.created")
    assert small_visits == sorted(["<root>", "*", "*.eu", "orders", "orders.*", "orders.eu"])
    assert small_result == ["orders.eu.created", "orders.*.created", "orders.>", "*.eu.*", ">"]

    nodes_before = trie._nodes
    unrelated: list[str] = []
    for i in range(2_000):
        unrelated += [
            f"other{i}.eu.created",  # a sibling at the root
            f"orders.us{i}.created",  # a sibling below a selected node
            f"orders.eu.c{i}",  # a sibling at the last level
            f"orders.*.c{i}.>",  # below the selected * branch, but a different literal
            f"orders.eu.created.more{i}",  # deeper than the topic
            f"x{i}.*.>",  # wildcards in branches the topic does not select
            f"*.us{i}.*",
        ]
    for i, pattern in enumerate(unrelated):
        trie.add(pattern, f"u{i}")
    assert trie._nodes > nodes_before + 10_000
    big_visits, big_result = visited(trie, "orders.eu.created")
    assert big_visits == small_visits  # the same nodes, each looked up once
    assert big_result == small_result

    for i, pattern in enumerate(unrelated):
        trie.remove(pattern, f"u{i}")
    assert trie._nodes == nodes_before


# -- the split-topic cache --------------------------------------------------------------


def test_the_topic_cache_is_bounded_and_never_changes_a_result() -> None:
    trie: TopicTrie[str] = TopicTrie()
    trie.add("t.*", "v")
    for i in range(3 * _SPLIT_CACHE_SIZE):
        assert trie.match(f"t.{i}") == ["v"]
        assert len(trie._split) <= _SPLIT_CACHE_SIZE
    assert trie.match("t.0") == ["v"]
    trie.remove("t.*", "v")  # the cache knows nothing of subscriptions
    assert trie.match("t.0") == []
    with pytest.raises(InvalidTopic):
        trie.match("t.*")
    assert "t.*" not in trie._split

    class Topic(str):
        pass

    trie.add("t.>", "w")
    assert trie.match(Topic("t.1.2")) == ["w"]
    assert all(type(key) is str for key in trie._split)


# -- property: the trie against the reference matcher -----------------------------------


@dataclass(frozen=True)
class Add:
    pattern: str
    value: int


@dataclass(frozen=True)
class Remove:
    pattern: str
    value: int


@dataclass(frozen=True)
class RemoveExisting:
    index: int  # of a current (pattern, value) entry, modulo their number


@dataclass(frozen=True)
class Clear:
    value: int


@dataclass(frozen=True)
class Match:
    topic: str


Op = Add | Remove | RemoveExisting | Clear | Match

_SEGMENTS = ["a", "b", "c"]
topics = st.lists(st.sampled_from(_SEGMENTS), min_size=1, max_size=4).map(".".join)


def _pattern(segments: list[str], rest: bool) -> str:
    return ".".join([*segments, ">"] if rest or not segments else segments)


# Mostly a few common patterns, so that values share nodes and come back to them.
patterns = st.one_of(
    st.sampled_from(["a", "a.b", "a.*", "*.b", "a.>", ">", "*"]),
    st.builds(_pattern, st.lists(st.sampled_from([*_SEGMENTS, "*"]), max_size=4), st.booleans()),
)
values = st.integers(0, 4)
operations = st.lists(
    st.one_of(
        st.builds(Add, patterns, values),
        st.builds(Add, patterns, values),
        st.builds(Remove, patterns, values),
        st.builds(RemoveExisting, st.integers(0, 1_000)),
        st.builds(Clear, values),
        st.builds(Match, topics),
    ),
    max_size=60,
)
ALL_TOPICS = [".".join(t) for n in range(1, 6) for t in product(_SEGMENTS, repeat=n)]


@settings(derandomize=True, max_examples=300, deadline=None)
@given(operations)
def test_the_trie_agrees_with_the_reference_matcher(ops: list[Op]) -> None:
    trie: TopicTrie[int] = TopicTrie()
    model: dict[int, list[str]] = {}  # value -> its patterns; in subscription order

    def expected(topic: str) -> list[int]:
        return [v for v, ps in model.items() if any(reference_match(p, topic) for p in ps)]

    def drop(pattern: str, value: int) -> None:
        model[value].remove(pattern)
        if not model[value]:
            del model[value]

    for op in ops:
        if isinstance(op, Add):
            fresh = op.pattern not in model.get(op.value, [])
            assert trie.add(op.pattern, op.value) is fresh
            if fresh:
                model.setdefault(op.value, []).append(op.pattern)
        elif isinstance(op, Remove):
            present = op.pattern in model.get(op.value, [])
            assert trie.remove(op.pattern, op.value) is present
            if present:
                drop(op.pattern, op.value)
        elif isinstance(op, RemoveExisting):
            entries = [(p, v) for v, ps in model.items() for p in ps]
            if entries:
                pattern, value = entries[op.index % len(entries)]
                assert trie.remove(pattern, value)
                drop(pattern, value)
        elif isinstance(op, Clear):
            assert trie.clear_value(op.value) == len(model.pop(op.value, []))
        else:
            assert trie.match(op.topic) == expected(op.topic)
        assert len(trie) == sum(len(ps) for ps in model.values())

    assert trie.values() == list(model)
    for value in range(5):
        assert trie.patterns_of(value) == model.get(value, [])
    for topic in ALL_TOPICS:
        assert trie.match(topic) == expected(topic)
    check_structure(trie)

    for value in list(model)[::2]:
        trie.clear_value(value)
    for value in list(model)[1::2]:
        for pattern in model[value]:
            assert trie.remove(pattern, value)
    assert check_structure(trie) == 1
    assert len(trie) == 0
