"""The Mattermost worker: one loop per bot that listens (WebSocket with resume, polling as fallback),
passes every post through the ledger once, and answers through the runtime, streaming into Mattermost.

    BotWorker.run        leadership (one active worker per bot), auth, channels, connection loop, outbox
    _ws_session          hello / resume, seq gaps, app pings, frames
    catch_up             REST per channel from a stored cursor (after every reconnect, on gaps, when polling)
    accept               ledger → filter → trigger → answer task
    _answer              user mapping, conversation, turn, streamed reply (mchat.replies)

See docs/mchat.md for the decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import logging
import os
import random
import socket
import time
import uuid
import zlib
from pathlib import Path

import websockets
from django.conf import settings
from django.db import connection
from django.utils import timezone
from websockets.asyncio.client import connect as ws_connect

from mchat import conf, parsing, services
from mchat.answering import turn_store
from mchat.clients.mattermost import MattermostClient, MattermostError, Unauthorized
from mchat.models import ChannelMapping, InboundPost, MattermostBot, WorkerStatus
from mejai.concurrency import executor
from mejai.errors import ApiError
from runtime.commands import command_match
from runtime.models import Channel

logger = logging.getLogger("mchat.worker")

STOP_WORDS = {"stop", "멈춰", "그만", "중지", "/stop", "!stop"}
# Commands whose answer lists a person's memories: never shown in a channel, sent by DM instead.
PRIVATE_COMMANDS = {"memory", "search"}
SENT_BY_DM = "🔒 결과는 DM으로 보내 드렸어요. (I sent the answer to you by direct message.)"


def _release() -> None:
    """Give a pooled PostgreSQL connection back between calls (the worker holds none while it waits)."""
    if connection.settings_dict.get("OPTIONS", {}).get("pool") and not connection.in_atomic_block:
        connection.close()


async def db(fn, /, **kwargs):
    """Run a sync database function off the event loop, on the worker's own bounded pool (the default
    executor has cores + 4 threads; many answers at once need more), releasing the connection after."""

    def run():
        try:
            return fn(**kwargs)
        finally:
            _release()

    pool = executor("mchat-db", conf.db_threads())
    return await asyncio.get_running_loop().run_in_executor(pool, functools.partial(run))


def _db_ping() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


class Backoff:
    """Exponential backoff with full jitter: a random delay in [0, min(max, min × 2^n)]."""

    def __init__(self, minimum: float, maximum: float):
        self.minimum, self.maximum, self.attempt = minimum, maximum, 0

    def next(self) -> float:
        cap = min(self.maximum, self.minimum * (2 ** self.attempt))
        self.attempt += 1
        return random.uniform(0, cap)

    def reset(self) -> None:
        self.attempt = 0


class BotLock:
    """One active worker per bot: a PostgreSQL session advisory lock on a connection of its own (released by
    the server when the process dies); on SQLite a file lock next to the database (one host)."""

    NAMESPACE = zlib.crc32(b"mejai.mchat") & 0x7FFFFFFF

    def __init__(self, bot_id: int):
        self.bot_id = bot_id
        self._conn = None
        self._file = None

    def try_acquire(self) -> bool:
        if settings.IS_POSTGRES:
            import psycopg

            if self._conn is None or self._conn.closed:
                params = settings.DATABASES["default"]
                self._conn = psycopg.connect(
                    dbname=connection.settings_dict["NAME"], user=params.get("USER") or None,
                    password=params.get("PASSWORD") or None, host=params.get("HOST") or None,
                    port=params.get("PORT") or None, autocommit=True, application_name=f"mchat-worker-{self.bot_id}",
                )
            row = self._conn.execute("SELECT pg_try_advisory_lock(%s, %s)", (self.NAMESPACE, self.bot_id)).fetchone()
            return bool(row and row[0])
        path = Path(str(connection.settings_dict["NAME"]) + f".mchat-bot-{self.bot_id}.lock")
        if self._file is None:
            self._file = open(path, "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def alive(self) -> bool:
        if settings.IS_POSTGRES:
            try:
                self._conn.execute("SELECT 1")
                return True
            except Exception:
                return False
        return self._file is not None

    def release(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None
        if self._file is not None:
            with contextlib.suppress(Exception):
                fcntl.flock(self._file, fcntl.LOCK_UN)
                self._file.close()
            self._file = None


class LeadershipLost(Exception):
    pass


class PongTimeout(Exception):
    pass


def worker_label() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"[:100]


class BotWorker:
    def __init__(self, bot: MattermostBot, *, label: str | None = None):
        self.bot = bot
        self.bot_id = bot.pk
        self.label = label or worker_label()
        self.client: MattermostClient | None = None
        self.bot_user_id = ""
        self.mention = ""
        self.connection_id = ""
        self.last_seq: int | None = None
        self.state = WorkerStatus.State.STARTING
        self.channels: dict[str, ChannelMapping] = {}
        self.ws = None
        self._client_seq = 0
        self._pongs: dict[int, asyncio.Future] = {}
        self._catchup_lock = asyncio.Lock()
        self._catchup_task: asyncio.Task | None = None
        self._tasks: set[asyncio.Task] = set()
        self._users: dict[str, tuple[float, dict]] = {}
        self._channels_refreshed = 0.0
        self.answers: dict[str, tuple[str, object]] = {}  # conversation key -> (requester, ReplyStream)
        self.last_event_at = None
        self.outbox_wakeup = asyncio.Event()
        # Replies of a channel appear in the order of the posts they answer: each reply waits (briefly) for the
        # previous reply of its channel to show its first post. channel id -> the latest reply's "shown" future.
        self._channel_turns: dict[str, asyncio.Future] = {}
        # Posts from the WebSocket are handled in order by one consumer, so the reader keeps reading
        # (pongs included) while the database is slow.
        self._inbox: asyncio.Queue = asyncio.Queue()

    # --- lifecycle ---------------------------------------------------------------------------
    async def run(self) -> None:
        lock = BotLock(self.bot_id)
        try:
            announced = False
            while not await asyncio.to_thread(self._try_lock, lock):
                if not announced:
                    # The active worker owns the status row: a standby only says so in its log.
                    logger.info("bot %s: another worker is active; standing by", self.bot_id)
                    announced = True
                await asyncio.sleep(conf.standby_retry_seconds())
            logger.info("bot %s: this worker (%s) is active", self.bot_id, self.label)
            await db(services.status_set, bot_id=self.bot_id, worker_label=self.label, started_at=timezone.now(),
                     state=WorkerStatus.State.STARTING, heartbeat_at=timezone.now())
            heartbeat = asyncio.create_task(self._heartbeat(lock))
            serve = asyncio.create_task(self._serve())
            try:
                done, _ = await asyncio.wait({heartbeat, serve}, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    task.result()
            finally:
                for task in (heartbeat, serve, *self._tasks):
                    task.cancel()
                await asyncio.gather(heartbeat, serve, *self._tasks, return_exceptions=True)
        finally:
            await asyncio.to_thread(lock.release)
            with contextlib.suppress(Exception):
                await db(services.status_set, bot_id=self.bot_id, state=WorkerStatus.State.STOPPED)
            if self.client is not None:
                await self.client.aclose()

    @staticmethod
    def _try_lock(lock: BotLock) -> bool:
        try:
            return lock.try_acquire()
        finally:
            _release()

    async def _heartbeat(self, lock: BotLock) -> None:
        while True:
            await asyncio.sleep(conf.heartbeat_seconds())
            if not await asyncio.to_thread(lock.alive):
                raise LeadershipLost(f"bot {self.bot_id}: lost the worker lock")
            await db(services.status_set, bot_id=self.bot_id, heartbeat_at=timezone.now(), state=self.state,
                     last_seq=self.last_seq, connection_id=self.connection_id, last_event_at=self.last_event_at)

    async def _set_state(self, state: str, **fields) -> None:
        if state != self.state or fields:
            self.state = state
            await db(services.status_set, bot_id=self.bot_id, state=state, **fields)

    def _spawn(self, coro) -> asyncio.Task:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("bot %s: task failed", self.bot_id, exc_info=task.exception())

    def _client_make(self, bot: MattermostBot) -> MattermostClient:
        return MattermostClient(base_url=bot.server_url, token=bot.token, verify_tls=bot.verify_tls,
                                ca_bundle_path=bot.ca_bundle_path, rate_per_second=conf.rate_per_second(),
                                retries=conf.http_retries(), backoff_seconds=conf.http_backoff_seconds(),
                                timeout_seconds=conf.http_timeout_seconds())

    async def _serve(self) -> None:
        backoff = Backoff(conf.backoff_min_seconds(), conf.backoff_max_seconds())
        while True:
            bot = await db(services.bot_reload, bot_id=self.bot_id)
            if bot is None or not bot.is_active:
                logger.info("bot %s: removed or inactive; stopping", self.bot_id)
                return
            self.bot = bot
            if self.client is not None:
                await self.client.aclose()
            self.client = self._client_make(bot)
            try:
                me = await self.client.me()
            except Unauthorized as exc:
                await self._unhealthy(str(exc))
                continue
            except MattermostError as exc:
                logger.warning("bot %s: Mattermost unreachable (%s)", self.bot_id, exc)
                await self._set_state(WorkerStatus.State.DOWN)
                await asyncio.sleep(backoff.next())
                continue
            backoff.reset()
            # Open the database connections the answers will need now, not on the first mentions.
            await asyncio.gather(*(db(_db_ping) for _ in range(conf.db_threads())))
            self.bot_user_id = me["id"]
            self.mention = (bot.mention_name or me.get("username") or "").lstrip("@")
            await db(services.status_set, bot_id=self.bot_id, auth_ok=True, auth_error="", bot_user_id=me["id"],
                     bot_username=str(me.get("username", ""))[:64])
            try:
                await self.channels_refresh(force=True)
                await self.recover_unfinished()
                outbox = self._spawn(self._outbox_loop())
                inbox = self._spawn(self._inbox_loop())
                try:
                    await self._connect_loop()
                finally:
                    outbox.cancel()
                    inbox.cancel()
            except Unauthorized as exc:
                await self._unhealthy(str(exc))

    async def _unhealthy(self, detail: str) -> None:
        """401: report, then wait for the token to change — no reconnect loop against a revoked token."""
        logger.error("bot %s: the token was rejected (401); waiting for a new token", self.bot_id)
        await self._set_state(WorkerStatus.State.UNHEALTHY, auth_ok=False, auth_error=detail[:300])
        token = self.bot.token
        while True:
            await asyncio.sleep(conf.unhealthy_recheck_seconds())
            bot = await db(services.bot_reload, bot_id=self.bot_id)
            if bot is None or not bot.is_active or bot.token != token:
                return

    # --- connection --------------------------------------------------------------------------
    async def _connect_loop(self) -> None:
        backoff = Backoff(conf.backoff_min_seconds(), conf.backoff_max_seconds())
        mode = self.bot.mode
        while True:
            if mode == MattermostBot.Mode.POLLING:
                await self._poll_until(None)
                continue
            try:
                ws, resumed = await self._ws_open()
            except Unauthorized:
                raise
            except Exception as exc:
                delay = backoff.next()
                logger.warning("bot %s: WebSocket failed (%s); retry in %.1f s", self.bot_id,
                               type(exc).__name__, delay)
                if mode == MattermostBot.Mode.AUTO:
                    await self._poll_until(time.monotonic() + delay)
                else:
                    await self._set_state(WorkerStatus.State.DOWN)
                    await asyncio.sleep(delay)
                continue
            started = time.monotonic()
            try:
                await self._ws_session(ws, resumed=resumed)
            except (websockets.ConnectionClosed, PongTimeout, OSError, TimeoutError) as exc:
                logger.warning("bot %s: WebSocket lost (%s)", self.bot_id, type(exc).__name__)
            finally:
                self.ws = None
                for future in self._pongs.values():
                    future.cancel()
                self._pongs.clear()
                ws.transport.abort() if ws.transport is not None else None
            if time.monotonic() - started >= conf.healthy_reset_seconds():
                backoff.reset()
            await db(services.status_reconnected, bot_id=self.bot_id)
            delay = backoff.next()
            if mode == MattermostBot.Mode.AUTO and delay > self.bot.polling_interval_seconds:
                await self._poll_until(time.monotonic() + delay)
            else:
                await asyncio.sleep(delay)

    async def _ws_open(self):
        resume = bool(self.connection_id) and self.last_seq is not None
        url = self.client.websocket_url(connection_id=self.connection_id if resume else "",
                                        sequence_number=(self.last_seq + 1) if resume else None)
        try:
            ws = await ws_connect(url, additional_headers=self.client.auth_header, ssl=self.client.ssl_context,
                                  open_timeout=conf.ws_open_timeout_seconds(), ping_interval=None,
                                  close_timeout=1, max_size=16 * 2**20, proxy=None)
        except websockets.InvalidStatus as exc:
            if exc.response.status_code == 401:
                raise Unauthorized(401, "websocket", "the upgrade was refused") from None
            raise
        return ws, resume

    async def _ws_session(self, ws, *, resumed: bool) -> None:
        self.ws = ws
        self._client_seq = 0
        wait = conf.resume_hello_wait_seconds() if resumed else conf.ws_open_timeout_seconds()
        try:
            first = await asyncio.wait_for(ws.recv(), wait)
        except TimeoutError:
            if not resumed:
                raise
            first = None  # a successful resume sends no hello
        if first is not None:
            await self._on_frame(first)
        if resumed and first is not None and self._is_hello(first):
            resumed = False
        await self._set_state(WorkerStatus.State.WEBSOCKET, connection_id=self.connection_id)
        logger.info("bot %s: WebSocket %s (connection %s, seq %s)", self.bot_id, "resumed" if resumed else "connected",
                    self.connection_id, self.last_seq)
        # Always catch up over REST after a (re)connect: a resume replays only what the server kept.
        self.catch_up_soon("reconnect")
        reader = asyncio.create_task(self._ws_read(ws))
        pinger = asyncio.create_task(self._ws_ping(ws))
        try:
            done, _ = await asyncio.wait({reader, pinger}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            reader.cancel()
            pinger.cancel()
            await asyncio.gather(reader, pinger, return_exceptions=True)

    @staticmethod
    def _is_hello(raw) -> bool:
        try:
            return json.loads(raw).get("event") == "hello"
        except (ValueError, AttributeError):
            return False

    async def _ws_read(self, ws) -> None:
        async for raw in ws:
            await self._on_frame(raw)

    async def _ws_ping(self, ws) -> None:
        """App-level ping every 30 s; no reply within 10 s means the path is dead (a silent cut)."""
        while True:
            await asyncio.sleep(conf.app_ping_seconds())
            seq = self._next_seq()
            future = asyncio.get_running_loop().create_future()
            self._pongs[seq] = future
            await ws.send(json.dumps({"seq": seq, "action": "ping"}))
            try:
                await asyncio.wait_for(future, conf.app_pong_timeout_seconds())
            except TimeoutError:
                raise PongTimeout() from None
            finally:
                self._pongs.pop(seq, None)

    def _next_seq(self) -> int:
        self._client_seq += 1
        return self._client_seq

    async def _on_frame(self, raw) -> None:
        try:
            frame = json.loads(raw)
        except (ValueError, TypeError):
            logger.warning("bot %s: ignored a frame that is not JSON (%d bytes)", self.bot_id, len(raw or ""))
            return
        if not isinstance(frame, dict):
            logger.warning("bot %s: ignored a frame that is not an object", self.bot_id)
            return
        if "seq_reply" in frame:
            future = self._pongs.get(frame.get("seq_reply"))
            if future is not None and not future.done():
                future.set_result(frame)
            return
        event, seq, data = frame.get("event"), frame.get("seq"), frame.get("data")
        if not isinstance(data, dict):
            data = {}
        self.last_event_at = timezone.now()
        if event == "hello":
            new_id = str(data.get("connection_id") or "")
            if self.connection_id and new_id != self.connection_id:
                logger.info("bot %s: new connection (events may have been lost); catching up", self.bot_id)
                self.catch_up_soon("new_hello")
            self.connection_id = new_id
            self.last_seq = seq if isinstance(seq, int) else 0
            return
        if isinstance(seq, int):
            if self.last_seq is not None and seq > self.last_seq + 1:
                logger.warning("bot %s: seq gap %s → %s; catching up over REST", self.bot_id, self.last_seq, seq)
                self.catch_up_soon("seq_gap")
            if self.last_seq is None or seq > self.last_seq:
                self.last_seq = seq
        if event == "posted":
            post = parsing.post_decode(data.get("post"))
            if post is None:
                logger.warning("bot %s: ignored a posted event whose post is not valid JSON", self.bot_id)
                return
            self._inbox.put_nowait((post, data.get("channel_type")))
        elif event in ("post_edited", "post_deleted", "typing", "status_change", "channel_viewed", "reaction_added",
                       "reaction_removed", "user_added", "user_removed", "channel_created", "direct_added",
                       "group_added", "new_user", "preferences_changed", "thread_updated"):
            if event in ("user_added", "direct_added", "group_added", "channel_created"):
                self._channels_refreshed = 0.0  # look for the new channel on the next catch-up
        else:
            logger.info("bot %s: ignored unknown event %r", self.bot_id, str(event)[:40])

    # --- channels, catch-up and polling ------------------------------------------------------------
    async def channels_refresh(self, *, force: bool = False) -> None:
        if not force and time.monotonic() - self._channels_refreshed < conf.channels_refresh_seconds():
            return
        seen: dict[str, dict] = {}
        for team in await self.client.teams():
            if self.bot.allowed_team_ids and team.get("id") not in self.bot.allowed_team_ids:
                continue
            for channel in await self.client.team_channels(team["id"]):
                if isinstance(channel, dict) and channel.get("id"):
                    seen[channel["id"]] = channel
        for channel in seen.values():
            self.channels[channel["id"]] = await db(services.channel_mapping_sync, bot=self.bot, channel=channel)
        for mapping in await db(services.channels_of_bot, bot_id=self.bot_id):
            self.channels.setdefault(mapping.mchat_channel_id, mapping)
        self._channels_refreshed = time.monotonic()

    async def channel_learn(self, channel_id: str) -> ChannelMapping | None:
        mapping = self.channels.get(channel_id)
        if mapping is not None:
            return mapping
        try:
            channel = await self.client.channel(channel_id)
        except MattermostError as exc:
            logger.warning("bot %s: cannot read channel %s (%s)", self.bot_id, channel_id, exc.status)
            return None
        mapping = await db(services.channel_mapping_sync, bot=self.bot, channel=channel)
        self.channels[channel_id] = mapping
        return mapping

    def catch_up_soon(self, reason: str) -> None:
        if self._catchup_task is None or self._catchup_task.done():
            self._catchup_task = self._spawn(self._catch_up_logged(reason))

    async def _catch_up_logged(self, reason: str) -> None:
        try:
            await self.catch_up(via="catchup")
        except Unauthorized:
            raise
        except MattermostError as exc:
            logger.warning("bot %s: catch-up (%s) failed: %s", self.bot_id, reason, exc)

    async def catch_up(self, *, via: str) -> int:
        """Read every channel's posts since its cursor (minus an overlap) and pass them to accept()."""
        async with self._catchup_lock:
            await self.channels_refresh()
            overlap = int(conf.poll_overlap_seconds() * 1000)
            count = 0
            for mapping in list(self.channels.values()):
                since = max(0, mapping.cursor_ms - overlap)
                posts = await self.client.channel_posts_since(mapping.mchat_channel_id, since)
                newest = mapping.cursor_ms
                for post in posts:
                    newest = max(newest, int(post.get("update_at") or 0), int(post.get("create_at") or 0))
                    if int(post.get("create_at") or 0) < since:
                        continue  # an old post edited now: not a new message
                    decoded = parsing.post_decode(post)
                    if decoded is not None:
                        count += await self.accept(decoded, via=via, channel_type=mapping.channel_type)
                if newest > mapping.cursor_ms:
                    mapping.cursor_ms = newest
                    await db(services.channel_cursor_advance, mapping_id=mapping.pk, cursor_ms=newest)
            return count

    async def _poll_until(self, deadline: float | None) -> None:
        """Polling: every interval, read each channel since its cursor; back to the caller at the deadline."""
        while deadline is None or time.monotonic() < deadline:
            try:
                await self.catch_up(via="polling")
                await self._set_state(WorkerStatus.State.POLLING)
                self.last_event_at = timezone.now()
            except Unauthorized:
                raise
            except MattermostError as exc:
                logger.warning("bot %s: polling failed (%s)", self.bot_id, exc)
                await self._set_state(WorkerStatus.State.DOWN)
            interval = self.bot.polling_interval_seconds
            if deadline is not None:
                interval = min(interval, max(0.0, deadline - time.monotonic()))
            await asyncio.sleep(interval)

    # --- inbound posts -------------------------------------------------------------------------------
    async def accept(self, post: dict, *, via: str, channel_type: str | None = None) -> int:
        """Ledger → filter → trigger → answer. Returns 1 when the post was new to the ledger."""
        inbound = await db(services.inbound_claim, bot_id=self.bot_id, post=post, via=via)
        if inbound is None:
            return 0
        reason = parsing.ignore_reason(post, bot_user_id=self.bot_user_id)
        mapping = None
        if reason is None:
            mapping = await self.channel_learn(post["channel_id"])
            if mapping is None:
                reason = "unknown_channel"
        if reason is None:
            reason = self._trigger_refusal(post, mapping)
        if reason is not None:
            await db(services.inbound_set, inbound_id=inbound.pk, status=InboundPost.Status.IGNORED, reason=reason)
            return 1
        if via == "websocket":
            stamp = max(int(post.get("update_at") or 0), int(post.get("create_at") or 0))
            if stamp > mapping.cursor_ms:
                mapping.cursor_ms = stamp
                await db(services.channel_cursor_advance, mapping_id=mapping.pk, cursor_ms=stamp)
        loop = asyncio.get_running_loop()
        previous = self._channel_turns.get(mapping.mchat_channel_id)
        shown = loop.create_future()
        self._channel_turns[mapping.mchat_channel_id] = shown
        self._spawn(self._answer_guarded(inbound, post, mapping, previous=previous, shown=shown))
        return 1

    def _trigger_refusal(self, post: dict, mapping: ChannelMapping) -> str | None:
        """None when the bot answers: DMs always; elsewhere a real mention, or the channel's auto-reply."""
        if mapping.channel_type == ChannelMapping.Type.DIRECT:
            return None
        if self.bot.allowed_channel_ids and mapping.mchat_channel_id not in self.bot.allowed_channel_ids:
            return "channel_not_allowed"
        if self.bot.allowed_team_ids and mapping.team_id and mapping.team_id not in self.bot.allowed_team_ids:
            return "team_not_allowed"
        if parsing.mentions(post["message"], self.mention):
            return None
        if mapping.auto_reply:
            return None
        return "no_mention"

    async def _answer_guarded(self, inbound: InboundPost, post: dict, mapping: ChannelMapping, *,
                              previous: asyncio.Future | None = None, shown: asyncio.Future | None = None) -> None:
        try:
            await self._answer(inbound, post, mapping, previous=previous, shown=shown)
        except asyncio.CancelledError:
            raise
        except Unauthorized:
            raise
        except Exception as exc:
            logger.exception("bot %s: answering post %s failed", self.bot_id, post["id"])
            await db(services.inbound_set, inbound_id=inbound.pk, status=InboundPost.Status.FAILED,
                     reason=type(exc).__name__[:40])
        finally:
            if shown is not None and not shown.done():
                shown.set_result(None)
            channel_id = mapping.mchat_channel_id
            if shown is not None and self._channel_turns.get(channel_id) is shown:
                del self._channel_turns[channel_id]

    async def user_get(self, user_id: str) -> dict:
        cached = self._users.get(user_id)
        if cached and time.monotonic() - cached[0] < 600:
            return cached[1]
        user = await self.client.user(user_id)
        self._users[user_id] = (time.monotonic(), user)
        return user

    async def _answer(self, inbound: InboundPost, post: dict, mapping: ChannelMapping, *,
                      previous: asyncio.Future | None = None, shown: asyncio.Future | None = None) -> None:
        from mchat.replies import ReplyStream

        await db(services.inbound_set, inbound_id=inbound.pk, status=InboundPost.Status.PROCESSING)
        user = await self.user_get(post["user_id"])
        user_mapping = await db(services.user_mapping_resolve, bot=self.bot, user=user)
        conversation = await db(services.conversation_resolve, bot=self.bot, channel=mapping, post=post,
                                end_user=user_mapping.end_user)
        text = post["message"]
        if mapping.channel_type != ChannelMapping.Type.DIRECT:
            text = parsing.mention_remove(text, self.mention)
        text = text.strip()
        key = conversation.reply_root_id or mapping.mchat_channel_id
        if text.lower() in STOP_WORDS:
            await self._stop(key, post, inbound)
            return
        if not text:
            await db(services.inbound_set, inbound_id=inbound.pk, status=InboundPost.Status.IGNORED,
                     reason="mention_only")
            return
        if conversation.new_thread and post.get("root_id"):
            text = await self._with_thread_context(post, text)
        private_to = await self._private_destination(text, post, mapping)
        if private_to is not None:
            reply = ReplyStream(self, conversation=conversation, inbound=inbound, post=post, channel_id=private_to,
                                root_id="")
        else:
            reply = ReplyStream(self, conversation=conversation, inbound=inbound, post=post, after=previous,
                                shown=shown)
        try:
            turn, _created = await db(turn_store, bot=self.bot, session=conversation.session,
                                      end_user=user_mapping.end_user, text=text, post_id=post["id"])
        except ApiError as exc:
            await reply.deliver_note(f"{exc.message}")
            await db(services.inbound_set, inbound_id=inbound.pk, status=InboundPost.Status.FAILED, reason=exc.code)
            return
        await db(services.inbound_set, inbound_id=inbound.pk, status=InboundPost.Status.PROCESSING, turn=turn)
        self.answers[key] = (post["user_id"], reply)
        try:
            await reply.run(turn)
        finally:
            if self.answers.get(key, (None, None))[1] is reply:
                self.answers.pop(key, None)
        if private_to is not None:
            from mchat.replies import note_send

            await note_send(self, inbound_id=inbound.pk, channel_id=mapping.mchat_channel_id,
                            root_id=conversation.reply_root_id, text=SENT_BY_DM)
        if conversation.thread is not None:
            await db(services.thread_answered, thread_id=conversation.thread.pk)
        await db(services.inbound_set, inbound_id=inbound.pk, status=InboundPost.Status.ANSWERED)

    async def _private_destination(self, text: str, post: dict, mapping: ChannelMapping) -> str | None:
        """The DM channel for a memory listing asked in a channel (None: answer where it was asked)."""
        if mapping.channel_type == ChannelMapping.Type.DIRECT:
            return None
        matched = command_match(text, channel=Channel.MCHAT)
        if matched is None or matched[0].name not in PRIVATE_COMMANDS:
            return None
        channel = await self.client.direct_channel(user_id=self.bot_user_id, other_user_id=post["user_id"])
        self.channels[channel["id"]] = await db(services.channel_mapping_sync, bot=self.bot, channel=channel)
        return channel["id"]

    async def _stop(self, key: str, post: dict, inbound: InboundPost) -> None:
        """`@ai stop` from the person who asked stops the answer in progress (partial text kept)."""
        running = self.answers.get(key)
        if running is not None and running[0] == post["user_id"]:
            await running[1].stop()
            reason = "stop"
        else:
            reason = "stop_nothing_running" if running is None else "stop_not_requester"
        await db(services.inbound_set, inbound_id=inbound.pk, status=InboundPost.Status.IGNORED, reason=reason)

    async def _with_thread_context(self, post: dict, text: str) -> str:
        """First mention inside an existing thread: the thread's earlier posts are part of the question."""
        try:
            posts = await self.client.thread(post["id"])
        except MattermostError as exc:
            logger.warning("bot %s: could not read the thread of %s (%s)", self.bot_id, post["id"], exc.status)
            return text
        create_at = int(post.get("create_at") or 0)
        earlier = [p for p in posts if p.get("id") != post["id"] and int(p.get("create_at") or 0) <= create_at
                   and not p.get("delete_at") and (p.get("message") or "").strip()]
        earlier = earlier[-conf.thread_context_posts():] if conf.thread_context_posts() else []
        if not earlier:
            return text
        lines = []
        for p in earlier:
            name = "나(봇)" if p.get("user_id") == self.bot_user_id else "@" + str(
                await self._username(p.get("user_id", "")))
            lines.append(f"{name}: {p['message'].strip()}")
        budget = settings.RUNTIME_MAX_MESSAGE_CHARS - len(text) - 80
        context = "\n".join(lines)
        if len(context) > budget:
            context = context[-max(0, budget):]
        if not context.strip():
            return text
        return f"[이 스레드의 앞선 대화 · earlier in this thread]\n{context}\n\n[질문 · question]\n{text}"

    async def _username(self, user_id: str) -> str:
        try:
            return (await self.user_get(user_id)).get("username") or user_id
        except MattermostError:
            return user_id

    # --- restart recovery and the outbox ------------------------------------------------------------
    async def recover_unfinished(self) -> None:
        """Posts a previous worker accepted but did not finish: the outbox still holds undelivered replies;
        posts never answered are answered now (the turn is idempotent on the post id)."""
        from mchat.replies import recover

        for inbound in await db(services.inbound_unfinished, bot_id=self.bot_id):
            self._spawn(recover(self, inbound))

    async def _inbox_loop(self) -> None:
        while True:
            post, channel_type = await self._inbox.get()
            try:
                await self.accept(post, via="websocket", channel_type=channel_type)
            except Unauthorized:
                raise
            except Exception:
                logger.exception("bot %s: post %s could not be handled", self.bot_id, post.get("id"))

    async def _outbox_loop(self) -> None:
        from mchat.replies import outbox_drain

        while True:
            try:
                await outbox_drain(self)
            except Unauthorized:
                raise
            except MattermostError as exc:
                logger.warning("bot %s: outbox delivery paused (%s)", self.bot_id, exc)
            self.outbox_wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.outbox_wakeup.wait(), 1.0)


async def workers_run(*, bot_id: int | None = None, wait: bool = False) -> None:
    """Serve every active bot (or one); bots added, re-activated or crashed are (re)started each refresh."""
    label = worker_label()
    running: dict[int, asyncio.Task] = {}
    announced = False
    try:
        while True:
            bots = await db(services.bots_for_worker, bot_id=bot_id)
            for bot in bots:
                task = running.get(bot.pk)
                if task is not None and task.done():
                    if not task.cancelled() and task.exception() is not None:
                        logger.error("bot %s: worker stopped with an error; restarting", bot.pk,
                                     exc_info=task.exception())
                    task = None
                if task is None:
                    running[bot.pk] = asyncio.create_task(BotWorker(bot, label=label).run())
            if not bots and not any(not t.done() for t in running.values()):
                if not wait:
                    return
                if not announced:
                    logger.info("mchat: no active Mattermost bot yet; waiting for one")
                    announced = True
            await asyncio.sleep(conf.bots_refresh_seconds())
    finally:
        for task in running.values():
            task.cancel()
        await asyncio.gather(*running.values(), return_exceptions=True)
