"""What every process of a system that spans several processes runs: the routing of
refs to actors in other processes, and the messages that cross.

A system opened with worker processes is one system on several **nodes**: the root
process (node ``"local"``) and each worker (``"w1"``, ``"w2"``, ...). An address names
its node (``Address.node``); a ref whose address is on another node resolves, through
:meth:`Node.cell_for`, to a :class:`RemoteRefCell` that sends what it is given over the
link to that node (a worker's links all go to the root, which passes traffic between
workers on: a star). The root keeps a full cell (``_remote_child.py``) for each actor it
placed on a worker, through which its supervision works; other addresses on a worker
(the children those actors spawn there) are reached through a :class:`RemoteRefCell`.

Frames
    Each frame is a tuple pickled (:func:`dumps`). A message travels inside a frame as
    bytes of its own, pickled once by the sender (at the call, so that a message that
    cannot be pickled raises :class:`UnpicklableMessage` there), passed on as bytes by
    the root and unpickled only by the process of its recipient. A message that cannot
    be unpickled there becomes a dead letter (``undecodable``) naming why. Nothing is
    unpickled before the link has authenticated its peer (``_handshake.py``).

    tells (the frame of :meth:`Node.tell_head`: its addresses pickled once per pair,
    then one or more messages, each its length and its pickle: a link puts a burst of
    tells from one sender to one actor in one frame), ``("tell", target, sender,
    payload)`` (one tell, pickled),
    an ask (the frame of :meth:`Node.ask_frame`: a tell's head, the ask's id and
    timeout, the question), ``("ask", ask_id, target, sender, payload, timeout)`` (the
    same, pickled), an answer that is a value (:meth:`Node.reply_frame`: the ask's id,
    the value), ``("reply", ask_id, ok, payload, described)`` (an error: ``described``
    is its type and text, for when its class cannot be unpickled here), ``("stop", target)``,
    ``("dead-letter", recipient, sender, payload, reason)`` (a worker's dead letters go to
    the root, so that the system's dead letters are seen in one place), and death watch:
    ``("watch", target)``, ``("unwatch", target)``,
    ``("watch-ended", target, reason, confirmed)``; the root and a worker add the frames
    of hosting (see ``_worker_pool.py`` and ``_worker_host.py``).
    ``target`` and ``sender`` are :class:`Address` tuples (``sender`` may be ``None``).

Semantics
    Per sender and receiver, messages arrive in the order they were sent (each link is
    one ordered stream, and the root passes frames on in the order it reads them).
    Delivery is at most once: what a process that is lost had queued is lost with it.
    Death watch works across: a process watching an actor of another one registers once
    per target (``watch``), and its watchers get ``Terminated`` when the target's process
    reports its end (``watch-ended``, after every message the target sent, since both
    travel the same links in order), or, with :class:`ProcessLost` as the reason, when
    the target's process is lost.
    An ask waiting for an actor in a process that is lost fails at once with
    :class:`ActorDead` carrying :class:`ProcessLost`; a reply that arrives after its
    caller gave up goes to dead letters (``ask_expired``) as in one process.
"""

from __future__ import annotations

import abc
import contextlib
import itertools
import logging
import math
import os
import pickle
import struct
import threading
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import cloudpickle
import trio

from ._address import Address
from ._cell import ActorCell
from ._delivery import ASKED
from ._envelope import Envelope, RemoteReply
from ._errors import (
    ActorDead,
    ActorError,
    AskTimeout,
    ProcessLost,
    RemoteError,
    UnpicklableMessage,
    WrongThread,
)
from ._mailbox import POLICY_IF_FULL
from ._messages import DeadLetterReason
from ._ref import ActorRef, ActorStats
from ._wire import HEADER_SIZE, MAX_FRAME, FrameTooLarge, pack_header, unpack_header

if TYPE_CHECKING:
    from ._cell import ActorCell, Cell
    from ._envelope import Reply
    from ._system import ActorSystem

_log: Final = logging.getLogger("actors.nodes")
_dumps: Final[Callable[..., bytes]] = cloudpickle.dumps
_pickle_dumps: Final = pickle.dumps
_loads: Final = pickle.loads
_get_ident: Final = threading.get_ident


# -- what crosses ---------------------------------------------------------------------------


MAX_MESSAGE: Final = MAX_FRAME - 64 * 1024
"""The largest pickled message that crosses (a frame's maximum, less room for the rest of
the frame: its addresses and kind)."""


PICKLE_PROTOCOL: Final = pickle.HIGHEST_PROTOCOL
SHORTEST_MAIN: Final = 17
"""Pickles this short cannot name anything of ``__main__``: a reference to ``__main__.X``
takes at least 17 bytes (the protocol, the two names and ``STACK_GLOBAL``), and more
with the frame header that protocols 4 and up add."""


def dumps(obj: Any) -> bytes:
    """``obj`` pickled for another process of the system: with plain :mod:`pickle`
    (several times faster for the small values messages usually are) when that gives
    something the other process can load, else with cloudpickle, which pickles by value
    what is defined in ``__main__`` (the script's classes, which another process could
    not import by name) and lambdas and local classes (which plain pickle refuses)."""
    try:
        payload = _pickle_dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:
        return _dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    if payload.find(b"__main__") >= 0:  # (find: several times faster than "in" here)
        return _dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    return payload


