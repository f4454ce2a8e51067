"""Every API and webhook route answers bad input with a clear 4xx, never a 500."""

from __future__ import annotations

import json
import re

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

GARBAGE_BODIES = [
    b'{"a":',  # malformed JSON
    b"[1, 2]",  # not an object
    b'"text"',
    b"null",
    b"\xff\xfe\x00",  # not UTF-8
    json.dumps({"message": None, "type": 5, "public_key": [], "visitor": "x", "session_id": {"a": 1}, "values": 3,
                "userRequest": "x", "text": 7}).encode(),  # wrong types everywhere
    b'{"message": "\\u0000", "q": "\\u0000", "text": "\\u0000"}',  # NUL characters
    # Issue 10: deeply nested JSON (60 KB of brackets), as an array and inside an object field.
    b"[" * 30_000 + b"]" * 30_000,
    b'{"message": "hi", "context": ' + b'{"a": ' * 6_000 + b"1" + b"}" * 6_000 + b"}",
    b'{"payload": {"values": ' + b"[" * 20_000 + b"]" * 20_000 + b"}}",
]
GARBAGE_QUERY = "?q=%00&status=zzz&limit=abc&offset=-5&since=x"


def _routes(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _routes(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern)


def _api_paths() -> list[str]:
    raw = {r for r in _routes(get_resolver().url_patterns) if r.startswith(("api/", "kakao/"))}
    # Path parameters: an id that exists nowhere (and a UUID-shaped one for sessions).
    paths = {"/" + re.sub(r"<[^>]+>", "1", r.replace("<str:session_id>", "00000000-0000-0000-0000-000000000000")) for r in raw}
    return sorted(paths)


@pytest.mark.django_db
def test_garbage_never_reaches_a_500(client, api_key):
    paths = _api_paths()
    assert "/api/runtime/chat" in paths and "/kakao/skill" in paths
    failures = []
    for path in paths:
        for auth in ({}, {"HTTP_AUTHORIZATION": f"Bearer {api_key}"}):
            for body in GARBAGE_BODIES:
                response = client.post(path, data=body, content_type="application/json", **auth)
                if response.status_code >= 500:
                    failures.append(("POST", path, body[:20], response.status_code))
            for method in ("get", "delete"):
                response = getattr(client, method)(path + GARBAGE_QUERY, **auth)
                if response.status_code >= 500:
                    failures.append((method.upper(), path, GARBAGE_QUERY, response.status_code))
    assert failures == []


def test_json_depth_check_is_exact_and_skips_strings():
    from mejai.middleware import JSON_MAX_DEPTH, json_too_deep

    assert not json_too_deep(b"[" * JSON_MAX_DEPTH + b"]" * JSON_MAX_DEPTH)
    assert json_too_deep(b"[" * (JSON_MAX_DEPTH + 1) + b"]" * (JSON_MAX_DEPTH + 1))
    assert not json_too_deep(b'{"message": "' + b"[" * 5000 + b'\\"{{{"}')  # brackets inside a string
    assert not json_too_deep(b'[' + b'{"a": 1}, ' * 5000 + b'{}]')  # many, but shallow


@pytest.mark.django_db(transaction=True)
async def test_deep_json_on_the_widget_socket_is_an_error_frame():
    from channels.testing import WebsocketCommunicator

    from mejai.asgi import application

    ws = WebsocketCommunicator(application, "/api/widget/ws", headers=[(b"host", b"testserver")])
    assert (await ws.connect())[0]
    await ws.send_to(text_data="[" * 30_000 + "]" * 30_000)
    frame = await ws.receive_json_from(timeout=5)
    assert frame["type"] == "error" and frame["code"] == "json_too_deep"
    await ws.send_json_to({"type": "ping"})
    assert await ws.receive_json_from(timeout=5) == {"type": "pong"}
    await ws.disconnect()
