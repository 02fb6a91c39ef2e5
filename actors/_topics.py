"""Topics and topic patterns for the event bus, with the trie that matches them.

The names follow NATS subjects, so that the same names can later map onto a NATS cluster:

- A **topic** is what an event is published on: a non-empty string of non-empty segments
  separated by single dots, such as ``"orders.eu.created"``. A segment contains no
  whitespace, and no ``*`` or ``>``: a published topic is concrete.
- A **pattern** is what a subscriber asks for. It is written like a topic, except that a
  whole segment may be the wildcard ``*``, which matches exactly one segment, and the
  *last* segment may be ``>``, which matches one or more remaining segments. So
  ``"orders.*"`` matches ``"orders.eu"`` but neither ``"orders"`` nor
  ``"orders.eu.created"``; ``"orders.>"`` matches ``"orders.eu"`` and
  ``"orders.eu.created"`` but not ``"orders"``; ``">"`` alone matches every topic, and
  ``"*"`` alone every one-segment topic.

A wildcard is only a wildcard as a whole segment. Where NATS would quietly treat a
segment such as ``"ord*"`` as a literal that merely looks like a wildcard, this module
rejects it, in topics and in patterns alike: such a name almost always means that a
prefix match was intended, which subjects do not have. Every other character outside
whitespace and ``.`` is allowed (including ``$``, as in NATS' ``$SYS``).

Invalid names raise :class:`InvalidTopic` (a ``ValueError``) with a message that names
the offending string and what is wrong with it; a name that is not a ``str`` raises
``TypeError``.

:class:`TopicTrie` maps patterns to subscribers ("values") and answers, for a published
topic, which values have a matching pattern: each value once, in the order the values
subscribed.
"""

from __future__ import annotations

import re
from collections.abc import Hashable
from operator import itemgetter
from typing import Generic, Literal, TypeVar

__all__ = ["InvalidTopic", "TopicTrie", "check_pattern", "check_topic"]

V = TypeVar("V", bound=Hashable)

# A literal segment: no whitespace, no dot, no wildcard character. ``\s`` in a str pattern
# is exactly the set of characters for which ``str.isspace()`` is true, which is what
# ``_problem`` below reports; a property test checks that the two agree.
_LITERAL = r"[^\s.*>]+"
_TOPIC_RE = re.compile(rf"{_LITERAL}(?:\.{_LITERAL})*")
_PATTERN_SEGMENT = rf"(?:{_LITERAL}|\*)"
_PATTERN_RE = re.compile(rf"{_PATTERN_SEGMENT}(?:\.{_PATTERN_SEGMENT})*(?:\.>)?|>")

_SHOWN = 120  # characters of an invalid name quoted in an error message
_SPLIT_CACHE_SIZE = 1024  # topics whose segments a TopicTrie remembers


class InvalidTopic(ValueError):
    """A topic or a pattern that breaks the naming rules of this module.

    ``kind`` is ``"topic"`` or ``"pattern"``, ``name`` the string that was refused and
    ``problem`` what is wrong with it (also in the message).
    """

    def __init__(self, kind: Literal["topic", "pattern"], name: str, problem: str) -> None:
        shown = name if len(name) <= _SHOWN else name[:_SHOWN] + "..."
        super().__init__(f"invalid {kind} {shown!r}: {problem}")
        self.kind = kind
        self.name = name
        self.problem = problem

    def __reduce__(self) -> tuple[type[InvalidTopic], tuple[str, str, str]]:
        return (type(self), (self.kind, self.name, self.problem))


def check_topic(topic: str) -> str:
    """Return ``topic`` if it is a valid concrete topic, else raise :class:`InvalidTopic`
    (``TypeError`` if it is not a ``str``)."""
    if isinstance(topic, str) and _TOPIC_RE.fullmatch(topic) is not None:
        return topic
    raise _error("topic", topic)


