"""The pipeline over real HTTP: ordering across concurrent requests, client disconnects, idempotent retries."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

from runtime.models import Turn

pytestmark = pytest.mark.django_db(transaction=True)


def _headers(key: str, stream: bool = False) -> dict:
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    if stream:
        headers["Accept"] = "text/event-stream"
    return headers


@pytest.mark.postgres
def test_concurrent_requests_on_one_session_are_answered_in_order(live_server_asgi, api_key, fake_llm):
    url = live_server_asgi.url + "/api/runtime/chat"
    first = httpx.post(url, json={"message": "시작"}, headers=_headers(api_key), timeout=10).json()
    session_id = first["session_id"]
    fake_llm.config.ttft = 1.0  # each answer takes a while, so the two requests overlap

    async def send(client, text: str):
        response = await client.post(url, json={"message": text, "session_id": session_id}, headers=_headers(api_key))
        return response.json()

    async def both():
        async with httpx.AsyncClient(timeout=30) as client:
            return await asyncio.gather(send(client, "A"), send(client, "B"))

    replies = {r["message"].rsplit(" ", 1)[-1]: r for r in asyncio.run(both())}
    # Whichever arrived first got seq 2; the other waited for it.
    earlier, later = sorted(Turn.objects.filter(session_id=session_id, seq__gt=1), key=lambda t: t.seq)
    assert (earlier.seq, later.seq) == (2, 3)
    assert later.created_at < earlier.completed_at  # the requests really overlapped
    assert later.started_at >= earlier.completed_at  # answered one at a time, in arrival order
    # The later turn's prompt already holds the earlier turn's answer.
    later_prompt = next(r["messages"] for r in fake_llm.requests if r["messages"][-1]["content"] == later.user_text)
    assert {"role": "assistant", "content": replies[earlier.user_text]["message"]} in later_prompt
    assert replies[later.user_text]["turn_id"] == str(later.id)


def test_client_disconnect_keeps_the_partial_reply_and_closes_upstream(live_server_asgi, api_key, fake_llm):
    fake_llm.config.reply = " ".join(f"단어{i}" for i in range(200))
    fake_llm.config.tokens_per_second = 20
    url = live_server_asgi.url + "/api/runtime/chat"
    seen = []
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", url, json={"message": "길게 말해 줘"}, headers=_headers(api_key, stream=True)) as response:
            for line in response.iter_lines():
                if line.startswith("event: delta"):
                    seen.append(line)
                if len(seen) >= 3:
                    break  # the client leaves mid-answer
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        turn = Turn.objects.get()
        if turn.status != Turn.Status.STREAMING:
            break
        time.sleep(0.05)
    assert turn.status == Turn.Status.INTERRUPTED and turn.error_code == "client_disconnected"
    assert turn.reply_text.startswith("단어0 단어1 단어2") and len(turn.reply_text.split()) < 200
    # The upstream stream was closed: the fake stops sending long before the full 10 s answer.
    completed_before = fake_llm.completed
    time.sleep(0.5)
    assert fake_llm.completed == completed_before == 0


def test_retry_while_first_is_still_answering_returns_the_same_turn(live_server_asgi, api_key, fake_llm):
    fake_llm.config.ttft = 0.5
    url = live_server_asgi.url + "/api/runtime/chat"
    body = {"message": "한 번만", "client_message_id": "retry-1"}

    async def both():
        async with httpx.AsyncClient(timeout=20) as client:
            first = client.post(url, json=body, headers=_headers(api_key))
            await asyncio.sleep(0.1)
            second = client.post(url, json=body, headers=_headers(api_key))
            return await asyncio.gather(first, second)

    first, second = asyncio.run(both())
    assert first.status_code == second.status_code == 200
    assert first.json()["turn_id"] == second.json()["turn_id"]
    assert first.json()["message"] == second.json()["message"]
    assert len(fake_llm.requests) == 1 and Turn.objects.count() == 1


def test_sse_keepalive_while_waiting(live_server_asgi, api_key, fake_llm, settings):
    settings.RUNTIME_SSE_KEEPALIVE_SECONDS = 0.1
    fake_llm.config.ttft = 0.5
    url = live_server_asgi.url + "/api/runtime/chat"
    with httpx.Client(timeout=10) as client:
        with client.stream("POST", url, json={"message": "기다려"}, headers=_headers(api_key, stream=True)) as response:
            raw = "".join(response.iter_text())
    assert ": keep-alive" in raw and "event: message" in raw
    message = json.loads(raw.split("event: message\ndata: ")[1].split("\n")[0])
    assert message["message"].endswith("기다려")
