"""Live events of a session, across processes: publish a turn's events, subscribe, replay after a reconnect.

Every channel that shows a conversation in more than one place (widget tabs, assistant tabs, a
Mattermost post being edited) follows the same rules:

* a turn's events are published to the session's channel-layer group as version-1 envelopes
  (`runtime.events.live_envelope`), in order, off the answering path;
* a subscriber joins first, then reads finished turns from the database, then goes live,
  de-duplicating by the turn's `seq` — so nothing finished in between is lost or repeated;
* one channel-layer receiver per process and event loop fans the groups out to local queues
  (`SessionHub`), so a thousand open streams are one subscription and one receiving task.

See docs/runtime.md ("Live events") for the envelope and the stream ids.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from django.utils import timezone

from mejai.concurrency import db_release
from runtime.events import (
    LIVE_MESSAGE_TYPE,
    TurnEvent,
    event_error,
    event_id_for,
    live_envelope,
    live_envelope_event,
)
from runtime.models import Turn

logger = logging.getLogger(__name__)

__all__ = [
    "SessionHub", "event_id_for", "events_publish", "last_event_seq", "replay_events", "session_events_stream",
    "session_group", "session_hub",
]


def session_group(session_id) -> str:
    """The channel-layer group of a session's live events."""
    return f"runtime.session.{uuid.UUID(str(session_id)).hex}"


def last_event_seq(value: str | None) -> tuple[int, bool] | None:
    """(seq, complete) of a Last-Event-ID; None when absent or not one of ours."""
    value = (value or "").strip()
    if not value or len(value) > 40:
        return None
    head, dot, _ = value.partition(".")
    if not head.isdigit():
        return None
    return int(head), not dot


def replay_events(turn: Turn) -> list[TurnEvent]:
    """The events of a stored, finished turn (`start` marked replayed, then `message` or `error`)."""
    from runtime.services import turn_replay_events

    return turn_replay_events(turn)


async def events_publish(
    *, session_id, seq: int, events: AsyncIterator[TurnEvent], sender: str = "", user_text: str = "",
    cancelled_event=None,
) -> AsyncIterator[TurnEvent]:
    """Pass the turn's events through, publishing each to the session's group for other listeners.

    Other listeners also get the user's own text on `start` (so they can show it). A turn that was
    answered elsewhere comes through as a replay (`start` with `replayed: true`): it is passed on
    but not published again. If the answer is cancelled mid-way (the caller stopped reading), a last
    `error` is published so other listeners stop waiting: `cancelled_event(turn_id)` when given
    (a stop), else `client_disconnected`.
    """
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    group = session_group(session_id)

    async def publish(event: TurnEvent, number: int) -> None:
        if layer is None:
            return
        try:
            await layer.group_send(group, live_envelope(event, group=group, session_id=session_id, seq=seq, n=number,
                                                        sender=sender, user_text=user_text))
        except Exception:  # a broken channel layer must not break the answer itself
            logger.warning("live: could not publish to %s", group, exc_info=True)

    # A publisher task sends the events in order, off the answering path: the pipeline is lazy, so
    # awaiting each publish here would delay the model call and every delta by a round trip.
    queue: asyncio.Queue = asyncio.Queue()
    heard = _ListenerCheck(layer, group)

    async def publisher() -> None:
        while (item := await queue.get()) is not None:
            if await heard.worth_publishing(item[0]):
                await publish(*item)

    task = asyncio.ensure_future(publisher())
    finished = replayed = False
    n = 0
    turn_id = None
    try:
        async for event in events:
            if event.type == "start" and event.data.get("replayed"):
                replayed = True
            n += 1
            turn_id = event.data.get("turn_id") or turn_id
            if not replayed:
                queue.put_nowait((event, n))
            if event.type in ("message", "error"):
                finished = True
                queue.put_nowait(None)
                await task  # published before it is handed on: a JSON caller stops reading here
            yield event
    except (asyncio.CancelledError, GeneratorExit):
        if not finished and n and not replayed:
            if cancelled_event is not None:
                gone = cancelled_event(turn_id)
            else:
                gone = event_error(code="client_disconnected", session_id=session_id, turn_id=turn_id,
                                   message="답변이 중단되었습니다. (The answer was interrupted.)", retryable=True)
            queue.put_nowait((gone, n + 1))
        raise
    finally:
        if not finished:
            queue.put_nowait(None)  # the task drains what is queued, then ends on its own


