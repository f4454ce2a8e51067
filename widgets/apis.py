"""Widget HTTP API: init, chat (JSON or SSE), the session stream (+ stream ticket) and events.

The hot endpoints (chat, stream) are plain async views (runtime.http.plain_view) like
`POST /api/runtime/chat`; init, the stream ticket and events stay async DRF views (adrf). Each request
does its database work in one sync_to_async call to a service. CORS is answered here, per view, for
the widget's own origins only.
"""

from __future__ import annotations

import json

from adrf.views import APIView as AsyncAPIView
from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils.cache import patch_vary_headers
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import renderers, serializers, status
from rest_framework.response import Response

from mejai.concurrency import db_release
from mejai.errors import ApiError
from runtime import background, live
from runtime import services as runtime_services
from runtime.http import (
    ERROR_SCHEMA,
    EventStreamRenderer,
    JsonErrorsMixin,
    LimitedJSONParser,
    MessageTextField,
    PayloadOutput,
    TextField,
    json_object,
    json_object_plain,
    json_response,
    outcome_parts,
    plain_view,
    stream_requested,
)
from runtime.sse import sse_numbered, sse_response
from widgets import conf, services
from widgets.ratelimit import client_ip, rate_limit_hit, rate_limits_hit, widget_caps
from widgets.streams import held_while_streaming, stream_keys, stream_slot_take
from widgets.tokens import TOKEN_EXPIRED_MESSAGE, bearer_token, stream_ticket_issue, stream_ticket_redeem

CORS_MAX_AGE = 600


def own_origins(request) -> tuple[str, ...]:
    """mejai's own origins: the quickstart preview runs the widget there."""
    origins = [settings.PUBLIC_BASE_URL]
    try:
        origins.append(request.build_absolute_uri("/"))
    except Exception:  # DisallowedHost: not one of ours
        pass
    return tuple(origins)


def cors_allow_token_origin(request, caller) -> None:
    """A token-authenticated call from a page answers CORS only for the token's own origin."""
    sent = request.META.get("HTTP_ORIGIN")
    if sent and services.origin_parse(sent) is not None and str(services.origin_parse(sent)) == caller.claims.origin:
        request._widget_cors_origin = str(services.origin_parse(sent))


def cors_finalize(request, response) -> None:
    """The widget's CORS answer on every response (plain views; WidgetApiMixin does the same for DRF's)."""
    origin = getattr(request, "_widget_cors_origin", None)
    if origin:
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Expose-Headers"] = "Retry-After"
    patch_vary_headers(response, ["Origin"])
    if response.status_code == 429 and not response.streaming:
        try:
            retry_after = (json.loads(response.content).get("error") or {}).get("retry_after")
        except (ValueError, AttributeError):
            retry_after = None
        if retry_after:
            response["Retry-After"] = str(retry_after)


async def cors_preflight(request, methods: str):
    """CORS preflight: allowed only for origins some active widget allows (a preflight carries no key)."""
    from django.http import HttpResponse

    origin = await sync_to_async(services.widget_cors_origin_known)(origin_header=request.META.get("HTTP_ORIGIN"))
    response = HttpResponse(status=204)
    if origin:
        request._widget_cors_origin = origin
        response["Access-Control-Allow-Methods"] = methods
        response["Access-Control-Allow-Headers"] = "Content-Type, Authorization, Last-Event-ID"
        response["Access-Control-Max-Age"] = str(CORS_MAX_AGE)
    return response


class WidgetApiMixin(JsonErrorsMixin):
    """No DRF authentication (tokens are checked by the services); CORS for the widget's origin only."""

    authentication_classes: list = []
    permission_classes: list = []
    parser_classes = [LimitedJSONParser]
    renderer_classes = [renderers.JSONRenderer]
    cors_methods = "POST, OPTIONS"

    def cors_allow(self, request, origin: str | None) -> None:
        request._widget_cors_origin = origin

    def cors_allow_token_origin(self, request, caller) -> None:
        """A token-authenticated call from a page answers CORS only for the token's own origin."""
        cors_allow_token_origin(getattr(request, "_request", request), caller)

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        origin = getattr(request, "_widget_cors_origin", None) or getattr(
            getattr(request, "_request", None), "_widget_cors_origin", None
        )
        if origin:
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Expose-Headers"] = "Retry-After"
        patch_vary_headers(response, ["Origin"])
        if response.status_code == 429 and isinstance(response, Response):
            retry_after = ((response.data or {}).get("error") or {}).get("retry_after")
            if retry_after:
                response["Retry-After"] = str(retry_after)
        return response

    async def options(self, request, *args, **kwargs):
        """CORS preflight: allowed only for origins some active widget allows (a preflight carries no key)."""
        origin = await sync_to_async(services.widget_cors_origin_known)(origin_header=request.META.get("HTTP_ORIGIN"))
        response = Response(status=status.HTTP_204_NO_CONTENT)
        if origin:
            self.cors_allow(request, origin)
            response["Access-Control-Allow-Methods"] = self.cors_methods
            response["Access-Control-Allow-Headers"] = "Content-Type, Authorization, Last-Event-ID"
            response["Access-Control-Max-Age"] = str(CORS_MAX_AGE)
        return response

    json_object = staticmethod(json_object)


