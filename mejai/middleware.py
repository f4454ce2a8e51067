"""Middleware of the project itself."""

from __future__ import annotations

import re


class SyncMiddlewareBoundary:
    """Last in MIDDLEWARE: keeps every middleware above it in sync mode.

    Under ASGI, Django runs a MiddlewareMixin middleware that sits above an async view in
    "async mode", where each process_request / process_response is its own sync_to_async
    thread hand-off (about 70 µs of CPU and 0.3 ms of latency each: 12 per API request here).
    WhiteNoise is sync-only, so the chain already ran on the request's thread; this moves
    the single switch back to the event loop down to just above the view, so the middleware
    run as plain calls on that thread. Async views and streaming responses are unaffected.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)


# --- JSON nesting ----------------------------------------------------------------------------

JSON_MAX_DEPTH = 100
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_JSON_BRACKET = re.compile(rb"[\[\]{}]")


def json_too_deep(raw: bytes, *, limit: int = JSON_MAX_DEPTH) -> bool:
    """Does this JSON text nest arrays/objects deeper than `limit`? Linear; strings are skipped.

    Python's json parser recurses once per level, so 60 KB of `[[[…` raises RecursionError (a 500
    wherever a body is parsed); this check runs before any parser sees the body.
    """
    if raw.count(b"[") + raw.count(b"{") <= limit:
        return False  # cannot be deeper than its number of openings
    depth = 0
    for bracket in _JSON_BRACKET.findall(_JSON_STRING.sub(b"", raw)):
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def json_too_deep_error():
    from mejai.errors import error_response

    return error_response(
        "json_too_deep",
        f"JSON은 {JSON_MAX_DEPTH}단계까지만 중첩할 수 있습니다. (JSON may nest at most {JSON_MAX_DEPTH} levels.)", 400,
    )


class JsonDepthLimit:
    """Refuses (400 `json_too_deep`) a JSON request body nested deeper than JSON_MAX_DEPTH, on every route.

    The body is already bounded by the ASGI guard (mejai/asgi_guards.py); reading it here leaves it
    readable for the view (Django keeps it in request.body).
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        content_type = request.META.get("CONTENT_TYPE", "")
        if request.method in ("POST", "PUT", "PATCH", "DELETE") and "json" in content_type.lower():
            try:
                body = request.body
            except Exception:  # over the size limit: the view answers 413 as it always did
                body = b""
            if json_too_deep(body):
                return json_too_deep_error()
        return self.get_response(request)