LISTEN_RECHECK_SECONDS = 0.25


async def group_has_listeners(layer, group: str) -> bool:
    """Whether any channel is in `group` on the channel layer, from any process (one Redis round
    trip; members past the layer's expiry still count — when unsure, the answer is yes)."""
    try:
        from channels_redis.core import RedisChannelLayer
    except ImportError:  # pragma: no cover - channels_redis is a dependency
        RedisChannelLayer = None
    try:
        if RedisChannelLayer is not None and isinstance(layer, RedisChannelLayer):
            connection = layer.connection(layer.consistent_hash(group))
            return bool(await connection.zcard(layer._group_key(group)))
        groups = getattr(layer, "groups", None)  # InMemoryChannelLayer: this process is everyone
        if isinstance(groups, dict):
            return bool(groups.get(group))
    except Exception:
        logger.debug("live: could not count the listeners of %s", group, exc_info=True)
    return True


class _ListenerCheck:
    """Publish a session's events only when someone listens.

    Most answers have no other listener (an API caller, a Kakao user, the assistant, which has its
    own stream), and each publish to an empty group still cost two Redis round trips — per delta.
    `start`, `message`, `error` and every other event ask the layer afresh (one round trip, then the
    publish only if a listener is there: the same race as group_send's own look-up, so a listener
    that joined before it gets the event, and one that joins later reads the finished turn from the
    database). A `delta` to a group found empty less than LISTEN_RECHECK_SECONDS ago is skipped, so
    a listener joining mid-answer sees its deltas from at most that much later than it would have —
    it never had the earlier ones anyway, and the terminal event carries the whole text.
    """

    def __init__(self, layer, group: str):
        self.layer, self.group = layer, group
        self.listened = True
        self.checked_at = float("-inf")

    async def worth_publishing(self, event: TurnEvent) -> bool:
        if self.layer is None:
            return False
        loop = asyncio.get_running_loop()
        if event.type == "delta":
            if self.listened:
                return True  # group_send finds the listeners itself
            if loop.time() - self.checked_at < LISTEN_RECHECK_SECONDS:
                return False
        self.listened = await group_has_listeners(self.layer, self.group)
        self.checked_at = loop.time()
        return self.listened


def _turns_after(*, session_id, seq: int, inclusive: bool) -> list[Turn]:
    # Interrupted turns too (stopped, or their answer died): a tab that missed the live `error` needs their end.
    ended = (Turn.Status.COMPLETED, Turn.Status.FAILED, Turn.Status.INTERRUPTED)
    turns = Turn.objects.filter(session_id=session_id, status__in=ended)
    turns = turns.filter(seq__gte=seq) if inclusive else turns.filter(seq__gt=seq)
    found = list(turns.select_related("session").order_by("seq")[:100])
    db_release()
    return found


