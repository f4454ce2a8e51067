"""Liveness and readiness: /healthz answers while the process lives; /readyz checks its dependencies."""

from __future__ import annotations

import asyncio
import time
import uuid

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import JsonResponse


async def healthz(request):
    return JsonResponse({"status": "ok"})


def _check_database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True, "engine": connection.vendor}


async def _check_channel_layer() -> dict:
    layer = get_channel_layer()
    channel = await layer.new_channel("readyz.")
    token = uuid.uuid4().hex
    await layer.send(channel, {"type": "readyz.ping", "token": token})
    message = await asyncio.wait_for(layer.receive(channel), timeout=2)
    return {"ok": message.get("token") == token, "backend": type(layer).__name__}


def _check_broker() -> dict:
    if settings.CELERY_IN_PROCESS:
        return {"ok": True, "mode": "in_process", "workers": "in_process"}
    from mejai.celery import app

    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=2)
    replies = app.control.ping(timeout=1.0) or []
    # A missing worker does not make the web process unready: jobs wait in the queue.
    return {"ok": True, "mode": "celery", "workers": len(replies), "warning": None if replies else "no worker answered"}


def _check_llm() -> dict:
    """The model, honestly: a cached cheap probe (GET /models) and the recent-failure window of
    real calls (runtime.clients.llm_health). Either one failing makes it not ok."""
    if not (settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL):
        return {"ok": True, "mode": "offline", "warning": "no model configured; answers come from the offline provider"}
    from runtime.clients.llm_health import llm_probe, llm_window_state

    base_url = settings.OPENAI_BASE_URL or "https://api.openai.com/v1"
    probe = llm_probe(base_url=base_url, api_key=settings.OPENAI_API_KEY)
    window = llm_window_state()
    result = {
        "ok": bool(probe["ok"] and window["ok"]), "mode": "openai_compatible", "base_url": base_url,
        "model": settings.LLM_MODEL, "probe": probe, "recent_failures": window["recent_failures"],
    }
    if not probe["ok"]:
        result["error"] = probe.get("error") or "the model server did not answer the probe"
    elif not window["ok"]:
        result["error"] = f"{window['recent_failures']} model calls failed recently ({window['last_code']})"
    return result


async def readyz(request):
    checks: dict[str, dict] = {}
    started = time.monotonic()

    async def run(name, check):
        try:
            checks[name] = await check()
        except Exception as exc:  # a failed dependency is reported, never raised
            checks[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}

    await run("database", sync_to_async(_check_database))
    await run("channel_layer", _check_channel_layer)
    await run("broker", sync_to_async(_check_broker, thread_sensitive=False))
    await run("llm", sync_to_async(_check_llm, thread_sensitive=False))
    # A model outage is reported but, unless READYZ_REQUIRE_LLM, does not take the process out of
    # the load balancer: stored messages, commands, history and the offline paths still work,
    # and every instance shares the same model server (all would go out at once).
    required = [c for name, c in checks.items() if name != "llm" or settings.READYZ_REQUIRE_LLM]
    ok = all(c.get("ok") for c in required)
    status = "unavailable" if not ok else "ready" if checks["llm"].get("ok") else "degraded"
    body = {"status": status, "checks": checks, "elapsed_ms": int((time.monotonic() - started) * 1000)}
    return JsonResponse(body, status=200 if ok else 503)
