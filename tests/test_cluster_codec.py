"""The codecs between the nodes of a cluster: the safe codec (msgspec, registered types
only, decoding runs no code) and the trusted pickle codec."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import math
import pickle
import random
import re
import threading
from typing import Any, NamedTuple

import attrs
import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from actors import (
    ActorDead,
    ActorError,
    ActorRef,
    Address,
    AskTimeout,
    Kill,
    PoisonPill,
    ReceiveTimeout,
    RemoteError,
    Terminated,
    UnpicklableMessage,
)
from actors.cluster._codec import Codec, PickleCodec, UndecodableMessage, UnencodableMessage
from actors.cluster._safe_codec import SafeCodec
from actors.routing import AddRoutee, Broadcast, GetRoutees

PROPERTY_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

REF = ActorRef._create(Address("bank", "/user/teller", 7, "n1"))
OTHER_REF = ActorRef._create(Address("bank", "/user/vault", 8, "n2"))
CALLS: list[str] = []


def record(what: str) -> None:
    CALLS.append(what)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@attrs.frozen
class Money:
    cents: int
    currency: str = "EUR"


@attrs.frozen
class Deposit:
    amount: Money
    to: ActorRef
    reply_to: ActorRef | None = None
    tags: tuple[str, ...] = ()
    colour: Colour = Colour.RED


@dataclasses.dataclass(frozen=True)
class Withdraw:
    amount: int
    pair: tuple[int, str]
    where: Address


class Balance(msgspec.Struct, frozen=True):
    cents: int
    holders: list[ActorRef]


class Point(NamedTuple):
    x: int
    y: int


@attrs.frozen
class Audit:
    error: BaseException | None
    cause: ValueError | None = None


@attrs.frozen
class Spy:
    """Would record any construction when decoded (attrs runs __attrs_post_init__)."""

    value: int

    def __attrs_post_init__(self) -> None:
        record("Spy.__attrs_post_init__")

    def __setstate__(self, state: Any) -> None:
        record("Spy.__setstate__")


@dataclasses.dataclass
class DataSpy:
    value: int

    def __post_init__(self) -> None:
        record("DataSpy.__post_init__")


class Evil:
    def __reduce__(self) -> tuple[Any, ...]:
        return (record, ("Evil unpickled",))


class InsufficientFunds(Exception):
    def __init__(self, needed: int, account: str) -> None:
        super().__init__(needed, account)
        self.needed = needed
        self.account = account


class Unregistered(Exception):
    pass


class NotAType:
    pass


@attrs.frozen
class HoldsLock:
    lock: threading.Lock


@attrs.frozen
class HoldsObject:
    thing: NotAType


@attrs.frozen
class Unknown:
    x: int


@attrs.frozen
class MovedMoney:
    cents: int
    currency: str


@pytest.fixture
def codec() -> SafeCodec:
    return SafeCodec([Money, Deposit, Withdraw, Balance, Point, Colour, Audit, InsufficientFunds])


def roundtrip(codec: Codec, value: Any) -> Any:
    return codec.decode_message(codec.encode_message(value))


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 == 1.0 == True is not enough)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(
            same(ka, kb) and same(a[ka], b[kb]) for ka, kb in zip(a, b, strict=True)
        )
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def raised(error: BaseException) -> BaseException:
    """``error`` with a traceback, as a handler's error has one."""
    try:
        raise error
    except BaseException as caught:
        return caught


# -- plain data ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        0,
        -(2**63),
        2**64 - 1,
        1.5,
        "text",
        b"\x00bytes",
        [],
        (),
        [1, "a", None],
        (1, (2, (3, [4])), "x"),
        {"a": 1, "b": [1, 2]},
        {(1, "a"): "tuple key", 2: "int key", None: "none key"},
        {"refs": [REF, (OTHER_REF,)]},
        {Point(1, 2): "a key that is not plain"},
        [{"nested": ({"deep": (1,)},)}],
        REF,
        (REF, OTHER_REF),
    ],
)
def test_plain_data_comes_back_the_same_types_included(codec: SafeCodec, value: Any) -> None:
    assert same(roundtrip(codec, value), value)


plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text()
    | st.binary(),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.lists(inner, max_size=4).map(tuple)
        | st.dictionaries(st.text() | st.integers(-5, 5), inner, max_size=4)
    ),
    max_leaves=20,
)


