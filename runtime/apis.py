"""Runtime HTTP API: chat (JSON or SSE), a session's turns, versioned prompts."""

from __future__ import annotations

from adrf.views import APIView as AsyncAPIView
from asgiref.sync import sync_to_async
from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field, inline_serializer
from rest_framework import parsers, renderers, serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from mejai.errors import ApiError
from runtime import prompts, selectors, services
from runtime.auth import ApiKeyAuthentication, HasOrganization
from runtime.models import Channel, PromptTemplate, PromptVersion, Turn
from runtime.sse import sse_response


class EventStreamRenderer(renderers.BaseRenderer):
    """Lets content negotiation accept `Accept: text/event-stream`; streams bypass rendering."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return renderers.JSONRenderer().render(data)


class LimitedJSONParser(parsers.JSONParser):
    """JSON bodies up to RUNTIME_MAX_BODY_BYTES; larger ones get a 413, not a memory spike."""

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        limit = settings.RUNTIME_MAX_BODY_BYTES
        length = request.META.get("CONTENT_LENGTH") if request is not None else None
        if length and str(length).isdigit() and int(length) > limit:
            raise ApiError("payload_too_large", f"The request body is limited to {limit:,} bytes.", 413)
        data = super().parse(stream, media_type, parser_context)
        return data


def stream_requested(request) -> bool:
    accept = request.META.get("HTTP_ACCEPT", "")
    return "text/event-stream" in accept or request.query_params.get("stream") in ("1", "true")


class JsonErrorsMixin:
    """Errors are always JSON in the one error shape, even when the client asked for a stream."""

    def handle_exception(self, exc):
        self.request.accepted_renderer = renderers.JSONRenderer()
        self.request.accepted_media_type = "application/json"
        return super().handle_exception(exc)


def error_status(code: str) -> int:
    return {
        "llm_timeout": status.HTTP_504_GATEWAY_TIMEOUT,
        "order_timeout": status.HTTP_409_CONFLICT,
        "turn_in_progress": status.HTTP_409_CONFLICT,
        "llm_rate_limited": status.HTTP_503_SERVICE_UNAVAILABLE,
    }.get(code, status.HTTP_502_BAD_GATEWAY)


def outcome_response(outcome: services.TurnOutcome) -> Response:
    """JSON for a gathered turn: the payload, or the error with the ids of the kept message."""
    if outcome.ok:
        return Response(outcome.payload)
    error = dict(outcome.error)
    error.pop("type", None)
    error.pop("v", None)
    return Response({"error": error}, status=error_status(error.get("code", "")))


@extend_schema_field(OpenApiTypes.STR)
class MessageTextField(serializers.Field):
    """Message text as sent: cleaning (NUL, controls) and limits are the pipeline's, so every channel agrees."""

    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return data

    def to_representation(self, value):
        return value


class ChatInput(serializers.Serializer):
    message = MessageTextField()
    session_id = serializers.UUIDField(required=False, allow_null=True)
    client_message_id = serializers.CharField(required=False, allow_blank=True, max_length=128)
    external_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
    agent = serializers.CharField(required=False, allow_blank=True, max_length=100)
    context = serializers.DictField(required=False, default=dict)
    metadata = serializers.DictField(required=False, default=dict)


class UsageOutput(serializers.Serializer):
    model = serializers.CharField(allow_null=True)
    prompt_version = serializers.IntegerField(allow_null=True)
    tokens_in = serializers.IntegerField(allow_null=True)
    tokens_out = serializers.IntegerField(allow_null=True)
    ttft_ms = serializers.IntegerField(allow_null=True)
    latency_ms = serializers.IntegerField(allow_null=True)


class PayloadOutput(serializers.Serializer):
    message = serializers.CharField()
    quick_replies = serializers.ListField(child=serializers.DictField())
    render_plan = serializers.ListField(child=serializers.DictField())
    response_schema = serializers.DictField(allow_null=True)
    session_id = serializers.UUIDField()
    turn_id = serializers.UUIDField()
    usage = UsageOutput()


ERROR_SCHEMA = inline_serializer(
    "Error",
    {"error": inline_serializer("ErrorBody", {"code": serializers.CharField(), "message": serializers.CharField()})},
)


def _chat_prepare(*, organization, data: dict) -> dict:
    """Resolve agent, session and end user for a runtime API call; kwargs for turn_start."""
    session = None
    if data.get("session_id"):
        session = selectors.session_get_for_org(organization=organization, session_id=data["session_id"])
    # A session keeps its agent; the lookup only matters when it can fail (a named or inactive agent).
    if session is None or data.get("agent") or not session.agent.is_active:
        agent = selectors.agent_for_org(organization=organization, name=data.get("agent") or None)
    end_user = None
    external_id = (data.get("external_id") or "").strip()
    if external_id:
        from endusers.services import identity_resolve

        # The caller holds an API key: its external id is a verified identity.
        end_user = identity_resolve(organization=organization, kind="external_id", value=external_id, verified=True)
    if session is not None:
        agent = session.agent
        if end_user is not None and session.end_user_id not in (None, end_user.pk):
            raise ApiError("session_not_found", "Session not found.", 404, field="session_id")
    metadata = {k: v for k, v in (data.get("metadata") or {}).items() if isinstance(k, str)}
    return dict(
        organization=organization,
        agent=agent,
        channel=Channel.API,
        text=data["message"],
        session=session,
        end_user=end_user,
        client_message_id=data.get("client_message_id") or "",
        idempotency_scope=f"external:{external_id}",
        session_metadata={**metadata, "external_id": external_id} if external_id else metadata,
    )