def encode_message(message: Any) -> bytes:
    """``message`` pickled for another process (:func:`dumps`);
    :class:`UnpicklableMessage` naming its type if it cannot be, :class:`FrameTooLarge`
    if it is too large for a frame (nothing is sent either way)."""
    try:  # (dumps, inline for the common case: the path of every message that crosses)
        payload = _pickle_dumps(message, PICKLE_PROTOCOL)
    except Exception:
        payload = _cloudpickled(message)
    else:
        if len(payload) <= SHORTEST_MAIN:
            return payload
        if payload.find(b"__main__") >= 0:
            payload = _cloudpickled(message)
    if len(payload) > MAX_MESSAGE:
        cls = type(message)
        raise FrameTooLarge(
            f"to another process ({cls.__module__}.{cls.__qualname__})",
            len(payload),
            MAX_MESSAGE,
            received=False,
        )
    return payload


def _cloudpickled(message: Any) -> bytes:
    """``message`` pickled by cloudpickle (see :func:`dumps`), or
    :class:`UnpicklableMessage` naming its type."""
    try:
        return _dumps(message, protocol=PICKLE_PROTOCOL)
    except Exception as error:
        raise UnpicklableMessage(message, error, crossing=True) from error


class Encoded:
    """A message already pickled at the call for a process that will unpickle it: what
    the mailbox of the root's cell for an actor on a worker holds, so that the message
    is pickled once, at the call, and passed on as bytes."""

    __slots__ = ("_type", "payload")

    def __init__(self, payload: bytes, of_type: type | str) -> None:
        self.payload = payload
        self._type = of_type  # (its name is made only when asked for)

    @property
    def type_name(self) -> str:
        """The message's type, ``module.QualName`` (or what the sender called it)."""
        cls = self._type
        return cls if isinstance(cls, str) else f"{cls.__module__}.{cls.__qualname__}"

    @staticmethod
    def of(message: Any) -> Encoded:
        if message.__class__ is Encoded:
            return message
        return Encoded(encode_message(message), type(message))

    def decode(self) -> Any:
        return _loads(self.payload)

    def decode_or_describe(self) -> Any:
        """The message, or a text saying what it was if it cannot be unpickled here."""
        try:
            return _loads(self.payload)
        except Exception as error:
            return f"<{self.type_name}, pickled, that cannot be unpickled here: {error!r}>"

    def __repr__(self) -> str:
        return f"<{self.type_name}, pickled: {len(self.payload)} bytes>"


def _travels(error: BaseException) -> bool:
    """Whether ``error`` survives the trip (:func:`dumps`, then loading): with cloudpickle
    for a class defined in ``__main__`` or one that came by value from another process
    (which then goes back as the same class)."""
    try:
        _loads(dumps(error))
    except Exception:
        return False
    return True


def portable_error(error: BaseException, where: str) -> BaseException:
    """``error`` as it can travel to another process: itself if it pickles, else a
    :class:`RemoteError` with its type and text. Either way a note gives the traceback
    as it was in ``where`` (a node and a pid), which pickling would lose."""
    lines = traceback.format_exception(type(error), error, error.__traceback__)
    note = f"Traceback in {where}:\n" + "".join(lines).rstrip()
    if _travels(error):
        travelling = error
    else:
        cls = type(error)
        travelling = RemoteError(f"{cls.__module__}.{cls.__qualname__}", str(error))
    if note not in getattr(travelling, "__notes__", ()):
        travelling.add_note(note)
    return travelling


def encode_error(error: BaseException, where: str) -> bytes:
    """A pickled error for an answer that crosses (see :func:`portable_error`)."""
    try:
        return dumps(portable_error(error, where))
    except Exception:  # its notes or attributes did not pickle after all
        cls = type(error)
        stand_in = RemoteError(f"{cls.__module__}.{cls.__qualname__}", str(error))
        return _dumps(stand_in, protocol=pickle.HIGHEST_PROTOCOL)


def _error_of(payload: bytes, target: Address) -> BaseException:
    try:
        error = _loads(payload)
    except Exception as exc:
        return ActorError(
            f"{target.path} stopped with an error that could not be unpickled: {exc!r}"
        )
    return error if isinstance(error, BaseException) else ActorError(repr(error))


def _undecodable_answer(
    ok: bool, described: tuple[str, str] | None, error: BaseException, where: str
) -> ActorError:
    """What an asker gets for an answer that cannot be unpickled here: the error it
    stands for (:class:`RemoteError`, by type and text), or an error saying that the
    value could not be read."""
    if not ok and described is not None:
        stand_in: ActorError = RemoteError(*described)
        stand_in.add_note(f"(its class could not be unpickled in {where}: {error!r})")
        return stand_in
    return ActorError(f"the answer could not be unpickled in {where}: {error!r}")


def _ref_at(address: tuple[Any, ...] | None) -> ActorRef | None:
    return None if address is None else ActorRef._create(Address._make(address))


def ref_of(address: Address | None) -> ActorRef | None:
    return None if address is None else ActorRef._create(address)


