"""An ASGI guard for `POST /kakao/skill`, in front of Django: shed before Django's request handling.

The view sheds past its in-flight limit (kakao.views), but a request reaches the view only after
daphne and Django have handled it (a thread per request, the middleware): when the process's CPU
is saturated, requests queue there and even the apology arrives late. This guard counts skill
requests from the moment the server hands them over and, past KAKAO_SKILL_MAX_IN_FLIGHT, answers
the busy apology itself (a valid skill response, HTTP 200, nothing stored) without Django.

Mounted around the HTTP application in mejai/asgi.py:

    "http": KakaoSkillAdmission(Admission(RequestBodyLimit(django_asgi_app))),  # (mounted so)

Every other path and method passes through untouched.
"""

from __future__ import annotations

import json

SKILL_PATH = "/kakao/skill"


def _busy_body() -> bytes:
    from kakao.responses import response_build
    from kakao.services import BUSY_TEXT

    return json.dumps(response_build([BUSY_TEXT]), ensure_ascii=False).encode()


class KakaoSkillAdmission:
    """ASGI middleware: at most KAKAO_SKILL_MAX_IN_FLIGHT skill requests inside the application at once
    (per process; the counter lives on the server's event loop, so no lock is needed)."""

    def __init__(self, app):
        self.app = app
        self.in_flight = 0
        self._body: bytes | None = None

    def _headers(self, body: bytes) -> list[tuple[bytes, bytes]]:
        # What Django's SecurityMiddleware / clickjacking middleware would add to this response.
        return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                (b"referrer-policy", b"same-origin"), (b"cross-origin-opener-policy", b"same-origin")]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") != SKILL_PATH or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        from kakao import conf

        if self.in_flight >= conf.skill_max_in_flight():
            from kakao.views import admission

            admission.shed_note("in-flight limit, before Django")
            if self._body is None:
                self._body = _busy_body()
            await send({"type": "http.response.start", "status": 200, "headers": self._headers(self._body)})
            await send({"type": "http.response.body", "body": self._body})
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
