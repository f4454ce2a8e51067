"""Background jobs of the assistant: thin wrappers over services."""

from __future__ import annotations

from mejai.celery import app


@app.task(acks_late=True)
def delegated_task_run_task(task_id: str) -> str:
    from assistant.delegation import delegated_task_run

    return delegated_task_run(task_id=task_id)