class UserIdField(serializers.CharField):
    """The customer's user id: text, or a whole number (user ids are often numeric in JavaScript)."""

    def to_internal_value(self, data):
        if isinstance(data, int) and not isinstance(data, bool):
            data = str(data)
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


# --- init ------------------------------------------------------------------------------------

class WidgetVisitorInput(serializers.Serializer):
    id = TextField(required=False, allow_blank=True, max_length=64)
    user_id = UserIdField(required=False, allow_blank=True, allow_null=True, max_length=200)
    hash = TextField(required=False, allow_blank=True, allow_null=True, max_length=128)
    name = TextField(required=False, allow_blank=True, allow_null=True, max_length=100)
    email = TextField(required=False, allow_blank=True, allow_null=True, max_length=254)
    phone = TextField(required=False, allow_blank=True, allow_null=True, max_length=40)


class WidgetInitInput(serializers.Serializer):
    public_key = TextField(max_length=64)
    origin = TextField(required=False, allow_blank=True, max_length=300)
    # Long URLs (tracking parameters) are accepted and stored cut to 2,000 characters.
    page_url = TextField(required=False, allow_blank=True, max_length=8192)
    referrer = TextField(required=False, allow_blank=True, allow_null=True, max_length=8192)
    locale = TextField(required=False, allow_blank=True, max_length=35)

    def validate_locale(self, value: str) -> str:
        """A language tag (ko, en, en-US, ko-KR…): English when it starts with "en", else Korean."""
        value = (value or "").strip().lower()
        if not value:
            return ""
        return "en" if value.startswith("en") else "ko"
    visitor = WidgetVisitorInput(required=False)
    session_id = serializers.UUIDField(required=False, allow_null=True)


class WidgetInitOutput(serializers.Serializer):
    widget_token = serializers.CharField()
    token_expires_at = serializers.DateTimeField()
    session_id = serializers.UUIDField()
    visitor_id = serializers.CharField()
    end_user_verified = serializers.BooleanField()
    resumed = serializers.BooleanField()
    widget_config = serializers.DictField()
    history = serializers.ListField(child=serializers.DictField())


class WidgetInitApi(WidgetApiMixin, AsyncAPIView):
    """Start the widget on a page: check where it runs, identify the visitor, open or resume the
    conversation and issue a widget token."""

    @extend_schema(
        operation_id="widget_init", request=WidgetInitInput,
        responses={200: WidgetInitOutput, 400: ERROR_SCHEMA, 401: ERROR_SCHEMA, 403: ERROR_SCHEMA, 404: ERROR_SCHEMA,
                   429: ERROR_SCHEMA},
    )
    async def post(self, request):
        serializer = WidgetInitInput(data=self.json_object(request))
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        meta = request.META
        own = own_origins(request)

        def run() -> dict:
            widget = services.widget_get_active(public_key=data["public_key"])
            check = services.widget_origin_check(
                widget=widget, origin_header=meta.get("HTTP_ORIGIN"), referer_header=meta.get("HTTP_REFERER"),
                page_url=data.get("page_url"), own_origins=own,
            )
            self.cors_allow(request, check.origin)
            rate_limits_hit(("INIT_IP", f"{client_ip(meta)}|{widget.pk}"), ("INIT_WIDGET", str(widget.pk)))
            result = services.widget_init(
                widget=widget, check=check, visitor=dict(data.get("visitor") or {}),
                referrer=data.get("referrer") or "", locale=data.get("locale") or "", session_id=data.get("session_id"),
            )
            return result.as_dict()

        return Response(await sync_to_async(run)())


# --- chat ------------------------------------------------------------------------------------

class WidgetChatInput(serializers.Serializer):
    message = MessageTextField()
    session_id = serializers.UUIDField(required=False, allow_null=True)
    client_message_id = serializers.CharField(required=False, allow_blank=True, max_length=128)
    context = serializers.DictField(required=False, default=dict)
    public_key = serializers.CharField(required=False, allow_blank=True, max_length=64)


