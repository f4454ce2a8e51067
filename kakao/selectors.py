"""Reads for the Kakao operator and user APIs: tasks, health, latest answers."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Count
from django.utils import timezone

from kakao.models import CallbackTask
from mejai.errors import ApiError
from runtime.models import Channel, Session, Turn

TASK_STATUSES = {s.value for s in CallbackTask.Status}


def callback_tasks_for_org(*, organization, status: str | None = None):
    tasks = CallbackTask.objects.filter(organization=organization).select_related("turn", "bot")
    if status:
        wanted = [s.strip() for s in status.split(",") if s.strip()]
        unknown = [s for s in wanted if s not in TASK_STATUSES]
        if unknown:
            raise ApiError("invalid", f"Unknown status {unknown[0]!r}; use one of {', '.join(sorted(TASK_STATUSES))}.",
                           400, field="status")
        tasks = tasks.filter(status__in=wanted)
    return tasks.order_by("-received_at", "-pk")


def _uuid(value, *, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise ApiError("not_found", f"{what} not found.", 404) from None


def callback_task_get_for_org(*, organization, task_id) -> CallbackTask:
    task = (CallbackTask.objects.select_related("turn", "bot", "kakao_user")
            .filter(pk=_uuid(task_id, what="Task"), organization=organization).first())
    if task is None:
        raise ApiError("not_found", "Task not found.", 404)
    return task


def kakao_session_get_for_org(*, organization, session_id) -> Session:
    session = Session.objects.filter(pk=_uuid(session_id, what="Conversation"), organization=organization,
                                     channel=Channel.KAKAO).first()
    if session is None:
        raise ApiError("not_found", "Conversation not found.", 404)
    return session


def session_latest_answer(*, session: Session) -> Turn | None:
    return (Turn.objects.filter(session=session, status=Turn.Status.COMPLETED)
            .select_related("session").order_by("-seq").first())


def _check_database() -> dict:
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return {"ok": True, "engine": connection.vendor, "ms": round((time.monotonic() - started) * 1000, 1)}


def _check_queue() -> tuple[dict, dict, dict]:
    """(broker, workers, queue) checks."""
    queue_name = settings.CELERY_TASK_DEFAULT_QUEUE
    if settings.CELERY_IN_PROCESS:
        from mejai.celery import IN_PROCESS_POOL
        from mejai.concurrency import executor_backlog

        depth = executor_backlog(IN_PROCESS_POOL)
        return ({"ok": True, "mode": "in_process"}, {"ok": True, "alive": "in_process"},
                {"ok": True, "name": queue_name, "depth": depth})
    from kakao.services import _broker_pool
    from mejai.celery import app

    try:
        with _broker_pool().acquire(block=True, timeout=1) as conn:
            conn.ensure_connection(max_retries=1, timeout=1)
            try:
                depth = conn.default_channel.queue_declare(queue=queue_name, passive=True).message_count
            except Exception:
                depth = 0  # the queue does not exist yet: nothing was ever queued
        broker = {"ok": True, "mode": "celery"}
        queue = {"ok": True, "name": queue_name, "depth": depth}
    except Exception as exc:
        failed = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
        return failed, {"ok": False, "alive": 0, "error": "broker unreachable"}, {"ok": False, "name": queue_name}
    try:
        replies = app.control.ping(timeout=0.5) or []
    except Exception:
        replies = []
    workers = {"ok": bool(replies), "alive": len(replies)}
    if not replies:
        workers["warning"] = "no worker answered: callbacks wait in the queue and expire after 55 s"
    return broker, workers, queue


def callback_stats(*, organization, hours: int = 24) -> dict:
    since = timezone.now() - timedelta(hours=hours)
    rows = (CallbackTask.objects.filter(organization=organization, mode=CallbackTask.Mode.CALLBACK, received_at__gte=since)
            .values("status").annotate(n=Count("id")))
    counts = {row["status"]: row["n"] for row in rows}
    delivered = counts.get("completed", 0) + counts.get("held", 0)
    finished = delivered + counts.get("failed", 0) + counts.get("expired", 0)
    return {
        "window_hours": hours,
        "counts": {status: counts.get(status, 0) for status in sorted(TASK_STATUSES)},
        "delivered": delivered,
        "finished": finished,
        "success_rate": round(delivered / finished, 4) if finished else None,
    }


def kakao_health(*, organization) -> dict:
    checks: dict[str, dict] = {}
    try:
        checks["database"] = _check_database()
    except Exception as exc:
        checks["database"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:300]}
    checks["broker"], checks["workers"], checks["queue"] = _check_queue()
    callbacks = callback_stats(organization=organization)
    ok = checks["database"]["ok"] and checks["broker"]["ok"]
    return {"status": "ok" if ok and checks["workers"]["ok"] else ("degraded" if ok else "unavailable"),
            "checks": checks, "callbacks": callbacks}