@PROPERTY_SETTINGS
@given(plain)
def test_any_plain_data_round_trips(value: Any) -> None:
    codec = SafeCodec()
    assert same(roundtrip(codec, value), value)


# -- registered types ------------------------------------------------------------------------


def test_registered_attrs_with_nested_types_tuples_enums_and_refs(codec: SafeCodec) -> None:
    message = Deposit(Money(150, "CHF"), REF, OTHER_REF, ("a", "b"), Colour.BLUE)
    back = roundtrip(codec, message)
    assert back == message
    assert type(back.amount) is Money
    assert type(back.tags) is tuple
    assert back.colour is Colour.BLUE
    assert type(back.to) is ActorRef
    assert back.to.address == REF.address
    assert roundtrip(codec, Deposit(Money(1), REF)).reply_to is None


def test_registered_dataclass_struct_namedtuple_and_enum(codec: SafeCodec) -> None:
    withdraw = Withdraw(5, (1, "x"), Address("bank", "/user/a", 1, "n3"))
    assert roundtrip(codec, withdraw) == withdraw
    assert type(roundtrip(codec, withdraw).where) is Address
    balance = Balance(10, [REF, OTHER_REF])
    assert roundtrip(codec, balance) == balance
    assert same(roundtrip(codec, Point(3, 4)), Point(3, 4))
    assert roundtrip(codec, Colour.RED) is Colour.RED


def test_registered_instances_inside_plain_data_keep_their_type(codec: SafeCodec) -> None:
    value = [Money(1), (Point(1, 2), {"m": Money(2)})]
    assert same(roundtrip(codec, value), value)


def test_exceptions_in_fields_are_rebuilt(codec: SafeCodec) -> None:
    back = roundtrip(codec, Audit(KeyError("k"), ValueError("v")))
    assert type(back.error) is KeyError
    assert back.error.args == ("k",)
    assert type(back.cause) is ValueError
    stand_in = roundtrip(codec, Audit(Unregistered("who")))
    assert type(stand_in.error) is RemoteError
    assert str(stand_in.error) == "test_cluster_codec.Unregistered: who"


def test_the_runtimes_messages_are_built_in() -> None:
    codec = SafeCodec()
    assert roundtrip(codec, PoisonPill) is PoisonPill
    assert roundtrip(codec, Kill) is Kill
    assert roundtrip(codec, ReceiveTimeout()) == ReceiveTimeout()
    terminated = roundtrip(codec, Terminated(REF, ActorDead("/user/x"), False))
    assert terminated.ref == REF
    assert terminated.existence_confirmed is False
    assert type(terminated.error) is ActorDead
    assert terminated.error.path == "/user/x"
    assert roundtrip(codec, AddRoutee(REF)) == AddRoutee(REF)
    assert roundtrip(codec, GetRoutees()) == GetRoutees()
    assert roundtrip(codec, Broadcast(("plain", 1))) == Broadcast(("plain", 1))
    assert roundtrip(codec, Broadcast(PoisonPill)).message is PoisonPill


def test_a_broadcast_of_an_unregistered_message_is_refused() -> None:
    with pytest.raises(
        UnencodableMessage, match=re.escape("test_cluster_codec.Money is not registered")
    ):
        SafeCodec().encode_message(Broadcast(Money(1)))


def test_explicit_names_travel_instead_of_the_module_path() -> None:
    sender = SafeCodec({"bank.Money": Money})
    data = sender.encode_message(Money(5))
    assert b"bank.Money" in data
    assert b"test_cluster_codec" not in data
    # a node where the class lives in another module decodes it by the same name
    moved = SafeCodec({"bank.Money": MovedMoney}).decode_message(data)
    assert moved == MovedMoney(5, "EUR")
    with pytest.raises(
        UndecodableMessage, match=re.escape("'bank.Money' arrived that is not registered")
    ):
        SafeCodec([Money]).decode_message(data)
    assert SafeCodec().names >= {"actors.Terminated", "actors.PoisonPill"}
    assert "bank.Money" in sender.names


# -- refusals when encoding ------------------------------------------------------------------