class WidgetChatApi(WidgetApiMixin, AsyncAPIView):
    """The visitor's message, answered as the standard payload or streamed as server-sent events.

    Documentation only (drf-spectacular reads it): requests go to `widget_chat`, a plain async view
    with the same contract (runtime.http.plain_view)."""

    renderer_classes = [renderers.JSONRenderer, EventStreamRenderer]

    @extend_schema(
        operation_id="widget_chat", request=WidgetChatInput,
        parameters=[OpenApiParameter("stream", str, description="1: answer as text/event-stream")],
        responses={200: PayloadOutput, 400: ERROR_SCHEMA, 401: ERROR_SCHEMA, 403: ERROR_SCHEMA, 404: ERROR_SCHEMA,
                   429: ERROR_SCHEMA, 502: ERROR_SCHEMA, 503: ERROR_SCHEMA},
        description="`Authorization: Bearer <widget_token>`. Events `start`, `delta`, `message`, `error` as in "
        "docs/runtime.md (\"The event vocabulary\"); each is also published to the session's other tabs.",
    )
    async def post(self, request):  # pragma: no cover - never routed (see widget_chat)
        raise NotImplementedError


async def _widget_chat(request):
    raw = bearer_token(request.META.get("HTTP_AUTHORIZATION"))
    body = json_object_plain(request)
    serializer = WidgetChatInput(data=body)
    meta = request.META

    def run():
        caller = services.widget_caller_load(raw_token=raw, public_key=body.get("public_key") or None)
        cors_allow_token_origin(request, caller)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        rate_limits_hit(("CHAT_IP", f"{client_ip(meta)}|{caller.widget.pk}"),
                        ("CHAT_VISITOR", f"{caller.widget.pk}|{caller.claims.principal}"),
                        *widget_caps(caller.widget.pk))
        turn, created = services.widget_chat_start(
            caller=caller, text=data["message"], session_id=data.get("session_id"),
            client_message_id=data.get("client_message_id") or "", context=data.get("context"),
        )
        return turn, created, services.page_context_clean(data.get("context"))

    turn, _created, page = await sync_to_async(run)()
    # The answer outlives this request (a closed tab still gets it on reconnect); this response
    # follows it, and the session's other tabs get it through the live stream.
    events = background.turn_answer_follow(turn_id=turn.pk, page=page)
    if stream_requested(request):
        return sse_response(sse_numbered(events), keepalive=conf.sse_keepalive_seconds())
    return json_response(*outcome_parts(await runtime_services.outcome_gather(events)))


widget_chat = plain_view(_widget_chat, methods=("POST",), schema_view=WidgetChatApi,
                         renders=("application/json", "text/event-stream"),
                         options=lambda request: cors_preflight(request, "POST, OPTIONS"), finalize=cors_finalize)


# --- the session stream ------------------------------------------------------------------------

class WidgetStreamTicketInput(serializers.Serializer):
    session_id = serializers.UUIDField(required=False, allow_null=True)


class WidgetStreamTicketApi(WidgetApiMixin, AsyncAPIView):
    """A single-use ticket (about 60 s) for `GET /api/widget/stream?ticket=…`, for EventSource clients."""

    @extend_schema(
        operation_id="widget_stream_ticket", request=WidgetStreamTicketInput,
        responses={201: inline_serializer("StreamTicket", {"ticket": serializers.CharField(),
                                                           "expires_in": serializers.IntegerField()}),
                   401: ERROR_SCHEMA, 404: ERROR_SCHEMA, 429: ERROR_SCHEMA},
    )
    async def post(self, request):
        raw = bearer_token(request.META.get("HTTP_AUTHORIZATION"))
        body = self.json_object(request) if request.META.get("CONTENT_LENGTH") not in (None, "", "0") else {}

        def run() -> dict:
            caller = services.widget_caller_load(raw_token=raw)
            self.cors_allow_token_origin(request, caller)
            serializer = WidgetStreamTicketInput(data=body)
            serializer.is_valid(raise_exception=True)
            session = services.widget_session_get(caller=caller, session_id=serializer.validated_data.get("session_id"))
            rate_limit_hit(name="STREAM_VISITOR", key=f"{caller.widget.pk}|{caller.claims.principal}")
            ticket, ttl = stream_ticket_issue(raw_token=raw, session_id=session.pk)
            return {"ticket": ticket, "expires_in": ttl, "session_id": str(session.pk)}

        return Response(await sync_to_async(run)(), status=status.HTTP_201_CREATED)


