"""The widget WebSocket `ws(s)://…/api/widget/ws`: join with a widget token, send messages, get deltas.

Client frames: {"type": "join", "token", "session_id"?}, {"type": "user_message", "message",
"client_message_id"?, "context"?}, {"type": "ping"}. Server frames: {"type": "joined", "session_id"},
{"type": "delta", "turn_id", "text", "index"}, {"type": "assistant_message", …standard payload},
{"type": "error", "code", "message"}, {"type": "pong"}. Turns sent from other tabs (SSE or socket)
arrive here too, through the session's channel-layer group.
"""

from __future__ import annotations

import asyncio
import json
import logging

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone

from mejai.errors import ApiError
from runtime import background, live
from runtime.events import live_envelope_event
from widgets import services
from widgets.ratelimit import rate_limits_hit, widget_caps
from widgets.streams import stream_keys, stream_slot_give_back, stream_slot_take
from widgets.tokens import TOKEN_EXPIRED_MESSAGE

logger = logging.getLogger(__name__)

CLOSE_ORIGIN_NOT_ALLOWED = 4403
CLOSE_TOKEN_EXPIRED = 4401
CLOSE_WIDGET_UNAVAILABLE = 4404


def _header(scope, name: bytes) -> str:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return ""


def frame_for(event_type: str, data: dict) -> dict | None:
    """The socket frame of a turn event (start is not sent: the client knows it sent a message)."""
    data = {k: v for k, v in data.items() if k not in ("type", "v")}
    if event_type == "delta":
        return {"type": "delta", "turn_id": data.get("turn_id"), "text": data.get("text", ""),
                "index": data.get("index")}
    if event_type == "message":
        return {"type": "assistant_message", **data}
    if event_type == "error":
        return {"type": "error", **data}
    return None


class WidgetConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        self.caller = None
        self.session_id = None
        self.group = None
        self.widget_group = None
        self.expiry: asyncio.TimerHandle | None = None
        self.stream_slots: list[str] = []
        self.answers: set[asyncio.Task] = set()
        await self.accept()

    async def disconnect(self, code):
        for task in list(self.answers):
            task.cancel()  # stops following; the answer itself finishes and is replayed on reconnect
        if self.expiry is not None:
            self.expiry.cancel()
        stream_slot_give_back(self.stream_slots)
        self.stream_slots = []
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        if self.widget_group:
            await self.channel_layer.group_discard(self.widget_group, self.channel_name)

    # --- the token's life: closed at its expiry, and when the widget stops admitting it -----------

    def _admitted(self) -> bool:
        return self.caller is not None and self.caller.claims.expires_at > timezone.now()

    async def _close_expired(self):
        self.caller = None
        await self.send_error("token_expired", TOKEN_EXPIRED_MESSAGE)
        await self.close(code=CLOSE_TOKEN_EXPIRED)

    def _expiry_schedule(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        delay = max(0.0, (self.caller.claims.expires_at - timezone.now()).total_seconds())
        loop = asyncio.get_running_loop()
        self.expiry = loop.call_later(delay, lambda: loop.create_task(self._close_expired()))

    async def widget_changed(self, message: dict):
        """The widget was saved (widgets.receivers): deactivated or re-keyed → this socket is closed."""
        if self.caller is None or message.get("widget_id") != self.caller.widget.pk:
            return
        if message.get("is_active") and message.get("key") == self.caller.claims.key_fingerprint:
            return
        self.caller = None
        for task in list(self.answers):
            task.cancel()
        await self.send_error(*services.WIDGET_NOT_FOUND[:2])
        await self.close(code=CLOSE_WIDGET_UNAVAILABLE)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        if text_data is None:
            await self.send_error("invalid", "Frames are JSON text.")
            return
        if len(text_data) > settings.RUNTIME_MAX_BODY_BYTES:
            await self.send_error("payload_too_large", "The frame is too large.")
            return
        from mejai.middleware import JSON_MAX_DEPTH, json_too_deep

        if json_too_deep(text_data.encode("utf-8", "surrogatepass")):
            await self.send_error("json_too_deep", f"JSON may nest at most {JSON_MAX_DEPTH} levels.")
            return
        try:
            content = json.loads(text_data)
        except (ValueError, RecursionError):
            await self.send_error("malformed_json", "The frame is not valid JSON.")
            return
        if not isinstance(content, dict):
            await self.send_error("invalid", "A frame is a JSON object with a type.")
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs):
        kind = content.get("type")
        try:
            if kind == "ping":
                await self.send_json({"type": "pong"})
            elif kind == "join":
                await self.join(content)
            elif kind == "user_message":
                await self.user_message(content)
            else:
                await self.send_error("invalid_type", "Unknown frame type. Use join, user_message or ping.")
        except ApiError as exc:
            await self.send_error(exc.code, exc.message, **exc.extra)

    async def send_error(self, code: str, message: str, **extra):
        await self.send_json({"type": "error", "code": code, "message": message, **extra})

    # --- join ------------------------------------------------------------------------------

    def _origin_ok(self, caller) -> bool:
        """A browser's socket comes from the embed page (mejai's origin) or the token's own page."""
        sent = _header(self.scope, b"origin")
        if not sent:
            return True  # not a browser; the token is what authorizes
        origin = services.origin_parse(sent)
        if origin is None:
            return False
        own = {str(o) for o in (services.origin_parse(v) for v in self._own_origins()) if o is not None}
        return str(origin) == caller.claims.origin or str(origin) in own

    def _own_origins(self) -> list[str]:
        host = _header(self.scope, b"host")
        origins = [settings.PUBLIC_BASE_URL]
        if host:
            origins += [f"http://{host}", f"https://{host}"]
        return origins

    async def join(self, content: dict):
        token = content.get("token")
        if not isinstance(token, str):
            raise ApiError("token_missing", "위젯 토큰이 필요합니다. (A widget token is required.)", 401)
        def load():
            caller = services.widget_caller_load(raw_token=token)
            rate_limits_hit(("STREAM_VISITOR", f"{caller.widget.pk}|{caller.claims.principal}"))
            return caller

        caller = await database_sync_to_async(load)()
        if not self._origin_ok(caller):
            await self.send_error("origin_not_allowed", "This page may not use the widget.")
            await self.close(code=CLOSE_ORIGIN_NOT_ALLOWED)
            return
        session = await database_sync_to_async(services.widget_session_get)(caller=caller, session_id=content.get("session_id"))
        keys = stream_keys(widget_id=caller.widget.pk, principal=caller.claims.principal, ip=self._client_ip())
        if [key for key, _ in keys] != self.stream_slots:  # a re-join as someone else moves the slots
            taken = stream_slot_take(keys)  # 429 too_many_streams
            stream_slot_give_back(self.stream_slots)
            self.stream_slots = taken
        group = live.session_group(session.pk)
        if self.group and self.group != group:
            await self.channel_layer.group_discard(self.group, self.channel_name)
        await self.channel_layer.group_add(group, self.channel_name)
        widget_group = services.widget_revocation_group(caller.widget.pk)
        if self.widget_group and self.widget_group != widget_group:
            await self.channel_layer.group_discard(self.widget_group, self.channel_name)
        await self.channel_layer.group_add(widget_group, self.channel_name)
        self.caller, self.session_id, self.group, self.widget_group = caller, session.pk, group, widget_group
        self._expiry_schedule()
        await self.send_json({"type": "joined", "session_id": str(session.pk)})

    # --- messages ----------------------------------------------------------------------------

    def _client_ip(self) -> str:
        from mejai.proxy import client_ip_of_scope

        return client_ip_of_scope(self.scope)

    async def user_message(self, content: dict):
        if self.caller is None:
            raise ApiError("not_joined", "Send a join frame with the widget token first.", 400)
        # A token may expire while the socket is open: check it on every message.
        if not self._admitted():
            await self._close_expired()
            return
        caller, ip = self.caller, self._client_ip()
        context = content.get("context")
        cmid = content.get("client_message_id")
        if cmid is not None and not isinstance(cmid, str):
            raise ApiError("invalid", "client_message_id must be a string.", 400, field="client_message_id")

        def start():
            rate_limits_hit(("CHAT_IP", f"{ip}|{caller.widget.pk}"),
                            ("CHAT_VISITOR", f"{caller.widget.pk}|{caller.claims.principal}"),
                            *widget_caps(caller.widget.pk))
            return services.widget_chat_start(caller=caller, text=content.get("message"), session_id=self.session_id,
                                              client_message_id=cmid or "", context=context if isinstance(context, dict) else None)

        turn, created = await database_sync_to_async(start)()
        task = asyncio.ensure_future(self._answer(turn, created, services.page_context_clean(context)))
        self.answers.add(task)
        task.add_done_callback(self.answers.discard)

    async def _answer(self, turn, created: bool, page: dict):
        # The answer runs in the background (it outlives this socket); this socket follows it, and
        # skips the copies of its own turn's events that arrive through the session group.
        events = background.turn_answer_follow(turn_id=turn.pk, page=page, sender=self.channel_name)
        try:
            async for event in events:
                if not self._admitted():
                    return  # expired or revoked while answering: nothing more is delivered here
                frame = frame_for(event.type, event.as_dict())
                if frame is not None:
                    await self.send_json(frame)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("widget socket: answering turn %s failed", turn.pk)
            await self.send_error("internal_error", "답변 중 오류가 발생했어요. (Something went wrong.)")

    # --- events of other tabs ----------------------------------------------------------------

    async def runtime_turn_event(self, message: dict):
        """A live event of the session (runtime.live envelope), from another tab or process."""
        if message.get("sender") == self.channel_name or not self._admitted():
            return
        event = live_envelope_event(message)
        if event is None:
            return
        frame = frame_for(event.type, event.as_dict())
        if frame is not None:
            await self.send_json(frame)