def test_an_unregistered_type_is_refused_at_encode_saying_the_fix() -> None:
    with pytest.raises(UnencodableMessage) as caught:
        SafeCodec().encode_message(Unknown(1))
    assert str(caught.value) == (
        "message of type test_cluster_codec.Unknown is not registered with the cluster's "
        "codec: add it to Cluster(types=[...]) on every node, or use codec=PickleCodec() in "
        "a trusted cluster"
    )
    assert caught.value.type_name == "test_cluster_codec.Unknown"
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, ActorError)
    assert not isinstance(caught.value, UnpicklableMessage)


def test_an_unregistered_value_inside_plain_data_is_refused() -> None:
    with pytest.raises(UnencodableMessage) as caught:
        SafeCodec().encode_message({"a": [Unknown(1)]})
    assert str(caught.value).startswith(
        "message of type builtins.dict holds a value of type test_cluster_codec.Unknown that "
        "is not registered with the cluster's codec"
    )
    with pytest.raises(
        UnencodableMessage, match=re.escape("message of type builtins.set is not registered")
    ):
        SafeCodec().encode_message({1, 2})


def test_a_value_msgspec_refuses_is_refused_with_its_reason_chained(codec: SafeCodec) -> None:
    with pytest.raises(UnencodableMessage) as caught:
        codec.encode_message(Money(2**70))
    assert str(caught.value).startswith(
        "message of type test_cluster_codec.Money cannot be encoded by the cluster's safe codec:"
    )
    assert isinstance(caught.value.__cause__, OverflowError)


def test_types_that_cannot_travel_are_refused_at_construction() -> None:
    with pytest.raises(
        TypeError, match="NotAType cannot be registered with the safe codec: it carries attrs"
    ):
        SafeCodec([NotAType])
    with pytest.raises(
        TypeError,
        match=r"HoldsObject cannot be registered .*: one of its fields has type "
        r"test_cluster_codec\.NotAType, which it cannot carry",
    ):
        SafeCodec([HoldsObject])
    # (A lock's annotation is a function before Python 3.13, which msgspec cannot read,
    # and a class from 3.13 on, which it reads and the codec refuses.)
    with pytest.raises(
        TypeError,
        match=r"HoldsLock cannot be registered with the safe codec: (msgspec cannot read its "
        r"field types|one of its fields has type _thread\.lock, which it cannot carry)",
    ):
        SafeCodec([HoldsLock])
    with pytest.raises(TypeError, match="only Exception subclasses can be registered"):
        SafeCodec([KeyboardInterrupt])
    with pytest.raises(ValueError, match="registered twice"):
        SafeCodec({"a": Money, "b": Money})
    with pytest.raises(ValueError, match=re.escape("'actors.Terminated' is taken")):
        SafeCodec({"actors.Terminated": Money})


# -- refusals when decoding: nothing runs ----------------------------------------------------


def test_an_unregistered_name_is_refused_before_any_user_code_runs() -> None:
    sender = SafeCodec([Spy, DataSpy])
    payloads = [sender.encode_message(Spy(1)), sender.encode_message(DataSpy(2))]
    CALLS.clear()
    receiver = SafeCodec([Money])  # it registers other types, not these
    for data in payloads:
        with pytest.raises(
            UndecodableMessage, match="not registered with this node's codec"
        ) as caught:
            receiver.decode_message(data)
        assert caught.value.type_name in {"test_cluster_codec.Spy", "test_cluster_codec.DataSpy"}
    assert CALLS == []
    # (the spies do record when a codec that registers them decodes them)
    decoded = sender.decode_message(payloads[0])
    assert CALLS == ["Spy.__attrs_post_init__"]
    assert decoded == Spy(1)


def test_a_pickle_is_never_unpickled() -> None:
    evil = pickle.dumps(Evil())
    CALLS.clear()
    codec = SafeCodec()
    with pytest.raises(UndecodableMessage, match="not a message of the safe codec"):
        codec.decode_message(evil)
    with pytest.raises(UndecodableMessage):
        codec.decode_frame(evil)
    # inside well-formed data it is only bytes, or an unregistered name
    assert codec.decode_message(msgspec.msgpack.encode(("", evil))) == evil
    with pytest.raises(UndecodableMessage, match="unregistered type"):
        codec.decode_message(msgspec.msgpack.encode(("test_cluster_codec.Evil", evil)))
    assert isinstance(codec.decode_error(evil), RemoteError)
    assert CALLS == []


