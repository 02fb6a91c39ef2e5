"""Durable streams: bus topics stored by a stream engine (NATS JetStream, or an
in-memory stand-in for tests), consumed at least once by actors in consumer groups.

The user guide's page ``docs/streams.md`` explains it all.
"""

from .._public import export as _export
from ._config import ConsumerConfig, Start, StreamConfig
from ._dead_letters import StreamDeadLetter, StreamDeadLetterReason
from ._engine import (
    Consumer,
    NoStreamForSubject,
    PubAck,
    Received,
    StoredEvent,
    StreamEngine,
    StreamError,
    StreamNotFound,
    StreamState,
)
from ._jetstream import JetStreamEngine
from ._jetstream_open import open_jetstream
from ._memory import InMemoryStreams
from ._outbox import Outbox, OutboxError, UnpublishableEvent, spawn_outbox
from ._streams import Streams, UnencodableEvent, open_streams
from ._subscription import StreamEvent, Subscription, SubscriptionFailed, SubscriptionStats

__all__ = [
    "Consumer",
    "ConsumerConfig",
    "InMemoryStreams",
    "JetStreamEngine",
    "NoStreamForSubject",
    "Outbox",
    "OutboxError",
    "PubAck",
    "Received",
    "Start",
    "StoredEvent",
    "StreamConfig",
    "StreamDeadLetter",
    "StreamDeadLetterReason",
    "StreamEngine",
    "StreamError",
    "StreamEvent",
    "StreamNotFound",
    "StreamState",
    "Streams",
    "Subscription",
    "SubscriptionFailed",
    "SubscriptionStats",
    "UnencodableEvent",
    "UnpublishableEvent",
    "open_jetstream",
    "open_streams",
    "spawn_outbox",
]

_export(__name__, globals(), __all__)
