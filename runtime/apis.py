"""Runtime HTTP API: chat (JSON or SSE), a session's turns, versioned prompts."""

from __future__ import annotations

from adrf.views import APIView as AsyncAPIView
from asgiref.sync import sync_to_async
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import renderers, serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from mejai.errors import ApiError
from runtime import prompts, selectors, services
from runtime.auth import OPERATOR_AUTHENTICATION, ApiKeyAuthentication, HasOrganization
from runtime.http import (
    ERROR_SCHEMA,
    EventStreamRenderer,
    JsonErrorsMixin,
    LimitedJSONParser,
    MessageTextField,
    PayloadOutput,
    json_object,
    outcome_response,
    stream_requested,
)
from runtime.models import PromptTemplate, PromptVersion, Turn
from runtime.sse import sse_numbered, sse_response


class ChatInput(serializers.Serializer):
    message = MessageTextField()
    session_id = serializers.UUIDField(required=False, allow_null=True)
    client_message_id = serializers.CharField(required=False, allow_blank=True, max_length=128)
    external_id = serializers.CharField(required=False, allow_blank=True, max_length=255)
    agent = serializers.CharField(required=False, allow_blank=True, max_length=100)
    context = serializers.DictField(required=False, default=dict)
    metadata = serializers.DictField(required=False, default=dict)


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
        "`start`, `delta`, `message`, `error` (see docs/runtime.md, \"The event vocabulary\").",
    )
    async def post(self, request):
        if not isinstance(request.data, dict):
            raise ApiError("invalid", "The body must be a JSON object.", 400)
        serializer = ChatInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        organization = request.user.organization
        page = serializer.validated_data.get("context") or {}
        # Store first, so bad input fails as JSON and the message is kept even if the LLM fails.
        turn, _ = await sync_to_async(services.api_chat_start)(organization=organization, data=serializer.validated_data)
        events = services.turn_answer_stream(turn=turn, page=page)
        if stream_requested(request):
            return sse_response(sse_numbered(events))
        return outcome_response(await services.outcome_gather(events))


class TurnOutput(serializers.ModelSerializer):
    class Meta:
        model = Turn
        fields = ["id", "seq", "user_text", "reply_text", "payload", "status", "handled_by", "model", "prompt_version",
                  "tokens_in", "tokens_out", "ttft_ms", "latency_ms", "error_code", "created_at", "completed_at"]


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


class PromptApi(JsonErrorsMixin, APIView):
    """Base of the prompt APIs: an organization API key or a staff JWT (runtime.auth.OPERATOR_AUTHENTICATION)."""

    authentication_classes = OPERATOR_AUTHENTICATION
    permission_classes = [HasOrganization]


class PromptListApi(PromptApi):
    """The organization's prompts with their versions; POST creates a prompt or a new version of it."""

    class PromptCreateInput(serializers.Serializer):
        name = serializers.SlugField(max_length=100, help_text="The prompt's name (letters, digits, -, _).")
        text = serializers.CharField(max_length=50_000, help_text="The system prompt text of this version.")
        note = serializers.CharField(required=False, allow_blank=True, max_length=200, help_text="Why it changed.")
        activate = serializers.BooleanField(required=False, default=False, help_text="Make it the active version now.")

    @extend_schema(responses=PromptTemplateOutput(many=True))
    def get(self, request):
        templates = selectors.prompt_templates_for_org(organization=request.user.organization)
        return Response(PromptTemplateOutput(templates, many=True).data)

    @extend_schema(request=PromptCreateInput, responses={201: PromptVersionOutput, 400: ERROR_SCHEMA})
    def post(self, request):
        """Create a prompt (or a new version of it)."""
        data = self.PromptCreateInput(data=json_object(request))
        data.is_valid(raise_exception=True)
        values = data.validated_data
        template = prompts.prompt_template_get_or_create(organization=request.user.organization, name=values["name"])
        version = prompts.prompt_version_create(
            template=template, text=values["text"], note=values.get("note", ""),
            actor_label=request.user.label, activate=values["activate"],
        )
        return Response(PromptVersionOutput(version).data, status=status.HTTP_201_CREATED)


class PromptDetailApi(PromptApi):
    """One prompt, by name, with its versions."""

    @extend_schema(responses={200: PromptTemplateOutput, 404: ERROR_SCHEMA})
    def get(self, request, name: str):
        template = selectors.prompt_template_get_for_org(organization=request.user.organization, name=name)
        return Response(PromptTemplateOutput(template).data)


class PromptVersionActivateApi(PromptApi):
    """Activate a prompt version (audited); the previously active one is deactivated."""

    @extend_schema(request=None, responses={200: PromptVersionOutput, 404: ERROR_SCHEMA})
    def post(self, request, version_id: int):
        version = PromptVersion.objects.filter(pk=version_id, template__organization=request.user.organization).first()
        if version is None:
            raise ApiError("not_found", "Prompt version not found.", 404)
        version = prompts.prompt_version_activate(version=version, actor_label=request.user.label)
        return Response(PromptVersionOutput(version).data)


class PromptRollbackApi(PromptApi):
    """Re-activate the version that was active before the current one (audited)."""

    @extend_schema(request=None, responses={200: PromptVersionOutput, 404: ERROR_SCHEMA, 409: ERROR_SCHEMA})
    def post(self, request, template_id: int):
        template = PromptTemplate.objects.filter(pk=template_id, organization=request.user.organization).first()
        if template is None:
            raise ApiError("not_found", "Prompt not found.", 404)
        version = prompts.prompt_version_rollback(template=template, actor_label=request.user.label)
        return Response(PromptVersionOutput(version).data)