def _chat_start(*, organization, data: dict):
    """Resolve and store the message in one thread hop: (turn, created)."""
    return services.turn_start(**_chat_prepare(organization=organization, data=data))


class RuntimeChatApi(JsonErrorsMixin, AsyncAPIView):
    """Send a user message and get the assistant's answer, as JSON or as server-sent events."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasOrganization]
    parser_classes = [LimitedJSONParser]
    renderer_classes = [renderers.JSONRenderer, EventStreamRenderer]

    @extend_schema(
        operation_id="runtime_chat",
        request=ChatInput,
        parameters=[OpenApiParameter("stream", str, description="1: answer as text/event-stream")],
        responses={200: PayloadOutput, 400: ERROR_SCHEMA, 401: ERROR_SCHEMA, 404: ERROR_SCHEMA,
                   413: ERROR_SCHEMA, 415: ERROR_SCHEMA, 502: ERROR_SCHEMA},
        description="JSON by default; `Accept: text/event-stream` or `?stream=1` streams events "
        "`start`, `delta`, `message`, `error` (see docs/runtime-events.md).",
    )
    async def post(self, request):
        if not isinstance(request.data, dict):
            raise ApiError("invalid", "The body must be a JSON object.", 400)
        serializer = ChatInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        organization = request.user.organization
        page = serializer.validated_data.get("context") or {}
        # Store first, so bad input fails as JSON and the message is kept even if the LLM fails.
        turn, _ = await sync_to_async(_chat_start)(organization=organization, data=serializer.validated_data)
        events = services.turn_answer_stream(turn=turn, page=page)
        if stream_requested(request):
            return sse_response(events)
        return outcome_response(await services.outcome_gather(events))


class TurnOutput(serializers.ModelSerializer):
    class Meta:
        model = Turn
        fields = ["id", "seq", "user_text", "reply_text", "payload", "status", "handled_by", "model", "prompt_version",
                  "tokens_in", "tokens_out", "ttft_ms", "latency_ms", "error_code", "diagnostics", "created_at", "completed_at"]


class SessionTurnsApi(JsonErrorsMixin, ListAPIView):
    """The turns of one of the organization's sessions, oldest first."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasOrganization]
    serializer_class = TurnOutput

    def get_queryset(self):
        session = selectors.session_get_for_org(organization=self.request.user.organization, session_id=self.kwargs["session_id"])
        return selectors.session_turns(session=session)


# --- prompts -------------------------------------------------------------------------------

class PromptVersionOutput(serializers.ModelSerializer):
    class Meta:
        model = PromptVersion
        fields = ["id", "version", "text", "note", "is_active", "created_at"]


class PromptTemplateOutput(serializers.ModelSerializer):
    versions = PromptVersionOutput(many=True)

    class Meta:
        model = PromptTemplate
        fields = ["id", "name", "description", "versions"]


class PromptListApi(JsonErrorsMixin, APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasOrganization]

    class PromptCreateInput(serializers.Serializer):
        name = serializers.SlugField(max_length=100)
        text = serializers.CharField(max_length=50_000)
        note = serializers.CharField(required=False, allow_blank=True, max_length=200)
        activate = serializers.BooleanField(required=False, default=False)

    @extend_schema(responses=PromptTemplateOutput(many=True))
    def get(self, request):
        templates = selectors.prompt_templates_for_org(organization=request.user.organization)
        return Response(PromptTemplateOutput(templates, many=True).data)

    @extend_schema(request=PromptCreateInput, responses={201: PromptVersionOutput})
    def post(self, request):
        """Create a prompt (or a new version of it)."""
        data = self.PromptCreateInput(data=request.data)
        data.is_valid(raise_exception=True)
        template = prompts.prompt_template_get_or_create(organization=request.user.organization, name=data.validated_data["name"])
        version = prompts.prompt_version_create(
            template=template, text=data.validated_data["text"], note=data.validated_data.get("note", ""),
            actor_label=request.user.label, activate=data.validated_data["activate"],
        )
        return Response(PromptVersionOutput(version).data, status=status.HTTP_201_CREATED)


class PromptVersionActivateApi(JsonErrorsMixin, APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasOrganization]

    @extend_schema(request=None, responses={200: PromptVersionOutput, 404: ERROR_SCHEMA})
    def post(self, request, version_id: int):
        version = PromptVersion.objects.filter(pk=version_id, template__organization=request.user.organization).first()
        if version is None:
            raise ApiError("not_found", "Prompt version not found.", 404)
        version = prompts.prompt_version_activate(version=version, actor_label=request.user.label)
        return Response(PromptVersionOutput(version).data)


class PromptRollbackApi(JsonErrorsMixin, APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasOrganization]

    @extend_schema(request=None, responses={200: PromptVersionOutput, 404: ERROR_SCHEMA, 409: ERROR_SCHEMA})
    def post(self, request, template_id: int):
        template = PromptTemplate.objects.filter(pk=template_id, organization=request.user.organization).first()
        if template is None:
            raise ApiError("not_found", "Prompt not found.", 404)
        version = prompts.prompt_version_rollback(template=template, actor_label=request.user.label)
        return Response(PromptVersionOutput(version).data)

