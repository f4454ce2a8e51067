"""Admission control: at most N requests in flight per endpoint class; past it, a fast 503 `overloaded`.

An ASGI wrapper in front of the whole HTTP application (mejai/asgi.py). Every request Django
serves holds a thread of its own while it runs (asgiref's per-request ThreadSensitiveContext
executor, created on its first sync step and joined when it ends), so the in-flight limit is also
the bound on request threads: without it a burst of 2,000 requests is 2,000 threads, each waiting
for one of DB_POOL_MAX connections. A refused request costs no thread, no database connection and
no Django middleware: it is answered on the event loop.

Endpoint classes (`endpoint_class`), each with its own limit in `ADMISSION_LIMITS`:

* `runtime_chat` — POST /api/runtime/chat answered as JSON (the request holds its thread until answered);
* `runtime_stream` — the same asked as SSE (`Accept: text/event-stream` or `?stream=1`): a stream
  gives its thread back once it streams (mejai.concurrency.request_thread_release), so its limit is
  the model connections it will wait on (LLM_MAX_CONNECTIONS), not threads;
* `widget_chat` — /api/widget/chat;
* `widget_stream` — /api/widget/stream (a visitor's long-lived live stream: no thread, ~47 KiB each;
  file descriptors are its real bound);
* `other` — everything else, pages and REST APIs;
* not limited here: /healthz and /readyz (health must answer under load) and /kakao/ (Kakao needs a
  valid skill response, never a 503: kakao sheds itself, asking `overloaded()` below).

A limit below 0 means unlimited; 0 refuses every request of the class (maintenance, tests).
Past the limit a request waits — on the event loop: no thread, no connection — in the class's
bounded queue (`ADMISSION_QUEUE` places, at most `ADMISSION_WAIT_SECONDS`) for a place to come
free, first come first served; a full queue or the wait running out is refused. The refusal: 503, `Retry-After: OVERLOAD_RETRY_AFTER_SECONDS`, the one error shape with code
`overloaded` (JSON), or a small self-refreshing HTML page for a browser asking for a page.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque

from django.conf import settings

CLASSES = ("runtime_chat", "runtime_stream", "widget_chat", "widget_stream", "other")
DEFAULT_LIMITS = {"runtime_chat": 48, "runtime_stream": 200, "widget_chat": 48, "widget_stream": 10000, "other": 32}
DEFAULT_QUEUE = {"runtime_chat": 96, "runtime_stream": 0, "widget_chat": 96, "widget_stream": 0, "other": 64}

_lock = threading.Lock()
_inflight: dict[str, int] = dict.fromkeys(CLASSES, 0)
_peak: dict[str, int] = dict.fromkeys(CLASSES, 0)
_waiters: dict[str, deque] = {name: deque() for name in CLASSES}  # (loop, future) waiting for a place
_queued_peak: dict[str, int] = dict.fromkeys(CLASSES, 0)
_EXEMPT_PREFIXES = ("/kakao/", "/healthz", "/readyz")


def _asks_for_stream(scope: dict) -> bool:
    """The runtime API's own rule (runtime.http.stream_requested): `?stream=1|true` or an Accept of event-stream."""
    query = (scope.get("query_string") or b"").decode("latin-1")
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name == "stream" and value in ("1", "true"):
            return True
    for key, value in scope.get("headers") or ():
        if key == b"accept" and b"text/event-stream" in value:
            return True
    return False


def endpoint_class(path: str, scope: dict | None = None) -> str | None:
    """The class a request path is counted in, or None when admission does not apply to it."""
    if path.startswith(_EXEMPT_PREFIXES):
        return None
    if path.startswith("/api/runtime/chat"):
        return "runtime_stream" if scope is not None and _asks_for_stream(scope) else "runtime_chat"
    if path.startswith("/api/widget/chat"):
        return "widget_chat"
    if path.startswith("/api/widget/stream") and not path.startswith("/api/widget/stream-ticket"):
        return "widget_stream"
    return "other"


def limits() -> dict[str, int]:
    configured = getattr(settings, "ADMISSION_LIMITS", None) or {}
    return {name: int(configured.get(name, DEFAULT_LIMITS[name])) for name in CLASSES}


def _limit(name: str) -> int:
    configured = getattr(settings, "ADMISSION_LIMITS", None) or {}
    return int(configured.get(name, DEFAULT_LIMITS[name]))


def _queue_max(name: str) -> int:
    configured = getattr(settings, "ADMISSION_QUEUE", None) or {}
    return max(0, int(configured.get(name, DEFAULT_QUEUE[name])))


def _try_enter(name: str) -> bool:
    limit = _limit(name)
    with _lock:
        if 0 <= limit <= _inflight[name]:
            return False
        _inflight[name] += 1
        if _inflight[name] > _peak[name]:
            _peak[name] = _inflight[name]
        return True


