"""The one place the Mattermost worker meets the runtime pipeline: store a post as a turn, answer it, stop it.

Everything the worker needs from `runtime` goes through these functions, so the pipeline's contract
(docs/mchat.md, "Answering") is in one module.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async

from runtime.events import TurnEvent
from runtime.models import Channel, Turn
from runtime.services import turn_answer_stream, turn_start


def turn_store(*, bot, session, end_user, text: str, post_id: str) -> tuple[Turn, bool]:
    """The post as the session's next turn; idempotent on the post id (a second path finds the first turn)."""
    return turn_start(organization=bot.organization, agent=bot.agent, channel=Channel.MCHAT, text=text, session=session,
                      end_user=end_user, client_message_id=post_id, idempotency_scope=f"mchat-bot:{bot.pk}")


async def answer_events(*, turn: Turn) -> AsyncIterator[TurnEvent]:
    """The answer's events (start, delta…, message | error). Cancelling the consumer interrupts the answer;
    the partial text is kept by the runtime."""
    async for event in turn_answer_stream(turn=turn):
        yield event


async def turn_reload(*, turn_id) -> Turn:
    return await sync_to_async(Turn.objects.select_related("session").get)(pk=turn_id)


def answer_cancel(task: asyncio.Task | None) -> None:
    """Stop an answer in progress (its partial text is stored as interrupted)."""
    if task is not None and not task.done():
        task.cancel()
