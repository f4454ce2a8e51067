"""Overload: many streams closed at once must leave the process answering (issue 15, item 2)."""

from __future__ import annotations

import asyncio

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
def test_a_flood_of_abrupt_stream_closes_leaves_the_next_chat_answered(live_server_asgi, api_key, fake_llm, settings):
    """More streams than the database pool holds, waiting on a slow model, all dropped at once: their
    cancellations store the partial turns, and each must give its connection back, or the process
    never answers again (the pool is spent by threads that ended holding connections)."""
    from django.db import connection

    streams = connection.settings_dict["OPTIONS"]["pool"]["max_size"] + 10
    fake_llm.config.ttft = 60
    url = live_server_asgi.url + "/api/runtime/chat"

    async def flood():
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=streams + 5)) as client:
            everyone_waits = asyncio.Event()

            async def one(n: int):
                async with client.stream("POST", url, json={"message": f"느린 질문 {n}"},
                                         headers=_headers(api_key, stream=True)) as response:
                    async for line in response.aiter_lines():
                        if line.startswith("retry:"):
                            await everyone_waits.wait()
                            return  # leave abruptly, all together

            tasks = [asyncio.ensure_future(one(n)) for n in range(streams)]
            while len(fake_llm.requests) < streams:  # every request is waiting on the model
                await asyncio.sleep(0.05)
            everyone_waits.set()
            await asyncio.gather(*tasks)

    asyncio.run(flood())
    # Wait until every dropped turn is stored as interrupted (state, not time).
    for _ in range(600):
        if not Turn.objects.filter(status__in=(Turn.Status.PENDING, Turn.Status.STREAMING)).exists():
            break
        asyncio.run(asyncio.sleep(0.05))
    assert Turn.objects.filter(status=Turn.Status.INTERRUPTED).count() == streams
    fake_llm.config.ttft = 0
    for n in range(3):
        response = httpx.post(url, json={"message": f"이제 답해 줘 {n}"}, headers=_headers(api_key), timeout=20)
        assert response.status_code == 200, response.text
        assert response.json()["message"].endswith(f"이제 답해 줘 {n}")
