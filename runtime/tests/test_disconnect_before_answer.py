"""A client that leaves before its answer begins leaves no turn `streaming` (review 2 of issue 14):
the hot path stores a turn already claimed, so one left behind blocked every later message of its
session, and a retry of it, until the abandoned-turn rule (180 s)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import sync_to_async

from runtime import services
from runtime.models import Turn

pytestmark = pytest.mark.django_db(transaction=True)


def _settle(turn_id, status: str) -> Turn:
    """The turn once it reaches `status`, waited for on state (the close runs on another task)."""
    for _ in range(2000):
        turn = Turn.objects.get(pk=turn_id)
        if turn.status == status:
            return turn
        threading.Event().wait(0.005)
    return Turn.objects.get(pk=turn_id)


def test_leaving_while_the_context_is_built_interrupts_the_turn(organization, agent, offline_llm, monkeypatch):
    entered, release = threading.Event(), threading.Event()
    real = services._context_build_released

    def slow_context(**kwargs):
        entered.set()
        release.wait(10)
        return real(**kwargs)

    monkeypatch.setattr(services, "_context_build_released", slow_context)
    turn, created = services.api_chat_start(organization=organization, data={"message": "안녕"})
    assert created

    async def scenario():
        gather = asyncio.ensure_future(services.outcome_gather(services.turn_answer_stream(turn=turn)))
        await sync_to_async(entered.wait, thread_sensitive=False)(10)
        gather.cancel()  # the client leaves while the context is being built
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await gather

    asyncio.run(scenario())
    closed = _settle(turn.pk, Turn.Status.INTERRUPTED)
    assert (closed.status, closed.error_code) == (Turn.Status.INTERRUPTED, "client_disconnected")


def test_leaving_while_the_message_is_stored_interrupts_what_was_stored(organization, agent, offline_llm):
    entered, release = threading.Event(), threading.Event()
    stored: list = []

    def slow_store():
        entered.set()
        release.wait(10)
        result = services.api_chat_start(organization=organization, data={"message": "안녕"})
        stored.append(result[0].pk)
        return result

    async def scenario():
        request = asyncio.ensure_future(services.turn_store_shielded(sync_to_async(slow_store)()))
        await sync_to_async(entered.wait, thread_sensitive=False)(10)
        request.cancel()  # the client leaves while its message is being stored
        await asyncio.sleep(0)
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await request
        while not stored or services._orphans:  # wait on state: the store ended and its turn was closed
            await asyncio.sleep(0.005)

    asyncio.run(scenario())
    closed = Turn.objects.get(pk=stored[0])
    assert (closed.status, closed.error_code) == (Turn.Status.INTERRUPTED, "client_disconnected")


def test_a_retry_that_leaves_while_stored_does_not_close_the_first_requests_turn(organization, agent, offline_llm):
    first, created = services.api_chat_start(organization=organization, data={"message": "안녕", "client_message_id": "r-1"})
    assert created
    status_before = Turn.objects.get(pk=first.pk).status

    async def scenario():
        store = sync_to_async(services.api_chat_start)(organization=organization,
                                                        data={"message": "안녕", "client_message_id": "r-1"})
        request = asyncio.ensure_future(services.turn_store_shielded(store))
        await asyncio.sleep(0)
        request.cancel()
        with pytest.raises(asyncio.CancelledError):
            await request
        while services._orphans:
            await asyncio.sleep(0.005)

    asyncio.run(scenario())
    assert Turn.objects.get(pk=first.pk).status == status_before  # the retry's leaving closes nothing


def test_a_turn_closed_before_its_answer_is_announced_as_finished(organization, agent, django_capture_on_commit_callbacks):
    """turn_finished is sent (the end-user timeline and the overview listen), as for a disconnect mid-answer."""
    from runtime import signals

    turn, _ = services.turn_start(organization=organization, agent=agent, channel="api", text="안녕")
    heard = []

    def receiver(sender, turn, **kwargs):
        heard.append((turn.pk, turn.status))

    signals.turn_finished.connect(receiver)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert services.turn_interrupt_unanswered(turn.pk) is True
        assert services.turn_interrupt_unanswered(turn.pk) is False  # already closed: not again
    finally:
        signals.turn_finished.disconnect(receiver)
    assert heard == [(turn.pk, Turn.Status.INTERRUPTED)]