def check_pattern(pattern: str) -> str:
    """Return ``pattern`` if it is a valid topic pattern (a topic in which whole segments
    may be ``*`` and the last segment may be ``>``), else raise :class:`InvalidTopic`
    (``TypeError`` if it is not a ``str``)."""
    if isinstance(pattern, str) and _PATTERN_RE.fullmatch(pattern) is not None:
        return pattern
    raise _error("pattern", pattern)


def _error(kind: Literal["topic", "pattern"], name: object) -> Exception:
    if not isinstance(name, str):
        return TypeError(f"a {kind} must be a str, got {type(name).__name__}: {name!r}")
    return InvalidTopic(kind, name, _problem(kind, name) or "it is not a valid name")


def _problem(kind: Literal["topic", "pattern"], name: str) -> str | None:
    """What is wrong with ``name`` as a ``kind`` (the first problem, reading from the
    left), or ``None`` if it is valid. This is the slow path that explains a refusal."""
    if not name:
        return f"a {kind} must not be empty"
    segments = name.split(".")
    last = len(segments)
    shape = f"a {kind} is made of non-empty segments separated by single dots"
    for number, segment in enumerate(segments, 1):
        if not segment:
            if number == 1:
                return f"it starts with a dot; {shape}"
            if number == last:
                return f"it ends with a dot; {shape}"
            return f"segment {number} is empty (two dots in a row); {shape}"
        if any(c.isspace() for c in segment):
            return f"segment {number} ({segment!r}) contains whitespace"
        if segment in ("*", ">"):
            if kind == "topic":
                return (
                    f"segment {number} is the wildcard {segment!r}, but a published topic "
                    "must be concrete (wildcards are for subscription patterns)"
                )
            if segment == ">" and number != last:
                return (
                    "the wildcard '>' (the rest of the topic) is only allowed as the last "
                    f"segment, but it is segment {number} of {last}"
                )
        elif "*" in segment or ">" in segment:
            if kind == "topic":
                return (
                    f"segment {number} ({segment!r}) contains '*' or '>', which are "
                    "reserved for wildcards in patterns"
                )
            return (
                f"segment {number} ({segment!r}) mixes a wildcard character with other "
                "characters; '*' and '>' are wildcards only as a whole segment (there is "
                "no prefix matching)"
            )
    return None


class _Node(Generic[V]):
    """A trie node: the prefix of patterns that spells the path from the root to it.

    ``children`` holds the literal next segments, ``star`` the ``*`` next segment. The
    values of the patterns that end here are in ``values``, and those of the patterns
    that continue with a final ``>`` in ``rest``. Both map each value to its
    subscription number and are kept sorted by it (see ``TopicTrie``); ``None`` when
    there are none, so that a node keeps no empty dicts around.
    """

    __slots__ = ("children", "rest", "star", "values")

    def __init__(self) -> None:
        self.children: dict[str, _Node[V]] = {}
        self.star: _Node[V] | None = None
        self.values: dict[V, int] | None = None
        self.rest: dict[V, int] | None = None

    def is_empty(self) -> bool:
        return not self.children and self.star is None and self.values is None and self.rest is None


class _Subscriber:
    """What the trie knows about one value: its subscription number and its patterns
    (in the order they were added)."""

    __slots__ = ("number", "patterns")

    def __init__(self, number: int) -> None:
        self.number = number
        self.patterns: dict[str, None] = {}


def _insert(entries: dict[V, int] | None, value: V, number: int) -> dict[V, int]:
    """Add ``value`` (with subscription ``number``) to a node's dict, keeping it sorted."""
    if entries is None:
        return {value: number}
    last = next(reversed(entries.values()))
    entries[value] = number
    if number < last:
        # An older subscriber adds a pattern after newer ones: restore the order. Only a
        # value that keeps other patterns meanwhile can come back with an old number.
        return dict(sorted(entries.items(), key=itemgetter(1)))
    return entries


