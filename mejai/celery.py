"""Celery app; without a broker, jobs run on an in-process thread pool, off the request path."""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

from celery import Celery, Task

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mejai.settings")

logger = logging.getLogger(__name__)

IN_PROCESS_POOL = "mejai-job"


def _in_process_executor() -> ThreadPoolExecutor:
    from django.conf import settings

    from mejai.concurrency import executor

    return executor(IN_PROCESS_POOL, settings.IN_PROCESS_JOB_THREADS, background=True)


class InProcessResult:
    """Stands in for AsyncResult when a job runs in this process."""

    def __init__(self, task_id: str, future=None):
        self.id = self.task_id = task_id
        self.future = future

    def get(self, timeout: float | None = None):
        return self.future.result(timeout=timeout) if self.future else None


class MejaiTask(Task):
    """Task base: with a broker it is plain Celery; without one, it runs on a thread pool here."""

    def apply_async(self, args=None, kwargs=None, task_id=None, **options):
        from django.conf import settings

        if not settings.CELERY_IN_PROCESS:
            return super().apply_async(args=args, kwargs=kwargs, task_id=task_id, **options)
        task_id = task_id or str(uuid.uuid4())
        countdown = float(options.get("countdown") or 0)
        eta = options.get("eta")
        if eta is not None:
            from django.utils import timezone

            countdown = max(countdown, (eta - timezone.now()).total_seconds())
        future = _in_process_executor().submit(self._run_in_process, args or (), kwargs or {}, task_id, countdown)
        return InProcessResult(task_id, future)

    def _run_in_process(self, args, kwargs, task_id, countdown):
        from django.db import close_old_connections

        if countdown > 0:
            time.sleep(countdown)
        close_old_connections()
        try:
            # apply() runs the task body with Celery's request context, retries included.
            result = self.apply(args=args, kwargs=kwargs, task_id=task_id)
            if result.failed():
                logger.error("in-process job %s failed: %r", self.name, result.result)
            return result.result
        finally:
            close_old_connections()


app = Celery("mejai", task_cls=MejaiTask)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


_beat_started = False
_beat_lock = threading.Lock()


def in_process_beat_start() -> bool:
    """Without a broker there is no `celery beat`: run CELERY_BEAT_SCHEDULE on a daemon thread of this
    process instead (started by the ASGI entry point, so only servers run it). False when not needed."""
    global _beat_started
    from django.conf import settings

    if not settings.CELERY_IN_PROCESS or not getattr(settings, "IN_PROCESS_BEAT", True):
        return False
    with _beat_lock:
        if _beat_started:
            return True
        _beat_started = True
    schedule = {name: float(entry["schedule"]) for name, entry in settings.CELERY_BEAT_SCHEDULE.items()}

    def run() -> None:
        app.loader.import_default_modules()  # registers every app's tasks (autodiscovery is lazy)
        due = {name: time.monotonic() + min(every, 5.0) for name, every in schedule.items()}
        while True:
            now = time.monotonic()
            for name, at in due.items():
                if at <= now:
                    due[name] = now + schedule[name]
                    try:
                        app.tasks[settings.CELERY_BEAT_SCHEDULE[name]["task"]].apply_async()
                    except Exception:
                        logger.exception("periodic job %s could not start", name)
            time.sleep(max(0.5, min(due.values()) - time.monotonic()))

    threading.Thread(target=run, name="mejai-beat", daemon=True).start()
    return True
