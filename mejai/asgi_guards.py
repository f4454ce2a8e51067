"""ASGI guard in front of the whole application: request bodies are read within one limit, never past it.

* A declared `Content-Length` over `REQUEST_MAX_BODY_BYTES` is answered 413 before a byte of the
  body is read.
* A chunked body (no `Content-Length`) is read up to the limit and handed to Django with the
  length it turned out to have — Django would otherwise read it as empty — or answered 413 the
  moment it passes the limit; the rest is never read (servers with flow control, like uvicorn,
  then stop reading the socket; daphne is bounded by mejai/server.py).
* A body longer than it declared is cut at the limit the same way.

Every refusal is one warning line (the client's fault, not an error with a traceback). This
guard does not depend on any view's reader, so every route — APIs, webhooks, admin — has it.
"""

from __future__ import annotations

import json
import logging

from django.conf import settings

logger = logging.getLogger("mejai.request")


def body_limit() -> int:
    return int(getattr(settings, "REQUEST_MAX_BODY_BYTES", settings.RUNTIME_MAX_BODY_BYTES))


def too_large_body(limit: int) -> bytes:
    message = (f"요청 본문은 {limit:,}바이트까지 보낼 수 있습니다. "
               f"(The request body is limited to {limit:,} bytes.)")
    return json.dumps({"error": {"code": "payload_too_large", "message": message, "limit": limit}},
                      ensure_ascii=False).encode()


async def _refuse(send, scope: dict, limit: int, *, declared: int | None) -> None:
    logger.warning("request body over %d bytes refused (413): %s %s%s", limit, scope.get("method", ""),
                   scope.get("path", "")[:200], f" (Content-Length {declared})" if declared is not None else "")
    body = too_large_body(limit)
    await send({"type": "http.response.start", "status": 413, "headers": [
        (b"content-type", b"application/json; charset=utf-8"), (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]})
    await send({"type": "http.response.body", "body": body})


def _header(headers, name: bytes) -> bytes | None:
    for key, value in headers:
        if key.lower() == name:
            return value
    return None


class RequestBodyLimit:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = body_limit()
        headers = scope.get("headers") or []
        declared = _header(headers, b"content-length")
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = None
            if length is not None and length > limit:
                return await _refuse(send, scope, limit, declared=length)
            return await self.app(scope, self._counted(receive, send, scope, limit), send)
        if _header(headers, b"transfer-encoding") is None:
            return await self.app(scope, receive, send)  # no body
        # Chunked: read it (within the limit) so the application sees its true length.
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > limit:
                return await _refuse(send, scope, limit, declared=None)
            if not message.get("more_body", False):
                break
        scope = {**scope, "headers": [
            *(h for h in headers if h[0].lower() not in (b"transfer-encoding", b"content-length")),
            (b"content-length", str(len(body)).encode()),
        ]}
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # later calls wait for the client's disconnect

        return await self.app(scope, replay, send)

    @staticmethod
    def _counted(receive, send, scope, limit: int):
        seen = 0

        async def guarded():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:  # more than the declared length: stop here
                    logger.warning("request body longer than declared cut at %d bytes: %s %s", limit,
                                   scope.get("method", ""), scope.get("path", "")[:200])
                    return {"type": "http.disconnect"}
            return message

        return guarded
