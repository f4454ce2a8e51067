"""A fake Mattermost API v4 server on loopback (REST + WebSocket), for tests, bench/ and trying the bot.

It follows /work/shared/MATTERMOST.md (docs/mchat.md has the summary): header or challenge
authentication, `hello` with `connection_id` and per-connection `seq`, resume with replay limits
(128 sent + 256 queued, reaped after a while, nothing after a restart), protocol Pings with a Pong
deadline, app-level `ping`/`user_typing`, posts/threads/patch/typing/users/channels, the post edit
time limit, `pending_post_id` de-duplication for 30 s, rate limiting with `X-RateLimit-*` headers
and a text `limit exceeded` 429, and faults on demand: HTTP errors, dropped connections, lost
responses, silent idle cuts, restarts and outages (stop listening, start again on the same port).

Run it for a try without a real Mattermost server (see docs/mchat.md):

    python -m mchat.fakes.server --port 8065

It seeds a team, the bot `ai` (token `fake-bot-token`), users and channels, prints the settings to
point the worker at it, and takes simulated user posts at `POST /_fake/posts`
(`{"user": "minsu", "channel": "town-square", "message": "@ai 안녕"}`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.server import ServerProtocol

MAX_POST_RUNES = 16383
EDIT_TIME_LIMIT_ERROR = "api.post.update_post.permissions_time_limit.app_error"
PENDING_ERROR = "api.post.deduplicate_create_post.pending"


def new_id() -> str:
    """Mattermost ids are 26 lower-case base32 characters."""
    return uuid.uuid4().hex[:26]


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class FakeConfig:
    edit_time_limit: float | None = None  # seconds after create_at; None = unlimited (Mattermost's -1)
    rate_limit: bool = False
    rate_per_second: float = 10.0
    rate_burst: int = 100
    ping_interval: float = 60.0  # protocol Ping frames
    pong_timeout: float = 100.0  # close when no Pong for this long
    auth_timeout: float = 5.0  # unauthenticated sockets are closed after this
    replay_sent: int = 128  # already-sent events kept for a resume
    replay_queued: int = 256  # events queued while the client is away
    reap_after: float = 300.0  # a dropped connection's resume state is kept this long
    idle_cut_after: float | None = None  # a connection with no traffic either way for this long goes silent
    pending_dedupe_seconds: float = 30.0
    hide_emails: bool = False  # the server's privacy setting: user emails come back as ""
    thread_shuffle: bool = True  # GET …/thread answers with a duplicated, out-of-order `order`
    replay_extra: int = 0  # a resume also replays this many already-delivered events (at-least-once)


@dataclass
class Fault:
    """A fault applied to matching REST requests (and the WebSocket upgrade, path /api/v4/websocket)."""

    method: str  # "GET", "POST", "PUT", … or "*"
    path: str  # regular expression matched against the path without the query string
    status: int = 500
    body: dict | str | None = None
    headers: dict = field(default_factory=dict)
    times: int = 1  # requests affected; 0 = every matching request
    every: int = 0  # affect only every Nth matching request (then `times` counts those)
    action: str = "respond"  # respond | drop (close, nothing done) | lose_response (do it, then close)
    delay: float = 0.0  # seconds before the request is handled
    seen: int = 0
    applied: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.method == "*" or self.method == method) and re.fullmatch(self.path, path) is not None


@dataclass
class RequestRecord:
    method: str
    path: str
    status: int
    at: float
    user_id: str | None
    body: object = None


@dataclass
class PostRecord:
    kind: str  # create | patch | delete
    post_id: str
    channel_id: str
    root_id: str
    message: str
    at: float  # time.time()


class WsSession:
    """What a connection id remembers for a resume: its seq counter and the events it may replay."""

    def __init__(self, user_id: str, config: FakeConfig):
        self.connection_id = new_id()
        self.user_id = user_id
        self.next_seq = 0
        self.sent: deque[tuple[int, str]] = deque(maxlen=config.replay_sent)
        self.queued: list[tuple[int, str]] = []
        self.lost = False  # an undelivered event could not be kept: no resume possible
        self.conn: WsConn | None = None
        self.detached_at: float | None = None


class WsConn:
    def __init__(self, server: FakeMattermost, proto: ServerProtocol, writer: asyncio.StreamWriter, user_id: str | None):
        self.server = server
        self.proto = proto
        self.writer = writer
        self.user_id = user_id
        self.session: WsSession | None = None
        self.silent = False  # the network path went dead: nothing is written, nothing is read
        self.closed = False
        self.last_pong = time.monotonic()
        self.last_traffic = time.monotonic()
        self.frames_in: list[str] = []

    def flush(self) -> None:
        if self.silent or self.closed:
            self.proto.data_to_send()
            return
        for data in self.proto.data_to_send():
            if data == b"":
                self.abort()
                return
            self.writer.write(data)
        self.last_traffic = time.monotonic()

    def send_text(self, text: str) -> bool:
        if self.silent or self.closed:
            return False
        self.proto.send_text(text.encode())
        self.flush()
        return True

    def abort(self) -> None:
        if not self.closed:
            self.closed = True
            try:
                self.writer.transport.abort()
            except Exception:
                pass


class FakeMattermost:
    """The fake server. Start it on a thread with start(); every public method is thread-safe."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, config: FakeConfig | None = None):
        self.host = host
        self.port = port
        self.config = config or FakeConfig()
        self.server_version = "10.5.0.fake"
        self.users: dict[str, dict] = {}
        self.tokens: dict[str, str] = {}
        self.teams: dict[str, dict] = {}
        self.channels: dict[str, dict] = {}
        self.posts: dict[str, dict] = {}
        self.faults: list[Fault] = []
        self.requests: list[RequestRecord] = []
        self.post_log: list[PostRecord] = []
        self.typing_log: list[dict] = []
        self.hook_posts: list[dict] = []  # what was POSTed to a slash command's response_url (/hooks/…)
        self.ws_log: list[dict] = []  # connects, resumes, hellos, closes (for tests)
        self.sessions: dict[str, WsSession] = {}
        self.conns: list[WsConn] = []
        self.restarts = 0
        self._pending: dict[str, tuple[str | None, float]] = {}  # pending_post_id -> (post id or None in flight, at)
        self._buckets: dict[str, list[float]] = {}
        self._last_create_ms = 0
        self._server: asyncio.base_events.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._writers: set[asyncio.StreamWriter] = set()
        self._random = random.Random(7)

    # --- lifecycle ---------------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FakeMattermost:
        started = threading.Event()

        def run():
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(self._listen())
            self._loop.create_task(self._housekeeping())
            started.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-mattermost", daemon=True)
        self._thread.start()
        if not started.wait(10):
            raise RuntimeError("fake Mattermost did not start")
        return self

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, backlog=1024, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        if self._loop is None:
            return

        async def close():
            if self._server is not None:
                self._server.close()
            self._drop_everything()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop = None

    def _call(self, fn, *args, **kwargs):
        """Run fn on the server's loop (where the sockets live) and return its result."""
        if self._loop is None or threading.current_thread() is self._thread:
            return fn(*args, **kwargs)
        done = threading.Event()
        box: dict = {}

        def run():
            try:
                box["value"] = fn(*args, **kwargs)
            except BaseException as exc:  # handed to the caller
                box["error"] = exc
            done.set()

        self._loop.call_soon_threadsafe(run)
        if not done.wait(10):
            raise TimeoutError("fake Mattermost loop did not answer")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def _drop_everything(self) -> None:
        for conn in list(self.conns):
            conn.abort()
        self.conns.clear()
        for writer in list(self._writers):
            try:
                writer.transport.abort()
            except Exception:
                pass
        self._writers.clear()

    def restart(self) -> None:
        """A server restart: every connection dropped, no resume state survives (new connection ids)."""

        def run():
            self._drop_everything()
            self.sessions.clear()
            self._pending.clear()
            self.restarts += 1
            self.ws_log.append({"kind": "restart", "at": time.time()})

        self._call(run)

    def down(self) -> None:
        """An outage: stop listening (connection refused) and drop every connection and resume state."""

        def run():
            if self._server is not None:
                self._server.close()
                self._server = None
            self._drop_everything()
            self.sessions.clear()
            self._pending.clear()
            self.restarts += 1
            self.ws_log.append({"kind": "down", "at": time.time()})

        self._call(run)

    def up(self) -> None:
        """Listen again on the same port after down()."""
        if self._loop is None:
            raise RuntimeError("not started")
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)
        with self._lock:
            self.ws_log.append({"kind": "up", "at": time.time()})

    @property
    def is_up(self) -> bool:
        return self._server is not None

    def reset(self) -> None:
        """Forget the world and the logs (tests call it between cases)."""

        def run():
            self._drop_everything()
            self.config = FakeConfig()
            for name in ("users", "tokens", "teams", "channels", "posts", "sessions", "_pending", "_buckets"):
                getattr(self, name).clear()
            self.faults.clear()
            self.requests.clear()
            self.post_log.clear()
            self.typing_log.clear()
            self.hook_posts.clear()
            self.ws_log.clear()
            self.restarts = 0

        self._call(run)

    # --- the world ---------------------------------------------------------------------------
    def user_add(self, username: str, *, email: str = "", email_verified: bool = False, auth_service: str = "",
                 is_bot: bool = False, token: str | None = None, first_name: str = "", last_name: str = "") -> dict:
        user = {
            "id": new_id(), "username": username, "email": email, "email_verified": email_verified,
            "auth_service": auth_service, "first_name": first_name, "last_name": last_name, "nickname": "",
            "is_bot": is_bot, "roles": "system_user", "locale": "ko", "create_at": now_ms(), "update_at": now_ms(),
            "delete_at": 0,
        }
        with self._lock:
            self.users[user["id"]] = user
            if token:
                self.tokens[token] = user["id"]
        return user

    def token_revoke(self, token: str) -> None:
        with self._lock:
            self.tokens.pop(token, None)

    def token_add(self, token: str, user_id: str) -> None:
        with self._lock:
            self.tokens[token] = user_id

    def team_add(self, name: str, *, display_name: str = "") -> dict:
        team = {"id": new_id(), "name": name, "display_name": display_name or name, "type": "O", "delete_at": 0}
        with self._lock:
            self.teams[team["id"]] = team
        return team

    def channel_add(self, team: dict | None, name: str, *, type: str = "O", members: list[dict] = (),
                    display_name: str = "") -> dict:
        channel = {
            "id": new_id(), "team_id": team["id"] if team else "", "type": type, "name": name,
            "display_name": display_name or name, "create_at": now_ms(), "update_at": now_ms(), "delete_at": 0,
            "members": [m["id"] for m in members],
        }
        with self._lock:
            self.channels[channel["id"]] = channel
        return channel

    def dm_channel(self, a: dict, b: dict) -> dict:
        ids = sorted([a["id"], b["id"]])
        with self._lock:
            for channel in self.channels.values():
                if channel["type"] == "D" and sorted(channel["members"]) == ids:
                    return channel
        return self.channel_add(None, f"{ids[0]}__{ids[1]}", type="D", members=[a, b], display_name="")

    def member_add(self, channel: dict, user: dict) -> None:
        with self._lock:
            if user["id"] not in self.channels[channel["id"]]["members"]:
                self.channels[channel["id"]]["members"].append(user["id"])

    def fault_add(self, method: str, path: str, **kwargs) -> Fault:
        fault = Fault(method=method, path=path, **kwargs)
        with self._lock:
            self.faults.append(fault)
        return fault

    def faults_clear(self) -> None:
        with self._lock:
            self.faults.clear()

    # --- simulated people ----------------------------------------------------------------------
    def user_post(self, user: dict, channel: dict, message: str, *, root_id: str = "", props: dict | None = None,
                  type: str = "", sender_name: str | None = None) -> dict:
        """A person (or integration) posts: stored and broadcast as `posted`, like the real server."""
        return self._call(self._post_create, user["id"], {
            "channel_id": channel["id"], "message": message, "root_id": root_id, "props": props or {}, "type": type,
        }, sender_name=sender_name)

    def user_edit(self, post_id: str, message: str) -> dict:
        return self._call(self._post_patch_apply, post_id, {"message": message})

    def post_delete(self, post_id: str) -> dict:
        def run():
            post = self.posts[post_id]
            post["delete_at"] = post["update_at"] = self._stamp()
            self._broadcast_channel(post["channel_id"], "post_deleted", {"post": json.dumps(post)})
            self.post_log.append(PostRecord("delete", post_id, post["channel_id"], post["root_id"], "", time.time()))
            return post

        return self._call(run)

    def send_raw(self, text: str, *, user: dict | None = None) -> int:
        """Write an arbitrary text frame to every open connection (of `user`): malformed frames, odd events."""

        def run():
            count = 0
            for conn in list(self.conns):
                if user is None or conn.user_id == user["id"]:
                    count += conn.send_text(text)
            return count

        return self._call(run)

    def send_event(self, event: str, data: dict, *, user: dict, broadcast: dict | None = None) -> None:
        """Broadcast a (possibly unknown) event with a proper seq to `user`'s connections."""
        self._call(self._broadcast_users, [user["id"]], event, data, broadcast or {})

    # --- WebSocket faults -------------------------------------------------------------------------
    def ws_silent_cut(self, *, user: dict | None = None) -> int:
        """The network path dies without a FIN: nothing more is delivered either way (a NAT cut)."""

        def run():
            count = 0
            for conn in self.conns:
                if (user is None or conn.user_id == user["id"]) and not conn.silent:
                    conn.silent = True
                    count += 1
                    self.ws_log.append({"kind": "silent_cut", "connection_id": conn.session.connection_id
                                        if conn.session else None, "at": time.time()})
            return count

        return self._call(run)

    def ws_drop(self, *, user: dict | None = None) -> int:
        """Close the TCP connections abruptly (no close frame); resume state is kept."""

        def run():
            count = 0
            for conn in list(self.conns):
                if user is None or conn.user_id == user["id"]:
                    self._conn_gone(conn)
                    count += 1
            return count

        return self._call(run)

    def ws_open_count(self, *, user: dict | None = None) -> int:
        return self._call(lambda: sum(1 for c in self.conns if not c.closed and not c.silent
                                      and c.session is not None and (user is None or c.user_id == user["id"])))

    # --- inspection ------------------------------------------------------------------------------
    def posts_by(self, user: dict, *, channel: dict | None = None, root_id: str | None = None) -> list[dict]:
        with self._lock:
            found = [dict(p) for p in self.posts.values() if p["user_id"] == user["id"] and p["delete_at"] == 0
                     and (channel is None or p["channel_id"] == channel["id"])
                     and (root_id is None or p["root_id"] == root_id)]
        return sorted(found, key=lambda p: (p["create_at"], p["id"]))

    def requests_matching(self, method: str, pattern: str) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self.requests if (method == "*" or r.method == method) and re.fullmatch(pattern, r.path)]

    def wait_for(self, predicate, *, timeout: float = 20.0, interval: float = 0.05):
        """Poll `predicate()` until truthy; returns its value or raises TimeoutError."""
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met within {timeout} s")
            time.sleep(interval)

    # --- scripted scenarios ------------------------------------------------------------------------
    def scenario_run(self, steps: list[dict]) -> threading.Thread:
        """Run steps in the background: {"after": seconds, "do": "post"|"edit"|"silent_cut"|"drop"|"restart"|
        "down"|"up"|"revoke"|"raw", …}. Post steps name users and channels by username/name."""

        def by_name(kind: str, name: str) -> dict:
            table = self.users if kind == "user" else self.channels
            key = "username" if kind == "user" else "name"
            return next(v for v in table.values() if v[key] == name)

        def run():
            for step in steps:
                time.sleep(float(step.get("after", 0)))
                action = step["do"]
                if action == "post":
                    self.user_post(by_name("user", step["user"]), by_name("channel", step["channel"]), step["message"],
                                   root_id=step.get("root_id", ""), props=step.get("props"))
                elif action == "edit":
                    self.user_edit(step["post_id"], step["message"])
                elif action == "silent_cut":
                    self.ws_silent_cut()
                elif action == "drop":
                    self.ws_drop()
                elif action == "restart":
                    self.restart()
                elif action == "down":
                    self.down()
                elif action == "up":
                    self.up()
                elif action == "revoke":
                    self.token_revoke(step["token"])
                elif action == "raw":
                    self.send_raw(step["text"])
                else:
                    raise ValueError(f"unknown scenario step {action!r}")

        thread = threading.Thread(target=run, name="fake-mattermost-scenario", daemon=True)
        thread.start()
        return thread

    # --- internals: posts ----------------------------------------------------------------------------
    def _stamp(self) -> int:
        stamp = max(now_ms(), self._last_create_ms + 1)
        self._last_create_ms = stamp
        return stamp

    def _user_public(self, user: dict) -> dict:
        body = {k: v for k, v in user.items()}
        if self.config.hide_emails:
            body["email"] = ""
        return body

    def _post_create(self, user_id: str, body: dict, *, sender_name: str | None = None) -> dict:
        user = self.users[user_id]
        channel = self.channels[body["channel_id"]]
        props = dict(body.get("props") or {})
        if user.get("is_bot"):
            props["from_bot"] = "true"
        stamp = self._stamp()
        post = {
            "id": new_id(), "create_at": stamp, "update_at": stamp, "edit_at": 0, "delete_at": 0, "is_pinned": False,
            "user_id": user_id, "channel_id": channel["id"], "root_id": body.get("root_id") or "",
            "original_id": "", "message": body.get("message") or "", "type": body.get("type") or "", "props": props,
            "hashtags": "", "pending_post_id": body.get("pending_post_id") or "", "reply_count": 0, "metadata": {},
        }
        self.posts[post["id"]] = post
        if post["root_id"] and post["root_id"] in self.posts:
            self.posts[post["root_id"]]["reply_count"] += 1
        self.post_log.append(PostRecord("create", post["id"], channel["id"], post["root_id"], post["message"], time.time()))
        data = {
            "channel_display_name": channel["display_name"], "channel_name": channel["name"],
            "channel_type": channel["type"], "post": json.dumps(post), "set_online": True,
            "sender_name": sender_name if sender_name is not None else "@" + user["username"],
            "team_id": channel["team_id"],
        }
        mentions = self._mentions(post, channel)
        if mentions:
            data["mentions"] = json.dumps(mentions)
        self._broadcast_channel(channel["id"], "posted", data)
        return dict(post)

    def _mentions(self, post: dict, channel: dict) -> list[str]:
        """A rough version of the server's hint: the other DM member and any @username in the text."""
        ids = []
        if channel["type"] in ("D", "G"):
            ids = [m for m in channel["members"] if m != post["user_id"]]
        for user in self.users.values():
            if user["id"] in channel["members"] and f"@{user['username']}" in post["message"] and user["id"] not in ids:
                ids.append(user["id"])
        return ids

    def _post_patch_apply(self, post_id: str, body: dict) -> dict:
        post = self.posts[post_id]
        if "message" in body:
            post["message"] = body["message"]
        if "props" in body:
            post["props"] = dict(body["props"] or {})  # replaced entirely, like the real server
            if self.users[post["user_id"]].get("is_bot"):
                post["props"]["from_bot"] = "true"
        post["update_at"] = post["edit_at"] = self._stamp()
        self.post_log.append(PostRecord("patch", post_id, post["channel_id"], post["root_id"], post["message"], time.time()))
        self._broadcast_channel(post["channel_id"], "post_edited", {"post": json.dumps(post)})
        return dict(post)

    # --- internals: WebSocket events -----------------------------------------------------------------
    def _broadcast_channel(self, channel_id: str, event: str, data: dict, *, omit: str | None = None) -> None:
        members = [m for m in self.channels[channel_id]["members"] if m != omit]
        self._broadcast_users(members, event, data, {"omit_users": {omit: True} if omit else None, "user_id": "",
                                                     "channel_id": channel_id, "team_id": ""})

    def _broadcast_users(self, user_ids, event: str, data: dict, broadcast: dict) -> None:
        for session in list(self.sessions.values()):
            if session.user_id not in user_ids:
                continue
            self._session_send(session, event, data, broadcast)

    def _session_send(self, session: WsSession, event: str, data: dict, broadcast: dict) -> None:
        seq = session.next_seq
        session.next_seq += 1
        text = json.dumps({"event": event, "data": data, "broadcast": broadcast, "seq": seq})
        conn = session.conn
        if conn is not None and not conn.closed:
            # A silent connection swallows it, but the server believes it was sent.
            conn.send_text(text)
            session.sent.append((seq, text))
        else:
            session.queued.append((seq, text))
            if len(session.queued) > self.config.replay_queued:
                session.queued.pop(0)
                session.lost = True

    def _session_for(self, user_id: str, connection_id: str | None, sequence_number: int | None) -> tuple[WsSession, bool]:
        """(session, resumed): resume when the id is known and every event from sequence_number is kept."""
        session = self.sessions.get(connection_id or "")
        if session is not None and session.user_id == user_id and not session.lost and sequence_number is not None:
            reaped = session.detached_at is not None and time.monotonic() - session.detached_at > self.config.reap_after
            kept = [s for s, _ in session.sent] + [s for s, _ in session.queued]
            ok = sequence_number == session.next_seq or (kept and kept[0] <= sequence_number <= session.next_seq)
            if not reaped and ok and (session.conn is None or session.conn.closed or session.conn.silent):
                return session, True
        if session is not None and session.conn is None:
            self.sessions.pop(session.connection_id, None)
        session = WsSession(user_id, self.config)
        self.sessions[session.connection_id] = session
        return session, False

    def _attach(self, conn: WsConn, session: WsSession, *, resumed: bool, sequence_number: int | None) -> None:
        old = session.conn
        if old is not None and old is not conn:
            old.abort()
            if old in self.conns:
                self.conns.remove(old)
        session.conn = conn
        session.detached_at = None
        conn.session = session
        if resumed:
            first = sequence_number - self.config.replay_extra
            replay = [(s, t) for s, t in session.sent if s >= first] + session.queued
            session.sent.extend(session.queued)
            session.queued = []
            self.ws_log.append({"kind": "resume", "connection_id": session.connection_id, "from": sequence_number,
                                "replayed": len(replay), "at": time.time()})
            for _, text in replay:
                conn.send_text(text)
        else:
            self.ws_log.append({"kind": "hello", "connection_id": session.connection_id, "at": time.time()})
            self._session_send(session, "hello", {"connection_id": session.connection_id,
                                                  "server_version": self.server_version},
                               {"omit_users": None, "user_id": conn.user_id, "channel_id": "", "team_id": ""})

    def _conn_gone(self, conn: WsConn) -> None:
        conn.abort()
        if conn in self.conns:
            self.conns.remove(conn)
        session = conn.session
        if session is not None and session.conn is conn:
            session.conn = None
            session.detached_at = time.monotonic()
        self.ws_log.append({"kind": "closed", "connection_id": session.connection_id if session else None,
                            "at": time.time()})

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            now = time.monotonic()
            for conn in list(self.conns):
                if conn.closed:
                    continue
                if self.config.idle_cut_after and not conn.silent and now - conn.last_traffic > self.config.idle_cut_after:
                    conn.silent = True
                    self.ws_log.append({"kind": "silent_cut", "connection_id": conn.session.connection_id
                                        if conn.session else None, "idle": True, "at": time.time()})
                if conn.silent:
                    continue
                if now - conn.last_pong > self.config.pong_timeout:
                    self._conn_gone(conn)
                elif now - getattr(conn, "last_ping", 0.0) > self.config.ping_interval and conn.session is not None:
                    conn.last_ping = now
                    conn.proto.send_ping(b"")
                    conn.flush()

    # --- internals: HTTP -----------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        peer = (writer.get_extra_info("peername") or ("?",))[0]
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                split = urlsplit(target)
                if headers.get("upgrade", "").lower() == "websocket":
                    await self._websocket(reader, writer, head, split.path, parse_qs(split.query), headers, peer)
                    return
                body = await reader.readexactly(int(headers.get("content-length") or 0))
                keep = await self._http(method, split.path, parse_qs(split.query), headers, body, writer, peer)
                if not keep or headers.get("connection", "").lower() == "close":
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            self._writers.discard(writer)
            try:
                writer.close()
            except Exception:
                pass

    def _rate_headers(self, peer: str) -> tuple[bool, dict]:
        """Token bucket keyed by remote IP; (allowed, headers)."""
        if not self.config.rate_limit:
            return True, {}
        rate, burst = self.config.rate_per_second, self.config.rate_burst
        now = time.monotonic()
        tokens, at = self._buckets.get(peer, [float(burst), now])
        tokens = min(float(burst), tokens + (now - at) * rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[peer] = [tokens, now]
        reset = max(1, int((1.0 - tokens) / rate + 0.999)) if tokens < 1.0 else 0
        return allowed, {"X-RateLimit-Limit": str(int(rate)), "X-RateLimit-Remaining": str(int(tokens)),
                         "X-RateLimit-Reset": str(reset)}

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if not fault.matches(method, path):
                    continue
                if fault.times and fault.applied >= fault.times:
                    continue
                fault.seen += 1
                if fault.every and fault.seen % fault.every:
                    continue
                fault.applied += 1
                return fault
        return None

    async def _write(self, writer, status: int, body, headers: dict | None = None) -> None:
        if isinstance(body, (dict, list)):
            raw, ctype = json.dumps(body, ensure_ascii=False).encode(), "application/json; charset=utf-8"
        else:
            raw, ctype = (body or "").encode(), "text/plain; charset=utf-8"
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"Content-Type: {ctype}",
                 f"Content-Length: {len(raw)}", f"X-Request-Id: {new_id()}", "X-Version-Id: fake"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + raw)
        await writer.drain()

    def _error(self, status: int, error_id: str, message: str) -> dict:
        return {"id": error_id, "message": message, "detailed_error": "", "request_id": new_id(), "status_code": status}

    def _auth(self, headers: dict) -> str | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() not in ("bearer", "token") or not token.strip():
            return None
        return self.tokens.get(token.strip())

    async def _http(self, method, path, query, headers, body: bytes, writer, peer) -> bool:
        allowed, rate_headers = self._rate_headers(peer)
        user_id = self._auth(headers)
        record = RequestRecord(method, path, 0, time.time(), user_id)
        with self._lock:
            self.requests.append(record)
        if not allowed:
            record.status = 429
            retry = rate_headers.get("X-RateLimit-Reset", "1")
            await self._write(writer, 429, "limit exceeded", {**rate_headers, "Retry-After": retry})
            return True
        fault = self._fault_for(method, path)
        if fault is not None:
            if fault.delay:
                await asyncio.sleep(fault.delay)
            if fault.action == "drop":
                record.status = -1
                writer.transport.abort()
                return False
            if fault.action == "respond":
                record.status = fault.status
                payload = fault.body if fault.body is not None else self._error(
                    fault.status, "fake.injected", f"injected {fault.status}")
                await self._write(writer, fault.status, payload, {**rate_headers, **fault.headers})
                return True
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            record.status = 400
            await self._write(writer, 400, self._error(400, "api.context.invalid_body_param.app_error", "bad json"),
                              rate_headers)
            return True
        record.body = payload
        if path.startswith("/_fake/"):
            status, answer = self._control(method, path, query, payload)
        elif path.startswith("/hooks/") and method == "POST":
            with self._lock:
                self.hook_posts.append({"path": path, "body": payload, "at": time.time()})
            status, answer = 200, "ok"
        elif path == "/api/v4/system/ping":
            status, answer = 200, {"status": "OK"}
        elif user_id is None:
            status, answer = 401, self._error(401, "api.context.session_expired.app_error", "Invalid or expired session, please login again.")
        else:
            try:
                status, answer = await self._route(method, path, query, payload, user_id)
            except KeyError:
                status, answer = 404, self._error(404, "app.not_found", "not found")
        record.status = status
        if fault is not None and fault.action == "lose_response":
            record.status = -1
            writer.transport.abort()
            return False
        await self._write(writer, status, answer, rate_headers)
        return True

    async def _route(self, method, path, query, payload, user_id) -> tuple[int, object]:
        parts = path.strip("/").split("/")[2:]  # after api/v4
        me = self.users[user_id]
        if method == "GET" and parts == ["users", "me"]:
            return 200, self._user_public(me)
        if method == "POST" and parts == ["users", "ids"]:
            ids = payload if isinstance(payload, list) else []
            return 200, [self._user_public(self.users[i]) for i in ids if i in self.users]
        if method == "GET" and len(parts) == 2 and parts[0] == "users":
            return 200, self._user_public(self.users[parts[1]])
        if method == "POST" and len(parts) == 3 and parts[0] == "users" and parts[2] == "typing":
            channel_id = (payload or {}).get("channel_id", "")
            if channel_id not in self.channels:
                return 400, self._error(400, "api.context.invalid_body_param.app_error", "channel_id")
            self.typing_log.append({"user_id": user_id, "channel_id": channel_id,
                                    "parent_id": (payload or {}).get("parent_id", ""), "at": time.time()})
            self._broadcast_channel(channel_id, "typing", {"parent_id": (payload or {}).get("parent_id", ""),
                                                           "user_id": user_id}, omit=user_id)
            return 200, {"status": "OK"}
        if method == "GET" and parts == ["users", "me", "teams"]:
            mine = {c["team_id"] for c in self.channels.values() if user_id in c["members"] and c["team_id"]}
            return 200, [t for t in self.teams.values() if t["id"] in mine]
        if method == "GET" and len(parts) == 5 and parts[:3] == ["users", "me", "teams"] and parts[4] == "channels":
            team_id = parts[3]
            return 200, [self._channel_public(c) for c in self.channels.values()
                         if user_id in c["members"] and c["team_id"] in (team_id, "")]
        if method == "POST" and parts == ["channels", "direct"]:
            ids = payload if isinstance(payload, list) else []
            if len(ids) != 2 or any(i not in self.users for i in ids) or user_id not in ids:
                return 400, self._error(400, "api.context.invalid_body_param.app_error", "user ids")
            channel = self.dm_channel(self.users[ids[0]], self.users[ids[1]])
            return 201, self._channel_public(channel)
        if method == "GET" and len(parts) == 2 and parts[0] == "channels":
            channel = self.channels[parts[1]]
            if user_id not in channel["members"]:
                return 403, self._error(403, "api.context.permissions.app_error", "no permission")
            return 200, self._channel_public(channel)
        if method == "GET" and len(parts) == 3 and parts[0] == "channels" and parts[2] == "posts":
            return self._channel_posts(parts[1], query, user_id)
        if method == "POST" and parts == ["posts"]:
            return await self._rest_post_create(payload or {}, user_id)
        if method == "PUT" and len(parts) == 3 and parts[0] == "posts" and parts[2] == "patch":
            return self._rest_post_patch(parts[1], payload or {}, user_id)
        if method == "GET" and len(parts) == 2 and parts[0] == "posts":
            post = self.posts[parts[1]]
            return 200, post
        if method == "GET" and len(parts) == 3 and parts[0] == "posts" and parts[2] == "thread":
            return self._post_thread(parts[1])
        if method == "DELETE" and len(parts) == 2 and parts[0] == "posts":
            post = self.posts[parts[1]]
            post["delete_at"] = post["update_at"] = self._stamp()
            self._broadcast_channel(post["channel_id"], "post_deleted", {"post": json.dumps(post)})
            return 200, {"status": "OK"}
        return 404, self._error(404, "api.context.404.app_error", "Sorry, we could not find the page.")

    def _channel_public(self, channel: dict) -> dict:
        return {k: v for k, v in channel.items() if k != "members"}

    def _channel_posts(self, channel_id: str, query: dict, user_id: str) -> tuple[int, dict]:
        channel = self.channels[channel_id]
        if user_id not in channel["members"]:
            return 403, self._error(403, "api.context.permissions.app_error", "no permission")
        try:
            since = int(query.get("since", ["0"])[0])
        except ValueError:
            return 400, self._error(400, "api.context.invalid_url_param.app_error", "since")
        posts = [p for p in self.posts.values() if p["channel_id"] == channel_id and p["update_at"] > since]
        if not query.get("since"):
            posts = [p for p in posts if p["delete_at"] == 0]
        posts.sort(key=lambda p: p["create_at"], reverse=True)
        posts = posts[:1000]
        return 200, {"order": [p["id"] for p in posts], "posts": {p["id"]: p for p in posts},
                     "next_post_id": "", "prev_post_id": ""}

    async def _rest_post_create(self, body: dict, user_id: str) -> tuple[int, object]:
        channel = self.channels.get(body.get("channel_id") or "")
        if channel is None:
            return 400, self._error(400, "api.context.invalid_body_param.app_error", "Invalid channel_id")
        if user_id not in channel["members"]:
            return 403, self._error(403, "api.context.permissions.app_error", "no permission to post")
        message = body.get("message") or ""
        if len(message) > MAX_POST_RUNES:
            return 400, self._error(400, "model.post.is_valid.message_length.app_error", "message too long")
        root_id = body.get("root_id") or ""
        if root_id:
            root = self.posts.get(root_id)
            if root is None or root["channel_id"] != channel["id"] or root["root_id"]:
                return 400, self._error(400, "api.post.create_post.root_id.app_error", "Invalid RootId parameter")
        pending = body.get("pending_post_id") or ""
        if pending:
            seen = self._pending.get(pending)
            if seen is not None and time.monotonic() - seen[1] < self.config.pending_dedupe_seconds:
                if seen[0] is None:
                    return 500, self._error(500, PENDING_ERROR, "post creation for this pending id is in flight")
                return 201, self.posts[seen[0]]
        post = self._post_create(user_id, {**body, "type": ""})
        if pending:
            self._pending[pending] = (post["id"], time.monotonic())
        return 201, post

    def _rest_post_patch(self, post_id: str, body: dict, user_id: str) -> tuple[int, object]:
        post = self.posts[post_id]
        if post["user_id"] != user_id:
            return 403, self._error(403, "api.context.permissions.app_error", "not your post")
        if post["delete_at"]:
            return 400, self._error(400, "api.post.update_post.find.app_error", "deleted")
        limit = self.config.edit_time_limit
        if limit is not None and (now_ms() - post["create_at"]) / 1000.0 > limit:
            return 400, self._error(400, EDIT_TIME_LIMIT_ERROR, "Unable to update post as the time limit has passed.")
        message = body.get("message", post["message"])
        if len(message or "") > MAX_POST_RUNES:
            return 400, self._error(400, "model.post.is_valid.message_length.app_error", "message too long")
        return 200, self._post_patch_apply(post_id, body)

    def _post_thread(self, post_id: str) -> tuple[int, dict]:
        post = self.posts[post_id]
        root_id = post["root_id"] or post["id"]
        posts = [p for p in self.posts.values() if (p["id"] == root_id or p["root_id"] == root_id) and not p["delete_at"]]
        order = [p["id"] for p in posts]
        if self.config.thread_shuffle and order:
            order = order + [order[0]]  # the real server may repeat ids and mix the order
            self._random.shuffle(order)
        return 200, {"order": order, "posts": {p["id"]: p for p in posts}}

    # --- control endpoints for people trying the bot by hand --------------------------------------
    def _control(self, method, path, query, payload) -> tuple[int, object]:
        if method == "POST" and path == "/_fake/posts":
            payload = payload or {}
            user = next((u for u in self.users.values() if u["username"] == payload.get("user")), None)
            channel = next((c for c in self.channels.values() if c["name"] == payload.get("channel")), None)
            if channel is None and user is not None and payload.get("channel") == "dm":
                bot = next(u for u in self.users.values() if u.get("is_bot"))
                channel = self.dm_channel(user, bot)
            if user is None or channel is None:
                return 400, {"error": "unknown user or channel"}
            return 201, self._post_create(user["id"], {"channel_id": channel["id"], "message": payload.get("message", ""),
                                                       "root_id": payload.get("root_id", "")})
        if method == "GET" and path == "/_fake/posts":
            name = query.get("channel", [""])[0]
            posts = [p for p in self.posts.values()
                     if not name or self.channels[p["channel_id"]]["name"] == name]
            posts.sort(key=lambda p: p["create_at"])
            return 200, [{"id": p["id"], "user": self.users[p["user_id"]]["username"], "root_id": p["root_id"],
                          "message": p["message"]} for p in posts]
        return 404, {"error": "unknown control endpoint"}

    # --- internals: WebSocket ------------------------------------------------------------------------
    async def _websocket(self, reader, writer, head: bytes, path, query, headers, peer) -> None:
        record = RequestRecord("GET", path, 101, time.time(), None)
        with self._lock:
            self.requests.append(record)
        proto = ServerProtocol(max_size=2**20)
        proto.receive_data(head)
        request = proto.events_received()[0]
        fault = self._fault_for("GET", path)
        token_given = bool(headers.get("authorization"))
        user_id = self._auth(headers)
        record.user_id = user_id
        if fault is not None and fault.action == "drop":
            writer.transport.abort()
            return
        if path != "/api/v4/websocket" or fault is not None or (token_given and user_id is None):
            status = fault.status if fault is not None else (401 if token_given else 404)
            record.status = status
            body = json.dumps(self._error(status, "api.web_socket.connect.upgrade.app_error", "rejected")).encode()
            response = Response(status, _REASONS.get(status, "Error"),
                                Headers([("Content-Type", "application/json"), ("Content-Length", str(len(body))),
                                         ("Connection", "close")]), body)
            proto.send_response(response)
            for data in proto.data_to_send():
                if data:
                    writer.write(data)
            await writer.drain()
            return
        response = proto.accept(request)
        proto.send_response(response)
        conn = WsConn(self, proto, writer, user_id)
        conn.flush()
        if response.status_code != 101:
            return
        self.conns.append(conn)
        connection_id = (query.get("connection_id") or [None])[0]
        raw_seq = (query.get("sequence_number") or [None])[0]
        self.ws_log.append({"kind": "connect", "connection_id": connection_id, "sequence_number": raw_seq,
                            "header_auth": user_id is not None, "at": time.time()})
        if user_id is not None:
            if connection_id and raw_seq is None:
                self._conn_gone(conn)  # the real server closes such a socket
                return
            try:
                sequence_number = int(raw_seq) if raw_seq is not None else None
            except ValueError:
                sequence_number = None
            session, resumed = self._session_for(user_id, connection_id, sequence_number)
            self._attach(conn, session, resumed=resumed, sequence_number=sequence_number)
        auth_deadline = time.monotonic() + self.config.auth_timeout
        try:
            while not conn.closed:
                timeout = None if conn.session is not None else max(0.0, auth_deadline - time.monotonic())
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout)
                except TimeoutError:
                    break  # never authenticated
                if conn.closed:
                    break
                if conn.silent:
                    if not data:
                        break
                    continue  # a dead path: the bytes never arrive
                if not data:
                    proto.receive_eof()
                    break
                conn.last_traffic = time.monotonic()
                proto.receive_data(data)
                for event in proto.events_received():
                    if not isinstance(event, Frame):
                        continue
                    if event.opcode == Opcode.PONG:
                        conn.last_pong = time.monotonic()
                    elif event.opcode == Opcode.TEXT:
                        self._ws_frame(conn, bytes(event.data).decode("utf-8", "replace"))
                    elif event.opcode == Opcode.CLOSE:
                        pass
                conn.flush()
                if proto.close_expected():
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            self._conn_gone(conn)

    def _ws_reply(self, conn: WsConn, seq, status: str = "OK", data: dict | None = None, error: dict | None = None):
        body = {"status": status, "seq_reply": seq}
        if error is not None:
            body["error"] = error
        elif data is not None:
            body["data"] = data
        conn.send_text(json.dumps(body))

    def _ws_frame(self, conn: WsConn, text: str) -> None:
        conn.frames_in.append(text)
        try:
            frame = json.loads(text)
            seq = frame.get("seq")
            action = frame.get("action")
        except (ValueError, AttributeError):
            return  # the real server logs and drops what it cannot decode
        if not isinstance(seq, int) or seq <= 0:
            self._ws_reply(conn, seq, "FAIL", error={"id": "api.web_socket_router.bad_seq.app_error",
                                                     "message": "Invalid sequence"})
            return
        if action == "authentication_challenge":
            if conn.session is not None:
                return  # header-authenticated: silently ignored
            token = (frame.get("data") or {}).get("token", "")
            user_id = self.tokens.get(token)
            if user_id is None:
                conn.abort()  # a bad token closes the socket without an error frame
                return
            conn.user_id = user_id
            session, _ = self._session_for(user_id, None, None)  # connection_id is ignored after a challenge
            self._attach(conn, session, resumed=False, sequence_number=None)  # hello may come before the OK
            self._ws_reply(conn, seq)
            return
        if conn.session is None:
            return
        if action == "ping":
            self._ws_reply(conn, seq, data={"text": "pong", "version": self.server_version,
                                            "server_time": now_ms(), "node_id": ""})
        elif action == "user_typing":
            data = frame.get("data") or {}
            channel_id = data.get("channel_id", "")
            if channel_id in self.channels:
                self.typing_log.append({"user_id": conn.user_id, "channel_id": channel_id,
                                        "parent_id": data.get("parent_id", ""), "at": time.time(), "via": "websocket"})
                self._broadcast_channel(channel_id, "typing", {"parent_id": data.get("parent_id", ""),
                                                               "user_id": conn.user_id}, omit=conn.user_id)
            self._ws_reply(conn, seq)
        else:
            self._ws_reply(conn, seq, "FAIL", error={"id": "api.web_socket_router.bad_action.app_error",
                                                     "message": "Invalid action"})


