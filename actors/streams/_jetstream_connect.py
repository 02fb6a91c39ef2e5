"""Connecting :class:`~actors.streams.JetStreamEngine` to NATS: the options of
:func:`~actors.streams.open_jetstream` checked, and a nats-py client connected (or a
:class:`StreamError` saying why not)."""

from __future__ import annotations

import contextlib
import logging
import ssl
from collections.abc import Sequence
from typing import Any, Final

import trio

from ._engine import StreamError

_log: Final = logging.getLogger("actors.streams")


def check_options(
    servers: str | Sequence[str],
    user: str | None,
    password: str | None,
    token: str | None,
    tls: ssl.SSLContext | None,
    timeouts: dict[str, float],
) -> list[str]:
    urls = [servers] if isinstance(servers, str) else list(servers)
    if not urls or not all(isinstance(url, str) and url for url in urls):
        raise ValueError(
            f"open_jetstream needs NATS server URLs ('nats://host:4222'), got {servers!r}"
        )
    if (user is None) != (password is None):
        raise ValueError("open_jetstream: give both user and password, or neither")
    if token is not None and user is not None:
        raise ValueError("open_jetstream: give a token or a user and password, not both")
    if tls is not None and not isinstance(tls, ssl.SSLContext):
        raise TypeError(f"open_jetstream(tls=...) takes an ssl.SSLContext, got {tls!r}")
    for name, value in timeouts.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(f"open_jetstream({name}=...) takes seconds > 0, got {value!r}")
    return urls


async def connect(
    loop: Any, urls: list[str], options: dict[str, Any], tls: bool, connect_timeout: float
) -> Any:
    """A connected nats-py client (:class:`StreamError` if there is none to be had)."""
    from nats.aio.client import Client

    client = Client()
    errors: list[Exception] = []
    connected = False

    async def on_error(error: Exception) -> None:
        if not connected:
            errors.append(error)  # (named if connecting fails)
        else:
            _log.warning("JetStream engine: NATS: %s", error)

    async def on_disconnected() -> None:
        if connected and not client.is_closed:
            _log.warning("JetStream engine: disconnected from NATS; reconnecting")

    async def on_reconnected() -> None:
        _log.warning("JetStream engine: reconnected to NATS")

    attempts = 2 * len(urls)
    try:
        try:
            with trio.fail_after(attempts * (connect_timeout + options["reconnect_time_wait"]) + 1):
                await loop.run_aio_coroutine(
                    client.connect(
                        **options,
                        error_cb=on_error,
                        disconnected_cb=on_disconnected,
                        reconnected_cb=on_reconnected,
                    )
                )
            connected = True
            client.options["max_reconnect_attempts"] = -1
            if tls and not client._server_info.get("tls_required"):
                # (nats-py falls back to plain text when the server does not ask for
                # TLS: refuse rather than send in clear what was meant to be secret)
                connected = False
                raise ConnectionRefusedError(
                    "open_jetstream(tls=...) is given but the server does not use TLS"
                )
        finally:
            if not connected:  # (close what the attempt left open)
                with trio.CancelScope(shield=True) as shield:
                    shield.deadline = trio.current_time() + 2
                    with contextlib.suppress(Exception):
                        await loop.run_aio_coroutine(client.close())
    except (Exception, trio.TooSlowError) as error:
        cause = error if isinstance(error, ConnectionRefusedError) else _first(errors, error)
        raise StreamError(f"could not connect to NATS at {', '.join(urls)}: {cause!r}") from cause
    return client


def _first(errors: list[Exception], error: BaseException) -> BaseException:
    """The most telling error of a failed connection: refused credentials or
    certificate over the rest, else the last the client reported."""
    for seen in errors:
        if isinstance(seen, ssl.SSLError) or "authorization" in str(seen).lower():
            return seen
    return errors[-1] if errors else error
