"""The endusers app's hooks into the runtime pipeline: grounding, timeline, memory extraction."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor

from django.db import transaction

from mejai.concurrency import executor

logger = logging.getLogger(__name__)

def _enqueue_executor() -> ThreadPoolExecutor:
    """One thread that hands extraction jobs to the broker, so a slow or unreachable broker never
    holds up the answer (Celery retries a lost connection for a long time)."""
    return executor("endusers-enqueue", 1, background=True)


def _send(turn_id: str) -> None:
    from endusers.tasks import memory_extract_task

    try:
        memory_extract_task.delay(turn_id)
    except Exception:
        logger.exception("memory extraction for turn %s not queued", turn_id)


def grounding_provide(*, end_user, organization, query):
    from endusers.selectors import grounding_for

    try:
        return grounding_for(end_user=end_user, organization=organization, query=query)
    except Exception:
        # Memory is a help, never a reason for an answer to fail.
        logger.exception("grounding for end user %s failed", getattr(end_user, "pk", None))
        return None


def on_turn_stored(sender, turn, **kwargs):
    from endusers.services import timeline_record

    try:
        timeline_record(turn=turn)
    except Exception:
        logger.exception("timeline index for turn %s failed", turn.pk)


def extraction_enqueue(*, turn_id: str) -> None:
    """Queue memory extraction for a turn once the transaction commits; returns at once."""
    transaction.on_commit(lambda: _enqueue_executor().submit(_send, turn_id))


def on_turn_finished(sender, turn, **kwargs):
    from endusers.services import timeline_record
    from runtime.models import Turn

    try:
        # The end user may have been attached after the message was stored (a claim, a login).
        timeline_record(turn=turn)
    except Exception:
        logger.exception("timeline index for turn %s failed", turn.pk)
    if turn.status == Turn.Status.COMPLETED and turn.handled_by == "llm" and turn.session.end_user_id:
        try:
            extraction_enqueue(turn_id=str(turn.pk))
        except Exception:
            logger.exception("memory extraction for turn %s not queued", turn.pk)