_REASONS = {200: "OK", 201: "Created", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


def demo_world(server: FakeMattermost, *, bot_token: str = "fake-bot-token", bot_username: str = "ai") -> dict:
    """The seeded world of `python -m mchat.fakes.server`: a team, the bot, two people, a channel and a DM."""
    team = server.team_add("mejai", display_name="Mejai")
    bot = server.user_add(bot_username, is_bot=True, token=bot_token)
    minsu = server.user_add("minsu", email="minsu@example.com", email_verified=True, token="fake-minsu-token",
                            first_name="민수")
    jisu = server.user_add("jisu", email="jisu@example.com", email_verified=False, token="fake-jisu-token")
    town = server.channel_add(team, "town-square", display_name="Town Square", members=[bot, minsu, jisu])
    dm = server.dm_channel(minsu, bot)
    return {"team": team, "bot": bot, "minsu": minsu, "jisu": jisu, "town": town, "dm": dm}


def main() -> None:
    parser = argparse.ArgumentParser(description="A fake Mattermost API v4 server for trying the mchat worker.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8065)
    parser.add_argument("--bot-token", default="fake-bot-token")
    parser.add_argument("--edit-time-limit", type=float, default=None, help="seconds; default unlimited")
    parser.add_argument("--rate-limit", action="store_true", help="10 req/s, burst 100, like Mattermost's default")
    parser.add_argument("--scenario", help="a JSON file with scenario steps (see FakeMattermost.scenario_run)")
    args = parser.parse_args()
    server = FakeMattermost(args.host, args.port, FakeConfig(edit_time_limit=args.edit_time_limit,
                                                             rate_limit=args.rate_limit)).start()
    world = demo_world(server, bot_token=args.bot_token)
    print(f"fake Mattermost on {server.url}", flush=True)
    print(f"  MCHAT_URL={server.url} MCHAT_BOT_TOKEN={args.bot_token} MCHAT_VERIFY_SSL=0", flush=True)
    print(f"  bot @{world['bot']['username']}, people: minsu (verified email), jisu; channel town-square; a DM minsu↔ai")
    print(f"  post as a person:  curl -s -XPOST {server.url}/_fake/posts "
          "-d '{\"user\": \"minsu\", \"channel\": \"town-square\", \"message\": \"@ai 안녕\"}'")
    print(f"  read the channel:  curl -s '{server.url}/_fake/posts?channel=town-square'", flush=True)
    if args.scenario:
        with open(args.scenario) as handle:
            server.scenario_run(json.load(handle))
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
