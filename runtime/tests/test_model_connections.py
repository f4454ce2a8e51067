"""Model connections: a configured cap, visible in /readyz, and a fast retryable `model_busy` past it
(issue 15); a sync caller's model client is closed with its loop (memory extraction leaked one each)."""

from __future__ import annotations

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync

from runtime.clients import llm
from runtime.models import Turn


def _request() -> llm.LLMRequest:
    return llm.LLMRequest(messages=[{"role": "user", "content": "안녕"}], model="gpt-4o-mini")


def test_a_request_past_the_cap_fails_model_busy_after_the_short_wait(fake_llm, settings):
    settings.LLM_MAX_CONNECTIONS = 1
    settings.LLM_CONNECTION_WAIT_SECONDS = 0.05
    fake_llm.config.hang = True  # the first request holds its connection

    async def scenario():
        provider = llm.OpenAICompatibleProvider()
        first = provider.stream(_request())
        holder = asyncio.ensure_future(first.__anext__())
        while llm.model_connections_for_loop().in_use < 1:  # wait on state: the slot is taken
            await asyncio.sleep(0.001)
        refused_before = llm.model_connections_state()["refused_total"]
        with pytest.raises(llm.LLMError) as caught:
            await provider.complete(_request())
        slots = llm.model_connections_for_loop()  # this loop's (other tests' loops may hold their own)
        during = {"limit": slots.limit, "in_use": slots.in_use, "waiting": slots.waiting,
                  "refused_total": llm.model_connections_state()["refused_total"],
                  "process_in_use": llm.model_connections_state()["in_use"]}
        holder.cancel()
        with pytest.raises((asyncio.CancelledError, StopAsyncIteration)):
            await holder
        await first.aclose()
        after = {"in_use": llm.model_connections_for_loop().in_use}
        await llm.loop_client_close()
        return caught.value, refused_before, during, after

    error, refused_before, during, after = async_to_sync(scenario)()
    assert error.code == "model_busy" and error.retryable
    assert during["limit"] == 1 and during["in_use"] == 1 and during["waiting"] == 0
    assert during["refused_total"] == refused_before + 1 and during["process_in_use"] >= 1
    assert after["in_use"] == 0  # the slot came back when the holder was cancelled


def test_a_busy_model_is_a_503_with_retry_after_and_the_message_is_kept(client, api_key, fake_llm, monkeypatch):
    busy = llm.ModelConnections(1)
    busy._free = asyncio.Semaphore(0)  # every slot taken
    monkeypatch.setattr(llm, "model_connections_for_loop", lambda: busy)
    monkeypatch.setattr(llm.settings, "LLM_CONNECTION_WAIT_SECONDS", 0.01, raising=False)
    response = client.post("/api/runtime/chat", data=json.dumps({"message": "안녕하세요"}),
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_key}")
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "2"
    error = response.json()["error"]
    assert error["code"] == "model_busy" and error["retryable"] is True
    assert "잠시 후" in error["message"] and "busy" in error["message"]
    turn = Turn.objects.get(pk=error["turn_id"])
    assert turn.user_text == "안녕하세요" and turn.error_code == "model_busy"
    assert not fake_llm.requests  # refused before anything was sent to the model


def test_readyz_detail_shows_model_connections(client, db, offline_llm, settings):
    settings.LLM_MAX_CONNECTIONS = 7
    body = client.get("/readyz").json()
    assert body["model_connections"]["limit"] == 7
    assert {"in_use", "waiting", "refused_total", "wait_seconds"} <= set(body["model_connections"])


def test_readyz_hides_model_connections_from_outsiders(client, db, offline_llm, settings):
    settings.READYZ_DETAIL_NETWORKS = ["10.9.9.0/24"]
    body = client.get("/readyz").json()
    assert set(body) == {"status"}


def test_complete_sync_closes_the_client_it_made(fake_llm, monkeypatch):
    made = []
    real = llm._client_for_loop

    def recording():
        client = real()
        made.append(client)
        return client

    monkeypatch.setattr(llm, "_client_for_loop", recording)
    text, _calls, _usage = llm.complete_sync(llm.OpenAICompatibleProvider(), _request())
    assert text and made
    assert all(client.is_closed() for client in made)


def test_memory_extraction_goes_through_complete_sync(fake_llm, monkeypatch):
    from endusers import extraction

    calls = []
    real = llm.complete_sync
    monkeypatch.setattr(llm, "complete_sync", lambda provider, request: calls.append(request) or real(provider, request))
    fake_llm.config.reply = '{"facts": []}'
    assert extraction._llm_json("system", "user") == {"facts": []}
    assert len(calls) == 1


def test_a_waiter_cancelled_as_its_slot_frees_stays_cancelled_and_gives_the_slot_back():
    """A client that leaves while its request waits for a model connection is cancelled even when a
    slot frees in the same loop tick (asyncio.wait_for in 3.11 returned the acquired slot and
    swallowed the cancellation: the answer then ran for nobody; 164 of 300 abruptly closed streams)."""

    async def scenario():
        slots = llm.ModelConnections(1)
        await slots.acquire(5)
        waiter = asyncio.ensure_future(slots.acquire(5))
        while slots.waiting < 1:  # wait on state: the second request waits for the slot
            await asyncio.sleep(0)
        await asyncio.sleep(0)  # the waiter is parked on the semaphore
        slots.release()  # the slot frees in the tick the waiting request's client leaves
        waiter.cancel()
        outcome = await asyncio.gather(waiter, return_exceptions=True)
        return outcome[0], slots.in_use, slots.waiting, slots._free.locked()

    outcome, in_use, waiting, locked = asyncio.run(scenario())
    assert isinstance(outcome, asyncio.CancelledError)
    assert (in_use, waiting, locked) == (0, 0, False)  # the slot went back: nothing leaked