def address_of(ref: ActorRef | None) -> tuple[Any, ...] | None:
    """The address of ``ref`` as a frame carries it: a plain tuple (pickled four times
    faster than the named one), made an :class:`Address` again on arrival."""
    return None if ref is None else tuple(ref.address)


_address: Final = Address._make
TELL: Final = b"T"
"""The first byte of a tell frame (a pickled frame starts with ``0x80``)."""
ASK: Final = b"A"
"""The first byte of an ask frame (:meth:`Node.ask_frame`)."""
REPLY: Final = b"R"
"""The first byte of the frame of an answer that is a value (:meth:`Node.reply_frame`)."""
_ask_numbers: Final = struct.Struct(">Qd")  # (an ask's id and timeout)
_reply_number: Final = struct.Struct(">Q")  # (the id of the ask answered)
_RESOLVED_KEPT: Final = 10_000


# -- asks in flight -------------------------------------------------------------------------


class PendingAsk:
    """An ask sent to another process: the task waiting for its reply, and the node
    through which it went (if that node is lost, the ask fails at once)."""

    __slots__ = ("error", "node", "path", "task", "value")

    def __init__(self, node: str, path: str, task: trio.lowlevel.Task) -> None:
        self.node = node
        self.path = path
        self.task: trio.lowlevel.Task | None = task
        self.value: Any = None
        self.error: BaseException | None = None

    def settle(self, value: Any, error: BaseException | None) -> bool:
        task = self.task
        if task is None:
            return False
        self.task = None
        self.value = value
        self.error = error
        trio.lowlevel.reschedule(task)
        return True

    def abort(self, _: Any) -> trio.lowlevel.Abort:
        self.task = None
        return trio.lowlevel.Abort.SUCCEEDED


# -- the node -------------------------------------------------------------------------------


