"""The connection manager: per-client_id and per-organization groups on the channel layer.

Sockets join their client's group (every tab of one client_id) and their organization's group.
`client_send` is the one way a stream frame leaves the server: seq + backlog first, then this
process's sockets of the client (their local inbox) and, through the channel layer, other
processes' (docs/assistant.md). Counters of this process feed /api/assistant/status.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import Counter

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from assistant import backlog

logger = logging.getLogger(__name__)

# This process's open assistant sockets, for the status figures, and per client_id.
sockets_open: Counter = Counter()
_client_sockets: Counter = Counter()
# channel name -> (inbox, loop) of this process's registered sockets: frames for them skip the layer.
_local_inboxes: dict[str, tuple[asyncio.Queue, asyncio.AbstractEventLoop]] = {}


def client_group(client_id: str) -> str:
    return f"assistant.client.{client_id}"


def org_group(organization_id: int) -> str:
    return f"assistant.org.{organization_id}"


async def client_register(*, channel_name: str, client_id: str, organization_id: int,
                          inbox: asyncio.Queue | None = None) -> None:
    """Join the client's and the organization's groups. `inbox`: the socket's local queue of
    channel-layer messages (ChatConsumer), for frames published by this process."""
    server_loop_note()
    layer = get_channel_layer()
    await layer.group_add(client_group(client_id), channel_name)
    await layer.group_add(org_group(organization_id), channel_name)
    sockets_open["sockets"] += 1
    _client_sockets[client_id] += 1
    if inbox is not None:
        _local_inboxes[channel_name] = (inbox, asyncio.get_running_loop())


async def client_unregister(*, channel_name: str, client_id: str, organization_id: int) -> bool:
    """Leave the groups; True when that was this process's last socket of the client."""
    layer = get_channel_layer()
    _local_inboxes.pop(channel_name, None)
    sockets_open["sockets"] -= 1
    _client_sockets[client_id] -= 1
    last = _client_sockets[client_id] <= 0
    if last:
        del _client_sockets[client_id]
    await layer.group_discard(client_group(client_id), channel_name)
    await layer.group_discard(org_group(organization_id), channel_name)
    return last


async def client_send(*, client_id: str, frame: dict) -> dict:
    """Number `frame`, keep it in the client's backlog and deliver it to every tab of the client.

    Returns the frame with its `seq`. A failed publish loses nothing: sockets fill gaps from the
    backlog, and a reconnect resumes from it.
    """
    layer = get_channel_layer()
    group = client_group(client_id)
    if not _local_delivery_possible(layer):
        framed = await backlog.frame_append(client_id=client_id, frame=frame)
        try:
            await layer.group_send(group, {"type": "assistant.frame", "frame": framed})
        except Exception:
            logger.warning("assistant: could not publish seq %s to %s", framed["seq"], client_id, exc_info=True)
        return framed
    # Redis: one round trip numbers the frame, keeps it and says who is in the client's group.
    # Sockets of this process get it in their local inbox (Channels still hands each socket one
    # message at a time); the channel layer carries it only when a socket of another process is
    # in the group.
    framed, members = await backlog.frame_append_members(client_id=client_id, frame=frame,
                                                         group_key=layer._group_key(group))
    message = {"type": "assistant.frame", "frame": framed}
    remote = False
    running = asyncio.get_running_loop()
    for channel in members:
        local = _local_inboxes.get(channel)
        if local is None:
            remote = True
        elif local[1] is running:
            local[0].put_nowait(dict(message))
        else:  # a job's loop on another thread: hand it to the socket's loop
            try:
                local[1].call_soon_threadsafe(local[0].put_nowait, dict(message))
            except RuntimeError:  # that loop is closed: its socket is gone
                _local_inboxes.pop(channel, None)
    if remote:
        try:
            # Sockets of this process in the group get it again; they drop it by seq.
            await layer.group_send(group, message)
        except Exception:
            logger.warning("assistant: could not publish seq %s to %s", framed["seq"], client_id, exc_info=True)
    return framed


_one_trip_layers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # layer -> bool


def _local_delivery_possible(layer) -> bool:
    known = _one_trip_layers.get(layer)
    if known is None:
        known = _one_trip_layers[layer] = _one_trip(layer)
    return known


def _one_trip(layer) -> bool:
    """Whether one Redis round trip can number a frame and read the client's group: a Redis channel
    layer on one host, the backlog's own Redis."""
    try:
        from channels_redis.core import RedisChannelLayer
    except ImportError:  # pragma: no cover - a dependency
        return False
    from django.conf import settings

    if not isinstance(layer, RedisChannelLayer) or len(layer.hosts) != 1 \
            or layer.hosts[0].get("address") != settings.REDIS_URL:
        return False  # the backlog's Redis must be the layer's, for the one-trip group read
    return True


def client_send_sync(*, client_id: str, frame: dict) -> dict:
    return run_on_server_loop(client_send(client_id=client_id, frame=frame))


# The web server's event loop, noted by the first socket: without Redis the in-memory channel layer
# belongs to that loop, so jobs on other threads hand their sends to it.
_server_loop = None


def server_loop_note() -> None:
    global _server_loop
    import asyncio

    _server_loop = asyncio.get_running_loop()


def run_on_server_loop(coroutine):
    """Run `coroutine` from sync code: on the web server's loop when the layer is in memory and
    that loop runs elsewhere; else on a loop of this thread (Redis is safe from any loop)."""
    import asyncio

    from django.conf import settings

    loop = _server_loop
    if not settings.REDIS_URL and loop is not None and loop.is_running() and not loop.is_closed():
        return asyncio.run_coroutine_threadsafe(coroutine, loop).result(30)

    async def run():
        return await coroutine

    return async_to_sync(run)()


async def org_broadcast(*, organization_id: int, frame: dict) -> None:
    """A notice to every connected socket of an organization (not kept for resume)."""
    await get_channel_layer().group_send(org_group(organization_id), {"type": "assistant.notice", "frame": frame})
