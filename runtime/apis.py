"""Runtime HTTP API: chat (JSON or SSE), a session's turns, versioned prompts."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, renderers, serializers, status
from rest_framework.generics import ListAPIView
from rest_framework.response import Response
from rest_framework.views import APIView

from mejai.errors import ApiError
from runtime import prompts, selectors, services
from runtime.auth import OPERATOR_AUTHENTICATION, ApiKeyAuthentication, HasOrganization, api_key_principal
from runtime.http import (
    ERROR_SCHEMA,
    EventStreamRenderer,
    JsonErrorsMixin,
    LimitedJSONParser,
    MessageTextField,
    PayloadOutput,
    json_body,
    json_object,
    json_response,
    outcome_parts,
    plain_view,
    stream_requested,
)
from runtime.models import ApiKey, PromptTemplate, PromptVersion, Turn
from runtime.sse import sse_numbered, sse_response


class ChatInput(serializers.Serializer):
    message = MessageTextField(help_text="The end user's message (up to RUNTIME_MAX_MESSAGE_CHARS characters, "
                               "4000 by default). A message starting with `/` may be a command (`/help`).")
    session_id = serializers.UUIDField(
        required=False, allow_null=True,
        help_text="Continue this conversation (the `session_id` of an earlier answer). Without it, a call with "
        "`external_id` continues that person's open session with the same agent if its last message is at most "
        "RUNTIME_API_SESSION_IDLE_MINUTES (30) old; otherwise a new session starts.")
    new_session = serializers.BooleanField(
        required=False, default=False,
        help_text="true: start a new session even when the person has an open one (ignored with `session_id`).")
    client_message_id = serializers.CharField(
        required=False, allow_blank=True, max_length=128,
        help_text="Your id of this message (idempotency key): a retry with the same id returns the same turn "
        "instead of a second answer.")
    external_id = serializers.CharField(
        required=False, allow_blank=True, max_length=255,
        help_text="Your stable id of the end user (trusted, since it comes with your API key). Links the "
        "conversation to a contact with their memories; without it the session is anonymous.")
    agent = serializers.CharField(required=False, allow_blank=True, max_length=100,
                                  help_text="Name of the agent to answer; empty: the organization's first active agent.")
    context = serializers.DictField(
        required=False, default=dict,
        help_text="Page context for this answer: `url`, `title`, `referrer`, `locale` (`ko`/`en`: the language of "
        "command replies for the session). Other keys are ignored.")
    metadata = serializers.DictField(required=False, default=dict,
                                     help_text="Free-form JSON stored on a new session (shown to operators).")


class RuntimeChatApi(APIView):
    """Send a user message and get the assistant's answer, as JSON or as server-sent events.

    Documentation only (drf-spectacular reads it): requests go to `runtime_chat`, a plain async view
    with the same contract (runtime.http.plain_view)."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasOrganization]
    parser_classes = [LimitedJSONParser]
    renderer_classes = [renderers.JSONRenderer, EventStreamRenderer]

    @extend_schema(
        operation_id="runtime_chat",
        request=ChatInput,
        parameters=[OpenApiParameter("stream", str, description="1: answer as text/event-stream")],
        responses={200: PayloadOutput, 400: ERROR_SCHEMA, 401: ERROR_SCHEMA, 404: ERROR_SCHEMA,
                   413: ERROR_SCHEMA, 415: ERROR_SCHEMA, 502: ERROR_SCHEMA, 503: ERROR_SCHEMA},
        description="Send the end user's message and get the answer: the standard payload as JSON by default; "
        "`Accept: text/event-stream` or `?stream=1` streams the events `start`, `delta`, `message`, `error`. "
        "Multi-turn: pass back `session_id`, or send the same `external_id` "
        "([conversations over the API](/docs/runtime#conversations-over-the-api-multi-turn-by-design)). "
        "The events, the payload and the errors: [docs/runtime](/docs/runtime#the-event-vocabulary-version-1).",
    )
    def post(self, request):  # pragma: no cover - never routed (see runtime_chat)
        raise NotImplementedError


def _chat_start(raw_key: str | None, data, error: Exception | None):
    """One database hop: the key's organization (401 first, as DRF checked it before the body), then
    the body's error if it had one, then the stored turn."""
    if not raw_key:
        raise exceptions.NotAuthenticated()
    principal = api_key_principal(raw_key)
    if error is not None:
        raise error
    return services.api_chat_start(organization=principal.organization, data=data)


def _bearer_key(request) -> str | None:
    scheme, _, raw = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    raw = raw.strip()
    return raw if scheme.lower() == "bearer" and raw.startswith(ApiKey.PREFIX) else None


async def _chat_authenticate(request) -> None:
    raw_key = _bearer_key(request)
    if not raw_key:
        raise exceptions.NotAuthenticated()
    await sync_to_async(api_key_principal)(raw_key)


async def _runtime_chat(request):
    raw_key = _bearer_key(request)
    data, error = None, None
    try:
        body = json_body(request)
        if not isinstance(body, dict):
            raise ApiError("invalid", "The body must be a JSON object.", 400)
        serializer = ChatInput(data=body)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
    except Exception as exc:  # noqa: BLE001 - raised after authentication, in DRF's order
        error = exc
    if not raw_key:
        raise exceptions.NotAuthenticated()
    # Store first, so bad input fails as JSON and the message is kept even if the LLM fails.
    turn, _created = await services.turn_store_shielded(sync_to_async(_chat_start)(raw_key, data, error))
    events = services.turn_answer_stream(turn=turn, page=data.get("context") or {})
    if stream_requested(request):
        return sse_response(sse_numbered(events))
    return json_response(*outcome_parts(await services.outcome_gather(events)))


runtime_chat = plain_view(_runtime_chat, methods=("POST",), schema_view=RuntimeChatApi,
                          renders=("application/json", "text/event-stream"), authenticate=_chat_authenticate)


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

