"""A node's membership kept up: its key renewed every ``heartbeat`` seconds, the
others' keys followed (the bucket's watch), lapses declared, and what a node does when
it cannot renew its own key (see ``_membership.py`` and ``_sharding.py``)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

import trio

from ._errors import NodeLost
from ._membership import age_of

if TYPE_CHECKING:
    from ._node import ClusterNode

_log: Final = logging.getLogger("actors.cluster")


async def keep_membership(node: ClusterNode) -> None:
    """Renew this node's key every ``heartbeat`` seconds, follow the others', and
    declare lost those that lapse."""
    import nats.errors

    config = node.config
    last_renewed = trio.current_time()
    cut_off = False
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            # A watch is a consumer on the server; one lost with its server (NATS
            # restarted) is made again after a reconnection, and starts with the
            # values there are (their age by the server's clock, as when joining).
            fresh = False
            while True:
                if node._rewatch:
                    node._rewatch = False
                    try:
                        node._watcher = await node._aio(node._members_kv.watchall())
                        fresh = True
                    except Exception as error:
                        _log.warning("%s: watching the members again: %r", node.where, error)
                        node._rewatch = True
                        await trio.sleep(config.heartbeat)
                        continue
                try:
                    entry = await node._aio(node._watcher.updates(timeout=config.heartbeat))
                except nats.errors.TimeoutError:
                    continue
                except Exception as error:
                    _log.warning("%s: watching the members: %r", node.where, error)
                    node._rewatch = True
                    await trio.sleep(config.heartbeat)
                    continue
                if entry is None:
                    fresh = False  # (the end of the values there were)
                elif fresh:
                    node._on_member_entry(entry, trio.current_time(), age_of(entry.created))
                else:
                    node._on_member_entry(entry, trio.current_time())

        nursery.start_soon(watch, name=f"{node.where}: members")
        while True:
            await trio.sleep(config.heartbeat)
            if not cut_off and trio.current_time() - last_renewed <= config.down_after:
                # (Not after a longer silence, this node frozen or cut off: the others
                # have counted it as lost by now, and a renewal must not undo that.)
                try:
                    with trio.move_on_after(config.heartbeat * 2):
                        await node._put_record()
                        last_renewed = trio.current_time()
                except Exception as error:
                    _log.warning("%s: could not renew its membership: %r", node.where, error)
            now = trio.current_time()
            if now - last_renewed > config.down_after / 2:
                for region in node.regions.values():
                    region.stop_all(
                        f"this node has not renewed its membership for "
                        f"{now - last_renewed:.1f} s: the others may soon count it as "
                        "lost and activate its entities elsewhere"
                    )
            if not cut_off and now - last_renewed > config.down_after:
                # The others count this node as lost, and have taken its entities over:
                # it must not come back as the same incarnation. Its system ends (a
                # node started again joins as a new incarnation).
                cut_off = True
                node.system._unhandled_failure(
                    node.system._guardian.ref,
                    NodeLost(
                        node.name,
                        f"this node was cut off from the cluster for "
                        f"{now - last_renewed:.1f} s (down_after={config.down_after:g} s): "
                        "the other nodes count it as lost; start it again to rejoin",
                    ),
                )
            node.members.check_lapses(now)
