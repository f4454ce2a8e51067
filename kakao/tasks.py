"""Celery tasks of the Kakao channel: thin wrappers over kakao.services."""

from __future__ import annotations

from mejai.celery import app


@app.task(name="kakao.callback_deliver", acks_late=True, ignore_result=True)
def callback_deliver_task(task_id: str, announce: bool = False) -> str:
    from kakao.services import callback_deliver

    return callback_deliver(task_id=task_id, announce=announce)


@app.task(name="kakao.callback_tasks_sweep", ignore_result=True)
def callback_tasks_sweep_task() -> dict:
    """Periodic (CELERY_BEAT_SCHEDULE): expire tasks no worker took in time, fail posts of dead workers."""
    from kakao.services import callback_tasks_sweep

    return callback_tasks_sweep()