async def _enter(name: str) -> bool:
    """Take a place in `name`: at once, or after a short wait in its bounded queue; False = refuse."""
    if _try_enter(name):
        return True
    wait = float(getattr(settings, "ADMISSION_WAIT_SECONDS", 0.5))
    limit = _limit(name)
    if limit == 0 or wait <= 0:
        return False
    loop = asyncio.get_running_loop()
    waiter = (loop, loop.create_future())
    with _lock:
        if _inflight[name] < limit:  # a place came free since _try_enter
            _inflight[name] += 1
            return True
        if len(_waiters[name]) >= _queue_max(name):
            return False
        _waiters[name].append(waiter)
        _queued_peak[name] = max(_queued_peak[name], len(_waiters[name]))
    try:
        return await asyncio.wait_for(waiter[1], wait)
    except TimeoutError:
        if _handed_over(waiter[1]):
            return True  # the place came in the same loop step as the time-out: take it
        _give_up(name, waiter)
        return False
    except asyncio.CancelledError:
        if _handed_over(waiter[1]):
            _leave(name)  # the client left just as the place came: pass it on, never keep it
        else:
            _give_up(name, waiter)
        raise


def _handed_over(future: asyncio.Future) -> bool:
    """Whether _hand_over gave this waiter a place (Python 3.12+'s wait_for can still raise then)."""
    return future.done() and not future.cancelled() and future.result() is True


def _give_up(name: str, waiter: tuple) -> None:
    with _lock:
        try:
            _waiters[name].remove(waiter)
        except ValueError:
            pass  # a place is being handed over: _hand_over sees the cancelled future and passes it on


def _hand_over(name: str, future: asyncio.Future) -> None:
    if future.done():  # its request gave up meanwhile: the place goes to the next one, or is freed
        _leave(name)
    else:
        future.set_result(True)


def _leave(name: str) -> None:
    with _lock:
        if _waiters[name]:
            # The place passes to the longest waiter as it is (in-flight count unchanged).
            loop, future = _waiters[name].popleft()
            loop.call_soon_threadsafe(_hand_over, name, future)
            return
        _inflight[name] -= 1


def admission_state() -> dict:
    """{"inflight", "queued", "limits", "peak", "queued_peak"}: {class: n} each, for health and the bench."""
    with _lock:
        return {"inflight": dict(_inflight), "queued": {name: len(q) for name, q in _waiters.items()},
                "limits": limits(), "peak": dict(_peak), "queued_peak": dict(_queued_peak)}


def saturation() -> float:
    """The fullest class's in-flight share of its limit, 0.0–1.0 (1.0: some class is refusing now)."""
    state = admission_state()
    shares = [1.0 if state["limits"][c] == 0 else state["inflight"][c] / state["limits"][c]
              for c in CLASSES if state["limits"][c] >= 0]
    return min(1.0, max(shares, default=0.0))


def overloaded() -> bool:
    """Is this process shedding now — a refusal within OVERLOAD_DEGRADED_SECONDS, or waiters on the
    database pool? For channels that must answer in their own format instead of a 503 (Kakao's skill
    response): ask this before taking on work that needs the database or the model."""
    from mejai.overload import overload_state

    return overload_state()["degraded"]


def peak_reset() -> None:
    with _lock:
        for name in CLASSES:
            _peak[name] = _inflight[name]
            _queued_peak[name] = len(_waiters[name])


def _wants_page(scope: dict) -> bool:
    if scope.get("path", "").startswith("/api/"):
        return False
    for key, value in scope.get("headers") or []:
        if key == b"accept":
            return b"text/html" in value
    return False


def _cors_headers(scope: dict, name: str) -> list[tuple[bytes, bytes]]:
    """The widget API is called cross-origin (bearer token, no cookies): let any caller read the
    refusal — it carries nothing but `overloaded` and Retry-After — so it can back off."""
    if not name.startswith("widget_"):
        return []
    return [(b"access-control-allow-origin", b"*"), (b"access-control-expose-headers", b"Retry-After")]


async def _refuse(scope: dict, send, name: str) -> None:
    from mejai.overload import overloaded_body, overloaded_html, retry_after_seconds, shed_record

    shed_record(f"admission:{name}", f"{scope.get('method', '')} {scope.get('path', '')[:200]}")
    seconds = retry_after_seconds()
    if _wants_page(scope):
        body, content_type = overloaded_html(seconds), b"text/html; charset=utf-8"
    else:
        body = json.dumps(overloaded_body(seconds), ensure_ascii=False).encode()
        content_type = b"application/json; charset=utf-8"
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", content_type), (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(seconds).encode()), (b"cache-control", b"no-store"),
        (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"same-origin"),
        # What SecurityMiddleware / XFrameOptionsMiddleware add to every other response.
        (b"x-frame-options", b"DENY"), (b"cross-origin-opener-policy", b"same-origin"),
        *_cors_headers(scope, name),
    ]})
    await send({"type": "http.response.body", "body": body})


class Admission:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        # A CORS preflight is cheap and touches no database: never refused, so a cross-origin
        # caller still gets to send its request and read the 503 (with its Retry-After) if it comes.
        name = None if scope.get("method") == "OPTIONS" else endpoint_class(scope.get("path", ""), scope)
        if name is None:
            return await self.app(scope, receive, send)
        if not await _enter(name):
            return await _refuse(scope, send, name)
        try:
            return await self.app(scope, receive, send)
        finally:
            _leave(name)
