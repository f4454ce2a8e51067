"""The project's one JSON error shape: {"error": {"code", "message"}} with the right status."""

from __future__ import annotations

import logging

from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """Raise from services or views to answer with a specific code and status."""

    def __init__(self, code: str, message: str, status: int = 400, *, field: str | None = None, extra=None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.field = field
        self.extra = extra or {}

    def as_dict(self) -> dict:
        from mejai.error_messages import message_bilingual

        body = {"code": self.code, "message": message_bilingual(self.code, self.message)}
        if self.field:
            body["field"] = self.field
        body.update(self.extra)
        return {"error": body}


def error_body(code: str, message: str, **extra) -> dict:
    """The error shape; the message follows the language policy (Korean first, English in parentheses)."""
    from mejai.error_messages import message_bilingual

    return {"error": {"code": code, "message": message_bilingual(code, message), **extra}}


def error_response(code: str, message: str, status: int, **extra) -> JsonResponse:
    return JsonResponse(error_body(code, message, **extra), status=status, json_dumps_params={"ensure_ascii": False})


def _first_validation_message(detail, path: str = "") -> tuple[str, str]:
    """Walk DRF's nested ValidationError detail down to the first (field, message)."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            name = key if key != "non_field_errors" else ""
            return _first_validation_message(value, f"{path}.{name}".strip(".") if name else path)
    if isinstance(detail, list) and detail:
        return _first_validation_message(detail[0], path)
    return path, str(detail)


_CODES = {
    exceptions.NotAuthenticated: "unauthenticated",
    exceptions.AuthenticationFailed: "unauthenticated",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.ParseError: "malformed_json",
    exceptions.Throttled: "rate_limited",
}


def api_exception_handler(exc, context):
    """DRF exception handler that answers every error in the one shape."""
    if isinstance(exc, ApiError):
        return Response(exc.as_dict(), status=exc.status)
    from mejai.overload import is_overload_error, overloaded_body, retry_after_seconds, shed_record

    if is_overload_error(exc):  # the database pool refused a connection: 503 overloaded, not a 500
        request = context.get("request")
        shed_record("database_pool", f"{getattr(request, 'method', '')} {getattr(request, 'path', '')[:200]}")
        seconds = retry_after_seconds()
        response = Response(overloaded_body(seconds), status=503, headers={"Retry-After": str(seconds)})
        response._has_been_logged = True  # shed_record logged it (one line a second)
        return response
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, DjangoValidationError):
        exc = exceptions.ValidationError(detail=exc.messages)

    if isinstance(exc, exceptions.ValidationError):
        field, message = _first_validation_message(exc.detail)
        from mejai.error_messages import message_bilingual

        message = message_bilingual("invalid", message)
        body = error_body("invalid", f"{field}: {message}" if field else message)
        if field:
            body["error"]["field"] = field
        body["error"]["details"] = exc.detail
        return Response(body, status=status.HTTP_400_BAD_REQUEST)

    response = drf_exception_handler(exc, context)
    if response is None:
        return None  # a real bug: let Django log it and answer 500
    code = next((c for cls, c in _CODES.items() if isinstance(exc, cls)), "error")
    detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
    message = detail if isinstance(detail, str) else str(detail)
    response.data = error_body(code, message)
    return response