class SessionHub:
    """One channel-layer receiver per process and event loop, fanning session events out to local queues.

    Each local listener registers a queue for its session's group; the hub joins each group once
    (with its single channel) and routes what arrives. A group left without local listeners is
    discarded after a grace period, so a quick reconnect does not race a discard against the new join.
    """

    DISCARD_AFTER = 30.0
    QUEUE_LIMIT = 1000

    def __init__(self, layer):
        self.layer = layer
        self.channel: str | None = None
        self.groups: dict[str, set] = {}
        self.joined: dict[str, asyncio.Event] = {}  # group -> set once group_add is done
        self.task: asyncio.Task | None = None
        self.lock: asyncio.Lock | None = None

    async def subscribe(self, group: str) -> asyncio.Queue:
        if self.lock is None:
            self.lock = asyncio.Lock()
        async with self.lock:
            if self.channel is None:
                self.channel = await self.layer.new_channel()
            if self.task is None or self.task.done():
                self.task = asyncio.ensure_future(self._receive_loop())
        queue: asyncio.Queue = asyncio.Queue()
        listeners = self.groups.setdefault(group, set())
        listeners.add(queue)
        joined = self.joined.get(group)
        if joined is None:
            joined = self.joined[group] = asyncio.Event()
            try:
                await self.layer.group_add(group, self.channel)
            except BaseException:
                self.joined.pop(group, None)
                listeners.discard(queue)
                raise
            joined.set()
        else:
            await joined.wait()
        return queue

    def unsubscribe(self, group: str, queue) -> None:
        listeners = self.groups.get(group)
        if listeners is None:
            return
        listeners.discard(queue)
        if listeners:
            return
        if not any(self.groups.values()):
            self._stop()
            return
        asyncio.get_running_loop().call_later(
            self.DISCARD_AFTER, lambda: asyncio.ensure_future(self._discard_if_idle(group))
        )

    def _stop(self) -> None:
        """No local listener is left: stop receiving and leave every group (a new channel next time,
        so nothing queued for the old one is ever delivered late)."""
        if self.task is not None and not self.task.done():
            self.task.cancel()
        channel, groups = self.channel, list(self.joined)
        self.task, self.channel = None, None
        self.groups.clear()
        self.joined.clear()
        for group in groups:
            asyncio.ensure_future(self._discard(group, channel))

    async def _discard(self, group: str, channel: str) -> None:
        try:
            await self.layer.group_discard(group, channel)
        except Exception:
            logger.debug("live hub: group_discard failed", exc_info=True)

    async def _discard_if_idle(self, group: str) -> None:
        if self.groups.get(group) or group not in self.joined or self.channel is None:
            return
        self.groups.pop(group, None)
        self.joined.pop(group, None)
        await self._discard(group, self.channel)

    async def _receive_loop(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The layer is down: keep the listeners, try again shortly.
                logger.warning("live hub: channel layer receive failed", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            if message.get("type") != LIVE_MESSAGE_TYPE:
                continue
            for queue in list(self.groups.get(message.get("group") or "", ())):
                if queue.qsize() >= self.QUEUE_LIMIT:  # a reader that stopped reading loses the oldest
                    queue.get_nowait()
                queue.put_nowait(message)


_hubs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # event loop -> SessionHub


def session_hub() -> SessionHub:
    """The hub of the running event loop (a process normally has one)."""
    from channels.layers import get_channel_layer

    loop = asyncio.get_running_loop()
    hub = _hubs.get(loop)
    if hub is None:
        hub = _hubs[loop] = SessionHub(get_channel_layer())
    return hub


async def session_events_stream(
    *, session_id, last_event_id: str | None = None, until=None,
    expired_message: str = "연결이 만료되었습니다. 다시 연결해 주세요. (The connection has expired. Please reconnect.)",
) -> AsyncIterator[tuple[str | None, TurnEvent | None]]:
    """(id, event) of a session from any process: replay after Last-Event-ID, then live events.

    The first item is (None, None), once the stream is subscribed: a client that has seen the
    stream's first bytes misses nothing sent after that. Replayed finished turns carry their
    terminal event (`message` or `error`) with id `<seq>`. At `until` (a token's expiry) the
    stream ends with a `token_expired` error, so a leaked token cannot hold a stream open for ever.
    """
    hub = session_hub()
    group = session_group(session_id)
    # Join first, then read the database, so nothing finished in between is missed.
    queue = await hub.subscribe(group)
    replayed: set[int] = set()
    try:
        yield None, None
        resume = last_event_seq(last_event_id)
        if resume is not None:
            seq, complete = resume
            for turn in await sync_to_async(_turns_after)(session_id=session_id, seq=seq, inclusive=not complete):
                replayed.add(turn.seq)
                yield str(turn.seq), replay_events(turn)[-1]
        while True:
            remaining = (until - timezone.now()).total_seconds() if until is not None else None
            try:
                if remaining is None:
                    message = await queue.get()
                else:
                    message = await asyncio.wait_for(queue.get(), timeout=max(0.0, remaining))
            except TimeoutError:
                yield "", event_error(code="token_expired", session_id=session_id, retryable=True,
                                      message=expired_message)
                return
            seq = int(message.get("seq") or 0)
            if seq in replayed:
                continue
            event = live_envelope_event(message)
            if event is not None:
                yield str(message.get("id") or ""), event
    finally:
        hub.unsubscribe(group, queue)
