"""The one place the Mattermost worker meets the runtime pipeline: store a post as a turn, answer it, stop it.

Everything the worker needs from `runtime` goes through these functions, so the pipeline's contract
(docs/mchat.md, "Answering") is in one module.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async

from runtime.background import turn_answer_follow, turn_cancel
from runtime.events import TurnEvent
from runtime.models import Channel, Turn
from runtime.services import turn_start


def turn_store(*, bot, session, end_user, text: str, post_id: str) -> tuple[Turn, bool]:
    """The post as the session's next turn; idempotent on the post id (a second path finds the first turn)."""
    return turn_start(organization=bot.organization, agent=bot.agent, channel=Channel.MCHAT, text=text, session=session,
                      end_user=end_user, client_message_id=post_id, idempotency_scope=f"mchat-bot:{bot.pk}")


async def answer_events(*, turn: Turn) -> AsyncIterator[TurnEvent]:
    """The answer's events (start, delta…, message | error), answered in the background on the worker's
    loop and published to the session's live group. Leaving early does not stop the answer: it is stored
    and delivered through the outbox (docs/mchat.md)."""
    async for event in turn_answer_follow(turn_id=turn.pk, sender="mchat"):
        yield event


async def turn_reload(*, turn_id) -> Turn:
    return await sync_to_async(Turn.objects.select_related("session").get)(pk=turn_id)


async def answer_stop(*, turn_id) -> None:
    """Stop an answer wherever it runs: the partial text is stored and the events end with an `error`
    whose code is `stopped`."""
    await sync_to_async(turn_cancel, thread_sensitive=False)(turn_id=turn_id)
