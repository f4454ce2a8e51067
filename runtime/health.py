"""Liveness and readiness: /healthz answers while the process lives; /readyz checks its dependencies."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import time
import uuid
import weakref

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import connection
from django.http import JsonResponse


async def healthz(request):
    """200 always while the process lives: `ok`, or `degraded` with its reasons while it sheds load
    (mejai/overload.py: refusals in the last OVERLOAD_DEGRADED_SECONDS, database-pool waiters,
    executor backlog). Degraded is not dead: a liveness probe must not restart a busy process."""
    from mejai.overload import overload_state

    state = overload_state()
    if not state["degraded"]:
        return JsonResponse({"status": "ok"})
    # The reasons name pools and counts: for operators (READYZ_TOKEN or READYZ_DETAIL_NETWORKS) only.
    body = {"status": "degraded", "reasons": state["reasons"]} if _detail_allowed(request) else {"status": "degraded"}
    response = JsonResponse(body)
    response["Cache-Control"] = "no-store"
    return response


def _check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    finally:
        # Give the connection back before the slower checks run (a broker ping can take a second):
        # a burst of readiness probes must never hold the pool the widget APIs need.
        if not connection.in_atomic_block:
            connection.close()
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


def _check_overload() -> dict:
    """Shedding now? (mejai/overload.py) — never makes the process unavailable, only degraded."""
    from mejai.overload import overload_state

    state = overload_state()
    return {"ok": not state["degraded"], "reasons": state["reasons"], "database_pool": state["database_pool"],
            "admission": state["admission"], "executor_backlog": state["executor_backlog"], "threads": state["threads"]}


def _check_llm() -> dict:
    """The model, honestly: a cached cheap probe (GET /models) and the recent-failure window of
    real calls (runtime.clients.llm_health). Either one failing makes it not ok. The mode and
    model only: the base URL (an internal address, maybe with credentials) is never shown."""
    if not (settings.OPENAI_API_KEY or settings.OPENAI_BASE_URL):
        return {"ok": True, "mode": "offline", "warning": "no model configured; answers come from the offline provider"}
    from runtime.clients.llm_health import llm_probe, llm_window_state

    probe = llm_probe(base_url=settings.OPENAI_BASE_URL or "https://api.openai.com/v1", api_key=settings.OPENAI_API_KEY)
    window = llm_window_state()
    result = {
        "ok": bool(probe["ok"] and window["ok"]), "mode": "openai_compatible", "model": settings.LLM_MODEL,
        "probe": probe, "recent_failures": window["recent_failures"],
    }
    if not probe["ok"]:
        result["error"] = probe.get("error") or "the model server did not answer the probe"
    elif not window["ok"]:
        result["error"] = f"{window['recent_failures']} model calls failed recently ({window['last_code']})"
    return result


def _model_connections() -> dict:
    """Model requests in flight now (live, not cached): {"limit", "in_use", "waiting", "refused_total",
    "wait_seconds"}; see runtime.clients.llm.ModelConnections."""
    from runtime.clients.llm import model_connections_state

    return model_connections_state()


async def _run_checks() -> dict:
    checks: dict[str, dict] = {}
    started = time.monotonic()

    async def run(name, check):
        try:
            checks[name] = await check()
        except Exception as exc:  # a failed dependency is reported (its kind only), never raised
            checks[name] = {"ok": False, "error": type(exc).__name__}

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
    overload = _check_overload()
    checks["overload"] = overload
    if status == "ready" and not overload["ok"]:
        status = "degraded"  # shedding load: still in the balancer (it answers, fast), but say so
    return {"status": status, "checks": checks, "elapsed_ms": int((time.monotonic() - started) * 1000)}


# One check at a time per process, its result reused for READYZ_CACHE_SECONDS: 60 probes at once
# cost one round of checks, not 60.
_cache: dict = {"at": 0.0, "body": None}
_locks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # one per event loop


def readyz_cache_clear() -> None:
    _cache.update(at=0.0, body=None)


async def _readiness() -> dict:
    ttl = float(getattr(settings, "READYZ_CACHE_SECONDS", 2.0))
    if _cache["body"] is not None and time.monotonic() - _cache["at"] < ttl:
        return _cache["body"]
    lock = _locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        if _cache["body"] is not None and time.monotonic() - _cache["at"] < ttl:
            return _cache["body"]
        body = await _run_checks()
        _cache.update(at=time.monotonic(), body=body)
        return body


def _detail_allowed(request) -> bool:
    """The checks' detail: with READYZ_TOKEN (Authorization: Bearer …), or from READYZ_DETAIL_NETWORKS."""
    token = getattr(settings, "READYZ_TOKEN", "")
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if token and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode()):
        return True
    from mejai.proxy import client_ip

    try:
        address = ipaddress.ip_address(client_ip(request.META))
    except ValueError:
        return False
    networks = getattr(settings, "READYZ_DETAIL_NETWORKS", ["127.0.0.0/8", "::1/128"])
    return any(address in ipaddress.ip_network(n, strict=False) for n in networks)


async def readyz(request):
    """200 `ready` / 200 `degraded` (model out) / 503 `unavailable` for anyone; each check's detail
    only for operators (token or network)."""
    body = await _readiness()
    status = 503 if body["status"] == "unavailable" else 200  # "degraded": the model is out (see _run_checks)
    if not _detail_allowed(request):
        body = {"status": body["status"]}
    else:
        body = {**body, "model_connections": _model_connections()}
    response = JsonResponse(body, status=status)
    response["Cache-Control"] = "no-store"
    return response
