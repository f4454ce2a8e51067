"""Shared HTTP plumbing of mejai's JSON APIs: the error mixin and schema, the one request-body guard,
content negotiation for streams, the standard payload's output schema and its error statuses.

Channels (widgets, kakao, mchat, assistant) and the REST apps import these from here, never from
another app's views.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field, inline_serializer
from rest_framework import parsers, renderers, serializers, status
from rest_framework.response import Response

from mejai.errors import ApiError


def _too_large(limit: int) -> ApiError:
    return ApiError("payload_too_large", f"요청 본문이 너무 큽니다. (The request body is limited to {limit:,} bytes.)", 413)


def body_limit_check(request, *, limit: int | None = None) -> int:
    """Refuse a body whose declared Content-Length is over `limit` bytes (RUNTIME_MAX_BODY_BYTES by
    default) before anything reads it: ApiError 413 `payload_too_large`. Returns the limit."""
    limit = settings.RUNTIME_MAX_BODY_BYTES if limit is None else limit
    meta = getattr(request, "META", None) or getattr(getattr(request, "_request", None), "META", {})
    length = str(meta.get("CONTENT_LENGTH") or "")
    if length.isdigit() and int(length) > limit:
        raise _too_large(limit)
    return limit


def body_read(request, *, limit: int | None = None) -> bytes:
    """The raw request body, at most `limit` bytes: ApiError 413 when declared or found larger."""
    limit = body_limit_check(request, limit=limit)
    try:
        body = request.body
    except RequestDataTooBig:
        raise _too_large(limit) from None
    if len(body) > limit:
        raise _too_large(limit)
    return body


def json_object(request, *, limit: int | None = None) -> dict:
    """A DRF request's parsed JSON body, which must be an object (400 `invalid` otherwise; 413 when too large)."""
    body_limit_check(request, limit=limit)
    if not isinstance(request.data, dict):
        raise ApiError("invalid", "본문은 JSON 객체여야 합니다. (The body must be a JSON object.)", 400)
    return request.data


class LimitedJSONParser(parsers.JSONParser):
    """JSON bodies up to RUNTIME_MAX_BODY_BYTES; larger ones get a 413, not a memory spike."""

    def parse(self, stream, media_type=None, parser_context=None):
        request = (parser_context or {}).get("request")
        if request is not None:
            body_limit_check(request)
        return super().parse(stream, media_type, parser_context)


class EventStreamRenderer(renderers.BaseRenderer):
    """Lets content negotiation accept `Accept: text/event-stream`; streams bypass rendering."""

    media_type = "text/event-stream"
    format = "sse"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return renderers.JSONRenderer().render(data)


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
        "model_busy": status.HTTP_503_SERVICE_UNAVAILABLE,
    }.get(code, status.HTTP_502_BAD_GATEWAY)


RETRY_AFTER_SECONDS = {"model_busy": 2, "llm_rate_limited": 5}  # the Retry-After of a 503 turn


def outcome_response(outcome) -> Response:
    """JSON for a gathered turn (runtime.services.TurnOutcome): the payload, or the error with the ids
    of the kept message and its status (error_status)."""
    if outcome.ok:
        return Response(outcome.payload)
    error = dict(outcome.error)
    error.pop("type", None)
    error.pop("v", None)
    code = error.get("code", "")
    response = Response({"error": error}, status=error_status(code))
    if code in RETRY_AFTER_SECONDS:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS[code])
    return response


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


class TextField(serializers.CharField):
    """A CharField that takes only JSON strings (DRF's own would turn 12345 or true into text)."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)
