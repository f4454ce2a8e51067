"""turn_cancel on a turn that is not being answered: "left alone" (its docstring), also later."""

from __future__ import annotations

import pytest

from runtime import background
from runtime.models import Channel, Turn
from runtime.services import turn_reopen, turn_start, turn_store_without_answer

pytestmark = pytest.mark.django_db(transaction=True)


def _store(organization, agent, text="안녕하세요"):
    turn, _ = turn_start(organization=organization, agent=agent, channel=Channel.KAKAO, text=text)
    return turn


def test_cancelling_a_turn_nobody_answers_does_not_stop_its_later_answer(organization, agent, fake_llm):
    turn = _store(organization, agent)
    background.turn_cancel(turn_id=turn.pk)  # not being answered anywhere: nothing to stop
    outcome = background.turn_answer_background(turn_id=turn.pk).result(timeout=20)
    assert outcome.ok, outcome.error
    assert Turn.objects.get(pk=turn.pk).status == Turn.Status.COMPLETED


def test_a_stop_that_came_too_late_does_not_stop_the_retried_answer(organization, agent, fake_llm):
    """Kakao's path: kept without an answer (stored), a stop that finds nothing running, then the
    delivery is retried (turn_reopen) and answered: the old stop must not apply to the new answer."""
    turn = _store(organization, agent)
    assert turn_store_without_answer(turn_id=turn.pk, code="broker_unreachable", message="queue down")
    background.turn_cancel(turn_id=turn.pk)
    assert turn_reopen(turn_id=turn.pk)
    outcome = background.turn_answer_background(turn_id=turn.pk).result(timeout=20)
    assert outcome.ok, outcome.error
    assert Turn.objects.get(pk=turn.pk).status == Turn.Status.COMPLETED


def test_a_caller_that_stops_waiting_does_not_cancel_the_answer_for_the_others(organization, agent, fake_llm):
    """turn_answer_background's documented async use is `await asyncio.wrap_future(future)`; a caller
    that gives up (its own timeout, a closed connection) cancels that await. The answer goes on, and
    every other caller of the same turn (Kakao's callback job, a follower) still gets its outcome."""
    import asyncio

    fake_llm.config.ttft = 0.5
    turn = _store(organization, agent)
    started = background.turn_answer_background(turn_id=turn.pk)  # a sync caller: the runtime loop answers

    async def give_up():
        waiting = asyncio.ensure_future(asyncio.wrap_future(background.turn_answer_background(turn_id=turn.pk)))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting

    asyncio.run(give_up())
    assert not started.cancelled()
    outcome = started.result(timeout=20)
    assert outcome.ok, outcome.error


@pytest.mark.xfail(strict=True, reason="review-8: an answer started on a short-lived asyncio.run loop dies with it")
def test_an_answer_started_from_a_short_lived_event_loop_still_finishes(organization, agent, fake_llm):
    """turn_answer_background "does not depend on the caller staying". A caller with its own short
    loop (a management command or script using asyncio.run) starts the answer and returns: the
    answer still finishes, instead of dying with the caller's loop (turn left pending, blocking the
    session's later turns until it counts as abandoned)."""
    import asyncio

    turn = _store(organization, agent)

    async def start_and_return():
        return background.turn_answer_background(turn_id=turn.pk)

    future = asyncio.run(start_and_return())
    outcome = future.result(timeout=20)
    assert outcome.ok, outcome.error
    assert Turn.objects.get(pk=turn.pk).status == Turn.Status.COMPLETED