def test_garbage_is_undecodable(codec: SafeCodec) -> None:
    good = codec.encode_message(Deposit(Money(1), REF))
    for data in [b"", b"\xff", b"\xc1", good[:-1], good + b"\x00", msgspec.msgpack.encode(["x"])]:
        with pytest.raises(UndecodableMessage):
            codec.decode_message(data)
    generator = random.Random(16)
    for _ in range(300):  # random bytes: refused with UndecodableMessage, nothing else
        with contextlib.suppress(UndecodableMessage):
            codec.decode_message(generator.randbytes(generator.randint(1, 64)))


def test_truncated_and_odd_data_are_refused_naming_why(codec: SafeCodec) -> None:
    good = codec.encode_message(Deposit(Money(1), REF))
    with pytest.raises(UndecodableMessage, match="not a message of the safe codec"):
        codec.decode_message(good[:-1])
    mismatched = msgspec.msgpack.encode(("test_cluster_codec.Money", {"cents": "many"}))
    with pytest.raises(UndecodableMessage) as caught:
        codec.decode_message(mismatched)
    assert str(caught.value).startswith(
        "a message of type test_cluster_codec.Money could not be decoded: Expected `int`"
    )
    unknown_extension = msgspec.msgpack.encode(("", msgspec.msgpack.Ext(99, b"")))
    with pytest.raises(UndecodableMessage, match="unknown extension type 99"):
        codec.decode_message(unknown_extension)


# -- frames ----------------------------------------------------------------------------------


def test_frames_round_trip(codec: SafeCodec) -> None:
    frame = ("ask", 12, ("bank", "/user/a", 3, "n1"), None, b"\x00payload", 2.5, True)
    back = codec.decode_frame(codec.encode_frame(frame))
    assert type(back) is tuple
    assert back[:2] == ("ask", 12)
    assert back[3:] == (None, b"\x00payload", 2.5, True)
    assert Address._make(back[2]) == Address("bank", "/user/a", 3, "n1")
    for garbage in (b"", b"\x01", msgspec.msgpack.encode({"a": 1})):
        with pytest.raises(UndecodableMessage, match="not a frame"):
            codec.decode_frame(garbage)


# -- errors ----------------------------------------------------------------------------------


def fail_in_handler() -> None:
    raise ValueError("amount must be positive")


def test_a_builtin_error_comes_back_as_itself_with_the_remote_traceback(codec: SafeCodec) -> None:
    try:
        fail_in_handler()
    except ValueError as error:
        data = codec.encode_error(error, "node n1 (pid 42)")
    back = codec.decode_error(data)
    assert type(back) is ValueError
    assert back.args == ("amount must be positive",)
    [note] = back.__notes__
    assert note.startswith("Traceback in node n1 (pid 42):\nTraceback (most recent call last):")
    assert "in fail_in_handler" in note
    assert note.endswith("ValueError: amount must be positive")


def test_a_registered_error_comes_back_as_itself(codec: SafeCodec) -> None:
    back = codec.decode_error(codec.encode_error(raised(InsufficientFunds(30, "acc-1")), "n1"))
    assert type(back) is InsufficientFunds
    assert (back.needed, back.account) == (30, "acc-1")
    assert back.__notes__[0].startswith("Traceback in n1:")


def test_an_unregistered_error_comes_back_as_a_remote_error_naming_it(codec: SafeCodec) -> None:
    back = codec.decode_error(codec.encode_error(raised(Unregistered("no")), "n1"))
    assert type(back) is RemoteError
    assert back.type_name == "test_cluster_codec.Unregistered"
    assert str(back) == "test_cluster_codec.Unregistered: no"
    assert back.__notes__[0].endswith("test_cluster_codec.Unregistered: no")


