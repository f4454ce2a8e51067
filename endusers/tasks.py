"""Background jobs of the endusers app: thin wrappers over services."""

from __future__ import annotations

from mejai.celery import app


@app.task(bind=True, max_retries=3, default_retry_delay=10, acks_late=True)
def memory_extract_task(self, turn_id: str) -> list[str]:
    from endusers.extraction import memory_extract
    from runtime.clients.llm import LLMError

    try:
        return memory_extract(turn_id=turn_id)
    except LLMError as exc:
        if exc.retryable:
            raise self.retry(exc=exc) from exc
        return []


@app.task(name="endusers.turns_purge_expired")
def turns_purge_expired_task() -> dict:
    """For a periodic scheduler (Celery beat, cron): the same as `manage.py purge_expired`."""
    from endusers.conf import RETENTION_DAYS
    from endusers.services import turns_purge_expired

    return turns_purge_expired(days=RETENTION_DAYS)
