"""Background jobs of the runtime app: thin wrappers over services."""

from __future__ import annotations

from mejai.celery import app


@app.task(name="runtime.overview_rollup")
def overview_rollup_task() -> list[str]:
    """For a periodic scheduler (CELERY_BEAT_SCHEDULE): roll up the overview's pending closed days
    (mejai.overview.rollup_pending); the days rolled up, ISO dates."""
    from mejai.overview import rollup_pending

    return [day.isoformat() for day in rollup_pending()]