def test_the_runtimes_errors_come_back_with_their_attributes(codec: SafeCodec) -> None:
    dead = codec.decode_error(
        codec.encode_error(ActorDead("/user/x", "stopped", KeyError("k")), "n")
    )
    assert type(dead) is ActorDead
    assert dead.path == "/user/x"
    assert str(dead) == "actor /user/x stopped: it failed with KeyError: 'k'"
    assert type(dead.error) is KeyError
    assert dead.__cause__ is dead.error
    timeout = codec.decode_error(codec.encode_error(AskTimeout("/user/y", 2.0, 1), "n"))
    assert isinstance(timeout, AskTimeout)
    assert isinstance(timeout, TimeoutError)
    assert (timeout.path, timeout.timeout) == ("/user/y", 2.0)
    unencodable = UnencodableMessage("app.X", "is odd", "fix it")
    back = codec.decode_error(codec.encode_error(unencodable, "n"))
    assert type(back) is UnencodableMessage
    assert back.type_name == "app.X"


def test_errors_that_must_not_be_rebuilt_are_remote_errors(codec: SafeCodec) -> None:
    back = codec.decode_error(codec.encode_error(KeyboardInterrupt(), "n"))
    assert type(back) is RemoteError
    assert back.type_name == "builtins.KeyboardInterrupt"
    crafted = [
        ("builtins.eval", "1", ["__import__('os')"], None, None),
        ("builtins.__import__", "", ["os"], None, None),
        ("os.system", "", ["true"], None, None),
        ("builtins.ValueError.mro", "", [], None, None),
    ]
    CALLS.clear()
    for fields in crafted:
        error = codec.decode_error(msgspec.msgpack.encode(fields))
        assert type(error) is RemoteError
        assert error.type_name == fields[0]


def test_garbage_error_data_gives_a_remote_error_never_an_exception(codec: SafeCodec) -> None:
    generator = random.Random(7)
    for data in [b"", b"\xc1", msgspec.msgpack.encode(("only", "two"))] + [
        generator.randbytes(20) for _ in range(100)
    ]:
        assert isinstance(codec.decode_error(data), BaseException)
    back = codec.decode_error(b"\xc1")
    assert type(back) is RemoteError
    assert str(back).startswith("<unknown>: an error arrived that cannot be decoded")


def test_an_error_holding_what_cannot_travel_still_goes_back(codec: SafeCodec) -> None:
    error = raised(ValueError(threading.Lock(), "text"))
    back = codec.decode_error(codec.encode_error(error, "n"))
    assert type(back) is RemoteError
    assert back.type_name == "builtins.ValueError"
    assert back.__notes__[0].startswith("Traceback in n:")


# -- the pickle codec ------------------------------------------------------------------------


def test_the_pickle_codec_round_trips_the_same_values() -> None:
    codec = PickleCodec()
    assert codec.name == "pickle"
    assert SafeCodec.name == "safe"
    for value in [
        None,
        1,
        "x",
        (1, [2]),
        {(1, 2): REF},
        Deposit(Money(1), REF),
        Unknown(3),
        PoisonPill,
    ]:
        assert same(roundtrip(codec, value), value)
    assert roundtrip(codec, PoisonPill) is PoisonPill
    frame = ("tell", ("bank", "/user/a", 1, "n1"), None, b"x")
    assert codec.decode_frame(codec.encode_frame(frame)) == frame
    back = codec.decode_error(codec.encode_error(raised(Unregistered("u")), "n1"))
    assert type(back) is Unregistered
    assert back.__notes__[0].startswith("Traceback in n1:")


def test_the_pickle_codec_refuses_clearly() -> None:
    codec = PickleCodec()
    with pytest.raises(
        UnencodableMessage, match=r"message of type builtins.tuple cannot be pickled"
    ):
        codec.encode_message((threading.Lock(),))
    with pytest.raises(UndecodableMessage, match="could not be unpickled"):
        codec.decode_message(b"garbage")
    with pytest.raises(UndecodableMessage, match="a frame is a tuple, not list"):
        codec.decode_frame(pickle.dumps([1]))
    assert type(codec.decode_error(b"garbage")) is RemoteError
    assert type(codec.decode_error(pickle.dumps(5))) is RemoteError


def test_a_builtin_that_cannot_travel_is_refused_with_a_fix_that_applies_to_it() -> None:
    with pytest.raises(UnencodableMessage) as caught:
        SafeCodec().encode_message({1, 2})
    text = str(caught.value)
    assert text.startswith("message of type builtins.set is not registered")
    assert "carry it as plain data instead" in text
    assert "Cluster(types=" not in text  # (a set cannot be registered)
