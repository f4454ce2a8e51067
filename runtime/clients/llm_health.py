"""Whether the model server works: a recent-failure window fed by real calls, and a cheap probe.

Every process records the outcome of its model calls in the shared cache (Redis in production):
a failure always, a success only when it can change the verdict (a failure is on record, or
this process has not said so for a while), so the answering path stays one cache write per
failure. `/readyz` reads the window and a probe (`GET {base_url}/models`, cached for
`LLM_PROBE_SECONDS`), so the probe never runs more than once per interval however often
readiness is polled.
"""

from __future__ import annotations

import time

import httpx
from django.conf import settings
from django.core.cache import cache

_WINDOW_KEY = "llm:health:window"
_PROBE_KEY = "llm:health:probe"
_SUCCESS_EVERY = 30.0  # seconds between two success writes of one process with nothing to clear

_last_success_written = 0.0
_failure_seen = False


def _window() -> dict:
    return cache.get(_WINDOW_KEY) or {"failures": [], "last_success": 0.0, "last_code": ""}


def _window_store(window: dict) -> None:
    cache.set(_WINDOW_KEY, window, timeout=max(settings.LLM_FAILURE_WINDOW_SECONDS * 4, 600))


def llm_failure_record(*, code: str) -> None:
    """One model call that failed because the server is out (unreachable, timed out, 5xx, refused
    the key, broke the stream); a refused request (4xx) is the request's fault and is not recorded."""
    global _failure_seen
    now = time.time()
    window = _window()
    horizon = now - settings.LLM_FAILURE_WINDOW_SECONDS
    window["failures"] = [t for t in window.get("failures", []) if t >= horizon][-50:] + [now]
    window["last_code"] = code
    _window_store(window)
    _failure_seen = True


def llm_success_due() -> bool:
    """Whether a success is worth a cache write now (cheap, no I/O)."""
    return _failure_seen or time.time() - _last_success_written >= _SUCCESS_EVERY


def llm_success_record() -> None:
    global _last_success_written, _failure_seen
    now = time.time()
    window = _window()
    window["last_success"] = now
    window["failures"] = []  # a success ends the outage
    _window_store(window)
    _last_success_written, _failure_seen = now, False


def llm_window_state() -> dict:
    """{"ok", "recent_failures", "last_code"}: not ok when at least LLM_FAILURE_THRESHOLD outage
    failures happened within LLM_FAILURE_WINDOW_SECONDS and no call succeeded since."""
    window = _window()
    horizon = time.time() - settings.LLM_FAILURE_WINDOW_SECONDS
    failures = [t for t in window.get("failures", []) if t >= horizon and t > window.get("last_success", 0.0)]
    ok = len(failures) < settings.LLM_FAILURE_THRESHOLD
    return {"ok": ok, "recent_failures": len(failures), "last_code": window.get("last_code") or None}


def llm_probe(*, base_url: str, api_key: str) -> dict:
    """`GET {base_url}/models`, cached for LLM_PROBE_SECONDS: {"ok", "status"|"error", "checked_at"}.

    Any HTTP answer but 401/403/5xx counts as up (a server without /models answers 404 and can
    still chat); a connection error or timeout is down.
    """
    cached = cache.get(_PROBE_KEY)
    if cached and cached.get("base_url") == base_url:
        return cached["result"]
    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(url, headers=headers, timeout=settings.LLM_PROBE_TIMEOUT)
        status = response.status_code
        if status in (401, 403):
            result = {"ok": False, "status": status, "error": "the model server refused the API key"}
        elif status >= 500:
            result = {"ok": False, "status": status, "error": f"the model server answered {status}"}
        else:
            result = {"ok": True, "status": status}
    except httpx.HTTPError as exc:
        result = {"ok": False, "error": f"{type(exc).__name__}: the model server could not be reached"}
    result["checked_at"] = int(time.time())
    cache.set(_PROBE_KEY, {"base_url": base_url, "result": result}, timeout=settings.LLM_PROBE_SECONDS)
    return result


def llm_health_forget() -> None:
    """Clear the window and the probe (tests, and an operator after fixing the server)."""
    global _failure_seen, _last_success_written
    cache.delete_many([_WINDOW_KEY, _PROBE_KEY])
    _failure_seen, _last_success_written = False, 0.0
