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