class Node(abc.ABC):
    """One process's part of a system on several nodes (see the module documentation).
    The root's is ``_worker_pool.RootNode``, a worker's ``_worker_host.WorkerNode``."""

    def __init__(self, system: ActorSystem) -> None:
        self.system = system
        self._asks: dict[int, PendingAsk] = {}
        self._ask_ids = itertools.count(1)
        self._routes: dict[Address, RemoteRefCell] = {}
        self._resolved: dict[Address, Cell] = {}  # (see resolve)
        # The heads of tell frames, made and read (see tell_head).
        self._heads_out: dict[tuple[Address, Address | None], bytes] = {}
        self._heads_in: dict[bytes, tuple[Address, ActorRef | None]] = {}
        self._ask_heads: dict[tuple[Address, Address | None], bytes] = {}
        self._nursery: trio.Nursery | None = None  # for the relays of incoming asks

    @property
    def where(self) -> str:
        """This process, for messages: ``node w1 (pid 123)``."""
        return f"node {self.system.node} (pid {os.getpid()})"

    # -- what crosses: pickle here; a cluster node uses its codec (actors/cluster) ------------

    def encode(self, message: Any) -> bytes:
        """``message`` as it crosses (at the call: :class:`UnpicklableMessage` or the
        codec's own ``TypeError`` if it cannot, :class:`FrameTooLarge` if too large)."""
        if message.__class__ is Encoded:
            payload: bytes = message.payload
            return payload
        return encode_message(message)

    decode: Callable[[bytes], Any] = staticmethod(_loads)
    """``decode(payload)``: a message (or an answer's value) that crossed; raises if it
    cannot be read (:func:`pickle.loads` here; a cluster node uses its codec)."""

    def pack(self, frame: tuple[Any, ...]) -> bytes:
        """One of the frames of the module documentation, as it crosses."""
        return dumps(frame)

    def unpack(self, data: bytes) -> Any:
        """A frame that crossed (raises if it cannot be read)."""
        return _loads(data)

    def encode_error(self, error: BaseException) -> bytes:
        """An error that crosses as an answer or a reason (see :func:`portable_error`)."""
        return encode_error(error, self.where)

    def decode_error(self, payload: bytes) -> BaseException:
        """An error made by :meth:`encode_error` (raises if it cannot be read)."""
        error = _loads(payload)
        return error if isinstance(error, BaseException) else ActorError(repr(error))

    def error_of(self, payload: bytes, target: Address) -> BaseException:
        """The reason ``target`` stopped, from :meth:`encode_error`: never raises."""
        return _error_of(payload, target)

    async def leave(self) -> None:
        """Called once the system's actors are down, shielded, with a deadline: what
        this node must do before it ends (a cluster's node leaves the cluster)."""
        return  # (nothing, for worker processes and their root)

    # -- routing ----------------------------------------------------------------------------

    def cell_for(self, address: Address) -> Cell:
        """The cell of an address on another node (made once per address)."""
        cell = self._routes.get(address)
        if cell is None:
            cell = self._routes[address] = RemoteRefCell(self, address)
        return cell

    def find_local(self, path: str) -> ActorCell | None:
        """A live cell of this process at ``path`` that the tree under ``/user`` does not
        hold (a worker's hosted actors), or ``None``."""
        return None

    def report_dead_letter(
        self,
        message: Any,
        sender: ActorRef | None,
        recipient: ActorRef,
        reason: DeadLetterReason,
    ) -> bool:
        """Hand a dead letter found in this process to the node where it is to be
        counted, logged and published (a worker's go to the root process; a cluster
        node's go to the sender's node); ``False`` to handle it here."""
        return False

    def described(self, message: Encoded) -> Any:
        """A message encoded at the call (on its way to another node), for a dead
        letter here: decoded, or a text saying what it was."""
        return message.decode_or_describe()

    @abc.abstractmethod
    def send_bytes(self, node: str, data: bytes) -> None:
        """Queue the frame ``data`` on the link that leads to ``node``. Raises
        :class:`ProcessLost` if there is none now, ``LinkFull`` if it is full."""

    def send_frame(self, node: str, frame: tuple[Any, ...]) -> None:
        """Queue ``frame`` (pickled) on the link that leads to ``node`` (errors as
        :meth:`send_bytes`)."""
        self.send_bytes(node, self.pack(frame))

    def send_part(self, node: str, head: bytes, part: bytes) -> None:
        """Queue ``part`` in a frame that starts with ``head`` on the link that leads to
        ``node`` (errors as :meth:`send_bytes`): a frame of its own here; a link adds it
        to the frame before it when that one has the same head (``Link.append``)."""
        self.send_bytes(node, head + pack_header(len(part)) + part)

    # -- tells in binary frames ---------------------------------------------------------------

    def tell_head(self, target: Address, sender: ActorRef | None) -> bytes | None:
        """The head of a tell frame from ``sender`` to ``target``: ``T``, the length of
        the rest of the head (2 bytes), then both addresses, pickled once per pair and
        remembered (the same object each time, so that a link adds the tells of a burst
        to one frame). The messages follow, each as its length (4 bytes) and its pickle.
        ``None`` for addresses too long for a head (paths of absurd depth): such a tell
        goes as a pickled ``("tell", ...)`` frame."""
        key = (target, None if sender is None else sender.address)
        head = self._heads_out.get(key)
        if head is None:
            addresses = (tuple(target), None if sender is None else tuple(sender.address))
            pickled = self.pack(addresses)
            if len(pickled) > 0xFFFF:
                return None
            head = TELL + len(pickled).to_bytes(2, "big") + pickled
            heads = self._heads_out
            if len(heads) >= _RESOLVED_KEPT:
                heads.clear()
            heads[key] = head
        return head

    def tell_frame(self, target: Address, sender: ActorRef | None, payload: bytes) -> bytes:
        """The frame of one tell (:meth:`tell_head`) of ``payload``, a pickled message."""
        head = self.tell_head(target, sender)
        if head is None:
            sent_by = None if sender is None else tuple(sender.address)
            return self.pack(("tell", tuple(target), sent_by, payload))
        return head + pack_header(len(payload)) + payload

    def send_tell(
        self, node: str, target: Address, sender: ActorRef | None, payload: bytes
    ) -> None:
        """Queue the tell of ``payload`` (a pickled message) on the link that leads to
        ``node`` (errors as :meth:`send_bytes`). Nothing but the message is pickled per
        tell."""
        head = self.tell_head(target, sender)
        if head is None:
            self.send_bytes(node, self.tell_frame(target, sender, payload))
        else:
            self.send_part(node, head, payload)

    def on_tell_frame(self, frame: bytes) -> None:
        """A tell frame (:meth:`tell_head`) received: each of its messages delivered, in
        order. ``ValueError`` if its parts do not add up to the frame (the peer broke
        the protocol: nothing of it is delivered)."""
        start = 3 + int.from_bytes(frame[1:3], "big")
        target, sender = self._known_head(frame[3:start])
        end = len(frame)
        unpack_from = unpack_header
        position = start
        cell = self.resolve(target)
        # The common case (an actor of this process, with no hook): each message is
        # decoded as it is cut from the frame, then all are accepted at once.
        fast = cell is not None and cell.__class__ is ActorCell and not cell._slow
        decode = self.decode
        envelopes: list[Envelope] = []
        payloads: list[bytes] = []  # (not fast: cut out, for deliver_tells)
        refused: list[tuple[bytes, Exception]] = []
        while end - position >= HEADER_SIZE:
            (size,) = unpack_from(frame, position)
            position += HEADER_SIZE
            stop = position + size
            if stop > end:
                break
            payload = frame[position:stop]
            position = stop
            if not fast:
                payloads.append(payload)
                continue
            try:
                envelopes.append((decode(payload), sender, None))
            except Exception as error:
                refused.append((payload, error))
        if position != end or position == start:
            raise ValueError(
                f"a tell frame of {end} bytes for {target.path} does not split into "
                "messages (the peer broke the protocol; none of them was delivered)"
            )
        if not fast:
            self.deliver_tells(cell, target, sender, payloads)
            return
        for payload, problem in refused:
            self._refused(target, sender, payload, problem)
        assert isinstance(cell, ActorCell)  # (fast)
        cell._accept_many(envelopes, POLICY_IF_FULL)

    def _known_head(self, head: bytes) -> tuple[Address, ActorRef | None]:
        """The target and sender that the addresses of a head name (the head of a tell
        or ask frame, without its first 3 bytes), decoded once and remembered."""
        known = self._heads_in.get(head)
        if known is None:
            target, sender = self.unpack(head)
            known = (_address(target), _ref_at(sender))
            heads = self._heads_in
            if len(heads) >= _RESOLVED_KEPT:
                heads.clear()
            heads[head] = known
        return known

    # -- asks and answers in binary frames ------------------------------------------------------

    def ask_frame(
        self,
        ask_id: int,
        target: Address,
        sender: ActorRef | None,
        payload: bytes,
        timeout: float,
    ) -> bytes:
        """The frame of an ask: ``A``, then the head of a tell from ``sender`` to
        ``target`` without its ``T`` (:meth:`tell_head`), the ask's id (8 bytes) and
        timeout (a double), then the question's pickle. A pickled ``("ask", ...)`` frame
        for addresses too long for a head."""
        key = (target, None if sender is None else sender.address)
        head = self._ask_heads.get(key)
        if head is None:
            tell = self.tell_head(target, sender)
            if tell is None:
                sent_by = address_of(sender)
                return self.pack(("ask", ask_id, tuple(target), sent_by, payload, timeout))
            head = ASK + tell[1:]
            heads = self._ask_heads
            if len(heads) >= _RESOLVED_KEPT:
                heads.clear()
            heads[key] = head
        return head + _ask_numbers.pack(ask_id, timeout) + payload

    def on_ask_frame(self, origin: str, frame: bytes) -> None:
        """An ask frame (:meth:`ask_frame`) received from the node ``origin``."""
        start = 3 + int.from_bytes(frame[1:3], "big")
        head = frame[3:start]
        known = self._heads_in.get(head)  # (_known_head's common case, inline)
        target, sender = self._known_head(head) if known is None else known
        ask_id, timeout = _ask_numbers.unpack_from(frame, start)
        payload = frame[start + _ask_numbers.size :]
        self.deliver_ask(origin, ask_id, target, sender, payload, timeout)

    @staticmethod
    def reply_frame(ask_id: int, answer: bytes) -> bytes:
        """The frame of an answer that is a value: ``R``, the ask's id (8 bytes), then
        the value's pickle. (An error goes as a pickled ``("reply", ...)`` frame.)"""
        return REPLY + _reply_number.pack(ask_id) + answer

    def on_binary_frame(self, origin: str, frame: bytes) -> bool:
        """Handle a tell, ask or answer frame in its binary form (from the node
        ``origin``); ``False`` if ``frame`` is not one (a pickled frame, say)."""
        kind = frame[:1]
        if kind == TELL:
            self.on_tell_frame(frame)
        elif kind == ASK:
            self.on_ask_frame(origin, frame)
        elif kind == REPLY:
            (ask_id,) = _reply_number.unpack_from(frame, 1)
            self._on_reply(ask_id, True, frame[1 + _reply_number.size :], None)
        else:
            return False
        return True

    # -- sending ----------------------------------------------------------------------------

    def tell_remote(
        self, target: Address, payload: bytes, sender: ActorRef | None, via: str | None = None
    ) -> None:
        """Send a tell (to ``target``'s node, or to node ``via``, which hosts it); what
        cannot be sent becomes a dead letter with the reason."""
        try:
            self.send_tell(via or target.node, target, sender, payload)
        except ProcessLost:
            self._undelivered(payload, sender, target, DeadLetterReason.PROCESS_LOST)
        except ActorError as error:  # the link is full (or the frame too large)
            reason = DeadLetterReason.LINK_FULL
            _log.warning("%s: message to %s not sent: %s", self.where, target.path, error)
            self._undelivered(payload, sender, target, reason)

    def _undelivered(
        self, payload: bytes, sender: ActorRef | None, target: Address, reason: DeadLetterReason
    ) -> None:
        try:
            message = self.decode(payload)
        except Exception:
            message = f"<undecodable message of {len(payload)} bytes>"
        self.system._dead_letter(message, sender, ActorRef._create(target), reason)

    async def ask_remote(
        self, target: Address, payload: bytes, timeout: float, sender: ActorRef | None
    ) -> Any:
        """Ask an actor on another node and wait for its answer (see the module
        documentation for what fails and how)."""
        ask_id = next(self._ask_ids)
        pending = PendingAsk(target.node, target.path, trio.lowlevel.current_task())
        try:
            self.send_bytes(target.node, self.ask_frame(ask_id, target, sender, payload, timeout))
        except ProcessLost as error:
            await trio.lowlevel.checkpoint()
            raise ActorDead(target.path, "is in a process that was lost", error) from error
        self._asks[ask_id] = pending
        try:
            with trio.move_on_after(timeout) as waiting:
                await trio.lowlevel.wait_task_rescheduled(pending.abort)
        finally:
            self._asks.pop(ask_id, None)
        if waiting.cancelled_caught:
            raise AskTimeout(target.path, timeout, self.decode(payload))
        if pending.error is not None:
            raise pending.error
        return pending.value

    def fail_asks_to(self, target: Address, error: ActorDead) -> None:
        """``target`` has stopped: asks still waiting for it fail now."""
        for pending in list(self._asks.values()):
            if pending.node == target.node and pending.path == target.path:
                pending.settle(None, error)

    def fail_asks_through(self, node: str, error: ProcessLost) -> None:
        """``node`` is lost: every ask waiting for an answer through it fails now."""
        for pending in list(self._asks.values()):
            if pending.node == node:
                pending.settle(
                    None, ActorDead(pending.path, "is in a process that was lost", error)
                )

    # -- receiving --------------------------------------------------------------------------

    def on_frame(self, origin: str, frame: tuple[Any, ...]) -> bool:
        """Handle the frames every node understands; ``False`` for another kind."""
        kind = frame[0]
        if kind == "tell":
            _, target, sender, payload = frame
            self.deliver_tell(_address(target), _ref_at(sender), payload)
        elif kind == "ask":
            _, ask_id, target, sender, payload, timeout = frame
            self.deliver_ask(origin, ask_id, _address(target), _ref_at(sender), payload, timeout)
        elif kind == "reply":
            _, ask_id, ok, payload, described = frame
            self._on_reply(ask_id, ok, payload, described)
        elif kind == "stop":
            cell = self.resolve(_address(frame[1]))
            if cell is not None:
                cell.request_stop()
        elif kind == "dead-letter":
            _, recipient, sender, payload, reason = frame
            try:
                message = self.decode(payload)
            except Exception as error:
                message = f"<undecodable message of {len(payload)} bytes: {error!r}>"
            self.system._dead_letter(
                message,
                _ref_at(sender),
                ActorRef._create(_address(recipient)),
                DeadLetterReason(reason),
            )
        elif kind == "watch":
            self._watch_for(origin, _address(frame[1]))
        elif kind == "unwatch":
            cell = self.resolve(_address(frame[1]))
            if cell is not None:
                cell.unwatched_by(RemoteWatcher(self, origin))
        elif kind == "watch-ended":
            _, target, reason_payload, confirmed = frame
            target = _address(target)
            reason = None if reason_payload is None else self.error_of(reason_payload, target)
            self.watch_ended(target, reason, confirmed)
        else:
            return False
        return True

    def _on_reply(self, ask_id: int, ok: bool, payload: bytes, described: Any) -> None:
        """The answer to this process's ask ``ask_id``: to its caller, or (if the caller
        gave up) to dead letters."""
        pending = self._asks.pop(ask_id, None)
        try:
            value = self.decode(payload) if ok else self.decode_error(payload)
        except Exception as error:
            value = _undecodable_answer(ok, described, error, self.where)
            ok = False
        if pending is not None and pending.settle(value if ok else None, None if ok else value):
            return
        if ok or not isinstance(value, AskTimeout):
            # Its caller gave up first. (Not the other process's own timeout of the
            # same question: the caller's said so already.)
            self.system._dead_letter(
                value, None, self.system._guardian.ref, DeadLetterReason.ASK_EXPIRED
            )

    def _watch_for(self, origin: str, target: Address) -> None:
        """Another process watches ``target``: watch it on its behalf."""
        cell = self.resolve(target)
        watcher = RemoteWatcher(self, origin)
        if cell is None:
            watcher._watched_terminated(ActorRef._create(target), None, False)
        elif not cell.watched_by(watcher):
            error = getattr(cell, "error", None) or getattr(cell, "_reason", None)
            watcher._watched_terminated(cell.ref, error, False)

    def watch_ended(self, target: Address, reason: BaseException | None, confirmed: bool) -> None:
        """``target``, in another process, has stopped (or its process was lost): tell
        the watchers of this process."""
        cell = self._routes.get(target)
        if cell is None or not cell._watchers:
            return
        watchers, cell._watchers = cell._watchers, None
        for watcher in watchers:
            watcher._watched_terminated(cell.ref, reason, confirmed)

    def node_lost(self, node: str, error: ProcessLost) -> None:
        """Every actor of ``node`` this process reaches by routing is gone with it: its
        watchers here get ``Terminated`` with ``error``; asks through it fail."""
        self.fail_asks_through(node, error)
        for address in [a for a in self._routes if a.node == node]:
            self.watch_ended(address, error, True)

    def resolve(self, target: Address) -> Cell | None:
        """The cell a frame for ``target`` goes to: local (or the next hop), or ``None``
        if the address is not of this system. Live cells are remembered (a stream of
        messages to one actor resolves its address once)."""
        known = self._resolved
        cell = known.get(target)
        if cell is not None and not cell.is_dead():
            return cell
        ref = ActorRef._create(target)
        try:
            cell = ref._resolve()
        except ActorDead:
            return None
        if not cell.is_dead():
            if len(known) >= _RESOLVED_KEPT:
                known.clear()
            known[target] = cell
        return cell

    def deliver_tell(self, target: Address, sender: ActorRef | None, payload: bytes) -> None:
        self.deliver_tells(self.resolve(target), target, sender, [payload])

    def deliver_tells(
        self, cell: Cell | None, target: Address, sender: ActorRef | None, payloads: list[bytes]
    ) -> None:
        """Messages (pickled) from ``sender`` to ``target`` (whose cell here is ``cell``,
        from :meth:`resolve`), in order: into the mailbox of an actor of this process,
        passed on (still pickled) to the process that hosts it, or to dead letters (no
        such actor; undecodable). (:meth:`on_tell_frame` takes a faster way for an
        actor of this process with no delivery hook.)"""
        if cell is None:
            for payload in payloads:
                self._undelivered(payload, sender, target, DeadLetterReason.NO_SUCH_ACTOR)
            return
        if target.node != self.system.node and not _is_full_cell(cell):
            # Not here: pass them on, still pickled.
            for payload in payloads:
                self.tell_remote(target, payload, sender)
            return
        if _is_placed(cell):  # on to a worker: as they came, still pickled
            for payload in payloads:
                cell.offer(Encoded(payload, "message"), sender, False, "tell")
            return
        for payload in payloads:
            try:
                message = self.decode(payload)
            except Exception as error:
                self._refused(target, sender, payload, error)
                continue
            cell.offer(message, sender, False, "tell")

    def _refused(
        self, target: Address, sender: ActorRef | None, payload: bytes, error: BaseException
    ) -> None:
        _log.warning(
            "%s: a message of %d bytes for %s could not be decoded: %r",
            self.where,
            len(payload),
            target.path,
            error,
        )
        self.system._dead_letter(
            f"<undecodable message of {len(payload)} bytes: {error!r}>",
            sender,
            ActorRef._create(target),
            DeadLetterReason.UNDECODABLE,
        )

    def deliver_ask(
        self,
        origin: str,
        ask_id: int,
        target: Address,
        sender: ActorRef | None,
        payload: bytes,
        timeout: float,
    ) -> None:
        cell = self._resolved.get(target)  # (resolve's common case, inline)
        if cell is None or cell.is_dead():
            cell = self.resolve(target)
        if cell.__class__ is ActorCell or (isinstance(cell, ActorCell) and not _is_placed(cell)):
            # An actor of this process: the question goes into its mailbox with a reply
            # slot that sends the answer back when it is given (no task per ask).
            try:
                message = self.decode(payload)
            except Exception as error:
                self._refused(target, sender, payload, error)
                failure = ActorError(
                    f"the question for {target.path} could not be decoded in "
                    f"{self.where}: {error!r}"
                )
                self._send_answer(origin, ask_id, None, failure)
                return

            def answered(reply: RemoteReply) -> None:
                self._send_answer(origin, ask_id, reply.value, reply.error)

            reply = RemoteReply(target.path, message, timeout, sender, answered)
            cell._enter(ASKED, message, sender, reply, POLICY_IF_FULL, copy=False)
            return
        nursery = self._nursery
        if nursery is None:
            return
        nursery.start_soon(self._relay_ask, origin, ask_id, target, sender, payload, timeout)

    def _send_answer(
        self, origin: str, ask_id: int, value: Any, error: BaseException | None
    ) -> None:
        """Send the answer to an ask of the process ``origin`` (see :meth:`_relay_ask`)."""
        described = None
        if error is None:
            try:
                answer = self.encode(value)
            except ActorError as exc:  # (it cannot cross, or it is too large)
                error = exc
        if error is not None:
            answer = self.encode_error(error)
            cls = type(error)
            described = (f"{cls.__module__}.{cls.__qualname__}", str(error))
        with contextlib.suppress(ActorError):  # (else its process is gone: nobody waits)
            if error is None:  # (reply_frame, inline)
                self.send_bytes(origin, REPLY + _reply_number.pack(ask_id) + answer)
            else:
                self.send_frame(origin, ("reply", ask_id, False, answer, described))

    async def _relay_ask(
        self,
        origin: str,
        ask_id: int,
        target: Address,
        sender: ActorRef | None,
        payload: bytes,
        timeout: float,
    ) -> None:
        value: Any = None
        failure: BaseException | None = None
        try:
            cell = self.resolve(target)
            if cell is None:
                raise ActorDead(target.path, "is not running (no such actor)")
            if target.node != self.system.node and not _is_full_cell(cell):
                value = await self.ask_remote(target, payload, timeout, sender)
            else:
                if _is_placed(cell):
                    message: Any = Encoded(payload, "message")  # passed on as it came
                else:
                    try:
                        message = self.decode(payload)
                    except Exception as error:
                        self._refused(target, sender, payload, error)
                        raise ActorError(
                            f"the question for {target.path} could not be decoded in "
                            f"{self.where}: {error!r}"
                        ) from error
                value = await cell.ask(message, timeout if timeout > 0 else math.inf, sender)
        except Exception as error:
            failure = error
        self._send_answer(origin, ask_id, value, failure)