class TopicTrie(Generic[V]):
    """Topic patterns of subscribers ("values"), in a trie keyed by segment.

    ``add(pattern, value)`` subscribes a value to a pattern, ``remove`` ends one
    subscription, ``clear_value`` all of a value's, and ``match(topic)`` lists the values
    with at least one pattern that matches a published topic.

    **Order.** ``match`` lists each matching value once, in the order in which the
    values subscribed: a value takes its place when it gets its first pattern and keeps
    it while it has at least one; once it has none left it loses its place, and a later
    ``add`` puts it after every value present at that time. Adding or removing other
    patterns of a value never moves it.

    **Cost.** ``match`` splits the topic and walks only the branches that its segments
    select (at each node: the literal child for the segment, the ``*`` child, and the
    values of a ``>`` pattern ending there), so its cost is O(segments x matching
    branches) plus the size of the result, whatever the number of subscriptions to
    other topics. When all matches come from one pattern node (the usual case) the
    result is a copy of that node's dict; otherwise the matched dicts are merged and
    sorted, O(k log k) in the number k of matching entries. The only thing cached is
    the validated, split form of up to 1,024 recently published topics, a pure
    function of the topic string that no ``add`` or ``remove`` can make stale; results
    are never cached. ``add`` and ``remove`` cost O(segments)
    (``add`` also O(n) to re-sort one node's n values, in the rare case described in
    ``_insert``), and ``clear_value`` O(segments) per pattern of that value. Nodes left
    without patterns are removed, so the trie holds no memory for subscriptions that
    ended.

    The trie is not thread-safe; the actor system uses it from its own thread only.
    Values must be hashable and are compared by equality.
    """

    __slots__ = ("_entries", "_next_number", "_nodes", "_root", "_split", "_subscribers")

    def __init__(self) -> None:
        self._root: _Node[V] = _Node()
        self._subscribers: dict[V, _Subscriber] = {}  # in subscription order
        self._next_number = 0
        self._entries = 0  # (pattern, value) pairs
        self._nodes = 1  # including the root
        self._split: dict[str, tuple[str, ...]] = {}  # valid topic -> its segments

    def __len__(self) -> int:
        """The number of (pattern, value) subscriptions."""
        return self._entries

    def __repr__(self) -> str:
        return f"<TopicTrie: {self._entries} subscriptions of {len(self._subscribers)} values>"

    def add(self, pattern: str, value: V) -> bool:
        """Subscribe ``value`` to ``pattern``. Returns ``False`` (and changes nothing) if
        it was already subscribed to exactly this pattern. Raises :class:`InvalidTopic`
        for an invalid pattern."""
        check_pattern(pattern)
        subscriber = self._subscribers.get(value)
        if subscriber is None:
            subscriber = self._subscribers[value] = _Subscriber(self._next_number)
            self._next_number += 1
        elif pattern in subscriber.patterns:
            return False
        segments = pattern.split(".")
        rest = segments[-1] == ">"
        if rest:
            segments.pop()
        node = self._root
        for segment in segments:
            if segment == "*":
                child = node.star
                if child is None:
                    child = node.star = _Node()
                    self._nodes += 1
            else:
                child = node.children.get(segment)
                if child is None:
                    child = node.children[segment] = _Node()
                    self._nodes += 1
            node = child
        if rest:
            node.rest = _insert(node.rest, value, subscriber.number)
        else:
            node.values = _insert(node.values, value, subscriber.number)
        subscriber.patterns[pattern] = None
        self._entries += 1
        return True

    def remove(self, pattern: str, value: V) -> bool:
        """End ``value``'s subscription to exactly ``pattern``. Returns ``False`` if there
        was none. Raises :class:`InvalidTopic` for an invalid pattern."""
        check_pattern(pattern)
        subscriber = self._subscribers.get(value)
        if subscriber is None or pattern not in subscriber.patterns:
            return False
        self._unlink(pattern, value)
        del subscriber.patterns[pattern]
        if not subscriber.patterns:
            del self._subscribers[value]
        self._entries -= 1
        return True

    def clear_value(self, value: V) -> int:
        """End every subscription of ``value`` (when a subscriber stops). Returns how many
        there were. Costs O(segments) per pattern of ``value``, whatever the size of
        the trie."""
        subscriber = self._subscribers.pop(value, None)
        if subscriber is None:
            return 0
        for pattern in subscriber.patterns:
            self._unlink(pattern, value)
        self._entries -= len(subscriber.patterns)
        return len(subscriber.patterns)

    def patterns_of(self, value: V) -> list[str]:
        """The patterns ``value`` is subscribed to, in the order they were added."""
        subscriber = self._subscribers.get(value)
        return [] if subscriber is None else list(subscriber.patterns)

    def values(self) -> list[V]:
        """Every subscribed value once, in subscription order (the order of ``match``)."""
        return list(self._subscribers)

    def match(self, topic: str) -> list[V]:
        """The values with at least one pattern matching ``topic``, each once, in
        subscription order (see the class). Returns a new list, so the caller may change
        the trie while going through it. Raises :class:`InvalidTopic` if ``topic`` is not
        a valid concrete topic."""
        segments = self._split.get(topic) if type(topic) is str else None
        if segments is None:
            segments = self._split_topic(topic)
        found: list[dict[V, int]] = []
        node = self._root
        frontier: list[_Node[V]] | None = None  # set once the walk follows several nodes
        for segment in segments:
            if frontier is None:  # one node selected so far: the usual, fast case
                if node.rest is not None:
                    found.append(node.rest)
                child = node.children.get(segment)
                star = node.star
                if star is None:
                    if child is None:
                        break
                    node = child
                elif child is None:
                    node = star
                else:
                    frontier = [child, star]
            else:
                selected: list[_Node[V]] = []
                for node in frontier:
                    if node.rest is not None:
                        found.append(node.rest)
                    child = node.children.get(segment)
                    if child is not None:
                        selected.append(child)
                    if node.star is not None:
                        selected.append(node.star)
                if not selected:
                    break
                frontier = selected
        else:  # every segment consumed: the patterns that end here match too
            if frontier is None:
                if node.values is not None:
                    found.append(node.values)
            else:
                for node in frontier:
                    if node.values is not None:
                        found.append(node.values)
        if not found:
            return []
        if len(found) == 1:
            return list(found[0])
        merged: dict[V, int] = {}
        for entries in found:
            merged.update(entries)
        return sorted(merged, key=merged.__getitem__)

    def _split_topic(self, topic: str) -> tuple[str, ...]:
        """Validate ``topic`` and return its segments, remembering them for the next
        ``match`` of the same topic (most buses publish on a small set of topics). The
        cache holds a pure function of the string, so no ``add`` or ``remove`` can make
        it stale; it is emptied when full, which bounds its memory."""
        if not isinstance(topic, str) or _TOPIC_RE.fullmatch(topic) is None:
            raise _error("topic", topic)
        segments = tuple(topic.split("."))
        if type(topic) is str:
            if len(self._split) >= _SPLIT_CACHE_SIZE:
                self._split.clear()
            self._split[topic] = segments
        return segments

    def _unlink(self, pattern: str, value: V) -> None:
        """Take ``value`` out of the node of ``pattern`` (which holds it), and remove the
        nodes that this leaves empty."""
        segments = pattern.split(".")
        rest = segments[-1] == ">"
        if rest:
            segments.pop()
        path: list[tuple[_Node[V], str, _Node[V]]] = []
        node = self._root
        for segment in segments:
            child = node.star if segment == "*" else node.children[segment]
            assert child is not None
            path.append((node, segment, child))
            node = child
        if rest:
            assert node.rest is not None
            del node.rest[value]
            if not node.rest:
                node.rest = None
        else:
            assert node.values is not None
            del node.values[value]
            if not node.values:
                node.values = None
        for parent, segment, child in reversed(path):
            if not child.is_empty():
                break
            if segment == "*":
                parent.star = None
            else:
                del parent.children[segment]
            self._nodes -= 1
