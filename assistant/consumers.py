"""The realtime assistant socket `ws(s)://…/ws/chat/{client_id}` (protocol: docs/assistant.md).

Thin: it authenticates, validates frames, calls services, and delivers the client's stream frames
in `seq` order (filling any gap from the backlog). Answers run in the client's driver
(assistant.answering), never in a receive handler, so `ping` and `stop` are answered at once.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from channels.utils import await_many_dispatch
from django.conf import settings

from assistant import answering, backlog, conf, connections, protocol, reports, services
from assistant.resume import resume_frames
from assistant.sync import db
from mejai.errors import ApiError
from mejai.middleware import JSON_MAX_DEPTH, json_too_deep

logger = logging.getLogger(__name__)

CLOSE_AUTH_TIMEOUT = 4401
HOLD_SECONDS = 1.0  # how long live frames wait for a `resume` right after `ready`
CLOSE_FORBIDDEN = 4403
CATCH_UP_SECONDS = 2.0  # a turn in progress silent this long on a socket: read the backlog for lost frames


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def _same_origin(scope) -> bool:
    """Whether the browser's Origin is this site (its Host, or PUBLIC_BASE_URL): only then is the
    session cookie trusted (a foreign page must not ride a logged-in user's cookie)."""
    origin = _header(scope, b"origin").rstrip("/").lower()
    if not origin:
        return False
    host = _header(scope, b"host").lower()
    own = {settings.PUBLIC_BASE_URL.rstrip("/").lower()}
    if host:
        own |= {f"http://{host}", f"https://{host}"}
    return origin in own


def _query_last_seq(scope) -> int | None:
    """`?last_seq=N` on the URL: resume as part of connecting, before any live frame."""
    from urllib.parse import parse_qs

    values = parse_qs((scope.get("query_string") or b"").decode("latin-1")).get("last_seq") or []
    return int(values[0]) if values and values[0].isdigit() and len(values[0]) < 18 else None


class ChatConsumer(AsyncJsonWebsocketConsumer):
    async def __call__(self, scope, receive, send):
        """AsyncConsumer.__call__ with a third source of messages: `inbox`, where this process puts
        its own frames for this socket (connections.client_send) instead of a round trip through the
        channel layer. The layer's receive would not see them until its Redis read returned."""
        self.scope = scope
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        sources = [receive, self.inbox.get]
        if self.channel_layer is not None:
            self.channel_name = await self.channel_layer.new_channel()
            self.channel_receive = functools.partial(self.channel_layer.receive, self.channel_name)
            sources.insert(1, self.channel_receive)
        self.base_send = send
        try:
            await await_many_dispatch(sources, self.dispatch)
        except StopConsumer:
            pass

    async def dispatch(self, message):
        """AsyncConsumer.dispatch without its `aclose_old_connections()` before every message: that is
        a hop to the process's one sync thread per frame of every socket (thousands a second with a
        hundred answers streaming, all queued on that thread). This consumer never uses the ORM on
        the loop; its database work runs through assistant.sync.db, which closes its own connections."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def connect(self):
        self.client_id = self.scope["url_route"]["kwargs"]["client_id"]
        self.caller = None
        self.client = None
        self.registered = False
        self.delivered = 0  # the highest stream seq sent on this socket
        self.auth_deadline = None
        self.holding: list[dict] | None = None
        self.hold_timer = None
        self.catch_up_timer = None
        await self.accept()
        try:
            services.client_id_validate(self.client_id)
        except ApiError as exc:
            await self.send_error(exc.code, exc.message)
            await self.close(code=CLOSE_FORBIDDEN)
            return
        user = self.scope.get("user")
        if user is not None and getattr(user, "is_authenticated", False) and _same_origin(self.scope):
            await self.authenticate(user, last_seq=_query_last_seq(self.scope))
        else:
            self.auth_deadline = asyncio.get_running_loop().call_later(
                conf.auth_timeout_seconds(), lambda: asyncio.ensure_future(self.auth_expired()))

    async def disconnect(self, code):
        if self.auth_deadline is not None:
            self.auth_deadline.cancel()
        self.stop_holding()
        self.catch_up_disarm()
        if self.registered:
            self.registered = False
            last_here = await connections.client_unregister(
                channel_name=self.channel_name, client_id=self.client_id, organization_id=self.caller.organization.pk)
            if last_here:
                await db(reports.client_gone)(client_id=self.client_id)

    # --- frames in ---------------------------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if text_data is None:
            await self.send_error("invalid_frame", protocol.message_for("invalid_frame"))
            return
        if len(text_data) > conf.max_frame_bytes():
            await self.send_error("frame_too_large", protocol.message_for("frame_too_large"),
                                  limit_bytes=conf.max_frame_bytes())
            return
        if json_too_deep(text_data.encode("utf-8", "surrogatepass")):
            await self.send_error("json_too_deep", f"JSON은 {JSON_MAX_DEPTH}단계까지만 중첩할 수 있습니다. "
                                  f"(JSON may nest at most {JSON_MAX_DEPTH} levels.)")
            return
        try:
            content = json.loads(text_data)
        except (ValueError, RecursionError):
            await self.send_error("invalid_json", protocol.message_for("invalid_json"))
            return
        if not isinstance(content, dict) or not isinstance(content.get("type"), str):
            await self.send_error("invalid_frame", protocol.message_for("invalid_frame"))
            return
        refused = protocol.unstorable_field(content)
        if refused is not None:
            # NUL or a lone surrogate would reach a database lookup (PostgreSQL refuses both).
            await self.send_error("invalid", "보낼 수 없는 문자(NUL 등)가 들어 있습니다. "
                                  "(The frame holds characters that cannot be stored, e.g. NUL.)", field=refused)
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        kind = content["type"]
        if self.holding is not None:
            if kind == "resume":
                self.stop_holding()  # the resume sends what was held, from the backlog
            else:
                await self.release_held()
        try:
            if kind == "ping":
                await self.send_local({"type": "pong"})
                if self.caller is not None and await db(reports.client_seen)(client_id=self.client_id):
                    await reports.reports_deliver(client_id=self.client_id)
            elif kind == "auth":
                await self.auth_frame(content)
            elif kind not in protocol.CLIENT_TYPES:
                await self.send_error("unknown_type", protocol.message_for("unknown_type"))
            elif self.caller is None:
                await self.send_error("not_authenticated", protocol.message_for("not_authenticated"))
            elif kind == "chat":
                await self.chat(content)
            elif kind == "resume":
                await self.resume(content)
            elif kind == "stop":
                await self.stop()
        except ApiError as exc:
            extra = {"field": exc.field} if exc.field else {}
            await self.send_error(exc.code, exc.message, **extra, **exc.extra)

    async def send_local(self, frame: dict) -> None:
        """A frame for this socket only: it repeats the seq of the last stream frame sent here."""
        await self.send_json({**frame, "seq": self.delivered})

    async def send_error(self, code: str, message: str, **extra) -> None:
        await self.send_local(protocol.error_frame(code, message, **extra))

    # --- who may connect ---------------------------------------------------------------------

    async def auth_expired(self):
        if self.caller is None:
            await self.send_error("auth_timeout", protocol.message_for("auth_timeout"))
            await self.close(code=CLOSE_AUTH_TIMEOUT)

    async def auth_frame(self, content: dict):
        if self.caller is not None:
            raise ApiError("already_authenticated", "이미 인증되었습니다. (Already authenticated.)")
        await self.authenticate(None, token=content.get("token"), last_seq=content.get("last_seq"))

    async def authenticate(self, user, *, token=None, last_seq=None):
        # Two trips to the database pool for everything a connect needs (there were five thread hops
        # on the process's one sync thread): who it is before subscribing, reports after it.
        def load():
            who = services.user_from_token(raw_token=token) if user is None else user
            caller = services.caller_load(user=who)
            client = services.client_attach(caller=caller, client_id=self.client_id)
            return (caller, client, services.projects_of(caller=caller), services.client_has_pending(client_pk=client.pk),
                    reports.reports_waiting(client=client))

        try:
            caller, client, projects, pending, waiting = await db(load)()
        except ApiError as exc:
            await self.send_error(exc.code, exc.message)
            if exc.code in ("client_forbidden", "account_invalid"):
                await self.close(code=CLOSE_FORBIDDEN)
            return
        if self.auth_deadline is not None:
            self.auth_deadline.cancel()
            self.auth_deadline = None
        self.caller, self.client = caller, client
        # Subscribe first, then read where the client's stream is: nothing after it can be missed.
        await connections.client_register(channel_name=self.channel_name, client_id=self.client_id,
                                          organization_id=caller.organization.pk, inbox=self.inbox)
        self.registered = True
        if last_seq is not None and not protocol.seq_valid(last_seq):
            last_seq = 0  # a resume point that is not a seq: the client gets everything it can
        self.delivered = last_seq if last_seq is not None else await backlog.seq_current(client_id=self.client_id)
        await self.send_local({"type": "ready", "protocol": protocol.PROTOCOL_VERSION, "client_id": self.client_id,
                               "user": caller.label, "projects": projects})

        def seen():
            # Present only now that the socket is subscribed: a report sent from here on reaches it live.
            # One stored after the look-up above but before this found no presence and set the
            # waiting flag that client_seen returns; without either there is nothing to claim.
            flagged = reports.client_seen(client_id=self.client_id)
            return reports.claim_for(self.client_id) if flagged or waiting else []

        claimed = await db(seen)()
        if last_seq is not None:
            await self.resume_from(last_seq, reports_claimed=claimed)
        else:
            # Until the client's next frame, live frames wait here: if it is a `resume`, the resume
            # sends them in order (from the backlog); otherwise they go out first (or after HOLD_SECONDS).
            self.holding = []
            self.hold_timer = asyncio.get_running_loop().call_later(
                HOLD_SECONDS, lambda: asyncio.ensure_future(self.release_held()))
            await reports.reports_send(client_id=self.client_id, claimed=claimed)
        if pending:
            # A turn left pending (its driver's process died, or it was sent while none ran) gets answered.
            await answering.driver_kick(client_pk=client.pk, client_id=self.client_id)

    # --- chat, stop --------------------------------------------------------------------------

    async def chat(self, content: dict):
        accepted = await db(services.chat_accept)(caller=self.caller, client=self.client, content=content)
        if accepted.created:
            turn = accepted.turn
            await connections.client_send(client_id=self.client_id, frame=protocol.frame_queued(
                turn_id=turn.id, message_id=accepted.entry.message_id, message=turn.user_text,
                agent_name=turn.session.agent.name, position=accepted.position))
        else:
            # A retry of a message already stored: acknowledge it again, to this socket only.
            await self.send_local(protocol.frame_queued(
                turn_id=accepted.turn.id, message_id=accepted.entry.message_id, message=accepted.turn.user_text,
                agent_name=content.get("agent_name"), position=accepted.position) | {"duplicate": True})
        # Nothing of this client ahead of it: the driver starts on it without looking the queue up.
        first = accepted.entry if accepted.created and accepted.position == 0 else None
        await answering.driver_kick(client_pk=self.client.pk, client_id=self.client_id, first=first)

    async def stop(self):
        def cancel():
            current = services.client_turn_current(client=self.client)
            if current is not None:
                answering.answer_cancel(turn_id=current.turn_id)
            return current

        if await db(cancel)() is None:
            raise ApiError("nothing_to_stop", "멈출 답변이 없습니다. (There is no answer to stop.)")

    # --- delivery in seq order ---------------------------------------------------------------

    def stop_holding(self) -> None:
        if self.hold_timer is not None:
            self.hold_timer.cancel()
            self.hold_timer = None
        self.holding = None

    async def release_held(self) -> None:
        held = self.holding or []
        self.stop_holding()
        for frame in held:
            await self.deliver(frame)

    async def deliver(self, frame: dict) -> None:
        if self.holding is not None:
            self.holding.append(frame)
            return
        seq = int(frame.get("seq") or 0)
        if seq <= self.delivered:
            return  # already sent on this socket
        if seq > self.delivered + 1:
            # An earlier frame is still on its way (or was dropped): the backlog has it.
            missing, _complete = await backlog.frames_after(client_id=self.client_id, after=self.delivered,
                                                            limit=seq - self.delivered - 1)
            for earlier in missing:
                if self.delivered < earlier["seq"] < seq:
                    await self.send_json(earlier)
                    self.delivered = earlier["seq"]
        await self.send_json(frame)
        self.delivered = seq
        self.catch_up_arm(frame)

    async def assistant_frame(self, message: dict):
        await self.deliver(message["frame"])

    # A frame the channel layer dropped (a process's channel over capacity) is filled from the
    # backlog when the next one arrives; the last frame of a turn has no next one. So while a turn
    # is open on this socket, silence for CATCH_UP_SECONDS makes it read the backlog once more.

    def catch_up_disarm(self) -> None:
        if self.catch_up_timer is not None:
            self.catch_up_timer.cancel()
            self.catch_up_timer = None

    def catch_up_arm(self, frame: dict) -> None:
        self.catch_up_disarm()
        if frame.get("type") in ("queued", "start", "response"):
            self.catch_up_timer = asyncio.get_running_loop().call_later(
                CATCH_UP_SECONDS, self.inbox.put_nowait, {"type": "assistant.catch_up"})

    async def assistant_catch_up(self, message: dict):
        self.catch_up_timer = None
        if self.holding is not None:
            return
        missing, _complete = await backlog.frames_after(client_id=self.client_id, after=self.delivered, limit=1000)
        for frame in missing:
            await self.deliver(frame)
        if not missing:
            self.catch_up_timer = asyncio.get_running_loop().call_later(
                CATCH_UP_SECONDS, self.inbox.put_nowait, {"type": "assistant.catch_up"})

    async def assistant_notice(self, message: dict):
        await self.send_local({**message["frame"], "broadcast": True})

    # --- resume ------------------------------------------------------------------------------

    async def resume(self, content: dict):
        await self.resume_from(content.get("last_seq"))

    async def resume_from(self, last_seq, *, reports_claimed=None) -> None:
        """Send everything after `last_seq` (backlog, or a snapshot when it was trimmed), then live.

        Channels hands this consumer one message at a time, so no live frame interleaves: after
        this, live frames at or below what was sent are dropped by seq.
        """
        if not protocol.seq_valid(last_seq):
            raise ApiError("invalid", f"last_seq는 0 이상 {protocol.MAX_SEQ} 이하의 정수입니다. "
                           f"(last_seq is a whole number from 0 to {protocol.MAX_SEQ}.)", field="last_seq")
        frames = await resume_frames(client_id=self.client_id, client_pk=self.client.pk, last_seq=last_seq)
        self.delivered = last_seq
        for frame in frames:
            await self.send_json(frame)
            self.delivered = max(self.delivered, frame["seq"])
        if reports_claimed is not None:
            await reports.reports_send(client_id=self.client_id, claimed=reports_claimed)
        else:
            await self.reports_pending()

    async def reports_pending(self) -> None:
        """Reports that waited for this client go out now (into its stream: every tab gets them once)."""
        await db(reports.client_seen)(client_id=self.client_id)
        await reports.reports_deliver(client_id=self.client_id)