def _is_placed(cell: Cell) -> bool:
    """Whether ``cell`` is the root's cell of an actor it placed on a worker (whose
    mailbox holds messages pickled, to pass them on as they are)."""
    return getattr(cell, "_placed_class", False) is not False


def _is_full_cell(cell: Cell) -> bool:
    """Whether ``cell`` runs in this process (a live or dead cell of this system, or the
    root's cell for an actor it placed on a worker), rather than only routing."""
    return not isinstance(cell, RemoteRefCell)


# -- the routing cell -----------------------------------------------------------------------


class RemoteRefCell:
    """Stands, in this process, for an actor on another node that this process does not
    supervise: what it is given is pickled at the call and sent over the link to that
    node. It never holds messages: it cannot tell whether the actor is alive (the
    receiving process dead-letters what it cannot deliver)."""

    __slots__ = ("_node", "_thread", "_watchers", "ref", "system")

    def __init__(self, node: Node, address: Address) -> None:
        self._node = node
        self.system = node.system
        self.ref = ActorRef._create(address, self)
        self._thread = node.system._thread_id
        # Who in this process watches it (cells, or relays for other processes).
        self._watchers: dict[Any, None] | None = None

    def _check_thread(self) -> None:
        if self._thread != _get_ident():
            raise WrongThread(
                f"{self.ref.path} used from a thread that does not run its actor system; "
                "use ref.tell_threadsafe() or trio.from_thread.run() from other threads"
            )

    def tell(self, message: Any, sender: ActorRef | None) -> None:
        self._check_thread()
        self._node.tell_remote(self.ref.address, self._node.encode(message), sender)

    def tell_threadsafe(self, message: Any, sender: ActorRef | None) -> None:
        payload = self._node.encode(message)
        self.system._token.run_sync_soon(self._node.tell_remote, self.ref.address, payload, sender)

    async def send(self, message: Any, sender: ActorRef | None) -> None:
        await trio.lowlevel.checkpoint_if_cancelled()
        self.tell(message, sender)
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def ask(self, message: Any, timeout: float | None, sender: ActorRef | None) -> Any:
        await trio.lowlevel.checkpoint_if_cancelled()
        self._check_thread()
        if timeout is None:
            timeout = self.system.settings.ask_timeout
        return await self._node.ask_remote(
            self.ref.address, self._node.encode(message), timeout, sender
        )

    def offer(
        self, message: Any, sender: ActorRef | None, copy: bool = True, via: str = "publish"
    ) -> None:
        if self._thread != _get_ident():
            self.system._token.run_sync_soon(self.offer, message, sender, copy, via)
            return
        try:
            payload = self._node.encode(message)
        except TypeError:  # (UnpicklableMessage, or a codec's own error)
            self.system._dead_letter(message, sender, self.ref, DeadLetterReason.UNPICKLABLE)
            return
        self._node.tell_remote(self.ref.address, payload, sender)

    def forward(self, message: Any, sender: ActorRef | None, slot: Reply | None) -> None:
        if slot is None:
            self.offer(message, sender, True, "forward")
            return
        nursery = self._node._nursery
        if nursery is not None:
            nursery.start_soon(self._forward_ask, message, sender, slot)

    async def _forward_ask(self, message: Any, sender: ActorRef | None, slot: Reply) -> None:
        value: Any = None
        error: BaseException | None = None
        try:
            value = await self.ask(message, slot.timeout, sender)
        except Exception as exc:
            error = exc
        settle_reply(self.system, self.ref, slot, value, error)

    def is_dead(self) -> bool:
        return False

    def watched_by(self, watcher: Any) -> bool:
        """Watch it through its process (one registration there per target); ``False``
        if its process cannot be reached (it is as good as gone)."""
        watchers = self._watchers
        if not watchers:
            try:
                self._node.send_frame(self.ref.address.node, ("watch", self.ref.address))
            except ActorError:
                return False
            watchers = self._watchers = {}
        watchers[watcher] = None
        return True

    def unwatched_by(self, watcher: Any) -> None:
        watchers = self._watchers
        if watchers and watchers.pop(watcher, 0) is None and not watchers:
            self._watchers = None
            with contextlib.suppress(ActorError):
                self._node.send_frame(self.ref.address.node, ("unwatch", self.ref.address))

    def request_stop(self, deadline: float | None = None) -> None:
        with contextlib.suppress(ActorError):  # (else its process is gone, and it with it)
            self._node.send_frame(self.ref.address.node, ("stop", self.ref.address))

    def stats(self) -> ActorStats:
        return ActorStats(alive=True)

    def queued(self) -> int:
        return 0


