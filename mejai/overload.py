"""Overload: one answer when the process is past what it can do, and one record of when it was.

Past a limit the client gets `503` with `Retry-After` and the one error shape, code `overloaded`
(`retryable: true`, `retry_after` in seconds) — for an API, JSON; for a page, a small HTML page;
inside an already-open event stream, an `error` event with the same code. Limits that shed here:

* admission (mejai/admission.py): in-flight requests per endpoint class;
* the database pool: a connection not free within `DB_POOL_TIMEOUT` seconds, or more than
  `DB_POOL_MAX_WAITING` requests already waiting (psycopg_pool.PoolTimeout / TooManyRequests,
  which Django hands on as django.db.OperationalError).

Each refusal is recorded (`shed_record`); `overload_state()` says whether the process is shedding
now (a refusal within `OVERLOAD_DEGRADED_SECONDS`, waiters on the database pool, a backlog in a
named executor) — /healthz and /readyz report it as `degraded`. docs/operations.md has the limits.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque

from django.conf import settings

logger = logging.getLogger("mejai.overload")

OVERLOADED_MESSAGE = "지금 요청이 많아 잠시 후 다시 시도해 주세요. (The server is busy; please retry shortly.)"

_lock = threading.Lock()
_shed: deque[tuple[float, str]] = deque(maxlen=10_000)  # (monotonic time, reason) of recent refusals
_shed_total: dict[str, int] = {}
_last_log: dict[str, float] = {}


def retry_after_seconds() -> int:
    """Seconds a refused client is told to wait (the Retry-After header), at least 1."""
    return max(1, int(getattr(settings, "OVERLOAD_RETRY_AFTER_SECONDS", 2)))


def is_overload_error(exc: BaseException | None) -> bool:
    """Is this (or what caused it) the database pool refusing a connection: timed out, or too many waiting?"""
    try:
        from psycopg_pool import PoolTimeout, TooManyRequests
    except ImportError:  # SQLite build: no pool
        return False
    seen = 0
    while exc is not None and seen < 8:
        if isinstance(exc, (PoolTimeout, TooManyRequests)):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def shed_record(reason: str, detail: str = "") -> None:
    """Note one refusal (`admission:<class>`, `database_pool`, `stream`); one warning line per reason a second."""
    now = time.monotonic()
    with _lock:
        _shed.append((now, reason))
        _shed_total[reason] = _shed_total.get(reason, 0) + 1
        noisy = now - _last_log.get(reason, 0.0) < 1.0
        if not noisy:
            _last_log[reason] = now
    if not noisy:
        logger.warning("overloaded: refused (503) by %s%s", reason, f": {detail}" if detail else "")


def overloaded_body(retry_after: int | None = None) -> dict:
    from mejai.errors import error_body

    seconds = retry_after or retry_after_seconds()
    return error_body("overloaded", OVERLOADED_MESSAGE, retryable=True, retry_after=seconds)


def _wants_page(request) -> bool:
    path = request.path or ""
    if path.startswith("/api/") or path.startswith("/kakao/"):
        return False
    accept = request.META.get("HTTP_ACCEPT", "")
    return "text/html" in accept


def overloaded_html(retry_after: int) -> bytes:
    return (
        "<!doctype html><html lang=ko><head><meta charset=utf-8>"
        f"<meta http-equiv=refresh content={retry_after}>"
        "<meta name=viewport content='width=device-width, initial-scale=1'><title>잠시 후 다시 (Busy)</title></head>"
        "<body style='font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem'>"
        "<h1>잠시 바빠요</h1><p>지금 요청이 많아요. 몇 초 후 자동으로 다시 시도합니다.</p>"
        "<p lang=en>The server is busy right now. This page retries by itself in a few seconds.</p>"
        "</body></html>"
    ).encode()


def overloaded_response(request=None, *, reason: str = "database_pool"):
    """The 503 answer for a Django request (JSON, or a page for a browser asking for HTML)."""
    from django.http import HttpResponse, JsonResponse

    seconds = retry_after_seconds()
    if request is not None and _wants_page(request):
        response = HttpResponse(overloaded_html(seconds), status=503, content_type="text/html; charset=utf-8")
    else:
        response = JsonResponse(overloaded_body(seconds), status=503, json_dumps_params={"ensure_ascii": False})
    response["Retry-After"] = str(seconds)
    response["Cache-Control"] = "no-store"
    response._has_been_logged = True  # shed_record logged it (one line a second), not one ERROR per request
    return response


class OverloadMiddleware:
    """An exception that is the database pool refusing (see is_overload_error) becomes 503 `overloaded`.

    Early in MIDDLEWARE: process_exception sees what a view raised (sync or async); anything raised
    further out reaches mejai.views.server_error, which gives the same answer.
    """

    sync_capable = True
    async_capable = False  # runs on the request's thread with the rest (mejai.middleware.SyncMiddlewareBoundary)

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if is_overload_error(exception):
            shed_record("database_pool", f"{request.method} {request.path[:200]}")
            return overloaded_response(request)
        return None


def _pool_stats() -> dict | None:
    """The database pool's numbers, if this process has opened one (PostgreSQL with DB_POOL)."""
    from django.db import connections

    try:
        wrapper = connections["default"]
        pool = type(wrapper)._connection_pools.get("default") if hasattr(type(wrapper), "_connection_pools") else None
    except Exception:
        return None
    if pool is None:
        return None
    stats = pool.get_stats()
    return {
        "size": stats.get("pool_size", 0), "available": stats.get("pool_available", 0),
        "max": pool.max_size, "waiting": stats.get("requests_waiting", 0),
        "timeouts": stats.get("requests_errors", 0),
    }


def overload_state() -> dict:
    """{"degraded": bool, "reasons": [...], "shed_recent": {reason: n}, "database_pool": {...},
    "admission": {...}, "executor_backlog": {...}, "threads": n} — cheap, no I/O."""
    from mejai import admission
    from mejai.concurrency import executor_backlogs

    window = float(getattr(settings, "OVERLOAD_DEGRADED_SECONDS", 10.0))
    now = time.monotonic()
    recent: dict[str, int] = {}
    with _lock:
        while _shed and now - _shed[0][0] > max(window, 60.0):
            _shed.popleft()
        for at, reason in _shed:
            if now - at <= window:
                recent[reason] = recent.get(reason, 0) + 1
    reasons = [f"refused {n} requests ({reason}) in the last {window:g} s" for reason, n in sorted(recent.items())]
    pool = _pool_stats()
    if pool is not None and pool["waiting"] > 0:
        reasons.append(f"{pool['waiting']} requests waiting for a database connection")
    backlogs = {name: n for name, n in executor_backlogs().items() if n}
    for name, n in backlogs.items():
        reasons.append(f"{n} jobs waiting for a thread in {name}")
    return {
        "degraded": bool(reasons), "reasons": reasons, "shed_recent": recent,
        "database_pool": pool, "admission": admission.admission_state(), "executor_backlog": backlogs,
        "threads": threading.active_count(),
    }


def shed_clear() -> None:
    """Forget recorded refusals (tests)."""
    with _lock:
        _shed.clear()
        _shed_total.clear()
        _last_log.clear()
