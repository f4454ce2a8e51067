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
from rest_framework import exceptions, parsers, renderers, serializers, status
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
    params = getattr(request, "query_params", None) or request.GET  # a DRF request or a plain one
    return "text/event-stream" in accept or params.get("stream") in ("1", "true")


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


def outcome_parts(outcome) -> tuple[dict, int, dict]:
    """(body, status, headers) for a gathered turn (runtime.services.TurnOutcome): the payload, or the
    error with the ids of the kept message and its status (error_status), Retry-After on a 503."""
    if outcome.ok:
        return outcome.payload, 200, {}
    error = dict(outcome.error)
    error.pop("type", None)
    error.pop("v", None)
    code = error.get("code", "")
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS[code])} if code in RETRY_AFTER_SECONDS else {}
    return {"error": error}, error_status(code), headers


def outcome_response(outcome) -> Response:
    """A DRF Response for a gathered turn (see outcome_parts)."""
    body, status_code, headers = outcome_parts(outcome)
    return Response(body, status=status_code, headers=headers or None)


def json_response(body, status_code: int = 200, headers: dict | None = None):
    """A plain Django JSON response, encoded as DRF's JSONRenderer does (UTF-8, compact): for the
    plain async views of the hot paths (runtime.plain)."""
    from django.core.serializers.json import DjangoJSONEncoder
    from django.http import JsonResponse

    response = JsonResponse(body, status=status_code, safe=False, encoder=DjangoJSONEncoder,
                            json_dumps_params={"ensure_ascii": False, "separators": (",", ":")})
    for name, value in (headers or {}).items():
        response[name] = value
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


# --- plain async views for the hot paths ----------------------------------------------------------
# `POST /api/runtime/chat` (and the channels' hot endpoints) skip DRF's per-request machinery
# (Request wrapping, negotiation and parser classes, adrf's hops) but keep its contract: the same
# checks in the same order (method, Accept, authentication, body), the same error shape, codes,
# statuses and headers (Allow, Vary: Accept, WWW-Authenticate). DRF stays for every other API; the
# OpenAPI schema documents these through a DRF class kept for the schema only (see plain_view).

_ACCEPTABLE = ("*/*", "application/*", "text/*")


def accept_check(request, media_types: tuple[str, ...]) -> None:
    """406 `not_acceptable` unless the Accept header admits one of `media_types` (as DRF's negotiation)."""
    header = request.META.get("HTTP_ACCEPT", "") or "*/*"
    for entry in header.split(","):
        wanted = entry.split(";")[0].strip().lower()
        if not wanted or wanted in _ACCEPTABLE[:1] or wanted in media_types:
            return
        if wanted.endswith("/*") and any(m.startswith(wanted[:-1]) for m in media_types):
            return
    raise exceptions.NotAcceptable()


def _strict_constant(value):
    raise ValueError(f"Out of range float values are not JSON compliant: {value}")


def json_body(request, *, limit: int | None = None):
    """The parsed JSON body as DRF's LimitedJSONParser gave it: {} without a body or a content type;
    415 for another content type; 413 past the limit; 400 `malformed_json` when it does not parse."""
    import json

    content_type = request.META.get("CONTENT_TYPE", "")
    if not content_type:
        return {}
    media_type, _, params = content_type.partition(";")
    if media_type.strip().lower() != "application/json":
        raise exceptions.UnsupportedMediaType(content_type)
    body = body_read(request, limit=limit)
    if not body:
        return {}
    charset = "utf-8"
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            charset = value.strip().strip('"')
    try:
        return json.loads(body.decode(charset), parse_constant=_strict_constant)
    except (ValueError, LookupError) as exc:
        raise exceptions.ParseError(f"JSON parse error - {exc}") from None


def plain_error_response(exc: Exception, *, auth_header: str | None = "Bearer"):
    """The one error shape for an exception raised in a plain view (mejai.errors.api_exception_handler),
    as a plain JsonResponse; re-raises what is not an API error (a bug: a logged 500)."""
    from mejai.errors import api_exception_handler

    if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)) and auth_header:
        exc.auth_header = auth_header
    response = api_exception_handler(exc, {})
    if response is None:
        raise exc
    headers = {name: value for name, value in response.items() if name.lower() != "content-type"}
    return json_response(response.data, response.status_code, headers)


def plain_view(view, *, methods: tuple[str, ...], schema_view=None, renders=("application/json",),
               authenticate=None, options=None, finalize=None):
    """A plain async Django view around `view(request, *args)` with a DRF APIView's outer contract:
    CSRF-exempt (an API), then in DRF's order the Accept check (406), `authenticate(request)` for
    OPTIONS and other methods (the view authenticates its own methods, in its database hop), 405 for
    a method not in `methods`; OPTIONS answered by `options(request)` (a response) or DRF-style
    metadata; every error in the one shape; DRF's Allow and Vary: Accept headers; then
    `finalize(request, response)` (CORS). `schema_view` (a DRF APIView subclass) is what
    drf-spectacular reads to document the endpoint; requests never reach it."""
    import functools

    from django.utils.cache import patch_vary_headers
    from django.views.decorators.csrf import csrf_exempt

    if "GET" in methods and "HEAD" not in methods:
        methods = (*methods, "HEAD")  # as Django's View: HEAD is answered by GET
    order = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE")  # DRF's Allow order
    allowed = ", ".join(m for m in order if m in methods or m == "OPTIONS")

    @functools.wraps(view)
    async def handler(request, *args, **kwargs):
        try:
            accept_check(request, renders)
            if request.method in methods:
                response = await view(request, *args, **kwargs)
            else:
                if authenticate is not None:
                    await authenticate(request)
                if request.method != "OPTIONS":
                    raise exceptions.MethodNotAllowed(request.method)
                response = await options(request) if options is not None else None
                if response is None:
                    response = json_response({"name": getattr(schema_view, "__name__", view.__name__),
                                              "renders": list(renders), "parses": ["application/json"]})
        except Exception as exc:  # noqa: BLE001 - API errors become the one shape; bugs are re-raised
            response = plain_error_response(exc)
        response["Allow"] = allowed
        if len(renders) > 1:
            patch_vary_headers(response, ("Accept",))
        if finalize is not None:
            finalize(request, response)
        return response

    handler = csrf_exempt(handler)
    if schema_view is not None:
        # What DRF's schema generators look for on a URL's callback: drf-spectacular lists the
        # endpoint with schema_view's documented methods.
        handler.cls = schema_view
        handler.initkwargs = {}
    return handler


def json_object_plain(request, *, limit: int | None = None) -> dict:
    """json_object for a plain Django request: the JSON body, which must be an object (400 `invalid`)."""
    body = json_body(request, limit=limit)
    if not isinstance(body, dict):
        raise ApiError("invalid", "본문은 JSON 객체여야 합니다. (The body must be a JSON object.)", 400)
    return body