class WidgetStreamApi(WidgetApiMixin, AsyncAPIView):
    """Server-sent events of one session from any tab: `delta`, `message`, `error` (and `start`).

    Ids are `<seq>` for a finished turn and `<seq>.<n>` within one; `Last-Event-ID` (or
    `?last_event_id=`) replays the finished turns after it. Documentation only: requests go to
    `widget_stream`, a plain async view with the same contract.
    """

    renderer_classes = [renderers.JSONRenderer, EventStreamRenderer]
    cors_methods = "GET, OPTIONS"

    @extend_schema(
        operation_id="widget_stream",
        parameters=[OpenApiParameter("session_id", str), OpenApiParameter("ticket", str),
                    OpenApiParameter("last_event_id", str)],
        responses={(200, "text/event-stream"): str, 401: ERROR_SCHEMA, 404: ERROR_SCHEMA, 429: ERROR_SCHEMA},
    )
    async def get(self, request):  # pragma: no cover - never routed (see widget_stream)
        raise NotImplementedError


async def _widget_stream(request):
    ticket = request.GET.get("ticket") or ""
    raw = bearer_token(request.META.get("HTTP_AUTHORIZATION"))
    session_id = request.GET.get("session_id") or None
    last_event_id = request.META.get("HTTP_LAST_EVENT_ID") or request.GET.get("last_event_id")

    def run():
        token, wanted = raw, session_id
        if not token and ticket:
            token, ticket_session = stream_ticket_redeem(ticket=ticket)
            if wanted and wanted != ticket_session:
                raise ApiError(*services.SESSION_NOT_FOUND, field="session_id")
            wanted = ticket_session
        caller = services.widget_caller_load(raw_token=token)
        cors_allow_token_origin(request, caller)
        session = services.widget_session_get(caller=caller, session_id=wanted)
        rate_limit_hit(name="STREAM_VISITOR", key=f"{caller.widget.pk}|{caller.claims.principal}")
        return session, caller.claims.expires_at, stream_keys(
            widget_id=caller.widget.pk, principal=caller.claims.principal, ip=client_ip(request.META))

    def run_and_release():
        try:
            return run()
        finally:
            db_release()  # the stream may stay open for hours: no connection held

    session, expires_at, keys = await sync_to_async(run_and_release)()
    taken = stream_slot_take(keys)  # 429 too_many_streams when the visitor, address or widget is full
    events = live.session_events_stream(session_id=session.pk, last_event_id=last_event_id, until=expires_at,
                                        expired_message=TOKEN_EXPIRED_MESSAGE)
    return sse_response(held_while_streaming(events, taken), keepalive=conf.sse_keepalive_seconds())


widget_stream = plain_view(_widget_stream, methods=("GET",), schema_view=WidgetStreamApi,
                           renders=("application/json", "text/event-stream"),
                           options=lambda request: cors_preflight(request, "GET, OPTIONS"), finalize=cors_finalize)


# --- events ------------------------------------------------------------------------------------

class WidgetEventInput(serializers.Serializer):
    type = TextField(max_length=40)
    session_id = serializers.UUIDField(required=False, allow_null=True)
    payload = serializers.JSONField(required=False, allow_null=True)
    public_key = serializers.CharField(required=False, allow_blank=True, max_length=64)


class WidgetEventApi(WidgetApiMixin, AsyncAPIView):
    """Record a widget event: open, close, cta_click, form_submit, page_view or load."""

    @extend_schema(
        operation_id="widget_event", request=WidgetEventInput,
        responses={201: inline_serializer("WidgetEventCreated", {"id": serializers.IntegerField()}),
                   400: ERROR_SCHEMA, 401: ERROR_SCHEMA, 403: ERROR_SCHEMA, 404: ERROR_SCHEMA, 429: ERROR_SCHEMA},
    )
    async def post(self, request):
        raw = bearer_token(request.META.get("HTTP_AUTHORIZATION"))
        body = self.json_object(request)

        def run() -> dict:
            caller = services.widget_caller_load(raw_token=raw, public_key=body.get("public_key") or None)
            self.cors_allow_token_origin(request, caller)
            serializer = WidgetEventInput(data=body)
            serializer.is_valid(raise_exception=True)
            data = serializer.validated_data
            rate_limit_hit(name="EVENT_VISITOR", key=f"{caller.widget.pk}|{caller.claims.principal}")
            event = services.widget_event_record(
                caller=caller, event_type=data["type"], session_id=data.get("session_id"), payload=data.get("payload"),
            )
            return {"id": event.pk}

        return Response(await sync_to_async(run)(), status=status.HTTP_201_CREATED)
