"""The answer to a locked-out login (django-axes): the one JSON error shape under /api/, a page elsewhere."""

from __future__ import annotations

import math

from django.conf import settings
from django.http import HttpResponse

from mejai.errors import error_response


def lockout_message() -> tuple[str, int]:
    minutes = max(1, math.ceil(settings.AXES_COOLOFF_TIME.total_seconds() / 60))
    return (f"로그인에 여러 번 실패해 {minutes}분 동안 잠겼습니다. 잠시 후 다시 시도하세요. "
            f"(Too many failed logins: locked for {minutes} minutes.)", minutes * 60)


def lockout_response(request, original_response=None, credentials=None) -> HttpResponse:
    message, retry_after = lockout_message()
    path = getattr(request, "path", "") or ""
    if path.startswith("/api/"):
        response = error_response("login_locked", message, 429, retry_after=retry_after)
    else:
        response = HttpResponse(f"<!doctype html><meta charset=utf-8><title>mejai</title><p>{message}</p>",
                                status=429, content_type="text/html; charset=utf-8")
    response["Retry-After"] = str(retry_after)
    return response