class RemoteWatcher:
    """Watches a cell of this process on behalf of the process ``origin``: when the cell
    stops, ``origin`` is told (``watch-ended``). Equal for one origin, so a process
    registers once per target."""

    __slots__ = ("_node", "origin")

    def __init__(self, node: Node, origin: str) -> None:
        self._node = node
        self.origin = origin

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemoteWatcher) and other.origin == self.origin

    def __hash__(self) -> int:
        return hash(("RemoteWatcher", self.origin))

    def _watched_terminated(
        self, ref: ActorRef, reason: BaseException | None, confirmed: bool
    ) -> bool:
        node = self._node
        payload = None if reason is None else node.encode_error(reason)
        with contextlib.suppress(ActorError):  # (else that process is gone: nobody waits)
            node.send_frame(self.origin, ("watch-ended", ref.address, payload, confirmed))
        return True


def settle_reply(
    system: ActorSystem, ref: ActorRef, slot: Reply, value: Any, error: BaseException | None
) -> None:
    """Answer an ask's reply slot from outside a cell (a forwarded ask answered by
    another process): as ``MailboxOps._complete`` does."""
    task = slot.task
    if task is None:
        late = error if error is not None else value
        system._dead_letter(late, ref, slot.sender or ref, DeadLetterReason.ASK_EXPIRED)
        return
    slot.task = None
    slot.value = value
    slot.error = error
    if slot.parked:
        trio.lowlevel.reschedule(task)
    elif isinstance(slot, RemoteReply):
        slot.answered(slot)
